import os
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest
from typer.testing import CliRunner

from llamadna.cli import app
from llamadna.errors import ConfigError, InputError
from llamadna.splash.run import (
    OUTPUT_COLUMNS,
    Sample,
    SplashConfig,
    load_samples,
    parse_sample_arg,
    read_sample_sheet,
    run_splash,
    write_results,
)
from llamadna.splash.stats import FilterConfig

SNP = 150  # planted variant position in the generated genome
K = 15  # anchor and target length of the small runs


def revcomp(s):
    return s[::-1].translate(str.maketrans("ACGT", "TGCA"))


def genome(seed=0, n=300):
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(list("ACGT"), n))


def simulate_reads(g, n_reads, seed, read_len=60):
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(g) - read_len + 1, n_reads)
    reads = [g[s : s + read_len] for s in starts]
    # half the fragments come from the other strand (reads are taken as sequenced)
    return [revcomp(r) if i % 2 else r for i, r in enumerate(reads)]


def write_fastq(path, reads):
    path.write_text("".join(f"@r{i}\n{s}\n+\n{'I' * len(s)}\n" for i, s in enumerate(reads)))
    return path


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Samples A1, A2 carry C at the SNP, B1, B2 carry T; reads cover it at ~100x."""
    d = tmp_path_factory.mktemp("planted")
    g = genome()
    ga, gb = g[:SNP] + "C" + g[SNP + 1 :], g[:SNP] + "T" + g[SNP + 1 :]
    samples = []
    for i, (name, gg) in enumerate([("A1", ga), ("A2", ga), ("B1", gb), ("B2", gb)]):
        reads = simulate_reads(gg, 500, seed=10 + i)
        r1 = write_fastq(d / f"{name}.R1.fq", reads[:250])
        r2 = write_fastq(d / f"{name}.R2.fq", reads[250:])
        samples.append(Sample(name, (r1, r2)))
    return samples, g


def small_cfg(**kw):
    return SplashConfig(anchor_len=K, target_len=K, filters=FilterConfig(max_run=6), **kw)


def test_planted_variant_is_found_and_output_is_right(planted, tmp_path):
    samples, g = planted
    df, summary = run_splash(samples, small_cfg())
    assert list(df.columns) == OUTPUT_COLUMNS
    assert len(df) > 0 and df["pval_opt"].is_monotonic_increasing
    # every tested anchor sits just before the SNP (the only variable site), on either strand
    for a in df["anchor"]:
        i, j = g.find(a), revcomp(g).find(a)
        assert (0 <= SNP - (i + K) < K) or (0 <= (len(g) - 1 - SNP) - (j + K) < K)
    top = df.iloc[0]
    assert top.pval_opt < 1e-6 and top.pval_opt_corrected < 1e-6
    assert top.effect_size_bin == pytest.approx(1.0)
    assert top.number_nonzero_samples == 4 and top.anch_uniqTargs == 2
    assert top.target_entropy == pytest.approx(1.0, abs=0.1)
    assert top.cnt_most_freq_target_1 + top.cnt_most_freq_target_2 == top.M
    f = summary["filters"]
    assert f["anchors_tested"] == len(df)
    assert f["anchors_counted"] == f["anchors_tested"] + sum(f["removed"].values())
    assert summary["samples"]["A1"]["reads"] == 500
    # written atomically, with the summary beside it
    tsv, js = write_results(df, summary, tmp_path / "out" / "anchors.tsv")
    back = pd.read_csv(tsv, sep="\t")
    assert list(back.columns) == OUTPUT_COLUMNS and len(back) == len(df)
    assert js.name == "anchors.summary.json" and js.exists()


def test_same_genome_gives_no_anchors(tmp_path):
    g = genome(1)
    samples = [Sample(n, (write_fastq(tmp_path / f"{n}.fq", simulate_reads(g, 400, i)),))
               for i, n in enumerate("xyz")]
    df, summary = run_splash(samples, small_cfg())
    assert list(df.columns) == OUTPUT_COLUMNS and len(df) == 0
    assert summary["filters"]["removed"]["targets"] > 0


def test_deterministic_and_thread_independent(planted):
    samples, _ = planted
    a, _ = run_splash(samples, small_cfg(seed=3, splits=2))
    b, _ = run_splash(samples, small_cfg(seed=3, splits=2, threads=3))
    pd.testing.assert_frame_equal(a, b)


def write_bam(path, reads):
    header = {"HD": {"VN": "1.6"}, "SQ": [{"SN": "g", "LN": 1000}]}
    with pysam.AlignmentFile(str(path), "wb", header=header) as out:
        for i, r in enumerate(reads):
            for flag in (16 if i % 3 else 0, 256):  # plus a secondary copy that must be skipped
                a = pysam.AlignedSegment(out.header)
                a.query_name = f"r{i}"
                a.flag = flag
                a.query_sequence = revcomp(r) if flag & 16 else r
                a.query_qualities = pysam.qualitystring_to_array("I" * len(r))
                a.reference_id, a.reference_start, a.cigarstring = 0, 5, f"{len(r)}M"
                out.write(a)
    return path


def test_bam_input_equals_fastq_input(planted, tmp_path):
    samples, _ = planted
    bam_samples = []
    for s in samples:
        reads = []
        for p in s.paths:
            lines = Path(p).read_text().splitlines()
            reads += lines[1::4]
        bam_samples.append(Sample(s.name, (write_bam(tmp_path / f"{s.name}.bam", reads),)))
    a, _ = run_splash(samples, small_cfg())
    b, _ = run_splash(bam_samples, small_cfg())
    pd.testing.assert_frame_equal(a, b)


def test_sample_arguments_and_sheet(tmp_path):
    s = parse_sample_arg("tum=/x/R1.fq.gz, /x/R2.fq.gz")
    assert s.name == "tum" and s.paths == (Path("/x/R1.fq.gz"), Path("/x/R2.fq.gz"))
    with pytest.raises(ValueError, match="NAME=PATH"):
        parse_sample_arg("just/a/path.fq")
    sheet = tmp_path / "s.tsv"
    absolute = tmp_path / "elsewhere" / "b1.fq"
    absolute.parent.mkdir()
    for f in (tmp_path / "a.fq", absolute, tmp_path / "b2.fq"):
        f.write_text("@r\nACGT\n+\nIIII\n")
    sheet.write_text(f"sample\tpath\tgroup\na\ta.fq\tA\nb\t{absolute},b2.fq\tB\n")
    got = read_sample_sheet(sheet)
    assert [x.name for x in got] == ["a", "b"]
    assert got[0].paths == (tmp_path / "a.fq",)
    assert got[1].paths == (absolute, tmp_path / "b2.fq")
    # a missing reads file is named with the sheet and its line
    sheet.write_text("sample\tpath\na\ta.fq\nb\tb2.fq,gone.fq\n")
    with pytest.raises(InputError, match=r"s\.tsv:3: sample 'b': reads file .*gone\.fq not found"):
        read_sample_sheet(sheet)
    bad = tmp_path / "bad.tsv"
    bad.write_text("name\tfile\na\ta.fq\n")
    with pytest.raises(InputError, match=r"bad\.tsv:1: missing column\(s\) sample, path"):
        read_sample_sheet(bad)


def test_one_sample_is_an_error(planted):
    samples, _ = planted
    with pytest.raises(ValueError, match="at least 2 samples"):
        run_splash(samples[:1], small_cfg())
    with pytest.raises(ValueError, match="duplicate sample name"):
        run_splash([samples[0], samples[0]], small_cfg())


def test_gap_auto(planted):
    samples, _ = planted
    cfg = SplashConfig(anchor_len=10, target_len=10, gap="auto")
    df, summary = run_splash(samples, cfg)
    assert summary["read_length_mode"] == 60 and summary["config"]["gap"] == 20
    with pytest.raises(ValueError, match="gap must be >= 0"):
        SplashConfig(gap=-1).resolved_gap(100)


def test_cli(planted, tmp_path):
    samples, _ = planted
    args = ["splash", "--out", str(tmp_path / "a.tsv"), "--anchor-len", str(K),
            "--target-len", str(K), "--max-run", "6"]
    for s in samples:
        args += ["--sample", f"{s.name}={','.join(map(str, s.paths))}"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    df = pd.read_csv(tmp_path / "a.tsv", sep="\t")
    assert list(df.columns) == OUTPUT_COLUMNS and df["pval_opt"].iloc[0] < 1e-6
    res = CliRunner().invoke(app, ["splash", "--out", str(tmp_path / "b.tsv"), "--sample",
                                   f"x={samples[0].paths[0]}"])
    assert res.exit_code == 2 and "at least 2 samples" in res.output
    bad = tmp_path / "bad.fq"
    bad.write_text("@q1\nACGT\n+\nII\n")
    res = CliRunner().invoke(app, ["splash", "--out", str(tmp_path / "c.tsv"),
                                   "--sample", f"x={bad}", "--sample", f"y={bad}"])
    assert res.exit_code == 2 and "bad.fq:4" in res.output and "q1" in res.output
    assert not (tmp_path / "c.tsv").exists()


# ----------------------------------------------------------------------------------------------
# Real data (../shared/data/reads)


def data_dir() -> Path:
    env = os.environ.get("LLAMADNA_DATA")
    return Path(env) if env else Path(__file__).parents[2].parent / "shared" / "data"


def real_sample(name: str) -> Sample:
    d = data_dir() / "reads"
    paths = (d / f"{name}.R1.fastq.gz", d / f"{name}.R2.fastq.gz")
    if not all(p.exists() for p in paths):
        pytest.skip(f"real reads {name} not found in {d} (set LLAMADNA_DATA to the data bundle)")
    return Sample(name, paths)


def reference(name: str) -> str:
    seqs, cur = {}, None
    for line in (data_dir() / "regions.grch37.fa").read_text().splitlines():
        if line.startswith(">"):
            cur = line[1:].split()[0]
            seqs[cur] = []
        else:
            seqs[cur].append(line.upper())
    return "".join(seqs[name])


REAL_CFG = SplashConfig(filters=FilterConfig(min_sample_count=2, min_anchor_count=10))


@pytest.mark.realdata
def test_real_germline_pair_finds_a_snv():
    """NA12891 vs NA12892 (Strelka demo20 = GRCh37 chr20:862001-867000, ~17x)."""
    df, summary = run_splash([real_sample("NA12891_demo20"), real_sample("NA12892_demo20")],
                             REAL_CFG)
    assert list(df.columns) == OUTPUT_COLUMNS and summary["filters"]["anchors_tested"] == len(df)
    assert len(df) > 100 and df["anchor"].str.len().eq(31).all()
    ref = reference("chr20:862001-867000")
    both = ref + "N" + revcomp(ref)
    top = df.iloc[0]
    # The top anchor is in the region and its two targets differ by one base: a SNV that one
    # parent carries on all its reads and the other does not (effect size 1).
    assert top.anchor in both and top.effect_size_bin == pytest.approx(1.0)
    t1, t2 = top.most_freq_target_1, top.most_freq_target_2
    assert sum(x != y for x, y in zip(t1, t2)) == 1
    assert (top.anchor + t1 in both) != (top.anchor + t2 in both)


@pytest.mark.realdata
def test_real_tumour_normal_finds_the_junction():
    """HCC1954 tumour vs matched normal (Manta demo regions on GRCh37 chr8 and chr11)."""
    df, summary = run_splash(
        [real_sample("HCC1954_tumor_COST16011"), real_sample("HCC1954BL_normal_COST16011")],
        REAL_CFG,
    )
    assert list(df.columns) == OUTPUT_COLUMNS and len(df) > 100
    assert df["pval_opt"].between(0, 1).all() and df["pval_opt"].is_monotonic_increasing
    chr11 = reference("chr11:94987300-94988400")
    chr8 = reference("chr8:107653000-107654000")
    chr8 = chr8 + "N" + revcomp(chr8)
    junctions = []
    for row in df.head(10).itertuples():
        for t in (row.most_freq_target_1, row.most_freq_target_2):
            seq = row.anchor + t
            if row.anchor not in chr11 or seq in chr11:
                continue
            # the longest prefix that is chr11 sequence; the rest must come from chr8
            n = max(i for i in range(len(row.anchor), len(seq)) if seq[:i] in chr11)
            junctions.append((seq[:n], seq[n:]))
    # Top anchors on chr11 whose other target continues into chr8: the tumour's chr11-chr8
    # breakpoint junction (the tumour reads hold it, the normal's do not).
    assert any(len(rest) >= 8 and rest in chr8 for _, rest in junctions), df.head(10).to_string()


def test_load_samples_from_arguments_or_a_sheet_never_both(tmp_path):
    r1 = tmp_path / "a.fq"
    r1.write_text("@r\nACGT\n+\nIIII\n")
    sheet = tmp_path / "samples.tsv"
    sheet.write_text(f"sample\tpath\nA\t{r1.name}\n")
    assert load_samples(["A=x.fq", "B=y1.fq,y2.fq"], None) == [
        Sample("A", (Path("x.fq"),)), Sample("B", (Path("y1.fq"), Path("y2.fq")))]
    assert load_samples(None, sheet) == [Sample("A", (r1,))]
    for args, sheet_arg in ((None, None), (["A=x.fq"], sheet)):
        with pytest.raises(ConfigError, match="not both"):
            load_samples(args, sheet_arg)
