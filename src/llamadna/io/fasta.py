"""FASTA: one validated, streaming record reader, and the reference built on it.

`iter_fasta` is the project's only FASTA parser: reference regions (`read_reference`), the
sequences `llamadna annotate` reads and FASTA reads for SPLASH (`io.reads`) all go through it.
It reads plain or gzip/bgzip text line by line, so memory holds one record at a time, and it
validates as it goes:

- A/C/G/T/N pass (upper-cased); U (RNA) is read as T and IUPAC ambiguity codes as N, both
  counted per record; any other character is an error naming the file, the line, the record
  and the position.
- A missing or empty file, FASTQ, text before the first header, a header without an id, a
  duplicate id, a record without sequence (unless allowed) and a truncated or corrupt gzip
  stream are errors naming the file and line.

pysam's `FastxFile` is not used here: it does not validate bases, knows no line numbers, and
returns the partial last record of a truncated gzip file without complaint.

Reference records are whole chromosomes (`chr21`) or samtools-style regions
(`chr21:1001-2000`); in memory a contig spans [start0, end0) on its chromosome (0-based).
"""

from __future__ import annotations

import logging
import re
import stat
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llamadna.errors import InputError
from llamadna.io.chroms import UnknownChromosomeError, normalise_chrom
from llamadna.io.text import open_maybe_gzip

log = logging.getLogger(__name__)

_REGION = re.compile(r"^(?P<chrom>[^:\s]+):(?P<start>[\d,]+)-(?P<end>[\d,]+)$")

# The one table of sequence characters: A/C/G/T/N (any case) -> upper case; U (RNA) -> T; IUPAC
# ambiguity codes -> N; every other byte -> 0, which marks it invalid.
IUPAC_CODES = "RYKMSWBDHV"
_TO_UPPER_N = bytearray(256)
for _c in "ACGTN":
    _TO_UPPER_N[ord(_c)] = _TO_UPPER_N[ord(_c.lower())] = ord(_c)
for _c in IUPAC_CODES:
    _TO_UPPER_N[ord(_c)] = _TO_UPPER_N[ord(_c.lower())] = ord("N")
_TO_UPPER_N[ord("U")] = _TO_UPPER_N[ord("u")] = ord("T")
_TO_UPPER_N = bytes(_TO_UPPER_N)
_PLAIN = b"ACGTNacgtn"
UTF8_BOM = b"\xef\xbb\xbf"  # a byte-order mark some editors put before the first line


@dataclass
class FastaRecord:
    """One validated FASTA record."""

    id: str  # the header's first word
    seq: bytes  # upper-case A/C/G/T/N
    line: int  # 1-based line of the header
    iupac: int = 0  # ambiguity codes replaced by N
    u_to_t: int = 0  # RNA bases U read as T
    bytes_read: int = 0  # of the (compressed) file so far, for progress bars

    @property
    def sequence(self) -> str:
        return self.seq.decode("ascii")


def _record(path: Path, rid: str, line: int, parts: list[bytes], part_lines: list[int],
            allow_empty: bool, bytes_read: int) -> FastaRecord:
    """Join, upper-case and check the sequence lines of one record."""
    raw = b"".join(parts)
    if not raw and not allow_empty:
        raise InputError(path, "record has no sequence", line=line, record=rid)
    seq = raw.translate(_TO_UPPER_N)
    bad = seq.find(0)
    if bad >= 0:
        k, start = 0, 0  # the line holding offset `bad`
        while start + len(parts[k]) <= bad:
            start += len(parts[k])
            k += 1
        raise InputError(
            path, f"invalid character {chr(raw[bad])!r} at sequence position {bad + 1}: expected "
            "A, C, G, T (or U), N or an IUPAC ambiguity code", line=part_lines[k], record=rid)
    u = raw.count(b"U") + raw.count(b"u")
    return FastaRecord(rid, seq, line, len(raw.translate(None, _PLAIN)) - u, u, bytes_read)


def iter_fasta(path: str | Path, what: str = "FASTA file", allow_empty: bool = False,
               unique_ids: bool = True) -> Iterator[FastaRecord]:
    """Validated records of a FASTA file (plain or gzip/bgzip), read lazily one at a time.

    Parameters
    ----------
    path : the file.
    what : a few words naming the expected content, for error messages.
    allow_empty : a record without sequence is an empty record rather than an error (reads).
    unique_ids : a repeated id is an error (only the ids are kept, never the sequences).

    Blank lines and trailing whitespace are ignored; sequence lines may have any length.
    Raises InputError naming the file, line and record (see the module doc).
    """
    path = Path(path)
    _check_fasta_file(path, what)
    rec = _RecordLines(path, allow_empty, unique_ids)
    lineno = 0
    with open_maybe_gzip(path) as (raw, fh):
        try:
            for lineno, text in enumerate(fh, start=1):
                if lineno == 1 and text.startswith(UTF8_BOM):  # written by some Windows editors
                    text = text[len(UTF8_BOM):]
                if text[:1] != b">":
                    rec.add(text, lineno)
                    continue
                if rec.rid is not None:
                    yield rec.finish(raw.tell())
                rec.start(text, lineno)
        except EOFError:
            raise InputError(
                path, f"truncated gzip file: the compressed stream ends at line {lineno} (record "
                f"{rec.n + (rec.rid is not None)}); expected a complete gzip/bgzip file: was the "
                "download interrupted?", line=lineno) from None
        except (OSError, zlib.error) as exc:
            raise InputError(path, f"corrupt gzip data after line {lineno} ({exc})",
                             line=lineno) from None
        if rec.rid is not None:
            yield rec.finish(raw.tell())
    if rec.n == 0:
        raise InputError(path, f"no FASTA records found (expected a {what} with lines starting "
                         "with '>')")


def _check_fasta_file(path: Path, what: str) -> None:
    """A missing, directory, non-regular or empty input is an error naming it."""
    if not path.exists():
        raise InputError(path, f"{what} not found")
    if path.is_dir():
        raise InputError(path, f"is a directory, expected a {what}")
    _check_regular(path, what)
    if path.stat().st_size == 0:
        raise InputError(path, f"empty file (expected a {what})")


class _RecordLines:
    """`iter_fasta`'s state between lines: the record being read (its id, header line and
    sequence lines), the records finished so far (`n`) and the ids seen."""

    def __init__(self, path: Path, allow_empty: bool, unique_ids: bool) -> None:
        self.path, self.allow_empty, self.unique_ids = path, allow_empty, unique_ids
        self.first_seen: dict[str, int] = {}
        self.rid: str | None = None
        self.head, self.n = 0, 0
        self.parts: list[bytes] = []
        self.part_lines: list[int] = []

    def start(self, text: bytes, lineno: int) -> None:
        """A header line: the next record starts."""
        self.rid = _header(self.path, text, lineno, self.n, self.first_seen, self.unique_ids)
        self.head, self.parts, self.part_lines = lineno, [], []

    def add(self, text: bytes, lineno: int) -> None:
        """A sequence (or blank) line; text before the first header is an error."""
        body = text.rstrip()
        if self.rid is None and body:
            _not_fasta(self.path, body, lineno)
        if body:
            self.parts.append(body)
            self.part_lines.append(lineno)

    def finish(self, bytes_read: int) -> FastaRecord:
        """The record read so far, checked (`_record`)."""
        rec = _record(self.path, self.rid, self.head, self.parts, self.part_lines,
                      self.allow_empty, bytes_read)
        self.n += 1
        return rec


def _check_regular(path: Path, what: str) -> None:
    """A FIFO, device or socket cannot be read here: the reader looks for gzip and rewinds, and
    `annotate`/`search` read their FASTA twice (checked whole before any model work, then used),
    so a stream would be consumed by the first pass. Named as such, not as an empty file."""
    mode = path.stat().st_mode
    if stat.S_ISREG(mode):
        return
    kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device")
    raise InputError(path, f"is {kind}, not a regular file: a {what} is read from a file on disk "
                     "(rewound, and read twice by annotate: checked whole before any model work); "
                     "save the stream to a file and give that")


def _header(path: Path, text: bytes, lineno: int, n: int, first_seen: dict[str, int],
            unique_ids: bool) -> str:
    """The id of a header line (its first word), checked: it must be UTF-8 text, since ids are
    written back into the outputs as they were read (the rest of the header is not used)."""
    words = text[1:].split()
    if words:
        try:
            words[0].decode("utf-8")
        except UnicodeDecodeError as exc:
            col = text.index(words[0]) + exc.start + 1
            raise InputError(path, f"the id of record {n + 1} is not UTF-8 text (byte "
                             f"0x{words[0][exc.start]:02x} at column {col}): re-save the file as "
                             "UTF-8 (e.g. iconv -f latin1 -t utf-8)", line=lineno) from None
    words = text[1:].decode("utf-8", "replace").split()
    if not words:
        raise InputError(path, f"record {n + 1} has no id (a header must be '>id')", line=lineno)
    rid = words[0]
    if unique_ids:
        if rid in first_seen:
            raise InputError(path, f"duplicate id (also record {first_seen[rid] + 1}): ids must be "
                             "unique", line=lineno, record=rid)
        first_seen[rid] = n
    return rid


def _not_fasta(path: Path, body: bytes, lineno: int) -> None:
    """Text before the first header: FASTQ, or not FASTA at all."""
    if body[:1] == b"@":
        raise InputError(path, "this is FASTQ (a record starts with '@'); expected FASTA", line=lineno)
    raise InputError(path, "not FASTA: expected the first record's header ('>id') here", line=lineno)


def count_fasta(path: str | Path, what: str = "FASTA file",
                each: Callable[[FastaRecord], object] | None = None) -> int:
    """Validate a whole FASTA file (see iter_fasta) and return its number of records; `each`,
    when given, is called with every record in order (to tally more than the count)."""
    n = 0
    for rec in iter_fasta(path, what):
        if each is not None:
            each(rec)
        n += 1
    return n


# ---------------------------------------------------------------------------------------- reference
def parse_region_name(name: str) -> tuple[str, int, int | None]:
    """`chr21:24985581-26023859` -> ("chr21", 24985580, 26023859); `chr21` -> ("chr21", 0, None).

    The returned chromosome is not normalised; start is 0-based, end is exclusive (= 1-based end).
    """
    m = _REGION.match(name)
    if m is None:
        return name, 0, None
    start = int(m["start"].replace(",", ""))
    end = int(m["end"].replace(",", ""))
    if start < 1 or end < start:
        raise ValueError(f"bad region {name!r}: expected 1 <= start <= end")
    return m["chrom"], start - 1, end


@dataclass
class Contig:
    """One FASTA record placed on its chromosome."""

    name: str  # record name as written in the file
    chrom: str  # normalised chromosome
    start0: int  # 0-based start of the record on the chromosome
    seq: np.ndarray  # (L,) uint8, upper-case ASCII in ACGTN
    is_region: bool = False  # named chrom:start-end (else a whole chromosome)

    @property
    def end0(self) -> int:
        return self.start0 + len(self.seq)


@dataclass
class Reference:
    """All records of one reference FASTA, indexed by chromosome."""

    path: Path
    contigs: list[Contig]
    iupac_to_n: int = 0  # ambiguity codes replaced by N
    by_chrom: dict[str, list[int]] = field(default_factory=dict)  # chrom -> contig indices by start

    def __post_init__(self) -> None:
        self.by_chrom = {}
        for i, c in enumerate(self.contigs):
            self.by_chrom.setdefault(c.chrom, []).append(i)
        for chrom, idx in self.by_chrom.items():
            idx.sort(key=lambda i: self.contigs[i].start0)
            for a, b in zip(idx, idx[1:]):
                ca, cb = self.contigs[a], self.contigs[b]
                if cb.start0 < ca.end0:
                    raise InputError(
                        self.path,
                        f"records {ca.name!r} and {cb.name!r} overlap on {chrom}: "
                        "expected non-overlapping regions",
                    )

    @property
    def total_length(self) -> int:
        return sum(len(c.seq) for c in self.contigs)

    def locate(self, chrom: str, pos0: np.ndarray, end0: np.ndarray | None = None) -> np.ndarray:
        """Index of the contig holding each [pos0, end0) interval on `chrom`, -1 where none.

        Parameters
        ----------
        pos0 : (N,) int64 0-based starts.
        end0 : (N,) int64 exclusive ends (default pos0 + 1).
        """
        pos0 = np.asarray(pos0, dtype=np.int64)
        end0 = pos0 + 1 if end0 is None else np.asarray(end0, dtype=np.int64)
        out = np.full(len(pos0), -1, dtype=np.int64)
        idx = self.by_chrom.get(chrom)
        if not idx:
            return out
        starts = np.array([self.contigs[i].start0 for i in idx], dtype=np.int64)
        ends = np.array([self.contigs[i].end0 for i in idx], dtype=np.int64)
        k = np.searchsorted(starts, pos0, side="right") - 1
        ok = (k >= 0) & (end0 <= ends[np.clip(k, 0, None)])
        out[ok] = np.asarray(idx, dtype=np.int64)[k[ok]]
        return out


def read_reference(
    path: str | Path, on_record: Callable[[str, int], None] | None = None
) -> Reference:
    """Read and validate a reference FASTA (plain or gzip) into memory.

    Parameters
    ----------
    path : FASTA file; record names are chromosomes or samtools-style regions.
    on_record : optional callback(name, length) after each record (progress reporting).
    """
    path = Path(path)
    contigs: list[Contig] = []
    iupac = 0
    for rec in iter_fasta(path, "reference FASTA"):
        try:
            chrom, start0, end0 = parse_region_name(rec.id)
            chrom = normalise_chrom(chrom)
        except (ValueError, UnknownChromosomeError) as exc:
            raise InputError(path, str(exc), line=rec.line, record=rec.id) from None
        if end0 is not None and end0 - start0 != len(rec.seq):
            raise InputError(
                path, f"region name says {end0 - start0} bp but the record holds {len(rec.seq)} bp",
                line=rec.line, record=rec.id)
        seq = np.frombuffer(rec.seq, dtype=np.uint8)  # read-only view, no copy
        contigs.append(Contig(name=rec.id, chrom=chrom, start0=start0, seq=seq,
                              is_region=end0 is not None))
        iupac += rec.iupac
        if on_record is not None:
            on_record(rec.id, len(rec.seq))
    if iupac:
        log.info("%s: %d IUPAC ambiguity codes replaced by N", path, iupac)
    return Reference(path=path, contigs=contigs, iupac_to_n=iupac)


def ref_allele_matches(
    ref: Reference, contig: np.ndarray, pos0: np.ndarray, alleles: list[str]
) -> np.ndarray:
    """True where each REF allele equals the reference (N in the reference matches anything).

    contig : (N,) contig index per allele; pos0 : (N,) 0-based chromosome position of its first
    base; alleles : the N REF strings (upper case).
    """
    ok = np.ones(len(pos0), dtype=bool)
    for ci in np.unique(contig):
        c = ref.contigs[ci]
        sel = np.flatnonzero(contig == ci)
        local = pos0[sel] - c.start0
        first = np.frombuffer("".join(alleles[i][0] for i in sel).encode(), dtype=np.uint8)
        base = c.seq[local]
        ok[sel] = (base == first) | (base == ord("N"))
        for k, i in enumerate(sel):
            a = alleles[i]
            if len(a) > 1:
                s = c.seq[local[k] : local[k] + len(a)]
                want = np.frombuffer(a.encode(), dtype=np.uint8)
                ok[i] = len(s) == len(want) and bool(np.all((s == want) | (s == ord("N"))))
    return ok
