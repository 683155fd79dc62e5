"""Markdown tables of an evaluation's metrics.json, for docs/RESULTS.md (numbers are copied by
this script, never by hand).

    .venv/bin/python scripts/results_tables.py REPORT_DIR/metrics.json > tables.md
"""

from __future__ import annotations

import json
import sys

FIELDS = ("gene", "description", "transcript_type", "phenotype", "chrom", "source")
SPECIES = ("neanderthal", "chimpanzee", "orangutan", "cow", "chicken")
BINS = (">95", "85-95", "75-85", "<75", "unknown")


def ci(value, interval, digits: int = 3) -> str:
    if value is None:
        return "–"
    if not interval or interval[0] is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{interval[0]:.2f}, {interval[1]:.2f}]"


def headline(split: str, entry: dict) -> list[str]:
    out = [
        f"### {split}: {entry['rows']} test rows, {entry['genes']} genes, units {', '.join(entry['units'])}",
        "",
        "| system | " + " | ".join(FIELDS) + " | field mean | source acc. (head) | source F1 | BLEU | "
        "ROUGE-L | METEOR |",
        "|---" * 13 + "|",
    ]
    rows = list(entry["systems"].items()) + [("*template floor*", entry["template_floor"])]
    for name, m in rows:
        iv, fa = m.get("intervals") or {}, m.get("field_accuracy") or {}
        cells = [ci(fa.get(f), iv.get(f"field_{f}")) for f in FIELDS]
        cells += [
            ci(m.get(k), iv.get(k))
            for k in ("field_mean", "accuracy", "f1_macro", "bleu", "rougeL", "meteor")
        ]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    c = entry["ceiling"]
    out += [
        "",
        f"Ceiling: {c['ceiling']:.3f} ({c['n_conflicting_groups']} groups of identical windows "
        f"with conflicting labels; {c['duplicate_row_fraction']:.1%} of rows share their sequence). "
        "Leak audit (test windows overlapping a training window / exact duplicates across the "
        "split): "
        + "; ".join(
            f"{u}: {a['overlapping']} / {a['duplicate_sequences']} of {a['n_test']}"
            for u, a in entry["leak_audit"].items()
        )
        + ".",
    ]
    return out


def divergence(split: str, div: dict) -> list[str]:
    rates = div["rates"]
    out = [
        "",
        f"Divergence ({split}; {div.get('rows')} of {div.get('of_rows')} test rows; SPLASH "
        f"{'recomputed' if div.get('splash_recomputed') else 'null'}), gene field [95 % interval] "
        "and field mean:",
        "",
        "| system | field | " + " | ".join(f"{r * 100:g} %" for r in rates) + " |",
        "|---|---" + "|---" * len(rates) + "|",
    ]
    for name, d in div["systems"].items():
        iv = d.get("intervals") or {}
        out.append(
            f"| {name} | gene | "
            + " | ".join(
                ci(v, i, 2)
                for v, i in zip(d["field_accuracy"]["gene"], iv.get("gene") or [None] * len(rates))
            )
            + " |"
        )
        out.append("| | field mean | " + " | ".join(f"{v:.2f}" for v in d["field_mean"]) + " |")
    return out


def benchmark(b: dict) -> list[str]:
    out = [
        "",
        f"### Mito benchmark ({b['queries']} queries, model of {b['model_split']}), gene field",
        "",
        "| system | " + " | ".join(SPECIES) + " | all [95 % interval] | transcript type, all |",
        "|---" * (len(SPECIES) + 3) + "|",
    ]
    for name, r in b["systems"].items():
        sp = [f"{r['species'].get(s, {}).get('gene', float('nan')):.2f}" for s in SPECIES]
        out.append(
            f"| {name} | " + " | ".join(sp) + f" | {ci(r['all']['gene'], r['all_intervals']['gene'], 2)} | "
            f"{r['all']['transcript_type']:.2f} |"
        )
    out += [
        "",
        "| gene field by identity to human | " + " | ".join(BINS) + " |",
        "|---" * (len(BINS) + 1) + "|",
    ]
    for name, r in b["systems"].items():
        out.append(
            f"| {name} | "
            + " | ".join(
                f"{r['identity'][k]['gene']:.2f} (n={r['identity'][k]['n']})" if k in r["identity"] else "–"
                for k in BINS
            )
            + " |"
        )
    return out


def _pct_iv(k, n, iv) -> str:
    if not n:
        return "–"
    return f"{k}/{n} = {100 * k / n:.1f} %" + ("" if not iv else f" [{100 * iv[0]:.1f}, {100 * iv[1]:.1f}]")


def _kind_claims(o: dict, kinds: list[str]) -> list[str]:
    out = ["", "Gene claims per kind of row (rate, Wilson 95 % interval); the first column is "
           "the genic test rows' outcome accuracy:", "",
           "| system | gene (accuracy) | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 2) + "|"]
    for name, m in o["systems"].items():
        g, per = m["kinds"]["gene"], m["kinds"]
        cells = [_pct_iv(round(g["accuracy"] * g["rows"]), g["rows"], g["accuracy_interval"])]
        cells += [_pct_iv(per[k]["gene_claims"], per[k]["rows"], per[k]["gene_claim_interval"])
                  for k in kinds]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


NO_GENE_KINDS = ("random", "shuffled", "foreign", "intergenic", "repeat")  # part of no gene at all


def _no_gene_rows(o: dict) -> list[str]:
    """Per system, over the kinds that are part of no gene (repeats outside genes included): gene
    claims and, for the model, rows at gene confidence >= 0.5; and what the gene claims on repeat
    windows inside a gene name."""
    out = ["", "Part of no gene (" + ", ".join(k for k in NO_GENE_KINDS if k in o["rows"])
           + ": repeats outside every gene):", ""]
    for name, m in o["systems"].items():
        per = [m["kinds"][k] for k in NO_GENE_KINDS if k in m["kinds"]]
        n, claims = sum(v["rows"] for v in per), sum(v["gene_claims"] for v in per)
        line = f"- {name}: gene claimed {claims}/{n}"
        if all(v["confident_gene"] is not None for v in per):
            line += f", gene confidence >= 0.5 {sum(v['confident_gene'] for v in per)}/{n}"
        inside = m["kinds"].get("repeat_in_gene")
        if inside:
            line += (f"; repeat windows inside a gene: {inside['gene_claims']}/{inside['rows']} "
                     f"answered with a gene, {inside['holding_gene_claims']} of them a gene that holds it")
        out.append(line)
    return out


def _confusions(o: dict) -> list[str]:
    out = []
    for name, m in o["systems"].items():
        c = m["confusion"]
        out += ["", f"Confusion ({name}): truth kind x answered outcome", "",
                "| truth | " + " | ".join(c["columns"]) + " |", "|---" * (len(c["columns"]) + 1) + "|"]
        out += [f"| {r} | " + " | ".join(map(str, row)) + " |" for r, row in zip(c["rows"], c["matrix"])]
    return out


def _model_confidence(model: dict) -> list[str]:
    confident = [f"{k} {v['confident_gene']}/{v['rows']}" for k, v in model["kinds"].items()
                 if v["confident_gene"] is not None]
    out = ["", "Model rows with gene confidence >= 0.5, per kind: " + ", ".join(confident)]
    rc = model.get("risk_coverage") or []
    if rc:
        out += ["", "Model risk-coverage (outcome confidence threshold: coverage, error among the covered):",
                "", "| threshold | coverage | error |", "|---|---|---|"]
        out += [f"| {p['threshold']:.2f} | {p['coverage']:.3f} | "
                f"{'–' if p['error'] is None else format(p['error'], '.3f')} |" for p in rc]
    return out


def out_of_reference(o: dict) -> list[str]:
    """The "out_of_reference" section: summary per system, gene claims per kind, the model's
    confidence, the confusion matrices, the tuned thresholds."""
    from llamadna.constants import REPEAT_MIN_LOCI
    from llamadna.evaluate.out_of_reference import (
        COPY_HEAD,
        copy_rows,
        diverged_outcomes,
        diverged_rows,
        per_unit_rows,
        rows_summary,
        summary_rows,
        validation_summary,
        versus_summary,
    )

    rows = rows_summary(o)
    units = ", ".join(o["units"])
    out = ["", f"### Out of reference ({o['split']}: {units}; {sum(o['rows'].values())} rows: {rows}; "
           f"thresholds tuned on {o['validation_rows']} validation rows)", "",
           "| system | outcome macro-F1 | 95 % interval | gene claimed where there is none | "
           "novel: no gene claimed | AUROC |", "|---|---|---|---|---|---|"]
    out += ["| " + " | ".join(r) + " |" for r in summary_rows(o)]
    for line in (validation_summary(o), versus_summary(o)):
        if line is not None:
            out += ["", line]
    head, units = per_unit_rows(o)
    if units:
        out += ["", "Per unit: genic rows answered with their gene, novel rows with no gene:", "",
                "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in units]
    if copies := copy_rows(o):
        out += ["", "Genic and novel rows by their window's reference loci (multi-copy: "
                f">= {REPEAT_MIN_LOCI}, what the repeat truth calls a repeat):", "",
                "| " + " | ".join(COPY_HEAD) + " |", "|---" * len(COPY_HEAD) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in copies]
    head, rows = diverged_rows(o)
    if rows:
        out += ["", f"Diverged copies of the test rows ({o['diverged']['rows']} per rate): answered "
                "with their own gene [95 % interval], the model minus each rule (paired):", "",
                "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        out += ["", "Outcomes given to the diverged copies:", ""] + [f"- {x}" for x in diverged_outcomes(o)]
    out += _kind_claims(o, [k for k in o["rows"] if k != "gene"])
    out += _no_gene_rows(o)
    if o["systems"].get("model"):
        out += _model_confidence(o["systems"]["model"])
    out += _confusions(o)
    # per baseline and unit; a metrics.json before 2026-12-05 has one set per baseline
    by_unit = {k: t if all(isinstance(v, dict) for v in t.values()) else {o["units"][0]: t}
               for k, t in o["thresholds"].items()}
    out += ["", "Thresholds tuned on each unit's validation rows: " + "; ".join(
        f"{k} ({unit}): " + ", ".join(f"{a} {b}" for a, b in t.items())
        for k, units in by_unit.items() for unit, t in units.items())]
    return out


def main(path: str) -> None:
    m = json.load(open(path))
    lines = [
        f"Run: {m['meta']['created']}, {m['meta']['seconds']} s, splits {', '.join(m['meta']['splits'])}, "
        f"seed {m['meta']['seed']}.",
        "",
    ]
    for split, entry in m["splits"].items():
        lines += headline(split, entry)
        if entry.get("divergence"):
            lines += divergence(split, entry["divergence"])
        lines.append("")
    if m.get("out_of_reference"):
        lines += out_of_reference(m["out_of_reference"])
    if m.get("benchmark"):
        lines += benchmark(m["benchmark"])
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1])
