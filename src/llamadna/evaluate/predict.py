"""Model (or baseline) predictions for dataset rows, with the truth beside each one.

`prediction_table` is the one layout every system's predictions are kept in (`llamadna predict`
writes it, `llamadna evaluate` writes one per system, `llamadna score` reads it):

    id, reference, prediction, label_true, label_pred, label_prob, label_from_text, confidence,
    gene_confidence, evidence_gene, evidence_score, evidence_via, build, chrom, gene_name
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from llamadna.constants import DEFAULT_PROCESSES, DEFAULT_SPLIT, N_EXAMPLES
from llamadna.errors import ConfigError, InputError
from llamadna.io.atomic import atomic_write
from llamadna.io.dataset import dataset_parquet, read_dataset
from llamadna.io.parts import check_part_size, files_digest, part_rows, parts_dir
from llamadna.progress import Progress, no_progress

if TYPE_CHECKING:  # the annotate package imports torch: loaded only where a model runs
    from llamadna.annotate import Annotator


def _configured(annotator: Annotator, batch_size: int | None, max_new_tokens: int | None,
                decoding: str | None) -> Annotator:
    """The annotator with the inference settings given (None: its own)."""
    changes = {k: v for k, v in (("batch_size", batch_size), ("max_new_tokens", max_new_tokens),
                                 ("decoding", decoding)) if v is not None}
    return annotator.with_config(**changes) if changes else annotator


def annotate_distinct(annotator: Annotator, rows: list[dict], seen: dict, batch_size: int | None = None,
                      max_new_tokens: int | None = None, decoding: str | None = None) -> list[dict]:
    """`Annotator.annotate_rows` generating once per distinct model input (the sequence when the
    model reads DNA, and the prompt text): repeated windows, and the unmutated rate of a
    divergence curve, reuse a prediction. `seen` (input -> prediction) is kept by the caller, one
    per model. Predictions are those of `annotate_rows` up to float rounding of other batch
    layouts. `batch_size`, `max_new_tokens`, `decoding`: the annotator's config, unless given."""
    proc = annotator.processor
    keys = [(r["Sequence"] if proc.use_dna else "", proc.prompt_parts(r)) for r in rows]
    todo = {k: r for k, r in zip(keys, rows) if k not in seen}
    if todo:
        annotator = _configured(annotator, batch_size, max_new_tokens, decoding)
        preds = annotator.annotate_rows(list(todo.values()))
        seen.update(zip(todo, ({k: v for k, v in p.items() if k != "id"} for p in preds)))
    return [dict(seen[k]) for k in keys]


# the sentence's outcome (every model), then retrieval models' extra columns (None for every
# other system)
EVIDENCE_COLUMNS = ("outcome", "outcome_confidence", "gene_confidence", "evidence_gene",
                    "evidence_score", "evidence_via", "evidence_identity", "evidence_aligned_fraction",
                    "evidence_loci")


def row_id(row: dict) -> str:
    """A dataset row's id in prediction tables: build:variant_id:row number."""
    return f"{row['build']}:{row['variant_id']}:{row['row']}"


def prediction_table(rows: list[dict], preds: list[dict]) -> dict[str, list]:
    """Truth beside prediction, one entry per row (columns as in the module doc).

    rows : dataset rows with a `row` number (`split_rows`); preds : the same number of
    prediction dicts (`annotation`, `source`; `source_prob`, `source_from_text`, `confidence`
    where the system gives them).
    """
    return {
        "id": [row_id(r) for r in rows],
        "reference": [r["Annotation"] for r in rows],
        "prediction": [p["annotation"] or "" for p in preds],
        "label_true": [r["Dataset"] for r in rows],
        "label_pred": [p["source"] for p in preds],
        "label_prob": [p.get("source_prob") for p in preds],
        "label_from_text": [p.get("source_from_text") for p in preds],
        "confidence": [p.get("confidence") for p in preds],
        **{c: [p.get(c) for p in preds] for c in EVIDENCE_COLUMNS},
        "build": [r["build"] for r in rows],
        "chrom": [r["chrom"] for r in rows],
        "gene_name": [r["gene_name"] for r in rows],
    }


def split_rows(dataset: str | Path, split: str, subset: str) -> list[dict]:
    """The rows of one subset (train/val/test) of a split column, each with its `row` number."""
    p = dataset_parquet(dataset)
    df = read_dataset(p)
    if split not in df.columns:
        raise InputError(p, f"no split column {split!r}")
    return df.with_row_index("row").filter(pl.col(split) == subset).to_dicts()


# the prediction table's columns and types (module doc): the TSV is the same bytes whatever the
# values (a column of nulls, or of whole numbers, keeps its type)
PREDICTION_SCHEMA = {
    "id": pl.String, "reference": pl.String, "prediction": pl.String, "label_true": pl.String,
    "label_pred": pl.String, "label_prob": pl.Float64, "label_from_text": pl.String,
    "confidence": pl.Float64, "outcome": pl.String, "outcome_confidence": pl.Float64,
    "gene_confidence": pl.Float64, "evidence_gene": pl.String, "evidence_score": pl.Float64,
    "evidence_via": pl.String, "evidence_identity": pl.Float64, "evidence_aligned_fraction": pl.Float64,
    "evidence_loci": pl.Int64, "build": pl.String, "chrom": pl.String, "gene_name": pl.String,
}


def prediction_frame(rows: list[dict], preds: list[dict]) -> pl.DataFrame:
    """`prediction_table` as a DataFrame of PREDICTION_SCHEMA's types."""
    return pl.DataFrame(prediction_table(rows, preds), schema=PREDICTION_SCHEMA)


def predict_dataset(
    annotator, dataset: str | Path, out: str | Path, split: str = DEFAULT_SPLIT,
    subset: str = "test", limit: int | None = None, batch_size: int | None = None,
    max_new_tokens: int | None = None, progress: Progress = no_progress,
    decoding: str | None = None, resume: bool = False, part_size: int | None = None,
    processes: int = DEFAULT_PROCESSES,
) -> dict | None:
    """Annotate one subset (train/val/test) of a dataset split with a model's Annotator and write
    the prediction table (module doc) as TSV, for `llamadna score` and for reading.

    `annotator`: an `Annotator`, a `annotate.distributed.ModelLoader` or a function returning
    one, loaded once the dataset and the options are checked (a bad input fails before the model
    loads). `batch_size`, `max_new_tokens`, `decoding`: the annotator's config, unless given.
    The rows are predicted in parts of `part_size` (rounded up to a multiple of the batch size):
    under `accelerate launch` by every process, merged by the main one (the same bytes as one
    process); `resume` finishes an interrupted run from `<out>.parts/`. `processes` > 1 (no
    launcher; Linux CPUs): this process forks the other ranks itself (`annotate.distributed`).

    Returns (the main process; None on the others) rows, seconds, records_per_s, output,
    `examples` (N_EXAMPLES rows of the table, see example_indices), and the parts' counts
    (parts, parts_reused, parts_computed, per_rank).
    """
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit}: the number of rows to predict must be >= 1 "
                          "(leave it out for the whole subset)")
    check_part_size(part_size)
    rows = split_rows(dataset, split, subset)[:limit]
    if not rows:
        raise InputError(dataset_parquet(dataset), f"no rows with {split} == {subset!r}")
    from llamadna.annotate.distributed import ShardedRun, inference_settings, origin, predict_rows

    what = f"predict {split}={subset}"
    tables: list[pl.DataFrame] = []

    def write(records) -> None:
        tables.append(prediction_frame(rows, list(records)))
        atomic_write(out, lambda tmp: tables[0].write_csv(tmp, separator="\t"))

    with ShardedRun(parts_dir(out), resume, "predict", processes) as run:
        if run.idle:  # a fork of local rank 0 predicts this process's share
            return None
        model = _configured(run.load(annotator), batch_size, max_new_tokens, decoding)
        run.begin(len(rows), part_rows(part_size, model.config.batch_size, len(rows)), lambda: {
            "input": {"dataset": files_digest([dataset_parquet(dataset)])}, **origin(annotator, model),
            "settings": {**inference_settings(model), "split": split, "subset": subset, "limit": limit}})
        run.serve(model, annotator)
        run.walk(rows, lambda part, advance, counts: predict_rows(model, part, advance), progress, what)
        parts = run.merge(write, progress, what)
    if parts is None:
        return None
    table = tables[0]
    examples = [table.row(i, named=True) for i in example_indices(table["gene_name"].to_list())]
    rate = parts["rows_per_s"]
    return {"rows": table.height, "seconds": round(parts["seconds"], 2),
            "records_per_s": round(rate, 2) if rate is not None else None, "output": str(out),
            "examples": examples,
            **{k: parts[k] for k in ("parts", "parts_reused", "parts_computed", "per_rank")}}


def example_indices(genes: list[str], n: int = N_EXAMPLES) -> list[int]:
    """Rows shown as examples: the first row of each gene in order (so the examples cover up to
    n different genes), then further rows in order when there are fewer genes than n."""
    first: dict[str, int] = {}
    for i, g in enumerate(genes):
        first.setdefault(g, i)
    picked = list(first.values())[:n]
    chosen = set(picked)
    rest = [i for i in range(len(genes)) if i not in chosen]
    return sorted(picked + rest[: n - len(picked)])
