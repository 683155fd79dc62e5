"""Aligning queries to a reference: minimap2 (through PyPI `mappy`) and NCBI BLAST+ `blastn`.

Every aligner maps a query to one `Hit`: the index record and the reference base that the
query's centre base aligns to. The centre (offset L // 2, read along the reference's forward
strand) is found by walking the alignment (minimap2's CIGAR, blastn's gapped HSP), so indels in a
diverged query do not shift it; an inserted centre base maps to the next reference base.
minimap2: the primary hit; blastn: the highest-bitscore HSP (either strand) that covers the centre
base; none = unmapped. A hit also says how well the query aligns (`Hit`: identity, aligned
fraction, blastn's e-value, and the query's loci over all its alignments, `distinct_loci`).

- `make_aligner`: `minimap2` = the sensitive settings `MINIMAP2_SENSITIVE`, chosen by a measured
  sweep (bench/bench_lookups.py, docs/BENCHMARKS.md "Reference lookups"); `map-ont` and `sr` =
  minimap2's presets; `blastn` = `blastn -task blastn` (Debian package `ncbi-blast+`),
  `BLASTN_SETTINGS`. Every aligner states what it uses in `description`.
- `index_reference`: one index per build over all its records, built from a temporary FASTA whose
  records are named by their index (0, 1, ...), so a hit maps back to the record's chromosome and
  0-based start (`read_reference` parses `chr21:1000-2000` names); spans given as `mask` are
  written as N there (a reference without some genes); each distinct query is aligned once
  (`RememberedMap`).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import tempfile
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import mappy

from llamadna.constants import LOCI_MIN_FRACTION, LOCI_SHARE
from llamadna.errors import ConfigError
from llamadna.io.fasta import read_reference

log = logging.getLogger(__name__)

# minimap2 settings (mappy.Aligner keyword arguments; the rest minimap2's defaults) for diverged
# 512-base windows, chosen by the measured sweep of bench/bench_lookups.py (docs/BENCHMARKS.md,
# "Reference lookups"): on the bundle's GRCh38 regions they map back 93 % of windows at 30 %
# divergence (map-ont 0 %, blastn 84 %), no random sequence, at ~1.9x blastn's speed.
MINIMAP2_SENSITIVE: dict = {"k": 8, "w": 2, "min_cnt": 2, "min_chain_score": 20, "min_dp_score": 40}
# minimap2 settings of the reference index (llamadna.retrieve): k=9, w=3 with the same low chain
# and DP thresholds map 6.6x more queries per CPU-second than MINIMAP2_SENSITIVE (636 vs 96 on
# undiverged dataset windows against the bundle's GRCh38 regions) and lose some at 30 %
# divergence (102 vs 120 of 150 mapped), which the embedding half of the retriever is there for
# (docs/BENCHMARKS.md "Reference index and retriever").
MINIMAP2_INDEX: dict = {"k": 9, "w": 3, "min_cnt": 2, "min_chain_score": 20, "min_dp_score": 40}
# Alignments minimap2 reports per query (primary + secondary; its default is 5) in the reference
# index's settings (`retrieve.config.IndexConfig`): the retriever counts the loci a query aligns
# to nearly as well as its best hit (a repeat's), which needs the secondary hits.
MINIMAP2_BEST_N = 50
# Indexed bases of the reference those two settings were chosen on (the bundle's index windows,
# both builds). On a larger reference a k-mer of that size recurs by chance ~bases / 4^k times
# and floods the chaining step, so `scaled_minimap2` raises k by log4(bases / MINIMAP2_TUNED_BASES)
# (rounded), keeping the chance recurrence of a seed what it was on the tuned reference: +2 at
# ~50 Mb, +5 (k=14) for a whole genome's ~3.1 Gb.
MINIMAP2_TUNED_BASES = 3_090_000
MINIMAP2_MAX_K = 28  # minimap2's limit
# blastn settings: word size 11 (-task blastn), both strands; few targets and HSPs per query,
# since only the best HSP over the centre base is used.
# culling_limit 1 deletes an HSP whose query range lies inside a higher-scoring HSP's: such an HSP
# is never the highest-scoring one over the centre base (the one enclosing it covers the centre
# too and scores higher). It can change a hit only where -max_hsps had cut off the HSP over the
# centre, letting it in: the same hits for 165 of 165 GRCh37 test windows undiverged and at 30 %,
# 1 of 300 changed in the full evaluation's 30 % curve; repeat-rich windows run 7.6x faster
# (docs/BENCHMARKS.md).
BLASTN_SETTINGS: dict = {"evalue": 1e-5, "max_target_seqs": 5, "max_hsps": 5, "culling_limit": 1}
BLASTN_BATCH = 500  # queries per blastn process
# aligner names make_aligner knows
ALIGNERS = ("minimap2", "map-ont", "sr", "blastn")
DEFAULT_ALIGNER = "minimap2"

# CIGAR operation codes (minimap2 / BAM): which consume the query and the reference.
_CIGAR_BOTH = (0, 7, 8)  # M, =, X
_CIGAR_QUERY = (1,)  # I
_CIGAR_REF = (2, 3)  # D, N


@dataclass(frozen=True, slots=True)
class Hit:
    """Where a query's centre base lands: index record, 0-based offset on it, MAPQ (None for
    blastn, which has none); and how well the query aligns there (`HitStats` fields, None where
    not measured). Two hits are equal when they land on the same base with the same MAPQ: the
    statistics describe the alignment, not where it lands.

    identity : matching bases / alignment columns of the hit's alignment (blastn's pident / 100,
        minimap2's mlen / blen).
    aligned_fraction : the share of the query that alignment covers.
    evalue : blastn's e-value of the hit's HSP (None for minimap2).
    loci : distinct reference places (`distinct_loci`) among the query's alignments that align
        nearly as well as its best one (identity x aligned fraction >= LOCI_SHARE x the best,
        over >= LOCI_MIN_FRACTION of the query). Capped by what the aligner reports: minimap2
        the primary + at most `best_n` - 1 secondary alignments (mappy's default best_n 5);
        blastn at most max_target_seqs x max_hsps HSPs (25 with BLASTN_SETTINGS), and
        BLASTN_SETTINGS' culling_limit 1 deletes every HSP whose query range lies inside a
        higher-scoring one's, i.e. the other copies of a repeat: count loci with
        `BlastnAligner(culling_limit=None)`.
    """

    record: int
    offset: int
    mapq: int | None
    identity: float | None = field(default=None, compare=False)
    aligned_fraction: float | None = field(default=None, compare=False)
    evalue: float | None = field(default=None, compare=False)
    loci: int | None = field(default=None, compare=False)


def distinct_loci(alignments: Iterable[tuple[int, int, int, float, float]]) -> int:
    """Distinct reference places among a query's alignments that align nearly as well as its
    best: `alignments` = (record, reference start, end, identity, aligned fraction) each; those
    with identity x fraction >= LOCI_SHARE x the best and fraction >= LOCI_MIN_FRACTION count,
    overlapping ones on one record (either strand) as one place. 0 without alignments."""
    al = list(alignments)
    if not al:
        return 0
    best = max(i * f for _, _, _, i, f in al)
    keep = sorted((r, min(a, b), max(a, b)) for r, a, b, i, f in al
                  if i * f >= LOCI_SHARE * best and f >= LOCI_MIN_FRACTION)
    loci, last = 0, None
    for r, a, b in keep:
        if last is None or r != last[0] or a > last[1]:
            loci += 1
            last = (r, b)
        else:
            last = (r, max(last[1], b))
    return loci


# An indexed reference: queries -> one Hit (or None: unmapped) each.
MapFn = Callable[[Sequence[str]], "list[Hit | None]"]


# --------------------------------------------------------------------------- minimap2


def scaled_minimap2(settings: dict, bases: int) -> dict:
    """minimap2 settings for a reference of `bases` indexed bases: `settings`' k raised by
    round(log4(bases / MINIMAP2_TUNED_BASES)) when that is positive (never lowered; at most
    MINIMAP2_MAX_K); the rest unchanged. Settings without k (a preset) are returned as they are."""
    if "k" not in settings or bases <= MINIMAP2_TUNED_BASES:
        return dict(settings)
    shift = max(0, round(math.log(bases / MINIMAP2_TUNED_BASES, 4)))
    return {**settings, "k": min(MINIMAP2_MAX_K, settings["k"] + shift)}



def deep_minimap2(sensitive: dict, tuned: dict) -> dict | None:
    """Settings of a third, deep minimap2 tier, or None where `scaled_minimap2` did not raise the
    sensitive tier's k (`sensitive`, as scaled; `tuned`, as given: a reference no larger than the
    one the settings were tuned on). On a larger one the raised k keeps chance seed hits rare,
    which costs seeds in a diverged query; the deep tier takes every k-mer (w=1) at one less than
    that k, never below the tuned k. On a 54 Mb generated reference
    (bench/bench_search_scale.py) it lifted 30 %-diverged recall@1 from 0.73 to 0.90 (blastn
    0.88), run only on the queries the first two tiers map poorly."""
    if "k" not in sensitive or sensitive["k"] <= tuned.get("k", 0):
        return None
    return {**sensitive, "k": max(tuned["k"], sensitive["k"] - 1), "w": 1}


def _ref_offset(cigar: list, r_st: int, o: int) -> int:
    """Reference offset of aligned query base `o` (0 = first aligned base, in the reference's
    orientation) by walking the CIGAR; outside the aligned part it extrapolates linearly, and an
    inserted base maps to the next reference base."""
    if o < 0:
        return r_st + o
    r = r_st
    for length, op in cigar:
        if op in _CIGAR_BOTH:
            if o < length:
                return r + o
            o -= length
            r += length
        elif op in _CIGAR_QUERY:
            if o < length:
                return r
            o -= length
        elif op in _CIGAR_REF:
            r += length
    return r + o


def hit_position(hit: mappy.Alignment, qlen: int) -> int:
    """0-based position, on the hit's record, of the reference base that the query's centre
    aligns to: base qlen // 2 of the query read along the reference's forward strand (so a
    query and its reverse complement give the same position)."""
    q = qlen // 2
    # On the minus strand the CIGAR runs along the reverse complement of the query, whose
    # aligned part starts at offset qlen - q_en.
    o = q - hit.q_st if hit.strand >= 0 else q - (qlen - hit.q_en)
    return _ref_offset(hit.cigar, hit.r_st, o)


class Aligner(ABC):
    """Maps queries onto a reference FASTA whose records are named 0, 1, ... (their index)."""

    @property
    @abstractmethod
    def description(self) -> str:
        """The aligner and its settings, e.g. "minimap2 k=11 w=3 ..."."""

    @abstractmethod
    def index(self, fasta: Path) -> MapFn:
        """Index `fasta` (which may be deleted afterwards); returns the function mapping a list
        of queries to one `Hit` (or None: unmapped) each."""


class Minimap2Aligner(Aligner):
    """minimap2 through mappy: `settings` are `mappy.Aligner` keyword arguments (`preset`, `k`,
    `w`, `min_cnt`, `min_chain_score`, `min_dp_score`, `bw`, `best_n`, ...)."""

    def __init__(self, **settings) -> None:
        self.settings = dict(settings)

    @property
    def description(self) -> str:
        s = " ".join(f"{k}={v}" for k, v in self.settings.items() if k != "preset")
        preset = self.settings.get("preset")
        return " ".join(p for p in (f"minimap2 {mappy.__version__}",
                                    f"preset {preset}" if preset else "", s) if p)

    def index(self, fasta: Path) -> MapFn:
        aligner = mappy.Aligner(fn_idx_in=str(fasta), **self.settings)
        if not aligner:
            raise RuntimeError(f"minimap2 could not index {fasta} ({self.description})")
        return _Minimap2Map(aligner)


def map_threaded(aligner: mappy.Aligner, sequences: Sequence, each: Callable,
                 threads: int | None = None) -> list:
    """`each(i, sequence, hits)` for every sequence, its minimap2 hits (`aligner.map`) mapped on
    `threads` threads (default: the CPUs; mappy releases the GIL, one buffer per thread);
    results in input order, the same on any thread count."""
    from concurrent.futures import ThreadPoolExecutor

    n = max(1, min(threads or os.cpu_count() or 1, len(sequences)))

    def run(part: range) -> list:
        buf = mappy.ThreadBuffer()
        return [each(i, sequences[i], aligner.map(sequences[i], buf=buf)) for i in part]

    if n == 1:
        return run(range(len(sequences)))
    parts = [range(t, len(sequences), n) for t in range(n)]
    with ThreadPoolExecutor(n) as pool:
        done = list(pool.map(run, parts))
    out: list = [None] * len(sequences)
    for part, res in zip(parts, done):
        for i, r in zip(part, res):
            out[i] = r
    return out


def _primary(i: int, s: str, hits) -> Hit | None:
    """The primary hit, with its identity and aligned fraction and the query's loci over every
    hit minimap2 reports (primary and secondary)."""
    primary, places = None, []
    for h in hits:  # consume all: mappy frees as it goes
        identity, fraction = h.mlen / max(h.blen, 1), (h.q_en - h.q_st) / max(len(s), 1)
        places.append((int(h.ctg), h.r_st, h.r_en, identity, fraction))
        if primary is None and h.is_primary:
            primary = (int(h.ctg), hit_position(h, len(s)), int(h.mapq), identity, fraction)
    if primary is None:
        return None
    return Hit(*primary[:3], identity=primary[3], aligned_fraction=primary[4], loci=distinct_loci(places))


class _Minimap2Map:
    """Primary hits, queries mapped on every CPU (`map_threaded`)."""

    def __init__(self, aligner: mappy.Aligner) -> None:
        self.aligner = aligner

    def __call__(self, sequences: Sequence[str]) -> list[Hit | None]:
        return map_threaded(self.aligner, sequences, _primary)


# --------------------------------------------------------------------------- blastn

_BLAST_FIELDS = "qseqid sseqid qstart qend sstart send evalue bitscore sstrand qseq sseq"


def _gapped_ref_pos(qseq: str, sseq: str, q: int, s: int, step: int, qc: int) -> int:
    """1-based subject position aligned to 1-based query base `qc`, walking a blastn HSP's
    gapped query/subject strings from (q, s); `step` = -1 on the minus strand (the subject runs
    backwards). A centre base facing a gap maps to the next subject base along the forward
    strand."""
    for qa, sa in zip(qseq, sseq):
        if qa != "-":
            if q == qc:
                return s if sa != "-" or step > 0 else s + 1
            q += 1
        if sa != "-":
            s += step
    raise ValueError(f"query base {qc} is not inside the HSP")


def _hsp_identity(qseq: str, sseq: str) -> float:
    """Identical columns / alignment columns of a gapped HSP (blastn's pident / 100)."""
    return sum(a == b and a != "-" for a, b in zip(qseq, sseq)) / max(len(qseq), 1)


def parse_blast_hits(lines: Iterable[str], qlens: Sequence[int]) -> list[Hit | None]:
    """Per query ("q<i>", length qlens[i]) the `Hit` of its best HSP covering the centre base:
    highest bitscore, then lowest e-value, then first listed; with that HSP's identity, aligned
    fraction and e-value and the query's loci over all its HSPs (`distinct_loci`).
    Columns: `_BLAST_FIELDS`."""
    best: dict[int, tuple[tuple[float, float], Hit]] = {}
    places: dict[int, list] = {}
    for line in lines:
        qid, sid, qs, qe, ss, se, ev, bits, strand, qseq, sseq = line.rstrip("\n").split("\t")
        i, n = int(qid[1:]), qlens[int(qid[1:])]
        # record names are their index; older BLAST+ may write gnl|BL_ORD_ID|<index>
        record, identity = int(sid.rsplit("|", 1)[-1]), _hsp_identity(qseq, sseq)
        fraction = (int(qe) - int(qs) + 1) / max(n, 1)
        places.setdefault(i, []).append((record, int(ss), int(se), identity, fraction))
        minus = strand == "minus"
        # the query base that is base n // 2 of the query read along the reference's forward strand
        qc = n - n // 2 if minus else n // 2 + 1
        key = (float(bits), -float(ev))
        if not int(qs) <= qc <= int(qe) or (i in best and best[i][0] >= key):
            continue
        pos1 = _gapped_ref_pos(qseq, sseq, int(qs), int(ss), -1 if minus else 1, qc)
        best[i] = (key, Hit(record, pos1 - 1, None, identity, fraction, float(ev)))
    return [replace(best[i][1], loci=distinct_loci(places[i])) if i in best else None
            for i in range(len(qlens))]


def _blast_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ConfigError(f"{name} not found on PATH: install NCBI BLAST+ (Debian package "
                          "ncbi-blast+, see scripts/install-apt.sh)")
    return path


class BlastnAligner(Aligner):
    """`blastn -task blastn` against a `makeblastdb` database of the reference (in a temporary
    directory kept while the index lives), queries in batches of `batch_size`, one process per
    batch; `threads` = blastn's -num_threads (default: the CPUs), split by query (-mt_mode 1:
    1.7x faster than one thread on 2 cores for 300 windows of 512 bases; same hits)."""

    def __init__(self, evalue: float = BLASTN_SETTINGS["evalue"],
                 max_target_seqs: int = BLASTN_SETTINGS["max_target_seqs"],
                 max_hsps: int = BLASTN_SETTINGS["max_hsps"], batch_size: int = BLASTN_BATCH,
                 threads: int | None = None,
                 culling_limit: int | None = BLASTN_SETTINGS["culling_limit"]) -> None:
        self.blastn, self.makeblastdb = _blast_tool("blastn"), _blast_tool("makeblastdb")
        version = subprocess.run([self.blastn, "-version"], capture_output=True, text=True,
                                 check=True).stdout.split("\n")[0]
        self.version = version.split(":")[-1].strip()  # "blastn: 2.12.0+" -> "2.12.0+"
        self.evalue, self.max_target_seqs, self.max_hsps = evalue, max_target_seqs, max_hsps
        self.batch_size, self.threads = batch_size, threads or min(8, os.cpu_count() or 1)
        self.culling_limit = culling_limit

    @property
    def description(self) -> str:
        cull = f" -culling_limit {self.culling_limit}" if self.culling_limit else ""
        return (f"blastn {self.version} -task blastn -evalue {self.evalue:g} -max_target_seqs "
                f"{self.max_target_seqs} -max_hsps {self.max_hsps}{cull} (both strands)")

    def index(self, fasta: Path) -> MapFn:
        return _BlastnMap(self, fasta)


class _Crashed(RuntimeError):
    """A tool killed by a signal (a segmentation fault), not one that reported an error."""


def _run(cmd: list[str]) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True)
    tool, err = os.path.basename(cmd[0]), p.stderr.strip()[-2000:]
    if p.returncode < 0:
        raise _Crashed(f"{tool} killed by signal {-p.returncode}: {err}")
    if p.returncode != 0:
        raise RuntimeError(f"{tool} failed ({p.returncode}): {err}")
    return p.stdout


class _BlastnMap:
    """A makeblastdb database of `fasta` in a temporary directory removed with this object."""

    def __init__(self, cfg: BlastnAligner, fasta: Path) -> None:
        self.cfg = cfg
        self.dir = tempfile.mkdtemp(prefix="llamadna_blastdb_")
        weakref.finalize(self, shutil.rmtree, self.dir, ignore_errors=True)
        self.db = os.path.join(self.dir, "ref")
        _run([cfg.makeblastdb, "-in", str(fasta), "-dbtype", "nucl", "-out", self.db])

    def __call__(self, sequences: Sequence[str]) -> list[Hit | None]:
        out: list[Hit | None] = []
        for b in range(0, len(sequences), self.cfg.batch_size):
            out += self._batch(sequences[b : b + self.cfg.batch_size])
        return out

    def _batch(self, seqs: Sequence[str]) -> list[Hit | None]:
        if not any(seqs):
            return [None] * len(seqs)
        query = os.path.join(self.dir, "query.fa")
        with open(query, "w") as fh:
            for i, s in enumerate(seqs):
                if s:  # blastn rejects an empty record; an empty query stays unmapped
                    fh.write(f">q{i}\n{s}\n")
        c = self.cfg
        cmd = [c.blastn, "-task", "blastn", "-db", self.db, "-query", query,
               "-strand", "both", "-evalue", str(c.evalue),
               "-max_target_seqs", str(c.max_target_seqs), "-max_hsps", str(c.max_hsps),
               *(["-culling_limit", str(c.culling_limit)] if c.culling_limit else []),
               "-outfmt", f"6 {_BLAST_FIELDS}"]
        threads = ["-num_threads", str(c.threads), *(["-mt_mode", "1"] if c.threads > 1 else [])]
        try:
            stdout = _run(cmd + threads)
        except _Crashed as e:
            if c.threads == 1:
                raise
            # BLAST+ 2.12's multi-threaded search can segfault on a batch that one thread
            # searches fine (seen once, in a 5-fold evaluation's divergence); the hits are the same
            log.warning("%s; searching this batch of %d queries again with one thread", e,
                        len(seqs))
            stdout = _run(cmd + ["-num_threads", "1"])
        return parse_blast_hits(stdout.splitlines(), [len(s) for s in seqs])


def make_aligner(name: str) -> Aligner:
    """An aligner by name (`ALIGNERS`): "minimap2" (MINIMAP2_SENSITIVE), "map-ont" and "sr"
    (minimap2 presets), "blastn" (BLASTN_SETTINGS)."""
    if name == "minimap2":
        return Minimap2Aligner(**MINIMAP2_SENSITIVE)
    if name in ("map-ont", "sr"):
        return Minimap2Aligner(preset=name)
    if name == "blastn":
        return BlastnAligner()
    raise ConfigError(f"unknown lookup aligner {name!r}; expected one of {ALIGNERS}")


def index_reference(
    fasta: str | Path, aligner: Aligner,
    mask: Mapping[str, Iterable[tuple[int, int]]] | None = None,
) -> tuple[MapFn, list[tuple[str, int, int]]]:
    """Index every record of a reference FASTA (upper case, IUPAC -> N as the builder reads it)
    with `aligner`, records named by their index; returns the map function and, per index
    record, (chrom, 0-based start on the chromosome, length) to map hits back.

    mask : chromosome -> 0-based half-open spans [start0, end0) written as N in the indexed
        (temporary) copy, so nothing aligns there; lengths and so the hits' coordinates stay
        those of the FASTA.
    """
    ref = read_reference(fasta)
    records = [(c.chrom, c.start0, len(c.seq)) for c in ref.contigs]
    mask = {chrom: list(spans) for chrom, spans in (mask or {}).items()}
    fd, tmp = tempfile.mkstemp(suffix=".fa", prefix="llamadna_lookup_")
    try:
        with os.fdopen(fd, "wb") as fh:
            for i, c in enumerate(ref.contigs):
                fh.write(b">%d\n" % i)
                fh.write(_masked(c.seq, c.start0, mask.get(c.chrom, ())).tobytes())
                fh.write(b"\n")
        map_fn = aligner.index(Path(tmp))
    finally:
        os.unlink(tmp)
    return RememberedMap(map_fn), records


def _masked(seq, start0: int, spans: Iterable[tuple[int, int]]):
    """`seq` (a contig at `start0` on its chromosome) with the parts of the chromosome spans
    [a, b) that it covers set to N (a copy; `seq` itself where none overlaps)."""
    out = seq
    for a, b in spans:
        lo, hi = max(a - start0, 0), min(b - start0, len(seq))
        if lo < hi:
            if out is seq:
                out = seq.copy()
            out[lo:hi] = ord("N")
    return out


class RememberedMap:
    """A map function that aligns each distinct query once: hits depend on the query and the
    reference only, so repeated windows, the unmutated rate of a divergence curve and the folds
    of one evaluation share them. Remembers every query it saw (~0.5 kB a window)."""

    def __init__(self, map_fn: MapFn) -> None:
        self.map_fn = map_fn
        self.hits: dict[str, Hit | None] = {}

    def __call__(self, sequences: Sequence[str]) -> list[Hit | None]:
        new = [s for s in dict.fromkeys(sequences) if s not in self.hits]
        if new:
            self.hits.update(zip(new, self.map_fn(new)))
        return [self.hits[s] for s in sequences]
