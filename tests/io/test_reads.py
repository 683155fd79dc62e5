import gzip
import zlib

import numpy as np
import pysam
import pytest

from llamadna.errors import InputError
from llamadna.io.reads import ReadBatch, detect_format, iter_reads, read_length_mode

READS = ["ACGTACGTAA", "ccgtn", "", "TTTTGGGGCCCCAAAA"]


def fastq_text(reads, names=None):
    names = names or [f"r{i} extra words" for i in range(len(reads))]
    return "".join(f"@{n}\n{s}\n+\n{'I' * len(s)}\n" for n, s in zip(names, reads))


def all_reads(paths, **kw):
    out = []
    for b in iter_reads(paths, **kw):
        assert isinstance(b, ReadBatch)
        out += b.reads()
    return out


def test_fastq_plain_gzip_crlf_and_chunks(tmp_path):
    text = fastq_text(READS)
    plain = tmp_path / "r.fq"
    plain.write_text(text)
    gz = tmp_path / "r.fq.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    crlf = tmp_path / "crlf.fq"
    crlf.write_bytes(text.replace("\n", "\r\n").rstrip().encode())  # no final newline
    want = [s.upper() for s in READS]
    for p in (plain, gz, crlf):
        assert detect_format(p) == "fastq"
        assert all_reads(p) == want
        assert all_reads(p, chunk_bytes=7) == want  # records split across chunks
    # trailing blank lines are fine; R1 + R2 make one stream
    blank = tmp_path / "b.fq"
    blank.write_text(text + "\n\n")
    assert all_reads([plain, blank]) == want + want
    # an empty read as the last record keeps its empty lines
    last = tmp_path / "last.fq"
    last.write_text(fastq_text(["ACG", ""]) + "\n")
    assert all_reads(last) == ["ACG", ""]


def test_fasta_multiline_any_chunking(tmp_path):
    p = tmp_path / "r.fa"
    p.write_text(">a desc\nACGT\nacg\n>b\n\n>c\nNNNN\nT\n")
    for chunk in (3, 10, 1 << 20):
        assert all_reads(p, chunk_bytes=chunk) == ["ACGTACG", "", "NNNNT"]
    gz = tmp_path / "r.fa.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    assert detect_format(gz) == "fasta" and all_reads(gz) == ["ACGTACG", "", "NNNNT"]


def test_read_length_mode(tmp_path):
    p = tmp_path / "r.fq"
    p.write_text(fastq_text(["A" * 5, "C" * 7, "G" * 7, "T" * 5, "A" * 7]))
    assert read_length_mode([p]) == 7


@pytest.mark.parametrize(
    "text, match",
    [
        ("@r1\nACGT\n+\nIIII\n@r2\nACGT\n+\n", r"r\.fq:5 \(record 'r2'\): truncated FASTQ record"),
        ("@r1\nACGT\n+\nIIII\n@r2\nACGT\n", r"r\.fq:5 \(record 'r2'\): truncated FASTQ record"),
        ("@r1\nACGT\n+\nIII\n", r"r\.fq:4 \(record 'r1'\): sequence length 4 differs from "
                                r"quality length 3"),
        ("@r1\nACGT\n+\nIIII\n@r2\nACXT\n+\nIIII\n",
         r"r\.fq:6 \(record 'r2'\): invalid base 'X' at position 3"),
        ("@r1\nACGT\n+\nIIII\nr2\nACGT\n+\nIIII\n",
         r"r\.fq:5: expected a FASTQ header line starting with '@'"),
        ("@r1\nACGT\nIIII\n@r2\n", r"r\.fq:3 \(record 'r1'\): expected the FASTQ '\+' separator"),
        ("@r1\nAC GT\n+\nIIIII\n", r"invalid base ' '"),
    ],
)
def test_malformed_fastq_names_file_line_and_record(tmp_path, text, match):
    p = tmp_path / "r.fq"
    p.write_text(text)
    with pytest.raises(InputError, match=match):
        all_reads(p)


def test_malformed_fastq_in_a_later_chunk(tmp_path):
    reads = ["ACGT"] * 50 + ["ACGU"]
    p = tmp_path / "r.fq"
    p.write_text(fastq_text(reads, [f"q{i}" for i in range(51)]))
    with pytest.raises(InputError, match=r"r\.fq:202 \(record 'q50'\): invalid base 'U'"):
        all_reads(p, chunk_bytes=64)


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        detect_format(tmp_path / "missing.fq")
    (tmp_path / "e.fq").write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        detect_format(tmp_path / "e.fq")
    (tmp_path / "x.txt").write_text("hello\n")
    with pytest.raises(InputError, match="unrecognised reads file"):
        detect_format(tmp_path / "x.txt")
    (tmp_path / "f.fa").write_text(">a\nACGT\n>b\nAC-T\n")
    with pytest.raises(InputError, match=r"f\.fa:4 \(record 'b'\): invalid character '-'"):
        all_reads(tmp_path / "f.fa")
    data = gzip.compress(fastq_text(["ACGT"] * 2000).encode())
    (tmp_path / "t.fq.gz").write_bytes(data[: len(data) // 2])
    whole_lines = zlib.decompressobj(31).decompress(data[: len(data) // 2]).count(b"\n")
    assert whole_lines > 800
    for chunk in (1024, 1 << 20):  # the truncation falls in a late chunk, or in the first one
        with pytest.raises(InputError, match=rf"t\.fq\.gz:{whole_lines + 1}: truncated gzip file: the "
                           rf"compressed stream ends after line {whole_lines}"):
            all_reads(tmp_path / "t.fq.gz", chunk_bytes=chunk)


def revcomp(s):
    return s[::-1].translate(str.maketrans("ACGTN", "TGCAN"))


def write_bam(path, records):
    """records: (name, sequence as sequenced, flag)."""
    header = {"HD": {"VN": "1.6", "SO": "unsorted"}, "SQ": [{"SN": "chr1", "LN": 1000}]}
    with pysam.AlignmentFile(str(path), "wb", header=header) as out:
        for name, seq, flag in records:
            a = pysam.AlignedSegment(out.header)
            a.query_name = name
            a.flag = flag
            stored = revcomp(seq) if flag & 16 else seq  # BAM stores the reference strand
            a.query_sequence = stored
            a.query_qualities = pysam.qualitystring_to_array("I" * len(stored))
            if not flag & 4:
                a.reference_id, a.reference_start = 0, 10
                a.cigarstring = f"{len(stored)}M"
                a.mapping_quality = 60
            out.write(a)


def test_bam_reads_as_sequenced_equal_fastq(tmp_path):
    rng = np.random.default_rng(0)
    reads = ["".join(rng.choice(list("ACGT"), 30)) for _ in range(6)]
    flags = [0, 16, 4, 16 | 1 | 64, 1 | 128 | 16, 0]
    recs = list(zip([f"r{i}" for i in range(6)], reads, flags))
    # secondary and supplementary copies are skipped
    recs.insert(2, ("r0", reads[0][::-1], 256))
    recs.insert(4, ("r1", "ACGTACGT", 2048 | 16))
    bam = tmp_path / "r.bam"
    write_bam(bam, recs)
    fq = tmp_path / "r.fq"
    fq.write_text(fastq_text(reads))
    assert detect_format(bam) == "bam"
    assert all_reads(bam) == all_reads(fq) == reads
    assert all_reads(bam, chunk_bytes=40) == reads
