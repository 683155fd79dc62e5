"""Checked reading of (optionally gzip/bgzip-compressed) text inputs.

Every reader goes through `read_bytes` so that a missing file, an empty file and a truncated
gzip stream give the same clear errors, naming the file (and the last complete line).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from llamadna.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"


def read_json_object(path: str | Path, fix: str | None = None) -> dict:
    """A JSON file holding one object. Invalid JSON (with its line), text that is not UTF-8 and
    any other JSON value are an InputError naming the file, ending with `fix` (what to do)."""
    path = Path(path)
    tail = f": {fix}" if fix else ""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc.msg}, column {exc.colno}){tail}",
                         line=exc.lineno) from None
    except UnicodeDecodeError:
        raise InputError(path, f"not a text file (not UTF-8){tail or ': expected JSON'}") from None
    if not isinstance(raw, dict):
        raise InputError(path, f"expected a JSON object, found a {type(raw).__name__}{tail}")
    return raw


def is_gzip(path: str | Path) -> bool:
    """Whether the file starts with the gzip magic bytes (gzip and bgzip alike)."""
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


@contextmanager
def open_maybe_gzip(path: str | Path) -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """Open a file that may be gzip/bgzip-compressed, judged by its content (`is_gzip`), not its
    name. Yields (raw, stream): the file itself (its `tell()` is the compressed bytes read, for
    progress) and its content, decompressed when it is gzip (the same object when it is not).

    Damaged gzip data surfaces as the stream is read (EOFError when truncated, OSError /
    zlib.error when corrupt): each reader names the file and line in its own words.
    """
    gz = is_gzip(path)
    with open(path, "rb") as raw:
        if not gz:
            yield raw, raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            yield raw, stream  # type: ignore[misc]


def _gunzip_all(path: Path, raw: bytes) -> bytes:
    """Decompress every gzip member (bgzip files are many members); detect truncation."""
    out: list[bytes] = []
    data = raw
    while data:
        d = zlib.decompressobj(wbits=31)
        try:
            out.append(d.decompress(data))
        except zlib.error as exc:
            lines = b"".join(out).count(b"\n")
            raise InputError(
                path, f"corrupt gzip data after line {lines} ({exc})", line=lines + 1
            ) from None
        if not d.eof:
            lines = b"".join(out).count(b"\n")
            raise InputError(
                path,
                f"truncated gzip file: the compressed stream ends after line {lines} "
                "(expected a complete gzip/bgzip file; was the download interrupted?)",
                line=lines + 1,
            )
        data = d.unused_data
    return b"".join(out)


def gzip_damage(path: str | Path, chunk: int = 1 << 20) -> InputError | None:
    """Where a gzip/bgzip file is truncated or corrupt, as an error naming the last complete line
    (streamed, bounded memory; for error paths); None when it decompresses to its end."""
    p = Path(path)
    lines = 0
    d = zlib.decompressobj(wbits=31)
    with open(p, "rb") as fh:
        while True:
            data = d.unused_data or fh.read(chunk)
            if not data:
                break
            if d.eof:  # next member (bgzip files are many)
                d = zlib.decompressobj(wbits=31)
            try:
                lines += d.decompress(data).count(b"\n")
            except zlib.error as exc:
                return InputError(p, f"corrupt gzip data after line {lines} ({exc})", line=lines + 1)
    if not d.eof:
        return InputError(
            p, f"truncated gzip file: the compressed stream ends after line {lines} (expected a "
            "complete gzip/bgzip file; was the download interrupted?)", line=lines + 1)
    return None


def read_bytes(path: str | Path, what: str = "file") -> bytes:
    """Read a whole text input, decompressing gzip/bgzip, with clear errors.

    Parameters
    ----------
    path : file to read.
    what : a few words naming the expected content, used in the error message.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(p, f"{what} not found")
    raw = p.read_bytes()
    if not raw:
        raise InputError(p, f"empty file (expected a {what})")
    if raw[:2] == GZIP_MAGIC:
        raw = _gunzip_all(p, raw)
        if not raw:
            raise InputError(p, f"empty file after decompression (expected a {what})")
    return raw
