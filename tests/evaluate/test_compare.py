"""`llamadna compare`: evaluation runs of the same rows side by side (evaluate.compare)."""

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from llamadna.cli import app
from llamadna.errors import InputError
from llamadna.evaluate import compare as C
from llamadna.evaluate.out_of_reference import macro_f1_difference

# test rows: (id, kind, truth, truth_gene, cluster)
TEST_ROWS = [("g1", "gene", "gene", "A", "GRCh38:A"), ("g2", "gene", "gene", "B", "GRCh38:B"),
             ("n1", "novel", "novel", "A", "GRCh38:A"), ("n2", "novel", "novel", "B", "GRCh38:B"),
             ("r1", "random", "none", None, "test:r1"), ("i1", "intergenic", "intergenic", None, "test:blk")]
# validation rows: genic, negatives, novel
VAL_ROWS = [("v:g1", "gene", "gene", "C", "GRCh38:C"), ("v:g2", "gene", "gene", "D", "GRCh38:D"),
            ("v:i1", "intergenic", "intergenic", None, "val:b"), ("v:s1", "shuffled", "none", None, "val:s1"),
            ("v:n1", "novel", "novel", "C", "GRCh38:C"), ("v:n2", "novel", "novel", "D", "GRCh38:D")]
# the validation genic rows' diverged copies: (..., rate)
DIV_ROWS = [(f"{r}:v:g{k}", "gene", "gene", g, f"GRCh38:{g}", r) for r in (0.2, 0.4) for k, g in ((1, "C"), (2, "D"))]


def _write(path, rows, answers, cluster=True):
    cols = {"id": [r[0] for r in rows], "kind": [r[1] for r in rows], "truth": [r[2] for r in rows],
            "truth_gene": [r[3] for r in rows], "outcome": [a[0] for a in answers],
            "gene": [a[1] for a in answers]}
    if cluster:
        cols["cluster"] = [r[4] for r in rows]
    if len(rows[0]) > 5:
        cols["rate"] = [r[5] for r in rows]
    pl.DataFrame(cols, schema_overrides={"truth_gene": pl.Utf8, "gene": pl.Utf8}).write_csv(path, separator="\t")


def make_run(root, model, other, val=None, seed=0, diff=0.1, iv=(-0.05, 0.2), cluster=True, div=None):
    """An `llamadna evaluate` output directory with the files `compare` reads: the model's and
    retriever_tuned's test answers (as (outcome, gene) per TEST_ROWS row), the model's validation
    answers (VAL_ROWS) and its diverged copies' (DIV_ROWS) unless None, and metrics.json with the
    run's own figures."""
    (root / "predictions").mkdir(parents=True)
    _write(root / "predictions" / "out_of_reference.model.tsv", TEST_ROWS, model, cluster)
    _write(root / "predictions" / "out_of_reference.retriever_tuned.tsv", TEST_ROWS, other, cluster)
    if val is not None:
        _write(root / "predictions" / "out_of_reference.validation.model.tsv", VAL_ROWS, val, cluster)
    if div is not None:
        _write(root / "predictions" / C.DIVERGED_TABLE, DIV_ROWS, div, cluster)
    metrics = {"meta": {"train_config": {"seed": seed}, "eval_config": {"n_boot": 1000}},
               "out_of_reference": {
                   "systems": {"model": {"macro_f1": 0.9, "macro_f1_interval": [0.8, 0.95]}},
                   "model_versus": {"retriever_tuned": {
                       "model_only": 2, "other_only": 1, "macro_f1_difference": diff,
                       "macro_f1_difference_interval": list(iv)}}}}
    (root / "metrics.json").write_text(json.dumps(metrics))
    return root


RIGHT = [("gene", "A"), ("gene", "B"), ("similar", None), ("repeat", None), ("none", None),
         ("intergenic", None)]
# the model: B's row named A; novel n1 given gene A; the rest right
MODEL = [("gene", "A"), ("gene", "A"), ("gene", "A"), ("similar", None), ("none", None),
         ("intergenic", None)]
# the rule: g1 called a repeat, n2 given gene B, the random row "similar"
RULE = [("repeat", None), ("gene", "B"), ("similar", None), ("gene", "B"), ("similar", None),
        ("intergenic", None)]
VAL = [("gene", "C"), ("similar", None), ("intergenic", None), ("gene", "C"), ("unparsed", None),
       ("similar", None)]


def test_validation_figures_count_each_criterion():
    t = pl.DataFrame({"id": [r[0] for r in VAL_ROWS], "kind": [r[1] for r in VAL_ROWS],
                      "truth": [r[2] for r in VAL_ROWS], "truth_gene": [r[3] for r in VAL_ROWS],
                      "outcome": [a[0] for a in VAL], "gene": [a[1] for a in VAL]})
    f = C.validation_figures(t)
    assert f["genic_own_gene"] == [1, 2]  # D's row answered "similar"
    assert f["novel_no_gene"] == [1, 2]  # n2 "similar"; n1 unreadable, which is not "no gene"
    assert f["gene_claims"] == [1, 4]  # of the 4 rows of no gene: the shuffled one
    assert f["intergenic"] == [1, 1]
    assert 0 < f["macro_f1"] < 1


def test_disagreements_group_rows_one_system_gets_right(tmp_path):
    run = C.read_run(str(make_run(tmp_path / "r", MODEL, RULE)))
    d = C.disagreements(run.model, run.other)
    assert {(x["kind"], x["model_says"], x["other_says"], x["right"]): x["rows"] for x in d} == {
        ("gene", "its gene", "repeat", "model"): 1,
        ("gene", "another gene", "its gene", "other"): 1,
        ("novel", "another gene", "similar", "other"): 1,
        ("novel", "similar", "another gene", "model"): 1,
        ("random", "none", "similar", "model"): 1,
    }
    assert C.disagreements(run.model, run.model) == []


def test_compare_runs_per_run_and_per_variant(tmp_path):
    a0 = make_run(tmp_path / "a0", MODEL, RULE, VAL, seed=0, diff=0.02, iv=(-0.01, 0.05))
    a1 = make_run(tmp_path / "a1", RIGHT, RULE, RIGHT, seed=1, diff=0.04, iv=(0.01, 0.07))
    b0 = make_run(tmp_path / "b0", RULE, RULE, VAL, seed=0, diff=0.0, iv=(0.0, 0.0))
    res = C.compare_runs([f"A={a0}", f"A={a1}", str(b0)])
    assert [(r["label"], r["train_seed"]) for r in res["runs"]] == [("A", 0), ("A", 1), ("b0", 0)]
    assert res["rows"] == {"validation": 6, "diverged": None, "test": 6} and res["against"] == "retriever_tuned"
    assert [k for k, _ in res["figures"]["validation"]] == [k for k, _ in C.VALIDATION_FIGURES]
    assert "diverged" not in res["figures"] and res["runs"][0]["diverged"] is None
    assert dict(res["figures"]["test"])["difference"] == "minus retriever_tuned"
    assert res["runs"][1]["validation"]["genic_own_gene"] == [0, 2]  # RIGHT is in TEST_ROWS' order
    assert res["runs"][0]["test"]["difference_interval"] == [-0.01, 0.05]  # the run's own
    A = res["variants"]["A"]
    assert A["runs"] == 2 and res["variants"]["b0"]["runs"] == 1
    assert A["test"]["difference"] == pytest.approx({"mean": 0.03, "min": 0.02, "max": 0.04})
    assert A["validation"]["genic_own_gene"] == {"mean": 0.5, "min": 0, "max": 1, "n": 2}
    assert C.figure_text(A["validation"]["genic_own_gene"]) == "0.5/2 (0-1)"
    assert C.figure_text(A["test"]["model_only"]) == "2.0 (2-2)"
    assert C.figure_text([3, 4]) == "3/4"
    assert C.interval_text([-0.00521, 0.0305]) == "[-0.0052, +0.0305]" and C.interval_text(None) == "(no interval)"


def test_recomputed_interval_is_the_paired_cluster_bootstrap(tmp_path):
    run = make_run(tmp_path / "r", MODEL, RULE)
    t = C.compare_runs([str(run)], n_boot=200, seed=3)["runs"][0]["test"]
    ans = lambda xs: ([o for o, _ in xs], [g for _, g in xs])  # noqa: E731
    truths = [{"outcome": r[2], "gene_name": r[3]} for r in TEST_ROWS]
    diff, iv = macro_f1_difference(ans(MODEL), ans(RULE), truths, [r[4] for r in TEST_ROWS], 200, 3)
    assert t["recomputed"] == {"n_boot": 200, "seed": 3, "difference": diff, "interval": iv}
    assert t["difference"] == 0.1  # the run's own, unchanged


def test_refusals_name_the_file(tmp_path):
    a = make_run(tmp_path / "a", MODEL, RULE, VAL)
    old = make_run(tmp_path / "old", MODEL, RULE, cluster=False)
    with pytest.raises(InputError, match="no cluster column") as e:
        C.compare_runs([str(old)], n_boot=10)
    assert str(old) in str(e.value)
    assert C.compare_runs([str(old)])["rows"]["validation"] is None  # the run's own interval: fine
    with pytest.raises(InputError, match="no validation rows, and .* has them"):
        C.compare_runs([str(a), str(old)])
    other = make_run(tmp_path / "other", MODEL, RULE, VAL)
    for system in ("model", "retriever_tuned"):
        table = other / "predictions" / f"out_of_reference.{system}.tsv"
        table.write_text(table.read_text().replace("g2\t", "g9\t"))
    with pytest.raises(InputError, match="not the model rows of"):
        C.compare_runs([str(a), str(other)])
    with pytest.raises(InputError, match="not compared with 'blastn_tuned'.*retriever_tuned"):
        C.compare_runs([str(a)], against="blastn_tuned")
    with pytest.raises(InputError, match="no metrics.json"):
        C.compare_runs([str(tmp_path)])
    rule = a / "predictions" / "out_of_reference.retriever_tuned.tsv"
    rule.write_text(rule.read_text().replace("r1\t", "r9\t"))
    with pytest.raises(InputError, match="not the rows of out_of_reference.model.tsv beside it"):
        C.compare_runs([str(a)])
    rule.unlink()
    with pytest.raises(InputError, match="out_of_reference.retriever_tuned.tsv: no such table"):
        C.compare_runs([str(a)])


def test_cli_prints_tables_and_writes_json(tmp_path):
    a0 = make_run(tmp_path / "a0", MODEL, RULE, VAL, seed=0)
    a1 = make_run(tmp_path / "a1", RIGHT, RULE, RIGHT, seed=1)
    out = tmp_path / "cmp.json"
    res = CliRunner().invoke(app, ["compare", f"cur={a0}", f"cur={a1}", "--n-boot", "50",
                                   "--out", str(out)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "validation: 6 rows" in res.output and "cur (2 runs)" in res.output
    assert "50 resamples, seed 0" in res.output and "its gene" in res.output
    saved = json.loads(out.read_text())
    assert saved["variants"]["cur"]["runs"] == 2 and len(saved["runs"]) == 2
    assert "+0.1000 [-0.0500, +0.2000] (1000 resamples)" in res.output  # the run's own
    res = CliRunner().invoke(app, ["compare", str(a0), "--n-boot", "-1"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["compare", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "no metrics.json" in res.output and "Traceback" not in res.output


# diverged copies: C kept at 20 %, D called "similar"; at 40 % C named D, D lost
DIV = [("gene", "C"), ("similar", None), ("gene", "D"), ("none", None)]


def test_diverged_copies_are_counted_per_rate(tmp_path):
    """The validation genic rows' diverged copies: per rate, the copies answered with their own
    gene (a wrong gene is wrong), per run and per variant, printed as their own table."""
    a0 = make_run(tmp_path / "a0", MODEL, RULE, VAL, seed=0, div=DIV)
    a1 = make_run(tmp_path / "a1", RIGHT, RULE, RIGHT, seed=1, div=[("gene", "C"), ("gene", "D")] * 2)
    res = C.compare_runs([f"A={a0}", f"A={a1}"])
    assert res["rows"]["diverged"] == 4
    assert res["figures"]["diverged"] == [["20 %", "20 %: own gene"], ["40 %", "40 %: own gene"]]
    assert res["runs"][0]["diverged"] == {"20 %": [1, 2], "40 %": [0, 2]}
    assert res["runs"][1]["diverged"] == {"20 %": [2, 2], "40 %": [2, 2]}
    assert res["variants"]["A"]["diverged"]["40 %"] == {"mean": 1.0, "min": 0, "max": 2, "n": 2}
    out = CliRunner().invoke(app, ["compare", f"A={a0}", f"A={a1}"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "validation, diverged copies: 4 rows" in out.output and "40 %: own gene" in out.output
    # runs are compared on the same rows: one without the table, or with other copies, is refused
    bare = make_run(tmp_path / "bare", MODEL, RULE, VAL)
    with pytest.raises(InputError, match="no diverged validation copies, and .* has them"):
        C.compare_runs([str(a0), str(bare)])
    table = a1 / "predictions" / C.DIVERGED_TABLE
    table.write_text(table.read_text().replace("0.4:v:g2", "0.4:v:g9"))
    with pytest.raises(InputError, match="not the diverged rows of"):
        C.compare_runs([str(a0), str(a1)])
    table.write_text("\t".join(["id", "kind", "truth", "truth_gene", "outcome", "gene"]) + "\n"
                     + "\t".join(["x", "gene", "gene", "C", "gene", "C"]) + "\n")
    with pytest.raises(InputError, match="no rate column") as e:
        C.read_run(str(a1))
    assert C.DIVERGED_TABLE in str(e.value)
