"""SIMULATED sequencing samples from the bundle's reference regions with its real variants applied.

The output is simulated data for running SPLASH end to end (the bundle's real read sets are too
few and too small to score every dataset row); it is never presented as real. Every file says so:
`SIMULATED_<sample>.fastq.gz`, `README.txt`, read names starting `@SIMULATED_`.

Model (every random draw comes from `seed`; builds are simulated and written apart):

- Samples `sample01` .. `sampleNN`, diploid (two haplotypes per reference record). Group A is the
  first `n // 2` samples, group B the rest.
- Germline (`GERMLINE_SOURCES`: dbSNP, ESP, GIAB_NA12878_truth): each haplotype carries the ALT
  independently with probability f (Hardy-Weinberg), f = the `maf` column of the variant TSV
  beside the VCF (the VEP cache's 1000 Genomes global MAF; taken as the ALT frequency, since the
  bundle does not say which allele is minor), else `default_af` (0.001: records without a 1000
  Genomes MAF are mostly rare).
- Events (`EVENT_SOURCES`: COSMIC, ClinVar, HGMD-PUBLIC): heterozygous in every group-A sample,
  on a haplotype drawn per sample, absent from group B. A record without an ALT (`.`, the
  bundle's COSMIC and HGMD rows) gets a drawn ALT: its first REF base is replaced by one of the
  three other bases, uniformly (REF[1:] kept); truth.tsv marks such alleles `alt_drawn`.
- Skipped and counted: other sources, records outside the reference records, REF not matching
  the reference (an N in the reference matches anything), germline records without ALT, ALTs
  with characters other than ACGTN.
- Overlaps on one haplotype: events are placed first (in position order, a later overlapping
  event is dropped), then germline records that overlap no placed event, again greedily in
  position order. Dropped placements are counted; truth.tsv lists only applied alleles.
- Reads: per record, round(depth * L / read_len) reads split evenly over the two haplotypes,
  start positions uniform over the haplotype sequence, half of them reverse-complemented,
  substitution errors at `error_rate` (uniform among the other three bases; N stays N), a
  constant quality Q = round(-10 log10(error_rate)) capped at 41. Records shorter than a read are
  skipped. Single-end, gzip FASTQ (zlib level 1: the files are large and regenerable).

Read names: `@SIMULATED_<sample>:<n> <chrom>:<pos>:<strand>:hap<h>` with pos the 1-based reference
position of the read's leftmost base (inside an insertion: its anchor base).
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from llamadna.constants import BUILDS
from llamadna.data.paths import AssemblySet, discover_sets
from llamadna.errors import ConfigError, InputError
from llamadna.io.atomic import atomic_write
from llamadna.io.chroms import UnknownChromosomeError, normalise_chrom
from llamadna.io.fasta import Reference, read_reference, ref_allele_matches
from llamadna.io.tables import read_tsv
from llamadna.io.variants import TSV_COLUMNS, read_variants
from llamadna.progress import Progress, no_progress

log = logging.getLogger(__name__)

GERMLINE_SOURCES = ("dbSNP", "ESP", "GIAB_NA12878_truth")
EVENT_SOURCES = ("COSMIC", "ClinVar", "HGMD-PUBLIC")
GROUP_A, GROUP_B = "A", "B"
SIMULATED_NOTE = "SIMULATED reads, not real data"
SAMPLE_SHEET_COLUMNS = ["sample", "path", "group", "build"]
TRUTH_COLUMNS = [
    "sample", "group", "chrom", "pos", "ref", "alt", "source", "genotype", "variant_id", "kind",
    "alt_drawn",
]
MAX_QUALITY = 41
_CHUNK_READS = 100_000  # reads formatted at a time: bounds memory to ~30 MB per worker

_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
_CODE = np.full(256, 4, dtype=np.uint8)  # A C G T -> 0..3, anything else (N) -> 4
for _i, _c in enumerate(b"ACGT"):
    _CODE[_c] = _i
_COMP = np.arange(256, dtype=np.uint8)
for _a, _b in zip(b"ACGTN", b"TGCAN"):
    _COMP[_a] = _b


@dataclass
class SimulateConfig:
    """Options of `simulate_samples` (the model in the module docstring)."""

    n_samples: int = 8
    depth: float = 30.0  # mean read coverage per sample (both haplotypes together)
    read_len: int = 100
    error_rate: float = 0.001  # per-base substitution probability
    seed: int = 0
    default_af: float = 0.001  # ALT frequency of germline records without a `maf`
    germline_sources: tuple[str, ...] = GERMLINE_SOURCES
    event_sources: tuple[str, ...] = EVENT_SOURCES
    threads: int = 0  # FASTQ writers in parallel (zlib releases the GIL); 0 = one per CPU
    compresslevel: int = 1

    def __post_init__(self) -> None:
        if self.n_samples < 2:
            raise ConfigError(f"n_samples must be >= 2 (groups A and B), got {self.n_samples}")
        if self.depth <= 0:
            raise ConfigError(f"depth must be > 0, got {self.depth}")
        if self.read_len < 1:
            raise ConfigError(f"read_len must be >= 1, got {self.read_len}")
        if not 0 <= self.error_rate < 0.75:
            raise ConfigError(f"error_rate must be in [0, 0.75), got {self.error_rate}")
        if not 0 <= self.default_af <= 1:
            raise ConfigError(f"default_af must be in [0, 1], got {self.default_af}")
        self.germline_sources = tuple(self.germline_sources)
        self.event_sources = tuple(self.event_sources)
        both = set(self.germline_sources) & set(self.event_sources)
        if both:
            raise ConfigError(f"sources {sorted(both)} are both germline and event sources")

    @property
    def samples(self) -> list[str]:
        w = max(2, len(str(self.n_samples)))
        return [f"sample{i + 1:0{w}d}" for i in range(self.n_samples)]

    @property
    def groups(self) -> list[str]:
        n_a = self.n_samples // 2
        return [GROUP_A] * n_a + [GROUP_B] * (self.n_samples - n_a)

    @property
    def quality(self) -> int:
        if self.error_rate == 0:
            return MAX_QUALITY
        return min(MAX_QUALITY, round(-10 * math.log10(self.error_rate)))


# --------------------------------------------------------------------------- variants


def _beside_tsv(path: Path) -> Path | None:
    """The variant TSV holding `maf` for a VCF (`variants.vcf.gz` -> `variants.tsv.gz`)."""
    name = path.name
    if ".vcf" not in name:
        return path
    cand = path.with_name(name[: name.index(".vcf")] + ".tsv.gz")
    return cand if cand.exists() else None


def read_frequencies(path: Path) -> pl.DataFrame | None:
    """(chrom, pos, ref, alt, variant_id, af) from a variant TSV with a `maf` column, else None.

    Empty or `.` means no frequency (null); anything not a number in [0, 1] is an error.
    """
    df = read_tsv(path, TSV_COLUMNS, "variant table", int_columns=("pos",))
    if "maf" not in df.columns:
        return None
    raw = pl.when(pl.col("maf").is_in(["", "."])).then(None).otherwise(pl.col("maf"))
    df = df.with_columns(raw.alias("maf"))
    af = df["maf"].cast(pl.Float64, strict=False)
    bad = df.filter((af.is_null() & df["maf"].is_not_null()) | (af < 0) | (af > 1))
    if bad.height:
        r = bad.row(0, named=True)
        raise InputError(path, f"maf {r['maf']!r}: expected a frequency in [0, 1]", line=r["line"])
    mapping = {}
    for name in df["chrom"].unique().to_list():
        try:
            mapping[name] = normalise_chrom(name)
        except UnknownChromosomeError as exc:
            line = int(df.filter(pl.col("chrom") == name)["line"][0])
            raise InputError(path, str(exc), line=line) from None
    return df.select(
        pl.col("chrom").replace_strict(mapping), "pos", pl.col("ref").str.to_uppercase(),
        pl.col("alt").fill_null("."), pl.col("id").alias("variant_id"), af.alias("af"),
    ).unique(subset=["chrom", "pos", "ref", "alt", "variant_id"], keep="first", maintain_order=True)


@dataclass
class SetVariants:
    """Variants of one build that can be simulated, as parallel arrays (one entry per record)."""

    table: pl.DataFrame  # chrom, pos, ref, alt, variant_id, source, af, kind, alt_drawn
    contig: np.ndarray  # (V,) index into Reference.contigs
    start: np.ndarray  # (V,) 0-based start within the contig sequence
    ref_len: np.ndarray  # (V,)
    alt: list[bytes]  # (V,) ALT allele bytes
    is_event: np.ndarray  # (V,) bool
    counts: dict = field(default_factory=dict)


def prepare_variants(
    aset: AssemblySet, ref: Reference, opts: SimulateConfig, rng: np.random.Generator
) -> SetVariants:
    """Read, filter and classify one build's variants; draw ALTs for event records without one."""
    var = read_variants(aset.variants, build=aset.build)
    counts: Counter = Counter(read=var.height)
    var = _with_frequencies(var, aset, opts, counts)
    var = _simulated_records(var, opts, counts)
    var, contig, pos0, ref_len = _on_reference(var, ref, counts)
    alts, drawn = _draw_missing_alts(var, rng)
    counts["events_alt_drawn"] = int(drawn.sum())
    event = var["source"].is_in(list(opts.event_sources)).to_numpy()
    table = var.select("chrom", "pos", "ref", "variant_id", "source", "af").with_columns(
        pl.Series("alt", alts, dtype=pl.Utf8),
        pl.Series("kind", np.where(event, "event", "germline")),
        pl.Series("alt_drawn", drawn),
    )
    counts["germline_records"] = int((~event).sum())
    counts["event_records"] = int(event.sum())
    starts = np.array([c.start0 for c in ref.contigs], dtype=np.int64)
    return SetVariants(
        table=table, contig=contig, start=pos0 - starts[contig],
        ref_len=ref_len, alt=[a.encode() for a in alts], is_event=event, counts=dict(counts),
    )


def _with_frequencies(var: pl.DataFrame, aset: AssemblySet, opts: SimulateConfig,
                      counts: Counter) -> pl.DataFrame:
    """Add `af`: the ALT frequency from the variant TSV beside the VCF (`maf`), else null."""
    tsv = _beside_tsv(aset.variants)
    freqs = read_frequencies(tsv) if tsv is not None else None
    if freqs is not None:
        var = var.join(freqs, on=["chrom", "pos", "ref", "alt", "variant_id"], how="left")
    else:
        var = var.with_columns(pl.lit(None, pl.Float64).alias("af"))
    counts["frequency_from_maf"] = int(
        var.filter(pl.col("source").is_in(list(opts.germline_sources)))["af"].is_not_null().sum()
    )
    return var


def _simulated_records(var: pl.DataFrame, opts: SimulateConfig, counts: Counter) -> pl.DataFrame:
    """Keep the event and germline records that can be simulated (counting the others)."""
    is_event = pl.col("source").is_in(list(opts.event_sources))
    is_germ = pl.col("source").is_in(list(opts.germline_sources))
    for src, n in var.filter(~is_event & ~is_germ).group_by("source").len().iter_rows():
        counts[f"skipped_source_not_simulated:{src}"] += n
    var = var.filter(is_event | is_germ)
    no_alt = is_germ & (pl.col("alt") == ".")
    counts["skipped_germline_without_alt"] = int(var.select(no_alt.sum()).item())
    var = var.filter(~no_alt)
    symbolic = ~pl.col("alt").str.contains(r"^([ACGTNacgtn]+|\.)$")
    counts["skipped_alt_not_ACGTN"] = int(var.select(symbolic.sum()).item())
    return var.filter(~symbolic)


def _on_reference(var: pl.DataFrame, ref: Reference, counts: Counter
                  ) -> tuple[pl.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Keep the records inside a reference record whose REF equals the reference; returns them
    with their record index, 0-based position and REF length (each (V,))."""
    pos0 = var["pos"].to_numpy().astype(np.int64) - 1
    ref_len = var["ref"].str.len_bytes().to_numpy().astype(np.int64)
    contig = np.full(var.height, -1, dtype=np.int64)
    chrom = var["chrom"].to_numpy()
    for c in np.unique(chrom) if var.height else []:
        sel = np.flatnonzero(chrom == c)
        contig[sel] = ref.locate(str(c), pos0[sel], pos0[sel] + ref_len[sel])
    inside = contig >= 0
    counts["skipped_outside_reference"] = int((~inside).sum())
    var, pos0, ref_len, contig = var.filter(inside), pos0[inside], ref_len[inside], contig[inside]
    match = ref_allele_matches(ref, contig, pos0, var["ref"].to_list())
    counts["skipped_ref_mismatch"] = int((~match).sum())
    return var.filter(match), contig[match], pos0[match], ref_len[match]


def _draw_missing_alts(var: pl.DataFrame, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    """ALT per record (upper case); for event records without one (`.`), REF[0] becomes one of
    the 3 other bases (any of 4 if N). Returns (alts, drawn mask (V,))."""
    refs = var["ref"].to_list()
    alts = var["alt"].str.to_uppercase().to_list()
    drawn = np.zeros(var.height, dtype=bool)
    dots = [i for i, a in enumerate(alts) if a == "."]
    if dots:
        first = _CODE[np.frombuffer("".join(refs[i][0] for i in dots).encode(), dtype=np.uint8)]
        shift = rng.integers(1, 4, len(dots))
        anyb = rng.integers(0, 4, len(dots))
        new = _BASES[np.where(first < 4, (first + shift) % 4, anyb)]
        for i, b in zip(dots, new.tobytes().decode()):
            alts[i] = b + refs[i][1:]
        drawn[dots] = True
    return alts, drawn


def _greedy_non_overlapping(key_start: np.ndarray, key_end: np.ndarray) -> np.ndarray:
    """Keep intervals in start order, dropping any that overlaps one already kept. -> bool mask.

    A loop over variants (hundreds per haplotype), not over bases.
    """
    order = np.lexsort((key_end, key_start))
    keep = np.zeros(len(key_start), dtype=bool)
    last_end = -1
    for i in order:
        if key_start[i] >= last_end:
            keep[i] = True
            last_end = key_end[i]
    return keep


def draw_genotypes(
    sv: SetVariants, opts: SimulateConfig, rng: np.random.Generator
) -> tuple[np.ndarray, Counter]:
    """Applied alleles per (record, sample, haplotype) after overlap resolution: (V, S, 2) bool."""
    n_var, n_s = len(sv.contig), opts.n_samples
    n_a = opts.groups.count(GROUP_A)
    af = sv.table["af"].fill_null(opts.default_af).to_numpy()
    carry = np.zeros((n_var, n_s, 2), dtype=bool)
    germ = np.flatnonzero(~sv.is_event)
    carry[germ] = rng.random((len(germ), n_s, 2)) < af[germ, None, None]
    ev = np.flatnonzero(sv.is_event)
    hap = rng.integers(0, 2, (len(ev), n_a))  # (E, A) haplotype of each event per group-A sample
    for h in (0, 1):
        carry[ev, :n_a, h] = hap == h

    # global coordinates: records never overlap across contigs
    gstart = sv.contig * (1 << 40) + sv.start
    gend = gstart + sv.ref_len
    dropped: Counter = Counter()
    for s in range(n_s):
        for h in (0, 1):
            e = ev[carry[ev, s, h]]
            ke = e[_greedy_non_overlapping(gstart[e], gend[e])]
            g = germ[carry[germ, s, h]]
            if len(ke) and len(g):
                # kept events do not overlap: sorted by start they are sorted by end too
                o = np.argsort(gstart[ke])
                es, ee = gstart[ke][o], gend[ke][o]
                j = np.searchsorted(es, gend[g], side="left") - 1
                hit = (j >= 0) & (ee[np.clip(j, 0, None)] > gstart[g])
                g = g[~hit]
            kg = g[_greedy_non_overlapping(gstart[g], gend[g])]
            dropped["event"] += int(carry[ev, s, h].sum()) - len(ke)
            dropped["germline"] += int(carry[germ, s, h].sum()) - len(kg)
            carry[:, s, h] = False
            carry[ke, s, h] = True
            carry[kg, s, h] = True
    return carry, dropped


def truth_table(sv: SetVariants, carry: np.ndarray, opts: SimulateConfig) -> pl.DataFrame:
    """One row per (sample, applied record) with its phased genotype (hap0|hap1)."""
    frames = []
    for s, (name, group) in enumerate(zip(opts.samples, opts.groups)):
        h0, h1 = carry[:, s, 0], carry[:, s, 1]
        idx = np.flatnonzero(h0 | h1)
        gt = np.where(h0[idx] & h1[idx], "1|1", np.where(h0[idx], "1|0", "0|1"))
        frames.append(sv.table[idx].with_columns(
            pl.lit(name).alias("sample"), pl.lit(group).alias("group"),
            pl.Series("genotype", gt, dtype=pl.Utf8),
        ))
    return pl.concat(frames).select(TRUTH_COLUMNS)


# --------------------------------------------------------------------------- reads


def build_haplotype(
    seq: np.ndarray, start: np.ndarray, ref_len: np.ndarray, alts: list[bytes]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Apply non-overlapping alleles (sorted by start) to a record's sequence.

    Returns (haplotype (H,) uint8, hap_start (K,), ref_start (K,), lengths (K, 2) ref/alt) where
    hap_start is each allele's 0-based start on the haplotype (for mapping positions back).
    """
    if len(start) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return seq, empty, empty, np.zeros((0, 2), dtype=np.int64)
    pieces, prev = [], 0
    for s, rl, a in zip(start.tolist(), ref_len.tolist(), alts):
        pieces.append(seq[prev:s])
        pieces.append(np.frombuffer(a, dtype=np.uint8))
        prev = s + rl
    pieces.append(seq[prev:])
    alt_len = np.array([len(a) for a in alts], dtype=np.int64)
    shift = np.concatenate([[0], np.cumsum(alt_len - ref_len)[:-1]]).astype(np.int64)
    return np.concatenate(pieces), start + shift, start, np.stack([ref_len, alt_len], axis=1)


def hap_to_ref(h: np.ndarray, hap_start: np.ndarray, ref_start: np.ndarray,
               lengths: np.ndarray) -> np.ndarray:
    """0-based record position of haplotype positions h (inside an ALT: its REF start clipped)."""
    if len(hap_start) == 0:
        return h
    i = np.searchsorted(hap_start, h, side="right") - 1
    ic = np.clip(i, 0, None)
    off = h - hap_start[ic]
    rl, al = lengths[ic, 0], lengths[ic, 1]
    inside = ref_start[ic] + np.minimum(off, np.maximum(rl - 1, 0))
    after = ref_start[ic] + rl + off - al
    return np.where(i < 0, h, np.where(off < al, inside, after))


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal digits: (N,) int -> (N, width) uint8 ASCII."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[:, None] // powers) % 10 + ord("0")).astype(np.uint8)


def _reads(hap: np.ndarray, n: int, opts: SimulateConfig, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n reads from a haplotype: (starts (n,), reverse (n,) bool, sequences (n, L) uint8)."""
    L = opts.read_len
    starts = rng.integers(0, len(hap) - L + 1, n)
    seqs = np.lib.stride_tricks.sliding_window_view(hap, L)[starts]  # (n, L) copy
    reverse = np.zeros(n, dtype=bool)
    reverse[rng.permutation(n)[: n // 2]] = True
    seqs[reverse] = _COMP[seqs[reverse, ::-1]]
    if opts.error_rate > 0:
        flat = seqs.reshape(-1)
        k = rng.binomial(flat.size, opts.error_rate)
        idx = np.unique(rng.integers(0, flat.size, k))  # rare repeats merge: rate ~ error_rate
        code = _CODE[flat[idx]]
        new = _BASES[(code + rng.integers(1, 4, len(idx))) % 4]
        acgt = code < 4
        flat[idx[acgt]] = new[acgt]
    return starts, reverse, seqs


def _fastq_records(head: bytes, numbers: np.ndarray, num_w: int, mid: bytes, pos1: np.ndarray,
                   pos_w: int, reverse: np.ndarray, tail: bytes, seqs: np.ndarray,
                   qual: int) -> bytes:
    """Fixed-width FASTQ records built in one (n, width) byte array, no per-read Python."""
    n, L = seqs.shape
    parts = [len(head), num_w, len(mid), pos_w, 1, 1, len(tail), L, 3, L, 1]
    off = np.concatenate([[0], np.cumsum(parts)])
    buf = np.empty((n, off[-1]), dtype=np.uint8)
    buf[:, off[0]:off[1]] = np.frombuffer(head, dtype=np.uint8)
    buf[:, off[1]:off[2]] = _digits(numbers, num_w)
    buf[:, off[2]:off[3]] = np.frombuffer(mid, dtype=np.uint8)
    buf[:, off[3]:off[4]] = _digits(pos1, pos_w)
    buf[:, off[4]] = ord(":")
    buf[:, off[5]] = np.where(reverse, ord("-"), ord("+"))
    buf[:, off[6]:off[7]] = np.frombuffer(tail, dtype=np.uint8)
    buf[:, off[7]:off[8]] = seqs
    buf[:, off[8]:off[9]] = np.frombuffer(b"\n+\n", dtype=np.uint8)
    buf[:, off[9]:off[10]] = 33 + qual
    buf[:, off[10]] = ord("\n")
    return buf.tobytes()


def reads_per_record(length: int, opts: SimulateConfig) -> int:
    if length < opts.read_len:
        return 0
    return round(opts.depth * length / opts.read_len)


def write_sample_fastq(
    path: Path, sample: str, ref: Reference, sv: SetVariants, carry_s: np.ndarray,
    opts: SimulateConfig, rng: np.random.Generator,
) -> dict:
    """Write one sample's reads (all records, both haplotypes) as gzip FASTQ. -> stats."""
    total = sum(reads_per_record(len(c.seq), opts) for c in ref.contigs)
    num_w = max(1, len(str(total)))
    pos_w = max(len(str(c.end0)) for c in ref.contigs)
    stats = {"reads": 0, "bases": 0}

    def write(tmp: Path) -> None:
        done = 0
        with gzip.open(tmp, "wb", compresslevel=opts.compresslevel) as fh:
            for ci, c in enumerate(ref.contigs):
                n = reads_per_record(len(c.seq), opts)
                if n == 0:
                    continue
                for h, n_h in ((0, n // 2), (1, n - n // 2)):
                    sel = np.flatnonzero(carry_s[:, h] & (sv.contig == ci))
                    sel = sel[np.argsort(sv.start[sel], kind="stable")]
                    hap, hs, rs, lens = build_haplotype(
                        c.seq, sv.start[sel], sv.ref_len[sel], [sv.alt[i] for i in sel]
                    )
                    if len(hap) < opts.read_len:  # deletions shortened a borderline record
                        continue
                    head = f"@SIMULATED_{sample}:".encode()
                    mid = f" {c.chrom}:".encode()
                    tail = f":hap{h}\n".encode()
                    for k in range(0, n_h, _CHUNK_READS):
                        m = min(_CHUNK_READS, n_h - k)
                        starts, rev, seqs = _reads(hap, m, opts, rng)
                        pos1 = c.start0 + hap_to_ref(starts, hs, rs, lens) + 1
                        nums = np.arange(done + 1, done + m + 1, dtype=np.int64)
                        fh.write(_fastq_records(head, nums, num_w, mid, pos1, pos_w, rev, tail,
                                                seqs, opts.quality))
                        done += m
            stats["reads"] = done
            stats["bases"] = done * opts.read_len

    atomic_write(path, write)
    return stats


# --------------------------------------------------------------------------- whole bundle


def _rng(seed: int, build: str, *key: int) -> np.random.Generator:
    """Independent seeded stream per (build, purpose, sample): results do not depend on threads."""
    return np.random.default_rng([seed, BUILDS.index(build) if build in BUILDS else 99, *key])


def simulate_samples(
    data_dir: str | Path, out_dir: str | Path, opts: SimulateConfig | None = None,
    sets: list[AssemblySet] | None = None, progress: Progress = no_progress,
) -> dict:
    """Simulate FASTQ samples for every build of a bundle into OUT/<build>/. -> summary dict.

    Writes per build: SIMULATED_<sample>.fastq.gz, samples.tsv (SAMPLE_SHEET_COLUMNS),
    truth.tsv (TRUTH_COLUMNS), README.txt; and OUT/README.txt, OUT/simulation.json.
    """
    t0 = time.perf_counter()
    opts = opts or SimulateConfig()
    out = Path(out_dir)
    sets = sets if sets is not None else discover_sets(data_dir)
    summary: dict = {"note": SIMULATED_NOTE, "options": asdict(opts), "builds": {}}
    jobs: list[tuple] = []
    for aset in sets:
        summary["builds"][aset.build], build_jobs = _simulate_build(aset, opts, out, progress)
        jobs += build_jobs
    _write_fastqs(jobs, opts, summary["builds"], progress)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    atomic_write(out / "README.txt", lambda p: p.write_text(_readme(opts, None, None)))
    atomic_write(out / "simulation.json",
                 lambda p: p.write_text(json.dumps(summary, indent=2, default=str) + "\n"))
    log.info("simulated %d samples x %d builds in %.1f s", opts.n_samples, len(sets),
             summary["seconds"])
    return summary


def _simulate_build(aset: AssemblySet, opts: SimulateConfig, out: Path,
                    progress: Progress) -> tuple[dict, list[tuple]]:
    """Place one build's variants and write its truth.tsv, samples.tsv and README.txt into
    OUT/<build>/. Returns its summary entry (its "samples" filled by `_write_fastqs`) and one
    FASTQ job per sample."""
    b = aset.build
    progress(f"{b}: reading reference and variants", 0, 2)
    ref = read_reference(aset.fasta)
    sv = prepare_variants(aset, ref, opts, _rng(opts.seed, b, 0))
    progress(f"{b}: drawing genotypes", 1, 2)
    carry, dropped = draw_genotypes(sv, opts, _rng(opts.seed, b, 1))
    truth = truth_table(sv, carry, opts)
    bdir = out / b
    bdir.mkdir(parents=True, exist_ok=True)
    atomic_write(bdir / "truth.tsv", lambda p: truth.write_csv(p, separator="\t"))
    sheet = _sample_sheet(opts, b)
    atomic_write(bdir / "samples.tsv", lambda p: sheet.write_csv(p, separator="\t"))
    atomic_write(bdir / "README.txt", lambda p: p.write_text(_readme(opts, b, aset)))
    skipped = [c.name for c in ref.contigs if reads_per_record(len(c.seq), opts) == 0]
    entry = {
        "fasta": str(aset.fasta), "variants": str(aset.variants),
        "records": len(ref.contigs), "reference_bp": ref.total_length,
        "records_shorter_than_read": skipped,
        "variant_counts": sv.counts,
        "dropped_overlapping_placements": dict(dropped),
        "applied_per_sample": {
            s: {k: int(n) for k, n in truth.filter(pl.col("sample") == s)
                .group_by("kind").len().iter_rows()}
            for s in opts.samples
        },
        "samples": {},
    }
    progress(f"{b}: variants placed", 2, 2)
    jobs = [(b, si, s, ref, sv, carry, bdir / f"SIMULATED_{s}.fastq.gz")
            for si, s in enumerate(opts.samples)]
    return entry, jobs


def _sample_sheet(opts: SimulateConfig, build: str) -> pl.DataFrame:
    """The build's sample sheet, as `llamadna splash --samples` reads it."""
    return pl.DataFrame(dict(zip(SAMPLE_SHEET_COLUMNS, [
        opts.samples,
        # relative to the sheet's folder (as `llamadna splash --samples` reads it): movable
        [f"SIMULATED_{s}.fastq.gz" for s in opts.samples],
        opts.groups,
        [build] * opts.n_samples,
    ], strict=True)))


def _write_fastqs(jobs: list[tuple], opts: SimulateConfig, builds: dict,
                  progress: Progress) -> None:
    """Write every sample's FASTQ (threads; each sample its own seeded stream) and record its
    statistics in `builds[build]["samples"]`."""

    def run(job):
        b, si, s, ref, sv, carry, path = job
        return b, s, write_sample_fastq(path, s, ref, sv, carry[:, si, :], opts,
                                        _rng(opts.seed, b, 2, si))

    threads = opts.threads or min(len(jobs), max(1, len(os.sched_getaffinity(0))))
    done = 0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for b, s, st in pool.map(run, jobs):
            builds[b]["samples"][s] = {
                **st, "group": opts.groups[opts.samples.index(s)],
                "depth": st["bases"] / max(1, builds[b]["reference_bp"]),
            }
            done += 1
            progress("writing FASTQ", done, len(jobs))


def _readme(opts: SimulateConfig, build: str | None, aset: AssemblySet | None) -> str:
    where = (f"Build {build}: reference {aset.fasta.name}, variants {aset.variants.name}.\n"
             if aset is not None else "One folder per build (builds are never mixed).\n")
    return (
        f"{SIMULATED_NOTE}.\n\n"
        "Generated by `llamadna simulate-samples` (llamadna.data.simulate) from the data bundle's\n"
        "reference regions with its real variant records applied; the reads, genotypes and the\n"
        "ALT alleles drawn for records without one are simulated. Do not use as real data.\n"
        f"{where}"
        f"Samples: {opts.n_samples} ({opts.groups.count(GROUP_A)} in group A, "
        f"{opts.groups.count(GROUP_B)} in group B); depth {opts.depth}x, single-end "
        f"{opts.read_len} bp reads, substitution error rate {opts.error_rate}, seed {opts.seed}.\n"
        f"Germline sources {', '.join(opts.germline_sources)}: ALT at the bundle's `maf` "
        f"(default {opts.default_af}). Event sources {', '.join(opts.event_sources)}: "
        "heterozygous in group A only.\n"
        "samples.tsv: sample sheet for `llamadna splash --samples`; truth.tsv: every applied "
        "allele per sample.\n"
    )
