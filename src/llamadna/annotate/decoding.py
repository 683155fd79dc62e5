"""Decoding strategies of a retrieval model: what a row's sentence is once greedy generation ran.

    "greedy"   the generated sentence as it is
    "grounded" the greedy sentence's outcome (`parse_outcome`) --> the evidence's sentence of that
               outcome (`ground`); generation stops a row once its outcome is decided and, for a
               gene, the gene named (`OutcomeDecided`)
    "rerank"   greedy sentence vs the top candidate's sentence --> the one the model scores
               higher (`rerank`)

Grounded, per outcome of the greedy sentence:

    gene        the candidate with the named gene (same chromosome first) --> its sentence; no
                candidate has it --> the best scored of the aligned gene candidates' sentences
                and what the evidence shows (`describe_evidence`); nothing aligned --> what the
                evidence shows, unscored (out-of-reference queries stay fast)
    intergenic  the first intergenic candidate that aligns whole (`whole_locus`: identity >=
                Thresholds.min_identity over at least Thresholds.min_fraction of the query) -->
                its sentence, when the query has fewer than REPEAT_MIN_LOCI loci: an intergenic
                sentence says the query is that locus, which a chance partial alignment (12 of
                the five folds' 200 validation foreign rows, fifteenth pass) or a query found at
                several loci does not show (what the evidence shows instead; 25 of the five
                folds' 60 validation rows of repeat windows outside genes were "intergenic" to
                the demo model: docs/RESULTS.md)
    similar     the top aligned candidate (generation stops at "This sequence resembles", so the
                sentence names none; one that does: that aligned candidate), when it aligns at
                least as much as anything the rule calls similar (`no_match` is false: identity x
                aligned fraction >= Thresholds.min_similar, the floor the training targets were made
                with)
    repeat      the repeat sentence of the candidates, when the query has >= REPEAT_MIN_LOCI loci
    none        NONE_SENTENCE, unless the evidence contradicts it: the rule (`describe_evidence`,
                default thresholds) gives gene, intergenic or repeat, i.e. the top candidate
                aligns over at least Thresholds.min_fraction of the query at identity >=
                Thresholds.min_identity, or the query has >= REPEAT_MIN_LOCI loci --> what the
                evidence shows (a tandem-repeat window of a gene, aligned whole at identity 1,
                was "nothing in the reference" to the demo model: docs/RESULTS.md)
    otherwise (no such candidate, an undecided sentence) --> what the evidence shows

A row without any candidate never keeps a gene (or any) claim: NONE_SENTENCE. Sentences are
made from the evidence (`outcome_sentence`; a gene candidate's own fields: `candidate_sentence`),
never copied from the greedy text, and scored by their mean log-probability per token under the
model, eos included (`SentenceScorer`, teacher forcing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from llamadna.constants import DECODINGS, DEFAULT_BATCH_SIZE, NONE_SENTENCE, REPEAT_MIN_LOCI
from llamadna.data.template import annotation_sentence, outcome_of, parse_annotation, parse_outcome
from llamadna.errors import ConfigError
from llamadna.retrieve.outcome import (
    NONE_STANDS,
    Thresholds,
    describe_evidence,
    no_match,
    outcome_sentence,
    query_loci,
    rule_outcome,
    top_aligned,
)


def check_decoding(decoding: str) -> None:
    """A ConfigError unless `decoding` is one of DECODINGS (constants.py)."""
    if decoding not in DECODINGS:
        raise ConfigError(f"--decoding must be one of {', '.join(DECODINGS)}, got {decoding!r}")


def check_withhold(below: float | None) -> None:
    """A ConfigError unless `below` (InferenceConfig.withhold_below, `--withhold-below`, whose 0
    is None: off) is None or a gene confidence in (0, 1]."""
    if below is not None and not 0.0 < below <= 1.0:
        raise ConfigError(f"--withhold-below {below}: a gene confidence in (0, 1], or 0 to withhold "
                          "no gene answer")


def candidate_sentence(candidate: dict, source: str) -> str:
    """The annotation sentence a reference candidate's own fields make (`source`: the database
    named at its end, which a candidate does not have: the model's own)."""
    return annotation_sentence(
        chrom=candidate.get("chrom"), gene_name=candidate.get("gene"),
        gene_description=candidate.get("description"), transcript_type=candidate.get("transcript_type"),
        phenotype=candidate.get("phenotype"), Dataset=source)


def decided(text: str) -> bool:
    """Whether a (partial) sentence has said all grounded decoding needs: a non-gene outcome, or
    the gene outcome with its gene named ("... chromosome part of NAME gene")."""
    outcome = outcome_of(text)
    return outcome is not None and (outcome != "gene" or parse_annotation(text)["gene"] is not None)


class OutcomeDecided:
    """Stop for grounded decoding: a row (of those `active`: every row of a retrieval model, with
    candidates or with "no reference match") is done once its new tokens have `decided` its
    outcome: what follows comes from the evidence (`ground`). Called with a row and its new tokens
    so far, says whether to stop it now (once: a stopped row is not stopped again); `kept` gives
    each row's tokens to keep."""

    def __init__(self, tokenizer, active: Sequence[bool]):
        self.tokenizer = tokenizer
        self.active = list(active)
        self.length = [None] * len(self.active)  # new tokens of a stopped row

    def __call__(self, row: int, tokens: Sequence[int]) -> bool:
        if not self.active[row] or self.length[row] is not None:
            return False
        if decided(self.tokenizer.decode(list(tokens), skip_special_tokens=True)):
            self.length[row] = len(tokens)
            return True
        return False

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
    (`outcome_sentence` of its kind; a gene's with the source the greedy sentence names, else the
    class head's), whichever has the higher mean log-probability per token (eos included) under
    the model; a greedy sentence that ran out of tokens without eos always gives way.

    Returns
    -------
    texts, confidence : the chosen sentences and their mean log-probabilities (B,).
    """
    alt = {}
    for b, row in enumerate(rows):
        ev = row.get("evidence") or []
        if ev:
            src = parse_annotation(texts[b])["source"] or head_labels[b]
            sentence = outcome_sentence(ev[0].get("kind") or "gene", ev[0], ev, src)
            if sentence != texts[b]:
                alt[b] = sentence
    return _swap_scored(score, rows, texts, confidence, alt,
                        lambda b, mean: not bool(finished[b]) or mean > float(confidence[b]))


def _swap_scored(score: SentenceScorer, rows: Sequence[dict], texts: list[str], confidence: torch.Tensor,
                 alt: dict[int, str], take: Callable[[int, float], bool]) -> tuple[list[str], torch.Tensor]:
    """Copies of texts and confidence where row b's sentence is alt[b], with the model's score of
    it (mean log-probability per token) as its confidence, for each b of `alt` that
    `take(b, score)` accepts; `alt` is scored in one call, as many a pass as there are rows."""
    if not alt:
        return texts, confidence
    idx = sorted(alt)
    mean = score([rows[b] for b in idx], [alt[b] for b in idx], len(rows)).to(confidence.device)
    texts, confidence = list(texts), confidence.clone()
    for j, b in enumerate(idx):
        if take(b, float(mean[j])):
            texts[b], confidence[b] = alt[b], mean[j]
    return texts, confidence


def whole_locus(cand: dict) -> bool:
    """Whether a candidate aligns as the rule's outcome of its kind (gene or intergenic) asks, the
    query's loci aside (`rule_outcome` with no loci: identity >= Thresholds.min_identity over at
    least Thresholds.min_fraction of the query): the query is a whole copy of part of that locus."""
    return rule_outcome(cand, 0, Thresholds()) == (cand.get("kind") or "gene")


def whole_copy(cands: Sequence[dict], gene: str | None) -> bool:
    """Whether a candidate of `gene` is a gene `whole_locus` (`rule_outcome` gives a whole
    alignment its candidate's kind): the query is a whole copy of part of that gene."""
    return gene is not None and any(c.get("gene") == gene and rule_outcome(c, 0, Thresholds()) == "gene"
                                    for c in cands)


def withheld_sentence(cands: Sequence[dict], gene: str | None = None) -> str | None:
    """What replaces a doubted answer naming `gene` (`withhold`): the sentence of what the
    evidence shows (`describe_evidence`, the rule the training targets use) where that rule claims
    no gene; None where the answer stands: the evidence passes as a gene itself, or the rule says
    "repeat" (the query sits at >= REPEAT_MIN_LOCI loci) and one of them is a `whole_copy` of
    `gene`: a sequence that is part of a gene keeps that gene's sentence even where it also occurs
    elsewhere (issue 29's "keep the poster's sentence for a sequence that is part of a gene")."""
    outcome, cand = describe_evidence(cands)
    if outcome == "gene" or (outcome == "repeat" and whole_copy(cands, gene)):
        return None
    return outcome_sentence(outcome, cand, cands, None)


def withhold(score: SentenceScorer, rows: Sequence[dict], texts: list[str], confidence: torch.Tensor,
             doubted: Sequence[bool]) -> tuple[list[str], torch.Tensor]:
    """Per `doubted` row (a gene answer the calibration doubts: `Annotator`, constants.
    WITHHOLD_BELOW), the gene claim withheld: `withheld_sentence` of its evidence instead, its
    confidence the model's score of that sentence (mean log-probability per token); a row whose
    evidence passes the rule as a gene, or is a repeat holding a `whole_copy` of the gene the
    answer names, keeps its answer.

    Returns
    -------
    texts, confidence : the sentences and their confidences (B,).
    """
    alt = {}
    for b, row in enumerate(rows):
        if not doubted[b]:
            continue
        sentence = withheld_sentence(row.get("evidence") or [], parse_annotation(texts[b])["gene"])
        if sentence is not None:
            alt[b] = sentence
    return _swap_scored(score, rows, texts, confidence, alt, lambda b, mean: True)


def described(cands: Sequence[dict]) -> str:
    """The sentence of what the evidence shows when the row's own gene or locus is not in it
    (`describe_evidence`: the threshold rule's outcome)."""
    outcome, cand = describe_evidence(cands)
    return outcome_sentence(outcome, cand, cands, None)


def draft_sentences(cands: Sequence[dict]) -> list[str]:
    """The sentences a row's greedy decoding is likely to write, for its drafts
    (`model.drafting`, in this order of preference): what the evidence shows (`described`), the
    top gene candidate's sentence (its source unknown: the draft stops being followed there) and
    the no-match sentence. A wrong one costs only the tokens it proposes in a pass."""
    out = [described(cands)] if cands else []
    gene = next((c for c in cands if (c.get("kind") or "gene") == "gene"), None)
    if gene is not None:
        out.append(candidate_sentence(gene, None))
    return list(dict.fromkeys([*out, NONE_SENTENCE]))


# The grounded choice per outcome: (candidates, parse_outcome's fields, class head's source) ->
# the sentence, kept with the greedy confidence, or the sentences to score (the best is kept).
Choice = str | list[str]


def _gene(cands: list[dict], fields: dict, head: str) -> Choice:
    src = fields["source"] or head
    named = [c for c in cands if fields["gene"] and c.get("gene") == fields["gene"]]
    if named:
        same = [c for c in named if c.get("chrom") == fields["chrom"]]
        return candidate_sentence((same or named)[0], src)
    # a gene no candidate has (not in the reference, or mis-copied: "CCDC74" for "CCDC74BP1")
    aligned = [c for c in cands if c.get("identity") is not None and (c.get("kind") or "gene") == "gene"]
    if not aligned:  # nothing to weigh: what the evidence shows, unscored (the fast path)
        return described(cands)
    return [candidate_sentence(c, src) for c in aligned] + [described(cands)]


def _intergenic(cands: list[dict], fields: dict, head: str) -> Choice:
    cand = next((c for c in cands if c.get("kind") == "intergenic" and whole_locus(c)), None)
    if cand is None or query_loci(cands) >= REPEAT_MIN_LOCI:  # no one place it lies, or not whole
        return described(cands)
    return outcome_sentence("intergenic", cand, cands, None)


def _similar(cands: list[dict], fields: dict, head: str) -> Choice:
    aligned = [c for c in cands if c.get("identity") is not None]
    named = [c for c in aligned if fields.get("similar_to") and c.get("gene") == fields["similar_to"]]
    cand = named[0] if named else top_aligned(cands)
    if no_match(cand):  # too little aligns to call it similar (the rule's floor): what the evidence shows
        return described(cands)
    return outcome_sentence("similar", cand, cands, None)


def _repeat(cands: list[dict], fields: dict, head: str) -> Choice:
    repeat = query_loci(cands) >= REPEAT_MIN_LOCI
    return outcome_sentence("repeat", None, cands, None) if repeat else described(cands)


def _none(cands: list[dict], fields: dict, head: str) -> Choice:
    outcome, cand = describe_evidence(cands)
    return NONE_SENTENCE if outcome in NONE_STANDS else outcome_sentence(outcome, cand, cands, None)


CHOICES: dict[str, Callable[[list[dict], dict, str], Choice]] = {
    "gene": _gene, "intergenic": _intergenic, "similar": _similar, "repeat": _repeat, "none": _none,
}


def grounded_choice(cands: Sequence[dict], text: str, head: str) -> Choice:
    """What grounded decoding makes of one row's greedy `text` (see the module docstring): the
    sentence, or the sentences to score. `head`: the class head's source, for a gene sentence
    whose text names none."""
    if not cands:  # "no reference match": no claim is kept
        return NONE_SENTENCE
    fields = parse_outcome(text)
    choose = CHOICES.get(fields["outcome"])
    return choose(list(cands), fields, head) if choose else described(cands)


def ground(score: SentenceScorer, rows: Sequence[dict], texts: list[str], confidence: torch.Tensor,
           head_labels: list[str]) -> tuple[list[str], torch.Tensor]:
    """`decoding="grounded"`: per row, the evidence's sentence of the greedy sentence's outcome
    (`grounded_choice`), its confidence the greedy sentence's; where several sentences are weighed
    (a gene no candidate has, some gene candidates aligned), the one the model scores highest
    (mean log-probability per token), its confidence that score.

    Returns
    -------
    texts, confidence : the sentences and their confidences (B,).
    """
    texts, confidence = list(texts), confidence.clone()
    scored: list[tuple[int, str]] = []  # (row, sentence) for rows weighing several
    for b, row in enumerate(rows):
        choice = grounded_choice(row.get("evidence") or [], texts[b], head_labels[b])
        if isinstance(choice, str):
            texts[b] = choice
        else:
            scored += [(b, s) for s in choice]
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
