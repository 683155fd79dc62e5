"""Fine-tune Llama-DNA on the dataset (accelerate: one process, or `accelerate launch` for DDP).

    dataset.parquet (split column) -> train / val rows
    tiny preset: text tokenizer + tiny Llama pretrained on the train text (stage 1)
    model = encoder (frozen) + projector + LLM + class head (`model.build`); the LLM trained in
            full (tiny preset) or with LoRA (full preset)
    loop: AdamW on trainable params, linear warm-up/decay, val loss each epoch, early stopping,
          checkpoints every N steps, --resume continues from the last one
    MODEL/ = save_pretrained of the best-validation model (+ tokenizers, train_config.json)

Determinism and resume: the batch order of epoch e is a permutation seeded by (seed, e); a
checkpoint holds the trainable weights and the torch RNG state (safetensors), the optimizer
state (torch.save of tensors, loaded with weights_only=True) and counters/scheduler/early-stopping
state (JSON) — nothing is unpickled. Resuming after a kill -9 therefore replays exactly the
steps the killed run would have taken, and reaches the same final weights.

Data parallel (`accelerate launch --num_processes N`): every process builds the same model (same
seed), a step takes N x batch_size rows of the epoch's permutation and process r trains on the
rows r, r+N, ... of it; DDP averages the gradients. Only the main process writes files; the
checkpoint keeps every process's RNG state, so resuming with the same N is exact too. At the end
the processes check that their trainable weights agree.

FSDP (`--fsdp` under the same launchers): the model is sharded in place over the processes
(`llamadna.train.sharding`) and the steps are those of DDP; checkpoints and best weights are
gathered into the same unsharded files, and MODEL is written by rebuilding the model unsharded
from base/ on the main process.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from llamadna import provenance
from llamadna.constants import IGNORE_INDEX
from llamadna.data.splits import subsample
from llamadna.errors import ConfigError
from llamadna.io.atomic import atomic_dir
from llamadna.model.build import build_full, build_tiny, tiny_parts
from llamadna.model.modeling import LlamaDNAForAnnotation
from llamadna.model.presets import TinyLLMShape
from llamadna.model.processing import LlamaDNAProcessor
from llamadna.progress import Progress, no_progress
from llamadna.train.config import TrainConfig
from llamadna.train.optim import adamw_with_schedule
from llamadna.train.rows import load_split
from llamadna.train.sharding import (
    load_optimizer_state,
    load_trainable,
    local_numel,
    optimizer_state,
    shard_model,
    trainable_state,
)

log = logging.getLogger(__name__)
CKPT_PREFIX = "checkpoint-"


# ------------------------------------------------------------------------------------ data


def evidence_sampler(cfg: TrainConfig, train_rows: list[dict]):
    """The training index (`cfg.index` without the genes that only validation and test rows of the
    split hold, its variants the split's training rows) and its `EvidenceSampler`, with a pool of
    negatives of the training part of the reference when cfg.negative_rate > 0."""
    from llamadna.retrieve.retriever import open_retriever
    from llamadna.train.evidence_sampler import EvidenceSampler, split_genes, training_index

    index = training_index(cfg.index, cfg.dataset, cfg.split, train_rows)
    log.info("training index: %d windows, %d genes (%d held-out genes masked)", index.windows.height,
             index.meta["genes"], len(index.meta["exclude_genes"]))
    retriever = open_retriever(index, k=cfg.evidence_k)
    return EvidenceSampler(retriever, cfg.evidence_max_rate, cfg.evidence_swap, cfg.evidence_drop,
                           cfg.evidence_shuffle, cfg.evidence_pseudo,
                           known=split_genes(train_rows) if cfg.evidence_names == "training" else None,
                           truncate=cfg.evidence_truncate,
                           negatives=negative_pool(cfg, train_rows, index), negative_rate=cfg.negative_rate,
                           splash_hide=cfg.splash_hide)


def negative_pool(cfg: TrainConfig, train_rows: list[dict], index=None) -> list[dict]:
    """The negatives a retrieval model's training draws from (built once, seeded):
    NEGATIVE_POOL_PER_KIND of each kind of `data.negatives.negative_rows` of the training part of
    the reference of the dataset's bundle (`bundle_dir`), as long as the dataset's windows; none
    when cfg.negative_rate is 0."""
    if not cfg.negative_rate:
        return []
    from collections import Counter

    from llamadna.data.negatives import negative_rows
    from llamadna.train.config import NEGATIVE_POOL_PER_KIND
    from llamadna.train.evidence_sampler import bundle_dir, row_window

    data = bundle_dir(cfg.dataset, index)
    pool = negative_rows(data, train_rows, "train", per_kind=NEGATIVE_POOL_PER_KIND, seed=cfg.seed,
                         window=row_window(train_rows))
    log.info("negatives of the training part of %s: %s", data, dict(Counter(r["kind"] for r in pool)))
    return pool


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def process_share(batch: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Rows of one global batch that process `rank` of `world` trains on: every world-th row. A
    final batch with fewer rows than processes repeats rows so that no process is left empty
    (an empty process would stall DDP's gradient all-reduce)."""
    if len(batch) >= world:
        return batch[rank::world]
    return batch[[rank % len(batch)]]


class Batches:
    """Collates rows into model batches with the processor.

    With an `EvidenceSampler` (retrieval): `augment` batches (training) are diverged, retrieved
    and turned into copying tasks afresh at every step, some examples replaced by negatives
    (cfg.negative_rate; no source class: IGNORE_INDEX), seeded by (seed, key) so a resumed run
    replays them; other batches (validation) carry the candidates of their own sequence, found
    once. `decision_mask`: the batches carry the processor's decision_mask (the loss weighs the
    deciding words: TrainConfig.decision_weight != 1)."""

    def __init__(self, processor: LlamaDNAProcessor, rows: list[dict], labels: list[str],
                 device: torch.device | str = "cpu", sampler=None, augment: bool = False, seed: int = 0,
                 decision_mask: bool = False):
        self.processor, self.device = processor, torch.device(device)
        self.sampler, self.augment, self.seed = sampler, augment, seed
        self.decision_mask = decision_mask
        self.rows = sampler.plain(rows) if sampler is not None and not augment else rows
        self.class_index = {lab: i for i, lab in enumerate(labels)}

    def __call__(self, idx, key: tuple[int, ...] = ()) -> dict[str, torch.Tensor]:
        rows = [self.rows[i] for i in idx]
        targets = [r["Annotation"] for r in rows]
        if self.sampler is not None and self.augment:
            rows, targets = self.sampler.train_batch(rows, np.random.default_rng([self.seed, 7, *key]))
        # a negative has no source class: IGNORE_INDEX, which the class loss leaves out
        ids = [IGNORE_INDEX if r.get("Dataset") is None else self.class_index[r["Dataset"]] for r in rows]
        b = self.processor(rows, targets=targets, class_ids=ids, decision_mask=self.decision_mask)
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in b.items()}


# ------------------------------------------------------------------------------------ building


def _text_corpus(rows: list[dict], mode: str, sampler=None) -> list[str]:
    """What the text tokenizer is trained on: the train rows' sentences and prompts, and with
    retrieval the evidence wording of every gene of the training index and example sentences and
    evidence of the other outcomes (intergenic, repeat, similar, none)."""
    from llamadna.model.processing import evidence_text, metadata_text, splash_text

    out = []
    for r in rows:
        out.append(r["Annotation"])
        out.append(f"DNA: {splash_text(r)}. Annotation:")
        if mode == "seed-faithful":
            out.append(metadata_text(r))
    if sampler is not None:
        from llamadna.train.evidence_sampler import example_candidate

        sentences, evidence = sampler.outcome_examples()  # the other outcomes' words
        out += sentences + [evidence_text(c) for c in evidence]
        out += [evidence_text([example_candidate(g, "gene", 1.0, 1.0, 1)]) for g in sampler.genes]
    return out


def _pretrain_texts(rows: list[dict], sampler=None) -> list[str]:
    """The tiny LLM's stage-1 text: the train rows' sentences, and with retrieval the sentence of
    every gene of the training index (under each source label in turn) and example sentences of
    the other outcomes (`EvidenceSampler.outcome_examples`)."""
    from llamadna.data.template import annotation_sentence

    out = [r["Annotation"] for r in rows]
    if sampler is not None:
        labels = sorted({r["Dataset"] for r in rows})
        out += [annotation_sentence(g["chrom"], g["gene"], g["description"], g["transcript_type"],
                                    g["phenotype"], labels[i % len(labels)])
                for i, g in enumerate(sampler.genes)]
        out += sampler.outcome_examples()[0]
    return out


def pretrain_tiny_llm(model, tok, texts: list[str], steps: int, lr: float, seed: int,
                      batch_size: int = 16, progress: Progress = no_progress) -> list[float]:
    """Stage 1 of the tiny preset: train the small Llama as a language model on the training
    split's annotation text (full weights), as Llama-2 was pretrained before being adapted."""
    torch.manual_seed(seed)
    ids = [[tok.bos_token_id] + tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
           for t in texts]
    # AdamW at torch's default weight decay; 20 warm-up steps times a linear decay to 5 %
    opt, sched = adamw_with_schedule(model.parameters(), lr, warmup_steps=20, total_steps=steps,
                                     warmup_offset=1, overlap=True, min_factor=0.05)
    rng = np.random.default_rng([seed, 1])
    losses = []
    model.train()
    for step in range(steps):
        batch = [ids[i] for i in rng.choice(len(ids), min(batch_size, len(ids)), replace=False)]
        T = max(len(x) for x in batch)
        x = torch.tensor([b + [tok.pad_token_id] * (T - len(b)) for b in batch])
        m = torch.tensor([[1] * len(b) + [0] * (T - len(b)) for b in batch])
        labels = x.masked_fill(m == 0, -100)
        loss = model(input_ids=x, attention_mask=m, labels=labels).loss
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(loss.item())
        progress(f"pretraining the tiny LLM on train text: loss {losses[-1]:.3f}", step + 1, steps)
    return losses


def build_model(cfg: TrainConfig, train_rows: list[dict], labels: list[str],
                progress: Progress = no_progress,
                sampler=None) -> tuple[LlamaDNAForAnnotation, LlamaDNAProcessor, dict]:
    """The model for a fresh run (deterministic for cfg.seed), its processor and what building
    it measured; `sampler`: the training index's evidence (`train.evidence_sampler.EvidenceSampler`)
    with retrieval."""
    torch.manual_seed(cfg.seed)
    info: dict = {}
    overrides = dict(
        projector_type=cfg.projector_type, encoder_training=cfg.encoder_training, lora_r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, cls_loss_weight=cfg.cls_loss_weight,
        decision_weight=cfg.decision_weight, llm_training=cfg.llm_mode, copy_head=cfg.copy_mode,
    )
    prompt = dict(prompt_mode=cfg.prompt_mode, use_dna=cfg.use_dna, use_splash=cfg.use_splash,
                  retrieval=cfg.index is not None, evidence_k=cfg.evidence_k,
                  index=str(Path(cfg.index).resolve()) if cfg.index else None)
    if cfg.preset != "tiny":
        model, processor = build_full(cfg.encoder, cfg.llm, labels, overrides, prompt,
                                      quantization=cfg.llm_quantization, bf16=cfg.bf16,
                                      gradient_checkpointing=cfg.gradient_checkpointing)
        return model, processor, info
    shape = TinyLLMShape(**{k: v for k, v in (("hidden_size", cfg.llm_hidden_size),
                                              ("num_hidden_layers", cfg.llm_layers)) if v is not None})
    parts = tiny_parts(cfg.encoder, _text_corpus(train_rows, cfg.prompt_mode, sampler), cfg.text_vocab_size,
                       shape)
    # stage 1: the small Llama learns the training text (full weights) before it is joined
    losses = pretrain_tiny_llm(parts.llm, parts.text_tokenizer, _pretrain_texts(train_rows, sampler),
                               cfg.llm_pretrain_steps, cfg.llm_pretrain_lr, cfg.seed, progress=progress)
    info["llm_pretrain_loss"] = {"first": losses[0], "last": losses[-1]} if losses else {}
    model, processor = build_tiny(parts, labels, overrides, prompt)
    return model, processor, info


# ------------------------------------------------------------------------------------ checkpoints


def rng_states() -> dict[str, torch.Tensor]:
    """This process's RNG states: torch CPU, and CUDA when in use (dropout on the GPU)."""
    out = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state()
    return out


def set_rng_states(states: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


def save_checkpoint(run_dir: Path, weights: dict[str, torch.Tensor], opt_state: dict, sched,
                    state: dict, keep: int, rng: dict[str, torch.Tensor] | None = None) -> Path:
    """Atomic: written into a temporary folder, renamed into place, older ones pruned.
    `weights`/`opt_state`: the full trainable weights and optimizer state (`trainable_state`,
    `optimizer_state`). `rng`: the RNG states to keep (default: this process's, as
    `torch`/`cuda`; data-parallel runs pass every process's, as `torch.<rank>`/`cuda.<rank>`)."""
    final = run_dir / f"{CKPT_PREFIX}{state['step']:07d}"
    with atomic_dir(final) as tmp:  # usual permissions too (safetensors writes 0600)
        save_file(weights, tmp / "trainable.safetensors")
        save_file(rng if rng is not None else rng_states(), tmp / "rng.safetensors")
        torch.save(opt_state, tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({**state, "scheduler": sched.state_dict()}, indent=1))
    for old in sorted(run_dir.glob(f"{CKPT_PREFIX}*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = sorted(p for p in run_dir.glob(f"{CKPT_PREFIX}*") if (p / "state.json").exists())
    return ckpts[-1] if ckpts else None


def load_checkpoint(ckpt: Path, model, opt, sched, rank: int | None = None) -> dict:
    """Restore weights, optimizer, scheduler and RNG; `rank` picks that process's RNG states
    from a data-parallel checkpoint. The model and optimizer may be sharded (FSDP): every
    process then calls this."""
    rng = load_file(ckpt / "rng.safetensors")
    if rank is not None:
        if f"torch.{rank}" not in rng:
            raise ConfigError(f"{ckpt}: no RNG state for process {rank}; resume with the number of "
                             "processes the run was started with")
        rng = {k.split(".")[0]: v for k, v in rng.items() if k.endswith(f".{rank}")}
    elif "torch" not in rng:
        raise ConfigError(f"{ckpt}: written by a data-parallel run; resume it with `accelerate launch` "
                         "and the same number of processes")
    load_trainable(model, load_file(ckpt / "trainable.safetensors"), origin=str(ckpt))
    load_optimizer_state(opt, torch.load(ckpt / "optimizer.pt", weights_only=True))
    state = json.loads((ckpt / "state.json").read_text())
    sched.load_state_dict(state.pop("scheduler"))
    set_rng_states(rng)
    return state


# ------------------------------------------------------------------------------------ loop


@torch.no_grad()
def evaluate_loss(model, collate: Batches, n: int, batch_size: int) -> dict:
    model.eval()
    tot = {"loss": 0.0, "lm_loss": 0.0, "cls_loss": 0.0, "correct": 0}
    for i in range(0, n, batch_size):
        b = collate(range(i, min(n, i + batch_size)))
        out = model(**b)
        k = len(b["class_labels"])
        tot["loss"] += float(out.loss) * k
        tot["lm_loss"] += float(out.lm_loss) * k
        tot["cls_loss"] += float(out.cls_loss) * k
        tot["correct"] += int((out.cls_logits.argmax(-1) == b["class_labels"]).sum())
    model.train()
    return {"val_loss": tot["loss"] / n, "val_lm_loss": tot["lm_loss"] / n,
            "val_cls_loss": tot["cls_loss"] / n, "val_cls_accuracy": tot["correct"] / n}


class Trainer:
    """One training run, step by step; `train()` calls the steps in this order:

    check_launch    the process layout (one process, DDP or FSDP) is one we can run
    load_data       train/val rows of the split (seeded subsamples for quick runs)
    build_or_resume a fresh model, published to MODEL/base/ (stage 1 done), or base/ on --resume
    prepare         sharding, optimizer, schedule, accelerate; the last checkpoint on --resume
    fit             epochs of steps; checkpoints; validation and early stopping at epoch ends
    finish          replica check, summary, MODEL/ = the best-validation weights
    """

    def __init__(self, cfg: TrainConfig, progress: Progress = no_progress):
        from accelerate import Accelerator, DistributedDataParallelKwargs

        self.cfg, self.t0 = cfg, time.perf_counter()
        self.out = Path(cfg.out)
        self.run_dir = self.out / "checkpoints"
        self.base_dir = self.out / "base"  # the freshly built model, so resume need not rebuild it
        # without DNA the projector gets no gradient: DDP must be told some parameters go unused
        ddp = DistributedDataParallelKwargs(find_unused_parameters=not cfg.use_dna)
        self.accelerator = Accelerator(mixed_precision="bf16" if cfg.bf16 else "no",
                                       kwargs_handlers=[ddp])
        acc = self.accelerator
        self.world, self.rank, self.main = acc.num_processes, acc.process_index, acc.is_main_process
        self.progress = progress if self.main else no_progress
        self.state = {"step": 0, "epoch": 0, "batch": 0, "best_val": None, "bad_epochs": 0,
                      "history": [], "stopped_early": False}

    def check_launch(self) -> None:
        from accelerate import DistributedType

        if self.world == 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # torchrun without a GPU: accelerate would run N independent copies writing to one OUT
            raise ConfigError(f"launched as {os.environ['WORLD_SIZE']} processes but accelerate found "
                              "no distributed device; on CPUs set ACCELERATE_USE_CPU=true")
        if self.accelerator.distributed_type == DistributedType.FSDP:
            raise ConfigError("accelerate's own FSDP wrapping is not used: launch without --use_fsdp "
                              "(e.g. accelerate launch --multi_gpu) and pass --fsdp to llamadna train")
        if self.cfg.fsdp and self.world == 1:
            raise ConfigError("--fsdp shards the model over several processes: start them with "
                              "`accelerate launch --multi_gpu --num_processes N` or torchrun")

    def load_data(self) -> None:
        cfg = self.cfg
        train_rows, val_rows, self.labels = load_split(cfg.dataset, cfg.split)
        self.sampler = evidence_sampler(cfg, train_rows) if cfg.index else None
        self.train_rows = subsample(train_rows, cfg.max_train_rows, cfg.seed)
        self.val_rows = subsample(val_rows, cfg.max_val_rows, cfg.seed)

    def build_or_resume(self, resume: bool) -> None:
        """A fresh model (deterministic for the seed), or the one an interrupted run built."""
        cfg, out = self.cfg, self.out
        self.ckpt = latest_checkpoint(self.run_dir) if resume else None
        if resume and (self.base_dir / "config.json").exists():
            _check_same_settings(out / "train_config.json", cfg)
            self.model = LlamaDNAForAnnotation.from_pretrained(self.base_dir)
            self.processor = LlamaDNAProcessor.from_pretrained(self.base_dir)
            self.info = json.loads((self.base_dir / "build_info.json").read_text())
            return
        self.accelerator.wait_for_everyone()  # every process has looked for a checkpoint
        if self.main and out.exists() and any(out.iterdir()) and not resume:
            for old in (self.run_dir, self.base_dir, out / ".best"):
                shutil.rmtree(old, ignore_errors=True)
        # every process builds the same model (seeded); DDP also broadcasts rank 0's weights
        self.model, self.processor, self.info = build_model(cfg, self.train_rows, self.labels, self.progress,
                                                            self.sampler)
        if self.main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1))
            with atomic_dir(self.base_dir) as tmp:
                self.model.save_pretrained(tmp)
                self.processor.save_pretrained(tmp)
                (tmp / "build_info.json").write_text(json.dumps(self.info))
        self.ckpt = None

    def prepare(self) -> None:
        """Batches, step counts, sharding (FSDP), optimizer and schedule, accelerate; then the
        dropout stream and, on resume, everything the last checkpoint holds."""
        cfg, acc = self.cfg, self.accelerator
        processor = self.processor
        weighted = cfg.decision_weight != 1  # else the loss never reads the mask: not built
        self.collate = Batches(processor, self.train_rows, self.labels, acc.device, self.sampler,
                               augment=True, seed=cfg.seed, decision_mask=weighted)
        self.val_collate = Batches(processor, self.val_rows, self.labels, acc.device, self.sampler,
                                   decision_mask=weighted)
        self.global_batch = cfg.batch_size * self.world
        self.steps_per_epoch = math.ceil(len(self.train_rows) / self.global_batch)
        self.total = self.steps_per_epoch * cfg.epochs
        if cfg.max_steps is not None:
            self.total = min(self.total, cfg.max_steps)
        if cfg.fsdp:  # shard in place (FSDP2), then build the optimizer on the sharded parameters
            shard_model(self.model, acc.device, self.world, bf16=cfg.bf16)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt, self.sched = adamw_with_schedule(params, cfg.lr, weight_decay=cfg.weight_decay,
                                                   warmup_steps=min(cfg.warmup_steps, self.total),
                                                   total_steps=self.total)
        if not cfg.fsdp:
            self.model, self.opt = acc.prepare(self.model, self.opt)
        self.raw = acc.unwrap_model(self.model)
        torch.manual_seed(cfg.seed + 1 + self.rank)  # dropout stream of the fine-tuning stage
        if self.ckpt is not None:
            self.state = load_checkpoint(self.ckpt, self.raw, self.opt, self.sched,
                                         self.rank if self.world > 1 else None)
            log.info("resumed from %s (step %d)", self.ckpt.name, self.state["step"])

    # -------------------------------------------------------------------------------- the loop
    def _done(self) -> bool:
        return self.state["step"] >= self.total or self.state["stopped_early"]

    def fit(self) -> None:
        cfg, state = self.cfg, self.state
        self.model.train()
        while not self._done() and state["epoch"] < cfg.epochs:
            batches = epoch_batches(len(self.train_rows), self.global_batch, cfg.seed, state["epoch"])
            for bi in range(state["batch"], len(batches)):
                self._step(batches[bi])
                state["batch"] = bi + 1
                if state["step"] >= self.total:
                    break
                if cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0:
                    self._checkpoint()
            epoch_end = state["batch"] >= len(batches)
            if epoch_end or state["step"] >= self.total:
                self._validate()
                if epoch_end:
                    state["epoch"] += 1
                    state["batch"] = 0
                self._checkpoint()

    def _step(self, batch: np.ndarray) -> None:
        """One optimizer step on this process's share of a global batch."""
        acc, state = self.accelerator, self.state
        share = process_share(batch, self.rank, self.world)
        loss = self.model(**self.collate(share, key=(state["epoch"], state["step"], self.rank))).loss
        acc.backward(loss)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad()
        state["step"] += 1
        mean_loss = acc.reduce(loss.detach(), "mean").item() if self.world > 1 else loss.item()
        state["history"].append(round(mean_loss, 5))
        self.progress(f"fine-tuning: loss {mean_loss:.3f}, epoch {state['epoch'] + 1}",
                      state["step"], self.total)

    def _validate(self) -> None:
        """Validation loss on the same weights in every process (the same early-stopping call);
        the best weights so far are kept in MODEL/.best."""
        state, cfg = self.state, self.cfg
        ev = evaluate_loss(self.raw, self.val_collate, len(self.val_rows), cfg.batch_size) \
            if self.val_rows else {}
        ev["epoch"], ev["step"] = state["epoch"] + 1, state["step"]
        state.setdefault("val", []).append(ev)
        log.info("epoch %d: %s", ev["epoch"], {k: round(v, 4) for k, v in ev.items()
                                              if isinstance(v, float)})
        vl = ev.get("val_loss")
        if vl is None or self.sampler is not None:
            # with retrieval the validation genes are masked out of the index (never seen while
            # training), so validation measures the novel-gene case, whose loss rises as the model
            # learns to copy: it is reported, and the last weights are kept (no early stopping)
            return
        if state["best_val"] is None or vl < state["best_val"] - 1e-4:
            state["best_val"], state["bad_epochs"] = vl, 0
            weights = trainable_state(self.raw)  # a collective under FSDP
            if self.main:
                _save_best(weights, self.out / ".best", ev)
        else:
            state["bad_epochs"] += 1
            if state["bad_epochs"] >= cfg.patience:
                state["stopped_early"] = True

    def _checkpoint(self) -> None:
        acc = self.accelerator
        rng = rng_states()
        if self.world > 1:  # every process's RNG states, gathered to the main one
            rng = {f"{k}.{r}": v.cpu() for k, t in rng.items()
                   for r, v in enumerate(acc.gather(t.to(acc.device)[None]))}
        weights, opt_state = trainable_state(self.raw), optimizer_state(self.opt)  # collectives (FSDP)
        if self.main:
            save_checkpoint(self.run_dir, weights, opt_state, self.sched, self.state,
                            self.cfg.keep_checkpoints, rng)

    # -------------------------------------------------------------------------------- the end
    def finish(self) -> dict:
        """Check the replicas, write MODEL (best-validation weights, else the last) and the summary
        (main process); every process returns the summary."""
        cfg, raw, state = self.cfg, self.raw, self.state
        if self.world > 1 and not cfg.fsdp:
            _check_replicas_agree(self.accelerator, raw)
        last = None
        if cfg.fsdp:
            last = trainable_state(raw)  # gathered by every process
            raw.reshard()  # the root unit stays gathered after a forward pass; count what is held
        self.accelerator.wait_for_everyone()
        summary = {
            "config": asdict(cfg), "labels": self.labels, "train_rows": len(self.train_rows),
            "val_rows": len(self.val_rows), "processes": self.world,
            "rows_per_step": self.global_batch,
            "parallelism": "fsdp" if cfg.fsdp else "ddp" if self.world > 1 else "none",
            "steps": state["step"], "epochs_done": state["epoch"],
            "stopped_early": state["stopped_early"], "best_val_loss": state["best_val"],
            "val": state.get("val", []), "losses": state["history"],
            "seconds": round(time.perf_counter() - self.t0, 1),
            "trainable_parameters": sum(p.numel() for p in raw.parameters() if p.requires_grad),
            "total_parameters": sum(p.numel() for p in raw.parameters()),
            # what this process holds: all of them under DDP, about 1/N of them under FSDP
            "parameters_in_process": sum(local_numel(p) for p in raw.parameters()), **self.info,
            **provenance(),
        }
        if not self.main:
            return summary
        best = self.out / ".best" / "trainable.safetensors"
        # the sharded model cannot be saved whole: rebuild it unsharded from base/
        final = LlamaDNAForAnnotation.from_pretrained(self.base_dir) if cfg.fsdp else raw
        if best.exists():
            load_trainable(final, load_file(best), origin=str(best))
        elif cfg.fsdp:
            load_trainable(final, last, origin="the final trained weights")
        _publish(final, self.processor, self.out)
        (self.out / "train_summary.json").write_text(json.dumps(summary, indent=1))
        return summary


def train(cfg: TrainConfig, resume: bool = False, progress: Progress = no_progress) -> dict:
    """Train and write MODEL (= cfg.out), a finished model: with an index (`cfg.index`) its
    outcome confidence is calibrated too (MODEL/calibration.json, `train.calibrate`; the summary's
    "calibration": validation annotations and right ones per truth kind). Returns the run
    summary (also MODEL/train_summary.json). `progress(description, step, total)` reports the
    stages (main process only)."""
    trainer = Trainer(cfg, progress)
    trainer.check_launch()
    trainer.load_data()
    trainer.build_or_resume(resume)
    trainer.prepare()
    trainer.fit()
    summary = trainer.finish()
    if cfg.index is not None and trainer.main:
        # a retrieval model's outcome confidence, fitted on validation rows and negatives
        # (train.calibrate): the model read back from MODEL, as every later user reads it
        from llamadna.train.calibrate import fit_calibration

        fitted = fit_calibration(cfg.out, cfg)
        if fitted is not None:
            summary["calibration"] = fitted[1]
            (Path(cfg.out) / "train_summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _check_same_settings(saved: Path, cfg: TrainConfig) -> None:
    """--resume continues a run only with the settings it was started with; name the ones that
    differ."""
    old = json.loads(saved.read_text())
    new = asdict(cfg)
    diff = [f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]
    if diff:
        raise ConfigError(f"{saved.parent}: --resume with other settings than the interrupted run: "
                          + ", ".join(diff))


def _check_replicas_agree(accelerator, model) -> None:
    """Data parallel: the trainable weights must be identical on every process after training."""
    sums = torch.stack([p.detach().double().sum() for p in model.parameters() if p.requires_grad])
    every = accelerator.gather(sums.to(accelerator.device)[None]).cpu()
    if not torch.allclose(every, every[:1].expand_as(every), rtol=1e-6, atol=1e-8):
        raise RuntimeError("data-parallel processes ended with different trainable weights")


def _save_best(weights: dict[str, torch.Tensor], path: Path, ev: dict) -> None:
    with atomic_dir(path) as tmp:
        save_file(weights, tmp / "trainable.safetensors")
        (tmp / "val.json").write_text(json.dumps(ev))


def _publish(model, processor: LlamaDNAProcessor, out: Path) -> None:
    """Write the model files into MODEL atomically per file (config, weights, tokenizers)."""
    tmp = out / ".tmp-model"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    processor.save_config(tmp, home=out)  # its index path relative to MODEL, where it will be read
    for item in tmp.iterdir():
        dest = out / item.name
        if dest.is_dir():
            shutil.rmtree(dest)
        os.replace(item, dest)
    tmp.rmdir()
