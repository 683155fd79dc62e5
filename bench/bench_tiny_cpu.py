"""Tiny-preset CPU throughput: fine-tuning examples/s and annotation sequences/s (not in make test).

Uses a dataset and an encoder from `make demo` (demo_out/dataset, demo_out/encoder) or given
paths. Fine-tuning = the `train` loop's step (processor collation, encoder forward, LLM
forward/backward with LoRA, AdamW) on split_gene train rows, after the tiny LLM's text
pretraining (not timed). Annotation = `Annotator.annotate_rows` (class head + greedy generation of up to
96 tokens) on test rows. Goal: >= 20 sequences/s annotating on 2 cores.

    .venv/bin/python bench/bench_tiny_cpu.py [--dataset demo_out/dataset] [--encoder demo_out/encoder]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from llamadna.annotate import Annotator, InferenceConfig
from llamadna.train.config import TrainConfig
from llamadna.train.train import Batches, build_model, epoch_batches, load_split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="demo_out/dataset")
    ap.add_argument("--encoder", default="demo_out/encoder")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--annotate-rows", type=int, default=256)
    args = ap.parse_args()
    cfg = TrainConfig(dataset=args.dataset, out="/tmp/unused", encoder=args.encoder,
                      llm_pretrain_steps=50, batch_size=args.batch_size)
    train_rows, val_rows, labels = load_split(cfg.dataset, cfg.split)
    model, processor, _ = build_model(cfg, train_rows, labels)
    collate = Batches(processor, train_rows, labels)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batches = epoch_batches(len(train_rows), cfg.batch_size, 0, 0)
    model.train()

    def step(b):
        loss = model(**collate(b)).loss
        loss.backward()
        opt.step()
        opt.zero_grad()

    step(batches[0])
    t0 = time.perf_counter()
    for b in batches[1 : 1 + args.steps]:
        step(b)
    t_train = time.perf_counter() - t0
    n_ex = sum(len(b) for b in batches[1 : 1 + args.steps])
    res = {"torch_threads": torch.get_num_threads(), "train_steps": args.steps,
           "train_batch": args.batch_size, "train_examples_per_s": round(n_ex / t_train, 1)}

    model.eval()
    import polars as pl

    df = pl.read_parquet(f"{args.dataset}/dataset.parquet").filter(pl.col("split_gene") == "test")
    rows = df.head(args.annotate_rows).to_dicts()
    for bs in (16, 32):
        annotator = Annotator(model, processor, config=InferenceConfig(batch_size=bs))
        annotator.annotate_rows(rows[:bs])  # warm-up
        t0 = time.perf_counter()
        preds = annotator.annotate_rows(rows)
        dt = time.perf_counter() - t0
        res[f"annotate_seq_per_s_batch{bs}"] = round(len(preds) / dt, 1)
    res["annotate_rows"] = len(rows)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
