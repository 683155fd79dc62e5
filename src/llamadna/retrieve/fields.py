"""What a reference position says: the gene fields the dataset builder gives there, and the
known variants nearest it (a split's training rows only, never its test rows).

- **Gene fields** (`gene_fields`): the builder's own functions (`load_genes` + `resolve_genes`
  for genes and descriptions, `assign_genes` for the overlapping-gene rule,
  `add_gene_phenotypes`/`phenotype_expr` for the phenotype). A position knows no variant's own
  phenotype: the phenotype is the gene's (ClinVar, OMIM, Orphanet as in the builder), else
  "not specified".
- **Source label** (`NearestVariants`): the label (`Dataset`) of the known variant nearest a
  position on the same build and chromosome. Ties: the smaller distance, then the upstream
  (lower-position) variant, then, for several rows at one position, the label of most rows there
  (then alphabetical). No known variant on that chromosome: None (the caller's fallback).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from llamadna.data.genes import add_gene_phenotypes, gene_text_exprs, phenotype_expr

# Columns of the known-variant table (dataset columns: the training rows of a split).
KNOWN_VARIANT_COLUMNS = ("build", "chrom", "variant_pos", "Dataset")
_KNOWN_DTYPES = (pl.Utf8, pl.Utf8, pl.Int64, pl.Utf8)


def known_variant_table(rows: pl.DataFrame | Iterable[Mapping]) -> pl.DataFrame:
    """The `KNOWN_VARIANT_COLUMNS` of dataset rows (a frame or dicts: the training split)."""
    if not isinstance(rows, pl.DataFrame):
        rows = list(rows)
        missing = [c for c in KNOWN_VARIANT_COLUMNS if rows and c not in rows[0]]
        if not missing:
            rows = pl.DataFrame({c: [r[c] for r in rows] for c in KNOWN_VARIANT_COLUMNS},
                                schema=dict(zip(KNOWN_VARIANT_COLUMNS, _KNOWN_DTYPES)))
    else:
        missing = [c for c in KNOWN_VARIANT_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"known variants lack the dataset columns {missing}")
    return rows.select(pl.col(c).cast(t) for c, t in zip(KNOWN_VARIANT_COLUMNS, _KNOWN_DTYPES))


@dataclass
class NearestVariants:
    """Known variants per (build, chrom): sorted distinct 1-based positions and the label chosen
    at each (the label of most rows there, then alphabetical)."""

    pos: dict[tuple[str, str], np.ndarray]  # (build, chrom) -> (V,) int64 sorted positions
    label: dict[tuple[str, str], np.ndarray]  # (build, chrom) -> (V,) object labels

    @classmethod
    def from_table(cls, known: pl.DataFrame) -> NearestVariants:
        v = (
            known.drop_nulls()
            .group_by(["build", "chrom", "variant_pos", "Dataset"]).len()
            .sort(["build", "chrom", "variant_pos", "len", "Dataset"],
                  descending=[False, False, False, True, False])
            .unique(subset=["build", "chrom", "variant_pos"], keep="first", maintain_order=True)
        )
        pos, label = {}, {}
        for (build, chrom), g in v.group_by(["build", "chrom"], maintain_order=True):
            pos[(build, chrom)] = g["variant_pos"].to_numpy().astype(np.int64)
            label[(build, chrom)] = np.asarray(g["Dataset"].to_list(), dtype=object)
        return cls(pos, label)

    def nearest(self, build: str, chrom: str, position: np.ndarray) -> list[str | None]:
        """Label of the variant nearest each 1-based position (ties: the upstream one); None
        where the chromosome has no known variant."""
        p = self.pos.get((build, chrom))
        if p is None:
            return [None] * len(position)
        x = np.asarray(position, dtype=np.int64)
        i = np.searchsorted(p, x, side="left")  # p[i - 1] < x <= p[i]
        left = np.clip(i - 1, 0, p.size - 1)
        right = np.clip(i, 0, p.size - 1)
        d_left = np.where(i > 0, x - p[left], np.iinfo(np.int64).max)
        d_right = np.where(i < p.size, p[right] - x, np.iinfo(np.int64).max)
        pick = np.where(d_right < d_left, right, left)
        return self.label[(build, chrom)][pick].tolist()


def gene_fields(genes: pl.DataFrame, gene_pheno: pl.DataFrame) -> dict[tuple[str, str], dict]:
    """(chrom, gene_name) -> gene, description, transcript_type, phenotype, filled as the builder
    fills a row whose variant has no phenotype of its own."""
    g = add_gene_phenotypes(genes, gene_pheno).with_columns(
        pl.lit(None, pl.Utf8).alias("phenotype")  # a lookup knows no variant's phenotype
    ).with_columns(phenotype_expr(), *gene_text_exprs())
    return {
        (r["chrom"], r["gene_name"]): {
            "gene": r["gene_name"], "description": r["gene_description"],
            "transcript_type": r["transcript_type"], "phenotype": r["phenotype"],
        }
        for r in g.iter_rows(named=True)
    }
