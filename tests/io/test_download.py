"""The resumable downloader (`llamadna.io.download`) against a local HTTP server."""

from __future__ import annotations

import hashlib
import re

import pytest

from llamadna.io.download import (
    DownloadError,
    checksum_url,
    download,
    fetch_text,
    file_md5,
    parse_md5_list,
)
from tests.io.http_server import Server

DATA = bytes(range(256)) * 40  # 10,240 bytes


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def server():
    s = Server({"/f/data.bin": DATA, "/f/MD5SUMS": f"{_md5(DATA)}  data.bin\n".encode()})
    yield s
    s.close()


def _get(server: Server, dest, **kw):
    kw.setdefault("retry_wait", 0.0)
    kw.setdefault("timeout", 10)
    return download(f"{server.url}/f/data.bin", dest, **kw)


def test_download_writes_the_file_and_reports_progress(tmp_path, server):
    seen = []
    dest = _get(server, tmp_path / "sub" / "data.bin", progress=lambda d, n, t: seen.append((d, n, t)))
    assert dest.read_bytes() == DATA
    assert not (tmp_path / "sub" / "data.bin.part").exists()
    assert seen[0] == ("download data.bin", 0, len(DATA))
    assert seen[-1] == ("download data.bin", len(DATA), len(DATA))
    assert server.requests == [("/f/data.bin", None)]


def test_interrupted_transfer_is_resumed_with_range(tmp_path, server):
    server.cut["/f/data.bin"] = 1000  # the connection drops after 1,000 bytes, once
    dest = _get(server, tmp_path / "data.bin", expected_md5=_md5(DATA))
    assert dest.read_bytes() == DATA
    assert server.requests == [("/f/data.bin", None), ("/f/data.bin", "bytes=1000-")]


def test_part_of_an_earlier_run_is_resumed(tmp_path, server):
    (tmp_path / "data.bin.part").write_bytes(DATA[:4000])
    assert _get(server, tmp_path / "data.bin").read_bytes() == DATA
    assert server.requests == [("/f/data.bin", "bytes=4000-")]


def test_server_ignoring_range_starts_over(tmp_path, server):
    server.ignore_range = True
    (tmp_path / "data.bin.part").write_bytes(b"not the start of the file")
    assert _get(server, tmp_path / "data.bin").read_bytes() == DATA


def test_stale_part_longer_than_the_file_starts_over(tmp_path, server):
    (tmp_path / "data.bin.part").write_bytes(DATA + b"tail")  # the server answers 416
    assert _get(server, tmp_path / "data.bin").read_bytes() == DATA
    assert [r for _, r in server.requests] == [f"bytes={len(DATA) + 4}-", None]


def test_md5_mismatch_removes_the_file_and_names_both_sums(tmp_path, server):
    wrong = "0" * 32
    with pytest.raises(DownloadError, match=f"expected {wrong}, got {_md5(DATA)}") as err:
        _get(server, tmp_path / "data.bin", expected_md5=wrong)
    assert str(err.value).startswith(f"{server.url}/f/data.bin")
    assert list(tmp_path.iterdir()) == []  # neither the file nor its .part


def test_no_retry_left_keeps_the_part_for_the_next_run(tmp_path, server):
    server.cut["/f/data.bin"] = 1000
    with pytest.raises(DownloadError, match="download interrupted 1 times; run again to resume"):
        _get(server, tmp_path / "data.bin", retries=0)
    assert (tmp_path / "data.bin.part").read_bytes() == DATA[:1000]
    assert not (tmp_path / "data.bin").exists()


def test_http_error_names_the_url(tmp_path, server):
    url = f"{server.url}/f/missing.bin"
    with pytest.raises(DownloadError, match=re.escape(url) + ": HTTP 404"):
        download(url, tmp_path / "missing.bin", retry_wait=0.0, timeout=10)
    with pytest.raises(DownloadError, match=re.escape(url) + ": HTTP 404 Not Found .checksum"):
        fetch_text(url, timeout=10, what=" (checksum)")


def test_checksum_list_helpers(tmp_path, server):
    url = f"{server.url}/f/data.bin"
    listing = fetch_text(checksum_url(url, "MD5SUMS"), timeout=10)
    assert parse_md5_list(listing, "data.bin") == _md5(DATA)
    assert checksum_url(url, "{file}.md5") == f"{url}.md5"
    (tmp_path / "x").write_bytes(DATA)
    assert file_md5(tmp_path / "x") == _md5(DATA)


def test_parse_md5_lists():
    h = "d41d8cd98f00b204e9800998ecf8427e"
    assert parse_md5_list(f"{'1' * 32}  chr2.fa.gz\n{h}  chr1.fa.gz\n", "chr1.fa.gz") == h
    assert parse_md5_list(f"MD5 (chr1.fa.gz) = {h.upper()}\n", "chr1.fa.gz") == h
    assert parse_md5_list(f"{h}  clinvar_2025.vcf.gz\n", "clinvar.vcf.gz") is None
    assert parse_md5_list(f"{h}  clinvar_2025.vcf.gz\n", "clinvar.vcf.gz", single_file=True) == h
