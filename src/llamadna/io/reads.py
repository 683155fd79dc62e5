"""Sequencing reads: FASTQ / FASTA (plain or gzip/bgzip) and SAM/BAM/CRAM, yielded in chunks.

Reads come out "as sequenced", in batches of upper-case ASCII bases (`ReadBatch`: one flat
uint8 buffer plus offsets), so that k-mer code downstream works on whole arrays, never on
Python strings per read.

* FASTQ is parsed here, not by pysam (`pysam.FastxFile` does not validate): records must be the
  usual 4 lines (`@name`, bases, `+`, qualities; multi-line FASTQ is not supported); a truncated
  record, a header not starting with '@', a separator not starting with '+', a sequence/quality
  length mismatch or a base outside ACGTN (any case) raises `InputError` naming the file, the
  line and the record. Validation is vectorised over each chunk.
* FASTA is read by `io.fasta.iter_fasta` (records may span lines; IUPAC ambiguity codes become
  N there, as in every FASTA the project reads; other characters are errors).
* SAM/BAM/CRAM via pysam: secondary (0x100) and supplementary (0x800) records are skipped, reverse
  strand records (0x10) are reverse-complemented back to the sequenced strand, so a BAM gives the
  same reads as the FASTQ it was aligned from (hard-clipped bases are lost, as in the BAM).

Several files can make one sample (paired R1 + R2): `iter_reads([r1, r2])` yields the reads of
each file in turn, each read as sequenced.
"""

from __future__ import annotations

import logging
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pysam

from llamadna.errors import InputError
from llamadna.io.fasta import iter_fasta
from llamadna.io.text import GZIP_MAGIC, gzip_damage, open_maybe_gzip

log = logging.getLogger(__name__)

# About 8 MB of text per chunk: ~30k FASTQ reads of 100 bp, ~3M bases.
DEFAULT_CHUNK_BYTES = 8 << 20

READ_FORMATS = ("fastq", "fasta", "bam", "sam", "cram")

# ASCII -> upper-case ACGTN; 0 marks a byte that is not a base.
_BASES = np.zeros(256, dtype=np.uint8)
for _c in "ACGTN":
    _BASES[ord(_c)] = _BASES[ord(_c.lower())] = ord(_c)
_COMPLEMENT = bytes.maketrans(b"ACGTNacgtn", b"TGCANtgcan")
_NL, _CR = 10, 13


@dataclass
class ReadBatch:
    """A chunk of reads from one file.

    Attributes
    ----------
    seq : (total_bases,) uint8, upper-case ASCII A/C/G/T/N of all reads, concatenated.
    offsets : (n_reads + 1,) int64; read i is seq[offsets[i]:offsets[i + 1]].
    path : the file the reads came from.
    bytes_done, bytes_total : progress through the (compressed) file, for progress bars.
    """

    seq: np.ndarray
    offsets: np.ndarray
    path: Path
    bytes_done: int = 0
    bytes_total: int = 0

    @property
    def n_reads(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def reads(self) -> list[str]:
        """The reads as strings (tests and debugging; not for bulk work)."""
        raw = self.seq.tobytes().decode("ascii")
        return [raw[a:b] for a, b in zip(self.offsets[:-1].tolist(), self.offsets[1:].tolist())]


def detect_format(path: str | Path) -> str:
    """One of READ_FORMATS, from the file's content (gzip is looked through), else its suffix."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "reads file not found")
    if p.is_dir():
        raise InputError(p, "is a directory, expected a FASTQ, FASTA or BAM file")
    with open(p, "rb") as fh:
        head = fh.read(4)
    if not head:
        raise InputError(p, "empty file (expected FASTQ, FASTA or BAM reads)")
    if head == b"CRAM":
        return "cram"
    if head[:2] == GZIP_MAGIC:
        try:
            with open_maybe_gzip(p) as (_, fh):
                head = fh.read(4)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(p, f"corrupt gzip data at the start of the file ({exc})") from None
        if head == b"BAM\x01":
            return "bam"
        if not head:
            raise InputError(p, "empty file after decompression (expected FASTQ or FASTA reads)")
    if p.suffix.lower() == ".sam" or head[:4] in (b"@HD\t", b"@SQ\t", b"@RG\t", b"@PG\t"):
        return "sam"
    if head[:1] == b"@":
        return "fastq"
    if head[:1] == b">":
        return "fasta"
    raise InputError(
        p, f"unrecognised reads file (starts with {head[:4]!r}): expected FASTQ ('@'), "
        "FASTA ('>') or BAM/SAM/CRAM, plain or gzip-compressed", line=1,
    )


def iter_reads(
    paths: str | Path | Sequence[str | Path], chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[ReadBatch]:
    """Yield the reads of one or more files (e.g. R1 then R2 of a pair) in batches.

    Parameters
    ----------
    paths : a reads file or several; each is FASTQ, FASTA (plain/gzip) or SAM/BAM/CRAM.
    chunk_bytes : about how much (decompressed) text to parse per batch; BAM batches hold about
        as many bases.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    for path in paths:
        path = Path(path)
        fmt = detect_format(path)
        if fmt == "fastq":
            yield from _iter_fastq(path, chunk_bytes)
        elif fmt == "fasta":
            yield from _iter_fasta(path, chunk_bytes)
        else:
            yield from _iter_alignments(path, chunk_bytes)


def read_length_mode(paths: Sequence[str | Path], max_reads: int = 10_000) -> int:
    """Most common read length among the first `max_reads` reads of each file (0 if none)."""
    counts: Counter[int] = Counter()
    for path in paths:
        seen = 0
        for batch in iter_reads(path, chunk_bytes=1 << 20):
            take = batch.lengths[: max_reads - seen]
            counts.update(take.tolist())
            seen += len(take)
            if seen >= max_reads:
                break
    if not counts:
        return 0
    # Most common length; ties go to the longer length (deterministic).
    return max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]


# ----------------------------------------------------------------------------------------------
# Text formats: blocks of bytes, then vectorised line handling.


def _iter_blocks(path: Path, chunk_bytes: int) -> Iterator[tuple[bytes, int, int]]:
    """Yield (decompressed bytes, compressed bytes read so far, file size); b"" once at EOF."""
    total = path.stat().st_size
    with open_maybe_gzip(path) as (raw, fh):
        while True:
            try:
                data = fh.read(chunk_bytes)
            except EOFError:
                raise _TruncatedGzip from None
            except (OSError, zlib.error) as exc:
                raise _CorruptGzip(str(exc)) from None
            yield data, raw.tell(), total
            if not data:
                return


class _TruncatedGzip(Exception):
    pass


class _CorruptGzip(Exception):
    pass


def _gzip_error(path: Path, exc: Exception) -> InputError:
    """The damaged stream's error, naming the last complete line (found by a second, streamed
    pass: the chunked read only knows that a chunk failed)."""
    return gzip_damage(path) or InputError(path, f"corrupt gzip data ({exc})")


def _line_bounds(arr: np.ndarray, nl: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive, '\\r' stripped) of the lines ending at newlines `nl`."""
    starts = np.empty(len(nl), dtype=np.int64)
    starts[:1] = first
    starts[1:] = nl[:-1] + 1
    ends = nl.astype(np.int64)
    cr = (ends > starts) & (arr[np.maximum(ends - 1, 0)] == _CR)
    ends[cr] -= 1
    return starts, ends


def _gather(arr: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate arr[starts[k]:starts[k] + lengths[k]] for all k; return (bytes, offsets)."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    idx = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
    return arr[idx], offsets


def _name(arr: np.ndarray, start: int, end: int) -> str:
    """Record name from a header line: the text after '@' / '>' up to the first whitespace."""
    text = arr[start + 1 : end].tobytes().decode("utf-8", "replace")
    return text.split()[0] if text.split() else ""


def _check_bases(
    path: Path, raw: np.ndarray, offsets: np.ndarray,
    where: Callable[[int, int], tuple[int | None, str | None]],
) -> np.ndarray:
    """Upper-case the bases; raise on the first byte outside ACGTN (any case).

    `where(read_index, offset_in_read)` -> (line, record) for the error message.
    """
    seq = _BASES[raw]
    bad = np.flatnonzero(seq == 0)
    if bad.size:
        pos = int(bad[0])
        k = int(np.searchsorted(offsets, pos, side="right") - 1)
        line, record = where(k, pos - int(offsets[k]))
        raise InputError(
            path, f"invalid base {chr(raw[pos])!r} at position {pos - int(offsets[k]) + 1} of the "
            "sequence: expected A, C, G, T or N", line=line, record=record,
        )
    return seq


def _iter_fastq(path: Path, chunk_bytes: int) -> Iterator[ReadBatch]:
    carry = b""
    lines_before = 0  # complete lines consumed by earlier chunks
    records = 0
    try:
        for data, done, total in _iter_blocks(path, chunk_bytes):
            eof = not data
            buf = carry + data
            if eof:
                buf = _drop_trailing_blank_lines(buf)
                if not buf:
                    break
            arr = np.frombuffer(buf, dtype=np.uint8)
            nl = np.flatnonzero(arr == _NL)
            n_rec = len(nl) // 4
            if eof and len(nl) % 4:
                first = int(nl[4 * n_rec - 1]) + 1 if n_rec else 0
                end = int(nl[4 * n_rec])
                header = arr[first:end]
                rec = _name(arr, first, end) if header.size and header[0] == ord("@") else None
                have = len(nl) - 4 * n_rec
                raise InputError(
                    path, f"truncated FASTQ record: the file ends after {have} of its 4 lines "
                    f"(record {records + n_rec + 1})", line=lines_before + 4 * n_rec + 1,
                    record=rec,
                )
            if n_rec == 0:
                carry = buf
                continue
            use = 4 * n_rec
            starts, ends = _line_bounds(arr, nl[:use], 0)
            batch_seq, offsets = _parse_fastq_lines(path, arr, starts, ends, lines_before, records)
            yield ReadBatch(batch_seq, offsets, path, done, total)
            records += n_rec
            lines_before += use
            carry = buf[int(nl[use - 1]) + 1 :]
    except (_TruncatedGzip, _CorruptGzip) as exc:
        raise _gzip_error(path, exc) from None


def _drop_trailing_blank_lines(buf: bytes) -> bytes:
    """End `buf` with a newline and drop blank lines after the last record (an empty read's
    empty sequence and quality lines are kept: lines go only while they break the 4-line
    structure)."""
    if buf and not buf.endswith(b"\n"):
        buf += b"\n"
    lines = buf.split(b"\n")[:-1]
    while lines and len(lines) % 4 and not lines[-1].strip():
        lines.pop()
    return b"".join(line + b"\n" for line in lines)


def _parse_fastq_lines(
    path: Path, arr: np.ndarray, starts: np.ndarray, ends: np.ndarray, lines_before: int,
    records_before: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate complete 4-line records and return their concatenated bases."""
    hs, he = starts[0::4], ends[0::4]
    ss, se = starts[1::4], ends[1::4]
    ps, pe = starts[2::4], ends[2::4]
    qs, qe = starts[3::4], ends[3::4]

    def fail(k: int, line_in_rec: int, msg: str) -> None:
        rec = _name(arr, int(hs[k]), int(he[k])) if he[k] > hs[k] and arr[hs[k]] == ord("@") else None
        raise InputError(
            path, f"{msg} (record {records_before + k + 1})",
            line=lines_before + 4 * k + line_in_rec, record=rec,
        )

    bad = np.flatnonzero((he <= hs) | (arr[hs] != ord("@")))
    if bad.size:
        k = int(bad[0])
        got = arr[hs[k] : he[k]][:20].tobytes().decode("utf-8", "replace")
        fail(k, 1, f"expected a FASTQ header line starting with '@', got {got!r} "
             "(multi-line FASTQ is not supported)")
    bad = np.flatnonzero((pe <= ps) | (arr[ps] != ord("+")))
    if bad.size:
        k = int(bad[0])
        got = arr[ps[k] : pe[k]][:20].tobytes().decode("utf-8", "replace")
        fail(k, 3, f"expected the FASTQ '+' separator line, got {got!r} "
             "(multi-line FASTQ is not supported)")
    slen, qlen = se - ss, qe - qs
    bad = np.flatnonzero(slen != qlen)
    if bad.size:
        k = int(bad[0])
        fail(k, 4, f"sequence length {int(slen[k])} differs from quality length {int(qlen[k])}")
    raw, offsets = _gather(arr, ss, slen)

    def where(k: int, _off: int) -> tuple[int, str | None]:
        return lines_before + 4 * k + 2, _name(arr, int(hs[k]), int(he[k]))

    return _check_bases(path, raw, offsets, where), offsets


def _iter_fasta(path: Path, chunk_bytes: int) -> Iterator[ReadBatch]:
    """FASTA reads through the project's one FASTA reader (`io.fasta.iter_fasta`: IUPAC codes
    become N, anything else outside ACGTN is an error), gathered into batches of about
    `chunk_bytes` bases. Empty records are empty reads; ids may repeat."""
    total = path.stat().st_size
    seqs: list[bytes] = []
    n_bases = 0
    for rec in iter_fasta(path, "FASTA reads file", allow_empty=True, unique_ids=False):
        seqs.append(rec.seq)
        n_bases += len(rec.seq)
        if n_bases >= chunk_bytes:
            yield _fasta_batch(path, seqs, rec.bytes_read, total)
            seqs, n_bases = [], 0
    if seqs:
        yield _fasta_batch(path, seqs, total, total)


def _fasta_batch(path: Path, seqs: list[bytes], done: int, total: int) -> ReadBatch:
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in seqs], out=offsets[1:])
    return ReadBatch(np.frombuffer(b"".join(seqs), dtype=np.uint8), offsets, path, done, total)


# ----------------------------------------------------------------------------------------------
# Alignments (SAM/BAM/CRAM) via pysam.

_SKIP_FLAGS = 0x100 | 0x800  # secondary, supplementary


def _iter_alignments(path: Path, chunk_bytes: int) -> Iterator[ReadBatch]:
    total = path.stat().st_size
    seqs: list[str] = []
    names: list[str] = []
    n_bases = 0
    n_records = 0
    no_seq = 0
    name = None
    try:
        with pysam.AlignmentFile(str(path), check_sq=False) as af:
            binary = af.is_bam or af.is_cram
            for rec in af.fetch(until_eof=True):
                n_records += 1
                if rec.flag & _SKIP_FLAGS:
                    continue
                s = rec.query_sequence
                if s is None:
                    no_seq += 1
                    continue
                if rec.is_reverse:
                    s = s.translate(_COMPLEMENT)[::-1]
                name = rec.query_name
                seqs.append(s)
                names.append(name)
                n_bases += len(s)
                if n_bases >= chunk_bytes:
                    done = (af.tell() >> 16) if binary else 0
                    yield _alignment_batch(path, seqs, names, done, total)
                    seqs, names, n_bases = [], [], 0
    except (OSError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(
            path, f"could not read alignments after record {n_records} "
            f"(last read {name!r}): {exc}",
        ) from None
    if no_seq:
        log.warning("%s: %d primary records have no stored sequence ('*'); skipped", path, no_seq)
    if seqs:
        yield _alignment_batch(path, seqs, names, total, total)


def _alignment_batch(
    path: Path, seqs: list[str], names: list[str], done: int, total: int
) -> ReadBatch:
    raw = np.frombuffer("".join(seqs).encode("ascii", "replace"), dtype=np.uint8)
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in seqs], out=offsets[1:])
    return ReadBatch(
        _check_bases(path, raw, offsets, lambda k, _off: (None, names[k])), offsets, path,
        done, total,
    )
