"""Scores of prediction tables with 95 % intervals: a cluster bootstrap over genes (whole genes
resampled), seeded by the evaluation's seed."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from llamadna.data.splits import gene_key
from llamadna.data.template import SENTENCE_FIELDS
from llamadna.evaluate.schema import FieldScore, SystemMetrics

SENTENCE_FIELDS_INDEX = {f: i for i, f in enumerate(SENTENCE_FIELDS)}
# the statistics of `scored`, in the order of its intervals
SCORED_STATISTICS = (*(f"field_{f}" for f in SENTENCE_FIELDS), "field_mean", "accuracy", "f1_macro",
                     "bleu", "rougeL", "meteor")


def gene_clusters(rows: list[dict]) -> np.ndarray:
    """(N,) the gene of each dataset row (split_gene's unit): the clusters of the bootstrap."""
    cols = ("gene_id", "build", "gene_name")  # only these: other columns may mix None and values
    return gene_key(pl.DataFrame({c: [r[c] for r in rows] for c in cols},
                                 schema=dict.fromkeys(cols, pl.Utf8)))


def intervals(stats: Callable[[np.ndarray], object], clusters: np.ndarray, n_boot: int, seed: int):
    """(point, low, high) of the statistics `stats(row indices)`: 95 % cluster-bootstrap
    intervals over genes (`clusters`: (N,) the gene of each row)."""
    from llamadna.evaluate.stats import cluster_bootstrap_intervals

    return cluster_bootstrap_intervals(stats, clusters, n_boot, seed)


def scored(table: dict, clusters: np.ndarray, n_boot: int, seed: int, semantic: bool = True) -> SystemMetrics:
    """compute_metrics of a prediction table, plus 95 % intervals (cluster bootstrap over genes)
    for the field accuracies, their mean, source accuracy / macro F1 and the text metrics."""
    from llamadna.evaluate.metrics import bleu_from_statistics, compute_metrics, row_scores
    from llamadna.evaluate.stats import label_codes, macro_f1_codes

    rs = row_scores(table["prediction"], table["reference"])
    m = compute_metrics(table["prediction"], table["reference"], table["label_true"], table["label_pred"],
                        table["label_from_text"], semantic=semantic, rows=rs)
    fields = np.stack([rs[f"field_{f}"] for f in SENTENCE_FIELDS], axis=1)  # (N, F), NaN = no field
    true, pred, _ = label_codes(table["label_true"], table["label_pred"])

    def stats(idx: np.ndarray) -> list[float]:
        f = np.nanmean(fields[idx], axis=0)
        return [*f, float(np.nanmean(f)), float((true[idx] == pred[idx]).mean()),
                macro_f1_codes(true[idx], pred[idx]),
                bleu_from_statistics(rs["bleu_stats"][idx]), float(rs["rougeL"][idx].mean()),
                float(rs["meteor"][idx].mean())]

    point, lo, hi = intervals(stats, clusters, n_boot, seed)
    m["field_mean"] = float(point[len(SENTENCE_FIELDS)])
    if any(c is not None for c in table.get("gene_confidence", [])):
        from llamadna.evaluate.stats import auroc

        # how well the calibrated gene confidence tells a right gene from a wrong one
        m["gene_confidence_auroc"] = auroc(rs["field_gene"], table["gene_confidence"])
    m["intervals"] = {n: [float(lo[i]), float(hi[i])] for i, n in enumerate(SCORED_STATISTICS)}
    return m


def field_scores(preds: list[dict], refs: list[str], true: list[str], clusters: np.ndarray, n_boot: int,
                 seed: int) -> dict[str, FieldScore]:
    """Per-field accuracy, their mean and source accuracy with 95 % intervals (no text metrics:
    the divergence curves)."""
    from llamadna.evaluate.metrics import field_hits

    hits = field_hits([p["annotation"] for p in preds], refs)  # (N, F), NaN = no field
    src = np.array([p["source"] == t for p, t in zip(preds, true)], dtype=float)

    def stats(idx: np.ndarray) -> np.ndarray:
        f = np.nanmean(hits[idx], axis=0)
        return np.array([*f, np.nanmean(f), src[idx].mean()])

    point, lo, hi = intervals(stats, clusters, n_boot, seed)
    names = [*SENTENCE_FIELDS, "field_mean", "accuracy"]
    return {n: {"value": float(point[i]), "interval": [float(lo[i]), float(hi[i])]}
            for i, n in enumerate(names)}


def confidence_pairs(predictions: list[str], refs: list[str], confidence: list) -> list[tuple]:
    """(gene right 1/0/NaN, gene confidence) per row."""
    from llamadna.evaluate.metrics import field_hits

    gene = field_hits(predictions, refs)[:, SENTENCE_FIELDS_INDEX["gene"]]
    return list(zip(gene.tolist(), confidence))
