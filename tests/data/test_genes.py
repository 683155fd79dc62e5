"""Gene metadata resolution (`data.genes.resolve_genes`): Ensembl ID, symbol, alias, and the
mitochondrial names GENCODE and Entrez spell differently."""

from __future__ import annotations

import polars as pl
import pytest

from llamadna.data.genes import load_genes, resolve_genes

INFO = pl.DataFrame(
    [
        # entrez_id, symbol, description, chromosome, ensembl_ids, aliases
        ("1", "APP", "amyloid beta precursor protein", "21", "ENSG00000142192", "AAA,ABETA"),
        ("2", "ATP5PF", "ATP synthase peripheral stalk subunit F6", "21", "ENSG00000154723",
         "ATP5,ATP5J"),
        ("4512", "COX1", "cytochrome c oxidase subunit I", "MT", "ENSG00000198804",
         "COI,COX1,MTCO1"),
        ("4513", "COX2", "cytochrome c oxidase subunit II", "MT", "ENSG00000198712",
         "COII,COX2,MTCO2"),
        ("4535", "ND1", "NADH dehydrogenase subunit 1", "MT", "ENSG00000198888", "MTND1,ND1"),
        ("4558", "TRNF", "tRNA-Phe", "MT", None, None),  # no aliases at all
        ("4511", "TRNC", "tRNA-Cys", "MT", None, "MTTC,TRNC"),
        ("4549", "RNR1", "s-rRNA", "MT", None, "MTRNR1,RNR1"),
        # a nuclear pseudogene that has the GENCODE name of a mitochondrial gene as an alias
        ("9", "MTCO2P12", "MT-CO2 pseudogene 12", "1", "ENSG00000229344", "MT-CO2"),
        # a nuclear gene with an MT... alias: never a mitochondrial gene
        ("10", "MT1A", "metallothionein 1A", "16", "ENSG00000205362", "MTND9,MT1"),
    ],
    schema=["entrez_id", "symbol", "description", "chromosome", "ensembl_ids", "aliases"],
    orient="row",
)


def _resolve(names, info=INFO, ids=None):
    genes = pl.DataFrame({"gene_id": ids or [None] * len(names), "gene_name": names},
                         schema={"gene_id": pl.Utf8, "gene_name": pl.Utf8})
    return {r["gene_name"]: r for r in resolve_genes(genes, info).iter_rows(named=True)}


def test_mitochondrial_genes_get_their_entrez_gene():
    got = _resolve(["MT-CO1", "MT-CO2", "MT-ND1", "MT-TF", "MT-TC", "MT-RNR1"])
    assert {n: (r["entrez_symbol"], r["gene_description"], r["gene_id"]) for n, r in got.items()} == {
        "MT-CO1": ("COX1", "cytochrome c oxidase subunit I", "ENSG00000198804"),
        # the mitochondrial gene, not the pseudogene whose alias is "MT-CO2"
        "MT-CO2": ("COX2", "cytochrome c oxidase subunit II", "ENSG00000198712"),
        "MT-ND1": ("ND1", "NADH dehydrogenase subunit 1", "ENSG00000198888"),
        "MT-TF": ("TRNF", "tRNA-Phe", None),  # tRNA: Entrez symbol TRN<amino acid>, no alias
        "MT-TC": ("TRNC", "tRNA-Cys", None),
        "MT-RNR1": ("RNR1", "s-rRNA", None),
    }


def test_other_genes_resolve_as_before():
    got = _resolve(["APP", "ATP5J", "MT-ND9", "MT-X", "NOPE"], ids=[None, None, None, None, None])
    assert (got["APP"]["gene_id"], got["APP"]["gene_description"]) == (
        "ENSG00000142192", "amyloid beta precursor protein")
    assert got["ATP5J"]["entrez_symbol"] == "ATP5PF"  # an alias
    # an MT... alias of a nuclear gene names no mitochondrial gene; unknown names stay unknown
    for name in ("MT-ND9", "MT-X", "NOPE"):
        assert (got[name]["gene_description"], got[name]["entrez_symbol"]) == (None, None)
    # an annotation's own Ensembl ID wins over any name
    by_id = _resolve(["MT-CO1"], ids=["ENSG00000198712"])
    assert by_id["MT-CO1"]["entrez_symbol"] == "COX2"


def test_without_a_chromosome_column_the_names_still_match():
    got = _resolve(["MT-CO1", "MT-TF"], info=INFO.drop("chromosome").filter(
        pl.col("symbol") != "MT1A"))
    assert got["MT-CO1"]["entrez_symbol"] == "COX1" and got["MT-TF"]["entrez_symbol"] == "TRNF"


def test_a_name_two_entrez_genes_give_is_not_resolved():
    twin = pl.DataFrame([("99", "COX1B", "another one", "MT", None, "MTCO1")],
                        schema=INFO.schema, orient="row")
    got = _resolve(["MT-CO1", "MT-ND1"], info=pl.concat([INFO, twin]))
    assert got["MT-CO1"]["gene_description"] is None
    assert got["MT-ND1"]["gene_description"] == "NADH dehydrogenase subunit 1"


@pytest.mark.realdata
def test_bundle_mitochondrial_genes_have_descriptions():
    from llamadna.data.paths import discover_sets, shared_table
    from llamadna.io.tables import read_gene_info
    from tests.conftest import real_data_dir

    d = real_data_dir()
    if d is None:
        pytest.skip("real data bundle not found (../shared/data or $LLAMADNA_DATA)")
    info = read_gene_info(shared_table(d, "gene_info.tsv.gz"))
    (grch38,) = [a for a in discover_sets(d) if a.build == "GRCh38"]
    genes = resolve_genes(load_genes(grch38), info)
    mt = {r["gene_name"]: r for r in genes.filter(pl.col("chrom") == "chrM").iter_rows(named=True)}
    assert len(mt) == 37 and all(r["gene_description"] for r in mt.values())
    assert mt["MT-CO1"]["gene_description"] == "cytochrome c oxidase subunit I"
    assert mt["MT-ND1"]["gene_description"] == "NADH dehydrogenase subunit 1"
    assert mt["MT-CO2"]["gene_description"] == "cytochrome c oxidase subunit II"
    assert mt["MT-TF"]["gene_description"] == "tRNA-Phe"
    app = genes.filter(pl.col("gene_name") == "APP").row(0, named=True)
    assert app["gene_description"] == "amyloid beta precursor protein"


def test_the_gene_locator_gives_the_gene_assign_genes_gives():
    """Overlapping, nested and tied genes, null names and ids, two chromosomes: the locator
    (numpy, one position at a time) names the gene that the join names, and no gene where the
    join finds none."""
    import numpy as np

    from llamadna.data.genes import GeneLocator, assign_genes

    rng = np.random.default_rng(3)
    n = 60
    starts = rng.integers(1, 2_000, n)
    genes = pl.DataFrame({
        "chrom": rng.choice(["chr1", "chr2"], n).tolist(), "start": starts.tolist(),
        "end": (starts + rng.choice([50, 120, 400], n)).tolist(), "strand": ["+"] * n,
        "gene_id": [None if i % 7 == 0 else f"ENSG{i % 9:03d}" for i in range(n)],
        "gene_name": [None if i % 11 == 0 else f"G{i}" for i in range(n)],
        "gene_type": rng.choice(["protein_coding", "lncRNA"], n).tolist(),
        "gene_description": [None] * n, "entrez_symbol": [None] * n})
    pos = rng.integers(1, 2_600, 400)
    chroms = rng.choice(["chr1", "chr2", "chrX"], 400).tolist()
    points = pl.DataFrame({"row": list(range(400)), "chrom": chroms, "pos": pos.tolist()})
    joined = dict(assign_genes(points, genes).select("row", "gene_name").iter_rows())
    locator = GeneLocator(genes)
    located = {}
    for r, (c, p) in enumerate(zip(chroms, pos.tolist())):
        found, name = locator.locate(c, p)
        if found:
            located[r] = name
    assert located == joined
    assert 100 < len(joined) < 400 and None in joined.values()  # inside and outside genes, a nameless one
    assert locator.locate("chr1", 10**9) == (False, None) and locator.locate("chrX", 5) == (False, None)
