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

from llamadna.constants import FOLD_PREFIX, SPLIT_FRACTIONS, SPLITS


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


def gene_key(df: pl.DataFrame) -> np.ndarray:
    """The gene a row belongs to (gene_id, else build:gene_name): the unit of split_gene."""
    key = pl.coalesce("gene_id", pl.concat_str(["build", "gene_name"], separator=":"))
    return df.select(key).to_series().to_numpy()


def gene_folds(df: pl.DataFrame, k: int, seed: int) -> dict[str, np.ndarray]:
    """k folds over genes built around the dataset's own `split_gene`, so that every gene is a
    test gene exactly once: fold 0 is `split_gene` itself; folds 1..k-1 split the genes that
    are not in its test set into k-1 test sets (whole genes, greedily balanced by rows, seeded).
    In each fold the genes outside its test set are cut into train and val (val ~ 10 % of
    their rows, whole genes, seeded); fold 0 keeps split_gene's own train/val.

    Returns {"split_gene" or f"{FOLD_PREFIX}{i}": (N,) labels train/val/test}.
    """
    if k < 2:
        return {"split_gene": df["split_gene"].to_numpy()}
    genes = gene_key(df)
    base = df["split_gene"].to_numpy()
    uniq, inv, counts = np.unique(genes, return_inverse=True, return_counts=True)
    in_test0 = np.zeros(len(uniq), dtype=bool)
    in_test0[inv[base == "test"]] = True
    rng = np.random.default_rng([seed, k])
    fold_of = np.zeros(len(uniq), dtype=np.int64)  # 0 = split_gene's test genes
    filled = np.zeros(k - 1)
    for g in rng.permutation(np.flatnonzero(~in_test0)):
        f = int(np.argmin(filled))
        fold_of[g], filled[f] = f + 1, filled[f] + counts[g]
    out = {"split_gene": base}
    for f in range(1, k):
        test = fold_of == f
        label = np.where(test, "test", "train").astype(object)
        rest = np.flatnonzero(~test)
        target, got = 0.1 * counts[rest].sum(), 0
        for g in np.random.default_rng([seed, k, f]).permutation(rest):
            if got >= target:
                break
            label[g], got = "val", got + counts[g]
        out[f"{FOLD_PREFIX}{f}"] = label[inv]
    return out


def add_splits(df: pl.DataFrame, seed: int) -> tuple[pl.DataFrame, dict]:
    """Add the three split columns; returns the frame and notes for the summary."""
    n = df.height
    genes = gene_key(df)
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
