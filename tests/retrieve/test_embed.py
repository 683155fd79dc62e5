"""Sequence embeddings for retrieval (the workspace's tiny encoder): unit rows, deterministic,
the same whatever the batch, chunked sequences pooled over all their chunks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llamadna.model.modeling import dna_token_chunks, encode_chunks
from llamadna.retrieve.embed import SequenceEmbedder

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def embedder(workspace):
    root, _, _, _ = workspace
    return SequenceEmbedder(root / "encoder")


@pytest.fixture(scope="module")
def seqs(workspace):
    """Windows of different lengths (96 bases and shorter pieces) and one long sequence."""
    _, _, _, index = workspace
    w = index.windows["Sequence"].to_list()
    return [w[0], w[1][:40], w[2], w[3][:13], "".join(w[10:30]), w[4]]


def test_unit_rows_of_the_encoder_width(embedder, seqs):
    v = embedder(seqs)
    assert v.shape == (len(seqs), 32) and v.dtype == np.float32 and embedder.dim == 32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.abs(v[:, None, :] - v[None, :, :]).max(-1)[np.triu_indices(len(seqs), 1)].min() > 1e-4  # all distinct


def test_no_token_gives_a_zero_row(embedder, seqs):
    v = embedder(["", seqs[0]])
    assert not v[0].any()
    np.testing.assert_allclose(v[1], embedder([seqs[0]])[0], atol=1e-6)  # and shifts nothing


def test_deterministic_and_batch_invariant(workspace, embedder, seqs):
    """Catches pooling over padding (a short sequence batched with long ones) and chunks
    summed into the wrong sequence (any order, any batch size)."""
    root, _, _, _ = workspace
    together = embedder(seqs)
    np.testing.assert_array_equal(embedder(seqs), together)
    alone = np.stack([embedder([s])[0] for s in seqs])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    order = [5, 2, 0, 4, 1, 3]
    np.testing.assert_allclose(embedder([seqs[i] for i in order]), together[order], atol=1e-5)
    small = SequenceEmbedder(root / "encoder", batch_size=2)
    np.testing.assert_allclose(small(seqs), together, atol=1e-5)


def test_a_long_sequence_is_the_mean_over_all_its_chunks(embedder, seqs):
    """Catches a sequence cut to its first chunk, or chunk means averaged with equal weights."""
    long = seqs[4]
    chunks, owner = dna_token_chunks(embedder.tokenizer, [long], embedder.chunk)
    assert len(chunks) >= 3 and owner == [0] * len(chunks)
    with torch.inference_mode():
        parts = [encode_chunks(embedder.encoder, [c], embedder.tokenizer.pad_token_id) for c in chunks]
    total = sum(s[0].double().numpy() for s, _ in parts) / sum(int(n[0]) for _, n in parts)
    np.testing.assert_allclose(embedder([long])[0], total / np.linalg.norm(total), atol=1e-5)
    first = parts[0][0][0].double().numpy()
    assert not np.allclose(embedder([long])[0], first / np.linalg.norm(first), atol=1e-3)


def test_kept_states_are_each_sequences_chunks_for_one_call(embedder, seqs):
    """With `keep_states`, a call keeps every sequence's chunks (ids as `dna_token_chunks` cuts
    them, the encoder's states of each chunk alone up to rounding), once per distinct sequence,
    and nothing of an earlier call; without it, nothing. The embeddings are the same either way."""
    from llamadna.model.modeling import encoder_states

    batch = [seqs[4], seqs[1].lower(), seqs[4], ""]
    plain = embedder(batch)
    assert embedder.states == {}
    embedder.keep_states = True
    try:
        embedder([seqs[0]])
        np.testing.assert_array_equal(embedder(batch), plain)
        kept = embedder.states
    finally:
        embedder.keep_states = False
    assert set(kept) == {seqs[4].upper(), seqs[1].upper()}  # not seqs[0] (the call before)
    chunks, _ = dna_token_chunks(embedder.tokenizer, [seqs[4]], embedder.chunk)
    assert [c for c, _ in kept[seqs[4].upper()]] == chunks and len(chunks) >= 3
    with torch.inference_mode():
        for c, st in kept[seqs[4].upper()]:
            alone, _ = encoder_states(embedder.encoder, [c], embedder.tokenizer.pad_token_id)
            assert st.shape == (len(c), 32)
            torch.testing.assert_close(st, alone[0], atol=1e-5, rtol=0)
    embedder(batch)
    assert embedder.states == {}
