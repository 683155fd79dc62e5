"""Reference lookup (minimap2) and the trivial baselines, on generated bundles and the real one."""

from __future__ import annotations

import logging
from collections import Counter

import mappy
import numpy as np
import polars as pl
import pytest

from llamadna.constants import NOT_SPECIFIED
from llamadna.data.build import build_dataset
from llamadna.data.synthetic import random_sequence, write_vcf
from llamadna.data.template import annotation_sentence
from llamadna.evaluate.baselines import (
    LOOKUP_FIELDS,
    ReferenceLookup,
    majority_baseline,
    majority_sentence,
    shuffle_sequence,
    unmapped_result,
)

log = logging.getLogger(__name__)
W = 512  # the dataset's default window


def _expected_sentence(row: dict, res: dict) -> str:
    """The row's sentence with the two fields a lookup cannot know taken from the lookup."""
    return annotation_sentence(
        chrom=row["chrom"], gene_name=row["gene_name"], gene_description=row["gene_description"],
        transcript_type=row["transcript_type"], phenotype=res["phenotype"], Dataset=res["source"],
    )


@pytest.fixture(scope="module")
def synthetic(small_bundle):
    df, _ = build_dataset(small_bundle.path)
    return small_bundle, df, ReferenceLookup(small_bundle.path)


def test_recovers_every_row_of_a_generated_bundle(synthetic):
    bundle, df, lk = synthetic
    rows = df.to_dicts()
    res = lk.lookup_many([r["Sequence"] for r in rows], "GRCh38")  # speed: bench/, not here
    assert len(rows) >= 200
    assert set(res[0]) == set(LOOKUP_FIELDS)
    var_pos = Counter(bundle.variants["pos"].to_list())
    for row, r in zip(rows, res):
        assert r["mapped"] and r["mapq"] >= 30
        assert (r["chrom"], r["gene"]) == (row["chrom"], row["gene_name"])
        assert r["description"] == row["gene_description"]
        assert r["transcript_type"] == row["transcript_type"]
        # no variant of the generated VCF has its own phenotype: the row's is the gene's
        assert r["phenotype"] == row["phenotype"]
        assert r["annotation"] == _expected_sentence(row, r)
        # the window's centre base (1-based start + W // 2); the variant's own position exactly
        # when the window is centred on it (not shifted inside a chromosome end)
        assert r["position"] == row["start"] + W // 2
        centred = row["start"] == row["variant_pos"] - W // 2
        assert (r["position"] == row["variant_pos"]) == centred
    # a centred window whose variant is the only one at its position: that variant is the
    # nearest, so the lookup gives the row's own label and sentence
    own = [(row, r) for row, r in zip(rows, res)
           if row["start"] == row["variant_pos"] - W // 2 and var_pos[row["variant_pos"]] == 1]
    assert len(own) >= len(rows) // 2
    for row, r in own:
        assert r["source"] == row["Dataset"]
        assert r["annotation"] == row["Annotation"]


def test_reverse_complement_maps_to_the_same_place(synthetic):
    _, df, lk = synthetic
    rows = df.head(20).to_dicts()
    fwd = lk.lookup_many([r["Sequence"] for r in rows], "GRCh38")
    rev = lk.lookup_many([mappy.revcomp(r["Sequence"]) for r in rows], "GRCh38")
    # both strands found a hit (two unmapped results would compare equal too)
    assert all(r["mapped"] for r in fwd) and all(r["mapped"] for r in rev)
    assert [(r["chrom"], r["position"]) for r in fwd] == [
        (row["chrom"], row["start"] + W // 2) for row in rows]
    assert fwd == rev


def test_position_follows_the_alignment_through_an_indel(synthetic):
    bundle, _, lk = synthetic
    ref = bundle.genome["chr2"][1]
    win0 = 20_000
    # a 532 bp stretch with 20 bp deleted left of the centre: the query's centre base (offset
    # 256) is reference base win0 + 276
    q = np.concatenate([ref[win0 : win0 + 100], ref[win0 + 120 : win0 + 532]]).tobytes().decode()
    assert len(q) == W
    for s in (q, mappy.revcomp(q)):
        r = lk.lookup(s, "GRCh38")
        assert (r["chrom"], r["position"]) == ("chr2", win0 + 276 + 1)


def test_region_records_map_back_to_chromosome_coordinates(bundle_factory):
    bundle = bundle_factory(seed=3, regions=True, chrom_lengths={"chr1": 30_000, "chr2": 20_000},
                            n_genes=6, n_variants=60)
    df, _ = build_dataset(bundle.path)
    rows = df.to_dicts()
    res = ReferenceLookup(bundle.path).lookup_many([r["Sequence"] for r in rows], "GRCh38")
    assert rows
    for row, r in zip(rows, res):
        assert (r["chrom"], r["gene"]) == (row["chrom"], row["gene_name"])
        # chromosome, not record, coordinates: the window's centre base
        assert r["position"] == row["start"] + W // 2
        centred = row["start"] == row["variant_pos"] - W // 2
        assert (r["position"] == row["variant_pos"]) == centred


def test_outside_genes_maps_without_a_sentence(synthetic):
    bundle, _, lk = synthetic
    covered = np.zeros(60_001, dtype=bool)
    for g in bundle.genes:
        if g["chrom"] == "chr1":
            covered[g["start"] : g["end"] + 1] = True
    free = np.flatnonzero(~covered[1 + W : -W])  # 1-based positions with no gene
    assert free.size
    x = int(free[free.size // 2]) + 1 + W
    win0 = x - 1 - W // 2
    r = lk.lookup(bundle.genome["chr1"][1][win0 : win0 + W].tobytes().decode(), "GRCh38")
    assert r["mapped"] and (r["chrom"], r["position"]) == ("chr1", x)
    assert r["source"] is not None
    assert r["gene"] is None and r["description"] is None and r["annotation"] == ""


def test_random_sequence_is_unmapped(synthetic):
    _, _, lk = synthetic
    seq = random_sequence(np.random.default_rng(99), W).tobytes().decode()
    res = lk.lookup(seq, "GRCh38")
    assert res == unmapped_result()
    assert res["annotation"] == "" and res["mapped"] is False
    assert all(res[k] is None for k in LOOKUP_FIELDS if k not in ("annotation", "mapped"))
    with pytest.raises(ValueError, match="no reference for build"):
        lk.lookup(seq, "GRCh37")


def test_source_label_is_the_nearest_variants(bundle_factory):
    """Hand-made variants on chr1 around positions 2,000-3,000 (all inside the 60 kb chr1)."""
    bundle = bundle_factory(seed=4, chrom_lengths={"chr1": 60_000}, n_genes=1,
                            gene_len=(50_000, 55_000), n_variants=10)
    seq = bundle.genome["chr1"][1]
    hand = [(2000, "dbSNP"), (2100, "dbSNP"), (2100, "ClinVar"), (2300, "COSMIC"),
            (2400, "HGMD-PUBLIC")]  # HGMD-PUBLIC is not a selected source: never a label
    variants = pl.DataFrame({
        "chrom": ["chr1"] * len(hand), "pos": [p for p, _ in hand],
        "id": [f"h{i}" for i in range(len(hand))],
        "ref": [chr(seq[p - 1]) for p, _ in hand], "alt": ["N"] * len(hand),
        "source": [s for _, s in hand],
    })
    write_vcf(bundle.path / "variants.vcf.gz", variants, {"chr1": 60_000})
    lk = ReferenceLookup(bundle.path)

    def label_at(x: int) -> str | None:
        win0 = x - 1 - W // 2  # 0-based window start whose centre base is 1-based x
        res = lk.lookup(seq[win0 : win0 + W].tobytes().decode(), "GRCh38")
        assert res["position"] == x
        return res["source"]

    assert label_at(1000) == "dbSNP"  # upstream of every variant
    assert label_at(2049) == "dbSNP"  # nearer 2000
    assert label_at(2050) == "dbSNP"  # equidistant: the upstream variant
    assert label_at(2051) == "ClinVar"  # nearer 2100, where ClinVar comes before dbSNP
    assert label_at(2100) == "ClinVar"
    assert label_at(2201) == "COSMIC"
    assert label_at(2450) == "COSMIC"  # HGMD-PUBLIC at 2400 is not selected
    assert ReferenceLookup(bundle.path, sources=("dbSNP",)).lookup(
        seq[2100 - 1 - W // 2 : 2100 - 1 + W // 2].tobytes().decode(), "GRCh38")["source"] == "dbSNP"


@pytest.mark.slow
@pytest.mark.realdata
def test_recovers_real_rows(real_data):
    df, _ = build_dataset(real_data)
    lk = ReferenceLookup(real_data)
    total = exact = 0
    for build in ("GRCh38", "GRCh37"):
        rows = df.filter(pl.col("build") == build).sample(50, seed=0).to_dicts()
        res = lk.lookup_many([r["Sequence"] for r in rows], build)
        for row, r in zip(rows, res):
            ok = (r["chrom"], r["gene"]) == (row["chrom"], row["gene_name"])
            total += 1
            exact += ok
            unique = r["mapped"] and r["mapq"] >= 30  # no repeat can excuse a miss
            assert ok or not unique, (row["variant_id"], row["gene_name"], r)
            # a right gene gives the row's sentence (phenotype and label from the lookup)
            assert not ok or r["annotation"] == _expected_sentence(row, r), (row["variant_id"], r)
            assert not ok or r["phenotype"] == NOT_SPECIFIED or r["phenotype"]
    log.info("real bundle: %d / %d rows with exact gene and chromosome", exact, total)
    assert exact / total >= 0.98


# --------------------------------------------------------------------------- trivial baselines


def test_majority_baseline():
    assert majority_baseline(["dbSNP", "ClinVar", "dbSNP"], 3) == ["dbSNP"] * 3
    assert majority_baseline(["b", "a", "b", "a"], 2) == ["a", "a"]  # tie: smallest
    assert majority_baseline(["x"], 0) == []
    with pytest.raises(ValueError):
        majority_baseline([], 1)


def test_majority_sentence():
    rows = [{"Annotation": s} for s in ("s1", "s2", "s2", "s3")]
    assert majority_sentence(rows) == "s2"
    assert majority_sentence(pl.DataFrame(rows)) == "s2"
    rows = [{"Annotation": a, "Dataset": d} for a, d in
            [("c1", "COSMIC"), ("c1", "COSMIC"), ("c1", "COSMIC"), ("d1", "dbSNP"), ("d2", "dbSNP"),
             ("d2", "dbSNP"), ("d3", "dbSNP"), ("d3", "dbSNP"), ("d2", "dbSNP")]]
    assert majority_sentence(rows) == "c1"  # the most frequent sentence overall
    assert majority_sentence(rows, source="dbSNP") == "d2"  # ... and of the majority class
    assert majority_sentence(pl.DataFrame(rows), source="dbSNP") == "d2"
    with pytest.raises(ValueError, match="no training rows of source"):
        majority_sentence(rows, source="ClinVar")


def test_shuffle_keeps_composition_only():
    seq = random_sequence(np.random.default_rng(0), 2000).tobytes().decode() + "NNNN"
    a = shuffle_sequence(seq, np.random.default_rng(1))
    assert Counter(a) == Counter(seq) and len(a) == len(seq)
    assert sum(x == y for x, y in zip(a, seq)) < 0.5 * len(seq)  # order destroyed (~25 % expected)
    assert a == shuffle_sequence(seq, np.random.default_rng(1))
    assert a != shuffle_sequence(seq, np.random.default_rng(2))
