"""A calibrated confidence that the annotation's outcome is right, for retrieval models.

`OutcomeCalibration` is a logistic model of "the outcome (gene, intergenic, repeat, similar,
none; for gene: the gene too) is right" over what the annotation itself shows: its outcome
(one-hot over OUTCOMES), the mean log-probability of the generated tokens (`confidence`), the
top reference candidate's score, aligned fraction and identity, the query's number of
reference loci (log1p), whether the generated gene is one of the candidates in the prompt and
whether it is the top one (`outcome_features`). `train` fits it on validation rows, genic and
negative (`train.calibrate`), and writes MODEL/calibration.json (format 2, with how many rows of
each outcome it saw and how many were right); `Annotator.from_pretrained` reads it back
(`OutcomeCalibration.load`), and the Annotator reports `outcome_confidence` (and
`gene_confidence` where the outcome is a gene). A calibration.json of the gene-only calibration
before issue 29 is refused: retrain.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llamadna.constants import OUTCOMES
from llamadna.errors import InputError
from llamadna.io.text import read_json_object

CALIBRATION_FILE = "calibration.json"
CALIBRATION_FORMAT = 2
FEATURES = (*(f"outcome_{o}" for o in OUTCOMES), "confidence", "top_score", "aligned_fraction",
            "identity", "log1p_loci", "gene_in_evidence", "gene_is_top")


def outcome_features(outcome: str | None, confidence: float, gene: str | None,
                     evidence: Sequence[dict] | None) -> list[float]:
    """The `FEATURES` of one annotation: its outcome one-hot (all 0 when the sentence decides
    none), its confidence, the top candidate's score, aligned fraction, identity (0 where it was
    not aligned) and loci, whether `gene` is among the candidates and whether it is the top one."""
    cands = list(evidence or [])
    top = cands[0] if cands else {}
    match = next((c for c in cands if gene and c.get("gene") == gene), None)
    return [*(float(outcome == o) for o in OUTCOMES), float(confidence),
            float(top.get("score") or 0.0), float(top.get("aligned_fraction") or 0.0),
            float(top.get("identity") or 0.0), math.log1p(float(top.get("loci") or 0)),
            float(match is not None), float(match is not None and match is top)]


@dataclass
class OutcomeCalibration:
    weights: list[float]
    bias: float
    rows: int  # validation annotations it was fitted on
    right: int  # of which the outcome (and gene) was right
    # per outcome the annotations said: {"gene": {"rows": n, "right": k}, ...}
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    features: tuple[str, ...] = FEATURES

    def confidence(self, outcome: str | None, confidence: float, gene: str | None,
                   evidence: Sequence[dict] | None) -> float:
        """P(the annotation's outcome is right), by the fitted logistic model."""
        x = outcome_features(outcome, confidence, gene, evidence)
        z = self.bias + sum(w * v for w, v in zip(self.weights, x))
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    @classmethod
    def fit(cls, X: Sequence[Sequence[float]], y: Sequence[bool]) -> OutcomeCalibration:
        """Logistic regression (scikit-learn, L2, C=1) on `outcome_features` rows `X` of whether
        each outcome was right (`y`); with one class only, a constant at that class's smoothed
        rate. The per-outcome counts are read from the features' one-hot."""
        n, k = len(y), sum(bool(v) for v in y)
        counts = {}
        for j, o in enumerate(OUTCOMES):
            hit = [bool(v) for x, v in zip(X, y) if x[j] == 1.0]
            counts[o] = {"rows": len(hit), "right": sum(hit)}
        if 0 < k < n:
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=1.0, max_iter=1000).fit(X, [bool(v) for v in y])
            return cls([float(w) for w in lr.coef_[0]], float(lr.intercept_[0]), n, k, counts)
        p = (k + 0.5) / (n + 1.0)
        return cls([0.0] * len(FEATURES), math.log(p / (1 - p)), n, k, counts)

    def save(self, directory: str | Path) -> None:
        raw = {"format": CALIBRATION_FORMAT, **asdict(self), "features": list(self.features)}
        (Path(directory) / CALIBRATION_FILE).write_text(json.dumps(raw, indent=1) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> OutcomeCalibration | None:
        """MODEL/calibration.json, or None where there is none. One written before outcome
        calibration (no "format": the gene-only calibration) is an InputError: retrain."""
        p = Path(directory) / CALIBRATION_FILE
        if not p.exists():
            return None
        redo = "restore it from the directory `llamadna train` wrote, or delete it (no outcome_confidence)"
        raw = read_json_object(p, redo)
        if raw.get("format") != CALIBRATION_FORMAT:
            raise InputError(p, "a gene-only calibration from before outcome calibration (issue 29): "
                             "retrain the model with `llamadna train` (or delete the file: no "
                             "outcome_confidence)")
        raw.pop("format")
        if not _well_formed(raw):
            raise InputError(p, f"expected the fitted calibration (weights, one per feature, bias, rows, "
                             f"right, counts): {redo}")
        raw["features"] = tuple(raw["features"])
        return cls(**raw)


def _well_formed(raw) -> bool:
    """calibration.json holds what `OutcomeCalibration` reads, of the right types."""
    if set(raw) != {"weights", "bias", "rows", "right", "counts", "features"}:
        return False
    num = (int, float)
    weights, features, counts = raw["weights"], raw["features"], raw["counts"]
    return (isinstance(weights, list) and all(isinstance(w, num) for w in weights)
            and isinstance(features, list) and list(features) == list(FEATURES)
            and len(features) == len(weights) and isinstance(raw["bias"], num)
            and isinstance(raw["rows"], int) and isinstance(raw["right"], int)
            and isinstance(counts, dict)
            and all(isinstance(v, dict) and all(isinstance(x, int) for x in v.values())
                    for v in counts.values()))
