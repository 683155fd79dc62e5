import gzip

import pytest

from llamadna.errors import InputError
from llamadna.io.variants import join_phenotypes, read_variants, read_variants_tsv, read_vcf

HEADER = """##fileformat=VCFv4.2
##contig=<ID=chr1,length=1000>
##INFO=<ID=SOURCE,Number=1,Type=String,Description="s">
##INFO=<ID=CLNSIG,Number=.,Type=String,Description="c">
##INFO=<ID=PHENO,Number=.,Type=String,Description="p">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO
"""


def vcf(tmp_path, body, header=HEADER):
    p = tmp_path / "v.vcf"
    p.write_text(header + body)
    return p


def test_vcf_fields_and_info_decoding(tmp_path):
    body = (
        "1\t10\trs1\tA\tG,T\t.\t.\tSOURCE=ClinVar;CLNSIG=Likely_pathogenic|risk_factor;"
        "PHENO=McKusick_Kaufman_syndrome|MCKUSICK-KAUFMAN_SYNDROME|Breast_cancer|Third_one\n"
        "chr1\t20\tCOSM9\tC\t.\t.\t.\tSOURCE=COSMIC;PHENO=not_provided\n"
    )
    v = read_vcf(vcf(tmp_path, body))
    r = v.row(0, named=True)
    assert (r["chrom"], r["pos"], r["ref"], r["alt"], r["variant_id"], r["source"]) == (
        "chr1", 10, "A", "G,T", "rs1", "ClinVar")
    assert r["clinical_significance"] == "Likely pathogenic, risk factor"
    # distinct names (case/punctuation-insensitive), at most two, joined with " and "
    assert r["phenotype"] == "McKusick Kaufman syndrome and Breast cancer"
    assert r["line"] == 7
    r2 = v.row(1, named=True)
    assert (r2["alt"], r2["phenotype"], r2["clinical_significance"]) == (".", None, None)


def test_missing_source_is_an_error_unless_defaulted(tmp_path):
    p = vcf(tmp_path, "chr1\t10\trs1\tA\tG\t.\t.\tCLNSIG=benign\n")
    with pytest.raises(InputError, match=r"v\.vcf:7: record without INFO SOURCE"):
        read_vcf(p)
    assert read_vcf(p, default_source="ClinVar")["source"].to_list() == ["ClinVar"]


def test_malformed_vcf_record_names_line_and_cause(tmp_path):
    body = "chr1\t10\trs1\tA\tG\t.\t.\tSOURCE=dbSNP\nchr1\tXX\trs2\tA\n"
    with pytest.raises(InputError, match=r"v\.vcf:8: 4 tab-separated columns: expected the 8\+ VCF"):
        read_vcf(vcf(tmp_path, body))
    for pos in ("abc", "-5", "0", "1.5"):
        body = f"chr1\t10\trs1\tA\tG\t.\t.\tSOURCE=dbSNP\nchr1\t{pos}\trs2\tA\tG\t.\t.\tSOURCE=dbSNP\n"
        with pytest.raises(InputError, match=rf"v\.vcf:8: POS '{pos}': expected a 1-based position"):
            read_vcf(vcf(tmp_path, body))


def test_vcf_position_past_the_header_contig_length(tmp_path):
    body = "chr1\t1001\trs1\tA\tG\t.\t.\tSOURCE=dbSNP\n"  # the header gives chr1 1000 bp
    with pytest.raises(InputError, match=r"v\.vcf:7: POS 1001 is past the end of chr1 \(1000 bp"):
        read_vcf(vcf(tmp_path, body))


def test_plain_gzip_vcf_is_read(tmp_path):
    plain = vcf(tmp_path, "chr1\t10\trs1\tA\tG\t.\t.\tSOURCE=dbSNP\n")
    gz = tmp_path / "plain.vcf.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))  # gzip, not bgzip: htslib cannot seek it
    assert read_vcf(gz).equals(read_vcf(plain))


def test_vcf_bad_ref_and_unknown_chrom(tmp_path):
    with pytest.raises(InputError, match=r":7: REF 'AZ'"):
        read_vcf(vcf(tmp_path, "chr1\t10\trs1\tAZ\tG\t.\t.\tSOURCE=dbSNP\n"))
    hdr = HEADER.replace("##contig=<ID=chr1,length=1000>", "##contig=<ID=weird9,length=1000>")
    with pytest.raises(InputError, match=r":7: unknown chromosome name 'weird9'"):
        read_vcf(vcf(tmp_path, "weird9\t10\trs1\tA\tG\t.\t.\tSOURCE=dbSNP\n", hdr))


def test_not_a_vcf(tmp_path):
    p = tmp_path / "x.vcf"
    p.write_text("chrom\tpos\n")
    with pytest.raises(InputError, match="not a VCF"):
        read_vcf(p)


def test_tsv_variants(tmp_path):
    p = tmp_path / "variants.tsv.gz"
    with gzip.open(p, "wt") as fh:
        fh.write("chrom\tpos\tref\talt\tid\tsource\tclinical_significance\tphenotype\n")
        fh.write("21\t5\tc\t.\tCOSM1\tCOSMIC\t\t\n")
        fh.write("chr21\t6\tA\tG\trs2\tClinVar\tpathogenic\tSome_disease|Other\n")
    v = read_variants(p)
    assert v.select("chrom", "pos", "ref", "alt", "clinical_significance", "phenotype").rows() == [
        ("chr21", 5, "C", ".", None, None),
        ("chr21", 6, "A", "G", "pathogenic", "Some disease and Other"),
    ]
    with gzip.open(p, "wt") as fh:
        fh.write("chrom\tpos\tref\talt\tid\tsource\n")
        fh.write("chr21\t5\tC\tT\trs1\tdbSNP\n")
        fh.write("chr21\tfive\tC\tT\trs1\tdbSNP\n")
    with pytest.raises(InputError, match=r"variants\.tsv\.gz:3: column 'pos' = 'five': expected an integer"):
        read_variants_tsv(p)


def test_join_phenotypes():
    assert join_phenotypes(["a b", "A-B", "not provided", "c", "d"]) == "a b and c"
    assert join_phenotypes(["not specified", ""]) is None
