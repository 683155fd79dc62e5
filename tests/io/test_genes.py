import gzip

import pytest

from llamadna.errors import InputError
from llamadna.io.genes import read_feature_table_genes, read_gene_list, read_genes, read_gtf_genes

GENE = 'chr1\tHAVANA\tgene\t100\t200\t.\t+\t.\tgene_id "ENSG00000000001.5_2"; gene_name "AAA"; gene_type "protein_coding";'
TX = 'chr1\tHAVANA\ttranscript\t120\t180\t.\t+\t.\tgene_id "ENSG00000000001.5_2"; transcript_id "T1"; gene_name "AAA";'
EXON = '{c}\tE\texon\t{s}\t{e}\t.\t-\t.\tgene_id "{g}"; gene_name "{n}"; gene_biotype "lincRNA";'


def gtf(tmp_path, lines, name="a.gtf.gz"):
    p = tmp_path / name
    with gzip.open(p, "wt") as fh:
        fh.write("#!genome-build GRCh38\n" + "\n".join(lines) + "\n")
    return p


def test_gene_records_versionless_ids(tmp_path):
    g = read_gtf_genes(gtf(tmp_path, [GENE, TX]))
    assert g.to_dicts() == [{
        "chrom": "chr1", "start": 100, "end": 200, "strand": "+", "gene_id": "ENSG00000000001",
        "gene_name": "AAA", "gene_type": "protein_coding", "line": 2,
    }]


def test_gtf_without_gene_lines_uses_exon_span_and_normalises_chroms(tmp_path):
    lines = [EXON.format(c="1", s=10, e=20, g="ENSG2", n="B"),
             EXON.format(c="1", s=50, e=70, g="ENSG2", n="B"),
             EXON.format(c="MT", s=5, e=9, g="MT-X", n="MT-X")]
    g = read_gtf_genes(gtf(tmp_path, lines)).sort("chrom")
    assert g.select("chrom", "start", "end", "gene_id", "gene_type").rows() == [
        ("chr1", 10, 70, "ENSG2", "lincRNA"), ("chrM", 5, 9, None, "lincRNA")]


def test_malformed_gtf_line_is_named(tmp_path):
    bad = "chr1\tHAVANA\tgene\t100\t200\t.\t+"
    with pytest.raises(InputError, match=r"a\.gtf\.gz:3: malformed GTF line: 7 fields, expected 9"):
        read_gtf_genes(gtf(tmp_path, [GENE, bad]))


@pytest.mark.parametrize("start, end", [("x", "200"), ("300", "200"), ("0", "5")])
def test_bad_coordinates(tmp_path, start, end):
    line = GENE.replace("\t100\t200\t", f"\t{start}\t{end}\t")
    with pytest.raises(InputError, match=r":2: bad coordinates"):
        read_gtf_genes(gtf(tmp_path, [line]))


def test_a_damaged_line_that_is_not_a_gene_still_stops(tmp_path):
    exon = 'chr1\tHAVANA\texon\t12x45\t180\t.\t+\t.\tgene_id "ENSG00000000001.5_2";'
    with pytest.raises(InputError, match=r"a\.gtf\.gz:3: bad coordinates start='12x45' end='180'"):
        read_gtf_genes(gtf(tmp_path, [GENE, exon]))


def test_bad_strand_and_chrom(tmp_path):
    with pytest.raises(InputError, match=r":2: bad strand"):
        read_gtf_genes(gtf(tmp_path, [GENE.replace("\t+\t", "\t*\t")]))
    with pytest.raises(InputError, match=r":2: unknown chromosome name 'scaffold9'"):
        read_gtf_genes(gtf(tmp_path, [GENE.replace("chr1", "scaffold9")]))


def test_empty_gtf(tmp_path):
    with pytest.raises(InputError, match="no GTF records"):
        read_gtf_genes(gtf(tmp_path, ["#only a comment"]))


def test_feature_table(tmp_path):
    p = tmp_path / "annotation.features.tsv.gz"
    with gzip.open(p, "wt") as fh:
        fh.write("region\tfeature\tchrom\tstart\tend\tstrand\tgene_name\tgene_type\tlevel\tsource\n")
        fh.write("r\tgene\tchr1\t10\t90\t-\tNOC2L\tprotein_coding\t2\tHAVANA\n")
        fh.write("r\texon\tchr1\t10\t20\t-\tNOC2L\tprotein_coding\t2\tHAVANA\n")
        fh.write("r2\tgene\tchr1\t10\t90\t-\tNOC2L\tprotein_coding\t2\tHAVANA\n")
    g = read_genes(p)
    assert g.select("chrom", "start", "end", "gene_id", "gene_name").rows() == [
        ("chr1", 10, 90, None, "NOC2L")]
    with gzip.open(p, "wt") as fh:
        fh.write("region\tfeature\tchrom\tstart\tend\tstrand\tgene_name\tgene_type\n")
        fh.write("r\tgene\tchr1\t10\t90\t-\tNOC2L\n")
    with pytest.raises(InputError, match=r":2: malformed line: 7 fields, expected 8"):
        read_feature_table_genes(p)


def test_gene_list_in_file_order_once_without_comments(tmp_path):
    p = tmp_path / "genes.txt"
    p.write_text("# held-out genes\nTP53\n\n  BRCA1  \nTP53\n  # indented comment\nENSG00000141510\n")
    assert read_gene_list(p) == ("TP53", "BRCA1", "ENSG00000141510")


@pytest.mark.parametrize("content, message", [
    (b"# only a comment\n\n", "no gene name in the list"),
    (b"\xff\xfe\x00binary", "not a text file"),
    (None, "cannot read the gene list"),
])
def test_gene_list_errors_name_the_file(tmp_path, content, message):
    p = tmp_path / "genes.txt"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(InputError, match=message) as err:
        read_gene_list(p)
    assert str(p) in str(err.value)
