"""`llamadna evaluate`: the model against the alternatives a user has, on the same test rows.

Per split (split_gene by default; `--split all` = split_random, split_gene, split_chrom), every
system in `SYSTEM_RUNNERS` annotates the same test rows:
- model: the given model when it was trained on that split, else one trained with the same
  settings on that split (the `ModelSource` supplies models; `train.cache.TrainedModels` trains
  and caches them, so this module never trains);
- majority: the training rows' most frequent source, and the most frequent sentence of that
  source's rows (so the sentence names the class it predicts);
- no_dna: the same training with the prompt only (no sequence);
- shuffled_dna: the model on the test sequences with their bases permuted;
- reference_lookup: minimap2 (mappy) against the reference regions of the row's build, then
  the annotation tables fill the same sentence; source = the nearest known variant's;
- seed_faithful: the same training with gene metadata in the prompt (the poster's setting);
- the poster's reported numbers, labelled as reported, not measured.
Divergence: the test sequences mutated at 0-30 % substitutions plus small indels (seeded), the
model and the reference lookup re-run, per-field accuracy per rate.
Writes REPORT_DIR/metrics.json, REPORT_DIR/report.html and the predictions of every system.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl

from llamadna.constants import DEFAULT_BATCH_SIZE, DEFAULT_MAX_NEW_TOKENS, SPLIT_COLUMNS
from llamadna.data.paths import dataset_parquet
from llamadna.data.splits import subsample
from llamadna.data.template import SENTENCE_FIELDS
from llamadna.errors import ConfigError
from llamadna.evaluate.divergence import DIVERGENCE_RATES
from llamadna.evaluate.predict import example_indices, prediction_table, split_rows
from llamadna.progress import Progress, no_progress

log = logging.getLogger(__name__)

# The original poster's reported numbers (not measured here).
REPORTED = {
    "poster (reported)": {"accuracy": 0.8719, "f1_macro": 0.6422, "bleu": 0.6118, "rougeL": 0.7591,
                          "meteor": 0.8413},
    "poster baseline (reported)": {"accuracy": 0.8065, "f1_macro": 0.4464, "bleu": 0.5685,
                                   "rougeL": 0.7172, "meteor": 0.7833},
}
DIVERGENCE_SYSTEMS = ("model", "reference_lookup")  # re-run on mutated test sequences


class ModelSource(Protocol):
    """Supplies the models `evaluate` runs: `get(split, variant)` with variant "model",
    "no_dna" or "seed_faithful"; `train_config` is the given model's training settings."""

    train_config: dict

    def get(self, split: str, variant: str): ...


@dataclass
class EvalConfig:
    model: str
    dataset: str
    out: str
    splits: tuple[str, ...] = ("split_gene",)
    data_dir: str | None = None  # reference bundle for the lookup (default: the dataset's)
    systems: tuple[str, ...] | None = None  # default: every system of SYSTEM_RUNNERS
    divergence_rates: tuple[float, ...] = DIVERGENCE_RATES
    seed: int = 0
    limit: int | None = None  # test rows per split (seeded subsample) for quick runs
    batch_size: int = DEFAULT_BATCH_SIZE
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    # overrides for the models trained for evaluation (same settings as the given model otherwise)
    epochs: int | None = None
    max_steps: int | None = None

    def __post_init__(self) -> None:
        self.systems = tuple(SYSTEM_RUNNERS) if self.systems is None else tuple(self.systems)
        for s in self.splits:
            if s not in SPLIT_COLUMNS:
                raise ConfigError(f"unknown split {s!r}: expected one of {SPLIT_COLUMNS}")
        for name in self.systems:
            if name not in SYSTEM_RUNNERS:
                raise ConfigError(f"unknown system {name!r}: expected one of {tuple(SYSTEM_RUNNERS)}")


# ------------------------------------------------------------------------------------ systems


@dataclass
class SplitRun:
    """What the systems of one split share."""

    cfg: EvalConfig
    split: str
    models: ModelSource
    train_rows: list[dict]
    lookup: object | None  # baselines.ReferenceLookup, built once when a system needs it
    rng: np.random.Generator  # shuffled DNA

    def annotate(self, variant: str, rows: list[dict]) -> list[dict]:
        from llamadna.annotate import annotate_rows

        return annotate_rows(self.models.get(self.split, variant), rows,
                             batch_size=self.cfg.batch_size, max_new_tokens=self.cfg.max_new_tokens)


def _model(run: SplitRun, rows: list[dict]) -> list[dict]:
    return run.annotate("model", rows)


def _majority(run: SplitRun, rows: list[dict]) -> list[dict]:
    from llamadna.evaluate.baselines import majority_baseline, majority_sentence

    top = majority_baseline([r["Dataset"] for r in run.train_rows], 1)[0]
    sentence = majority_sentence(run.train_rows, source=top)
    return [{"annotation": sentence, "source": top, "source_from_text": top}] * len(rows)


def _no_dna(run: SplitRun, rows: list[dict]) -> list[dict]:
    return run.annotate("no_dna", rows)


def _shuffled_dna(run: SplitRun, rows: list[dict]) -> list[dict]:
    from llamadna.evaluate.baselines import shuffle_sequence

    return run.annotate("model", [{**r, "Sequence": shuffle_sequence(r["Sequence"], run.rng)}
                                  for r in rows])


def _reference_lookup(run: SplitRun, rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        hit = run.lookup.lookup(r["Sequence"], r["build"])
        out.append({"annotation": hit.get("annotation") or "", "source": hit.get("source"),
                    "source_from_text": hit.get("source")})
    return out


def _seed_faithful(run: SplitRun, rows: list[dict]) -> list[dict]:
    return run.annotate("seed_faithful", rows)


# name -> runner(split run, test rows) -> one prediction dict per row (`annotation`, `source`, ...)
SYSTEM_RUNNERS: dict[str, Callable[[SplitRun, list[dict]], list[dict]]] = {
    "model": _model,
    "majority": _majority,
    "no_dna": _no_dna,
    "shuffled_dna": _shuffled_dna,
    "reference_lookup": _reference_lookup,
    "seed_faithful": _seed_faithful,
}
SYSTEMS = tuple(SYSTEM_RUNNERS)


# ------------------------------------------------------------------------------------ evaluation


def evaluate(cfg: EvalConfig, models: ModelSource, progress: Progress = no_progress) -> dict:
    """Run every system on every requested split; write metrics.json, report.html, predictions."""
    from llamadna.evaluate.report import write_report

    t0 = time.perf_counter()
    out = Path(cfg.out)
    ds = dataset_parquet(cfg.dataset)
    lookup = None
    if "reference_lookup" in cfg.systems:
        from llamadna.data.paths import default_data_dir
        from llamadna.evaluate.baselines import ReferenceLookup

        lookup = ReferenceLookup(cfg.data_dir or default_data_dir())
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictions").mkdir(exist_ok=True)
    metrics: dict = {"meta": {}, "splits": {}, "reported": REPORTED}
    examples: list[dict] = []
    for split in cfg.splits:
        test = subsample(split_rows(ds, split, "test"), cfg.limit, cfg.seed)
        if not test:
            log.warning("%s: no test rows, skipped", split)
            continue
        run = SplitRun(cfg, split, models, split_rows(ds, split, "train"), lookup,
                       np.random.default_rng([cfg.seed, SPLIT_COLUMNS.index(split)]))
        systems, model_table = _score_systems(run, test, out / "predictions", progress)
        metrics["splits"][split] = {"rows": len(test), "systems": systems,
                                    "divergence": _divergence(run, test)}
        if model_table is not None:
            examples += [{"split": split, "system": "model", "id": model_table["id"][i],
                          "reference": model_table["reference"][i],
                          "prediction": model_table["prediction"][i]}
                         for i in example_indices(model_table["gene_name"])]
    model_cfg = json.loads((Path(cfg.model) / "config.json").read_text())
    metrics["meta"] = {
        "dataset": str(ds), "data_dir": str(cfg.data_dir or ""), "model": str(cfg.model),
        "model_config": {k: v for k, v in model_cfg.items()
                         if k not in ("dna_config", "text_config")},
        "train_config": models.train_config, "seed": cfg.seed, "splits": list(cfg.splits),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows_per_split": {s: v["rows"] for s, v in metrics["splits"].items()},
        "eval_config": asdict(cfg), "seconds": round(time.perf_counter() - t0, 1),
    }
    write_report(metrics, examples, out)
    return metrics


def _score_systems(run: SplitRun, test: list[dict], pred_dir: Path, progress: Progress
                   ) -> tuple[dict, dict | None]:
    """Every requested system on the test rows: metrics per system (predictions written to
    pred_dir), and the model's prediction table (None when the model is not evaluated)."""
    from llamadna.evaluate.metrics import compute_metrics

    systems, model_table = {}, None
    names = run.cfg.systems
    for k, name in enumerate(names):
        progress(f"{run.split}: {name}", k, len(names))
        table = prediction_table(test, SYSTEM_RUNNERS[name](run, test))
        pl.DataFrame(table).write_csv(pred_dir / f"{run.split}.{name}.tsv", separator="\t")
        systems[name] = compute_metrics(
            table["prediction"], table["reference"], table["label_true"], table["label_pred"],
            table["label_from_text"])
        if name == "model":
            model_table = table
    return systems, model_table


def _divergence(run: SplitRun, test: list[dict]) -> dict:
    """Per-field accuracy of the model and the reference lookup on mutated test sequences."""
    from llamadna.evaluate.divergence import mutate
    from llamadna.evaluate.metrics import compute_metrics

    cfg = run.cfg
    div = {"rates": list(cfg.divergence_rates), "systems": {}}
    for name in DIVERGENCE_SYSTEMS:
        if name not in cfg.systems:
            continue
        per_rate = {"field_accuracy": {f: [] for f in SENTENCE_FIELDS}, "accuracy": []}
        for k, rate in enumerate(cfg.divergence_rates):
            mrng = np.random.default_rng([cfg.seed, SPLIT_COLUMNS.index(run.split), k])
            mutated = [{**r, "Sequence": mutate(r["Sequence"], rate, mrng)} for r in test]
            tab = prediction_table(test, SYSTEM_RUNNERS[name](run, mutated))
            m = compute_metrics(tab["prediction"], tab["reference"], tab["label_true"],
                                tab["label_pred"], tab["label_from_text"], semantic=False)
            for f in SENTENCE_FIELDS:
                per_rate["field_accuracy"][f].append(m["field_accuracy"][f])
            per_rate["accuracy"].append(m["accuracy"])
        div["systems"][name] = per_rate
    return div


__all__ = ["EvalConfig", "ModelSource", "REPORTED", "SYSTEMS", "SYSTEM_RUNNERS", "evaluate"]
