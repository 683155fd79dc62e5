"""The model projects the retriever's encoder states where the retriever's embedder is its own
encoder (`annotate.shared_states`), and runs its encoder otherwise: the same predictions."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace

import pytest
import torch

from llamadna.annotate import Annotator
from llamadna.annotate.shared_states import same_encoder, stack_states
from llamadna.retrieve.embed import SequenceEmbedder
from tests.test_annotate import MAX_NEW, SEQS, _retrieval_model, _rows

pytestmark = pytest.mark.usefixtures("one_thread")

GENE = {"gene": "GENE7", "chrom": "chr1", "description": "gene 7", "transcript_type": "protein coding",
        "phenotype": "not specified", "source": "ClinVar", "score": 1.9, "via": "minimap2",
        "identity": 0.9, "aligned_fraction": 1.0, "loci": 1, "cosine": None}


class _Retriever:
    """A retriever stand-in: embeds the queries it is asked to (all but those in `skip`, as the
    real one skips a query with too few bases) and returns fixed candidates."""

    def __init__(self, embedder: SequenceEmbedder, skip: tuple[str, ...] = ()):
        self.embedder, self.skip = embedder, skip

    def __call__(self, sequences):
        self.embedder([s for s in sequences if s not in self.skip])
        return [[GENE] if i % 2 else [] for i, _ in enumerate(sequences)]


def _embedder_of(model, processor, path) -> SequenceEmbedder:
    model.dna_encoder.save_pretrained(path)
    processor.dna_tokenizer.save_pretrained(path)
    return SequenceEmbedder(path)


@contextmanager
def _encoder_calls(model):
    """A counter of the model's own encoder passes while inside."""
    calls = [0]
    hook = model.dna_encoder.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    try:
        yield calls
    finally:
        hook.remove()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    m = _retrieval_model(max_new_tokens=MAX_NEW, decoding="greedy", withhold_below=None)
    return m, _embedder_of(m.model, m.processor, tmp_path_factory.mktemp("encoder"))


def test_the_model_projects_the_retrievers_states_and_predicts_the_same(shared):
    """Catches states laid out on the wrong chunks or rows (other predictions), the model's
    encoder still run (no time saved), and states kept past the call."""
    m, emb = shared
    rows = _rows(SEQS[:5] * 2)
    with _encoder_calls(m.model) as calls:
        got = Annotator(m.model, m.processor, _Retriever(emb), config=m.config).predict_batch(rows)
        assert calls[0] == 0
        assert emb.keep_states is False and emb.states == {}
        own = Annotator(m.model, m.processor, _Retriever(emb),
                        config=replace(m.config, share_encoder=False)).predict_batch(rows)
        assert calls[0] > 0
    assert [g["evidence_gene"] for g in got] == [None, "GENE7"] * 5
    for x, y in zip(got, own):
        assert (x["annotation"], x["outcome"], x["gene"], x["source"]) == (y["annotation"], y["outcome"],
                                                                           y["gene"], y["source"])
        assert x["confidence"] == pytest.approx(y["confidence"], abs=1e-5)
        assert x["source_prob"] == pytest.approx(y["source_prob"], abs=1e-5)


def test_shared_features_are_the_models_own(shared):
    """The features the model gets from the retriever's states are those of its own encoder pass."""
    m, emb = shared
    rows = [{**r, "evidence": []} for r in _rows(SEQS)]
    emb.keep_states = True
    try:
        emb([r["Sequence"] for r in rows])
        states = emb.states
    finally:
        emb.keep_states = False
    b = m.processor(rows, padding_side="left")
    st = stack_states(rows, states, b["dna_input_ids"], b["dna_attention_mask"])
    assert st is not None and st.shape[:2] == b["dna_input_ids"].shape
    with torch.inference_mode():
        mine = m.model.get_dna_features(b["dna_input_ids"], b["dna_attention_mask"])
        theirs = m.model.get_dna_features(b["dna_input_ids"], b["dna_attention_mask"], st)
    torch.testing.assert_close(theirs, mine, atol=1e-5, rtol=0)
    # a row's sequence missing, or chunks cut otherwise: not stacked
    assert stack_states(rows, {k: v for k, v in states.items() if k != SEQS[1]}, b["dna_input_ids"],
                        b["dna_attention_mask"]) is None
    other = {**states, SEQS[0]: [(c[:1] + c[2:], s) for c, s in states[SEQS[0]]]}  # a token short
    assert stack_states(rows, other, b["dna_input_ids"], b["dna_attention_mask"]) is None


def test_another_encoder_or_an_unembedded_query_runs_the_models_own(shared, tmp_path):
    """Catches states of another encoder (other weights, half precision) taken for the model's,
    and a pass whose query the retriever never embedded."""
    m, emb = shared
    assert same_encoder(m.model.dna_encoder, emb.encoder)
    other = _embedder_of(m.model, m.processor, tmp_path / "other")
    with torch.no_grad():
        next(other.encoder.parameters())[0, 0] += 1e-3
    assert not same_encoder(m.model.dna_encoder, other.encoder)
    half = _embedder_of(m.model, m.processor, tmp_path / "half")
    half.encoder.to(torch.bfloat16)
    assert not same_encoder(m.model.dna_encoder, half.encoder)
    rows = _rows(SEQS[:4])
    for retriever, runs in ((_Retriever(other), 1), (_Retriever(emb, skip=(SEQS[2],)), 1),
                            (_Retriever(emb), 0)):
        with _encoder_calls(m.model) as calls:
            Annotator(m.model, m.processor, retriever, config=m.config).predict_batch(rows)
        assert calls[0] == runs
