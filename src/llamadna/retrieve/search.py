"""`llamadna search`: the ranked reference candidates of every sequence of a FASTA, streamed a
batch at a time, written atomically.

- `.tsv`: one row per (query, candidate): query, rank (1 = best), `CANDIDATE_FIELDS`; a query
  without a candidate gets one row with rank 0 and empty fields, so no query is lost;
- `.jsonl`: one object per query: {"query": id, "length": bases, "candidates": [...]}.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from llamadna.io.atomic import atomic_write
from llamadna.io.fasta import count_fasta, iter_fasta
from llamadna.io.predictions import output_format
from llamadna.progress import Progress, no_progress
from llamadna.retrieve.retriever import CANDIDATE_FIELDS, Retriever, candidates_table

SEARCH_FORMATS = (".tsv", ".jsonl")
SEARCH_BATCH = 256  # queries per retriever call


def search_format(path: str | Path) -> str:
    return output_format(path, SEARCH_FORMATS)


def _cell(v) -> str:
    return "" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)


def search_fasta(retriever: Retriever, fasta: str | Path, out: str | Path, batch_size: int = SEARCH_BATCH,
                 progress: Progress = no_progress) -> dict:
    """Search every record of `fasta`; returns counts and speed."""
    fmt = search_format(out)
    total = count_fasta(fasta, "query FASTA")  # validates the whole file first
    t0 = time.perf_counter()
    n = {"queries": 0, "with_candidates": 0}

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            tsv = csv.writer(fh, delimiter="\t", lineterminator="\n") if fmt == ".tsv" else None
            if tsv:
                tsv.writerow(["query", "rank", *CANDIDATE_FIELDS])
            batch: list = []
            for rec in iter_fasta(fasta, "query FASTA"):
                batch.append(rec)
                if len(batch) == batch_size:
                    _flush(retriever, batch, fh, tsv, n)
                    batch = []
                    progress("search", n["queries"], total)
            _flush(retriever, batch, fh, tsv, n)
            progress("search", n["queries"], total)

    atomic_write(out, write)
    seconds = time.perf_counter() - t0
    return {**n, "seconds": round(seconds, 2), "queries_per_s": round(n["queries"] / max(seconds, 1e-9), 1)}


def _flush(retriever: Retriever, batch: list, fh, tsv, n: dict) -> None:
    if not batch:
        return
    hits = retriever([r.sequence for r in batch])
    # the TSV's rows: query, rank, CANDIDATE_FIELDS, in query order then rank
    table = candidates_table([r.id for r in batch], hits).iter_rows() if tsv is not None else None
    for rec, cands in zip(batch, hits):
        n["queries"] += 1
        n["with_candidates"] += bool(cands)
        if tsv is None:
            fh.write(json.dumps({"query": rec.id, "length": len(rec.seq), "candidates": cands}) + "\n")
        elif not cands:
            tsv.writerow([rec.id, 0, *[""] * len(CANDIDATE_FIELDS)])
        else:
            for _ in cands:
                tsv.writerow([_cell(v) for v in next(table)])
