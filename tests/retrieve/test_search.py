"""`search_fasta`: every FASTA record's candidates, in the format its output names, batch by
batch, written atomically (a stand-in retriever with known answers)."""

from __future__ import annotations

import json

import polars as pl
import pytest

from llamadna.errors import ConfigError, InputError
from llamadna.retrieve.retriever import CANDIDATE_FIELDS
from llamadna.retrieve.search import SEARCH_FORMATS, search_fasta, search_format

RECORDS = [("q0", "ACGTACGTAA"), ("noHit", "NNNNNNNN"), ("q2", "GGGCCCAAATTT"), ("q3", "ACGT"), ("q4", "TTTT")]


def _candidate(gene: str, score: float, identity: float | None) -> dict:
    c = dict.fromkeys(CANDIDATE_FIELDS)
    c.update(gene=gene, gene_id=f"ENSG_{gene}", build="GRCh38", chrom="chr1", description=f"{gene} desc",
             transcript_type="protein coding", phenotype="not specified", source="ClinVar", score=score,
             identity=identity, aligned_fraction=None if identity is None else 1.0,
             cosine=0.123456789, strand=None if identity is None else "+", position=1_234,
             window=7, via="both" if identity is not None else "embed")
    return c


class Canned:
    """A retriever that answers from the sequence: none for all-N, else one candidate per base
    kind (A, C, G, T) present, and records the batches it was called with."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, sequences):
        self.batches.append(list(sequences))
        if self.fail_on in sequences:
            raise RuntimeError("retriever failed")
        return [[_candidate(b, 1.5 - 0.25 * i, 0.987654321 if i == 0 else None)
                 for i, b in enumerate(x for x in "ACGT" if x in s)] for s in sequences]


@pytest.fixture
def fasta(tmp_path):
    p = tmp_path / "q.fa"
    p.write_text("".join(f">{i} a description\n{s}\n" for i, s in RECORDS))
    return p


def test_tsv_one_row_per_candidate_and_rank_0_for_a_query_without_one(fasta, tmp_path):
    r = Canned()
    stats = search_fasta(r, fasta, tmp_path / "hits.tsv", batch_size=2)
    assert r.batches == [["ACGTACGTAA", "NNNNNNNN"], ["GGGCCCAAATTT", "ACGT"], ["TTTT"]]
    assert (stats["queries"], stats["with_candidates"]) == (5, 4)
    lines = (tmp_path / "hits.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["query", "rank", *CANDIDATE_FIELDS]
    t = pl.read_csv(tmp_path / "hits.tsv", separator="\t", infer_schema=False)
    assert t["query"].to_list() == ["q0"] * 4 + ["noHit"] + ["q2"] * 4 + ["q3"] * 4 + ["q4"]
    assert t["rank"].to_list() == ["1", "2", "3", "4", "0", "1", "2", "3", "4", "1", "2", "3", "4", "1"]
    assert t["gene"].to_list()[:5] == ["A", "C", "G", "T", None]  # rank 0: empty fields
    assert t.row(4)[2:] == (None,) * len(CANDIDATE_FIELDS)
    first = dict(zip(t.columns, t.row(0)))
    # floats to 6 significant digits, None as an empty cell, integers as they are
    assert (first["score"], first["identity"], first["cosine"]) == ("1.5", "0.987654", "0.123457")
    assert (first["position"], first["window"], first["aligned_fraction"]) == ("1234", "7", "1")
    assert dict(zip(t.columns, t.row(1)))["identity"] is None


def test_jsonl_one_object_per_query_in_file_order(fasta, tmp_path):
    search_fasta(Canned(), fasta, tmp_path / "hits.jsonl", batch_size=3)
    lines = [json.loads(x) for x in (tmp_path / "hits.jsonl").read_text().splitlines()]
    assert [x["query"] for x in lines] == [i for i, _ in RECORDS]
    assert [x["length"] for x in lines] == [len(s) for _, s in RECORDS]
    assert lines[1]["candidates"] == []
    assert lines[3]["candidates"] == Canned()(["ACGT"])[0]  # the candidates as given, all fields


def test_output_is_written_atomically(fasta, tmp_path):
    out = tmp_path / "hits.tsv"
    out.write_text("an earlier search\n")
    with pytest.raises(RuntimeError, match="retriever failed"):
        search_fasta(Canned(fail_on="TTTT"), fasta, out, batch_size=2)  # fails in the last batch
    assert out.read_text() == "an earlier search\n"  # neither truncated nor half written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hits.tsv", "q.fa"]  # no temporary left


def test_a_bad_fasta_fails_before_any_search(tmp_path):
    bad = tmp_path / "bad.fa"
    bad.write_text(">x\nACGT\n>y\nAC!T\n")
    r = Canned()
    with pytest.raises(InputError, match="bad.fa:4"):
        search_fasta(r, bad, tmp_path / "hits.tsv")
    assert r.batches == [] and not (tmp_path / "hits.tsv").exists()


def test_formats_by_suffix(tmp_path):
    assert SEARCH_FORMATS == (".tsv", ".jsonl")
    assert search_format("x/HITS.TSV") == ".tsv" and search_format("hits.jsonl") == ".jsonl"
    for bad in ("hits.txt", "hits", tmp_path):
        with pytest.raises(ConfigError, match="unknown output format"):
            search_format(bad)
