"""OutcomeCalibration: features per outcome, fit, save/load, and the refusal of older formats."""

from __future__ import annotations

import json
import math

import pytest

from llamadna.constants import COVERAGE_WORDS, IDENTITY_WORDS, OUTCOMES, REPEAT_MIN_LOCI, VIA, found_via
from llamadna.errors import InputError
from llamadna.model.calibration import (
    BANDS,
    CALIBRATION_FILE,
    FEATURES,
    NUMERIC,
    OutcomeCalibration,
    calibration_current,
    evidence_features,
    outcome_features,
)

GENE_A = {"kind": "gene", "gene": "A", "score": 1.9, "identity": 0.96, "aligned_fraction": 0.9, "loci": 1,
          "cosine": 0.8}
GENE_B = {"kind": "gene", "gene": "B", "score": 1.2, "identity": 0.6, "aligned_fraction": 0.3, "loci": 1}
EMBED = {"kind": "gene", "gene": "E", "score": 0.05, "identity": None, "aligned_fraction": None,
         "cosine": 0.5, "loci": 0}
PER = len(BANDS) + len(NUMERIC)  # values given in each outcome's slot


def _named(values: list[float]) -> dict[str, float]:
    return dict(zip((*BANDS, *NUMERIC), values))


def test_evidence_features_bands_and_gap():
    assert len(BANDS) == len(IDENTITY_WORDS) + len(COVERAGE_WORDS) + REPEAT_MIN_LOCI + 1 + len(VIA)
    f = _named(evidence_features(-0.1, [GENE_A, GENE_B]))
    # identity 0.96: near-identical; 0.9 of it: whole; one locus; found by alignment and embedding
    assert [f[b] for b in BANDS] == [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    assert (f["confidence"], f["top_score"], f["aligned_fraction"], f["identity"]) == (-0.1, 1.9, 0.9, 0.96)
    assert f["log1p_loci"] == pytest.approx(math.log(2)) and f["top_cosine"] == 0.8
    assert f["align_gap"] == pytest.approx(0.96 * 0.9 - 0.6 * 0.3)  # the top aligns this much better
    # a lone candidate: the gap is its whole alignment; many loci fall in the last loci band
    lone = _named(evidence_features(0.0, [{**GENE_A, "identity": 0.7, "aligned_fraction": 0.6, "loci": 9}]))
    assert lone["align_gap"] == pytest.approx(0.42) and lone[f"loci_{REPEAT_MIN_LOCI}+"] == 1
    assert lone["identity_diverged"] == 1 and lone["coverage_most"] == 1
    # at each band's lower edge the band is that one, just under it the next
    for (low, word), (_, below) in zip(IDENTITY_WORDS, IDENTITY_WORDS[1:]):
        assert _named(evidence_features(0, [{**GENE_A, "identity": low}]))[f"identity_{word}"] == 1
        assert _named(evidence_features(0, [{**GENE_A, "identity": low - 1e-9}]))[f"identity_{below}"] == 1
    # nothing found, or found by embedding only: no alignment band, zeros, never an error
    for ev in ([], None, [EMBED]):
        g = _named(evidence_features(-0.2, ev))
        assert sum(g[b] for b in BANDS[:len(IDENTITY_WORDS) + len(COVERAGE_WORDS)]) == 0
        assert g["align_gap"] == 0 and g["identity"] == 0 and g["loci_0"] == 1
    assert _named(evidence_features(-0.2, [EMBED]))["top_cosine"] == 0.5


def test_evidence_features_how_the_top_was_found_and_how_many_aligned():
    def via(ev):
        f = _named(evidence_features(0.0, ev))
        return [v for v in VIA if f[f"via_{v}"] == 1], f["n_aligned"]

    assert via([GENE_A, GENE_B, EMBED]) == (["both"], 2)  # aligned and a cosine; two of three aligned
    assert via([GENE_B, GENE_A]) == (["align"], 2)  # aligned, not found by its embedding
    assert via([EMBED, GENE_B]) == (["embed"], 1)  # the embedding's only
    assert via([]) == ([], 0) and via(None) == ([], 0)  # no candidate: no band
    # derived from identity and cosine as the retriever derives its "via", whatever a row carries
    assert via([{**GENE_B, "via": "both"}]) == (["align"], 1)


def test_found_via_is_the_retrievers_rule():
    # one rule for the retriever's "via" and the calibration's bands (constants.found_via)
    assert found_via(0.9, 0.4) == "both" and found_via(0.9, None) == "align"
    assert found_via(None, 0.4) == "embed" and found_via(None, None) == "embed"
    assert found_via(0.0, 0.0) == "both"  # zero is a value, not a missing one


def test_outcome_features_fill_the_slot_of_the_outcome_said():
    assert len(FEATURES) == len(OUTCOMES) * (1 + PER)
    ev = [GENE_A, GENE_B]
    values = evidence_features(-0.1, ev)
    for j, o in enumerate(OUTCOMES):
        x = outcome_features(o, -0.1, ev)
        assert x[: len(OUTCOMES)] == [float(o == p) for p in OUTCOMES]
        slot = len(OUTCOMES) + j * PER
        assert x[slot: slot + PER] == values
        assert sum(abs(v) for v in x[len(OUTCOMES):]) == pytest.approx(sum(abs(v) for v in values))
        assert FEATURES[slot].startswith(f"{o}:")
    assert outcome_features(None, -0.2, ev) == [0.0] * len(FEATURES)  # an undecided sentence


def _fitted() -> OutcomeCalibration:
    """Right: a gene over a near-identical candidate far ahead of the next one, and "none" over
    nothing found; wrong: a gene over a lone weak candidate, and "none" over a whole alignment.
    Identity then means opposite things for the two outcomes."""
    strong, weak = [GENE_A, GENE_B], [{**GENE_B, "identity": 0.7, "aligned_fraction": 0.9}]
    X = ([outcome_features("gene", -0.2, strong)] * 20 + [outcome_features("gene", -0.2, weak)] * 20
         + [outcome_features("none", -0.2, [])] * 15 + [outcome_features("none", -0.2, strong)] * 5)
    y = [True] * 20 + [False] * 20 + [True] * 15 + [False] * 5
    return OutcomeCalibration.fit(X, y)


def test_fit_weighs_the_evidence_per_outcome_and_counts_them():
    cal = _fitted()
    strong, weak = [GENE_A, GENE_B], [{**GENE_B, "identity": 0.7, "aligned_fraction": 0.9}]
    # the same confidence, told apart by the evidence alone, in opposite directions per outcome
    assert cal.confidence("gene", -0.2, strong) > 0.8 > 0.2 > cal.confidence("gene", -0.2, weak)
    assert cal.confidence("none", -0.2, []) > 0.5 > cal.confidence("none", -0.2, strong)
    assert (cal.rows, cal.right) == (60, 35)
    assert cal.counts["gene"] == {"rows": 40, "right": 20} and cal.counts["none"] == {"rows": 20, "right": 15}
    assert cal.counts["repeat"] == {"rows": 0, "right": 0}
    const = OutcomeCalibration.fit([outcome_features("gene", 0, strong)] * 40, [False] * 40)
    assert const.confidence("gene", 0, strong) == pytest.approx(0.5 / 41)  # one class: its smoothed rate
    assert const.confidence("none", -5, []) == pytest.approx(0.5 / 41)


def test_save_and_load_round_trip(tmp_path):
    cal = _fitted()
    cal.save(tmp_path)
    raw = json.loads((tmp_path / CALIBRATION_FILE).read_text())
    assert raw["format"] == 4 and raw["features"] == list(FEATURES) and raw["rows"] == 60
    assert set(raw) == {"format", "features", "weights", "bias", "rows", "right", "counts"}
    assert [p.name for p in tmp_path.iterdir()] == [CALIBRATION_FILE]  # no temporary left
    back = OutcomeCalibration.load(tmp_path)
    assert back == cal and back.confidence("gene", -0.2, [GENE_A]) == cal.confidence("gene", -0.2, [GENE_A])
    assert calibration_current(tmp_path)
    assert OutcomeCalibration.load(tmp_path / "none") is None and not calibration_current(tmp_path / "none")


@pytest.mark.parametrize("old", [
    {"weights": [0.5, 0.1, 1.0, 0.2, 0.3], "bias": -1.0, "rows": 10, "right": 4,  # gene-only
     "features": ["confidence", "top_score", "gene_in_evidence", "gene_score", "gene_is_top"]},
    {"format": 2, "weights": [0.1] * 12, "bias": -0.6, "rows": 10, "right": 4, "counts": {},  # one set of weights
     "features": ["outcome_gene", "outcome_intergenic", "outcome_repeat", "outcome_similar", "outcome_none",
                  "confidence", "top_score", "aligned_fraction", "identity", "log1p_loci",
                  "gene_in_evidence", "gene_is_top"]},
    {"format": 3, "weights": [0.1] * 3, "bias": -0.6, "rows": 10, "right": 4, "counts": {},  # no VIA, n_aligned
     "features": ["outcome_gene", "outcome_intergenic", "outcome_repeat"]},
])
def test_an_older_calibration_is_refused_with_the_command_that_refits_it(tmp_path, old):
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(old))
    with pytest.raises(InputError, match=r"older format .*refit it with `llamadna calibrate "):
        OutcomeCalibration.load(tmp_path)
    assert not calibration_current(tmp_path)


def test_a_damaged_calibration_is_refused(tmp_path):
    whole = {"format": 4, "weights": [0.0] * len(FEATURES), "bias": 0.0, "rows": 1, "right": 0, "counts": {},
             "features": list(FEATURES)}
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(whole))
    assert OutcomeCalibration.load(tmp_path) is not None and calibration_current(tmp_path)
    for damaged in ({"format": 4, "weights": "high", "bias": 0},
                    {**whole, "weights": [0.0] * 3, "features": ["outcome_gene"] * 3},
                    {**whole, "weights": [0.0] * 3},  # this version's features, too few weights
                    {**whole, "rows": "1"}):
        (tmp_path / CALIBRATION_FILE).write_text(json.dumps(damaged))
        with pytest.raises(InputError, match="expected the fitted calibration"):
            OutcomeCalibration.load(tmp_path)
        assert not calibration_current(tmp_path)
    (tmp_path / CALIBRATION_FILE).write_text("[1, 2")
    assert not calibration_current(tmp_path)
