"""The FASTA pipeline around an Annotator: validation and counts first, tiles, the config used."""

from __future__ import annotations

import json

import pytest

from llamadna.annotate import NO_BASE, Annotator, InferenceConfig, annotate_fasta
from llamadna.annotate import pipeline as pipe
from llamadna.constants import PREDICTION_COLUMNS
from llamadna.errors import ConfigError, InputError
from llamadna.io.fasta import count_fasta, iter_fasta
from tests.annotate.stubs import StubModel, StubProcessor

pytestmark = pytest.mark.usefixtures("one_thread")


def _fake_predict(self, rows):
    self.model.batches.append((len(rows), self.config))
    return [dict.fromkeys(PREDICTION_COLUMNS[1:], None) | {"confidence": -1.0, "source_prob": 0.5,
                                                           "annotation": r["Sequence"][:5]} for r in rows]


@pytest.fixture
def stub(monkeypatch):
    monkeypatch.setattr(Annotator, "predict_batch", _fake_predict)
    model = StubModel()
    model.batches = []
    return Annotator(model, StubProcessor(), config=InferenceConfig(batch_size=2, max_new_tokens=7, decoding="greedy"))


def test_survey_counts_what_the_records_hold_and_validates_first(tmp_path):
    fa = tmp_path / "s.fa"
    fa.write_text(">a\nACGUACGU\n>n\nNNNNNNNNNNNN\n>b\nACGTRYACGTACGTAC\n")
    s = pipe.survey(fa, tile=8)
    assert (s.records, s.tiles) == (3, 1 + 2 + 2) == (count_fasta(fa), sum(
        len(pipe.tiles(len(r.seq), 8)) for r in iter_fasta(fa)))
    assert (s.u_to_t, s.iupac_to_n, s.all_n_tiles, s.first_all_n) == (2, 2, 2, ("n", 3))
    seen = []
    assert count_fasta(fa, each=lambda r: seen.append(r.id)) == 3 and seen == ["a", "n", "b"]
    bad = tmp_path / "bad.fa"
    bad.write_text(">a\nACGT\n>b\nACXT\n")
    with pytest.raises(InputError, match="invalid character 'X'"):
        pipe.survey(bad, tile=8)


def test_tile_rows_name_each_tile_by_its_span():
    class Rec:
        id, sequence = "r", "ACGTACGTAC"

    rows = list(pipe.tile_rows([Rec()], 4))
    assert [(r["id"], r["start"], r["end"], r["Sequence"]) for r in rows] == [
        ("r:1-4", 1, 4, "ACGT"), ("r:5-8", 5, 8, "ACGT"), ("r:7-10", 7, 10, "GTAC")]
    assert [r["id"] for r in pipe.tile_rows([Rec()], 10)] == ["r"]


def test_the_annotators_config_unless_options_are_given(stub, tmp_path):
    fa = tmp_path / "s.fa"
    fa.write_text("".join(f">s{i}\n{'ACGT' * 3}\n" for i in range(5)) + ">gap\nNNNN\n")
    s = annotate_fasta(stub, fa, tmp_path / "p.jsonl")
    assert [n for n, _ in stub.model.batches] == [2, 2, 1]  # the all-N tile never reaches the model
    assert {c for _, c in stub.model.batches} == {stub.config}
    out = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [o["id"] for o in out] == ["s0", "s1", "s2", "s3", "s4", "gap"]
    assert out[-1]["skipped"] == NO_BASE and out[-1]["annotation"] is None
    assert (s["records"], s["tiles"], s["all_n_tiles"]) == (6, 6, 1)
    stub.model.batches.clear()
    annotate_fasta(stub, fa, tmp_path / "q.jsonl", batch_size=4, max_new_tokens=3)
    assert [(n, c.max_new_tokens, c.decoding) for n, c in stub.model.batches] == [(4, 3, "greedy"), (1, 3, "greedy")]
    assert stub.config.batch_size == 2  # the annotator given is not changed
    for bad in ({"batch_size": 0}, {"max_new_tokens": 0}, {"tile": 0}):
        with pytest.raises(ConfigError, match="must be >= 1"):
            annotate_fasta(lambda: pytest.fail("loaded"), fa, tmp_path / "r.jsonl", **bad)
