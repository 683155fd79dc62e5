"""Gene primitives: the genes of an assembly set, the gene of each variant, and gene metadata
(versionless Ensembl IDs, Entrez descriptions, gene-level phenotypes, the sentence's gene fields).

Resolution order for a gene of the annotation (documented in the README):
1. its Ensembl ID, when the annotation has one and gene_info lists it;
2. else its symbol as an Entrez symbol;
3. else its symbol as an alias that names exactly one Entrez gene.
   A mitochondrial gene named the GENCODE way (MT-CO1, MT-TF) is first matched to the Entrez gene
   that names it the Entrez way: an alias MT<rest> (MTCO1 -> COX1, MTND1 -> ND1) or, for a tRNA,
   the symbol TRN<amino acid> (MT-TF -> TRNF), among the genes gene_info places on MT when it
   says (so MT-CO2 is COX2, not the nuclear pseudogene MTCO2P12 that has MT-CO2 as an alias).
The Entrez symbol found this way is the key into the phenotype table (so a renamed gene such as
ATP5J -> ATP5PF still gets its phenotypes); the annotation's own gene_name is kept for the sentence.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from llamadna.constants import GENE_PHENOTYPE_SOURCES, MAX_PHENOTYPES, NOT_SPECIFIED
from llamadna.data.paths import AssemblySet
from llamadna.io.genes import read_genes
from llamadna.io.variants import join_phenotypes


def _ensembl_index(info: pl.DataFrame) -> pl.DataFrame:
    return (
        info.select("symbol", "description", pl.col("ensembl_ids").str.split(","))
        .explode("ensembl_ids")
        .filter(pl.col("ensembl_ids").str.starts_with("ENSG"))
        .unique(subset="ensembl_ids", keep="first", maintain_order=True)
        .rename({"ensembl_ids": "gene_id"})
    )


def _mito_index(info: pl.DataFrame) -> pl.DataFrame:
    """GENCODE mitochondrial gene names (MT-CO1, MT-TF) -> the Entrez gene of that name
    (symbol, description, its one Ensembl ID); names that two Entrez genes give are dropped."""
    mt = info.filter(pl.col("chromosome") == "MT") if "chromosome" in info.columns else info
    names = (
        mt.select("symbol", "description", "ensembl_ids",
                  pl.concat_list(pl.col("aliases").fill_null("").str.split(","), pl.col("symbol"))
                  .alias("name"))
        .explode("name")
        .with_columns(
            pl.when(pl.col("name").str.starts_with("MT"))
            .then(pl.lit("MT-") + pl.col("name").str.slice(2))
            .when(pl.col("name").str.starts_with("TRN") & (pl.col("name") == pl.col("symbol")))
            .then(pl.lit("MT-T") + pl.col("name").str.slice(3))
            .alias("gene_name")
        )
        .filter(pl.col("gene_name").is_not_null() & (pl.col("gene_name") != "MT-"))
        .unique(subset=["gene_name", "symbol"], keep="first", maintain_order=True)
        .filter(pl.len().over("gene_name") == 1)
    )
    return names.select(
        "gene_name", pl.col("symbol").alias("sym_by_mt"), pl.col("description").alias("desc_by_mt"),
        pl.when(pl.col("ensembl_ids").str.contains(","))
        .then(None).otherwise(pl.col("ensembl_ids")).alias("id_by_mt"),
    )


def resolve_genes(genes: pl.DataFrame, info: pl.DataFrame) -> pl.DataFrame:
    """Add `gene_id` (filled where the annotation lacks one), `gene_description` (null when
    unknown) and `entrez_symbol` to a gene table."""
    by_id = _ensembl_index(info).rename(
        {"symbol": "sym_by_id", "description": "desc_by_id"}
    )
    # One Ensembl ID per symbol only when it is unambiguous.
    sym = info.select(
        "symbol", "description",
        pl.when(pl.col("ensembl_ids").str.contains(","))
        .then(None).otherwise(pl.col("ensembl_ids")).alias("id_by_sym"),
    ).unique(subset="symbol", keep="first", maintain_order=True)
    alias = (
        info.select("symbol", "description", "ensembl_ids", pl.col("aliases").str.split(","))
        .explode("aliases")
        .filter(pl.col("aliases").is_not_null() & (pl.col("aliases") != pl.col("symbol")))
        .filter(pl.col("aliases").is_in(info["symbol"].implode()).not_())
        .filter(pl.len().over("aliases") == 1)
        .select(
            pl.col("aliases").alias("gene_name"),
            pl.col("symbol").alias("sym_by_alias"),
            pl.col("description").alias("desc_by_alias"),
            pl.when(pl.col("ensembl_ids").str.contains(","))
            .then(None).otherwise(pl.col("ensembl_ids")).alias("id_by_alias"),
        )
    )
    out = (
        genes.join(by_id, on="gene_id", how="left")
        .join(
            sym.rename({"symbol": "gene_name", "description": "desc_by_sym"}),
            on="gene_name", how="left",
        )
        .join(alias, on="gene_name", how="left")
        .join(_mito_index(info), on="gene_name", how="left")
    )
    in_sym = pl.col("desc_by_sym").is_not_null() | pl.col("id_by_sym").is_not_null()
    return out.with_columns(
        # the mitochondrial name before the alias: "MT-CO2" is also an alias of the nuclear
        # pseudogene MTCO2P12
        pl.coalesce("gene_id", "id_by_sym", "id_by_mt", "id_by_alias").alias("gene_id"),
        pl.coalesce("desc_by_id", "desc_by_sym", "desc_by_mt", "desc_by_alias")
        .alias("gene_description"),
        pl.coalesce(
            "sym_by_id", pl.when(in_sym).then(pl.col("gene_name")), "sym_by_mt", "sym_by_alias"
        ).alias("entrez_symbol"),
    ).drop(
        "sym_by_id", "desc_by_id", "desc_by_sym", "id_by_sym", "sym_by_alias", "desc_by_alias",
        "id_by_alias", "sym_by_mt", "desc_by_mt", "id_by_mt",
    )


def _clean_phenotype(p: str) -> str:
    # OMIM marks susceptibility with {...}, non-disease with [...], provisional with '?'.
    return p.strip().lstrip("?{[").rstrip("}]").strip()


def gene_phenotype_table(phen: pl.DataFrame) -> pl.DataFrame:
    """gene_symbol -> gene_phenotype: ClinVar first, then OMIM, then Orphanet; distinct names,
    at most MAX_PHENOTYPES, joined with " and "."""
    rank = {s: i for i, s in enumerate(GENE_PHENOTYPE_SOURCES)}
    lists = (
        phen.filter(pl.col("source").is_in(list(GENE_PHENOTYPE_SOURCES)))
        .with_columns(pl.col("source").replace_strict(rank, return_dtype=pl.Int32).alias("rank"))
        .sort(["gene_symbol", "rank", "line"])
        .group_by("gene_symbol", maintain_order=True)
        .agg(pl.col("phenotype"))
    )
    joined = [
        join_phenotypes([_clean_phenotype(p) for p in ps if p], MAX_PHENOTYPES)
        for ps in lists["phenotype"].to_list()
    ]
    return pl.DataFrame(
        {"gene_symbol": lists["gene_symbol"], "gene_phenotype": joined},
        schema={"gene_symbol": pl.Utf8, "gene_phenotype": pl.Utf8},
    ).filter(pl.col("gene_phenotype").is_not_null())


def phenotype_expr() -> pl.Expr:
    """Row phenotype: the variant's own, else the gene's, else "not specified"."""
    return pl.coalesce("phenotype", "gene_phenotype", pl.lit(NOT_SPECIFIED)).alias("phenotype")


def load_genes(aset: AssemblySet) -> pl.DataFrame:
    """Genes of a set from all its annotation files; where a GTF and a feature table name the
    same gene on the same chromosome, the GTF (listed first) wins."""
    frames = [read_genes(p).with_columns(pl.lit(i).alias("ann_rank"))
              for i, p in enumerate(aset.annotations)]
    genes = pl.concat(frames)
    genes = genes.sort("ann_rank").unique(
        subset=["chrom", "gene_name"], keep="first", maintain_order=True
    )
    return genes.drop("ann_rank", "line")


def _gene_priority(start: str, end: str) -> list:
    """Which of overlapping genes holds a position, as sort keys (first wins): protein-coding
    first, then the smallest, then gene_id / gene_name (lexicographic), a deterministic tie-break."""
    return [(pl.col("gene_type") != "protein_coding"), (pl.col(end) - pl.col(start)),
            pl.col("gene_id").fill_null(""), "gene_name"]


def assign_genes(variants: pl.DataFrame, genes: pl.DataFrame) -> pl.DataFrame:
    """Inner-join each variant to one gene containing its position: among overlapping genes, the
    first by `_gene_priority`."""
    g = genes.select(
        pl.col("chrom").alias("g_chrom"),
        pl.col("start").alias("g_start"),
        pl.col("end").alias("g_end"),
        pl.col("strand"),
        "gene_id", "gene_name", "gene_type", "gene_description", "entrez_symbol",
    )
    parts = []
    for chrom in variants["chrom"].unique().sort().to_list():
        v = variants.filter(pl.col("chrom") == chrom)
        gc = g.filter(pl.col("g_chrom") == chrom)
        if gc.height == 0:
            continue
        parts.append(
            v.join_where(gc, pl.col("pos") >= pl.col("g_start"), pl.col("pos") <= pl.col("g_end"))
        )
    if not parts:
        return variants.head(0).join(g.head(0), how="cross")
    cand = pl.concat(parts)
    return (
        cand.sort(["row", *_gene_priority("g_start", "g_end")])
        .unique(subset="row", keep="first", maintain_order=True)
        .drop("g_chrom", "g_start", "g_end")
    )


class GeneLocator:
    """The gene `assign_genes` gives a position, without a join: per chromosome, the genes in
    `_gene_priority` order as arrays, and the first that contains the position. For lookups one
    position at a time on a hot path (the retriever's hits) that must not use polars: its thread
    pool does not survive a fork (`annotate.distributed`'s forked ranks)."""

    def __init__(self, genes: pl.DataFrame):
        ordered = genes.sort(_gene_priority("start", "end"), maintain_order=True)
        self._by_chrom: dict[str, tuple[np.ndarray, np.ndarray, list]] = {}
        for (chrom,), g in ordered.group_by(["chrom"], maintain_order=True):
            self._by_chrom[chrom] = (g["start"].to_numpy(), g["end"].to_numpy(), g["gene_name"].to_list())

    def locate(self, chrom: str, pos: int) -> tuple[bool, str | None]:
        """(whether a gene holds the 1-based `pos` of `chrom`, its gene_name: None for a gene
        without one)."""
        table = self._by_chrom.get(chrom)
        if table is None:
            return False, None
        starts, ends, names = table
        inside = (starts <= pos) & (pos <= ends)
        k = int(inside.argmax())
        return (True, names[k]) if inside[k] else (False, None)


def add_gene_phenotypes(df: pl.DataFrame, gene_pheno: pl.DataFrame) -> pl.DataFrame:
    """Add `gene_phenotype` (gene_phenotype_table) to rows with `entrez_symbol`/`gene_name`:
    looked up by the Entrez symbol, else by the annotation's own gene name; null when neither."""
    return (
        df.join(gene_pheno, left_on="entrez_symbol", right_on="gene_symbol", how="left")
        .join(
            gene_pheno.rename({"gene_phenotype": "gp_by_name"}),
            left_on="gene_name", right_on="gene_symbol", how="left",
        )
        .with_columns(pl.coalesce("gene_phenotype", "gp_by_name").alias("gene_phenotype"))
        .drop("gp_by_name")
    )


def gene_text_exprs() -> list[pl.Expr]:
    """The gene's sentence fields: `gene_description` ("not specified" when unknown) and
    `transcript_type` (the gene type with `_` as a space)."""
    return [
        pl.col("gene_description").fill_null(NOT_SPECIFIED),
        pl.col("gene_type").str.replace_all("_", " ").alias("transcript_type"),
    ]
