"""The annotation sentences: the original poster's gene sentence (verbatim), the sentence of each
other outcome, and their inverses.

What a sequence is, `constants.OUTCOMES`, each said in one sentence whose opening words decide it:

- gene: `constants.ANNOTATION_TEMPLATE` ("This sequence is part of chr1 chromosome part of TUFT1
  gene. ..."), written by `annotation_sentence` / `annotation_expr` from the gene fields;
- intergenic: "This sequence is part of chr21 chromosome between APP (12 kb) and ADAMTS1 (30 kb);
  no gene contains it." (`intergenic_sentence`, distances by `distance_text`);
- repeat: "This sequence is a repeat: it matches 14 reference loci, among them TANGO2, DGCR8 and
  APP; no single gene can be named." (`repeat_sentence`);
- similar: "This sequence resembles part of chr21 chromosome in APP gene: 35 % of it aligns at
  84 % identity; no gene is claimed." (`similar_sentence`);
- none: `constants.NONE_SENTENCE`.

`outcome_of` names the outcome from a sentence's opening words as soon as they decide it, so it
works on a prefix of a generation (a stop criterion); `parse_outcome` reads the outcome and its
fields back; `parse_annotation` reads the gene sentence's fields.

Parsing the gene sentence, in two passes:

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

import math
import re
from collections.abc import Sequence

import polars as pl

from llamadna.constants import (
    ANNOTATION_TEMPLATE,
    INTERGENIC_TEMPLATE,
    REPEAT_TEMPLATE,
    SIMILAR_TEMPLATE,
)


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


# ---------------------------------------------------------------------------------------- outcomes
NO_GENE = "no annotated gene"  # a flank without a gene, a repeat without a named locus
MAX_REPEAT_EXAMPLES = 3  # gene names a repeat sentence gives as examples


def distance_text(bp: int) -> str:
    """A distance as a reader wants it: "850 bp" below 1 kb, "4.2 kb" below 10 kb, else "12 kb".

    Rounded half up on whole tenths / whole kb (9,960 bp reads "10 kb", never "10.0 kb").
    """
    bp = int(bp)
    if bp < 0:
        raise ValueError(f"a distance cannot be negative: {bp}")
    if bp < 1000:
        return f"{bp} bp"
    tenths = (bp + 50) // 100
    if tenths < 100:
        return f"{tenths // 10}.{tenths % 10} kb"
    return f"{(bp + 500) // 1000} kb"


def band_word(value: float, bands: Sequence[tuple[float, str]]) -> str:
    """The word of the first (lowest value, word) band that `value` reaches (bands highest first:
    constants.COVERAGE_WORDS, IDENTITY_WORDS)."""
    return next((word for low, word in bands if value >= low), bands[-1][1])


def flank_text(gene: str | None, distance: int | None) -> str:
    """One side of an intergenic sequence: "APP (12 kb)", "APP" without a distance, or
    "no annotated gene"."""
    if not gene:
        return NO_GENE
    return gene if distance is None else f"{gene} ({distance_text(distance)})"


def intergenic_sentence(
    chrom: str, left_gene: str | None, left_distance: int | None,
    right_gene: str | None, right_distance: int | None,
) -> str:
    """The sentence of a sequence between genes: where it lies and the nearest gene each side."""
    return INTERGENIC_TEMPLATE.format(
        chrom=chrom, left=flank_text(left_gene, left_distance),
        right=flank_text(right_gene, right_distance),
    )


def _name_list(names: Sequence[str]) -> str:
    """ "A", "A and B", "A, B and C"."""
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]


def repeat_sentence(loci: int, genes: Sequence[str | None]) -> str:
    """The sentence of a repeat: how many reference loci it matches and up to three example genes
    (distinct, in the order given; empty names skipped; none -> "no annotated gene")."""
    examples = list(dict.fromkeys(g for g in genes if g))[:MAX_REPEAT_EXAMPLES]
    return REPEAT_TEMPLATE.format(
        loci=int(loci), examples=_name_list(examples) if examples else NO_GENE)


def _percent(share: float) -> int:
    """A share in [0, 1] as a whole percentage, rounded down (99.6 % never reads 100 %)."""
    return min(100, max(0, math.floor(float(share) * 100 + 1e-9)))


def similar_sentence(chrom: str, gene: str | None, fraction: float, identity: float) -> str:
    """The sentence of a partial or distant similarity: where the best alignment lies, the share
    of the query it covers (`fraction`) and its identity, both in [0, 1]."""
    return SIMILAR_TEMPLATE.format(
        chrom=chrom, target=f"{gene} gene" if gene else "intergenic sequence",
        fraction=_percent(fraction), identity=_percent(identity),
    )


# The words that decide each outcome (searched case-insensitively; the earliest match wins).
_OUTCOME_WORDS = {
    "gene": re.compile(r"This sequence is part of \S+ chromosome part of", re.I),
    "intergenic": re.compile(r"This sequence is part of \S+ chromosome between", re.I),
    "repeat": re.compile(r"This sequence is a repeat", re.I),
    "similar": re.compile(r"This sequence resembles", re.I),
    "none": re.compile(r"This sequence matches nothing", re.I),
}
_BETWEEN = re.compile(r"chromosome between (?P<l>.+?) and (?P<r>[^;]+?)\s*;", re.I | re.S)
_FLANK = re.compile(r"^(?P<g>.+?)(?:\s*\([^()]*\))?$", re.S)
_LOCI = re.compile(r"\bit matches (?P<n>\d+) reference loci\b", re.I)
_TARGET = re.compile(r"chromosome in (?P<t>[^:]+?)\s*:", re.I)
_GENE_ONLY = ("gene", "description", "transcript_type", "phenotype", "source")


def outcome_of(text: str | None) -> str | None:
    """The outcome a sentence states, from its opening words, as soon as they decide it.

    Works on a prefix of a generation: None while the words seen so far fit more than one
    outcome (or none), then the outcome, which no longer text changes.

    Parameters
    ----------
    text : a sentence or a prefix of one; None or "" gives None.

    Returns
    -------
    one of `constants.OUTCOMES`, or None.
    """
    if not text:
        return None
    first = _first_outcome(" ".join(text.split()))
    return first[0] if first else None


def deciding_end(text: str) -> int:
    """Where the words that decide `text`'s outcome end (a character offset of `text` as written:
    "This sequence resembles| part of ..."); 0 when no outcome's words are in it. Training weighs
    the tokens up to there (`LlamaDNAConfig.decision_weight`)."""
    first = _first_outcome(text)
    return first[1].end() if first else 0


def _first_outcome(text: str) -> tuple[str, re.Match] | None:
    """The outcome whose deciding words come first in `text`, and their match; None if none do."""
    found = [(m.start(), name, m) for name, rx in _OUTCOME_WORDS.items() if (m := rx.search(text))]
    return min(found, key=lambda f: f[:2])[1:] if found else None


def _flank_gene(text: str | None) -> str | None:
    value = _clean(text)
    if value is None:
        return None
    gene = _clean(_FLANK.match(value).group("g"))
    return None if gene is None or gene.lower() == NO_GENE else gene


def parse_outcome(text: str | None) -> dict[str, str | int | None]:
    """The outcome of one sentence and its fields.

    Parameters
    ----------
    text : a generated (or reference) sentence of any outcome; None or "" gives all-None fields.

    Returns
    -------
    {"outcome"} (`outcome_of`), the keys of `parse_annotation` (gene, description,
    transcript_type, phenotype, source only for a gene outcome; chrom for gene, intergenic and
    similar), "left_gene" / "right_gene" (intergenic: the flanking genes, None for "no annotated
    gene"), "loci" (repeat: an int) and "similar_to" (similar: the gene it resembles, None for
    intergenic sequence). A field is None where the sentence does not contain it whole.
    """
    outcome = outcome_of(text)
    out: dict[str, str | int | None] = {"outcome": outcome, **parse_annotation(text)}
    out.update(left_gene=None, right_gene=None, loci=None, similar_to=None)
    if outcome != "gene":
        out.update(dict.fromkeys(_GENE_ONLY))
    if outcome not in ("gene", "intergenic", "similar"):
        out["chrom"] = None
    norm = " ".join((text or "").split())
    if outcome == "intergenic" and (m := _BETWEEN.search(norm)):
        out["left_gene"], out["right_gene"] = _flank_gene(m.group("l")), _flank_gene(m.group("r"))
    elif outcome == "repeat" and (m := _LOCI.search(norm)):
        out["loci"] = int(m.group("n"))
    elif outcome == "similar" and (m := _TARGET.search(norm)):
        target = _clean(m.group("t"))
        if target is not None and target.lower().endswith(" gene"):
            out["similar_to"] = _clean(target[: -len(" gene")])
    return out
