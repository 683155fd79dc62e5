"""`llamadna evaluate`: the model against the alternatives a user has, on the same test rows,
every number with a 95 % interval and beside the floor a trivial system gets.

Evaluation units: each requested split (split_random, split_gene, split_chrom); split_gene is
k-fold over genes (`folds`, default 5: fold 0 is the dataset's own split_gene, the others are
`data.splits.gene_folds`), so every gene is a test gene once and its numbers pool all folds.
In every unit, every system of `SYSTEM_RUNNERS` annotates the same test rows:
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
and a leak audit. Divergence: nested mutations at DIVERGENCE_RATES of a seeded subsample of
each split's test rows (`divergence_rows`), SPLASH scores recomputed from the anchors tables
(null without them, never carried over), the model and every lookup re-run. `benchmark`: a
real cross-species set (evaluate.benchmark), per species and identity bin.
Writes REPORT_DIR/metrics.json, report.html and every system's predictions.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl

from llamadna.constants import (
    DEFAULT_DECODING,
    DEFAULT_EVAL_BATCH_SIZE,
    DEFAULT_MAX_NEW_TOKENS,
    FOLD_PREFIX,
    SPLASH_COLUMNS,
    SPLIT_COLUMNS,
)
from llamadna.data.mutate import DIVERGENCE_RATES
from llamadna.data.splits import gene_key, subsample
from llamadna.data.template import SENTENCE_FIELDS, parse_annotation
from llamadna.errors import ConfigError
from llamadna.evaluate.predict import example_indices, prediction_table
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
# lookup system -> evaluate.baselines aligner: minimap2's map-ont preset (what it was), minimap2
# with the sensitive settings of a measured sweep, NCBI BLAST+ blastn
LOOKUP_ALIGNERS = {"reference_lookup": "map-ont", "minimap2_sensitive": "minimap2", "blastn": "blastn"}
LOOKUPS = tuple(LOOKUP_ALIGNERS)
DIVERGENCE_SYSTEMS = ("model", *LOOKUPS)  # re-run on mutated test sequences
SENTENCE_FIELDS_INDEX = {f: i for i, f in enumerate(SENTENCE_FIELDS)}
N_BOOT = 1000
DIVERGENCE_ROWS = 300  # per split: ~0.4 s of lookups and generation per row on 2 cores


class ModelSource(Protocol):
    """Supplies the models `evaluate` runs: `get(split, variant, dataset)` with variant "model",
    "splash_prompt" or "seed_faithful" (`dataset`: the table holding that split column);
    `train_config` is the given model's training settings."""

    train_config: dict

    def get(self, split: str, variant: str, dataset: str | None = None): ...


@dataclass
class EvalConfig:
    model: str
    dataset: str
    out: str
    splits: tuple[str, ...] = ("split_gene",)
    data_dir: str | None = None  # reference bundle for the lookups (default: the dataset's)
    systems: tuple[str, ...] | None = None  # default: every system of SYSTEM_RUNNERS
    divergence_rates: tuple[float, ...] = DIVERGENCE_RATES
    seed: int = 0
    limit: int | None = None  # test rows per unit (seeded subsample) for quick runs
    batch_size: int = DEFAULT_EVAL_BATCH_SIZE
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    decoding: str = DEFAULT_DECODING  # retrieval models: constants.DECODINGS
    folds: int = 5  # split_gene as k-fold over genes (1 = the dataset's split_gene only)
    splash: dict[str, str] = field(default_factory=dict)  # build ("" = all) -> anchors TSV
    benchmark: str | None = None  # a real benchmark directory (evaluate.benchmark)
    n_boot: int = N_BOOT  # bootstrap resamples for the intervals
    # test rows per split in the divergence curves (seeded subsample of the pooled test rows;
    # None = all): the curves re-run the model and every lookup at each rate
    divergence_rows: int | None = DIVERGENCE_ROWS
    # retrieval models: the full reference index they search (default: the one the given model
    # was trained with); each unit's copy carries that unit's training variants only
    index: str | None = None

    def __post_init__(self) -> None:
        self.systems = tuple(SYSTEM_RUNNERS) if self.systems is None else tuple(self.systems)
        for s in self.splits:
            if s not in SPLIT_COLUMNS:
                raise ConfigError(f"unknown split {s!r}: expected one of {SPLIT_COLUMNS}")
        for name in self.systems:
            if name not in SYSTEM_RUNNERS:
                raise ConfigError(f"unknown system {name!r}: expected one of {tuple(SYSTEM_RUNNERS)}")
        if self.folds < 1:
            raise ConfigError(f"--folds must be >= 1, got {self.folds}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit {self.limit}: the test rows per split must be >= 1 (leave it "
                              "out for all of them)")
        from llamadna.annotate import check_decoding  # lazily: it imports torch

        check_decoding(self.decoding)
        if self.divergence_rows is not None and self.divergence_rows < 1:
            raise ConfigError(f"--divergence-rows must be >= 1, got {self.divergence_rows}")


# ------------------------------------------------------------------------------------ systems


@dataclass
class Unit:
    """One train/test partition (a split, or one fold of split_gene) and what its systems share."""

    cfg: EvalConfig
    split: str  # the reported split (split_gene for every fold)
    column: str  # the split column of this unit (split_gene, split_gene_fold2, ...)
    dataset: str  # the table holding `column`
    models: ModelSource
    train_rows: list[dict]
    lookups: dict  # name -> lookup object (evaluate.baselines), shared by every unit
    rng: np.random.Generator  # shuffled DNA
    test_rows: list[dict] = field(default_factory=list)
    cache: dict = field(default_factory=dict)  # per-unit objects built once (splash_only, ...)
    reference: object = None  # retrieval models: the full ReferenceIndex (shared by every unit)

    def annotate(self, variant: str, rows: list[dict], setting: str = "full") -> list[dict]:
        """The (unit, variant) model's predictions, generated once per distinct model input; a
        retrieval model reads the evidence of `setting` ("full" or "novel", `evidence`)."""
        from llamadna.evaluate.predict import annotate_distinct

        model = self.models.get(self.column, variant, self.dataset)
        if model.processor.retrieval:
            rows = self.evidence(rows, setting)
        return annotate_distinct(model, rows, self.cache.setdefault(f"generated:{variant}:{setting}", {}),
                                 batch_size=self.cfg.batch_size, max_new_tokens=self.cfg.max_new_tokens,
                                 decoding=self.cfg.decoding)

    def evidence(self, rows: list[dict], setting: str) -> list[dict]:
        """Rows with the candidates the unit's index finds for their sequence, searched once per
        distinct sequence: "full" = the whole reference (variants: this unit's training rows),
        "novel" = the same without the unit's test genes."""
        store = self.cache.setdefault(f"evidence:{setting}", {})
        new = [s for s in dict.fromkeys(r["Sequence"] for r in rows) if s not in store]
        if new:
            store.update(zip(new, self.retriever(setting)(new)))
        return [{**r, "evidence": store[r["Sequence"]]} for r in rows]

    def retriever(self, setting: str):
        from llamadna.retrieve.retriever import Retriever
        from llamadna.train.evidence import split_genes

        key = f"retriever:{setting}"
        if key not in self.cache:
            if self.reference is None:
                raise ConfigError("a retrieval model needs a reference index (--index)")
            held = (sorted(split_genes(self.test_rows) - split_genes(self.train_rows))
                    if setting == "novel" else [])
            index = self.reference.derive(exclude_genes=held, variants=self.train_rows)
            self.cache[key] = Retriever(index, k=self.models.train_config["evidence_k"])
        return self.cache[key]

    @property
    def majority(self) -> str:
        from llamadna.evaluate.baselines import majority_baseline

        if "majority" not in self.cache:
            self.cache["majority"] = majority_baseline([r["Dataset"] for r in self.train_rows], 1)[0]
        return self.cache["majority"]

    @property
    def majority_sentence(self) -> str:
        from llamadna.evaluate.baselines import majority_sentence

        if "sentence" not in self.cache:
            self.cache["sentence"] = majority_sentence(self.train_rows, source=self.majority)
        return self.cache["sentence"]

    def lookup(self, name: str, rows: list[dict]) -> list[dict]:
        """A reference lookup whose source comes from this unit's training rows only (the
        training majority where nothing maps); the reference index is shared by every unit."""
        key = f"lookup:{name}"
        if key not in self.cache:
            self.cache[key] = self.lookups[name].with_variants(
                self.train_rows, self.majority, f"training split of {self.column}")
        res = self.cache[key].lookup_many([r["Sequence"] for r in rows], [r["build"] for r in rows])
        return [{"annotation": h.get("annotation") or "", "source": h.get("source"),
                 "source_from_text": h.get("source")} for h in res]


def _model(unit: Unit, rows: list[dict]) -> list[dict]:
    return unit.annotate("model", rows)


def _majority(unit: Unit, rows: list[dict]) -> list[dict]:
    top = unit.majority
    return [{"annotation": unit.majority_sentence, "source": top, "source_from_text": top}] * len(rows)


def _splash_prompt(unit: Unit, rows: list[dict]) -> list[dict]:
    return unit.annotate("splash_prompt", rows)


def _shuffled_dna(unit: Unit, rows: list[dict]) -> list[dict]:
    from llamadna.evaluate.baselines import shuffle_sequence

    return unit.annotate("model", [{**r, "Sequence": shuffle_sequence(r["Sequence"], unit.rng)}
                                   for r in rows])


def _lookup_runner(name: str) -> Callable[[Unit, list[dict]], list[dict]]:
    def run(unit: Unit, rows: list[dict]) -> list[dict]:
        return unit.lookup(name, rows)

    run.__name__ = f"_{name}"
    return run


def _splash_only(unit: Unit, rows: list[dict]) -> list[dict]:
    from llamadna.evaluate.splash_baseline import SplashOnlyBaseline

    if "splash_only" not in unit.cache:
        unit.cache["splash_only"] = SplashOnlyBaseline().fit(unit.train_rows)
    labels = unit.cache["splash_only"].predict(rows)
    return [{"annotation": unit.majority_sentence, "source": lab, "source_from_text": unit.majority}
            for lab in labels]


def _seed_faithful(unit: Unit, rows: list[dict]) -> list[dict]:
    return unit.annotate("seed_faithful", rows)


def _model_novel(unit: Unit, rows: list[dict]) -> list[dict]:
    return unit.annotate("model", rows, setting="novel")


def _ablation_runner(variant: str) -> Callable[[Unit, list[dict]], list[dict]]:
    def run(unit: Unit, rows: list[dict]) -> list[dict]:
        return unit.annotate(variant, rows)

    run.__name__ = f"_{variant}"
    return run


# name -> runner(unit, test rows) -> one prediction dict per row (`annotation`, `source`, ...)
SYSTEM_RUNNERS: dict[str, Callable[[Unit, list[dict]], list[dict]]] = {
    "model": _model,
    "majority": _majority,
    "splash_prompt": _splash_prompt,
    "shuffled_dna": _shuffled_dna,
    **{name: _lookup_runner(name) for name in LOOKUPS},
    "splash_only": _splash_only,
    "seed_faithful": _seed_faithful,
    "model_novel": _model_novel,
    **{name: _ablation_runner(name) for name in ("no_retrieval", "no_dna", "no_splash")},
}
SYSTEMS = tuple(SYSTEM_RUNNERS)
# systems of a retrieval model only (left out of the default set for any other model)
RETRIEVAL_SYSTEMS = ("model_novel", "no_retrieval", "no_dna", "no_splash")
# What each system saw, for the report (the label flag of seed_faithful stated plainly).
SYSTEM_NOTES = {
    "model": "DNA slots + SPLASH scores in the prompt",
    "majority": "the training rows' most frequent source and its most frequent sentence",
    "splash_prompt": "the same training with the SPLASH scores only in the prompt (no sequence)",
    "shuffled_dna": "the model on the test sequences with their bases permuted",
    "splash_only": "gradient-boosted trees on the SPLASH columns for the source; majority sentence",
    "seed_faithful": "gene name, description, phenotype and clinical significance in the prompt "
                     "(the poster's setting); clinical significance is filled for every ClinVar "
                     "row and no other, so the prompt carries the source label",
    "model_novel": "the retrieval model with the unit's test genes masked out of the reference "
                   "index (novel-gene setting)",
    "no_retrieval": "ablation: the same training without reference evidence (the seed's architecture)",
    "no_dna": "ablation: reference evidence and SPLASH scores, no DNA slots",
    "no_splash": "ablation: DNA slots and reference evidence, no SPLASH scores",
}
RETRIEVAL_NOTE = ("DNA slots + SPLASH scores + the reference evidence a search of the full index "
                  "finds (variants: the unit's training rows)")


# ------------------------------------------------------------------------------------ units


def _units(cfg: EvalConfig, df: pl.DataFrame, out: Path) -> tuple[list[tuple[str, str]], str]:
    """(reported split, split column) per unit, and the table holding every column (the dataset,
    or a copy under OUT/folds/ with the fold columns of split_gene added)."""
    from llamadna.data.splits import gene_folds
    from llamadna.io.atomic import atomic_write

    units, dataset = [], str(dataset_parquet(cfg.dataset))
    extra = {}
    for split in cfg.splits:
        if split == "split_gene" and cfg.folds > 1:
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


def _rows(df: pl.DataFrame, column: str, subset: str) -> list[dict]:
    return df.filter(pl.col(column) == subset).to_dicts()


# ------------------------------------------------------------------------------------ evaluation


def evaluate(cfg: EvalConfig, models: ModelSource, progress: Progress = no_progress) -> dict:
    """Run every system on every requested split; write metrics.json, report.html, predictions."""
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
    metrics: dict = {"meta": {}, "splits": {}, "reported": REPORTED, "systems": {}}
    examples: list[dict] = []
    for split in cfg.splits:
        parts = [u for u in units if u[0] == split]
        pooled = _run_split(cfg, df, split, parts, unit_dataset, models, lookups, anchors, out, progress,
                            reference)
        if pooled is None:
            continue
        metrics["splits"][split] = pooled.pop("_entry")
        table = pooled.get("model")
        if table is not None:
            examples += [{"split": split, "system": "model", "id": table["id"][i],
                          "reference": table["reference"][i], "prediction": table["prediction"][i]}
                         for i in example_indices(table["gene_name"])]
    if cfg.benchmark:
        metrics["benchmark"] = _benchmark(cfg, models, lookups, df, units, unit_dataset, progress,
                                          reference)
    metrics["systems"] = {n: SYSTEM_NOTES.get(n) or _lookup_note(lookups[n]) for n in cfg.systems
                          if n in SYSTEM_NOTES or n in lookups}
    if reference is not None and "model" in metrics["systems"]:
        metrics["systems"]["model"] = RETRIEVAL_NOTE
    model_cfg = json.loads((Path(cfg.model) / "config.json").read_text())
    metrics["meta"] = {
        "dataset": str(ds), "data_dir": str(cfg.data_dir or ""), "model": str(cfg.model),
        "model_config": {k: v for k, v in model_cfg.items() if k not in ("dna_config", "text_config")},
        "train_config": models.train_config, "seed": cfg.seed, "splits": list(cfg.splits),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows_per_split": {s: v["rows"] for s, v in metrics["splits"].items()},
        "eval_config": asdict(cfg), "seconds": round(time.perf_counter() - t0, 1),
    }
    write_report(metrics, examples, out)
    return metrics


def _retrieval_setup(cfg: EvalConfig, models: ModelSource):
    """The systems to run (the retrieval ones only for a retrieval model) and the full reference
    index of a retrieval model (None otherwise)."""
    from dataclasses import replace

    retrieval = getattr(models, "retrieval", False)
    asked = [s for s in cfg.systems if s in RETRIEVAL_SYSTEMS]
    if not retrieval:
        if asked and tuple(cfg.systems) != SYSTEMS:
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
    return {n: ReferenceLookup(data_dir, [], "", aligner=LOOKUP_ALIGNERS[n], variants_name="none yet")
            for n in wanted}


def _lookup_note(lookup) -> str:
    return (f"{lookup.aligner.description}; source: the nearest variant of the unit's training rows "
            "(training split of that split or fold), the training majority where nothing maps")


def _read_anchors(specs: dict[str, str]) -> dict:
    if not specs:
        return {}
    from llamadna.splash.scores import read_anchor_tables

    return read_anchor_tables([f"{b}={p}" if b else p for b, p in specs.items()])


def _run_split(cfg, df, split, parts, unit_dataset, models, lookups, anchors, out, progress, reference=None):
    """Every system on every unit of one split; pooled prediction tables and the split's entry."""
    tables: dict[str, list[dict]] = {}
    test_rows: list[dict] = []
    units = []
    for k, (_, column) in enumerate(parts):
        test = subsample(_rows(df, column, "test"), cfg.limit, cfg.seed)
        if not test:
            log.warning("%s: no test rows, skipped", column)
            continue
        unit = Unit(cfg, split, column, unit_dataset, models, _rows(df, column, "train"), lookups,
                    np.random.default_rng([cfg.seed, SPLIT_COLUMNS.index(split), k]), test,
                    reference=reference)
        units.append(unit)
        test_rows += test
        for i, name in enumerate(cfg.systems):
            progress(f"{column}: {name}", i, len(cfg.systems))
            tables.setdefault(name, []).extend(SYSTEM_RUNNERS[name](unit, test))
    if not test_rows:
        return None
    pooled = {name: prediction_table(test_rows, preds) for name, preds in tables.items()}
    for name, table in pooled.items():
        pl.DataFrame(table).write_csv(out / "predictions" / f"{split}.{name}.tsv", separator="\t")
    entry = _split_entry(cfg, test_rows, units, pooled, anchors, progress)
    entry["variant_tables"] = {u.column: {k.removeprefix("lookup:"): v.description
                                          for k, v in u.cache.items() if k.startswith("lookup:")}
                               for u in units}
    return {**pooled, "_entry": entry}


def gene_clusters(rows: list[dict]) -> np.ndarray:
    """(N,) the gene of each dataset row (split_gene's unit): the clusters of the bootstrap."""
    cols = ("gene_id", "build", "gene_name")  # only these: other columns may mix None and values
    return gene_key(pl.DataFrame({c: [r[c] for r in rows] for c in cols},
                                 schema=dict.fromkeys(cols, pl.Utf8)))


def _split_entry(cfg, test_rows, units, pooled, anchors, progress) -> dict:
    from llamadna.evaluate.stats import accuracy_ceiling, leak_audit, template_floor_sentences

    clusters = gene_clusters(test_rows)
    systems = {name: scored(table, clusters, cfg) for name, table in pooled.items()}
    refs = [r["Annotation"] for r in test_rows]
    floor = template_floor_sentences(test_rows, np.random.default_rng([cfg.seed, 7]))
    floor_sources = [parse_annotation(s)["source"] or "" for s in floor]
    floor_table = {"prediction": floor, "reference": refs, "label_true": [r["Dataset"] for r in test_rows],
                   "label_pred": floor_sources, "label_from_text": floor_sources}
    div = _divergence(cfg, units, clusters, anchors, progress)
    pairs = div.pop("_confidence")
    entry = {
        "rows": len(test_rows), "units": [u.column for u in units],
        "genes": int(len(set(clusters.tolist()))),
        "systems": systems,
        "template_floor": scored(floor_table, clusters, cfg, semantic=False),
        "ceiling": accuracy_ceiling([r["Sequence"] for r in test_rows], [r["Dataset"] for r in test_rows]),
        "leak_audit": {u.column: leak_audit(u.train_rows, u.test_rows) for u in units},
        "divergence": div,
    }
    for name in ("model", "model_novel"):
        if name in pooled:
            pairs += _confidence_pairs(pooled[name]["prediction"], refs, pooled[name]["gene_confidence"])
    if any(c is not None for _, c in pairs):
        from llamadna.evaluate.stats import auroc

        # every setting pooled: the full and the masked index, every divergence rate
        entry["gene_confidence_auroc_all"] = auroc(*zip(*pairs))
    return entry


def _confidence_pairs(predictions: list[str], refs: list[str], confidence: list) -> list[tuple]:
    """(gene right 1/0/NaN, gene confidence) per row."""
    from llamadna.evaluate.metrics import field_hits

    gene = field_hits(predictions, refs)[:, SENTENCE_FIELDS_INDEX["gene"]]
    return list(zip(gene.tolist(), confidence))


def scored(table: dict, clusters: np.ndarray, cfg: EvalConfig, semantic: bool = True) -> dict:
    """compute_metrics of a prediction table, plus 95 % intervals (cluster bootstrap over genes)
    for the field accuracies, their mean, source accuracy / macro F1 and the text metrics."""
    from llamadna.evaluate.metrics import bleu_from_statistics, compute_metrics, row_scores
    from llamadna.evaluate.stats import label_codes, macro_f1_codes

    rs = row_scores(table["prediction"], table["reference"])
    m = compute_metrics(table["prediction"], table["reference"], table["label_true"], table["label_pred"],
                        table["label_from_text"], semantic=semantic, rows=rs)
    fields = np.stack([rs[f"field_{f}"] for f in SENTENCE_FIELDS], axis=1)  # (N, F), NaN = no field
    true, pred, _ = label_codes(table["label_true"], table["label_pred"])

    def stats(idx: np.ndarray) -> list[float]:
        f = np.nanmean(fields[idx], axis=0)
        return [*f, float(np.nanmean(f)), float((true[idx] == pred[idx]).mean()),
                macro_f1_codes(true[idx], pred[idx]),
                bleu_from_statistics(rs["bleu_stats"][idx]), float(rs["rougeL"][idx].mean()),
                float(rs["meteor"][idx].mean())]

    names = [*(f"field_{f}" for f in SENTENCE_FIELDS), "field_mean", "accuracy", "f1_macro", "bleu",
             "rougeL", "meteor"]
    point, lo, hi = _intervals(stats, clusters, cfg)
    m["field_mean"] = float(point[len(SENTENCE_FIELDS)])
    if any(c is not None for c in table.get("gene_confidence", [])):
        from llamadna.evaluate.stats import auroc

        # how well the calibrated gene confidence tells a right gene from a wrong one
        m["gene_confidence_auroc"] = auroc(rs["field_gene"], table["gene_confidence"])
    m["intervals"] = {n: [float(lo[i]), float(hi[i])] for i, n in enumerate(names)}
    return m


def _intervals(stats, clusters: np.ndarray, cfg: EvalConfig):
    """95 % cluster-bootstrap intervals over genes of the statistics `stats(row indices)`."""
    from llamadna.evaluate.stats import cluster_bootstrap_intervals

    return cluster_bootstrap_intervals(stats, clusters, cfg.n_boot, cfg.seed)


def field_scores(preds: list[dict], refs: list[str], true: list[str], clusters: np.ndarray,
                 cfg: EvalConfig) -> dict:
    """Per-field accuracy, their mean and source accuracy with 95 % intervals (no text metrics:
    the divergence curves)."""
    from llamadna.evaluate.metrics import field_hits

    hits = field_hits([p["annotation"] for p in preds], refs)  # (N, F), NaN = no field
    src = np.array([p["source"] == t for p, t in zip(preds, true)], dtype=float)

    def stats(idx: np.ndarray) -> np.ndarray:
        f = np.nanmean(hits[idx], axis=0)
        return np.array([*f, np.nanmean(f), src[idx].mean()])

    point, lo, hi = _intervals(stats, clusters, cfg)
    names = [*SENTENCE_FIELDS, "field_mean", "accuracy"]
    return {n: {"value": float(point[i]), "interval": [float(lo[i]), float(hi[i])]}
            for i, n in enumerate(names)}


def divergence_subsample(cfg: EvalConfig, sizes: list[int]) -> list[np.ndarray]:
    """Per unit (`sizes`: its test rows), the indices of its rows in the divergence curves: a
    seeded subsample of `cfg.divergence_rows` of the split's pooled test rows (all when None or
    when there are no more), in row order."""
    total = sum(sizes)
    n = total if cfg.divergence_rows is None else min(cfg.divergence_rows, total)
    pick = np.sort(np.random.default_rng([cfg.seed, 11]).choice(total, n, replace=False))
    ends = np.cumsum(sizes)
    return [pick[(pick >= e - k) & (pick < e)] - (e - k) for k, e in zip(sizes, ends)]


def _mutated(unit: Unit, rows: list[dict], rates, anchors: dict) -> dict[float, list[dict]]:
    """`rows` (of the unit's test rows) at every rate: nested mutations seeded by (seed, dataset
    row), SPLASH scores recomputed from the build's anchors table (null without one; never
    carried over)."""
    from llamadna.data.mutate import mutate_nested, row_seed

    per_row = [mutate_nested(r["Sequence"], rates, row_seed(unit.cfg.seed, int(r["row"]))) for r in rows]
    out = {}
    for k, rate in enumerate(rates):
        out[rate] = _rescore_splash([{**r, "Sequence": m[k]} for r, m in zip(rows, per_row)], anchors)
    return out


def _rescore_splash(rows: list[dict], anchors: dict) -> list[dict]:
    from llamadna.splash.scores import score_sequences

    out = [{**r, **dict.fromkeys(SPLASH_COLUMNS)} for r in rows]
    for build in {r["build"] for r in rows}:
        table = anchors.get(build, anchors.get(None))
        if table is None:
            continue
        idx = [i for i, r in enumerate(out) if r["build"] == build]
        sc = score_sequences([out[i]["Sequence"] for i in idx], table)
        for c in SPLASH_COLUMNS:
            for i, v in zip(idx, sc[c].to_list()):
                out[i][c] = v
    return out


def _divergence(cfg: EvalConfig, units: list[Unit], clusters: np.ndarray, anchors: dict,
                progress: Progress) -> dict:
    """Field accuracies of the model and every lookup on nested mutations of the test rows."""
    rates = list(cfg.divergence_rates)
    names = [n for n in DIVERGENCE_SYSTEMS if n in cfg.systems]
    picks = divergence_subsample(cfg, [len(u.test_rows) for u in units])
    chosen = [[u.test_rows[i] for i in idx] for u, idx in zip(units, picks)]
    mutated = [_mutated(u, rows, rates, anchors) for u, rows in zip(units, chosen)]
    refs = [r["Annotation"] for rows in chosen for r in rows]
    true = [r["Dataset"] for rows in chosen for r in rows]
    starts = np.cumsum([0, *(len(u.test_rows) for u in units)])
    clusters = clusters[np.concatenate([s + idx for s, idx in zip(starts, picks)]).astype(int)]
    div = {"rates": rates, "splash_recomputed": bool(anchors), "rows": len(refs),
           "of_rows": int(starts[-1]), "systems": {}, "_confidence": []}
    for name in names:
        per_rate = []
        for k, rate in enumerate(rates):
            progress(f"divergence: {name}", k, len(rates))
            preds = [p for u, m in zip(units, mutated) for p in SYSTEM_RUNNERS[name](u, m[rate])]
            per_rate.append(field_scores(preds, refs, true, clusters, cfg))
            if name == "model":
                div["_confidence"] += _confidence_pairs([p["annotation"] for p in preds], refs,
                                                        [p.get("gene_confidence") for p in preds])
        div["systems"][name] = {
            "field_accuracy": {f: [r[f]["value"] for r in per_rate] for f in SENTENCE_FIELDS},
            "accuracy": [r["accuracy"]["value"] for r in per_rate],
            "field_mean": [r["field_mean"]["value"] for r in per_rate],
            "intervals": {f: [r[f]["interval"] for r in per_rate]
                          for f in (*SENTENCE_FIELDS, "field_mean", "accuracy")},
        }
    return div


def _benchmark(cfg: EvalConfig, models: ModelSource, lookups: dict, df: pl.DataFrame, units,
               unit_dataset: str, progress: Progress, reference=None) -> dict:
    """The given model and every lookup on a real benchmark (never trained, tuned or indexed on):
    field accuracy per species and identity bin, intervals by bootstrap over genes."""
    from llamadna.annotate import annotate_rows
    from llamadna.evaluate.benchmark import BENCHMARK_FIELDS, field_hits, read_benchmark, score_benchmark

    rows, truth = read_benchmark(cfg.benchmark)
    given = models.train_config["split"]
    train_rows = _rows(df, given, "train")
    unit = Unit(cfg, given, given, unit_dataset, models, train_rows, lookups, np.random.default_rng(0), rows,
                reference=reference)
    out = {"directory": str(cfg.benchmark), "queries": len(rows), "model_split": given, "systems": {}}
    names = [n for n in ("model", *LOOKUPS) if n in cfg.systems]
    clusters = truth["gene"].to_numpy()
    for k, name in enumerate(names):
        progress("benchmark", k, len(names))
        if name == "model":
            model = models.get(given, "model", unit_dataset)
            preds = annotate_rows(model, unit.evidence(rows, "full") if model.processor.retrieval else rows,
                                  batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                                  decoding=cfg.decoding)
        else:
            preds = unit.lookup(name, rows)
        fields = [parse_annotation(p["annotation"]) for p in preds]
        res = score_benchmark(truth, fields)
        hits = field_hits(truth, fields)
        _, lo, hi = _intervals(lambda idx, h=hits: [h[f][idx].mean() for f in BENCHMARK_FIELDS],
                               clusters, cfg)
        res["all_intervals"] = {f: [float(lo[i]), float(hi[i])] for i, f in enumerate(BENCHMARK_FIELDS)}
        out["systems"][name] = res
    return out
