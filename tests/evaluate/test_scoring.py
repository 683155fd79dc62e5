"""Scores with cluster-bootstrap intervals, on prediction tables whose values are known."""

from __future__ import annotations

import math

import numpy as np

from llamadna.data.template import SENTENCE_FIELDS, annotation_sentence
from llamadna.evaluate.scoring import SCORED_STATISTICS, confidence_pairs, field_scores, scored


def _sentence(gene: str, source: str = "ClinVar") -> str:
    return annotation_sentence("chr17", gene, "a gene", "protein coding", "not specified", source)


REFS = [_sentence("BRCA1"), _sentence("BRCA1"), _sentence("TP53"), _sentence("TP53")]
CLUSTERS = np.array(["BRCA1", "BRCA1", "TP53", "TP53"])


def test_field_scores_of_known_hits():
    # the gene of TP53's rows named wrong; the source of the last row wrong
    preds = [{"annotation": _sentence(g), "source": s}
             for g, s in (("BRCA1", "ClinVar"), ("BRCA1", "ClinVar"), ("EGFR", "ClinVar"), ("EGFR", "dbSNP"))]
    got = field_scores(preds, REFS, ["ClinVar"] * 4, CLUSTERS, n_boot=200, seed=0)
    assert got["gene"]["value"] == 0.5 and got["accuracy"]["value"] == 0.75
    assert all(got[f]["value"] == 1.0 for f in SENTENCE_FIELDS if f != "gene")
    assert math.isclose(got["field_mean"]["value"], (len(SENTENCE_FIELDS) - 0.5) / len(SENTENCE_FIELDS))
    # whole genes resampled: the gene accuracy of a resample is 1, 0.5 or 0
    assert got["gene"]["interval"] == [0.0, 1.0] and got["chrom"]["interval"] == [1.0, 1.0]
    assert got == field_scores(preds, REFS, ["ClinVar"] * 4, CLUSTERS, n_boot=200, seed=0)  # seeded


def test_scored_of_a_perfect_and_a_wrong_table():
    labels = ["ClinVar"] * 4
    perfect = {"prediction": REFS, "reference": REFS, "label_true": labels, "label_pred": labels,
               "label_from_text": labels, "gene_confidence": [None] * 4}
    m = scored(perfect, CLUSTERS, n_boot=50, seed=0, semantic=False)
    assert (m["accuracy"], m["field_mean"], m["n"]) == (1.0, 1.0, 4)
    assert list(m["intervals"]) == list(SCORED_STATISTICS) and m["intervals"]["field_gene"] == [1.0, 1.0]
    assert "gene_confidence_auroc" not in m  # no confidence given
    wrong = {**perfect, "prediction": [_sentence("EGFR", "dbSNP")] * 4, "label_pred": ["dbSNP"] * 4,
             "gene_confidence": [0.9, 0.8, 0.7, 0.6]}
    m = scored(wrong, CLUSTERS, n_boot=50, seed=0, semantic=False)
    assert m["accuracy"] == 0.0 and m["field_accuracy"]["gene"] == 0.0 and m["intervals"]["accuracy"] == [0.0, 0.0]
    assert math.isclose(m["field_mean"], (len(SENTENCE_FIELDS) - 2) / len(SENTENCE_FIELDS))  # gene, source
    assert "gene_confidence_auroc" in m


def test_confidence_pairs():
    preds = [_sentence("BRCA1"), _sentence("EGFR"), "not a sentence", _sentence("TP53")]
    pairs = confidence_pairs(preds, REFS, [0.9, 0.2, None, 0.5])
    assert [p[1] for p in pairs] == [0.9, 0.2, None, 0.5]
    assert [p[0] for p in pairs][:2] == [1.0, 0.0] and pairs[3][0] == 1.0
