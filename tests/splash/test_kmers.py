from collections import Counter

import numpy as np
import pytest

from llamadna.io.reads import ReadBatch
from llamadna.splash import kmers
from llamadna.splash.kmers import (
    CountBudgetError,
    MemoryBudget,
    PairCounter,
    batch_pairs,
    combine_samples,
    count_sample,
    encode,
    kmer_values,
    pack,
    unpack,
)


def rand_seq(rng, n):
    return "".join(rng.choice(list("ACGT"), n))


def batch(reads):
    seq = np.frombuffer("".join(reads).encode(), dtype=np.uint8)
    offsets = np.concatenate(([0], np.cumsum([len(r) for r in reads]))).astype(np.int64)
    return ReadBatch(seq, offsets, path=None)


def naive_pairs(reads, a, g, t):
    out = Counter()
    for r in reads:
        for i in range(len(r) - (a + g + t) + 1):
            anc, tgt = r[i : i + a], r[i + a + g : i + a + g + t]
            if "N" not in anc and "N" not in tgt:
                out[anc, tgt] += 1
    return out


@pytest.mark.parametrize("k", [1, 2, 5, 16, 31, 32])
def test_pack_unpack_round_trip_and_order(k):
    rng = np.random.default_rng(k)
    words = sorted({rand_seq(rng, k) for _ in range(200)})
    packed = pack(words, k)
    assert packed.dtype == np.uint64
    assert unpack(packed, k).astype(str).tolist() == words
    assert np.all(packed[1:] > packed[:-1])  # numeric order = lexicographic order


def test_pack_rejects_bad_input():
    with pytest.raises(ValueError, match="length 3"):
        pack(["ACG", "AC"], 3)
    with pytest.raises(ValueError, match="only A, C, G, T"):
        pack(["ANG"], 3)
    with pytest.raises(ValueError, match="outside 1..32"):
        pack(["A" * 33], 33)


@pytest.mark.parametrize("k", [1, 3, 7, 31, 32])
def test_kmer_values_match_naive(k):
    rng = np.random.default_rng(0)
    s = rand_seq(rng, 80)
    got = kmer_values(encode(s), k)
    assert got.tolist() == pack([s[i : i + k] for i in range(len(s) - k + 1)], k).tolist()
    assert len(kmer_values(encode(s[: k - 1]), k)) == 0


def test_windows_gap_n_read_ends_and_strand():
    reads = ["ACGTACGTTTGCA", "ACGNACGTTTGCAAC", "ACG", "TTTTTTGGGG"]
    for a, g, t in [(3, 0, 3), (2, 2, 4), (4, 1, 2)]:
        got = Counter()
        for anc, tgt in batch_pairs(batch(reads), a, g, t):
            got.update(zip(unpack(anc, a).astype(str), unpack(tgt, t).astype(str)))
        assert got == naive_pairs(reads, a, g, t)
    # strand-specific: a read and its reverse complement give different anchors
    fw = {x for x, _ in naive_pairs(["AAACCC"], 3, 0, 3)}
    rc = {x for x, _ in naive_pairs(["GGGTTT"], 3, 0, 3)}
    assert fw == {"AAA"} and rc == {"GGG"}
    # an N in the gap does not drop the window
    anc, tgt = next(iter(batch_pairs(batch(["ACNGT"]), 2, 1, 2)))
    assert unpack(anc, 2).astype(str).tolist() == ["AC"] and unpack(tgt, 2)[0] == b"GT"


def test_slices_of_a_long_read_give_the_same_windows():
    rng = np.random.default_rng(1)
    reads = [rand_seq(rng, 500), rand_seq(rng, 40)]
    whole = Counter()
    for anc, tgt in batch_pairs(batch(reads), 5, 1, 4):
        whole.update(zip(anc.tolist(), tgt.tolist()))
    sliced = Counter()
    for anc, tgt in batch_pairs(batch(reads), 5, 1, 4, slice_positions=37):
        sliced.update(zip(anc.tolist(), tgt.tolist()))
    assert whole == sliced and sum(whole.values()) == 491 + 31


def counter_as_dict(table, a, t):
    return {
        (x, y): int(c)
        for x, y, c in zip(unpack(table.anchor, a).astype(str), unpack(table.target, t).astype(str),
                           table.count)
    }


def test_counting_over_chunks_is_exact(tmp_path):
    rng = np.random.default_rng(2)
    genome = rand_seq(rng, 60)
    reads = [genome[i : i + 20] for i in rng.integers(0, 40, 300)] + ["ACGTNACGTACGTACGT"]
    fq = tmp_path / "r.fq"
    fq.write_text("".join(f"@r{i}\n{s}\n+\n{'I' * len(s)}\n" for i, s in enumerate(reads)))
    table, summary = count_sample([fq], 4, 1, 3, chunk_bytes=200)  # many chunks and merges
    want = naive_pairs(reads, 4, 1, 3)
    assert counter_as_dict(table, 4, 3) == dict(want)
    assert summary["reads"] == len(reads) and summary["windows"] == sum(want.values())
    assert summary["distinct_pairs"] == len(want)
    # the table is sorted by (hash, anchor, target)
    assert np.all(table.hash[1:] >= table.hash[:-1])


def test_hash_collisions_do_not_change_counts(monkeypatch):
    rng = np.random.default_rng(3)
    reads = [rand_seq(rng, 15) for _ in range(40)]
    counter = PairCounter(3, 0, 2)
    monkeypatch.setattr(kmers, "pair_hash", lambda a, t: (a ^ t) % np.uint64(5))  # awful hash
    for i in range(0, 40, 7):
        counter.add(batch(reads[i : i + 7]))
    table = counter.result()
    assert counter_as_dict(table, 3, 2) == dict(naive_pairs(reads, 3, 0, 2))
    monkeypatch.undo()
    samples = [table, table]
    joined = combine_samples(samples, ["x", "y"], 3, 2, 0)
    assert np.all(joined.anchor[1:] >= joined.anchor[:-1])
    assert np.array_equal(joined.sample[::2], np.zeros(len(table), np.int32))


def test_combine_samples_order():
    rng = np.random.default_rng(4)
    tables = []
    for _ in range(3):
        c = PairCounter(3, 0, 3)
        c.add(batch([rand_seq(rng, 12) for _ in range(30)] + ["ACGACGACGACG"]))
        tables.append(c.result())
    joined = combine_samples(tables, ["a", "b", "c"], 3, 3, 0)
    assert len(joined) == sum(len(t) for t in tables)
    assert np.all(joined.anchor[1:] >= joined.anchor[:-1])
    # pairs contiguous within an anchor; samples ascending within a pair
    key = list(zip(joined.anchor.tolist(), joined.target.tolist()))
    starts = [i for i in range(len(key)) if i == 0 or key[i] != key[i - 1]]
    assert len(starts) == len(set(key))
    for i in range(1, len(key)):
        if key[i] == key[i - 1]:
            assert joined.sample[i] > joined.sample[i - 1]
    total = sum(int(t.count.sum()) for t in tables)
    assert int(joined.count.sum()) == total


def test_memory_budget_error():
    budget = MemoryBudget(limit_bytes=100 * kmers.BYTES_PER_ENTRY)
    c = PairCounter(3, 0, 3, name="s1", budget=budget)
    rng = np.random.default_rng(5)
    with pytest.raises(CountBudgetError, match=r"exceeds the memory budget.*--max-memory-gb"):
        c.add(batch([rand_seq(rng, 100) for _ in range(5)]))
