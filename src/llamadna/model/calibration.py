"""A calibrated confidence that the generated gene is right, for retrieval models.

`GeneCalibration` is a logistic model over what the annotation itself shows: the mean
log-probability of the generated tokens (`confidence`), the top reference candidate's score,
whether the generated gene is one of the candidates in the prompt, that candidate's score, and
whether it is the top one. `train` fits it on validation rows (`train.calibrate.calibrate_model`)
and writes MODEL/calibration.json; `Annotator.from_pretrained` reads it back (`GeneCalibration.load`),
and the Annotator reports `gene_confidence`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from llamadna.errors import InputError
from llamadna.io.text import read_json_object

CALIBRATION_FILE = "calibration.json"
FEATURES = ("confidence", "top_score", "gene_in_evidence", "gene_score", "gene_is_top")


def calibration_features(confidence: float, gene: str | None,
                         evidence: Sequence[dict] | None) -> list[float]:
    """The `FEATURES` of one annotation."""
    cands = list(evidence or [])
    top = cands[0]["score"] if cands else 0.0
    match = next((c for c in cands if gene and c.get("gene") == gene), None)
    return [confidence, float(top), float(match is not None), float(match["score"]) if match else 0.0,
            float(bool(cands) and match is cands[0])]


@dataclass
class GeneCalibration:
    weights: list[float]
    bias: float
    rows: int  # validation annotations it was fitted on
    right: int  # of which the gene was right
    features: tuple[str, ...] = FEATURES

    def gene_confidence(self, confidence: float, gene: str | None, evidence: Sequence[dict] | None) -> float:
        """P(the generated gene is right), by the fitted logistic model."""
        x = calibration_features(confidence, gene, evidence)
        z = self.bias + sum(w * v for w, v in zip(self.weights, x))
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    @classmethod
    def fit(cls, X: Sequence[Sequence[float]], y: Sequence[bool]) -> GeneCalibration:
        """Logistic regression (scikit-learn, L2, C=1) on the features; with one class only, a
        constant at that class's smoothed rate."""
        n, k = len(y), sum(bool(v) for v in y)
        if 0 < k < n:
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=1.0, max_iter=1000).fit(X, [bool(v) for v in y])
            return cls([float(w) for w in lr.coef_[0]], float(lr.intercept_[0]), n, k)
        p = (k + 0.5) / (n + 1.0)
        return cls([0.0] * len(FEATURES), math.log(p / (1 - p)), n, k)

    def save(self, directory: str | Path) -> None:
        (Path(directory) / CALIBRATION_FILE).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> GeneCalibration | None:
        p = Path(directory) / CALIBRATION_FILE
        if not p.exists():
            return None
        redo = "restore it from the directory `llamadna train` wrote, or delete it (no gene_confidence)"
        raw = read_json_object(p, redo)
        if not _well_formed(raw):
            raise InputError(p, f"expected the fitted calibration (weights, one per feature, bias, rows, "
                             f"right): {redo}")
        raw["features"] = tuple(raw.get("features", FEATURES))
        return cls(**raw)


def _well_formed(raw) -> bool:
    """calibration.json holds what `GeneCalibration` reads, of the right types."""
    if set(raw) - {"weights", "bias", "rows", "right", "features"}:
        return False
    num = (int, float)
    weights, features = raw.get("weights"), raw.get("features", FEATURES)
    return (isinstance(weights, list) and all(isinstance(w, num) for w in weights)
            and isinstance(features, list | tuple) and len(features) == len(weights)
            and isinstance(raw.get("bias"), num)
            and isinstance(raw.get("rows"), int) and isinstance(raw.get("right"), int))
