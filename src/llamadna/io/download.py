"""A resumable HTTP(S) downloader with md5 checks (no third-party dependency).

`download` streams a URL to `DEST.part`, resumes an interrupted transfer (or a `.part` left by
an earlier run) with an HTTP Range request, starts over when the server ignores Range or the
`.part` is stale, checks the md5 the source publishes (`checksum_url`, `parse_md5_list`) and
renames the finished file to `DEST`. Failures are a `DownloadError` whose message starts with
the URL. `llamadna fetch-data` (`llamadna.data.fetch`) is built on it.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import time
from pathlib import Path, PurePosixPath
from urllib.error import HTTPError, URLError
from urllib.parse import urljoin, urlsplit
from urllib.request import Request, urlopen

from llamadna import __version__
from llamadna.errors import InputError
from llamadna.progress import Progress, no_progress

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # bytes per read while downloading and hashing


class DownloadError(InputError):
    """A download failed; the message starts with the URL (or file) concerned."""


# --------------------------------------------------------------------------- checksums


def checksum_url(url: str, checksum: str) -> str:
    """The URL of the checksum list `checksum` (relative to `url`; `{file}` is the file name)."""
    name = PurePosixPath(urlsplit(url).path).name
    return urljoin(url, checksum.format(file=name))


def parse_md5_list(text: str, name: str, single_file: bool = False) -> str | None:
    """The md5 of `name` in an md5sum (`HASH  NAME`) or BSD (`MD5 (NAME) = HASH`) listing.

    With `single_file` (a per-file `.md5`), a listing of exactly one hash is taken whatever
    name it gives (ClinVar's `clinvar.vcf.gz.md5` names the dated file the link points to).
    """
    entries: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if m := re.match(r"^MD5 \((.+)\) = ([0-9a-fA-F]{32})$", line):
            entries.append((m[2].lower(), m[1]))
        elif m := re.match(r"^([0-9a-fA-F]{32})(?:\s+\*?(.*))?$", line):
            entries.append((m[1].lower(), (m[2] or "").strip()))
    for h, n in entries:
        if PurePosixPath(n).name == name:
            return h
    if single_file and len(entries) == 1:
        return entries[0][0]
    return None


# --------------------------------------------------------------------------- downloads


def _request(url: str, offset: int = 0) -> Request:
    req = Request(url, headers={"User-Agent": f"llamadna/{__version__}"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    return req


def _http_error(url: str, exc: HTTPError, what: str = "") -> DownloadError:
    exc.close()
    return DownloadError(url, f"HTTP {exc.code} {exc.reason}{what}")


def fetch_text(url: str, timeout: float = 60.0, what: str = "") -> str:
    """A small text file (a checksum list) in memory."""
    try:
        with urlopen(_request(url), timeout=timeout) as resp:
            return resp.read().decode("utf-8", errors="replace")
    except HTTPError as exc:
        raise _http_error(url, exc, what) from None
    except (URLError, OSError, http.client.HTTPException) as exc:
        raise DownloadError(url, f"could not download{what}: {getattr(exc, 'reason', exc)}") from None


def file_md5(path: Path) -> str:
    """The md5 hex digest of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as fh:
        while buf := fh.read(CHUNK):
            h.update(buf)
    return h.hexdigest()


def _content_range_start(value: str | None) -> tuple[int, int | None] | None:
    """`bytes 100-999/1000` -> (100, 1000); None when absent or unparseable."""
    m = re.match(r"^bytes (\d+)-\d+/(\d+|\*)$", (value or "").strip())
    if m is None:
        return None
    return int(m[1]), (int(m[2]) if m[2] != "*" else None)


def _open_for_attempt(url: str, part: Path, offset: int, attempt: int, retries: int,
                      timeout: float) -> http.client.HTTPResponse | None:
    """Open `url` from byte `offset`; None when this attempt failed and should be retried
    (a stale `.part` is removed first). Raises DownloadError when no retry is left or useful."""
    try:
        return urlopen(_request(url, offset), timeout=timeout)
    except HTTPError as exc:
        if exc.code == 416 and offset:  # the .part is as long as the file or longer: stale
            exc.close()
            log.warning("%s: server refused to resume at byte %d; restarting", url, offset)
            part.unlink()
            return None
        if exc.code >= 500 and attempt < retries:  # server trouble, often transient
            exc.close()
            log.warning("%s: HTTP %d %s; retrying", url, exc.code, exc.reason)
            return None
        raise _http_error(url, exc) from None
    except (URLError, OSError, http.client.HTTPException) as exc:
        if attempt < retries:
            log.warning("%s: %s; retrying", url, getattr(exc, "reason", exc))
            return None
        raise DownloadError(url, f"could not download: {getattr(exc, 'reason', exc)}") from None


def _transfer_plan(resp: http.client.HTTPResponse, url: str, part: Path,
                   offset: int) -> tuple[int, str, int | None] | None:
    """(start byte, file mode, total bytes or None) for the response: append when the server
    honoured the Range request, else start over. None (and the `.part` removed) when the
    Content-Range does not match the `.part`."""
    length = resp.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if offset and resp.status == 206:
        cr = _content_range_start(resp.headers.get("Content-Range"))
        if cr is None or cr[0] != offset:
            log.warning("%s: bad Content-Range %r; restarting", url, resp.headers.get("Content-Range"))
            part.unlink()
            return None
        total = cr[1] if cr[1] is not None else (offset + length if length is not None else None)
        log.info("resuming %s at byte %d", part.name.removesuffix(".part"), offset)
        return offset, "ab", total
    if offset:
        log.warning("%s: server ignored the Range request; downloading from the start", url)
    return 0, "wb", length


def _download_attempt(url: str, part: Path, desc: str, progress: Progress, attempt: int,
                      retries: int, timeout: float) -> bool:
    """One try at completing `part` (resuming what is there); True when it holds the whole file."""
    offset = part.stat().st_size if part.exists() else 0
    resp = _open_for_attempt(url, part, offset, attempt, retries, timeout)
    if resp is None:
        return False
    with resp:
        plan = _transfer_plan(resp, url, part, offset)
        if plan is None:
            return False
        done, mode, total = plan
        progress(desc, done, total)
        try:
            with open(part, mode) as fh:
                while buf := resp.read(CHUNK):
                    fh.write(buf)
                    done += len(buf)
                    progress(desc, done, total)
        except (http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            log.warning("%s: interrupted after %d bytes (%s); resuming", url, done, exc)
            return False
    if total is not None and done < total:
        log.warning("%s: interrupted after %d of %d bytes; resuming", url, done, total)
        return False
    return True


def _check_md5(url: str, part: Path, dest: Path, expected_md5: str) -> None:
    """Remove `part` and raise DownloadError when its md5 is not `expected_md5`."""
    actual = file_md5(part)
    if actual != expected_md5:
        part.unlink()
        raise DownloadError(
            url, f"md5 checksum mismatch for {dest.name}: expected {expected_md5}, got "
            f"{actual}; the file was removed, run again to download it again",
        )


def download(
    url: str,
    dest: Path,
    expected_md5: str | None = None,
    progress: Progress = no_progress,
    retries: int = 3,
    retry_wait: float = 2.0,
    timeout: float = 60.0,
) -> Path:
    """Stream `url` to `dest` through `dest.part`, resuming with Range, then check the md5.

    An interrupted transfer (connection dropped, fewer bytes than Content-Length) is resumed
    up to `retries` times; a `.part` left by an earlier run is resumed too. On an md5 mismatch
    the file is removed and DownloadError names it with both checksums.
    """
    part = dest.with_name(dest.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    desc = f"download {dest.name}"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(retry_wait * attempt)
        if _download_attempt(url, part, desc, progress, attempt, retries, timeout):
            break
    else:
        raise DownloadError(url, f"download interrupted {retries + 1} times; run again to resume "
                            f"from {part}")
    if expected_md5 is not None:
        _check_md5(url, part, dest, expected_md5)
    os.replace(part, dest)
    return dest
