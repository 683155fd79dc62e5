"""The hybrid retriever on the workspace's index: exact and reverse-complement matches, the
score and rank rules, k and modes, `open_retriever`, and the candidates table."""

from __future__ import annotations

from types import SimpleNamespace

import mappy
import numpy as np
import polars as pl
import pytest

from llamadna.data.mutate import mutate
from llamadna.errors import InputError
from llamadna.retrieve.fields import NearestVariants
from llamadna.retrieve.retriever import (
    CANDIDATE_FIELDS,
    EMBED_WEIGHT,
    NEIGHBOUR_FIELDS,
    Retriever,
    _Gene,
    attach_evidence,
    candidates_table,
    open_retriever,
)
from tests.retrieve.conftest import W

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def hybrid(workspace):
    root, _, _, index = workspace
    return Retriever(index, str(root / "encoder"))


@pytest.fixture(scope="module")
def own_windows(workspace):
    """Full-length index windows centred in a gene, one per gene (at most 6)."""
    _, _, _, index = workspace
    w = index.windows.filter(pl.col("gene").is_not_null() & (pl.col("end0") - pl.col("start0") == W))
    return w.unique("gene", keep="first", maintain_order=True).head(6)


def test_an_index_window_finds_itself_on_either_strand(hybrid, own_windows):
    """Its own gene first, at identity 1 over the whole query, the centre base's position, the
    strand it was given in."""
    seqs = own_windows["Sequence"].to_list()
    fwd, rev = hybrid(seqs), hybrid([mappy.revcomp(s) for s in seqs])
    for r, f, b in zip(own_windows.iter_rows(named=True), fwd, rev):
        centre = (r["start0"] + r["end0"]) // 2 + 1
        for top, strand in ((f[0], "+"), (b[0], "-")):
            assert (top["gene"], top["build"], top["chrom"]) == (r["gene"], r["build"], r["chrom"])
            assert (top["identity"], top["aligned_fraction"], top["strand"]) == (1.0, 1.0, strand)
            assert top["position"] == centre and top["score"] == 2.0
            assert top["description"] == r["description"] and top["phenotype"] == r["phenotype"]


def test_scores_order_and_sources(workspace, hybrid, own_windows):
    """Aligned genes score 1 + identity x aligned fraction and rank before any embedding-only
    gene (EMBED_WEIGHT x cosine); source = the nearest training variant to the position."""
    _, _, _, index = workspace
    rng = np.random.default_rng(1)
    unrelated = ["".join(rng.choice(list("ACGT"), W)) for _ in range(3)]
    hits = hybrid(own_windows["Sequence"].to_list() + unrelated)
    nearest = NearestVariants.from_table(index.variants)
    assert any(c["via"] == "embed" for h in hits for c in h)  # both kinds are checked below
    for h in hits:
        scores = [c["score"] for c in h]
        assert scores == sorted(scores, reverse=True) and len(h) <= hybrid.k
        assert len({c["gene"] for c in h}) == len(h)  # one candidate per gene
        for c in h:
            assert set(c) == set(CANDIDATE_FIELDS)
            if c["identity"] is not None:
                assert c["via"] in ("align", "both")
                assert c["score"] == round(1 + c["identity"] * c["aligned_fraction"], 6)
            else:
                assert c["via"] == "embed" and c["strand"] is None
                assert c["score"] == round(EMBED_WEIGHT * max(c["cosine"], 0.0), 6) <= EMBED_WEIGHT
            assert c["source"] == nearest.nearest(c["build"], c["chrom"], np.array([c["position"]]))[0]
    assert any(c["source"] for h in hits for c in h)
    for h in hits[-3:]:  # random sequence aligns nowhere: embedding candidates only
        assert h and all(c["via"] == "embed" for c in h)


def test_rank_rules_on_hand_made_genes(workspace, hybrid):
    """Score (aligned: 1 + alignment score; else EMBED_WEIGHT x cosine, a negative cosine as 0),
    then cosine, then genes before intergenic candidates, then the key; the top k after ranking,
    whatever the order genes were found in; the query's loci on every candidate."""
    _, _, _, index = workspace
    keys = sorted(hybrid.fields)[:5]
    inter = ("", keys[0][1], keys[0][2], "", "")  # an intergenic stretch (no gene on either side)
    found = {  # in the order found, not the order ranked
        "d": _Gene(keys[0], 0, cosine=-0.3),  # score 0
        "e": _Gene(keys[4], 1, cosine=0.8),  # 0.08, ties with c: the key decides
        # 1.9 each: b, with a cosine, before a, though a's key comes first; i, intergenic, last
        "i": _Gene(inter, 5, align=0.9, identity=0.9, aligned_fraction=1.0, position=50, kind="intergenic"),
        "a": _Gene(keys[2], 2, align=0.9, identity=0.9, aligned_fraction=1.0, position=100),
        "c": _Gene(keys[1], 3, cosine=0.8),  # 0.08
        "b": _Gene(keys[3], 4, align=0.9, identity=0.9, aligned_fraction=1.0, position=200, cosine=0.5),
    }
    ranked = Retriever(index, k=6, embedder=hybrid.embedder)._ranked({g.key: g for g in found.values()}, 3)
    assert [c["gene"] for c in ranked] == [found[x].key[0] if x != "i" else None for x in "baiced"]
    assert [c["kind"] for c in ranked] == ["gene", "gene", "intergenic", "gene", "gene", "gene"]
    assert [c["score"] for c in ranked] == [1.9, 1.9, 1.9, 0.08, 0.08, 0.0]
    assert [c["via"] for c in ranked] == ["both", "align", "align", "embed", "embed", "embed"]
    assert [c["position"] for c in ranked[:3]] == [200, 100, 50]  # the alignment's; else the window centre
    assert ranked[3]["position"] == int(hybrid.centres[3])
    assert [c["loci"] for c in ranked] == [3] * 6 and all(list(c) == list(CANDIDATE_FIELDS) for c in ranked)
    assert ranked[2]["chrom"] == keys[0][2] and ranked[2]["description"] is None
    assert all(c[f] is None for c in ranked if c["kind"] == "gene" for f in NEIGHBOUR_FIELDS)
    top = Retriever(index, k=2, embedder=hybrid.embedder)._ranked({g.key: g for g in found.values()}, 3)
    assert top == ranked[:2]


def test_k_cuts_the_ranked_list(workspace, hybrid, own_windows):
    """A smaller k is a prefix of a larger one's list (the cut comes after ranking)."""
    _, _, _, index = workspace
    q = own_windows["Sequence"].to_list()
    full = Retriever(index, k=8, embedder=hybrid.embedder)(q)
    assert max(map(len, full)) > 2  # the cut below can fail
    for k in (1, 2):
        assert Retriever(index, k=k, embedder=hybrid.embedder)(q) == [h[:k] for h in full]


def test_modes(workspace, hybrid, own_windows):
    _, _, _, index = workspace
    q = own_windows["Sequence"].to_list()
    align = Retriever(index, mode="align")
    assert align.embedder is None  # no encoder loaded for alignment alone
    a, e = align(q), Retriever(index, mode="embed", embedder=hybrid.embedder)(q)
    assert all(c["via"] == "align" and c["cosine"] is None for h in a for c in h)
    assert all(c["via"] == "embed" and c["identity"] is None for h in e for c in h)
    assert [h[0]["gene"] for h in a] == own_windows["gene"].to_list()


def test_bad_options(workspace, hybrid):
    _, _, _, index = workspace
    for bad, match in (({"mode": "blast"}, "unknown retrieval mode"), ({"k": 0}, "k must be >= 1"),
                       ({"embed_when": "never"}, "unknown embed_when")):
        with pytest.raises(ValueError, match=match):
            Retriever(index, embedder=hybrid.embedder, **bad)
    narrow = SimpleNamespace(dim=16, path="enc16")  # an encoder of another width
    with pytest.raises(InputError, match="32-dimensional embeddings"):
        Retriever(index, embedder=narrow)


def test_open_retriever_from_an_index_or_its_directory(workspace, hybrid, own_windows):
    root, _, _, index = workspace
    q = own_windows["Sequence"].to_list()
    expected = hybrid(q)
    loaded = open_retriever(root / "index")  # loaded; the encoder the index records
    assert isinstance(loaded, Retriever) and loaded.index is not index
    assert loaded.embedder.path.resolve() == (root / "encoder").resolve()
    assert loaded(q) == expected
    given = open_retriever(index, str(root / "encoder"), k=2, embed_when="unaligned")
    assert given.index is index and (given.k, given.embed_when) == (2, "unaligned")
    assert given.embedder.path == root / "encoder"
    def first(hits):  # "unaligned": the aligned queries' candidates carry no cosine
        return [(h[0]["gene"], h[0]["score"], h[0]["position"]) for h in hits]

    assert first(given(q)) == first(expected) and all(len(h) <= 2 for h in given(q))
    assert open_retriever(str(root / "index"), mode="align").embedder is None
    with pytest.raises(InputError, match="no such index directory"):
        open_retriever(root / "no_index")


def test_candidates_table_and_evidence():
    cand = [{f: None for f in CANDIDATE_FIELDS} | {"gene": g, "score": s, "position": p}
            for g, s, p in (("A", 2.0, 10), ("B", 0.05, 20))]
    t = candidates_table(["q0", "q1", "q2"], [cand, [], cand[1:]])
    assert t.columns == ["query", "rank", *CANDIDATE_FIELDS]
    assert t.select("query", "rank", "gene").rows() == [("q0", 1, "A"), ("q0", 2, "B"), ("q2", 1, "B")]
    assert t.schema["score"] == pl.Float64 and t.schema["position"] == pl.Int64
    empty = candidates_table([], [])
    assert empty.height == 0 and empty.schema == t.schema
    rows = [{"id": "q0"}, {"id": "q1"}]
    out = attach_evidence(rows, [cand, []])
    assert out == [{"id": "q0", "evidence": cand}, {"id": "q1", "evidence": []}]
    assert "evidence" not in rows[0]  # copies


def test_mutated_windows_retrieve_their_gene(workspace):
    root, _, df, index = workspace
    r = Retriever(index, str(root / "encoder"))
    rows = df.filter(pl.col("gene_name").is_not_null()).head(40)
    rng = np.random.default_rng(0)
    queries = [mutate(s, 0.1, rng) for s in rows["Sequence"]]
    hits = r(queries)
    assert all(len(h) <= 4 for h in hits) and all(set(c) == set(CANDIDATE_FIELDS) for h in hits for c in h)
    top1 = np.mean([bool(h) and h[0]["gene"] == g for h, g in zip(hits, rows["gene_name"])])
    assert top1 >= 0.9
    for h in hits:  # best first, deterministic order
        assert [c["score"] for c in h] == sorted((c["score"] for c in h), reverse=True)
    assert r(queries) == hits
    aligned = Retriever(index, mode="align")(queries)
    for h, a in zip(hits, aligned):  # an alignment outranks any embedding similarity
        assert not a or (h[0]["gene"], h[0]["via"] != "embed") == (a[0]["gene"], True)
    emb = Retriever(index, str(root / "encoder"), mode="embed", embedder=r.embedder)(rows["Sequence"].to_list())
    assert all(c["via"] == "embed" and c["identity"] is None for h in emb for c in h)
    assert np.mean([bool(h) and h[0]["gene"] == g for h, g in zip(emb, rows["gene_name"])]) > 0.5


def test_empty_candidates_for_n_or_too_short_queries(workspace):
    root, _, df, index = workspace
    for mode in ("hybrid", "align", "embed"):
        r = Retriever(index, str(root / "encoder"), mode=mode)
        out = r(["N" * 200, "ACGTACG", "", "nnnnACGTAnnnn", df["Sequence"][0]])
        assert out[:4] == [[], [], [], []] and out[4]
    table = candidates_table(["a", "b"], [[], Retriever(index)([df["Sequence"][0]])[0]])
    assert table["query"].unique().to_list() == ["b"] and table["rank"][0] == 1


def test_poorly_mapped_queries_get_the_sensitive_pass_and_threads_do_not_matter(workspace):
    import copy

    root, _, df, index = workspace
    rows = df.filter(pl.col("gene_name").is_not_null()).head(12)
    q = rows["Sequence"].to_list()
    assert len(index.cascade) == 1 and index.meta["config"]["minimap2_sensitive"]
    assert index.meta["config"]["minimap2_deep"] is None  # a small reference: no deep tier

    class Blind:  # a first index that maps nothing
        def map(self, seq, buf=None):
            return iter(())

    blind = copy.copy(index)
    blind.aligner = Blind()
    hits = Retriever(blind, mode="align")(q)
    assert [h[0]["gene"] for h in hits] == rows["gene_name"].to_list()  # found by the second pass
    blind.cascade = []
    assert Retriever(blind, mode="align")(q) == [[] for _ in q]
    one, three = Retriever(index, threads=1)(q), Retriever(index, threads=3)(q)
    assert one == three


def test_embedding_only_for_unaligned_queries(workspace):
    root, _, df, index = workspace
    always = Retriever(index, str(root / "encoder"))
    fast = Retriever(index, embedder=always.embedder, embed_when="unaligned")
    rng = np.random.default_rng(3)
    aligned = df.filter(pl.col("gene_name").is_not_null())["Sequence"].head(10).to_list()
    unrelated = ["".join(rng.choice(list("ACGT"), W)) for _ in range(5)]  # aligns nowhere
    a, f = always(aligned + unrelated), fast(aligned + unrelated)
    for x, y in zip(a[:10], f[:10]):  # same first candidate; no embedding-only genes listed
        assert x[0]["gene"] == y[0]["gene"] and y[0]["identity"] is not None
        assert all(c["via"] == "both" or c["via"] == "align" for c in y)
        assert [c["gene"] for c in y] == [c["gene"] for c in x if c["identity"] is not None][: len(y)]
    assert any(c["via"] == "embed" for h in a[:10] for c in h)  # the check above can fail
    for x, y in zip(a[10:], f[10:]):  # embedded as before (another batch: float noise only)
        assert y and [c["via"] for c in y] == ["embed"] * len(y)
        assert [c["gene"] for c in x] == [c["gene"] for c in y]
        assert np.allclose([c["cosine"] for c in x], [c["cosine"] for c in y], atol=1e-4)
    with pytest.raises(ValueError, match="embed_when"):
        Retriever(index, embedder=always.embedder, embed_when="sometimes")


def _gaps(b, margin: int) -> list[tuple[str, int, int]]:
    """(chrom, 0-based start, end) of the generated genome's stretches lying >= `margin` bases
    from every gene (computed from the generator's own gene list, not the index's)."""
    out = []
    for chrom, (start0, seq) in b.genome.items():
        covered = np.zeros(len(seq), dtype=bool)
        for g in b.genes:
            if g["chrom"] == chrom:
                covered[max(0, g["start"] - 1 - margin - start0): g["end"] + margin - start0] = True
        edges = np.flatnonzero(np.diff(np.concatenate([[0], (~covered).astype(int), [0]])) != 0)
        out += [(chrom, int(a), int(e)) for a, e in zip(edges[::2], edges[1::2]) if e - a >= W]
    return out


def test_an_intergenic_query_names_the_genes_on_each_side(workspace):
    """A window cut from a stretch between genes: its top candidate is intergenic (no gene
    fields), with the nearest gene ending before its centre and the one starting after it, at
    the distances computed from the generator's gene list."""
    root, b, _, index = workspace
    r = Retriever(index, str(root / "encoder"))
    cases = []
    for chrom, a, e in _gaps(b, 20):
        s = (a + e - W) // 2  # a window in the middle of the stretch
        pos = s + W // 2 + 1  # its centre base, 1-based (the records start at 1)
        left = max((g for g in b.genes if g["chrom"] == chrom and g["end"] < pos),
                   key=lambda g: g["end"], default=None)
        right = min((g for g in b.genes if g["chrom"] == chrom and g["start"] > pos),
                    key=lambda g: g["start"], default=None)
        want = (left and left["gene_name"], left and pos - left["end"],
                right and right["gene_name"], right and right["start"] - pos)
        cases.append((b.genome[chrom][1][s: s + W].tobytes().decode(), chrom, pos, want))
    assert len(cases) >= 4 and {w[0] is None for *_, w in cases} == {True, False}  # both kinds of side
    assert any(w[2] is None for *_, w in cases)
    hits = r([q for q, *_ in cases])
    for h, (_, chrom, pos, want) in zip(hits, cases):
        top = h[0]
        assert (top["kind"], top["chrom"], top["position"], top["identity"]) == ("intergenic", chrom, pos, 1.0)
        assert tuple(top[f] for f in NEIGHBOUR_FIELDS) == want
        assert all(top[f] is None for f in ("gene", "gene_id", "description", "transcript_type", "phenotype"))
        assert top["loci"] == 1 and all(c["loci"] == 1 for c in h)
        assert all(c["kind"] == "gene" for c in h[1:])  # the rest: embedding genes
        assert len({(c["chrom"], c["left_gene"], c["right_gene"]) for c in h if c["kind"] == "intergenic"}) == 1
    table = candidates_table(["q"], hits[:1])
    assert table["kind"][0] == "intergenic" and table.schema["left_distance"] == pl.Int64


REPEAT_AT = {"chr1": (500, 2_000, 3_500, 7_000, 10_000), "chr2": (800, 3_000, 8_000)}


@pytest.fixture(scope="module")
def repeat_index(workspace, tmp_path_factory):
    """The workspace's bundle with one random W-base sequence written over 8 places (REPEAT_AT,
    0-based; in genes and between them), indexed whole (alignment is what is tested)."""
    import shutil

    from llamadna.data.synthetic import _write_fasta
    from llamadna.retrieve.index import IndexConfig, ReferenceIndex

    root, b, _, _ = workspace
    out = tmp_path_factory.mktemp("repeat")
    shutil.copytree(b.path, out / "bundle")
    unit = np.frombuffer(b"".join(np.random.default_rng(11).choice([b"A", b"C", b"G", b"T"], W)), np.uint8)
    genome = {name: (s0, seq.copy()) for name, (s0, seq) in b.genome.items()}
    for chrom, places in REPEAT_AT.items():
        for p in places:
            genome[chrom][1][p: p + W] = unit
    _write_fasta(out / "bundle" / "regions.fa", genome)
    index = ReferenceIndex.build(IndexConfig(encoder=str(root / "encoder"), out=str(out / "index"),
                                             data=str(out / "bundle"), window=W, stride=32, whiten=False))
    return index, unit.tobytes().decode(), genome


def test_loci_count_a_repeat_once_per_place_and_a_unique_window_once(repeat_index):
    """8 copies -> 8 loci on every candidate of the query, on either strand (minimap2's default of
    5 secondary alignments would report at most 6); a unique window -> 1; a diverged copy of the
    repeat still aligns to all 8 equally well."""
    index, unit, genome = repeat_index
    unique = genome["chr1"][1][5_000: 5_000 + W].tobytes().decode()
    rng = np.random.default_rng(2)
    hits = Retriever(index, mode="align", k=8)([unit, mappy.revcomp(unit), unique, mutate(unit, 0.03, rng)])
    for h in (hits[0], hits[1], hits[3]):
        assert h and {c["loci"] for c in h} == {8}
        kinds = {c["kind"] for c in h}
        assert kinds == {"gene", "intergenic"}  # copies in genes and between them
    assert hits[0][0]["kind"] == "gene" and hits[0][0]["score"] == 2.0  # ties: a gene first
    # one candidate per interval between two genes: chr1's copies at 500, 2,000 and 3,500 lie
    # before its first gene; 2 copies in genes (chr1 7,000, chr2 3,000)
    inter = [(c["chrom"], c["left_gene"], c["right_gene"]) for c in hits[0] if c["kind"] == "intergenic"]
    assert sorted(inter, key=str) == sorted([("chr1", None, "GENE0"), ("chr1", "GENE0", "GENE1"),
                                             ("chr2", None, "GENE6"), ("chr2", "GENE4", None)], key=str)
    assert len(hits[0]) == 6
    assert [c["loci"] for c in hits[2]] == [1] and hits[2][0]["identity"] == 1.0
    import copy  # the same index read with minimap2's default best_n: the count is cut

    settings = {k: v for k, v in index.meta["config"]["minimap2"].items() if k not in ("k", "w", "best_n")}
    few = copy.copy(index)
    few.aligner, few.cascade = mappy.Aligner(str(index.path / "minimap2.mmi"), **settings), []
    few.loci = None  # counted on the passes' hits only
    assert 1 < Retriever(few, mode="align")([unit])[0][0]["loci"] < 8
    assert Retriever(copy.copy(few), mode="align")([unit])[0][0]["loci"] < Retriever(
        index, mode="align")([unit])[0][0]["loci"]


@pytest.fixture(scope="module")
def diverged_repeat_index(workspace, tmp_path_factory):
    """The workspace's bundle with a random W-base unit written at REPEAT_AT's first place and
    copies of it with 5 % substitutions (each its own) at the 7 others, indexed whole with the
    loci tier."""
    import shutil

    from llamadna.constants import MINIMAP2_LOCI
    from llamadna.data.synthetic import _write_fasta
    from llamadna.retrieve.index import IndexConfig, ReferenceIndex

    root, b, _, _ = workspace
    out = tmp_path_factory.mktemp("diverged_repeat")
    shutil.copytree(b.path, out / "bundle")
    rng = np.random.default_rng(5)
    unit = "".join(rng.choice(list("ACGT"), W))
    genome = {name: (s0, seq.copy()) for name, (s0, seq) in b.genome.items()}
    places = [(chrom, p) for chrom, ps in REPEAT_AT.items() for p in ps]
    for k, (chrom, p) in enumerate(places):
        copy = unit if k == 0 else mutate(unit, 0.05, rng, indel_fraction=0.0)
        genome[chrom][1][p: p + W] = np.frombuffer(copy.encode(), np.uint8)
    _write_fasta(out / "bundle" / "regions.fa", genome)
    index = ReferenceIndex.build(IndexConfig(encoder=str(root / "encoder"), out=str(out / "index"),
                                             data=str(out / "bundle"), window=W, stride=32, whiten=False,
                                             minimap2_loci=dict(MINIMAP2_LOCI)))
    return index, unit


def test_the_loci_tier_counts_copies_a_few_percent_diverged(diverged_repeat_index):
    """The query is one copy; the other 7 are 5 % diverged from it (identity ~0.95, within
    LOCI_SHARE of the exact hit). The passes (k=9) keep only chains scoring near the exact copy's
    and count fewer; the loci tier (every chain, constants.MINIMAP2_LOCI) counts all 8, as the
    repeat negatives' truth (`data.negatives.count_loci`) does."""
    import copy

    from llamadna.constants import MINIMAP2_LOCI
    from llamadna.retrieve.index import LOCI_MMI

    index, unit = diverged_repeat_index
    assert index.loci is not None and index.meta["config"]["minimap2_loci"] == MINIMAP2_LOCI
    assert LOCI_MMI in index.meta["files"]
    passes = copy.copy(index)
    passes.loci = None
    with_tier = Retriever(index, mode="align")([unit])[0][0]["loci"]
    without = Retriever(passes, mode="align")([unit])[0][0]["loci"]
    assert with_tier == 8 and without < 8, (with_tier, without)


def test_count_loci_rules():
    """Share of the best identity x fraction, minimum aligned fraction, one locus per window-sized
    bin, hits of any pass counted once, queries without hits 0."""
    from llamadna.retrieve.retriever import count_loci

    hits = [  # query, build, chrom, position, identity, aligned fraction, strand
        (0, "B", "c1", 1_000, 1.0, 1.0, "+"),
        (0, "B", "c1", 1_050, 1.0, 1.0, "+"),  # the same 100-base bin (a second pass's hit, say)
        (0, "B", "c1", 5_000, 0.95, 0.95, "-"),  # 0.9025 >= 0.9 x 1
        (0, "B", "c2", 1_000, 0.89, 1.0, "+"),  # under 0.9 x the best
        (0, "A", "c1", 1_000, 1.0, 1.0, "+"),  # another build: another locus
        (2, "B", "c1", 300, 0.99, 0.45, "+"),  # 0.4455 >= 0.9 x 0.45, but under half aligned
        (2, "B", "c1", 900, 0.9, 0.5, "+"),  # query 2's best (0.45), half of it aligned
    ]
    assert count_loci(hits, 3, 100) == [3, 0, 1]
    assert count_loci(hits, 3, 10_000) == [2, 0, 1]  # B c1 1,000 and 5,000 in one bin
    assert count_loci([], 2, 100) == [0, 0]


def test_random_sequence_aligns_nowhere_and_has_no_loci(workspace, hybrid):
    rng = np.random.default_rng(9)
    unrelated = ["".join(rng.choice(list("ACGT"), W)) for _ in range(4)]
    assert Retriever(workspace[3], mode="align")(unrelated) == [[]] * 4
    for h in hybrid(unrelated):  # embedding candidates only: genes, no locus
        assert h and all(c["kind"] == "gene" and c["loci"] == 0 and c["via"] == "embed" for c in h)
