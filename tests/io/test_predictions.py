"""The prediction writers on hand-made rows: every column in TSV/JSONL, GFF3 attributes, and rows
of outcomes other than gene (no gene, no source)."""

from __future__ import annotations

import csv
import io
import json
from urllib.parse import unquote

import pytest

from llamadna.constants import NONE_SENTENCE, OUTPUT_COLUMNS, PREDICTION_COLUMNS
from llamadna.io.predictions import prediction_writer

GENE_ROW = dict.fromkeys(OUTPUT_COLUMNS) | dict(
    id="r1:1-512", record="r1", start=1, end=512, outcome="gene",
    annotation="This sequence is part of chr21 chromosome part of APP gene. ...", source="ClinVar",
    source_prob=0.75, source_from_text="ClinVar", chrom="chr21", gene="APP",
    description="amyloid beta precursor protein", confidence=-0.125, outcome_confidence=0.875,
    gene_confidence=0.875, evidence_gene="APP", evidence_score=1.9375, evidence_via="both",
    evidence_identity=0.96875, evidence_aligned_fraction=1.0, evidence_loci=1,
)
NONE_ROW = dict.fromkeys(OUTPUT_COLUMNS) | dict(
    id="r2", record="r2", start=1, end=300, outcome="none", annotation=NONE_SENTENCE,
    gene="", confidence=-0.5, outcome_confidence=0.9375, evidence_loci=0,
)
REPEAT_ROW = dict(NONE_ROW, id="r3", record="r3", outcome="repeat", gene=None,
                  annotation="This sequence is a repeat: it matches 5 reference loci, among them "
                             "A, B and C; no single gene can be named.",
                  evidence_identity=0.9, evidence_aligned_fraction=0.5, evidence_loci=5)
SKIPPED_ROW = dict.fromkeys(OUTPUT_COLUMNS) | dict(id="r4", record="r4", start=1, end=10,
                                                   skipped="N only")
ROWS = [GENE_ROW, NONE_ROW, REPEAT_ROW, SKIPPED_ROW]


def _write(fmt: str, rows=ROWS) -> str:
    fh = io.StringIO()
    w = prediction_writer(fmt, fh)
    for r in rows:
        w.write(r)
    return fh.getvalue()


def test_the_outcome_and_evidence_columns_are_output_columns():
    new = ["outcome", "outcome_confidence", "evidence_identity", "evidence_aligned_fraction",
           "evidence_loci"]
    assert all(c in PREDICTION_COLUMNS and c in OUTPUT_COLUMNS for c in new)
    cols = PREDICTION_COLUMNS
    assert cols.index("outcome") == cols.index("annotation") + 1
    assert cols.index("outcome_confidence") == cols.index("confidence") + 1
    assert cols.index("gene_confidence") == cols.index("outcome_confidence") + 1
    assert cols[cols.index("evidence_via") + 1:][:3] == new[2:]


def test_tsv_has_every_column_and_empty_cells_for_none():
    rows = list(csv.reader(io.StringIO(_write(".tsv")), delimiter="\t"))
    assert rows[0] == OUTPUT_COLUMNS and len(rows) == 5
    got = [dict(zip(rows[0], r)) for r in rows[1:]]
    assert (got[0]["outcome"], got[0]["outcome_confidence"], got[0]["evidence_identity"],
            got[0]["evidence_aligned_fraction"], got[0]["evidence_loci"]) == (
        "gene", "0.875", "0.96875", "1.0", "1")
    assert (got[1]["outcome"], got[1]["gene"], got[1]["source"], got[1]["source_prob"]) == (
        "none", "", "", "")
    assert got[2]["outcome"] == "repeat" and got[2]["evidence_loci"] == "5"
    assert got[3]["outcome"] == "" and got[3]["skipped"] == "N only"


def test_jsonl_keeps_types_and_nulls():
    got = [json.loads(x) for x in _write(".jsonl").splitlines()]
    assert [list(g) for g in got] == [OUTPUT_COLUMNS] * 4
    assert got[0]["outcome"] == "gene" and got[0]["evidence_loci"] == 1
    assert got[0]["evidence_aligned_fraction"] == 1.0 and got[0]["outcome_confidence"] == 0.875
    assert got[2] == {c: REPEAT_ROW[c] for c in OUTPUT_COLUMNS}
    assert got[2]["source"] is None and got[2]["gene"] is None


def _gff3(text: str) -> list[dict]:
    lines = text.splitlines()
    assert lines[0] == "##gff-version 3"
    out = []
    for line in lines[1:]:
        cols = line.split("\t")
        assert len(cols) == 9 and all(cols), line  # no empty column: a valid feature line
        assert cols[1:3] == ["llamadna", "region"] and int(cols[3]) <= int(cols[4])
        pairs = [kv.split("=") for kv in cols[8].split(";")]
        assert all(len(p) == 2 and p[0] and p[1] for p in pairs), cols[8]  # no key without value
        out.append({"score": cols[5], **{k: unquote(v) for k, v in pairs}})
    return out


def test_gff3_gives_the_outcome_and_only_the_attributes_that_apply():
    gene, none, repeat, skipped = _gff3(_write(".gff3"))
    assert gene == {"score": "-0.125", "ID": "r1:1-512", "Name": "APP", "outcome": "gene",
                    "Note": GENE_ROW["annotation"], "source": "ClinVar", "source_prob": "0.75",
                    "outcome_confidence": "0.875"}
    # no gene claimed (empty or None): no Name, no source
    assert none == {"score": "-0.5", "ID": "r2", "outcome": "none", "Note": NONE_SENTENCE,
                    "outcome_confidence": "0.9375"}
    assert repeat["outcome"] == "repeat" and not {"Name", "source", "source_prob"} & set(repeat)
    assert unquote(repeat["Note"]) == REPEAT_ROW["annotation"]
    assert skipped == {"score": ".", "ID": "r4", "skipped": "N only"}


def test_gff3_escapes_the_repeat_sentence():
    text = _write(".gff3", [REPEAT_ROW])
    assert "reference loci%2C among them A%2C B and C%3B no single" in text


@pytest.mark.parametrize("missing", ["outcome", "evidence_loci"])
def test_a_row_without_a_new_column_is_an_error_not_a_silent_blank(missing):
    row = {k: v for k, v in GENE_ROW.items() if k != missing}
    with pytest.raises(KeyError):
        _write(".tsv", [row])
