"""Baselines the model must beat: a reference lookup (what a user already has), the majority
sentence, and shuffled sequences (composition kept, order destroyed).

`ReferenceLookup` maps a query onto the reference FASTA of the row's build with an aligner
(`retrieve.align`: minimap2 through PyPI `mappy`, or NCBI `blastn`) and reads the annotation off
the mapped position with the dataset builder's own functions (`retrieve.fields.gene_fields`,
`assign_genes` for the overlapping-gene rule), so a lookup of an undiverged dataset window gives
back that row's gene and chromosome. The source label comes only from the `known_variants` the
caller passes (the training split's rows; `retrieve.fields.NearestVariants`): the lookup never
reads the bundle's variant file, which holds the test rows' own variants. Unmapped, or no known
variant on that chromosome: `fallback_source` (the caller passes the training majority class).
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from llamadna.constants import NOT_SPECIFIED
from llamadna.data.genes import assign_genes, gene_phenotype_table, load_genes, resolve_genes
from llamadna.data.paths import AssemblySet, discover_sets, shared_table
from llamadna.data.template import annotation_sentence
from llamadna.io.tables import read_gene_info, read_gene_phenotypes
from llamadna.retrieve.align import DEFAULT_ALIGNER, Aligner, MapFn, index_reference, make_aligner
from llamadna.retrieve.fields import NearestVariants, gene_fields, known_variant_table

log = logging.getLogger(__name__)

# Fields of a lookup result, in order (those of a prediction, plus how the query mapped; mapq is
# minimap2's MAPQ, None for blastn; identity, aligned_fraction, evalue (blastn only) and loci:
# the hit's `retrieve.align.Hit` statistics; kind: "gene" where the position lies in a gene, else
# "intergenic").
LOOKUP_FIELDS = (
    "annotation", "chrom", "gene", "description", "transcript_type", "phenotype", "source",
    "mapped", "mapq", "position", "identity", "aligned_fraction", "evalue", "loci", "kind",
)
HIT_STATS = ("identity", "aligned_fraction", "evalue", "loci")


def unmapped_result(source: str | None = None) -> dict:
    """What a lookup returns when the query does not map: every field None, annotation "",
    mapped False, and `source` (the lookup's fallback source)."""
    out: dict = dict.fromkeys(LOOKUP_FIELDS)
    out["annotation"] = ""
    out["mapped"] = False
    out["source"] = source
    return out


# --------------------------------------------------------------------------- the lookup


@dataclass
class _BuildIndex:
    map_fn: MapFn
    records: list[tuple[str, int, int]]  # index record name (= position here) -> (chrom, start0, L)
    genes: pl.DataFrame  # resolved genes of the build (assign_genes' input)
    fields: dict[tuple[str, str], dict]  # (chrom, gene_name) -> the gene's sentence fields
    fasta: Path  # the build's reference FASTA
    masked: tuple[tuple[str, int, int], ...] = ()  # (chrom, start0, end0) indexed as N


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
                                                  gene_fields(genes, gene_pheno), Path(aset.fasta))
            log.info("reference lookup %s: %d records, %d genes (%s)", aset.build, len(records),
                     genes.height, self.description)

    def _set_variants(self, known_variants, fallback_source: str, variants_name: str) -> None:
        known = known_variant_table(known_variants)
        self.fallback_source = fallback_source
        self.description = (f"{self.aligner.description}; variants: {variants_name} "
                            f"({known.height:,} rows); fallback: {fallback_source}")
        self._variants = NearestVariants.from_table(known)

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

    def without_genes(self, names: Iterable[str]) -> ReferenceLookup:
        """The same lookup without the genes `names` (gene names or ids), in the annotation and in
        the reference (the novel-gene setting: neither the annotation nor the reference has the
        gene): their rows leave the gene tables, and the span (start..end on its chromosome) of
        every such gene of a build is masked with N in a temporary copy of the build's FASTA,
        which is indexed with the same aligner instead of the original; so a query of such a gene
        maps elsewhere (a paralog, a repeat) or not at all, never to the gene's own locus, as the
        retriever's index without the gene's windows (`ReferenceIndex.derive(exclude_genes=)`).
        Masking keeps lengths, so hits keep the original coordinates. A build with none of the
        genes shares this lookup's index; the masks of an earlier `without_genes` are kept."""
        names = list(set(names))
        other = copy.copy(self)
        other._index = {}
        for b, idx in self._index.items():
            drop = pl.col("gene_name").is_in(names)
            if "gene_id" in idx.genes.columns:
                drop = drop | pl.col("gene_id").is_in(names)
            drop = drop.fill_null(False)
            gone = idx.genes.filter(drop)
            other._index[b] = replace(idx, genes=idx.genes.filter(~drop))
            if gone.height:
                other._index[b] = self._masked_index(other._index[b], gone)
        return other

    def _masked_index(self, idx: _BuildIndex, gone: pl.DataFrame) -> _BuildIndex:
        """`idx` re-indexed with the spans of the genes `gone` (1-based, inclusive) masked too."""
        spans = gone.select("chrom", pl.col("start") - 1, "end").iter_rows()
        masked = tuple(sorted(set(idx.masked) | {(c, int(s), int(e)) for c, s, e in spans}))
        mask: dict[str, list[tuple[int, int]]] = {}
        for chrom, start0, end0 in masked:
            mask.setdefault(chrom, []).append((start0, end0))
        map_fn, records = index_reference(idx.fasta, self.aligner, mask)
        log.info("reference lookup without %d genes: %d spans (%s bases) masked with N", gone.height,
                 len(masked), f"{sum(e - s for _, s, e in masked):,}")
        return replace(idx, map_fn=map_fn, records=records, masked=masked)

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
        rows, chroms, positions, mapqs, stats = [], [], [], [], []
        for i, hit in enumerate(idx.map_fn(seqs)):
            if hit is None:
                continue
            chrom, start0, length = idx.records[hit.record]
            rows.append(i)
            stats.append({k: getattr(hit, k) for k in HIT_STATS})
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
                           source=label if label is not None else self.fallback_source,
                           kind="gene" if rows[k] in gene_of else "intergenic", **stats[k])
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
