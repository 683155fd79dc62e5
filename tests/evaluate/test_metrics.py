"""Metrics on hand-computed cases; METEOR's WordNet read offline; score_file and `llamadna score`."""

from __future__ import annotations

import gzip
import json
import logging
import math
import socket

import pytest
from typer.testing import CliRunner

from llamadna.cli import app
from llamadna.constants import ANNOTATION_TEMPLATE
from llamadna.errors import InputError
from llamadna.evaluate import metrics as M
from llamadna.evaluate import wordnet as W


def sentence(chrom="chr21", gene="APP", desc="amyloid beta precursor protein",
             ttype="protein coding", pheno="Alzheimer disease", ds="ClinVar") -> str:
    return ANNOTATION_TEMPLATE.format(chrom=chrom, gene_name=gene, gene_description=desc,
                                      transcript_type=ttype, phenotype=pheno, Dataset=ds)


class NoWordNet:
    """A WordNet with no synonyms: METEOR then matches exact words and stems only."""

    def synsets(self, *args, **kwargs):
        return []


def _no_network(*args, **kwargs):
    raise OSError("network disabled in this test")


@pytest.fixture(scope="module")
def offline_wordnet(tmp_path_factory):
    """WordNet built and loaded from scratch (fresh cache dir) with every socket refused."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket, "socket", _no_network)
        mp.setattr(socket, "create_connection", _no_network)
        mp.setenv(W.ENV_CACHE, str(cache))
        wn = W.load_wordnet()
        score = M.meteor(["the patient is ill"], ["the patient is sick"])  # default reader
    return {"cache": cache, "reader": wn, "score": score}


# ---------------------------------------------------------------------------------------- labels
def test_accuracy_f1_confusion_by_hand():
    true = ["A", "A", "B", "C"]
    pred = ["A", "B", "B", "C"]
    assert M.accuracy(true, pred) == 0.75
    # F1: A = 2*1*(1/2)/(3/2) = 2/3, B = 2*(1/2)*1/(3/2) = 2/3, C = 1
    assert M.f1_macro(true, pred) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert M.confusion(true, pred) == {"labels": ["A", "B", "C"],
                                       "matrix": [[1, 1, 0], [0, 1, 0], [0, 0, 1]]}


def test_f1_over_labels_in_either_and_missing_prediction_is_wrong():
    # D is predicted but never true: a class with F1 0; None is no class, only a miss.
    true = ["A", "A", "B"]
    pred = ["A", None, "D"]
    assert M.accuracy(true, pred) == pytest.approx(1 / 3)
    # A: P 1, R 1/2 -> 2/3; B: 0; D: 0
    assert M.f1_macro(true, pred) == pytest.approx((2 / 3) / 3)
    assert M.confusion(true, pred)["labels"] == ["A", "B", "D"]


# ------------------------------------------------------------------------------------------ text
def test_bleu_identical_corpus_is_one():
    refs = [sentence(), sentence(chrom="chr22", gene="BCR", ds="dbSNP")]
    assert M.bleu(refs, refs) == pytest.approx(1.0)


def test_bleu_brevity_penalty_and_precisions_by_hand():
    # hypothesis = first 4 of 8 reference words: every n-gram precision is 1, BP = exp(1 - 8/4)
    assert M.bleu(["the cat sat on"], ["the cat sat on the big red mat"]) == pytest.approx(math.exp(-1))
    # same length, last word wrong: p1..p4 = 4/5, 3/4, 2/3, 1/2, BP = 1
    assert M.bleu(["a b c d x"], ["a b c d e"]) == pytest.approx((4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25)


def test_rouge_l_by_lcs():
    # LCS(the cat on a mat, the cat sat on the mat) = the cat on mat: 4; P 4/5, R 4/6, F = 8/11
    assert M.rouge_l(["the cat on a mat"], ["the cat sat on the mat"]) == pytest.approx(8 / 11)
    assert M.rouge_l(["x y", "the cat on a mat"], ["x y", "the cat sat on the mat"]) == pytest.approx(
        (1 + 8 / 11) / 2)


def test_rouge_l_keeps_rouge_score_logging_quiet(caplog, capfd):
    # rouge-score logs "Using default tokenizer." (absl, INFO) per RougeScorer; the CLI's root
    # logger is at INFO, so without silencing, `evaluate` printed it once per scored row
    caplog.set_level(logging.DEBUG)
    absl = logging.getLogger("absl")
    level_before = absl.level
    M.rouge_l(["the cat on a mat"], ["the cat sat on the mat"])
    assert not [r for r in caplog.records if "tokenizer" in r.getMessage()]
    out, err = capfd.readouterr()
    assert "tokenizer" not in out + err
    assert absl.level == level_before  # silenced around the scorer only, then restored


def test_field_accuracy_from_template_sentences():
    refs = [sentence(), sentence(chrom="chr22", gene="BCR", ds="dbSNP")]
    preds = [
        sentence(gene="APP2", pheno="not specified"),  # gene and phenotype wrong
        "This sequence is part of chr22 chromosome part of BCR gene.",  # only chrom + gene given
    ]
    fa = M.field_accuracy(preds, refs)
    assert fa == {"chrom": 1.0, "gene": 0.5, "description": 0.5, "transcript_type": 0.5,
                  "phenotype": 0.0, "source": 0.5}
    assert M.field_accuracy(refs, refs) == dict.fromkeys(fa, 1.0)


def test_input_checks():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        M.bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no predictions"):
        M.compute_metrics([], [], semantic=False)
    with pytest.raises(ValueError, match="give both or neither"):
        M.compute_metrics(["a"], ["a"], labels_true=["A"], semantic=False)


# ---------------------------------------------------------------------------------------- METEOR
@pytest.mark.slow
def test_wordnet_built_offline_with_lexnames_from_man_page(offline_wordnet):
    root = offline_wordnet["cache"] / "nltk_data" / "corpora" / "wordnet"
    lexnames = (root / "lexnames").read_text().splitlines()
    assert len(lexnames) == 45
    assert lexnames[0] == "00\tadj.all\t3" and lexnames[18] == "18\tnoun.person\t1"
    assert lexnames[44] == "44\tadj.ppl\t3"
    assert not any(p.is_symlink() for p in root.iterdir())
    assert offline_wordnet["reader"].get_version() == "3.0"
    assert offline_wordnet["score"] == pytest.approx(0.9921875)  # computed with sockets refused
    mtime = (root / "lexnames").stat().st_mtime_ns
    assert W.ensure_wordnet(offline_wordnet["cache"]) == root.parents[1]  # built once, reused
    assert (root / "lexnames").stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_meteor_identical_sentence(offline_wordnet):
    s = "This gene is described as amyloid beta precursor protein and a protein coding transcript ."
    n = len(s.split())  # 15 Treebank tokens: one chunk, penalty 0.5 * (1 / n) ** 3
    assert M.meteor([s], [s], wordnet=offline_wordnet["reader"]) == pytest.approx(1 - 0.5 / n**3)
    assert M.meteor([s], [s], wordnet=offline_wordnet["reader"]) == pytest.approx(0.9998, abs=1e-4)


@pytest.mark.slow
def test_meteor_synonym_needs_wordnet(offline_wordnet):
    hyp, ref = ["the patient is ill"], ["the patient is sick"]
    # with WordNet: ill ~ sick, 4/4 matched in 1 chunk -> 1 - 0.5 * (1/4)^3
    assert M.meteor(hyp, ref, wordnet=offline_wordnet["reader"]) == pytest.approx(1 - 0.5 / 64)
    # without: 3/4 matched, Fmean = 3/4, 1 chunk of 3 -> 3/4 * (1 - 0.5 * (1/3)^3)
    assert M.meteor(hyp, ref, wordnet=NoWordNet()) == pytest.approx(0.75 * (1 - 0.5 / 27))


def test_lexnames_needs_the_man_page(tmp_path):
    with pytest.raises(FileNotFoundError, match="lexnames"):
        W.lexnames_from_manpage(tmp_path / "lexnames.5WN.gz")
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        W.ensure_wordnet(tmp_path / "cache", source=tmp_path)
    short = tmp_path / "short.5WN.gz"
    with gzip.open(short, "wt") as fh:
        fh.write("00\tadj.all\tall adjective clusters\n01\tadj.pert\trelational adjectives\n")
    with pytest.raises(ValueError, match="found 2"):
        W.lexnames_from_manpage(short)


# -------------------------------------------------------------------------------------- semantic
@pytest.mark.slow
def test_semantic_similarity_offline(monkeypatch):
    monkeypatch.setattr(socket, "socket", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    a = sentence()
    same = M.semantic_similarity([a], [a])
    other = M.semantic_similarity(["The weather in Paris is sunny today."], [a])
    assert same == pytest.approx(1.0, abs=1e-5)
    assert other < 0.5


# ------------------------------------------------------------------------------ file and command
def _write_tsv(path, rows, header=("reference", "prediction", "label_true", "label_pred",
                                   "label_from_text")):
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_score_file_and_cli(tmp_path, offline_wordnet, monkeypatch):
    monkeypatch.setenv(W.ENV_CACHE, str(offline_wordnet["cache"]))
    ref1, ref2 = sentence(), sentence(chrom="chr22", gene="BCR", ds="dbSNP")
    pred2 = sentence(chrom="chr22", gene="BCR", ds="ClinVar")
    p = _write_tsv(tmp_path / "p.tsv", [(ref1, ref1, "ClinVar", "ClinVar", "ClinVar"),
                                        (ref2, pred2, "dbSNP", "ClinVar", "")])
    out = tmp_path / "m" / "metrics.json"
    m = M.score_file(p, out)
    saved = json.loads(out.read_text())
    assert saved == m
    assert m["n"] == 2 and m["accuracy"] == 0.5 and m["accuracy_from_text"] == 0.5
    assert m["f1_macro"] == pytest.approx((2 / 3 + 0) / 2)  # ClinVar P 1/2 R 1; dbSNP 0
    assert m["f1_from_text"] == pytest.approx((1 + 0) / 2)  # missing text label: dbSNP missed
    assert m["confusion"] == {"labels": ["ClinVar", "dbSNP"], "matrix": [[1, 0], [1, 0]]}
    assert m["field_accuracy"]["source"] == 0.5 and m["field_accuracy"]["gene"] == 1.0
    assert 0 < m["bleu"] < 1 and 0 < m["rougeL"] < 1 and 0 < m["meteor"] < 1
    assert 0.9 < m["semantic_similarity"] <= 1.0 + 1e-6
    assert M.compute_metrics([ref1, pred2], [ref1, ref2], ["ClinVar", "dbSNP"], ["ClinVar", "ClinVar"],
                             ["ClinVar", ""]) == {k: v for k, v in m.items() if k != "predictions"}
    # per-row scores (what the evaluation's intervals resample) give the same text metrics
    rows = M.row_scores([ref1, pred2], [ref1, ref2])
    again = M.compute_metrics([ref1, pred2], [ref1, ref2], ["ClinVar", "dbSNP"], ["ClinVar", "ClinVar"],
                              ["ClinVar", ""], rows=rows)
    for k, v in m.items():
        if k != "predictions":
            assert again[k] == (pytest.approx(v) if isinstance(v, float) else v), k
    assert rows["field_source"].tolist() == [1.0, 0.0] and rows["bleu_stats"].shape == (2, 10)
    # a repeated sentence is embedded once and scores as it did
    assert M.semantic_similarity([ref1, ref1, pred2], [ref1, ref1, ref2]) == pytest.approx(
        (2 + 2 * m["semantic_similarity"] - 1) / 3, abs=1e-5)

    out2 = tmp_path / "cli.json"
    res = CliRunner().invoke(app, ["score", "--predictions", str(p), "--out", str(out2),
                                   "--no-semantic"])
    assert res.exit_code == 0, res.output
    cli = json.loads(out2.read_text())
    assert cli["semantic_similarity"] is None and cli["bleu"] == m["bleu"]


@pytest.mark.slow
def test_score_file_without_labels(tmp_path, offline_wordnet, monkeypatch):
    monkeypatch.setenv(W.ENV_CACHE, str(offline_wordnet["cache"]))
    p = _write_tsv(tmp_path / "p.tsv", [(sentence(), sentence())], header=("reference", "prediction"))
    m = M.score_file(p, tmp_path / "m.json", semantic=False)
    assert m["accuracy"] is None and m["confusion"] is None and m["accuracy_from_text"] is None
    assert m["bleu"] == pytest.approx(1.0) and m["field_accuracy"]["phenotype"] == 1.0


@pytest.mark.parametrize(("content", "message"), [
    ("", "empty file"),
    ("reference\tprediction\n", "no rows"),
    ("reference\tlabel_true\nx\tA\n", "missing column"),
    ("reference\tprediction\tlabel_true\nx\ty\tA\n", "go together"),
])
def test_bad_files(tmp_path, content, message):
    p = tmp_path / "bad.tsv"
    p.write_text(content)
    with pytest.raises(InputError, match=message) as exc:
        M.score_file(p, tmp_path / "m.json", semantic=False)
    assert str(p) in str(exc.value)
    assert not (tmp_path / "m.json").exists()


def test_cli_bad_file_is_one_line(tmp_path):
    p = tmp_path / "bad.tsv"
    p.write_text("reference\tlabel_true\nx\tA\n")
    res = CliRunner().invoke(app, ["score", "--predictions", str(p), "--out", str(tmp_path / "m.json")])
    assert res.exit_code == 2
    assert "missing column(s) prediction" in res.output
    res = CliRunner().invoke(app, ["score", "--predictions", str(tmp_path / "nope.tsv"),
                                   "--out", str(tmp_path / "m.json")])
    assert res.exit_code == 2 and "not found" in res.output
