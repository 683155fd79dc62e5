"""Fine-tune Llama-DNA on the dataset (accelerate: one process, or `accelerate launch` for DDP).

    dataset.parquet (split column) -> train / val rows
    tiny preset: text tokenizer + tiny Llama pretrained on the train text (stage 1)
    model = encoder (frozen) + projector + LLM (LoRA) + class head
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
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from safetensors.torch import load_file, save_file

from llamadna.constants import DEFAULT_SOURCES, SPLIT_COLUMNS
from llamadna.errors import InputError
from llamadna.model.modeling import LlamaDNAForAnnotation
from llamadna.model.presets import PRESETS, TinyLLMShape, make_config, tiny_llm_config
from llamadna.model.processing import LlamaDNAProcessor
from llamadna.train.sharding import (
    load_optimizer_state,
    load_trainable,
    local_numel,
    optimizer_state,
    shard_model,
    trainable_state,
)

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int, dict], None]  # (description, done, total, info)
CKPT_PREFIX = "checkpoint-"


@dataclass
class TrainConfig:
    dataset: str
    out: str
    split: str = "split_gene"
    preset: str = "tiny"
    encoder: str | None = None  # tiny: `pretrain-encoder` output; full: DNABERT-2 directory
    llm: str | None = None  # full: Llama-2-7b-hf directory
    prompt_mode: str = "leak-free"
    use_dna: bool = True  # False = the no-DNA baseline: same training, prompt only
    epochs: int = 3
    max_steps: int | None = None  # stop after this many optimizer steps (over all epochs)
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    seed: int = 0
    checkpoint_every: int = 50  # steps; 0 = only at epoch ends
    keep_checkpoints: int = 2
    patience: int = 2  # epochs without val-loss improvement before stopping
    max_train_rows: int | None = None  # subsample (seeded) for quick runs
    max_val_rows: int | None = 256
    projector_type: str = "mlp2x_gelu"
    encoder_training: str = "frozen"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    cls_loss_weight: float = 0.5
    # tiny preset: the text tokenizer and the LLM's own text pretraining (stage 1)
    text_vocab_size: int = 2048
    llm_pretrain_steps: int = 300
    llm_pretrain_lr: float = 3e-3
    llm_hidden_size: int = 192
    llm_layers: int = 4
    # full preset
    bf16: bool = False
    gradient_checkpointing: bool = False
    load_in_8bit: bool = False
    load_in_4bit: bool = False
    fsdp: bool = False  # shard the model over the processes (FSDP2) instead of replicating it

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"--preset must be one of {PRESETS}, got {self.preset!r}")
        if self.split not in SPLIT_COLUMNS:
            raise ValueError(f"--split must be one of {SPLIT_COLUMNS}, got {self.split!r}")
        if self.preset == "full" and not (self.encoder and self.llm):
            raise ValueError("--preset full needs --encoder DNABERT2_DIR and --llm LLAMA_DIR")
        if self.preset == "tiny" and not self.encoder:
            raise ValueError("--preset tiny needs --encoder DIR from `llamadna pretrain-encoder`")
        if self.load_in_8bit and self.load_in_4bit:
            raise ValueError("--load-in-8bit and --load-in-4bit exclude each other")
        if self.llm_quantization and self.preset != "full":
            raise ValueError("--load-in-8bit/--load-in-4bit quantize a pretrained LLM: --preset full only")
        if self.fsdp and self.llm_quantization:
            raise ValueError("--fsdp does not shard 8/4-bit LLMs (bitsandbytes' packed weights); "
                             "use one or the other")

    @property
    def llm_quantization(self) -> str | None:
        return "8bit" if self.load_in_8bit else "4bit" if self.load_in_4bit else None


# ------------------------------------------------------------------------------------ data


def load_split(dataset: str | Path, split: str) -> tuple[list[dict], list[dict], list[str]]:
    """Train and val rows (dicts) of a split column, and the class labels of the dataset."""
    p = Path(dataset)
    p = p / "dataset.parquet" if p.is_dir() else p
    if not p.exists():
        raise InputError(p, "dataset not found (expected the output of `llamadna build-dataset`)")
    df = pl.read_parquet(p)
    if split not in df.columns or df[split].is_null().all():
        raise InputError(p, f"split column {split!r} is missing or empty")
    labels = [s for s in DEFAULT_SOURCES if s in set(df["Dataset"])]
    labels += sorted(set(df["Dataset"]) - set(labels))
    train = df.filter(pl.col(split) == "train").to_dicts()
    val = df.filter(pl.col(split) == "val").to_dicts()
    if not train:
        raise InputError(p, f"no training rows in {split!r}")
    return train, val, labels


def subsample(rows: list[dict], n: int | None, seed: int) -> list[dict]:
    if n is None or len(rows) <= n:
        return rows
    idx = np.sort(np.random.default_rng(seed).choice(len(rows), n, replace=False))
    return [rows[i] for i in idx]


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
    """Collates rows into model batches with the processor."""

    def __init__(self, processor: LlamaDNAProcessor, rows: list[dict], labels: list[str],
                 device: torch.device | str = "cpu"):
        self.processor, self.rows, self.device = processor, rows, torch.device(device)
        self.class_index = {lab: i for i, lab in enumerate(labels)}

    def __call__(self, idx) -> dict[str, torch.Tensor]:
        rows = [self.rows[i] for i in idx]
        b = self.processor(rows, targets=[r["Annotation"] for r in rows],
                           class_ids=[self.class_index[r["Dataset"]] for r in rows])
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in b.items()}


# ------------------------------------------------------------------------------------ building


def _text_corpus(rows: list[dict], mode: str) -> list[str]:
    """What the text tokenizer is trained on: the train rows' sentences and prompts."""
    from llamadna.model.processing import metadata_text, splash_text

    out = []
    for r in rows:
        out.append(r["Annotation"])
        out.append(f"DNA: {splash_text(r)}. Annotation:")
        if mode == "seed-faithful":
            out.append(metadata_text(r))
    return out


def pretrain_tiny_llm(model, tok, texts: list[str], steps: int, lr: float, seed: int,
                      batch_size: int = 16, progress: Progress | None = None) -> list[float]:
    """Stage 1 of the tiny preset: train the small Llama as a language model on the training
    split's annotation text (full weights), as Llama-2 was pretrained before being adapted."""
    torch.manual_seed(seed)
    ids = [[tok.bos_token_id] + tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
           for t in texts]
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    # 20 warm-up steps, then linear decay to 5 %
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * max(0.05, 1 - s / steps))
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
        if progress is not None:
            progress("pretraining the tiny LLM on train text", step + 1, steps, {"loss": losses[-1]})
    return losses


@contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def build_model(cfg: TrainConfig, train_rows: list[dict], labels: list[str],
                progress: Progress | None = None) -> tuple[LlamaDNAForAnnotation, dict]:
    """The model for a fresh run (deterministic for cfg.seed)."""
    from transformers import AutoModel, AutoTokenizer, LlamaForCausalLM

    torch.manual_seed(cfg.seed)
    info: dict = {}
    overrides = dict(
        projector_type=cfg.projector_type, encoder_training=cfg.encoder_training, lora_r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, cls_loss_weight=cfg.cls_loss_weight,
    )
    if cfg.preset == "tiny":
        from llamadna.model.tokenizers import train_text_tokenizer

        enc_dir = Path(cfg.encoder)
        if not (enc_dir / "config.json").exists():
            raise FileNotFoundError(f"{enc_dir}: no encoder here; run `llamadna pretrain-encoder` first")
        dna_tok = AutoTokenizer.from_pretrained(enc_dir)
        with _quiet_transformers():  # the saved pooler is not used: no load report for it
            encoder = AutoModel.from_pretrained(enc_dir, add_pooling_layer=False)
        text_tok = train_text_tokenizer(_text_corpus(train_rows, cfg.prompt_mode),
                                        vocab_size=cfg.text_vocab_size)
        shape = TinyLLMShape(hidden_size=cfg.llm_hidden_size, num_hidden_layers=cfg.llm_layers)
        llm = LlamaForCausalLM(tiny_llm_config(len(text_tok), text_tok, shape))
        losses = pretrain_tiny_llm(llm, text_tok, [r["Annotation"] for r in train_rows],
                                   cfg.llm_pretrain_steps, cfg.llm_pretrain_lr, cfg.seed,
                                   progress=progress)
        info["llm_pretrain_loss"] = {"first": losses[0], "last": losses[-1]} if losses else {}
        processor = LlamaDNAProcessor(dna_tok, text_tok, prompt_mode=cfg.prompt_mode,
                                      dna_chunk_tokens=encoder.config.max_position_embeddings,
                                      use_dna=cfg.use_dna)
        config = make_config(encoder.config, llm.config, processor, labels, **overrides)
        model = LlamaDNAForAnnotation(config, dna_encoder=encoder, language_model=llm)
    else:
        from llamadna.model.presets import check_local_dir, full_text_tokenizer

        check_local_dir(cfg.encoder, "DNABERT-2")
        text_tok = full_text_tokenizer(cfg.llm)
        dna_tok = AutoTokenizer.from_pretrained(cfg.encoder, trust_remote_code=True)
        processor = LlamaDNAProcessor(dna_tok, text_tok, prompt_mode=cfg.prompt_mode,
                                      use_dna=cfg.use_dna)
        config = make_config({"model_type": "bert"}, {"model_type": "llama"}, processor, labels,
                             dna_model_path=str(cfg.encoder), llm_path=str(cfg.llm),
                             llm_quantization=cfg.llm_quantization, **overrides)
        dtype = torch.bfloat16 if cfg.bf16 else None
        model = LlamaDNAForAnnotation.from_base(config, torch_dtype=dtype)
        if cfg.gradient_checkpointing:
            lm = model.language_model  # transformers 5 renamed the method
            (getattr(lm, "activation_checkpointing_enable", None) or lm.gradient_checkpointing_enable)()
    model.processor = processor
    model.set_trainable()
    return model, info


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
    tmp = run_dir / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(weights, tmp / "trainable.safetensors")
    save_file(rng if rng is not None else rng_states(), tmp / "rng.safetensors")
    torch.save(opt_state, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({**state, "scheduler": sched.state_dict()}, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
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
            raise ValueError(f"{ckpt}: no RNG state for process {rank}; resume with the number of "
                             "processes the run was started with")
        rng = {k.split(".")[0]: v for k, v in rng.items() if k.endswith(f".{rank}")}
    elif "torch" not in rng:
        raise ValueError(f"{ckpt}: written by a data-parallel run; resume it with `accelerate launch` "
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


def train(cfg: TrainConfig, resume: bool = False, progress: Progress | None = None) -> dict:
    """Train and write MODEL (= cfg.out). Returns the run summary (also MODEL/train_summary.json)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs, DistributedType
    from transformers import get_linear_schedule_with_warmup

    out = Path(cfg.out)
    run_dir = out / "checkpoints"
    base_dir = out / "base"  # the freshly built model (stage 1 done), so resume need not redo it
    # without DNA the projector gets no gradient: DDP must be told some parameters go unused
    ddp = DistributedDataParallelKwargs(find_unused_parameters=not cfg.use_dna)
    accelerator = Accelerator(mixed_precision="bf16" if cfg.bf16 else "no", kwargs_handlers=[ddp])
    world, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    if world == 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # torchrun without a GPU: accelerate would run N independent copies writing to one OUT
        raise RuntimeError(f"launched as {os.environ['WORLD_SIZE']} processes but accelerate found no "
                           "distributed device; on CPUs set ACCELERATE_USE_CPU=true")
    if accelerator.distributed_type == DistributedType.FSDP:
        raise RuntimeError("accelerate's own FSDP wrapping is not used: launch without --use_fsdp "
                           "(e.g. accelerate launch --multi_gpu) and pass --fsdp to llamadna train")
    if cfg.fsdp and world == 1:
        raise RuntimeError("--fsdp shards the model over several processes: start them with "
                           "`accelerate launch --multi_gpu --num_processes N` or torchrun")
    t0 = time.perf_counter()
    train_rows, val_rows, labels = load_split(cfg.dataset, cfg.split)
    train_rows = subsample(train_rows, cfg.max_train_rows, cfg.seed)
    val_rows = subsample(val_rows, cfg.max_val_rows, cfg.seed)

    ckpt = latest_checkpoint(run_dir) if resume else None
    if resume and (base_dir / "config.json").exists():
        model = LlamaDNAForAnnotation.from_pretrained(base_dir)
        info = json.loads((base_dir / "build_info.json").read_text())
        if json.loads((out / "train_config.json").read_text()) != asdict(cfg):
            raise ValueError(f"{out}: --resume with different settings than the interrupted run")
    else:
        accelerator.wait_for_everyone()  # every process has looked for a checkpoint
        if main and out.exists() and any(out.iterdir()) and not resume:
            for old in (run_dir, base_dir, out / ".best"):
                shutil.rmtree(old, ignore_errors=True)
        # every process builds the same model (seeded); DDP also broadcasts rank 0's weights
        model, info = build_model(cfg, train_rows, labels, progress if main else None)
        if main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1))
            tmp = out / ".tmp-base"
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(tmp)
            (tmp / "build_info.json").write_text(json.dumps(info))
            shutil.rmtree(base_dir, ignore_errors=True)
            os.replace(tmp, base_dir)
        ckpt = None
    processor = model.processor
    collate = Batches(processor, train_rows, labels, accelerator.device)
    val_collate = Batches(processor, val_rows, labels, accelerator.device)

    global_batch = cfg.batch_size * world
    steps_per_epoch = math.ceil(len(train_rows) / global_batch)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    if cfg.fsdp:  # shard in place (FSDP2), then build the optimizer on the sharded parameters
        shard_model(model, accelerator.device, world, bf16=cfg.bf16)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, min(cfg.warmup_steps, total), total)
    if not cfg.fsdp:
        model, opt = accelerator.prepare(model, opt)
    raw = accelerator.unwrap_model(model)

    state = {"step": 0, "epoch": 0, "batch": 0, "best_val": None, "bad_epochs": 0,
             "history": [], "stopped_early": False}
    torch.manual_seed(cfg.seed + 1 + rank)  # dropout stream of the fine-tuning stage
    if ckpt is not None:
        state = load_checkpoint(ckpt, raw, opt, sched, rank if world > 1 else None)
        log.info("resumed from %s (step %d)", ckpt.name, state["step"])

    def checkpoint() -> None:
        rng = rng_states()
        if world > 1:  # every process's RNG states, gathered to the main one
            rng = {f"{k}.{r}": v.cpu() for k, t in rng.items()
                   for r, v in enumerate(accelerator.gather(t.to(accelerator.device)[None]))}
        weights, opt_state = trainable_state(raw), optimizer_state(opt)  # collectives under FSDP
        if main:
            save_checkpoint(run_dir, weights, opt_state, sched, state, cfg.keep_checkpoints, rng)

    model.train()
    done = state["step"] >= total or state["stopped_early"]
    while not done and state["epoch"] < cfg.epochs:
        batches = epoch_batches(len(train_rows), global_batch, cfg.seed, state["epoch"])
        for bi in range(state["batch"], len(batches)):
            b = collate(process_share(batches[bi], rank, world))
            loss = model(**b).loss
            accelerator.backward(loss)
            opt.step()
            sched.step()
            opt.zero_grad()
            state["step"] += 1
            state["batch"] = bi + 1
            mean_loss = accelerator.reduce(loss.detach(), "mean").item() if world > 1 else loss.item()
            state["history"].append(round(mean_loss, 5))
            if progress is not None and main:
                progress("fine-tuning", state["step"], total,
                         {"loss": mean_loss, "epoch": state["epoch"] + 1})
            if state["step"] >= total:
                break
            if cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0:
                checkpoint()
        epoch_end = state["batch"] >= len(batches)
        if epoch_end or state["step"] >= total:
            # every process scores the whole val set on the same weights: same early-stopping call
            ev = evaluate_loss(raw, val_collate, len(val_rows), cfg.batch_size) if val_rows else {}
            ev["epoch"] = state["epoch"] + 1
            ev["step"] = state["step"]
            state.setdefault("val", []).append(ev)
            log.info("epoch %d: %s", ev["epoch"], {k: round(v, 4) for k, v in ev.items()
                                                  if isinstance(v, float)})
            vl = ev.get("val_loss")
            if vl is not None and (state["best_val"] is None or vl < state["best_val"] - 1e-4):
                state["best_val"], state["bad_epochs"] = vl, 0
                weights = trainable_state(raw)  # a collective under FSDP
                if main:
                    _save_best(weights, out / ".best", ev)
            elif vl is not None:
                state["bad_epochs"] += 1
                if state["bad_epochs"] >= cfg.patience:
                    state["stopped_early"] = True
            if epoch_end:
                state["epoch"] += 1
                state["batch"] = 0
            checkpoint()
        done = state["step"] >= total or state["stopped_early"]

    if world > 1 and not cfg.fsdp:
        _check_replicas_agree(accelerator, raw)
    last = None
    if cfg.fsdp:
        last = trainable_state(raw)  # gathered by every process
        raw.reshard()  # the root unit stays gathered after a forward pass; count what is held
    accelerator.wait_for_everyone()
    summary = {
        "config": asdict(cfg), "labels": labels, "train_rows": len(train_rows),
        "val_rows": len(val_rows), "processes": world, "rows_per_step": global_batch,
        "parallelism": "fsdp" if cfg.fsdp else "ddp" if world > 1 else "none",
        "steps": state["step"], "epochs_done": state["epoch"],
        "stopped_early": state["stopped_early"], "best_val_loss": state["best_val"],
        "val": state.get("val", []), "losses": state["history"],
        "seconds": round(time.perf_counter() - t0, 1),
        "trainable_parameters": sum(p.numel() for p in raw.parameters() if p.requires_grad),
        "total_parameters": sum(p.numel() for p in raw.parameters()),
        # what this process holds: all of them under DDP, about 1/N of them under FSDP
        "parameters_in_process": sum(local_numel(p) for p in raw.parameters()), **info,
    }
    if not main:
        return summary
    # MODEL = best-validation weights (the last ones without validation rows)
    best = out / ".best" / "trainable.safetensors"
    if cfg.fsdp:  # the sharded model cannot be saved whole: rebuild it unsharded from base/
        final = LlamaDNAForAnnotation.from_pretrained(base_dir)
        if best.exists():
            load_trainable(final, load_file(best), origin=str(best))
        else:
            load_trainable(final, last, origin="the final trained weights")
    else:
        final = raw
        if best.exists():
            load_trainable(final, load_file(best), origin=str(best))
    _publish(final, out)
    (out / "train_summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _check_replicas_agree(accelerator, model) -> None:
    """Data parallel: the trainable weights must be identical on every process after training."""
    sums = torch.stack([p.detach().double().sum() for p in model.parameters() if p.requires_grad])
    every = accelerator.gather(sums.to(accelerator.device)[None]).cpu()
    if not torch.allclose(every, every[:1].expand_as(every), rtol=1e-6, atol=1e-8):
        raise RuntimeError("data-parallel processes ended with different trainable weights")


def _save_best(weights: dict[str, torch.Tensor], path: Path, ev: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(weights, tmp / "trainable.safetensors")
    (tmp / "val.json").write_text(json.dumps(ev))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def _publish(model, out: Path) -> None:
    """Write the model files into MODEL atomically per file (config, weights, tokenizers)."""
    tmp = out / ".tmp-model"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for item in tmp.iterdir():
        dest = out / item.name
        if dest.is_dir():
            shutil.rmtree(dest)
        os.replace(item, dest)
    tmp.rmdir()
