"""Settings of the reference index: defaults and their validation."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from llamadna.constants import DEFAULT_WINDOW, RETRIEVAL_K
from llamadna.errors import ConfigError
from llamadna.retrieve.align import MINIMAP2_BEST_N, MINIMAP2_INDEX, MINIMAP2_SENSITIVE
from llamadna.retrieve.config import (
    DEFAULT_EMBED_WHEN,
    DEFAULT_K,
    EMBED_BATCH,
    EMBED_WHEN,
    FAISS_KINDS,
    INDEX_TILES,
    IndexConfig,
)


def test_defaults():
    cfg = IndexConfig(encoder="enc", out="ix")
    assert (cfg.window, cfg.stride, cfg.flank, cfg.tile) == (DEFAULT_WINDOW, 128, 1000, "all")
    assert (cfg.data, cfg.dataset, cfg.split, cfg.exclude_genes) == (None, None, "split_gene", ())
    assert (cfg.faiss, cfg.nlist, cfg.pq_m, cfg.whiten) == ("flat", None, 16, True)
    # the tuned settings, reporting up to MINIMAP2_BEST_N alignments (the loci count reads them)
    assert cfg.minimap2 == {**MINIMAP2_INDEX, "best_n": MINIMAP2_BEST_N}
    assert cfg.minimap2_sensitive == {**MINIMAP2_SENSITIVE, "best_n": MINIMAP2_BEST_N}
    assert "best_n" not in MINIMAP2_INDEX and "best_n" not in MINIMAP2_SENSITIVE  # the lookups' own
    assert (cfg.minimap2_deep, cfg.deep, cfg.scale_k) == (None, True, True)
    assert cfg.batch_size == EMBED_BATCH
    assert DEFAULT_K == RETRIEVAL_K and DEFAULT_EMBED_WHEN in EMBED_WHEN


def test_minimap2_settings_are_copies_of_the_module_constants():
    """A shared dict default would let one config's edit (build's scale_k writes a new dict, a
    caller may not) change MINIMAP2_INDEX for every later index."""
    saved = dict(MINIMAP2_INDEX), dict(MINIMAP2_SENSITIVE)
    try:
        a, b = IndexConfig(encoder="e", out="o"), IndexConfig(encoder="e", out="o")
        a.minimap2["k"] = 99
        a.minimap2_sensitive["k"] = 99
        assert (MINIMAP2_INDEX, MINIMAP2_SENSITIVE) == saved
        assert (b.minimap2, b.minimap2_sensitive) == tuple({**x, "best_n": MINIMAP2_BEST_N} for x in saved)
    finally:  # a failure must not leak into later tests
        MINIMAP2_INDEX.update(saved[0])
        MINIMAP2_SENSITIVE.update(saved[1])


@pytest.mark.parametrize("kind", FAISS_KINDS)
def test_known_faiss_kinds_are_accepted(kind):
    assert IndexConfig(encoder="e", out="o", faiss=kind).faiss == kind


@pytest.mark.parametrize("tile", INDEX_TILES)
def test_known_tilings_are_accepted(tile):
    assert IndexConfig(encoder="e", out="o", tile=tile).tile == tile


@pytest.mark.parametrize("tile", ["genome", "All", ""])
def test_unknown_tiling_is_a_config_error_naming_the_choices(tile):
    with pytest.raises(ConfigError, match=r"unknown tiling .*all.*genes"):
        IndexConfig(encoder="e", out="o", tile=tile)


@pytest.mark.parametrize("kind", ["hnsw", "Flat", ""])
def test_unknown_faiss_kind_is_a_config_error_naming_the_choices(kind):
    with pytest.raises(ConfigError, match=r"unknown FAISS index .*flat.*ivfpq"):
        IndexConfig(encoder="e", out="o", faiss=kind)


def test_config_round_trips_through_index_json():
    """index.json stores asdict(cfg) (tuples as lists); the same settings read back."""
    cfg = IndexConfig(encoder="e", out="o", exclude_genes=("A", "B"), minimap2_sensitive=None)
    back = IndexConfig(**json.loads(json.dumps(asdict(cfg))))
    assert asdict(back) == {**asdict(cfg), "exclude_genes": ["A", "B"]}
