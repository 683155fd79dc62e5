"""Baselines the model must beat: a reference lookup (what a user already has), the majority
sentence, and shuffled sequences (composition kept, order destroyed).

`ReferenceLookup` maps a query onto the reference FASTA of the row's build with an aligner
(minimap2 through PyPI `mappy`, or NCBI `blastn`) and reads the annotation off the mapped position
with the dataset builder's own functions (`load_genes` + `resolve_genes` for the genes and
descriptions, `assign_genes` for the overlapping-gene rule, `add_gene_phenotypes`/`phenotype_expr`
for the phenotype), so a lookup of an undiverged dataset window gives back that row's gene and
chromosome. The source label comes only from the `known_variants` the caller passes (the training
split's rows): the lookup never reads the bundle's variant file, which holds the test rows' own
variants.

Choices (why):
- **One index per build over all its records**, built from a temporary FASTA whose records are
  named by their index (0, 1, ...), so a hit maps back to the record's chromosome and 0-based
  start (`read_reference` parses `chr21:1000-2000` names): a query is mapped once per build, and
  its MAPQ accounts for copies of the window in every record.
- **Aligners** (`make_aligner`): `minimap2` = the sensitive settings `MINIMAP2_SENSITIVE`, chosen
  by a measured sweep (bench/bench_lookups.py, docs/BENCHMARKS.md "Reference lookups"); `map-ont`
  and `sr` = minimap2's presets; `blastn` = `blastn -task blastn` (NCBI BLAST+, Debian package
  `ncbi-blast+`), `BLASTN_SETTINGS`. Every lookup states what it used in `description`.
- **Position** = the reference base that the query's centre base (offset L // 2, read along
  the reference's forward strand) aligns to, found by walking the alignment (minimap2's CIGAR,
  blastn's gapped HSP), so indels in a diverged query do not shift it; an inserted centre base
  maps to the next reference base. A dataset window is centred on its variant, so for an
  undiverged window this is the variant's position. minimap2: the primary hit; blastn: the
  highest-bitscore HSP (either strand) that covers the centre base; none = unmapped.
- **Source label** = the label (`Dataset`) of the known variant nearest that position on the same
  build and chromosome. Ties: the smaller distance, then the upstream (lower-position) variant,
  then, for several rows at one position, the label of most rows there (then alphabetical).
  Unmapped, or no known variant on that chromosome: `fallback_source` (the caller passes the
  training majority class).
- A lookup cannot know a variant's own phenotype: the phenotype is the gene's (ClinVar, OMIM,
  Orphanet as in the builder), else "not specified".
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import subprocess
import tempfile
import weakref
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import mappy
import numpy as np
import polars as pl

from llamadna.constants import NOT_SPECIFIED
from llamadna.data.build import add_gene_phenotypes, assign_genes, gene_text_exprs, load_genes
from llamadna.data.genes import gene_phenotype_table, phenotype_expr, resolve_genes
from llamadna.data.paths import AssemblySet, discover_sets, shared_table
from llamadna.data.template import annotation_sentence
from llamadna.errors import ConfigError
from llamadna.io.fasta import read_reference
from llamadna.io.tables import read_gene_info, read_gene_phenotypes

log = logging.getLogger(__name__)

# minimap2 settings (mappy.Aligner keyword arguments; the rest minimap2's defaults) for diverged
# 512-base windows, chosen by the measured sweep of bench/bench_lookups.py (docs/BENCHMARKS.md,
# "Reference lookups"): on the bundle's GRCh38 regions they map back 93 % of windows at 30 %
# divergence (map-ont 0 %, blastn 84 %), no random sequence, at ~1.9x blastn's speed.
MINIMAP2_SENSITIVE: dict = {"k": 8, "w": 2, "min_cnt": 2, "min_chain_score": 20, "min_dp_score": 40}
# blastn settings: word size 11 (-task blastn), both strands; few targets and HSPs per query,
# since only the best HSP over the centre base is used.
BLASTN_SETTINGS: dict = {"evalue": 1e-5, "max_target_seqs": 5, "max_hsps": 5}
BLASTN_BATCH = 500  # queries per blastn process
# aligner names make_aligner knows
ALIGNERS = ("minimap2", "map-ont", "sr", "blastn")
DEFAULT_ALIGNER = "minimap2"
# Columns of the known-variant table (dataset columns: the training rows of a split).
KNOWN_VARIANT_COLUMNS = ("build", "chrom", "variant_pos", "Dataset")
_KNOWN_DTYPES = (pl.Utf8, pl.Utf8, pl.Int64, pl.Utf8)
# Fields of a lookup result, in order (those of a prediction, plus how the query mapped; mapq is
# minimap2's MAPQ, None for blastn).
LOOKUP_FIELDS = (
    "annotation", "chrom", "gene", "description", "transcript_type", "phenotype", "source",
    "mapped", "mapq", "position",
)
# CIGAR operation codes (minimap2 / BAM): which consume the query and the reference.
_CIGAR_BOTH = (0, 7, 8)  # M, =, X
_CIGAR_QUERY = (1,)  # I
_CIGAR_REF = (2, 3)  # D, N


def unmapped_result(source: str | None = None) -> dict:
    """What a lookup returns when the query does not map: every field None, annotation "",
    mapped False, and `source` (the lookup's fallback source)."""
    out: dict = dict.fromkeys(LOOKUP_FIELDS)
    out["annotation"] = ""
    out["mapped"] = False
    out["source"] = source
    return out


class Hit(NamedTuple):
    """Where a query's centre base lands: index record, 0-based offset on it, MAPQ (None for
    blastn, which has none)."""

    record: int
    offset: int
    mapq: int | None


# An indexed reference: queries -> one Hit (or None: unmapped) each.
MapFn = Callable[[Sequence[str]], "list[Hit | None]"]


# --------------------------------------------------------------------------- minimap2


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


class _Minimap2Map:
    def __init__(self, aligner: mappy.Aligner) -> None:
        self.aligner = aligner
        self.buf = mappy.ThreadBuffer()

    def __call__(self, sequences: Sequence[str]) -> list[Hit | None]:
        out: list[Hit | None] = []
        for s in sequences:
            hit = None
            for h in self.aligner.map(s, buf=self.buf):  # consume all: mappy frees as it goes
                if hit is None and h.is_primary:
                    hit = Hit(int(h.ctg), hit_position(h, len(s)), int(h.mapq))
            out.append(hit)
        return out


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


def parse_blast_hits(lines: Iterable[str], qlens: Sequence[int]) -> list[Hit | None]:
    """Per query ("q<i>", length qlens[i]) the `Hit` of its best HSP covering the centre base:
    highest bitscore, then lowest e-value, then first listed. Columns: `_BLAST_FIELDS`."""
    best: dict[int, tuple[tuple[float, float], Hit]] = {}
    for line in lines:
        qid, sid, qs, qe, ss, _, ev, bits, strand, qseq, sseq = line.rstrip("\n").split("\t")
        i, n = int(qid[1:]), qlens[int(qid[1:])]
        minus = strand == "minus"
        # the query base that is base n // 2 of the query read along the reference's forward strand
        qc = n - n // 2 if minus else n // 2 + 1
        key = (float(bits), -float(ev))
        if not int(qs) <= qc <= int(qe) or (i in best and best[i][0] >= key):
            continue
        pos1 = _gapped_ref_pos(qseq, sseq, int(qs), int(ss), -1 if minus else 1, qc)
        # record names are their index; older BLAST+ may write gnl|BL_ORD_ID|<index>
        best[i] = (key, Hit(int(sid.rsplit("|", 1)[-1]), pos1 - 1, None))
    return [best[i][1] if i in best else None for i in range(len(qlens))]


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
                 threads: int | None = None) -> None:
        self.blastn, self.makeblastdb = _blast_tool("blastn"), _blast_tool("makeblastdb")
        version = subprocess.run([self.blastn, "-version"], capture_output=True, text=True,
                                 check=True).stdout.split("\n")[0]
        self.version = version.split(":")[-1].strip()  # "blastn: 2.12.0+" -> "2.12.0+"
        self.evalue, self.max_target_seqs, self.max_hsps = evalue, max_target_seqs, max_hsps
        self.batch_size, self.threads = batch_size, threads or min(8, os.cpu_count() or 1)

    @property
    def description(self) -> str:
        return (f"blastn {self.version} -task blastn -evalue {self.evalue:g} -max_target_seqs "
                f"{self.max_target_seqs} -max_hsps {self.max_hsps} (both strands)")

    def index(self, fasta: Path) -> MapFn:
        return _BlastnMap(self, fasta)


def _run(cmd: list[str]) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{os.path.basename(cmd[0])} failed ({p.returncode}): "
                           f"{p.stderr.strip()[-2000:]}")
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
        stdout = _run([c.blastn, "-task", "blastn", "-db", self.db, "-query", query,
                       "-strand", "both", "-evalue", str(c.evalue),
                       "-max_target_seqs", str(c.max_target_seqs), "-max_hsps", str(c.max_hsps),
                       "-num_threads", str(c.threads), *(["-mt_mode", "1"] if c.threads > 1 else []),
                       "-outfmt", f"6 {_BLAST_FIELDS}"])
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


# --------------------------------------------------------------------------- known variants


def known_variant_table(rows: pl.DataFrame | Iterable[Mapping]) -> pl.DataFrame:
    """The `KNOWN_VARIANT_COLUMNS` of dataset rows (a frame or dicts: the training split)."""
    if not isinstance(rows, pl.DataFrame):
        rows = list(rows)
        missing = [c for c in KNOWN_VARIANT_COLUMNS if rows and c not in rows[0]]
        if not missing:
            rows = pl.DataFrame({c: [r[c] for r in rows] for c in KNOWN_VARIANT_COLUMNS},
                                schema=dict(zip(KNOWN_VARIANT_COLUMNS, _KNOWN_DTYPES)))
    else:
        missing = [c for c in KNOWN_VARIANT_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"known variants lack the dataset columns {missing}")
    return rows.select(pl.col(c).cast(t) for c, t in zip(KNOWN_VARIANT_COLUMNS, _KNOWN_DTYPES))


@dataclass
class _NearestVariants:
    """Known variants per (build, chrom): sorted distinct 1-based positions and the label chosen
    at each (the label of most rows there, then alphabetical)."""

    pos: dict[tuple[str, str], np.ndarray]  # (build, chrom) -> (V,) int64 sorted positions
    label: dict[tuple[str, str], np.ndarray]  # (build, chrom) -> (V,) object labels

    @classmethod
    def from_table(cls, known: pl.DataFrame) -> _NearestVariants:
        v = (
            known.drop_nulls()
            .group_by(["build", "chrom", "variant_pos", "Dataset"]).len()
            .sort(["build", "chrom", "variant_pos", "len", "Dataset"],
                  descending=[False, False, False, True, False])
            .unique(subset=["build", "chrom", "variant_pos"], keep="first", maintain_order=True)
        )
        pos, label = {}, {}
        for (build, chrom), g in v.group_by(["build", "chrom"], maintain_order=True):
            pos[(build, chrom)] = g["variant_pos"].to_numpy().astype(np.int64)
            label[(build, chrom)] = np.asarray(g["Dataset"].to_list(), dtype=object)
        return cls(pos, label)

    def nearest(self, build: str, chrom: str, position: np.ndarray) -> list[str | None]:
        """Label of the variant nearest each 1-based position (ties: the upstream one); None
        where the chromosome has no known variant."""
        p = self.pos.get((build, chrom))
        if p is None:
            return [None] * len(position)
        x = np.asarray(position, dtype=np.int64)
        i = np.searchsorted(p, x, side="left")  # p[i - 1] < x <= p[i]
        left = np.clip(i - 1, 0, p.size - 1)
        right = np.clip(i, 0, p.size - 1)
        d_left = np.where(i > 0, x - p[left], np.iinfo(np.int64).max)
        d_right = np.where(i < p.size, p[right] - x, np.iinfo(np.int64).max)
        pick = np.where(d_right < d_left, right, left)
        return self.label[(build, chrom)][pick].tolist()


# --------------------------------------------------------------------------- the lookup


@dataclass
class _BuildIndex:
    map_fn: MapFn
    records: list[tuple[str, int, int]]  # index record name (= position here) -> (chrom, start0, L)
    genes: pl.DataFrame  # resolved genes of the build (assign_genes' input)
    fields: dict[tuple[str, str], dict]  # (chrom, gene_name) -> the gene's sentence fields


def index_reference(fasta: str | Path, aligner: Aligner) -> tuple[MapFn, list[tuple[str, int, int]]]:
    """Index every record of a reference FASTA (upper case, IUPAC -> N as the builder reads it)
    with `aligner`, records named by their index; returns the map function and, per index
    record, (chrom, 0-based start on the chromosome, length) to map hits back."""
    ref = read_reference(fasta)
    records = [(c.chrom, c.start0, len(c.seq)) for c in ref.contigs]
    fd, tmp = tempfile.mkstemp(suffix=".fa", prefix="llamadna_lookup_")
    try:
        with os.fdopen(fd, "wb") as fh:
            for i, c in enumerate(ref.contigs):
                fh.write(b">%d\n" % i)
                fh.write(c.seq.tobytes())
                fh.write(b"\n")
        map_fn = aligner.index(Path(tmp))
    finally:
        os.unlink(tmp)
    return _RememberedMap(map_fn), records


class _RememberedMap:
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


def _gene_fields(genes: pl.DataFrame, gene_pheno: pl.DataFrame) -> dict[tuple[str, str], dict]:
    """(chrom, gene_name) -> gene, description, transcript_type, phenotype, filled as the builder
    fills a row whose variant has no phenotype of its own."""
    g = add_gene_phenotypes(genes, gene_pheno).with_columns(
        pl.lit(None, pl.Utf8).alias("phenotype")  # a lookup knows no variant's phenotype
    ).with_columns(phenotype_expr(), *gene_text_exprs())
    return {
        (r["chrom"], r["gene_name"]): {
            "gene": r["gene_name"], "description": r["gene_description"],
            "transcript_type": r["transcript_type"], "phenotype": r["phenotype"],
        }
        for r in g.iter_rows(named=True)
    }


class ReferenceLookup:
    """Annotate a query by mapping it onto the reference and reading the annotation there.

    Parameters
    ----------
    data_dir : a data bundle (layout of ../shared/data); its assembly sets are found with
        `discover_sets` unless `sets` is given, its gene_info / gene_phenotypes tables are read.
    known_variants : the variants whose labels the lookup may use: dataset rows (frame or dicts)
        with `KNOWN_VARIANT_COLUMNS`, i.e. a split's training rows, never test rows.
    fallback_source : the label when a query does not map or its chromosome has no known
        variant (the training majority class).
    aligner : a name in `ALIGNERS` or an `Aligner`.
    variants_name : what `known_variants` are, for `description` (e.g. "training split of
        split_gene").

    Attributes
    ----------
    description : which aligner and settings, which variant table, which fallback, e.g.
        "minimap2 2.31 k=11 w=3 ...; variants: training split of split_gene (1,234 rows);
        fallback: dbSNP".
    """

    def __init__(
        self,
        data_dir: str | Path,
        known_variants: pl.DataFrame | Iterable[Mapping],
        fallback_source: str,
        aligner: str | Aligner = DEFAULT_ALIGNER,
        variants_name: str = "known variants",
        sets: list[AssemblySet] | None = None,
    ) -> None:
        data_dir = Path(data_dir)
        sets = sets if sets is not None else discover_sets(data_dir)
        info = read_gene_info(shared_table(data_dir, "gene_info.tsv.gz"))
        gene_pheno = gene_phenotype_table(
            read_gene_phenotypes(shared_table(data_dir, "gene_phenotypes.tsv.gz"))
        )
        self.aligner = make_aligner(aligner) if isinstance(aligner, str) else aligner
        self._set_variants(known_variants, fallback_source, variants_name)
        self._index: dict[str, _BuildIndex] = {}
        for aset in sets:
            if aset.build in self._index:
                raise ValueError(f"two assembly sets for build {aset.build}")
            map_fn, records = index_reference(aset.fasta, self.aligner)
            genes = resolve_genes(load_genes(aset), info)
            self._index[aset.build] = _BuildIndex(map_fn, records, genes,
                                                  _gene_fields(genes, gene_pheno))
            log.info("reference lookup %s: %d records, %d genes (%s)", aset.build, len(records),
                     genes.height, self.description)

    def _set_variants(self, known_variants, fallback_source: str, variants_name: str) -> None:
        known = known_variant_table(known_variants)
        self.fallback_source = fallback_source
        self.description = (f"{self.aligner.description}; variants: {variants_name} "
                            f"({known.height:,} rows); fallback: {fallback_source}")
        self._variants = _NearestVariants.from_table(known)

    def with_variants(
        self,
        known_variants: pl.DataFrame | Iterable[Mapping],
        fallback_source: str,
        variants_name: str = "known variants",
    ) -> ReferenceLookup:
        """The same lookup (reference indexes and genes shared, not rebuilt) with another
        known-variant table and fallback, e.g. the training rows of another split or fold."""
        other = copy.copy(self)
        other._set_variants(known_variants, fallback_source, variants_name)
        return other

    @property
    def builds(self) -> list[str]:
        return list(self._index)

    def lookup(self, sequence: str, build: str) -> dict:
        """The annotation at the position `sequence` maps to on `build` (LOOKUP_FIELDS).

        Unmapped -> `unmapped_result(fallback_source)`. Mapped outside every annotated gene ->
        chrom, position, mapq and source set, the gene fields None and annotation "" (the
        sentence needs a gene).
        """
        return self.lookup_many([sequence], [build])[0]

    def lookup_many(self, sequences: Iterable[str], builds: str | Iterable[str]) -> list[dict]:
        """`lookup` for many queries: `builds` is one build per query, or one for all."""
        seqs = list(sequences)
        builds = [builds] * len(seqs) if isinstance(builds, str) else list(builds)
        if len(builds) != len(seqs):
            raise ValueError(f"{len(seqs)} sequences but {len(builds)} builds")
        for b in set(builds) - set(self._index):
            raise ValueError(f"no reference for build {b!r}; have {self.builds}")
        out: list[dict] = [{} for _ in seqs]
        for build in dict.fromkeys(builds):
            rows = [i for i, b in enumerate(builds) if b == build]
            for i, res in zip(rows, self._lookup_build(build, [seqs[i] for i in rows])):
                out[i] = res
        return out

    def _lookup_build(self, build: str, seqs: list[str]) -> list[dict]:
        idx = self._index[build]
        out = [unmapped_result(self.fallback_source) for _ in seqs]
        rows, chroms, positions, mapqs = [], [], [], []
        for i, hit in enumerate(idx.map_fn(seqs)):
            if hit is None:
                continue
            chrom, start0, length = idx.records[hit.record]
            rows.append(i)
            chroms.append(chrom)
            positions.append(start0 + min(max(hit.offset, 0), length - 1) + 1)
            mapqs.append(hit.mapq)
        if not rows:
            return out
        hits = pl.DataFrame(
            {"row": rows, "chrom": chroms, "pos": positions, "mapq": mapqs},
            schema={"row": pl.Int64, "chrom": pl.Utf8, "pos": pl.Int64, "mapq": pl.Int64},
        )
        gene_of = dict(assign_genes(hits, idx.genes).select("row", "gene_name").iter_rows())
        pos_arr = np.asarray(positions, dtype=np.int64)
        chrom_arr = np.asarray(chroms, dtype=object)
        for chrom in dict.fromkeys(chroms):
            sel = np.flatnonzero(chrom_arr == chrom)
            labels = self._variants.nearest(build, chrom, pos_arr[sel])
            for k, label in zip(sel, labels):
                res = out[rows[k]]
                res.update(mapped=True, chrom=chrom, position=positions[k], mapq=mapqs[k],
                           source=label if label is not None else self.fallback_source)
                if rows[k] in gene_of:
                    self._fill_gene(res, idx.fields[(chrom, gene_of[rows[k]])])
        return out

    @staticmethod
    def _fill_gene(res: dict, fields: dict) -> None:
        res.update(fields)
        res["annotation"] = annotation_sentence(
            chrom=res["chrom"], gene_name=res["gene"], gene_description=res["description"],
            transcript_type=res["transcript_type"], phenotype=res["phenotype"],
            Dataset=res["source"] if res["source"] is not None else NOT_SPECIFIED,
        )


# --------------------------------------------------------------------------- trivial baselines


def majority_baseline(train_labels: Iterable[str], n: int) -> list[str]:
    """The most frequent training label, n times (ties: the lexicographically smallest)."""
    counts = Counter(train_labels)
    if not counts:
        raise ValueError("majority_baseline needs at least one training label")
    top = max(counts.values())
    label = min(k for k, c in counts.items() if c == top)
    return [label] * n


def majority_sentence(train_rows: pl.DataFrame | Iterable[Mapping], source: str | None = None) -> str:
    """The most frequent `Annotation` sentence of the training rows (a dataset frame or dicts);
    with `source`, of the rows of that source only (so the sentence names the majority class)."""
    if isinstance(train_rows, pl.DataFrame):  # two columns, not every row as a dict
        if source is not None:
            train_rows = train_rows.filter(pl.col("Dataset") == source)
        sentences = train_rows["Annotation"].to_list()
    else:
        sentences = [r["Annotation"] for r in train_rows if source is None or r["Dataset"] == source]
    if not sentences:
        raise ValueError(f"majority_sentence: no training rows of source {source!r}")
    return majority_baseline(sentences, 1)[0]


def shuffle_sequence(seq: str, rng: np.random.Generator) -> str:
    """A random permutation of the bases of `seq`: composition kept, order destroyed."""
    a = np.frombuffer(seq.encode("latin-1"), dtype=np.uint8)
    return rng.permutation(a).tobytes().decode("latin-1")
