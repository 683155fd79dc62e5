"""Aligning queries to a reference (minimap2 through mappy): where a query's centre lands, on a
small random reference with queries mutated at known sites."""

from __future__ import annotations

from types import SimpleNamespace

import mappy
import numpy as np
import pytest

from llamadna.retrieve.align import (
    MINIMAP2_SENSITIVE,
    MINIMAP2_TUNED_BASES,
    Hit,
    RememberedMap,
    _ref_offset,
    deep_minimap2,
    hit_position,
    index_reference,
    make_aligner,
    map_threaded,
    scaled_minimap2,
)

L = 300  # query length; its centre is base L // 2 = 150
SITES = (40, 90, 130, 170, 220, 260)  # substituted query bases, away from the ends and the centre
OTHER = {"A": "C", "C": "G", "G": "T", "T": "A"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Two random 3,000-base records: chr1 whole, chr2 as the region chr2:1001-4000."""
    rng = np.random.default_rng(7)
    seqs = ["".join(rng.choice(list("ACGT"), 3_000)) for _ in range(2)]
    fasta = tmp_path_factory.mktemp("align") / "ref.fa"
    fasta.write_text(f">chr1\n{seqs[0]}\n>chr2:1001-4000\n{seqs[1]}\n")
    return fasta, seqs


@pytest.fixture(scope="module")
def mapped(reference):
    fasta, _ = reference
    return index_reference(fasta, make_aligner("minimap2"))


def _substituted(seq: str, sites=SITES) -> str:
    s = list(seq)
    for i in sites:
        s[i] = OTHER[s[i]]
    return "".join(s)


def test_records_map_back_to_chromosome_coordinates(mapped):
    _, records = mapped
    assert records == [("chr1", 0, 3_000), ("chr2", 1_000, 3_000)]


def test_mutated_query_lands_its_centre_on_its_origin_on_either_strand(reference, mapped):
    _, seqs = reference
    map_fn, _ = mapped
    q = _substituted(seqs[1][1_000 : 1_000 + L])
    fwd, rev = map_fn([q, mappy.revcomp(q)])
    assert (fwd.record, fwd.offset) == (1, 1_000 + L // 2)
    assert fwd.mapq >= 30
    assert (rev.record, rev.offset) == (1, 1_000 + L // 2)  # the same reference base


def test_centre_follows_the_alignment_through_indels(reference, mapped):
    """A naive r_st + L // 2 would be off by the indel's length."""
    _, seqs = reference
    map_fn, _ = mapped
    r = seqs[0]
    deleted = r[500:560] + r[563 : 500 + L + 3]  # 3 reference bases before the centre deleted
    inserted = r[500:560] + "GATTACA" + r[560 : 500 + L - 7]  # 7 bases inserted before it
    d, i, d_rev = map_fn([deleted, inserted, mappy.revcomp(deleted)])
    assert (d.record, d.offset) == (0, 500 + L // 2 + 3)
    assert (i.record, i.offset) == (0, 500 + L // 2 - 7)
    assert d_rev.offset == d.offset


def test_random_dna_and_empty_input_are_unmapped(mapped):
    map_fn, _ = mapped
    rng = np.random.default_rng(99)
    assert map_fn(["".join(rng.choice(list("ACGT"), L)) for _ in range(3)]) == [None] * 3
    assert map_fn([]) == []


def test_identity_and_coverage_of_a_query_mutated_at_known_sites(reference):
    fasta, seqs = reference
    aligner = mappy.Aligner(str(fasta), **MINIMAP2_SENSITIVE)
    q = _substituted(seqs[0][2_000 : 2_000 + L])
    rng = np.random.default_rng(5)
    queries = [q, mappy.revcomp(q), "".join(rng.choice(list("ACGT"), L))]

    def each(i, seq, hits):
        return i, [(h.ctg, h.mlen / h.blen, (h.q_en - h.q_st) / len(seq), h.strand, h.NM) for h in hits]

    out = map_threaded(aligner, queries, each, threads=2)
    assert [i for i, _ in out] == [0, 1, 2]  # input order
    (fwd,), (rev,), none = out[0][1], out[1][1], out[2][1]
    assert fwd == ("chr1", (L - len(SITES)) / L, 1.0, 1, len(SITES))
    assert rev == ("chr1", (L - len(SITES)) / L, 1.0, -1, len(SITES))
    assert none == []
    assert map_threaded(aligner, queries, each, threads=1) == out  # threads do not matter


def test_ref_offset_walks_the_cigar():
    cigar = [(10, 0), (2, 1), (5, 0), (3, 2), (10, 0)]  # 10M 2I 5M 3D 10M
    r_st = 100
    assert _ref_offset(cigar, r_st, 5) == 105
    assert _ref_offset(cigar, r_st, 10) == 110  # an inserted base: the next reference base
    assert _ref_offset(cigar, r_st, 11) == 110  # the second inserted base too
    assert _ref_offset(cigar, r_st, 12) == 110
    assert _ref_offset(cigar, r_st, 17) == 118  # after the deletion
    assert _ref_offset(cigar, r_st, -3) == 97  # before the aligned part: linear
    assert _ref_offset(cigar, r_st, 40) == 128 + 13  # after it (27 query bases aligned)


def test_hit_position_reads_the_query_along_the_reference_strand():
    plus = SimpleNamespace(q_st=2, q_en=9, strand=1, cigar=[(7, 0)], r_st=50)
    minus = SimpleNamespace(q_st=2, q_en=9, strand=-1, cigar=[(7, 0)], r_st=50)
    assert hit_position(plus, 10) == 53  # centre 5 is aligned base 5 - q_st
    assert hit_position(minus, 10) == 54  # the reverse complement's aligned part starts at 10 - q_en


def test_remembered_map_aligns_each_distinct_query_once():
    calls = []

    def map_fn(seqs):
        calls.append(list(seqs))
        return [Hit(0, len(s), None) for s in seqs]

    m = RememberedMap(map_fn)
    assert m(["AC", "ACG", "AC"]) == [Hit(0, 2, None), Hit(0, 3, None), Hit(0, 2, None)]
    assert m(["ACG", "A"]) == [Hit(0, 3, None), Hit(0, 1, None)]
    assert calls == [["AC", "ACG"], ["A"]]


def test_aligner_descriptions_name_their_settings():
    assert make_aligner("minimap2").description == (
        f"minimap2 {mappy.__version__} " + " ".join(f"{k}={v}" for k, v in MINIMAP2_SENSITIVE.items()))
    assert make_aligner("map-ont").description == f"minimap2 {mappy.__version__} preset map-ont"


def test_deep_tier_rule():
    small = scaled_minimap2(MINIMAP2_SENSITIVE, 10_000)
    assert deep_minimap2(small, MINIMAP2_SENSITIVE) is None  # small: none
    bases = 16 * MINIMAP2_TUNED_BASES  # ~50 Mb: sensitive k 8 -> 10; deep k 9, every k-mer
    deep = deep_minimap2(scaled_minimap2(MINIMAP2_SENSITIVE, bases), MINIMAP2_SENSITIVE)
    assert deep == {**MINIMAP2_SENSITIVE, "k": MINIMAP2_SENSITIVE["k"] + 1, "w": 1}
    genome = scaled_minimap2(MINIMAP2_SENSITIVE, 3_100_000_000)
    assert deep_minimap2(genome, MINIMAP2_SENSITIVE)["k"] == genome["k"] - 1
    assert deep_minimap2({"preset": "sr"}, {"preset": "sr"}) is None
