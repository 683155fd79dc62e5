"""Reference index and retriever on the bundle (issue 13; not run by `make test`).

Builds the index (`llamadna index` settings, variants = the dataset's split_gene training rows)
unless `--index` exists, then, on the split_gene test windows of `--dataset` (nested mutations
of each row at every `--rates` level, `evaluate.divergence.mutate_nested`) and on the mito
benchmark (per species), measures recall@1 and recall@4 of the right gene (the row's gene name;
the benchmark's human ortholog) for the hybrid retriever and each half alone, and recall of the
gene that blastn and the sensitive minimap2 lookups (`evaluate.baselines.ReferenceLookup`) name.
"hybrid_unaligned" is the hybrid embedding only the queries that align poorly (`embed_when`).
Speed: queries per wall second on this machine (all CPUs), whole calls, index loaded beforehand.
The index never holds benchmark sequences (only the bundle's reference).

    .venv/bin/python bench/bench_retrieval.py --encoder demo_out/encoder --dataset demo_out/dataset \
        --index /tmp/index --out retrieval.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import polars as pl

from llamadna.data.mutate import mutate_nested, row_seed
from llamadna.data.paths import default_data_dir
from llamadna.evaluate.baselines import ReferenceLookup
from llamadna.evaluate.benchmark import read_benchmark
from llamadna.retrieve.index import IndexConfig, ReferenceIndex
from llamadna.retrieve.retriever import Retriever

MODES = ("hybrid", "align", "embed")
LOOKUPS = {"blastn": "blastn", "minimap2_sensitive": "minimap2"}


def recall(hits: list[list[dict]], truth: list[str], k: int) -> float:
    return sum(any(c["gene"] == t for c in h[:k]) for h, t in zip(hits, truth)) / max(len(truth), 1)


def measure(queries: list[str], builds: list[str], truth: list[str], retrievers: dict, lookups: dict) -> dict:
    out = {}
    for name, r in retrievers.items():
        t = time.perf_counter()
        hits = r(queries)
        dt = time.perf_counter() - t
        out[name] = {"recall@1": recall(hits, truth, 1), "recall@4": recall(hits, truth, 4),
                     "queries_per_s": len(queries) / dt}
    for name, lk in lookups.items():
        t = time.perf_counter()
        res = lk.lookup_many(queries, builds)
        dt = time.perf_counter() - t
        hits = [[{"gene": x.get("gene")}] for x in res]
        out[name] = {"recall@1": recall(hits, truth, 1), "queries_per_s": len(queries) / dt}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--index", required=True, help="index directory (built here when missing)")
    ap.add_argument("--data", default=None)
    ap.add_argument("--rates", default="0,0.1,0.2,0.3,0.4")
    ap.add_argument("--benchmark", default="../shared/benchmarks/mito")
    ap.add_argument("--limit", type=int, default=None, help="test rows (first N)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--no-lookups", action="store_true", help="retrievers only (no blastn/minimap2 lookups)")
    a = ap.parse_args()
    data = Path(a.data) if a.data else default_data_dir()
    report: dict = {"machine": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d")}
    if not (Path(a.index) / "index.json").exists():
        t = time.perf_counter()
        ReferenceIndex.build(IndexConfig(encoder=a.encoder, out=a.index, data=str(data), dataset=a.dataset))
        report["index_build_s"] = time.perf_counter() - t
    index = ReferenceIndex.load(a.index)
    report["index"] = {k: index.meta[k] for k in ("windows", "genes", "segments", "segment_bases", "seconds")}
    report["index_bytes"] = sum(p.stat().st_size for p in Path(a.index).iterdir())
    first = Retriever(index, a.encoder, mode="hybrid")
    retrievers = {m: Retriever(index, a.encoder, mode=m, embedder=first.embedder) for m in MODES}
    retrievers["hybrid_unaligned"] = Retriever(index, embedder=first.embedder, embed_when="unaligned")
    df = pl.read_parquet(Path(a.dataset) / "dataset.parquet").with_row_index("row").filter(
        pl.col("split_gene") == "test")
    train = pl.read_parquet(Path(a.dataset) / "dataset.parquet").filter(pl.col("split_gene") == "train")
    lookups = {} if a.no_lookups else {
        n: ReferenceLookup(data, train, "dbSNP", aligner=al) for n, al in LOOKUPS.items()}
    if a.limit:
        df = df.head(a.limit)
    rates = [float(x) for x in a.rates.split(",")]
    mutated = [mutate_nested(s, rates, row_seed(0, int(r))) for s, r in zip(df["Sequence"], df["row"])]
    report["divergence"] = {}
    for k, rate in enumerate(rates):
        qs = [m[k] for m in mutated]
        report["divergence"][str(rate)] = measure(qs, df["build"].to_list(), df["gene_name"].to_list(),
                                                  retrievers, lookups)
        print(rate, json.dumps(report["divergence"][str(rate)]), flush=True)
    rows, truth = read_benchmark(a.benchmark)
    report["mito"] = {}
    for sp in truth["species"].unique(maintain_order=True).to_list():
        sel = [i for i, s in enumerate(truth["species"].to_list()) if s == sp]
        report["mito"][sp] = measure([rows[i]["Sequence"] for i in sel], ["GRCh38"] * len(sel),
                                     [truth["gene"][i] for i in sel], retrievers, lookups)
        print(sp, json.dumps(report["mito"][sp]), flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
