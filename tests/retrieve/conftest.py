"""Shared fixtures of the retrieve/ tests: one generated bundle indexed with a tiny encoder."""

from __future__ import annotations

import pytest

W = 96  # window of the dataset and of the index


@pytest.fixture(scope="session")
def workspace(tmp_path_factory, bundle_factory):
    """Built once for every retrieve/ test module (tests never modify it: copy before changing).

    (root, bundle, dataset frame, ReferenceIndex): a two-chromosome bundle with 8 genes, its
    dataset (W-base windows) under root/dataset, a tiny pretrained encoder under root/encoder and
    the reference index (both chromosomes tiled whole, the default; stride 32, flank 100 unused;
    the dataset's split_gene training variants) under root/index."""
    from llamadna.data.build import BuildConfig, build_dataset
    from llamadna.io.dataset import write_dataset
    from llamadna.retrieve.index import IndexConfig, ReferenceIndex
    from llamadna.train.pretrain_encoder import PretrainConfig, pretrain_encoder

    root = tmp_path_factory.mktemp("index")
    b = bundle_factory(seed=5, n_variants=120, n_genes=8, gene_len=(1_000, 3_000),
                       chrom_lengths={"chr1": 12_000, "chr2": 10_000})
    df, summary = build_dataset(b.path, BuildConfig(window=W))
    write_dataset(df, summary, root / "dataset")
    pretrain_encoder(b.path, root / "encoder", PretrainConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, window=256, steps=3, batch_size=4,
        max_windows=40))
    index = ReferenceIndex.build(IndexConfig(encoder=str(root / "encoder"), out=str(root / "index"),
                                             data=str(b.path), dataset=str(root / "dataset"),
                                             window=W, stride=32, flank=100))
    return root, b, df, index
