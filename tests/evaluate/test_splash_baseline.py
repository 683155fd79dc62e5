"""The SPLASH-only source baseline: features, fit/predict, missing scores, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llamadna.evaluate.splash_baseline import FILL, MIN_PVAL, SplashOnlyBaseline, splash_features


def _rows(n: int, seed: int, missing: float = 0.0) -> list[dict]:
    """Rows whose source is a function of the SPLASH numbers: ClinVar = small p, COSMIC = large
    effect, dbSNP otherwise; a fraction `missing` of rows have no scores (source dbSNP)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        p = float(10 ** -rng.uniform(0, 12))
        effect, entropy = float(rng.uniform(0, 1)), float(rng.uniform(0, 2))
        source = "ClinVar" if p < 1e-6 else ("COSMIC" if effect > 0.6 else "dbSNP")
        row = {"SPLASH_Effect": effect, "SPLASH_pval": p, "SPLASH_entropy": entropy, "Dataset": source}
        if rng.random() < missing:
            row.update(SPLASH_Effect=None, SPLASH_pval=math.nan, SPLASH_entropy=None, Dataset="dbSNP")
        rows.append(row)
    return rows


def test_features():
    rows = [{"SPLASH_Effect": 0.5, "SPLASH_pval": 1e-3, "SPLASH_entropy": 1.5},
            {"SPLASH_Effect": 0.2, "SPLASH_pval": 0.0, "SPLASH_entropy": 0.1},
            {"SPLASH_Effect": 0.2, "SPLASH_pval": None, "SPLASH_entropy": 0.1},
            {"SPLASH_Effect": math.nan, "SPLASH_pval": 0.5, "SPLASH_entropy": 0.1},
            {}]
    x = splash_features(rows)
    assert x.shape == (5, 4)
    np.testing.assert_allclose(x[0], [0.5, 3.0, 1.5, 0.0])
    np.testing.assert_allclose(x[1], [0.2, -np.log10(MIN_PVAL), 0.1, 0.0])
    for i in (2, 3, 4):
        np.testing.assert_array_equal(x[i], [FILL, FILL, FILL, 1.0])
    assert splash_features([]).shape == (0, 4)


def test_learns_a_function_of_the_scores():
    train, test = _rows(1500, 0, missing=0.1), _rows(500, 1, missing=0.1)
    model = SplashOnlyBaseline().fit(train)
    assert model.classes_ == ["COSMIC", "ClinVar", "dbSNP"]
    pred = model.predict(test)
    acc = np.mean([p == r["Dataset"] for p, r in zip(pred, test)])
    assert acc > 0.95
    proba = model.predict_proba(test)
    assert proba.shape == (500, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert [model.classes_[k] for k in proba.argmax(axis=1)] == pred
    # rows without scores: all dbSNP in training, so predicted dbSNP
    assert model.predict([{"Dataset": "ClinVar"}, {"SPLASH_pval": None}]) == ["dbSNP", "dbSNP"]


def test_all_missing_predicts_the_majority():
    labels = ["COSMIC"] * 30 + ["ClinVar"] * 10 + ["dbSNP"] * 15
    train = [{"SPLASH_Effect": None, "SPLASH_pval": None, "SPLASH_entropy": None, "Dataset": y}
             for y in labels]
    model = SplashOnlyBaseline().fit(train)
    test = _rows(50, 2)  # scores present at test time do not help: nothing was learned from them
    assert model.predict(test) == ["COSMIC"] * 50
    assert model.predict(train) == ["COSMIC"] * len(train)


def test_single_class_and_unfitted():
    with pytest.raises(RuntimeError):
        SplashOnlyBaseline().predict(_rows(2, 0))
    with pytest.raises(ValueError):
        SplashOnlyBaseline().fit([{"SPLASH_pval": 0.1, "Dataset": None}])
    model = SplashOnlyBaseline().fit([{"SPLASH_pval": 0.1, "Dataset": "dbSNP"}] * 3 + [{"Dataset": ""}])
    assert model.predict(_rows(4, 0)) == ["dbSNP"] * 4
    assert model.predict_proba(_rows(4, 0)).tolist() == [[1.0]] * 4
    assert SplashOnlyBaseline().fit(_rows(100, 0)).predict([]) == []


def test_deterministic_and_driven_by_the_scores():
    train, test = _rows(400, 3, missing=0.2), _rows(200, 4, missing=0.2)
    a = SplashOnlyBaseline().fit(train).predict_proba(test)
    b = SplashOnlyBaseline().fit(train).predict_proba(test)
    np.testing.assert_array_equal(a, b)
    # not a constant: each row's probabilities follow its scores, and every class is predicted
    assert len({tuple(np.round(p, 6)) for p in a}) > 10 and set(a.argmax(axis=1).tolist()) == {0, 1, 2}
    scored = [i for i, r in enumerate(test) if r["SPLASH_Effect"] is not None]
    best = a[scored].max(axis=1)
    assert (best > 0.5).mean() > 0.9  # confident where the scores decide the source
    # other training rows: another model
    other = SplashOnlyBaseline().fit(_rows(400, 5, missing=0.2)).predict_proba(test)
    assert not np.array_equal(a, other)
