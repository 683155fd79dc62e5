"""Pretrain the DNA encoder: a BPE tokenizer and a small BERT trained by masked-LM on the bundle's
reference windows (DNABERT-2's recipe at toy scale, so the tiny preset needs no downloaded model).

`pretrain_encoder(data_dir, out_dir)` writes one directory that both `AutoModel.from_pretrained`
(a `BertModel`, safetensors) and `AutoTokenizer.from_pretrained` read, plus
`pretrain_config.json` (the resolved config, data dir, loss curve) and `mlm/` (the
`BertForMaskedLM` with its head, for continued pretraining; not needed downstream).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig, BertForMaskedLM, BertModel, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from llamadna import provenance
from llamadna.constants import IGNORE_INDEX
from llamadna.data.corpus import reference_windows
from llamadna.errors import ConfigError, InputError
from llamadna.io.atomic import atomic_dir
from llamadna.model.tokenizers import train_dna_tokenizer
from llamadna.progress import Progress, no_progress
from llamadna.train.config import PretrainConfig
from llamadna.train.contrastive import contrastive_stage
from llamadna.train.optim import adamw_with_schedule, optimizer_step

log = logging.getLogger(__name__)

CONFIG_NAME = "pretrain_config.json"
# the settings that made an --init encoder's tokenizer and masked-LM weights: kept from its record
_MASKED_LM_SETTINGS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "max_position_embeddings", "window", "steps", "lr",
                 "mlm_probability", "min_frequency")
MLM_SUBDIR = "mlm"


def bert_config(cfg: PretrainConfig, tokenizer: PreTrainedTokenizerFast) -> BertConfig:
    return BertConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size, max_position_embeddings=cfg.max_position_embeddings,
        hidden_dropout_prob=cfg.hidden_dropout_prob,
        attention_probs_dropout_prob=cfg.attention_probs_dropout_prob,
        pad_token_id=tokenizer.pad_token_id,
    )


def _encode(windows: Sequence[str], tokenizer: PreTrainedTokenizerFast, max_len: int) -> tuple[
    list[list[int]], float, int
]:
    """Token ids per window ([CLS] ... [SEP], cut to max_len keeping [SEP]), mean length before
    cutting, and how many windows were cut."""
    encs = tokenizer.backend_tokenizer.encode_batch(list(windows))
    lengths = np.array([len(e.ids) for e in encs])
    sep = tokenizer.sep_token_id
    ids = [e.ids if len(e.ids) <= max_len else e.ids[: max_len - 1] + [sep] for e in encs]
    return ids, float(lengths.mean()), int((lengths > max_len).sum())


def mask_tokens(
    input_ids: torch.Tensor, special: torch.Tensor, mask_id: int, replace_ids: torch.Tensor,
    mlm_probability: float, gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking. Returns (inputs, labels), labels IGNORE_INDEX where not predicted.

    Parameters
    ----------
    input_ids : (B, T) token ids.
    special : (B, T) bool, positions never masked ([CLS], [SEP], [PAD]).
    replace_ids : (K,) ids a "random token" replacement draws from (no special tokens).
    """
    prob = torch.full(input_ids.shape, mlm_probability)
    prob[special] = 0.0
    picked = torch.bernoulli(prob, generator=gen).bool()  # (B, T)
    if not picked.any():  # tiny batches: predict at least one token so the loss is defined
        picked[torch.nonzero(~special)[0].unbind()] = True
    r = torch.rand(input_ids.shape, generator=gen)
    inputs = input_ids.clone()
    inputs[picked & (r < 0.8)] = mask_id
    rand = picked & (r >= 0.8) & (r < 0.9)
    draw = torch.randint(len(replace_ids), (int(rand.sum()),), generator=gen)
    inputs[rand] = replace_ids[draw]
    labels = torch.where(picked, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    return inputs, labels


def _unigram_loss(ids: list[list[int]], tokenizer: PreTrainedTokenizerFast) -> float:
    """Entropy (nats) of the token frequencies: the masked-LM loss of a model that ignores context,
    the baseline that tells whether the encoder learned more than which tokens are common."""
    counts = np.bincount(np.concatenate([np.asarray(r, dtype=np.int64) for r in ids]),
                         minlength=len(tokenizer)).astype(float)
    counts[tokenizer.all_special_ids] = 0
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _mean(xs: list[float]) -> float:
    return float(np.mean(xs)) if xs else float("nan")


@dataclass
class _Masking:
    """What masking needs of the tokenizer (see `mask_tokens`)."""

    specials: torch.Tensor  # (S,) ids never masked
    replace_ids: torch.Tensor  # (K,) ids a random replacement draws from
    pad_id: int
    mask_id: int
    probability: float

    @classmethod
    def of(cls, tokenizer: PreTrainedTokenizerFast, probability: float) -> _Masking:
        specials = torch.tensor(sorted(set(tokenizer.all_special_ids)))
        replace_ids = torch.tensor([i for i in range(len(tokenizer)) if i not in set(specials.tolist())])
        return cls(specials, replace_ids, tokenizer.pad_token_id, tokenizer.mask_token_id, probability)


def _batches(ids: list[list[int]], batch: int, steps: int, gen: torch.Generator) -> Iterator[list[list[int]]]:
    """`steps` batches of `batch` windows from a seeded permutation, a new one when it runs out.
    Lazy, so that `gen` is drawn in the loop's order: a new permutation, then that step's masks."""
    order = torch.randperm(len(ids), generator=gen)
    pos = 0
    for _ in range(steps):
        if pos + batch > len(ids):
            order, pos = torch.randperm(len(ids), generator=gen), 0
        rows = [ids[i] for i in order[pos : pos + batch].tolist()]
        pos += batch
        yield rows


def _masked_lm_loss(model: BertForMaskedLM, rows: list[list[int]], masking: _Masking,
                    gen: torch.Generator) -> torch.Tensor:
    """The loss of one batch, padded to its longest window; the head runs on masked positions only."""
    width = max(map(len, rows))
    input_ids = torch.tensor([r + [masking.pad_id] * (width - len(r)) for r in rows])  # (B, T)
    attention_mask = (input_ids != masking.pad_id).long()
    inputs, labels = mask_tokens(input_ids, torch.isin(input_ids, masking.specials), masking.mask_id,
                                 masking.replace_ids, masking.probability, gen)
    hidden = model.bert(input_ids=inputs, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
    picked = labels != IGNORE_INDEX
    logits = model.cls(hidden[picked])  # (N_masked, V)
    return torch.nn.functional.cross_entropy(logits, labels[picked])


def train_masked_lm(
    windows: Sequence[str], tokenizer: PreTrainedTokenizerFast, cfg: PretrainConfig,
    progress: Progress = no_progress,
) -> tuple[BertForMaskedLM, dict]:
    """Train a `BertForMaskedLM` from scratch on tokenized windows (CPU, seeded, deterministic).

    Batches are drawn from a seeded permutation of the windows (a new one each epoch) and padded
    to their longest window. The MLM head runs on the masked positions only (~15% of the tokens),
    which halves the time of a step against `BertForMaskedLM(labels=...)`.

    Returns the model (in eval mode) and {steps, initial_loss, final_loss, unigram_loss,
    loss_curve, tokens_per_window, windows, windows_truncated, vocab_size, train_seconds}; the
    losses are means over the first/last k = clamp(steps // 4, 1, 10) steps (one batch is noisy);
    `unigram_loss` is the context-free baseline (entropy of the token frequencies).
    """
    if not windows:
        raise ConfigError("no DNA windows to train on (reference shorter than the window, or all N)")
    t0 = time.perf_counter()
    ids, tokens_per_window, truncated = _encode(windows, tokenizer, cfg.max_position_embeddings)
    if truncated:
        log.warning("%d of %d windows are longer than %d tokens and were cut; use a shorter "
                    "--window", truncated, len(ids), cfg.max_position_embeddings)
    unigram = _unigram_loss(ids, tokenizer)
    torch.manual_seed(cfg.seed)
    model = BertForMaskedLM(bert_config(cfg, tokenizer))
    model.train()
    gen = torch.Generator().manual_seed(cfg.seed)
    masking = _Masking.of(tokenizer, cfg.mlm_probability)
    # no weight decay on biases and LayerNorm; warm-up from peak / warmup, then linear decay to 0
    opt, sched = adamw_with_schedule(
        model.parameters(), cfg.lr, weight_decay=cfg.weight_decay, exempt_1d=True,
        warmup_steps=max(1, int(cfg.warmup_fraction * cfg.steps)), total_steps=cfg.steps, warmup_offset=1)
    losses: list[float] = []
    every = max(1, cfg.steps // 10)
    for step, rows in enumerate(_batches(ids, min(cfg.batch_size, len(ids)), cfg.steps, gen)):
        loss = _masked_lm_loss(model, rows, masking, gen)
        losses.append(optimizer_step(loss, model, opt, "masked-LM", step))
        sched.step()
        progress(f"masked-LM training: loss {losses[-1]:.3f}", step + 1, cfg.steps)
        if (step + 1) % every == 0 or step + 1 == cfg.steps:
            log.info("masked-LM step %d/%d: loss %.4f (lr %.2e)", step + 1, cfg.steps,
                     _mean(losses[-every:]), sched.get_last_lr()[0])
    model.eval()
    k = min(10, max(1, cfg.steps // 4))
    stats = {
        "steps": cfg.steps, "initial_loss": round(_mean(losses[:k]), 5),
        "final_loss": round(_mean(losses[-k:]), 5), "unigram_loss": round(unigram, 5),
        "loss_curve": losses,
        "tokens_per_window": round(tokens_per_window, 2), "windows": len(ids),
        "windows_truncated": truncated, "vocab_size": len(tokenizer),
        "train_seconds": round(time.perf_counter() - t0, 2),
    }
    return model, stats


def encoder_from_mlm(mlm: BertForMaskedLM) -> BertModel:
    """The `BertModel` that `AutoModel.from_pretrained` reads: the trained encoder plus a pooler.

    The pooler is untrained (the projector reads per-token states, never the pooled one); it is
    saved so that loading reports no missing weights.
    """
    encoder = BertModel(mlm.config, add_pooling_layer=True)
    missing, unexpected = encoder.load_state_dict(mlm.bert.state_dict(), strict=False)
    if unexpected or any(not k.startswith("pooler.") for k in missing):
        raise RuntimeError(f"encoder weights do not match: missing {missing}, unexpected {unexpected}")
    return encoder.eval()


def _check_out_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / CONFIG_NAME).exists())):
        raise ConfigError(f"{out} exists and is not an encoder directory (no {CONFIG_NAME}); "
                         "give a new or empty --out")


def save_encoder(out_dir: str | Path, mlm: BertForMaskedLM, tokenizer: PreTrainedTokenizerFast,
                 record: dict) -> Path:
    """Write encoder (BertModel), tokenizer, `mlm/` and `pretrain_config.json` to `out_dir`.

    Everything is written to a temporary directory beside `out_dir` and renamed into place, so
    an interrupted run leaves no half-written model; a previous encoder directory is replaced.
    """
    out = Path(out_dir)
    _check_out_dir(out)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a tqdm bar per shard would cut through the rich progress
    try:
        # a previous encoder directory replaced whole; usual permissions (safetensors: 0600)
        with atomic_dir(out) as tmp:
            with torch.random.fork_rng(devices=[]):  # the caller's RNG state is left alone
                torch.manual_seed(0)  # the (unused) pooler's initialisation: reproducible files
                encoder = encoder_from_mlm(mlm)
            encoder.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            mlm.save_pretrained(tmp / MLM_SUBDIR)
            (tmp / CONFIG_NAME).write_text(json.dumps(record, indent=1) + "\n")
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return out


def _windows(data_dir, window: int, cfg: PretrainConfig) -> list[str]:
    windows = list(reference_windows(data_dir, window, max_n_fraction=cfg.max_n_fraction))
    if cfg.max_windows is not None and len(windows) > cfg.max_windows:
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(windows), cfg.max_windows, replace=False))
        windows = [windows[i] for i in keep]
    if not windows:
        raise ConfigError(f"{data_dir}: no reference window of {window} bases with at most "
                         f"{cfg.max_n_fraction:.0%} N")
    return windows


def load_mlm(encoder_dir: str | Path) -> tuple[BertForMaskedLM, PreTrainedTokenizerFast, dict]:
    """An encoder directory written here: its masked-LM model (`mlm/`), tokenizer and record
    (no code, no pickle: `model.safe_loading`)."""
    from llamadna.model.safe_loading import load_tokenizer, refuse_custom_code, require_safetensors

    d = Path(encoder_dir)
    if not (d / CONFIG_NAME).exists() or not (d / MLM_SUBDIR).is_dir():
        raise InputError(d, f"not an encoder directory written by `llamadna pretrain-encoder` (no "
                         f"{CONFIG_NAME} and {MLM_SUBDIR}/)")
    refuse_custom_code(d / MLM_SUBDIR)
    require_safetensors(d / MLM_SUBDIR, "masked-LM")
    tokenizer = load_tokenizer(d)
    mlm = BertForMaskedLM.from_pretrained(d / MLM_SUBDIR, use_safetensors=True, local_files_only=True)
    return mlm, tokenizer, json.loads((d / CONFIG_NAME).read_text())


def _kept_masked_lm(init: str | Path, cfg: PretrainConfig) -> tuple[
    BertForMaskedLM, PreTrainedTokenizerFast, dict, PretrainConfig
]:
    """--init: the encoder directory's tokenizer, masked-LM model and figures, and `cfg` with the
    masked-LM settings it was made with."""
    if not cfg.contrastive_steps:
        raise ConfigError("--init keeps the encoder's masked-LM training: give --contrastive-steps")
    mlm, tokenizer, before = load_mlm(init)
    stats = {k: before[k] for k in ("steps", "final_loss", "initial_loss", "unigram_loss",
                                    "tokens_per_window", "windows", "windows_truncated",
                                    "vocab_size", "loss_curve")}
    stats["init"] = str(Path(init).resolve())
    cfg = replace(cfg, **{k: v for k, v in before["config"].items() if k in _MASKED_LM_SETTINGS})
    return mlm, tokenizer, stats, cfg


def _masked_lm_stage(data_dir: str | Path, cfg: PretrainConfig, progress: Progress) -> tuple[
    BertForMaskedLM, PreTrainedTokenizerFast, dict
]:
    """The reference windows, the DNA tokenizer trained on them, and the masked-LM model."""
    progress("reading reference windows", 0, 1)
    windows = _windows(data_dir, cfg.window, cfg)
    progress("reading reference windows", 1, 1)
    progress("training DNA tokenizer", 0, 1)
    log.info("pretrain-encoder: %d windows of %d bases (%.1f Mb)", len(windows), cfg.window,
             len(windows) * cfg.window / 1e6)
    tokenizer = train_dna_tokenizer(windows, cfg.vocab_size, cfg.min_frequency,
                                    model_max_length=cfg.max_position_embeddings)
    progress("training DNA tokenizer", 1, 1)
    mlm, stats = train_masked_lm(windows, tokenizer, cfg, progress)
    return mlm, tokenizer, stats


def pretrain_encoder(
    data_dir: str | Path, out_dir: str | Path, cfg: PretrainConfig | None = None,
    progress: Progress = no_progress, init: str | Path | None = None,
) -> dict:
    """Train the DNA tokenizer and a masked-LM BERT on a bundle's reference windows, then the
    contrastive stage (`cfg.contrastive_steps`, train.contrastive); save both.

    Parameters
    ----------
    data_dir : data bundle (every reference FASTA, both builds, is used).
    out_dir : encoder directory (see the module docstring); replaced if it holds an earlier one.
    cfg : settings (default `PretrainConfig()`).
    progress : optional callback(description, done, total).
    init : an encoder directory written here: its tokenizer and masked-LM model are kept (no
        tokenizer or masked-LM training) and only the contrastive stage runs on them.

    Returns
    -------
    {steps, initial_loss, final_loss, unigram_loss, tokens_per_window, seconds, windows,
    windows_truncated, vocab_size, loss_curve, out_dir} (+ the contrastive_* figures); the same
    numbers go to `out_dir/pretrain_config.json`.
    """
    cfg = cfg or PretrainConfig()
    t0 = time.perf_counter()
    _check_out_dir(Path(out_dir))  # fail before training, not after
    if init is not None:
        mlm, tokenizer, stats, cfg = _kept_masked_lm(init, cfg)
    else:
        mlm, tokenizer, stats = _masked_lm_stage(data_dir, cfg, progress)
    if cfg.contrastive_steps:
        stats.update(contrastive_stage(mlm.bert, tokenizer, _windows(data_dir, cfg.contrastive_window, cfg),
                                       cfg, progress))
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    record = {
        "config": asdict(cfg), "data_dir": str(Path(data_dir).resolve()), **stats,
        **provenance(),
    }
    save_encoder(out_dir, mlm, tokenizer, record)
    summary = {k: v for k, v in stats.items() if k not in ("contrastive_loss_curve",)}
    summary["out_dir"] = str(out_dir)
    log.info("pretrain-encoder: loss %.3f -> %.3f in %d steps (context-free baseline %.3f), "
             "%.1f tokens per window, %.1f s; wrote %s", stats["initial_loss"], stats["final_loss"],
             stats["steps"], stats["unigram_loss"], stats["tokens_per_window"], stats["seconds"], out_dir)
    return summary
