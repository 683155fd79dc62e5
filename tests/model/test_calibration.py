"""OutcomeCalibration: features, fit, save/load, and the refusal of a gene-only calibration."""

from __future__ import annotations

import json
import math

import pytest

from llamadna.constants import OUTCOMES
from llamadna.errors import InputError
from llamadna.model.calibration import (
    CALIBRATION_FILE,
    FEATURES,
    OutcomeCalibration,
    outcome_features,
)

GENE_A = {"kind": "gene", "gene": "A", "score": 1.9, "identity": 0.95, "aligned_fraction": 0.9, "loci": 1}
GENE_B = {"kind": "gene", "gene": "B", "score": 1.2, "identity": 0.6, "aligned_fraction": 0.3, "loci": 1}
EMBED = {"kind": "gene", "gene": "E", "score": 0.05, "identity": None, "aligned_fraction": None,
         "cosine": 0.5, "loci": 0}


def test_outcome_features():
    assert len(FEATURES) == len(OUTCOMES) + 7
    ev = [GENE_A, GENE_B]
    one_hot = {o: [float(o == p) for p in OUTCOMES] for o in OUTCOMES}
    assert outcome_features("gene", -0.1, "A", ev) == [*one_hot["gene"], -0.1, 1.9, 0.9, 0.95,
                                                       math.log(2), 1.0, 1.0]
    assert outcome_features("gene", -0.1, "B", ev)[-2:] == [1.0, 0.0]  # in the evidence, not top
    assert outcome_features("gene", -0.1, "C", ev)[-2:] == [0.0, 0.0]
    assert outcome_features("repeat", -0.3, None, [{**GENE_A, "loci": 9}])[: len(OUTCOMES)] == one_hot["repeat"]
    assert outcome_features("repeat", -0.3, None, [{**GENE_A, "loci": 9}])[len(OUTCOMES) + 4] == math.log(10)
    # nothing found / an embedding-only top candidate / an undecided sentence: zeros, never an error
    assert outcome_features("none", -0.2, None, []) == [*one_hot["none"], -0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert outcome_features("similar", -0.2, None, [EMBED]) == [*one_hot["similar"], -0.2, 0.05, 0, 0, 0, 0, 0]
    assert outcome_features(None, -0.2, None, None)[: len(OUTCOMES)] == [0.0] * len(OUTCOMES)


def _fitted() -> OutcomeCalibration:
    """Right: a gene that is the top aligned candidate, and "none" over nothing found; wrong: a
    gene that no candidate has, and "none" over a full-length alignment."""
    ev = [GENE_A, GENE_B]
    X = ([outcome_features("gene", -0.2, "A", ev)] * 20 + [outcome_features("gene", -0.9, "C", ev)] * 20
         + [outcome_features("none", -0.1, None, [])] * 15 + [outcome_features("none", -0.8, None, ev)] * 5)
    y = [True] * 20 + [False] * 20 + [True] * 15 + [False] * 5
    return OutcomeCalibration.fit(X, y)


def test_fit_separates_right_from_wrong_outcomes_and_counts_them():
    cal = _fitted()
    ev = [GENE_A, GENE_B]
    assert cal.confidence("gene", -0.2, "A", ev) > 0.8 > 0.2 > cal.confidence("gene", -0.9, "C", ev)
    assert cal.confidence("none", -0.1, None, []) > 0.5 > cal.confidence("none", -0.8, None, ev)
    assert (cal.rows, cal.right) == (60, 35)
    assert cal.counts["gene"] == {"rows": 40, "right": 20} and cal.counts["none"] == {"rows": 20, "right": 15}
    assert cal.counts["repeat"] == {"rows": 0, "right": 0}
    const = OutcomeCalibration.fit([outcome_features("gene", 0, "A", ev)] * 40, [False] * 40)
    assert const.confidence("gene", 0, "A", ev) == pytest.approx(0.5 / 41)  # one class: its smoothed rate
    assert const.confidence("none", -5, None, []) == pytest.approx(0.5 / 41)


def test_save_and_load_round_trip(tmp_path):
    cal = _fitted()
    cal.save(tmp_path)
    raw = json.loads((tmp_path / CALIBRATION_FILE).read_text())
    assert raw["format"] == 2 and raw["features"] == list(FEATURES) and raw["rows"] == 60
    assert set(raw) == {"format", "features", "weights", "bias", "rows", "right", "counts"}
    back = OutcomeCalibration.load(tmp_path)
    assert back == cal and back.confidence("gene", -0.2, "A", [GENE_A]) == cal.confidence("gene", -0.2, "A", [GENE_A])
    assert OutcomeCalibration.load(tmp_path / "none") is None


def test_a_gene_only_calibration_is_refused_with_retrain(tmp_path):
    old = {"weights": [0.5, 0.1, 1.0, 0.2, 0.3], "bias": -1.0, "rows": 10, "right": 4,
           "features": ["confidence", "top_score", "gene_in_evidence", "gene_score", "gene_is_top"]}
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(old))
    with pytest.raises(InputError, match="before outcome calibration .*retrain the model with `llamadna train`"):
        OutcomeCalibration.load(tmp_path)
    for damaged in ({**json.loads(json.dumps(old)), "format": 2},  # old fields under the new format
                    {"format": 2, "weights": "high", "bias": 0}):
        (tmp_path / CALIBRATION_FILE).write_text(json.dumps(damaged))
        with pytest.raises(InputError, match="expected the fitted calibration"):
            OutcomeCalibration.load(tmp_path)
