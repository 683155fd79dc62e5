"""DDP against FSDP on CPU processes: memory each process holds, and step time (not in make test).

Run as the workers of torchrun (one run per mode):

    ACCELERATE_USE_CPU=true OMP_NUM_THREADS=1 .venv/bin/python -m torch.distributed.run \
        --nproc_per_node 2 bench/bench_parallel_cpu.py --mode fsdp [--mode-ddp: --mode ddp]

Each process builds the same model the way `llamadna train --preset full` does (a DNA encoder
from `pretrain-encoder`, default demo_out/encoder; a `LlamaForCausalLM` with random weights of
--hidden/--layers written once to --llm-dir; LoRA r=16 on q/v), then either wraps it for DDP
(accelerate) or shards it (`llamadna.train.sharding.shard_model`), and times --steps training
steps of --batch-size rows per process from the dataset (default demo_out/dataset). Reported
per process: parameter elements held, resident memory (VmRSS) after loading, after
wrapping/sharding and after the steps, and seconds per step.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import torch


def rss_mb() -> float:
    """Resident memory after returning freed heap pages to the system (glibc malloc_trim), so
    that memory the allocator keeps from freed tensors is not counted as held."""
    import ctypes

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_llm_dir(path: Path, dataset: str, hidden: int, layers: int) -> None:
    """A Llama-format directory with random weights and a tokenizer trained on the dataset text."""
    import polars as pl
    from transformers import LlamaForCausalLM

    from llamadna.model.presets import TinyLLMShape, tiny_llm_config
    from llamadna.model.tokenizers import train_text_tokenizer

    if (path / "config.json").exists():
        return
    df = pl.read_parquet(Path(dataset) / "dataset.parquet")
    tok = train_text_tokenizer(list(df["Annotation"]), vocab_size=2048)
    torch.manual_seed(0)
    shape = TinyLLMShape(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
                         intermediate_size=int(hidden * 8 / 3) // 64 * 64)
    llm = LlamaForCausalLM(tiny_llm_config(len(tok), tok, shape))
    tmp = path.with_name(path.name + ".tmp")
    llm.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(path)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("ddp", "fsdp"), required=True)
    ap.add_argument("--dataset", default="demo_out/dataset")
    ap.add_argument("--encoder", default="demo_out/encoder")
    ap.add_argument("--llm-dir", default="/tmp/llamadna-bench-llm")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=2)
    return ap.parse_args()


def wrap(model, cfg, acc, res: dict):
    """Shard (FSDP) or wrap (DDP) the model, and its optimizer; records memory and elements held.
    Returns (model, optimizer, the unwrapped model)."""
    from llamadna.train.optim import adamw_with_schedule
    from llamadna.train.sharding import local_numel, shard_model

    if cfg.fsdp:
        shard_model(model, acc.device, acc.num_processes)
    params = [p for p in model.parameters() if p.requires_grad]
    opt, _ = adamw_with_schedule(params, 1e-4)
    if not cfg.fsdp:
        model, opt = acc.prepare(model, opt)
    gc.collect()
    res["rss_wrapped_mb"] = rss_mb()
    raw = acc.unwrap_model(model)
    res["elements_held"] = sum(local_numel(p) for p in raw.parameters())
    res["elements_total"] = sum(p.numel() for p in raw.parameters())
    return model, opt, raw


def time_steps(model, opt, acc, collate, batches, steps: int) -> list[float]:
    """Seconds of each of the first steps + 1 steps (this process's rows of each batch)."""
    world, rank = acc.num_processes, acc.process_index
    model.train()
    times = []
    for b in batches[: steps + 1]:
        t0 = time.perf_counter()
        loss = model(**collate(b[rank::world])).loss
        acc.backward(loss)
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    args = parse_args()

    from accelerate import Accelerator

    from llamadna.train.config import TrainConfig
    from llamadna.train.train import Batches, build_model, epoch_batches, load_split

    acc = Accelerator()
    world = acc.num_processes
    if acc.is_main_process:
        make_llm_dir(Path(args.llm_dir), args.dataset, args.hidden, args.layers)
    acc.wait_for_everyone()
    cfg = TrainConfig(dataset=args.dataset, out="/tmp/unused", preset="full", encoder=args.encoder,
                      llm=args.llm_dir, batch_size=args.batch_size, fsdp=args.mode == "fsdp")
    train_rows, _, labels = load_split(cfg.dataset, cfg.split)
    model, processor, _ = build_model(cfg, train_rows, labels)
    gc.collect()
    res = {"rss_loaded_mb": rss_mb()}
    model, opt, raw = wrap(model, cfg, acc, res)
    collate = Batches(processor, train_rows, labels, acc.device)
    batches = epoch_batches(len(train_rows), args.batch_size * world, 0, 0)
    times = time_steps(model, opt, acc, collate, batches, args.steps)
    gc.collect()
    res["rss_trained_mb"] = rss_mb()
    res["s_per_step"] = sum(times[1:]) / max(1, len(times) - 1)  # the first step is a warm-up
    every = acc.gather(torch.tensor([[res[k] for k in sorted(res)]], dtype=torch.float64))
    if acc.is_main_process:
        out = {"mode": args.mode, "processes": world, "hidden": args.hidden, "layers": args.layers,
               "steps": args.steps, "rows_per_process": args.batch_size,
               "per_process": [dict(zip(sorted(res), [round(float(v), 3) for v in row]))
                               for row in every]}
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
