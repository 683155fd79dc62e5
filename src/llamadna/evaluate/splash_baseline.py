"""A source baseline that reads only the SPLASH scores: what the three numbers alone say about a
window's source, so a model that is shown them in its prompt can be judged against them.

Features per row, (N, 4):
- ``SPLASH_Effect`` and ``SPLASH_entropy`` as they are;
- ``-log10(SPLASH_pval)``, p clipped below at `MIN_PVAL` (p = 0 would be infinite);
- a missing flag: 1 when any of the three is null or NaN, which are then all set to `FILL`, so a
  row without scores is one point the trees can tell apart rather than an imputed guess.

The classifier is scikit-learn's `HistGradientBoostingClassifier` with a fixed `random_state`
and no early stopping (no internal validation split), so a fit is a function of the rows. Fit and
predict run on one OpenMP thread (`threadpoolctl`): with 4 features there is nothing to share out,
and on a busy machine the thread team's spin-waits made a 1,500-row fit take 16 s instead of 0.13 s.
Trained on a single class it predicts that class; with no labelled training row it raises.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from llamadna.constants import SPLASH_COLUMNS

LABEL_COLUMN = "Dataset"
MIN_PVAL = 1e-300  # -log10 of it (300) bounds the p-value feature
FILL = 0.0  # the value of every SPLASH feature of a row whose scores are missing
FEATURES = ("effect", "neg_log10_pval", "entropy", "splash_missing")

_EFFECT, _PVAL, _ENTROPY = SPLASH_COLUMNS  # SPLASH_Effect, SPLASH_pval, SPLASH_entropy


def _number(x) -> float:
    """A float, NaN for None/NaN/anything that is not a number."""
    if x is None or isinstance(x, bool):
        return math.nan
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def splash_features(rows: Sequence[Mapping]) -> np.ndarray:
    """The (N, 4) float64 features of N dataset rows, columns as `FEATURES` (module doc)."""
    raw = np.array([[_number(r.get(c)) for c in (_EFFECT, _PVAL, _ENTROPY)] for r in rows],
                   dtype=np.float64).reshape(len(rows), 3)  # (N, 3)
    missing = np.isnan(raw).any(axis=1)  # (N,)
    feats = np.empty((len(rows), 4), dtype=np.float64)
    feats[:, 0] = raw[:, 0]
    feats[:, 1] = -np.log10(np.clip(raw[:, 1], MIN_PVAL, None))
    feats[:, 2] = raw[:, 2]
    feats[missing, :3] = FILL
    feats[:, 3] = missing
    return feats


class SplashOnlyBaseline:
    """Gradient-boosted trees from the SPLASH scores to the source label.

    Parameters
    ----------
    max_iter, learning_rate, max_depth : `HistGradientBoostingClassifier`'s (boosting rounds,
        shrinkage, tree depth; scikit-learn's defaults except a depth bound, which keeps the
        trees from memorising single rows).
    random_state : fixed, so fits are reproducible.
    """

    def __init__(self, max_iter: int = 100, learning_rate: float = 0.1, max_depth: int | None = 4,
                 random_state: int = 0) -> None:
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.random_state = random_state
        self.classes_: list[str] = []
        self._model = None  # None after fit: a single class, predicted for every row

    def fit(self, train_rows: Sequence[Mapping]) -> SplashOnlyBaseline:
        """Fit on dataset rows (SPLASH columns and `Dataset`); rows without a label are left out."""
        from sklearn.ensemble import HistGradientBoostingClassifier
        from threadpoolctl import threadpool_limits

        rows = [r for r in train_rows if r.get(LABEL_COLUMN) not in (None, "")]
        if not rows:
            raise ValueError(f"no training rows with a {LABEL_COLUMN} label")
        y = np.array([str(r[LABEL_COLUMN]) for r in rows])
        self.classes_ = sorted(set(y.tolist()))
        self._model = None
        if len(self.classes_) > 1:
            model = HistGradientBoostingClassifier(
                max_iter=self.max_iter, learning_rate=self.learning_rate, max_depth=self.max_depth,
                early_stopping=False, random_state=self.random_state,
            )
            with threadpool_limits(1):
                self._model = model.fit(splash_features(rows), y)
        return self

    def _check_fitted(self) -> None:
        if not self.classes_:
            raise RuntimeError("SplashOnlyBaseline is not fitted: call fit(train_rows) first")

    def predict_proba(self, rows: Sequence[Mapping]) -> np.ndarray:
        """(N, K) class probabilities, columns in the order of `classes_` (sorted labels)."""
        from threadpoolctl import threadpool_limits

        self._check_fitted()
        if self._model is None:
            return np.ones((len(rows), 1), dtype=np.float64)
        if not rows:
            return np.zeros((0, len(self.classes_)), dtype=np.float64)
        with threadpool_limits(1):
            return self._model.predict_proba(splash_features(rows))

    def predict(self, rows: Sequence[Mapping]) -> list[str]:
        """N predicted source labels (the most probable class; ties go to the first in `classes_`)."""
        proba = self.predict_proba(rows)
        return [self.classes_[k] for k in proba.argmax(axis=1)] if len(rows) else []
