"""A copy head (pointer-generator, See et al. 2017) for a small LLM that must write what the
prompt's reference evidence holds: gene names it never saw in training.

At every position t the next-token distribution mixes the LM's own with one that copies a prompt
token:

    p(w) = g_t * softmax(logits_t)(w) + (1 - g_t) * sum_{j copyable, x_j = w} a_tj
    a_t = softmax_j(q(h_t) . k(h_j) / sqrt(d)),   g_t = sigmoid(gate(h_t))

h = the LLM's final (normed) hidden states; the copyable positions are the prompt's text tokens
(not DNA slots, not padding). A pretrained 7B LLM copies from its context by itself; the tiny
preset's LLM, trained on a few thousand rows, learns names rather than how to copy one, and the
copy head gives it the means (docs/RESULTS.md). `CopyHead.log_probs` is used both in training
(teacher forcing over the whole sequence) and in `greedy_decode` (one position at a time with the
KV cache), so the two compute the same distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


class CopyHead(nn.Module):
    def __init__(self, hidden: int, dim: int = 64):
        super().__init__()
        self.q = nn.Linear(hidden, dim, bias=False)
        self.k = nn.Linear(hidden, dim, bias=False)
        self.gate = nn.Linear(hidden, 1)
        self.scale = 1.0 / math.sqrt(dim)

    def log_probs(self, logits: torch.Tensor, hidden: torch.Tensor, keys: torch.Tensor,
                  source_ids: torch.Tensor, copyable: torch.Tensor) -> torch.Tensor:
        """Mixed next-token log-probabilities (B, T, V).

        logits, hidden : (B, T, V) and (B, T, H) at the positions predicted from;
        keys : (B, S, d) = self.k(final hidden states) of the prompt positions;
        source_ids : (B, S) their token ids; copyable : (B, S) bool."""
        scores = torch.einsum("btd,bsd->bts", self.q(hidden), keys) * self.scale
        scores = scores.masked_fill(~copyable[:, None, :], float("-inf"))
        any_ok = copyable.any(-1)[:, None, None]  # (B, 1, 1): a row with nothing to copy
        attn = torch.where(any_ok, torch.softmax(scores.float(), -1).nan_to_num(0.0), 0.0)
        p_copy = torch.zeros(*logits.shape, dtype=attn.dtype, device=logits.device)
        p_copy.scatter_add_(2, source_ids[:, None, :].expand(-1, logits.shape[1], -1), attn)
        g = torch.sigmoid(self.gate(hidden).float())
        g = torch.where(any_ok, g, torch.ones_like(g))
        p = g * torch.softmax(logits.float(), -1) + (1 - g) * p_copy
        return torch.log(p.clamp_min(1e-12))


def copyable_mask(input_ids: torch.Tensor, prompt_mask: torch.Tensor, attention_mask: torch.Tensor,
                  placeholder_id: int, special_ids: list[int]) -> torch.Tensor:
    """(B, T) bool: prompt text tokens (not DNA slots, padding or special tokens)."""
    ok = prompt_mask.bool() & attention_mask.bool() & (input_ids != placeholder_id)
    for s in special_ids:
        ok &= input_ids != s
    return ok


@dataclass
class GreedyOutput:
    """What `predict_batch` reads from a generation: new tokens (B, S) and per-step next-token
    log-probabilities (a list of S tensors (B, V))."""

    sequences: torch.Tensor
    logits: list[torch.Tensor]


@torch.no_grad()
def greedy_decode(model, embeds: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  copyable: torch.Tensor, max_new_tokens: int, eos_token_id: int,
                  pad_token_id: int) -> tuple[GreedyOutput, torch.Tensor]:
    """Greedy decoding with the copy head (the LLM's KV cache; a finished row emits padding).
    Returns the output and the prompt's final hidden states (B, T, H) for the class head."""
    from llamadna.model.modeling import position_ids_from

    lm = model.language_model
    out = lm(inputs_embeds=embeds, attention_mask=attention_mask,
             position_ids=position_ids_from(attention_mask), use_cache=True, output_hidden_states=True)
    prompt_h = out.hidden_states[-1]
    keys = model.copy_head.k(prompt_h)
    cache, mask = out.cache, attention_mask
    logits, hidden = out.logits[:, -1:], prompt_h[:, -1:]
    done = torch.zeros(len(input_ids), dtype=torch.bool, device=input_ids.device)
    seqs, steps = [], []
    for _ in range(max_new_tokens):
        lp = model.copy_head.log_probs(logits, hidden, keys, input_ids, copyable)[:, 0]  # (B, V)
        nxt = lp.argmax(-1).masked_fill(done, pad_token_id)
        seqs.append(nxt)
        steps.append(lp)
        done |= nxt == eos_token_id
        if bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        pos = position_ids_from(mask)[:, -1:]
        out = lm(inputs_embeds=lm.get_input_embeddings()(nxt[:, None]), attention_mask=mask,
                 position_ids=pos, cache=cache, use_cache=True, output_hidden_states=True)
        cache, logits, hidden = out.cache, out.logits, out.hidden_states[-1]
    return GreedyOutput(torch.stack(seqs, 1), steps), prompt_h
