"""The dataset builder on generated bundles in the real formats."""

import gzip
import json
import shutil

import numpy as np
import polars as pl
import pytest

from llamadna.constants import DATASET_COLUMNS
from llamadna.data.build import BuildConfig, build_dataset
from llamadna.data.synthetic import _write_fasta, random_sequence, write_vcf
from llamadna.data.template import annotation_sentence
from llamadna.errors import DataDirError, InputError
from llamadna.io.dataset import write_dataset


def custom_bundle(path, seq, genes, variants, fasta_name="chr1", chrom_len=None, vcf_chrom=None):
    """A one-chromosome bundle with given genes [(name, start, end, type)] and variants
    [(pos, source, ref or None, pheno or None)]."""
    path.mkdir(parents=True, exist_ok=True)
    _write_fasta(path / "regions.fa", {fasta_name: (0, seq)})
    lines = [f'chr1\tT\tgene\t{s}\t{e}\t.\t+\t.\tgene_id "ENSG{i:011d}.1"; gene_name "{n}"; '
             f'gene_type "{t}";' for i, (n, s, e, t) in enumerate(genes)]
    with gzip.open(path / "annotation.gtf.gz", "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    rows = []
    for j, (pos, src, ref, pheno) in enumerate(variants):
        r = ref if ref is not None else chr(seq[pos - 1])
        alt = "A" if r[0] != "A" else "C"
        rows.append({"chrom": vcf_chrom or "chr1", "pos": pos, "id": f"v{j}", "ref": r,
                     "alt": alt, "source": src, "pheno": pheno})
    rows.sort(key=lambda r: r["pos"])
    write_vcf(path / "variants.vcf.gz", pl.DataFrame(rows, schema_overrides={"pheno": pl.Utf8}),
              {vcf_chrom or "chr1": chrom_len or len(seq)})
    with gzip.open(path / "gene_info.tsv.gz", "wt") as fh:
        fh.write("entrez_id\tsymbol\tdescription\tgene_type\tensembl_ids\taliases\n")
        for i, (n, *_rest) in enumerate(genes):
            fh.write(f"{i}\t{n}\t{n.lower()} protein\tprotein-coding\tENSG{i:011d}\t\n")
    with gzip.open(path / "gene_phenotypes.tsv.gz", "wt") as fh:
        fh.write("gene_symbol\tphenotype\tsource\n")
        fh.write(f"{genes[0][0]}\tgwas trait\tGWAS\n")
        fh.write(f"{genes[0][0]}\tOrpha disease\tOrphanet\n")
        fh.write(f"{genes[0][0]}\t{{Omim susceptibility}}\tOMIM\n")
        fh.write(f"{genes[0][0]}\tClinvar disease\tClinVar\n")
    return path


@pytest.fixture(scope="module")
def built(small_bundle):
    return build_dataset(small_bundle.path, BuildConfig(window=64))


def test_columns_windows_and_sentences(built, small_bundle):
    df, summary = built
    assert df.columns == DATASET_COLUMNS + ["variant_pos"]
    genome = {name.split(":")[0]: (s0, seq) for name, (s0, seq) in small_bundle.genome.items()}
    for r in df.sample(60, seed=0).iter_rows(named=True):
        s0, seq = genome[r["chrom"]]
        assert r["end"] - r["start"] + 1 == 64 == len(r["Sequence"])
        assert r["Sequence"] == seq[r["start"] - 1 - s0 : r["end"] - s0].tobytes().decode()
        off = r["variant_pos"] - r["start"]
        assert 0 <= off < 64 and r["Sequence"][off] == r["ref"]
        if 32 <= r["variant_pos"] - s0 <= len(seq) - 32:
            assert off == 32  # centred when the record allows it
        assert r["Annotation"] == annotation_sentence(
            r["chrom"], r["gene_name"], r["gene_description"], r["transcript_type"],
            r["phenotype"], r["Dataset"])
        assert "_" not in r["transcript_type"] and "." not in r["gene_id"]
    assert df["SPLASH_pval"].is_null().all() and summary["splash_missing_rows"] == df.height
    assert set(df["Dataset"]) <= {"ClinVar", "COSMIC", "dbSNP"}


def test_every_record_is_accounted_for(built):
    df, s = built
    for build, n_read in s["variants_read"].items():
        assert n_read == s["rows_per_build"].get(build, 0) + sum(s["dropped"].get(build, {}).values())
    assert sum(s["rows_per_source"].values()) == df.height


def test_no_gene_in_two_gene_splits(built):
    df, _ = built
    assert df.group_by("gene_id").agg(pl.col("split_gene").n_unique())["split_gene"].max() == 1
    assert df.group_by("chrom").agg(pl.col("split_chrom").n_unique())["split_chrom"].max() == 1


def test_deterministic_for_a_seed(small_bundle):
    a, _ = build_dataset(small_bundle.path, BuildConfig(window=32, seed=5))
    b, _ = build_dataset(small_bundle.path, BuildConfig(window=32, seed=5))
    c, _ = build_dataset(small_bundle.path, BuildConfig(window=32, seed=6))
    assert a.equals(b)
    assert not a["split_random"].equals(c["split_random"])


def test_overlapping_genes_rule_and_phenotype_precedence(tmp_path):
    seq = random_sequence(np.random.default_rng(0), 5000)
    genes = [("BIGPC", 100, 4000, "protein_coding"), ("SMALLNC", 500, 600, "lncRNA"),
             ("MIDPC", 1000, 2000, "protein_coding"), ("OTHER", 4500, 4900, "lncRNA")]
    variants = [(550, "ClinVar", None, None), (1500, "dbSNP", None, None),
                (4600, "COSMIC", None, "Own_disease|own_disease|Second"), (3900, "dbSNP", None, None),
                (4300, "dbSNP", None, None)]
    p = custom_bundle(tmp_path / "b", seq, genes, variants)
    df, _ = build_dataset(p, BuildConfig(window=100))
    got = dict(zip(df["variant_pos"].to_list(), df.select("gene_name", "phenotype").rows()))
    # protein-coding beats a smaller lncRNA; the smaller of two protein-coding genes wins
    assert got[550] == ("BIGPC", "Clinvar disease and Omim susceptibility")
    assert got[1500][0] == "MIDPC"
    assert got[4600] == ("OTHER", "Own disease and Second")  # the variant's own phenotype first
    assert got[3900][0] == "BIGPC" and 4300 not in got  # 4300 lies between genes
    assert df.filter(pl.col("gene_name") == "MIDPC")["phenotype"][0] == "not specified"
    assert df.filter(pl.col("gene_name") == "BIGPC")["gene_description"][0] == "bigpc protein"


def test_cap_edges_ns_and_ref_mismatch(tmp_path):
    seq = random_sequence(np.random.default_rng(1), 6000)
    seq[3000:3400] = ord("N")
    genes = [("G1", 1, 6000, "protein_coding")]
    variants = [(p, "dbSNP", None, None) for p in range(1000, 1100)]
    variants += [(p, "ClinVar", None, None) for p in range(1200, 1260)]
    variants += [(5, "COSMIC", None, None), (3200, "COSMIC", None, None)]
    wrong = "A" if chr(seq[2499]) != "A" else "C"
    variants += [(2500, "COSMIC", wrong, None), (2600, "HGMD-PUBLIC", None, None)]
    p = custom_bundle(tmp_path / "b", seq, genes, variants)
    df, s = build_dataset(p, BuildConfig(window=200, max_per_gene_source=30))
    counts = dict(df.group_by("Dataset").len().iter_rows())
    assert counts == {"dbSNP": 30, "ClinVar": 60, "COSMIC": 1}  # ClinVar is not a capped source
    assert s["cap"]["dbSNP"] == {"rows_before": 100, "rows_after": 30, "genes_capped": 1}
    d = s["dropped"]["GRCh38"]
    assert d["capped_per_gene:dbSNP"] == 70
    assert d["window_too_many_N"] == 1 and d["ref_allele_mismatch"] == 1
    assert d["source_not_selected:HGMD-PUBLIC"] == 1
    edge = df.filter(pl.col("variant_pos") == 5).row(0, named=True)
    assert edge["start"] == 1 and edge["Sequence"] == seq[:200].tobytes().decode()
    _, s2 = build_dataset(p, BuildConfig(window=200, edge="drop"))
    assert s2["dropped"]["GRCh38"]["window_off_sequence"] == 1
    _, s3 = build_dataset(p, BuildConfig(window=200, max_per_gene_source=0))
    assert "capped_per_gene:dbSNP" not in s3["dropped"]["GRCh38"]


def test_chromosome_naming_between_files(tmp_path):
    seq = random_sequence(np.random.default_rng(2), 3000)
    genes = [("G1", 1, 3000, "protein_coding")]
    # VCF says "1", FASTA says "chr1": normalised, they match
    p = custom_bundle(tmp_path / "a", seq, genes, [(1500, "ClinVar", None, None)], vcf_chrom="1")
    assert build_dataset(p, BuildConfig(window=100))[0].height == 1
    # VCF on chromosome 2 only: nothing matches the reference -> clear error
    p = custom_bundle(tmp_path / "b", seq, genes, [(1500, "ClinVar", "A", None)], vcf_chrom="2")
    with pytest.raises(InputError, match=r"variants\.vcf\.gz: no variant chromosome \['chr2'\]"):
        build_dataset(p, BuildConfig(window=100))


def test_coordinates_outside_a_whole_chromosome(tmp_path):
    seq = random_sequence(np.random.default_rng(3), 3000)
    p = custom_bundle(tmp_path / "a", seq, [("G1", 1, 3000, "protein_coding")],
                      [(1500, "ClinVar", None, None), (3500, "ClinVar", "A", None)],
                      chrom_len=4000)
    with pytest.raises(InputError, match=r"variants\.vcf\.gz:\d+: variant at chr1:3500 lies outside"):
        build_dataset(p, BuildConfig(window=100))


def test_region_records_count_outside_variants(tmp_path, bundle_factory):
    b = bundle_factory(seed=4, regions=True)
    df, s = build_dataset(b.path, BuildConfig(window=64))
    assert df.height > 0
    s0 = next(iter(b.genome.values()))[0]
    assert s0 == 1000 and (df["start"] > s0).all()


def test_missing_tables_and_empty_result(tmp_path, small_bundle):
    d = tmp_path / "copy"
    shutil.copytree(small_bundle.path, d)
    (d / "gene_info.tsv.gz").unlink()
    with pytest.raises(DataDirError, match="gene_info.tsv.gz not found"):
        build_dataset(d)
    with pytest.raises(InputError, match="no dataset rows"):
        build_dataset(small_bundle.path, BuildConfig(sources=("NoSuchDB",)))
    with pytest.raises(DataDirError, match="no reference FASTA"):
        build_dataset(tmp_path)


def test_write_dataset_round_trip(built, tmp_path):
    df, summary = built
    pq, js = write_dataset(df, summary, tmp_path / "out")
    assert pl.read_parquet(pq).equals(df)
    assert json.loads(js.read_text())["rows"] == df.height
    assert not list((tmp_path / "out").glob(".*.tmp"))


@pytest.mark.parametrize(
    "name", ["regions.fa", "annotation.gtf.gz", "variants.vcf.gz", "gene_info.tsv.gz",
             "gene_phenotypes.tsv.gz"])
@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_each_damaged_input_names_its_file(tmp_path, small_bundle, name, damage):
    d = tmp_path / "copy"
    shutil.copytree(small_bundle.path, d)
    p = d / name
    if name == "regions.fa":  # plain text: compress it so it can be truncated mid-stream
        p.unlink()
        p = d / "regions.fa.gz"
        p.write_bytes(gzip.compress((small_bundle.path / name).read_bytes()))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"")
    expected = "truncated gzip|corrupt gzip" if damage == "truncate" else "empty file"
    with pytest.raises(InputError, match=rf"{p.name}(:\d+)?: .*({expected})"):
        build_dataset(d, BuildConfig(window=32))
