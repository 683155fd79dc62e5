"""A real cross-species benchmark (`../shared/benchmarks/mito/`): annotate real divergent
sequences whose human ortholog is known, and score the fields that the truth holds.

A benchmark directory holds `queries.fa` (ids carry no label) and `truth.tsv` (id, species,
gene = the human ortholog, transcript_type, chrom, identity_to_human in %, ...). It is a test
set: never trained, tuned or indexed on. Queries are scored per species and per identity bin.
`benchmark_system` annotates the queries with one system and scores it (`llamadna evaluate
--benchmark`, in one process); `run_benchmark` is `llamadna benchmark`: the model's predictions
in parts (every process of `accelerate launch`), merged and scored on the main process;
`evaluate_benchmark` is evaluate's step (the given model and every lookup, with intervals by
bootstrap over genes).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from llamadna.constants import DEFAULT_PROCESSES, SPLASH_COLUMNS
from llamadna.data.template import parse_annotation
from llamadna.errors import InputError
from llamadna.evaluate.schema import BenchmarkEntry, BenchmarkScore
from llamadna.evaluate.systems import LOOKUPS, MODEL, EvalContext, Unit
from llamadna.io.atomic import atomic_write
from llamadna.io.fasta import iter_fasta
from llamadna.io.parts import check_part_size, files_digest, part_rows, parts_dir
from llamadna.io.tables import read_tsv
from llamadna.progress import Progress, no_progress

TRUTH_COLUMNS = ["id", "species", "gene", "transcript_type", "chrom", "identity_to_human"]
BENCHMARK_FIELDS = ("gene", "transcript_type", "chrom")  # what the truth holds
# identity to the human copy (%): label, [low, high)
IDENTITY_BINS = ((">95", 95.0, 101.0), ("85-95", 85.0, 95.0), ("75-85", 75.0, 85.0), ("<75", 0.0, 75.0))
UNKNOWN_IDENTITY = "unknown"  # the truth gives no identity for a few genes
BENCHMARK_BUILD = "GRCh38"  # the human reference the truth is stated against (rCRS = chrM of GRCh38)


def read_benchmark(directory: str | Path) -> tuple[list[dict], pl.DataFrame]:
    """Query rows (id, Sequence, build, SPLASH_* null: no reads exist for them) and the truth
    table in the same order; every query must have exactly one truth row."""
    d = Path(directory)
    truth = read_tsv(d / "truth.tsv", TRUTH_COLUMNS, "benchmark truth table")
    ident = pl.col("identity_to_human")
    bad = truth.filter((ident != "") & ident.cast(pl.Float64, strict=False).is_null())
    if bad.height:
        raise InputError(d / "truth.tsv", "identity_to_human: expected a number or nothing",
                         line=int(bad["line"][0]))
    truth = truth.with_columns(
        pl.when(ident == "").then(None).otherwise(ident).cast(pl.Float64).alias("identity_to_human"))
    by_id = {r["id"]: r for r in truth.iter_rows(named=True)}
    rows, order = [], []
    for rec in iter_fasta(d / "queries.fa", "benchmark FASTA"):
        if rec.id not in by_id:
            raise InputError(d / "queries.fa", "query without a truth row", line=rec.line, record=rec.id)
        rows.append({"id": rec.id, "Sequence": rec.sequence, "build": BENCHMARK_BUILD,
                     **dict.fromkeys(SPLASH_COLUMNS)})
        order.append(rec.id)
    missing = set(by_id) - set(order)
    if missing:
        raise InputError(d / "truth.tsv",
                         f"{len(missing)} truth rows without a query, e.g. {sorted(missing)[0]!r}")
    truth = pl.DataFrame([by_id[i] for i in order]).drop("line")
    return rows, truth


def identity_bin(identity: float | None) -> str:
    if identity is None:
        return UNKNOWN_IDENTITY
    for label, lo, hi in IDENTITY_BINS:
        if lo <= identity < hi:
            return label
    raise ValueError(f"identity {identity} outside 0-100 %")


def benchmark_hits(truth: pl.DataFrame, preds: list[dict]) -> dict[str, np.ndarray]:
    """(N,) booleans per field: the prediction's value equals the truth's (a missing one is wrong)."""
    return {f: np.array([p.get(f) == t for p, t in zip(preds, truth[f].to_list())], dtype=bool)
            for f in BENCHMARK_FIELDS}


def score_benchmark(truth: pl.DataFrame, preds: list[dict]) -> BenchmarkScore:
    """Field accuracy over all queries, per species and per identity bin.

    preds : one dict per truth row, in order, with the fields parsed from the annotation
        (gene, transcript_type, chrom).

    Returns {"all": {field: acc, "n": n}, "species": {name: {...}}, "identity": {bin: {...}}}.
    """
    if len(preds) != truth.height:
        raise ValueError(f"{len(preds)} predictions for {truth.height} benchmark queries")
    hits = benchmark_hits(truth, preds)

    def summarise(sel: np.ndarray) -> dict:
        return {**{f: float(h[sel].mean()) for f, h in hits.items()}, "n": int(sel.sum())}

    species = truth["species"].to_numpy()
    bins = np.array([identity_bin(x) for x in truth["identity_to_human"].to_list()])
    return {
        "all": summarise(np.ones(truth.height, dtype=bool)),
        "species": {s: summarise(species == s) for s in dict.fromkeys(species.tolist())},
        "identity": {b: summarise(bins == b) for b in [*(x[0] for x in IDENTITY_BINS), UNKNOWN_IDENTITY]
                     if (bins == b).any()},
    }


def benchmark_system(predict: Callable[[list[dict]], list[dict]], rows: list[dict], truth: pl.DataFrame,
                     n_boot: int | None = None, seed: int = 0) -> tuple[list[dict], BenchmarkScore]:
    """One system on a benchmark: its predictions (`predict(rows)`, one dict with an
    `annotation` per query row) and their score (`score_benchmark` of the fields read back from
    each annotation); with `n_boot`, `all_intervals` too: 95 % intervals of the overall field
    accuracies, bootstrap over genes (the truth's `gene`) seeded by `seed`."""
    from llamadna.evaluate.scoring import intervals

    preds = predict(rows)
    fields = [parse_annotation(p["annotation"]) for p in preds]
    res = score_benchmark(truth, fields)
    if n_boot is not None:
        hits = benchmark_hits(truth, fields)
        _, lo, hi = intervals(lambda idx: [hits[f][idx].mean() for f in BENCHMARK_FIELDS],
                              truth["gene"].to_numpy(), n_boot, seed)
        res["all_intervals"] = {f: [float(lo[i]), float(hi[i])] for i, f in enumerate(BENCHMARK_FIELDS)}
    return preds, res


# the prediction columns beside the truth, with their types (a column of nulls keeps its type)
PREDICTED_COLUMNS = {"gene": pl.String, "transcript_type": pl.String, "chrom": pl.String,
                     "gene_confidence": pl.Float64, "evidence_gene": pl.String, "annotation": pl.String}


def benchmark_table(truth: pl.DataFrame, preds: list[dict]) -> pl.DataFrame:
    """The truth with each model prediction beside it (`predicted_<column>` of PREDICTED_COLUMNS)."""
    return truth.with_columns(*[pl.Series(f"predicted_{c}", [p[c] for p in preds], dtype=t)
                                for c, t in PREDICTED_COLUMNS.items()])


def run_benchmark(annotator, directory: str | Path, out: str | Path | None = None,
                  batch_size: int | None = None, max_new_tokens: int | None = None,
                  decoding: str | None = None, progress: Progress = no_progress, resume: bool = False,
                  part_size: int | None = None, processes: int = DEFAULT_PROCESSES,
                  ) -> tuple[pl.DataFrame, BenchmarkScore, dict] | None:
    """`llamadna benchmark`: a model on a benchmark's queries, in parts (under `accelerate
    launch` on every process; `annotate.distributed`), scored on the main process from the
    merged predictions (`benchmark_system`): the same table and score as one process.

    annotator : an Annotator, a `ModelLoader` or a function returning an Annotator.
    out : the table (`benchmark_table`) as TSV; its parts in `<out>.parts/` (`resume` finishes
        them). Without it the parts go to a temporary directory (no --resume).
    processes : > 1 (no launcher; Linux CPUs): this process forks the other ranks itself.

    Returns (the main process; None on the others) the table, the score and the parts' counts
    (parts, parts_reused, parts_computed, per_rank, seconds, rows_per_s).
    """
    from llamadna.annotate.distributed import ShardedRun, inference_settings, origin, predict_rows
    from llamadna.evaluate.predict import _configured

    check_part_size(part_size)
    d = Path(directory)
    rows, truth = read_benchmark(d)
    merged: list[tuple[list[dict], pl.DataFrame]] = []  # the predictions and their table

    def write(records) -> None:
        preds = list(records)
        merged.append((preds, benchmark_table(truth, preds)))
        if out is not None:
            atomic_write(out, lambda tmp: merged[0][1].write_csv(tmp, separator="\t"))

    with ShardedRun(None if out is None else parts_dir(out), resume, "benchmark", processes) as run:
        if run.idle:  # a fork of local rank 0 predicts this process's share
            return None
        model = _configured(run.load(annotator), batch_size, max_new_tokens, decoding)
        run.begin(len(rows), part_rows(part_size, model.config.batch_size, len(rows)), lambda: {
            "input": {"benchmark": files_digest([d / "queries.fa", d / "truth.tsv"])},
            **origin(annotator, model), "settings": inference_settings(model)})
        run.serve(model, annotator)
        run.walk(rows, lambda part, advance, counts: predict_rows(model, part, advance), progress,
                 "benchmark")
        parts = run.merge(write, progress, "benchmark")
    if parts is None:
        return None
    preds, table = merged[0]
    return table, benchmark_system(lambda _: preds, rows, truth)[1], parts


def evaluate_benchmark(ctx: EvalContext) -> BenchmarkEntry:
    """The given model and every lookup on a real benchmark (never trained, tuned or indexed on):
    field accuracy per species and identity bin, intervals by bootstrap over genes. The lookups'
    sources come from the training rows of the split the model was trained on."""
    cfg = ctx.cfg
    rows, truth = read_benchmark(cfg.benchmark)
    given = ctx.models.train_config["split"]
    unit = Unit(ctx, given, given, ctx.rows(given, "train"), np.random.default_rng(0), rows)

    def model(rows: list[dict]) -> list[dict]:
        annotator = unit.annotator(MODEL)
        if annotator.processor.retrieval:
            rows = unit.evidence(annotator, rows, "full")
        return annotator.annotate_rows(rows)

    out: BenchmarkEntry = {"directory": str(cfg.benchmark), "queries": len(rows), "model_split": given,
                           "systems": {}}
    names = [n for n in ("model", *LOOKUPS) if n in cfg.systems]
    for k, name in enumerate(names):
        ctx.progress("benchmark", k, len(names))
        predict = model if name == "model" else (lambda rows, name=name: unit.lookup(name, rows))
        out["systems"][name] = benchmark_system(predict, rows, truth, cfg.n_boot, cfg.seed)[1]
    return out
