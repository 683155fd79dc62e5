"""A dataset directory: `dataset.parquet` and its `summary.json`, written as a pair.

Two files cannot be replaced in one atomic step, so each write gives the pair one random
`build_id`, stored in the Parquet file's key-value metadata and in the summary. The table is
renamed into place first, the summary second; `read_summary` refuses a summary whose id is not
the table's (a write interrupted between the two renames, or files copied from two runs), so a
reader never pairs a new table with an old summary.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import polars as pl

from llamadna.errors import InputError
from llamadna.io.atomic import atomic_write
from llamadna.io.text import read_json_object

DATASET_FILE = "dataset.parquet"
SUMMARY_FILE = "summary.json"
BUILD_ID = "llamadna_build_id"
PARQUET_MAGIC = b"PAR1"  # the first and last 4 bytes of a (plain, unencrypted) Parquet file


def dataset_parquet(path: str | Path) -> Path:
    """The dataset table: `path` itself, or `path/dataset.parquet` for a build-dataset directory;
    an error naming the path when it is missing or is not a whole Parquet file."""
    p = Path(path)
    p = p / DATASET_FILE if p.is_dir() else p
    if not p.exists():
        raise InputError(p, "dataset not found (expected the output of `llamadna build-dataset`)")
    _check_parquet(p)
    return p


def _check_parquet(p: Path) -> None:
    """A Parquet file begins and ends with PARQUET_MAGIC: text, another format or a truncated copy
    is named here, before any work, rather than as polars' ComputeError deep inside a command."""
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(len(PARQUET_MAGIC))
            fh.seek(max(0, size - len(PARQUET_MAGIC)))
            tail = fh.read(len(PARQUET_MAGIC))
    except OSError as exc:
        raise InputError(p, f"cannot read the dataset table: {exc.strerror or exc}") from None
    if head == PARQUET_MAGIC and tail == PARQUET_MAGIC and size >= 3 * len(PARQUET_MAGIC):
        return
    cause = ("a truncated Parquet file (it does not end with the Parquet footer)"
             if head == PARQUET_MAGIC else "not a Parquet file")
    raise InputError(p, f"{cause}: expected the dataset table `llamadna build-dataset` writes; "
                     "rebuild it with `llamadna build-dataset`")


def read_dataset(path: str | Path, columns: list[str] | None = None) -> pl.DataFrame:
    """The dataset table (`dataset_parquet`), or its `columns`; a damaged file or a missing column
    is an InputError naming the file."""
    p = dataset_parquet(path)
    try:
        return pl.read_parquet(p, columns=columns)
    except pl.exceptions.ColumnNotFoundError as exc:
        raise InputError(p, f"{str(exc).splitlines()[0]}: expected the dataset table "
                         "`llamadna build-dataset` writes; rebuild it") from None
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(p, f"damaged dataset table ({str(exc).splitlines()[0]}): rebuild it with "
                         "`llamadna build-dataset`") from None


def check_output_dir(out: str | Path) -> Path:
    """Before any work: OUT must be a directory or not exist yet (it is created)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a directory (expected the output directory for "
                         f"{DATASET_FILE} and {SUMMARY_FILE})")
    return out


def write_dataset(df: pl.DataFrame, summary: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write OUT/dataset.parquet, then OUT/summary.json, each atomically, sharing a new build id."""
    out = check_output_dir(out_dir)
    build_id = uuid.uuid4().hex
    summary = {**summary, "build_id": build_id}
    pq, js = out / DATASET_FILE, out / SUMMARY_FILE
    atomic_write(pq, lambda p: df.write_parquet(p, compression="zstd", statistics=True,
                                                metadata={BUILD_ID: build_id}))
    atomic_write(js, lambda p: p.write_text(json.dumps(summary, indent=2, default=str) + "\n"))
    return pq, js


def table_build_id(parquet: str | Path) -> str | None:
    """The build id in a dataset table's metadata (None for tables written before ids existed)."""
    try:
        return pl.read_parquet_metadata(parquet).get(BUILD_ID)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(parquet, f"could not read the dataset table: {exc}") from None


def read_summary(directory: str | Path) -> dict:
    """OUT/summary.json, checked to belong to OUT/dataset.parquet; {} when there is none."""
    d = Path(directory)
    js = d / SUMMARY_FILE
    if not js.exists():
        return {}
    summary = read_json_object(js)
    table_id = table_build_id(d / DATASET_FILE)
    if summary.get("build_id") != table_id:
        raise InputError(js, f"belongs to another build than {DATASET_FILE} (build ids "
                         f"{summary.get('build_id')!r} and {table_id!r}): an interrupted write or "
                         "files from two runs; rerun `llamadna build-dataset`")
    return summary
