"""The annotation sentence (the original poster's template, verbatim) and its inverse.

`annotation_sentence` / `annotation_expr` fill `constants.ANNOTATION_TEMPLATE` from the gene
fields; `parse_annotation` reads the fields back out of a sentence, generated or not.

Parsing, in two passes:

1. The whole template, anchored, built from ANNOTATION_TEMPLATE itself (so the two never drift
   apart). A sentence that follows the template exactly is parsed here, whatever its values hold
   (periods, "and", "gene" ...), except that a description containing " and a " is split at the
   last " and a " before "transcript type" (transcript types never contain it).
2. Otherwise (a generation that drops, repeats, reorders or truncates sentences, or adds text),
   each field is searched on its own between the template words around it; the first occurrence
   wins. A field is returned only when both its left and right context are present, so a
   truncated value ("described as ATP binding cass") gives None rather than half a value.

Values are returned as written (whitespace collapsed); "not specified" stays "not specified".
"""

from __future__ import annotations

import re

import polars as pl

from llamadna.constants import ANNOTATION_TEMPLATE


def annotation_sentence(
    chrom: str, gene_name: str, gene_description: str, transcript_type: str, phenotype: str,
    Dataset: str,  # noqa: N803 - the dataset column's name
) -> str:
    return ANNOTATION_TEMPLATE.format(
        chrom=chrom, gene_name=gene_name, gene_description=gene_description,
        transcript_type=transcript_type, phenotype=phenotype, Dataset=Dataset,
    )


def annotation_expr() -> pl.Expr:
    """The same sentence as a polars expression over the dataset columns."""
    parts: list[pl.Expr] = []
    rest = ANNOTATION_TEMPLATE
    while "{" in rest:
        head, tail = rest.split("{", 1)
        name, rest = tail.split("}", 1)
        parts += [pl.lit(head), pl.col(name)]
    parts.append(pl.lit(rest))
    return pl.concat_str(parts).alias("Annotation")


# ---------------------------------------------------------------------------------------- parsing
# parsed field <- template placeholder
SENTENCE_FIELDS = {
    "chrom": "chrom",
    "gene": "gene_name",
    "description": "gene_description",
    "transcript_type": "transcript_type",
    "phenotype": "phenotype",
    "source": "Dataset",
}

# A value inside one clause: no sentence break (". ") in it.
_CLAUSE = r"(?:(?!\.\s).)+?"
# The transcript type never contains " and a " (keeps descriptions with "and a" whole).
_TRANSCRIPT = r"(?:(?!\sand\san?\s).)+?"


def _full_pattern(template: str) -> re.Pattern[str]:
    """The anchored template with one named group per placeholder."""
    groups = {v: k for k, v in SENTENCE_FIELDS.items()}
    parts = re.split(r"\{(\w+)\}", " ".join(template.split()))
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 0:  # literal text: any run of whitespace matches a space
            out.append(r"\s+".join(re.escape(w) for w in part.split(" ")))
        else:
            body = _TRANSCRIPT if part == "transcript_type" else ".+?"
            out.append(f"(?P<{groups[part]}>{body})")
    return re.compile("^" + "".join(out) + "$", re.DOTALL)


_FULL = _full_pattern(ANNOTATION_TEMPLATE)

# Pass 2: each field between the template words around it (case-insensitive words).
_PARTS = {
    "chrom": re.compile(r"part of (?P<v>\S+?) chromosome\b", re.I),
    "gene": re.compile(rf"chromosome part of (?P<v>{_CLAUSE}) gene\b", re.I),
    "description": re.compile(
        rf"described as (?P<v>.+?) and an? (?P<t>{_TRANSCRIPT}) transcript type\b", re.I | re.S),
    "phenotype": re.compile(rf"\bIt is of (?P<v>{_CLAUSE}) phenotype\b", re.I),
    "source": re.compile(rf"\bIt is part of the (?P<v>{_CLAUSE}) dataset\b", re.I),
}


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = " ".join(value.split())
    return value or None


def parse_annotation(text: str | None) -> dict[str, str | None]:
    """Fields of one annotation sentence.

    Parameters
    ----------
    text : a generated (or reference) annotation; None or "" gives all-None fields.

    Returns
    -------
    {"chrom", "gene", "description", "transcript_type", "phenotype", "source"} -> the value
    the sentence gives, or None where the sentence does not contain that field.
    """
    out: dict[str, str | None] = dict.fromkeys(SENTENCE_FIELDS)
    if not text:
        return out
    norm = " ".join(text.split())
    m = _FULL.match(norm)
    if m is not None:
        return {k: _clean(m.group(k)) for k in SENTENCE_FIELDS}
    for key in ("chrom", "gene", "phenotype", "source"):
        m = _PARTS[key].search(norm)
        if m is not None:
            out[key] = _clean(m.group("v"))
    m = _PARTS["description"].search(norm)
    if m is not None:
        out["description"], out["transcript_type"] = _clean(m.group("v")), _clean(m.group("t"))
    return out
