"""Drafts for greedy decoding: what the prompt and the evidence already say, proposed ahead.

A retrieval model's sentence is mostly written in its prompt already: "This sequence is part of
chr21 chromosome part of AP001340.3 gene" is, token for token, the sentence its top candidate
makes, and the candidate's name and fields stand in the prompt's evidence text. `DraftLookup`
finds the last 1 to DRAFT_NGRAM tokens written in such token sequences (prompt lookup decoding,
Saxena 2023) and proposes what follows them, or, before any token, the opening of the first;
greedy decoding (`model.copying.greedy_decode`) feeds the proposal after the token just chosen
(the opening after the prompt, in the prompt's own pass) and keeps it while each token is the one
its own argmax chooses (the verification of speculative decoding, Leviathan et al. 2023), so the
kept tokens are those of one-token steps and a proposal only saves passes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from llamadna.constants import DRAFT_NGRAM


class DraftLookup:
    """`DraftLookup(segments).propose(tokens, k)`: up to `k` tokens that follow, in the first
    segment holding it, the longest run of `tokens`' last 1..`longest` tokens found in any
    segment; [] when none is; with no tokens yet, the first segment's opening. Segments come in
    order of preference (the first occurrence wins).
    Searched when asked (a row asks a few times; indexing its ~300 tokens' runs cost more)."""

    def __init__(self, segments: Iterable[Sequence[int]], longest: int = DRAFT_NGRAM):
        if longest < 1:
            raise ValueError(f"longest must be >= 1, got {longest}")
        self.longest = longest
        self.segments = [list(seg) for seg in segments]

    def propose(self, tokens: Sequence[int], k: int) -> list[int]:
        if k < 1:
            return []
        if not tokens:
            return self.segments[0][:k] if self.segments else []
        for n in range(min(self.longest, len(tokens)), 0, -1):
            run = list(tokens[-n:])
            for seg in self.segments:
                at = _find(seg, run)
                if at is not None:
                    return seg[at + n : at + n + k]
        return []


def _find(seg: list[int], run: list[int]) -> int | None:
    """The first start of `run` in `seg` with at least one token after it, or None."""
    n, i = len(run), -1
    while True:
        try:
            i = seg.index(run[0], i + 1, len(seg) - n)  # a start leaving a token after the run
        except ValueError:
            return None
        if seg[i : i + n] == run:
            return i
