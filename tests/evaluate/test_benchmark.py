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
