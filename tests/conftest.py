"""Shared fixtures: generated bundles (tiny, in the real formats) and the real data bundle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llamadna.data.synthetic import make_bundle

REPO = Path(__file__).resolve().parents[1]


def real_data_dir() -> Path | None:
    env = os.environ.get("LLAMADNA_DATA")
    p = Path(env) if env else REPO.parent / "shared" / "data"
    return p if (p / "MANIFEST.md").exists() else None


@pytest.fixture
def real_data() -> Path:
    p = real_data_dir()
    if p is None:
        pytest.skip("real data bundle not found (../shared/data or $LLAMADNA_DATA)")
    return p


@pytest.fixture(scope="session")
def bundle_factory(tmp_path_factory):
    """make_bundle into a fresh directory: bundle_factory(**kwargs) -> SyntheticBundle."""
    count = [0]

    def make(**kwargs):
        count[0] += 1
        return make_bundle(tmp_path_factory.mktemp(f"bundle{count[0]}"), **kwargs)

    return make


def model_workspace(root: Path, bundle_factory, seed: int, n_variants: int = 160, **bundle):
    """A generated bundle -> dataset (W = 96) -> a tiny pretrained encoder, under `root`.
    `bundle`: make_bundle settings other than these three small chromosomes.

    Returns the bundle path; `root/dataset` and `root/encoder` are ready for `train`."""
    from llamadna.data.build import BuildConfig, build_dataset
    from llamadna.io.dataset import write_dataset
    from llamadna.train.pretrain_encoder import PretrainConfig, pretrain_encoder

    b = bundle_factory(**{"seed": seed, "n_variants": n_variants,
                          "chrom_lengths": {"chr1": 30_000, "chr2": 30_000, "chr3": 30_000}, **bundle})
    df, summary = build_dataset(b.path, BuildConfig(window=96))
    write_dataset(df, summary, root / "dataset")
    pretrain_encoder(b.path, root / "encoder", PretrainConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, window=256, steps=3, batch_size=4,
        max_windows=40))
    return b.path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models (32-wide matrices): intra-op threads only add overhead, and on a busy machine
    they make generation tens of times slower. Modules opt in with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def small_bundle(bundle_factory):
    return bundle_factory(seed=1)


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    """Tests keep the offline WordNet copy (and any other cache) out of the home folder."""
    old = os.environ.get("LLAMADNA_CACHE")
    os.environ["LLAMADNA_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("LLAMADNA_CACHE", None)
    else:
        os.environ["LLAMADNA_CACHE"] = old
