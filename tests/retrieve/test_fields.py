"""What a reference position says: the known-variant table, the nearest variant's label and its
tie rules, and the gene fields of the sentence (on hand-made tables)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from llamadna.constants import NOT_SPECIFIED
from llamadna.retrieve.fields import (
    KNOWN_VARIANT_COLUMNS,
    NearestVariants,
    gene_fields,
    known_variant_table,
)

# (build, chrom, variant_pos, Dataset): one row per known variant
KNOWN = [
    ("GRCh38", "chr1", 100, "ClinVar"),
    ("GRCh38", "chr1", 200, "ClinVar"),
    ("GRCh38", "chr1", 200, "gnomAD"),  # two gnomAD rows at 200: the most rows win
    ("GRCh38", "chr1", 200, "gnomAD"),
    ("GRCh38", "chr1", 300, "b_source"),  # one row each at 300: alphabetical
    ("GRCh38", "chr1", 300, "a_source"),
    ("GRCh38", "chr1", 150, None),  # a row without a label is no known variant
    ("GRCh38", "chr2", 50, "COSMIC"),
    ("GRCh37", "chr1", 100, "other_build"),
]


def _known() -> pl.DataFrame:
    return known_variant_table([dict(zip(KNOWN_VARIANT_COLUMNS, r)) for r in KNOWN])


def test_known_variant_table_from_dicts_and_frames():
    t = _known()
    assert t.columns == list(KNOWN_VARIANT_COLUMNS) and t.height == len(KNOWN)
    assert t.schema == pl.Schema({"build": pl.Utf8, "chrom": pl.Utf8, "variant_pos": pl.Int64,
                                  "Dataset": pl.Utf8})
    # a dataset frame: its other columns dropped, positions cast to Int64
    frame = t.with_columns(pl.col("variant_pos").cast(pl.Int32), pl.lit("x").alias("Sequence"))
    assert known_variant_table(frame).equals(t)
    empty = known_variant_table([])
    assert empty.height == 0 and empty.schema == t.schema


@pytest.mark.parametrize("rows", [pl.DataFrame({"build": ["b"], "chrom": ["c"], "variant_pos": [1]}),
                                  [{"build": "b", "chrom": "c", "variant_pos": 1}]])
def test_known_variant_table_names_missing_columns(rows):
    with pytest.raises(ValueError, match=r"lack the dataset columns \['Dataset'\]"):
        known_variant_table(rows)


def test_label_chosen_per_position():
    nv = NearestVariants.from_table(_known())
    assert nv.pos[("GRCh38", "chr1")].tolist() == [100, 200, 300]  # sorted, distinct, no null label
    assert nv.label[("GRCh38", "chr1")].tolist() == ["ClinVar", "gnomAD", "a_source"]
    assert set(nv.pos) == {("GRCh38", "chr1"), ("GRCh38", "chr2"), ("GRCh37", "chr1")}


@pytest.mark.parametrize(("position", "label"), [
    (100, "ClinVar"),  # on a variant
    (1, "ClinVar"),  # before the first one
    (149, "ClinVar"),  # 49 vs 51: the smaller distance
    (150, "ClinVar"),  # 50 vs 50: the upstream (lower-position) variant, not gnomAD at 200
    (151, "gnomAD"),
    (200, "gnomAD"),  # most rows at 200 (2 gnomAD, 1 ClinVar)
    (250, "gnomAD"),  # tie between 200 and 300: upstream
    (251, "a_source"),  # one row each at 300: alphabetical
    (10_000, "a_source"),  # after the last one
])
def test_nearest_variant_rules(position, label):
    nv = NearestVariants.from_table(_known())
    assert nv.nearest("GRCh38", "chr1", np.array([position])) == [label]


def test_nearest_is_vectorised_and_never_mixes_builds_or_chromosomes():
    nv = NearestVariants.from_table(_known())
    assert nv.nearest("GRCh38", "chr1", np.array([150, 151, 251])) == ["ClinVar", "gnomAD", "a_source"]
    assert nv.nearest("GRCh37", "chr1", np.array([300])) == ["other_build"]
    assert nv.nearest("GRCh38", "chr2", np.array([300])) == ["COSMIC"]
    assert nv.nearest("GRCh38", "chr3", np.array([100, 200])) == [None, None]  # no known variant
    assert nv.nearest("GRCh36", "chr1", np.array([100])) == [None]
    empty = NearestVariants.from_table(known_variant_table([]))
    assert empty.nearest("GRCh38", "chr1", np.array([100])) == [None]


def test_gene_fields_as_the_builder_fills_a_row_without_its_own_phenotype():
    genes = pl.DataFrame({
        "chrom": ["chr1", "chr1", "chr2", "chr2"],
        "gene_name": ["A", "B", "C", "A"],
        "entrez_symbol": ["A_ENTREZ", None, None, None],
        "gene_description": ["alpha", "beta", None, "alpha on chr2"],
        "gene_type": ["protein_coding", "lncRNA", "transcribed_unprocessed_pseudogene", "miRNA"],
    })
    pheno = pl.DataFrame({"gene_symbol": ["A_ENTREZ", "A", "B"],
                          "gene_phenotype": ["by entrez", "by name", "B disease"]})
    f = gene_fields(genes, pheno)
    assert set(f) == {("chr1", "A"), ("chr1", "B"), ("chr2", "C"), ("chr2", "A")}
    # the Entrez symbol first, else the gene's own name
    assert f[("chr1", "A")] == {"gene": "A", "description": "alpha", "transcript_type": "protein coding",
                                "phenotype": "by entrez"}
    assert f[("chr2", "A")]["phenotype"] == "by name"
    assert f[("chr1", "B")] == {"gene": "B", "description": "beta", "transcript_type": "lncRNA",
                                "phenotype": "B disease"}
    # neither known: "not specified"; underscores of the gene type as spaces
    assert f[("chr2", "C")] == {"gene": "C", "description": NOT_SPECIFIED,
                                "transcript_type": "transcribed unprocessed pseudogene",
                                "phenotype": NOT_SPECIFIED}
