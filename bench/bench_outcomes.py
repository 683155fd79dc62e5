"""`annotate` throughput on out-of-reference and genic queries (issue 29; not run by `make test`).

Goals: >= 20 sequences/s on out-of-reference queries and >= 30 on genic ones (2 cores). One
Annotator (`Annotator.from_pretrained`, the default batch size; a retrieval model searches
`--index`, else the index it was trained with), timed over annotate_rows with retrieval included,
after one warm-up batch of each kind (not timed). Queries, `--n` of each kind (window bases):
- out of reference (`data.negatives`), in the issue's proportions 60:60:40:80 of 240: uniformly
  random, generated foreign-like (`foreign_sequence`), two-base shuffles (`dinucleotide_shuffle`)
  of the dataset's split_gene test windows, and windows of the bundle's reference lying >= 10 kb
  from every gene (`intergenic_windows(min_distance=10_000)`, a seeded draw);
- genic: the dataset's split_gene test rows (the first n).
Prints a table (sequences, seconds, sequences/s, goal, met) and, with --out, writes it as JSON
(with the md5 of each set's sentences: runs that wrote the same sentences share it),
with the machine's speed measured before and after the runs (`machine_speed`): this 2-core
machine's throughput moves by a third within a day for the same code and weights
(docs/BENCHMARKS.md), so a figure is read beside the speed of the hour it was taken in.

With `--ranks N` (N >= 2), each query set is also written as a FASTA and annotated by the CLI in
fresh processes, three times (`cli_runs`): "cli one process", `llamadna annotate` as a user runs
it (torch's and minimap2's default threads); "cli N ranks", the same under
`torch.distributed.run` with ACCELERATE_USE_CPU=true (forked ranks, README "Many processes"),
OMP_NUM_THREADS=1 and `--threads 1`; and "cli --processes N", the command forking its own ranks
(the CPUs shared out: one thread each on 2 CPUs and N = 2). Their figure is the rows over the
annotation seconds the CLI prints (loading left out; the fork and the merge in), the command's
wall time beside it; how many rows' answers (outcome, gene) differ from one process's (the
model's float reductions depend on the threads, so the bytes may), and whether the two forked
runs wrote the same bytes.

    .venv/bin/python bench/bench_outcomes.py --model demo_out/model --index demo_out/index \
        --dataset demo_out/dataset [--data ../shared/data] [--n 240] [--out outcomes.json] \
        [--withhold-below 0.5] [--draft-tokens 20] [--no-share-encoder] \
        [--ranks 2 --workdir /tmp/bench_outcomes]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from llamadna.constants import DEFAULT_WINDOW, SPLASH_COLUMNS
from llamadna.data.paths import default_data_dir

GOALS = {"out of reference": 20.0, "genic": 30.0}  # sequences / s
SHARES = {"random": 60, "foreign": 60, "shuffled": 40, "intergenic": 80}  # of 240
INTERGENIC_DISTANCE = 10_000  # bases between an intergenic query and every gene, at least
SEED = 0


def _row(i: str, seq: str) -> dict:
    return {"id": i, "Sequence": seq, **dict.fromkeys(SPLASH_COLUMNS)}


def _counts(n: int) -> dict[str, int]:
    """`n` split over SHARES in its proportions (rounding remainder to the last kind)."""
    total = sum(SHARES.values())
    out = {k: n * v // total for k, v in SHARES.items()}
    out["intergenic"] += n - sum(out.values())
    return out


def out_of_reference_rows(data: Path, genic: list[dict], n: int, window: int) -> list[dict]:
    """`n` out-of-reference queries in SHARES' proportions (seeded)."""
    from llamadna.data.negatives import (
        dinucleotide_shuffle,
        foreign_sequence,
        intergenic_windows,
        random_sequence,
    )

    rng = np.random.default_rng(SEED)
    k = _counts(n)
    rows = [_row(f"random{i}", random_sequence(window, rng)) for i in range(k["random"])]
    rows += [_row(f"foreign{i}", foreign_sequence(window, rng)) for i in range(k["foreign"])]
    rows += [_row(f"shuffled{i}", dinucleotide_shuffle(genic[i % len(genic)]["Sequence"], rng))
             for i in range(k["shuffled"])]
    windows = intergenic_windows(data, window=window, min_distance=INTERGENIC_DISTANCE)
    if windows.height < k["intergenic"]:
        logging.warning("only %d windows lie >= %d bases from every gene", windows.height,
                        INTERGENIC_DISTANCE)
    pick = np.sort(rng.choice(windows.height, min(k["intergenic"], windows.height), replace=False))
    rows += [_row(f"intergenic{i}", windows["Sequence"][int(j)]) for i, j in enumerate(pick)]
    return rows


def genic_rows(dataset: str, n: int) -> list[dict]:
    """The first `n` split_gene test rows of the dataset."""
    from llamadna.evaluate.predict import split_rows

    test = split_rows(dataset, "split_gene", "test")[:n]
    return [_row(f"genic{i}", r["Sequence"]) for i, r in enumerate(test)]


def machine_speed(repeats: int = 20) -> dict[str, float]:
    """The machine's speed now, on torch's threads: GFLOP/s of a 1,024 x 1,024 float32 matrix
    product (what a prompt pass is bound by), and microseconds per product of the shape of one
    decoding step's feed-forward input (8 x 192 by 192 x 512, bound by per-call overhead)."""
    import torch

    big, small = torch.randn(1024, 1024), (torch.randn(8, 192), torch.randn(192, 512))
    for _ in range(3):
        big @ big, small[0] @ small[1]
    t = time.perf_counter()
    for _ in range(repeats):
        big @ big
    gflops = 2 * 1024**3 * repeats / (time.perf_counter() - t) / 1e9
    t = time.perf_counter()
    for _ in range(1000):
        small[0] @ small[1]
    return {"matmul_gflops": round(gflops, 1), "small_matmul_us": round((time.perf_counter() - t) * 1e3, 1)}


def throughput(annotator, rows: list[dict], warm: list[dict]) -> tuple[float, dict, str]:
    """Seconds to annotate `rows` (retrieval included) after a warm-up on `warm`, the outcomes
    they got, and the md5 of their sentences (runs that wrote the same sentences share it)."""
    annotator.annotate_rows(warm)
    t = time.perf_counter()
    preds = annotator.annotate_rows(rows)
    seconds = time.perf_counter() - t
    outcomes: dict[str, int] = {}
    for p in preds:
        outcomes[str(p.get("outcome"))] = outcomes.get(str(p.get("outcome")), 0) + 1
    sentences = hashlib.md5("\n".join(str(p.get("annotation")) for p in preds).encode()).hexdigest()
    return seconds, outcomes, sentences


def _answers(tsv: Path) -> list[tuple[str, str, str]]:
    """(id, outcome, gene) of each row of an `annotate` TSV, in its order."""
    import polars as pl

    t = pl.read_csv(tsv, separator="\t", infer_schema_length=0)
    return list(zip(t["id"].to_list(), t["outcome"].fill_null("").to_list(),
                    t["gene"].fill_null("").to_list()))


def cli_runs(model: str, index: str | None, rows: list[dict], ranks: int, work: Path) -> dict:
    """`rows` annotated by the CLI in one process (default threads), in `ranks` forked ranks of
    one thread each started by torchrun, and in as many forked by the command itself
    (`--processes`); per run its sequences/s over the CLI's annotation seconds and its wall
    seconds; the rows whose answers differ from one process's, and whether the two forked runs
    wrote the same bytes."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_sharded import run, torchrun  # bench_sharded imports this module: imported here

    work.mkdir(parents=True, exist_ok=True)
    fasta = work / "queries.fa"
    fasta.write_text("".join(f">{r['id']}\n{r['Sequence']}\n" for r in rows))
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("ACCELERATE_USE_CPU", None)
    cli = ["-m", "llamadna.cli", "annotate", str(fasta), "--model", model,
           *(["--index", index] if index else [])]
    outs = {"one": work / "one.tsv", "ranks": work / f"ranks{ranks}.tsv",
            "own": work / f"processes{ranks}.tsv"}
    for p in outs.values():
        p.unlink(missing_ok=True)
    res = {"cli one process": run([sys.executable, *cli, "--out", str(outs["one"])], env, 1.0,
                                  launcher=False),
           f"cli {ranks} ranks": run([*torchrun(ranks), *cli, "--threads", "1", "--out", str(outs["ranks"])],
                                      {**env, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1",
                                       "MKL_NUM_THREADS": "1"}, 1.0, launcher=True),
           f"cli --processes {ranks}": run([sys.executable, *cli, "--processes", str(ranks), "--out",
                                            str(outs["own"])], env, 1.0, launcher=False)}
    one = _answers(outs["one"])
    report = {name: {"sequences_per_s": round(len(rows) / r["annotate_s"], 1), "annotate_s": r["annotate_s"],
                     "wall_s": r["wall_s"]} for name, r in res.items()}
    for key, name in (("ranks", "answers_differ"), ("own", "answers_differ_processes")):
        other = _answers(outs[key])
        if [a[0] for a in one] != [a[0] for a in other] or len(one) != len(rows):
            raise SystemExit(f"the runs' rows differ ({outs['one']}, {outs[key]})")
        report[name] = sum(a != b for a, b in zip(one, other))
    report["forked_runs_same_bytes"] = outs["ranks"].read_bytes() == outs["own"].read_bytes()
    return report


def print_report(report: dict) -> None:
    """The table of a run: per query set its figure in process, the CLI's (--ranks), and the
    machine's speed before and after."""
    print(f"{'queries':<18}{'sequences':>10}{'seconds':>9}{'seq/s':>8}{'goal':>6}  met  outcomes")
    for kind, r in report["kinds"].items():
        print(f"{kind:<18}{r['sequences']:>10}{r['seconds']:>9}{r['sequences_per_s']:>8}{r['goal']:>6.0f}  "
              f"{'yes' if r['meets_goal'] else 'no ':<4} {r['outcomes']}")
        for name, c in r.get("cli", {}).items():
            if isinstance(c, dict):
                print(f"  {name:<17}{r['sequences']:>9}{c['annotate_s']:>9}{c['sequences_per_s']:>8}"
                      f"{r['goal']:>6.0f}  {'yes' if c['sequences_per_s'] >= r['goal'] else 'no ':<4} "
                      f"(wall {c['wall_s']} s)")
        if "cli" in r:
            c = r["cli"]
            print("  answers (outcome, gene) that differ from one process's: torchrun's ranks "
                  f"{c['answers_differ']}, --processes {c['answers_differ_processes']}; "
                  f"the two forked runs' bytes {'the same' if c['forked_runs_same_bytes'] else 'differ'}")
    print("machine speed before / after: " + ", ".join(
        f"{k} {report['speed_before'][k]} / {report['speed_after'][k]}" for k in report["speed_before"]))


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--index", default=None, help="reference index (default: the model's own)")
    ap.add_argument("--dataset", required=True, help="build-dataset output (its split_gene test rows)")
    ap.add_argument("--data", default=None, help="bundle (default: $LLAMADNA_DATA, else ../shared/data)")
    ap.add_argument("--n", type=int, default=240, help="queries of each kind")
    ap.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    ap.add_argument("--out", default=None, help="also write the results (JSON) here")
    ap.add_argument("--withhold-below", type=float, default=None,
                    help="InferenceConfig.withhold_below (default: the Annotator's own)")
    ap.add_argument("--draft-tokens", type=int, default=None,
                    help="InferenceConfig.draft_tokens (default: the Annotator's own; 0: one token a step)")
    ap.add_argument("--no-share-encoder", action="store_true",
                    help="InferenceConfig.share_encoder False: the model runs its own encoder on each "
                    "query, not the retriever's states")
    ap.add_argument("--ranks", type=int, default=1,
                    help=">= 2: also run the CLI in one process and in this many forked ranks")
    ap.add_argument("--workdir", default="/tmp/bench_outcomes", help="the --ranks runs' FASTAs and outputs")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    from llamadna.annotate import Annotator, InferenceConfig

    data = Path(args.data) if args.data else default_data_dir()
    given = {} if args.withhold_below is None else {"withhold_below": args.withhold_below}
    if args.draft_tokens is not None:
        given["draft_tokens"] = args.draft_tokens
    if args.no_share_encoder:
        given["share_encoder"] = False
    config = InferenceConfig(**given)
    annotator = Annotator.from_pretrained(args.model, index=args.index, config=config)
    batch = annotator.config.batch_size
    genic = genic_rows(args.dataset, args.n)
    sets = {"out of reference": out_of_reference_rows(data, genic, args.n, args.window), "genic": genic}
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
              "model": args.model, "index": args.index, "batch_size": batch,
              "withhold_below": annotator.config.withhold_below,
              "draft_tokens": annotator.config.draft_tokens,
              "share_encoder": annotator.config.share_encoder, "speed_before": machine_speed(),
              "kinds": {}}
    for kind, rows in sets.items():
        # warm-up: one batch of the same kind, other sequences (annotate_distinct is not used here,
        # but the retriever remembers nothing either way)
        warm = [_row(f"warm{i}", r["Sequence"][::-1]) for i, r in enumerate(rows[:batch])]
        seconds, outcomes, sentences = throughput(annotator, rows, warm)
        rate = len(rows) / seconds
        report["kinds"][kind] = {"sequences": len(rows), "seconds": round(seconds, 2),
                                 "sequences_per_s": round(rate, 1), "goal": GOALS[kind],
                                 "meets_goal": rate >= GOALS[kind], "outcomes": outcomes,
                                 "sentences_md5": sentences}
    if args.ranks >= 2:
        for kind, rows in sets.items():
            report["kinds"][kind]["cli"] = cli_runs(args.model, args.index, rows, args.ranks,
                                                    Path(args.workdir) / kind.replace(" ", "_"))
    report["speed_after"] = machine_speed()
    print_report(report)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
