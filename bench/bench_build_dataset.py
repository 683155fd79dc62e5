"""Dataset-build benchmark on generated genomes (not run by `make test`).

Generates, per size, a genome in the real formats (FASTA, GTF, bgzipped VCF, gene tables) with
`llamadna.data.synthetic.make_bundle`, then times `build_dataset` end to end (reading every file,
joining genes, extracting windows, annotating, splitting) and `write_dataset`. The per-gene cap is
off so every in-gene variant becomes a window. Goal: >= 20k windows/s and linear scaling.

    .venv/bin/python bench/bench_build_dataset.py [--scales 0.25,0.5,1] [--window 512]

Scale 1 = 100 Mb genome (4 x 25 Mb chromosomes), 20k genes, 1M variants.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

from llamadna.data.build import BuildConfig, build_dataset
from llamadna.data.synthetic import make_bundle
from llamadna.io.dataset import write_dataset


def run(scale: float, window: int, workdir: Path) -> dict:
    chrom_len = int(25_000_000 * scale)
    d = workdir / f"scale{scale}"
    t0 = time.perf_counter()
    make_bundle(
        d, chrom_lengths={f"chr{i}": chrom_len for i in range(1, 5)},
        n_genes=int(20_000 * scale), n_variants=int(1_000_000 * scale), seed=0,
    )
    gen_s = time.perf_counter() - t0
    opts = BuildConfig(window=window, max_per_gene_source=0)
    t0 = time.perf_counter()
    df, summary = build_dataset(d, opts)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_dataset(df, summary, d / "out")
    write_s = time.perf_counter() - t0
    res = {
        "scale": scale, "genome_mb": 4 * chrom_len / 1e6, "variants": int(1_000_000 * scale),
        "windows": df.height, "window": window, "generate_s": round(gen_s, 2),
        "build_s": round(build_s, 2), "write_s": round(write_s, 2),
        "windows_per_s": round(df.height / build_s),
        "windows_per_s_incl_write": round(df.height / (build_s + write_s)),
        "max_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
    }
    shutil.rmtree(d)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="0.25,0.5,1")
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="llamadna-bench-"))
    results = []
    for s in (float(x) for x in args.scales.split(",")):
        r = run(s, args.window, work)
        results.append(r)
        print(json.dumps(r), flush=True)
    base = results[0]
    for r in results:
        r["time_per_window_vs_smallest"] = round(
            (r["build_s"] / r["windows"]) / (base["build_s"] / base["windows"]), 2)
    print(json.dumps({"machine": platform.processor() or platform.machine(),
                      "results": results}, indent=1))


if __name__ == "__main__":
    main()
