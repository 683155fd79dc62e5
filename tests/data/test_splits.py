import numpy as np
import polars as pl
import pytest

from llamadna.data.splits import add_splits, chrom_split, group_split, random_split


def test_random_split_fractions_and_seed():
    a = random_split(1000, seed=3)
    assert {s: int((a == s).sum()) for s in ("train", "val", "test")} == {
        "train": 800, "val": 100, "test": 100}
    assert (a == random_split(1000, seed=3)).all()
    assert not (a == random_split(1000, seed=4)).all()


def test_group_split_never_splits_a_group():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 60, 3000).astype(str)
    s = group_split(groups, seed=1)
    per_group = pl.DataFrame({"g": groups, "s": s}).group_by("g").agg(pl.col("s").n_unique())
    assert per_group["s"].max() == 1
    frac = {k: (s == k).mean() for k in ("train", "val", "test")}
    assert frac["train"] == pytest.approx(0.8, abs=0.05)
    assert frac["val"] == pytest.approx(0.1, abs=0.05)


def test_chrom_split_holds_out_whole_chromosomes():
    chroms = np.array(["chr1"] * 500 + ["chr2"] * 300 + ["chr3"] * 60 + ["chr4"] * 50
                      + ["chr5"] * 50 + ["chr6"] * 40)
    s = chrom_split(chroms, seed=0)
    df = pl.DataFrame({"c": chroms, "s": s})
    assert df.group_by("c").agg(pl.col("s").n_unique())["s"].max() == 1
    for k in ("train", "val", "test"):
        assert (s == k).any()
    # the two big chromosomes stay in train: held-out splits stay within 2x their 10 % target
    assert (s[chroms == "chr1"] == "train").all() and (s[chroms == "chr2"] == "train").all()
    assert (s == "val").mean() <= 0.2 and (s == "test").mean() <= 0.2


def test_chrom_split_needs_three_chromosomes():
    assert chrom_split(np.array(["chr1", "chr2", "chr2"]), seed=0) is None
    df = pl.DataFrame({"chrom": ["chr1", "chr2"], "gene_id": ["a", "b"], "build": "GRCh38",
                       "gene_name": ["A", "B"]})
    out, notes = add_splits(df, seed=0)
    assert out["split_chrom"].is_null().all() and "split_chrom" in notes


def test_gene_folds_make_every_gene_a_test_gene_once():
    import numpy as np
    import polars as pl

    from llamadna.data.splits import add_splits, gene_folds, gene_key

    rng = np.random.default_rng(3)
    n = 600
    genes = rng.integers(0, 40, n)
    df = pl.DataFrame({"gene_id": [f"ENSG{g:03d}" for g in genes], "build": ["GRCh38"] * n,
                       "gene_name": [f"G{g}" for g in genes],
                       "chrom": [f"chr{1 + g % 4}" for g in genes]})
    df, _ = add_splits(df, seed=0)
    folds = gene_folds(df, 5, seed=0)
    assert list(folds) == ["split_gene", "split_gene_fold1", "split_gene_fold2", "split_gene_fold3",
                           "split_gene_fold4"]
    assert (folds["split_gene"] == df["split_gene"].to_numpy()).all()  # fold 0 is the dataset's own
    key = gene_key(df)
    tested = [set(key[labels == "test"]) for labels in folds.values()]
    assert sum(len(t) for t in tested) == len(set(key)) and set().union(*tested) == set(key)
    for labels in folds.values():
        for split in ("train", "val", "test"):  # whole genes: no gene in two parts of a fold
            others = set(key[labels != split])
            assert not (set(key[labels == split]) & others)
        assert (labels == "val").any() and (labels == "train").sum() > (labels == "test").sum()
    assert gene_folds(df, 5, seed=0).keys() == folds.keys()
    again = gene_folds(df, 5, seed=0)
    assert all((again[k] == folds[k]).all() for k in folds)  # deterministic
