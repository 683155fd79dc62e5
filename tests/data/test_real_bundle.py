"""The dataset builder on the real human data bundle (../shared/data)."""

import polars as pl
import pytest

from llamadna.data.build import build_dataset

pytestmark = [pytest.mark.realdata, pytest.mark.slow]  # the module fixture builds the real dataset


@pytest.fixture(scope="module")
def real_built(request):
    from tests.conftest import real_data_dir

    d = real_data_dir()
    if d is None:
        pytest.skip("real data bundle not found (../shared/data or $LLAMADNA_DATA)")
    return build_dataset(d)


def test_coverage_of_the_bundle(real_built):
    df, s = real_built
    assert df.height >= 1000
    assert {"ClinVar", "COSMIC"} <= set(df["Dataset"])
    # every chromosome with both sequence and selected variants is represented (>= 6)
    assert df["chrom"].n_unique() >= 6
    assert set(s["rows_per_build"]) == {"GRCh38", "GRCh37"}
    # builds never mixed: GRCh38 rows are chr21 (the bundle's only GRCh38 chromosome with variants)
    assert set(df.filter(pl.col("build") == "GRCh38")["chrom"]) == {"chr21"}


def test_splits_on_real_data(real_built):
    df, _ = real_built
    assert df.group_by("gene_id", "gene_name").agg(pl.col("split_gene").n_unique())[
        "split_gene"].max() == 1
    assert df.group_by("chrom").agg(pl.col("split_chrom").n_unique())["split_chrom"].max() == 1
    for col in ("split_random", "split_gene", "split_chrom"):
        assert set(df[col]) == {"train", "val", "test"}


def test_known_real_rows(real_built):
    df, _ = real_built
    app = df.filter((pl.col("gene_name") == "APP") & (pl.col("Dataset") == "ClinVar"))
    assert app.height > 0
    r = app.row(0, named=True)
    assert r["gene_id"] == "ENSG00000142192"
    assert r["gene_description"] == "amyloid beta precursor protein"
    assert r["transcript_type"] == "protein coding"
    assert r["Annotation"].startswith("This sequence is part of chr21 chromosome part of APP gene.")
    # BRCA2 (GRCh37 feature table, no gene_id in the annotation): ID resolved from gene_info
    brca2 = df.filter(pl.col("gene_name") == "BRCA2")
    assert brca2.height > 0 and brca2["gene_id"][0] == "ENSG00000139618"
    assert set(brca2["build"]) == {"GRCh37"}
    # reference windows are upper-case DNA of the requested length
    assert df["Sequence"].str.contains("^[ACGTN]{512}$").all()
