"""Fit a retrieval model's gene confidence on validation rows (`Annotator.calibration`).

`train()` calls `calibrate_model` at its end when the model has an index, so a trained model is a
finished one. The validation rows of the model's split, each at divergence rates
CALIBRATION_RATES (nested `mutate`, seeded by row), are annotated twice: with the reference index
as a model of that split may see it plus the validation genes (the gene is there to be found),
and without them (the novel-gene case: the gene cannot be found). `GeneCalibration` is fitted on
whether the generated gene is the row's, and written to MODEL/calibration.json, so that
annotations report `gene_confidence`. Test genes are never in either index.
"""

from __future__ import annotations

import logging
from pathlib import Path

from llamadna.annotate import Annotator
from llamadna.data.mutate import mutate_nested, row_seed
from llamadna.data.splits import subsample
from llamadna.model.calibration import GeneCalibration, calibration_features
from llamadna.train.config import TrainConfig
from llamadna.train.evidence_sampler import training_index
from llamadna.train.rows import load_split

log = logging.getLogger(__name__)

CALIBRATION_RATES = (0.0, 0.2, 0.4)


def calibrate_model(model_dir: str | Path, cfg: TrainConfig, max_rows: int | None = None,
                    batch_size: int = 64) -> GeneCalibration | None:
    """Fit and save the calibration of a trained retrieval model (None for other models, or
    when the split has no validation rows). The model is read from `model_dir` as
    `Annotator.from_pretrained` reads it. `max_rows`: validation rows used (default
    cfg.calibration_rows)."""
    if cfg.index is None:
        return None
    annotator = Annotator.from_pretrained(model_dir).with_config(batch_size=batch_size)
    train_rows, val_rows, _ = load_split(cfg.dataset, cfg.split)
    rows = subsample(val_rows, cfg.calibration_rows if max_rows is None else max_rows, cfg.seed)
    if not rows:
        log.warning("%s: no validation rows, no calibration", cfg.split)
        return None
    mutated = [mutate_nested(r["Sequence"], CALIBRATION_RATES, row_seed(cfg.seed, i))
               for i, r in enumerate(rows)]
    X, y = [], []
    for keep in ("val", None):
        annotator.use_index(training_index(cfg.index, cfg.dataset, cfg.split, train_rows, keep=keep))
        for k, _ in enumerate(CALIBRATION_RATES):
            batch = annotator.with_evidence([{**r, "Sequence": m[k]} for r, m in zip(rows, mutated)])
            for r, p in zip(batch, annotator.annotate_rows(batch)):
                X.append(calibration_features(p["confidence"], p["gene"], r["evidence"]))
                y.append(p["gene"] == r["gene_name"])
    cal = GeneCalibration.fit(X, y)
    cal.save(model_dir)
    log.info("gene confidence fitted on %d validation annotations (%d right)", cal.rows, cal.right)
    return cal
