"""The divergence mutator: rates, indels, length, N handling, determinism."""

from __future__ import annotations

from collections import Counter

import mappy
import numpy as np
import pytest

from llamadna.data.synthetic import random_sequence
from llamadna.evaluate.divergence import DIVERGENCE_RATES, mutate


def _seq(n: int, seed: int = 0) -> str:
    return random_sequence(np.random.default_rng(seed), n).tobytes().decode()


def _mismatches(a: str, b: str) -> int:
    x = np.frombuffer(a.encode(), dtype=np.uint8)
    y = np.frombuffer(b.encode(), dtype=np.uint8)
    return int((x != y).sum())


def test_rates():
    assert DIVERGENCE_RATES == (0, 0.01, 0.05, 0.10, 0.20, 0.30)


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
