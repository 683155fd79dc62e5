"""Fit a retrieval model's outcome confidence on validation rows (`Annotator.calibration`).

`train()` calls `fit_calibration` at its end when the model has an index, so a trained model is a
finished one; `llamadna calibrate` refits a trained model's (one of an older format is refused
when the model is loaded). What it is fitted on, every row annotated by the model read back from MODEL:

- the validation rows of the model's split (cfg.calibration_rows of them, seeded), each at
  divergence rates CALIBRATION_RATES (nested `mutate`, seeded by row), twice: with the reference
  index as a model of that split may see it plus the validation genes (truth: the row's gene),
  and without them (the novel-gene case, truth "novel": any outcome but a gene is right);
- negatives of the validation part of the reference (`data.negatives.negative_rows`, as many
  of each kind as validation rows are used), annotated with the first index, each with the
  outcome it truly has (none, intergenic, similar, repeat).

`OutcomeCalibration` is fitted on whether each annotation's outcome (and, for a gene, its gene)
is right (`retrieve.outcome.outcome_correct`) and written to MODEL/calibration.json, so that
annotations report `outcome_confidence`. Test genes are never in either index. Every row is
annotated without SPLASH scores (`splash.scores.without_scores`), as `annotate` sees a FASTA and
as negatives are: the confidence must not learn "no SPLASH scores" as a sign.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from llamadna.annotate import Annotator
from llamadna.constants import CALIBRATION_RATES
from llamadna.data.mutate import mutate_nested, row_seed
from llamadna.data.splits import subsample
from llamadna.model.calibration import OutcomeCalibration, outcome_features
from llamadna.retrieve.outcome import outcome_correct
from llamadna.splash.scores import without_scores
from llamadna.train.config import TrainConfig
from llamadna.train.evidence_sampler import bundle_dir, row_window, training_index
from llamadna.train.rows import load_split

log = logging.getLogger(__name__)


def calibrate_model(model_dir: str | Path, cfg: TrainConfig, max_rows: int | None = None,
                    batch_size: int = 64) -> OutcomeCalibration | None:
    """Fit and save the calibration of a trained retrieval model (`fit_calibration`); None for
    other models, or when the split has no validation rows."""
    fitted = fit_calibration(model_dir, cfg, max_rows, batch_size)
    return fitted[0] if fitted else None


def fit_calibration(model_dir: str | Path, cfg: TrainConfig, max_rows: int | None = None,
                    batch_size: int = 64) -> tuple[OutcomeCalibration, dict[str, dict[str, int]]] | None:
    """Fit and save the calibration of a trained retrieval model (module doc).

    Parameters
    ----------
    model_dir : the model, read as `Annotator.from_pretrained` reads it; calibration.json is
        written there.
    cfg : its training settings (dataset, split, index, seed, calibration_rows).
    max_rows : validation rows used (default cfg.calibration_rows), and as many negatives of each
        kind.

    Returns
    -------
    (the calibration, {truth kind: {"rows": n, "right": k}}) with truth kinds gene, novel and the
    negatives' outcomes; None for a model without an index, or a split without validation rows.
    """
    if cfg.index is None:
        return None
    annotator = Annotator.from_pretrained(model_dir, calibrated=False).with_config(batch_size=batch_size)
    train_rows, val_rows, _ = load_split(cfg.dataset, cfg.split)
    n = cfg.calibration_rows if max_rows is None else max_rows
    rows = subsample(val_rows, n, cfg.seed)
    if not rows:
        log.warning("%s: no validation rows, no calibration", cfg.split)
        return None
    mutated = [mutate_nested(r["Sequence"], CALIBRATION_RATES, row_seed(cfg.seed, i))
               for i, r in enumerate(rows)]
    X: list[list[float]] = []
    y: list[bool] = []
    kinds: list[str] = []
    for keep, truth in (("val", "gene"), (None, "novel")):
        index = training_index(cfg.index, cfg.dataset, cfg.split, train_rows, keep=keep)
        annotator.use_index(index)
        for k, _ in enumerate(CALIBRATION_RATES):
            batch = [{**r, "Sequence": m[k]} for r, m in zip(without_scores(rows), mutated)]
            _annotate(annotator, batch, [{"outcome": truth, "gene_name": r["gene_name"]} for r in batch],
                      X, y, kinds)
        if keep == "val":  # negatives with the index a user of the model has (validation genes in)
            from llamadna.data.negatives import negative_rows

            neg = negative_rows(bundle_dir(cfg.dataset, index), val_rows, "val", per_kind=len(rows),
                                seed=cfg.seed, window=row_window(val_rows))
            truths = [{"outcome": r["outcome"], "gene_name": None} for r in neg]
            _annotate(annotator, neg, truths, X, y, kinds)
    cal = OutcomeCalibration.fit(X, y)
    cal.save(model_dir)
    counts = {t: {"rows": sum(k == t for k in kinds), "right": sum(k == t and v for k, v in zip(kinds, y))}
              for t in dict.fromkeys(kinds)}
    log.info("outcome confidence fitted on %d validation annotations (%d right); per truth: %s",
             cal.rows, cal.right, ", ".join(f"{t} {c['right']}/{c['rows']}" for t, c in counts.items()))
    return cal, counts


def _annotate(annotator: Annotator, rows: Sequence[dict], truths: Sequence[dict], X: list, y: list,
              kinds: list) -> None:
    """Annotate `rows` with the annotator's index and append each one's features (X), whether its
    outcome is right (y) and its truth kind (kinds)."""
    if not rows:
        return
    batch = annotator.with_evidence(list(rows))
    for r, p, t in zip(batch, annotator.annotate_rows(batch), truths):
        X.append(outcome_features(p["outcome"], p["confidence"], r["evidence"]))
        y.append(outcome_correct(p["outcome"], p["gene"], t))
        kinds.append(t["outcome"])
