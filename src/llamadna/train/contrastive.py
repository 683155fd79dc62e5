"""Mutation-robust sequence embeddings: a contrastive stage for the DNA encoder (DNABERT-S's idea
at toy scale), run after masked-LM or on an existing encoder.

Each step draws `contrastive_batch` reference windows; a window's positive is a diverged copy of
it (`data.mutate.mutate`: substitutions plus indels at a rate drawn uniformly from
[0, contrastive_max_rate]), read on the reverse strand half of the time; the batch's other
windows are the negatives. Embeddings are those retrieval uses (`model.modeling.mean_pool_body`,
L2-normalised); the loss is the symmetric InfoNCE with temperature `contrastive_temperature`.
Seeded and deterministic on the CPU.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import BertModel, PreTrainedTokenizerFast

from llamadna.data.mutate import mutate
from llamadna.model.modeling import mean_pool_body
from llamadna.progress import Progress, no_progress
from llamadna.train.config import PretrainConfig

log = logging.getLogger(__name__)

_COMPLEMENT = bytes.maketrans(b"ACGTN", b"TGCAN")


def reverse_complement(seq: str) -> str:
    return seq.encode("ascii").translate(_COMPLEMENT)[::-1].decode("ascii")


def embed_batch(bert: BertModel, tokenizer: PreTrainedTokenizerFast, seqs: Sequence[str],
                max_len: int) -> torch.Tensor:
    """(B, H) unit embeddings, one chunk per sequence (cut to `max_len` tokens)."""
    encs = tokenizer.backend_tokenizer.encode_batch(list(seqs), add_special_tokens=False)
    body = max_len - 2
    rows = [[tokenizer.cls_token_id, *e.ids[:body], tokenizer.sep_token_id] for e in encs]
    width = max(map(len, rows))
    ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    states = bert(input_ids=ids, attention_mask=mask).last_hidden_state
    summed, n = mean_pool_body(states, mask)
    return F.normalize(summed / n.clamp(min=1).unsqueeze(-1), dim=-1)


def optimizer_step(loss: torch.Tensor, model: torch.nn.Module, opt: torch.optim.Optimizer, what: str,
                   step: int) -> float:
    """Backward, clip the gradient norm to 1, step; a non-finite loss stops with what to change.
    Returns the loss (rounded to 5 decimals, for the loss curve)."""
    if not math.isfinite(loss.item()):
        raise FloatingPointError(f"{what} loss is {loss.item()} at step {step + 1}; lower the learning rate")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return round(loss.item(), 5)


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
    opt = torch.optim.AdamW(bert.parameters(), lr=cfg.contrastive_lr, weight_decay=cfg.weight_decay)
    losses: list[float] = []
    every = max(1, steps // 10)
    for step in range(steps):
        idx = rng.choice(len(windows), batch, replace=False)
        anchors = [windows[i] for i in idx]
        positives = [mutate(w, float(rng.uniform(0, cfg.contrastive_max_rate)), rng) for w in anchors]
        positives = [reverse_complement(p) if rng.random() < 0.5 else p for p in positives]
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
