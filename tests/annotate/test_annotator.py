"""The Annotator: a pure model beside its processor, retriever, calibration and inference config."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from llamadna.annotate import Annotator, InferenceConfig
from llamadna.constants import DEFAULT_BATCH_SIZE, DEFAULT_DECODING, DEFAULT_MAX_NEW_TOKENS
from llamadna.errors import ConfigError, InputError
from llamadna.model.calibration import FEATURES, OutcomeCalibration
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
    OutcomeCalibration([0.1] * len(FEATURES), -1.0, rows=10, right=4).save(model_dir)
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
    assert a.calibration == OutcomeCalibration.load(model_dir) and a.calibration.rows == 10
    assert a.retriever is None and a.use_index() is None
    assert a.config == InferenceConfig(DEFAULT_BATCH_SIZE, DEFAULT_MAX_NEW_TOKENS, DEFAULT_DECODING, None)
    cfg = InferenceConfig(batch_size=3, max_new_tokens=2, decoding="greedy")
    assert Annotator.from_pretrained(model_dir, device="cpu", config=cfg).config is cfg
    # a gene-only calibration from before issue 29: refused, with the command that refits it;
    # loaded without it (what `llamadna calibrate` annotates with), the model is the same
    (model_dir / "calibration.json").write_text(json.dumps(
        {"weights": [0.5, 0.1, 1.0, 0.2, 0.3], "bias": -1.0, "rows": 10, "right": 4}))
    with pytest.raises(InputError, match="calibration.json: .*refit it with `llamadna calibrate "):
        Annotator.from_pretrained(model_dir, device="cpu")
    bare = Annotator.from_pretrained(model_dir, device="cpu", calibrated=False)
    assert bare.calibration is None and bare.model.state_dict().keys() == saved.keys()


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


def test_postprocess_columns_follow_the_outcome(model_dir):
    """Per outcome: gene fields and gene_confidence only for a gene, source for a gene or an
    undecided sentence; chrom for gene,
    intergenic and similar; the calibrated outcome confidence for every row; the top candidate's
    evidence columns. A model without retrieval reads its outcome from its text too."""
    from llamadna.annotate.annotator import _Generated
    from llamadna.constants import NONE_SENTENCE, PREDICTION_COLUMNS
    from llamadna.data.template import annotation_sentence, intergenic_sentence, similar_sentence
    from llamadna.model.calibration import outcome_features

    plain = Annotator.from_pretrained(model_dir, device="cpu")
    base = plain.processor
    retrieval = LlamaDNAProcessor(base.dna_tokenizer, base.text_tokenizer, retrieval=True, dna_chunk_tokens=8)
    top = {"kind": "gene", "gene": "TUFT1", "chrom": "chr1", "score": 1.9, "via": "both", "identity": 0.95,
           "aligned_fraction": 0.9, "loci": 2}
    ev = [top, {**top, "gene": "OTHER"}]
    X = [outcome_features(o, c, ev) for o, c in (("gene", -0.1), ("none", -2.0))] * 5
    cal = OutcomeCalibration.fit(X, [True, False] * 5)
    a = Annotator(plain.model, retrieval, calibration=cal)
    texts = [annotation_sentence("chr1", "TUFT1", "tuftelin 1", "protein coding", "not specified", "COSMIC"),
             intergenic_sentence("chr21", "APP", 12_000, None, None),
             similar_sentence("chr2", "OTHER", 0.3, 0.8), NONE_SENTENCE, "garbled"]
    n = len(texts)
    rows = [{**r, "evidence": ev} for r in _rows()[:n]]
    rows[3]["evidence"] = []
    gen = _Generated(texts, torch.linspace(-0.1, -0.5, n), torch.tensor([1] * n), torch.full((n,), 0.7))
    preds = a.postprocess(rows, gen)
    assert all(list(p) == PREDICTION_COLUMNS[1:] for p in preds)
    assert [p["outcome"] for p in preds] == ["gene", "intergenic", "similar", "none", None]
    assert [p["chrom"] for p in preds] == ["chr1", "chr21", "chr2", None, None]
    label = plain.model.config.class_labels[1]
    g = preds[0]
    assert (g["gene"], g["description"], g["source"], g["source_prob"], g["source_from_text"]) == (
        "TUFT1", "tuftelin 1", label, pytest.approx(0.7), "COSMIC")
    for p in preds[1:]:
        assert p["gene"] is p["description"] is p["source_from_text"] is None
        assert p["gene_confidence"] is None
    # the source class applies to a gene: none for a stated other outcome, the head's for an
    # undecided sentence
    for p in preds[1:4]:
        assert p["source"] is p["source_prob"] is None
    assert (preds[4]["source"], preds[4]["source_prob"]) == (label, pytest.approx(0.7))
    for p, row in zip(preds, rows):
        want = cal.confidence(p["outcome"], p["confidence"], row["evidence"])
        assert p["outcome_confidence"] == pytest.approx(want) and 0 < want < 1
    assert g["gene_confidence"] == g["outcome_confidence"] > preds[3]["outcome_confidence"]
    assert (g["evidence_gene"], g["evidence_score"], g["evidence_via"], g["evidence_identity"],
            g["evidence_aligned_fraction"], g["evidence_loci"]) == ("TUFT1", 1.9, "both", 0.95, 0.9, 2)
    assert all(preds[3][k] is None for k in ("evidence_gene", "evidence_identity", "evidence_loci"))
    # without retrieval or a calibration: the outcome from the text, no evidence, no calibration
    bare = plain.postprocess(rows, gen)
    assert [p["outcome"] for p in bare] == [p["outcome"] for p in preds] and bare[0]["source"] == label
    assert all(p["outcome_confidence"] is None and p["evidence_gene"] is None for p in bare)


def test_model_loader_sets_the_withholding(model_dir):
    """The CLI's --withhold-below reaches the Annotator each rank loads: 0 turns it off."""
    from llamadna.annotate.distributed import ModelLoader, inference_settings
    from llamadna.constants import WITHHOLD_BELOW

    assert ModelLoader(model_dir).load().config.withhold_below == WITHHOLD_BELOW
    assert WITHHOLD_BELOW == 0.5  # on by default (docs/RESULTS.md, issue 29's tenth pass)
    off = ModelLoader(model_dir, withhold_below=0.0).load()
    assert off.config.withhold_below is None and inference_settings(off)["withhold_below"] is None
    assert ModelLoader(model_dir, withhold_below=0.7).load().config.withhold_below == 0.7
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="--withhold-below"):
            ModelLoader(model_dir, withhold_below=bad)
