"""Train/val/test splits (80/10/10, seeded).

- `split_random`: rows permuted and cut at 80/90 %.
- `split_gene`: genes (gene_id, else build+gene_name) in a seeded random order, each given whole
  to the split whose row count is furthest below its target, so no gene is in two splits.
- `split_chrom`: whole chromosomes held out for val and test. Chromosomes in a seeded random
  order each go to whichever of val/test is further below its 10 % target, if that keeps it
  within 2x its target, else to train; a held-out split left empty then takes the smallest
  chromosome of a split that has more than one. With fewer than three chromosomes nothing can
  be held out: the column is null and the summary says so.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from llamadna.constants import SPLIT_FRACTIONS, SPLITS


def random_split(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    out = np.empty(n, dtype=object)
    cut1, cut2 = round(n * SPLIT_FRACTIONS[0]), round(n * sum(SPLIT_FRACTIONS[:2]))
    out[order[:cut1]], out[order[cut1:cut2]], out[order[cut2:]] = SPLITS
    return out


def group_split(groups: np.ndarray, seed: int) -> np.ndarray:
    """Assign whole groups greedily to the split with the largest deficit from its target."""
    uniq, inv, counts = np.unique(groups, return_inverse=True, return_counts=True)
    rng = np.random.default_rng(seed)
    total = counts.sum()
    targets = np.array(SPLIT_FRACTIONS) * total
    filled = np.zeros(3)
    assign = np.empty(len(uniq), dtype=np.int64)
    for g in rng.permutation(len(uniq)):
        k = int(np.argmax((targets - filled) / targets))
        assign[g] = k
        filled[k] += counts[g]
    return np.array(SPLITS, dtype=object)[assign[inv]]


def chrom_split(chroms: np.ndarray, seed: int) -> np.ndarray | None:
    uniq, inv, counts = np.unique(chroms, return_inverse=True, return_counts=True)
    if len(uniq) < 3:
        return None
    rng = np.random.default_rng(seed)
    targets = np.array(SPLIT_FRACTIONS) * counts.sum()
    filled = np.zeros(3)
    assign = np.zeros(len(uniq), dtype=np.int64)  # 0 = train
    for g in rng.permutation(len(uniq)):
        k = 1 + int(np.argmax((targets[1:] - filled[1:]) / targets[1:]))  # val or test
        if filled[k] < targets[k] and filled[k] + counts[g] <= 2 * targets[k]:
            assign[g], filled[k] = k, filled[k] + counts[g]
    for k in (1, 2):  # val and test each need a chromosome: the smallest one that can move
        if (assign == k).any():
            continue
        donors = [g for g in range(len(uniq)) if (assign == assign[g]).sum() > 1]
        g = min(donors, key=lambda i: counts[i])
        assign[g] = k
    return np.array(SPLITS, dtype=object)[assign[inv]]


def add_splits(df: pl.DataFrame, seed: int) -> tuple[pl.DataFrame, dict]:
    """Add the three split columns; returns the frame and notes for the summary."""
    n = df.height
    gene_key = pl.coalesce("gene_id", pl.concat_str(["build", "gene_name"], separator=":"))
    genes = df.select(gene_key).to_series().to_numpy()
    chroms = df["chrom"].to_numpy()
    cs = chrom_split(chroms, seed)
    notes = {}
    if cs is None:
        notes["split_chrom"] = "fewer than 3 chromosomes: no chromosome can be held out (null)"
    out = df.with_columns(
        pl.Series("split_random", random_split(n, seed), dtype=pl.Utf8),
        pl.Series("split_gene", group_split(genes, seed), dtype=pl.Utf8),
        pl.Series("split_chrom", cs if cs is not None else [None] * n, dtype=pl.Utf8),
    )
    if cs is not None:
        notes["split_chrom_held_out"] = {
            s: sorted(set(chroms[cs == s].tolist())) for s in ("val", "test")
        }
    return out, notes


def subsample(rows: list, n: int | None, seed: int) -> list:
    """`n` rows drawn without replacement (seeded), kept in their original order; all of them
    when n is None or there are no more than n (quick runs of training and evaluation)."""
    if n is None or len(rows) <= n:
        return rows
    idx = np.sort(np.random.default_rng(seed).choice(len(rows), n, replace=False))
    return [rows[i] for i in idx]
