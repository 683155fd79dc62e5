"""The rows a model of one split trains and validates on (read by training and calibration)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from llamadna.constants import DEFAULT_SOURCES
from llamadna.errors import InputError
from llamadna.io.dataset import dataset_parquet


def load_split(dataset: str | Path, split: str) -> tuple[list[dict], list[dict], list[str]]:
    """Train and val rows (dicts) of a split column, and the class labels of the dataset."""
    p = dataset_parquet(dataset)
    df = pl.read_parquet(p)
    if split not in df.columns or df[split].is_null().all():
        raise InputError(p, f"split column {split!r} is missing or empty")
    labels = [s for s in DEFAULT_SOURCES if s in set(df["Dataset"])]
    labels += sorted(set(df["Dataset"]) - set(labels))
    train = df.filter(pl.col(split) == "train").to_dicts()
    val = df.filter(pl.col(split) == "val").to_dicts()
    if not train:
        raise InputError(p, f"no training rows in {split!r}")
    return train, val, labels
