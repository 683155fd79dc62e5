"""Repeat windows' loci and retrieval time, with the index's loci tier, without it, and with every
chain kept on the passes (issue 29; not run by `make test`).

A repeat window (`data.negatives`: >= REPEAT_MIN_LOCI loci of its build's reference, counted with
constants.MINIMAP2_LOCI: minimap2's default k and w, every chain kept) is what the "repeat"
outcome rests on. The retriever counts the loci of its own passes (`Retriever.count_loci`),
whose minimap2 drops secondary chains scoring under 0.8 of the primary, so copies a few percent
diverged go uncounted, and, where the index has it, of its loci tier (minimap2_loci.mmi, the same
settings as the truth). This times the retriever (k=4, hybrid) over the out-of-reference
negatives of the test part of split_gene (`--per-kind` of each kind) and the split's test rows,
three ways: the index as built (the loci tier, where it has one), without the loci tier, and
without it but with the passes' .mmi files loaded again with MM_F_ALL_CHAINS added; it prints
the seconds and how many repeat windows reach REPEAT_MIN_LOCI loci, and how many test rows keep
their own gene first.

    .venv/bin/python bench/bench_repeat_loci.py --index demo_out/index --dataset demo_out/dataset \
        [--data ../shared/data] [--per-kind 40]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import polars as pl

from llamadna.constants import MINIMAP2_ALL_CHAINS, REPEAT_MIN_LOCI
from llamadna.data.negatives import negative_rows
from llamadna.data.paths import default_data_dir
from llamadna.io.dataset import read_dataset
from llamadna.retrieve.index import CASCADE, ReferenceIndex, _load_mmi
from llamadna.retrieve.outcome import top_aligned
from llamadna.retrieve.retriever import open_retriever


def without_loci_tier(index: ReferenceIndex) -> ReferenceIndex:
    """The same index counting loci on its passes' hits only."""
    index.loci = None
    return index


def all_chains(index: ReferenceIndex) -> ReferenceIndex:
    """The same index without its loci tier, its passes' .mmi files loaded again (`_load_mmi`,
    checked as `load` does), every chain kept."""
    def load(name: str, settings: dict):
        return _load_mmi(index.path / name, {**settings, "extra_flags": MINIMAP2_ALL_CHAINS}, index.meta)

    cfg = index.meta["config"]
    index.aligner = load("minimap2.mmi", cfg["minimap2"])
    index.cascade = [load(mmi, cfg[key]) for key, mmi in CASCADE if cfg.get(key)]
    return without_loci_tier(index)


def measure(index: ReferenceIndex, negs: list[dict], test: list[dict]) -> dict:
    retriever = open_retriever(index, k=4)
    retriever(["ACGT" * 64])  # warm-up (loads the encoder)
    t0 = time.perf_counter()
    found = retriever([r["Sequence"] for r in negs + test])
    seconds = time.perf_counter() - t0
    rep = [c for r, c in zip(negs, found) if r["kind"] == "repeat"]
    own = sum(1 for r, c in zip(test, found[len(negs):])
              if (top := top_aligned(c)) is not None and top.get("gene") == r["gene_name"])
    return {"seconds": seconds, "queries": len(found),
            "repeats_counted": sum(1 for c in rep if c and (c[0].get("loci") or 0) >= REPEAT_MIN_LOCI),
            "repeats": len(rep), "own_gene_first": own, "test_rows": len(test)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True, type=Path)
    ap.add_argument("--dataset", required=True, type=Path)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--per-kind", type=int, default=40)
    args = ap.parse_args()
    df = read_dataset(args.dataset)
    test = df.filter(pl.col("split_gene") == "test").to_dicts()
    negs = negative_rows(args.data or default_data_dir(), test, "test", per_kind=args.per_kind, seed=0)
    for name, index in (("as built", ReferenceIndex.load(args.index)),
                        ("no loci tier", without_loci_tier(ReferenceIndex.load(args.index))),
                        ("all chains", all_chains(ReferenceIndex.load(args.index)))):
        m = measure(index, negs, test)
        print(f"{name:>12}: {m['queries']} queries in {m['seconds']:.1f} s; repeat windows at >= "
              f"{REPEAT_MIN_LOCI} loci {m['repeats_counted']}/{m['repeats']}; test rows with their "
              f"own gene first {m['own_gene_first']}/{m['test_rows']}")


if __name__ == "__main__":
    main()
