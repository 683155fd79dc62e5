"""The windows of a reference index: the reference of each build tiled whole (`tile` "all": every
record, genes or not) or over every annotated gene, flanks included ("genes"), each window with
the fields the dataset builder gives at its centre and the known variants (a split's training
rows only) inside it.

One code path with the builder: genes from `load_genes` + `resolve_genes`, the gene at a position
from `assign_genes`, the sentence fields from `retrieve.fields.gene_fields`. A window whose
centre lies in no gene (intergenic, or a flank) keeps its sequence for alignment and embedding
but has no gene fields. Builds are never mixed: a window's coordinates and fields are those of
its own build.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl

from llamadna.data.genes import assign_genes, gene_phenotype_table, load_genes, resolve_genes
from llamadna.data.paths import AssemblySet, discover_sets, shared_table
from llamadna.errors import ConfigError
from llamadna.io.fasta import Reference, read_reference
from llamadna.io.tables import read_gene_info, read_gene_phenotypes
from llamadna.retrieve.config import DEFAULT_INDEX_TILE, INDEX_TILES
from llamadna.retrieve.fields import gene_fields, known_variant_table

log = logging.getLogger(__name__)

# Columns of windows.parquet, in order. start0/end0: 0-based half-open on the chromosome;
# variant_pos / variant_source: the known variants inside the window (1-based positions).
WINDOW_COLUMNS = (
    "window", "build", "chrom", "start0", "end0", "Sequence", "gene_id", "gene", "description",
    "transcript_type", "phenotype", "variant_pos", "variant_source",
)
FIELD_COLUMNS = ("gene", "description", "transcript_type", "phenotype")


def gene_spans(genes: pl.DataFrame, ref: Reference, flank: int) -> list[tuple[int, int, int]]:
    """Per reference record, the merged 0-based spans [s, e) covered by a gene +- `flank`
    bases, clipped to the record: (record index, s, e), in record order."""
    out = []
    for ci, c in enumerate(ref.contigs):
        g = genes.filter(pl.col("chrom") == c.chrom)
        s = np.clip(g["start"].to_numpy() - 1 - flank, c.start0, c.end0) - c.start0
        e = np.clip(g["end"].to_numpy() + flank, c.start0, c.end0) - c.start0
        keep = e > s
        spans: list[list[int]] = []
        for a, b in sorted(zip(s[keep].tolist(), e[keep].tolist())):
            if spans and a <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], b)
            else:
                spans.append([a, b])
        out += [(ci, a, b) for a, b in spans]
    return out


def record_spans(ref: Reference) -> list[tuple[int, int, int]]:
    """Every reference record whole, as `gene_spans` gives spans: (record index, 0, length)."""
    return [(ci, 0, len(c.seq)) for ci, c in enumerate(ref.contigs) if len(c.seq)]


def _tile(length: int, window: int, stride: int) -> np.ndarray:
    """Window starts over a span of `length` bases: every `stride`, the last one shifted so the
    span's end is covered; one window (shorter) when the span is shorter than `window`."""
    if length <= window:
        return np.array([0])
    starts = np.arange(0, length - window + 1, stride)
    if starts[-1] + window < length:
        starts = np.append(starts, length - window)
    return starts


def index_tables(
    data_dir: str | Path, window: int, stride: int, flank: int,
    known_variants: pl.DataFrame | Iterable | None = None,
    exclude_genes: Iterable[str] = (), sets: list[AssemblySet] | None = None,
    tile: str = DEFAULT_INDEX_TILE,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every index window of a bundle (columns `WINDOW_COLUMNS`), builds in bundle order, and
    the genes they were annotated from (`assign_genes`' input columns plus build and the
    sentence fields `FIELD_COLUMNS`; excluded genes left out), to annotate any position.

    known_variants : dataset rows (a split's training rows) whose variants the windows carry;
        None = none.
    exclude_genes : gene names or ids whose windows are left out (a fold's held-out genes): a
        window is dropped when its centre lies in such a gene or when it overlaps one.
    tile : "all" (every record whole; `flank` unused) or "genes" (genes +- `flank`), `INDEX_TILES`.
    """
    if window < 1 or stride < 1 or flank < 0:
        raise ConfigError(f"window and stride must be >= 1 and flank >= 0 (got {window}, {stride}, {flank})")
    if tile not in INDEX_TILES:
        raise ConfigError(f"unknown tiling {tile!r}: expected one of {INDEX_TILES}")
    data_dir = Path(data_dir)
    info = read_gene_info(shared_table(data_dir, "gene_info.tsv.gz"))
    pheno = gene_phenotype_table(read_gene_phenotypes(shared_table(data_dir, "gene_phenotypes.tsv.gz")))
    known = known_variant_table(known_variants) if known_variants is not None else None
    excluded = set(exclude_genes)
    frames, gene_frames = [], []
    for aset in sets if sets is not None else discover_sets(data_dir):
        ref = read_reference(aset.fasta)
        genes = resolve_genes(load_genes(aset), info)
        table = _gene_table(aset.build, genes, pheno)
        spans = record_spans(ref) if tile == "all" else gene_spans(genes, ref, flank)
        frames.append(_build_set_windows(aset.build, ref, genes, table, window, stride, spans, known,
                                         excluded))
        gene_frames.append(table.filter(~_named(excluded)))
        log.info("index windows %s: %d", aset.build, frames[-1].height)
    out = pl.concat(frames) if frames else pl.DataFrame()
    out = out.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("window")).select(WINDOW_COLUMNS)
    return out, pl.concat(gene_frames, how="diagonal_relaxed") if gene_frames else pl.DataFrame()


GENE_COLUMNS = ("build", "chrom", "start", "end", "strand", "gene_id", "gene_name", "gene_type",
                "gene_description", "entrez_symbol", *FIELD_COLUMNS)


def _named(names: set[str]) -> pl.Expr:
    """Genes whose name or id is in `names` (a null id or name is not a match)."""
    return (pl.col("gene_name").is_in(list(names)).fill_null(False)
            | pl.col("gene_id").is_in(list(names)).fill_null(False))


def _gene_table(build: str, genes: pl.DataFrame, pheno: pl.DataFrame) -> pl.DataFrame:
    """The build's genes (`GENE_COLUMNS`) with their sentence fields (`gene_fields`)."""
    fields = gene_fields(genes, pheno)
    keys = list(zip(genes["chrom"].to_list(), genes["gene_name"].to_list()))
    cols = {c: pl.Series(c, [(fields.get(k) or {}).get(c) for k in keys], dtype=pl.Utf8)
            for c in FIELD_COLUMNS}
    return genes.with_columns(pl.lit(build).alias("build"), *cols.values()).select(GENE_COLUMNS)


def _build_set_windows(build, ref, genes, table, window, stride, spans, known, excluded) -> pl.DataFrame:
    """Windows of one build over `spans` ((record index, s, e), `gene_spans` / `record_spans`);
    `table`: its genes with their fields (`_gene_table`)."""
    rec, start0 = [], []
    for ci, s, e in spans:
        for t in _tile(e - s, window, stride):
            rec.append(ci)
            start0.append(s + int(t))
    rec_a, s_a = np.asarray(rec, dtype=np.int64), np.asarray(start0, dtype=np.int64)
    lens = np.array([len(c.seq) for c in ref.contigs])[rec_a] if len(rec_a) else rec_a
    e_a = np.minimum(s_a + window, lens)
    off = np.array([c.start0 for c in ref.contigs])[rec_a] if len(rec_a) else rec_a
    chroms = [ref.contigs[i].chrom for i in rec]
    seqs = [ref.contigs[i].seq[a:b].tobytes().decode("ascii") for i, a, b in zip(rec, s_a, e_a)]
    df = pl.DataFrame({"row": np.arange(len(rec)), "build": [build] * len(rec), "chrom": chroms,
                       "start0": s_a + off, "end0": e_a + off, "Sequence": seqs},
                      schema={"row": pl.Int64, "build": pl.Utf8, "chrom": pl.Utf8, "start0": pl.Int64,
                              "end0": pl.Int64, "Sequence": pl.Utf8})
    centre = df.select("row", "chrom", ((pl.col("start0") + pl.col("end0")) // 2 + 1).alias("pos"))
    hit = assign_genes(centre, genes).select("row", "gene_id", "gene_name")
    df = df.join(hit, on="row", how="left").join(  # (chrom, gene_name) is unique (load_genes)
        table.select("chrom", "gene_name", *FIELD_COLUMNS), on=["chrom", "gene_name"], how="left",
    ).drop("gene_name")
    if excluded:
        df = _drop_excluded(df, genes, excluded)
    return _add_variants(df, build, known).sort("row")  # joins need not keep the row order


def exclude_genes(windows: pl.DataFrame, genes: pl.DataFrame,
                  names: Iterable[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """An index's windows (`WINDOW_COLUMNS`) and gene table (`GENE_COLUMNS`) without the genes
    named (names or ids), by the rule of `index_tables(exclude_genes=...)`; window ids kept."""
    excluded = set(names)
    parts = []
    for (build,), w in windows.group_by("build", maintain_order=True):
        g = genes.filter(pl.col("build") == build)
        parts.append(_drop_excluded(w.rename({"window": "row"}), g, excluded).rename({"row": "window"}))
    kept = pl.concat(parts).sort("window") if parts else windows
    return kept, genes.filter(~_named(excluded))


def carry_variants(windows: pl.DataFrame, known: pl.DataFrame | None) -> pl.DataFrame:
    """An index's windows with their `variant_pos` / `variant_source` recomputed from another
    known-variant table (`known_variant_table`; None = none)."""
    parts = []
    for (build,), w in windows.group_by("build", maintain_order=True):
        base = w.drop("variant_pos", "variant_source").rename({"window": "row"})
        parts.append(_add_variants(base, build, known).rename({"row": "window"}))
    return pl.concat(parts).sort("window").select(WINDOW_COLUMNS) if parts else windows


def _drop_excluded(df: pl.DataFrame, genes: pl.DataFrame, excluded: set[str]) -> pl.DataFrame:
    """Windows overlapping (or centred in) an excluded gene removed."""
    ex = genes.filter(_named(excluded))
    if ex.height == 0:
        log.warning("--exclude-genes: none of the %d names is a gene of this build", len(excluded))
        return df
    over = df.select("row", "chrom", "start0", "end0").join_where(
        ex.select(pl.col("chrom").alias("g_chrom"), pl.col("start").alias("g_start"),
                  pl.col("end").alias("g_end")),
        pl.col("chrom") == pl.col("g_chrom"), pl.col("start0") < pl.col("g_end"),
        pl.col("end0") >= pl.col("g_start"))
    return df.filter(~pl.col("row").is_in(over["row"].implode()))


def _add_variants(df: pl.DataFrame, build: str, known: pl.DataFrame | None) -> pl.DataFrame:
    empty = df.with_columns(pl.lit([], pl.List(pl.Int64)).alias("variant_pos"),
                            pl.lit([], pl.List(pl.Utf8)).alias("variant_source"))
    if known is None or df.height == 0:
        return empty
    k = known.filter(pl.col("build") == build).drop_nulls()
    if k.height == 0:
        return empty
    inside = df.select("row", "chrom", "start0", "end0").join_where(
        k.select(pl.col("chrom").alias("v_chrom"), "variant_pos", "Dataset"),
        pl.col("chrom") == pl.col("v_chrom"), pl.col("variant_pos") > pl.col("start0"),
        pl.col("variant_pos") <= pl.col("end0"),
    ).sort("row", "variant_pos", "Dataset").group_by("row", maintain_order=True).agg(
        pl.col("variant_pos"), pl.col("Dataset").alias("variant_source"))
    return df.join(inside, on="row", how="left").with_columns(
        pl.col("variant_pos").fill_null(pl.lit([], pl.List(pl.Int64))),
        pl.col("variant_source").fill_null(pl.lit([], pl.List(pl.Utf8))))
