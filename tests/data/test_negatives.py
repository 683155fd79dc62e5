"""Negative rows: the generated sequences, the reference parts, intergenic windows (really
clear of every gene), repeats (really at several loci), the rows of each kind, and the real
bundle's counts."""

from __future__ import annotations

import collections
import time

import numpy as np
import polars as pl
import pytest

from llamadna.constants import NONE_SENTENCE, REPEAT_MIN_LOCI, SPLITS
from llamadna.data.genes import load_genes
from llamadna.data.negatives import (
    KIND_OUTCOME,
    NEGATIVE_KINDS,
    PART_FRACTIONS,
    REPEAT_WINDOW,
    ReferenceCopies,
    chimera,
    count_loci,
    dinucleotide_shuffle,
    flanking_genes,
    foreign_sequence,
    genes_at,
    intergenic_windows,
    negative_rows,
    random_sequence,
    reference_part,
    repeat_aligner,
)
from llamadna.data.paths import discover_sets
from llamadna.data.template import parse_outcome

W = 512


@pytest.fixture(scope="module")
def bundle(bundle_factory):
    """900 kb on two chromosomes (chr1: part train; chr2: train but for 100-200 kb, test), and
    two gene families planted undiverged, three copies each on chr1: repeats."""
    return bundle_factory(seed=5, chrom_lengths={"chr1": 500_000, "chr2": 400_000}, n_genes=12,
                          gene_len=(3000, 8000), families=2, family_divergence=(0.0, 0.0, 0.0),
                          n_variants=40)


def genome_text(bundle) -> dict[str, str]:
    return {name: seq.tobytes().decode() for name, (_, seq) in bundle.genome.items()}


def genic_rows(bundle, chrom: str | None = None) -> list[dict]:
    """Dataset-like rows: a window at the start of each gene (of `chrom`)."""
    g = genome_text(bundle)
    return [{"Sequence": g[x["chrom"]][x["start"] - 1:x["start"] - 1 + W], "build": "GRCh38",
             "chrom": x["chrom"], "start": x["start"], "gene_name": x["gene_name"]}
            for x in bundle.genes if chrom in (None, x["chrom"])]


def test_reference_part_is_a_seeded_hash_of_100_kb_blocks():
    assert reference_part("GRCh38", "chr2", 100_000) == reference_part("GRCh38", "chr2", 199_999) == "test"
    assert reference_part("GRCh38", "chr2", 99_999) == "train"
    parts = [reference_part("GRCh37", "chr1", b * 100_000) for b in range(20_000)]
    share = collections.Counter(parts)
    for part, want in zip(SPLITS, PART_FRACTIONS):
        assert abs(share[part] / len(parts) - want) < 0.015
    assert parts != [reference_part("GRCh38", "chr1", b * 100_000) for b in range(20_000)]


def test_generated_sequences():
    rng = np.random.default_rng(0)
    r = random_sequence(1000, rng)
    assert len(r) == 1000 and set(r) == set("ACGT")
    assert r == random_sequence(1000, np.random.default_rng(0)) != random_sequence(1000, rng)
    f = [foreign_sequence(W, rng) for _ in range(30)]
    assert all(len(x) == W and set(x) <= set("ACGT") for x in f)
    assert foreign_sequence(W, np.random.default_rng(1)) == foreign_sequence(W, np.random.default_rng(1))

    def trimer_entropy(s: str) -> float:
        c = np.array(list(collections.Counter(s[i:i + 3] for i in range(len(s) - 2)).values()))
        p = c / c.sum()
        return float(-(p * np.log2(p)).sum())

    # an order-2 chain with skewed transitions: far from uniform random 3-mer spectra
    rand = [random_sequence(W, rng) for _ in range(30)]
    assert max(map(trimer_entropy, f)) < min(map(trimer_entropy, rand))
    gc = [(x.count("G") + x.count("C")) / W for x in f]
    assert min(gc) < 0.35 and max(gc) > 0.5  # both skews drawn
    assert len(foreign_sequence(1, rng)) == 1 and foreign_sequence(0, rng) == ""


@pytest.mark.parametrize("seq", ["ACGTTGCAAGGCTTAC" * 8, "ACGTTGCAAGGCTTACA" * 7])
def test_two_base_shuffle_permutes_the_blocks(seq):
    out = dinucleotide_shuffle(seq, np.random.default_rng(3))
    assert out != seq and sorted(out) == sorted(seq)
    m = len(seq) // 2
    blocks = collections.Counter(seq[2 * i:2 * i + 2] for i in range(m))
    assert collections.Counter(out[2 * i:2 * i + 2] for i in range(m)) == blocks
    assert out[2 * m:] == seq[2 * m:]


def test_chimera_keeps_one_contiguous_piece_in_place():
    rng = np.random.default_rng(4)
    seq = random_sequence(W, rng)
    for keep in (0.0, 0.25, 0.4, 1.0):
        out = chimera(seq, keep, rng)
        k = round(keep * W)
        assert len(out) == W
        starts = [a for a in range(W - k + 1) if out[a:a + k] == seq[a:a + k]]
        assert starts, keep
        a = starts[0]
        rest = [x == y for i, (x, y) in enumerate(zip(out, seq)) if not a <= i < a + k]
        assert not rest or np.mean(rest) < 0.4  # random elsewhere (~1/4 equal by chance)
    with pytest.raises(ValueError, match="keep"):
        chimera(seq, 1.5, rng)


def test_flanking_genes_nearest_end_on_each_side():
    genes = pl.DataFrame({"chrom": ["c"] * 5 + ["d"], "start": [100, 150, 5000, 5000, 7500, 1],
                          "end": [1000, 1000, 6000, 7000, 7600, 10],
                          "gene_name": ["B", "A", "D", "C", None, "X"],
                          "gene_id": ["g1", "g2", "g3", "g4", "ENSG5", "g6"]})
    lg, ld, rg, rd = flanking_genes(genes, "c", np.array([2000, 50, 8000, 7200]))
    assert lg == ["B", None, "ENSG5", "C"] and ld == [1000, None, 400, 200]  # ties of end: the last name
    assert rg == ["C", "B", None, "ENSG5"] and rd == [3000, 50, None, 300]  # ties of start: the first


def test_intergenic_windows_lie_clear_of_every_gene(bundle):
    w = intergenic_windows(bundle.path, window=W, min_distance=2000)
    assert w.height > 100 and set(w["part"]) == {"train", "test"}
    g = genome_text(bundle)
    for r in w.iter_rows(named=True):
        for x in bundle.genes:
            if x["chrom"] == r["chrom"]:  # gap between [start0, end0) and [start - 1, end)
                assert r["start0"] - x["end"] >= 2000 or (x["start"] - 1) - r["end0"] >= 2000
        assert r["Sequence"] == g[r["chrom"]][r["start0"]:r["end0"]] and r["end0"] - r["start0"] == W
        assert r["part"] == reference_part("GRCh38", r["chrom"], r["start0"])
        centre = r["start0"] + W // 2 + 1
        left = [x for x in bundle.genes if x["chrom"] == r["chrom"] and x["end"] < centre]
        if left:
            best = max(left, key=lambda x: x["end"])
            assert (r["left_gene"], r["left_distance"]) == (best["gene_name"], centre - best["end"])
        else:
            assert r["left_gene"] is None and r["left_distance"] is None
    # every window at least 2 kb from a gene that is not itself intergenic: a tiling step of W
    n_tiles = sum((len(s) - W) // W + 1 for s in g.values())
    assert w.height < n_tiles
    wide = intergenic_windows(bundle.path, window=W, min_distance=20_000)
    assert wide.height < w.height


def test_negative_rows_of_each_kind(bundle):
    genic = genic_rows(bundle)
    rows = negative_rows(bundle.path, genic, "train", per_kind=6, seed=0, window=W)
    kinds = collections.Counter(r["kind"] for r in rows)
    assert kinds == dict.fromkeys(NEGATIVE_KINDS, 6)
    assert len({r["id"] for r in rows}) == len(rows)
    g = genome_text(bundle)
    by_gene = {x["gene_name"]: x for x in genic}
    for r in rows:
        assert r["outcome"] == KIND_OUTCOME[r["kind"]] and r["gene_name"] is None
        if r["outcome"] == "none":
            assert r["Annotation"] == NONE_SENTENCE and r["build"] is None and len(r["Sequence"]) == W
        if r["kind"] == "intergenic":
            parsed = parse_outcome(r["Annotation"])
            assert parsed["outcome"] == "intergenic" and parsed["chrom"] == r["chrom"]
            assert r["Sequence"] == g[r["chrom"]][r["start0"]:r["start0"] + W]
        if r["kind"] in ("intergenic", "repeat"):
            assert reference_part(r["build"], r["chrom"], r["start0"]) == "train"
        if r["kind"] == "similar":  # 25-50 % of a genic window kept in place
            src = by_gene[r["similar_to"]]
            a = r["start0"] - (src["start"] - 1)
            k = next(k for k in range(W // 2, W // 4 - 1, -1) if r["Sequence"][a:a + k] == src["Sequence"][a:a + k])
            assert W // 4 - 1 <= k <= W // 2 + 1 and r["Annotation"] is None
        if r["kind"] == "repeat":  # the planted copies: found at >= 3 places of the genome
            assert len(r["Sequence"]) == REPEAT_WINDOW and r["Annotation"] is None
            assert g[r["chrom"]][r["start0"]:r["start0"] + REPEAT_WINDOW] == r["Sequence"]
            assert sum(s.count(r["Sequence"]) for s in g.values()) >= REPEAT_MIN_LOCI
            mid = r["start0"] + REPEAT_WINDOW // 2 + 1  # 1-based middle base
            held = sorted(x["gene_name"] for x in bundle.genes
                          if x["chrom"] == r["chrom"] and x["start"] <= mid <= x["end"])
            assert r["in_gene"] == (",".join(held) or None)
        else:
            assert r["in_gene"] is None
        if r["kind"] == "shuffled":
            assert any(sorted(r["Sequence"]) == sorted(x["Sequence"]) for x in genic)
    assert any(r["in_gene"] for r in rows)  # the planted families are genes: their copies lie in them
    assert rows == negative_rows(bundle.path, genic, "train", per_kind=6, seed=0, window=W)
    other = negative_rows(bundle.path, genic, "train", per_kind=6, seed=1, window=W)
    assert [r["Sequence"] for r in other] != [r["Sequence"] for r in rows]


def test_genes_at_a_position():
    genes = pl.DataFrame({"chrom": ["chr1", "chr1", "chr1", "chr2"], "start": [100, 150, 500, 100],
                          "end": [200, 300, 600, 200], "gene_name": ["B", None, "A", "C"],
                          "gene_id": ["ENSG1", "ENSG2", "ENSG3", "ENSG4"]})
    assert genes_at(genes, "chr1", 100) == ["B"]  # 1-based, inclusive
    assert genes_at(genes, "chr1", 180) == ["B", "ENSG2"]  # a gene without a name goes by its id
    assert genes_at(genes, "chr1", 400) == [] and genes_at(genes, "chr3", 150) == []
    assert genes_at(genes, "chr1", 600) == ["A"] and genes_at(genes, "chr1", 601) == []


def test_a_part_without_repeats_gives_none_and_windows_of_its_own(bundle, caplog):
    """Part test (chr2 100-200 kb) holds no planted family: no repeat rows, said in the log;
    intergenic rows only from that block; no genic rows: no shuffled or similar rows."""
    with caplog.at_level("INFO"):
        rows = negative_rows(bundle.path, [], "test", per_kind=5, seed=0, window=W)
    kinds = collections.Counter(r["kind"] for r in rows)
    assert kinds == {"random": 5, "foreign": 5, "intergenic": 5}
    assert all(r["chrom"] == "chr2" and 100_000 <= r["start0"] < 200_000 for r in rows if r["kind"] == "intergenic")
    assert "0 repeat windows of part test" in caplog.text
    with pytest.raises(ValueError, match="part"):
        negative_rows(bundle.path, [], "dev", per_kind=1, seed=0)


def test_count_loci_counts_distinct_places(bundle):
    fasta = bundle.path / "regions.fa"
    aligner = repeat_aligner(fasta)
    g = genome_text(bundle)
    fam1 = [x for x in bundle.genes if x.get("family") == 1]  # three undiverged, non-overlapping copies
    x = fam1[0]
    seq = g[x["chrom"]][x["start"] + 99:x["start"] + 99 + REPEAT_WINDOW]
    assert count_loci(aligner, seq) == 3
    assert count_loci(aligner, random_sequence(REPEAT_WINDOW, np.random.default_rng(0))) == 0
    lone = next(x for x in bundle.genes if x.get("family") is None)
    assert count_loci(aligner, g[lone["chrom"]][lone["start"]:lone["start"] + REPEAT_WINDOW]) == 1


def test_reference_copies_counts_by_the_repeat_rule_per_build(bundle):
    copies = ReferenceCopies(bundle.path)
    g = genome_text(bundle)
    fam1 = next(x for x in bundle.genes if x.get("family") == 1)
    lone = next(x for x in bundle.genes if x.get("family") is None)
    family_window = g[fam1["chrom"]][fam1["start"] - 1:fam1["start"] - 1 + W]
    lone_window = g[lone["chrom"]][lone["start"] - 1:lone["start"] - 1 + W]
    assert copies(family_window, "GRCh38") == 3  # a gene family's window: what a repeat is
    assert copies(lone_window, "GRCh38") == 1
    assert copies(random_sequence(W, np.random.default_rng(1)), "GRCh38") == 0
    assert list(copies.aligners) == ["GRCh38"] and len(copies.seen) == 3
    assert copies(family_window, "GRCh38") == 3 and len(copies.seen) == 3  # counted once
    with pytest.raises(ValueError, match="no reference of build 'GRCh37'.*GRCh38"):
        copies(lone_window, "GRCh37")


def test_negative_rows_use_the_aligners_they_are_lent(bundle, monkeypatch):
    """Two parts' negatives on `ReferenceCopies.aligner` index the reference once, and give the
    rows they give on aligners of their own."""
    import llamadna.data.negatives as negatives

    built = []

    def counted(fasta):
        built.append(fasta)
        return repeat_aligner(fasta)

    monkeypatch.setattr(negatives, "repeat_aligner", counted)
    genic = genic_rows(bundle)
    own = negative_rows(bundle.path, genic, "train", per_kind=3, seed=0, window=W)
    assert len(built) == 1  # built for the call, dropped after it
    copies = ReferenceCopies(bundle.path)
    lent = negative_rows(bundle.path, genic, "train", per_kind=3, seed=0, window=W, aligners=copies.aligner)
    negative_rows(bundle.path, [], "val", per_kind=3, seed=0, window=W, aligners=copies.aligner)
    assert lent == own and any(r["kind"] == "repeat" for r in lent)
    copies(lent[0]["Sequence"], "GRCh38")
    assert len(built) == 2 and list(copies.aligners) == ["GRCh38"]  # one more for both parts and the count


@pytest.mark.slow
def test_real_bundle_negatives(real_data):
    """Each part of the real bundle gives 40 rows of every kind (repeats: as many as it holds, up
    to 40), in a few seconds."""
    aset = discover_sets(real_data)[0]
    genes = load_genes(aset).head(30)
    from llamadna.io.fasta import read_reference

    ref = read_reference(aset.fasta)
    genic = []
    for x in genes.iter_rows(named=True):
        i = ref.locate(x["chrom"], np.array([x["start"] - 1]), np.array([x["start"] - 1 + W]))[0]
        if i >= 0:
            c = ref.contigs[i]
            a = x["start"] - 1 - c.start0
            genic.append({"Sequence": c.seq[a:a + W].tobytes().decode(), "build": aset.build, "chrom": x["chrom"],
                          "start": x["start"], "gene_name": x["gene_name"]})
    for part in SPLITS:
        start = time.perf_counter()
        rows = negative_rows(real_data, genic, part, per_kind=40, seed=0)
        took = time.perf_counter() - start
        counts = collections.Counter(r["kind"] for r in rows)
        # repeats are what the part holds (>= REPEAT_MIN_LOCI loci by the retriever's rule): the
        # bundle's test part has 22 such 300-base windows, the others more than 40
        assert 0 < counts.pop("repeat") <= 40, part
        assert counts == dict.fromkeys([k for k in NEGATIVE_KINDS if k != "repeat"], 40), part
        assert took < 15.0  # ~1 s measured per part on a quiet core


def test_region_records_keep_intergenic_windows_away_from_their_ends(bundle_factory):
    """Genes beyond a region record are unknown: a window keeps min_distance from its ends too."""
    b = bundle_factory(seed=6, chrom_lengths={"chr1": 60_000}, n_genes=2, regions=True, n_variants=10)
    (start0, seq), = b.genome.values()
    w = intergenic_windows(b.path, window=W, min_distance=3000)
    assert w.height > 0 and w["start0"].min() >= start0 + 3000
    assert w["end0"].max() <= start0 + len(seq) - 3000
