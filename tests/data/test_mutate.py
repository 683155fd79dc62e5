"""The divergence mutator: rates, indels, length, N handling, determinism."""

from __future__ import annotations

from collections import Counter

import mappy
import numpy as np
import pytest

from llamadna.data.mutate import (
    _CODE,
    DIVERGENCE_RATES,
    _Draws,
    _events,
    mutate,
    mutate_nested,
    mutate_rows,
    row_seed,
)
from llamadna.data.synthetic import random_sequence


def _seq(n: int, seed: int = 0) -> str:
    return random_sequence(np.random.default_rng(seed), n).tobytes().decode()


def _diff(a: str, b: str) -> np.ndarray:
    return np.frombuffer(a.encode(), dtype=np.uint8) != np.frombuffer(b.encode(), dtype=np.uint8)


def _mismatches(a: str, b: str) -> int:
    return int(_diff(a, b).sum())


def test_rates():
    assert DIVERGENCE_RATES == (0, 0.01, 0.05, 0.10, 0.20, 0.30, 0.40)


@pytest.mark.parametrize("rate", [r for r in DIVERGENCE_RATES if r > 0])
def test_substitution_rate_is_realised(rate):
    n = 100_000
    seq = _seq(n)
    out = mutate(seq, rate, np.random.default_rng(1), indel_fraction=0)
    sd = np.sqrt(rate * (1 - rate) / n)  # binomial noise of the realised rate
    assert abs(_mismatches(seq, out) / n - rate) < 5 * sd


def test_substitutions_go_to_each_other_base_uniformly():
    seq = "A" * 30_000
    out = Counter(mutate(seq, 0.3, np.random.default_rng(2), indel_fraction=0))
    assert "A" in out and set(out) == {"A", "C", "G", "T"}
    subs = out["C"] + out["G"] + out["T"]
    for b in "CGT":
        assert abs(out[b] / subs - 1 / 3) < 0.03


def test_rate_zero_is_identity():
    seq = _seq(1000) + "NNNN" + _seq(500, seed=1)
    for frac in (0, 0.1, 1.0):
        assert mutate(seq, 0, np.random.default_rng(0), indel_fraction=frac) == seq


def test_indels_occur():
    seq = _seq(5000)
    rate, frac = 0.02, 0.5
    out = mutate(seq, rate, np.random.default_rng(3), indel_fraction=frac)
    hit = next(iter(mappy.Aligner(seq=seq, preset="map-ont").map(out)))
    ops = Counter(op for _, op in hit.cigar)
    assert ops[1] > 0 and ops[2] > 0  # insertions and deletions
    events = ops[1] + ops[2]
    assert 0.4 * len(seq) * rate * frac < events < 1.6 * len(seq) * rate * frac
    # substitutions only: the sequence stays in register
    same = mutate(seq, rate, np.random.default_rng(3), indel_fraction=0)
    assert _mismatches(seq, same) < 2 * rate * len(seq)
    assert _mismatches(seq, out) > 0.3 * len(seq)  # shifted after the first indel


@pytest.mark.parametrize("n", [0, 1, 7, 512])
def test_length_is_kept(n):
    seq = _seq(n)
    for rate in DIVERGENCE_RATES:
        for frac in (0.1, 1.0):
            for seed in range(3):
                out = mutate(seq, rate, np.random.default_rng(seed), indel_fraction=frac, max_indel=5)
                assert len(out) == n and set(out) <= set("ACGT")


def test_n_stays_n():
    seq = _seq(400) + "N" * 50 + _seq(400, seed=1)
    out = mutate(seq, 0.3, np.random.default_rng(4), indel_fraction=0)
    assert out[400:450] == "N" * 50 and out.count("N") == 50
    out = mutate(seq, 0.1, np.random.default_rng(4), indel_fraction=1.0)
    assert "N" * 50 in out and out.count("N") == 50  # shifted by indels, never deleted or made


def test_deterministic_and_nested():
    seq = _seq(3000)
    a = mutate(seq, 0.1, np.random.default_rng(5))
    assert a == mutate(seq, 0.1, np.random.default_rng(5))
    assert a != mutate(seq, 0.1, np.random.default_rng(6))
    # same seed: the substitutions at a lower rate are a subset of those at a higher one
    lo = mutate(seq, 0.05, np.random.default_rng(7), indel_fraction=0)
    hi = mutate(seq, 0.2, np.random.default_rng(7), indel_fraction=0)
    d_lo = np.frombuffer(lo.encode(), np.uint8) != np.frombuffer(seq.encode(), np.uint8)
    d_hi = np.frombuffer(hi.encode(), np.uint8) != np.frombuffer(seq.encode(), np.uint8)
    assert d_lo.sum() > 0 and not (d_lo & ~d_hi).any()


def test_bad_arguments():
    rng = np.random.default_rng(0)
    for kw in ({"rate": -0.1}, {"rate": 1.5}, {"rate": 0.1, "indel_fraction": -1},
               {"rate": 0.5, "indel_fraction": 3}, {"rate": 0.1, "max_indel": 0}):
        with pytest.raises(ValueError):
            mutate("ACGT", rng=rng, **kw)


# ---------------------------------------------------------------------------- nested mutations
def test_nested_substitutions_are_subsets():
    seq = _seq(20_000) + "N" * 100
    lo, mid, hi, top = mutate_nested(seq, [0.05, 0.10, 0.30, 0.40], 11, indel_fraction=0)
    d5, d10, d30, d40 = (_diff(seq, x) for x in (lo, mid, hi, top))
    assert 0 < d5.sum() < d10.sum() < d30.sum() < d40.sum()
    assert not (d5 & ~d10).any() and not (d5 & ~d30).any() and not (d10 & ~d30).any()
    assert not (d30 & ~d40).any()
    # a position substituted at two rates gets the same base at both (one replacement per position)
    both = np.flatnonzero(d5)
    assert all(lo[i] == hi[i] for i in both)
    assert set(top[-100:]) == {"N"}


def test_nested_indel_events_are_subsets():
    seq = _seq(5000) + "N" * 20 + _seq(500, seed=2)
    code = _CODE[np.frombuffer(seq.encode(), np.uint8)]
    d = _Draws.draw(np.random.default_rng(3), len(seq), 3)
    prev_sub, prev_ev = None, None
    for rate in (0.01, 0.05, 0.10, 0.30):
        sub, ev = _events(code, d, rate, 0.5)
        assert not (sub | ev)[5000:5020].any()  # N is never a substitution nor an event start
        if prev_sub is not None:
            assert not (prev_sub & ~sub).any() and not (prev_ev & ~ev).any()
            assert ev.sum() > prev_ev.sum()
        prev_sub, prev_ev = sub, ev


def test_nested_with_indels_is_deterministic_and_keeps_length():
    seq = _seq(512) + "NN" + _seq(100, seed=3)
    rates = list(DIVERGENCE_RATES)
    a = mutate_nested(seq, rates, 4, indel_fraction=1.0, max_indel=5)
    assert a == mutate_nested(seq, rates, 4, indel_fraction=1.0, max_indel=5)
    assert a != mutate_nested(seq, rates, 5, indel_fraction=1.0, max_indel=5)
    assert a[0] == seq
    assert all(len(x) == len(seq) and x.count("N") == 2 for x in a)
    # one draw per sequence: a rate's copy does not depend on the other rates asked for
    assert mutate_nested(seq, [0.2], 4, indel_fraction=1.0, max_indel=5)[0] == a[rates.index(0.2)]
    assert mutate_nested(seq, [0.3, 0.05], 4, indel_fraction=1.0, max_indel=5) == [
        a[rates.index(0.3)], a[rates.index(0.05)]]


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.10, 0.40])
def test_nested_substitution_rate_is_realised(rate):
    n = 100_000
    seq = _seq(n)
    out = mutate_nested(seq, [rate], 7, indel_fraction=0)[0]
    sd = np.sqrt(rate * (1 - rate) / n)
    assert abs(_mismatches(seq, out) / n - rate) < 5 * sd


def test_rate_zero_nested_is_identity():
    seq = _seq(300) + "NNNN"
    assert mutate_nested(seq, [0, 0, 0.2], 0, indel_fraction=1.0)[:2] == [seq, seq]
    assert mutate_nested("", [0, 0.3], 0) == ["", ""]


def test_row_seeds():
    assert row_seed(1, 2).entropy == row_seed(1, 2).entropy
    seqs = [_seq(200, seed=s) for s in range(4)]
    rates = (0, 0.05, 0.3)
    out = mutate_rows(seqs, rates, seed=9)
    assert list(out) == list(rates) and all(len(v) == 4 for v in out.values())
    assert out[0] == seqs
    for i, s in enumerate(seqs):  # row i depends on (seed, i) only
        assert out[0.3][i] == mutate_nested(s, [0.3], row_seed(9, i))[0]
    assert mutate_rows(seqs[:2], rates, seed=9)[0.3] == out[0.3][:2]
    assert mutate_rows(seqs, rates, seed=10)[0.3] != out[0.3]
    # identical sequences in different rows mutate differently
    twin = mutate_rows([seqs[0], seqs[0]], [0.3], seed=9)[0.3]
    assert twin[0] != twin[1]


def test_nested_bad_arguments():
    for kw in ({"rates": [0.1, 1.5]}, {"rates": [-0.1]}, {"rates": [0.5], "indel_fraction": 3},
               {"rates": [0.1], "max_indel": 0}):
        with pytest.raises(ValueError):
            mutate_nested("ACGT", seed=0, **kw)
