"""Evaluation runs of the same rows side by side: one model trained with several seeds, or
variants of it, each with several seeds (`llamadna compare`).

Why: the tiny model retrained with another seed moves the pooled validation macro-F1 of the
out-of-reference section by up to 0.07 (docs/RESULTS.md, nineteenth pass), more than the margins
a change is judged by, so one run per variant decides nothing. This reads `llamadna evaluate`
output directories (metrics.json, predictions/out_of_reference.*.tsv) and gives, per run:

- **validation** (the pooled validation rows a model's settings may be chosen on; the model's
  answers only; a retrieval model's run has them, another's not): genic rows answered with
  their own gene, outcome macro-F1, novel rows answered with no gene, gene claims on rows of no
  gene, intergenic windows answered "intergenic";
- **diverged** (runs whose evaluation wrote it): the same validation genic rows' copies diverged
  at the calibration's rates, answered with their own gene, per rate;
- **test**: the model's outcome macro-F1 with the run's interval, and the model against another
  system (`retriever_tuned` by default): the macro-F1 difference with the run's paired
  cluster-bootstrap interval, and the rows only one of the two gets right, grouped by what the
  row is and what each answered. With `n_boot`, the difference's interval is computed again from
  the tables with that many resamples (tables written before the "cluster" column cannot be);

and per variant (a label given to several runs), the mean, least and most of each figure.
Runs are compared only on the same rows: every table's ids must be the first run's.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from llamadna.errors import ConfigError, InputError
from llamadna.evaluate.config import COMPARE_AGAINST
from llamadna.evaluate.out_of_reference import UNPARSED, macro_f1_difference
from llamadna.retrieve.outcome import macro_f1, outcome_correct, scored_labels

PREDICTIONS = "predictions"
TEST_TABLE = "out_of_reference.{system}.tsv"
VALIDATION_TABLE = "out_of_reference.validation.model.tsv"
DIVERGED_TABLE = "out_of_reference.validation_diverged.model.tsv"
# (figure, its name in tables); counts are "k/n", the others floats
VALIDATION_FIGURES = (("genic_own_gene", "genic: own gene"), ("macro_f1", "macro-F1"),
                      ("novel_no_gene", "novel: no gene"), ("gene_claims", "gene claims, no gene"),
                      ("intergenic", "intergenic: intergenic"))
TEST_FIGURES = (("macro_f1", "macro-F1"), ("difference", "minus {against}"),
                ("model_only", "model only right"), ("other_only", "{against} only right"))


@dataclass
class Run:
    """One evaluation run: its label (the variant it belongs to), directory, the seed its model
    was trained with, its metrics.json and its tables (test: the model's and `against`'s;
    validation and diverged: None where the run has none)."""
    label: str
    path: Path
    train_seed: int | None
    metrics: dict
    validation: pl.DataFrame | None
    model: pl.DataFrame
    other: pl.DataFrame
    diverged: pl.DataFrame | None = None


def _table(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise InputError(path, "no such table (an `llamadna evaluate` run with its out-of-reference "
                         "section writes it)")
    try:
        t = pl.read_csv(path, separator="\t", schema_overrides={"truth_gene": pl.Utf8, "gene": pl.Utf8,
                                                                "cluster": pl.Utf8})
    except pl.exceptions.PolarsError as e:
        raise InputError(path, f"not a readable table: {str(e).splitlines()[0]}") from None
    missing = {"id", "kind", "truth", "truth_gene", "outcome", "gene"} - set(t.columns)
    if missing:
        raise InputError(path, f"columns {', '.join(sorted(missing))} missing")
    return t


def run_spec(spec: str) -> tuple[str, Path]:
    """(label, directory) of "DIR" or "LABEL=DIR" (label: DIR's name where none is given)."""
    label, _, path = spec.rpartition("=")
    return label or Path(path).name, Path(path)


def read_run(spec: str, against: str = COMPARE_AGAINST) -> Run:
    """A run from "DIR" or "LABEL=DIR" (`run_spec`)."""
    label, path = run_spec(spec)
    mpath = path / "metrics.json"
    if not mpath.is_file():
        raise InputError(path, "no metrics.json: not an `llamadna evaluate` output directory")
    try:
        metrics = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise InputError(mpath, f"not JSON ({e.msg})", line=e.lineno) from None
    if "out_of_reference" not in metrics:
        raise InputError(path, "the run has no out-of-reference section (run without "
                         "--no-out-of-reference)")
    versus = metrics["out_of_reference"].get("model_versus", {})
    if against not in versus:
        raise InputError(path, f"the model was not compared with {against!r} in this run "
                         f"(it was with: {', '.join(versus) or 'none'})")
    pred = path / PREDICTIONS
    seed = (metrics.get("meta", {}).get("train_config") or {}).get("seed")
    val, div = pred / VALIDATION_TABLE, pred / DIVERGED_TABLE
    model, other = (_table(pred / TEST_TABLE.format(system=s)) for s in ("model", against))
    if model["id"].to_list() != other["id"].to_list():
        raise InputError(pred / TEST_TABLE.format(system=against), "not the rows of "
                         f"{TEST_TABLE.format(system='model')} beside it")
    diverged = _table(div) if div.exists() else None
    if diverged is not None and "rate" not in diverged.columns:
        raise InputError(div, "no rate column")
    return Run(label, path, seed, metrics, _table(val) if val.exists() else None, model, other, diverged)


def _answers(t: pl.DataFrame) -> tuple[list[str | None], list[str | None]]:
    return [None if o == UNPARSED else o for o in t["outcome"]], t["gene"].to_list()


def _truths(t: pl.DataFrame) -> list[dict]:
    return [{"outcome": o, "gene_name": g} for o, g in zip(t["truth"], t["truth_gene"])]


def validation_figures(t: pl.DataFrame) -> dict:
    """The validation figures of one model's table (see the module's docstring): counts as
    [k, n], macro-F1 as a float."""
    rows = t.to_dicts()
    answers, truths = _answers(t), _truths(t)
    right = [bool(outcome_correct(o, g, tr)) for o, g, tr in zip(*answers, truths)]

    def count(pick, ok) -> list[int]:
        sel = [i for i, r in enumerate(rows) if pick(r)]
        return [sum(bool(ok(i)) for i in sel), len(sel)]

    return {  # genic and novel rows: right as `outcome_correct` says (own gene; anything but a gene)
        "genic_own_gene": count(lambda r: r["truth"] == "gene", right.__getitem__),
        "macro_f1": macro_f1(*scored_labels(*answers, truths)),
        "novel_no_gene": count(lambda r: r["truth"] == "novel", right.__getitem__),
        "gene_claims": count(lambda r: r["truth"] != "gene", lambda i: rows[i]["outcome"] == "gene"),
        "intergenic": count(lambda r: r["kind"] == "intergenic",
                            lambda i: rows[i]["outcome"] == "intergenic"),
    }


def rate_key(rate: float) -> str:
    """A divergence rate as the diverged figures are keyed: 0.2 -> "20 %"."""
    return f"{100 * rate:g} %"


def diverged_figures(t: pl.DataFrame) -> dict:
    """The diverged figures of one model's table: per rate (`rate_key`), [copies answered with
    their own gene (`outcome_correct`), copies]."""
    right = [bool(outcome_correct(o, g, tr)) for o, g, tr in zip(*_answers(t), _truths(t))]
    rates = t["rate"].to_list()
    return {rate_key(rate): [sum(right[i] for i, r in enumerate(rates) if r == rate), rates.count(rate)]
            for rate in sorted(set(rates))}


def _said(outcome: str, gene: str | None, truth: Mapping) -> str:
    """An answer as `disagreements` counts it: a genic row's own gene is "its gene"; any other
    gene "another gene" for a genic or novel row (whose gene the index lacks), "a gene" for a row
    of no gene; else the outcome."""
    if outcome != "gene":
        return outcome
    if truth["outcome"] == "gene" and gene == truth["gene_name"]:
        return "its gene"
    return "another gene" if truth["gene_name"] else "a gene"


def disagreements(model: pl.DataFrame, other: pl.DataFrame) -> list[dict]:
    """The rows only one of two systems gets right (`outcome_correct`), counted by truth kind,
    what each said (`_said`) and which is right; most rows first."""
    counts: Counter = Counter()
    truths = _truths(model)
    for kind, truth, m, o in zip(model["kind"], truths, zip(*_answers(model)), zip(*_answers(other))):
        right_m, right_o = bool(outcome_correct(*m, truth)), bool(outcome_correct(*o, truth))
        if right_m != right_o:
            counts[(kind, _said(m[0] or UNPARSED, m[1], truth), _said(o[0] or UNPARSED, o[1], truth),
                    "model" if right_m else "other")] += 1
    return [{"kind": k, "model_says": a, "other_says": b, "right": w, "rows": n}
            for (k, a, b, w), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def figures_on_test(run: Run, against: str, n_boot: int | None = None, seed: int = 0) -> dict:
    """The run's test figures (module docstring). The macro-F1 interval and the difference's
    are the run's own (metrics.json); with `n_boot`, the difference's is computed again from the
    tables' clusters with `n_boot` resamples and bootstrap seed `seed` (`recomputed`)."""
    oor = run.metrics["out_of_reference"]
    mine, vs = oor["systems"]["model"], oor["model_versus"][against]
    out = {"macro_f1": mine["macro_f1"], "macro_f1_interval": mine.get("macro_f1_interval"),
           "difference": vs["macro_f1_difference"],
           "difference_interval": vs["macro_f1_difference_interval"],
           "model_only": vs["model_only"], "other_only": vs["other_only"],
           "n_boot": (run.metrics.get("meta", {}).get("eval_config") or {}).get("n_boot"),
           "disagreements": disagreements(run.model, run.other)}
    if n_boot:
        if "cluster" not in run.model.columns:
            raise InputError(run.path / PREDICTIONS / TEST_TABLE.format(system="model"), "no "
                             "cluster column (written before it was added): its interval cannot be "
                             "computed again; leave out --n-boot to read the run's own")
        diff, iv = macro_f1_difference(_answers(run.model), _answers(run.other), _truths(run.model),
                                       run.model["cluster"].to_list(), n_boot, seed)
        out["recomputed"] = {"n_boot": n_boot, "seed": seed, "difference": diff, "interval": iv}
    return out


def _same_rows(runs: Sequence[Run]) -> None:
    first = runs[0]
    for r in runs[1:]:
        for name, what in (("validation", "validation rows"), ("diverged", "diverged validation copies")):
            if (getattr(r, name) is None) != (getattr(first, name) is None):
                has, lacks = (r, first) if getattr(first, name) is None else (first, r)
                raise InputError(lacks.path, f"no {what}, and {has.path} has them: runs are "
                                 "compared on the same rows only")
        for name in ("validation", "diverged", "model", "other"):
            if getattr(r, name) is None:
                continue
            if getattr(r, name)["id"].to_list() != getattr(first, name)["id"].to_list():
                raise InputError(r.path, f"not the {name} rows of {first.path}: runs are "
                                 "compared on the same rows only (the same dataset, split, folds "
                                 "and evaluation seed)")


def summarize(values: Sequence) -> dict:
    """Mean, least and most of floats, or of counts [k, n] (of k; n must agree)."""
    if values and isinstance(values[0], list):
        ns = {n for _, n in values}
        if len(ns) != 1:
            raise ValueError(f"counts out of different totals: {sorted(ns)}")
        ks = [k for k, _ in values]
        return {"mean": sum(ks) / len(ks), "min": min(ks), "max": max(ks), "n": ns.pop()}
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}


def compare_runs(specs: Sequence[str], against: str = COMPARE_AGAINST, n_boot: int | None = None,
                 seed: int = 0) -> dict:
    """`llamadna compare`: every run's figures and each variant's summary (module docstring)."""
    if not specs:
        raise ConfigError("no runs to compare")
    runs = [read_run(s, against) for s in specs]
    _same_rows(runs)
    figures = [{"validation": None if r.validation is None else validation_figures(r.validation),
                "diverged": None if r.diverged is None else diverged_figures(r.diverged),
                "test": figures_on_test(r, against, n_boot, seed)} for r in runs]
    parts = [("test", [(k, name.format(against=against)) for k, name in TEST_FIGURES])]
    if runs[0].diverged is not None:
        parts.insert(0, ("diverged", [(k, f"{k}: own gene") for k in figures[0]["diverged"]]))
    if runs[0].validation is not None:
        parts.insert(0, ("validation", list(VALIDATION_FIGURES)))
    variants: dict[str, list[dict]] = {}
    for r, f in zip(runs, figures):
        variants.setdefault(r.label, []).append(f)
    summary = {label: {part: {name: summarize([f[part][name] for f in fs]) for name, _ in figs}
                       for part, figs in parts}
               for label, fs in variants.items()}
    rows = {"validation": None if runs[0].validation is None else runs[0].validation.height,
            "diverged": None if runs[0].diverged is None else runs[0].diverged.height,
            "test": runs[0].model.height}
    return {"against": against, "rows": rows,
            "figures": {part: [list(f) for f in figs] for part, figs in parts},  # [key, name] per part
            "runs": [{"label": r.label, "path": str(r.path), "train_seed": r.train_seed, **f}
                     for r, f in zip(runs, figures)],
            "variants": {label: {"runs": len(fs), **summary[label]} for label, fs in variants.items()}}


def figure_text(value, digits: int = 4) -> str:
    """A figure as the tables print it: [k, n] as "k/n", a float rounded, a summary as
    "mean (min-max)"."""
    if isinstance(value, Mapping):
        if "n" in value:
            return f"{value['mean']:.1f}/{value['n']} ({value['min']}-{value['max']})"
        if isinstance(value["min"], int) and isinstance(value["max"], int):
            return f"{value['mean']:.1f} ({value['min']}-{value['max']})"
        return f"{value['mean']:.{digits}f} ({value['min']:.{digits}f}-{value['max']:.{digits}f})"
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}/{value[1]}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def interval_text(iv: Sequence[float] | None) -> str:
    """A signed interval as "[-0.0052, +0.0305]"; "(no interval)" where there is none."""
    return "(no interval)" if iv is None else f"[{iv[0]:+.4f}, {iv[1]:+.4f}]"
