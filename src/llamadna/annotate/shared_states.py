"""The retriever's DNA encoder states, projected by the model instead of a second encoder pass.

A retrieval model's frozen DNA encoder is, as `llamadna train` leaves it, the encoder its index
was built with, and every query goes through it twice: in the retriever (`SequenceEmbedder`, for
FAISS) and in the model (`get_dna_features`). Where the retriever's embedder is this encoder
(`same_encoder`: the same class and settings, every tensor equal, float32), the Annotator asks
it to keep the states of the batch it embeds, and the model projects those. They differ from the
model's own pass only in float rounding (other batches, other padding). Anything else (another
encoder, an encoder trained or adapted with the LLM, half precision, a query the retriever did
not embed) leaves the model to run its encoder as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# settings of a config that name or date it rather than shape what it computes
_NOT_COMPUTED = {"_name_or_path", "transformers_version", "architectures", "dtype", "torch_dtype"}


def same_encoder(mine: nn.Module, other: nn.Module) -> bool:
    """Whether `other` computes what `mine` does: the same class and config (but its name and
    dtype), the same state-dict keys, and every tensor equal, floating ones in float32."""
    if type(mine) is not type(other):
        return False
    a, b = (m.config.to_dict() if hasattr(m, "config") else {} for m in (mine, other))
    if {k: v for k, v in a.items() if k not in _NOT_COMPUTED} != {k: v for k, v in b.items()
                                                                  if k not in _NOT_COMPUTED}:
        return False
    sa, sb = mine.state_dict(), other.state_dict()
    if sa.keys() != sb.keys():
        return False
    for k, x in sa.items():
        y = sb[k]
        if x.dtype != y.dtype or x.shape != y.shape or (x.is_floating_point() and x.dtype != torch.float32):
            return False
        if not torch.equal(x, y.to(x.device)):
            return False
    return True


class EncoderSharing:
    """One model encoder's sharing with the retrievers it is given: whether a retriever's embedder
    runs this encoder (checked once per embedder), and a retrieval that returns its states."""

    def __init__(self, encoder: nn.Module | None):
        self.encoder = encoder
        self._seen: tuple[object, bool] = (None, False)

    def embedder_of(self, retriever):
        """The retriever's embedder when it runs this encoder, else None."""
        emb = getattr(retriever, "embedder", None)
        if emb is None or self.encoder is None or not hasattr(emb, "keep_states"):
            return None
        if self._seen[0] is not emb:
            self._seen = (emb, same_encoder(self.encoder, emb.encoder))
        return emb if self._seen[1] else None

    def retrieve(self, retriever, sequences: Sequence[str]) -> tuple[list, dict]:
        """`retriever(sequences)` and the states its embedder computed on the way (sequence in
        upper case -> its chunks' (token ids, states)); {} where the embedder is not this encoder.
        The embedder keeps states for this call only."""
        emb = self.embedder_of(retriever)
        if emb is None:
            return retriever(sequences), {}
        emb.keep_states = True
        try:
            found = retriever(sequences)
            states = emb.states
        finally:
            emb.keep_states, emb.states = False, {}
        return found, states


def stack_states(rows: Sequence[dict], states: dict, dna_input_ids: torch.Tensor,
                 dna_attention_mask: torch.Tensor) -> torch.Tensor | None:
    """The rows' DNA chunks' states (C, L, H), laid out as the processor's `dna_input_ids` (C, L)
    (padding zero); None unless every row's sequence is in `states` with exactly those chunks'
    token ids."""
    kept = []
    for row in rows:
        got = states.get(str(row["Sequence"]).upper())
        if got is None:
            return None
        kept += got
    if not kept or len(kept) != len(dna_input_ids):
        return None
    out = torch.zeros((*dna_input_ids.shape, kept[0][1].shape[-1]), dtype=kept[0][1].dtype)
    for k, (chunk, st) in enumerate(kept):
        n = len(chunk)
        if int(dna_attention_mask[k].sum()) != n or dna_input_ids[k, :n].tolist() != list(chunk):
            return None
        out[k, :n] = st.to(out.device)
    return out
