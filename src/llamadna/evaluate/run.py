"""`llamadna evaluate`: the model against the alternatives a user has, on the same test rows.

Per split (split_gene by default; `--split all` = split_random, split_gene, split_chrom):
- model: the given model when it was trained on that split, else one trained here with the
  same settings on that split (same for the baselines below), cached in REPORT_DIR/models/;
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
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from llamadna.constants import SPLIT_COLUMNS
from llamadna.errors import InputError

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]

# The original poster's reported numbers (not measured here).
REPORTED = {
    "poster (reported)": {"accuracy": 0.8719, "f1_macro": 0.6422, "bleu": 0.6118, "rougeL": 0.7591,
                          "meteor": 0.8413},
    "poster baseline (reported)": {"accuracy": 0.8065, "f1_macro": 0.4464, "bleu": 0.5685,
                                   "rougeL": 0.7172, "meteor": 0.7833},
}
SYSTEMS = ("model", "majority", "no_dna", "shuffled_dna", "reference_lookup", "seed_faithful")
FIELDS = ("chrom", "gene", "description", "transcript_type", "phenotype", "dataset")


@dataclass
class EvalConfig:
    model: str
    dataset: str
    out: str
    splits: tuple[str, ...] = ("split_gene",)
    data_dir: str | None = None  # reference bundle for the lookup (default: the dataset's)
    systems: tuple[str, ...] = SYSTEMS
    divergence_rates: tuple[float, ...] = (0.0, 0.01, 0.05, 0.10, 0.20, 0.30)
    seed: int = 0
    limit: int | None = None  # test rows per split (seeded subsample) for quick runs
    batch_size: int = 16
    max_new_tokens: int = 96
    # overrides for the models trained here (same settings as the given model otherwise)
    epochs: int | None = None
    max_steps: int | None = None


def _rows(dataset: Path, split: str, subset: str) -> list[dict]:
    df = pl.read_parquet(dataset)
    return df.with_row_index("row").filter(pl.col(split) == subset).to_dicts()


def _subsample(rows: list[dict], n: int | None, seed: int) -> list[dict]:
    if n is None or len(rows) <= n:
        return rows
    idx = np.sort(np.random.default_rng(seed).choice(len(rows), n, replace=False))
    return [rows[i] for i in idx]


class Models:
    """The given model and the ones trained here (per split and variant), cached on disk."""

    def __init__(self, cfg: EvalConfig, progress: Progress | None):
        from llamadna.train.train import TrainConfig

        self.cfg, self.progress = cfg, progress
        tc = json.loads((Path(cfg.model) / "train_config.json").read_text())
        self.base = TrainConfig(**tc)
        self.loaded: dict[tuple[str, str], object] = {}

    def get(self, split: str, variant: str):
        """variant: "model", "no_dna" or "seed_faithful"."""
        from llamadna.annotate import load_model
        from llamadna.train.train import train

        key = (split, variant)
        if key in self.loaded:
            return self.loaded[key]
        b = self.base
        given = (variant == "model" and b.split == split and b.use_dna
                 and b.prompt_mode == "leak-free")
        if given:
            path = Path(self.cfg.model)
        else:
            path = Path(self.cfg.out) / "models" / split / variant
            tc = replace(
                b, dataset=self.cfg.dataset, out=str(path), split=split,
                use_dna=variant != "no_dna",
                prompt_mode="seed-faithful" if variant == "seed_faithful" else "leak-free",
                epochs=self.cfg.epochs or b.epochs,
                max_steps=self.cfg.max_steps if self.cfg.max_steps is not None else b.max_steps,
            )
            done = (path / "train_summary.json").exists() and (
                json.loads((path / "train_config.json").read_text()) == asdict(tc))
            if not done:
                log.info("training %s for %s (same settings as %s)", variant, split, self.cfg.model)
                train(tc, progress=None)
        model = load_model(path)
        self.loaded[key] = model
        return model


def _prediction_table(rows: list[dict], preds: list[dict]) -> dict[str, list]:
    return {
        "id": [f"{r['build']}:{r['variant_id']}:{r['row']}" for r in rows],
        "reference": [r["Annotation"] for r in rows],
        "prediction": [p["annotation"] or "" for p in preds],
        "label_true": [r["Dataset"] for r in rows],
        "label_pred": [p["dataset"] for p in preds],
        "label_from_text": [p.get("dataset_from_text") for p in preds],
    }


def evaluate(cfg: EvalConfig, progress: Progress | None = None) -> dict:
    """Run every system on every requested split; write metrics.json, report.html, predictions."""
    from llamadna.annotate import annotate_rows
    from llamadna.evaluate.baselines import (
        ReferenceLookup,
        majority_baseline,
        majority_sentence,
        shuffle_sequence,
    )
    from llamadna.evaluate.divergence import mutate
    from llamadna.evaluate.metrics import compute_metrics
    from llamadna.evaluate.report import N_EXAMPLES, write_report

    t0 = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = Path(cfg.dataset)
    ds = ds / "dataset.parquet" if ds.is_dir() else ds
    if not ds.exists():
        raise InputError(ds, "dataset not found (expected the output of `llamadna build-dataset`)")
    for s in cfg.splits:
        if s not in SPLIT_COLUMNS:
            raise ValueError(f"unknown split {s!r}: expected one of {SPLIT_COLUMNS}")
    models = Models(cfg, progress)
    lookup = None
    if "reference_lookup" in cfg.systems:
        from llamadna.data.paths import default_data_dir

        lookup = ReferenceLookup(cfg.data_dir or default_data_dir())

    def run_model(model, rows):
        return annotate_rows(model, rows, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens)

    def run_lookup(rows):
        res = []
        for r in rows:
            hit = lookup.lookup(r["Sequence"], r["build"])
            res.append({"annotation": hit.get("annotation") or "", "dataset": hit.get("dataset"),
                        "dataset_from_text": hit.get("dataset")})
        return res

    metrics: dict = {"meta": {}, "splits": {}, "reported": REPORTED}
    examples: list[dict] = []
    pred_dir = out / "predictions"
    pred_dir.mkdir(exist_ok=True)
    for split in cfg.splits:
        train_rows = _rows(ds, split, "train")
        test = _subsample(_rows(ds, split, "test"), cfg.limit, cfg.seed)
        if not test:
            log.warning("%s: no test rows, skipped", split)
            continue
        rng = np.random.default_rng([cfg.seed, SPLIT_COLUMNS.index(split)])
        systems: dict[str, dict] = {}
        tables: dict[str, dict] = {}
        for name in cfg.systems:
            if progress is not None:
                progress(f"{split}: {name}", cfg.systems.index(name), len(cfg.systems))
            if name == "model":
                preds = run_model(models.get(split, "model"), test)
            elif name == "majority":
                top = majority_baseline([r["Dataset"] for r in train_rows], 1)[0]
                sent = majority_sentence(train_rows, source=top)
                preds = [{"annotation": sent, "dataset": top, "dataset_from_text": top}] * len(test)
            elif name == "no_dna":
                preds = run_model(models.get(split, "no_dna"), test)
            elif name == "shuffled_dna":
                shuffled = [{**r, "Sequence": shuffle_sequence(r["Sequence"], rng)} for r in test]
                preds = run_model(models.get(split, "model"), shuffled)
            elif name == "reference_lookup":
                preds = run_lookup(test)
            elif name == "seed_faithful":
                preds = run_model(models.get(split, "seed_faithful"), test)
            else:
                raise ValueError(f"unknown system {name!r}: expected one of {SYSTEMS}")
            table = _prediction_table(test, preds)
            tables[name] = table
            pl.DataFrame(table).write_csv(pred_dir / f"{split}.{name}.tsv", separator="\t")
            systems[name] = compute_metrics(
                table["prediction"], table["reference"], table["label_true"], table["label_pred"],
                table["label_from_text"])
        # divergence curve: model and reference lookup on mutated test sequences
        div = {"rates": list(cfg.divergence_rates), "systems": {}}
        for name in ("model", "reference_lookup"):
            if name not in cfg.systems:
                continue
            per_rate = {"field_accuracy": {f: [] for f in FIELDS}, "accuracy": []}
            for k, rate in enumerate(cfg.divergence_rates):
                mrng = np.random.default_rng([cfg.seed, SPLIT_COLUMNS.index(split), k])
                mutated = [{**r, "Sequence": mutate(r["Sequence"], rate, mrng)} for r in test]
                preds = (run_model(models.get(split, "model"), mutated) if name == "model"
                         else run_lookup(mutated))
                tab = _prediction_table(test, preds)
                m = compute_metrics(tab["prediction"], tab["reference"], tab["label_true"],
                                    tab["label_pred"], tab["label_from_text"], semantic=False)
                for f in FIELDS:
                    per_rate["field_accuracy"][f].append(m["field_accuracy"][f])
                per_rate["accuracy"].append(m["accuracy"])
            div["systems"][name] = per_rate
        metrics["splits"][split] = {"rows": len(test), "systems": systems, "divergence": div}
        if "model" in tables:
            t = tables["model"]
            for i in example_indices([r["gene_name"] for r in test], N_EXAMPLES):
                examples.append({"split": split, "system": "model", "id": t["id"][i],
                                 "reference": t["reference"][i], "prediction": t["prediction"][i]})
    model_cfg = json.loads((Path(cfg.model) / "config.json").read_text())
    metrics["meta"] = {
        "dataset": str(ds), "data_dir": str(cfg.data_dir or ""), "model": str(cfg.model),
        "model_config": {k: v for k, v in model_cfg.items() if k not in ("dna_config", "text_config")},
        "train_config": asdict(models.base), "seed": cfg.seed, "splits": list(cfg.splits),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows_per_split": {s: v["rows"] for s, v in metrics["splits"].items()},
        "eval_config": asdict(cfg), "seconds": round(time.perf_counter() - t0, 1),
    }
    write_report(metrics, examples, out)
    return metrics


def example_indices(genes: list[str], n: int) -> list[int]:
    """Rows shown as examples: the first row of each gene in test order (so the examples cover
    up to n different genes), then further rows in order when there are fewer genes than n."""
    first: dict[str, int] = {}
    for i, g in enumerate(genes):
        first.setdefault(g, i)
    picked = list(first.values())[:n]
    chosen = set(picked)
    rest = [i for i in range(len(genes)) if i not in chosen]
    return sorted(picked + rest[: n - len(picked)])


__all__ = ["EvalConfig", "evaluate", "REPORTED", "SYSTEMS", "example_indices"]
