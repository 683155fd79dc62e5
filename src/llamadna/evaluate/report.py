"""The evaluation report: one self-contained HTML page plus metrics.json.

`write_report(metrics, examples, out_dir)` writes

- `out_dir/metrics.json`: the `metrics` dict as given (every number; NaN/inf become null so the
  file is standard JSON);
- `out_dir/report.html`: plain HTML with inline CSS, no JavaScript and no external resources;
  every plot is a matplotlib PNG embedded as a base64 `data:` URI, so the file can be mailed or
  archived alone.

The input is what the evaluation command produces (`evaluate.schema.Metrics`). Pieces that
were not measured (a system, a split's divergence curves, a confusion matrix, a point of a
curve) are left out of the page with a note rather than failing: the report is the last stage
and should show whatever was measured.

Plots use `matplotlib.figure.Figure` directly (never pyplot), so no GUI backend or global
figure state is involved; PNG rendering goes through Agg.
"""

from __future__ import annotations

import base64
import difflib
import html
import io
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from llamadna.constants import N_EXAMPLES, REPEAT_MIN_LOCI, SPLIT_COLUMNS
from llamadna.data.template import SENTENCE_FIELDS
from llamadna.evaluate.schema import (
    BenchmarkEntry,
    Confusion,
    Divergence,
    Meta,
    Metrics,
    SplitEntry,
    SystemMetrics,
)
from llamadna.evaluate.systems import SYSTEM_NAMES
from llamadna.io.atomic import atomic_write

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
METRICS_NAME = "metrics.json"

# Systems in the order of the table of systems; any other (an old report's) follow, sorted.
SYSTEM_ORDER = SYSTEM_NAMES
FLOOR = "template floor"  # the template with every field wrong: what text metrics give for free
MODEL = "model"
# Columns of the metric table: key -> header.
TABLE_METRICS = {
    "accuracy": "accuracy",
    "f1_macro": "F1 macro",
    "bleu": "BLEU",
    "rougeL": "ROUGE-L",
    "meteor": "METEOR",
    "semantic_similarity": "semantic sim.",
}
# Metrics of the one-line summary per split: key -> label.
SUMMARY_METRICS = {"accuracy": "accuracy", "f1_macro": "F1", "bleu": "BLEU"}
FIELD_NAMES = tuple(SENTENCE_FIELDS)  # chrom, gene, description, transcript_type, phenotype, source
MISSING = "\u2013"  # en dash: metric not applicable / not measured
REPORTED_LABEL = "reported, not measured"

_DPI = 80
# One colour per field, shared by the divergence curves and the field bars.
_FIELD_COLOURS = dict(zip(FIELD_NAMES, ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")))
_ACCURACY_COLOUR = "#222222"
# Divergence curves: line style and marker per system.
_SYSTEM_STYLES = {MODEL: ("-", "o"), "reference_lookup": ("--", "s"), "minimap2_sensitive": ("-.", "^"),
                  "blastn": (":", "D")}
_OTHER_STYLES = ((":", "^"), ("-.", "v"), ((0, (1, 1)), "D"))


# ---------------------------------------------------------------------------- small helpers


def _num(value: Any) -> float | None:
    """A finite float, or None for None / NaN / inf / anything not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _fmt(value: Any, digits: int = 4) -> str:
    """A metric for display: 4 decimals, integers as integers, None/NaN as an en dash."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    num = _num(value)
    return MISSING if num is None else f"{num:.{digits}f}"


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _ordered_systems(names: Sequence[str]) -> list[str]:
    known = [s for s in SYSTEM_ORDER if s in names]
    return known + sorted(s for s in names if s not in SYSTEM_ORDER)


def _ordered_splits(names: Sequence[str]) -> list[str]:
    known = [s for s in SPLIT_COLUMNS if s in names]
    return known + [s for s in names if s not in SPLIT_COLUMNS]


def _field_acc(system: SystemMetrics | None, field: str) -> float | None:
    return None if system is None else _num(system["field_accuracy"][field])


def _to_jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays unwrapped, NaN/inf -> None, tuples -> lists."""
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalar or array
        return _to_jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------- word diff


def word_diff(reference: str, prediction: str) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    """Word-level diff of two sentences (difflib on whitespace-separated words).

    Returns
    -------
    (reference_words, prediction_words): each a list of (word, differs); `differs` is True for
    a word of the reference that is not in the matched part of the prediction (replaced or
    deleted), and for a word of the prediction that is not in the reference (replaced or
    inserted). Punctuation stays attached to its word ("gene." differs from "gene").
    """
    ref, pred = (reference or "").split(), (prediction or "").split()
    ref_out: list[tuple[str, bool]] = []
    pred_out: list[tuple[str, bool]] = []
    matcher = difflib.SequenceMatcher(a=ref, b=pred, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        same = tag == "equal"
        ref_out.extend((w, not same) for w in ref[i1:i2])
        pred_out.extend((w, not same) for w in pred[j1:j2])
    return ref_out, pred_out


def _diff_html(words: list[tuple[str, bool]], tag: str, cls: str) -> str:
    """Escaped words joined by spaces; runs of differing words wrapped in one <tag class=cls>."""
    parts: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            parts.append(f'<{tag} class="{cls}">{" ".join(run)}</{tag}>')
            run.clear()

    for word, differs in words:
        if differs:
            run.append(_esc(word))
        else:
            flush()
            parts.append(_esc(word))
    flush()
    return " ".join(parts)


def diff_html(reference: str, prediction: str) -> tuple[str, str]:
    """HTML of (truth, prediction) with differing words marked.

    Words only in the truth are wrapped in `<del class="only-truth">`, words only in the
    prediction in `<ins class="only-pred">`; everything is HTML-escaped.
    """
    ref_words, pred_words = word_diff(reference, prediction)
    return _diff_html(ref_words, "del", "only-truth"), _diff_html(pred_words, "ins", "only-pred")


# ---------------------------------------------------------------------------- plots


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def _png_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{_esc(alt)}">'


def plot_confusion(confusion: Confusion | None, title: str) -> str | None:
    """Heatmap of the source-class confusion matrix (rows = truth, columns = prediction), counts
    written in each cell. Returns a data URI, or None when the matrix is missing or malformed."""
    if confusion is None:
        return None
    labels, matrix = [str(x) for x in confusion["labels"]], confusion["matrix"]
    n = len(labels)
    if n == 0 or len(matrix) != n or any(len(row) != n for row in matrix):
        return None
    counts = [[_num(v) or 0.0 for v in row] for row in matrix]
    top = max(max(row) for row in counts) or 1.0
    side = 2.2 + 0.6 * n
    fig = _figure(side + 0.8, side)
    ax = fig.add_subplot()
    im = ax.imshow(counts, cmap="Blues", vmin=0, vmax=top)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{counts[i][j]:g}", ha="center", va="center", fontsize=9,
                    color="white" if counts[i][j] > top / 2 else "black")
    ax.set_xticks(range(n), labels, rotation=30, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted source")
    ax.set_ylabel("true source")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8, label="rows")
    return _png_uri(fig)


def plot_divergence(divergence: Divergence, title: str) -> str | None:
    """Per-field accuracy against the % of substituted bases, a line per field per system:
    colour = field (source-class accuracy in black), line style/marker = system."""
    rates = [_num(r) for r in divergence["rates"]]
    systems = divergence["systems"]
    if not rates or None in rates or not systems:
        return None
    x = [100 * r for r in rates]
    fig = _figure(8.0, 4.2)
    ax = fig.add_subplot()
    others = iter(_OTHER_STYLES * 4)
    system_handles = []
    drawn_series: list[str] = []
    for name in _ordered_systems(list(systems)):
        style, marker = _SYSTEM_STYLES.get(name) or next(others, (":", "x"))
        sys_div = systems[name]
        series = [(f, sys_div["field_accuracy"].get(f), _FIELD_COLOURS[f]) for f in FIELD_NAMES]
        series.append(("accuracy (source)", sys_div["accuracy"], _ACCURACY_COLOUR))
        drew = False
        for label, values, colour in series:
            if values is None:
                continue
            if len(values) != len(x):
                log.warning("divergence %s/%s has %d values for %d rates; not plotted",
                            name, label, len(values), len(x))
                continue
            y = [float("nan") if _num(v) is None else _num(v) for v in values]
            ax.plot(x, y, linestyle=style, marker=marker, markersize=4, color=colour, linewidth=1.4)
            drew = True
            if label not in drawn_series:
                drawn_series.append(label)
        if drew:
            system_handles.append(Line2D([], [], color="grey", linestyle=style, marker=marker, label=name))
    if not drawn_series:
        return None
    colours = {**_FIELD_COLOURS, "accuracy (source)": _ACCURACY_COLOUR}
    field_handles = [Line2D([], [], color=colours[s], linewidth=2, label=s) for s in drawn_series]
    ax.set_xlabel("divergence (% of bases substituted)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    first = ax.legend(handles=field_handles, title="field", loc="upper left", bbox_to_anchor=(1.01, 1.0),
                      fontsize=8, title_fontsize=8)
    ax.add_artist(first)
    ax.legend(handles=system_handles, title="system", loc="lower left", bbox_to_anchor=(1.01, 0.0),
              fontsize=8, title_fontsize=8)
    return _png_uri(fig)


def plot_field_bars(systems: dict[str, SystemMetrics], title: str) -> str | None:
    """Per-field accuracy: one group of bars per system, one bar (colour) per field."""
    names = _ordered_systems(list(systems))
    if not names:
        return None
    width = 0.8 / len(FIELD_NAMES)
    fig = _figure(max(6.0, 1.3 * len(names) + 2.5), 3.8)
    ax = fig.add_subplot()
    for k, field in enumerate(FIELD_NAMES):
        xs, ys = [], []
        for i, name in enumerate(names):
            v = _field_acc(systems[name], field)
            if v is not None:
                xs.append(i - 0.4 + width * (k + 0.5))
                ys.append(v)
        ax.bar(xs, ys, width=width, color=_FIELD_COLOURS[field], label=field)
    ax.set_xticks(range(len(names)), names, rotation=15)
    ax.set_ylabel("field accuracy")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(title="field", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title_fontsize=8)
    return _png_uri(fig)


def plot_split_comparison(splits: dict[str, SplitEntry]) -> str | None:
    """Accuracy and gene-field accuracy across splits (seen vs unseen genes/chromosomes)."""
    names = _ordered_splits(list(splits))
    series = [
        ("model: source accuracy", lambda s: _num(s[MODEL]["accuracy"]) if MODEL in s else None, "#4c72b0"),
        ("model: gene-field accuracy", lambda s: _field_acc(s.get(MODEL), "gene"), "#dd8452"),
        ("reference_lookup: gene-field accuracy",
         lambda s: _field_acc(s.get("reference_lookup"), "gene"), "#8c8c8c"),
    ]
    rows = []
    for label, get, colour in series:
        values = [get(splits[n]["systems"]) for n in names]
        if any(v is not None for v in values):
            rows.append((label, values, colour))
    if len(names) < 2 or not rows:
        return None
    width = 0.8 / len(rows)
    fig = _figure(7.5, 3.6)
    ax = fig.add_subplot()
    for k, (label, values, colour) in enumerate(rows):
        xs = [i - 0.4 + width * (k + 0.5) for i, v in enumerate(values) if v is not None]
        ys = [v for v in values if v is not None]
        bars = ax.bar(xs, ys, width=width, color=colour, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.12)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Across splits: seen (split_random) vs unseen genes / chromosomes", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return _png_uri(fig)


# ---------------------------------------------------------------------------- HTML pieces

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto;
       max-width: 1180px; padding: 0 16px; color: #1b1b1b; line-height: 1.45; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 4px; margin-top: 40px; }
h3 { margin-top: 26px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 14px; }
th, td { border: 1px solid #d0d0d0; padding: 4px 9px; vertical-align: top; }
th { background: #f2f2f2; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { font-weight: 700; }
tr.model td { background: #eef5ff; }
tr.reported td { background: #fff8e1; color: #6b5a1e; font-style: italic; border-style: dashed; }
.badge { display: inline-block; font-size: 11px; font-style: normal; padding: 0 6px; margin-left: 6px;
         border-radius: 8px; background: #f0c674; color: #4a3b00; white-space: nowrap; }
.summary li { margin: 4px 0; }
.below { color: #a11; font-weight: 600; } .above { color: #16723a; font-weight: 600; }
.note { color: #666; font-size: 13px; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 12px; }
details { margin: 6px 0; } summary { cursor: pointer; }
img { max-width: 100%; height: auto; display: block; margin: 8px 0; }
table.examples { table-layout: fixed; width: 100%; }
table.examples td { font-size: 13px; }
table.examples td:first-child { word-break: break-all; }
del.only-truth { background: #cfe3ff; color: #003a8c; text-decoration: none;
                 border-bottom: 2px solid #1f5fbf; }
ins.only-pred { background: #ffd9b0; color: #7a3300; text-decoration: none;
                border-bottom: 2px dotted #c05a00; }
nav a { margin-right: 14px; }
tr.floor td { font-style: italic; color: #555; }
td small { color: #666; }
"""


def _summary_line(split: str, entry: SplitEntry) -> str:
    """'split: model X vs best baseline Y (name), ...' for accuracy, F1 and BLEU."""
    systems = entry["systems"]
    head = f"<b>{_esc(split)}</b> ({_fmt(entry['rows'])} rows): "
    model = systems.get(MODEL)
    if not model:
        return head + "no model results."
    parts, below, above = [], [], []
    for key, label in SUMMARY_METRICS.items():
        m = _num(model[key])
        baselines = [(_num(systems[s][key]), s) for s in systems if s != MODEL]
        baselines = [(v, s) for v, s in baselines if v is not None]
        if m is None:
            parts.append(f"{label} {MISSING}")
            continue
        if not baselines:
            parts.append(f"{label} {m:.3f} (no baseline)")
            continue
        best, name = max(baselines)
        delta = m - best
        parts.append(f"{label} {m:.3f} vs {best:.3f} ({_esc(name)}, {delta:+.3f})")
        if delta < 0:
            below.append(label)
        elif delta > 0:
            above.append(label)
    verdict = ""
    if below:
        verdict = f' <span class="below">Model below the best baseline on {", ".join(below)}.</span>'
    elif above:
        verdict = ' <span class="above">Model above every baseline on ' + ", ".join(above) + ".</span>"
    return head + "model " + "; ".join(parts) + "." + verdict


def _meta_html(meta: Meta) -> str:
    rows = [
        ("dataset", meta["dataset"]),
        ("data dir", meta["data_dir"]),
        ("model", meta["model"]),
        ("splits (evaluated on their test rows)", ", ".join(map(str, meta["splits"]))),
        ("seed", meta["seed"]),
        ("created", meta["created"]),
    ]
    rps = meta["rows_per_split"]
    if rps:
        rows.append(("rows per split", ", ".join(f"{k}: {_fmt(v)}" for k, v in rps.items())))
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{MISSING if v is None else _esc(v)}</td></tr>"
                   for k, v in rows)
    out = [f"<table>{body}</table>"]
    for key, label in (("model_config", "model config"), ("train_config", "train config")):
        text = json.dumps(_to_jsonable(meta[key]), indent=2, sort_keys=True)
        out.append(f"<details><summary>{label} (JSON)</summary><pre>{_esc(text)}</pre></details>")
    known = {"dataset", "data_dir", "model", "splits", "seed", "created", "rows_per_split",
             "model_config", "train_config"}
    extra = {k: v for k, v in meta.items() if k not in known}
    if extra:
        text = json.dumps(_to_jsonable(extra), indent=2, sort_keys=True)
        out.append(f"<details><summary>other run details (JSON)</summary><pre>{_esc(text)}</pre></details>")
    return "\n".join(out)


def _metric_table(systems: dict[str, SystemMetrics], reported: dict[str, dict[str, float]]) -> str:
    names = _ordered_systems(list(systems))
    best: dict[str, float] = {}
    for key in TABLE_METRICS:
        values = [_num(systems[s][key]) for s in names]
        values = [v for v in values if v is not None]
        if values:
            best[key] = max(values)
    head = "<tr><th>system</th>" + "".join(f"<th>{_esc(h)}</th>" for h in TABLE_METRICS.values()) + \
        "<th>n</th></tr>"
    rows = []
    for name in names:
        sys_m = systems[name]
        cells = []
        for key in TABLE_METRICS:
            v = _num(sys_m[key])
            cls = "num best" if v is not None and v == best.get(key) else "num"
            cells.append(f'<td class="{cls}">{_fmt(sys_m[key])}</td>')
        cls = ' class="model"' if name == MODEL else ""
        rows.append(f"<tr{cls}><td>{_esc(name)}</td>{''.join(cells)}"
                    f'<td class="num">{_fmt(sys_m["n"])}</td></tr>')
    for name, rep in reported.items():  # a reported source gives some of the metrics only
        cells = "".join(f'<td class="num">{_fmt(rep.get(k))}</td>' for k in TABLE_METRICS)
        rows.append(f'<tr class="reported"><td>{_esc(name)} <span class="badge">{REPORTED_LABEL}</span></td>'
                    f'{cells}<td class="num">{MISSING}</td></tr>')
    note = (f'<p class="note">Bold: best measured value in the column; '
            f'{MISSING} = not applicable or not measured.')
    if reported:
        note += (f' Rows marked <span class="badge">{REPORTED_LABEL}</span> are numbers copied from the '
                 "original poster (its own data and splits, not re-run here).")
    note += "</p>"
    return f'<table class="metrics">{head}{"".join(rows)}</table>{note}'


def _field_table(systems: dict[str, SystemMetrics]) -> str:
    names = _ordered_systems(list(systems))
    head = ("<tr><th>system</th>" + "".join(f"<th>{_esc(f)}</th>" for f in FIELD_NAMES)
            + "<th>accuracy from text</th><th>F1 from text</th></tr>")
    rows = []
    for name in names:
        s = systems[name]
        cells = "".join(f'<td class="num">{_fmt(_field_acc(s, f))}</td>' for f in FIELD_NAMES)
        cells += f'<td class="num">{_fmt(s["accuracy_from_text"])}</td>'
        cells += f'<td class="num">{_fmt(s["f1_from_text"])}</td>'
        rows.append(f"<tr><td>{_esc(name)}</td>{cells}</tr>")
    return f'<table class="fields">{head}{"".join(rows)}</table>'


def _with_interval(value: Any, interval: Any) -> str:
    """"0.812 [0.771, 0.850]" (the 95 % interval of a cluster bootstrap over genes)."""
    if _num(value) is None:
        return MISSING
    if not interval or _num(interval[0]) is None:
        return _fmt(value, 3)
    return f"{_num(value):.3f} <small>[{_num(interval[0]):.3f}, {_num(interval[1]):.3f}]</small>"


HEADLINE = (*(f"field_{f}" for f in FIELD_NAMES), "field_mean", "accuracy", "f1_macro", "bleu",
            "rougeL", "meteor")


def _headline_value(m: SystemMetrics, key: str) -> Any:
    if key.startswith("field_") and key != "field_mean":
        return _field_acc(m, key.removeprefix("field_"))
    return m[key]


def _headline_table(systems: dict[str, SystemMetrics], floor: SystemMetrics) -> str:
    """Per-field accuracy and their mean first (what carries information), then source accuracy
    / F1 and the text metrics, each with its 95 % interval; the template floor last."""
    names = _ordered_systems(list(systems))
    heads = [h.removeprefix("field_") for h in HEADLINE]
    head = "<tr><th>system</th>" + "".join(f"<th>{_esc(h)}</th>" for h in heads) + "</tr>"
    rows = []
    for name, m in [*((n, systems[n]) for n in names), (FLOOR, floor)]:
        cells = "".join(f'<td class="num">{_with_interval(_headline_value(m, k), m["intervals"][k])}</td>'
                        for k in HEADLINE)
        cls = ' class="model"' if name == MODEL else ' class="floor"' if name == FLOOR else ""
        rows.append(f"<tr{cls}><td>{_esc(name)}</td>{cells}</tr>")
    note = ('<p class="note">Brackets: 95 % interval, cluster bootstrap over genes (whole genes '
            f'resampled). <i>{FLOOR}</i>: the template sentence with every field wrong (real values '
            "of other rows): BLEU, ROUGE-L and METEOR it reaches are free; only the field accuracies "
            "carry information.</p>")
    return f'<table class="headline">{head}{"".join(rows)}</table>{note}'


def _audit_html(entry: SplitEntry) -> str:
    """The accuracy ceiling (identical windows with conflicting labels) and the leak audit."""
    out = [f'<p class="note">Accuracy ceiling of any sequence-only system: '
           f'{_esc(json.dumps(_to_jsonable(entry["ceiling"])))}</p>']
    leaks = entry["leak_audit"]
    if leaks:
        rows = "".join(f"<tr><td>{_esc(u)}</td><td>{_esc(json.dumps(_to_jsonable(v)))}</td></tr>"
                       for u, v in leaks.items())
        out.append(f"<table><tr><th>unit</th><th>test windows overlapping or equal to a training window"
                   f"</th></tr>{rows}</table>")
    return "\n".join(out)


def _benchmark_html(bench: BenchmarkEntry) -> str:
    systems = bench["systems"]
    if not systems:
        return '<p class="note">No benchmark results.</p>'
    names = _ordered_systems(list(systems))
    first = systems[names[0]]  # every system scored the same queries: the same groups
    groups = [("all", {"all": first["all"]}), ("species", first["species"]),
              ("identity to human", first["identity"])]
    head = "<tr><th>field</th><th>group</th>" + "".join(f"<th>{_esc(n)}</th>" for n in names) + "</tr>"
    rows = []
    for field in ("gene", "transcript_type", "chrom"):
        for kind, members in groups:
            for g in members:
                cells = []
                for n in names:
                    res = systems[n]
                    part = res["all"] if kind == "all" else res[
                        "species" if kind == "species" else "identity"][g]
                    iv = res["all_intervals"][field] if kind == "all" and "all_intervals" in res else None
                    cells.append(f'<td class="num">{_with_interval(part[field], iv)}</td>')
                label = g if kind != "all" else "all"
                n_q = members[g]["n"]
                rows.append(f"<tr><td>{_esc(field)}</td><td>{_esc(label)} (n={_fmt(n_q)})</td>"
                            f"{''.join(cells)}</tr>")
    note = (f'<p class="note">{_esc(bench["directory"])}: {_fmt(bench["queries"])} real divergent '
            "queries (a test set: never trained, tuned or indexed on); the model is the given one "
            f"(trained on {_esc(bench['model_split'])}). Intervals: bootstrap over genes.</p>")
    return f'{note}<table class="benchmark">{head}{"".join(rows)}</table>'


def _systems_html(notes: dict[str, str]) -> str:
    if not notes:
        return ""
    rows = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in notes.items())
    return f"<h3>What each system saw</h3><table>{rows}</table>"


def _examples_html(examples: list[dict]) -> str:
    if not examples:
        return f'<p class="note">No examples {MISSING} none were given for this split.</p>'
    rows = []
    for ex in examples:
        truth, pred = diff_html(str(ex.get("reference") or ""), str(ex.get("prediction") or ""))
        rows.append(f"<tr><td>{_esc(ex.get('id', ''))}</td><td>{truth}</td><td>{pred}</td></tr>")
    legend = ('<p class="note">Word-level diff: <del class="only-truth">only in the truth</del> '
              '<ins class="only-pred">only in the prediction</ins>.</p>')
    cols = '<colgroup><col style="width:12%"><col style="width:44%"><col style="width:44%"></colgroup>'
    return (f'{legend}<table class="examples">{cols}<tr><th>id</th><th>truth</th><th>prediction</th></tr>'
            f"{''.join(rows)}</table>")


def _figure_or_note(uri: str | None, alt: str, missing: str) -> str:
    return _img(uri, alt) if uri else f'<p class="note">{_esc(missing)}</p>'


def _divergence_table(div: Divergence) -> str:
    """Gene-field accuracy and the mean of the field accuracies per rate, with intervals, and
    which rows the curves ran on."""
    rates, systems = div["rates"], div["systems"]
    if not rates or not systems:
        return ""
    head = "".join(f"<th>{_num(r) * 100:g} %</th>" for r in rates)
    body = []
    for name in _ordered_systems(list(systems)):
        d = systems[name]
        for label, values, ivs in (
                ("gene", d["field_accuracy"].get("gene"), d["intervals"].get("gene")),
                ("field mean", d["field_mean"], d["intervals"].get("field_mean"))):
            values, ivs = values or [None] * len(rates), ivs or [None] * len(rates)
            cells = "".join(f'<td class="num">{_with_interval(v, iv)}</td>' for v, iv in zip(values, ivs))
            body.append(f"<tr><td>{_esc(name)}</td><td>{label}</td>{cells}</tr>")
    note = (f'<p class="note">{_fmt(div["rows"])} of {_fmt(div["of_rows"])} test rows (a seeded '
            "subsample), each mutated once per rate with nested substitutions; SPLASH scores "
            + ("recomputed from the anchors tables" if div["splash_recomputed"]
               else "null (no anchors tables given)") + ".</p>")
    return (f"{note}<table><tr><th>system</th><th>field</th>{head}</tr>{''.join(body)}</table>")


def _split_section(split: str, entry: SplitEntry, reported: dict[str, dict[str, float]],
                   examples: list[dict]) -> str:
    systems = entry["systems"]
    out = [f'<h2 id="{_esc(split)}">{_esc(split)}</h2>',
           f'<p class="note">test rows: {_fmt(entry["rows"])}; systems: '
           f"{_esc(', '.join(_ordered_systems(list(systems))) or MISSING)}; genes: "
           f"{_fmt(entry['genes'])}; units: {_esc(', '.join(entry['units']))}</p>",
           "<h3>Field accuracy and metrics, with intervals</h3>",
           _headline_table(systems, entry["template_floor"]),
           "<h3>Metrics beside the poster's reported numbers</h3>", _metric_table(systems, reported),
           "<h3>Ceiling and leak audit</h3>", _audit_html(entry)]

    out.append("<h3>Source class: confusion matrix of the model</h3>")
    model = systems.get(MODEL)  # the model's results may be left out (--systems)
    out.append(_figure_or_note(plot_confusion(model and model["confusion"], f"{split}: model"),
                               f"{split} confusion matrix", "No confusion matrix for the model."))

    out.append("<h3>Divergence: field accuracy vs % substituted bases</h3>")
    out.append(_figure_or_note(plot_divergence(entry["divergence"], f"{split}: divergence"),
                               f"{split} divergence curve", "No divergence results for this split."))
    out.append(_divergence_table(entry["divergence"]))

    out.append("<h3>Per-field accuracy</h3>")
    out.append(_figure_or_note(plot_field_bars(systems, f"{split}: field accuracy"),
                               f"{split} field accuracy", "No field accuracies for this split."))
    out.append(_field_table(systems))

    out.append(f"<h3>Examples (model, {len(examples)} test rows, one per gene where possible)</h3>")
    out.append(_examples_html(examples))
    return "\n".join(out)


def plot_risk_coverage(points: Sequence[dict], title: str) -> str | None:
    """Error against coverage as the confidence threshold rises (`out_of_reference.risk_coverage`);
    None with no point that has an error."""
    pts = [(_num(p["coverage"]), _num(p["error"])) for p in points or []]
    pts = [(c, e) for c, e in pts if c is not None and e is not None]
    if not pts:
        return None
    fig = _figure(4.8, 3.4)
    ax = fig.add_subplot()
    ax.plot([c for c, _ in pts], [e for _, e in pts], "-o", color=_ACCURACY_COLOUR, markersize=3)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, max(0.05, 1.1 * max(e for _, e in pts)))
    ax.set_xlabel("coverage (rows answered at or above the threshold)")
    ax.set_ylabel("outcome error among them")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return _png_uri(fig)


def _claim_cell(k: Any, rate: Any, interval: Any) -> str:
    """"1.2 % [0.3, 4.1] (3)": a rate with its Wilson interval and the count."""
    if _num(rate) is None:
        return MISSING
    iv = (f" <small>[{100 * _num(interval[0]):.1f}, {100 * _num(interval[1]):.1f}]</small>"
          if interval else "")
    return f"{100 * _num(rate):.1f} %{iv}" + (f" ({_fmt(k)})" if k is not None else "")


def _kind_table(section: dict, key: str, title: str, confident: bool = False) -> str:
    """Truth kind x system: `key` ("gene_claim" or "accuracy") rates with their intervals; with
    `confident`, the model's rows at gene_confidence >= 0.5 too."""
    systems = section["systems"]
    kinds = list(section["rows"])
    head = ("<tr><th>truth kind</th><th>rows</th>" + "".join(f"<th>{_esc(n)}</th>" for n in systems)
            + ("<th>model: gene confidence &ge; 0.5</th>" if confident else "") + "</tr>")
    count_of = {"gene_claim": "gene_claims", "confident_gene": "confident_gene"}

    def cell(ks: dict, prefix: str) -> str:
        rate = ks.get(prefix + "_rate", ks.get(prefix))
        value = _claim_cell(ks.get(count_of.get(prefix, "")), rate, ks.get(prefix + "_interval"))
        return f'<td class="num">{value}</td>'

    body = []
    for kind in kinds:
        cells = [cell(m["kinds"].get(kind, {}), key) for m in systems.values()]
        if confident:
            cells.append(cell(systems.get(MODEL, {}).get("kinds", {}).get(kind, {}), "confident_gene"))
        body.append(f"<tr><td>{_esc(kind)}</td><td class=\"num\">{_fmt(section['rows'][kind])}</td>"
                    f"{''.join(cells)}</tr>")
    return f"<h3>{_esc(title)}</h3><table>{head}{''.join(body)}</table>"


def _outcome_confusion_html(name: str, conf: dict) -> str:
    head = ("<tr><th>truth / predicted</th>" + "".join(f"<th>{_esc(c)}</th>" for c in conf["columns"])
            + "</tr>")
    body = "".join(f"<tr><td>{_esc(r)}</td>" + "".join(f'<td class="num">{_fmt(v)}</td>' for v in row)
                   + "</tr>" for r, row in zip(conf["rows"], conf["matrix"]))
    return f"<h4>{_esc(name)}</h4><table>{head}{body}</table>"


def _plain_table(head, rows) -> str:
    """A table of text cells: a header row, then one row each."""
    return ("<table><tr>" + "".join(f"<th>{_esc(c)}</th>" for c in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
            + "</table>")


def _in_gene_note(section: dict) -> str | None:
    """What the gene claims on repeat windows inside a gene name, per system; None without such rows."""
    from llamadna.evaluate.out_of_reference import REPEAT_IN_GENE

    per = {n: m["kinds"][REPEAT_IN_GENE] for n, m in section["systems"].items()
           if REPEAT_IN_GENE in m["kinds"]}
    if not per:
        return None
    said = "; ".join(f"{_esc(n)}: {_fmt(k['holding_gene_claims'])} of {_fmt(k['gene_claims'])}"
                     for n, k in per.items())
    return (f'<p class="note">{REPEAT_IN_GENE}: repeat windows whose middle base lies inside an annotated '
            "gene (truth: repeat; part of a gene too). Of their gene claims, those that name a gene "
            f"holding the window: {said}.</p>")


def _out_of_reference_html(section: dict) -> str:
    """The "Out of reference" section: macro-F1 against the tuned baselines and the floor, false
    gene claims and outcome accuracy per truth kind, confusion matrices, AUROC and the model's
    risk-coverage table and plot."""
    from llamadna.evaluate.out_of_reference import (
        COPY_HEAD,
        copy_rows,
        per_unit_rows,
        rows_summary,
        summary_rows,
        validation_summary,
        versus_summary,
    )

    rows = rows_summary(section, _fmt)
    out = ['<h2 id="out_of_reference">Out of reference</h2>',
           f'<p class="note">{_esc(section["split"])} ({_esc(", ".join(section["units"]))}): {_esc(rows)} '
           "rows. gene = the test rows of every unit listed, each answered by its unit's model (truth: "
           "their gene); novel = the same rows with their genes masked out of the reference (right: "
           "any answer but a gene); the others are generated negatives of the reference's test part, "
           "made from the first unit's test rows and answered by its model. Baseline thresholds tuned "
           f"per unit on its own validation rows ({_fmt(section['validation_rows'])} in all): "
           f"{_esc(json.dumps(section['thresholds']))}.</p>"]
    cols = ("macro-F1", "95 % interval", "gene claimed (not a gene)", "novel: no gene", "AUROC")
    head = "<tr><th>system</th>" + "".join(f"<th>{_esc(c)}</th>" for c in cols) + "</tr>"
    body = "".join(f"<tr><td>{_esc(r[0])}</td>" + "".join(f'<td class="num">{_esc(c)}</td>' for c in r[1:])
                   + "</tr>" for r in summary_rows(section))
    out.append(f"<h3>Outcome macro-F1 against the baselines and the floor</h3><table>{head}{body}</table>")
    for line in (validation_summary(section), versus_summary(section)):
        if line is not None:
            out.append(f'<p class="note">{_esc(line)}</p>')
    head, units = per_unit_rows(section)
    if units:
        out.append("<h3>Per unit: genic rows answered with their gene, novel rows with no gene</h3>"
                   + _plain_table(head, units))
    if copies := copy_rows(section):
        out.append("<h3>Genic and novel rows by their window's reference copies</h3>"
                   + _plain_table(COPY_HEAD, copies)
                   + f'<p class="note">Multi-copy: windows found at &ge; {REPEAT_MIN_LOCI} loci of '
                   "the reference by the repeat windows' own rule; their truth is their gene here, a "
                   "repeat window of the same sequence among the negatives would be a repeat.</p>")
    out += _diverged_html(section)
    out.append('<p class="note">Macro-F1 over the outcomes (gene, intergenic, repeat, similar, none) '
               "of every row (a wrong gene is an error; a novel row counts as its answer's class "
               "unless that is a gene), interval: cluster bootstrap over genes (a negative "
               "its own cluster); rates: Wilson 95 % intervals. "
               + "; ".join(f"<i>{_esc(k)}</i>: {_esc(v)}" for k, v in section["notes"].items()) + ".</p>")
    out.append(_kind_table(section, "gene_claim", "False gene claims per truth kind", confident=True))
    if (note := _in_gene_note(section)) is not None:
        out.append(note)
    out.append(_kind_table(section, "accuracy", "Outcome accuracy per truth kind"))
    out.append("<h3>Confusion of outcomes (rows: truth kind)</h3>")
    out += [_outcome_confusion_html(n, m["confusion"]) for n, m in section["systems"].items()]
    out += _risk_coverage_html(section["systems"].get(MODEL))
    return "\n".join(out)


def _diverged_html(section: dict) -> list[str]:
    """The model and the tuned rules on diverged copies of the test rows: a table per rate and
    what each answers instead; [] where the run had none."""
    from llamadna.evaluate.out_of_reference import diverged_outcomes, diverged_rows

    head, rows = diverged_rows(section)
    if not rows:
        return []
    d = section["diverged"]
    said = "".join(f"<li>{_esc(line)}</li>" for line in diverged_outcomes(section))
    return ["<h3>Diverged copies of known genes: answered with their own gene</h3>", _plain_table(head, rows),
            f'<p class="note">{_fmt(d["rows"])} test rows per rate, the divergence curves\' rows and '
            "mutations (substitutions and indels at each rate), given without SPLASH scores; each unit's "
            "model and tuned thresholds. Right: outcome gene and the row's own gene. Intervals: cluster "
            "bootstrap over genes, the difference paired. The outcomes given:</p>" f"<ul>{said}</ul>"]


def _risk_coverage_html(model: dict | None) -> list[str]:
    """The model's risk-coverage plot and table (every second threshold); [] without them."""
    if not model or not model.get("risk_coverage"):
        return []
    pts = model["risk_coverage"][::2]
    return [f"<h3>Risk-coverage of the model's outcome confidence (AUROC {_fmt(model.get('auroc'), 3)})</h3>",
            _figure_or_note(plot_risk_coverage(model["risk_coverage"], "model: risk-coverage"),
                            "risk-coverage curve", "No risk-coverage points."),
            "<table><tr><th>confidence &ge;</th><th>rows</th><th>coverage</th><th>error</th></tr>"
            + "".join(f'<tr><td class="num">{_fmt(p["threshold"], 2)}</td><td class="num">'
                      f'{_fmt(p["rows"])}</td><td class="num">{_fmt(p["coverage"], 3)}</td>'
                      f'<td class="num">{_fmt(p["error"], 3)}</td></tr>' for p in pts)
            + "</table>"]


def render_report(metrics: Metrics, examples: list[dict], n_examples: int = N_EXAMPLES) -> str:
    """The report page as one HTML string (see `write_report`)."""
    metrics = _to_jsonable(metrics)  # numpy arrays/scalars -> lists/numbers, NaN -> None
    meta, splits, reported = metrics["meta"], metrics["splits"], metrics["reported"]
    names = _ordered_splits(list(splits))

    by_split: dict[str, list[dict]] = {}
    for ex in examples or []:
        if ex.get("system", MODEL) == MODEL:
            by_split.setdefault(str(ex.get("split")), []).append(ex)

    title = f"Llama-DNA evaluation: {meta['model']} on {meta['dataset']}"
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{_esc(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
           f"<h1>{_esc(title)}</h1>"]
    if names:
        out.append("<nav>" + "".join(f'<a href="#{_esc(n)}">{_esc(n)}</a>' for n in names) + "</nav>")
    out.append('<h2 id="summary">Summary</h2>')
    out.append('<p class="note">Model against the best baseline of each metric on the same test rows '
               "(difference in brackets).</p>")
    if names:
        out.append('<ul class="summary">' + "".join(f"<li>{_summary_line(n, splits[n])}</li>"
                                                    for n in names) + "</ul>")
    else:
        out.append('<p class="note">No splits were evaluated.</p>')
    out.append("<h3>Run</h3>")
    out.append(_meta_html(meta))
    out.append(f'<p class="note">All numbers are also in {METRICS_NAME} beside this page.</p>')

    if len(names) > 1:
        out.append('<h2 id="splits">Across splits</h2>')
        out.append(_figure_or_note(plot_split_comparison(splits), "accuracy across splits",
                                   "No model accuracy to compare across splits."))

    out.append(_systems_html(metrics["systems"]))
    for name in names:
        out.append(_split_section(name, splits[name], reported, by_split.pop(name, [])[:n_examples]))
    if "out_of_reference" in metrics:
        out.append(_out_of_reference_html(metrics["out_of_reference"]))
    if "benchmark" in metrics:
        out.append('<h2 id="benchmark">Real divergence: cross-species benchmark</h2>')
        out.append(_benchmark_html(metrics["benchmark"]))
    for name, rest in by_split.items():  # examples of splits that have no metrics
        out.append(f"<h2>Examples of {_esc(name)} (no metrics for this split)</h2>")
        out.append(_examples_html(rest[:n_examples]))
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


def write_report(metrics: Metrics, examples: list[dict], out_dir: str | Path,
                 n_examples: int = N_EXAMPLES) -> Path:
    """Write `out_dir/metrics.json` and the self-contained `out_dir/report.html`.

    Parameters
    ----------
    metrics : as produced by the evaluation command (`evaluate.schema.Metrics`); a number may
        be None (not applicable or not measured), a system may be absent.
    examples : [{"split", "system", "id", "reference", "prediction"}]; the first `n_examples`
        of system "model" per split are shown with a word-level diff.
    out_dir : created if needed; both files are written atomically.

    Returns
    -------
    The path of report.html.
    """
    out_dir = Path(out_dir)
    text = json.dumps(_to_jsonable(metrics), indent=2, allow_nan=False) + "\n"
    atomic_write(out_dir / METRICS_NAME, lambda p: p.write_text(text, encoding="utf-8"))
    page = render_report(metrics, examples, n_examples=n_examples)
    path = atomic_write(out_dir / REPORT_NAME, lambda p: p.write_text(page, encoding="utf-8"))
    log.info("wrote %s and %s", path, out_dir / METRICS_NAME)
    return path
