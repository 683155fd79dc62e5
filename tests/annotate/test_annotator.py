"""The Annotator: a pure model beside its processor, retriever, calibration and inference config."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from llamadna.annotate import Annotator, InferenceConfig
from llamadna.constants import DEFAULT_BATCH_SIZE, DEFAULT_DECODING, DEFAULT_MAX_NEW_TOKENS
from llamadna.errors import ConfigError, InputError
from llamadna.model.calibration import GeneCalibration
from llamadna.model.loading import load_model
from llamadna.model.modeling import LlamaDNAForAnnotation
from llamadna.model.processing import PROCESSOR_FILE, LlamaDNAProcessor
from tests.test_annotate import SEQS, _rows, save_tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

PIPELINE_PARTS = ("processor", "calibration", "retriever", "prompt_bucket")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"))


def test_from_pretrained_round_trips_every_part(model_dir, tmp_path):
    assert Annotator.from_pretrained(model_dir, device="cpu").calibration is None  # none fitted
    model_dir = shutil.copytree(model_dir, tmp_path / "m")
    GeneCalibration([0.5, 0.1, 1.0, 0.2, 0.3], -1.0, rows=10, right=4).save(model_dir)
    a = Annotator.from_pretrained(model_dir, device="cpu")
    # the model: the saved weights, in eval mode, on the device asked for
    saved = LlamaDNAForAnnotation.from_pretrained(model_dir).state_dict()
    now = a.model.state_dict()
    assert now.keys() == saved.keys() and all(torch.equal(now[k], saved[k]) for k in saved)
    assert not a.model.training and a.model.device.type == "cpu"
    # the processor as saved beside it
    proc = LlamaDNAProcessor.from_pretrained(model_dir)
    assert (a.processor.prompt_mode, a.processor.dna_chunk_tokens, a.processor.retrieval) == (
        proc.prompt_mode, 8, False)
    assert a.processor.text_tokenizer.get_vocab() == proc.text_tokenizer.get_vocab()
    assert a.processor.prompt_text(_rows()[0]) == proc.prompt_text(_rows()[0])
    # the calibration beside it; no retriever (a model without retrieval); the default config
    assert a.calibration == GeneCalibration.load(model_dir) and a.calibration.rows == 10
    assert a.retriever is None and a.use_index() is None
    assert a.config == InferenceConfig(DEFAULT_BATCH_SIZE, DEFAULT_MAX_NEW_TOKENS, DEFAULT_DECODING, None)
    cfg = InferenceConfig(batch_size=3, max_new_tokens=2, decoding="greedy")
    assert Annotator.from_pretrained(model_dir, device="cpu", config=cfg).config is cfg


def test_the_model_holds_no_pipeline_parts(model_dir, tmp_path):
    a = Annotator.from_pretrained(model_dir, device="cpu", config=InferenceConfig(max_new_tokens=2))
    a.annotate_rows(_rows()[:2])  # after use too
    for model in (a.model, load_model(model_dir, device="cpu"), LlamaDNAForAnnotation.from_pretrained(model_dir)):
        assert not [p for p in PIPELINE_PARTS if hasattr(model, p)]
    # the model writes only itself; the processor files are the processor's
    a.model.save_pretrained(tmp_path / "bare")
    assert not (tmp_path / "bare" / PROCESSOR_FILE).exists()
    assert not (tmp_path / "bare" / "text_tokenizer").exists()
    with pytest.raises(InputError, match="no processor"):
        Annotator.from_pretrained(tmp_path / "bare", device="cpu")
    with pytest.raises(ValueError, match="processor"):
        Annotator(a.model, None)


def test_with_config_changes_the_config_only(model_dir, monkeypatch):
    a = Annotator.from_pretrained(model_dir, device="cpu")
    b = a.with_config(batch_size=2, max_new_tokens=3, decoding="greedy")
    assert (b.model, b.processor, b.retriever, b.calibration) == (a.model, a.processor, a.retriever,
                                                                   a.calibration)
    assert b.config == InferenceConfig(batch_size=2, max_new_tokens=3, decoding="greedy")
    assert a.config == InferenceConfig()  # the original keeps its own
    assert b.with_config(prompt_bucket=64).config.prompt_bucket == 64
    # the config's settings take effect: max_new_tokens bounds the generated tokens
    calls = []
    orig = a.model.generate_with_class
    monkeypatch.setattr(a.model, "generate_with_class", lambda **kw: calls.append(
        (kw["input_ids"].shape[0], kw["max_new_tokens"])) or orig(**kw))
    b.annotate_rows(_rows())
    assert calls == [(2, 3), (2, 3), (2, 3), (1, 3)]  # 7 rows, 2 a batch
    for bad, match in (({"batch_size": 0}, "batch_size"), ({"max_new_tokens": 0}, "max_new_tokens"),
                       ({"decoding": "beam"}, "--decoding must be one of")):
        with pytest.raises(ConfigError, match=match):
            a.with_config(**bad)


def test_annotate_streams_in_row_order_with_ids(model_dir):
    a = Annotator.from_pretrained(model_dir, device="cpu", config=InferenceConfig(batch_size=3, max_new_tokens=2))
    rows = _rows()
    rows[2].pop("id")
    got = list(a.annotate(iter(rows)))
    assert [p["id"] for p in got] == ["r0", "r1", 2, "r3", "r4", "r5", "r6"]  # a row without id: its position
    again = a.annotate_rows(rows)
    assert [p["annotation"] for p in again] == [p["annotation"] for p in got]
    assert len(got) == len(SEQS)


def test_use_index_needs_a_retrieval_model_and_an_index_that_exists(model_dir, tmp_path):
    plain = Annotator.from_pretrained(model_dir, device="cpu")
    with pytest.raises(ConfigError, match="trained without reference evidence"):
        plain.use_index(tmp_path / "index")
    base = plain.processor
    retrieval = LlamaDNAProcessor(base.dna_tokenizer, base.text_tokenizer, retrieval=True, dna_chunk_tokens=8)
    with pytest.raises(ConfigError, match="records no reference index"):
        Annotator(plain.model, retrieval).use_index()
    # a model recording an index that is gone: the error names the model's processor file and --index
    d = shutil.copytree(model_dir, tmp_path / "m")
    cfg = json.loads((d / PROCESSOR_FILE).read_text())
    (d / PROCESSOR_FILE).write_text(json.dumps({**cfg, "retrieval": True, "index": "../gone-index"}))
    moved = Annotator.from_pretrained(d, device="cpu")
    assert moved.processor.retrieval and moved.retriever is None  # nothing searched at load
    with pytest.raises(InputError, match="--index DIR"):
        moved.use_index()
    with pytest.raises(InputError, match="--index DIR"):  # the rows' evidence needs the retriever
        moved.annotate_rows(_rows()[:1])
