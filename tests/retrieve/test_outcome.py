"""The outcome rule on hand-made candidates and blastn hits, the outcome sentences, scoring
(outcome_correct, macro_f1) and the tuned thresholds."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from sklearn.metrics import f1_score

from llamadna.constants import NONE_SENTENCE, NOT_SPECIFIED, OUTCOMES
from llamadna.data.template import parse_outcome
from llamadna.retrieve.outcome import (
    Thresholds,
    candidate_outcome,
    describe_evidence,
    macro_f1,
    no_match,
    outcome_correct,
    outcome_sentence,
    rule_outcome,
    scored_labels,
    top_aligned,
    tune_thresholds,
)


def cand(gene="APP", identity=1.0, fraction=1.0, kind="gene", loci=1, **kw):
    """A retriever candidate (the fields the rule and the sentences read)."""
    c = {"gene": gene if kind == "gene" else None, "gene_id": None, "build": "GRCh38", "chrom": "chr21",
         "description": "amyloid beta precursor protein", "transcript_type": "protein_coding",
         "phenotype": "Alzheimer disease", "source": "ClinVar", "identity": identity,
         "aligned_fraction": fraction, "cosine": None, "kind": kind, "left_gene": None,
         "left_distance": None, "right_gene": None, "right_distance": None, "loci": loci}
    return {**c, **kw}


def test_top_aligned_skips_embedding_only_candidates():
    emb = cand(identity=None, fraction=None, cosine=0.4)
    hit = cand(gene="SOD1", identity=0.9)
    assert top_aligned([emb, hit]) is hit
    assert top_aligned([emb]) is None and top_aligned([]) is None and top_aligned(None) is None


def test_no_match_is_the_rules_first_step():
    t = Thresholds(min_similar=0.1, max_evalue=1e-5)
    assert no_match(None, t) and no_match({"identity": None, "aligned_fraction": 0.9}, t)
    assert no_match({"identity": 0.9, "aligned_fraction": 0.1}, t)  # 0.09 < 0.1
    assert not no_match({"identity": 0.5, "aligned_fraction": 0.4}, t)  # 0.2
    assert no_match({"identity": 1.0, "aligned_fraction": 1.0, "evalue": 1e-3}, t)
    assert not no_match({"identity": 1.0, "aligned_fraction": 1.0, "evalue": 1e-3}, Thresholds())
    for top in ({"identity": 0.9, "aligned_fraction": 0.1}, {"identity": 0.5, "aligned_fraction": 0.4}):
        assert no_match(top, t) == (rule_outcome(top, 0, t) == "none")


@pytest.mark.parametrize("top, loci, want", [
    (None, 0, "none"),
    ({"identity": None, "aligned_fraction": None, "kind": "gene"}, 0, "none"),
    ({"identity": 0.3, "aligned_fraction": 0.3, "kind": "gene"}, 1, "none"),  # 0.09 < 0.1
    ({"identity": 1.0, "aligned_fraction": 1.0, "kind": "gene"}, 3, "repeat"),
    ({"identity": 1.0, "aligned_fraction": 1.0, "kind": "gene"}, 2, "gene"),
    ({"identity": 0.8, "aligned_fraction": 0.8, "kind": "intergenic"}, 1, "intergenic"),
    ({"identity": 0.79, "aligned_fraction": 1.0, "kind": "gene"}, 1, "similar"),
    ({"identity": 1.0, "aligned_fraction": 0.4, "kind": "intergenic"}, 1, "similar"),
    ({"identity": 1.0, "aligned_fraction": 1.0}, 1, "gene"),  # no kind: a gene hit
])
def test_rule_outcome(top, loci, want):
    assert rule_outcome(top, loci, Thresholds()) == want


def test_rule_outcome_on_a_blastn_hit_uses_the_evalue_cut():
    hit = {"identity": 0.95, "aligned_fraction": 0.9, "kind": "gene", "evalue": 1e-4}
    assert rule_outcome(hit, 1, Thresholds()) == "gene"  # no cut by default
    assert rule_outcome(hit, 1, Thresholds(max_evalue=1e-5)) == "none"
    assert rule_outcome({**hit, "evalue": 1e-30}, 1, Thresholds(max_evalue=1e-5)) == "gene"
    assert rule_outcome({**hit, "evalue": 1e-30}, 5, Thresholds(max_evalue=1e-5)) == "repeat"


def test_candidate_outcome_and_what_the_evidence_shows_without_the_own_locus():
    gene = [cand(), cand(gene="SOD1", identity=0.7, fraction=0.5)]
    assert candidate_outcome(gene) == ("gene", gene[0])
    assert describe_evidence(gene) == ("gene", gene[0])  # the rule's: a paralog is named
    inter = [cand(kind="intergenic", left_gene="APP", left_distance=12_000)]
    assert candidate_outcome(inter) == ("intergenic", inter[0])
    assert describe_evidence(inter) == ("intergenic", inter[0])
    rep = [cand(loci=7), cand(gene="SOD1", loci=7)]
    assert candidate_outcome(rep) == ("repeat", rep[0]) and describe_evidence(rep)[0] == "repeat"
    emb = [cand(identity=None, fraction=None, cosine=0.9, loci=0)]
    assert candidate_outcome(emb) == ("none", None) == describe_evidence(emb)
    assert candidate_outcome([]) == ("none", None)
    strict = Thresholds(min_identity=0.99)
    assert candidate_outcome([cand(identity=0.98)], strict)[0] == "similar"


def test_outcome_sentences_parse_back_to_their_outcome():
    c = cand()
    s = outcome_sentence("gene", c, [c], None)
    assert s.startswith("This sequence is part of chr21 chromosome part of APP gene.")
    assert s.endswith("It is part of the ClinVar dataset.")  # no source given: the candidate's
    assert outcome_sentence("gene", c, [c], "COSMIC").endswith("It is part of the COSMIC dataset.")
    c = {**c, "source": None}
    assert outcome_sentence("gene", c, [c], None).endswith(f"It is part of the {NOT_SPECIFIED} dataset.")
    inter = cand(kind="intergenic", left_gene="APP", left_distance=12_000, right_gene=None)
    s = outcome_sentence("intergenic", inter, [inter], "ClinVar")
    assert parse_outcome(s)["outcome"] == "intergenic" and "APP (12 kb)" in s
    sim = cand(identity=0.9, fraction=0.42)
    s = outcome_sentence("similar", sim, [sim], None)
    assert "APP gene" in s and "42 %" in s and "90 %" in s
    assert parse_outcome(s)["similar_to"] == "APP"
    rep = [cand(gene="APP", loci=9), cand(gene="SOD1", loci=9), cand(kind="intergenic", loci=9)]
    s = outcome_sentence("repeat", rep[0], rep, None)
    assert parse_outcome(s)["loci"] == 9 and "APP and SOD1" in s
    assert outcome_sentence("none", None, [], None) == NONE_SENTENCE
    with pytest.raises(ValueError, match="candidate"):
        outcome_sentence("gene", None, [], None)
    with pytest.raises(ValueError, match="unknown outcome"):
        outcome_sentence("novel", c, [c], None)


def test_outcome_correct():
    app = {"outcome": "gene", "gene_name": "APP"}
    assert outcome_correct("gene", "APP", app)
    assert not outcome_correct("gene", "SOD1", app) and not outcome_correct("similar", "APP", app)
    novel = {"outcome": "novel", "gene_name": "APP"}
    assert outcome_correct("none", None, novel) and outcome_correct("similar", "APP", novel)
    assert not outcome_correct("gene", "SOD1", novel) and not outcome_correct(None, None, novel)
    assert outcome_correct("repeat", None, {"outcome": "repeat", "gene_name": None})
    assert not outcome_correct("none", None, {"outcome": "intergenic", "gene_name": None})


def test_macro_f1_matches_sklearn_over_the_outcomes_of_the_truth():
    rng = np.random.default_rng(0)
    truth = list(rng.choice(["gene", "none", "similar"], 300))
    pred = list(rng.choice(list(OUTCOMES), 300))
    want = f1_score(truth, pred, labels=["gene", "none", "similar"], average="macro", zero_division=0)
    assert macro_f1(pred, truth) == pytest.approx(want)
    assert macro_f1(truth, truth) == 1.0
    assert macro_f1([None, "gene"], ["gene", "gene"]) == pytest.approx(2 / 3)  # unreadable: wrong
    assert macro_f1([], []) == 0.0


def test_scored_labels_follow_outcome_correct():
    truths = [{"outcome": "gene", "gene_name": "APP"}, {"outcome": "gene", "gene_name": "APP"},
              {"outcome": "novel", "gene_name": "SOD1"}, {"outcome": "novel", "gene_name": "SOD1"}]
    pred, truth = scored_labels(["gene", "gene", "none", "gene"], ["APP", "SOD1", None, "APP"], truths)
    assert pred == ["gene", "wrong gene", "none", "gene"]
    assert truth == ["gene", "gene", "none", "novel"]
    assert macro_f1(pred, truth) == pytest.approx((2 * 1 / (2 + 2) + 1.0) / 2)


def _validation_rows(n: int, seed: int):
    """Hits whose truth follows a hidden rule (identity >= 0.9 and fraction >= 0.6 -> gene,
    loci >= 5 -> repeat, identity x fraction < 0.3 -> none, else similar)."""
    rng = np.random.default_rng(seed)
    ident, frac = rng.uniform(0.5, 1.0, n), rng.uniform(0.1, 1.0, n)
    loci = rng.integers(1, 9, n)
    tops = [{"identity": float(i), "aligned_fraction": float(f), "kind": "gene", "gene": "APP"}
            for i, f in zip(ident, frac)]
    truths = [rule_outcome(t, int(k), Thresholds(0.9, 0.6, 0.3, 5)) for t, k in zip(tops, loci)]
    return tops, [int(k) for k in loci], truths


def test_tune_thresholds_recovers_the_rule_behind_the_truth():
    tops, loci, truths = _validation_rows(2000, 1)
    t = tune_thresholds(tops, loci, truths)
    assert t == Thresholds(min_identity=0.9, min_fraction=0.6, min_similar=0.3, repeat_loci=5)
    pred = [rule_outcome(x, k, t) for x, k in zip(tops, loci)]
    assert macro_f1(pred, truths) == 1.0
    # the default thresholds are worse on these rows
    default = [rule_outcome(x, k, Thresholds()) for x, k in zip(tops, loci)]
    assert macro_f1(default, truths) < 1.0


def test_tune_thresholds_is_fast_and_tunes_the_evalue_for_blastn_hits():
    tops, loci, truths = _validation_rows(3000, 2)
    rng = np.random.default_rng(3)
    for t in tops:
        t["evalue"] = float(10.0 ** -rng.uniform(0, 60))
    truths = ["none" if t["evalue"] > 1e-5 else want for t, want in zip(tops, truths)]
    start = time.perf_counter()
    t = tune_thresholds(tops, loci, truths)
    assert time.perf_counter() - start < 2.0  # ~0.2 s measured
    assert t.max_evalue == 1e-5 and t.repeat_loci == 5


def test_tune_thresholds_ties_go_to_the_first_grid_point():
    tops = [{"identity": 1.0, "aligned_fraction": 1.0, "kind": "gene", "gene": "APP"}]
    grid = {"min_identity": (0.7, 0.8), "min_fraction": (0.5,), "min_similar": (0.1,), "repeat_loci": (3,)}
    assert tune_thresholds(tops, [1], ["gene"], grid).min_identity == 0.7
    assert tune_thresholds(tops, [1], ["gene"], {**grid, "min_identity": (0.8, 0.7)}).min_identity == 0.8
    with pytest.raises(ValueError, match="length"):
        tune_thresholds(tops, [1, 2], ["gene"])


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_tune_thresholds_picks_the_first_best_point_of_a_brute_force_search(seed):
    """Random hits of both kinds, e-values, wrong genes and novel truths: the chosen point is
    the first whose rule outcomes, scored by scored_labels + macro_f1, score best."""
    rng = np.random.default_rng(seed)
    n = 120
    tops = [None if rng.random() < 0.1 else
            {"identity": float(rng.uniform(0.5, 1)), "aligned_fraction": float(rng.uniform(0, 1)),
             "kind": str(rng.choice(["gene", "intergenic"])), "gene": str(rng.choice(["APP", "SOD1"])),
             "evalue": float(10.0 ** -rng.uniform(0, 30))} for _ in range(n)]
    loci = [int(k) for k in rng.integers(0, 6, n)]
    truths = [{"outcome": str(o), "gene_name": str(rng.choice(["APP", "SOD1"]))}
              for o in rng.choice([*OUTCOMES, "novel"], n)]
    grid = {"min_identity": (0.6, 0.8, 0.9), "min_fraction": (0.3, 0.7), "min_similar": (0.05, 0.3),
            "repeat_loci": (2, 4), "max_evalue": (None, 1e-10)}
    best, best_t = -1.0, None
    for p in itertools.product(*grid.values()):
        t = Thresholds(*p)
        outs = [rule_outcome(x, k, t) for x, k in zip(tops, loci)]
        f1 = macro_f1(*scored_labels(outs, [(x or {}).get("gene") for x in tops], truths))
        if f1 > best:
            best, best_t = f1, t
    assert tune_thresholds(tops, loci, truths, grid) == best_t
