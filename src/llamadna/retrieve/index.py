"""The reference index `llamadna index` writes and `llamadna search` / the retriever read.

INDEX/ holds:
- `windows.parquet`: the index windows (`retrieve.windows.WINDOW_COLUMNS`): every record of the
  reference tiled whole (`tile` "all", the default since INDEX_FORMAT 2; windows outside genes
  have no gene fields) or the genes +- a flank ("genes");
- `genes.parquet`: the genes they were annotated from (`retrieve.windows.GENE_COLUMNS`; excluded
  genes left out), to annotate the exact position an alignment lands on with the builder's rule;
- `variants.parquet`: the known-variant table the windows carry (a split's training rows only;
  `index.json` names which), for the nearest-variant source of a candidate;
- `minimap2.mmi`: a minimap2 index (mappy, `minimap2` settings in index.json) of the windows'
  sequence, merged into segments where windows overlap (`segments.parquet`: build, chrom,
  0-based start and length of each index record), so that an excluded gene is absent from it;
  `minimap2_sensitive.mmi`: the same records with the sensitive settings (`minimap2_sensitive`),
  for a second pass on queries the first index maps poorly; `minimap2_deep.mmi` (large
  references, `minimap2_deep`): a third pass on those the second maps poorly too;
  `minimap2_loci.mmi` (optional, `minimap2_loci`: `llamadna index --loci-tier`,
  constants.MINIMAP2_LOCI): the loci tier, on which the retriever counts every query's loci too
  (every chain kept: the other passes keep only chains near the best one and miss a repeat's
  diverged copies); an index without it counts them on the passes' hits only;
- `embeddings.faiss`: a FAISS index of the windows' encoder embeddings (`retrieve.embed`):
  "flat" = exact inner-product search (small references), "ivfpq" = IVF-PQ (`nlist` lists,
  `pq_m` sub-quantizers of 8 bits) for large ones such as a whole genome. With `whiten` (the
  default) the index holds the embeddings PCA-whitened and L2-normalised again (`whitening`,
  fitted on the index windows and stored in the FAISS file, so queries get the same transform):
  the tiny encoder's pooled embeddings are near collinear (mean cosine to their mean 0.991), and
  whitening spreads them (docs/BENCHMARKS.md: embedding-only recall@1 at 10 % divergence 0.155 ->
  0.449 on the bundle; without it IVF-PQ found 0.007 of undiverged queries on a 100 Mb genome);
- `index.json`: the settings, counts, variant table and encoder (relative to the index
  directory, so that an index and its encoder moved together still find each other), and the
  size and checksum of each minimap2 index (checked at load); written last, so an index without
  it is incomplete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path

import mappy
import numpy as np
import polars as pl

from llamadna.errors import ConfigError, InputError, refuse_link_loop
from llamadna.io.atomic import atomic_write
from llamadna.io.text import read_json_object
from llamadna.progress import Progress, no_progress
from llamadna.retrieve.align import deep_minimap2, scaled_minimap2
from llamadna.retrieve.config import DEFAULT_NPROBE, WHITEN_EPSILON, WHITEN_MIN_PER_DIM, IndexConfig
from llamadna.retrieve.embed import SequenceEmbedder
from llamadna.retrieve.fields import KNOWN_VARIANT_COLUMNS, known_variant_table
from llamadna.retrieve.windows import FIELD_COLUMNS, carry_variants, index_tables
from llamadna.retrieve.windows import exclude_genes as exclude_genes_from

log = logging.getLogger(__name__)

# 2: the whole reference tiled by default, minimap2 settings with best_n (the loci count);
# an index of format 1 (genes only) is refused: rebuild it
INDEX_FORMAT = 2
INDEX_FILES = ("windows.parquet", "genes.parquet", "variants.parquet", "segments.parquet",
               "minimap2.mmi", "embeddings.faiss", "index.json")
SENSITIVE_MMI = "minimap2_sensitive.mmi"  # when the config has `minimap2_sensitive`
DEEP_MMI = "minimap2_deep.mmi"  # when the config has `minimap2_deep`
LOCI_MMI = "minimap2_loci.mmi"  # when the config has `minimap2_loci` (indexes from before: none)
# the passes after the first: config key and file, in the order they are tried
CASCADE = (("minimap2_sensitive", SENSITIVE_MMI), ("minimap2_deep", DEEP_MMI))
# index.json "paths": the paths it records (the encoder) are relative to the index directory
PATHS_RELATIVE = "relative to the index directory"


def _segments(windows: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """Overlapping or adjacent windows (same build and chromosome) merged into index records:
    (build, chrom, start0, length) per record and its sequence."""
    w = windows.select("build", "chrom", "start0", "end0", "Sequence").sort("build", "chrom", "start0")
    rows, seqs = [], []
    for build, chrom, s, e, seq in w.iter_rows():
        if rows and rows[-1][:2] == [build, chrom] and s <= rows[-1][3]:
            last = rows[-1]
            if e > last[3]:
                seqs[-1].append(seq[last[3] - s :])
                last[3] = e
        else:
            rows.append([build, chrom, s, e])
            seqs.append([seq])
    table = pl.DataFrame({"build": [r[0] for r in rows], "chrom": [r[1] for r in rows],
                          "start0": [r[2] for r in rows], "length": [r[3] - r[2] for r in rows]},
                         schema={"build": pl.Utf8, "chrom": pl.Utf8, "start0": pl.Int64, "length": pl.Int64})
    return table, ["".join(s) for s in seqs]


def whitening(vectors: np.ndarray):
    """FAISS transforms that PCA-whiten `vectors`' space (centre on their mean, rotate to the
    principal axes, scale each to unit variance) and L2-normalise again, as one chain (a list,
    applied in order). The covariance and its eigen-decomposition are computed here in float64
    (FAISS's own PCA training, in float32, loses these near-collinear vectors' small variances
    to cancellation and returns negative eigenvalues); eigenvalues get WHITEN_EPSILON x their
    mean added, so a direction of little variance (the unit norm's constraint leaves one without
    any) is not blown up. Stored as a FAISS PCAMatrix, so the FAISS file holds it."""
    import faiss

    d = vectors.shape[1]
    x = vectors.astype(np.float64)
    mean = x.mean(0)
    cov = np.cov(x, rowvar=False).reshape(d, d)
    eig, vec = np.linalg.eigh(cov)
    order = np.argsort(eig)[::-1]
    eig, vec = np.clip(eig[order], 0.0, None), vec[:, order]
    pca = faiss.PCAMatrix(d, d, -0.5)
    pca.epsilon = float(WHITEN_EPSILON * eig.mean())
    faiss.copy_array_to_vector(mean.astype(np.float32), pca.mean)
    faiss.copy_array_to_vector(eig.astype(np.float32), pca.eigenvalues)
    faiss.copy_array_to_vector(np.ascontiguousarray(vec.T, dtype=np.float32).ravel(), pca.PCAMat)
    pca.is_trained = True
    pca.prepare_Ab()
    return [pca, faiss.NormalizationTransform(d)]


def _with_transforms(chain: list, index):
    """`index` behind the transforms of `chain` (applied in order to added and query vectors)."""
    import faiss

    if not chain:
        return index
    wrapped = faiss.IndexPreTransform(chain[-1], index)
    for t in reversed(chain[:-1]):
        wrapped.prepend_transform(t)
    return wrapped


def _faiss_index(vectors: np.ndarray, kind: str, nlist: int | None, pq_m: int, whiten: bool = False):
    import faiss

    d = vectors.shape[1]
    chain = []
    if whiten and len(vectors) < WHITEN_MIN_PER_DIM * d:
        log.warning("embeddings not whitened: fitting %d dimensions needs >= %d windows, the index has %d",
                    d, WHITEN_MIN_PER_DIM * d, len(vectors))
    elif whiten:
        chain = whitening(vectors)
        for t in chain:
            vectors = t.apply(np.ascontiguousarray(vectors, dtype=np.float32))
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    else:
        n = len(vectors)
        nlist = nlist or max(1, int(4 * np.sqrt(n)))
        if n < 39 * nlist:
            raise ConfigError(f"--faiss ivfpq with {nlist} lists needs >= {39 * nlist} windows to train "
                              f"(have {n}); use --faiss flat or a smaller --nlist")
        if d % pq_m:
            raise ConfigError(f"--pq-m {pq_m} must divide the embedding size {d}")
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, nlist, pq_m, 8, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = min(DEFAULT_NPROBE, nlist)
    index.add(vectors)
    return _with_transforms(chain, index)


def inner_index(vectors):
    """The index behind a FAISS index's transforms (itself without any)."""
    import faiss

    return faiss.downcast_index(vectors.index) if isinstance(vectors, faiss.IndexPreTransform) else vectors


class ReferenceIndex:
    """Windows + minimap2 index + FAISS index of one reference; `build` or `load`."""

    def __init__(self, windows: pl.DataFrame, genes: pl.DataFrame, variants: pl.DataFrame,
                 segments: pl.DataFrame, aligner: mappy.Aligner, vectors, meta: dict,
                 path: Path | None = None, cascade: list[mappy.Aligner] | None = None,
                 encoder: Path | None = None, loci: mappy.Aligner | None = None) -> None:
        self.windows, self.genes, self.variants, self.segments = windows, genes, variants, segments
        self.aligner, self.vectors, self.meta, self.path = aligner, vectors, meta, path
        # the further minimap2 passes (sensitive, deep), tried in order on poorly mapped queries
        self.cascade = list(cascade or [])
        self.loci = loci  # the loci tier (None: the retriever counts loci on the passes' hits)
        # the encoder the index was built with, where it is now (None: recorded but not found)
        self.encoder = encoder if encoder is not None else _find_encoder(meta, path)

    @property
    def where(self) -> str:
        """The index's index.json, or what the index is when it was never written (derived)."""
        return str(self.path / "index.json") if self.path is not None else "the reference index"

    def encoder_dir(self, fallback: str | Path | None = None) -> Path:
        """The DNA encoder directory the index was built with, where it is now; `fallback`
        (--encoder) when it is not found there. None found: InputError naming --encoder."""
        if self.encoder is not None:
            return self.encoder
        if fallback is not None:
            return Path(fallback)
        recorded = self.meta.get("encoder")
        if self.meta.get("paths") == PATHS_RELATIVE and self.path is not None:
            recorded = os.path.normpath(self.path.resolve() / recorded)
        elif isinstance(recorded, str) and not Path(recorded).is_absolute():  # an index from before
            recorded += " (as given to `llamadna index`, from the directory it ran in)"
        raise InputError(self.where, f"the DNA encoder this index was built with, {recorded}, does not "
                         "exist (moved or deleted?): pass its directory with --encoder DIR")

    # ------------------------------------------------------------------ build
    @classmethod
    def build(cls, cfg: IndexConfig, progress: Progress = no_progress) -> ReferenceIndex | None:
        """Tile, annotate, align-index and embed the bundle's reference; written to cfg.out.

        Under `accelerate launch` (or torchrun) with N processes, each embeds every N-th batch of
        windows on its own device (`_embed_windows`) and the main process gathers them, writes
        the index and returns it; the others return None."""
        from llamadna.data.paths import default_data_dir

        t0 = time.perf_counter()
        data = Path(cfg.data) if cfg.data else default_data_dir()
        out = Path(cfg.out)
        if out.exists() and not out.is_dir():
            raise InputError(out, "exists and is not a directory (expected the index directory)")
        known, variants_name = _training_variants(cfg)
        progress("windows", 0, 1)
        windows, genes = index_tables(data, cfg.window, cfg.stride, cfg.flank, known, cfg.exclude_genes,
                                      tile=cfg.tile)
        if windows.height == 0:
            what = "sequence" if cfg.tile == "all" else "annotated gene"
            raise InputError(data, f"no index window: the bundle's reference holds no {what}")
        progress("windows", 1, 1)
        embedded, dim, embedding = _embed_windows(cfg, windows["Sequence"].to_list(), progress)
        if embedded is None:  # a data-parallel process other than the main one: its share is sent
            return None
        segments, seqs = _segments(windows)
        bases = int(segments["length"].sum())
        cfg = _sized_config(cfg, bases)
        out.mkdir(parents=True, exist_ok=True)
        aligner = _minimap2_index(seqs, out / "minimap2.mmi", cfg.minimap2)
        cascade = [_minimap2_index(seqs, out / mmi, getattr(cfg, key))
                   for key, mmi in CASCADE if getattr(cfg, key)]
        loci = _minimap2_index(seqs, out / LOCI_MMI, cfg.minimap2_loci) if cfg.minimap2_loci else None
        vectors = _faiss_index(embedded, cfg.faiss, cfg.nlist, cfg.pq_m, cfg.whiten)
        variants = known if known is not None else known_variant_table([])
        meta = _index_meta(cfg, out, data, windows, segments, variants, variants_name, vectors, dim, t0)
        meta["embedding"] = embedding
        index = cls(windows, genes, variants, segments, aligner, vectors, meta, out, cascade,
                    encoder=Path(cfg.encoder), loci=loci)
        index.save(out)
        return index

    def save(self, out: str | Path) -> None:
        """Every file atomically, index.json last (minimap2.mmi is written by `build`)."""
        import faiss

        out = Path(out)
        atomic_write(out / "windows.parquet", lambda p: self.windows.write_parquet(p, compression="zstd"))
        atomic_write(out / "genes.parquet", lambda p: self.genes.write_parquet(p))
        atomic_write(out / "variants.parquet", lambda p: self.variants.write_parquet(p))
        atomic_write(out / "segments.parquet", lambda p: self.segments.write_parquet(p))
        atomic_write(out / "embeddings.faiss", lambda p: faiss.write_index(self.vectors, str(p)))
        meta = self.meta
        if self.encoder is not None:  # relative to where the index is written
            meta = {**meta, "encoder": _relative_to(self.encoder, out), "paths": PATHS_RELATIVE,
                    "encoder_absolute": str(Path(self.encoder).resolve())}
        atomic_write(out / "index.json", lambda p: p.write_text(json.dumps(meta, indent=1) + "\n"))

    # ------------------------------------------------------------------ derived indexes
    def derive(self, exclude_genes: Iterable[str] = (), variants=None) -> ReferenceIndex:
        """This index (in memory, nothing written) without the windows of the genes named (names
        or ids; `index_tables`' rule) and/or with another known-variant table (dataset rows, e.g.
        a fold's training rows; `known_variant_table`). The embeddings are not recomputed: the
        FAISS index keeps the kept windows' vectors, and the minimap2 indexes are rebuilt over the
        kept windows' records, so an excluded gene cannot be aligned to either. A whitened index
        keeps its transform, fitted on all of its windows' embeddings (sequence statistics, no
        annotation: the encoder was pretrained on that sequence too); `llamadna index
        --exclude-genes` fits it without the excluded genes."""
        import faiss

        names = tuple(dict.fromkeys(exclude_genes))
        windows, genes = self.windows, self.genes
        meta = json.loads(json.dumps(self.meta))
        if variants is not None:
            known = known_variant_table(variants)
            windows = carry_variants(windows, known)
            meta["variants"], meta["variant_rows"] = "given to ReferenceIndex.derive", known.height
        else:
            known = self.variants
        vectors, aligner, cascade, segments = self.vectors, self.aligner, self.cascade, self.segments
        loci = self.loci
        if names:
            windows, genes = exclude_genes_from(windows, genes, names)
            if windows.height == 0:
                raise ConfigError("excluding those genes leaves no index window")
            keep = windows["window"].to_numpy()
            # the kept windows' stored vectors (whitened ones stay whitened: the transforms,
            # fitted on the whole reference's windows without any label, are kept as they are)
            inner = inner_index(self.vectors)
            if hasattr(inner, "make_direct_map"):
                inner.make_direct_map()
            # a deep copy through FAISS's own format (clone_index cannot copy every transform)
            vectors = faiss.deserialize_index(faiss.serialize_index(self.vectors))
            kept = inner_index(vectors)
            kept.reset()
            kept.add(inner.reconstruct_batch(keep.astype(np.int64)))
            vectors.ntotal = kept.ntotal
            windows = windows.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("window"))
            segments, seqs = _segments(windows)
            cfg = meta["config"]
            aligner = _minimap2_index(seqs, None, cfg["minimap2"])
            cascade = [_minimap2_index(seqs, None, cfg[key]) for key, _ in CASCADE if cfg.get(key)]
            loci = _minimap2_index(seqs, None, cfg["minimap2_loci"]) if cfg.get("minimap2_loci") else None
            meta["exclude_genes"] = list(dict.fromkeys([*meta.get("exclude_genes", []), *names]))
            meta.update(windows=windows.height, genes=windows["gene"].drop_nulls().n_unique(),
                        segments=segments.height, segment_bases=int(segments["length"].sum()))
        meta["derived_from"] = self.meta.get("index_id")
        return ReferenceIndex(windows, genes, known, segments, aligner, vectors, meta, None, cascade,
                              encoder=self.encoder, loci=loci)

    # ------------------------------------------------------------------ load
    @classmethod
    def load(cls, path: str | Path) -> ReferenceIndex:
        """A `llamadna index` directory; a damaged, incomplete or mismatched file is an InputError
        naming it."""
        path = Path(path)
        refuse_link_loop(path)
        if not path.is_dir():
            raise InputError(path, "no such index directory (`llamadna index --out` writes one)")
        for f in (*INDEX_FILES, *(mmi for _, mmi in CASCADE), LOCI_MMI):
            refuse_link_loop(path / f)
        missing = [f for f in INDEX_FILES if not (path / f).exists()]
        if missing:
            raise InputError(path, f"incomplete index: {', '.join(missing)} missing (rebuild it with "
                             "`llamadna index`)")
        meta = _read_meta(path / "index.json")
        tables = [_read_table(path / f"{name}.parquet", cols) for name, cols in TABLE_COLUMNS.items()]
        vectors = _read_faiss(path / "embeddings.faiss", meta, tables[0].height)
        aligner = _load_mmi(path / "minimap2.mmi", meta["config"]["minimap2"], meta)
        tiers = {}
        for key, mmi in (*CASCADE, ("minimap2_loci", LOCI_MMI)):
            settings = meta["config"].get(key)  # an index from before the deep or loci tier has no key
            if not settings:
                continue
            if not (path / mmi).exists():
                raise InputError(path, f"incomplete index: {mmi} missing (rebuild it with `llamadna index`)")
            tiers[key] = _load_mmi(path / mmi, settings, meta)
        loci = tiers.pop("minimap2_loci", None)
        return cls(*tables, aligner, vectors, meta, path, list(tiers.values()), loci=loci)


REBUILD = "rebuild the index with `llamadna index`"
# what index.json must hold (older indexes lack some of the other keys)
META_KEYS = {"format": int, "config": dict, "encoder": str, "embedding_dim": int}
# the columns of each table the retriever reads (the files hold more)
TABLE_COLUMNS = {
    "windows": ("window", "build", "chrom", "start0", "end0", "Sequence", "gene", *FIELD_COLUMNS),
    "genes": ("build", "chrom", "start", "end", "gene_name"),
    "variants": KNOWN_VARIANT_COLUMNS,
    "segments": ("build", "chrom", "start0", "length"),
}


def _read_meta(path: Path) -> dict:
    """index.json, checked: valid JSON, this format, the keys `load` and the retriever read."""
    meta = read_json_object(path, REBUILD)
    if meta.get("format") != INDEX_FORMAT:
        raise InputError(path, f"index format {meta.get('format')}, this version reads "
                         f"{INDEX_FORMAT}: {REBUILD}")
    bad = [k for k, t in META_KEYS.items() if not isinstance(meta.get(k), t)]
    if not bad and not isinstance(meta["config"].get("minimap2"), dict):
        bad = ["config.minimap2"]
    if bad:
        raise InputError(path, f"{', '.join(bad)} missing or of the wrong type: {REBUILD}")
    return meta


def _read_table(path: Path, columns: Sequence[str]) -> pl.DataFrame:
    """One of the index's Parquet tables, with the columns the retriever reads."""
    try:
        table = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(path, f"not a readable Parquet file ({cause}): {REBUILD}") from None
    missing = [c for c in columns if c not in table.columns]
    if missing and table.height:  # an empty table (no known variant) may have no columns
        raise InputError(path, f"lacks the columns {', '.join(missing)}: not this index's table; {REBUILD}")
    return table


def _read_faiss(path: Path, meta: dict, windows: int):
    """embeddings.faiss: readable by FAISS, one `embedding_dim` vector per window."""
    import faiss

    try:
        vectors = faiss.read_index(str(path))
    except RuntimeError as exc:
        cause = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise InputError(path, f"not a readable FAISS index (truncated or damaged?): {cause}; "
                         f"{REBUILD}") from None
    if vectors.d != meta["embedding_dim"] or vectors.ntotal != windows:
        raise InputError(path, f"{vectors.ntotal} vectors of {vectors.d} dimensions, but index.json "
                         f"records {meta['embedding_dim']} dimensions and windows.parquet holds {windows} "
                         f"windows: the files come from different indexes; {REBUILD}")
    inner = inner_index(vectors)
    if hasattr(inner, "nprobe"):
        inner.nprobe = min(DEFAULT_NPROBE, inner.nlist)
    return vectors


def _embed_windows(cfg: IndexConfig, seqs: list[str],
                   progress: Progress) -> tuple[np.ndarray | None, int, dict | None]:
    """(N, H) window embeddings on the main process (None on the others), H, and (main process)
    who embedded what: {"processes", "windows_per_process" (in rank order), "seconds",
    "windows_per_s"}.

    The windows are embedded in batches of `cfg.batch_size` consecutive windows, one
    `SequenceEmbedder` call each (it sorts a call's chunks by length and encodes `batch_size`
    chunks a forward, so a batch of windows of one chunk each is one forward). Under N processes
    batch b is embedded by rank b % N: every batch holds the same windows, hence the same
    padding, as in one process, and the gathered embeddings are bit-identical to one process's
    (with the same torch threads per process: a forward's float reductions may depend on them).
    One call per batch also keeps a whole reference's tokens out of memory at once."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))  # as Accelerator() reads it
    world, rank = state.num_processes, state.process_index
    if world == 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(f"launched as {os.environ['WORLD_SIZE']} processes but accelerate found no "
                          "distributed device; on CPUs set ACCELERATE_USE_CPU=true")
    embedder = SequenceEmbedder(cfg.encoder, device=state.device, batch_size=cfg.batch_size)
    size, n = cfg.batch_size, len(seqs)
    t0 = time.perf_counter()
    parts = []
    for a in batch_starts(n, size, world, rank):
        parts.append(embedder(seqs[a : a + size]))
        if state.is_main_process:  # batches go round-robin: the others are about as far
            progress("embedding windows", min(a + world * size, n), n)
    mine = np.concatenate(parts) if parts else np.empty((0, embedder.dim), dtype=np.float32)
    if world == 1:
        return mine, embedder.dim, _embedding_record([len(mine)], t0)
    from accelerate.utils import gather_object

    shares = gather_object([mine])  # one (n_r, H) array per process, in rank order
    state.wait_for_everyone()
    if not state.is_main_process:
        return None, embedder.dim, None
    return gather_batches(shares, n, size), embedder.dim, _embedding_record([len(s) for s in shares], t0)


def _embedding_record(counts: list[int], t0: float) -> dict:
    """index.json's "embedding": the processes, the windows each embedded, the seconds (gather
    included) and the windows a second."""
    seconds = time.perf_counter() - t0
    return {"processes": len(counts), "windows_per_process": counts, "seconds": round(seconds, 1),
            "windows_per_s": round(sum(counts) / seconds, 1) if seconds else None}


def batch_starts(n: int, size: int, world: int, rank: int) -> range:
    """The first window of each batch rank `rank` of `world` embeds: batches of `size`
    consecutive windows of `n`, batch b to rank b % world."""
    return range(rank * size, n, world * size)


def gather_batches(shares: Sequence[np.ndarray], n: int, size: int) -> np.ndarray:
    """The (n, H) embeddings in window order, from each rank's (`batch_starts`) in rank order."""
    world = len(shares)
    out = np.empty((n, shares[0].shape[1]), dtype=shares[0].dtype)
    for r, part in enumerate(shares):
        starts = batch_starts(n, size, world, r)
        expected = sum(min(size, n - a) for a in starts)
        if len(part) != expected:
            raise RuntimeError(f"rank {r} sent {len(part)} window embeddings, expected {expected}")
        for k, a in enumerate(starts):
            out[a : a + size] = part[k * size : (k + 1) * size]  # only the last batch is short
    return out


def _training_variants(cfg: IndexConfig) -> tuple[pl.DataFrame | None, str]:
    """The known variants the windows carry: the training rows of cfg.split of cfg.dataset only."""
    if not cfg.dataset:
        return None, "none"
    from llamadna.io.dataset import dataset_parquet

    ds = dataset_parquet(cfg.dataset)
    df = pl.read_parquet(ds)
    if cfg.split not in df.columns:
        raise ConfigError(f"{ds}: no split column {cfg.split!r}")
    train = df.filter(pl.col(cfg.split) == "train")
    return known_variant_table(train), f"training split of {cfg.split} in {ds} ({train.height:,} rows)"


def _load_mmi(path: Path, settings: dict, meta: dict | None = None) -> mappy.Aligner:
    """A saved minimap2 index with its mapping settings (k and w are the index's own), checked
    against the size and checksum index.json records for it (an index built before they were
    recorded: not checked)."""
    want = ((meta or {}).get("files") or {}).get(path.name)
    if want is not None:
        size = path.stat().st_size
        if size != want.get("bytes"):
            raise InputError(path, f"{size:,} bytes, but the index was built with {want.get('bytes'):,} "
                             f"(truncated or damaged copy?): {REBUILD}")
        if file_record(path)["blake2b"] != want.get("blake2b"):
            raise InputError(path, f"its checksum is not the one recorded in index.json (damaged or "
                             f"replaced?): {REBUILD}")
    aligner = mappy.Aligner(str(path), **{k: v for k, v in settings.items() if k not in ("k", "w")})
    if not aligner:
        raise InputError(path, "minimap2 could not load this index")
    return aligner


def file_record(path: Path) -> dict:
    """A file's size and BLAKE2b checksum, as index.json records its minimap2 indexes."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return {"bytes": path.stat().st_size, "blake2b": h.hexdigest()}


def _mmi_names(cfg: IndexConfig) -> list[str]:
    """The minimap2 index files an index built with `cfg` holds."""
    return ["minimap2.mmi", *(mmi for key, mmi in CASCADE if getattr(cfg, key)),
            *([LOCI_MMI] if cfg.minimap2_loci else [])]


def _relative_to(target: str | Path, directory: str | Path) -> str:
    """`target` as a path relative to `directory` (both resolved: a link in either is followed)."""
    return os.path.relpath(Path(target).resolve(), Path(directory).resolve())


def _find_encoder(meta: dict, path: Path | None) -> Path | None:
    """Where the encoder index.json records is now (None: not found). Indexes written since
    `PATHS_RELATIVE` record it relative to the index directory; older ones as `llamadna index
    --encoder` was given (relative to that run's working directory, as was `--out`, so the index
    directory's place relative to the encoder is known too: a pair moved together is found)."""
    recorded = meta.get("encoder")
    if not isinstance(recorded, str):
        return None
    if meta.get("paths") == PATHS_RELATIVE:
        # `..` taken from the resolved directory, where `build` counted it
        candidates = [Path(os.path.normpath(path.resolve() / recorded))] if path is not None else []
        if isinstance(meta.get("encoder_absolute"), str):  # the index moved, its encoder did not
            candidates.append(Path(meta["encoder_absolute"]))
    else:
        candidates = [Path(recorded)]
        out = (meta.get("config") or {}).get("out")
        same_base = isinstance(out, str) and Path(out).is_absolute() == Path(recorded).is_absolute()
        if path is not None and same_base:
            candidates.append(Path(os.path.normpath(path.resolve() / os.path.relpath(recorded, out))))
    return next((c for c in candidates if c.is_dir()), None)


def write_records(seqs: list[str], path: str | Path) -> None:
    """A FASTA of index records named by their index (0, 1, ...), as the minimap2 index holds
    them: `segment_sequences()` gives them, so another aligner can search the same records."""
    with open(path, "w") as fh:
        for i, s in enumerate(seqs):
            fh.write(f">{i}\n{s}\n")


def segment_sequences(windows: pl.DataFrame) -> list[str]:
    """The sequence of each index record (`segments.parquet` row), from the index windows."""
    return _segments(windows)[1]


def _minimap2_index(seqs: list[str], mmi: Path | None, settings: dict) -> mappy.Aligner:
    """A minimap2 index of the records, written to `mmi` atomically (None: in memory only)."""
    fd, tmp = tempfile.mkstemp(suffix=".fa", prefix="llamadna_index_")
    os.close(fd)
    made: list[mappy.Aligner] = []

    def index(part: Path | None) -> None:  # part: atomic_write's temporary (owner in its name)
        made.append(mappy.Aligner(fn_idx_in=tmp, **({"fn_idx_out": str(part)} if part else {}),
                                  **settings))
        if not made[-1]:
            raise RuntimeError(f"minimap2 could not index the windows ({settings})")

    try:
        write_records(seqs, tmp)
        if mmi is None:
            index(None)
        else:
            atomic_write(mmi, index)
    finally:
        os.unlink(tmp)
    return made[0]


def _sized_config(cfg: IndexConfig, bases: int) -> IndexConfig:
    """`cfg` with its minimap2 settings for a reference of `bases` (with `scale_k`; recorded in
    index.json), and without the deep tier unless `deep`."""
    if cfg.scale_k:
        sensitive = cfg.minimap2_sensitive and scaled_minimap2(cfg.minimap2_sensitive, bases)
        deep = cfg.minimap2_deep or (sensitive and deep_minimap2(sensitive, cfg.minimap2_sensitive))
        cfg = replace(cfg, minimap2=scaled_minimap2(cfg.minimap2, bases), minimap2_sensitive=sensitive,
                      minimap2_deep=deep or None)
    if not cfg.deep:
        cfg = replace(cfg, minimap2_deep=None)
    return cfg


def _index_meta(cfg: IndexConfig, out: Path, data: Path, windows: pl.DataFrame, segments: pl.DataFrame,
                variants: pl.DataFrame, variants_name, vectors, dim: int, t0: float) -> dict:
    """index.json's content, as `load` reads it back (tuples as lists)."""
    bases = int(segments["length"].sum())
    meta = {
        "format": INDEX_FORMAT, "index_id": uuid.uuid4().hex, "config": asdict(cfg), "data": str(data),
        # relative to the index directory, so that the index and its encoder move together;
        # the absolute path too, so that an index moved without its encoder still finds it
        "encoder": _relative_to(cfg.encoder, out), "paths": PATHS_RELATIVE,
        "encoder_absolute": str(Path(cfg.encoder).resolve()),
        "embedding_dim": dim, "windows": windows.height,
        "builds": windows["build"].unique(maintain_order=True).to_list(),
        "genes": windows["gene"].drop_nulls().n_unique(), "segments": segments.height,
        "segment_bases": bases, "variants": variants_name,
        "variant_rows": variants.height, "exclude_genes": list(cfg.exclude_genes),
        "faiss": {"kind": cfg.faiss, "ntotal": int(vectors.ntotal),
                  "whitened": inner_index(vectors) is not vectors,
                  "nlist": int(getattr(inner_index(vectors), "nlist", 0)) or None},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - t0, 1),
        # size and checksum of each minimap2 index: mappy loads a truncated one without a word
        "files": {mmi: file_record(out / mmi) for mmi in _mmi_names(cfg)},
    }
    return json.loads(json.dumps(meta))
