"""Peak memory of `llamadna annotate` against record length (issue 27; not run by `make test`).

Each record is annotated in a fresh process by the CLI (`python -m llamadna.cli annotate`), so
the figure is what a user's run holds at its peak: model, index, FASTA survey, tiling, retrieval,
generation, grounding and writing. The peak resident set size comes from the kernel when the
process ends (`os.wait4`, ru_maxrss). One FASTA of one record per length and source:
"regions" = a piece of the bundle's regions.fa (the reference the demo index holds: queries
that align), "random" = uniform A/C/G/T (seed 0: nothing aligns, every candidate is scored).
Goal: the longest record's peak within 10 % of the shortest's (ratio <= 1.10): memory bounded by
the batch, not by the record. Nothing is written beside the model or the index.
A 5 kb record is 10 tiles of 512: less than one batch of the default 32. The model runs at most
`MODEL_PASS_ROWS` (8) rows a pass inside a batch, so a full batch and a 10-row one hold about the
same model memory (a pass holds a few MB a row on the tiny preset); before that limit the ratio
at batch 32 also held 32 rows' passes against 10 rows' (docs/BENCHMARKS.md).

    .venv/bin/python bench/bench_annotate_memory.py --model demo_out/model [--lengths 5000,200000] \
        [--sources regions,random] [--out annotate_memory.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from llamadna.constants import DEFAULT_BATCH_SIZE, DEFAULT_TILE
from llamadna.data.paths import default_data_dir
from llamadna.io.fasta import iter_fasta

GOAL = 1.10  # longest record's peak RSS / shortest's
SOURCES = ("regions", "random")


def record(source: str, length: int, data: Path, offset: int) -> str:
    """`length` bases: regions.fa's longest record from `offset`, or random A/C/G/T (seed 0)."""
    if source == "random":
        return "".join(np.random.default_rng(0).choice(list("ACGT"), length))
    seq = max(iter_fasta(data / "regions.fa"), key=lambda r: len(r.seq)).sequence
    if offset + length > len(seq):
        raise SystemExit(f"regions.fa's longest record holds {len(seq)} bases: lower --offset or --lengths")
    return seq[offset : offset + length]


def peak_rss(cmd: list[str]) -> tuple[int, float]:
    """Run `cmd` to its end; its peak resident set size in bytes and its wall seconds."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return usage.ru_maxrss * 1024, wall  # Linux: kilobytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo_out/model")
    ap.add_argument("--index", default=None, help="annotate --index (default: the model's own)")
    ap.add_argument("--lengths", default="5000,200000", help="record lengths, shortest first")
    ap.add_argument("--sources", default=",".join(SOURCES))
    ap.add_argument("--data", default=None, help="bundle holding regions.fa (default: ../shared/data)")
    ap.add_argument("--offset", type=int, default=100_000, help="regions: first base of the pieces")
    ap.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    ap.add_argument("--tile", type=int, default=DEFAULT_TILE)
    ap.add_argument("--out", default=None, help="also write the report (JSON) here")
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    data = Path(args.data) if args.data else default_data_dir()
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
              "model": args.model, "batch_size": args.batch_size, "tile": args.tile, "goal": GOAL,
              "sources": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for source in args.sources.split(","):
            runs = []
            for n in lengths:
                fa = Path(tmp) / f"{source}{n}.fa"
                seq = record(source, n, data, args.offset)
                fa.write_text(f">{source}{n}\n" + "".join(seq[i : i + 80] + "\n" for i in range(0, n, 80)))
                out = Path(tmp) / f"{source}{n}.jsonl"
                cmd = [sys.executable, "-m", "llamadna.cli", "annotate", str(fa), "--model", args.model,
                       "--out", str(out), "--batch-size", str(args.batch_size), "--tile", str(args.tile)]
                if args.index:
                    cmd += ["--index", args.index]
                rss, wall = peak_rss(cmd)
                with open(out) as fh:
                    tiles = sum(1 for _ in fh)  # one line a tile
                runs.append({"length": n, "tiles": tiles, "peak_rss_gb": round(rss / 1e9, 3),
                             "wall_s": round(wall, 1)})
                print(source, runs[-1], flush=True)
            ratio = runs[-1]["peak_rss_gb"] / runs[0]["peak_rss_gb"]
            report["sources"][source] = {"runs": runs, "ratio": round(ratio, 3),
                                         "vs_goal": round(GOAL / ratio, 3), "meets_goal": ratio <= GOAL}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
