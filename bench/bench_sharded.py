"""`llamadna annotate` as one process against N ranks on one machine (issue 30; not run by `make test`).

Goals (2-core machine): N = 2 processes of 1 thread each annotate >= 1.6x as many sequences a
second as one process of 1 thread; the N ranks' peak memory <= 1.3x one process's (on CPUs the
ranks are forks of rank 0, sharing its model and index: `annotate.distributed`; with
LLAMADNA_FORK_RANKS=0 in the environment, launched ranks and the index served by rank 0:
`retrieve.service`); the outputs are the same bytes.

Queries: `--n` sequences of the model's window, half genic (the dataset's rows, all subsets, in
order: throughput only, nothing is scored) and half out of reference (`bench_outcomes`'
generator: random, foreign-like, shuffled, intergenic windows), interleaved, written as one FASTA.

Each run is the CLI in fresh processes (`python -m llamadna.cli annotate`; N ranks through
`torch.distributed.run` with ACCELERATE_USE_CPU=true, as `accelerate launch --cpu` starts them),
with OMP_NUM_THREADS=1 and `--threads 1` (minimap2: one thread in each process that searches).
Timed: the wall clock of the whole command (model and index loading, merge included) and the
annotation seconds the CLI reports. Memory: the sum of the proportional set sizes (PSS,
/proc/PID/smaps_rollup: a page shared by two processes counts half in each, so the sum is what the
processes hold together) of the ranks (every process of the run whose command line is the CLI's:
the launched ones and the forks), sampled every `--every` seconds; its peak. The launcher
(torchrun's agent) is reported apart: `accelerate launch` adds one too.

    .venv/bin/python bench/bench_sharded.py --model demo_out/model --dataset demo_out/dataset \
        [--index DIR] [--n 2000] [--nproc 2] [--format tsv] [--workdir /tmp/sharded] [--out sharded.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from bench_outcomes import _row, out_of_reference_rows  # noqa: E402

from llamadna.constants import DEFAULT_WINDOW  # noqa: E402
from llamadna.data.paths import default_data_dir  # noqa: E402

GOALS = {"speedup": 1.6, "memory_ratio": 1.3}
_ANNOTATED = re.compile(r"annotated (\d+) records.* in ([0-9.]+) s")


def queries(dataset: str, data: Path, n: int, window: int) -> list[dict]:
    """`n` rows: n/2 dataset windows and n/2 out-of-reference ones, interleaved."""
    import polars as pl

    from llamadna.io.dataset import dataset_parquet

    seqs = pl.read_parquet(dataset_parquet(dataset), columns=["Sequence"])["Sequence"].to_list()
    genic = [_row(f"genic{i}", seqs[i % len(seqs)]) for i in range(n // 2)]
    other = out_of_reference_rows(data, genic, n - n // 2, window)
    rows = [r for pair in zip(genic, other) for r in pair]
    return rows + genic[len(other):] + other[len(genic):]


def pss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run(cmd: list[str], env: dict, every: float, launcher: bool) -> dict:
    """Run `cmd`; its wall seconds, output, and the peak PSS sum of its ranks (the command's
    process itself, or its children when it is a launcher) and of all its processes."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks = {"ranks": 0.0, "all": 0.0, "ranks_seen": 0}
    done = threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                kids = root.children(recursive=True)
            except psutil.NoSuchProcess:
                break
            ranks = ([c.pid for c in kids if "llamadna.cli" in " ".join(_cmdline(c))] if launcher
                     else [proc.pid])
            r = sum(pss_mb(p) for p in ranks)
            a = r + (pss_mb(proc.pid) if launcher else 0.0)
            peaks["ranks"], peaks["all"] = max(peaks["ranks"], r), max(peaks["all"], a)
            peaks["ranks_seen"] = max(peaks["ranks_seen"], len(ranks))
            done.wait(every)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, _ = proc.communicate()
    done.set()
    t.join()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}")
    m = _ANNOTATED.search(out)
    return {"wall_s": round(wall, 2), "annotate_s": float(m[2]) if m else None,
            "peak_pss_ranks_mb": round(peaks["ranks"], 1), "peak_pss_all_mb": round(peaks["all"], 1),
            "ranks": peaks["ranks_seen"], "tail": out[-1500:]}


def torchrun(nproc: int) -> list[str]:
    """The command prefix that starts `nproc` processes on this machine (torchrun, a free port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--nnodes", "1", "--master_addr", "127.0.0.1", "--master_port", str(port)]


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", required=True,
                    help="build-dataset output (its windows are the genic queries)")
    ap.add_argument("--index", default=None, help="reference index (default: the model's own)")
    ap.add_argument("--data", default=None, help="bundle (default: $LLAMADNA_DATA, else ../shared/data)")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--format", default="tsv", choices=("tsv", "jsonl", "gff3"))
    ap.add_argument("--every", type=float, default=0.2, help="seconds between memory samples")
    ap.add_argument("--workdir", default="/tmp/bench_sharded")
    ap.add_argument("--out", default=None, help="also write the results (JSON) here")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else default_data_dir()
    fasta = work / "queries.fa"
    rows = queries(args.dataset, data, args.n, DEFAULT_WINDOW)
    fasta.write_text("".join(f">{r['id']}\n{r['Sequence']}\n" for r in rows))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "200"}
    env.pop("ACCELERATE_USE_CPU", None)
    extra = ["--index", args.index] if args.index else []
    cli = ["-m", "llamadna.cli", "annotate", str(fasta), "--model", args.model, "--threads", "1", *extra]
    outs = {1: work / f"one.{args.format}", args.nproc: work / f"ranks{args.nproc}.{args.format}"}
    for p in outs.values():
        p.unlink(missing_ok=True)
    res = {"one": run([sys.executable, *cli, "--out", str(outs[1])], env, args.every, launcher=False)}
    res["ranks"] = run([*torchrun(args.nproc), *cli, "--out", str(outs[args.nproc])],
                       {**env, "ACCELERATE_USE_CPU": "true"}, args.every, launcher=True)
    one, many = res["one"], res["ranks"]
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_before": os.getloadavg(), "model": args.model, "index": args.index, "sequences": len(rows),
        "nproc": args.nproc, "format": args.format,
        "identical": outs[1].read_bytes() == outs[args.nproc].read_bytes(),
        "speedup_wall": round(one["wall_s"] / many["wall_s"], 3),
        "speedup_annotate": (round(one["annotate_s"] / many["annotate_s"], 3)
                             if one["annotate_s"] and many["annotate_s"] else None),
        "memory_ratio_ranks": round(many["peak_pss_ranks_mb"] / one["peak_pss_ranks_mb"], 3),
        "memory_ratio_with_launcher": round(many["peak_pss_all_mb"] / one["peak_pss_ranks_mb"], 3),
        "goals": GOALS, "runs": {k: {x: y for x, y in v.items() if x != "tail"} for k, v in res.items()},
    }
    print(json.dumps(report, indent=1))
    print(many["tail"])
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
