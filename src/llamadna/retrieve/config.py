"""Settings of the reference index (`llamadna index`; the CLI reads its defaults here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from llamadna.constants import DEFAULT_SPLIT, DEFAULT_WINDOW, RETRIEVAL_K
from llamadna.errors import ConfigError
from llamadna.retrieve.align import (  # noqa: F401 - LOCI_*: the retriever's loci count reads them here
    LOCI_MIN_FRACTION,
    LOCI_SHARE,
    MINIMAP2_BEST_N,
    MINIMAP2_INDEX,
    MINIMAP2_SENSITIVE,
)

EMBED_BATCH = 64  # chunks per encoder forward
FAISS_KINDS = ("flat", "ivfpq")
DEFAULT_STRIDE = 128
DEFAULT_FLANK = 1000  # bases around each gene tiled too (tile "genes")
# What `llamadna index` tiles: "all" = every record of the reference whole (intergenic windows
# carry no gene: the retriever names the genes on each side), "genes" = each gene +- `flank`.
INDEX_TILES = ("all", "genes")
DEFAULT_INDEX_TILE = "all"
# A query's loci (`Retriever`, the lookups): LOCI_SHARE and LOCI_MIN_FRACTION of retrieve.align.
DEFAULT_NPROBE = 16  # IVF lists searched per query
DEFAULT_K = RETRIEVAL_K  # candidates per query
# PCA whitening of the embeddings (`retrieve.index.whitening`): windows needed per dimension
# to fit it, and the floor added to each eigenvalue as a fraction of their mean (regularised
# whitening: directions of little variance are not amplified without bound). Chosen on the
# bundle's split_gene test windows at 10 % divergence and three mito species, nearest-window
# gene (docs/BENCHMARKS.md): floors 1e-4 / 0.01 / 0.1 / 1 gave 0.426 / 0.426 / 0.429 / 0.382 at
# 10 %, orangutan 0.351 / 0.351 / 0.351 / 0.270.
WHITEN_MIN_PER_DIM = 2
WHITEN_EPSILON = 0.1
CASCADE_BELOW = 0.5  # best identity x aligned fraction under which the sensitive index is tried
# When the hybrid retriever embeds a query: "always", or only when its alignment is poor
# ("unaligned": best identity x aligned fraction below CASCADE_BELOW; faster, since an aligned
# query's first candidate is the alignment's anyway, but its list holds aligned genes only)
EMBED_WHEN = ("always", "unaligned")
DEFAULT_EMBED_WHEN = "always"


@dataclass
class IndexConfig:
    """Settings of `llamadna index`."""

    encoder: str
    out: str
    data: str | None = None  # bundle (default: $LLAMADNA_DATA, else ../shared/data)
    window: int = DEFAULT_WINDOW
    stride: int = DEFAULT_STRIDE
    tile: str = DEFAULT_INDEX_TILE  # INDEX_TILES
    flank: int = DEFAULT_FLANK  # tile "genes" only
    dataset: str | None = None  # the windows carry this dataset's `split` training variants
    split: str = DEFAULT_SPLIT
    exclude_genes: tuple[str, ...] = ()  # gene names or ids left out (a fold's held-out genes)
    faiss: str = "flat"
    nlist: int | None = None  # ivfpq: default 4 * sqrt(windows)
    pq_m: int = 16
    whiten: bool = True  # PCA-whiten the embeddings in the FAISS index (`retrieve.index.whitening`)
    # minimap2 settings of the first pass; best_n (secondary alignments kept) lets the
    # retriever count the loci a repeat aligns to
    minimap2: dict = field(default_factory=lambda: {**MINIMAP2_INDEX, "best_n": MINIMAP2_BEST_N})
    # second, sensitive minimap2 index: queries the first one maps poorly (best identity x
    # aligned fraction below CASCADE_BELOW) are aligned again on it; None = no second pass
    minimap2_sensitive: dict | None = field(
        default_factory=lambda: {**MINIMAP2_SENSITIVE, "best_n": MINIMAP2_BEST_N})
    # raise both settings' k with the size of the reference (`retrieve.align.scaled_minimap2`);
    # index.json records the settings used
    scale_k: bool = True
    # third, deep minimap2 index for the queries the first two map poorly: these settings, or
    # (None) on a reference large enough for scale_k to raise k, `retrieve.align.deep_minimap2`'s;
    # `deep` False = no third tier
    minimap2_deep: dict | None = None
    deep: bool = True
    # the loci tier (`llamadna index --loci-tier`): a minimap2 index that counts each query's
    # loci (constants.MINIMAP2_LOCI, e.g. dict(MINIMAP2_LOCI): minimap2's default k and w, every
    # chain kept), as the repeat negatives' truth is counted; None (the default) = loci counted
    # on the passes' own hits, which drop copies a few percent diverged. Off by default: with it
    # the tuned rule answers repeats better, but three models trained with it (seeds 0-2) said
    # "repeat" for 17-24 of 84 validation repeat windows against 67 without it: the windows of
    # genes in segmental duplications then show 3 loci too, and their training target is their
    # gene (docs/RESULTS.md)
    minimap2_loci: dict | None = None
    batch_size: int = EMBED_BATCH

    def __post_init__(self) -> None:
        if self.faiss not in FAISS_KINDS:
            raise ConfigError(f"unknown FAISS index {self.faiss!r}: expected one of {FAISS_KINDS}")
        if self.tile not in INDEX_TILES:
            raise ConfigError(f"unknown tiling {self.tile!r}: expected one of {INDEX_TILES}")
