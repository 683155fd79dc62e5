"""Reference lookups (minimap2, blastn) and the trivial baselines, on generated bundles and the
real one. blastn tests never skip: CI installs NCBI BLAST+ with scripts/install-apt.sh."""

from __future__ import annotations

import logging
import shutil
from collections import Counter

import mappy
import numpy as np
import polars as pl
import pytest

from llamadna.constants import NOT_SPECIFIED
from llamadna.data.build import build_dataset
from llamadna.data.mutate import mutate
from llamadna.data.synthetic import random_sequence
from llamadna.data.template import annotation_sentence
from llamadna.errors import ConfigError
from llamadna.evaluate.baselines import (
    LOOKUP_FIELDS,
    ReferenceLookup,
    majority_baseline,
    majority_sentence,
    shuffle_sequence,
    unmapped_result,
)
from llamadna.retrieve import align
from llamadna.retrieve.align import MINIMAP2_SENSITIVE, BlastnAligner, Hit, make_aligner, parse_blast_hits
from llamadna.retrieve.fields import KNOWN_VARIANT_COLUMNS

log = logging.getLogger(__name__)
W = 512  # the dataset's default window
ALIGNER_NAMES = ("minimap2", "map-ont", "blastn")
FALLBACK = "FALLBACK"  # a label no bundle variant has: a source seen only if the lookup falls back


def _expected_sentence(row: dict, res: dict) -> str:
    """The row's sentence with the two fields a lookup cannot know taken from the lookup."""
    return annotation_sentence(
        chrom=row["chrom"], gene_name=row["gene_name"], gene_description=row["gene_description"],
        transcript_type=row["transcript_type"], phenotype=res["phenotype"], Dataset=res["source"],
    )


def _nearest_label(known: list[dict], build: str, chrom: str, pos: int) -> str:
    """Brute force of the documented rule: nearest, then upstream, then most rows, then name."""
    cand = [k for k in known if (k["build"], k["chrom"]) == (build, chrom)]
    if not cand:
        return FALLBACK
    d = min(abs(k["variant_pos"] - pos) for k in cand)
    at = min(k["variant_pos"] for k in cand if abs(k["variant_pos"] - pos) == d)
    counts = Counter(k["Dataset"] for k in cand if k["variant_pos"] == at)
    return min(counts, key=lambda s: (-counts[s], s))


def _known(rows: list[tuple[str, str, int, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=list(KNOWN_VARIANT_COLUMNS), orient="row")


@pytest.fixture(scope="module")
def synthetic(small_bundle):
    df, _ = build_dataset(small_bundle.path)
    train = df.filter(pl.col("split_random") == "train")
    return small_bundle, df, train


@pytest.fixture(scope="module")
def lookups(synthetic):
    """One lookup per aligner, the known variants = the split_random training rows."""
    bundle, _, train = synthetic
    return {a: ReferenceLookup(bundle.path, train, FALLBACK, aligner=a,
                               variants_name="training split of split_random")
            for a in ALIGNER_NAMES}


@pytest.mark.parametrize("aligner", ALIGNER_NAMES)
def test_recovers_every_row_of_a_generated_bundle(synthetic, lookups, aligner):
    _, df, train = synthetic
    lk = lookups[aligner]
    rows = df.to_dicts()
    known = train.to_dicts()
    res = lk.lookup_many([r["Sequence"] for r in rows], [r["build"] for r in rows])
    assert len(rows) >= 200
    assert set(res[0]) == set(LOOKUP_FIELDS)
    for row, r in zip(rows, res):
        assert r["mapped"]
        assert r["mapq"] is None if aligner == "blastn" else r["mapq"] >= 30
        assert (r["chrom"], r["gene"]) == (row["chrom"], row["gene_name"])
        assert r["description"] == row["gene_description"]
        assert r["transcript_type"] == row["transcript_type"]
        # no variant of the generated VCF has its own phenotype: the row's is the gene's
        assert r["phenotype"] == row["phenotype"]
        # the window's centre base (1-based start + W // 2); the variant's own position exactly
        # when the window is centred on it (not shifted inside a chromosome end)
        assert r["position"] == row["start"] + W // 2
        centred = row["start"] == row["variant_pos"] - W // 2
        assert (r["position"] == row["variant_pos"]) == centred
        assert r["source"] == _nearest_label(known, row["build"], row["chrom"], r["position"])
        assert r["annotation"] == _expected_sentence(row, r)


def test_description_names_aligner_and_variant_table(synthetic, lookups):
    _, _, train = synthetic
    lk = lookups["minimap2"]
    assert lk.description == (
        f"{make_aligner('minimap2').description}; variants: training split of split_random "
        f"({train.height:,} rows); fallback: {FALLBACK}")
    for k, v in MINIMAP2_SENSITIVE.items():
        assert f"{k}={v}" in lk.description
    assert "preset map-ont" in lookups["map-ont"].description
    assert lookups["blastn"].description.startswith("blastn ")
    assert "-task blastn" in lookups["blastn"].description


@pytest.mark.parametrize("aligner", ALIGNER_NAMES)
def test_reverse_complement_maps_to_the_same_place(synthetic, lookups, aligner):
    _, df, _ = synthetic
    lk = lookups[aligner]
    rows = df.head(20).to_dicts()
    fwd = lk.lookup_many([r["Sequence"] for r in rows], "GRCh38")
    rev = lk.lookup_many([mappy.revcomp(r["Sequence"]) for r in rows], "GRCh38")
    # both strands found a hit (two unmapped results would compare equal too)
    assert all(r["mapped"] for r in fwd) and all(r["mapped"] for r in rev)
    assert [(r["chrom"], r["position"]) for r in fwd] == [
        (row["chrom"], row["start"] + W // 2) for row in rows]
    drop = ("mapq",)  # MAPQ may differ by strand; everything else may not
    assert [{k: v for k, v in r.items() if k not in drop} for r in fwd] == [
        {k: v for k, v in r.items() if k not in drop} for r in rev]


@pytest.mark.parametrize("aligner", ALIGNER_NAMES)
def test_position_follows_the_alignment_through_an_indel(synthetic, lookups, aligner):
    bundle, _, _ = synthetic
    lk = lookups[aligner]
    ref = bundle.genome["chr2"][1]
    win0 = 20_000
    # a 532 bp stretch with 20 bp deleted left of the centre: the query's centre base (offset
    # 256) is reference base win0 + 276
    q = np.concatenate([ref[win0 : win0 + 100], ref[win0 + 120 : win0 + 532]]).tobytes().decode()
    assert len(q) == W
    for s in (q, mappy.revcomp(q)):
        r = lk.lookup(s, "GRCh38")
        assert (r["chrom"], r["position"]) == ("chr2", win0 + 276 + 1)
    # 20 bp inserted left of the centre: the centre base is reference base win0 + 236
    ins = random_sequence(np.random.default_rng(5), 20)
    q = np.concatenate([ref[win0 : win0 + 100], ins, ref[win0 + 100 : win0 + 492]]).tobytes().decode()
    for s in (q, mappy.revcomp(q)):
        r = lk.lookup(s, "GRCh38")
        assert (r["chrom"], r["position"]) == ("chr2", win0 + 236 + 1)


@pytest.mark.parametrize("aligner", ("minimap2", "blastn"))
def test_region_records_map_back_to_chromosome_coordinates(bundle_factory, aligner):
    bundle = bundle_factory(seed=3, regions=True, chrom_lengths={"chr1": 30_000, "chr2": 20_000},
                            n_genes=6, n_variants=60)
    df, _ = build_dataset(bundle.path)
    rows = df.to_dicts()
    res = ReferenceLookup(bundle.path, df, FALLBACK, aligner=aligner).lookup_many(
        [r["Sequence"] for r in rows], "GRCh38")
    assert rows
    for row, r in zip(rows, res):
        assert (r["chrom"], r["gene"]) == (row["chrom"], row["gene_name"])
        # chromosome, not record, coordinates: the window's centre base
        assert r["position"] == row["start"] + W // 2
        centred = row["start"] == row["variant_pos"] - W // 2
        assert (r["position"] == row["variant_pos"]) == centred


def test_outside_genes_maps_without_a_sentence(synthetic, lookups):
    bundle, _, _ = synthetic
    covered = np.zeros(60_001, dtype=bool)
    for g in bundle.genes:
        if g["chrom"] == "chr1":
            covered[g["start"] : g["end"] + 1] = True
    free = np.flatnonzero(~covered[1 + W : -W])  # 1-based positions with no gene
    assert free.size
    x = int(free[free.size // 2]) + 1 + W
    win0 = x - 1 - W // 2
    for lk in lookups.values():
        r = lk.lookup(bundle.genome["chr1"][1][win0 : win0 + W].tobytes().decode(), "GRCh38")
        assert r["mapped"] and (r["chrom"], r["position"]) == ("chr1", x)
        assert r["source"] not in (None, FALLBACK)  # chr1 has known variants
        assert r["gene"] is None and r["description"] is None and r["annotation"] == ""


@pytest.mark.parametrize("aligner", ALIGNER_NAMES)
def test_random_sequence_is_unmapped_and_gets_the_fallback(lookups, aligner):
    lk = lookups[aligner]
    rng = np.random.default_rng(99)
    seqs = [random_sequence(rng, W).tobytes().decode() for _ in range(20)]
    for res in lk.lookup_many(seqs, "GRCh38"):
        assert res == unmapped_result(FALLBACK)
        assert res["annotation"] == "" and res["mapped"] is False and res["source"] == FALLBACK
        assert all(res[k] is None for k in LOOKUP_FIELDS if k not in ("annotation", "mapped",
                                                                       "source"))
    with pytest.raises(ValueError, match="no reference for build"):
        lk.lookup(seqs[0], "GRCh37")


# --------------------------------------------------------------------------- fairness


def test_source_never_comes_from_a_test_variant(synthetic, lookups):
    """Test rows of split_gene, known variants = its training rows: every label is the nearest
    training variant's (or the fallback), never read from the row or the bundle's VCF."""
    bundle, df, _ = synthetic
    train = df.filter(pl.col("split_gene") == "train")
    test = df.filter(pl.col("split_gene") == "test").to_dicts()
    assert test
    lk = ReferenceLookup(bundle.path, train, FALLBACK)
    res = lk.lookup_many([r["Sequence"] for r in test], [r["build"] for r in test])
    known = train.to_dicts()
    expected = [_nearest_label(known, row["build"], row["chrom"], r["position"])
                for row, r in zip(test, res)]
    assert [r["source"] for r in res] == expected
    # the test has power: a lookup that saw a row's own variant (at distance 0, so always the
    # nearest) would name the row's label, which differs from the expected one for many rows
    assert sum(e != row["Dataset"] for e, row in zip(expected, test)) >= 5


@pytest.mark.parametrize("aligner", ALIGNER_NAMES)
def test_unknown_chromosome_or_far_variant_never_gives_the_own_label(synthetic, lookups, aligner):
    """Known variants: one far away on chr1 with a label no bundle variant has, one on chr2 of
    the other build. Every chr1 row gets that label, every other row the fallback: any bundle
    label (ClinVar, COSMIC, dbSNP) would mean the lookup saw a variant it was not given."""
    _, df, _ = synthetic
    rows = df.to_dicts()
    seqs = [r["Sequence"] for r in rows]
    known = _known([("GRCh38", "chr1", 59_000, "FAR"), ("GRCh37", "chr2", 20_000, "OTHER_BUILD")])
    base = lookups[aligner]
    lk = base.with_variants(known, "ELSE", "hand-made")  # the same index, other variants
    assert lk.description.endswith("; variants: hand-made (2 rows); fallback: ELSE")
    res = lk.lookup_many(seqs, "GRCh38")
    assert {r["chrom"] for r in rows} == {"chr1", "chr2", "chr3"}
    for row, r in zip(rows, res):
        assert r["mapped"] and r["gene"] == row["gene_name"]
        assert r["source"] == ("FAR" if row["chrom"] == "chr1" else "ELSE")
        assert f"the {r['source']} dataset" in r["annotation"]
    assert {r["source"] for r in lk.with_variants([], "NONE").lookup_many(seqs[:30], "GRCh38")} \
        == {"NONE"}
    # the lookup it was made from keeps its own variants
    assert FALLBACK in base.description
    assert "FAR" not in {r["source"] for r in base.lookup_many(seqs[:30], "GRCh38")}


def test_source_label_is_the_nearest_known_variants(bundle_factory):
    """Hand-made known variants on chr1 around positions 2,000-3,000 (inside the 60 kb chr1)."""
    bundle = bundle_factory(seed=4, chrom_lengths={"chr1": 60_000}, n_genes=1,
                            gene_len=(50_000, 55_000), n_variants=10)
    seq = bundle.genome["chr1"][1]
    known = _known([
        ("GRCh38", "chr1", 2000, "dbSNP"),
        ("GRCh38", "chr1", 2100, "dbSNP"), ("GRCh38", "chr1", 2100, "ClinVar"),
        ("GRCh38", "chr1", 2100, "ClinVar"),  # most rows at 2100: ClinVar
        ("GRCh38", "chr1", 2300, "dbSNP"), ("GRCh38", "chr1", 2300, "COSMIC"),  # tie: COSMIC
        ("GRCh37", "chr1", 2450, "OTHER_BUILD"),  # another build: never used
    ])
    lk = ReferenceLookup(bundle.path, known.to_dicts(), FALLBACK)  # dicts work as a frame does

    def label_at(x: int) -> str:
        win0 = x - 1 - W // 2  # 0-based window start whose centre base is 1-based x
        res = lk.lookup(seq[win0 : win0 + W].tobytes().decode(), "GRCh38")
        assert res["position"] == x
        return res["source"]

    assert label_at(1000) == "dbSNP"  # upstream of every variant
    assert label_at(2049) == "dbSNP"  # nearer 2000
    assert label_at(2050) == "dbSNP"  # equidistant: the upstream variant
    assert label_at(2051) == "ClinVar"  # nearer 2100, where ClinVar has most rows
    assert label_at(2100) == "ClinVar"
    assert label_at(2201) == "COSMIC"  # nearer 2300: COSMIC and dbSNP one row each
    assert label_at(2450) == "COSMIC"  # the GRCh37 variant at 2450 is not a GRCh38 one
    with pytest.raises(ValueError, match="lack the dataset columns"):
        ReferenceLookup(bundle.path, known.drop("variant_pos"), FALLBACK)


def test_builds_are_never_mixed(bundle_factory):
    """A bundle with a GRCh37 set from another random genome: each query maps only on its own
    build, and labels come from that build's known variants."""
    b38 = bundle_factory(seed=11, chrom_lengths={"chr1": 30_000}, n_genes=2, n_variants=30)
    b37 = bundle_factory(seed=12, chrom_lengths={"chr1": 30_000}, n_genes=2, n_variants=30)
    for name in ("regions.fa", "annotation.gtf.gz", "variants.vcf.gz", "variants.vcf.gz.tbi"):
        stem, ext = name.split(".", 1)
        shutil.copy(b37.path / name, b38.path / f"{stem}.grch37.{ext}")
    known = _known([("GRCh38", "chr1", 15_000, "L38"), ("GRCh37", "chr1", 15_000, "L37")])
    lk = ReferenceLookup(b38.path, known, FALLBACK)
    assert sorted(lk.builds) == ["GRCh37", "GRCh38"]
    s38 = b38.genome["chr1"][1][10_000 : 10_000 + W].tobytes().decode()
    s37 = b37.genome["chr1"][1][10_000 : 10_000 + W].tobytes().decode()
    res = lk.lookup_many([s38, s37, s38, s37], ["GRCh38", "GRCh37", "GRCh37", "GRCh38"])
    assert [(r["mapped"], r["position"], r["source"]) for r in res] == [
        (True, 10_000 + W // 2 + 1, "L38"), (True, 10_000 + W // 2 + 1, "L37"),
        (False, None, FALLBACK), (False, None, FALLBACK)]
    with pytest.raises(ValueError, match="2 sequences but 1 builds"):
        lk.lookup_many([s38, s37], ["GRCh38"])


# --------------------------------------------------------------------------- divergence


def test_sensitive_lookups_recover_diverged_windows(synthetic, lookups):
    """Dataset windows mutated at 25 % (substitutions + indels), every other one reverse-
    complemented: map-ont loses most, the sensitive minimap2 and blastn keep most (the right
    chromosome and gene, the centre within 50 bases)."""
    _, df, _ = synthetic
    rows = df.sample(120, seed=0).to_dicts()
    queries = []
    for j, r in enumerate(rows):
        s = mutate(r["Sequence"], 0.25, np.random.default_rng([7, j]))
        queries.append(mappy.revcomp(s) if j % 2 else s)
    recall, recall_rc = {}, {}
    for name, lk in lookups.items():
        res = lk.lookup_many(queries, "GRCh38")
        ok = [r["mapped"] and (r["chrom"], r["gene"]) == (row["chrom"], row["gene_name"])
              and abs(r["position"] - (row["start"] + W // 2)) <= 50 for row, r in zip(rows, res)]
        recall[name], recall_rc[name] = np.mean(ok), np.mean(ok[1::2])
    log.info("recall at 25 %%: %s (reverse-complemented: %s)", recall, recall_rc)
    assert recall["map-ont"] <= 0.5
    for name in ("minimap2", "blastn"):
        assert recall[name] >= 0.9 and recall_rc[name] >= 0.9, (name, recall, recall_rc)
        assert recall[name] > recall["map-ont"] + 0.3


# --------------------------------------------------------------------------- blastn pieces


def test_parse_blast_hits_walks_the_gapped_hsp_on_both_strands():
    f = "{q}\t{s}\t{qs}\t{qe}\t{ss}\t{se}\t{ev}\t{bits}\t{strand}\t{qseq}\t{sseq}"
    lines = [
        # q0 (length 10, centre = 1-based query base 6): plus strand, 2 bases deleted from the
        # query before the centre -> subject 100 + 5 + 2 = 107 (0-based offset 106)
        f.format(q="q0", s="3", qs=1, qe=10, ss=100, se=111, ev="1e-9", bits=40, strand="plus",
                 qseq="AC--GTACGTAC", sseq="ACTTGTACGTAC"),
        # a lower-scoring HSP of q0 elsewhere: ignored
        f.format(q="q0", s="1", qs=1, qe=10, ss=5, se=14, ev="1e-5", bits=20, strand="plus",
                 qseq="ACGTACGTAC", sseq="ACGTACGTAC"),
        # q1 (length 10): minus strand; the centre read along the forward reference is query base
        # 10 - 5 = 5; the subject runs 50 -> 41, so base 5 faces subject 46
        f.format(q="q1", s="gnl|BL_ORD_ID|2", qs=1, qe=10, ss=50, se=41, ev="1e-9", bits=40,
                 strand="minus", qseq="ACGTACGTAC", sseq="ACGTACGTAC"),
        # q2: the best HSP does not cover the centre; the weaker one does
        f.format(q="q2", s="0", qs=1, qe=4, ss=1, se=4, ev="1e-9", bits=90, strand="plus",
                 qseq="ACGT", sseq="ACGT"),
        f.format(q="q2", s="0", qs=3, qe=10, ss=203, se=210, ev="1e-6", bits=30, strand="plus",
                 qseq="GTACGTAC", sseq="GTACGTAC"),
        # q3: the centre base faces a gap in the subject (an insertion) on the minus strand:
        # the next reference base along the forward strand, the last subject base consumed
        f.format(q="q3", s="0", qs=1, qe=10, ss=60, se=52, ev="1e-9", bits=40, strand="minus",
                 qseq="ACGTACGTAC", sseq="ACGT-CGTAC"),
    ]
    hits = parse_blast_hits(lines, [10, 10, 10, 10, 10])
    assert hits == [Hit(3, 106, None), Hit(2, 45, None), Hit(0, 205, None), Hit(0, 56, None), None]


def test_blastn_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(align.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="ncbi-blast\\+"):
        BlastnAligner()
    with pytest.raises(ConfigError, match="unknown lookup aligner"):
        make_aligner("bwa")


# --------------------------------------------------------------------------- real data


@pytest.mark.slow
@pytest.mark.realdata
def test_recovers_real_rows(real_data):
    df, _ = build_dataset(real_data)
    train = df.filter(pl.col("split_gene") == "train")
    fallback = majority_baseline(train["Dataset"].to_list(), 1)[0]
    lk = ReferenceLookup(real_data, train, fallback, variants_name="training split of split_gene")
    known = train.to_dicts()
    total = exact = 0
    for build in ("GRCh38", "GRCh37"):
        rows = df.filter((pl.col("build") == build) & (pl.col("split_gene") == "test")).sample(
            50, seed=0).to_dicts()
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
            expect = _nearest_label(known, build, r["chrom"], r["position"]) if r["mapped"] \
                else FALLBACK
            assert r["source"] == (fallback if expect == FALLBACK else expect)
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


def test_each_distinct_query_is_aligned_once(synthetic, lookups):
    """Hits are remembered per query (a repeated window, the unmutated divergence rate, other
    folds), and a lookup with other variants shares them; the results are those of fresh
    alignment."""
    _, df, _ = synthetic
    rows = df.filter(pl.col("split_random") == "test").head(6).to_dicts()
    seqs = [r["Sequence"] for r in rows]
    build = rows[0]["build"]
    fresh = ReferenceLookup(synthetic[0].path, synthetic[2], FALLBACK, aligner="blastn")
    index = fresh._index[build].map_fn
    calls = []
    inner = index.map_fn
    index.map_fn = lambda qs: calls.append(list(qs)) or inner(qs)
    first = fresh.lookup_many([*seqs, seqs[0]], build)
    again = fresh.with_variants(synthetic[2], "OTHER").lookup_many(seqs[::-1], build)
    assert calls == [seqs]  # once each, duplicates and the second lookup included
    assert first[-1] == first[0]
    assert [r["position"] for r in again] == [r["position"] for r in first[:-1]][::-1]
    assert first[:-1] == lookups["blastn"].lookup_many(seqs, build)


def test_blastn_culling_keeps_the_hits(synthetic):
    """-culling_limit 1 only deletes HSPs inside a higher-scoring one, never the best HSP over
    the centre base: the same hits as without it, undiverged and diverged."""
    from llamadna.retrieve.align import index_reference

    bundle, df, _ = synthetic
    rng = np.random.default_rng(4)
    seqs = df["Sequence"].head(40).to_list()
    queries = seqs + [mutate(s, r, rng) for s in seqs for r in (0.2, 0.3)]
    fasta = next(bundle.path.glob("regions*.fa"))
    culled, _ = index_reference(fasta, BlastnAligner())
    plain, _ = index_reference(fasta, BlastnAligner(culling_limit=None))
    assert "-culling_limit 1" in BlastnAligner().description
    hits = culled(queries)
    assert sum(h is not None for h in hits) >= 60 and hits == plain(queries)


def test_blastn_crash_under_threads_is_searched_again_with_one(synthetic, monkeypatch, caplog):
    """A multi-threaded blastn killed by a signal (BLAST+ 2.12's -mt_mode 1 segfaulted once in a
    5-fold divergence run) is retried with one thread, same hits; a crash with one thread, or an
    error blastn reports, still fails loudly."""
    import subprocess

    from llamadna.retrieve.align import index_reference

    bundle, df, _ = synthetic
    seqs = df["Sequence"].head(12).to_list()
    fasta = next(bundle.path.glob("regions*.fa"))
    expected = index_reference(fasta, BlastnAligner(threads=1))[0](seqs)
    real = subprocess.run
    calls = []

    def crash_threaded(cmd, **kw):
        calls.append(cmd)
        if "-query" in cmd and "-mt_mode" in cmd:
            return subprocess.CompletedProcess(cmd, -11, "", "Warning: [blastn] too small")
        return real(cmd, **kw)

    monkeypatch.setattr(align.subprocess, "run", crash_threaded)
    with caplog.at_level(logging.WARNING, logger="llamadna.retrieve.align"):
        assert index_reference(fasta, BlastnAligner(threads=2))[0](seqs) == expected
    assert "signal 11" in caplog.text and sum("-query" in c for c in calls) == 2

    monkeypatch.setattr(align.subprocess, "run", lambda cmd, **kw: (
        subprocess.CompletedProcess(cmd, -11, "", "") if "-query" in cmd else real(cmd, **kw)))
    with pytest.raises(RuntimeError, match="signal 11"):
        index_reference(fasta, BlastnAligner(threads=2))[0](seqs)
    monkeypatch.setattr(align.subprocess, "run", lambda cmd, **kw: (
        subprocess.CompletedProcess(cmd, 2, "", "BLAST Database error") if "-query" in cmd
        else real(cmd, **kw)))
    with pytest.raises(RuntimeError, match="failed \\(2\\): BLAST Database error"):
        index_reference(fasta, BlastnAligner(threads=2))[0](seqs)
