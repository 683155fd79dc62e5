"""`fetch-data` against a local HTTP server serving tiny files in the real source formats."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import polars as pl
import pysam
import pytest
from typer.testing import CliRunner

from llamadna.cli import app
from llamadna.data.build import BuildConfig, build_dataset
from llamadna.data.fetch import (
    GENE_INFO_WRITTEN_COLUMNS,
    PHENOTYPE_WRITTEN_COLUMNS,
    SOURCES,
    FetchConfig,
    fetch_data,
    parse_chromosomes,
    parse_source_overrides,
    resolve_sources,
    write_gene_info,
    write_phenotypes,
)
from llamadna.io.download import DownloadError
from llamadna.io.fasta import read_reference
from llamadna.io.tables import (
    GENE_INFO_REQUIRED_COLUMNS,
    PHENOTYPE_REQUIRED_COLUMNS,
    read_gene_info,
    read_gene_phenotypes,
)
from llamadna.io.variants import read_variants
from tests.io.http_server import Server

CHROMS = ("chr1", "chrM")


def _path(name: str, chrom: str | None = None) -> str:
    url = SOURCES[name].url.format(chrom=chrom) if chrom else SOURCES[name].url
    return urlsplit(url).path


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _fasta_gz(name: str, seq: bytes) -> bytes:
    lines = [seq[i : i + 50] for i in range(0, len(seq), 50)]
    return gzip.compress(b">" + name.encode() + b"\n" + b"\n".join(lines) + b"\n", mtime=0)


def make_sources(root: Path) -> dict:
    """Write the public files (tiny) under their real URL paths; returns what they hold."""
    rng = np.random.default_rng(7)
    genome = {c: bytes(np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, n)])
              for c, n in (("chr1", 3000), ("chr2", 400), ("chrM", 1500))}
    files: dict[str, bytes] = {}
    files.update(_genome_files(genome))
    files.update(_gencode_files())
    files.update(_gene_info_files())
    files.update(_phenotype_files())
    files.update(_clinvar_vcf_files(root, genome))
    return {"files": files, "genome": genome}


def _genome_files(genome: dict[str, bytes]) -> dict[str, bytes]:
    """UCSC per-chromosome FASTA (chr2 soft-masked) and their md5sum.txt."""
    files = {_path("hg38", c): _fasta_gz(c, seq.lower() if c == "chr2" else seq)
             for c, seq in genome.items()}
    chrom_dir = _path("hg38", "chr1").rsplit("/", 1)[0]
    files[f"{chrom_dir}/md5sum.txt"] = "".join(
        f"{_md5(files[_path('hg38', c)])}  {c}.fa.gz\n" for c in genome).encode()
    return files


def _gencode_files() -> dict[str, bytes]:
    """The GENCODE GTF (a gene and a transcript line per gene) and its MD5SUMS listing."""
    genes = [("chr1", 200, 1500, "+", "ENSG00000000001.5", "GENEA", "protein_coding"),
             ("chr1", 1800, 2800, "-", "ENSG00000000002.3", "GENEB", "lncRNA"),
             ("chr2", 10, 300, "+", "ENSG00000000003.1", "GENEC", "protein_coding"),
             ("chrM", 100, 1000, "+", "ENSG00000198888.2", "MT-ND1", "protein_coding")]
    gtf = ["##description: evidence-based annotation of the human genome (GRCh38), v46",
           "##provider: GENCODE"]
    for c, s, e, st, gid, name, gtype in genes:
        attrs = f'gene_id "{gid}"; gene_type "{gtype}"; gene_name "{name}"; level 2;'
        gtf.append(f"{c}\tHAVANA\tgene\t{s}\t{e}\t.\t{st}\t.\t{attrs}")
        gtf.append(f'{c}\tHAVANA\ttranscript\t{s}\t{e}\t.\t{st}\t.\t{attrs} transcript_id '
                   f'"ENST{gid[4:]}";')
    gtf_name = _path("gencode")
    files = {gtf_name: gzip.compress(("\n".join(gtf) + "\n").encode(), mtime=0)}
    files[gtf_name.rsplit("/", 1)[0] + "/MD5SUMS"] = (
        f"{'0' * 32}  gencode.v46.chr_patch_hapl_scaff.annotation.gtf.gz\n"
        f"{_md5(files[gtf_name])}  gencode.v46.annotation.gtf.gz\n").encode()
    return files


def _gene_info_files() -> dict[str, bytes]:
    """NCBI Homo_sapiens.gene_info.gz (no published checksum)."""
    info = ["#tax_id\tGeneID\tSymbol\tLocusTag\tSynonyms\tdbXrefs\tchromosome\tmap_location\t"
            "description\ttype_of_gene\tSymbol_from_nomenclature_authority\t"
            "Full_name_from_nomenclature_authority\tNomenclature_status\tOther_designations\t"
            "Modification_date\tFeature_type",
            "9606\t101\tGENEA\t-\tGA1|GA2\tMIM:100100|HGNC:HGNC:1|Ensembl:ENSG00000000001|"
            "AllianceGenome:HGNC:1\t1\t1p36.33\tgene a protein\tprotein-coding\tGENEA\t"
            "gene a protein\tO\tother\t20240101\t-",
            "9606\t102\tGENEB\t-\t-\t-\t1\t1p36.32\tgene b long non-coding RNA\tncRNA\t-\t-\t-\t"
            "-\t20240101\t-",
            "9606\t4535\tMT-ND1\t-\tMTND1|ND1\tMIM:516000|Ensembl:ENSG00000198888\tMT\t-\t"
            "NADH dehydrogenase subunit 1\tprotein-coding\tMT-ND1\t-\tO\t-\t20240101\t-"]
    return {_path("gene_info"): gzip.compress(("\n".join(info) + "\n").encode(), mtime=0)}


def _phenotype_files() -> dict[str, bytes]:
    """ClinVar gene_condition_source_id, Orphanet product 6 XML and HPO genes_to_phenotype."""
    files: dict[str, bytes] = {}
    files[_path("clinvar_genes")] = (
        b"#GeneID\tAssociatedGenes\tRelatedGenes\tConceptID\tDiseaseName\tSourceName\tSourceID\t"
        b"DiseaseMIM\tLastUpdated\n"
        b"101\tGENEA\t\tC0000001\tGene A syndrome\tOMIM\t600001\t600001\t10 Jan 2024\n"
        b"102\t\tGENEB\tC0000002\tGene B disorder\tNCBI curation\t\t\t10 Jan 2024\n")
    files[_path("orphanet")] = b"""<?xml version="1.0" encoding="ISO-8859-1"?>
<JDBOR date="2024-06-01" version="1.3.23">
  <DisorderList count="2">
    <Disorder id="1">
      <OrphaCode>1001</OrphaCode>
      <Name lang="en">Orpha disease of GENEA</Name>
      <DisorderGeneAssociationList count="1">
        <DisorderGeneAssociation>
          <Gene id="11"><Name lang="en">gene a protein</Name><Symbol>GENEA</Symbol></Gene>
          <DisorderGeneAssociationType id="17949">
            <Name lang="en">Disease-causing germline mutation(s) in</Name>
          </DisorderGeneAssociationType>
        </DisorderGeneAssociation>
      </DisorderGeneAssociationList>
    </Disorder>
    <Disorder id="2">
      <OrphaCode>1002</OrphaCode>
      <Name lang="en">Mitochondrial disease</Name>
      <DisorderGeneAssociationList count="1">
        <DisorderGeneAssociation>
          <Gene id="12"><Name lang="en">NADH dehydrogenase 1</Name><Symbol>MT-ND1</Symbol></Gene>
          <DisorderGeneAssociationType id="17949">
            <Name lang="en">Role in the phenotype of</Name>
          </DisorderGeneAssociationType>
        </DisorderGeneAssociation>
      </DisorderGeneAssociationList>
    </Disorder>
  </DisorderList>
</JDBOR>
"""
    files[_path("hpo")] = (
        b"ncbi_gene_id\tgene_symbol\thpo_id\thpo_name\tfrequency\tdisease_id\n"
        b"101\tGENEA\tHP:0001250\tSeizure\t3/5\tOMIM:600001\n"
        b"4535\tMT-ND1\tHP:0001324\tMuscle weakness\t\tORPHA:1002\n")
    return files


def _clinvar_vcf_files(root: Path, genome: dict[str, bytes]) -> dict[str, bytes]:
    """The ClinVar VCF (bgzip; Ensembl-style names, no ##contig lines, variants inside the
    genes) and its per-file .md5 naming the dated file."""
    files: dict[str, bytes] = {}
    seq1, seqm = genome["chr1"], genome["chrM"]
    recs = [("1", 300, "11", seq1[299:300], "CLNDN=Gene_A_syndrome;CLNSIG=Pathogenic;"
             "GENEINFO=GENEA:101"),
            ("1", 900, "12", seq1[899:902], "CLNDN=not_provided;CLNSIG=Benign/Likely_benign,"
             "_other;GENEINFO=GENEA:101"),
            ("1", 2000, "13", seq1[1999:2000], "CLNDN=not_provided|Gene_B_disorder;"
             "CLNSIG=Uncertain_significance;GENEINFO=GENEB:102|GENEA:101"),
            ("2", 50, "14", genome["chr2"][49:50], "CLNSIG=Pathogenic;GENEINFO=GENEC:103"),
            ("MT", 500, "15", seqm[499:500], "CLNDN=Mitochondrial_disease;CLNSIG=Pathogenic;"
             "GENEINFO=MT-ND1:4535"),
            ("NW_009646201.1", 10, "16", b"A", "CLNSIG=Benign")]
    vcf = ["##fileformat=VCFv4.1", "##fileDate=2025-01-01", "##source=ClinVar",
           "##reference=GRCh38",
           '##INFO=<ID=CLNDN,Number=.,Type=String,Description="Preferred disease name">',
           '##INFO=<ID=CLNSIG,Number=.,Type=String,Description="Clinical significance">',
           '##INFO=<ID=GENEINFO,Number=1,Type=String,Description="Gene(s) for the variant">',
           "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for c, pos, vid, ref, info in recs:
        ref = ref.decode()
        alt = "A" if ref[0] != "A" else "C"
        if len(ref) > 1:
            ref, alt = ref, ref[0]
        vcf.append(f"{c}\t{pos}\t{vid}\t{ref}\t{alt}\t.\t.\t{info}")
    plain = root / "clinvar.vcf"
    plain.write_text("\n".join(vcf) + "\n")
    pysam.tabix_compress(str(plain), str(plain) + ".gz", force=True)
    files[_path("clinvar_vcf")] = Path(str(plain) + ".gz").read_bytes()
    plain.unlink()
    Path(str(plain) + ".gz").unlink()
    files[_path("clinvar_vcf") + ".md5"] = (
        f"{_md5(files[_path('clinvar_vcf')])}  clinvar_20250101.vcf.gz\n").encode()
    return files


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict:
    return make_sources(tmp_path_factory.mktemp("sources"))


@pytest.fixture
def server(sources):
    s = Server(sources["files"])
    yield s
    s.close()


def _opts(server: Server, **kw) -> FetchConfig:
    return FetchConfig(chromosomes=CHROMS, mirror=server.url, retry_wait=0.0, timeout=10, **kw)


@pytest.fixture(scope="module")
def fetched(sources, tmp_path_factory):
    """One full fetch (module-wide): (out dir, summary, requests made)."""
    s = Server(sources["files"])
    try:
        out = tmp_path_factory.mktemp("fetched")
        summary = fetch_data(out, _opts(s))
        return out, summary, list(s.requests)
    finally:
        s.close()


# --------------------------------------------------------------------------- pure helpers


def test_source_table_mirror_and_overrides():
    srcs = resolve_sources("http://127.0.0.1:8000/", {"hpo": "https://example.org/g2p.txt"})
    assert srcs["clinvar_vcf"].url == "http://127.0.0.1:8000/pub/clinvar/vcf_GRCh38/clinvar.vcf.gz"
    assert srcs["hg38"].url.endswith(":8000/goldenPath/hg38/chromosomes/{chrom}.fa.gz")
    assert srcs["hpo"].url == "https://example.org/g2p.txt"  # an override is not mirrored
    assert parse_source_overrides(["gencode=http://h/x.gtf.gz"]) == {"gencode": "http://h/x.gtf.gz"}
    with pytest.raises(ValueError, match="unknown source 'nope'"):
        parse_source_overrides(["nope=http://h/x"])
    with pytest.raises(ValueError, match="NAME=URL"):
        parse_source_overrides(["gencode"])
    with pytest.raises(ValueError, match="chrom"):
        resolve_sources(None, {"hg38": "http://h/chr1.fa.gz"})
    assert parse_chromosomes(["21", "chr22", "MT", "21"]) == ("chr21", "chr22", "chrM")
    with pytest.raises(ValueError, match="chr1-chr22"):
        parse_chromosomes(["chrUn_KI270302v1"])


def test_written_tables_are_read_back_by_the_bundle_readers(tmp_path, sources):
    # what fetch writes must pass the readers' column checks, with the values where they belong
    raw = tmp_path / "Homo_sapiens.gene_info.gz"
    raw.write_bytes(sources["files"][_path("gene_info")])
    assert write_gene_info(raw, tmp_path / "gene_info.tsv.gz") == 3
    info = read_gene_info(tmp_path / "gene_info.tsv.gz")
    assert set(GENE_INFO_REQUIRED_COLUMNS) <= set(info.columns)
    assert info.filter(pl.col("symbol") == "MT-ND1")["ensembl_ids"].to_list() == ["ENSG00000198888"]
    rows = [("GENEA", "Seizure", "HPO", "HP:0001250", "OMIM:600001", "frequency=3/5"),
            ("GENEA", "Seizure", "HPO", "HP:0001250", "OMIM:600001", "frequency=3/5"),
            ("", "no gene", "HPO", "HP:1", "", ""), ("GENEB", " ", "ClinVar", "", "", "")]
    assert write_phenotypes(rows, tmp_path / "ph.tsv.gz") == {"HPO": 1}  # distinct, complete
    ph = read_gene_phenotypes(tmp_path / "ph.tsv.gz")
    assert set(PHENOTYPE_REQUIRED_COLUMNS) <= set(ph.columns)
    assert ph.drop("line").rows() == [rows[0]]


# --------------------------------------------------------------------------- full fetch


def test_full_fetch_writes_the_bundle_format(fetched, sources):
    out, summary, _ = fetched
    genome = sources["genome"]
    ref = read_reference(out / "regions.fa")
    assert [c.name for c in ref.contigs] == ["chr1", "chrM"]
    for c in ref.contigs:
        assert not c.is_region and c.seq.tobytes() == genome[c.chrom]
    assert summary["outputs"]["regions.fa"]["chromosome_lengths"] == {"chr1": 3000, "chrM": 1500}

    gtf = gzip.decompress((out / "annotation.gtf.gz").read_bytes()).decode().splitlines()
    assert gtf[0].startswith("##description")
    assert {ln.split("\t")[0] for ln in gtf if not ln.startswith("#")} == {"chr1", "chrM"}

    info = read_gene_info(out / "gene_info.tsv.gz")
    assert [c for c in info.columns if c != "line"] == GENE_INFO_WRITTEN_COLUMNS
    a = info.filter(pl.col("symbol") == "GENEA").row(0, named=True)
    assert (a["entrez_id"], a["ensembl_ids"], a["omim_ids"], a["aliases"], a["gene_type"]) == (
        "101", "ENSG00000000001", "100100", "GA1,GA2,GENEA", "protein-coding")
    b = info.filter(pl.col("symbol") == "GENEB").row(0, named=True)
    assert b["ensembl_ids"] is None and b["map_location"] == "1p36.32"

    ph = read_gene_phenotypes(out / "gene_phenotypes.tsv.gz")
    assert [c for c in ph.columns if c != "line"] == PHENOTYPE_WRITTEN_COLUMNS
    rows = {(r["gene_symbol"], r["source"]): r for r in ph.iter_rows(named=True)}
    assert rows[("GENEA", "ClinVar")]["phenotype"] == "Gene A syndrome"
    assert rows[("GENEA", "ClinVar")]["id"] == "MIM:600001"
    assert rows[("GENEB", "ClinVar")]["id"] == "MedGen:C0000002"
    assert rows[("MT-ND1", "Orphanet")]["id"] == "ORPHA:1002"
    assert rows[("MT-ND1", "Orphanet")]["detail"] == "Role in the phenotype of"
    assert rows[("GENEA", "HPO")]["related_id"] == "OMIM:600001"
    assert summary["outputs"]["gene_phenotypes.tsv.gz"]["rows_per_source"] == {
        "ClinVar": 2, "Orphanet": 2, "HPO": 2}

    var = read_variants(out / "variants.vcf.gz")
    assert var["chrom"].to_list() == ["chr1", "chr1", "chr1", "chrM"]
    assert set(var["source"]) == {"ClinVar"}
    assert var["phenotype"].to_list() == ["Gene A syndrome", None, "Gene B disorder",
                                          "Mitochondrial disease"]
    assert var["clinical_significance"][1] == "Benign/Likely benign, other"
    with pysam.VariantFile(str(out / "variants.vcf.gz")) as vf:
        assert {c: vf.header.contigs[c].length for c in vf.header.contigs} == {
            "chr1": 3000, "chrM": 1500}
        assert [r.info["GENE"] for r in vf.fetch("chr1", 1990, 2010)] == [("GENEB|GENEA",)]
    assert (out / "variants.vcf.gz.tbi").exists()
    saved = json.loads((out / "fetch_summary.json").read_text())
    assert all(d["downloaded_now"] for d in saved["downloads"])
    assert {d["source"]: d["md5_published"] is not None for d in saved["downloads"]} == {
        "hg38": True, "gencode": True, "gene_info": False, "clinvar_genes": False,
        "orphanet": False, "hpo": False, "clinvar_vcf": True}
    assert not list((out / ".download").glob("*.part"))


def test_fetched_bundle_builds_a_dataset(fetched):
    out, _, _ = fetched
    df, summary = build_dataset(out, BuildConfig(window=64))
    assert summary["rows"] == 4
    got = dict(zip(df["variant_id"], df["gene_name"], strict=True))
    assert got == {"11": "GENEA", "12": "GENEA", "13": "GENEB", "15": "MT-ND1"}
    r = df.filter(pl.col("variant_id") == "12").row(0, named=True)
    assert r["gene_description"] == "gene a protein"
    assert r["phenotype"] == "Gene A syndrome and Orpha disease of GENEA"  # gene-level
    assert "MT-ND1 gene" in df.filter(pl.col("chrom") == "chrM")["Annotation"][0]


# --------------------------------------------------------------------------- downloads


def test_rerun_downloads_nothing(fetched, sources, server):
    out, _, first = fetched
    assert len(first) == 2 + 1 + 2 + 4 + 2  # chroms + md5sum.txt, gtf+MD5SUMS, 4 plain, vcf+md5
    before = read_variants(out / "variants.vcf.gz")
    summary = fetch_data(out, _opts(server))
    assert server.requests == []
    assert not any(d["downloaded_now"] for d in summary["downloads"])
    assert read_variants(out / "variants.vcf.gz").equals(before)
    assert summary["downloads"][-1]["md5_published"] is not None  # remembered from the 1st run


def test_resume_after_interrupted_download(tmp_path, sources, server):
    files = sources["files"]
    vcf, chr1 = _path("clinvar_vcf"), _path("hg38", "chr1")
    server.cut[vcf] = 300  # the connection drops after 300 bytes
    part = tmp_path / ".download" / "hg38.chr1.fa.gz.part"  # left by an earlier run
    part.parent.mkdir()
    part.write_bytes(files[chr1][:100])
    fetch_data(tmp_path, _opts(server))
    assert (vcf, "bytes=300-") in server.requests
    assert (chr1, "bytes=100-") in server.requests
    assert (tmp_path / ".download/clinvar_vcf.clinvar.vcf.gz").read_bytes() == files[vcf]
    assert (tmp_path / ".download/hg38.chr1.fa.gz").read_bytes() == files[chr1]
    assert read_variants(tmp_path / "variants.vcf.gz").height == 4


def test_server_ignoring_range_restarts(tmp_path, sources, server):
    chr1 = _path("hg38", "chr1")
    server.ignore_range = True
    part = tmp_path / ".download" / "hg38.chr1.fa.gz.part"
    part.parent.mkdir()
    junk = b"garbage that is not the start of the file"
    part.write_bytes(junk)
    fetch_data(tmp_path, _opts(server))
    assert (chr1, f"bytes={len(junk)}-") in server.requests
    assert (tmp_path / ".download/hg38.chr1.fa.gz").read_bytes() == sources["files"][chr1]


def test_stale_part_longer_than_the_file_restarts(tmp_path, sources, server):
    chrm = _path("hg38", "chrM")
    part = tmp_path / ".download" / "hg38.chrM.fa.gz.part"
    part.parent.mkdir()
    stale = sources["files"][chrm] + b"tail"
    part.write_bytes(stale)  # the server answers 416 to its Range request
    fetch_data(tmp_path, _opts(server))
    assert [r for p, r in server.requests if p == chrm] == [f"bytes={len(stale)}-", None]
    assert (tmp_path / ".download/hg38.chrM.fa.gz").read_bytes() == sources["files"][chrm]


def test_checksum_mismatch_names_the_file(tmp_path, sources, server):
    chr1 = _path("hg38", "chr1")
    good = sources["files"][chr1]
    server.files[chr1] = good[:-9] + bytes(9)  # corrupted on the server
    with pytest.raises(DownloadError) as err:
        fetch_data(tmp_path, _opts(server))
    msg = str(err.value)
    assert "chr1.fa.gz" in msg and _md5(good) in msg and _md5(server.files[chr1]) in msg
    assert "md5 checksum mismatch" in msg
    assert not list((tmp_path / ".download").glob("hg38.chr1*"))  # removed, .part included
    assert not (tmp_path / "regions.fa").exists()


def test_http_404_names_the_url(tmp_path, server):
    missing = f"{server.url}/no/such/Homo_sapiens.gene_info.gz"
    with pytest.raises(DownloadError, match=re.escape(missing) + ": HTTP 404"):
        fetch_data(tmp_path, _opts(server, sources={"gene_info": missing}))


def test_no_verify_skips_checksum_lists(tmp_path, server):
    fetch_data(tmp_path, _opts(server, verify=False))
    assert not [p for p in server.paths() if p.endswith(("md5sum.txt", "MD5SUMS", ".md5"))]
    assert (tmp_path / "variants.vcf.gz").exists()


def test_cli_fetch_data(tmp_path, server):
    runner = CliRunner()
    args = ["fetch-data", "--out", str(tmp_path), "--chromosomes", "1,MT", "--mirror", server.url]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    for name in ("regions.fa", "annotation.gtf.gz", "gene_info.tsv.gz", "gene_phenotypes.tsv.gz",
                 "variants.vcf.gz", "variants.vcf.gz.tbi", "fetch_summary.json"):
        assert (tmp_path / name).exists(), name
    res = runner.invoke(app, [*args[:2], str(tmp_path / "b"), *args[3:], "--source",
                              f"hpo={server.url}/missing.txt"])
    assert res.exit_code == 2
    assert "HTTP 404" in res.output and "missing.txt" in res.output
