"""Sequence embeddings for retrieval: the DNA encoder's last hidden states, mean-pooled over
every token of the sequence (longer sequences in chunks of the encoder's length, pooled together),
L2-normalised, so that an inner product is a cosine similarity.

With `keep_states`, a call also keeps each sequence's chunks (token ids, last states) in `states`,
until the next call: a model whose frozen encoder is this one projects them instead of running
the encoder again (`annotate.shared_states`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from llamadna.model.modeling import dna_token_chunks, encoder_states, mean_pool_body
from llamadna.progress import Progress, no_progress
from llamadna.retrieve.config import EMBED_BATCH


class SequenceEmbedder:
    """`SequenceEmbedder(encoder_dir)(sequences) -> (N, H) float32`, unit rows (a sequence with
    no token, e.g. empty, gets a zero row)."""

    def __init__(self, encoder_dir: str | Path, device: str | torch.device = "cpu",
                 batch_size: int = EMBED_BATCH) -> None:
        from llamadna.model.modeling import load_dna_encoder
        from llamadna.model.safe_loading import load_tokenizer

        self.path = Path(encoder_dir)
        self.encoder = load_dna_encoder(self.path).to(device).eval()
        self.tokenizer = load_tokenizer(self.path)  # never code from the directory
        self.device = torch.device(device)
        self.batch_size = batch_size
        limit = getattr(self.encoder.config, "max_position_embeddings", 512)
        self.chunk = min(int(limit), 512) - 2  # tokens per chunk, [CLS] and [SEP] added
        self.keep_states = False
        # the last call's sequences (upper case) -> their chunks' (token ids, last states (L, H))
        self.states: dict[str, list[tuple[list[int], torch.Tensor]]] = {}

    @property
    def dim(self) -> int:
        return int(self.encoder.config.hidden_size)

    @torch.inference_mode()
    def __call__(self, sequences: Sequence[str], progress: Progress = no_progress,
                 desc: str = "embedding") -> np.ndarray:
        chunks, owner = dna_token_chunks(self.tokenizer, list(sequences), self.chunk)
        owner = np.asarray(owner, dtype=np.int64)
        sums = np.zeros((len(sequences), self.dim), dtype=np.float64)
        counts = np.zeros(len(sequences), dtype=np.int64)
        kept: list[torch.Tensor | None] = [None] * len(chunks)
        order = np.argsort([len(c) for c in chunks], kind="stable")  # similar lengths batch together
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            states, mask = encoder_states(self.encoder, [chunks[i] for i in idx], self.tokenizer.pad_token_id,
                                          self.device)
            summed, n = mean_pool_body(states, mask)
            np.add.at(sums, owner[idx], summed.cpu().numpy())
            np.add.at(counts, owner[idx], n.cpu().numpy())
            if self.keep_states:
                for r, i in enumerate(idx.tolist()):
                    kept[i] = states[r, : len(chunks[i])]
            progress(desc, min(b + self.batch_size, len(order)), len(order))
        self.states = {}
        if self.keep_states:
            per: list[list] = [[] for _ in sequences]
            for i, c in enumerate(chunks):  # chunks are in sequence order
                per[owner[i]].append((c, kept[i]))
            self.states = {s.upper(): p for s, p in zip(sequences, per) if p}
        vec = sums / np.maximum(counts, 1)[:, None]
        norm = np.linalg.norm(vec, axis=1, keepdims=True)
        return (vec / np.where(norm > 0, norm, 1)).astype(np.float32)
