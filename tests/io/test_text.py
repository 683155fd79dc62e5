import gzip

import pytest

from llamadna.errors import InputError
from llamadna.io.text import read_bytes


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
