"""Divergence curves: the model and every lookup on nested mutations of a split's test rows.

A seeded subsample of the split's pooled test rows (`EvalConfig.divergence_rows`) is mutated at
every rate of `EvalConfig.divergence_rates` (nested substitutions seeded by the evaluation's seed
and the dataset row), its SPLASH scores recomputed from the anchors tables (null without them,
never carried over), and every system of `systems.DIVERGENCE_SYSTEMS` re-run on it.
"""

from __future__ import annotations

import numpy as np

from llamadna.constants import SPLASH_COLUMNS
from llamadna.data.template import SENTENCE_FIELDS
from llamadna.evaluate.config import EvalConfig
from llamadna.evaluate.schema import Divergence, DivergenceCurves, FieldScore
from llamadna.evaluate.scoring import confidence_pairs, field_scores
from llamadna.evaluate.systems import BY_NAME, DIVERGENCE_SYSTEMS, EvalContext, Unit


def divergence_subsample(cfg: EvalConfig, sizes: list[int]) -> list[np.ndarray]:
    """Per unit (`sizes`: its test rows), the indices of its rows in the divergence curves: a
    seeded subsample of `cfg.divergence_rows` of the split's pooled test rows (all when None or
    when there are no more), in row order."""
    total = sum(sizes)
    n = total if cfg.divergence_rows is None else min(cfg.divergence_rows, total)
    pick = np.sort(np.random.default_rng([cfg.seed, 11]).choice(total, n, replace=False))
    ends = np.cumsum(sizes)
    return [pick[(pick >= e - k) & (pick < e)] - (e - k) for k, e in zip(sizes, ends)]


def mutated(unit: Unit, rows: list[dict], rates, anchors: dict) -> dict[float, list[dict]]:
    """`rows` (of the unit's test rows) at every rate: nested mutations seeded by (seed, dataset
    row), SPLASH scores recomputed from the build's anchors table (null without one; never
    carried over)."""
    from llamadna.data.mutate import mutate_nested, row_seed

    per_row = [mutate_nested(r["Sequence"], rates, row_seed(unit.cfg.seed, int(r["row"]))) for r in rows]
    out = {}
    for k, rate in enumerate(rates):
        out[rate] = rescore_splash([{**r, "Sequence": m[k]} for r, m in zip(rows, per_row)], anchors)
    return out


def rescore_splash(rows: list[dict], anchors: dict) -> list[dict]:
    """The rows with their SPLASH scores recomputed from their build's anchors table (null where
    there is none)."""
    from llamadna.splash.scores import score_sequences, without_scores

    out = without_scores(rows)
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


def _curves(per_rate: list[dict[str, FieldScore]]) -> DivergenceCurves:
    return {
        "field_accuracy": {f: [r[f]["value"] for r in per_rate] for f in SENTENCE_FIELDS},
        "accuracy": [r["accuracy"]["value"] for r in per_rate],
        "field_mean": [r["field_mean"]["value"] for r in per_rate],
        "intervals": {f: [r[f]["interval"] for r in per_rate]
                      for f in (*SENTENCE_FIELDS, "field_mean", "accuracy")},
    }


def divergence(ctx: EvalContext, units: list[Unit], clusters: np.ndarray) -> tuple[Divergence, list[tuple]]:
    """Field accuracies of the model and every lookup on nested mutations of the test rows
    (`clusters`: the gene of each of the units' pooled test rows), and the model's (gene right,
    gene confidence) pairs on them."""
    cfg = ctx.cfg
    rates = list(cfg.divergence_rates)
    names = [n for n in DIVERGENCE_SYSTEMS if n in cfg.systems]
    picks = divergence_subsample(cfg, [len(u.test_rows) for u in units])
    chosen = [[u.test_rows[i] for i in idx] for u, idx in zip(units, picks)]
    mutations = [mutated(u, rows, rates, ctx.anchors) for u, rows in zip(units, chosen)]
    refs = [r["Annotation"] for rows in chosen for r in rows]
    true = [r["Dataset"] for rows in chosen for r in rows]
    starts = np.cumsum([0, *(len(u.test_rows) for u in units)])
    clusters = clusters[np.concatenate([s + idx for s, idx in zip(starts, picks)]).astype(int)]
    div: Divergence = {"rates": rates, "splash_recomputed": bool(ctx.anchors), "rows": len(refs),
                       "of_rows": int(starts[-1]), "systems": {}}
    pairs: list[tuple] = []
    for name in names:
        per_rate = []
        for k, rate in enumerate(rates):
            ctx.progress(f"divergence: {name}", k, len(rates))
            preds = [p for u, m in zip(units, mutations) for p in BY_NAME[name].run(u, m[rate])]
            per_rate.append(field_scores(preds, refs, true, clusters, cfg.n_boot, cfg.seed))
            if name == "model":
                pairs += confidence_pairs([p["annotation"] for p in preds], refs,
                                          [p.get("gene_confidence") for p in preds])
        div["systems"][name] = _curves(per_rate)
    return div, pairs
