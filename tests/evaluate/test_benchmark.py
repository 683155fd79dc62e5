import pytest

from llamadna.errors import InputError
from llamadna.evaluate.benchmark import identity_bin, read_benchmark, score_benchmark

TRUTH = """id\tspecies\taccession\tgene_as_given\tgene\ttranscript_type\tchrom\tidentity_to_human\tstart\tend\tstrand
a_00\tape\tX1\tCOX1\tMT-CO1\tprotein coding\tchrM\t96.5\t1\t10\t+
a_01\tape\tX1\ttRNA\tMT-TL1\tMt tRNA\tchrM\t\t11\t20\t+
b_00\tbird\tX2\tCOX1\tMT-CO1\tprotein coding\tchrM\t70.0\t1\t10\t+
"""


def bench(tmp_path, truth=TRUTH, fasta=">a_00\nACGT\n>a_01\nACGA\n>b_00\nTTTT\n"):
    (tmp_path / "truth.tsv").write_text(truth)
    (tmp_path / "queries.fa").write_text(fasta)
    return tmp_path


def test_rows_come_without_labels_and_in_fasta_order(tmp_path):
    rows, truth = read_benchmark(bench(tmp_path))
    assert [r["id"] for r in rows] == truth["id"].to_list() == ["a_00", "a_01", "b_00"]
    assert set(rows[0]) == {"id", "Sequence", "build", "SPLASH_Effect", "SPLASH_pval", "SPLASH_entropy"}
    assert truth["identity_to_human"].to_list() == [96.5, None, 70.0]


def test_scores_per_species_and_identity_bin(tmp_path):
    _, truth = read_benchmark(bench(tmp_path))
    preds = [{"gene": "MT-CO1", "transcript_type": "protein coding", "chrom": "chrM"},
             {"gene": "MT-CO1", "transcript_type": "Mt tRNA", "chrom": "chrM"},
             {"gene": None, "transcript_type": "protein coding", "chrom": None}]
    s = score_benchmark(truth, preds)
    assert s["all"] == {"gene": pytest.approx(1 / 3), "transcript_type": 1.0, "chrom": pytest.approx(2 / 3), "n": 3}
    assert s["species"]["ape"]["gene"] == 0.5 and s["species"]["bird"]["chrom"] == 0.0
    assert s["identity"][">95"]["n"] == 1 and s["identity"]["<75"]["gene"] == 0.0
    assert s["identity"]["unknown"]["transcript_type"] == 1.0
    assert [identity_bin(x) for x in (100.0, 95.0, 94.9, 80, 74.99, None)] == [
        ">95", ">95", "85-95", "75-85", "<75", "unknown"]


def test_queries_and_truth_must_match(tmp_path):
    with pytest.raises(InputError, match="query without a truth row"):
        read_benchmark(bench(tmp_path, fasta=">zz\nACGT\n"))
    with pytest.raises(InputError, match="truth rows without a query"):
        read_benchmark(bench(tmp_path, fasta=">a_00\nACGT\n"))
    with pytest.raises(InputError, match=r"truth\.tsv:2: identity_to_human"):
        read_benchmark(bench(tmp_path, truth=TRUTH.replace("96.5", "high")))


def _annotations(genes):
    from llamadna.data.template import annotation_sentence

    def predict(rows):
        return [{"annotation": annotation_sentence("chrM", g, "x", "protein coding", "not specified", "ClinVar")}
                for g in genes]

    return predict


def test_one_system_annotated_and_scored_with_intervals(tmp_path):
    from llamadna.evaluate.benchmark import benchmark_system

    rows, truth = read_benchmark(bench(tmp_path))
    preds, s = benchmark_system(_annotations(["MT-CO1", "MT-CO1", "MT-ND1"]), rows, truth)
    assert len(preds) == 3 and "all_intervals" not in s  # no bootstrap asked for
    assert s["all"] == {"gene": pytest.approx(1 / 3), "transcript_type": pytest.approx(2 / 3), "chrom": 1.0,
                        "n": 3}
    assert s["species"]["ape"]["gene"] == 0.5 and s["species"]["bird"]["gene"] == 0.0
    _, s = benchmark_system(_annotations(["MT-CO1", "MT-CO1", "MT-ND1"]), rows, truth, n_boot=200, seed=0)
    # genes resampled whole: MT-CO1 (right once, wrong once) and MT-TL1 (wrong)
    lo, hi = s["all_intervals"]["gene"]
    assert 0.0 <= lo < 1 / 3 < hi <= 0.5 and s["all_intervals"]["chrom"] == [1.0, 1.0]


def test_the_benchmark_command_prints_and_writes_the_predictions(tmp_path):
    from typer.testing import CliRunner

    from llamadna.cli import app
    from llamadna.io.tables import read_tsv
    from tests.test_annotate import save_tiny_model

    model = save_tiny_model(tmp_path / "model")
    (tmp_path / "b").mkdir()
    res = CliRunner().invoke(app, ["benchmark", str(bench(tmp_path / "b")), "--model", str(model),
                                   "--out", str(tmp_path / "p.tsv"), "--max-new-tokens", "8"])
    assert res.exit_code == 0, res.output
    table = read_tsv(tmp_path / "p.tsv", ["id", "gene", "predicted_gene", "predicted_annotation"], "p")
    assert table["id"].to_list() == ["a_00", "a_01", "b_00"]
    assert "3 queries" in res.output and "ape" in res.output and "bird" in res.output
