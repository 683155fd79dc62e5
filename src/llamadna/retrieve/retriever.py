"""The hybrid retriever: what in the reference a query resembles — genes and the intergenic
stretches between them — found by alignment and by embedding, merged into one ranked list.

For each query (batch API, deterministic):
- **alignment candidates**: every minimap2 hit of the query on the index (`ReferenceIndex`,
  `retrieve.align.MINIMAP2_INDEX` settings with `best_n` MINIMAP2_BEST_N, so that secondary hits
  are reported; queries whose best identity x aligned fraction there is under CASCADE_BELOW are
  aligned again on the sensitive index, MINIMAP2_SENSITIVE, and keep the hits of both; on a large
  reference, those still under it on a third, deep index, `retrieve.align.deep_minimap2`), with
  the identity (matching bases / alignment length), the aligned fraction of the query, the
  strand, and the reference position of the query's centre base. The hit's gene is the one the
  dataset builder gives at that position (`assign_genes` on the index's gene table), so a small
  gene inside a window is named exactly. A hit in no gene (the index tiles the whole reference)
  is an **intergenic** candidate: one per interval between the same two genes, with the nearest
  gene on each side of the position (the gene table's, that build and chromosome) and its
  distance in bases (left: position - the gene's end; right: the gene's start - position; None
  where a side has no gene);
- **embedding candidates**: the `n_embed` windows nearest the query's encoder embedding (FAISS,
  cosine similarity), each for the gene at its window's centre (windows in no gene give none:
  intergenic candidates come from alignments only);
- per candidate: alignment score = max over its hits of identity x aligned fraction, cosine =
  max over its windows. An alignment outranks any embedding similarity: aligned candidates score
  1 + alignment score, the others EMBED_WEIGHT x cosine (cosine < 0 counts as 0); ranked by
  score, then cosine, then genes before intergenic candidates, then the key (gene name); top
  `k`. So the hybrid's first candidate is the alignment's whenever a query aligns, and embedding
  fills the list and answers queries that do not align. The tiny encoder's embeddings
  (masked-LM, even after the contrastive stage) find little beyond 10 % divergence
  (docs/BENCHMARKS.md), so they cannot be trusted over an alignment. `embed_when="unaligned"`
  embeds only the queries whose best alignment score is under CASCADE_BELOW (the others' lists
  then hold aligned candidates only): the same first candidate, at the alignment's speed for
  queries that align;
- **loci** (`count_loci`, the same on each of the query's candidates): the distinct reference
  loci — hits of every pass, one per (build, chrom, position // index window) — the query aligns
  to nearly as well as its best hit (identity x aligned fraction >= LOCI_SHARE x the best's) over
  at least LOCI_MIN_FRACTION of its length: 1 for a unique sequence, many for a repeat, 0 when
  nothing aligned (and in "embed" mode). The passes keep only chains scoring near the best one,
  so where the index has the loci tier (`index.loci`, constants.MINIMAP2_LOCI: every chain kept)
  the count is the larger of the passes' and the loci tier's hits counted the same way.
A candidate (CANDIDATE_FIELDS) has "kind" "gene" (neighbour fields None) or "intergenic" (gene
fields None). A query with fewer unambiguous bases than the index's k-mer size (all N, or
shorter than k) gets an empty list. `source` is the label of the training variant nearest the
candidate's position (the index's variant table; None without one).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from llamadna.constants import DEFAULT_WINDOW, found_via
from llamadna.data.genes import GeneLocator
from llamadna.errors import InputError
from llamadna.progress import Progress, no_progress
from llamadna.retrieve.align import hit_position, map_threaded
from llamadna.retrieve.config import (
    CASCADE_BELOW,
    DEFAULT_EMBED_WHEN,
    DEFAULT_K,
    EMBED_WHEN,
    LOCI_MIN_FRACTION,
    LOCI_SHARE,
)
from llamadna.retrieve.embed import SequenceEmbedder
from llamadna.retrieve.fields import NearestVariants
from llamadna.retrieve.index import ReferenceIndex

EMBED_WEIGHT = 0.1
N_EMBED = 32  # FAISS neighbours read per query
MODES = ("hybrid", "align", "embed")
KINDS = ("gene", "intergenic")  # a candidate's "kind"
# Fields of a candidate and their types, in order (`llamadna search` writes these columns after
# query and rank). left_/right_: an intergenic candidate's nearest gene on each side and its
# distance; loci: the query's (`Retriever`), the same on each of its candidates.
CANDIDATE_SCHEMA = {
    "gene": pl.Utf8, "gene_id": pl.Utf8, "build": pl.Utf8, "chrom": pl.Utf8, "description": pl.Utf8,
    "transcript_type": pl.Utf8, "phenotype": pl.Utf8, "source": pl.Utf8, "score": pl.Float64,
    "identity": pl.Float64, "aligned_fraction": pl.Float64, "cosine": pl.Float64, "strand": pl.Utf8,
    "position": pl.Int64, "window": pl.Int64, "via": pl.Utf8, "kind": pl.Utf8, "left_gene": pl.Utf8,
    "left_distance": pl.Int64, "right_gene": pl.Utf8, "right_distance": pl.Int64, "loci": pl.Int64,
}
CANDIDATE_FIELDS = tuple(CANDIDATE_SCHEMA)
GENE_FIELDS = ("gene", "gene_id", "description", "transcript_type", "phenotype")
NEIGHBOUR_FIELDS = ("left_gene", "left_distance", "right_gene", "right_distance")


@dataclass
class _Gene:
    # gene: (gene, build, chrom); intergenic: ("", build, chrom, left gene, right gene), "" for none
    key: tuple[str, ...]
    window: int
    align: float = 0.0
    identity: float | None = None
    aligned_fraction: float | None = None
    strand: str | None = None
    position: int | None = None
    cosine: float | None = None
    kind: str = "gene"

    @property
    def score(self) -> float:
        return 1.0 + self.align if self.identity is not None else EMBED_WEIGHT * max(self.cosine or 0.0, 0.0)

    @property
    def order(self) -> tuple:
        """Sort key: score (higher first), then cosine (ties of aligned genes), genes before
        intergenic candidates, then the key."""
        return (-self.score, -(self.cosine if self.cosine is not None else -2.0), self.kind != "gene",
                self.key)


class Retriever:
    """`Retriever(index, encoder_dir)(sequences) -> list[list[dict]]`: per query its top-`k`
    candidates (dicts keyed by CANDIDATE_FIELDS, best first). `mode`: "hybrid", or one source
    alone ("align", "embed") for comparison; `embed_when` (hybrid): EMBED_WHEN."""

    def __init__(self, index: ReferenceIndex, encoder: str | None = None, k: int = DEFAULT_K,
                 mode: str = "hybrid", n_embed: int = N_EMBED, embedder: SequenceEmbedder | None = None,
                 threads: int | None = None, embed_when: str = DEFAULT_EMBED_WHEN):
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}: expected one of {MODES}")
        if embed_when not in EMBED_WHEN:
            raise ValueError(f"unknown embed_when {embed_when!r}: expected one of {EMBED_WHEN}")
        self.embed_when = embed_when
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.index, self.k, self.mode, self.n_embed = index, k, mode, n_embed
        self.threads = max(1, threads or os.cpu_count() or 1)
        self.embedder = embedder
        if self.embedder is None and mode != "align":
            self.embedder = SequenceEmbedder(encoder or index.encoder_dir())
        if self.embedder is not None and self.embedder.dim != index.vectors.d:
            # FAISS would stop on a bare AssertionError at the first search
            raise InputError(index.where, f"the index holds {index.vectors.d}-dimensional embeddings of "
                             f"the encoder {index.meta.get('encoder')!r}, but the encoder "
                             f"{self.embedder.path} gives {self.embedder.dim}: pass the encoder the index "
                             "was built with (--encoder DIR), or rebuild the index with this one")
        w = index.windows
        self.window_key = list(zip(w["gene"].to_list(), w["build"].to_list(), w["chrom"].to_list()))
        self.centres = ((w["start0"] + w["end0"]) // 2 + 1).to_numpy()
        # (build, chrom) -> window ids sorted by centre, and those centres
        self.by_chrom: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        for (build, chrom), g in w.with_row_index("i").group_by(["build", "chrom"]):
            order = np.argsort(self.centres[g["i"].to_numpy()], kind="stable")
            ids = g["i"].to_numpy()[order]
            self.by_chrom[(build, chrom)] = (ids, self.centres[ids])
        self.genes = {b: GeneLocator(g) for (b,), g in index.genes.group_by(["build"])}
        self.fields = {(r["gene_name"], r["build"], r["chrom"]): r for r in index.genes.iter_rows(named=True)}
        self.flanking = _flanking_genes(index.genes)
        self.segments = index.segments.rows()
        self.variants = NearestVariants.from_table(index.variants)
        self.min_bases = int(index.meta["config"]["minimap2"].get("k", 15))
        self.locus_bases = int(index.meta["config"].get("window") or DEFAULT_WINDOW)  # loci's unit

    def __call__(self, sequences: Sequence[str], progress: Progress = no_progress) -> list[list[dict]]:
        seqs = [s.upper() for s in sequences]
        ok = [sum(s.count(b) for b in "ACGT") >= self.min_bases for s in seqs]
        genes: list[dict[tuple[str, ...], _Gene]] = [{} for _ in seqs]
        loci = [0] * len(seqs)
        if self.mode != "embed":
            loci = self._align(seqs, ok, genes)
        if self.mode == "hybrid" and self.embed_when == "unaligned":
            ok = [good and max((g.align for g in found.values()), default=0.0) < CASCADE_BELOW
                  for good, found in zip(ok, genes)]
        if self.mode != "align":
            self._embed(seqs, ok, genes, progress)
        return [self._ranked(g, n) for g, n in zip(genes, loci)]

    # ------------------------------------------------------------------ candidates
    def _window_at(self, build: str, chrom: str, pos: int) -> int | None:
        ids, centres = self.by_chrom.get((build, chrom), (None, None))
        if ids is None:
            return None
        j = int(np.searchsorted(centres, pos))
        near = [x for x in (j - 1, j) if 0 <= x < len(ids)]
        return int(ids[min(near, key=lambda x: (abs(centres[x] - pos), x))])

    def _align(self, seqs: list[str], ok: list[bool], genes: list[dict]) -> list[int]:
        """Alignment candidates into `genes` (per query: key -> _Gene); returns each query's loci."""
        hits = self._hits(seqs, ok)
        gene_of = self._genes_at(hits)
        for k, (i, build, chrom, pos, ident, frac, strand) in enumerate(hits):
            if k in gene_of:
                key, kind = (gene_of[k], build, chrom), "gene"
            else:  # one candidate per interval between the same two genes
                left, _, right, _ = self._neighbours(build, chrom, pos)
                key, kind = ("", build, chrom, left or "", right or ""), "intergenic"
            g = genes[i].setdefault(key, _Gene(key, self._window_at(build, chrom, pos), kind=kind))
            if g.identity is None or ident * frac > g.align:
                g.align, g.identity, g.aligned_fraction = ident * frac, ident, frac
                g.strand, g.position = strand, pos
        loci = count_loci(hits, len(seqs), self.locus_bases)
        if self.index.loci is None:
            return loci
        # the loci tier (every chain, minimap2's default k and w): the larger of the two counts
        # (a query diverged past its k-mers aligns in the passes only)
        more = self._map(self.index.loci, seqs, [i for i, good in enumerate(ok) if good])
        return [max(a, b) for a, b in zip(loci, count_loci(more, len(seqs), self.locus_bases))]

    def _hits(self, seqs: list[str], ok: list[bool]) -> list[tuple]:
        """`_map`'s hits of the queries `ok` on the first minimap2 index, then those of each
        further pass (`index.cascade`) for the queries still mapped under CASCADE_BELOW."""
        todo = [i for i, good in enumerate(ok) if good]
        hits = self._map(self.index.aligner, seqs, todo)
        best, scored = dict.fromkeys(todo, 0.0), 0
        for aligner in self.index.cascade:  # further passes: the queries mapped poorly so far
            for h in hits[scored:]:  # the hits of the last pass
                best[h[0]] = max(best[h[0]], h[4] * h[5])
            scored = len(hits)
            hits += self._map(aligner, seqs, [i for i in todo if best[i] < CASCADE_BELOW])
        return hits

    def _genes_at(self, hits: list[tuple]) -> dict[int, str]:
        """Hit number -> the gene at its position (`assign_genes`' choice: `GeneLocator`); hits
        in no gene absent. No polars here: forked ranks call it (`annotate.distributed`)."""
        gene_of: dict[int, str] = {}
        for k, (_, build, chrom, pos, *_) in enumerate(hits):
            if build in self.genes:
                found, name = self.genes[build].locate(chrom, pos)
                if found:
                    gene_of[k] = name
        return gene_of

    def _neighbours(self, build: str, chrom: str, pos: int) -> tuple:
        """(left gene, its distance, right gene, its distance) of a 1-based position in no gene:
        the gene ending nearest before it (distance = pos - its end) and the one starting
        nearest after it (its start - pos), in the index's gene table; None, None for a side
        without any. Ties: the last name in order on the left, the first on the right."""
        table = self.flanking.get((build, chrom))
        if table is None:
            return None, None, None, None
        ends, left_names, starts, right_names = table
        j = int(np.searchsorted(ends, pos, side="left")) - 1  # the last gene ending before pos
        k = int(np.searchsorted(starts, pos, side="right"))  # the first starting after pos
        left = (left_names[j], pos - int(ends[j])) if j >= 0 else (None, None)
        right = (right_names[k], int(starts[k]) - pos) if k < len(starts) else (None, None)
        return (*left, *right)

    def _map(self, aligner, seqs: list[str], which: list[int]) -> list[tuple]:
        """(query, build, chrom, position of the centre, identity, aligned fraction, strand) of
        every hit of the queries `which`, in query order, mapped on `self.threads` threads."""
        def each(k: int, seq: str, hits) -> list[tuple]:
            out = []
            for h in hits:
                build, chrom, start0, _ = self.segments[int(h.ctg)]
                out.append((which[k], build, chrom, start0 + hit_position(h, len(seq)) + 1,
                            h.mlen / h.blen if h.blen else 0.0, (h.q_en - h.q_st) / len(seq),
                            "+" if h.strand >= 0 else "-"))
            return out

        found = map_threaded(aligner, [seqs[i] for i in which], each, self.threads)
        return [h for part in found for h in part]

    def _embed(self, seqs: list[str], ok: list[bool], genes: list[dict], progress: Progress) -> None:
        todo = [i for i, good in enumerate(ok) if good]
        if not todo:
            return
        vec = self.embedder([seqs[i] for i in todo], progress, "embedding queries")
        sims, ids = self.index.vectors.search(vec, min(self.n_embed, self.index.vectors.ntotal))
        for i, row_s, row_w in zip(todo, sims, ids):
            for sim, w in zip(row_s.tolist(), row_w.tolist()):
                if w < 0 or self.window_key[w][0] is None:
                    continue
                g = genes[i].setdefault(self.window_key[w], _Gene(self.window_key[w], w))
                if g.cosine is None or sim > g.cosine:
                    g.cosine = sim
                    if g.identity is None:
                        g.window = w

    def _ranked(self, genes: dict[tuple[str, ...], _Gene], loci: int) -> list[dict]:
        """The top-k candidates (CANDIDATE_FIELDS, in that order), best first."""
        out = []
        for g in sorted(genes.values(), key=lambda g: g.order)[: self.k]:
            pos = g.position if g.position is not None else int(self.centres[g.window])
            build, chrom = g.key[1], g.key[2]
            if g.kind == "gene":
                f = self.fields[g.key]
                named = {"gene": f["gene_name"], "gene_id": f["gene_id"],
                         **{c: f[c] for c in GENE_FIELDS[2:]}}
                near = dict.fromkeys(NEIGHBOUR_FIELDS)
            else:
                named = dict.fromkeys(GENE_FIELDS)
                near = dict(zip(NEIGHBOUR_FIELDS, self._neighbours(build, chrom, pos)))
            cand = {**named, "build": build, "chrom": chrom,
                    "source": self.variants.nearest(build, chrom, np.array([pos]))[0],
                    "score": round(g.score, 6), "identity": g.identity,
                    "aligned_fraction": g.aligned_fraction, "cosine": g.cosine, "strand": g.strand,
                    "position": pos, "window": g.window, "via": found_via(g.identity, g.cosine),
                    "kind": g.kind, **near,
                    "loci": loci}
            out.append({c: cand[c] for c in CANDIDATE_FIELDS})
        return out


def count_loci(hits: Sequence[tuple], n: int, locus_bases: int) -> list[int]:
    """Per query (0..n-1), its number of distinct reference loci: hits (`Retriever._map`'s
    tuples, every minimap2 pass) deduplicated by (build, chrom, position // `locus_bases`) whose
    identity x aligned fraction is >= LOCI_SHARE x the query's best one and whose aligned
    fraction is >= LOCI_MIN_FRACTION; 0 for a query without a hit."""
    best = [0.0] * n
    for h in hits:
        best[h[0]] = max(best[h[0]], h[4] * h[5])
    loci: list[set] = [set() for _ in range(n)]
    for i, build, chrom, pos, ident, frac, _ in hits:
        if best[i] > 0 and frac >= LOCI_MIN_FRACTION and ident * frac >= LOCI_SHARE * best[i]:
            loci[i].add((build, chrom, pos // locus_bases))
    return [len(x) for x in loci]


def _flanking_genes(genes: pl.DataFrame) -> dict[tuple[str, str], tuple]:
    """(build, chrom) -> the gene table's ends sorted with their names, starts sorted with
    theirs (`Retriever._neighbours`); a gene without a name goes by its id."""
    out = {}
    named = genes.with_columns(pl.coalesce("gene_name", "gene_id").alias("name")).drop_nulls("name")
    for (build, chrom), g in named.group_by(["build", "chrom"], maintain_order=True):
        by_end, by_start = g.sort("end", "name"), g.sort("start", "name")
        out[(build, chrom)] = (by_end["end"].to_numpy(), by_end["name"].to_list(),
                               by_start["start"].to_numpy(), by_start["name"].to_list())
    return out


def open_retriever(index: ReferenceIndex | str | os.PathLike, encoder: str | os.PathLike | None = None,
                   **options) -> Retriever:
    """The one place a `Retriever` is built.

    Parameters
    ----------
    index : a loaded `ReferenceIndex`, or a `llamadna index` directory (loaded here).
    encoder : the DNA encoder directory that embeds the queries, used as given; None: the one
        the index records (`ReferenceIndex.encoder_dir`, resolved when the embedder is built, so
        that an alignment-only retriever needs none). A caller that prefers the recorded encoder
        and falls back on a given one passes `index.encoder_dir(fallback)`.
    **options : the Retriever's own (k, mode, n_embed, embedder, threads, embed_when).
    """
    if not isinstance(index, ReferenceIndex):
        index = ReferenceIndex.load(index)
    return Retriever(index, encoder, **options)


def candidates_table(queries: Sequence[str], hits: Sequence[list[dict]]) -> pl.DataFrame:
    """One row per (query, candidate): query id, rank (1 = best), CANDIDATE_FIELDS."""
    rows = [{"query": q, "rank": r + 1, **c} for q, cands in zip(queries, hits) for r, c in enumerate(cands)]
    return pl.DataFrame(rows, schema={"query": pl.Utf8, "rank": pl.Int64, **CANDIDATE_SCHEMA})


def attach_evidence(rows: Sequence[dict], candidates: Sequence[list[dict]]) -> list[dict]:
    """Copies of the rows with the retriever's candidates as `evidence` (the retrieval prompt's)."""
    return [{**r, "evidence": c} for r, c in zip(rows, candidates)]
