"""`llamadna evaluate`: the model against the alternatives a user has, on the same test rows,
every number with a 95 % interval and beside the floor a trivial system gets.

Evaluation units: each requested split (split_random, split_gene, split_chrom); split_gene is
k-fold over genes (`folds`, default 5: fold 0 is the dataset's own split_gene, the others are
`data.splits.gene_folds`), so every gene is a test gene once and its numbers pool all folds.
In every unit, every system of `evaluate.systems.SYSTEMS` annotates the same test rows:
- model: the given model where it was trained on that unit, else one trained with the same
  settings (the `ModelSource` supplies models; `train.cache.TrainedModels` trains and caches
  them, so this module never trains);
- majority: the training rows' most frequent source and that source's most frequent sentence;
- splash_prompt: the same training with the prompt only (SPLASH scores, no sequence);
- shuffled_dna: the model on the test sequences with their bases permuted;
- reference_lookup / minimap2_sensitive / blastn: the sequence aligned to the build's reference
  (minimap2 map-ont; minimap2 with sensitive settings; BLASTN), the annotation tables fill the
  sentence, source = the nearest variant OF THE UNIT'S TRAINING ROWS (majority when nothing maps);
- splash_only: gradient-boosted trees on the SPLASH columns for the source, the majority sentence;
- seed_faithful: the gene's name, description, phenotype and clinical significance in the prompt
  (the original poster's setting: a label leak, kept to reproduce it).
A retrieval model (trained with an index) reads the candidates a search of the full reference
index (`index`; its variants the unit's training rows) finds for each test sequence, and adds:
- model_novel: the same model with the unit's test genes masked out of the index (the novel-gene
  setting: the reference lacks the gene);
- no_retrieval / no_dna / no_splash: the ablations, trained with the same settings without the
  evidence (the seed's architecture), without the DNA slots, without the SPLASH text.
Per split: metrics of every system with cluster-bootstrap intervals over genes, the template
floor (every field wrong), the accuracy ceiling of identical windows with conflicting labels,
and a leak audit (scores: `evaluate.scoring`). Divergence (`evaluate.divergence`): nested
mutations at DIVERGENCE_RATES of a seeded subsample of each split's test rows
(`divergence_rows`), SPLASH scores recomputed from the anchors tables (null without them, never
carried over), the model and every lookup re-run. `benchmark`: a real cross-species set
(`evaluate.benchmark`), per species and identity bin.
Out of reference (`out_of_reference`, on by default): the first split's test rows, their novel
setting and generated negatives of the reference's test part, the model against retriever and
blastn baselines with thresholds tuned on validation rows (`evaluate.out_of_reference`).
Writes REPORT_DIR/metrics.json (layout: `evaluate.schema.Metrics`), report.html and every
system's predictions.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from llamadna.constants import FOLD_PREFIX, SPLIT_COLUMNS
from llamadna.data.splits import subsample
from llamadna.data.template import parse_annotation
from llamadna.errors import ConfigError
from llamadna.evaluate.config import EvalConfig
from llamadna.evaluate.predict import example_indices, prediction_table
from llamadna.evaluate.schema import Meta, Metrics, SplitEntry
from llamadna.evaluate.scoring import confidence_pairs, gene_clusters, scored
from llamadna.evaluate.systems import (
    BY_NAME,
    LOOKUPS,
    RETRIEVAL_SYSTEMS,
    SYSTEM_NAMES,
    EvalContext,
    ModelSource,
    Unit,
    system_note,
)
from llamadna.io.dataset import DATASET_FILE, dataset_parquet, read_dataset
from llamadna.progress import Progress, no_progress

log = logging.getLogger(__name__)

# The original poster's reported numbers (not measured here).
REPORTED = {
    "poster (reported)": {"accuracy": 0.8719, "f1_macro": 0.6422, "bleu": 0.6118, "rougeL": 0.7591,
                          "meteor": 0.8413},
    "poster baseline (reported)": {"accuracy": 0.8065, "f1_macro": 0.4464, "bleu": 0.5685,
                                   "rougeL": 0.7172, "meteor": 0.7833},
}


def evaluate(cfg: EvalConfig, models: ModelSource, progress: Progress = no_progress) -> Metrics:
    """Run every system on every requested split; write metrics.json, report.html, predictions."""
    from llamadna.evaluate.benchmark import evaluate_benchmark
    from llamadna.evaluate.report import write_report

    t0 = time.perf_counter()
    # every input is read and checked before OUT is created: a bad one leaves nothing behind
    ds = dataset_parquet(cfg.dataset)
    df = read_dataset(ds).with_row_index("row")
    cfg, reference = _retrieval_setup(cfg, models)
    lookups = _make_lookups(cfg)
    anchors = _read_anchors(cfg.splash)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictions").mkdir(exist_ok=True)
    units, unit_dataset = _units(cfg, df, out)
    if unit_dataset != str(ds):
        df = pl.read_parquet(unit_dataset).with_row_index("row")
    ctx = EvalContext(cfg, models, df, unit_dataset, out, lookups, anchors, reference, progress)
    splits: dict[str, SplitEntry] = {}
    examples: list[dict] = []
    evaluated: list[Unit] = []  # the first split's units: the out-of-reference section's
    for split in cfg.splits:
        done = _run_split(ctx, split, [column for s, column in units if s == split])
        if done is None:
            continue
        pooled, splits[split], ran = done
        evaluated = evaluated or ran
        table = pooled.get("model")
        if table is not None:
            examples += [{"split": split, "system": "model", "id": table["id"][i],
                          "reference": table["reference"][i], "prediction": table["prediction"][i]}
                         for i in example_indices(table["gene_name"])]
    metrics: Metrics = {"meta": {}, "splits": splits, "reported": REPORTED, "systems": {}}
    if cfg.out_of_reference and evaluated and "model" in cfg.systems:
        from llamadna.evaluate.out_of_reference import out_of_reference

        ctx.progress("out of reference", 0, 1)
        metrics["out_of_reference"] = out_of_reference(ctx, evaluated)
    if cfg.benchmark:
        metrics["benchmark"] = evaluate_benchmark(ctx)
    metrics["systems"] = {n: system_note(n, lookups, reference is not None) for n in cfg.systems}
    metrics["meta"] = _meta(cfg, models, ds, splits, round(time.perf_counter() - t0, 1))
    write_report(metrics, examples, out)
    return metrics


def _meta(cfg: EvalConfig, models: ModelSource, dataset: Path, splits: dict[str, SplitEntry],
          seconds: float) -> Meta:
    model_cfg = json.loads((Path(cfg.model) / "config.json").read_text())
    return {
        "dataset": str(dataset), "data_dir": str(cfg.data_dir or ""), "model": str(cfg.model),
        "model_config": {k: v for k, v in model_cfg.items() if k not in ("dna_config", "text_config")},
        "train_config": models.train_config, "seed": cfg.seed, "splits": list(cfg.splits),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows_per_split": {s: v["rows"] for s, v in splits.items()},
        "eval_config": asdict(cfg), "seconds": seconds,
    }


# ------------------------------------------------------------------------------------ setup


def _retrieval_setup(cfg: EvalConfig, models: ModelSource):
    """The systems to run (the retrieval ones only for a retrieval model) and the full reference
    index of a retrieval model (None otherwise)."""
    retrieval = getattr(models, "retrieval", False)
    asked = [s for s in cfg.systems if s in RETRIEVAL_SYSTEMS]
    if not retrieval:
        if asked and tuple(cfg.systems) != SYSTEM_NAMES:
            raise ConfigError(f"{', '.join(asked)}: systems of a retrieval model; {cfg.model} was "
                              "trained without --index")
        return replace(cfg, systems=tuple(s for s in cfg.systems if s not in RETRIEVAL_SYSTEMS)), None
    from llamadna.retrieve.index import ReferenceIndex

    path = cfg.index or _model_index(models)
    return replace(cfg, index=str(path)), ReferenceIndex.load(path)


def _model_index(models: ModelSource) -> str:
    """The index a retrieval model was trained with: the one its processor_config.json records
    (`processing.recorded_index`), else train_config.json's `index` (as given to `train`)."""
    from llamadna.model.processing import PROCESSOR_FILE, read_processor_config, recorded_index

    given = models.train_config["index"]
    model_dir = getattr(models, "model_dir", None)
    if model_dir is not None and (model_dir / PROCESSOR_FILE).is_file():
        found = recorded_index(model_dir, read_processor_config(model_dir / PROCESSOR_FILE))
        if found and Path(found).is_dir():
            return found
    if not Path(given).is_dir():
        raise ConfigError(f"the reference index the model was trained with, {given} (train_config.json), "
                          "does not exist: pass the index directory with --index DIR")
    return given


def _make_lookups(cfg: EvalConfig) -> dict:
    wanted = [n for n in LOOKUPS if n in cfg.systems]
    if not wanted:
        return {}
    from llamadna.data.paths import default_data_dir
    from llamadna.evaluate.baselines import ReferenceLookup

    data_dir = cfg.data_dir or default_data_dir()
    return {n: ReferenceLookup(data_dir, [], "", aligner=BY_NAME[n].aligner, variants_name="none yet")
            for n in wanted}


def _read_anchors(specs: dict[str, str]) -> dict:
    if not specs:
        return {}
    from llamadna.splash.scores import read_anchor_tables

    return read_anchor_tables([f"{b}={p}" if b else p for b, p in specs.items()])


# ------------------------------------------------------------------------------------ units


def _units(cfg: EvalConfig, df: pl.DataFrame, out: Path) -> tuple[list[tuple[str, str]], str]:
    """(reported split, split column) per unit, and the table holding every column (the dataset,
    or a copy under OUT/folds/ with the fold columns of split_gene added)."""
    from llamadna.data.splits import gene_folds
    from llamadna.io.atomic import atomic_write

    units, dataset = [], str(dataset_parquet(cfg.dataset))
    extra = {}
    for split in cfg.splits:
        if split == "split_gene" and cfg.folds > 1:  # k-fold over genes (not a default)
            folds = gene_folds(df, cfg.folds, cfg.seed)
            extra = {k: v for k, v in folds.items() if k.startswith(FOLD_PREFIX)}
            units += [(split, col) for col in folds]
        else:
            units.append((split, split))
    if extra:
        path = out / "folds" / DATASET_FILE
        table = df.drop("row").with_columns(*[pl.Series(k, v, dtype=pl.Utf8) for k, v in extra.items()])
        if not path.exists() or not pl.read_parquet(path).equals(table):  # keeps cached models valid
            atomic_write(path, lambda p: table.write_parquet(p))
        dataset = str(path)
    return units, dataset

# ------------------------------------------------------------------------------------ a split


def _run_split(ctx: EvalContext, split: str,
               columns: list[str]) -> tuple[dict, SplitEntry, list[Unit]] | None:
    """Every system on every unit (split column) of one split: the pooled prediction tables
    (system -> table), the split's entry and its units; None without test rows."""
    cfg = ctx.cfg
    tables: dict[str, list[dict]] = {}
    units: list[Unit] = []
    for k, column in enumerate(columns):
        test = subsample(ctx.rows(column, "test"), cfg.limit, cfg.seed)
        if not test:
            log.warning("%s: no test rows, skipped", column)
            continue
        unit = Unit(ctx, split, column, ctx.rows(column, "train"),
                    np.random.default_rng([cfg.seed, SPLIT_COLUMNS.index(split), k]), test)
        units.append(unit)
        for i, name in enumerate(cfg.systems):
            ctx.progress(f"{column}: {name}", i, len(cfg.systems))
            tables.setdefault(name, []).extend(BY_NAME[name].run(unit, test))
    test_rows = [r for u in units for r in u.test_rows]
    if not test_rows:
        return None
    pooled = {name: prediction_table(test_rows, preds) for name, preds in tables.items()}
    for name, table in pooled.items():
        pl.DataFrame(table).write_csv(ctx.out / "predictions" / f"{split}.{name}.tsv", separator="\t")
    return pooled, _split_entry(ctx, test_rows, units, pooled), units


def _split_entry(ctx: EvalContext, test_rows: list[dict], units: list[Unit], pooled: dict) -> SplitEntry:
    from llamadna.evaluate.divergence import divergence
    from llamadna.evaluate.stats import accuracy_ceiling, leak_audit

    cfg = ctx.cfg
    clusters = gene_clusters(test_rows)
    systems = {name: scored(table, clusters, cfg.n_boot, cfg.seed) for name, table in pooled.items()}
    refs = [r["Annotation"] for r in test_rows]
    div, pairs = divergence(ctx, units, clusters)
    entry: SplitEntry = {
        "rows": len(test_rows), "units": [u.column for u in units],
        "genes": int(len(set(clusters.tolist()))),
        "systems": systems,
        "template_floor": _template_floor(test_rows, clusters, cfg),
        "ceiling": accuracy_ceiling([r["Sequence"] for r in test_rows], [r["Dataset"] for r in test_rows]),
        "leak_audit": {u.column: leak_audit(u.train_rows, u.test_rows) for u in units},
        "divergence": div,
    }
    for name in ("model", "model_novel"):
        if name in pooled:
            pairs += confidence_pairs(pooled[name]["prediction"], refs, pooled[name]["gene_confidence"])
    if any(c is not None for _, c in pairs):
        from llamadna.evaluate.stats import auroc

        # every setting pooled: the full and the masked index, every divergence rate
        entry["gene_confidence_auroc_all"] = auroc(*zip(*pairs))
    entry["variant_tables"] = {u.column: u.variant_tables() for u in units}
    return entry


def _template_floor(test_rows: list[dict], clusters: np.ndarray, cfg: EvalConfig):
    """The scores of the template sentence with every field wrong (real values of other rows)."""
    from llamadna.evaluate.stats import template_floor_sentences

    floor = template_floor_sentences(test_rows, np.random.default_rng([cfg.seed, 7]))
    floor_sources = [parse_annotation(s)["source"] or "" for s in floor]
    table = {"prediction": floor, "reference": [r["Annotation"] for r in test_rows],
             "label_true": [r["Dataset"] for r in test_rows], "label_pred": floor_sources,
             "label_from_text": floor_sources}
    return scored(table, clusters, cfg.n_boot, cfg.seed, semantic=False)
