"""The annotation sentence (the original poster's template, verbatim)."""

from __future__ import annotations

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
