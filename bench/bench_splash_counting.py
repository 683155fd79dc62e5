"""SPLASH counting benchmark against KMC and jellyfish (not run by `make test`).

One generated FASTQ (default 5M reads x 100 bp, reads drawn from a random 10 Mb genome, both
strands, 0.1 % substitution errors) is counted, one thread each, by:
- llamadna: `count_sample` (2-bit packed anchor+target pairs, a = t = 31, g = 0), the counting
  stage of `llamadna splash`;
- KMC 3 (`kmc -k31 -t1 -ci1 -b`: `-b` keeps k-mers strand-specific, as SPLASH does);
- jellyfish (`jellyfish count -m 31 -t 1`, strand-specific like SPLASH).
Goal: our counting time <= 3x theirs. Needs Debian `kmc` and `jellyfish`.

    .venv/bin/python bench/bench_splash_counting.py [--reads 5000000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from llamadna.data.synthetic import random_sequence
from llamadna.splash.kmers import count_sample

_COMP = np.zeros(256, dtype=np.uint8)
for a, b in zip(b"ACGT", b"TGCA"):
    _COMP[a] = b


def write_fastq(path: Path, n_reads: int, read_len: int = 100, genome_mb: float = 10,
                error_rate: float = 1e-3, seed: int = 0, batch: int = 500_000) -> None:
    rng = np.random.default_rng(seed)
    genome = random_sequence(rng, int(genome_mb * 1e6))
    view = np.lib.stride_tricks.sliding_window_view(genome, read_len)
    qual = b"I" * read_len
    with open(path, "wb") as fh:
        for s in range(0, n_reads, batch):
            n = min(batch, n_reads - s)
            reads = view[rng.integers(0, len(view), n)].copy()  # (n, L)
            rev = rng.random(n) < 0.5
            reads[rev] = _COMP[reads[rev, ::-1]]
            err = rng.random(reads.shape) < error_rate
            reads[err] = np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, int(err.sum()))]
            lines = []
            for i in range(n):
                lines.append(b"@r%d\n%s\n+\n%s\n" % (s + i, reads[i].tobytes(), qual))
            fh.write(b"".join(lines))


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=5_000_000)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="llamadna-splash-bench-"))
    fq = work / "reads.fastq"
    t0 = time.perf_counter()
    write_fastq(fq, args.reads)
    print(f"generated {args.reads} reads in {time.perf_counter() - t0:.1f} s "
          f"({fq.stat().st_size / 1e9:.2f} GB)", flush=True)

    res: dict = {"reads": args.reads, "read_len": 100, "fastq_gb": round(fq.stat().st_size / 1e9, 2)}
    t0 = time.perf_counter()
    table, summary = count_sample([fq], anchor_len=31, gap=0, target_len=31)
    res["llamadna_s"] = round(time.perf_counter() - t0, 2)
    res["llamadna_distinct_pairs"] = summary["distinct_pairs"]
    res["llamadna_peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
    del table
    print(json.dumps(res), flush=True)

    if shutil.which("kmc"):
        tmp = work / "kmc_tmp"
        tmp.mkdir(exist_ok=True)
        res["kmc_s"] = round(timed(["kmc", "-k31", "-t1", "-ci1", "-b", "-m8", "-fq", str(fq),
                                    str(work / "kmc_out"), str(tmp)]), 2)
    if shutil.which("jellyfish"):
        res["jellyfish_s"] = round(timed(["jellyfish", "count", "-m", "31", "-s", "100M", "-t", "1",
                                          "-o", str(work / "jf.out"), str(fq)]), 2)
    for tool in ("kmc", "jellyfish"):
        if f"{tool}_s" in res:
            res[f"ratio_vs_{tool}"] = round(res["llamadna_s"] / res[f"{tool}_s"], 2)
    res["llamadna_reads_per_s"] = round(args.reads / res["llamadna_s"])
    print(json.dumps(res, indent=1))
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
