import math

import numpy as np
import pytest
import scipy.stats
from statsmodels.stats.multitest import multipletests

from llamadna.splash.kmers import pack
from llamadna.splash.stats import (
    AnchorTables,
    FilterConfig,
    benjamini_yekutieli,
    effect_size_bin,
    filter_cells,
    max_run,
    oasis_pvalue,
    optimise_cf,
    pval_opt,
    split_train,
    tables_from_cells,
    target_entropy,
    top_targets,
)


def one(X, c, f):
    t = AnchorTables.from_dense([np.asarray(X)])
    return t, np.asarray([c], dtype=float), np.asarray(f, dtype=float)


def test_oasis_hand_computed():
    # n = (4, 4), M = 8, fbar = (3/4, 1/4), mu = 1/2: S = 2(1/4) + 2(1/4) = 1; gamma = 2
    t, c, f = one([[3, 1], [1, 3]], [1, -1], [1, 0])
    assert oasis_pvalue(t, c, f)[0] == pytest.approx(2 * math.exp(-1))
    # unequal n: n = (6, 4), M = 10, c = (1, 0): S = sqrt(6)(5/6 - 3/5), gamma = 1 - 6/10
    t, c, f = one([[5, 1], [1, 3]], [1, 0], [1, 0])
    S2 = 6 * (5 / 6 - 3 / 5) ** 2
    assert oasis_pvalue(t, c, f)[0] == pytest.approx(2 * math.exp(-2 * S2 / 0.4))
    # scale of c does not matter
    assert oasis_pvalue(t, 3 * c, f)[0] == pytest.approx(2 * math.exp(-2 * S2 / 0.4))
    # a strong table: p = 2 exp(-2 * 10 / 2)
    t, c, f = one([[10, 0], [0, 10]], [1, -1], [1, 0])
    assert oasis_pvalue(t, c, f)[0] == pytest.approx(2 * math.exp(-10))


def test_oasis_degenerate_cases_give_one():
    t, c, f = one([[3, 1], [1, 3]], [1, 1], [1, 0])
    assert oasis_pvalue(t, c, f)[0] == 1.0  # constant c
    t, c, f = one([[3, 1], [1, 3]], [1, -1], [0.5, 0.5])
    assert oasis_pvalue(t, c, f)[0] == 1.0  # constant f
    t, c, f = one([[3, 0], [1, 0]], [1, -1], [1, 0])
    assert oasis_pvalue(t, c, f)[0] == 1.0  # constant c over the samples present
    t, c, f = one([[3, 1], [0, 0]], [1, -1], [1, 0])
    assert oasis_pvalue(t, c, f)[0] == 1.0  # f constant over the targets present


def test_effect_size_hand_computed():
    t, c, f = one([[3, 1, 2], [1, 3, 2]], [1, -1, 0], [1, 0])
    assert effect_size_bin(t, c, f)[0] == pytest.approx(0.75 - 0.25)
    t, c, f = one([[3, 1, 2], [1, 3, 2]], [1, 0.5, 0], [1, 0])
    assert effect_size_bin(t, c, f)[0] == 0.0  # no negative side
    # pooled over samples of one sign: (3 + 1) / (4 + 4) vs 2 / 4
    t, c, f = one([[3, 1, 2], [1, 3, 2]], [1, 1, -1], [1, 0])
    assert effect_size_bin(t, c, f)[0] == pytest.approx(0.0)


def test_entropy_matches_scipy():
    rng = np.random.default_rng(0)
    mats = [rng.integers(0, 20, size=(rng.integers(1, 8), 3)) + (i == 0) for i in range(50)]
    mats.append(np.array([[7, 0, 2]]))  # single target -> 0
    t = AnchorTables.from_dense(mats)
    want = [scipy.stats.entropy(X.sum(axis=1), base=2) for X in mats]
    np.testing.assert_allclose(target_entropy(t), want, rtol=1e-12, atol=1e-15)
    assert target_entropy(t)[-1] == 0.0


def test_by_matches_statsmodels():
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.random(300), rng.random(20) * 1e-4, [1.0, 0.0, 0.5, 0.5]])
    want = multipletests(p, method="fdr_by")[1]
    np.testing.assert_allclose(benjamini_yekutieli(p), want, rtol=1e-12)
    assert len(benjamini_yekutieli(np.array([]))) == 0


def test_split_train_sizes():
    rng = np.random.default_rng(2)
    mats = [rng.integers(0, 30, size=(4, 5)) for _ in range(200)]
    t = AnchorTables.from_dense(mats)
    train = split_train(t, 0.25, np.random.default_rng(0))
    assert np.all((train >= 0) & (train <= t.count))
    n = t.sample_totals()
    np.testing.assert_array_equal(t.sample_totals(train), np.floor(0.25 * n))
    # fixed seed -> same draw
    np.testing.assert_array_equal(train, split_train(t, 0.25, np.random.default_rng(0)))


def null_tables(n_anchors, seed):
    rng = np.random.default_rng(seed)
    mats = []
    for _ in range(n_anchors):
        probs = rng.dirichlet(np.ones(rng.integers(2, 6)))
        depth = rng.integers(10, 200, size=5) * (rng.random(5) < 0.8)  # some samples absent
        mats.append(np.stack([rng.multinomial(d, probs) for d in depth], axis=1))
    return AnchorTables.from_dense(mats)


def test_null_calibration():
    t = null_tables(1500, seed=3)
    p = pval_opt(t, np.random.default_rng(0)).pval_opt
    assert np.all((p >= 0) & (p <= 1))
    # conservative: fraction below 0.05 at most 0.05 plus 3 binomial standard deviations
    assert (p < 0.05).mean() <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / len(p))


def test_planted_difference():
    # group A (samples 0, 1) uses target T1, group B (2, 3) uses T2, 60 records each
    X = np.array([[60, 60, 0, 0], [0, 0, 60, 60]])
    res = pval_opt(AnchorTables.from_dense([X]), np.random.default_rng(0))
    assert res.pval_opt[0] < 1e-6
    assert res.effect_size_bin[0] == pytest.approx(1.0)
    # with some noise targets and unequal depth the signal stays
    Y = np.array([[70, 55, 2, 1], [1, 0, 80, 52], [2, 1, 3, 2]])
    res = pval_opt(AnchorTables.from_dense([Y, X]), np.random.default_rng(1), splits=3)
    assert np.all(res.pval_opt < 1e-6)
    assert res.effect_size_bin[0] > 0.9


def test_optimise_finds_the_split_and_invalid_tables():
    X = np.array([[30, 30, 0], [0, 0, 30]])
    bad = np.array([[5, 0, 0], [5, 0, 0]])  # one sample only
    t = AnchorTables.from_dense([X, bad])
    c, f, S, valid = optimise_cf(t, np.random.default_rng(0))
    assert valid.tolist() == [True, False]
    assert np.sign(c[0, 0]) == np.sign(c[0, 1]) == -np.sign(c[0, 2])
    assert f[0] != f[1] and S[1] == 0 and not c[1].any()
    assert np.linalg.norm(c[0]) == pytest.approx(1.0)
    p = pval_opt(t, np.random.default_rng(0)).pval_opt
    assert p[1] == 1.0


def test_deterministic_for_a_seed():
    t = null_tables(300, seed=4)
    a = pval_opt(t, np.random.default_rng(7), splits=2)
    b = pval_opt(t, np.random.default_rng(7), splits=2)
    np.testing.assert_array_equal(a.pval_opt, b.pval_opt)
    np.testing.assert_array_equal(a.effect_size_bin, b.effect_size_bin)
    c = pval_opt(t, np.random.default_rng(8), splits=2)
    assert not np.array_equal(a.pval_opt, c.pval_opt)


def test_max_run():
    words = ["ACGTACGTAC", "AAAAAAAACG", "ACCCCCCCCC", "GGGGGGGGGG", "ACGTTTACGT"]
    assert max_run(pack(words, 10), 10).tolist() == [1, 8, 9, 10, 3]


def cells(rows):
    """rows: (anchor str, target str, sample, count) sorted by anchor then target."""
    a = pack([r[0] for r in rows], len(rows[0][0]))
    t = pack([r[1] for r in rows], len(rows[0][1]))
    s = np.array([r[2] for r in rows])
    c = np.array([r[3] for r in rows])
    order = np.lexsort((s, t, a))
    return a[order], t[order], s[order], c[order]


def test_each_filter():
    cfg = FilterConfig(min_sample_count=5, min_anchor_count=20, min_targets=2, min_samples=2,
                       max_run=4)
    rows = [
        # passes: two samples with n_j > 5, M > 20, two targets
        ("ACGTA", "CCCCC", 0, 10), ("ACGTA", "GGGGG", 1, 12), ("ACGTA", "TTTTT", 2, 3),
        # sample 2 holds only 3 records of this anchor, and sample 0 only 2: both groups dropped;
        # what remains is in one sample -> "samples"
        ("ACGTC", "CCCCC", 0, 2), ("ACGTC", "CCCCC", 1, 30), ("ACGTC", "GGGGG", 1, 9),
        # every sample below the count -> "sample_count"
        ("ACGTG", "CCCCC", 0, 5), ("ACGTG", "GGGGG", 1, 4),
        # M = 12 + 6 <= 20 -> "anchor_count"
        ("ACGTT", "CCCCC", 0, 12), ("ACGTT", "GGGGG", 1, 6),
        # one target -> "targets"
        ("ACTTA", "CCCCC", 0, 30), ("ACTTA", "CCCCC", 1, 30),
        # homopolymer run of 4 -> "max_run"
        ("AAAAC", "CCCCC", 0, 30), ("AAAAC", "GGGGG", 1, 30),
    ]
    a, t, s, c = cells(rows)
    keep, removed = filter_cells(a, t, s, c, 3, 5, cfg)
    assert removed == {"sample_count": 1, "anchor_count": 1, "targets": 1, "samples": 1,
                       "max_run": 1}
    kept = {(x, y, int(z)) for x, y, z in zip(a[keep], t[keep], s[keep])}
    assert kept == {(pack(["ACGTA"], 5)[0], pack(["CCCCC"], 5)[0], 0),
                    (pack(["ACGTA"], 5)[0], pack(["GGGGG"], 5)[0], 1)}
    # run filter off
    _, removed = filter_cells(a, t, s, c, 3, 5, FilterConfig(5, 20, 2, 2, max_run=0))
    assert removed["max_run"] == 0


def test_tables_from_cells_and_top_targets():
    rows = [("AC", "AA", 0, 3), ("AC", "AA", 1, 1), ("AC", "CC", 1, 5), ("AC", "GG", 0, 4),
            ("GT", "TT", 0, 2), ("GT", "AA", 1, 2)]
    a, t, s, c = cells(rows)
    tables, anchors, targets = tables_from_cells(a, t, s, c, 2)
    assert tables.n_anchors == 2 and tables.n_rows == 5
    assert pack(["AC", "GT"], 2).tolist() == anchors.tolist()
    rows_, counts = top_targets(tables, k=2)
    # AC: AA 4, CC 5, GG 4 -> CC then AA (tie with GG goes to the lower row = AA)
    assert counts.tolist() == [[5, 4], [2, 2]]
    assert targets[rows_[0]].tolist() == pack(["CC", "AA"], 2).tolist()
    assert targets[rows_[1]].tolist() == pack(["AA", "TT"], 2).tolist()


def test_optimised_S_matches_dense_algebra():
    t = null_tables(60, seed=5)
    c, f, S, valid = optimise_cf(t, np.random.default_rng(0))
    n, r = t.sample_totals(), t.row_totals()
    for a in np.flatnonzero(valid):
        rows = np.flatnonzero(t.row_anchor == a)
        X = np.zeros((len(rows), t.n_samples))
        cells = np.isin(t.cell_row, rows)
        X[t.cell_row[cells] - rows[0], t.cell_sample[cells]] = t.count[cells]
        cols = n[a] > 0
        Xt = (X[:, cols] - np.outer(r[rows], n[a, cols]) / n[a].sum()) / np.sqrt(n[a, cols])
        assert f[rows] @ Xt @ c[a, cols] == pytest.approx(S[a], rel=1e-9)
        # f is the best response to c: no other 0/1 choice of f gives a larger S
        v = Xt @ c[a, cols]
        assert S[a] >= v[v > 0].sum() - 1e-9
