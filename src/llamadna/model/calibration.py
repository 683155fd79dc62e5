"""A calibrated confidence that the annotation's outcome is right, for retrieval models.

`OutcomeCalibration` is a logistic model of "the outcome (gene, intergenic, repeat, similar,
none; for gene: the gene too) is right", fitted per outcome: each feature is given once for
every outcome, zero unless the annotation said that outcome, so that an alignment's identity
can raise the confidence of a gene and lower that of "none" (one set of weights for all
outcomes could not; that calibration, format 2, ranked rows at AUROC 0.72 on cross-validated
validation rows against 0.81 for this one, docs/RESULTS.md). What it reads
(`outcome_features`), all shown by the annotation itself:

- the outcome (one-hot over OUTCOMES);
- bands of the top reference candidate's alignment, the words the prompt gives
  (constants.IDENTITY_WORDS, COVERAGE_WORDS; none for a candidate found by embedding only),
  and of the query's loci (0, 1, ..., REPEAT_MIN_LOCI or more);
- the mean log-probability of the generated tokens (`confidence`), the top candidate's score,
  aligned fraction, identity, the query's loci (log1p), the top candidate's cosine, and the
  **alignment gap**: how much better the top candidate aligns (identity x aligned fraction)
  than the next one. A lone strong candidate is what a gene missing from the reference leaves
  behind (its paralog); a genic query usually finds its own gene and that paralog too;
- how the retriever found the top candidate (one-hot over VIA, the annotation's `evidence_via`:
  by embedding only, by alignment only, or both) and how many of the candidates aligned. Wrong
  gene answers for a gene missing from the reference were found by alignment alone more often
  than right ones (205 of 302 against 477 of 1,314 in the five split_gene models' calibration
  annotations); format 4: leave-one-model-out AUROC 0.848 against 0.831 there, docs/RESULTS.md.

`train` fits it on validation rows, genic and negative (`train.calibrate`, or `llamadna
calibrate` for a trained model), and writes MODEL/calibration.json (format 4, with how many rows
of each outcome it saw and how many were right); `Annotator.from_pretrained` reads it back
(`OutcomeCalibration.load`), and the Annotator reports `outcome_confidence` (and
`gene_confidence` where the outcome is a gene). An older calibration.json is refused with the
command that refits it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llamadna.constants import (
    CALIBRATION_C,
    COVERAGE_WORDS,
    IDENTITY_WORDS,
    OUTCOMES,
    REPEAT_MIN_LOCI,
    VIA,
    found_via,
)
from llamadna.data.template import band_word
from llamadna.errors import InputError
from llamadna.io.atomic import atomic_write
from llamadna.io.text import read_json_object

CALIBRATION_FILE = "calibration.json"
CALIBRATION_FORMAT = 4
BANDS = (*(f"identity_{w}" for _, w in IDENTITY_WORDS), *(f"coverage_{w}" for _, w in COVERAGE_WORDS),
         *(f"loci_{n}" for n in range(REPEAT_MIN_LOCI)), f"loci_{REPEAT_MIN_LOCI}+",
         *(f"via_{v}" for v in VIA))
NUMERIC = ("confidence", "top_score", "aligned_fraction", "identity", "log1p_loci", "top_cosine",
           "align_gap", "n_aligned")
FEATURES = (*(f"outcome_{o}" for o in OUTCOMES),
            *(f"{o}:{f}" for o in OUTCOMES for f in (*BANDS, *NUMERIC)))


def _aligned(c: dict) -> float:
    """A candidate's identity x aligned fraction (0 where it was not aligned)."""
    return float(c.get("identity") or 0.0) * float(c.get("aligned_fraction") or 0.0)


def _band(value: float, bands: Sequence[tuple[float, str]]) -> list[float]:
    """One-hot over `bands` of the band `value` falls in (`band_word`, the prompt's word)."""
    word = band_word(value, bands)
    return [float(w == word) for _, w in bands]


def evidence_features(confidence: float, evidence: Sequence[dict] | None) -> list[float]:
    """The BANDS and NUMERIC values of one annotation (before they are given per outcome)."""
    cands = list(evidence or [])
    top = cands[0] if cands else {}
    aligned = top.get("identity") is not None
    identity, fraction = float(top.get("identity") or 0.0), float(top.get("aligned_fraction") or 0.0)
    loci = int(top.get("loci") or 0)
    via = found_via(top.get("identity"), top.get("cosine"))  # as the retriever derives it
    bands = [*(_band(identity, IDENTITY_WORDS) if aligned else [0.0] * len(IDENTITY_WORDS)),
             *(_band(fraction, COVERAGE_WORDS) if aligned else [0.0] * len(COVERAGE_WORDS)),
             *[float(min(loci, REPEAT_MIN_LOCI) == n) for n in range(REPEAT_MIN_LOCI + 1)],
             *([float(via == v) for v in VIA] if cands else [0.0] * len(VIA))]
    scores = sorted((_aligned(c) for c in cands), reverse=True) + [0.0, 0.0]
    numeric = [float(confidence), float(top.get("score") or 0.0), fraction, identity, math.log1p(loci),
               float(top.get("cosine") or 0.0), scores[0] - scores[1],
               float(sum(c.get("identity") is not None for c in cands))]
    return bands + numeric


def outcome_features(outcome: str | None, confidence: float, evidence: Sequence[dict] | None) -> list[float]:
    """The `FEATURES` of one annotation: its outcome one-hot, then `evidence_features` in the
    slot of its outcome and zeros in the others' (all zeros when the sentence decides none)."""
    values = evidence_features(confidence, evidence)
    out = [float(outcome == o) for o in OUTCOMES]
    for o in OUTCOMES:
        out += values if outcome == o else [0.0] * len(values)
    return out


@dataclass
class OutcomeCalibration:
    weights: list[float]
    bias: float
    rows: int  # validation annotations it was fitted on
    right: int  # of which the outcome (and gene) was right
    # per outcome the annotations said: {"gene": {"rows": n, "right": k}, ...}
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    features: tuple[str, ...] = FEATURES

    def confidence(self, outcome: str | None, confidence: float, evidence: Sequence[dict] | None) -> float:
        """P(the annotation's outcome is right), by the fitted logistic model."""
        x = outcome_features(outcome, confidence, evidence)
        z = self.bias + sum(w * v for w, v in zip(self.weights, x))
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    @classmethod
    def fit(cls, X: Sequence[Sequence[float]], y: Sequence[bool]) -> OutcomeCalibration:
        """Logistic regression (scikit-learn, L2, C=CALIBRATION_C) on `outcome_features` rows `X`
        of whether each outcome was right (`y`); with one class only, a constant at that class's
        smoothed rate. The per-outcome counts are read from the features' one-hot."""
        n, k = len(y), sum(bool(v) for v in y)
        counts = {}
        for j, o in enumerate(OUTCOMES):
            hit = [bool(v) for x, v in zip(X, y) if x[j] == 1.0]
            counts[o] = {"rows": len(hit), "right": sum(hit)}
        if 0 < k < n:
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=CALIBRATION_C, max_iter=5000).fit(X, [bool(v) for v in y])
            return cls([float(w) for w in lr.coef_[0]], float(lr.intercept_[0]), n, k, counts)
        p = (k + 0.5) / (n + 1.0)
        return cls([0.0] * len(FEATURES), math.log(p / (1 - p)), n, k, counts)

    def save(self, directory: str | Path) -> None:
        raw = {"format": CALIBRATION_FORMAT, **asdict(self), "features": list(self.features)}
        text = json.dumps(raw, indent=1) + "\n"
        atomic_write(Path(directory) / CALIBRATION_FILE, lambda tmp: tmp.write_text(text))

    @classmethod
    def load(cls, directory: str | Path) -> OutcomeCalibration | None:
        """MODEL/calibration.json, or None where there is none. One of an older format (the
        gene-only calibration, format 2's one set of weights for every outcome, or format 3
        without the VIA bands and n_aligned) is an InputError naming `llamadna calibrate`, which
        refits it."""
        p = Path(directory) / CALIBRATION_FILE
        if not p.exists():
            return None
        redo = "restore it from the directory `llamadna train` wrote, or delete it (no outcome_confidence)"
        raw = read_json_object(p, redo)
        if raw.get("format") != CALIBRATION_FORMAT:
            raise InputError(p, f"a calibration of an older format ({raw.get('format', 'gene-only')}, this "
                             f"version reads {CALIBRATION_FORMAT}): refit it with `llamadna calibrate "
                             f"{Path(directory)}` (about a minute; or delete it: no outcome_confidence)")
        raw.pop("format")
        if not _well_formed(raw):
            raise InputError(p, f"expected the fitted calibration (weights, one per feature, bias, rows, "
                             f"right, counts): {redo}")
        raw["features"] = tuple(raw["features"])
        return cls(**raw)


def calibration_current(directory: str | Path) -> bool:
    """MODEL/calibration.json exists, is of this version's format and features, and is well
    formed: what `load` reads without an error."""
    p = Path(directory) / CALIBRATION_FILE
    try:
        raw = json.loads(p.read_text())
        return (raw.get("format") == CALIBRATION_FORMAT
                and _well_formed({k: v for k, v in raw.items() if k != "format"}))
    except (OSError, ValueError, AttributeError):
        return False


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
