"""Mutation-robust sequence embeddings: a contrastive stage for the DNA encoder (DNABERT-S's idea
at toy scale), run after masked-LM or on an existing encoder.

Each step draws `contrastive_batch` reference windows; a window's positive is a diverged copy of
it (`data.mutate.mutate`: substitutions plus indels at a rate drawn uniformly from
[0, contrastive_max_rate]), read on the reverse strand half of the time; the batch's other
windows are the negatives. Embeddings are those retrieval uses (`model.modeling.encode_chunks`,
L2-normalised); the loss is the symmetric InfoNCE with temperature `contrastive_temperature`.
Seeded and deterministic on the CPU.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import mappy
import numpy as np
import torch
import torch.nn.functional as F
from transformers import BertModel, PreTrainedTokenizerFast

from llamadna.data.mutate import mutate
from llamadna.model.modeling import dna_token_chunks, encode_chunks
from llamadna.progress import Progress, no_progress
from llamadna.train.config import PretrainConfig
from llamadna.train.optim import adamw_with_schedule, optimizer_step

log = logging.getLogger(__name__)


def embed_batch(bert: BertModel, tokenizer: PreTrainedTokenizerFast, seqs: Sequence[str],
                max_len: int) -> torch.Tensor:
    """(B, H) unit embeddings, pooled over chunks of `max_len` tokens as retrieval pools them
    (`retrieve.embed`), with gradients."""
    chunks, owner = dna_token_chunks(tokenizer, list(seqs), max_len - 2)
    summed, n = encode_chunks(bert, chunks, tokenizer.pad_token_id, bert.device)
    owner = torch.as_tensor(owner, device=summed.device)
    sums = torch.zeros(len(seqs), summed.shape[1], device=summed.device).index_add(0, owner, summed)
    counts = torch.zeros(len(seqs), device=summed.device).index_add(0, owner, n.to(summed.dtype))
    return F.normalize(sums / counts.clamp(min=1).unsqueeze(-1), dim=-1)


def contrastive_stage(bert: BertModel, tokenizer: PreTrainedTokenizerFast, windows: Sequence[str],
                      cfg: PretrainConfig, progress: Progress = no_progress) -> dict:
    """Train `bert` in place; returns {contrastive_steps, contrastive_initial_loss,
    contrastive_final_loss, contrastive_chance_loss (log of the batch: no better than chance),
    contrastive_seconds}."""
    t0 = time.perf_counter()
    steps, batch = cfg.contrastive_steps, min(cfg.contrastive_batch, len(windows))
    rng = np.random.default_rng([cfg.seed, 17])
    torch.manual_seed(cfg.seed + 17)
    bert.train()
    opt, _ = adamw_with_schedule(bert.parameters(), cfg.contrastive_lr, weight_decay=cfg.weight_decay)
    losses: list[float] = []
    every = max(1, steps // 10)
    for step in range(steps):
        idx = rng.choice(len(windows), batch, replace=False)
        anchors = [windows[i] for i in idx]
        positives = [mutate(w, float(rng.uniform(0, cfg.contrastive_max_rate)), rng) for w in anchors]
        positives = [mappy.revcomp(p) if rng.random() < 0.5 else p for p in positives]
        za = embed_batch(bert, tokenizer, anchors, cfg.max_position_embeddings)
        zb = embed_batch(bert, tokenizer, positives, cfg.max_position_embeddings)
        logits = za @ zb.T / cfg.contrastive_temperature  # (B, B): the diagonal are the pairs
        target = torch.arange(batch)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        losses.append(optimizer_step(loss, bert, opt, "contrastive", step))
        progress(f"contrastive training: loss {losses[-1]:.3f}", step + 1, steps)
        if (step + 1) % every == 0 or step + 1 == steps:
            log.info("contrastive step %d/%d: loss %.4f", step + 1, steps, float(np.mean(losses[-every:])))
    bert.eval()
    k = min(10, max(1, steps // 4))
    return {"contrastive_steps": steps, "contrastive_initial_loss": round(float(np.mean(losses[:k])), 5),
            "contrastive_final_loss": round(float(np.mean(losses[-k:])), 5),
            "contrastive_chance_loss": round(math.log(batch), 5), "contrastive_loss_curve": losses,
            "contrastive_seconds": round(time.perf_counter() - t0, 2)}
