"""Sequences that are part of no gene, with their truth (issue 29): the rows a model is trained,
calibrated and evaluated on besides genic rows, so that it learns what to refuse.

Kinds (`NEGATIVE_KINDS`) and their truth outcome:

- random (none): uniform random bases;
- shuffled (none): a genic row's window with its non-overlapping 2-base blocks permuted
  (`dinucleotide_shuffle`): the base composition and the pairs inside blocks are kept, the
  order is not, so nothing in the reference aligns to it;
- foreign (none): a generated sequence unlike human DNA (`foreign_sequence`: an order-2 Markov
  chain with random transition probabilities and a skewed GC content);
- intergenic (intergenic): a window of the reference lying at least `min_distance` bases from
  every annotated gene (`intergenic_windows`), with the nearest gene on each side;
- similar (similar): a chimera of a genic row (`chimera`: 25-50 % of its window kept in one
  piece, the rest random bases), `similar_to` = its gene;
- repeat (repeat): a REPEAT_WINDOW-base window of the reference found at >= REPEAT_MIN_LOCI
  places of its build's reference (minimap2 through mappy with constants.MINIMAP2_LOCI, the
  settings of the index's optional loci tier, and the retriever's rule for loci,
  constants.LOCI_SHARE and LOCI_MIN_FRACTION; an index built with the tier counts nearly what
  this truth counts, one without it fewer: its passes drop copies a few percent diverged).
  Its `in_gene`: the annotated genes whose span holds the window's middle base (`genes_at`,
  comma-separated; None outside genes). Such a window is part of a gene as well as a repeat:
  its truth stays "repeat", and the evaluation reports these rows apart (a system that names the
  gene holding it is not claiming a gene for a sequence of no gene).

Parts of the reference (`reference_part`): 100-kb blocks of each build's chromosomes, each
train / val / test by a seeded hash (70/15/15), so that training, calibration and evaluation
negatives come from different places; a window belongs to the part of its start.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import mappy
import numpy as np
import polars as pl

from llamadna.constants import (
    DEFAULT_WINDOW,
    LOCI_MIN_FRACTION,
    LOCI_SHARE,
    MINIMAP2_LOCI,
    NONE_SENTENCE,
    REPEAT_MIN_LOCI,
    SPLASH_COLUMNS,
    SPLITS,
)
from llamadna.data.genes import load_genes
from llamadna.data.paths import discover_sets
from llamadna.data.template import intergenic_sentence
from llamadna.io.fasta import Reference, read_reference

log = logging.getLogger(__name__)

NEGATIVE_KINDS = ("random", "shuffled", "foreign", "intergenic", "similar", "repeat")
# the kinds whose windows are cut from the reference (their build, chrom and start0 say where)
REFERENCE_KINDS = ("intergenic", "repeat")
KIND_OUTCOME = {"random": "none", "shuffled": "none", "foreign": "none", "intergenic": "intergenic",
                "similar": "similar", "repeat": "repeat"}
PART_BLOCK = 100_000  # bases per block of `reference_part`
PART_FRACTIONS = (0.7, 0.15, 0.15)  # train, val, test (SPLITS order)
PART_SALT = "llamadna-reference-parts-1"  # the hash's seed: changing it redraws every block
DEFAULT_MIN_DISTANCE = 2000  # intergenic windows: bases from the nearest gene, at least
MAX_N_FRACTION = 0.1  # reference windows with this share of N or more are not used
SIMILAR_KEEP = (0.25, 0.5)  # share of a genic window a "similar" chimera keeps (uniform)
REPEAT_WINDOW = 300  # bases of a repeat window (about an Alu)
REPEAT_SCAN = 100  # windows aligned at most per repeat asked for (the scan is the slow part: ~0.3 ms
# a window; ~4 % of the bundle's windows are repeats, so 100 x finds what a part holds)
FOREIGN_GC = ((0.2, 0.32), (0.55, 0.7))  # GC content of a foreign sequence: low or high (human: ~0.41)
FOREIGN_CONCENTRATION = 2.0  # Dirichlet concentration of its transition rows (low: skewed)
_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
# the nearest gene on each side of an intergenic window, and `intergenic_windows`' columns
FLANK_COLUMNS = ("left_gene", "left_distance", "right_gene", "right_distance")
INTERGENIC_COLUMNS = ("build", "chrom", "start0", "end0", "Sequence", "part", *FLANK_COLUMNS)
_FLANK_TYPES = {"left_gene": pl.Utf8, "left_distance": pl.Int64, "right_gene": pl.Utf8,
                "right_distance": pl.Int64}


# ------------------------------------------------------------------------------------- parts
@lru_cache(maxsize=65536)
def _block_part(build: str, chrom: str, block: int) -> str:
    """The part of one block: a uniform draw in [0, 1) from the seeded hash, cut at PART_FRACTIONS."""
    h = hashlib.blake2b(f"{PART_SALT}:{build}:{chrom}:{block}".encode(), digest_size=8).digest()
    u = int.from_bytes(h, "big") / 2.0 ** 64
    return SPLITS[int(np.searchsorted(np.cumsum(PART_FRACTIONS)[:-1], u, side="right"))]


def reference_block(build: str, chrom: str, pos: int) -> str:
    """The PART_BLOCK-base block of the reference that 0-based position `pos` of a build's
    chromosome lies in, as "build:chrom:block" (the unit `reference_part` draws parts by: windows
    of one block are not independent draws, e.g. a segmental duplication's adjacent windows)."""
    return f"{build}:{chrom}:{int(pos) // PART_BLOCK}"


def reference_part(build: str, chrom: str, pos: int) -> str:
    """The part ("train", "val" or "test") of the reference that 0-based position `pos` of a
    build's chromosome belongs to: its PART_BLOCK-base block, drawn by a seeded hash of (build,
    chromosome, block) with PART_FRACTIONS. Deterministic, independent of the bundle."""
    return _block_part(build, chrom, int(pos) // PART_BLOCK)


# ------------------------------------------------------------------------------- sequences
def random_sequence(n: int, rng: np.random.Generator) -> str:
    """`n` uniform random bases."""
    return _BASES[rng.integers(0, 4, n)].tobytes().decode("ascii")


def dinucleotide_shuffle(seq: str, rng: np.random.Generator) -> str:
    """A "two-base shuffle": the sequence cut into non-overlapping 2-base blocks (from its
    start; an odd last base stays last) and the blocks permuted. It keeps the base composition
    and the doublets inside blocks; it does not keep every overlapping dinucleotide count (the
    Altschul-Erikson shuffle would)."""
    m = len(seq) // 2
    blocks = np.frombuffer(seq[:2 * m].encode("ascii"), dtype=np.uint8).reshape(m, 2)
    return blocks[rng.permutation(m)].tobytes().decode("ascii") + seq[2 * m:]


def foreign_sequence(n: int, rng: np.random.Generator) -> str:
    """A generated sequence unlike human DNA: an order-2 Markov chain whose 16 transition rows
    (next base given the two before) are drawn per call from a Dirichlet with concentration
    FOREIGN_CONCENTRATION around a GC content drawn from FOREIGN_GC (low or high, away from the
    human ~41 %); the first two bases are drawn at that GC content."""
    lo, hi = FOREIGN_GC[int(rng.integers(0, len(FOREIGN_GC)))]
    gc = rng.uniform(lo, hi)
    base = np.array([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])  # A, C, G, T
    trans = rng.dirichlet(FOREIGN_CONCENTRATION * 4 * base, size=16)  # (16, 4): row = 4 x b1 + b2
    cum = np.cumsum(trans, axis=1)
    out = np.empty(n, dtype=np.int64)
    out[:2] = rng.choice(4, size=min(n, 2), p=base)
    u = rng.random(n)
    for i in range(2, n):
        row = cum[4 * out[i - 2] + out[i - 1]]
        out[i] = min(int(np.searchsorted(row, u[i] * row[-1], side="right")), 3)
    return _BASES[out].tobytes().decode("ascii")


def _chimera(seq: str, keep: float, rng: np.random.Generator) -> tuple[str, int, int]:
    """`chimera`, and the 0-based start and length of the kept piece."""
    if not 0.0 <= keep <= 1.0:
        raise ValueError(f"keep must be in [0, 1], got {keep}")
    k = round(keep * len(seq))
    a = int(rng.integers(0, len(seq) - k + 1))
    out = random_sequence(len(seq), rng)
    return out[:a] + seq[a:a + k] + out[a + k:], a, k


def chimera(seq: str, keep: float, rng: np.random.Generator) -> str:
    """A sequence of the same length that keeps one contiguous piece of `seq`, round(keep x
    length) bases at a random offset and in its place, and has random bases elsewhere."""
    return _chimera(seq, keep, rng)[0]


# ------------------------------------------------------------------------ reference windows
@dataclass
class _Build:
    """One assembly set's reference and gene table (`load_genes`: the genes the index uses)."""

    build: str
    fasta: Path
    ref: Reference
    genes: pl.DataFrame


def _builds(data_dir: str | Path) -> list[_Build]:
    """Every assembly set of a bundle, its reference read and its genes loaded."""
    return [_Build(a.build, a.fasta, read_reference(a.fasta), load_genes(a)) for a in discover_sets(data_dir)]


def flanking_genes(genes: pl.DataFrame, chrom: str, pos: np.ndarray) -> tuple[list, list, list, list]:
    """The nearest gene on each side of 1-based positions of `chrom`, by the retriever's rule
    (`retrieve.retriever.Retriever._neighbours`): left = the gene ending before the position
    with the largest end, right = the gene starting after it with the smallest start (ties: the
    last name on the left, the first on the right; a gene without a name goes by its id);
    distance in bases from the position to that end (pos - end, start - pos). Returns
    (left_gene, left_distance, right_gene, right_distance) lists, None where there is no gene
    on that side. A position inside a gene still gets the genes on each side that do not
    contain it."""
    pos = np.asarray(pos, dtype=np.int64)
    g = genes.filter(pl.col("chrom") == chrom).with_columns(
        pl.coalesce("gene_name", "gene_id").alias("name")).drop_nulls("name")
    by_end, by_start = g.sort("end", "name"), g.sort("start", "name")
    ends, starts = by_end["end"].to_numpy(), by_start["start"].to_numpy()
    li = np.searchsorted(ends, pos, side="left") - 1  # the last gene with end < pos
    ri = np.searchsorted(starts, pos, side="right")  # the first with start > pos
    left, right = by_end["name"].to_list(), by_start["name"].to_list()
    return ([left[i] if i >= 0 else None for i in li],
            [int(p - ends[i]) if i >= 0 else None for i, p in zip(li, pos)],
            [right[i] if i < len(starts) else None for i in ri],
            [int(starts[i] - p) if i < len(starts) else None for i, p in zip(ri, pos)])


def genes_at(genes: pl.DataFrame, chrom: str, pos: int) -> list[str]:
    """The names (else ids) of the genes of `chrom` whose span (1-based, inclusive) holds the
    1-based position `pos`, sorted."""
    g = genes.filter((pl.col("chrom") == chrom) & (pl.col("start") <= pos) & (pl.col("end") >= pos))
    return sorted(set(g.select(pl.coalesce("gene_name", "gene_id")).to_series().drop_nulls().to_list()))


def _clear_of_genes(genes: pl.DataFrame, chrom: str, s: np.ndarray, e: np.ndarray,
                    min_distance: int) -> np.ndarray:
    """Windows [s, e) (0-based) with at least `min_distance` bases between them and every gene
    of `chrom` (genes 1-based inclusive): none overlaps a gene widened by `min_distance`."""
    g = genes.filter(pl.col("chrom") == chrom).sort("start")
    g0 = g["start"].to_numpy().astype(np.int64) - 1 - min_distance
    g1 = g["end"].to_numpy().astype(np.int64) + min_distance
    if not len(g0):
        return np.ones(len(s), dtype=bool)
    reach = np.maximum.accumulate(g1)  # merged: the furthest end of the genes started so far
    i = np.searchsorted(g0, e, side="left") - 1  # the last widened gene starting before e
    return (i < 0) | (reach[np.maximum(i, 0)] <= s)


def _few_n(seq: np.ndarray, t: np.ndarray, length: int) -> np.ndarray:
    """Windows seq[t : t + length] with under MAX_N_FRACTION N."""
    n = np.concatenate([[0], np.cumsum(seq == ord("N"))])
    return (n[t + length] - n[t]) < MAX_N_FRACTION * length


def _build_intergenic(b: _Build, window: int, stride: int, min_distance: int) -> pl.DataFrame:
    """`intergenic_windows` of one build."""
    cols: dict[str, list] = {k: [] for k in ("chrom", "start0", "Sequence", *FLANK_COLUMNS)}
    for c in b.ref.contigs:
        if len(c.seq) < window:
            continue
        t = np.arange(0, len(c.seq) - window + 1, stride)
        ok = _clear_of_genes(b.genes, c.chrom, c.start0 + t, c.start0 + t + window, min_distance)
        if c.is_region:  # an unannotated gene may lie just outside a region's record
            ok &= (t >= min_distance) & (len(c.seq) - t - window >= min_distance)
        t = t[ok & _few_n(c.seq, t, window)]
        cols["chrom"] += [c.chrom] * len(t)
        cols["start0"] += (c.start0 + t).tolist()
        cols["Sequence"] += [c.seq[x:x + window].tobytes().decode("ascii") for x in t.tolist()]
        for k, v in zip(FLANK_COLUMNS, flanking_genes(b.genes, c.chrom, c.start0 + t + window // 2 + 1)):
            cols[k] += v
    df = pl.DataFrame(cols, schema={"chrom": pl.Utf8, "start0": pl.Int64, "Sequence": pl.Utf8,
                                    **_FLANK_TYPES})
    return df.with_columns(
        pl.lit(b.build).alias("build"), (pl.col("start0") + window).alias("end0"),
        pl.Series("part", [reference_part(b.build, c, x) for c, x in zip(df["chrom"], df["start0"])],
                  dtype=pl.Utf8),
    ).select(INTERGENIC_COLUMNS)


def intergenic_windows(data_dir: str | Path, window: int = DEFAULT_WINDOW, stride: int | None = None,
                       min_distance: int = DEFAULT_MIN_DISTANCE) -> pl.DataFrame:
    """The reference windows of a bundle that lie in no gene: every `window` bases tiled every
    `stride` (default: `window`, no overlap) over each record of each build, kept when at least
    `min_distance` bases lie between the window and every gene of the build's gene table (and,
    for a region record, its ends: the genes beyond them are unknown) and under MAX_N_FRACTION
    of it is N. Columns INTERGENIC_COLUMNS: 0-based half-open start0/end0 on the chromosome,
    the part of the reference (`reference_part` of start0), and the nearest gene on each side
    of the window's centre base (1-based start0 + window // 2 + 1, the retriever's position of
    a query) with its distance (`flanking_genes`)."""
    stride = window if stride is None else stride
    if window < 1 or stride < 1 or min_distance < 0:
        raise ValueError(f"window and stride must be >= 1 and min_distance >= 0 (got {window}, {stride}, "
                         f"{min_distance})")
    frames = [_build_intergenic(b, window, stride, min_distance) for b in _builds(data_dir)]
    empty = {"build": pl.Utf8, "chrom": pl.Utf8, "start0": pl.Int64, "end0": pl.Int64, "Sequence": pl.Utf8,
             "part": pl.Utf8, **_FLANK_TYPES}
    return pl.concat(frames) if frames else pl.DataFrame(schema=empty)


# ----------------------------------------------------------------------------------- repeats
def count_loci(aligner: mappy.Aligner, seq: str) -> int:
    """Distinct reference loci of a sequence by the retriever's rule: its hits (every chain,
    constants.MINIMAP2_LOCI) whose identity (matching bases / alignment length) x aligned
    fraction is at least LOCI_SHARE x the best hit's, over at least LOCI_MIN_FRACTION of it;
    overlapping hits on a record merged into one locus."""
    found = [(h.ctg, h.r_st, h.r_en, h.mlen / h.blen * (h.q_en - h.q_st) / len(seq),
              (h.q_en - h.q_st) / len(seq)) for h in aligner.map(seq) if h.blen]
    best = max((score for *_, score, _ in found), default=0.0)
    hits = sorted((ctg, st, en) for ctg, st, en, score, frac in found
                  if score >= LOCI_SHARE * best and frac >= LOCI_MIN_FRACTION)
    loci, last = 0, (None, -1)
    for ctg, st, en in hits:
        if ctg != last[0] or st >= last[1]:
            loci += 1
            last = (ctg, en)
        else:
            last = (ctg, max(last[1], en))
    return loci


def repeat_aligner(fasta: str | Path) -> mappy.Aligner:
    """minimap2 over a build's reference FASTA with the loci settings (constants.MINIMAP2_LOCI:
    every chain kept; `count_loci`)."""
    return mappy.Aligner(fn_idx_in=str(fasta), **MINIMAP2_LOCI)


class ReferenceCopies:
    """`ReferenceCopies(data_dir)(sequence, build) -> int`: the loci of a sequence in its build's
    reference by the repeat truth's own rule (`count_loci` on `repeat_aligner`): a genic window
    found at >= REPEAT_MIN_LOCI loci is what a repeat window would be called, though its truth is
    its gene. One aligner per build (`aligner`), built on first use and lent to `negative_rows`
    so that a run indexes each reference once (on a whole genome, minutes and gigabytes each);
    counts kept per (build, sequence)."""

    def __init__(self, data_dir: str | Path):
        self.fasta = {a.build: a.fasta for a in discover_sets(data_dir)}
        self.aligners: dict[str, mappy.Aligner] = {}
        self.seen: dict[tuple[str, str], int] = {}

    def aligner(self, build: str) -> mappy.Aligner:
        """The loci aligner of a build's reference, built on first use."""
        if build not in self.aligners:
            if build not in self.fasta:
                raise ValueError(f"no reference of build {build!r} in the bundle: {sorted(self.fasta)}")
            self.aligners[build] = repeat_aligner(self.fasta[build])
        return self.aligners[build]

    def __call__(self, seq: str, build: str) -> int:
        key = (build, seq)
        if key not in self.seen:
            self.seen[key] = count_loci(self.aligner(build), seq)
        return self.seen[key]


def _repeat_rows(builds: list[_Build], part: str, want: int, rng: np.random.Generator,
                 aligners: Callable[[str], mappy.Aligner]) -> list[tuple[str, dict]]:
    """Up to `want` REPEAT_WINDOW-base windows of `part` found at >= REPEAT_MIN_LOCI loci of their
    build's reference, as (sequence, its build, chrom, start0 and in_gene): candidate windows (tiled
    without overlap, under MAX_N_FRACTION N) in a seeded random order, at most REPEAT_SCAN x
    `want` of them aligned, each on `aligners(build)`."""
    cands = []  # (build index, contig index, offset in the record)
    for bi, b in enumerate(builds):
        for ci, c in enumerate(b.ref.contigs):
            if len(c.seq) < REPEAT_WINDOW:
                continue
            t = np.arange(0, len(c.seq) - REPEAT_WINDOW + 1, REPEAT_WINDOW)
            t = t[_few_n(c.seq, t, REPEAT_WINDOW)]
            cands += [(bi, ci, int(x)) for x in t if reference_part(b.build, c.chrom, c.start0 + x) == part]
    rows, scanned = [], 0
    for k in rng.permutation(len(cands))[:REPEAT_SCAN * want]:
        bi, ci, x = cands[k]
        b, c = builds[bi], builds[bi].ref.contigs[ci]
        seq = c.seq[x:x + REPEAT_WINDOW].tobytes().decode("ascii")
        scanned += 1
        if count_loci(aligners(b.build), seq) >= REPEAT_MIN_LOCI:
            held = genes_at(b.genes, c.chrom, c.start0 + x + REPEAT_WINDOW // 2 + 1)
            rows.append((seq, {"build": b.build, "chrom": c.chrom, "start0": c.start0 + x,
                               "in_gene": ",".join(held) or None}))
            if len(rows) == want:
                break
    if len(rows) < want:
        log.info("negatives: %d repeat windows of part %s found (%d asked for) among %d of its %d "
                 "candidate windows", len(rows), part, want, scanned, len(cands))
    return rows


# -------------------------------------------------------------------------------------- rows
def _row(part: str, kind: str, i: int, seq: str, **where) -> dict:
    """A negative row (module doc): its truth outcome, and the truth sentence where it is known
    without an index (none; intergenic: filled by the caller)."""
    outcome = KIND_OUTCOME[kind]
    row = {"id": f"neg-{part}-{kind}-{i}", "Sequence": seq, "kind": kind, "outcome": outcome,
           "build": None, "chrom": None, "start0": None, **dict.fromkeys(FLANK_COLUMNS),
           "similar_to": None, "in_gene": None, "gene_name": None, "Dataset": None,
           **dict.fromkeys(SPLASH_COLUMNS),
           "Annotation": NONE_SENTENCE if outcome == "none" else None}
    return {**row, **where}


def _sample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """`k` indices into `n` items in a seeded order, each once while k <= n, then again."""
    return rng.permutation(n)[np.arange(k) % n] if n else np.zeros(0, dtype=np.int64)


def _genic_rows(genic: list[dict], part: str, k: int, rng: np.random.Generator, kind: str) -> list[dict]:
    """The shuffled or similar rows, each made from a genic row drawn in a seeded order."""
    out = []
    for i, j in enumerate(_sample(len(genic), k, rng)):
        g = genic[int(j)]
        if kind == "shuffled":
            out.append(_row(part, kind, i, dinucleotide_shuffle(g["Sequence"], rng)))
            continue
        seq, a, _ = _chimera(g["Sequence"], float(rng.uniform(*SIMILAR_KEEP)), rng)
        out.append(_row(part, kind, i, seq, build=g["build"], chrom=g["chrom"],
                        start0=int(g["start"]) - 1 + a, similar_to=g["gene_name"]))
    return out


def negative_rows(data_dir: str | Path, genic_rows: pl.DataFrame | Sequence[dict], part: str,
                  per_kind: int, seed: int, window: int = DEFAULT_WINDOW,
                  min_distance: int = DEFAULT_MIN_DISTANCE,
                  aligners: Callable[[str], mappy.Aligner] | None = None) -> list[dict]:
    """`per_kind` rows of each of NEGATIVE_KINDS from `part` of the reference (fewer where it
    holds fewer intergenic or repeat windows: logged), deterministic for a seed.

    genic_rows : dataset rows (Sequence, build, chrom, 1-based start, gene_name) that the
        shuffled and similar rows are made from: the caller passes the rows of the same part
        (its split's rows); none -> no such rows (logged).
    aligners : build -> its `repeat_aligner`, for a caller that keeps them across calls
        (`ReferenceCopies.aligner`); None -> built here when first needed, dropped on return.
    Returns dicts with "id", "Sequence", "kind", "outcome" (KIND_OUTCOME), "build", "chrom",
    "start0" (0-based, of the reference piece the sequence or its kept part comes from; None for
    random, shuffled and foreign), FLANK_COLUMNS (intergenic rows), "similar_to" (similar rows:
    the gene), "in_gene" (repeat rows: the genes holding the window, module doc), "gene_name",
    "Dataset" and the SPLASH columns (None), and "Annotation": the truth sentence where it is
    known without an index (none, intergenic), else None. Random and
    foreign sequences are `window` bases, shuffled and similar ones as long as their genic row,
    repeats REPEAT_WINDOW.
    """
    if part not in SPLITS:
        raise ValueError(f"part must be one of {SPLITS}, got {part!r}")
    genic = genic_rows.to_dicts() if isinstance(genic_rows, pl.DataFrame) else list(genic_rows)
    if not genic:
        log.info("negatives: no genic rows given: no shuffled or similar rows")
    builds = _builds(data_dir)

    def rng(kind: str) -> np.random.Generator:  # one stream per kind and part
        return np.random.default_rng([seed, NEGATIVE_KINDS.index(kind), SPLITS.index(part)])

    r = rng("random")
    rows = [_row(part, "random", i, random_sequence(window, r)) for i in range(per_kind)]
    rows += _genic_rows(genic, part, per_kind, rng("shuffled"), "shuffled")
    f = rng("foreign")
    rows += [_row(part, "foreign", i, foreign_sequence(window, f)) for i in range(per_kind)]
    rows += _intergenic_rows(builds, part, per_kind, rng("intergenic"), window, min_distance)
    rows += _genic_rows(genic, part, per_kind, rng("similar"), "similar")
    aligners = aligners or ReferenceCopies(data_dir).aligner
    repeats = _repeat_rows(builds, part, per_kind, rng("repeat"), aligners)
    rows += [_row(part, "repeat", i, seq, **where) for i, (seq, where) in enumerate(repeats)]
    return rows


def _intergenic_rows(builds: list[_Build], part: str, k: int, rng: np.random.Generator, window: int,
                     min_distance: int) -> list[dict]:
    """Up to `k` intergenic windows of `part` (`intergenic_windows`), drawn without repeats."""
    stride = window
    frames = [_build_intergenic(b, window, stride, min_distance) for b in builds]
    w = pl.concat(frames).filter(pl.col("part") == part) if frames else pl.DataFrame()
    if w.height < k:
        log.info("negatives: %d intergenic windows of part %s (%d asked for)", w.height, part, k)
    pick = rng.permutation(w.height)[:k]
    out = []
    for i, x in enumerate(w[pick].iter_rows(named=True) if len(pick) else []):
        flank = {c: x[c] for c in FLANK_COLUMNS}
        out.append(_row(part, "intergenic", i, x["Sequence"], build=x["build"], chrom=x["chrom"],
                        start0=x["start0"], Annotation=intergenic_sentence(x["chrom"], *flank.values()),
                        **flank))
    return out
