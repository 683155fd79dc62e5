import gzip

import numpy as np
import pytest

from llamadna.errors import InputError
from llamadna.io.fasta import count_fasta, iter_fasta, parse_region_name, read_reference


def write(p, text):
    p.write_text(text)
    return p


def test_region_names():
    assert parse_region_name("chr21:24985581-26023859") == ("chr21", 24985580, 26023859)
    assert parse_region_name("chr1:1,001-2,000") == ("chr1", 1000, 2000)
    assert parse_region_name("chr21") == ("chr21", 0, None)
    with pytest.raises(ValueError):
        parse_region_name("chr1:10-5")


def test_regions_map_coordinates_and_upper_case(tmp_path):
    p = write(tmp_path / "r.fa", ">chr2:11-20\nacgtA\nCGTNn\n>1\nAAAA\n")
    ref = read_reference(p)
    c = ref.contigs[0]
    assert (c.chrom, c.start0, c.end0) == ("chr2", 10, 20)
    assert c.seq.tobytes() == b"ACGTACGTNN"
    assert ref.contigs[1].chrom == "chr1" and not ref.contigs[1].is_region
    # locate: 0-based positions 10..19 are inside the region, 9 and 20 are not
    assert ref.locate("chr2", np.array([9, 10, 19, 20])).tolist() == [-1, 0, 0, -1]
    # an interval must lie wholly inside
    assert ref.locate("chr2", np.array([18]), np.array([21])).tolist() == [-1]
    assert ref.locate("chr9", np.array([1])).tolist() == [-1]


def test_iupac_becomes_n_and_is_counted(tmp_path):
    ref = read_reference(write(tmp_path / "r.fa", ">chr1\nACRYGT\n"))
    assert ref.contigs[0].seq.tobytes() == b"ACNNGT" and ref.iupac_to_n == 2


def test_invalid_character_names_file_and_line(tmp_path):
    p = write(tmp_path / "r.fa", ">chr1\nACGT\nAC\n>chr2\nACGT\nAC*T\n")
    with pytest.raises(InputError, match=r"r\.fa:6 \(record 'chr2'\): invalid character '\*' at "
                       "sequence position 7"):
        read_reference(p)


def test_region_length_mismatch(tmp_path):
    p = write(tmp_path / "r.fa", ">chr1:1-10\nACGT\n")
    with pytest.raises(InputError, match="region name says 10 bp but the record holds 4 bp"):
        read_reference(p)


def test_duplicates_overlaps_unknown_chroms(tmp_path):
    with pytest.raises(InputError, match="duplicate id"):
        read_reference(write(tmp_path / "d.fa", ">chr1\nA\n>chr1\nC\n"))
    with pytest.raises(InputError, match="overlap"):
        read_reference(write(tmp_path / "o.fa", ">chr1:1-4\nACGT\n>chr1:3-6\nACGT\n"))
    with pytest.raises(InputError, match="unknown chromosome name 'contig_7'"):
        read_reference(write(tmp_path / "u.fa", ">contig_7\nACGT\n"))


def test_empty_no_records_truncated(tmp_path):
    with pytest.raises(InputError, match="empty file"):
        read_reference(write(tmp_path / "e.fa", ""))
    with pytest.raises(InputError, match="not FASTA"):
        read_reference(write(tmp_path / "n.fa", "ACGT\nACGT\n"))
    data = gzip.compress((">chr1\n" + "ACGT" * 50_000 + "\n").encode())
    (tmp_path / "t.fa.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated gzip"):
        read_reference(tmp_path / "t.fa.gz")


def test_gzip_fasta(tmp_path):
    (tmp_path / "g.fa.gz").write_bytes(gzip.compress(b">chrM\nACGT\n"))
    assert read_reference(tmp_path / "g.fa.gz").contigs[0].chrom == "chrM"


# ------------------------------------------------------------------------------ the record reader
def test_fasta_reader(tmp_path):
    fa = tmp_path / "a.fa.gz"
    fa.write_bytes(gzip.compress(b">x one\nacgtRYn\nAC\r\n\n>y\nGGUu\n"))
    recs = list(iter_fasta(fa))
    assert [(r.id, r.sequence) for r in recs] == [("x", "ACGTNNNAC"), ("y", "GGTT")]
    assert [(r.iupac, r.u_to_t) for r in recs] == [(2, 0), (0, 2)]  # RNA U is read as T
    assert count_fasta(fa) == 2


@pytest.mark.parametrize("content, message, line, record", [
    (b"", "empty file", None, None),
    (b"\n\n  \n", "no FASTA records", None, None),
    (b"hello\nworld\n", "not FASTA", 1, None),
    (b"\nACGT\n>a\nACGT\n", "not FASTA", 2, None),
    (b"@r1\nACGT\n+\nIIII\n", "FASTQ", 1, None),
    (b">a\nACGT\n>b\n>c\nACGT\n", "no sequence", 3, "b"),
    (b">a\nACGT\n>b\n", "no sequence", 3, "b"),
    (b">a\nACGT\n>b x\nACGT\nAC*T\n", "invalid character '\\*' at sequence position 7", 5, "b"),
    (b">a\nAC GT\n", "invalid character ' '", 2, "a"),
    (b">a\nACGT\n>b\nAA\n>a\nCC\n", "duplicate id \\(also record 1\\)", 5, "a"),
    (b">\nACGT\n", "record 1 has no id", 1, None),
])
def test_bad_fasta(tmp_path, content, message, line, record):
    for name, data in (("bad.fa", content), ("bad.fa.gz", gzip.compress(content))):
        p = tmp_path / name
        p.write_bytes(data)
        if name.endswith(".gz") and not content:
            continue  # a gzip of nothing is not an empty file; covered by "no records" below
        with pytest.raises(InputError, match=message) as exc:
            count_fasta(p)
        assert exc.value.path == str(p) and exc.value.line == line and exc.value.record == record


def test_bad_fasta_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        count_fasta(tmp_path / "missing.fa")
    p = tmp_path / "empty.fa.gz"
    p.write_bytes(gzip.compress(b""))
    with pytest.raises(InputError, match="no FASTA records"):
        count_fasta(p)
    data = gzip.compress("".join(f">r{i}\n{'ACGT' * 15}\n" for i in range(3000)).encode())
    p = tmp_path / "trunc.fa.gz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated gzip") as exc:
        count_fasta(p)
    assert exc.value.path == str(p) and exc.value.line > 1


def test_truncated_gzip_reference_is_named_as_such_not_as_a_region_mismatch(tmp_path):
    data = gzip.compress((">chr1:1-200000\n" + "ACGT" * 50_000 + "\n").encode())
    (tmp_path / "r.fa.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"r\.fa\.gz:\d+: truncated gzip file") as exc:
        read_reference(tmp_path / "r.fa.gz")
    assert "region name says" not in str(exc.value)
