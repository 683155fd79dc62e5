"""Per-sequence SPLASH scores: hand-made anchors tables and tiny datasets."""

import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from llamadna.cli import app
from llamadna.data.build import BuildConfig, build_dataset
from llamadna.errors import InputError
from llamadna.splash import scores
from llamadna.splash.scores import read_anchors, score_dataset_dir, score_sequences

HEADER = ("anchor\tpval_opt\tpval_opt_corrected\teffect_size_bin\ttarget_entropy\tM\tanch_uniqTargs\t"
          "number_nonzero_samples\tmost_freq_target_1\tcnt_most_freq_target_1\tmost_freq_target_2\t"
          "cnt_most_freq_target_2")
ROWS = [  # anchor, p, effect, entropy
    ("ACGTA", 0.01, 0.5, 1.0),
    ("GGGCC", 0.001, 0.9, 0.5),
    ("TTTTT", 0.2, 0.1, 0.2),
    ("CATCA", 0.001, 0.3, 0.7),  # ties GGGCC's p; CATCA < GGGCC lexicographically
]


def write_anchors(path, rows=ROWS, raw_lines=()):
    lines = [HEADER]
    lines += [f"{a}\t{p}\t{p}\t{e}\t{h}\t100\t2\t4\tAAAAA\t50\tCCCCC\t50" for a, p, e, h in rows]
    lines += list(raw_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def anchors(tmp_path):
    return read_anchors(write_anchors(tmp_path / "anchors.tsv"))


def test_min_p_bonferroni_and_reverse_complement(anchors):
    seqs = [
        "NNACGTANN",  # ACGTA only: n_a = 1
        "GGCCCNNACGTA",  # GGCCC = revcomp(GGGCC) + ACGTA: min p 0.001 x 2
        "AAAAATACGT",  # AAAAA = rc(TTTTT), TACGT = rc(ACGTA): 0.01 x 2
        "ACGTAACGTATTTTT",  # ACGTA twice counts once: n_a = 2 -> 0.02
        "CCCCC",  # no tested anchor
        None,
        "CATCAGGGCC",  # tie at p = 0.001 -> CATCA (lexicographic); n_a = 2
        "TTTTTTTTTTGGGCCACGTACATCA",  # 4 anchors: 4 x 0.001 -> 0.004
    ]
    got = score_sequences(seqs, anchors)
    assert got["splash_n_anchors"].to_list() == [1, 2, 2, 2, 0, 0, 2, 4]
    p = got["SPLASH_pval"].to_list()
    assert p[:4] == pytest.approx([0.01, 0.002, 0.02, 0.02]) and p[4] is None and p[5] is None
    assert got["SPLASH_Effect"].to_list()[:4] == [0.5, 0.9, 0.5, 0.5]
    assert got["SPLASH_entropy"].to_list()[:4] == [1.0, 0.5, 1.0, 1.0]
    assert got["SPLASH_Effect"][6] == 0.3 and p[6] == pytest.approx(0.002)
    assert p[7] == pytest.approx(0.004) and got["SPLASH_Effect"][7] == 0.3
    assert got["SPLASH_Effect"][4] is None and got["SPLASH_entropy"][4] is None


def test_n_a_counts_distinct_anchors_and_caps_at_one(tmp_path):
    rows = [("AAAC", 0.4, 0.2, 0.1), ("CCCG", 0.3, 0.4, 0.3), ("GGGA", 0.9, 0.6, 0.5)]
    a = read_anchors(write_anchors(tmp_path / "a.tsv", rows))
    got = score_sequences(["AAACCCGGGA", "AAACAAAC"], a)
    assert got["splash_n_anchors"].to_list() == [3, 1]
    assert got["SPLASH_pval"].to_list() == pytest.approx([min(1, 3 * 0.3), 0.4])
    assert got["SPLASH_Effect"].to_list() == [0.4, 0.2]


def test_kmers_do_not_cross_rows_or_ns(anchors):
    got = score_sequences(["TTACG", "TAGGG", "ACGNTA", "ACG"], anchors)
    assert got["SPLASH_pval"].null_count() == 4 and got["splash_n_anchors"].sum() == 0


@pytest.mark.parametrize("scan_limit", [16, 0])  # 0: every lookup takes the binary-search path
def test_matches_brute_force(tmp_path, monkeypatch, scan_limit):
    monkeypatch.setattr(scores, "_SCAN_LIMIT", scan_limit)
    rng = np.random.default_rng(0)
    k = 4
    comp = str.maketrans("ACGT", "TGCA")
    kmers = {"".join(rng.choice(list("ACGT"), k)) for _ in range(60)}
    # both strands of some anchors are tested anchors too; AATT is its own reverse complement
    kmers = sorted(kmers | {km.translate(comp)[::-1] for km in sorted(kmers)[:10]} | {"AATT"})
    pv = rng.random(len(kmers)).round(4)
    rows = [(km, p, e, h) for km, p, e, h in zip(kmers, pv, rng.random(len(kmers)).round(3), pv)]
    a = read_anchors(write_anchors(tmp_path / "a.tsv", rows))
    seqs = ["".join(rng.choice(list("ACGTN"), int(rng.integers(0, 40)), p=[.24, .24, .24, .24, .04]))
            for _ in range(300)]
    seqs += ["AATT", "GGAATTGG", "AAACGTTT"]
    got = score_sequences(seqs, a)
    for i, s in enumerate(seqs):
        found = [r for r in rows if r[0] in s or r[0].translate(comp)[::-1] in s]
        if not found:
            assert got["SPLASH_pval"][i] is None
            continue
        best = min(found, key=lambda r: (r[1], r[0]))
        assert got["splash_n_anchors"][i] == len(found)
        assert got["SPLASH_pval"][i] == pytest.approx(min(1.0, len(found) * best[1]))
        assert got["SPLASH_Effect"][i] == best[2]


def test_dataset_dir_rewrite_and_summary(tmp_path, anchors):
    d = tmp_path / "ds"
    d.mkdir()
    df = pl.DataFrame({
        "Sequence": ["GGGCCACGTA", "CCCCCCCCCC", "TACGTCCCCC"],
        "Dataset": ["dbSNP"] * 3,
        "SPLASH_Effect": [None] * 3, "SPLASH_pval": [None] * 3, "SPLASH_entropy": [None] * 3,
        "Annotation": ["x"] * 3,
    }, schema_overrides={c: pl.Float64 for c in ("SPLASH_Effect", "SPLASH_pval", "SPLASH_entropy")})
    df.write_parquet(d / "dataset.parquet")
    (d / "summary.json").write_text(json.dumps({"rows": 3, "splash_missing_rows": 3}))
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["splash-scores", str(d), str(anchors.path), "--out", str(out)])
    assert r.exit_code == 0, r.output
    got = pl.read_parquet(out / "dataset.parquet")
    assert got.columns == df.columns  # columns replaced in place
    assert got["SPLASH_pval"].to_list()[0] == pytest.approx(0.002)
    assert got["SPLASH_pval"][1] is None and got["SPLASH_Effect"][2] == 0.5
    s = json.loads((out / "summary.json").read_text())
    assert s["rows"] == 3 and s["splash_missing_rows"] == 1 and s["splash_rows_scored"] == 2
    assert s["splash_anchors_file"] == str(anchors.path.resolve())
    assert s["splash_runs"]["all"]["k"] == 5 and s["splash_runs"]["all"]["anchors"] == 4
    assert pl.read_parquet(d / "dataset.parquet")["SPLASH_pval"].null_count() == 3  # untouched
    pq, _, stats = score_dataset_dir(d, anchors.path)  # in place
    assert pq == d / "dataset.parquet" and stats["splash_missing_rows"] == 1
    assert json.loads((d / "summary.json").read_text())["splash_rows_scored"] == 2


def test_per_build_anchors_never_mix_builds(tmp_path, anchors):
    d = tmp_path / "ds"
    d.mkdir()
    pl.DataFrame({
        "Sequence": ["GGGCCACGTA", "GGGCCACGTA", "AAAAACCCCC"],
        "build": ["GRCh38", "GRCh37", "GRCh37"],
        "SPLASH_Effect": [None] * 3, "SPLASH_pval": [None] * 3, "SPLASH_entropy": [None] * 3,
    }, schema_overrides={c: pl.Float64 for c in ("SPLASH_Effect", "SPLASH_pval", "SPLASH_entropy")}
    ).write_parquet(d / "dataset.parquet")
    other = read_anchors(write_anchors(tmp_path / "b.tsv", [("AAAAA", 0.3, 0.2, 0.1)]))
    _, _, s = score_dataset_dir(d, [f"GRCh38={anchors.path}"])
    got = pl.read_parquet(d / "dataset.parquet")
    assert got["SPLASH_pval"][0] == pytest.approx(0.002) and got["SPLASH_pval"][1:].null_count() == 2
    assert s["splash_missing_rows"] == 2 and s["splash_runs"]["GRCh38"]["rows"] == 1
    r = CliRunner().invoke(app, ["splash-scores", str(d), f"GRCh37={other.path}"])
    assert r.exit_code == 0, r.output
    got = pl.read_parquet(d / "dataset.parquet")
    # GRCh38 row keeps its score; the GRCh37 row with GGGCC stays null (its build's table lacks it)
    assert got["SPLASH_pval"].to_list()[0] == pytest.approx(0.002)
    assert got["SPLASH_pval"][1] is None and got["SPLASH_pval"][2] == pytest.approx(0.3)
    s = json.loads((d / "summary.json").read_text())
    assert set(s["splash_anchors_file"]) == {"GRCh38", "GRCh37"} and s["splash_missing_rows"] == 1
    r = CliRunner().invoke(app, ["splash-scores", str(d), str(anchors.path), f"GRCh37={other.path}"])
    assert r.exit_code == 2 and "not both" in r.output
    r = CliRunner().invoke(app, ["splash-scores", str(d), f"GRCh37={other.path}", f"GRCh37={other.path}"])
    assert r.exit_code == 2 and "twice" in r.output


@pytest.mark.parametrize("line, message", [
    ("ACGTT\tnope\t1\t0.1\t0.1\t1\t1\t1\tA\t1\tC\t1", "pval_opt = 'nope'"),
    ("ACGTT\t1.5\t1\t0.1\t0.1\t1\t1\t1\tA\t1\tC\t1", "pval_opt = '1.5'"),
    ("ACGTT\t\t1\t0.1\t0.1\t1\t1\t1\tA\t1\tC\t1", "pval_opt = ''"),
    ("ACGTT\t0.1\t1\tbig\t0.1\t1\t1\t1\tA\t1\tC\t1", "effect_size_bin = 'big'"),
    ("ACGNT\t0.1\t1\t0.1\t0.1\t1\t1\t1\tA\t1\tC\t1", "A/C/G/T bases only"),
    ("ACGTA\t0.1\t1\t0.1\t0.1\t1\t1\t1\tA\t1\tC\t1", "appears twice"),
    ("ACGTACG\t0.1\t1\t0.1\t0.1\t1\t1\t1\tA\t1\tC\t1", "first anchor has k = 5"),
    ("ACGTT\t0.1", "malformed line"),
])
def test_bad_anchors_file_names_line(tmp_path, line, message):
    path = write_anchors(tmp_path / "bad.tsv", raw_lines=[line])
    with pytest.raises(InputError, match=message) as exc:
        read_anchors(path)
    assert f"bad.tsv:{len(ROWS) + 2}" in str(exc.value)


def test_missing_column_and_empty_effect(tmp_path):
    p = tmp_path / "a.tsv"
    p.write_text("anchor\tpval_opt\n")
    with pytest.raises(InputError, match="missing column"):
        read_anchors(p)
    a = read_anchors(write_anchors(tmp_path / "b.tsv", [("ACGTA", 0.5, "", "NaN")]))
    got = score_sequences(["ACGTA"], a)
    assert got["SPLASH_pval"][0] == 0.5 and got["SPLASH_Effect"][0] is None


def test_build_dataset_with_splash(small_bundle, tmp_path):
    opts = BuildConfig(window=48)
    df0, _ = build_dataset(small_bundle.path, opts)
    # anchors: the middle 8-mer of the first 10 windows, with known p-values
    rows = [(s[20:28], 0.01 * (i + 1), 0.5, 1.0) for i, s in enumerate(df0["Sequence"][:10])]
    rows = list({r[0]: r for r in rows}.values())
    path = write_anchors(tmp_path / "anch.tsv", rows)
    df, summary = build_dataset(small_bundle.path, opts, splash_anchors=path)
    assert df.height == df0.height and 10 <= summary["splash_rows_scored"] < df.height
    assert summary["splash_missing_rows"] == df["SPLASH_pval"].null_count() == df.height - summary[
        "splash_rows_scored"]
    comp = str.maketrans("ACGT", "TGCA")
    for i, seq in enumerate(df["Sequence"][:10]):  # brute force on the rows the anchors came from
        found = [r for r in rows if r[0] in seq or r[0].translate(comp)[::-1] in seq]
        assert df["SPLASH_pval"][i] == pytest.approx(min(1, len(found) * min(r[1] for r in found)))
    r = CliRunner().invoke(app, ["build-dataset", "--data", str(small_bundle.path), "--out",
                                 str(tmp_path / "o"), "--window", "48", "--splash", str(path)])
    assert r.exit_code == 0, r.output
    assert "rows scored" in r.output
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["splash_rows_scored"] == summary["splash_rows_scored"]
    bad = write_anchors(tmp_path / "bad.tsv", raw_lines=["ACGTACG\t0.1\t1\t0.1\t0.1\t1\t1\t1\tA\t1\tC\t1"])
    r = CliRunner().invoke(app, ["build-dataset", "--data", str(small_bundle.path), "--out",
                                 str(tmp_path / "o2"), "--splash", str(bad)])
    assert r.exit_code == 2 and "bad.tsv:6" in r.output and not (tmp_path / "o2").exists()
