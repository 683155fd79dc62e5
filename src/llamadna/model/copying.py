"""A copy head (pointer-generator, See et al. 2017) for a small LLM that must write what the
prompt's reference evidence holds: gene names it never saw in training.

At every position t the next-token distribution mixes the LM's own with one that copies a prompt
token:

    p(w) = g_t * softmax(logits_t)(w) + (1 - g_t) * sum_{j copyable, x_j = w} a_tj
    a_t = softmax_j(q(h_t) . k(h_j) / sqrt(d) + w1 [x_{j-1} = y_t] + w2 [x_{j-1} = y_t, x_{j-2} = y_{t-1}])
    g_t = sigmoid(gate(h_t))

h = the LLM's final (normed) hidden states; y_t the token at position t (the one just written)
and y_{t-1} the one before. The two indicator terms (learned weights w1, w2) say where a copy
continues: the prompt position that follows the one or two tokens just written, as CopyNet's
"selective read" (Gu et al. 2016) feeds back the location of the last copied token. Without them
a small model copying a multi-token description loses its place ("ATP synththase Cerihe st st").
The copyable positions are the prompt's text tokens (not DNA slots, not padding). A pretrained
7B LLM copies from its context by itself; the tiny preset's LLM, trained on a few thousand rows,
learns names rather than how to copy one, and the copy head gives it the means (docs/RESULTS.md).
`CopyHead.log_probs` is used both in training (teacher forcing over the whole sequence) and in
`greedy_decode` (the positions of each pass with the KV cache: the token just chosen and the
draft tokens verified after it, `model.drafting`), so the two compute the same distribution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from llamadna.model.drafting import DraftLookup
from llamadna.model.positions import position_ids_from


class CopyHead(nn.Module):
    def __init__(self, hidden: int, dim: int = 64):
        super().__init__()
        self.q = nn.Linear(hidden, dim, bias=False)
        self.k = nn.Linear(hidden, dim, bias=False)
        self.gate = nn.Linear(hidden, 1)
        self.scale = 1.0 / math.sqrt(dim)
        self.continuation = nn.Parameter(torch.tensor([2.0, 2.0]))  # w1, w2

    def log_probs(self, logits: torch.Tensor, hidden: torch.Tensor, keys: torch.Tensor,
                  source_ids: torch.Tensor, copyable: torch.Tensor, current: torch.Tensor,
                  previous: torch.Tensor) -> torch.Tensor:
        """Mixed next-token log-probabilities (B, T, V).

        logits, hidden : (B, T, V) and (B, T, H) at the positions predicted from;
        keys : (B, S, d) = self.k(final hidden states) of the prompt positions;
        source_ids : (B, S) their token ids; copyable : (B, S) bool;
        current, previous : (B, T) the token at each position predicted from and the one before
        (-1 where there is none)."""
        scores = torch.einsum("btd,bsd->bts", self.q(hidden), keys) * self.scale
        scores = scores + self._continuation(source_ids, copyable, current, previous).to(scores.dtype)
        scores = scores.masked_fill(~copyable[:, None, :], float("-inf"))
        any_ok = copyable.any(-1)[:, None, None]  # (B, 1, 1): a row with nothing to copy
        attn = torch.where(any_ok, torch.softmax(scores.float(), -1).nan_to_num(0.0), 0.0)
        p_copy = torch.zeros(*logits.shape, dtype=attn.dtype, device=logits.device)
        p_copy.scatter_add_(2, source_ids[:, None, :].expand(-1, logits.shape[1], -1), attn)
        g = torch.sigmoid(self.gate(hidden).float())
        g = torch.where(any_ok, g, torch.ones_like(g))
        p = g * torch.softmax(logits.float(), -1) + (1 - g) * p_copy
        return torch.log(p.clamp_min(1e-12))

    def _continuation(self, source_ids, copyable, current, previous) -> torch.Tensor:
        """(B, T, S) w1 where the source token before j is `current`, + w2 where the two before
        j are `previous, current` (only copyable tokens count as a context)."""
        src = source_ids.masked_fill(~copyable, -1)
        before1 = torch.nn.functional.pad(src, (1, 0), value=-1)[:, :-1]  # x_{j-1}
        before2 = torch.nn.functional.pad(src, (2, 0), value=-1)[:, :-2]  # x_{j-2}
        m1 = (before1[:, None, :] == current[:, :, None]) & (before1 >= 0)[:, None, :]
        m2 = m1 & (before2[:, None, :] == previous[:, :, None]) & (before2 >= 0)[:, None, :]
        w1, w2 = self.continuation.unbind()
        return m1 * w1 + m2 * w2


def copyable_mask(input_ids: torch.Tensor, prompt_mask: torch.Tensor, attention_mask: torch.Tensor,
                  placeholder_id: int, special_ids: list[int]) -> torch.Tensor:
    """(B, T) bool: prompt text tokens (not DNA slots, padding or special tokens)."""
    ok = prompt_mask.bool() & attention_mask.bool() & (input_ids != placeholder_id)
    for s in special_ids:
        ok &= input_ids != s
    return ok


def _previous_tokens(ids: torch.Tensor) -> torch.Tensor:
    """(B, T): the token before each position (-1 before the first)."""
    return torch.nn.functional.pad(ids, (1, 0), value=-1)[:, :-1]


def teacher_forced_log_probs(head: CopyHead, logits: torch.Tensor, hidden: torch.Tensor,
                             input_ids: torch.Tensor, copyable: torch.Tensor,
                             last: int | None = None) -> torch.Tensor:
    """`head.log_probs` over a whole sequence: (B, T-1, V), position t predicting token t + 1;
    with `last`, only the last `last` tokens are predicted: (B, last, V) (a left-padded batch's
    targets, without the (B, T, V) tensor over its prompts). `logits` may cover only the last
    positions (at least `last` + 1: the LM's `logits_to_keep`)."""
    start = 0 if last is None else input_ids.shape[1] - 1 - last
    logits = logits[:, logits.shape[1] - (input_ids.shape[1] - start):]  # right-aligned on the tokens
    return head.log_probs(logits[:, :-1], hidden[:, start:-1], head.k(hidden), input_ids, copyable,
                          input_ids[:, start:-1], _previous_tokens(input_ids)[:, start:-1])


@dataclass
class GreedyOutput:
    """What `predict_batch` reads from a generation: new tokens (B, S) and per-step next-token
    log-probabilities (a list of S tensors (B, V))."""

    sequences: torch.Tensor
    logits: list[torch.Tensor]


def _feed_tensors(feeds: list[list[int]], befores: list[int], pad_token_id: int, mask_dtype: torch.dtype,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pass's (B, W) token ids (padding after a row's feed), their attention mask, and the
    token before each (`befores[b]` before a row's first; the copy head's context)."""
    width = max(map(len, feeds))
    ids = torch.full((len(feeds), width), pad_token_id, dtype=torch.long)
    fed = torch.zeros((len(feeds), width), dtype=mask_dtype)
    before = torch.full((len(feeds), width), -1, dtype=torch.long)
    for b, feed in enumerate(feeds):
        if feed:
            ids[b, : len(feed)] = torch.tensor(feed)
            fed[b, : len(feed)] = 1
            before[b, : len(feed)] = torch.tensor([befores[b], *feed[:-1]])
    return ids.to(device), fed, before.to(device)


class _Written:
    """What greedy decoding has written per row: tokens, the log-probabilities (V,) each was
    chosen from, and whether the row is finished (eos, `max_new_tokens`, or `stop(row, tokens)`)."""

    def __init__(self, n: int, max_new_tokens: int, eos_token_id: int, stop=None):
        self.tokens: list[list[int]] = [[] for _ in range(n)]
        self.steps: list[list[torch.Tensor]] = [[] for _ in range(n)]
        self.done = [False] * n
        self.max_new_tokens, self.eos, self.stop = max_new_tokens, eos_token_id, stop

    def take(self, b: int, token: int, dist: torch.Tensor) -> None:
        self.tokens[b].append(token)
        self.steps[b].append(dist)
        self.done[b] = (token == self.eos or len(self.tokens[b]) >= self.max_new_tokens
                        or (self.stop is not None and bool(self.stop(b, self.tokens[b]))))

    def accept(self, feeds: list[list[int]], lp: torch.Tensor, mask: torch.Tensor) -> None:
        """Each row's tokens of a pass (lp: (B, W, V) after each fed position, the last W of
        `mask`); the proposed positions not kept leave every later position's view."""
        best, width = lp.argmax(-1).tolist(), lp.shape[1]
        for b, feed in enumerate(feeds):
            j = 0
            while feed:  # the token after feed[j]; feed[j + 1] stands while it is that token
                self.take(b, best[b][j], lp[b, j])
                if self.done[b] or j + 1 == len(feed) or feed[j + 1] != best[b][j]:
                    break
                j += 1
            if len(feed) > j + 1:
                mask[b, mask.shape[1] - width + j + 1 :] = 0

    def output(self, pad_token_id: int, vocab: int, dtype: torch.dtype, device: torch.device) -> GreedyOutput:
        """(B, S) tokens, padding after a row's end, and S log-probability tensors (B, V) (0 there)."""
        n, length = len(self.tokens), max(map(len, self.tokens))
        seqs = torch.full((n, length), pad_token_id, dtype=torch.long, device=device)
        logp = torch.zeros((n, length, vocab), dtype=dtype, device=device)
        for b in range(n):
            seqs[b, : len(self.tokens[b])] = torch.tensor(self.tokens[b], device=device)
            logp[b, : len(self.steps[b])] = torch.stack(self.steps[b])
        return GreedyOutput(seqs, list(logp.unbind(1)))


@torch.no_grad()
def greedy_decode(model, embeds: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  copyable: torch.Tensor, max_new_tokens: int, eos_token_id: int,
                  pad_token_id: int, stop=None, drafts: Sequence[Sequence[Sequence[int]]] | None = None,
                  draft_tokens: int = 0) -> tuple[GreedyOutput, torch.Tensor]:
    """Greedy decoding with the copy head (the LLM's KV cache), verifying drafts.

    Each pass feeds every unfinished row's token just chosen and, with `draft_tokens` > 0, up to
    that many tokens a `DraftLookup` proposes after it (from the row's `drafts`, then its prompt's
    copyable text); the prompt's own pass feeds, after the prompt, the opening of a row's first
    draft. A proposed token is kept while it is the argmax of the position before it, so the
    tokens are those of one-token steps (up to the float rounding of a wider pass) and a right
    proposal writes many in one pass. Proposed positions not kept, and finished rows' feeds, are
    masked out of the attention (positions follow the mask). A row finishes at eos, after
    `max_new_tokens` tokens, or where `stop(row, its new tokens)` says so (checked after each
    token); a finished row's later positions hold padding (log-probabilities 0).

    Returns the output and the prompt's final hidden states (B, T, H) for the class head."""
    lm, head = model.language_model, model.copy_head
    n, T, device = len(input_ids), input_ids.shape[1], input_ids.device
    lookups = ([DraftLookup([*(drafts[b] if drafts else []), input_ids[b][copyable[b]].tolist()])
                for b in range(n)] if draft_tokens > 0 else None)
    written = _Written(n, max_new_tokens, eos_token_id, stop)
    # the prompt's pass: its last token, then each row's opening (the first tokens of its first draft)
    last_prompt = input_ids[:, -1].tolist()
    feeds = [[tok, *(lookups[b].propose([], min(draft_tokens, max_new_tokens - 1))
                     if lookups and drafts and drafts[b] else [])] for b, tok in enumerate(last_prompt)]
    ids, fed, before = _feed_tensors(feeds, _previous_tokens(input_ids)[:, -1].tolist(), pad_token_id,
                                     attention_mask.dtype, device)
    mask = torch.cat([attention_mask, fed[:, 1:].to(attention_mask.device)], dim=1)
    if ids.shape[1] > 1:
        embeds = torch.cat([embeds, lm.get_input_embeddings()(ids[:, 1:]).to(embeds.dtype)], dim=1)
    # the logits of the fed positions only: (B, T, V) over the whole prompt would make the batch's
    # peak memory grow with the vocabulary and the prompt length
    out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids_from(mask), use_cache=True,
             output_hidden_states=True, logits_to_keep=ids.shape[1])
    prompt_h = out.hidden_states[-1][:, :T]
    keys = head.k(prompt_h)
    lp = head.log_probs(out.logits, out.hidden_states[-1][:, T - 1 :], keys, input_ids, copyable, ids, before)
    written.accept(feeds, lp, mask)
    while not all(written.done):
        tokens = written.tokens
        feeds = [[] if written.done[b] else [t[-1], *(lookups[b].propose(
                    t, min(draft_tokens, max_new_tokens - len(t) - 1)) if lookups else [])]
                 for b, t in enumerate(tokens)]
        befores = [t[-2] if len(t) > 1 else last_prompt[b] for b, t in enumerate(tokens)]
        ids, fed, before = _feed_tensors(feeds, befores, pad_token_id, mask.dtype, device)
        mask = torch.cat([mask, fed.to(mask.device)], dim=1)
        out = lm(inputs_embeds=lm.get_input_embeddings()(ids), attention_mask=mask,
                 position_ids=position_ids_from(mask)[:, -ids.shape[1]:], cache=out.cache, use_cache=True,
                 output_hidden_states=True)
        lp = head.log_probs(out.logits, out.hidden_states[-1], keys, input_ids, copyable, ids, before)
        written.accept(feeds, lp, mask)
    return written.output(pad_token_id, lp.shape[-1], lp.dtype, lp.device), prompt_h
