"""Anchor/target k-mers: 2-bit packing and exact counting of (anchor, target, sample).

Every position of every read gives one record: anchor = the `a` bases starting there, then `g`
skipped bases, then target = the next `t` bases (strand-specific: k-mers are taken as read, never
canonicalised). A record is skipped when its anchor or target holds an N (N in the gap is fine)
or when it runs past the end of the read.

Packing: A=0, C=1, G=2, T=3, two bits per base, first base in the high bits, so k <= 32 bases fit
a uint64 and the numeric order of packed k-mers is their lexicographic order.

Counting is exact and never touches Python strings: per chunk of reads the (anchor, target) keys
are grouped by sorting a 64-bit hash of the pair (one argsort instead of a two-key lexsort;
a hash collision is detected and resolved by an exact lexsort, so counts never depend on the
hash). Chunk tables are merged into a per-sample table sorted by (hash, anchor, target), which
keeps merges near-linear (stable sort of concatenated sorted runs). Memory is bounded by the
number of distinct pairs, checked against a budget (`CountBudgetError`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llamadna.io.reads import DEFAULT_CHUNK_BYTES, ReadBatch, iter_reads
from llamadna.progress import Progress, no_progress

log = logging.getLogger(__name__)

MAX_K = 32  # bases per uint64
N_CODE = 4
# ASCII -> 2-bit code; N and anything else -> 4 (readers only pass ACGTN).
_CODE = np.full(256, N_CODE, dtype=np.uint8)
for _i, _c in enumerate("ACGT"):
    _CODE[ord(_c)] = _CODE[ord(_c.lower())] = _i
_LETTERS = np.frombuffer(b"ACGT", dtype=np.uint8)

# Bytes held per distinct (anchor, target) entry of a sample table: hash, anchor, target (uint64)
# and the count (uint32 in the budget estimate; int64 while merging is transient).
BYTES_PER_ENTRY = 28
# Positions handled per k-mer slice: ~4M windows keep each temporary array at ~32 MB.
DEFAULT_SLICE_POSITIONS = 4_000_000


class CountBudgetError(ValueError):
    """The distinct-key count table outgrew the memory budget."""


# ----------------------------------------------------------------------------------------------
# Packing


def encode(seq: str | bytes | np.ndarray) -> np.ndarray:
    """ASCII bases -> (L,) uint8 codes A=0 C=1 G=2 T=3, N (or other) = 4."""
    if isinstance(seq, str):
        seq = seq.encode("ascii")
    if isinstance(seq, bytes):
        seq = np.frombuffer(seq, dtype=np.uint8)
    return _CODE[seq]


def pack(kmers: Iterable[str], k: int) -> np.ndarray:
    """k-mer strings (all of length k, ACGT only) -> (n,) uint64 packed values."""
    _check_k(k)
    kmers = list(kmers)
    if not kmers:
        return np.zeros(0, dtype=np.uint64)
    raw = "".join(kmers).encode("ascii")
    if len(raw) != k * len(kmers):
        raise ValueError(f"every k-mer must have length {k}")
    codes = encode(raw).reshape(len(kmers), k)
    if (codes == N_CODE).any():
        raise ValueError("k-mers must contain only A, C, G, T")
    out = np.zeros(len(kmers), dtype=np.uint64)
    for j in range(k):
        out = (out << np.uint64(2)) | codes[:, j].astype(np.uint64)
    return out


def unpack(values: np.ndarray, k: int) -> np.ndarray:
    """(n,) uint64 packed k-mers -> (n,) numpy bytes array (dtype S{k}); `.astype(str)` for str."""
    _check_k(k)
    values = np.asarray(values, dtype=np.uint64)
    shifts = np.arange(2 * (k - 1), -1, -2, dtype=np.uint64)  # (k,) first base in high bits
    codes = (values[:, None] >> shifts[None, :]) & np.uint64(3)  # (n, k)
    letters = _LETTERS[codes.astype(np.intp)]
    return np.ascontiguousarray(letters).view(f"S{k}").reshape(len(values))


def kmer_values(codes: np.ndarray, k: int) -> np.ndarray:
    """Packed k-mer starting at every position of `codes`: (L - k + 1,) uint64.

    N codes are packed as A; callers mask windows holding N. Built by doubling (k-mers of
    length 2m from two of length m), so it takes ~2 log2(k) passes instead of k.
    """
    _check_k(k)
    n = len(codes) - k + 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64)
    piece = (codes & np.uint8(3)).astype(np.uint64)  # length-1 k-mers
    piece_len = 1
    out: np.ndarray | None = None
    out_len = 0
    rest = k
    while True:
        if rest & 1:
            if out is None:
                out, out_len = piece, piece_len
            else:
                m = len(codes) - (out_len + piece_len) + 1
                out = (out[:m] << np.uint64(2 * piece_len)) | piece[out_len : out_len + m]
                out_len += piece_len
        rest >>= 1
        if not rest:
            break
        m = len(piece) - piece_len
        piece = (piece[:m] << np.uint64(2 * piece_len)) | piece[piece_len : piece_len + m]
        piece_len *= 2
    return out[:n]


def _check_k(k: int) -> None:
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k-mer length {k} outside 1..{MAX_K} (2 bits per base in a uint64)")


# ----------------------------------------------------------------------------------------------
# Windows


def batch_pairs(
    batch: ReadBatch, anchor_len: int, gap: int, target_len: int,
    slice_positions: int = DEFAULT_SLICE_POSITIONS,
) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """Yield (anchors, targets), each (n,) uint64, for every valid window of the batch.

    Long batches (or one very long read) are cut into slices of `slice_positions` start
    positions, overlapping by the window span, so memory per slice stays bounded.
    """
    span = anchor_len + gap + target_len
    total = len(batch.seq)
    if batch.n_reads == 0 or total < span:
        return
    codes = _CODE[batch.seq]
    lengths = batch.lengths
    read_end = np.repeat(batch.offsets[1:], lengths)  # (total,) end of the read of each base
    is_n = codes == N_CODE
    for lo in range(0, total - span + 1, slice_positions):
        hi = min(lo + slice_positions, total - span + 1)  # window starts in [lo, hi)
        seg = codes[lo : hi + span - 1]
        pos = np.arange(lo, hi, dtype=np.int64)
        ok = pos + span <= read_end[lo:hi]
        ncum = np.zeros(len(seg) + 1, dtype=np.int32)
        np.cumsum(is_n[lo : hi + span - 1], out=ncum[1:])
        m = hi - lo
        ok &= ncum[anchor_len : anchor_len + m] == ncum[:m]
        t0 = anchor_len + gap
        ok &= ncum[t0 + target_len : t0 + target_len + m] == ncum[t0 : t0 + m]
        idx = np.flatnonzero(ok)
        if not idx.size:
            continue
        anchors = kmer_values(seg, anchor_len)
        targets = anchors if target_len == anchor_len else kmer_values(seg, target_len)
        yield anchors[idx], targets[idx + t0]


# ----------------------------------------------------------------------------------------------
# Counting


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijective scrambling of uint64 values (array ops wrap silently)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def pair_hash(anchors: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """64-bit hash of (anchor, target) pairs; only an ordering key, collisions are handled."""
    return _mix(_mix(anchors) ^ targets)


@dataclass
class PairCounts:
    """Distinct (anchor, target) pairs of one sample with counts, sorted by (hash, anchor, target).

    Arrays are (n,): hash, anchor, target uint64; count int64.
    """

    hash: np.ndarray
    anchor: np.ndarray
    target: np.ndarray
    count: np.ndarray

    @classmethod
    def empty(cls) -> PairCounts:
        z = np.zeros(0, dtype=np.uint64)
        return cls(z, z.copy(), z.copy(), np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.hash)

    @property
    def nbytes(self) -> int:
        return len(self) * BYTES_PER_ENTRY


def _group_pairs(
    h: np.ndarray, a: np.ndarray, t: np.ndarray, c: np.ndarray | None = None
) -> PairCounts:
    """Sum counts of identical (anchor, target); result sorted by (hash, anchor, target).

    `c` None means a count of 1 per entry (fresh windows).
    """
    if not len(h):
        return PairCounts.empty()
    # Merges use a stable sort: timsort merges the concatenated sorted tables in near-linear time.
    order = np.argsort(h, kind="quicksort" if c is None else "stable")
    h, a, t = h[order], a[order], t[order]
    c = None if c is None else c[order]
    same_h = h[1:] == h[:-1]
    diff_pair = (a[1:] != a[:-1]) | (t[1:] != t[:-1])
    if np.any(same_h & diff_pair):
        # Two distinct pairs share a hash: order exactly so that equal pairs are adjacent.
        log.debug("pair-hash collision among %d keys; exact sort", len(h))
        order = np.lexsort((t, a, h))
        h, a, t = h[order], a[order], t[order]
        c = None if c is None else c[order]
        same_h = h[1:] == h[:-1]
        diff_pair = (a[1:] != a[:-1]) | (t[1:] != t[:-1])
    starts = np.flatnonzero(np.concatenate(([True], ~same_h | diff_pair)))
    if c is None:
        counts = np.diff(np.append(starts, len(h))).astype(np.int64)
    else:
        counts = np.add.reduceat(c, starts)
    return PairCounts(h[starts], a[starts], t[starts], counts)


def _merge(tables: Sequence[PairCounts]) -> PairCounts:
    tables = [t for t in tables if len(t)]
    if not tables:
        return PairCounts.empty()
    if len(tables) == 1:
        return tables[0]
    return _group_pairs(
        np.concatenate([t.hash for t in tables]), np.concatenate([t.anchor for t in tables]),
        np.concatenate([t.target for t in tables]), np.concatenate([t.count for t in tables]),
    )


class MemoryBudget:
    """Bytes held by count tables across samples (thread-safe), checked against a limit."""

    def __init__(self, limit_bytes: float):
        self.limit = float(limit_bytes)
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def update(self, sample: str, nbytes: int, entries: int) -> None:
        with self._lock:
            self._held[sample] = nbytes
            total = sum(self._held.values())
        if total > self.limit:
            raise CountBudgetError(
                f"the (anchor, target) count tables need {total / 2**30:.2f} GiB "
                f"({entries:,} distinct pairs in sample {sample!r} alone) which exceeds the "
                f"memory budget of {self.limit / 2**30:.2f} GiB (~{BYTES_PER_ENTRY} bytes per "
                "distinct pair and sample, ~2x more while merging). Raise the budget "
                "(--max-memory-gb), or count fewer or smaller inputs."
            )


class PairCounter:
    """Counts (anchor, target) pairs of one sample, chunk by chunk.

    Each chunk is reduced to its distinct pairs; chunk tables wait in a pending list and are
    merged into the main table when they hold as many entries as it does, so every entry is
    merged O(1) times on average while memory stays ~2x the distinct pairs.
    """

    def __init__(
        self, anchor_len: int, gap: int, target_len: int, name: str = "sample",
        budget: MemoryBudget | None = None,
    ):
        for k in (anchor_len, target_len):
            _check_k(k)
        if gap < 0:
            raise ValueError(f"gap must be >= 0, got {gap}")
        self.anchor_len, self.gap, self.target_len = anchor_len, gap, target_len
        self.name = name
        self.budget = budget
        self.main = PairCounts.empty()
        self.pending: list[PairCounts] = []
        self.reads = 0
        self.windows = 0

    def add_pairs(self, anchors: np.ndarray, targets: np.ndarray) -> None:
        self.windows += len(anchors)
        table = _group_pairs(pair_hash(anchors, targets), anchors, targets)
        self.pending.append(table)
        if sum(len(t) for t in self.pending) >= len(self.main):
            self.main = _merge([self.main, *self.pending])
            self.pending = []
        self._check()

    def add(self, batch: ReadBatch) -> None:
        self.reads += batch.n_reads
        for anchors, targets in batch_pairs(batch, self.anchor_len, self.gap, self.target_len):
            self.add_pairs(anchors, targets)

    def result(self) -> PairCounts:
        self.main = _merge([self.main, *self.pending])
        self.pending = []
        self._check()
        return self.main

    def _check(self) -> None:
        if self.budget is not None:
            nbytes = self.main.nbytes + sum(t.nbytes for t in self.pending)
            self.budget.update(self.name, nbytes, len(self.main))


def count_sample(
    paths: Sequence[str | Path], anchor_len: int, gap: int, target_len: int, name: str = "sample",
    budget: MemoryBudget | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    progress: Progress = no_progress,
) -> tuple[PairCounts, dict]:
    """Count the (anchor, target) pairs of one sample's reads files (e.g. R1 and R2).

    Returns the pair table and a summary {reads, windows, distinct_pairs}. `progress(f"counting
    {name}", done, total)` is called after each chunk with bytes of the input files consumed.
    """
    counter = PairCounter(anchor_len, gap, target_len, name=name, budget=budget)
    sizes = [Path(p).stat().st_size if Path(p).exists() else 0 for p in paths]
    before = 0
    for i, path in enumerate(paths):
        for batch in iter_reads(path, chunk_bytes=chunk_bytes):
            counter.add(batch)
            progress(f"counting {name}", before + batch.bytes_done, sum(sizes))
        before += sizes[i]
    table = counter.result()
    summary = {"reads": counter.reads, "windows": counter.windows, "distinct_pairs": len(table)}
    return table, summary


# ----------------------------------------------------------------------------------------------
# All samples


@dataclass
class CountTable:
    """Counts of (anchor, target, sample), one entry per non-zero cell.

    Entries are ordered by anchor (ascending), then the pairs of an anchor are contiguous (in an
    arbitrary but deterministic order), then samples ascend within a pair.

    Arrays are (n,): anchor, target uint64; sample int32 (index into `samples`); count int64.
    """

    anchor: np.ndarray
    target: np.ndarray
    sample: np.ndarray
    count: np.ndarray
    samples: list[str]
    anchor_len: int
    target_len: int
    gap: int
    summary: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.anchor)


def combine_samples(
    tables: Sequence[PairCounts], samples: Sequence[str], anchor_len: int, target_len: int,
    gap: int,
) -> CountTable:
    """Join per-sample pair tables into one `CountTable` ordered by anchor."""
    if len(tables) != len(samples):
        raise ValueError("one pair table per sample expected")
    h = np.concatenate([t.hash for t in tables]) if tables else np.zeros(0, np.uint64)
    a = np.concatenate([t.anchor for t in tables]) if tables else np.zeros(0, np.uint64)
    t_ = np.concatenate([t.target for t in tables]) if tables else np.zeros(0, np.uint64)
    c = np.concatenate([t.count for t in tables]) if tables else np.zeros(0, np.int64)
    s = np.repeat(np.arange(len(tables), dtype=np.int32), [len(t) for t in tables])
    if len(h):
        # Each sample table is sorted by hash: a stable sort merges them with samples in order
        # within a pair; a second stable sort by anchor keeps pairs and sample order intact.
        order = np.argsort(h, kind="stable")
        hs, as_, ts = h[order], a[order], t_[order]
        collide = (hs[1:] == hs[:-1]) & ((as_[1:] != as_[:-1]) | (ts[1:] != ts[:-1]))
        if np.any(collide):
            order = np.lexsort((s, t_, a))
        else:
            order = order[np.argsort(as_, kind="stable")]
        a, t_, s, c = a[order], t_[order], s[order], c[order]
    return CountTable(a, t_, s, c, list(samples), anchor_len, target_len, gap)
