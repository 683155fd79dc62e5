"""The layout of metrics.json: what `evaluate.run` writes and `evaluate.report` reads.

TypedDicts, so that the file stays the plain JSON it was (old reports still read) while both
sides name the same keys. A key marked NotRequired is written only where it applies; every
other key is always there. Numbers that could not be computed are None (null in the file).
"""

import json  # no `from __future__ import annotations`: TypedDict reads NotRequired at run time
from pathlib import Path
from typing import Any, NotRequired, TypedDict, get_type_hints

Interval = list[float]  # [low, high], 95 %


class Confusion(TypedDict):
    labels: list[str]
    matrix: list[list[int]]  # rows = truth, columns = prediction


class SystemMetrics(TypedDict):
    """One system on a split's test rows: `metrics.compute_metrics` and the scoring's extras."""

    accuracy: float | None
    f1_macro: float | None
    bleu: float
    rougeL: float
    meteor: float
    semantic_similarity: float | None
    field_accuracy: dict[str, float | None]  # sentence field -> accuracy (None: no row has it)
    accuracy_from_text: float | None
    f1_from_text: float | None
    confusion: Confusion | None
    n: int
    field_mean: float
    intervals: dict[str, Interval]  # scoring.SCORED_STATISTICS -> interval
    gene_confidence_auroc: NotRequired[float | None]  # systems with a gene confidence


class FieldScore(TypedDict):
    value: float
    interval: Interval


class DivergenceCurves(TypedDict):
    """One system's curves: a value per divergence rate."""

    field_accuracy: dict[str, list[float]]
    accuracy: list[float]
    field_mean: list[float]
    intervals: dict[str, list[Interval]]  # field, field_mean, accuracy -> an interval per rate


class Divergence(TypedDict):
    rates: list[float]
    splash_recomputed: bool
    rows: int  # the rows the curves ran on
    of_rows: int  # of the split's test rows
    systems: dict[str, DivergenceCurves]


class SplitEntry(TypedDict):
    rows: int
    units: list[str]
    genes: int
    systems: dict[str, SystemMetrics]
    template_floor: SystemMetrics
    ceiling: dict[str, Any]  # stats.accuracy_ceiling
    leak_audit: dict[str, dict[str, Any]]  # unit -> stats.leak_audit
    divergence: Divergence
    variant_tables: dict[str, dict[str, str]]  # unit -> lookup -> its variants table
    gene_confidence_auroc_all: NotRequired[float | None]  # retrieval models


class FieldAccuracy(TypedDict):
    """Accuracy of each benchmark field over a group of queries (and `n`, the queries)."""

    gene: float
    transcript_type: float
    chrom: float
    n: int


class BenchmarkScore(TypedDict):
    all: FieldAccuracy
    species: dict[str, FieldAccuracy]
    identity: dict[str, FieldAccuracy]  # identity bin -> accuracy
    all_intervals: NotRequired[dict[str, Interval]]  # field -> interval (evaluate only)


class BenchmarkEntry(TypedDict):
    directory: str
    queries: int
    model_split: str
    systems: dict[str, BenchmarkScore]


class OutcomeConfusion(TypedDict):
    rows: list[str]  # truth kinds (out_of_reference.TRUTH_KINDS present)
    columns: list[str]  # predicted outcomes (out_of_reference.PRED_LABELS)
    matrix: list[list[int]]


class KindScores(TypedDict):
    """One system on the rows of one truth kind (out of reference); rates with Wilson intervals."""

    rows: int
    gene_claims: int | None  # outcome gene where the truth is no gene of the reference (None: gene rows)
    gene_claim_rate: float | None
    gene_claim_interval: Interval | None
    confident_gene: int | None  # rows with gene_confidence >= 0.5 (None: no confidence)
    confident_gene_rate: float | None
    confident_gene_interval: Interval | None
    accuracy: float | None  # outcome right (retrieve.outcome.outcome_correct)
    accuracy_interval: Interval | None
    # repeat windows inside a gene: the gene claims that name a gene holding the window
    holding_gene_claims: NotRequired[int]


class RiskPoint(TypedDict):
    threshold: float
    rows: int  # rows whose confidence >= threshold
    coverage: float
    error: float | None


class CopyScores(TypedDict):
    """Genic and novel rows split by their window's reference copies (out_of_reference.copy_scores):
    [right, rows] of genic rows answered with their gene and of novel rows answered with no gene."""

    multi_copy: dict[str, list[int]]  # windows at >= REPEAT_MIN_LOCI loci (a repeat window's truth)
    single_copy: dict[str, list[int]]


class OutcomeScores(TypedDict):
    """One system's out-of-reference metrics (`out_of_reference.score_outcomes`)."""

    rows: int
    confusion: OutcomeConfusion
    kinds: dict[str, KindScores]
    macro_f1: float | None  # retrieve.outcome.macro_f1 of scored_labels (every row)
    macro_f1_interval: Interval | None  # cluster bootstrap (genes; a negative its own cluster)
    novel_no_gene: float | None  # novel-gene setting: share answered with no gene
    novel_no_gene_interval: Interval | None
    auroc: NotRequired[float | None]  # systems with an outcome confidence
    risk_coverage: NotRequired[list[RiskPoint]]
    copies: NotRequired[CopyScores]  # where the run counted the genic windows' reference loci


class FloorScore(TypedDict):
    macro_f1: float | None
    macro_f1_interval: Interval | None


class Versus(TypedDict):
    """The model against one other system on the same out-of-reference rows."""

    model_only: int  # rows only the model gets right
    other_only: int  # rows only the other system gets right
    macro_f1_difference: float | None  # model minus the other
    macro_f1_difference_interval: Interval | None  # paired cluster bootstrap


class TopCandidate(TypedDict):
    gene_answers: int  # the model's gene answers
    top_candidate: int  # of which naming its top reference candidate's gene


class UnitScores(TypedDict):
    gene: list[int]  # [genic test rows answered with their gene, rows]
    novel_no_gene: list[int]  # [novel rows answered with no gene, rows]


class DivergedSystem(TypedDict):
    gene: list[float | None]  # per rate: diverged copies answered with their own gene
    interval: list[Interval | None]  # cluster bootstrap (genes)
    outcomes: list[dict[str, int]]  # per rate: outcome -> rows


class DivergedVersus(TypedDict):
    difference: list[float | None]  # per rate: the model's share minus the other's
    interval: list[Interval | None]  # paired cluster bootstrap


class DivergedGenes(TypedDict):
    """The model and the tuned rules on diverged copies of the test rows (the divergence
    curves' rows and mutations, no SPLASH scores), each unit's model and thresholds; as
    "validation_diverged", the model alone (model_versus empty) on copies of the validation
    genic rows."""

    rates: list[float]
    rows: int  # per rate
    systems: dict[str, DivergedSystem]
    model_versus: dict[str, DivergedVersus]


class OutOfReference(TypedDict):
    split: str
    units: list[str]
    rows: dict[str, int]  # truth kind -> rows
    clusters: NotRequired[dict[str, int]]  # truth kind -> its rows' bootstrap clusters (absent in older ones)
    validation_rows: int  # rows the baselines' thresholds were tuned on (every unit's)
    # baseline -> unit column -> retrieve.outcome.Thresholds fields (tuned per unit)
    thresholds: dict[str, dict[str, dict[str, Any]]]
    systems: dict[str, OutcomeScores]
    notes: dict[str, str]  # system -> what it is
    floor: FloorScore  # always "none"
    model_versus: NotRequired[dict[str, Versus]]  # per baseline (absent in older metrics.json)
    per_unit: NotRequired[dict[str, dict[str, UnitScores]]]  # system -> unit -> scores
    # retrieval models: the model on the baselines' tuning rows (validation part), to choose on
    validation_model: NotRequired[OutcomeScores]
    # retrieval models: the model on the tuning rows' genic copies diverged at the calibration's rates
    validation_diverged: NotRequired[DivergedGenes]  # absent in older metrics.json
    model_top_candidate: NotRequired[TopCandidate]  # retrieval models
    diverged: NotRequired[DivergedGenes]  # with divergence rates (absent in older metrics.json)


class Meta(TypedDict):
    dataset: str
    data_dir: str
    model: str
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    seed: int
    splits: list[str]
    created: str
    rows_per_split: dict[str, int]
    eval_config: dict[str, Any]
    seconds: float


class Metrics(TypedDict):
    meta: Meta
    splits: dict[str, SplitEntry]
    reported: dict[str, dict[str, float]]  # name -> numbers copied from elsewhere, not measured
    systems: dict[str, str]  # system -> what it saw
    benchmark: NotRequired[BenchmarkEntry]
    out_of_reference: NotRequired[OutOfReference]


def missing_keys(value: Any, schema: type = Metrics, where: str = "") -> list[str]:
    """The required keys of `schema` (a TypedDict of this module) missing from `value`, nested
    TypedDicts and dicts of them included, as dotted paths."""
    if not isinstance(value, dict):
        return [where or "."]
    out = [f"{where}{k}" for k in sorted(schema.__required_keys__) if k not in value]
    for key, hint in get_type_hints(schema).items():
        if key in value and value[key] is not None:
            out += _missing_in(value[key], hint, f"{where}{key}.")
    return out


def _missing_in(value: Any, hint: Any, where: str) -> list[str]:
    args = getattr(hint, "__args__", ())
    if isinstance(hint, type) and hasattr(hint, "__required_keys__"):
        return missing_keys(value, hint, where)
    if getattr(hint, "__origin__", None) is dict and isinstance(value, dict):
        return [m for k, v in value.items() for m in _missing_in(v, args[1], f"{where}{k}.")]
    if args and getattr(hint, "__origin__", None) is not list:  # X | None
        return next((_missing_in(value, a, where) for a in args if hasattr(a, "__required_keys__")), [])
    return []


def read_metrics(path: str | Path) -> Metrics:
    """A metrics.json; ValueError naming the keys it lacks."""
    metrics = json.loads(Path(path).read_text(encoding="utf-8"))
    missing = missing_keys(metrics)
    if missing:
        raise ValueError(f"{path}: not a metrics.json of `llamadna evaluate`: no {', '.join(missing[:5])}")
    return metrics
