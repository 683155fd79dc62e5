"""simulate-samples on a tiny generated bundle: reads, depth, variants per group, determinism."""

import gzip
import json
import shutil

import numpy as np
import polars as pl
import pysam
import pytest
from typer.testing import CliRunner

from llamadna.cli import app
from llamadna.data.simulate import (
    SIMULATED_NOTE,
    SimulateConfig,
    build_haplotype,
    hap_to_ref,
    simulate_samples,
)
from llamadna.data.synthetic import make_bundle, write_vcf

LENGTHS = {"chr1": 4000, "chr2": 3000}
_COMP = str.maketrans("ACGTN", "TGCAN")


def rc(s: str) -> str:
    return s.translate(_COMP)[::-1]


@pytest.fixture(scope="module")
def sim_bundle(tmp_path_factory):
    """A two-chromosome bundle (GRCh38 + a GRCh37 copy) with hand-placed variants and mafs."""
    path = tmp_path_factory.mktemp("simbundle")
    b = make_bundle(path, chrom_lengths=LENGTHS, n_genes=2, n_variants=5, seed=3, gene_len=(500, 1000))
    seq = {c: b.genome[c][1].tobytes().decode() for c in LENGTHS}

    def base(c, p, n=1):
        return seq[c][p - 1 : p - 1 + n]

    def other(r):
        return "A" if r[0] != "A" else "C"

    rows = [  # chrom, pos, id, ref, alt, source, maf
        ("chr1", 500, "rsHom", base("chr1", 500), other(base("chr1", 500)), "dbSNP", "1.0"),
        ("chr1", 800, "rsNever", base("chr1", 800), other(base("chr1", 800)), "dbSNP", "0"),
        ("chr1", 1200, "COSM1", base("chr1", 1200), ".", "COSMIC", ""),
        ("chr1", 1600, "rsClin", base("chr1", 1600), other(base("chr1", 1600)), "ClinVar", ""),
        ("chr1", 2000, "rsDel", base("chr1", 2000, 4), base("chr1", 2000), "ClinVar", ""),
        ("chr1", 2400, "rsIns", base("chr1", 2400), base("chr1", 2400) + "GATTACA", "dbSNP", "1.0"),
        ("chr1", 2800, "rsBadRef", other(base("chr1", 2800)), "T", "dbSNP", "1.0"),
        ("chr1", 3200, "x1", base("chr1", 3200), other(base("chr1", 3200)), "Other", ""),
        ("chr2", 1000, "CD1", base("chr2", 1000), ".", "HGMD-PUBLIC", ""),
        ("chr2", 2000, "COSM2", base("chr2", 2000, 2), ".", "COSMIC", ""),
    ]
    df = pl.DataFrame(rows, schema=["chrom", "pos", "id", "ref", "alt", "source", "maf"], orient="row")
    write_vcf(path / "variants.vcf.gz", df.drop("maf"), LENGTHS)
    (path / "variants.tsv.gz").write_bytes(gzip.compress(df.write_csv(separator="\t", quote_style="never").encode()))
    for name in ("regions.fa", "annotation.gtf.gz", "variants.vcf.gz", "variants.vcf.gz.tbi",
                 "variants.tsv.gz"):
        tagged = name.replace("regions", "regions.grch37").replace(
            "annotation", "annotation.grch37").replace("variants", "variants.grch37")
        shutil.copy(path / name, path / tagged)
    return path, seq


@pytest.fixture(scope="module")
def sim(sim_bundle, tmp_path_factory):
    path, seq = sim_bundle
    out = tmp_path_factory.mktemp("sim")
    opts = SimulateConfig(n_samples=4, depth=20, read_len=50, error_rate=0.0, seed=7)
    summary = simulate_samples(path, out, opts)
    return out, seq, summary, opts


def fastq(path):
    with pysam.FastxFile(str(path)) as fh:
        return [(r.name, r.comment, r.sequence, r.quality) for r in fh]


def test_files_say_simulated_and_sheet(sim):
    out, _, summary, opts = sim
    assert SIMULATED_NOTE in (out / "README.txt").read_text()
    assert json.loads((out / "simulation.json").read_text())["note"] == SIMULATED_NOTE
    for build in ("GRCh38", "GRCh37"):
        d = out / build
        assert SIMULATED_NOTE in (d / "README.txt").read_text()
        sheet = pl.read_csv(d / "samples.tsv", separator="\t")
        assert sheet.columns == ["sample", "path", "group", "build"]
        assert sheet["group"].to_list() == ["A", "A", "B", "B"]
        assert set(sheet["build"]) == {build}
        for s, p in zip(sheet["sample"], sheet["path"]):
            assert p == f"SIMULATED_{s}.fastq.gz" and (d / p).exists()  # relative to the sheet


def test_reads_count_length_depth_quality(sim):
    out, seq, summary, opts = sim
    total = sum(len(s) for s in seq.values())
    expected = sum(round(opts.depth * len(s) / opts.read_len) for s in seq.values())
    for s in opts.samples:
        recs = fastq(out / "GRCh38" / f"SIMULATED_{s}.fastq.gz")
        assert len(recs) == expected
        assert all(len(r[2]) == opts.read_len for r in recs)
        assert all(r[0].startswith(f"SIMULATED_{s}:") for r in recs)
        assert {r[3] for r in recs} == {chr(33 + 41) * opts.read_len}  # error rate 0 -> Q41 cap
        assert len(recs) * opts.read_len / total == pytest.approx(opts.depth, rel=0.01)
        strands = [r[1].split(":")[2] for r in recs]
        assert abs(strands.count("-") - len(recs) / 2) <= 2  # half reverse-complemented


def test_reads_match_reference_at_named_position(sim):
    """Reads away from applied variants equal the reference at the position their name gives."""
    out, seq, _, opts = sim
    truth = pl.read_csv(out / "GRCh38" / "truth.tsv", separator="\t")
    s = "sample01"
    spans = [(r["chrom"], r["pos"], r["pos"] + len(r["ref"]) + len(r["alt"]))
             for r in truth.filter(pl.col("sample") == s).iter_rows(named=True)]
    checked = 0
    for _, comment, read, _ in fastq(out / "GRCh38" / f"SIMULATED_{s}.fastq.gz"):
        chrom, pos, strand, _hap = comment.split(":")
        pos = int(pos)
        if any(c == chrom and a < pos + opts.read_len and pos < b for c, a, b in spans):
            continue
        ref = seq[chrom][pos - 1 : pos - 1 + opts.read_len]
        assert (read if strand == "+" else rc(read)) == ref
        checked += 1
    assert checked > 500


def test_error_rate(sim_bundle, tmp_path):
    path, seq = sim_bundle
    opts = SimulateConfig(n_samples=2, depth=20, read_len=50, error_rate=0.05, seed=1, default_af=0)
    simulate_samples(path, tmp_path, opts)
    truth = pl.read_csv(tmp_path / "GRCh38" / "truth.tsv", separator="\t")
    spans = [(r["chrom"], r["pos"], r["pos"] + 10) for r in truth.iter_rows(named=True)]
    mism = n = 0
    for _, comment, read, qual in fastq(tmp_path / "GRCh38" / "SIMULATED_sample01.fastq.gz"):
        chrom, pos, strand, _ = comment.split(":")
        pos = int(pos)
        if any(c == chrom and a < pos + 50 and pos < b for c, a, b in spans):
            continue
        ref = seq[chrom][pos - 1 : pos + 49]
        r = read if strand == "+" else rc(read)
        mism += sum(x != y for x, y in zip(r, ref))
        n += 50
        assert qual == chr(33 + 13) * 50  # Q = round(-10 log10 0.05) = 13
    assert mism / n == pytest.approx(0.05, rel=0.15)


def test_truth_frequencies_events_and_drawn_alts(sim):
    out, seq, summary, opts = sim
    truth = pl.read_csv(out / "GRCh38" / "truth.tsv", separator="\t")
    by = {v: truth.filter(pl.col("variant_id") == v) for v in truth["variant_id"].unique()}
    # maf 1.0 -> homozygous in every sample; maf 0 -> never; bad REF / other source skipped
    assert sorted(by["rsHom"]["sample"]) == opts.samples and set(by["rsHom"]["genotype"]) == {"1|1"}
    assert sorted(by["rsIns"]["sample"]) == opts.samples
    assert "rsNever" not in by and "rsBadRef" not in by and "x1" not in by
    counts = summary["builds"]["GRCh38"]["variant_counts"]
    assert counts["skipped_ref_mismatch"] == 1 and counts["skipped_source_not_simulated:Other"] == 1
    assert counts["frequency_from_maf"] == 4
    # events: heterozygous in group A (sample01, sample02) only
    for v in ("COSM1", "rsClin", "rsDel", "CD1", "COSM2"):
        t = by[v]
        assert sorted(t["sample"]) == ["sample01", "sample02"], v
        assert set(t["group"]) == {"A"} and set(t["genotype"]) <= {"0|1", "1|0"}
    # COSMIC/HGMD without ALT: a drawn base differing from REF's first base, REF[1:] kept
    for v in ("COSM1", "CD1", "COSM2"):
        r = by[v].row(0, named=True)
        assert r["alt_drawn"] and r["alt"][0] in "ACGT" and r["alt"][0] != r["ref"][0]
        assert r["alt"][1:] == r["ref"][1:] and len(set(by[v]["alt"])) == 1
    assert not by["rsClin"]["alt_drawn"][0]


def test_applied_alleles_in_reads_of_group_a_only(sim):
    out, seq, _, opts = sim
    truth = pl.read_csv(out / "GRCh38" / "truth.tsv", separator="\t")
    reads = {s: [r[2] for r in fastq(out / "GRCh38" / f"SIMULATED_{s}.fastq.gz")]
             for s in opts.samples}
    blob = {s: "|".join(r) + "|" + "|".join(rc(x) for x in r) for s, r in reads.items()}

    def allele_kmer(r, flank=10):
        c, p = r["chrom"], r["pos"]
        return seq[c][p - 1 - flank : p - 1] + r["alt"] + seq[c][p - 1 + len(r["ref"]) :][:flank]

    events = truth.filter(pl.col("kind") == "event").unique("variant_id")
    assert events.height == 5
    for r in events.iter_rows(named=True):
        km = allele_kmer(r)
        assert km in blob["sample01"] and km in blob["sample02"], r["variant_id"]
        assert km not in blob["sample03"] and km not in blob["sample04"], r["variant_id"]
    hom = truth.filter(pl.col("variant_id") == "rsIns").row(0, named=True)
    ref_km = seq["chr1"][2389:2410]
    for s in opts.samples:  # homozygous insertion: ALT everywhere, REF nowhere
        assert allele_kmer(hom) in blob[s] and ref_km not in blob[s]


def test_deterministic_by_seed(sim_bundle, tmp_path):
    path, _ = sim_bundle
    opts = dict(n_samples=2, depth=5, read_len=40, error_rate=0.01, default_af=0.3)
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        simulate_samples(path, tmp_path / name, SimulateConfig(seed=seed, threads=1 + (name == "b"), **opts))
        runs[name] = ([gzip.decompress((tmp_path / name / "GRCh37" / f"SIMULATED_sample0{i}.fastq.gz")
                                       .read_bytes()) for i in (1, 2)],
                      (tmp_path / name / "GRCh37" / "truth.tsv").read_text())
    assert runs["a"] == runs["b"]
    assert runs["a"][0] != runs["c"][0]


def test_haplotype_and_position_map():
    seq = np.frombuffer(b"AAAACCCCGGGGTTTT", dtype=np.uint8)
    # insertion at 2 (A -> ATT), deletion at 8 (GGG -> G), SNV at 13 (T -> A)
    hap, hs, rs, lens = build_haplotype(
        seq, np.array([2, 8, 13]), np.array([1, 3, 1]), [b"ATT", b"G", b"A"]
    )
    assert hap.tobytes() == b"AAATTACCCCGGTATT"
    assert hs.tolist() == [2, 10, 13]
    h = np.arange(len(hap))
    assert hap_to_ref(h, hs, rs, lens).tolist() == [0, 1, 2, 2, 2, 3, 4, 5, 6, 7, 8, 11, 12, 13, 14, 15]


def test_bad_options_and_cli(sim_bundle, tmp_path):
    path, _ = sim_bundle
    with pytest.raises(ValueError, match="n_samples"):
        SimulateConfig(n_samples=1)
    r = CliRunner().invoke(app, ["simulate-samples", "--data", str(path), "--out", str(tmp_path / "o"),
                                 "--n-samples", "2", "--depth", "2", "--read-len", "30"])
    assert r.exit_code == 0, r.output
    assert "SIMULATED" in r.output
    assert (tmp_path / "o" / "GRCh38" / "SIMULATED_sample01.fastq.gz").exists()
    r = CliRunner().invoke(app, ["simulate-samples", "--data", str(path), "--out", str(tmp_path / "o"),
                                 "--n-samples", "1"])
    assert r.exit_code == 2 and "n_samples must be >= 2" in r.output


def test_planted_gene_families_have_their_divergence(tmp_path):
    from llamadna.data.synthetic import FAMILY_DIVERGENCE

    kw = dict(chrom_lengths={"chr1": 400_000, "chr2": 300_000}, n_genes=40, n_variants=50, seed=1,
              gene_len=(3_000, 4_000))
    plain = make_bundle(tmp_path / "plain", **kw)
    b = make_bundle(tmp_path / "fam", families=3, **kw)
    assert [g["start"] for g in b.genes] == [g["start"] for g in plain.genes]  # same genes drawn
    members = [g for g in b.genes if "family" in g]
    assert len(members) == 3 * len(FAMILY_DIVERGENCE)
    assert {g["divergence"] for g in members} == set(FAMILY_DIVERGENCE)
    seq = {c.split(":")[0]: s for c, (_, s) in b.genome.items()}

    def body(g, n=2_000):  # first n bases (before indels have shifted much)
        return seq[g["chrom"]][g["start"] - 1 : g["start"] - 1 + n]

    for f in range(3):
        fam = sorted((g for g in members if g["family"] == f), key=lambda g: g["divergence"])
        # two members differ by about the sum of their divergences from the founder (indels
        # shift the tail, so count in the first 200 bases); unrelated genes by ~75 %
        a, b2 = body(fam[0], 200), body(fam[1], 200)
        mismatch = float(np.mean(a != b2))
        assert mismatch < 0.25, mismatch
        other = next(g for g in b.genes if "family" not in g)
        assert float(np.mean(body(fam[0]) != body(other))) > 0.6
    # the FASTA holds the planted bases and the VCF's REF matches them
    ref = pysam.FastaFile(str(b.path / "regions.fa"))
    g = members[0]
    assert ref.fetch(g["chrom"], g["start"] - 1, g["start"] + 99) == body(g, 100).tobytes().decode()
    for r in b.variants.head(20).iter_rows(named=True):
        assert ref.fetch(r["chrom"], r["pos"] - 1, r["pos"]) == r["ref"]
