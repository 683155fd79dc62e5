"""Baselines the model must beat: a reference lookup (what a user already has), the majority
sentence, and shuffled sequences (composition kept, order destroyed).

`ReferenceLookup` maps a query with minimap2 (PyPI `mappy`) onto the reference FASTA of one
build and reads the annotation off the mapped position with the dataset builder's own functions
(`load_genes` + `resolve_genes` for the genes and descriptions, `assign_genes` for the
overlapping-gene rule, `add_gene_phenotypes`/`phenotype_expr` for the phenotype), so a lookup of
an undiverged dataset window gives back that row's gene and chromosome.

Choices (why):
- **One index per build over all its records**, built from a temporary FASTA (`mappy.Aligner`
  takes a single sequence through `seq=`): a query is mapped once per build, and its MAPQ
  accounts for copies of the window in every record, so an ambiguous window reads as such.
- **Preset `map-ont`** (k=15, w=10): of the presets for short queries against a few-Mb
  reference it is the strongest baseline for diverged windows. On the real bundle (2,635 windows
  of 512 bp, `mutate` at 0 / 5 / 10 / 20 % divergence) it maps 100 / 100 / 99 / 18 % of windows
  with the right gene, against 100 / 100 / 90 / 6 % for `sr` (k=21, short-read scoring) and
  100 / 100 / 66 / 1 % for `map-pb`; undiverged windows are all recovered with either. `sr` is
  ~2x faster (~12,000 vs ~6,000 windows/s through `lookup_many`, one core) and gives 100 bp queries
  better-calibrated MAPQs; pass `preset="sr"` for that.
- **Position** = the reference base that the query's centre base (offset L // 2, read along
  the reference's forward strand) aligns to, found by walking the CIGAR (so indels in a
  diverged query do not shift it). A dataset window is centred on its variant, so for an
  undiverged window this is the variant's position (the REF span's centre for a multi-base REF;
  elsewhere for a window shifted inside a record edge).
- **Source label** = the source of the known variant nearest to that position on the same
  chromosome (the build's variant file, selected sources only). Ties: the smaller distance, then
  the upstream (lower-position) variant, then, for several variants at one position, the first
  source in `sources` order (ClinVar, COSMIC, dbSNP by default). None when the chromosome has no
  selected variant.
- A lookup cannot know a variant's own phenotype: the phenotype is the gene's (ClinVar, OMIM,
  Orphanet as in the builder), else "not specified".
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import mappy
import numpy as np
import polars as pl

from llamadna.constants import DEFAULT_SOURCES, NOT_SPECIFIED
from llamadna.data.build import add_gene_phenotypes, assign_genes, gene_text_exprs, load_genes
from llamadna.data.genes import gene_phenotype_table, phenotype_expr, resolve_genes
from llamadna.data.paths import AssemblySet, discover_sets, shared_table
from llamadna.data.template import annotation_sentence
from llamadna.io.fasta import read_reference
from llamadna.io.tables import read_gene_info, read_gene_phenotypes
from llamadna.io.variants import read_variants

log = logging.getLogger(__name__)

DEFAULT_PRESET = "map-ont"
# Fields of a lookup result, in order (those of a prediction, plus how the query mapped).
LOOKUP_FIELDS = (
    "annotation", "chrom", "gene", "description", "transcript_type", "phenotype", "source",
    "mapped", "mapq", "position",
)
# CIGAR operation codes (minimap2 / BAM): which consume the query and the reference.
_CIGAR_BOTH = (0, 7, 8)  # M, =, X
_CIGAR_QUERY = (1,)  # I
_CIGAR_REF = (2, 3)  # D, N


def unmapped_result() -> dict:
    """What a lookup returns when minimap2 finds no hit: every field None, annotation ""."""
    out: dict = dict.fromkeys(LOOKUP_FIELDS)
    out["annotation"] = ""
    out["mapped"] = False
    return out


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


@dataclass
class _NearestVariants:
    """Known variants of one build per chromosome: sorted distinct positions and the source
    label chosen at each (first in `sources` order)."""

    pos: dict[str, np.ndarray]  # chrom -> (V,) int64 sorted 1-based positions
    label: dict[str, np.ndarray]  # chrom -> (V,) object source labels

    @classmethod
    def from_variants(cls, var: pl.DataFrame, sources: Sequence[str]) -> _NearestVariants:
        rank = {s: i for i, s in enumerate(sources)}
        v = (
            var.filter(pl.col("source").is_in(list(sources)))
            .with_columns(pl.col("source").replace_strict(rank, return_dtype=pl.Int32).alias("rank"))
            .sort(["chrom", "pos", "rank"])
            .unique(subset=["chrom", "pos"], keep="first", maintain_order=True)
        )
        pos, label = {}, {}
        for (chrom,), g in v.group_by("chrom", maintain_order=True):
            pos[chrom] = g["pos"].to_numpy().astype(np.int64)
            label[chrom] = np.asarray(g["source"].to_list(), dtype=object)
        return cls(pos, label)

    def nearest(self, chrom: str, position: np.ndarray) -> list[str | None]:
        """Source of the variant nearest each 1-based position (ties: the upstream one)."""
        p = self.pos.get(chrom)
        if p is None or p.size == 0:
            return [None] * len(position)
        x = np.asarray(position, dtype=np.int64)
        i = np.searchsorted(p, x, side="left")  # p[i - 1] < x <= p[i]
        left = np.clip(i - 1, 0, p.size - 1)
        right = np.clip(i, 0, p.size - 1)
        d_left = np.where(i > 0, x - p[left], np.iinfo(np.int64).max)
        d_right = np.where(i < p.size, p[right] - x, np.iinfo(np.int64).max)
        pick = np.where(d_right < d_left, right, left)
        return self.label[chrom][pick].tolist()


@dataclass
class _BuildIndex:
    aligner: mappy.Aligner
    records: list[tuple[str, int, int]]  # index record name (= position here) -> (chrom, start0, L)
    genes: pl.DataFrame  # resolved genes of the build (assign_genes' input)
    fields: dict[tuple[str, str], dict]  # (chrom, gene_name) -> the gene's sentence fields
    variants: _NearestVariants


def _build_aligner(aset: AssemblySet, preset: str) -> tuple[mappy.Aligner, list[tuple[str, int, int]]]:
    """minimap2 index over every record of the build's FASTA (upper case, IUPAC -> N as the
    builder reads it); records are named by their index so hits map back to chromosomes."""
    ref = read_reference(aset.fasta)
    records = [(c.chrom, c.start0, len(c.seq)) for c in ref.contigs]
    fd, tmp = tempfile.mkstemp(suffix=".fa", prefix="llamadna_lookup_")
    try:
        with os.fdopen(fd, "wb") as fh:
            for i, c in enumerate(ref.contigs):
                fh.write(b">%d\n" % i)
                fh.write(c.seq.tobytes())
                fh.write(b"\n")
        aligner = mappy.Aligner(fn_idx_in=tmp, preset=preset)
    finally:
        os.unlink(tmp)
    if not aligner:
        raise RuntimeError(f"minimap2 could not index {aset.fasta} with preset {preset!r}")
    return aligner, records


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
    sources : variant sources whose nearest variant labels the dataset (as `build-dataset
        --sources`).
    preset : minimap2 preset (see the module docstring for why `map-ont`).
    """

    def __init__(
        self,
        data_dir: str | Path,
        sources: Sequence[str] = DEFAULT_SOURCES,
        preset: str = DEFAULT_PRESET,
        sets: list[AssemblySet] | None = None,
    ) -> None:
        data_dir = Path(data_dir)
        sets = sets if sets is not None else discover_sets(data_dir)
        info = read_gene_info(shared_table(data_dir, "gene_info.tsv.gz"))
        gene_pheno = gene_phenotype_table(
            read_gene_phenotypes(shared_table(data_dir, "gene_phenotypes.tsv.gz"))
        )
        self._setup(sets, info, gene_pheno, sources, preset)

    @classmethod
    def from_sets(
        cls,
        sets: list[AssemblySet],
        gene_info: pl.DataFrame,
        gene_phenotypes: pl.DataFrame,
        sources: Sequence[str] = DEFAULT_SOURCES,
        preset: str = DEFAULT_PRESET,
    ) -> ReferenceLookup:
        """From assembly sets and already-read tables: `gene_info` as `read_gene_info` returns
        it, `gene_phenotypes` as `gene_phenotype_table` returns it."""
        self = cls.__new__(cls)
        self._setup(sets, gene_info, gene_phenotypes, sources, preset)
        return self

    def _setup(self, sets, info, gene_pheno, sources, preset) -> None:
        self.sources = tuple(sources)
        self.preset = preset
        self._index: dict[str, _BuildIndex] = {}
        for aset in sets:
            if aset.build in self._index:
                raise ValueError(f"two assembly sets for build {aset.build}")
            aligner, records = _build_aligner(aset, preset)
            genes = resolve_genes(load_genes(aset), info)
            variants = _NearestVariants.from_variants(read_variants(aset.variants), self.sources)
            self._index[aset.build] = _BuildIndex(
                aligner, records, genes, _gene_fields(genes, gene_pheno), variants
            )
            log.info("reference lookup %s: %d records, %d genes", aset.build, len(records),
                     genes.height)

    @property
    def builds(self) -> list[str]:
        return list(self._index)

    def lookup(self, sequence: str, build: str) -> dict:
        """The annotation at the position `sequence` maps to on `build` (LOOKUP_FIELDS).

        Unmapped -> `unmapped_result()`. Mapped outside every annotated gene -> chrom,
        position, mapq and source set, the gene fields None and annotation "" (the sentence
        needs a gene). `source` is None where the chromosome has no selected variant (the
        sentence then says "not specified").
        """
        return self.lookup_many([sequence], build)[0]

    def lookup_many(self, sequences: Iterable[str], build: str) -> list[dict]:
        """`lookup` for many queries at once (one gene assignment for all)."""
        try:
            idx = self._index[build]
        except KeyError:
            raise ValueError(f"no reference for build {build!r}; have {self.builds}") from None
        seqs = list(sequences)
        out = [unmapped_result() for _ in seqs]
        rows, chroms, positions, mapqs = [], [], [], []
        for i, s in enumerate(seqs):
            hit = next((h for h in idx.aligner.map(s) if h.is_primary), None)
            if hit is None:
                continue
            chrom, start0, length = idx.records[int(hit.ctg)]
            off = min(max(hit_position(hit, len(s)), 0), length - 1)
            rows.append(i)
            chroms.append(chrom)
            positions.append(start0 + off + 1)
            mapqs.append(int(hit.mapq))
        if not rows:
            return out
        hits = pl.DataFrame(
            {"row": rows, "chrom": chroms, "pos": positions, "mapq": mapqs},
            schema={"row": pl.Int64, "chrom": pl.Utf8, "pos": pl.Int64, "mapq": pl.Int64},
        )
        source = np.empty(hits.height, dtype=object)
        chrom_arr = hits["chrom"].to_numpy()
        pos_arr = hits["pos"].to_numpy()
        for chrom in np.unique(chrom_arr):
            sel = np.flatnonzero(chrom_arr == chrom)
            source[sel] = idx.variants.nearest(str(chrom), pos_arr[sel])
        hits = hits.with_columns(pl.Series("source", source.tolist(), dtype=pl.Utf8))
        assigned = assign_genes(hits, idx.genes)
        gene_of = dict(zip(assigned["row"].to_list(), assigned["gene_name"].to_list()))
        for h in hits.iter_rows(named=True):
            res = out[h["row"]]
            res.update(mapped=True, chrom=h["chrom"], position=h["pos"], mapq=h["mapq"],
                       source=h["source"])
            if h["row"] not in gene_of:
                continue
            res.update(idx.fields[(h["chrom"], gene_of[h["row"]])])
            res["annotation"] = annotation_sentence(
                chrom=res["chrom"], gene_name=res["gene"], gene_description=res["description"],
                transcript_type=res["transcript_type"], phenotype=res["phenotype"],
                Dataset=res["source"] if res["source"] is not None else NOT_SPECIFIED,
            )
        return out


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
