import gzip

import pytest

from llamadna.errors import InputError
from llamadna.io.text import is_gzip, open_maybe_gzip, read_bytes


def test_plain_and_gzip_and_multimember(tmp_path):
    (tmp_path / "a.txt").write_text("x\ny\n")
    assert read_bytes(tmp_path / "a.txt") == b"x\ny\n"
    # bgzip-style: several gzip members back to back
    (tmp_path / "b.gz").write_bytes(gzip.compress(b"x\n") + gzip.compress(b"y\n"))
    assert read_bytes(tmp_path / "b.gz") == b"x\ny\n"


def test_truncated_gzip_names_file_and_line(tmp_path):
    data = gzip.compress("".join(f"line {i}\n" for i in range(20000)).encode())
    p = tmp_path / "t.tsv.gz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"t\.tsv\.gz:\d+: truncated gzip") as e:
        read_bytes(p, "table")
    assert e.value.line > 1


def test_empty_and_missing(tmp_path):
    (tmp_path / "e.tsv").write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        read_bytes(tmp_path / "e.tsv", "table")
    (tmp_path / "e.gz").write_bytes(gzip.compress(b""))
    with pytest.raises(InputError, match="empty file after decompression"):
        read_bytes(tmp_path / "e.gz", "table")
    with pytest.raises(InputError, match="not found"):
        read_bytes(tmp_path / "nope.tsv", "table")


# --------------------------------------------------------------------------- open_maybe_gzip


def test_open_maybe_gzip_judges_by_content_not_name(tmp_path):
    text = b"".join(b"line %d\n" % i for i in range(5000))
    plain, gz, bgz = tmp_path / "plain.gz", tmp_path / "packed.txt", tmp_path / "multi.fa"
    plain.write_bytes(text)  # a .gz name on plain text
    gz.write_bytes(gzip.compress(text))  # gzip without a .gz name
    half = len(text) // 2
    bgz.write_bytes(gzip.compress(text[:half]) + gzip.compress(text[half:]))  # bgzip-like members
    assert [is_gzip(p) for p in (plain, gz, bgz)] == [False, True, True]
    for p in (plain, gz, bgz):
        with open_maybe_gzip(p) as (raw, stream):
            assert stream.read() == text
            assert raw.tell() == p.stat().st_size  # raw: the file's own bytes, for progress
    with open_maybe_gzip(plain) as (raw, stream):
        assert stream is raw
    with open_maybe_gzip(gz) as (raw, stream):
        assert stream is not raw
    assert raw.closed and stream.closed


def test_open_maybe_gzip_leaves_damage_to_the_reader(tmp_path):
    data = gzip.compress(b"".join(b"line %d\n" % i for i in range(20000)))
    p = tmp_path / "t.gz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(EOFError), open_maybe_gzip(p) as (_, stream):
        stream.read()

