"""Out of reference: what each system answers for sequences that are part of no known gene.

One evaluation run gives one section ("out_of_reference" of metrics.json, `schema.OutOfReference`):
- rows: the usual test rows of every evaluated unit (a split, or each fold of split_gene: every
  gene is then a test gene once; truth: their gene), the same rows with
  their genes masked out of the reference (the novel-gene setting, retrieval models: truth
  "novel", right when no gene is claimed; the masked index is the unit's "novel" retriever of
  `systems.Unit`; blastn's lookup lacks the same genes in its gene table and in its database,
  their spans masked with N: `ReferenceLookup.without_genes`), and generated negatives of the
  TEST part of the reference, made from the first unit's test rows and answered by its model
  (`data.negatives.negative_rows`: random, shuffled, foreign,
  intergenic, similar, repeat; each with its truth outcome; a repeat window inside an annotated
  gene is the kind REPEAT_IN_GENE, truth "repeat" all the same);
- systems: the model (its outcome, gene, outcome_confidence), "retriever_tuned" (the hybrid
  retriever's candidates -> `retrieve.outcome.candidate_outcome`) and "blastn_tuned" (blastn's
  hit statistics -> `rule_outcome`), both with `Thresholds` tuned by `tune_thresholds` per unit
  on that unit's VALIDATION rows (its validation genic rows searched with their genes, truth the gene,
  and without them, truth "novel": the retriever's index masked as in training,
  `train.evidence_sampler.training_index`, blastn's lookup without the validation genes no
  training row holds; + negatives of the validation part of the reference; evidence from the
  unit's full index, whose variants are its training rows); blastn
  runs without culling (`BLASTN_LOCI`) so that a repeat's copies count as loci, its e-value in
  the grid; RETRIEVER_DIVERGED and BLASTN_DIVERGED, the same two rules tuned on the same rows
  plus the validation genic rows' copies diverged at the calibration's nonzero rates
  (`_with_diverged`: what the model's outcome confidence was fitted on); and the floor "always
  none";
- metrics per system (`score_outcomes`): confusion of truth kind x predicted outcome; per kind
  the false gene claims (rate, Wilson 95 % interval; for REPEAT_IN_GENE also how many of them
  name a gene that holds the window), rows with gene_confidence >= CONFIDENT,
  outcome accuracy (`outcome_correct`); outcome macro-F1 (`retrieve.outcome.macro_f1` of
  `scored_labels`, as the baselines were tuned: a wrong gene is an error, a novel row counts as
  its answer's class unless that is a gene) with a cluster-bootstrap interval (clusters below);
  the model's AUROC of outcome_confidence for "outcome
  right" and its risk-coverage table (`risk_coverage`); the novel rows' share answered with no
  gene.
- "copies" in each system's metrics: the genic and novel rows split by how many reference loci
  their window has by the repeat truth's rule (`copy_scores`): a window of a gene copied at
  >= REPEAT_MIN_LOCI loci is a gene row here and would be a repeat window among the negatives;
- "per_unit", per system and unit: its genic rows answered with their gene and its novel rows
  answered with no gene (`per_unit`), the spread from one fold's model and thresholds to another's;
- "model_versus", per baseline: the model against it on the same rows (`model_versus`: rows only
  one of them gets right, the macro-F1 difference with a paired cluster-bootstrap interval); with
  a retrieval model, "model_top_candidate": how many of its gene answers name its top reference
  candidate's gene (`top_candidate_agreement`);
- with a retrieval model, "validation_model": every unit's model scored on that unit's tuning
  rows, pooled (`_validation_model`; per row in predictions/out_of_reference.validation.model.tsv):
  the figures to choose training or inference settings on, since the test rows' figures are the
  ones reported; and "validation_diverged" (`_validation_diverged`; per row in
  predictions/out_of_reference.validation_diverged.model.tsv, with its rate): the same units'
  validation genic rows' copies diverged at the calibration's nonzero rates, searched in full,
  answered by their unit's model, as `diverged_scores` scores them (own gene per rate). A change
  that keeps the validation figures but loses diverged genes shows here before the test rows.
- "diverged" (`diverged_scores`, with divergence rates): the model and the tuned rules on
  diverged copies of known genes, the split's divergence-curve rows mutated at each rate
  (`_diverged`): per rate, the rows answered with their own gene and the model minus each rule,
  with intervals. The tuned rules' thresholds are fitted on exact windows and novel genes; this
  is where the price of their identity cut-off shows.
Each unit's rows are answered by that unit's model and its baselines' thresholds (tuned on its own
validation rows, which hold other folds' test genes but never its own): no system sees a row
whose gene it was trained, calibrated or tuned on. The negatives are answered by the first unit's
model and thresholds only, so a run of one unit (`--folds 1`) and one of k folds share them.
Every row (test, novel, negatives, validation) is given WITHOUT SPLASH scores (SPLASH_COLUMNS None),
as `annotate` sees a FASTA: negatives have none, so a prompt without them must not tell the model
which rows are negatives. The clusters of the bootstrap: a gene (build:gene_name) for genic and
novel rows and for a "similar" negative (its `similar_to` gene); a negative cut from the reference
(intergenic, repeat) its 100-kb reference block (`data.negatives.reference_block`: in the bundle,
12 of the 16 test repeat windows outside genes are adjacent windows of one segmental
duplication); every other negative (generated: random, foreign, shuffled, whose source gene is
not on the row) its own. The section's "clusters" counts them per truth kind (`rows_summary`).
Writes OUT/predictions/out_of_reference.<system>.tsv.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict

import numpy as np
import polars as pl

from llamadna.constants import CALIBRATION_RATES, OUTCOMES
from llamadna.splash.scores import without_scores

log = logging.getLogger(__name__)

# Truth kinds in the order of the report: dataset test rows, the novel-gene setting, then
# data.negatives.NEGATIVE_KINDS (a test pins the two together), then the repeat windows that lie
# inside an annotated gene (`in_gene`): truth "repeat" too, reported apart since they are part of
# a gene (naming the gene that holds one claims no gene for a sequence of no gene)
REPEAT_IN_GENE = "repeat_in_gene"
TRUTH_KINDS = ("gene", "novel", "random", "shuffled", "foreign", "intergenic", "similar", "repeat",
               REPEAT_IN_GENE)
UNPARSED = "unparsed"  # a sentence whose outcome cannot be read
PRED_LABELS = (*OUTCOMES, UNPARSED)  # confusion columns
CONFIDENT = 0.5  # a gene "claimed with confidence": gene_confidence >= this
# confidence thresholds of the risk-coverage table (coverage = rows at or above, error among them)
RISK_THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(20))
Z95 = 1.959963984540054  # two-sided 95 % normal quantile (Wilson intervals)
# blastn for the baseline: BLASTN_SETTINGS without culling, so that the other copies of a repeat
# are reported and counted as loci (retrieve.align.Hit); at most max_target_seqs x max_hsps HSPs
BLASTN_LOCI = {"culling_limit": None}
# the tuned rules again, their thresholds tuned on diverged copies of the validation rows too
RETRIEVER_DIVERGED, BLASTN_DIVERGED = "retriever_tuned_diverged", "blastn_tuned_diverged"
BASELINES = {
    "retriever_tuned": "the hybrid retriever's top candidates mapped to an outcome by thresholds on "
                       "identity, aligned fraction and loci tuned on the validation rows",
    RETRIEVER_DIVERGED: "the same rule with its thresholds tuned on the same rows plus their genic "
                        "rows' copies diverged at the calibration's rates ("
                        + ", ".join(f"{100 * r:g} %" for r in CALIBRATION_RATES if r > 0)
                        + "), as the model's outcome confidence was fitted",
    "blastn_tuned": "blastn's top hit (no culling) mapped to an outcome by thresholds on e-value, "
                    "identity, aligned fraction and loci tuned on the validation rows",
    BLASTN_DIVERGED: "the same blastn rule tuned on the same widened rows as " + RETRIEVER_DIVERGED,
}


# ------------------------------------------------------------------------------ pure metrics


def wilson_interval(k: int, n: int, z: float = Z95) -> list[float] | None:
    """Wilson score interval [low, high] of a proportion k / n (95 % by default); None for n = 0."""
    if n <= 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def _rate(k: int, n: int) -> tuple[float | None, list[float] | None]:
    return (k / n if n else None), wilson_interval(k, n)


def outcome_label(pred: Mapping) -> str:
    """A prediction's outcome (OUTCOMES), read from its sentence where the system gives none;
    UNPARSED when the sentence decides none."""
    from llamadna.data.template import outcome_of

    out = pred.get("outcome") or outcome_of(pred.get("annotation"))
    return out if out in OUTCOMES else UNPARSED


def confusion(kinds: Sequence[str], outcomes: Sequence[str]) -> dict:
    """Truth kind (rows, TRUTH_KINDS present) x predicted outcome (columns, PRED_LABELS) counts."""
    rows = [k for k in TRUTH_KINDS if k in set(kinds)]
    matrix = np.zeros((len(rows), len(PRED_LABELS)), dtype=int)
    for k, o in zip(kinds, outcomes):
        matrix[rows.index(k), PRED_LABELS.index(o)] += 1
    return {"rows": rows, "columns": list(PRED_LABELS), "matrix": matrix.tolist()}


def kind_scores(kinds: Sequence[str], outcomes: Sequence[str], right: Sequence[bool],
                gene_confidence: Sequence[float | None] | None = None) -> dict[str, dict]:
    """Per truth kind: rows; false gene claims (outcome gene where the truth is not a gene of the
    reference: every kind but "gene"; for "gene" rows None) with rate and Wilson interval; rows
    whose gene_confidence >= CONFIDENT over all its rows (a None confidence counts as below; None
    for a system without confidences: gene_confidence None); outcome accuracy (`right`) with its
    Wilson interval."""
    out = {}
    conf = list(gene_confidence) if gene_confidence is not None else None
    for kind in [k for k in TRUTH_KINDS if k in set(kinds)]:
        idx = [i for i, k in enumerate(kinds) if k == kind]
        n = len(idx)
        claims = sum(outcomes[i] == "gene" for i in idx) if kind != "gene" else None
        confident = (sum(conf[i] is not None and conf[i] >= CONFIDENT for i in idx)
                     if conf is not None else None)
        hits = sum(bool(right[i]) for i in idx)
        claim_rate, claim_iv = _rate(claims, n) if claims is not None else (None, None)
        conf_rate, conf_iv = _rate(confident, n) if confident is not None else (None, None)
        acc, acc_iv = _rate(hits, n)
        out[kind] = {"rows": n, "gene_claims": claims, "gene_claim_rate": claim_rate,
                     "gene_claim_interval": claim_iv, "confident_gene": confident,
                     "confident_gene_rate": conf_rate, "confident_gene_interval": conf_iv,
                     "accuracy": acc, "accuracy_interval": acc_iv}
    return out


def risk_coverage(right: Sequence[bool], confidence: Sequence[float | None],
                  thresholds: Sequence[float] = RISK_THRESHOLDS) -> list[dict]:
    """At each confidence threshold: rows answered (confidence >= threshold; rows without a
    confidence are left out), coverage (their share) and error (1 - accuracy among them; None
    when none is left). Coverage never grows with the threshold."""
    pairs = [(bool(r), float(c)) for r, c in zip(right, confidence) if c is not None]
    if not pairs:
        return []
    ok = np.array([r for r, _ in pairs], dtype=bool)
    conf = np.array([c for _, c in pairs])
    points = []
    for t in thresholds:
        kept = conf >= t
        n = int(kept.sum())
        points.append({"threshold": float(t), "rows": n, "coverage": n / len(pairs),
                       "error": float(1 - ok[kept].mean()) if n else None})
    return points


def macro_f1_interval(outcomes: Sequence[str | None], genes: Sequence[str | None],
                      truths: Sequence[Mapping], clusters: Sequence, n_boot: int,
                      seed: int) -> tuple[float | None, list[float] | None]:
    """Outcome macro-F1 (`retrieve.outcome.macro_f1` of `scored_labels`: a wrong gene is wrong, a
    novel row counts as its answer's class when it names no gene) and its cluster-bootstrap 95 %
    interval; (None, None) without rows."""
    from llamadna.evaluate.stats import cluster_bootstrap_ci
    from llamadna.retrieve.outcome import macro_f1, scored_labels

    if not truths:
        return None, None
    pred, truth = scored_labels(outcomes, genes, truths)
    p, t = np.asarray(pred, dtype=object), np.asarray(truth, dtype=object)
    point, lo, hi = cluster_bootstrap_ci((p, t), list(clusters), lambda a, b: macro_f1(list(a), list(b)),
                                         n_boot, seed)
    return point, [lo, hi]


def macro_f1_difference(first: tuple[Sequence, Sequence], second: tuple[Sequence, Sequence],
                        truths: Sequence[Mapping], clusters: Sequence, n_boot: int,
                        seed: int) -> tuple[float | None, list[float] | None]:
    """Outcome macro-F1 of the `first` system's answers (outcomes, genes) minus the `second`'s on
    the same rows, with a paired cluster-bootstrap 95 % interval (each resample scores both on
    the same rows); (None, None) without rows."""
    from llamadna.evaluate.stats import cluster_bootstrap_ci
    from llamadna.retrieve.outcome import macro_f1, scored_labels

    if not truths:
        return None, None
    cols = []
    for outcomes, genes in (first, second):
        pred, truth = scored_labels(outcomes, genes, truths)
        cols += [np.asarray(pred, dtype=object), np.asarray(truth, dtype=object)]
    point, lo, hi = cluster_bootstrap_ci(
        tuple(cols), list(clusters),
        lambda pa, ta, pb, tb: macro_f1(list(pa), list(ta)) - macro_f1(list(pb), list(tb)), n_boot, seed)
    return point, [lo, hi]


def _answers(preds: Sequence[Mapping]) -> tuple[list[str], list[str | None], list[str | None]]:
    """A system's outcome labels (PRED_LABELS), its answers (the same, None where the sentence
    decides none) and its genes."""
    labels = [outcome_label(p) for p in preds]
    return labels, [o if o != UNPARSED else None for o in labels], [p.get("gene") for p in preds]


def _right(rows: Sequence[Mapping], preds: Sequence[Mapping]) -> list[bool]:
    """Per row, whether the system's answer is right (`outcome_correct` against the row's truth)."""
    from llamadna.retrieve.outcome import outcome_correct

    _, answers, genes = _answers(preds)
    return [bool(outcome_correct(o, g, r["truth"])) for o, g, r in zip(answers, genes, rows)]


def model_versus(rows: Sequence[Mapping], model: Sequence[Mapping], other: Sequence[Mapping],
                 n_boot: int, seed: int) -> dict:
    """The model against another system on the same rows (`schema.Versus`): the rows only the
    model gets right, those only the other gets right, and the macro-F1 difference (model minus
    other) with its paired cluster-bootstrap interval."""
    truths, clusters = [r["truth"] for r in rows], [r["cluster"] for r in rows]
    a, b = _answers(model)[1:], _answers(other)[1:]
    right_a, right_b = _right(rows, model), _right(rows, other)
    diff, iv = macro_f1_difference(a, b, truths, clusters, n_boot, seed)
    return {"model_only": sum(x and not y for x, y in zip(right_a, right_b)),
            "other_only": sum(y and not x for x, y in zip(right_a, right_b)),
            "macro_f1_difference": diff, "macro_f1_difference_interval": iv}


def top_candidate_agreement(preds: Sequence[Mapping]) -> dict:
    """Of a retrieval model's gene answers, how many name its top reference candidate's gene
    (`evidence_gene`): how often it decides a gene the top hit does not give."""
    genes = [p for p in preds if outcome_label(p) == "gene"]
    return {"gene_answers": len(genes),
            "top_candidate": sum(p.get("gene") is not None and p.get("gene") == p.get("evidence_gene")
                                 for p in genes)}


def _gene_novel_counts(rows: Sequence[Mapping], preds: Sequence[Mapping],
                       group: Callable[[Mapping], str | None]) -> dict[str, dict[str, list[int]]]:
    """Per group (`group(row)`; None leaves the row out), one system's genic rows answered with
    their gene and novel rows answered with no gene, as [right, rows]; other kinds left out."""
    out: dict[str, dict[str, list[int]]] = {}
    for r, ok in zip(rows, _right(rows, preds)):
        if r["kind"] not in ("gene", "novel") or (key := group(r)) is None:
            continue
        cell = out.setdefault(key, {"gene": [0, 0], "novel_no_gene": [0, 0]})
        count = cell["gene" if r["kind"] == "gene" else "novel_no_gene"]
        count[0] += ok
        count[1] += 1
    return out


def per_unit(rows: Sequence[Mapping], preds: Sequence[Mapping]) -> dict[str, dict[str, list[int]]]:
    """Per unit (the rows' "unit": a fold), one system's genic test rows answered with their gene
    and novel rows answered with no gene, as [right, rows] (`schema.UnitScores`): how much the
    figures move from one fold's model and thresholds to another's."""
    return _gene_novel_counts(rows, preds, lambda r: r.get("unit"))


def copy_scores(rows: Sequence[Mapping], preds: Sequence[Mapping]) -> dict[str, dict[str, list[int]]] | None:
    """The genic and novel rows split by their window's reference copies (`copies`, the repeat
    truth's loci: `data.negatives.ReferenceCopies`): "multi_copy" (>= REPEAT_MIN_LOCI loci, what
    a repeat window would be called) and "single_copy", each with its genic rows answered with
    their gene and its novel rows answered with no gene, as [right, rows] (`schema.CopyScores`):
    on multi-copy windows the gene field and the repeat outcome ask opposite answers of the same
    sequence. None when no row carries `copies`."""
    from llamadna.constants import REPEAT_MIN_LOCI

    def group(r: Mapping) -> str | None:
        if r.get("copies") is None:
            return None
        return "multi_copy" if r["copies"] >= REPEAT_MIN_LOCI else "single_copy"

    got = _gene_novel_counts(rows, preds, group)
    if not got:
        return None
    return {part: got.get(part) or {"gene": [0, 0], "novel_no_gene": [0, 0]}
            for part in ("multi_copy", "single_copy")}


def score_outcomes(rows: Sequence[Mapping], preds: Sequence[Mapping], n_boot: int, seed: int) -> dict:
    """The out-of-reference metrics of one system (`schema.OutcomeScores`).

    rows : {"kind" (TRUTH_KINDS), "truth" ({"outcome", "gene_name"}: `outcome_correct`'s),
        "cluster", for REPEAT_IN_GENE rows "in_gene": the genes holding it, for genic and novel
        rows optionally "copies": their window's reference loci, `copy_scores`} per row.
    preds : {"outcome" (or "annotation" to read it from), "gene", "outcome_confidence",
        "gene_confidence"} per row (the confidences None or absent for a system without them).
    """
    kinds = [r["kind"] for r in rows]
    outcomes, answers, genes = _answers(preds)
    right = _right(rows, preds)
    conf = [p.get("outcome_confidence") for p in preds]
    has_conf = any(c is not None for c in conf)  # decided once per system
    gene_conf = [p.get("gene_confidence") for p in preds] if has_conf else None
    f1, f1_iv = macro_f1_interval(answers, genes, [r["truth"] for r in rows],
                                  [r["cluster"] for r in rows], n_boot, seed)
    novel = [i for i, k in enumerate(kinds) if k == "novel"]
    no_gene, no_gene_iv = _rate(sum(outcomes[i] not in ("gene", UNPARSED) for i in novel), len(novel))
    per_kind = kind_scores(kinds, outcomes, right, gene_conf)
    if REPEAT_IN_GENE in per_kind:  # of its gene claims, those naming a gene that holds the window
        per_kind[REPEAT_IN_GENE]["holding_gene_claims"] = sum(
            o == "gene" and g in r.get("in_gene", ()) for o, g, r in zip(outcomes, genes, rows)
            if r["kind"] == REPEAT_IN_GENE)
    out = {"rows": len(rows), "confusion": confusion(kinds, outcomes),
           "kinds": per_kind, "macro_f1": f1,
           "macro_f1_interval": f1_iv, "novel_no_gene": no_gene, "novel_no_gene_interval": no_gene_iv}
    if (copies := copy_scores(rows, preds)) is not None:
        out["copies"] = copies
    if has_conf:
        from llamadna.evaluate.stats import auroc

        out["auroc"] = auroc([float(r) for r in right], conf)
        out["risk_coverage"] = risk_coverage(right, conf)
    return out


def diverged_scores(rates: Sequence[float], rows: Sequence[Mapping], preds: Mapping[str, Sequence[Mapping]],
                    n_boot: int, seed: int) -> dict:
    """The "diverged" entry (`schema.DivergedGenes`): per system and divergence rate, the
    diverged copies of known genes answered with their own gene (outcome gene, the right gene)
    with a cluster-bootstrap 95 % interval, the outcomes given instead, and the model minus each
    other system with a paired interval (the same resamples score both).

    rows : {"rate", "truth" ({"outcome": "gene", "gene_name"}), "cluster"} per diverged row.
    preds : system -> one prediction per row (as `score_outcomes`'); "model" among them.
    """
    from llamadna.evaluate.stats import cluster_bootstrap_ci

    def add(entry: dict, key: str, values: tuple, clusters: list, statistic) -> None:
        """Appends the statistic of `values` and its interval (None for both without rows)."""
        point, lo, hi = (cluster_bootstrap_ci(values, clusters, statistic, n_boot, seed) if clusters
                         else (None, None, None))
        entry[key].append(point)
        entry["interval"].append(None if point is None else [lo, hi])

    right = {name: np.asarray(_right(rows, p), dtype=float) for name, p in preds.items()}
    labels = {name: _answers(p)[0] for name, p in preds.items()}
    systems: dict[str, dict] = {name: {"gene": [], "interval": [], "outcomes": []} for name in preds}
    versus: dict[str, dict] = {name: {"difference": [], "interval": []} for name in preds if name != "model"}
    for rate in rates:
        idx = [i for i, r in enumerate(rows) if r["rate"] == rate]
        clusters = [rows[i]["cluster"] for i in idx]
        for name, entry in systems.items():
            add(entry, "gene", right[name][idx], clusters, np.mean)
            got = [labels[name][i] for i in idx]
            entry["outcomes"].append({o: got.count(o) for o in PRED_LABELS if o in got})
        for name, entry in versus.items():
            add(entry, "difference", (right["model"][idx], right[name][idx]), clusters,
                lambda a, b: float(np.mean(a) - np.mean(b)))
    return {"rates": list(rates), "rows": len(rows) // max(len(rates), 1), "systems": systems,
            "model_versus": versus}


# ------------------------------------------------------------------------------ baselines


def lookup_top(res: Mapping) -> dict | None:
    """A lookup result (`baselines.LOOKUP_FIELDS`) as the top hit `rule_outcome` reads (None:
    unmapped)."""
    if not res.get("mapped") or res.get("identity") is None:
        return None
    return {"identity": res["identity"], "aligned_fraction": res["aligned_fraction"],
            "evalue": res.get("evalue"), "kind": res.get("kind") or "intergenic",
            "gene": res.get("gene"), "chrom": res.get("chrom")}


def tuned_rule(tops: Sequence[dict | None], loci: Sequence[int], truths: Sequence[Mapping]):
    """`Thresholds` tuned on validation tops/loci/truths (`retrieve.outcome.tune_thresholds`,
    its default grid: with the e-value cut-offs where the tops carry e-values, i.e. blastn's)."""
    from llamadna.retrieve.outcome import tune_thresholds

    return tune_thresholds(list(tops), list(loci), list(truths))


def rule_predictions(tops: Sequence[dict | None], loci: Sequence[int], thresholds) -> list[dict]:
    """rule_outcome per row, the top hit's gene where the outcome is a gene."""
    from llamadna.retrieve.outcome import rule_outcome

    out = []
    for top, n in zip(tops, loci):
        outcome = rule_outcome(top, n, thresholds)
        out.append({"outcome": outcome, "gene": top.get("gene") if outcome == "gene" and top else None})
    return out


def evidence_tops(evidence: Sequence[Sequence[dict]]) -> tuple[list[dict | None], list[int]]:
    """Per row of retriever candidates: `top_aligned` and the query's loci (0 without any)."""
    from llamadna.retrieve.outcome import query_loci, top_aligned

    return [top_aligned(c) for c in evidence], [query_loci(c) for c in evidence]


def lookup_tops(results: Sequence[Mapping]) -> tuple[list[dict | None], list[int]]:
    """Per lookup result: `lookup_top` and its loci (0 unmapped)."""
    return [lookup_top(r) for r in results], [int(r.get("loci") or 0) for r in results]


def write_outcome_table(path, rows: Sequence[Mapping], preds: Sequence[Mapping]) -> None:
    """One system's out-of-reference predictions beside the truth, as TSV (`copies`: a genic or
    novel row's reference loci, empty for the others and where not counted; `cluster`: the row's
    bootstrap cluster, so that `llamadna compare` can compute an interval again; `rate`: a
    diverged copy's divergence rate, a column only where the rows carry one)."""
    rates = {"rate": [r["rate"] for r in rows]} if rows and "rate" in rows[0] else {}
    pl.DataFrame({
        "id": [str(r["id"]) for r in rows], "kind": [r["kind"] for r in rows],
        "truth": [r["truth"]["outcome"] for r in rows],
        "truth_gene": [r["truth"].get("gene_name") for r in rows],
        "outcome": [outcome_label(p) for p in preds], "gene": [p.get("gene") for p in preds],
        "outcome_confidence": [p.get("outcome_confidence") for p in preds],
        "gene_confidence": [p.get("gene_confidence") for p in preds],
        "copies": [r.get("copies") for r in rows], "cluster": [r.get("cluster") for r in rows], **rates,
    }, schema_overrides={"truth_gene": pl.Utf8, "gene": pl.Utf8, "outcome_confidence": pl.Float64,
                         "gene_confidence": pl.Float64, "copies": pl.Int64, "cluster": pl.Utf8,
                         **({"rate": pl.Float64} if rates else {})},
    ).write_csv(path, separator="\t")


def thresholds_dict(t) -> dict:
    """A Thresholds as plain JSON."""
    return asdict(t)


# ------------------------------------------------------------------------------ one run


def _genic(rows: Sequence[Mapping], kind: str, unit: str | None = None,
           copies: Callable[[str, str], int] | None = None) -> list[dict]:
    """Dataset rows as out-of-reference rows: truth their gene ("gene") or no gene ("novel");
    `unit`: the unit whose test rows they are (`per_unit`); `copies` (`ReferenceCopies`): counts
    each window's reference loci (`copy_scores`)."""
    from llamadna.evaluate.predict import row_id

    outcome = "gene" if kind == "gene" else "novel"
    return [{"id": f"{kind}:{row_id(r)}", "kind": kind, "cluster": f"{r['build']}:{r['gene_name']}",
             "unit": unit, "copies": copies(r["Sequence"], r["build"]) if copies else None,
             "truth": {"outcome": outcome, "gene_name": r["gene_name"]}} for r in rows]


def _negative(negs: Sequence[Mapping], part: str) -> list[dict]:
    """Negative rows as out-of-reference rows, with their bootstrap cluster (`_negative_cluster`);
    a repeat inside a gene of kind REPEAT_IN_GENE, with the genes that hold it (`in_gene`)."""
    return [{"id": f"{part}:{r['id']}",
             "kind": REPEAT_IN_GENE if r["kind"] == "repeat" and r.get("in_gene") else r["kind"],
             "cluster": _negative_cluster(r, part),
             "truth": {"outcome": r["outcome"], "gene_name": None},
             "in_gene": r["in_gene"].split(",") if r.get("in_gene") else []} for r in negs]


def _negative_cluster(r: Mapping, part: str) -> str:
    """A negative's bootstrap cluster: a "similar" chimera its gene's (build:gene); a window cut
    from the reference (`REFERENCE_KINDS`) its 100-kb block's (`reference_block`: adjacent windows
    of one locus, e.g. a segmental duplication, are one draw, not many); a generated one its own."""
    from llamadna.data.negatives import REFERENCE_KINDS, reference_block

    if r.get("similar_to"):
        return f"{r['build']}:{r['similar_to']}"
    if r["kind"] in REFERENCE_KINDS and r.get("start0") is not None:
        return f"{part}:{reference_block(r['build'], r['chrom'], r['start0'])}"
    return f"{part}:{r['id']}"


def _held_genes(unit) -> list[str]:
    """The unit's test genes that no training row holds (what its novel setting masks)."""
    from llamadna.train.evidence_sampler import split_genes

    return sorted(split_genes(unit.test_rows) - split_genes(unit.train_rows))


def _novel_rows(unit) -> list[dict]:
    """The unit's test rows whose gene its novel setting masks (split_gene: all; split_random:
    those of genes no training row holds)."""
    held = set(_held_genes(unit))
    return without_scores([r for r in unit.test_rows
                           if r.get("gene_name") in held or r.get("gene_id") in held])


def _val_held_genes(unit, genic: Sequence[Mapping]) -> list[str]:
    """The validation genes that no training row holds (what the novel tuning rows mask)."""
    from llamadna.train.evidence_sampler import split_genes

    return sorted(split_genes(genic) - split_genes(unit.train_rows))


def _validation(ctx, unit, data_dir, aligners=None) -> tuple[list[dict], list[dict], list[dict]]:
    """The tuning rows: the unit's validation genic rows (at most OOR_VAL_ROWS, or cfg.limit;
    seeded) and negatives of the validation part of the reference (`aligners`: `negative_rows`'),
    searched in full; the same genic rows searched without their genes; and the truths of both,
    in that order."""
    from llamadna.data.negatives import negative_rows
    from llamadna.data.splits import subsample
    from llamadna.evaluate.config import OOR_VAL_ROWS

    cfg = ctx.cfg
    n = OOR_VAL_ROWS if cfg.limit is None else min(OOR_VAL_ROWS, cfg.limit)  # --limit: quick runs
    genic = without_scores(subsample(ctx.rows(unit.column, "val"), n, cfg.seed))
    negs = without_scores(negative_rows(data_dir, genic, "val", per_kind=cfg.tuning_negatives_per_kind,
                                   seed=cfg.seed + 1, aligners=aligners))
    truths = ([{"outcome": "gene", "gene_name": r["gene_name"]} for r in genic]
              + [{"outcome": r["outcome"], "gene_name": None} for r in negs]
              + [{"outcome": "novel", "gene_name": r["gene_name"]} for r in genic])
    return genic + negs, list(genic), truths


def _model_rows(units, negs, copies=None) -> tuple[list[dict], list[dict]]:
    """The out-of-reference rows and the model's predictions: every unit's test rows (its own
    model), their novel setting (retrieval models), the negatives (the first unit's model);
    `copies`: `_genic`'s."""
    from llamadna.evaluate.systems import MODEL

    rows, preds = [], []
    retrieval = units[0].ctx.reference is not None
    for u in units:
        rows += _genic(u.test_rows, "gene", u.column, copies)
        preds += u.annotate(MODEL, without_scores(u.test_rows))
        if retrieval:
            novel = _novel_rows(u)
            rows += _genic(novel, "novel", u.column, copies)
            preds += u.annotate(MODEL, novel, setting="novel")
    rows += _negative(negs, "test")
    preds += units[0].annotate(MODEL, without_scores(negs))
    return rows, preds


VAL_NOVEL = "val_novel"  # the unit's setting of the novel tuning rows (`_val_novel_retriever`)


def _val_novel_retriever(unit) -> None:
    """Gives the unit a retriever of setting VAL_NOVEL: its index as in training
    (`training_index`: validation and test genes masked out, its training rows as variants)."""
    from llamadna.retrieve.retriever import open_retriever
    from llamadna.train.evidence_sampler import training_index

    key = f"retriever:{VAL_NOVEL}"  # read by Unit.retriever / Unit.annotator
    if key not in unit.cache:
        index = training_index(unit.ctx.reference, unit.ctx.dataset, unit.column, unit.train_rows)
        unit.cache[key] = open_retriever(index, k=unit.ctx.models.train_config["evidence_k"])


def _validation_answers(unit, full: Sequence[dict], novel: Sequence[dict],
                        copies=None) -> tuple[list[dict], list[dict]]:
    """One unit's tuning rows of `_validation` (full: genic rows then negatives; novel: the genic
    rows again, searched on the VAL_NOVEL index) as out-of-reference rows, ids prefixed with the
    unit (units draw negatives alike), and its own model's answers to them; `copies`: `_genic`'s."""
    from llamadna.evaluate.systems import MODEL

    genic, negs = full[:len(novel)], full[len(novel):]
    rows = (_genic(genic, "gene", unit.column, copies) + _negative(negs, "val")
            + _genic(novel, "novel", unit.column, copies))
    rows = [{**r, "id": f"{unit.column}:{r['id']}"} for r in rows]
    _val_novel_retriever(unit)
    preds = unit.annotate(MODEL, list(full)) + unit.annotate(MODEL, list(novel), setting=VAL_NOVEL)
    return rows, preds


def _validation_model(units, tuning: Mapping, n_boot: int, seed: int,
                      copies=None) -> tuple[dict, list[dict], list[dict]]:
    """The model's out-of-reference scores (`score_outcomes`) on every unit's tuning rows
    (`tuning`: {unit column: `_validation`'s full rows, novel rows, truths}), each unit answered
    by its own model (`_validation_answers`), pooled; and those rows and answers. Rows of the
    split's validation parts, never its test rows: the figures a model's training or inference
    settings may be chosen on. The tuned rules are fitted on these rows (their scores here would
    be in-sample) and the outcome confidence is calibrated on validation rows too (its AUROC here
    is in-sample). `copies`: `_genic`'s."""
    rows, preds = [], []
    for u in units:
        full, novel, _ = tuning[u.column]
        r, p = _validation_answers(u, full, novel, copies)
        rows += r
        preds += p
    return score_outcomes(rows, preds, n_boot, seed), rows, preds


VALIDATION_DIVERGED_RATES = tuple(r for r in CALIBRATION_RATES if r > 0)


def _validation_copies(unit, genic: Sequence[dict]) -> dict[float, list[dict]]:
    """The unit's validation genic rows (`_validation`'s) diverged at VALIDATION_DIVERGED_RATES,
    per rate: nested mutations seeded by row as the divergence curves' (`divergence.mutated`),
    no SPLASH scores, as every tuning row."""
    from llamadna.evaluate.divergence import mutated

    return mutated(unit, list(genic), list(VALIDATION_DIVERGED_RATES), {})


def _validation_diverged(units, tuning: Mapping, n_boot: int,
                         seed: int) -> tuple[dict, list[dict], list[dict]]:
    """The "validation_diverged" entry (`diverged_scores` of the model alone): every unit's
    validation genic rows' copies (`_validation_copies`), searched in full, truth their own gene,
    answered by that unit's model, pooled; and those rows (with their "rate"; ids prefixed with the
    unit and rate) and answers. Validation rows, never test rows: what a change is chosen on."""
    from llamadna.evaluate.systems import MODEL

    rows, preds = [], []
    for u in units:
        full, novel, _ = tuning[u.column]
        for rate, copies in _validation_copies(u, full[:len(novel)]).items():
            rows += [{**r, "id": f"{u.column}:{rate:g}:{r['id']}", "rate": rate}
                     for r in _genic(copies, "gene", u.column)]
            preds += u.annotate(MODEL, copies)
    return diverged_scores(VALIDATION_DIVERGED_RATES, rows, {"model": preds}, n_boot, seed), rows, preds


def _retriever_baseline(units, negs, tuning, diverged=()) -> tuple[list[dict], dict, list[dict]]:
    """A retriever rule's predictions on the rows of `_model_rows` (same order), its thresholds
    per unit, each tuned on that unit's rows of `tuning` ({unit column: full and novel tuning
    rows and truths: `_validation`'s for retriever_tuned, `_with_diverged`'s for
    RETRIEVER_DIVERGED}; the negatives with the first unit's), and its predictions on the
    diverged copies (`_diverged`: each unit's rows with that unit's thresholds)."""
    from llamadna.evaluate.systems import MODEL

    def evidence(unit, rows, setting="full"):  # searched once per sequence, shared with the model's
        return [r["evidence"] for r in unit.evidence(unit.annotator(MODEL, setting), rows, setting)]

    preds, thresholds = [], {}
    for u in units:
        full, novel, truths = tuning[u.column]
        _val_novel_retriever(u)
        found_val = evidence(u, full) + evidence(u, novel, VAL_NOVEL)
        thresholds[u.column] = tuned_rule(*evidence_tops(found_val), truths)
        found = evidence(u, u.test_rows) + evidence(u, _novel_rows(u), "novel")
        preds += rule_predictions(*evidence_tops(found), thresholds[u.column])
    first = units[0]
    preds += rule_predictions(*evidence_tops(evidence(first, list(negs))), thresholds[first.column])
    div = [p for u, _, rows in diverged
           for p in rule_predictions(*evidence_tops(evidence(u, rows)), thresholds[u.column])]
    return preds, thresholds, div


def _blastn_baseline(units, negs, tunings: Mapping[str, Mapping], data_dir,
                     diverged=()) -> dict[str, tuple[list[dict], dict, list[dict]]]:
    """blastn's rule tuned per unit on each of `tunings` (name -> {unit column: full and novel
    tuning rows and truths}, as `_retriever_baseline`'s): per name, its predictions on the rows
    of `_model_rows` (same order), its thresholds per unit and its predictions on the diverged
    copies. Every (sequence, build) is searched once per database (the full reference, or one
    with a set of genes masked)."""
    from llamadna.evaluate.baselines import ReferenceLookup
    from llamadna.retrieve.align import BlastnAligner

    lookup = ReferenceLookup(data_dir, [], "", aligner=BlastnAligner(**BLASTN_LOCI),
                             variants_name="none (outcomes only)")
    # a generated sequence of no build (random, shuffled, foreign) is searched on the build most
    # of the first unit's test rows have (the rows the negatives are made from)
    builds = [r["build"] for r in units[0].test_rows]
    default = max(lookup.builds, key=builds.count)
    masked: dict[tuple, object] = {(): lookup}
    found: dict[tuple, dict] = {}  # masked genes -> (sequence, build) -> lookup result

    def tops(genes, rows):  # the database without `genes`, each query searched once
        key = tuple(genes)
        if key not in masked:
            masked[key] = lookup.without_genes(list(key))
        lk, store = masked[key], found.setdefault(key, {})
        queries = [(r["Sequence"], r.get("build") or default) for r in rows]
        if todo := [q for q in dict.fromkeys(queries) if q not in store]:
            store.update(zip(todo, lk.lookup_many([q for q, _ in todo], [b for _, b in todo])))
        return lookup_tops([store[q] for q in queries])

    retrieval = units[0].ctx.reference is not None
    out = {}
    for name, tuning in tunings.items():
        preds, thresholds = [], {}
        for u in units:
            full, novel, truths = tuning[u.column]
            val_tops, val_loci = tops((), full)
            t, n = tops(_val_held_genes(u, novel), novel)
            thresholds[u.column] = tuned_rule(val_tops + t, val_loci + n, truths)
            found_tops, found_loci = tops((), u.test_rows)
            if retrieval:
                t, n = tops(_held_genes(u), _novel_rows(u))
                found_tops, found_loci = found_tops + t, found_loci + n
            preds += rule_predictions(found_tops, found_loci, thresholds[u.column])
        preds += rule_predictions(*tops((), list(negs)), thresholds[units[0].column])
        div = [p for u, _, rows in diverged for p in rule_predictions(*tops((), rows), thresholds[u.column])]
        out[name] = preds, thresholds, div
    return out


def _baselines(units, negs, tuning, diverged, data_dir) -> tuple[dict, dict, dict]:
    """The tuned rules (BASELINES) that this run can give: per name, their predictions on the rows
    of `_model_rows`, their thresholds per unit and their predictions on the diverged copies."""
    got = {}
    widened = {u.column: _with_diverged(u, *tuning[u.column]) for u in units}
    if units[0].ctx.reference is not None:
        got["retriever_tuned"] = _retriever_baseline(units, negs, tuning, diverged)
        got[RETRIEVER_DIVERGED] = _retriever_baseline(units, negs, widened, diverged)
    if shutil.which("blastn") and shutil.which("makeblastdb"):
        got.update(_blastn_baseline(units, negs, {"blastn_tuned": tuning, BLASTN_DIVERGED: widened},
                                    data_dir, diverged))
    else:
        log.warning("out of reference: BLAST+ not installed, no blastn baseline")
    order = [n for n in BASELINES if n in got]  # the report's order
    return ({n: got[n][0] for n in order}, {n: got[n][1] for n in order}, {n: got[n][2] for n in order})


def _with_diverged(unit, full: Sequence[dict], novel: Sequence[dict],
                   truths: Sequence[Mapping]) -> tuple[list[dict], list[dict], list[dict]]:
    """A unit's tuning rows (`_validation`'s) with its validation genic rows' copies diverged at
    the calibration's nonzero rates (`constants.CALIBRATION_RATES`, nested mutations seeded
    by row as the divergence curves'), searched in full (truth their gene) and without their
    genes (truth "novel"): the inputs the model's outcome confidence was fitted on."""
    genic, k = list(full[:len(novel)]), len(full)
    per_rate = _validation_copies(unit, genic)
    copies = [r for rows in per_rate.values() for r in rows]
    gene_truths, novel_truths = list(truths[:len(genic)]), list(truths[k:])
    return ([*full, *copies], [*novel, *copies],
            [*truths[:k], *gene_truths * len(per_rate), *novel_truths, *novel_truths * len(per_rate)])


def _diverged(ctx, units: Sequence) -> list[tuple]:
    """The split's divergence rows (`evaluate.divergence`: the curves' seeded subsample of the
    pooled test rows, nested mutations at every rate of cfg.divergence_rates), without SPLASH
    scores as every row here: [(unit, rate, its rows at that rate)]; [] without rates."""
    from llamadna.evaluate.divergence import divergence_subsample, mutated

    rates = list(ctx.cfg.divergence_rates)
    if not rates:
        return []
    out = []
    for u, idx in zip(units, divergence_subsample(ctx.cfg, [len(u.test_rows) for u in units])):
        if len(idx):
            per_rate = mutated(u, [u.test_rows[i] for i in idx], rates, {})  # {}: SPLASH null
            out += [(u, rate, per_rate[rate]) for rate in rates]
    return out


def _diverged_truths(diverged: Sequence[tuple]) -> list[dict]:
    """`_diverged`'s rows as `diverged_scores` reads them: truth their own gene."""
    return [{"rate": rate, "cluster": f"{r['build']}:{r['gene_name']}",
             "truth": {"outcome": "gene", "gene_name": r["gene_name"]}}
            for _, rate, rows in diverged for r in rows]


def out_of_reference(ctx, units: Sequence) -> dict:
    """The "out_of_reference" section (`schema.OutOfReference`) of one evaluation: the model, the
    tuned baselines and the floor on every unit's test rows and their novel setting, each unit
    with its own model and its baselines' thresholds tuned on its own validation rows, and on
    negatives of the test part of the reference made from the first unit's test rows (its model
    and thresholds); and the model and the rules on diverged copies of the test rows (`_diverged`).
    `units`: the evaluated units of one split (`systems.Unit`; module doc)."""
    from llamadna.data.negatives import ReferenceCopies, negative_rows
    from llamadna.data.paths import default_data_dir
    from llamadna.evaluate.systems import MODEL

    cfg, first = ctx.cfg, units[0]
    data_dir = cfg.data_dir or default_data_dir()
    copies = ReferenceCopies(data_dir)  # its aligners serve the negatives' repeat windows too
    negs = negative_rows(data_dir, first.test_rows, "test", per_kind=cfg.negatives_per_kind, seed=cfg.seed,
                         aligners=copies.aligner)
    rows, model_preds = _model_rows(units, negs, copies)
    tuning = {u.column: _validation(ctx, u, data_dir, copies.aligner) for u in units}
    diverged = _diverged(ctx, units)
    preds, thresholds, div_preds = _baselines(units, negs, tuning, diverged, data_dir)
    preds = {"model": model_preds, **preds}
    div_preds = {"model": [p for u, _, r in diverged for p in u.annotate(MODEL, r)], **div_preds}
    systems, notes = {}, {}
    for name, p in preds.items():
        write_outcome_table(ctx.out / "predictions" / f"out_of_reference.{name}.tsv", rows, p)
        systems[name] = score_outcomes(rows, p, cfg.n_boot, cfg.seed)
        notes[name] = BASELINES.get(name, "the model's outcome, gene and calibrated outcome confidence")
    validation = {}
    if ctx.reference is not None:  # a retrieval model: its scores on every unit's tuning rows
        scores, val_rows, val_preds = _validation_model(units, tuning, cfg.n_boot, cfg.seed, copies)
        write_outcome_table(ctx.out / "predictions" / "out_of_reference.validation.model.tsv", val_rows,
                            val_preds)
        validation["validation_model"] = scores
        scores, val_rows, val_preds = _validation_diverged(units, tuning, cfg.n_boot, cfg.seed)
        write_outcome_table(ctx.out / "predictions" / "out_of_reference.validation_diverged.model.tsv",
                            val_rows, val_preds)
        validation["validation_diverged"] = scores
        validation["model_top_candidate"] = top_candidate_agreement(model_preds)
    versus = {name: model_versus(rows, model_preds, p, cfg.n_boot, cfg.seed)
              for name, p in preds.items() if name != "model"}
    floor = score_outcomes(rows, [{"outcome": "none"}] * len(rows), cfg.n_boot, cfg.seed)
    kinds = [r["kind"] for r in rows]
    log.info("out of reference: %d rows (%s)", len(rows), ", ".join(f"{k} {kinds.count(k)}"
                                                                    for k in TRUTH_KINDS if k in kinds))
    return {"split": first.split, "units": [u.column for u in units],
            "rows": {k: kinds.count(k) for k in TRUTH_KINDS if k in kinds},
            "clusters": {k: len({r["cluster"] for r in rows if r["kind"] == k})
                         for k in TRUTH_KINDS if k in kinds},
            "validation_rows": sum(len(full) + len(novel) for full, novel, _ in tuning.values()),
            "thresholds": {k: {unit: thresholds_dict(t) for unit, t in by_unit.items()}
                           for k, by_unit in thresholds.items()},
            "systems": systems, "notes": notes,
            "per_unit": {name: per_unit(rows, p) for name, p in preds.items()},
            "floor": {"macro_f1": floor["macro_f1"], "macro_f1_interval": floor["macro_f1_interval"]},
            "model_versus": versus, **validation,
            **({"diverged": diverged_scores(cfg.divergence_rates, _diverged_truths(diverged), div_preds,
                                            cfg.n_boot, cfg.seed)} if diverged else {})}


# ------------------------------------------------------------------------------ summaries


def _pct(value: float | None) -> str:
    return "\u2013" if value is None else f"{100 * value:.1f} %"


def _iv(iv: Sequence[float] | None, digits: int = 3) -> str:
    return "\u2013" if not iv else f"[{iv[0]:.{digits}f}, {iv[1]:.{digits}f}]"


def false_claims(scores: Mapping) -> tuple[int, int]:
    """(gene claims, rows) over every kind whose truth is not a gene of the reference."""
    kinds = [v for k, v in scores["kinds"].items() if k != "gene"]
    return sum(v["gene_claims"] or 0 for v in kinds), sum(v["rows"] for v in kinds)


def _claimed(scores: Mapping) -> str:
    """The false gene claims of a system over all non-gene rows: "1.5 % [0.8, 3.0]"."""
    rate, iv = _rate(*false_claims(scores))
    return _pct(rate) + ("" if iv is None else f" [{100 * iv[0]:.1f}, {100 * iv[1]:.1f}]")


def rows_summary(section: Mapping, fmt: Callable[[int], str] = str) -> str:
    """The section's rows per truth kind, "kind n", with "(k clusters)" where the bootstrap's
    clusters (module doc) are fewer than its rows: how many independent draws they are (e.g.
    "repeat 16 (5 clusters)": windows of five 100-kb blocks); `fmt` writes the numbers."""
    clusters = section.get("clusters") or {}  # absent in older metrics.json
    return ", ".join(f"{k} {fmt(n)}" + (f" ({fmt(clusters[k])} clusters)" if clusters.get(k, n) < n else "")
                     for k, n in section["rows"].items())


def validation_summary(section: Mapping) -> str | None:
    """One line of the model's scores on the tuning rows ("validation_model"), or None without."""
    m = section.get("validation_model")
    if not m:
        return None
    k, n = false_claims(m)
    f1 = "\u2013" if m["macro_f1"] is None else f"{m['macro_f1']:.3f} {_iv(m['macro_f1_interval'])}"
    units = len(section.get("units") or ()) or 1
    d = section.get("validation_diverged")  # absent in older metrics.json
    own = "" if not d else (
        f"; their genic rows' copies diverged ({d['rows']} per rate), answered with their own gene: "
        + ", ".join(f"{100 * rate:g} % {_value_iv(v, iv)}" for rate, v, iv
                    in zip(d["rates"], d["systems"]["model"]["gene"], d["systems"]["model"]["interval"])))
    return (f"The model on the {m['rows']} tuning rows of {units} unit{'s' if units > 1 else ''} (validation "
            f"part, each unit's model on its own; what training settings may be chosen on; the tuned "
            f"rules were fitted on them): outcome macro-F1 {f1}, gene claimed where "
            f"there is none {_claimed(m)} ({k}/{n}), novel: no gene claimed {_pct(m['novel_no_gene'])}"
            f"{own}.")


def versus_summary(section: Mapping) -> str | None:
    """One line: the model against each baseline on the same rows, and how often its gene is its
    top candidate's; None without a comparison."""
    parts = []
    for name, v in (section.get("model_versus") or {}).items():
        diff = v["macro_f1_difference"]
        said = "\u2013" if diff is None else f"{diff:+.3f} {_iv(v['macro_f1_difference_interval'])}"
        parts.append(f"against {name}, rows only the model gets right {v['model_only']}, only {name} "
                     f"{v['other_only']}, macro-F1 difference {said}")
    top = section.get("model_top_candidate")
    if top:
        parts.append(f"its gene is its top reference candidate's in {top['top_candidate']} of its "
                     f"{top['gene_answers']} gene answers")
    return ("The model against each baseline on the same rows (paired cluster bootstrap): "
            + "; ".join(parts) + ".") if parts else None


def _share(right_rows: Sequence[int] | None) -> str:
    if not right_rows or not right_rows[1]:
        return "\u2013"
    k, n = right_rows
    return f"{k}/{n} = {100 * k / n:.1f} %"


def per_unit_rows(section: Mapping) -> tuple[list[str], list[tuple[str, ...]]]:
    """The "per_unit" table: its header (unit, then per system its genic rows answered with
    their gene and its novel rows with no gene) and one row per unit; ([], []) for a section of
    one unit (its figures are the summary's) or without "per_unit"."""
    per = section.get("per_unit") or {}
    if len(section["units"]) < 2 or not per:
        return [], []
    head = ["unit", *(f"{name}: {col}" for name in per for col in ("gene", "novel: no gene"))]
    rows = [(unit, *(cell for name in per for cell in (_share(per[name].get(unit, {}).get("gene")),
                                                       _share(per[name].get(unit, {}).get("novel_no_gene")))))
            for unit in section["units"]]
    return head, rows


COPY_HEAD = ("system", "multi-copy: gene", "multi-copy novel: no gene", "single-copy: gene",
             "single-copy novel: no gene")


def copy_rows(section: Mapping) -> list[tuple[str, ...]]:
    """The "copies" table (header COPY_HEAD): per system, then the model on the validation rows,
    its genic rows answered with their gene and its novel rows with no gene, for windows the
    reference holds at >= REPEAT_MIN_LOCI loci and for the others (`copy_scores`); [] where the
    run counted no copies."""
    named = [*section["systems"].items(), ("model (validation rows)", section.get("validation_model") or {})]
    return [(name, *(_share(m["copies"][part][key]) for part in ("multi_copy", "single_copy")
                     for key in ("gene", "novel_no_gene")))
            for name, m in named if m.get("copies")]


def summary_rows(section: Mapping) -> list[tuple[str, ...]]:
    """Per system (then the floor): name, macro-F1, its interval, false gene claims over all
    non-gene rows (with the Wilson interval), novel rows answered with no gene, AUROC."""
    out = []
    for name, m in section["systems"].items():
        out.append((name, "\u2013" if m["macro_f1"] is None else f"{m['macro_f1']:.3f}",
                    _iv(m["macro_f1_interval"]), _claimed(m), _pct(m["novel_no_gene"]),
                    "\u2013" if m.get("auroc") is None else f"{m['auroc']:.3f}"))
    floor = section["floor"]
    out.append(("always none (floor)", "\u2013" if floor["macro_f1"] is None else f"{floor['macro_f1']:.3f}",
                _iv(floor["macro_f1_interval"]), "0.0 %", "\u2013", "\u2013"))
    return out


def _value_iv(value: float | None, iv: Sequence[float] | None, fmt: str = ".2f") -> str:
    """ "0.75 [0.68, 0.81]" ("\u2013" without a value)."""
    return "\u2013" if value is None else f"{value:{fmt}}" + ("" if not iv else f" {_iv(iv, 2)}")


def diverged_rows(section: Mapping) -> tuple[list[str], list[tuple[str, ...]]]:
    """The "diverged" table: its header (rate, per system the share of diverged copies answered
    with their own gene, then the model minus each other system) and one row per rate, each
    share with its interval; ([], []) without "diverged"."""
    d = section.get("diverged")
    if not d:
        return [], []
    systems, versus = d["systems"], d["model_versus"]
    head = ["divergence", *systems, *(f"model \u2212 {name}" for name in versus)]
    rows = []
    for k, rate in enumerate(d["rates"]):
        cells = [_value_iv(m["gene"][k], m["interval"][k]) for m in systems.values()]
        cells += [_value_iv(v["difference"][k], v["interval"][k], "+.2f") for v in versus.values()]
        rows.append((f"{100 * rate:g} %", *cells))
    return head, rows


def diverged_outcomes(section: Mapping) -> list[str]:
    """Per system, the outcomes it gives the diverged copies at each rate, one line each; []
    without "diverged"."""
    d = section.get("diverged")
    if not d:
        return []
    return [f"{name}: " + "; ".join(f"{100 * rate:g} %: " + ", ".join(f"{o} {n}" for o, n in got.items())
                                   for rate, got in zip(d["rates"], m["outcomes"]))
            for name, m in d["systems"].items()]
