"""Decoding strategies of a retrieval model: what a row's sentence is once greedy generation ran.

    "greedy"   the generated sentence as it is
    "grounded" the candidate whose gene the greedy sentence names, else the one the model scores
               highest --> that candidate's sentence (`ground`); generation stops a row with
               evidence once it has named a gene (`GeneNamed`)
    "rerank"   greedy sentence vs the top candidate's sentence --> the one the model scores
               higher (`rerank`)

A candidate's sentence is the annotation sentence its own fields make (`candidate_sentence`);
sentences are scored by their mean log-probability per token under the model, eos included
(`SentenceScorer`, teacher forcing).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from llamadna.constants import DECODINGS, DEFAULT_BATCH_SIZE
from llamadna.data.template import annotation_sentence, parse_annotation
from llamadna.errors import ConfigError


def check_decoding(decoding: str) -> None:
    """A ConfigError unless `decoding` is one of DECODINGS (constants.py)."""
    if decoding not in DECODINGS:
        raise ConfigError(f"--decoding must be one of {', '.join(DECODINGS)}, got {decoding!r}")


def candidate_sentence(candidate: dict, source: str) -> str:
    """The annotation sentence a reference candidate's own fields make (`source`: the database
    named at its end, which a candidate does not have: the model's own)."""
    return annotation_sentence(
        chrom=candidate.get("chrom"), gene_name=candidate.get("gene"),
        gene_description=candidate.get("description"), transcript_type=candidate.get("transcript_type"),
        phenotype=candidate.get("phenotype"), Dataset=source)


class GeneNamed:
    """Stop for grounded decoding: a row (of those `active`) is done once its new tokens have
    named a gene (the template's gene clause, "... chromosome part of NAME gene", is closed):
    what follows comes from the candidate that has that gene (`ground`). Called with the new
    tokens so far (B, t), returns the rows to stop now; `kept` gives each row's tokens to keep."""

    def __init__(self, tokenizer, active: Sequence[bool]):
        self.tokenizer = tokenizer
        self.active = list(active)
        self.length = [None] * len(self.active)  # new tokens of a stopped row

    def __call__(self, seqs: torch.Tensor) -> torch.Tensor:
        now = torch.zeros(len(seqs), dtype=torch.bool)
        for b, on in enumerate(self.active):
            if on and self.length[b] is None:
                text = self.tokenizer.decode(seqs[b].tolist(), skip_special_tokens=True)
                if parse_annotation(text)["gene"] is not None:
                    self.length[b], now[b] = seqs.shape[1], True
        return now

    def kept(self, steps: int) -> torch.Tensor:
        """(B, steps) bool: the positions before each stopped row's stop (all for the others)."""
        ends = torch.tensor([steps if n is None else n for n in self.length])
        return torch.arange(steps)[None, :] < ends[:, None]


class SentenceScorer:
    """`SentenceScorer(model, processor)(rows, sentences, batch_size)`: the mean log-probability
    per token (eos included) of each row's target sentence under the model, (N,)."""

    def __init__(self, model, processor):
        self.model, self.processor = model, processor

    def __call__(self, rows: Sequence[dict], sentences: Sequence[str],
                 batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
        """Teacher forcing (the distribution generation samples from), `batch_size` sentences per
        forward pass: a batch of rows with k candidates each holds up to k x its rows to score,
        and one pass over them all would make peak memory grow with k and with the worst batch
        of a long run."""
        model, means = self.model, []
        for a in range(0, len(rows), max(1, batch_size)):
            batch = self.processor(list(rows[a : a + batch_size]),
                                   targets=list(sentences[a : a + batch_size]), padding_side="left")
            total, count = model.target_log_probs(**{k: v.to(model.device) for k, v in batch.items()})
            means.append(total / count.clamp(min=1))
        return torch.cat(means)


def rerank(score: SentenceScorer, rows: Sequence[dict], texts: list[str], confidence: torch.Tensor,
           finished: torch.Tensor, head_labels: list[str]) -> tuple[list[str], torch.Tensor]:
    """`decoding="rerank"`: per row, the greedy sentence or the top candidate's sentence
    (`candidate_sentence`, with the source the greedy sentence names, else the class head's),
    whichever has the higher mean log-probability per token (eos included) under the model;
    a greedy sentence that ran out of tokens without eos always gives way.

    Returns
    -------
    texts, confidence : the chosen sentences and their mean log-probabilities (B,).
    """
    alt = {}
    for b, row in enumerate(rows):
        ev = row.get("evidence") or []
        if ev:
            src = parse_annotation(texts[b])["source"] or head_labels[b]
            sentence = candidate_sentence(ev[0], src)
            if sentence != texts[b]:
                alt[b] = sentence
    if not alt:
        return texts, confidence
    idx = sorted(alt)
    mean = score([rows[b] for b in idx], [alt[b] for b in idx], len(rows)).to(confidence.device)
    texts, confidence = list(texts), confidence.clone()
    for j, b in enumerate(idx):
        if not bool(finished[b]) or float(mean[j]) > float(confidence[b]):
            texts[b], confidence[b] = alt[b], mean[j]
    return texts, confidence


def ground(score: SentenceScorer, rows: Sequence[dict], texts: list[str], confidence: torch.Tensor,
           head_labels: list[str]) -> tuple[list[str], torch.Tensor]:
    """`decoding="grounded"`: per row with reference evidence, the sentence of one candidate
    (`candidate_sentence`, with the source the greedy sentence names, else the class head's):
    the candidate whose gene the greedy sentence names (the same chromosome first), its
    confidence the greedy sentence's; when no candidate has that gene (a name broken off or
    mis-copied: "CCDC74" for "CCDC74BP1"), the candidate whose sentence the model scores highest
    (mean log-probability per token), its confidence that score. Rows without evidence keep the
    greedy sentence.

    Returns
    -------
    texts, confidence : the sentences and their confidences (B,).
    """
    texts, confidence = list(texts), confidence.clone()
    scored: list[tuple[int, str]] = []  # (row, candidate sentence) for rows naming no candidate
    for b, row in enumerate(rows):
        ev = row.get("evidence") or []
        if not ev:
            continue
        fields = parse_annotation(texts[b])
        src = fields["source"] or head_labels[b]
        named = [c for c in ev if fields["gene"] and c.get("gene") == fields["gene"]]
        if named:
            same = [c for c in named if c.get("chrom") == fields["chrom"]]
            texts[b] = candidate_sentence((same or named)[0], src)
        else:
            scored += [(b, candidate_sentence(c, src)) for c in ev]
    if scored:
        # k candidates a row: scored as many at a time as the batch holds rows
        mean = score([rows[b] for b, _ in scored], [s for _, s in scored], len(rows))
        mean = mean.to(confidence.device)
        best: dict[int, int] = {}
        for j, (b, _) in enumerate(scored):
            if b not in best or float(mean[j]) > float(mean[best[b]]):
                best[b] = j
        for b, j in best.items():
            texts[b], confidence[b] = scored[j][1], mean[j]
    return texts, confidence
