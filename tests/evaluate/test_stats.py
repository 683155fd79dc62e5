"""Evaluation statistics: cluster bootstrap, template floor, accuracy ceiling, leak audit."""

from __future__ import annotations

import itertools
import logging
from collections import Counter

import numpy as np
import polars as pl
import pytest

from llamadna.data.template import SENTENCE_FIELDS, annotation_sentence, parse_annotation
from llamadna.evaluate.metrics import f1_macro
from llamadna.evaluate.stats import (
    TEMPLATE_FIELDS,
    accuracy_ceiling,
    cluster_bootstrap_ci,
    cluster_bootstrap_indices,
    label_codes,
    leak_audit,
    leak_audit_splits,
    macro_f1_codes,
    template_floor_fields,
    template_floor_sentences,
)


# ---------------------------------------------------------------------------------- bootstrap
def test_two_clusters_enumerated():
    # A = rows [0, 0], B = row [3]. Resamples of 2 clusters: AA (p 1/4) mean 0, AB/BA (1/2) mean
    # 1, BB (1/4) mean 3. A row-level bootstrap would also give 1.5, 2, 2/3 ...
    values, clusters = [0.0, 0.0, 3.0], ["A", "A", "B"]
    boots = [float(np.mean(np.asarray(values)[i])) for i in cluster_bootstrap_indices(clusters, 4000, 1)]
    freq = Counter(boots)
    assert set(freq) == {0.0, 1.0, 3.0}
    for v, p in ((0.0, 0.25), (1.0, 0.5), (3.0, 0.25)):
        assert abs(freq[v] / 4000 - p) < 0.03
    point, low, high = cluster_bootstrap_ci(values, clusters, n_boot=4000, seed=1)
    assert (point, low, high) == (1.0, 0.0, 3.0)
    # a 40 % interval: the 30 % and 70 % quantiles of {0: 1/4, 1: 1/2, 3: 1/4} are both 1
    assert cluster_bootstrap_ci(values, clusters, n_boot=4000, seed=1, alpha=0.6) == (1.0, 1.0, 1.0)


def test_three_clusters_match_exact_distribution():
    groups = {"a": [1.0], "b": [2.0, 2.0], "c": [6.0]}
    values = [v for g in groups.values() for v in g]
    clusters = [k for k, g in groups.items() for _ in g]
    exact = Counter()
    for draw in itertools.product(groups, repeat=3):  # all 27 equally likely resamples
        exact[round(float(np.mean([v for k in draw for v in groups[k]])), 9)] += 1 / 27
    boots = Counter(round(float(np.mean(np.asarray(values)[i])), 9)
                    for i in cluster_bootstrap_indices(clusters, 6000, 0))
    assert set(boots) <= set(exact)
    for v, p in exact.items():
        assert abs(boots[v] / 6000 - p) < 0.02
    point, low, high = cluster_bootstrap_ci(values, clusters, n_boot=6000, seed=0)
    assert point == pytest.approx(11 / 4)
    assert low == min(exact) and high == max(exact)  # P(min) = P(all a) = 1/27 > 2.5 %


def test_resamples_are_whole_clusters():
    clusters = ["g1", "g2", "g1", "g3", "g2", "g1", None, None]
    members = {c: {i for i, x in enumerate(clusters) if x == c} for c in set(clusters)}
    for idx in cluster_bootstrap_indices(clusters, 200, 3):
        counts = Counter(idx.tolist())
        drawn = Counter()
        for c, rows in members.items():
            k = {counts[i] for i in rows}
            assert len(k) == 1  # every row of a cluster drawn the same number of times
            drawn[c] = k.pop()
        assert sum(drawn.values()) == 4  # as many clusters drawn as exist


def test_one_cluster_collapses_and_determinism():
    vals = [0.1, 0.5, 0.9, 0.4]
    assert cluster_bootstrap_ci(vals, ["g"] * 4, n_boot=50) == pytest.approx((0.475, 0.475, 0.475))
    rng = np.random.default_rng(0)
    v, c = rng.random(300), rng.integers(0, 40, 300)
    a = cluster_bootstrap_ci(v, c, n_boot=200, seed=5)
    assert a == cluster_bootstrap_ci(v, c, n_boot=200, seed=5)
    assert a != cluster_bootstrap_ci(v, c, n_boot=200, seed=6)
    assert a[1] < a[0] < a[2]


def test_paired_statistic():
    y_true = ["A", "A", "B", "B", "C", "C", "A", "B"]
    y_pred = ["A", "B", "B", "B", "C", "A", "A", "C"]
    genes = ["g1", "g1", "g2", "g2", "g3", "g3", "g4", "g4"]
    acc = cluster_bootstrap_ci((y_true, y_pred), genes, statistic=lambda t, p: np.mean(t == p),
                               n_boot=300, seed=0)
    assert acc[0] == 5 / 8 and 0 <= acc[1] <= acc[0] <= acc[2] <= 1
    # the same through the indices, with any metric
    f1 = [f1_macro(np.asarray(y_true)[i], np.asarray(y_pred)[i])
          for i in cluster_bootstrap_indices(genes, 20, 0)]
    assert len(f1) == 20 and all(0 <= x <= 1 for x in f1)
    f1_ci = cluster_bootstrap_ci((y_true, y_pred), genes, statistic=f1_macro, n_boot=20, seed=0)
    assert f1_ci[0] == pytest.approx(f1_macro(y_true, y_pred))
    assert f1_ci[1:] == tuple(np.quantile(f1, [0.025, 0.975]))
    # and the fast macro F1 on codes gives the same interval
    t, p, labels = label_codes(y_true, y_pred)
    assert labels == ["A", "B", "C"]
    fast = cluster_bootstrap_ci((t, p), genes, statistic=macro_f1_codes, n_boot=20, seed=0)
    assert fast == pytest.approx(f1_ci)


def test_macro_f1_codes_matches_metrics():
    rng = np.random.default_rng(1)
    for trial in range(20):
        n = int(rng.integers(1, 60))
        pool = ["A", "B", "C", "D", ""][: 2 + trial % 4]
        y_true = rng.choice(pool[:-1] if trial % 2 else pool, n).tolist()
        y_pred = [None if x == "" else x for x in rng.choice(pool, n).tolist()]
        if not (set(y_true) | set(y_pred)) - {"", None}:
            continue
        t, p, _ = label_codes(y_true, y_pred)
        assert macro_f1_codes(t, p) == pytest.approx(f1_macro(y_true, y_pred))
    with pytest.raises(ValueError):
        macro_f1_codes(np.array([-1]), np.array([-1]))


def test_coverage_clusters_vs_rows():
    # strongly clustered data (gene effect >> row noise), true mean 0: the cluster interval
    # covers it about 95 % of the time, a row-level interval (each row its own cluster) rarely
    rng = np.random.default_rng(42)
    cover_cluster = cover_rows = 0
    trials = 100
    for t in range(trials):
        sizes = rng.integers(1, 12, 25)
        clusters = np.repeat(np.arange(25), sizes)
        values = rng.normal(0, 1, 25)[clusters] + rng.normal(0, 0.1, clusters.size)
        _, lo, hi = cluster_bootstrap_ci(values, clusters, n_boot=150, seed=t)
        cover_cluster += lo <= 0 <= hi
        _, lo, hi = cluster_bootstrap_ci(values, np.arange(clusters.size), n_boot=150, seed=t)
        cover_rows += lo <= 0 <= hi
    assert 0.85 <= cover_cluster / trials <= 1.0
    assert cover_rows / trials < 0.6


def test_bootstrap_bad_arguments():
    with pytest.raises(ValueError):
        cluster_bootstrap_ci([1.0, 2.0], ["a"], n_boot=10)
    with pytest.raises(ValueError):
        cluster_bootstrap_ci([1.0], ["a"], alpha=0)
    with pytest.raises(ValueError):
        next(cluster_bootstrap_indices([], 1))


# ---------------------------------------------------------------------------------- floor
def _rows() -> list[dict]:
    genes = [("BRCA1", "BRCA1 DNA repair associated", "protein coding", "Breast cancer"),
             ("TP53", "tumor protein p53", "protein coding", "Li-Fraumeni syndrome"),
             ("XIST", "X inactive specific transcript", "lncRNA", "not specified"),
             ("CFTR", "CF transmembrane conductance regulator", "protein coding", "Cystic fibrosis")]
    rows = []
    for i in range(40):
        g, d, t, p = genes[i % 4]
        rows.append({"chrom": f"chr{1 + i % 5}", "gene_name": g, "gene_description": d,
                     "transcript_type": t, "phenotype": p,
                     "Dataset": ("ClinVar", "COSMIC", "dbSNP")[i % 3]})
    return rows


def test_floor_every_field_wrong_and_real():
    rows = _rows()
    floor = template_floor_sentences(rows, np.random.default_rng(0))
    assert len(floor) == len(rows)
    for s, r in zip(floor, rows):
        parsed = parse_annotation(s)
        values = {SENTENCE_FIELDS[k]: v for k, v in parsed.items()}
        assert annotation_sentence(**values) == s  # follows the template exactly
        for f in TEMPLATE_FIELDS:
            assert values[f] != r[f]
            assert values[f] in {x[f] for x in rows}
    assert floor == template_floor_sentences(rows, np.random.default_rng(0))
    assert floor != template_floor_sentences(rows, np.random.default_rng(1))


def test_floor_draws_from_the_other_rows():
    rows = _rows()[:10]
    for r in rows:
        r["Dataset"] = "dbSNP"
    rows[3]["Dataset"] = "ClinVar"  # one ClinVar row: every other row must draw it
    fields, kept = template_floor_fields(rows, np.random.default_rng(3))
    assert [f["Dataset"] for f in fields] == ["ClinVar"] * 3 + ["dbSNP"] + ["ClinVar"] * 6
    assert kept == dict.fromkeys(TEMPLATE_FIELDS, 0)


def test_floor_keeps_and_counts_a_field_with_one_value(caplog):
    rows = _rows()[:8]
    for r in rows:
        r["transcript_type"] = "protein coding"
    fields, kept = template_floor_fields(rows, np.random.default_rng(0))
    assert kept["transcript_type"] == 8 and kept["gene_name"] == 0
    assert all(f["transcript_type"] == "protein coding" for f in fields)
    with caplog.at_level(logging.WARNING, logger="llamadna.evaluate.stats"):
        template_floor_sentences(rows, np.random.default_rng(0))
    assert "transcript_type in 8 rows" in caplog.text


# ---------------------------------------------------------------------------------- ceiling
def test_accuracy_ceiling_hand_computed():
    seqs = ["AAA", "AAA", "CCC", "GGG", "GGG", "GGG", "TTT", "TTT"]
    labels = ["x", "y", "x", "x", "x", "y", "z", "z"]
    # AAA: 1 of 2, CCC: 1, GGG: 2 of 3, TTT: 2 -> 6 / 8
    out = accuracy_ceiling(seqs, labels)
    assert out == {"ceiling": 0.75, "n": 8, "n_groups": 4, "n_duplicate_groups": 3,
                   "n_conflicting_groups": 2, "duplicate_row_fraction": 7 / 8,
                   "conflicting_row_fraction": 5 / 8}
    assert accuracy_ceiling(["A", "C"], ["x", "x"])["ceiling"] == 1.0
    with pytest.raises(ValueError):
        accuracy_ceiling(["A"], [])


# ---------------------------------------------------------------------------------- leaks
def _win(chrom, start, end, seq="", build="GRCh38"):
    return {"build": build, "chrom": chrom, "start": start, "end": end, "Sequence": seq}


def test_leak_audit_hand_case():
    train = [_win("chr1", 100, 199, "AAAA"), _win("chr1", 1000, 5000, "CCCC"),
             _win("chr1", 1200, 1300, "GGGG"), _win("chr2", 1, 50, "TTTT")]
    test = [
        _win("chr1", 200, 299, "ACGT"),  # adjacent, no overlap
        _win("chr1", 199, 250, "AAAA"),  # one shared base; and a duplicate sequence
        _win("chr1", 4000, 4100, "ACGA"),  # inside the long window (starts before 1200)
        _win("chr2", 100, 199, "ACGC"),  # chr1's coordinates on chr2
        _win("chr1", 150, 160, "ACGG", build="GRCh37"),  # other build
        _win(None, 150, 160, "TTTT"),  # no coordinates; duplicate sequence
        _win("chrX", 1, 10, None),
        _win("chr2", 40, 60, "TTTA"),
    ]
    out = leak_audit(train, test)
    assert out == {"n_train": 4, "n_test": 8, "overlapping": 3, "overlapping_fraction": 3 / 8,
                   "duplicate_sequences": 2, "duplicate_fraction": 2 / 8}
    empty = leak_audit(train, [])
    assert empty["overlapping"] == 0 and empty["overlapping_fraction"] is None


def test_leak_audit_matches_brute_force():
    rng = np.random.default_rng(0)

    def windows(n):
        starts = rng.integers(1, 20_000, n)
        return [_win(f"chr{c}", int(s), int(s + w), f"S{int(s) % 97}", build=b)
                for c, s, w, b in zip(rng.integers(1, 4, n), starts, rng.integers(0, 300, n),
                                      rng.choice(["GRCh38", "GRCh37"], n))]

    train, test = windows(300), windows(200)
    out = leak_audit(pl.DataFrame(train), test)
    brute = sum(any(a["build"] == b["build"] and a["chrom"] == b["chrom"] and a["start"] <= b["end"]
                    and b["start"] <= a["end"] for a in train) for b in test)
    assert 0 < out["overlapping"] == brute < 200
    dup = {a["Sequence"] for a in train}
    assert out["duplicate_sequences"] == sum(b["Sequence"] in dup for b in test)


def test_leak_audit_splits():
    rows = [_win("chr1", 1, 100, "A") | {"s": "train"}, _win("chr1", 50, 150, "C") | {"s": "test"},
            _win("chr1", 500, 600, "A") | {"s": "val"}, _win("chr2", 1, 10, "G") | {"s": "test"}]
    out = leak_audit_splits(pl.DataFrame(rows), ["s"])
    assert out["s"]["test"]["overlapping"] == 1 and out["s"]["test"]["duplicate_sequences"] == 0
    assert out["s"]["val"]["overlapping"] == 0 and out["s"]["val"]["duplicate_sequences"] == 1
