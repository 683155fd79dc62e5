"""Reference FASTA: whole chromosomes (`chr21`) or samtools-style regions (`chr21:1001-2000`).

Records are parsed by pysam (`FastxFile`, plain or gzip), held as upper-case uint8 arrays and
validated: A/C/G/T/N pass, IUPAC ambiguity codes become N (counted), anything else is an error
naming the file and line. In memory a contig spans [start0, end0) on its chromosome (0-based).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pysam

from llamadna.errors import InputError
from llamadna.io.chroms import UnknownChromosomeError, normalise_chrom
from llamadna.io.text import is_gzip, read_bytes

log = logging.getLogger(__name__)

_REGION = re.compile(r"^(?P<chrom>[^:\s]+):(?P<start>[\d,]+)-(?P<end>[\d,]+)$")

# Byte lookup: ACGTN (any case) -> upper case; IUPAC ambiguity -> N (flagged 1 in _IUPAC);
# everything else -> 0 (invalid).
_LUT = np.zeros(256, dtype=np.uint8)
_IUPAC = np.zeros(256, dtype=bool)
for _c in "ACGTN":
    _LUT[ord(_c)] = _LUT[ord(_c.lower())] = ord(_c)
for _c in "RYKMSWBDHVU":
    _LUT[ord(_c)] = _LUT[ord(_c.lower())] = ord("N")
    _IUPAC[ord(_c)] = _IUPAC[ord(_c.lower())] = True


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


def _line_of_offset(path: Path, record: str, offset: int) -> int:
    """1-based file line holding sequence offset `offset` of `record` (error path only)."""
    text = read_bytes(path, "FASTA file").decode("latin-1").split("\n")
    inside, seen = False, 0
    for i, line in enumerate(text, start=1):
        if line.startswith(">"):
            inside = line[1:].split()[0] == record if len(line) > 1 else False
            seen = 0
            continue
        if inside:
            n = len(line.rstrip("\r"))
            if seen + n > offset:
                return i
            seen += n
    return len(text)


def read_reference(
    path: str | Path, on_record: Callable[[str, int], None] | None = None
) -> Reference:
    """Read and validate a reference FASTA (plain or gzip).

    Parameters
    ----------
    path : FASTA file; record names are chromosomes or samtools-style regions.
    on_record : optional callback(name, length) after each record (progress reporting).
    """
    path = Path(path)
    # Empty/missing/truncated files get the same clear errors as every other input.
    if not path.exists():
        raise InputError(path, "reference FASTA not found")
    if path.stat().st_size == 0:
        raise InputError(path, "empty file (expected a reference FASTA)")
    contigs: list[Contig] = []
    names: set[str] = set()
    iupac = 0
    try:
        with pysam.FastxFile(str(path)) as fh:
            for rec in fh:
                if rec.quality is not None:
                    raise InputError(path, "this is FASTQ; expected a reference FASTA")
                name = rec.name
                if name in names:
                    raise InputError(path, "duplicate record name", record=name)
                names.add(name)
                raw = np.frombuffer(rec.sequence.encode("latin-1"), dtype=np.uint8)
                if raw.size == 0:
                    raise InputError(path, "record has no sequence", record=name)
                seq = _LUT[raw]
                bad = np.flatnonzero(seq == 0)
                if bad.size:
                    off = int(bad[0])
                    line = _line_of_offset(path, name, off)
                    raise InputError(
                        path,
                        f"invalid character {chr(raw[off])!r} in record {name!r} at sequence "
                        f"offset {off + 1}: expected A, C, G, T, N or an IUPAC ambiguity code",
                        line=line,
                    )
                iupac += int(_IUPAC[raw].sum())
                try:
                    chrom, start0, end0 = parse_region_name(name)
                    chrom = normalise_chrom(chrom)
                except (ValueError, UnknownChromosomeError) as exc:
                    raise InputError(path, str(exc), record=name) from None
                if end0 is not None and end0 - start0 != seq.size:
                    raise InputError(
                        path,
                        f"region name says {end0 - start0} bp but the record holds {seq.size} bp",
                        record=name,
                    )
                contigs.append(
                    Contig(name=name, chrom=chrom, start0=start0, seq=seq, is_region=end0 is not None)
                )
                if on_record is not None:
                    on_record(name, int(seq.size))
    except (OSError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        if is_gzip(path):
            read_bytes(path, "reference FASTA")  # raises a precise truncation/corruption error
        raise InputError(path, f"could not parse FASTA after {len(contigs)} records: {exc}") from None
    if not contigs:
        raise InputError(path, "no FASTA records found (expected lines starting with '>')")
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
