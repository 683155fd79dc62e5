"""The reference index (build, save/load, derive, FAISS and minimap2 tiers, the `index` and
`search` commands) on a generated bundle with a tiny encoder."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from llamadna.data.mutate import mutate
from llamadna.retrieve.index import (
    INDEX_FILES,
    INDEX_FORMAT,
    IndexConfig,
    ReferenceIndex,
    _faiss_index,
    inner_index,
)
from llamadna.retrieve.retriever import CANDIDATE_FIELDS, Retriever
from tests.retrieve.conftest import W


def test_training_index_holds_no_validation_or_test_variant(workspace):
    root, _, df, index = workspace
    train = df.filter(pl.col("split_gene") == "train")
    allowed = set(zip(train["build"], train["chrom"], train["variant_pos"], train["Dataset"]))
    held = df.filter(pl.col("split_gene") != "train")
    held_only = set(zip(held["build"], held["chrom"], held["variant_pos"], held["Dataset"])) - allowed
    assert held_only  # the check below can fail
    w = index.windows.explode("variant_pos", "variant_source").drop_nulls("variant_pos")
    carried = set(zip(w["build"], w["chrom"], w["variant_pos"], w["variant_source"]))
    table = set(index.variants.iter_rows())
    assert carried and carried <= allowed and table <= allowed
    assert not (carried | table) & held_only
    assert "training split of split_gene" in index.meta["variants"]


def test_save_load_round_trips(workspace):
    root, _, df, index = workspace
    assert all((root / "index" / f).exists() for f in INDEX_FILES)
    loaded = ReferenceIndex.load(root / "index")
    assert loaded.windows.equals(index.windows) and loaded.segments.equals(index.segments)
    assert loaded.meta == index.meta and loaded.vectors.ntotal == index.windows.height
    q = df["Sequence"].head(10).to_list()
    a = Retriever(index, str(root / "encoder"))(q)
    assert Retriever(loaded)(q) == a  # the encoder named in index.json


def test_an_index_of_an_older_format_is_refused(workspace, tmp_path):
    """Format 1 (genes +- flank only, no best_n): refused with the advice to rebuild."""
    import json
    import shutil

    from llamadna.errors import InputError

    root, _, _, _ = workspace
    shutil.copytree(root / "index", tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "index.json").read_text())
    (tmp_path / "old" / "index.json").write_text(json.dumps({**meta, "format": 1}))
    with pytest.raises(InputError, match=r"index format 1, this version reads 2: rebuild the index"):
        ReferenceIndex.load(tmp_path / "old")
    assert ReferenceIndex.load(root / "index").meta["format"] == 2


def test_excluded_genes_are_absent(workspace, tmp_path):
    root, b, df, _ = workspace
    gene = df.filter(pl.col("gene_name").is_not_null())["gene_name"][0]
    idx = ReferenceIndex.build(IndexConfig(encoder=str(root / "encoder"), out=str(tmp_path / "ix"),
                                           data=str(b.path), window=W, stride=32, flank=100,
                                           exclude_genes=(gene,)))
    assert gene not in idx.windows["gene"].to_list() and idx.meta["exclude_genes"] == [gene]
    rows = df.filter(pl.col("gene_name") == gene)
    hits = Retriever(idx)(rows["Sequence"].to_list())
    assert all(c["gene"] != gene for h in hits for c in h)


def test_ivfpq_option_and_its_limits():
    from llamadna.errors import ConfigError

    rng = np.random.default_rng(0)
    v = rng.normal(size=(2_000, 32)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    ix = _faiss_index(v, "ivfpq", 16, 8)
    _, ids = ix.search(v[:50], 5)
    assert np.mean(ids[:, 0] == np.arange(50)) > 0.8  # compressed, but finds itself
    with pytest.raises(ConfigError, match="needs >= "):
        _faiss_index(v[:100], "ivfpq", 16, 8)
    with pytest.raises(ConfigError, match="must divide"):
        _faiss_index(v, "ivfpq", 16, 5)


def test_index_and_search_commands(workspace, tmp_path):
    import json

    from typer.testing import CliRunner

    from llamadna.cli import app

    root, b, df, _ = workspace
    genes = tmp_path / "held_out.txt"
    gene = df.filter(pl.col("gene_name").is_not_null())["gene_name"][0]
    genes.write_text(f"# a fold's held-out genes\n{gene}\n\n")
    runner = CliRunner()
    res = runner.invoke(app, ["index", "--encoder", str(root / "encoder"), "--out", str(tmp_path / "ix"),
                              "--data", str(b.path), "--window", str(W), "--stride", "48",
                              "--exclude-genes", str(genes), "--dataset", str(root / "dataset"),
                              "--no-whiten", "--no-deep", "--tile", "genes"])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "ix" / "index.json").read_text())
    assert meta["exclude_genes"] == [gene] and meta["config"]["stride"] == 48
    assert meta["config"]["tile"] == "genes" and meta["format"] == INDEX_FORMAT == 2
    # genes +- flank only: fewer bases than the whole genome the workspace index tiles
    assert meta["segment_bases"] < sum(len(s) for _, s in b.genome.values()) == workspace[3].meta["segment_bases"]
    res = runner.invoke(app, ["index", "--encoder", str(root / "encoder"), "--out", str(tmp_path / "iy"),
                              "--data", str(b.path), "--tile", "genome"])
    assert res.exit_code != 0 and "unknown tiling 'genome'" in res.output and not (tmp_path / "iy").exists()
    assert meta["faiss"]["whitened"] is False and meta["config"]["deep"] is False
    fa = tmp_path / "q.fa"
    seqs = df["Sequence"].head(5).to_list()
    fa.write_text("".join(f">q{i}\n{s}\n" for i, s in enumerate(seqs)) + ">allN\n" + "N" * 100 + "\n")
    res = runner.invoke(app, ["search", str(fa), "--index", str(tmp_path / "ix"), "--out", str(tmp_path / "h.tsv")])
    assert res.exit_code == 0, res.output
    t = pl.read_csv(tmp_path / "h.tsv", separator="\t")
    assert t.columns == ["query", "rank", *CANDIDATE_FIELDS]
    assert set(t["query"]) == {f"q{i}" for i in range(5)} | {"allN"}  # no query lost
    assert t.filter(pl.col("query") == "allN")["rank"].to_list() == [0]
    assert t.filter(pl.col("query") != "allN")["rank"].max() <= 4
    res = runner.invoke(app, ["search", str(fa), "--index", str(tmp_path / "ix"), "--out",
                              str(tmp_path / "h.jsonl"), "--k", "2", "--mode", "align"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in (tmp_path / "h.jsonl").read_text().splitlines()]
    assert [x["query"] for x in lines] == [*(f"q{i}" for i in range(5)), "allN"]
    assert lines[-1]["candidates"] == [] and all(len(x["candidates"]) <= 2 for x in lines)
    res = runner.invoke(app, ["search", str(fa), "--index", str(tmp_path / "ix"), "--out",
                              str(tmp_path / "u.tsv"), "--embed-when", "unaligned"])
    assert res.exit_code == 0, res.output
    u = pl.read_csv(tmp_path / "u.tsv", separator="\t")
    assert u.filter(pl.col("rank") == 1)["gene"].to_list() == t.filter(pl.col("rank") == 1)["gene"].to_list()
    res = runner.invoke(app, ["search", str(fa), "--index", str(tmp_path / "ix"), "--out",
                              str(tmp_path / "v.tsv"), "--embed-when", "sometimes"])
    assert res.exit_code != 0 and "--embed-when" in res.output and not (tmp_path / "v.tsv").exists()
    # clear one-line errors, nothing written
    bad = tmp_path / "bad.fa"
    bad.write_text(">x\nACGT\n>y\nAC!T\n")
    res = runner.invoke(app, ["search", str(bad), "--index", str(tmp_path / "ix"), "--out", str(tmp_path / "b.tsv")])
    assert res.exit_code != 0 and "bad.fa:4" in res.output.replace("\n", "")
    assert not (tmp_path / "b.tsv").exists()
    res = runner.invoke(app, ["search", str(fa), "--index", str(tmp_path / "nope"), "--out", str(tmp_path / "c.tsv")])
    assert res.exit_code != 0 and "no such index directory" in res.output
    res = runner.invoke(app, ["search", str(fa), "--index", str(tmp_path / "ix"), "--out", str(tmp_path / "c.txt")])
    assert res.exit_code != 0 and "unknown output format" in res.output


@pytest.mark.slow
def test_data_parallel_embedding_gives_the_single_process_index(workspace, tmp_path):
    """Two ranks embed alternate batches of windows; the gathered index is the one-process
    index bit for bit (both with one torch thread a process): the same stored vectors, the same
    FAISS file (whitening fitted on the same embeddings) and the same hybrid search results."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.train.launch import torchrun_cli

    root, b, df, _ = workspace
    args = ["--encoder", str(root / "encoder"), "--data", str(b.path), "--window", str(W), "--stride", "32",
            "--flank", "100", "--dataset", str(root / "dataset")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    env.pop("WORLD_SIZE", None)
    res = subprocess.run([sys.executable, "-m", "llamadna.cli", "index", *args, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, timeout=900, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    res = torchrun_cli("index", *args, "--out", str(tmp_path / "two"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stderr.count("wrote") == 1  # the main process writes and reports
    one, two = ReferenceIndex.load(tmp_path / "one"), ReferenceIndex.load(tmp_path / "two")
    n = one.windows.height
    size = IndexConfig.batch_size
    assert n % size and n // size >= 4  # several batches a rank, the last one short
    assert two.windows.equals(one.windows) and two.meta["windows"] == n
    # who embedded what: index.json and the summary line (whole batches, round-robin)
    first = sum(min(size, n - a) for a in range(0, n, 2 * size))
    assert two.meta["embedding"]["windows_per_process"] == [first, n - first]
    assert one.meta["embedding"]["windows_per_process"] == [n] and one.meta["embedding"]["processes"] == 1
    assert f"embedded by 2 process(es) ({first:,}, {n - first:,} windows)" in " ".join(res.stderr.split())
    stored = [inner_index(ix.vectors).reconstruct_n(0, n) for ix in (one, two)]
    assert stored[0].dtype == np.float32 and np.array_equal(stored[0], stored[1])
    assert (tmp_path / "one" / "embeddings.faiss").read_bytes() == (tmp_path / "two" / "embeddings.faiss").read_bytes()
    rng = np.random.default_rng(7)
    q = [*df["Sequence"].head(20).to_list(), *(mutate(s, 0.2, rng) for s in df["Sequence"].tail(20))]
    a = Retriever(one, str(root / "encoder"), k=8)
    hits = a(q)
    assert sum(c["via"] != "align" for h in hits for c in h) > 20  # the embeddings take part
    assert Retriever(two, embedder=a.embedder, k=8)(q) == hits


def test_ranks_embed_the_batches_of_one_process():
    """Each rank's batches are batches of the one-process run, so an embedder whose rows depend
    on their batch (as padding makes a real encoder's last bits do) gives the one-process result
    once gathered, for any number of ranks; taking every N-th window would not."""
    from llamadna.retrieve.index import batch_starts, gather_batches

    seqs = np.arange(23, dtype=np.float32)

    def embed(batch: np.ndarray) -> np.ndarray:  # (B, 2): the row and its batch's mean
        return np.stack([batch, np.full_like(batch, batch.mean())], axis=1)

    def one_rank(world: int, rank: int, size: int) -> np.ndarray:
        parts = [embed(seqs[a : a + size]) for a in batch_starts(len(seqs), size, world, rank)]
        return np.concatenate(parts) if parts else np.empty((0, 2), dtype=np.float32)

    single = one_rank(1, 0, 4)
    for world in (2, 3, 7, 30):
        gathered = gather_batches([one_rank(world, r, 4) for r in range(world)], len(seqs), 4)
        assert np.array_equal(gathered, single)
    strided = np.empty_like(single)
    for r in range(2):  # every 2nd window, batched on each rank: other batches, other rows
        strided[r::2] = np.concatenate([embed(seqs[r::2][a : a + 4]) for a in range(0, len(seqs[r::2]), 4)])
    assert not np.array_equal(strided, single)
    with pytest.raises(RuntimeError, match="rank 1 sent 3 window embeddings, expected 11"):
        gather_batches([one_rank(2, 0, 4), one_rank(2, 1, 4)[:3]], len(seqs), 4)


def test_minimap2_k_grows_with_the_reference_and_the_index_records_it(workspace):
    from llamadna.retrieve.align import MINIMAP2_BEST_N, MINIMAP2_INDEX, MINIMAP2_TUNED_BASES, scaled_minimap2

    assert scaled_minimap2(MINIMAP2_INDEX, 10_000) == MINIMAP2_INDEX  # never lowered
    assert scaled_minimap2(MINIMAP2_INDEX, 16 * MINIMAP2_TUNED_BASES)["k"] == MINIMAP2_INDEX["k"] + 2
    assert scaled_minimap2(MINIMAP2_INDEX, 3_100_000_000)["k"] == MINIMAP2_INDEX["k"] + 5  # a genome
    assert scaled_minimap2(MINIMAP2_INDEX, 10**30)["k"] == 28  # minimap2's limit
    assert scaled_minimap2({"preset": "map-ont"}, 10**10) == {"preset": "map-ont"}
    _, _, _, index = workspace  # a small reference keeps the tuned settings, as index.json says
    assert index.meta["config"]["minimap2"] == {**MINIMAP2_INDEX, "best_n": MINIMAP2_BEST_N}
    assert index.meta["config"]["scale_k"] is True


def test_segment_records_are_what_minimap2_indexes(workspace, tmp_path):
    import mappy

    from llamadna.retrieve.index import segment_sequences, write_records

    _, _, _, index = workspace
    seqs = segment_sequences(index.windows)
    assert len(seqs) == index.segments.height
    assert [len(s) for s in seqs] == index.segments["length"].to_list()
    write_records(seqs, tmp_path / "seg.fa")
    names = [name for name, _, _ in mappy.fastx_read(str(tmp_path / "seg.fa"))]
    assert names == [str(i) for i in range(len(seqs))]
    assert index.aligner.seq("0") == seqs[0]  # the minimap2 index holds the same record 0


def test_derived_index_masks_genes_and_swaps_variants(workspace):
    root, b, df, index = workspace
    gene = index.windows["gene"].drop_nulls().value_counts(sort=True)["gene"][0]
    rows = df.filter(pl.col("gene_name") == gene)
    masked = index.derive(exclude_genes=[gene])
    assert gene not in masked.windows["gene"].to_list() and gene not in masked.genes["gene_name"].to_list()
    assert masked.vectors.ntotal == masked.windows.height < index.windows.height
    assert masked.windows["window"].to_list() == list(range(masked.windows.height))
    # the kept windows keep their embeddings (same vectors as in the full index)
    w0 = index.windows.filter(pl.col("Sequence") == masked.windows["Sequence"][0])["window"][0]
    assert np.allclose(inner_index(masked.vectors).reconstruct(0), inner_index(index.vectors).reconstruct(int(w0)))
    # the masked gene is found by neither retriever half; the full index finds it
    q = rows["Sequence"].head(5).to_list()
    assert all(c[0]["gene"] == gene for c in Retriever(index, str(root / "encoder"))(q))
    for hits in Retriever(masked, str(root / "encoder"), k=8)(q):
        assert gene not in [c["gene"] for c in hits]
    # another variant table: none of the rows given -> no variant carried, no source
    none = index.derive(variants=df.head(0))
    assert none.variants.height == 0 and none.windows["variant_pos"].list.len().sum() == 0
    assert all(c["source"] is None for h in Retriever(none, str(root / "encoder"))(q) for c in h)
    assert index.derive(variants=df).variants.height >= index.variants.height


def test_whitening_finds_neighbours_that_raw_cosines_miss():
    """Near-collinear embeddings that vary widely along a few directions (composition, say) and
    little along the many that tell windows apart, with queries moved along the wide ones (as a
    mutation moves composition): raw cosines rank by the wide directions and miss; whitening the
    index's space scales each direction by its spread and finds them. Search applies the stored
    transform to the queries."""
    import faiss

    rng = np.random.default_rng(0)
    n, d = 1_000, 32
    base = np.zeros(d)
    base[-1] = 1.0
    wide = [8, 9, 10, 11]
    narrow = [i for i in range(28) if i not in wide]
    v = np.zeros((n, d))
    v[:, wide] = rng.normal(scale=0.05, size=(n, len(wide)))
    v[:, narrow] = rng.normal(scale=0.01, size=(n, len(narrow)))
    q = v[:200].copy()
    q[:, wide] += rng.normal(scale=0.05, size=(200, len(wide)))

    def unit(a: np.ndarray) -> np.ndarray:
        return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)

    windows, queries = unit(base + v), unit(base + q)
    found = {}
    for whiten in (False, True):
        ix = _faiss_index(windows, "flat", None, 16, whiten=whiten)
        assert isinstance(ix, faiss.IndexPreTransform) == whiten and ix.ntotal == n
        _, ids = ix.search(queries, 1)
        found[whiten] = np.mean(ids[:, 0] == np.arange(200))
    assert found[False] < 0.45 and found[True] > 0.9
    # too few windows to fit the transform: not whitened (a warning), still searchable
    small = _faiss_index(windows[: 2 * d - 1], "flat", None, 16, whiten=True)
    assert not isinstance(small, faiss.IndexPreTransform) and small.ntotal == 2 * d - 1


def test_whitened_index_round_trips_and_derives(workspace):
    root, _, df, index = workspace
    import faiss

    assert index.meta["faiss"]["whitened"] and isinstance(index.vectors, faiss.IndexPreTransform)
    loaded = ReferenceIndex.load(root / "index")
    assert isinstance(loaded.vectors, faiss.IndexPreTransform)
    gene = df.filter(pl.col("gene_name").is_not_null())["gene_name"][0]
    sub = loaded.derive([gene])
    del loaded  # the derived index owns copies of the transforms
    assert isinstance(sub.vectors, faiss.IndexPreTransform) and sub.vectors.ntotal == sub.windows.height
    q = df.filter(pl.col("gene_name").is_not_null() & (pl.col("gene_name") != gene))["Sequence"].head(20).to_list()
    full = Retriever(index, str(root / "encoder"), mode="embed")
    part = Retriever(sub, mode="embed", embedder=full.embedder)
    a, b = full(q), part(q)
    # a window kept by the derived index has the same cosine in both (same stored vector)
    for ha, hb in zip(a, b):
        kept = {c["gene"]: c["cosine"] for c in hb}
        for c in ha:
            if c["gene"] in kept and c["gene"] != gene:
                assert kept[c["gene"]] >= c["cosine"] - 1e-5
    assert all(c["gene"] != gene for h in b for c in h)


def test_deep_tier_maps_what_the_first_two_miss(workspace, tmp_path):
    """Three tiers on the small genome: the first two too coarse to seed a 15 %-diverged
    96-base window, the deep one fine enough; the deep tier is saved, loaded and rebuilt by derive."""
    root, b, df, _ = workspace
    coarse = {"k": 21, "w": 11, "min_cnt": 3, "min_chain_score": 60, "min_dp_score": 40}
    deep = {"k": 8, "w": 1, "min_cnt": 2, "min_chain_score": 20, "min_dp_score": 40}
    cfg = IndexConfig(encoder=str(root / "encoder"), out=str(tmp_path / "ix"), data=str(b.path), window=W,
                      stride=32, flank=100, minimap2=coarse, minimap2_sensitive=coarse, minimap2_deep=deep)
    index = ReferenceIndex.build(cfg)
    assert index.meta["config"]["minimap2_deep"] == deep and (tmp_path / "ix" / "minimap2_deep.mmi").exists()
    rows = df.filter(pl.col("gene_name").is_not_null()).head(20)
    rng = np.random.default_rng(4)
    q = [mutate(s, 0.15, rng) for s in rows["Sequence"]]
    truth = rows["gene_name"].to_list()

    def found(ix) -> int:
        return sum(bool(h) and h[0]["gene"] == g for h, g in zip(Retriever(ix, mode="align")(q), truth))

    three = found(index)
    loaded = ReferenceIndex.load(tmp_path / "ix")
    assert len(loaded.cascade) == 2 and found(loaded) == three
    two = ReferenceIndex.build(replace(cfg, out=str(tmp_path / "ix2"), deep=False))
    assert two.meta["config"]["minimap2_deep"] is None and len(two.cascade) == 1
    assert found(two) <= 2 and three >= 15  # 0 and 19 of 20
    other = next(g for g in index.windows["gene"].drop_nulls().unique().sort() if g not in truth)
    assert len(index.derive([other]).cascade) == 2


def test_the_loci_tier_is_saved_loaded_rebuilt_by_derive_and_optional(workspace, tmp_path):
    """minimap2_loci.mmi (constants.MINIMAP2_LOCI) is written, checksummed and loaded; derive
    rebuilds it without the excluded gene; an index without it (the default, minimap2_loci
    None, or an index.json from before it) loads with none, and one that names it but lacks the
    file is incomplete."""
    import json
    import shutil

    from llamadna.constants import MINIMAP2_LOCI
    from llamadna.errors import InputError
    from llamadna.retrieve.index import LOCI_MMI

    root, b, _, _ = workspace
    cfg = IndexConfig(encoder=str(root / "encoder"), out=str(tmp_path / "ix"), data=str(b.path), window=W,
                      stride=32, whiten=False)
    assert cfg.minimap2_loci is None  # off by default
    index = ReferenceIndex.build(replace(cfg, minimap2_loci=dict(MINIMAP2_LOCI)))
    assert index.meta["config"]["minimap2_loci"] == MINIMAP2_LOCI and (tmp_path / "ix" / LOCI_MMI).exists()
    assert LOCI_MMI in index.meta["files"]
    loaded = ReferenceIndex.load(tmp_path / "ix")
    gene = index.windows["gene"].drop_nulls().unique().sort()[0]
    seq = index.windows.filter(pl.col("gene") == gene)["Sequence"][0]
    assert loaded.loci is not None and [h.r_st for h in loaded.loci.map(seq)] == [h.r_st for h in index.loci.map(seq)]
    assert list(index.loci.map(seq)) and not list(index.derive([gene]).loci.map(seq))  # gone with its gene
    # without the tier: none written, none loaded; an index.json from before it the same
    bare = ReferenceIndex.build(replace(cfg, out=str(tmp_path / "bare")))
    assert bare.loci is None and not (tmp_path / "bare" / LOCI_MMI).exists()
    assert ReferenceIndex.load(tmp_path / "bare").loci is None
    older = shutil.copytree(tmp_path / "bare", tmp_path / "older")
    meta = json.loads((older / "index.json").read_text())
    del meta["config"]["minimap2_loci"]
    (older / "index.json").write_text(json.dumps(meta))
    assert ReferenceIndex.load(older).loci is None
    (tmp_path / "ix" / LOCI_MMI).unlink()
    with pytest.raises(InputError, match=f"incomplete index: {LOCI_MMI} missing"):
        ReferenceIndex.load(tmp_path / "ix")
