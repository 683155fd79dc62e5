"""The windows of a reference index: gene spans, tiling, gene exclusion and the known variants
each window carries (hand-made frames), and the fields the bundle's windows get."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from llamadna.errors import ConfigError
from llamadna.io.fasta import Contig, Reference
from llamadna.retrieve.fields import known_variant_table
from llamadna.retrieve.windows import (
    GENE_COLUMNS,
    WINDOW_COLUMNS,
    _named,
    _tile,
    carry_variants,
    exclude_genes,
    gene_spans,
    index_tables,
)
from tests.retrieve.conftest import W


def _reference() -> Reference:
    """chr1 whole (1,000 bases); chr2 as a region record covering chr2:501-800."""
    return Reference(Path("ref.fa"), [
        Contig("chr1", "chr1", 0, np.full(1_000, ord("A"), dtype=np.uint8)),
        Contig("chr2:501-800", "chr2", 500, np.full(300, ord("C"), dtype=np.uint8), is_region=True),
    ])


def _genes(rows: list[tuple[str, int, int]]) -> pl.DataFrame:
    """(chrom, 1-based start, 1-based inclusive end) per gene."""
    return pl.DataFrame(rows, schema={"chrom": pl.Utf8, "start": pl.Int64, "end": pl.Int64}, orient="row")


def test_gene_spans_merge_clip_and_are_0_based_half_open():
    genes = _genes([
        ("chr1", 900, 990),  # listed out of order
        ("chr1", 101, 200),
        ("chr1", 250, 300),  # its flank overlaps the first gene's: one span
        ("chr2", 400, 450),  # before the region record, even with its flank: no span
        ("chr2", 790, 900),  # crosses the region's end: clipped, relative to the record
        ("chr3", 1, 100),  # no record
    ])
    assert gene_spans(genes, _reference(), 30) == [(0, 70, 330), (0, 869, 1_000), (1, 259, 300)]
    # no flank: gene 101..200 (1-based inclusive) is [100, 200) 0-based half-open
    assert gene_spans(_genes([("chr1", 101, 200)]), _reference(), 0) == [(0, 100, 200)]
    # spans that touch are merged ([100, 200) and [200, 300))
    assert gene_spans(_genes([("chr1", 101, 200), ("chr1", 201, 300)]), _reference(), 0) == [(0, 100, 300)]


@pytest.mark.parametrize(("length", "window", "stride", "starts"), [
    (10, 4, 3, [0, 3, 6]),  # 6 + 4 = 10: the end is covered
    (11, 4, 3, [0, 3, 6, 7]),  # the last window shifted to end at 11
    (4, 4, 2, [0]),  # exactly one window
    (3, 4, 1, [0]),  # shorter than a window: one (shorter) window
    (12, 4, 4, [0, 4, 8]),
])
def test_tile(length, window, stride, starts):
    assert _tile(length, window, stride).tolist() == starts


@pytest.mark.parametrize(("window", "stride", "flank"), [(0, 1, 0), (10, 0, 0), (10, 1, -1)])
def test_index_tables_rejects_bad_settings(tmp_path, window, stride, flank):
    with pytest.raises(ConfigError, match="window and stride must be >= 1 and flank >= 0"):
        index_tables(tmp_path, window, stride, flank)


def _windows(rows: list[tuple[str, str, int, int]]) -> pl.DataFrame:
    """Index windows (WINDOW_COLUMNS) at (build, chrom, start0, end0), ids 0, 1, ...; each
    carries a stale variant (999) that carry_variants must replace."""
    n = len(rows)
    build, chrom, s, e = (list(c) for c in zip(*rows))
    return pl.DataFrame({
        "window": list(range(n)), "build": build, "chrom": chrom, "start0": s, "end0": e,
        "Sequence": ["ACGT"] * n, "gene_id": [None] * n, "gene": [None] * n, "description": [None] * n,
        "transcript_type": [None] * n, "phenotype": [None] * n,
        "variant_pos": [[999]] * n, "variant_source": [["stale"]] * n,
    }, schema={"window": pl.Int64, "build": pl.Utf8, "chrom": pl.Utf8, "start0": pl.Int64,
               "end0": pl.Int64, "Sequence": pl.Utf8, "gene_id": pl.Utf8, "gene": pl.Utf8,
               "description": pl.Utf8, "transcript_type": pl.Utf8, "phenotype": pl.Utf8,
               "variant_pos": pl.List(pl.Int64), "variant_source": pl.List(pl.Utf8)})


def _gene_table(rows: list[tuple[str, str, int, int, str | None, str | None]]) -> pl.DataFrame:
    """An index gene table (GENE_COLUMNS) from (build, chrom, start, end, gene_id, gene_name)."""
    t = pl.DataFrame(rows, schema={"build": pl.Utf8, "chrom": pl.Utf8, "start": pl.Int64, "end": pl.Int64,
                                   "gene_id": pl.Utf8, "gene_name": pl.Utf8}, orient="row")
    return t.with_columns(pl.lit("+").alias("strand"), pl.lit("protein_coding").alias("gene_type"),
                          *(pl.lit(None, pl.Utf8).alias(c) for c in GENE_COLUMNS if c not in t.columns
                            and c not in ("strand", "gene_type"))).select(GENE_COLUMNS)


WINDOWS = [
    ("GRCh38", "chr1", 0, 100),  # 0: bases 1..100, ends just before G (101..200): kept
    ("GRCh38", "chr1", 100, 200),  # 1: inside G: dropped
    ("GRCh38", "chr1", 199, 299),  # 2: its first base is G's last: dropped
    ("GRCh38", "chr1", 200, 300),  # 3: starts just after G: kept
    ("GRCh38", "chr2", 100, 200),  # 4: another chromosome: kept
    ("GRCh37", "chr1", 100, 200),  # 5: another build, where G is elsewhere: kept
    ("GRCh38", "chr1", 1, 101),  # 6: its last base is G's first: dropped
]
GENES = [
    ("GRCh38", "chr1", 101, 200, "ENSG1", "G"),
    ("GRCh38", "chr1", 1_000, 1_100, "ENSG2", "H"),
    ("GRCh37", "chr1", 5_000, 5_100, "ENSG1", "G"),
    ("GRCh37", "chr1", 101, 200, None, "K"),
]


@pytest.mark.parametrize("name", ["G", "ENSG1"])
def test_exclude_genes_by_name_or_id_drops_overlapping_windows_and_keeps_ids(name):
    windows, genes = exclude_genes(_windows(WINDOWS), _gene_table(GENES), [name])
    assert windows["window"].to_list() == [0, 3, 4, 5]  # ids not renumbered
    assert windows.columns == list(WINDOW_COLUMNS)
    assert genes["gene_name"].to_list() == ["H", "K"]


def test_exclude_genes_without_a_match_keeps_everything():
    windows, genes = exclude_genes(_windows(WINDOWS), _gene_table(GENES), ["NOT_A_GENE"])
    assert windows.equals(_windows(WINDOWS)) and genes.equals(_gene_table(GENES))
    # a null id or name never matches (K has no id)
    t = _gene_table(GENES)
    assert t.filter(_named({"K"}))["gene_name"].to_list() == ["K"]
    assert t.filter(~_named(set())).height == t.height


def test_carry_variants_replaces_the_variants_inside_each_window():
    known = known_variant_table(pl.DataFrame(
        [("GRCh38", "chr1", 100, "ClinVar"),  # base 100: window 0's last base, not window 1's
         ("GRCh38", "chr1", 101, "gnomAD"),  # window 1's first base
         ("GRCh38", "chr1", 200, "b_source"),  # window 1's last base; two labels there: sorted
         ("GRCh38", "chr1", 200, "a_source"),
         ("GRCh38", "chr1", 300, "COSMIC"),  # window 3's last base, not window 2's
         ("GRCh37", "chr1", 150, "other_build")],
        schema=["build", "chrom", "variant_pos", "Dataset"], orient="row"))
    w = carry_variants(_windows(WINDOWS), known)
    assert w.columns == list(WINDOW_COLUMNS) and w["window"].to_list() == list(range(len(WINDOWS)))
    assert w["variant_pos"].to_list() == [[100], [101, 200, 200], [200, 200], [300], [], [150], [100, 101]]
    assert w["variant_source"].to_list() == [
        ["ClinVar"], ["gnomAD", "a_source", "b_source"], ["a_source", "b_source"], ["COSMIC"],
        [], ["other_build"], ["ClinVar", "gnomAD"]]
    none = carry_variants(_windows(WINDOWS), None)
    assert none["variant_pos"].to_list() == [[]] * len(WINDOWS)
    assert none.drop("variant_pos", "variant_source").equals(w.drop("variant_pos", "variant_source"))


def test_exclusion_and_variants_after_tiling_are_those_of_tiling_with_them(workspace):
    """`exclude_genes` / `carry_variants` on an index's tables give what `index_tables` gives
    with the same genes excluded / variants (the rule `ReferenceIndex.derive` relies on)."""
    _, b, df, index = workspace
    gene = index.windows["gene"].drop_nulls().value_counts(sort=True)["gene"][0]
    known = known_variant_table(df.head(30))
    full, genes = index_tables(b.path, W, 32, 100, known)
    part, part_genes = index_tables(b.path, W, 32, 100, known, exclude_genes=[gene])
    kept, kept_genes = exclude_genes(full, genes, [gene])
    assert part.height < full.height and gene not in kept["gene"].to_list()
    assert kept.drop("window").equals(part.drop("window")) and kept_genes.equals(part_genes)
    assert carry_variants(full, known).equals(full)
    other = known_variant_table(df.tail(30))
    assert carry_variants(full, other).equals(index_tables(b.path, W, 32, 100, other)[0])


def test_window_fields_are_what_build_dataset_gives_there(workspace):
    _, b, df, _ = workspace
    windows, _ = index_tables(b.path, W, 1, 0)  # every position: each row's centre has a window
    centre = windows.with_columns(((pl.col("start0") + pl.col("end0")) // 2 + 1).alias("pos"))
    rows = df.with_columns(pl.col("variant_pos").alias("pos"))  # a dataset window is centred on it
    joined = rows.join(centre.filter(pl.col("end0") - pl.col("start0") == W),
                       on=["build", "chrom", "pos"], how="inner", suffix="_w")
    assert joined.height >= 0.9 * df.height  # rows near a chromosome end have no full window
    for r in joined.iter_rows(named=True):
        assert r["Sequence_w"] == r["Sequence"]
        assert (r["gene"], r["gene_id_w"]) == (r["gene_name"], r["gene_id"])
        assert (r["description"], r["transcript_type_w"]) == (r["gene_description"], r["transcript_type"])
    # the phenotype is the gene's: equal to the row's wherever the variant has none of its own
    by_gene = joined.group_by("gene").agg(pl.col("phenotype_w").n_unique())
    assert (by_gene["phenotype_w"] == 1).all()


def test_gene_table_names_every_window_gene_and_keeps_genes_without_id(workspace):
    _, _, _, index = workspace
    w = index.windows.drop_nulls("gene").select("gene", "build", "chrom", "description", "phenotype").unique()
    g = index.genes.select(pl.col("gene_name").alias("gene"), "build", "chrom", "description", "phenotype")
    assert w.join(g, on=["gene", "build", "chrom"], how="anti").height == 0  # every window gene
    assert w.join(g, on=w.columns, how="anti").height == 0  # with the same fields
    genes = pl.DataFrame({"gene_name": ["A", "B", None], "gene_id": [None, "ENSG2", "ENSG3"]})
    assert genes.filter(~_named(set()))["gene_id"].to_list() == [None, "ENSG2", "ENSG3"]
    assert genes.filter(~_named({"A", "ENSG3"}))["gene_name"].to_list() == ["B"]


def test_whole_tiling_covers_every_base_of_every_record(workspace):
    """tile "all": each record tiled from its first base to its last, every `stride`, full
    windows (the last shifted to end at the record's end), in record order; a window's gene is
    the one at its centre, None where no gene of the generator's list holds the centre."""
    _, b, _, _ = workspace
    windows, _ = index_tables(b.path, W, 32, 100, tile="all")
    assert windows["window"].to_list() == list(range(windows.height))
    assert windows["chrom"].unique(maintain_order=True).to_list() == list(b.genome)
    for chrom, (start0, seq) in b.genome.items():
        w = windows.filter(pl.col("chrom") == chrom)
        s, e = w["start0"].to_numpy(), w["end0"].to_numpy()
        covered = np.zeros(len(seq), dtype=int)
        for a, z in zip(s - start0, e - start0):
            covered[a:z] += 1
        assert (covered > 0).all() and s[0] == start0 and e[-1] == start0 + len(seq)
        assert (e - s == W).all() and (np.diff(s)[:-1] == 32).all() and 0 < np.diff(s)[-1] <= 32
        assert w["Sequence"].to_list() == [seq[a - start0: z - start0].tobytes().decode() for a, z in zip(s, e)]
        centre = (s + e) // 2 + 1
        genic = [any(g["chrom"] == chrom and g["start"] <= c <= g["end"] for g in b.genes) for c in centre]
        assert w["gene"].is_not_null().to_list() == genic and not all(genic) and any(genic)
    assert windows.equals(index_tables(b.path, W, 32, 100)[0])  # the default


def test_gene_tiling_is_the_genes_and_their_flanks_only(workspace):
    """tile "genes": what the index tiled before whole-reference tiling: each merged gene +-
    flank span (clipped to its record) tiled on its own, computed here from the generator's
    gene list."""
    _, b, _, _ = workspace
    windows, genes = index_tables(b.path, W, 32, 100, tile="genes")
    expected = []
    for chrom, (start0, seq) in b.genome.items():
        spans = sorted((max(g["start"] - 1 - 100, start0), min(g["end"] + 100, start0 + len(seq)))
                       for g in b.genes if g["chrom"] == chrom)
        merged: list[list[int]] = []
        for a, z in spans:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], z)
            else:
                merged.append([a, z])
        for a, z in merged:
            starts = list(range(a, z - W + 1, 32))
            starts += [z - W] if starts[-1] + W < z else []
            expected += [(chrom, x, x + W) for x in starts]
    assert windows.select("chrom", "start0", "end0").rows() == expected
    whole = index_tables(b.path, W, 32, 100, tile="all")
    assert whole[1].equals(genes) and windows.height < whole[0].height


def test_index_tables_rejects_an_unknown_tiling(tmp_path):
    with pytest.raises(ConfigError, match="unknown tiling 'genome'"):
        index_tables(tmp_path, 10, 1, 0, tile="genome")
