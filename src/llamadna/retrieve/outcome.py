"""What the reference evidence of a query says it is: one of OUTCOMES (gene, intergenic, repeat,
similar, none), by a rule on its top aligned hit, and the sentence of each outcome.

The rule (`rule_outcome`, thresholds `Thresholds`), on the top aligned hit (a retriever
candidate, or a blastn top hit given as a dict with the same keys identity, aligned_fraction,
kind, plus evalue) and the query's number of reference loci:

1. no aligned hit, identity x aligned fraction < min_similar, or an e-value > max_evalue: none;
2. loci >= repeat_loci: repeat (no single gene can be named);
3. identity >= min_identity and aligned fraction >= min_fraction: the hit's own kind (gene or
   intergenic);
4. otherwise: similar (part of the query, or a diverged copy of it, aligns).

Scoring: `outcome_correct` says whether one answer is right; `scored_labels` turns answers and
truths into labels by the same rules (a wrong gene, a novel gene) for `macro_f1`.
`tune_thresholds` picks the thresholds that maximise that macro-F1 on validation rows over a
small deterministic grid (every grid point scored at once by matrix products, ~0.2 s for 3,000
rows x 10,800 points): the tuned-threshold baseline of issue 29, for the retriever's top hit
and blastn's alike.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from llamadna.constants import NONE_SENTENCE, NOT_SPECIFIED, OUTCOMES, REPEAT_MIN_LOCI
from llamadna.data.template import (
    annotation_sentence,
    intergenic_sentence,
    repeat_sentence,
    similar_sentence,
)

# The rule's outcomes of a query's evidence under which "no match" stands: nothing aligned, or an
# alignment partial or diverged ("similar"). Grounded decoding keeps a greedy "none" there
# (`annotate.decoding`), and a training negative whose truth is no match learns "none" there
# (`train.evidence_sampler`); where the rule says gene, intergenic or repeat, the evidence
# contradicts "none".
NONE_STANDS = ("none", "similar")


@dataclass(frozen=True)
class Thresholds:
    """Thresholds of `rule_outcome`. Identity and aligned fraction are in [0, 1]."""

    min_identity: float = 0.8  # a gene / intergenic claim needs this identity ...
    min_fraction: float = 0.8  # ... over at least this fraction of the query
    min_similar: float = 0.1  # identity x aligned fraction under this: no match at all
    repeat_loci: int = REPEAT_MIN_LOCI  # a query aligned at this many loci is a repeat
    max_evalue: float | None = None  # blastn: a top hit with a larger e-value is no match


def top_aligned(cands: Sequence[dict] | None) -> dict | None:
    """The first candidate that aligned (identity not None), or None."""
    for c in cands or ():
        if c.get("identity") is not None:
            return c
    return None


def no_match(top: dict | None, t: Thresholds = Thresholds()) -> bool:
    """The rule's step 1 (module doc): `top` (a candidate or a blastn hit dict) is no match at all:
    none, not aligned, identity x aligned fraction < t.min_similar, or an e-value > t.max_evalue."""
    if top is None or top.get("identity") is None:
        return True
    evalue = top.get("evalue")
    return (float(top["identity"]) * float(top.get("aligned_fraction") or 0.0) < t.min_similar
            or (t.max_evalue is not None and evalue is not None and evalue > t.max_evalue))


def rule_outcome(top: dict | None, loci: int, t: Thresholds) -> str:
    """The outcome the rule (module doc) gives a query from its top aligned hit and its number
    of reference loci. `top`: a candidate or a blastn hit dict (identity, aligned_fraction,
    kind; evalue optional); a hit without "kind" counts as a gene hit."""
    if no_match(top, t):
        return "none"
    identity, fraction = float(top["identity"]), float(top.get("aligned_fraction") or 0.0)
    if (loci or 0) >= t.repeat_loci:
        return "repeat"
    if identity >= t.min_identity and fraction >= t.min_fraction:
        return top.get("kind") or "gene"
    return "similar"


def query_loci(cands: Sequence[dict] | None) -> int:
    """The query's loci (the same on each of its candidates; 0 without any)."""
    return int(cands[0].get("loci") or 0) if cands else 0


def candidate_outcome(cands: Sequence[dict] | None, t: Thresholds = Thresholds()) -> tuple[str, dict | None]:
    """The rule's outcome of a query's candidates, and the candidate it rests on (the top
    aligned one; None for none)."""
    top = top_aligned(cands)
    outcome = rule_outcome(top, query_loci(cands), t)
    return outcome, (None if outcome == "none" else top)


def describe_evidence(cands: Sequence[dict] | None, t: Thresholds = Thresholds()) -> tuple[str, dict | None]:
    """What the evidence shows when the query's own gene or locus is NOT among its candidates (a
    training target; grounded decoding's answer where the greedy sentence names nothing it can
    keep): the rule's outcome (`candidate_outcome`). A top hit that passes as gene or intergenic
    (a paralog, a duplicated stretch) is named as such: the evidence cannot tell it from the
    query's own locus, and a target that said "similar" for a whole, near-identical alignment
    taught the model that "similar" may follow such evidence (it then said so for 60 % of the
    mito benchmark's undiverged genes)."""
    return candidate_outcome(cands, t)


def outcome_sentence(outcome: str, cand: dict | None, cands: Sequence[dict] | None,
                     source: str | None) -> str:
    """The sentence of an outcome from the evidence: gene -> the annotation sentence of `cand`
    ending with `source` (None: the candidate's nearest known variant's, else NOT_SPECIFIED);
    intergenic -> the intergenic sentence of `cand`; similar -> `cand`'s chromosome, gene,
    aligned fraction and identity; repeat -> the query's loci and the gene names of `cands`;
    none -> NONE_SENTENCE."""
    if outcome == "none":
        return NONE_SENTENCE
    if outcome == "repeat":
        return repeat_sentence(query_loci(cands), [c["gene"] for c in cands or () if c.get("gene")])
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}: expected one of {OUTCOMES}")
    if cand is None:
        raise ValueError(f"the {outcome} sentence needs a candidate")
    if outcome == "gene":
        return annotation_sentence(
            chrom=cand.get("chrom"), gene_name=cand.get("gene"), gene_description=cand.get("description"),
            transcript_type=cand.get("transcript_type"), phenotype=cand.get("phenotype"),
            Dataset=source if source is not None else (cand.get("source") or NOT_SPECIFIED))
    if outcome == "intergenic":
        return intergenic_sentence(cand.get("chrom"), cand.get("left_gene"), cand.get("left_distance"),
                                   cand.get("right_gene"), cand.get("right_distance"))
    return similar_sentence(cand.get("chrom"), cand.get("gene"), float(cand.get("aligned_fraction") or 0.0),
                            float(cand.get("identity") or 0.0))


def outcome_correct(outcome: str | None, gene: str | None, truth: Mapping) -> bool:
    """Whether an answer (outcome, gene named) is right. `truth`: {"outcome": one of OUTCOMES or
    "novel", "gene_name": ...}. gene: the outcome gene and that gene; novel (a gene masked out of
    the index): any outcome but gene (an unreadable answer, outcome None, is wrong); the others:
    the same outcome."""
    want = truth["outcome"]
    if want == "gene":
        return outcome == "gene" and gene == truth.get("gene_name")
    if want == "novel":
        return outcome is not None and outcome != "gene"
    return outcome == want


# ------------------------------------------------------------------------------------- scoring
# Label codes: OUTCOMES in order, then a wrong gene (the outcome gene with another gene than the
# truth's), then novel (a truth only), then anything else (an unreadable answer).
_WRONG_GENE, _NOVEL, _OTHER = len(OUTCOMES), len(OUTCOMES) + 1, len(OUTCOMES) + 2
_K = len(OUTCOMES) + 3
_CODE = {o: i for i, o in enumerate(OUTCOMES)}


def _codes(labels: Sequence[str | None]) -> np.ndarray:
    """Labels -> codes (module's label codes above)."""
    return np.array([_CODE.get(x, _NOVEL if x == "novel" else _OTHER) for x in labels], dtype=np.int64)


def _macro_f1_codes(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Macro-F1 over the OUTCOMES present in each row's truth labels: pred, truth (G, N) codes
    -> (G,). Codes outside OUTCOMES count as wrong answers (and, as truths, as no class)."""
    g, n = pred.shape[0], len(OUTCOMES)
    base = np.arange(g)[:, None] * _K

    def per_class(codes: np.ndarray) -> np.ndarray:
        """(G, N) codes -> (G, n) counts of each outcome."""
        return np.bincount((base + codes).ravel(), minlength=g * _K).reshape(g, _K)[:, :n]

    tp = per_class(np.where(pred == truth, truth, _OTHER)).astype(float)
    n_true = per_class(truth)
    denom = per_class(pred) + n_true
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    present = n_true > 0
    return (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def macro_f1(pred: Sequence[str | None], truth: Sequence[str]) -> float:
    """Outcome macro-F1: the mean F1 over the OUTCOMES present in `truth` (an outcome only
    predicted, never true, adds no class of its own: its rows are errors in the recall of their
    true class). A prediction outside OUTCOMES (None: unreadable) is wrong for every class; a
    truth outside them (e.g. "novel") is no class. 0.0 when no truth is an outcome."""
    if len(pred) != len(truth):
        raise ValueError(f"{len(pred)} predictions for {len(truth)} truths")
    if not len(truth):
        return 0.0
    return float(_macro_f1_codes(_codes(pred)[None], _codes(truth)[None])[0])


def scored_labels(outcomes: Sequence[str | None], genes: Sequence[str | None],
                  truths: Sequence[Mapping]) -> tuple[list[str | None], list[str]]:
    """Answers and truths as labels for `macro_f1`, by `outcome_correct`'s rules: the outcome
    gene with a gene other than the truth's becomes "wrong gene"; a novel truth becomes the
    answer when that is right (any outcome but gene), else stays "novel" (no class)."""
    pred, truth = [], []
    for o, g, t in zip(outcomes, genes, truths, strict=True):
        want = t["outcome"]
        if want == "gene" and o == "gene" and g != t.get("gene_name"):
            o = "wrong gene"
        if want == "novel" and outcome_correct(o, g, t):
            want = o
        pred.append(o)
        truth.append(want)
    return pred, truth


# --------------------------------------------------------------------------------------- tuning
# The tuning grid of `tune_thresholds` (Thresholds field -> values, in grid order); max_evalue
# is tuned over EVALUE_GRID only when some top hit carries an e-value (blastn).
DEFAULT_GRID: dict[str, tuple] = {
    "min_identity": (0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95),
    "min_fraction": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95),
    "min_similar": (0.05, 0.1, 0.2, 0.3, 0.4, 0.5),
    "repeat_loci": (2, 3, 4, 5, 6),
}
EVALUE_GRID = (None, 1e-2, 1e-5, 1e-10, 1e-20)
_GRID_FIELDS = ("min_identity", "min_fraction", "min_similar", "repeat_loci", "max_evalue")


def _row_arrays(tops: Sequence[dict | None], loci: Sequence[int], truths: Sequence) -> dict:
    """The per-row inputs of the rule and of the score, as arrays."""
    aligned = np.array([t is not None and t.get("identity") is not None for t in tops])
    ident = np.array([float(t["identity"]) if a else 0.0 for t, a in zip(tops, aligned)])
    frac = np.array([float(t.get("aligned_fraction") or 0.0) if a else 0.0 for t, a in zip(tops, aligned)])
    ev = np.array([t.get("evalue") if a and t.get("evalue") is not None else -np.inf
                   for t, a in zip(tops, aligned)], dtype=float)
    kind = _codes([(t.get("kind") or "gene") if a else "gene" for t, a in zip(tops, aligned)])
    truth = [t if isinstance(t, Mapping) else {"outcome": t} for t in truths]
    want = _codes([t["outcome"] for t in truth])
    wrong_gene = np.array([t["outcome"] == "gene" and "gene_name" in t
                           and (top or {}).get("gene") != t["gene_name"] for t, top in zip(truth, tops)])
    return {"aligned": aligned, "ident": ident, "frac": frac, "prod": ident * frac, "ev": ev,
            "kind": kind, "loci": np.asarray(loci, dtype=float), "truth": want, "wrong_gene": wrong_gene}


def _class_sums(axes: list[np.ndarray], r: dict, w: np.ndarray) -> list[np.ndarray]:
    """Per outcome k (OUTCOMES order), the sum of the row weights `w` (n, m) over the rows the
    rule answers k, at every grid point: arrays broadcastable to (S, E, D, I*F, m) for the axes
    min_similar (S), max_evalue (E), repeat_loci (D), min_identity x min_fraction (I*F). The
    rule's precedence (none, repeat, the hit's kind, similar) becomes products of masks, summed
    over the rows by matrix products: no (grid point, row) array is formed."""
    mi, mf, ms, rl, me = axes
    n = len(r["truth"])
    none = ~r["aligned"] | (r["prod"] < ms[:, None, None]) | (r["ev"] > me[None, :, None])  # (S, E, n)
    rep = r["loci"] >= rl[:, None]  # (D, n)
    match = ((r["ident"] >= mi[:, None, None]) & (r["frac"] >= mf[None, :, None])).reshape(-1, n)  # (I*F, n)
    s, e, d = len(ms), len(me), len(rl)
    rest = (~none[:, :, None] & ~rep[None, None]).reshape(-1, n).astype(float)  # neither none nor repeat

    def matched(weights: np.ndarray) -> np.ndarray:  # (S, E, D, I*F, m): rest & match
        per = (match[:, :, None] * weights[None]).transpose(1, 0, 2).reshape(n, -1)
        return (rest @ per).reshape(s, e, d, len(match), -1)

    sums = dict.fromkeys(OUTCOMES)
    sums["none"] = (none.reshape(-1, n).astype(float) @ w).reshape(s, e, 1, 1, -1)
    sums["repeat"] = ((~none[:, :, None] & rep[None, None]).reshape(-1, n).astype(float) @ w).reshape(
        s, e, d, 1, -1)
    for k in ("gene", "intergenic"):
        sums[k] = matched(w * (r["kind"] == _CODE[k])[:, None])
    sums["similar"] = (rest @ w).reshape(s, e, d, 1, -1) - matched(w)
    return [sums[k] for k in OUTCOMES]


def _grid_scores(axes: list[np.ndarray], r: dict) -> np.ndarray:
    """Macro-F1 of the rule (rows scored as `scored_labels` does) at every grid point: shape
    (I, F, S, D, E), the axes in _GRID_FIELDS order (no e-value cut = inf)."""
    truth, wrong = r["truth"], r["wrong_gene"].astype(float)
    novel = (truth == _NOVEL).astype(float)
    # weights: every row, wrong-gene rows, novel rows, then the rows of each true outcome
    w = np.column_stack([np.ones(len(truth)), wrong, novel,
                         *((truth == i).astype(float) for i in range(len(OUTCOMES)))])
    f1_sum = present_n = 0.0
    for k, c in enumerate(_class_sums(axes, r, w)):
        if k == _CODE["gene"]:  # a wrong gene is no gene answer (and a miss of the true gene)
            n_pred, tp, n_true = c[..., 0] - c[..., 1], c[..., 3 + k] - c[..., 1], (truth == k).sum()
        else:  # a novel row answered anything but gene is right: it counts as that outcome
            n_pred, tp, n_true = c[..., 0], c[..., 3 + k] + c[..., 2], (truth == k).sum() + c[..., 2]
        denom = n_pred + n_true
        f1 = np.divide(2 * tp, denom, out=np.zeros(np.broadcast(tp, denom).shape), where=denom > 0)
        f1_sum, present_n = f1_sum + f1, present_n + (n_true > 0)
    f1 = np.broadcast_to(f1_sum / np.maximum(present_n, 1), (len(axes[2]), len(axes[4]), len(axes[3]),
                                                              len(axes[0]) * len(axes[1])))
    return f1.reshape(*f1.shape[:3], len(axes[0]), len(axes[1])).transpose(3, 4, 0, 2, 1)


def tune_thresholds(tops: Sequence[dict | None], loci: Sequence[int], truths: Sequence,
                    grid: Mapping[str, Sequence] | None = None) -> Thresholds:
    """The Thresholds that maximise the outcome macro-F1 (`macro_f1`, rows scored by
    `scored_labels`' rules) of `rule_outcome` on validation rows; ties go to the earlier grid
    point (grid order: the fields of `grid` nested as listed, the last varying fastest).

    tops : per row its top aligned hit (`top_aligned`; a blastn hit dict with "evalue"), or None.
    loci : per row the query's number of reference loci.
    truths : per row its truth: an outcome (or "novel"), or a dict {"outcome", "gene_name"} (a
        gene hit then counts only when it names that gene).
    grid : Thresholds field -> values; default DEFAULT_GRID, and max_evalue over EVALUE_GRID
        when any top hit has an e-value (else None). Missing fields keep their default.
    """
    if not (len(tops) == len(loci) == len(truths)):
        raise ValueError(f"tops, loci and truths differ in length ({len(tops)}, {len(loci)}, {len(truths)})")
    grid = dict(DEFAULT_GRID if grid is None else grid)
    if "max_evalue" not in grid:
        has_e = any(t is not None and t.get("evalue") is not None for t in tops)
        grid["max_evalue"] = EVALUE_GRID if has_e else (None,)
    default = Thresholds()
    axes = [tuple(grid.get(f, (getattr(default, f),))) for f in _GRID_FIELDS]
    points = list(itertools.product(*axes))
    if not len(truths):
        return Thresholds(*points[0])
    values = [np.array([np.inf if v is None else float(v) for v in ax]) for ax in axes]
    scores = _grid_scores(values, _row_arrays(tops, loci, truths)).ravel()  # product order
    best = points[int(np.argmax(scores))]  # the first maximum
    return Thresholds(min_identity=best[0], min_fraction=best[1], min_similar=best[2],
                      repeat_loci=int(best[3]), max_evalue=best[4])
