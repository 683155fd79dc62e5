"""Out-of-reference evaluation: metrics on hand-made predictions, the tuned-threshold baselines,
the lookups' hit statistics, the metrics.json section and its report."""

from __future__ import annotations

import itertools
import math
import shutil

import numpy as np
import polars as pl
import pytest

from llamadna.constants import OUTCOMES
from llamadna.evaluate.out_of_reference import (
    CONFIDENT,
    PRED_LABELS,
    REPEAT_IN_GENE,
    TRUTH_KINDS,
    UNPARSED,
    confusion,
    lookup_top,
    lookup_tops,
    model_versus,
    risk_coverage,
    rule_predictions,
    score_outcomes,
    summary_rows,
    top_candidate_agreement,
    tuned_rule,
    wilson_interval,
)
from llamadna.evaluate.schema import OutOfReference, missing_keys
from llamadna.retrieve.align import Hit, distinct_loci, parse_blast_hits
from llamadna.retrieve.outcome import Thresholds, macro_f1, outcome_correct


def _row(kind: str, gene: str | None = None, i: int = 0) -> dict:
    outcome = {"gene": "gene", "novel": "novel", "random": "none", "shuffled": "none",
               "foreign": "none"}.get(kind, kind)
    return {"id": f"{kind}{i}", "kind": kind, "cluster": gene or f"{kind}{i}",
            "truth": {"outcome": outcome, "gene_name": gene}}


def _pred(outcome: str | None, gene: str | None = None, conf: float | None = None) -> dict:
    return {"outcome": outcome, "gene": gene, "outcome_confidence": conf,
            "gene_confidence": conf if outcome == "gene" else None}


# 4 gene rows (one wrong gene), 2 novel (one claims a gene), 3 random (one claims a gene with
# confidence 0.9), 2 intergenic (one right), 1 repeat (right)
ROWS = [_row("gene", "A", 0), _row("gene", "A", 1), _row("gene", "B", 2), _row("gene", "C", 3),
        _row("novel", "A", 4), _row("novel", "B", 5),
        _row("random", None, 6), _row("random", None, 7), _row("random", None, 8),
        _row("intergenic", None, 9), _row("intergenic", None, 10), _row("repeat", None, 11)]
PREDS = [_pred("gene", "A", 0.9), _pred("gene", "A", 0.8), _pred("gene", "B", 0.7), _pred("gene", "D", 0.6),
         _pred("similar", None, 0.7), _pred("gene", "X", 0.3),
         _pred("none", None, 0.95), _pred("gene", "Y", 0.9), {"annotation": "garbled", "gene": None},
         _pred("intergenic", None, 0.8), _pred("similar", None, 0.2), _pred("repeat", None, 0.6)]


def test_truth_kinds_are_the_settings_and_the_negative_kinds():
    from llamadna.data.negatives import NEGATIVE_KINDS

    assert TRUTH_KINDS == ("gene", "novel", *NEGATIVE_KINDS, REPEAT_IN_GENE)


def test_wilson_interval_known_values():
    assert wilson_interval(0, 0) is None
    lo, hi = wilson_interval(0, 10)
    assert lo == 0 and hi == pytest.approx(3.8415 / 13.8415, abs=1e-4)  # z^2 / (n + z^2)
    lo, hi = wilson_interval(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    lo, hi = wilson_interval(1, 100)
    assert lo < 0.01 < hi < 0.06


def test_score_outcomes_on_hand_made_predictions():
    m = score_outcomes(ROWS, PREDS, n_boot=200, seed=0)
    conf = m["confusion"]
    assert conf["rows"] == ["gene", "novel", "random", "intergenic", "repeat"]
    assert conf["columns"] == list(PRED_LABELS)
    col = {c: i for i, c in enumerate(PRED_LABELS)}
    matrix = dict(zip(conf["rows"], conf["matrix"]))
    assert matrix["gene"][col["gene"]] == 4 and sum(matrix["gene"]) == 4
    assert matrix["random"][col["none"]] == 1 and matrix["random"][col["gene"]] == 1
    assert matrix["random"][col[UNPARSED]] == 1  # a sentence that decides no outcome
    assert matrix["intergenic"][col["similar"]] == 1 and matrix["repeat"][col["repeat"]] == 1
    k = m["kinds"]
    assert k["gene"]["gene_claims"] is None and k["gene"]["accuracy"] == 0.75  # the wrong gene D
    assert k["random"]["gene_claims"] == 1 and k["random"]["gene_claim_rate"] == pytest.approx(1 / 3)
    assert k["random"]["gene_claim_interval"] == wilson_interval(1, 3)
    assert k["random"]["confident_gene"] == 1  # Y at 0.9 >= CONFIDENT
    assert k["novel"]["gene_claims"] == 1 and k["novel"]["confident_gene"] == 0  # X at 0.3 < 0.5
    # a kind never claimed as a gene: 0 confident rows of a system with confidences, not None
    assert k["intergenic"]["confident_gene"] == 0 and k["intergenic"]["confident_gene_rate"] == 0
    assert k["intergenic"]["confident_gene_interval"] == wilson_interval(0, 2)
    assert CONFIDENT == 0.5
    assert k["random"]["accuracy"] == pytest.approx(1 / 3)
    assert k["intergenic"]["accuracy"] == 0.5 and k["repeat"]["accuracy"] == 1.0
    assert m["novel_no_gene"] == 0.5 and m["novel_no_gene_interval"] == wilson_interval(1, 2)
    # macro-F1 by hand (scored_labels): pred/truth per row
    pred = ["gene", "gene", "gene", "wrong gene", "similar", "gene", "none", "gene", None,
            "intergenic", "similar", "repeat"]
    truth = ["gene"] * 4 + ["similar", "novel", "none", "none", "none", "intergenic", "intergenic", "repeat"]
    assert m["macro_f1"] == pytest.approx(macro_f1(pred, truth))
    # classes in truth: gene (tp 3, true 4, pred 5: F1 6/9), similar (tp 1, 1 true, 2 pred: 2/3),
    # none (1, 3, 1: 2/4), intergenic (1, 2, 1: 2/3), repeat (1, 1, 1: 1)
    assert m["macro_f1"] == pytest.approx((6 / 9 + 2 / 3 + 0.5 + 2 / 3 + 1) / 5)
    lo, hi = m["macro_f1_interval"]
    assert 0 <= lo <= hi <= 1
    # AUROC of outcome confidence for outcome right: rows with a confidence only
    assert 0 <= m["auroc"] <= 1
    assert m["risk_coverage"][0]["coverage"] == 1.0 and m["risk_coverage"][0]["rows"] == 11


def test_perfect_confidence_has_auroc_one_and_a_falling_error():
    rows = [_row("random", None, i) for i in range(6)]
    preds = [_pred("none", None, 0.9)] * 3 + [_pred("gene", "Z", 0.2)] * 3
    m = score_outcomes(rows, preds, n_boot=20, seed=0)
    assert m["auroc"] == 1.0
    pts = {p["threshold"]: p for p in m["risk_coverage"]}
    assert pts[0.0]["error"] == 0.5 and pts[0.5]["error"] == 0.0 and pts[0.5]["coverage"] == 0.5
    assert m["kinds"]["random"]["gene_claims"] == 3 and m["novel_no_gene"] is None


def test_novel_no_gene_counts_only_answers_that_are_read():
    rows = [_row("novel", "A", i) for i in range(4)]
    preds = [_pred("none"), {"annotation": "garbled", "gene": None}, {"outcome": None},
             _pred("gene", "A")]
    m = score_outcomes(rows, preds, n_boot=20, seed=0)
    assert m["novel_no_gene"] == 0.25 and m["novel_no_gene_interval"] == wilson_interval(1, 4)


def test_risk_coverage_coverage_never_grows():
    rng = np.random.default_rng(0)
    conf = rng.random(200).tolist() + [None] * 5
    right = (rng.random(205) < 0.7).tolist()
    pts = risk_coverage(right, conf)
    cover = [p["coverage"] for p in pts]
    assert cover[0] == 1.0 and all(a >= b for a, b in zip(cover, cover[1:]))
    assert all(p["rows"] == sum(c is not None and c >= p["threshold"] for c in conf) for p in pts)
    assert risk_coverage(right, [None] * 205) == []


def test_a_system_without_confidence_has_no_auroc():
    m = score_outcomes(ROWS, [{"outcome": "none"}] * len(ROWS), n_boot=20, seed=0)
    assert "auroc" not in m and "risk_coverage" not in m
    assert all(v["confident_gene"] is None for v in m["kinds"].values())
    assert m["novel_no_gene"] == 1.0 and m["kinds"]["random"]["gene_claims"] == 0


def test_confusion_counts():
    c = confusion(["repeat", "gene", "gene"], ["none", "gene", "similar"])
    assert c["rows"] == ["gene", "repeat"]
    assert c["matrix"][0][PRED_LABELS.index("gene")] == 1 and c["matrix"][1][PRED_LABELS.index("none")] == 1
    assert sum(map(sum, c["matrix"])) == 3


# ------------------------------------------------------------------------------ baselines


def _validation_set():
    """Hits of gene rows (identity 0.97-1, whole query), intergenic rows (the same, kind
    intergenic), repeats (5 loci), similar (half the query at 0.85) and no hits."""
    tops, loci, truths = [], [], []
    rng = np.random.default_rng(1)
    for i in range(20):
        tops.append({"identity": 0.97 + 0.03 * rng.random(), "aligned_fraction": 1.0, "kind": "gene",
                     "gene": f"G{i}", "evalue": 1e-100})
        loci.append(1)
        truths.append({"outcome": "gene", "gene_name": f"G{i}"})
        tops.append({"identity": 0.98, "aligned_fraction": 0.95, "kind": "intergenic", "gene": None,
                     "evalue": 1e-90})
        loci.append(1)
        truths.append({"outcome": "intergenic", "gene_name": None})
        tops.append({"identity": 0.95, "aligned_fraction": 1.0, "kind": "gene", "gene": "R", "evalue": 1e-80})
        loci.append(5)
        truths.append({"outcome": "repeat", "gene_name": None})
        tops.append({"identity": 0.85, "aligned_fraction": 0.45, "kind": "gene", "gene": "S", "evalue": 1e-20})
        loci.append(1)
        truths.append({"outcome": "similar", "gene_name": None})
        tops.append(None)
        loci.append(0)
        truths.append({"outcome": "none", "gene_name": None})
    return tops, loci, truths


def _f1(preds, truths):
    from llamadna.retrieve.outcome import scored_labels

    return macro_f1(*scored_labels([p["outcome"] for p in preds], [p["gene"] for p in preds], truths))


def test_tuned_thresholds_beat_a_bad_fixed_threshold():
    tops, loci, truths = _validation_set()
    bad = Thresholds(min_identity=0.999, min_fraction=0.999, repeat_loci=10)
    tuned = tuned_rule(tops, loci, truths)
    f_bad, f_tuned = _f1(rule_predictions(tops, loci, bad), truths), _f1(rule_predictions(tops, loci, tuned), truths)
    assert f_tuned == 1.0 and f_bad < 0.6
    preds = rule_predictions(tops, loci, tuned)
    assert preds[0] == {"outcome": "gene", "gene": "G0"} and preds[1] == {"outcome": "intergenic", "gene": None}


def test_lookup_results_as_top_hits():
    mapped = {"mapped": True, "identity": 0.9, "aligned_fraction": 0.5, "evalue": 1e-30, "loci": 2,
              "kind": "gene", "gene": "APP", "chrom": "chr21"}
    unmapped = {"mapped": False, "identity": None, "loci": None}
    top = lookup_top(mapped)
    assert top["identity"] == 0.9 and top["kind"] == "gene" and top["gene"] == "APP"
    assert lookup_top(unmapped) is None
    assert lookup_tops([mapped, unmapped]) == ([top, None], [2, 0])


# ------------------------------------------------------------------------------ section rows

SPLASH = {"SPLASH_Effect": 1.5, "SPLASH_pval": 0.01, "SPLASH_entropy": 2.0}


def _genic_row(gene: str, i: int, seq: str = "ACGT") -> dict:
    return {"build": "GRCh38", "variant_id": f"v{i}", "row": i, "gene_name": gene, "gene_id": f"id{gene}",
            "Sequence": seq + str(i), "Dataset": "d", **SPLASH}


def _neg(kind: str, i: int, similar_to: str | None = None) -> dict:
    outcome = {"intergenic": "intergenic", "similar": "similar", "repeat": "repeat"}.get(kind, "none")
    return {"id": f"neg-{kind}-{i}", "kind": kind, "outcome": outcome, "Sequence": f"GG{kind}{i}",
            "build": "GRCh38" if similar_to else None, "similar_to": similar_to,
            "SPLASH_Effect": None, "SPLASH_pval": None, "SPLASH_entropy": None}


def test_similar_negatives_are_clustered_with_their_gene():
    from llamadna.evaluate.out_of_reference import _negative

    rows = _negative([_neg("similar", 0, "APP"), _neg("shuffled", 1), _neg("random", 2)], "test")
    assert [r["cluster"] for r in rows] == ["GRCh38:APP", "test:neg-shuffled-1", "test:neg-random-2"]


def test_the_rows_summary_says_where_rows_are_fewer_draws():
    from llamadna.evaluate.out_of_reference import rows_summary

    section = {"rows": {"gene": 2635, "random": 200, "repeat": 16},
               "clusters": {"gene": 67, "random": 200, "repeat": 3}}
    assert rows_summary(section) == "gene 2635 (67 clusters), random 200, repeat 16 (3 clusters)"
    assert rows_summary(section, "{:,}".format).startswith("gene 2,635 (67 clusters)")
    assert rows_summary({"rows": section["rows"]}) == "gene 2635, random 200, repeat 16"  # older metrics.json


def test_reference_windows_of_one_block_are_one_cluster():
    """Windows cut from the reference (intergenic, repeat) are clustered by their 100-kb block:
    adjacent windows of one locus are one draw; windows of other blocks, chromosomes or builds,
    and generated negatives, are not in it."""
    from llamadna.data.negatives import PART_BLOCK
    from llamadna.evaluate.out_of_reference import _negative

    def at(kind, i, chrom, start0, build="GRCh37"):
        return {**_neg(kind, i), "build": build, "chrom": chrom, "start0": start0}

    base = 205 * PART_BLOCK
    negs = [at("repeat", 0, "chr22", base + 5_500), at("repeat", 1, "chr22", base + 8_500),
            at("intergenic", 2, "chr22", base + 90_000), at("repeat", 3, "chr22", base + PART_BLOCK),
            at("repeat", 4, "chr6", base + 5_500), at("repeat", 5, "chr22", base, build="GRCh38"),
            {**at("repeat", 6, "chr22", base), "in_gene": "G"}, _neg("foreign", 7)]
    clusters = [r["cluster"] for r in _negative(negs, "test")]
    assert clusters[:3] == ["test:GRCh37:chr22:205"] * 3
    assert clusters[6] == clusters[0]  # a repeat inside a gene too: its block, not its gene
    assert len(set(clusters[2:6])) == 4 and clusters[7] == "test:neg-foreign-7"


def test_repeats_inside_a_gene_are_a_kind_of_their_own():
    """A repeat window inside genes (`in_gene`) is reported apart, truth "repeat" all the same;
    its gene claims that name a gene holding it are counted."""
    from llamadna.evaluate.out_of_reference import _negative

    negs = [{**_neg("repeat", 0), "in_gene": "GTPBP6"}, {**_neg("repeat", 1), "in_gene": "A,B"},
            {**_neg("repeat", 2), "in_gene": None}, {**_neg("repeat", 3), "in_gene": "C"}]
    rows = _negative(negs, "test")
    assert [r["kind"] for r in rows] == [REPEAT_IN_GENE, REPEAT_IN_GENE, "repeat", REPEAT_IN_GENE]
    assert [r["in_gene"] for r in rows] == [["GTPBP6"], ["A", "B"], [], ["C"]]
    assert all(r["truth"] == {"outcome": "repeat", "gene_name": None} for r in rows)
    preds = [_pred("gene", "GTPBP6", 0.9), _pred("gene", "B", 0.4), _pred("gene", "GTPBP6", 0.9),
             _pred("gene", "OTHER", 0.8)]
    k = score_outcomes(rows, preds, n_boot=10, seed=0)["kinds"]
    assert k[REPEAT_IN_GENE]["gene_claims"] == 3 and k[REPEAT_IN_GENE]["holding_gene_claims"] == 2
    assert k[REPEAT_IN_GENE]["confident_gene"] == 2 and k[REPEAT_IN_GENE]["accuracy"] == 0
    assert k["repeat"]["gene_claims"] == 1 and "holding_gene_claims" not in k["repeat"]


def _fake_ctx(tmp_path, val_rows, reference=None):
    from types import SimpleNamespace

    (tmp_path / "predictions").mkdir(exist_ok=True)
    cfg = SimpleNamespace(limit=None, seed=0, negatives_per_kind=5, tuning_negatives_per_kind=2, n_boot=10,
                          data_dir=tmp_path, divergence_rates=(), divergence_rows=None)
    return SimpleNamespace(cfg=cfg, reference=reference, out=tmp_path, dataset="ds",
                           rows=lambda column, subset: list(val_rows))


class _FakeUnit:
    """A unit whose model answers "none"; records the rows it is given."""

    def __init__(self, ctx, column, test_rows, train_rows):
        self.ctx, self.split, self.column = ctx, "split_gene", column
        self.test_rows, self.train_rows, self.cache, self.seen = test_rows, train_rows, {}, []

    @property
    def cfg(self):
        return self.ctx.cfg

    def annotate(self, variant, rows, setting="full"):
        self.seen += rows
        return [{"outcome": "none", "gene": None} for _ in rows]


def _fake_negatives(monkeypatch) -> list[tuple[str, int]]:
    """Two negatives per call, whatever `per_kind`; returns the (part, per_kind, the aligner lent)
    of every call."""
    import llamadna.data.negatives as negatives

    asked = []

    def negative_rows(data_dir, genic, part, per_kind, seed, aligners=None):
        asked.append((part, per_kind, aligners and aligners("GRCh38")))
        return [_neg("random", 0), _neg("similar", 1, genic[0]["gene_name"])]

    monkeypatch.setattr(negatives, "negative_rows", negative_rows)

    class Copies:  # the window of row 0 lies at three loci, every other at one
        def __init__(self, data_dir):
            pass

        def __call__(self, seq, build):
            return 3 if seq == "ACGT0" else 1

        def aligner(self, build):  # one per run: what every negative_rows call must be lent
            return id(self)

    monkeypatch.setattr(negatives, "ReferenceCopies", Copies)
    return asked


def test_every_unit_answers_its_own_rows_without_splash_scores(tmp_path, monkeypatch):
    """Each unit (a fold) answers its own test rows; the negatives are made from the first unit's
    test rows and answered by its model only; every unit has its tuning rows."""
    from llamadna.constants import SPLASH_COLUMNS
    from llamadna.evaluate import out_of_reference as oor

    asked = _fake_negatives(monkeypatch)
    monkeypatch.setattr(oor.shutil, "which", lambda name: None)  # no blastn baseline
    ctx = _fake_ctx(tmp_path, [_genic_row("V", 9)])
    units = [_FakeUnit(ctx, "split_gene", [_genic_row("A", 0), _genic_row("B", 1)], [_genic_row("T", 5)]),
             _FakeUnit(ctx, "split_gene_fold1", [_genic_row("V", 9)], [_genic_row("A", 0)])]
    section = oor.out_of_reference(ctx, units)
    # the test part's negatives once, at negatives_per_kind; each unit's tuning negatives at its own setting
    assert [a[:2] for a in asked] == [("test", 5), ("val", 2), ("val", 2)]
    assert len({a[2] for a in asked}) == 1 and asked[0][2] is not None  # one aligner lent to every call
    assert section["units"] == ["split_gene", "split_gene_fold1"] and section["rows"]["gene"] == 3
    assert "validation_model" not in section  # no index: no retrieval model to score on them
    assert not (tmp_path / "predictions" / "out_of_reference.validation.model.tsv").exists()
    assert "model_top_candidate" not in section and section["model_versus"] == {}  # no baseline here
    assert [r["gene_name"] for r in units[1].seen] == ["V"]  # its test row, no negative
    assert [r.get("gene_name") for r in units[0].seen] == ["A", "B", None, None]
    assert section["per_unit"]["model"] == {"split_gene": {"gene": [0, 2], "novel_no_gene": [0, 0]},
                                            "split_gene_fold1": {"gene": [0, 1], "novel_no_gene": [0, 0]}}
    assert section["validation_rows"] == 2 * (1 + 2 + 1)  # per unit: genic, negatives, genic as novel
    assert section["clusters"] == {"gene": 3, "random": 1, "similar": 1}  # genes A, B, V: a cluster each
    assert oor.rows_summary(section) == "gene 3, random 1, similar 1"
    # genic rows by their window's loci: A's (row 0) at three, B's and V's at one
    assert section["systems"]["model"]["copies"] == {"multi_copy": {"gene": [0, 1], "novel_no_gene": [0, 0]},
                                                     "single_copy": {"gene": [0, 2], "novel_no_gene": [0, 0]}}
    table = pl.read_csv(tmp_path / "predictions" / "out_of_reference.model.tsv", separator="\t")
    assert table["copies"].to_list() == [3, 1, 1, None, None]  # negatives: not counted
    # each row's bootstrap cluster (for `llamadna compare`): genes A, B, V, the random window's
    # own, and the chimera of A shares A's
    clusters = table["cluster"].to_list()
    assert None not in clusters and len(set(clusters)) == 4 and clusters[4] == clusters[0]
    assert all(r[c] is None for u in units for r in u.seen for c in SPLASH_COLUMNS)


def test_each_unit_tunes_the_retriever_rule_on_its_own_validation_rows(tmp_path, monkeypatch):
    """retriever_tuned: each unit's thresholds are tuned on that unit's validation rows only and
    answer that unit's test and novel rows; the negatives get the first unit's."""
    from llamadna.evaluate import out_of_reference as oor
    from llamadna.retrieve.outcome import Thresholds

    class Unit(_FakeUnit):
        def __init__(self, *a):
            super().__init__(*a)
            self.searched = []

        def annotator(self, variant, setting="full"):
            return setting

        def evidence(self, annotator, rows, setting):
            self.searched += [(setting, r.get("gene_name") or r.get("kind")) for r in rows]
            return [{"evidence": []} for _ in rows]

    tuned = []

    def tuned_rule(tops, loci, truths):
        tuned.append([t["gene_name"] or t["outcome"] for t in truths])
        return Thresholds(min_identity=0.6 + 0.1 * len(tuned))

    _fake_negatives(monkeypatch)
    monkeypatch.setattr(oor.shutil, "which", lambda name: None)
    monkeypatch.setattr(oor, "_val_novel_retriever", lambda unit: unit.cache.setdefault("retriever:val_novel", 1))
    monkeypatch.setattr(oor, "tuned_rule", tuned_rule)
    ctx = _fake_ctx(tmp_path, [], reference="REF")
    val = {"split_gene": [_genic_row("V", 9)], "split_gene_fold1": [_genic_row("W", 8)]}
    ctx.rows = lambda column, subset: list(val[column])
    units = [Unit(ctx, "split_gene", [_genic_row("A", 0)], [_genic_row("T", 5)]),
             Unit(ctx, "split_gene_fold1", [_genic_row("V", 9)], [_genic_row("A", 0)])]
    section = oor.out_of_reference(ctx, units)
    # retriever_tuned per unit, then retriever_tuned_diverged per unit: the same rows and the
    # validation gene's copies at 20 and 40 %, searched in full (truth V) and masked (novel)
    assert tuned == [["V", "none", "similar", "V"], ["W", "none", "similar", "W"],
                     ["V", "none", "similar", "V", "V", "V", "V", "V"],
                     ["W", "none", "similar", "W", "W", "W", "W", "W"]]
    cuts = {k: {u: round(t["min_identity"], 6) for u, t in section["thresholds"][k].items()}
            for k in ("retriever_tuned", oor.RETRIEVER_DIVERGED)}
    assert cuts == {"retriever_tuned": {"split_gene": 0.7, "split_gene_fold1": 0.8},
                    oor.RETRIEVER_DIVERGED: {"split_gene": 0.9, "split_gene_fold1": 1.0}}
    assert units[0].searched[:8] == [("full", "V"), ("full", "random"), ("full", "similar"), (oor.VAL_NOVEL, "V"),
                                     ("full", "A"), ("novel", "A"), ("full", "random"), ("full", "similar")]
    assert units[1].searched[:14] == [("full", "W"), ("full", "random"), ("full", "similar"), (oor.VAL_NOVEL, "W"),
                                      ("full", "V"), ("novel", "V"), ("full", "W"), ("full", "random"),
                                      ("full", "similar"), *[("full", "W")] * 2, *[(oor.VAL_NOVEL, "W")] * 3]
    assert [section["systems"][k]["rows"] for k in cuts] == [2 + 2 + 2] * 2  # genes, novel, negatives
    # the model on both units' tuning rows (each: genic, 2 negatives, genic as novel), row by row
    table = (tmp_path / "predictions" / "out_of_reference.validation.model.tsv").read_text().splitlines()
    assert section["validation_model"]["rows"] == 8 == len(table) - 1
    v = section["validation_model"]["copies"]  # the tuning rows' windows are counted too
    assert v["multi_copy"] == {"gene": [0, 0], "novel_no_gene": [0, 0]}
    assert [v["single_copy"][k][1] for k in ("gene", "novel_no_gene")] == [2, 2]
    assert [r[0] for r in oor.copy_rows(section)] == ["model", "retriever_tuned", oor.RETRIEVER_DIVERGED,
                                                      "model (validation rows)"]
    ids = [line.split("\t")[0] for line in table[1:]]
    assert len(set(ids)) == 8 and [i.split(":")[0] for i in ids] == ["split_gene"] * 4 + ["split_gene_fold1"] * 4
    assert [i.split(":")[1] for i in ids[:4]] == ["gene", "val", "val", "novel"]


def test_the_model_is_scored_on_the_tuning_rows_too(tmp_path, monkeypatch):
    """With a retrieval model the section holds its scores on the baselines' tuning rows
    ("validation_model": validation genic rows searched in full, negatives of the validation part,
    the genic rows searched on the index without the validation genes), what settings may be
    chosen on; never on test rows. Without an index, none."""
    from llamadna.evaluate import out_of_reference as oor

    class Unit(_FakeUnit):  # answers each row's gene where the row has one; records the settings
        def annotate(self, variant, rows, setting="full"):
            self.seen += [(setting, r.get("gene_name") or r.get("kind")) for r in rows]
            return [{"outcome": "gene", "gene": r["gene_name"]} if r.get("gene_name") and setting == "full"
                    else {"outcome": "none", "gene": None} for r in rows]

    _fake_negatives(monkeypatch)
    ctx = _fake_ctx(tmp_path, [_genic_row("V", 9), _genic_row("W", 8)], reference="REF")
    monkeypatch.setattr(oor, "_val_novel_retriever", lambda unit: unit.cache.setdefault("retriever:val_novel", 1))
    unit = Unit(ctx, "split_gene", [_genic_row("B", 1)], [_genic_row("A", 0)])
    tuning = {"split_gene": oor._validation(ctx, unit, tmp_path)}
    m, rows, _ = oor._validation_model([unit], tuning, n_boot=20, seed=0)
    assert unit.seen == [("full", "V"), ("full", "W"), ("full", "random"), ("full", "similar"),
                         (oor.VAL_NOVEL, "V"), (oor.VAL_NOVEL, "W")]
    assert m["rows"] == 6 and m["novel_no_gene"] == 1.0
    # right: the two genes, the random row and both novel rows; wrong: the chimera ("none")
    assert m["kinds"]["gene"]["accuracy"] == 1.0 and m["kinds"]["similar"]["accuracy"] == 0.0
    assert 0 < m["macro_f1"] < 1
    line = oor.validation_summary({"validation_model": m, "units": ["split_gene"]})
    assert line.startswith("The model on the 6 tuning rows of 1 unit (validation part") and "novel: no gene claimed 100.0 %" in line
    assert oor.validation_summary({"systems": {}}) is None
    # every unit's model on its own tuning rows, pooled; ids stay apart where units draw alike
    other = Unit(ctx, "split_gene_fold1", [_genic_row("V", 9)], [_genic_row("A", 0)])
    tuning["split_gene_fold1"] = oor._validation(ctx, other, tmp_path)
    m2, rows2, preds2 = oor._validation_model([unit, other], tuning, n_boot=20, seed=0)
    assert m2["rows"] == 12 == len(preds2) and len({r["id"] for r in rows2}) == 12
    assert [r["id"] for r in rows2[:6]] == [r["id"] for r in rows] and other.seen == unit.seen[:6]
    assert oor.validation_summary({"validation_model": m2, "units": ["a", "b"]}).startswith(
        "The model on the 12 tuning rows of 2 units (validation part, each unit's model on its own")


def test_the_model_is_scored_on_diverged_copies_of_the_tuning_genes(tmp_path, monkeypatch):
    """"validation_diverged": each unit's validation genic rows mutated at the calibration's
    nonzero rates (the copies the widened rules are tuned on), searched in full, answered by that
    unit's model and scored per rate as own-gene answers; ids keep units and rates apart; the
    summary line gives them; the table carries each row's rate."""
    from llamadna.evaluate import out_of_reference as oor

    dna = "ACGTTGCAAGCTTAGCGGATCCATGCATGCAAGTCGATCGGATCAAGT" * 3
    val = [{**_genic_row("V", 9), "Sequence": dna}, {**_genic_row("W", 8), "Sequence": dna[::-1]}]

    class Unit(_FakeUnit):  # each unit keeps V's gene at 20 % (its first call), loses every gene at 40 %
        def annotate(self, variant, rows, setting="full"):
            self.seen += [(setting, r["Sequence"]) for r in rows]
            return [{"outcome": "gene", "gene": "V"} if r.get("gene_name") == "V" and len(self.seen) <= 2
                    else {"outcome": "similar", "gene": None} for r in rows]

    _fake_negatives(monkeypatch)
    monkeypatch.setattr(oor, "_val_novel_retriever", lambda unit: unit.cache.setdefault("retriever:val_novel", 1))
    ctx = _fake_ctx(tmp_path, val, reference="REF")
    units = [Unit(ctx, "split_gene", [_genic_row("B", 1)], [_genic_row("A", 0)]),
             Unit(ctx, "split_gene_fold1", [_genic_row("A", 0)], [_genic_row("B", 1)])]
    tuning = {u.column: oor._validation(ctx, u, tmp_path) for u in units}
    d, rows, preds = oor._validation_diverged(units, tuning, n_boot=20, seed=0)
    assert oor.VALIDATION_DIVERGED_RATES == (0.2, 0.4)
    assert d["rates"] == [0.2, 0.4] and d["rows"] == 4 and list(d["systems"]) == ["model"]
    assert d["systems"]["model"]["gene"] == [0.5, 0.0] and d["model_versus"] == {}
    assert d["systems"]["model"]["outcomes"][1] == {"similar": 4}
    # the copies are the widened tuning rows' copies: mutated, seeded by row, in full only
    widened = oor._with_diverged(units[0], *tuning["split_gene"])[0][len(tuning["split_gene"][0]):]
    assert [s for _, s in units[0].seen] == [r["Sequence"] for r in widened]
    assert {setting for u in units for setting, _ in u.seen} == {"full"}
    assert all(s not in (dna, dna[::-1]) for _, s in units[0].seen)
    assert len({r["id"] for r in rows}) == 8 and rows[0]["id"].startswith("split_gene:0.2:gene:")
    assert [r["rate"] for r in rows] == [0.2, 0.2, 0.4, 0.4] * 2
    line = oor.validation_summary({"validation_model": oor._validation_model(units, tuning, 20, 0)[0],
                                   "validation_diverged": d, "units": ["a", "b"]})
    assert "copies diverged (4 per rate), answered with their own gene: 20 % 0.50" in line
    assert ", 40 % 0.00" in line
    path = tmp_path / "div.tsv"
    oor.write_outcome_table(path, rows, preds)
    table = pl.read_csv(path, separator="\t")
    assert table["rate"].to_list() == [0.2, 0.2, 0.4, 0.4] * 2 and table["outcome"][0] == "gene"
    oor.write_outcome_table(path, rows[:0] + [{k: v for k, v in rows[0].items() if k != "rate"}], preds[:1])
    assert "rate" not in pl.read_csv(path, separator="\t").columns


def test_the_widened_tuning_rows_add_diverged_copies_of_the_validation_genes(tmp_path):
    """retriever_tuned_diverged's tuning rows: the unit's own, then its validation genic rows'
    copies at the calibration's nonzero rates (truth their gene), then the novel rows and their
    copies (truth novel); copies mutated (seeded by row), without SPLASH scores."""
    from types import SimpleNamespace

    from llamadna.constants import CALIBRATION_RATES
    from llamadna.evaluate import out_of_reference as oor

    dna = "ACGTTGCAAGCTTAGCGGATCCATGCATGCAAGTCGATCGGATCAAGT" * 3
    genic = [{**_genic_row("V", 1, dna), "Sequence": dna}, {**_genic_row("W", 2, dna), "Sequence": dna[::-1]}]
    negs = [_neg("random", 0)]
    truths = ([{"outcome": "gene", "gene_name": g} for g in "VW"] + [{"outcome": "none", "gene_name": None}]
              + [{"outcome": "novel", "gene_name": g} for g in "VW"])
    unit = SimpleNamespace(cfg=SimpleNamespace(seed=0))
    full, novel, seen = oor._with_diverged(unit, genic + negs, genic, truths)
    rates = [r for r in CALIBRATION_RATES if r > 0]
    n = len(rates) * 2
    assert len(rates) == 2 and len(full) == 3 + n and len(novel) == 2 + n and len(seen) == len(full) + len(novel)
    copies = full[3:]
    assert novel[2:] == copies and [r["gene_name"] for r in copies] == ["V", "W"] * len(rates)
    assert all(r["Sequence"] not in (dna, dna[::-1]) and r["SPLASH_Effect"] is None for r in copies)
    assert [t["outcome"] for t in seen] == ["gene"] * 2 + ["none"] + ["gene"] * n + ["novel"] * (2 + n)
    assert [t["gene_name"] for t in seen[3:3 + n]] == ["V", "W"] * len(rates)
    again = oor._with_diverged(unit, genic + negs, genic, truths)[0]
    assert [r["Sequence"] for r in again] == [r["Sequence"] for r in full]  # seeded


def test_diverged_scores_count_own_gene_answers_per_rate():
    """Per rate: the rows answered with their own gene (a wrong gene or another outcome is
    wrong), the outcomes given, and the model minus each rule on the same rows."""
    from llamadna.evaluate.out_of_reference import diverged_outcomes, diverged_rows, diverged_scores

    rows = [{"rate": rate, "cluster": g, "truth": {"outcome": "gene", "gene_name": g}}
            for rate in (0, 0.3) for g in ("A", "B", "C", "D")]
    model = [_pred("gene", g) for g in "ABCD"] + [_pred("gene", "A"), _pred("gene", "X"), _pred("similar"),
                                                    _pred("gene", "D")]
    rule = [_pred("gene", g) for g in "ABCD"] + [_pred("similar")] * 3 + [_pred("none")]
    d = diverged_scores([0, 0.3], rows, {"model": model, "retriever_tuned": rule}, n_boot=50, seed=0)
    assert d["rates"] == [0, 0.3] and d["rows"] == 4
    assert d["systems"]["model"]["gene"] == [1.0, 0.5] and d["systems"]["retriever_tuned"]["gene"] == [1.0, 0.0]
    assert d["systems"]["model"]["outcomes"][1] == {"gene": 3, "similar": 1}
    assert d["systems"]["retriever_tuned"]["outcomes"][1] == {"similar": 3, "none": 1}
    lo, hi = d["systems"]["model"]["interval"][1]
    assert 0 <= lo <= 0.5 <= hi <= 1 and d["systems"]["model"]["interval"][0] == [1.0, 1.0]
    v = d["model_versus"]["retriever_tuned"]
    assert v["difference"] == [0.0, 0.5] and v["interval"][1][0] <= 0.5 <= v["interval"][1][1]
    assert "model" not in d["model_versus"]
    head, table = diverged_rows({"diverged": d})
    assert head == ["divergence", "model", "retriever_tuned", "model \u2212 retriever_tuned"]
    assert table[1][0] == "30 %" and table[1][1].startswith("0.50 [") and table[1][3].startswith("+0.50 [")
    assert diverged_outcomes({"diverged": d})[1] == (
        "retriever_tuned: 0 %: gene 4; 30 %: similar 3, none 1")
    assert diverged_rows({}) == ([], []) and diverged_outcomes({}) == []


def test_diverged_copies_get_each_units_model_and_thresholds(tmp_path, monkeypatch):
    """The diverged rows are the divergence curves' (the seeded subsample, nested mutations per
    rate), without SPLASH scores; each unit's are answered by its own model and by the rule with
    its own thresholds; the section holds their scores."""
    from llamadna.evaluate import out_of_reference as oor
    from llamadna.evaluate.divergence import divergence_subsample
    from llamadna.evaluate.schema import DivergedGenes

    seqs = {}

    class Unit(_FakeUnit):  # the model names the row's gene; evidence: identity 1.0 unmutated, else 0.7
        def annotate(self, variant, rows, setting="full"):
            self.seen += rows
            return [{"outcome": "gene", "gene": seqs.get(r["Sequence"], r.get("gene_name"))} for r in rows]

        def annotator(self, variant, setting="full"):
            return setting

        def evidence(self, annotator, rows, setting):
            return [{**r, "evidence": [{"identity": 1.0 if r["Sequence"] in seqs else 0.7,
                                        "aligned_fraction": 1.0, "kind": "gene", "loci": 1,
                                        "gene": r.get("gene_name")}]} for r in rows]

    _fake_negatives(monkeypatch)
    monkeypatch.setattr(oor.shutil, "which", lambda name: None)
    monkeypatch.setattr(oor, "_val_novel_retriever", lambda unit: None)
    cuts = itertools.cycle([0.9, 0.6])  # unit 0 names a gene from identity 0.9 on, unit 1 from 0.6
    monkeypatch.setattr(oor, "tuned_rule", lambda tops, loci, truths: Thresholds(min_identity=next(cuts)))
    ctx = _fake_ctx(tmp_path, [_genic_row("V", 9)], reference="REF")
    ctx.cfg.divergence_rates, ctx.cfg.divergence_rows = (0, 0.3), 3
    dna = "ACGTTGCAAGCTTAGCGGATCCATGCATGCAAGTCGATCGGATCAAGT" * 2
    test = [[_genic_row(g, i, dna[i:] + dna[:i]) for i, g in enumerate("AB")],
            [_genic_row(g, i + 2, dna[i + 2:] + dna[:i + 2]) for i, g in enumerate("CD")]]
    seqs.update((r["Sequence"], r["gene_name"]) for rows in test for r in rows)
    units = [Unit(ctx, "split_gene", test[0], []), Unit(ctx, "split_gene_fold1", test[1], [])]
    d = oor.out_of_reference(ctx, units)["diverged"]
    assert missing_keys(d, DivergedGenes) == [] and d["rates"] == [0, 0.3] and d["rows"] == 3
    picks = divergence_subsample(ctx.cfg, [2, 2])
    unit1 = len(picks[1])  # the subsample's rows of unit 1, whose rule names a gene at 0.7
    assert d["systems"]["model"]["gene"] == [1.0, 1.0]
    assert d["systems"]["retriever_tuned"]["gene"] == [1.0, unit1 / 3]
    assert d["model_versus"]["retriever_tuned"]["difference"] == [0.0, 1 - unit1 / 3]
    mutated = [r for u in units for r in u.seen if r.get("gene_name") in set("ABCD") and r["Sequence"] not in seqs]
    assert len(mutated) == 3 and all(r["SPLASH_Effect"] is None for r in mutated)
    ctx.cfg.divergence_rates = ()
    assert "diverged" not in oor.out_of_reference(ctx, units)


def test_tuning_rows_hold_the_validation_genes_searched_without_them(tmp_path, monkeypatch):
    """retriever_tuned's thresholds see the validation rows with their genes masked out
    (training_index of the unit), truth "novel"."""
    import llamadna.retrieve.retriever as retriever
    import llamadna.train.evidence_sampler as sampler
    from llamadna.evaluate import out_of_reference as oor

    _fake_negatives(monkeypatch)
    ctx = _fake_ctx(tmp_path, [_genic_row("V", 9), _genic_row("A", 8)], reference="REF")
    ctx.models = type("M", (), {"train_config": {"evidence_k": 3}})()
    unit = _FakeUnit(ctx, "split_gene", [_genic_row("B", 1)], [_genic_row("A", 0)])
    full, novel, truths = oor._validation(ctx, unit, tmp_path)
    assert len(full) == 4 and [r["gene_name"] for r in novel] == ["V", "A"]
    assert [t["outcome"] for t in truths] == ["gene", "gene", "none", "similar", "novel", "novel"]
    assert all(r["SPLASH_Effect"] is None for r in full + novel)
    hit = {"identity": 1.0, "aligned_fraction": 1.0, "kind": "gene", "loci": 1}
    calls, tuned = [], []
    monkeypatch.setattr(sampler, "training_index", lambda *a: calls.append(a) or "MASKED")
    monkeypatch.setattr(retriever, "open_retriever", lambda index, k: ("retriever", index, k))
    monkeypatch.setattr(oor, "tuned_rule", lambda tops, loci, t: tuned.append((tops, t)) or Thresholds())

    def evidence(annotator, rows, setting):
        masked = setting == oor.VAL_NOVEL
        return [{**r, "evidence": [] if masked else [{**hit, "gene": r.get("gene_name")}]} for r in rows]

    unit.annotator = lambda variant, setting="full": unit.retriever(setting) if setting == oor.VAL_NOVEL else None
    unit.retriever = lambda setting: unit.cache[f"retriever:{setting}"]
    unit.evidence = evidence
    oor._retriever_baseline([unit], [], {"split_gene": (full, novel, truths)})
    assert calls == [("REF", "ds", "split_gene", unit.train_rows)]
    assert unit.cache[f"retriever:{oor.VAL_NOVEL}"] == ("retriever", "MASKED", 3)
    tops, seen = tuned[-1]
    assert seen == truths and len(tops) == 6 and tops[4:] == [None, None] and tops[0]["gene"] == "V"


def _fake_lookup(monkeypatch) -> tuple[list, list]:
    """blastn's ReferenceLookup faked: a masked lookup (`without_genes`) maps nothing; returns the
    gene sets masked and the (masked genes, query) pairs searched, in order."""
    import llamadna.evaluate.baselines as baselines
    import llamadna.retrieve.align as align

    masks, searched = [], []

    class Lookup:
        builds, masked = ["GRCh38"], ()

        def __init__(self, *a, **k):
            pass

        def without_genes(self, genes):
            out = Lookup()
            out.masked = tuple(genes)
            masks.append(out.masked)
            return out

        def lookup_many(self, seqs, builds):
            searched.extend((self.masked, q) for q in seqs)
            return [{"mapped": not self.masked, "identity": None if self.masked else 1.0,
                     "aligned_fraction": 1.0, "loci": 0 if self.masked else 1, "gene": "g"} for _ in seqs]

    monkeypatch.setattr(baselines, "ReferenceLookup", Lookup)
    monkeypatch.setattr(align, "BlastnAligner", lambda **k: None)
    return masks, searched


def test_blastn_tuning_masks_the_validation_genes_and_searches_each_query_once(tmp_path, monkeypatch):
    """blastn_tuned's thresholds see the validation rows on the lookup without their genes (truth
    "novel"); several tunings share every search: each query once per database."""
    from llamadna.evaluate import out_of_reference as oor

    _fake_negatives(monkeypatch)
    ctx = _fake_ctx(tmp_path, [_genic_row("V", 9), _genic_row("A", 8)], reference="REF")
    unit = _FakeUnit(ctx, "split_gene", [_genic_row("B", 1)], [_genic_row("A", 0)])
    full, novel, truths = oor._validation(ctx, unit, tmp_path)
    tuned = []
    monkeypatch.setattr(oor, "tuned_rule", lambda tops, loci, t: tuned.append((tops, t)) or Thresholds())
    masks, searched = _fake_lookup(monkeypatch)
    tuning = {"split_gene": (full, novel, truths)}
    got = oor._blastn_baseline([unit], [], {"blastn_tuned": tuning, "again": tuning}, tmp_path)
    assert list(got) == ["blastn_tuned", "again"] and list(got["blastn_tuned"][1]) == ["split_gene"]
    assert got["again"][0] == got["blastn_tuned"][0]
    # per database, each query once: the 4 tuning rows and the test row in full; 2 + 1 masked
    assert len(searched) == len(set(searched)) == 4 + 1 + 2 + 1
    tops, seen = tuned[-1]
    assert seen == truths and tops[4:] == [None, None] and tops[0] is not None
    assert masks == [("V", "idV"), ("B", "idB")]  # validation genes no training row holds; test


# ------------------------------------------------------------------------------ hit statistics


def test_count_loci_merges_overlaps_and_keeps_near_best():
    al = [(0, 100, 400, 1.0, 1.0), (0, 380, 700, 0.99, 1.0),  # overlapping: one place
          (0, 1900, 1600, 0.95, 0.98),  # minus strand (start > end), another place
          (1, 100, 400, 0.97, 1.0), (2, 100, 400, 0.7, 1.0),  # record 2: too far below the best
          (3, 0, 100, 1.0, 0.3)]  # covers too little of the query
    assert distinct_loci(al) == 3
    assert distinct_loci([]) == 0


def test_blast_hits_carry_identity_fraction_evalue_and_loci():
    # query q0 of 10 bases: a full HSP with one mismatch on record 3 and an equal one on record 5;
    # q1: a half-length HSP
    lines = ["q0\t3\t1\t10\t101\t110\t1e-3\t18.0\tplus\tACGTACGTAC\tACGTACGTAA",
             "q0\t5\t1\t10\t51\t60\t1e-3\t18.0\tplus\tACGTACGTAC\tACGTACGTAC",
             "q1\t2\t3\t7\t20\t24\t0.5\t9.0\tplus\tGTACG\tGTACG"]
    hits = parse_blast_hits(lines, [10, 10])
    assert hits[0] == Hit(3, 105, None)  # the first listed of two equal HSPs; statistics not compared
    assert hits[0].identity == pytest.approx(0.9) and hits[0].aligned_fraction == 1.0
    assert hits[0].evalue == 1e-3 and hits[0].loci == 2
    assert hits[1].aligned_fraction == 0.5 and hits[1].identity == 1.0 and hits[1].loci == 1


def _repeat_reference(tmp_path, copies: int = 4):
    rng = np.random.default_rng(5)

    def rnd(n):
        return "".join(rng.choice(list("ACGT"), n))

    element = rnd(400)
    unique = rnd(400)
    seq = rnd(1500) + unique + "".join(rnd(1500) + element for _ in range(copies)) + rnd(1500)
    fasta = tmp_path / "ref.fa"
    fasta.write_text(f">chr1:1-{len(seq)}\n{seq}\n")
    return fasta, element, unique


def test_minimap2_hits_count_a_repeats_loci(tmp_path):
    from llamadna.retrieve.align import Minimap2Aligner, index_reference

    fasta, element, unique = _repeat_reference(tmp_path)
    map_fn, _ = index_reference(fasta, Minimap2Aligner(k=11, w=5))
    rep, uni = map_fn([element, unique])
    assert rep.loci == 4 and uni.loci == 1
    assert uni.identity == 1.0 and uni.aligned_fraction == 1.0 and uni.evalue is None


@pytest.mark.skipif(shutil.which("blastn") is None, reason="BLAST+ not installed")
def test_blastn_without_culling_counts_a_repeats_loci(tmp_path):
    from llamadna.retrieve.align import BlastnAligner, index_reference

    fasta, element, unique = _repeat_reference(tmp_path)
    culled, _ = index_reference(fasta, BlastnAligner(threads=1))
    full, _ = index_reference(fasta, BlastnAligner(threads=1, culling_limit=None))
    assert culled([element])[0].loci == 1  # culling_limit 1 deletes the other copies
    rep, uni = full([element, unique])
    assert rep.loci == 4 and uni.loci == 1 and uni.identity == 1.0 and uni.evalue < 1e-100


# ------------------------------------------------------------------------------ section, report


BLAST_PREDS = [_pred("gene", r["truth"]["gene_name"]) if r["kind"] == "gene" else _pred("none") for r in ROWS]


def test_model_versus_another_system_on_the_same_rows():
    """Rows only one of the two gets right, and the macro-F1 difference with a paired interval
    that holds it; against itself: nothing apart, a difference of 0."""
    v = model_versus(ROWS, PREDS, BLAST_PREDS, n_boot=200, seed=0)
    right_m = [outcome_correct(*_answer(p), r["truth"]) for p, r in zip(PREDS, ROWS)]
    right_b = [outcome_correct(*_answer(p), r["truth"]) for p, r in zip(BLAST_PREDS, ROWS)]
    assert v["model_only"] == sum(a and not b for a, b in zip(right_m, right_b)) > 0
    assert v["other_only"] == sum(b and not a for a, b in zip(right_m, right_b)) > 0
    m, b = score_outcomes(ROWS, PREDS, 10, 0), score_outcomes(ROWS, BLAST_PREDS, 10, 0)
    assert v["macro_f1_difference"] == pytest.approx(m["macro_f1"] - b["macro_f1"])
    lo, hi = v["macro_f1_difference_interval"]
    assert lo <= v["macro_f1_difference"] <= hi and lo < hi
    same = model_versus(ROWS, PREDS, PREDS, n_boot=50, seed=0)
    assert same["model_only"] == same["other_only"] == 0
    assert same["macro_f1_difference"] == 0 and same["macro_f1_difference_interval"] == [0, 0]


def test_top_candidate_agreement_counts_gene_answers_naming_the_top_hit():
    preds = [{**_pred("gene", "A", 0.9), "evidence_gene": "A"}, {**_pred("gene", "B", 0.9), "evidence_gene": "A"},
             {**_pred("none"), "evidence_gene": "A"}, {**_pred("gene", "C"), "evidence_gene": None}]
    assert top_candidate_agreement(preds) == {"gene_answers": 3, "top_candidate": 1}


def _answer(p: dict) -> tuple:
    return p.get("outcome") if p.get("outcome") in OUTCOMES else None, p.get("gene")


def _section() -> dict:
    model = score_outcomes(ROWS, PREDS, n_boot=20, seed=0)
    blast = score_outcomes(ROWS, BLAST_PREDS, n_boot=20, seed=0)
    floor = score_outcomes(ROWS, [{"outcome": "none"}] * len(ROWS), n_boot=20, seed=0)
    kinds = [r["kind"] for r in ROWS]
    return {"split": "split_gene", "units": ["split_gene"],
            "rows": {k: kinds.count(k) for k in TRUTH_KINDS if k in kinds}, "validation_rows": 40,
            "thresholds": {"blastn_tuned": {"split_gene": {"min_identity": 0.8, "max_evalue": 1e-5}}},
            "systems": {"model": model, "blastn_tuned": blast},
            "notes": {"model": "the model", "blastn_tuned": "blastn"},
            "floor": {"macro_f1": floor["macro_f1"], "macro_f1_interval": floor["macro_f1_interval"]},
            "model_versus": {"blastn_tuned": model_versus(ROWS, PREDS, BLAST_PREDS, n_boot=20, seed=0)}}


def test_section_matches_the_schema():
    section = _section()
    assert missing_keys(section, OutOfReference) == []
    del section["systems"]["model"]["kinds"]["random"]["gene_claim_rate"]
    del section["floor"]["macro_f1"]
    assert sorted(missing_keys(section, OutOfReference)) == [
        "floor.macro_f1", "systems.model.kinds.random.gene_claim_rate"]


def test_summary_rows_and_the_report_section(tmp_path):
    from llamadna.evaluate.report import write_report
    from llamadna.evaluate.schema import read_metrics

    section = _section()
    section["validation_model"] = section["systems"]["model"]
    section["diverged"] = _diverged()
    assert missing_keys(section, OutOfReference) == []
    rows = summary_rows(section)
    assert [r[0] for r in rows] == ["model", "blastn_tuned", "always none (floor)"]
    assert rows[1][3].startswith("0.0 %")  # blastn here claims no gene outside genes
    meta = {"dataset": "ds", "data_dir": "data", "model": "m", "model_config": {}, "train_config": {},
            "seed": 0, "splits": ["split_gene"], "created": "2026-01-01T00:00:00", "rows_per_split": {},
            "eval_config": {}, "seconds": 1.0}
    metrics = {"meta": meta, "splits": {}, "reported": {}, "systems": {}, "out_of_reference": section}
    path = write_report(metrics, [], tmp_path)
    assert read_metrics(tmp_path / "metrics.json")["out_of_reference"]["rows"]["random"] == 3
    page = path.read_text()
    part = page[page.index('<h2 id="out_of_reference">'):]
    for text in ("Out of reference", "False gene claims per truth kind", "Outcome accuracy per truth kind",
                 "Confusion of outcomes", "always none (floor)", "blastn_tuned", "Risk-coverage",
                 "gene confidence &ge; 0.5", "data:image/png;base64,", "The model on the 12 tuning rows",
                 "The model against each baseline on the same rows",
                 "Diverged copies of known genes: answered with their own gene", "model \u2212 blastn_tuned",
                 "blastn_tuned: 0 %: gene 2; 30 %: similar 1, none 1"):
        assert text in part, text
    # the random rows' false claims of the model: 1 of 3, with its Wilson interval
    lo, hi = wilson_interval(1, 3)
    assert f"33.3 % <small>[{100 * lo:.1f}, {100 * hi:.1f}]</small> (1)" in part
    assert not math.isnan(section["systems"]["model"]["macro_f1"])


def test_the_report_says_what_gene_claims_on_repeats_inside_genes_name():
    from llamadna.evaluate.out_of_reference import _negative
    from llamadna.evaluate.report import _in_gene_note, _out_of_reference_html

    assert _in_gene_note(_section()) is None  # no such rows: no note
    rows = ROWS + _negative([{**_neg("repeat", 0), "in_gene": "GTPBP6"}, {**_neg("repeat", 1), "in_gene": "C"}],
                            "test")
    section = _section()
    section["systems"]["model"] = score_outcomes(rows, PREDS + [_pred("gene", "GTPBP6", 0.9),
                                                                _pred("gene", "D", 0.9)], n_boot=20, seed=0)
    section["systems"]["blastn_tuned"] = score_outcomes(rows, PREDS + [_pred("repeat")] * 2, n_boot=20, seed=0)
    section["rows"][REPEAT_IN_GENE] = 2
    assert missing_keys(section, OutOfReference) == []
    note = _in_gene_note(section)
    assert "model: 1 of 2; blastn_tuned: 0 of 0" in note
    assert note in _out_of_reference_html(section)


@pytest.mark.parametrize("aligner", ("minimap2", "blastn"))
def test_lookup_reports_hit_statistics_and_masks_genes(bundle_factory, aligner):
    from llamadna.data.build import build_dataset
    from llamadna.evaluate.baselines import ReferenceLookup

    if aligner == "blastn" and shutil.which("blastn") is None:
        pytest.skip("BLAST+ not installed")
    bundle = bundle_factory(seed=3, chrom_lengths={"chr1": 30_000, "chr2": 20_000}, n_genes=6, n_variants=40)
    rows = build_dataset(bundle.path)[0].to_dicts()[:20]
    lookup = ReferenceLookup(bundle.path, [], "FALLBACK", aligner=aligner)
    seqs = [r["Sequence"] for r in rows]
    for row, res in zip(rows, lookup.lookup_many(seqs, "GRCh38")):
        assert res["gene"] == row["gene_name"] and res["kind"] == "gene"
        assert res["identity"] == 1.0 and res["aligned_fraction"] == 1.0 and res["loci"] >= 1
        assert (res["evalue"] is None) == (aligner == "minimap2")
    gene = rows[0]["gene_name"]
    masked = lookup.without_genes([gene]).lookup_many(seqs, "GRCh38")
    spans = [(g["chrom"], g["start"], g["end"]) for g in bundle.genes if g["gene_name"] == gene]
    apart = 0
    for row, res in zip(rows, masked):
        near = any(c == row["chrom"] and row["start"] <= e and row["end"] >= s for c, s, e in spans)
        if near:  # the gene's sequence is masked too: unmapped, or another place
            assert res["gene"] != gene
            assert res["kind"] == ("gene" if res["gene"] else "intergenic" if res["mapped"] else None)
        else:
            assert res["gene"] == row["gene_name"]
            apart += 1
    assert apart and any(r["gene_name"] == gene for r in rows)
    assert lookup.lookup(seqs[0], "GRCh38")["gene"] == gene  # the original keeps every gene


@pytest.mark.parametrize("aligner", ("minimap2", "blastn"))
def test_lookup_without_genes_masks_their_sequence(bundle_factory, aligner):
    """The novel-gene setting of the lookup: the gene's span is N in the indexed reference, so a
    query cut from inside it no longer maps there, while other genes map as before (chromosome
    coordinates, on region records that start at 1,001)."""
    from llamadna.evaluate.baselines import ReferenceLookup

    if aligner == "blastn" and shutil.which("blastn") is None:
        pytest.skip("BLAST+ not installed")
    bundle = bundle_factory(seed=5, chrom_lengths={"chr1": 30_000, "chr2": 20_000}, n_genes=6,
                            n_variants=10, regions=True, gene_len=(2_000, 6_000))
    genome = {name.split(":")[0]: value for name, value in bundle.genome.items()}
    gone = bundle.genes[0]
    kept = next(g for g in bundle.genes[1:] if g["chrom"] != gone["chrom"] or g["start"] > gone["end"]
                or g["end"] < gone["start"])

    def cut(gene, offset, n=400):  # a query inside the gene, and its centre (1-based)
        start0, seq = genome[gene["chrom"]]
        a = gene["start"] - 1 + offset
        return seq[a - start0 : a - start0 + n].tobytes().decode(), a + n // 2 + 1

    lookup = ReferenceLookup(bundle.path, [], "FALLBACK", aligner=aligner)
    novel = lookup.without_genes([gone["gene_id"]])  # by id
    inside = [cut(gone, o) for o in (0, 500, 1_000, gone["end"] - gone["start"] + 1 - 400)]
    for (seq, centre), res in zip(inside, novel.lookup_many([s for s, _ in inside], "GRCh38")):
        assert res["gene"] != gone["gene_name"]
        assert not res["mapped"] or res["chrom"] != gone["chrom"] or not (
            gone["start"] <= res["position"] <= gone["end"])
        assert lookup.lookup(seq, "GRCh38")["position"] == centre  # the original still maps it
    others = [cut(kept, o) for o in (0, 700)]
    for (_, centre), res in zip(others, novel.lookup_many([s for s, _ in others], "GRCh38")):
        assert res["mapped"] and res["gene"] == kept["gene_name"]
        assert (res["chrom"], res["position"]) == (kept["chrom"], centre)
    # the masks add up: without a second gene, the first stays masked
    again = novel.without_genes([kept["gene_name"]])
    assert not any(r["mapped"] and r["chrom"] == gone["chrom"] and gone["start"] <= r["position"] <= gone["end"]
                   for r in again.lookup_many([s for s, _ in inside], "GRCh38"))
    assert all(r["gene"] != kept["gene_name"] for r in again.lookup_many([s for s, _ in others], "GRCh38"))


def test_evaluate_prints_the_out_of_reference_table():
    from llamadna.cli import _print_out_of_reference, console

    with console.capture() as cap:
        _print_out_of_reference(_section())
    text = cap.get()
    assert "out of reference: 12 rows" in text and "macro-F1" in text
    assert "model" in text and "always none" in text and "0.700" in text  # the model's macro-F1
    assert "tuning rows" not in text
    v = _section()["model_versus"]["blastn_tuned"]
    assert (f"against blastn_tuned, rows only the model gets right {v['model_only']}, only blastn_tuned "
            f"{v['other_only']}, macro-F1 difference {v['macro_f1_difference']:+.3f}") in " ".join(text.split())
    with console.capture() as cap:
        _print_out_of_reference({**_section(), "model_top_candidate": {"gene_answers": 5, "top_candidate": 4}})
    assert "top reference candidate's in 4 of its 5 gene answers" in " ".join(cap.get().split())
    with console.capture() as cap:
        _print_out_of_reference({**_section(), "validation_model": _section()["systems"]["model"]})
    assert "The model on the 12 tuning rows of 1 unit (validation part" in " ".join(cap.get().split())
    assert "diverged copies" not in cap.get()
    with console.capture() as cap:
        _print_out_of_reference({**_section(), "diverged": _diverged()})
    text = " ".join(cap.get().split())
    assert "diverged copies of the test rows (2 per rate)" in text and "+0.50 [" in text


def _diverged() -> dict:
    """A "diverged" entry: two genes at 0 and 30 %, the model keeps one at 30 %, blastn none."""
    from llamadna.evaluate.out_of_reference import diverged_scores

    rows = [{"rate": rate, "cluster": g, "truth": {"outcome": "gene", "gene_name": g}}
            for rate in (0, 0.3) for g in "AB"]
    model = [_pred("gene", "A"), _pred("gene", "B"), _pred("gene", "A"), _pred("similar")]
    blast = [_pred("gene", "A"), _pred("gene", "B"), _pred("none"), _pred("similar")]
    return diverged_scores([0, 0.3], rows, {"model": model, "blastn_tuned": blast}, n_boot=20, seed=0)


def test_copy_scores_split_genic_and_novel_rows_by_their_windows_loci():
    """`copy_scores`: genic and novel rows at >= REPEAT_MIN_LOCI loci (multi-copy) apart from the
    others; negatives and rows whose loci were not counted are left out; no counted row: None.
    The table and the report show it per system, the validation rows last."""
    from llamadna.evaluate.out_of_reference import COPY_HEAD, _genic, _negative, copy_rows, copy_scores
    from llamadna.evaluate.report import _out_of_reference_html

    loci = {"ACGT0": 3, "ACGT1": 1, "ACGT2": 4}
    rows = (_genic([_genic_row("A", 0), _genic_row("B", 1), _genic_row("C", 2)], "gene",
                   copies=lambda seq, build: loci[seq])
            + _genic([_genic_row("A", 0), _genic_row("B", 1)], "novel", copies=lambda seq, build: loci[seq])
            + _genic([_genic_row("D", 3)], "gene")  # not counted
            + _negative([_neg("random", 0)], "test"))
    assert [r.get("copies") for r in rows] == [3, 1, 4, 3, 1, None, None]  # negatives: none
    preds = [_pred("gene", "A", 0.9), _pred("gene", "B", 0.9), _pred("repeat"),  # genic: C's copy "repeat"
             _pred("repeat"), _pred("gene", "X", 0.9),  # novel: A's no gene, B's a paralog
             _pred("gene", "D", 0.9), _pred("none")]
    got = copy_scores(rows, preds)
    assert got == {"multi_copy": {"gene": [1, 2], "novel_no_gene": [1, 1]},
                   "single_copy": {"gene": [1, 1], "novel_no_gene": [0, 1]}}
    assert score_outcomes(rows, preds, n_boot=20, seed=0)["copies"] == got
    assert copy_scores(ROWS, PREDS) is None and "copies" not in score_outcomes(ROWS, PREDS, n_boot=20, seed=0)
    section = _section()
    assert copy_rows(section) == [] and "reference copies" not in _out_of_reference_html(section)
    section["systems"]["model"]["copies"] = got
    section["validation_model"] = {**section["systems"]["model"]}
    assert missing_keys(section, OutOfReference) == []
    assert copy_rows(section) == [("model", "1/2 = 50.0 %", "1/1 = 100.0 %", "1/1 = 100.0 %", "0/1 = 0.0 %"),
                                  ("model (validation rows)", "1/2 = 50.0 %", "1/1 = 100.0 %",
                                   "1/1 = 100.0 %", "0/1 = 0.0 %")]
    page = _out_of_reference_html(section)
    assert "<h3>Genic and novel rows by their window's reference copies</h3>" in page
    assert all(h in page for h in COPY_HEAD[1:]) and "&ge; 3 loci" in page


def test_per_unit_counts_each_folds_genes_and_novel_rows():
    """`per_unit`: per unit, its genic rows answered with their gene and its novel rows answered
    with no gene; negatives and rows of no unit are left out; the table shows them per unit only
    where there are several units."""
    from llamadna.evaluate.out_of_reference import _genic, _negative, per_unit, per_unit_rows
    from llamadna.evaluate.report import _out_of_reference_html

    rows = (_genic([_genic_row("A", 0), _genic_row("B", 1)], "gene", "split_gene")
            + _genic([_genic_row("A", 0)], "novel", "split_gene")
            + _genic([_genic_row("V", 9)], "gene", "split_gene_fold1")
            + _genic([_genic_row("V", 9)], "novel", "split_gene_fold1")
            + _negative([_neg("random", 0)], "test"))
    preds = [_pred("gene", "A", 0.9), _pred("gene", "X", 0.9), _pred("similar"),  # split_gene
             _pred("gene", "V", 0.9), _pred("gene", "V", 0.9), _pred("gene", "R", 0.9)]  # fold 1, a negative
    got = per_unit(rows, preds)
    assert got == {"split_gene": {"gene": [1, 2], "novel_no_gene": [1, 1]},
                   "split_gene_fold1": {"gene": [1, 1], "novel_no_gene": [0, 1]}}
    section = {**_section(), "units": ["split_gene", "split_gene_fold1"], "per_unit": {"model": got}}
    assert missing_keys(section, OutOfReference) == []
    head, table = per_unit_rows(section)
    assert head == ["unit", "model: gene", "model: novel: no gene"]
    assert table == [("split_gene", "1/2 = 50.0 %", "1/1 = 100.0 %"), ("split_gene_fold1", "1/1 = 100.0 %",
                                                                         "0/1 = 0.0 %")]
    assert "Per unit: genic rows answered with their gene" in _out_of_reference_html(section)
    one = {**section, "units": ["split_gene"]}
    assert per_unit_rows(one) == ([], []) and "Per unit" not in _out_of_reference_html(one)
