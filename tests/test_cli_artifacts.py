"""Model and index directories as a user moves, copies and damages them, through the command
line: a model and its index moved together still work from any working directory; a part left
behind, a damaged index file or a damaged model file is one line naming the file (and line) with
the true cause and the option that supplies the missing part; nothing is left behind."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from llamadna.cli import app

runner = CliRunner()
MAX_NEW = "4"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, bundle_factory):
    """root/art/{encoder,index,model} as `make demo` lays them out: built from root with the
    paths relative to it (`--encoder art/encoder --out art/index`), the model recording its
    index as training does (resolved); queries.fa: index windows, so that evidence is found."""
    from llamadna.model.calibration import OutcomeCalibration, outcome_features
    from llamadna.model.processing import LlamaDNAProcessor
    from llamadna.retrieve.index import IndexConfig, ReferenceIndex
    from llamadna.train.pretrain_encoder import PretrainConfig, pretrain_encoder
    from tests.model.conftest import make_model, make_processor

    root = tmp_path_factory.mktemp("artifacts")
    b = bundle_factory(seed=27, n_variants=40, n_genes=6, gene_len=(800, 2_000),
                       chrom_lengths={"chr1": 9_000, "chr2": 8_000})
    before = Path.cwd()
    os.chdir(root)
    try:
        pretrain_encoder(b.path, Path("art/encoder"), PretrainConfig(
            vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=128, window=256, steps=2, batch_size=4,
            max_windows=20))
        ReferenceIndex.build(IndexConfig(encoder="art/encoder", out="art/index", data=str(b.path),
                                         window=96, stride=48, flank=50))
        base = make_processor()
        make_model().save_pretrained("art/model")
        LlamaDNAProcessor(base.dna_tokenizer, base.text_tokenizer, retrieval=True,
                          dna_chunk_tokens=base.dna_chunk_tokens, evidence_k=2,
                          index=str(Path("art/index").resolve())).save_pretrained("art/model")
        OutcomeCalibration.fit([outcome_features("gene", -0.1, [{"gene": "A", "score": 1.5}]),
                                outcome_features("none", -0.2, [])], [True, False]).save("art/model")
    finally:
        os.chdir(before)
    windows = pl.read_parquet(root / "art" / "index" / "windows.parquet")
    seqs = windows.filter(pl.col("gene").is_not_null())["Sequence"].head(3).to_list()
    (root / "queries.fa").write_text("".join(f">q{i}\n{s}\n" for i, s in enumerate(seqs)))
    return root


def annotate(fasta: Path, model: Path, out: Path, *extra: str):
    return runner.invoke(app, ["annotate", str(fasta), "--model", str(model), "--out", str(out),
                               "--max-new-tokens", MAX_NEW, *extra])


def one_line_error(r, where: str, *causes: str) -> str:
    """The run ended with exit 2 and one error line naming `where` and every cause."""
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output, r.output
    text = " ".join(r.output.split())
    assert text.count("error: ") == 1, text
    text = text[text.index("error: "):]  # after any progress display
    assert text.startswith(f"error: {where}") and all(c in text for c in causes), text
    return text


@pytest.fixture(scope="module")
def unmoved(artifacts, tmp_path_factory):
    """The predictions of the artifacts where they were built, from another working directory."""
    out = tmp_path_factory.mktemp("unmoved") / "p.tsv"
    cwd = Path.cwd()
    os.chdir(out.parent)
    try:
        r = annotate(artifacts / "queries.fa", artifacts / "art" / "model", out)
    finally:
        os.chdir(cwd)
    assert r.exit_code == 0, r.output
    return out.read_text()


def test_the_model_works_from_another_working_directory(artifacts, unmoved):
    rows = pl.read_csv(unmoved.encode(), separator="\t")
    assert rows.height == 3 and rows["evidence_gene"].drop_nulls().len() == 3  # the index was searched
    # the index records its encoder, the model its index, relative to their own directories
    meta = json.loads((artifacts / "art" / "index" / "index.json").read_text())
    assert meta["encoder"] == "../encoder"
    proc = json.loads((artifacts / "art" / "model" / "processor_config.json").read_text())
    assert proc["index"] == "../index"


def test_model_index_and_encoder_moved_together(artifacts, unmoved, tmp_path, monkeypatch):
    moved = shutil.copytree(artifacts / "art", tmp_path / "elsewhere" / "x")
    away = artifacts.with_name(artifacts.name + "-away")
    os.rename(artifacts, away)  # the original paths are gone
    try:
        monkeypatch.chdir(tmp_path)
        out = tmp_path / "o" / "p.tsv"
        r = annotate(away / "queries.fa", moved / "model", out)
        assert r.exit_code == 0, r.output
        assert out.read_text() == unmoved
    finally:
        os.rename(away, artifacts)


def test_a_model_moved_alone_names_the_index_option(artifacts, unmoved, tmp_path, monkeypatch):
    model = shutil.copytree(artifacts / "art" / "model", tmp_path / "m" / "model")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "o" / "p.tsv"
    # the index where it was (its absolute path is recorded beside the relative one): found
    r = annotate(artifacts / "queries.fa", model, out)
    assert r.exit_code == 0, r.output
    assert out.read_text() == unmoved
    out.unlink()
    out.parent.rmdir()
    away = artifacts.with_name(artifacts.name + "-away")
    os.rename(artifacts, away)  # neither beside the model nor where it was: named
    try:
        r = annotate(away / "queries.fa", model, out)
        one_line_error(r, str(model / "processor_config.json"), str(tmp_path / "m" / "index"),
                       "does not exist", "--index DIR")
        assert not out.parent.exists()
        # the option it names supplies the index
        r = annotate(away / "queries.fa", model, out, "--index", str(away / "art" / "index"))
        assert r.exit_code == 0, r.output
        assert out.read_text() == unmoved
    finally:
        os.rename(away, artifacts)


def test_an_index_whose_encoder_is_gone_names_the_encoder_option(artifacts, unmoved, tmp_path, monkeypatch):
    x = tmp_path / "x"
    for part in ("model", "index"):
        shutil.copytree(artifacts / "art" / part, x / part)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "o" / "p.tsv"
    # model and index moved together, the encoder left where it was: found by its absolute path
    r = annotate(artifacts / "queries.fa", x / "model", out)
    assert r.exit_code == 0, r.output
    assert out.read_text() == unmoved
    out.unlink()
    out.parent.rmdir()
    encoder = artifacts / "art" / "encoder"
    gone = encoder.with_name("encoder-gone")
    os.rename(encoder, gone)  # neither beside the index nor where it was: named
    try:
        r = annotate(artifacts / "queries.fa", x / "model", out)
        one_line_error(r, str(x / "index" / "index.json"), str(x / "encoder"), "does not exist",
                       "--encoder DIR")
        assert not out.parent.exists()
        r = runner.invoke(app, ["search", str(artifacts / "queries.fa"), "--index", str(x / "index"),
                                "--out", str(out)])
        one_line_error(r, str(x / "index" / "index.json"), "--encoder DIR")
        # the option it names supplies the encoder
        r = annotate(artifacts / "queries.fa", x / "model", out, "--encoder", str(gone))
        assert r.exit_code == 0, r.output
        assert out.read_text() == unmoved
    finally:
        os.rename(gone, encoder)


def test_an_old_index_with_a_working_directory_relative_encoder_still_loads(artifacts, tmp_path,
                                                                           monkeypatch):
    """An index written before the paths were relative to it records `--encoder` as given (here
    relative to the directory the build ran in): found from there, and from anywhere while the
    index and encoder directories stay side by side."""
    from llamadna.retrieve.index import ReferenceIndex

    x = tmp_path / "old"
    for part in ("encoder", "index"):
        shutil.copytree(artifacts / "art" / part, x / "art" / part)
    meta = json.loads((x / "art" / "index" / "index.json").read_text())
    del meta["paths"]
    meta["encoder"], meta["config"]["out"] = "art/encoder", "art/index"
    (x / "art" / "index" / "index.json").write_text(json.dumps(meta))
    monkeypatch.chdir(x)
    assert ReferenceIndex.load("art/index").encoder_dir() == Path("art/encoder")
    monkeypatch.chdir(tmp_path)
    assert ReferenceIndex.load(x / "art" / "index").encoder_dir().resolve() == (x / "art" / "encoder")


# ------------------------------------------------------------------------------ damaged index
def _json_text(d: Path):
    (d / "index.json").write_text('{"format": 1,\n "config": {\n')
    return "index.json:3", "not valid JSON"


def _json_keys(d: Path):
    meta = json.loads((d / "index.json").read_text())
    del meta["config"]
    (d / "index.json").write_text(json.dumps(meta))
    return "index.json", "config missing or of the wrong type"


def _faiss_truncated(d: Path):
    data = (d / "embeddings.faiss").read_bytes()
    (d / "embeddings.faiss").write_bytes(data[: len(data) // 2])
    return "embeddings.faiss", "not a readable FAISS index"


def _faiss_random(d: Path):
    (d / "embeddings.faiss").write_bytes(os.urandom(5000))
    return "embeddings.faiss", "not a readable FAISS index"


def _parquet_text(d: Path):
    (d / "windows.parquet").write_text("window\tbuild\n0\tGRCh38\n")
    return "windows.parquet", "not a readable Parquet file"


def _parquet_columns(d: Path):
    shutil.copyfile(d / "segments.parquet", d / "genes.parquet")
    return "genes.parquet", "lacks the columns start, end, gene_name"


def _mmi_truncated(d: Path):
    data = (d / "minimap2.mmi").read_bytes()
    (d / "minimap2.mmi").write_bytes(data[: len(data) - 1000])
    return "minimap2.mmi", "truncated or damaged copy"


def _mmi_changed(d: Path):
    data = bytearray((d / "minimap2.mmi").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / "minimap2.mmi").write_bytes(bytes(data))
    return "minimap2.mmi", "checksum is not the one recorded"


def _other_encoder(d: Path):
    """The index's encoder replaced by another (a different hidden size), e.g. a newer one."""
    from transformers import BertConfig, BertModel

    enc = d.parent / "encoder"
    cfg = json.loads((enc / "config.json").read_text())
    for f in enc.glob("*.safetensors"):
        f.unlink()
    BertModel(BertConfig(**{**cfg, "hidden_size": 48, "intermediate_size": 96}),
              add_pooling_layer=False).save_pretrained(enc)
    return "index.json", "the index holds 32-dimensional embeddings"


DAMAGES = {"index.json not JSON": _json_text, "index.json without config": _json_keys,
           "truncated FAISS": _faiss_truncated, "random FAISS": _faiss_random,
           "text as windows.parquet": _parquet_text, "wrong columns": _parquet_columns,
           "truncated minimap2.mmi": _mmi_truncated, "changed minimap2.mmi": _mmi_changed,
           "another encoder": _other_encoder}


@pytest.mark.parametrize("case", list(DAMAGES))
def test_a_damaged_index_is_one_line(case, artifacts, tmp_path):
    idx = shutil.copytree(artifacts / "art" / "index", tmp_path / "art" / "index")
    shutil.copytree(artifacts / "art" / "encoder", tmp_path / "art" / "encoder")
    name, cause = DAMAGES[case](idx)
    out = tmp_path / "o" / "c.tsv"
    r = runner.invoke(app, ["search", str(artifacts / "queries.fa"), "--index", str(idx), "--out", str(out),
                            "--encoder", str(tmp_path / "art" / "encoder")])
    one_line_error(r, str(idx / name), cause)
    assert not out.parent.exists()


def test_a_damaged_index_through_annotate(artifacts, tmp_path):
    x = shutil.copytree(artifacts / "art", tmp_path / "art")
    _mmi_truncated(x / "index")
    out = tmp_path / "o" / "p.tsv"
    r = annotate(artifacts / "queries.fa", x / "model", out)
    one_line_error(r, str(x / "index" / "minimap2.mmi"), "truncated or damaged copy", "llamadna index")
    assert not out.parent.exists()


def test_an_index_from_before_the_checksums_still_loads(artifacts, tmp_path):
    idx = shutil.copytree(artifacts / "art" / "index", tmp_path / "art" / "index")
    shutil.copytree(artifacts / "art" / "encoder", tmp_path / "art" / "encoder")
    meta = json.loads((idx / "index.json").read_text())
    assert set(meta["files"]) == {"minimap2.mmi", "minimap2_sensitive.mmi"}
    del meta["files"]
    (idx / "index.json").write_text(json.dumps(meta))
    r = runner.invoke(app, ["search", str(artifacts / "queries.fa"), "--index", str(idx),
                            "--out", str(tmp_path / "c.tsv")])
    assert r.exit_code == 0, r.output


# ------------------------------------------------------------------------------ damaged model files
@pytest.mark.parametrize("name, text, line, cause", [
    ("calibration.json", '{"weights": [0.1,\n', 2, "not valid JSON"),
    ("calibration.json", '{"format": 4, "weights": "high", "bias": 0}\n', None, "expected the fitted calibration"),
    ("calibration.json", '{"weights": [0.1], "bias": 0, "rows": 1, "right": 1}\n', None,
     "older format (gene-only, this version reads 4): refit it with `llamadna calibrate"),
    ("calibration.json", '{"format": 2, "weights": [0.1], "bias": 0, "rows": 1, "right": 1}\n', None,
     "older format (2, this version reads 4)"),
    ("processor_config.json", '{\n "prompt_mode": "leak-free",\n "index": }\n', 3, "not valid JSON"),
    ("processor_config.json", '{"index": "../index"}\n', None, "prompt_mode, dna_chunk_tokens missing"),
    ("processor_config.json", '{"prompt_mode": "leak-free", "dna_chunk_tokens": 32, "retrieval": true}\n', None,
     "trained on an older prompt wording"),
])
def test_a_damaged_model_json_is_one_line(name, text, line, cause, artifacts, tmp_path):
    x = shutil.copytree(artifacts / "art", tmp_path / "art")
    (x / "model" / name).write_text(text)
    out = tmp_path / "o" / "p.tsv"
    r = annotate(artifacts / "queries.fa", x / "model", out)
    where = str(x / "model" / name) + (f":{line}" if line else "")
    one_line_error(r, where, cause)
    assert not out.parent.exists()


def test_a_missing_encoder_path_is_said_not_to_exist(artifacts, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "c.tsv"
    r = runner.invoke(app, ["search", str(artifacts / "queries.fa"), "--index", str(artifacts / "art" / "index"),
                            "--encoder", "gone/encoder", "--out", str(out)])
    text = one_line_error(r, "gone/encoder: no such directory", "expected a local DNA encoder")
    assert "looks like a model hub id" not in text
    assert not out.exists()


@pytest.mark.parametrize("what", ["model directory", "config.json", "encoder"])
def test_a_symlink_loop_is_named_as_one(what, artifacts, tmp_path):
    x = shutil.copytree(artifacts / "art", tmp_path / "art", symlinks=True)
    out = tmp_path / "o" / "p.tsv"
    if what == "model directory":
        loop = tmp_path / "loop"
        loop.symlink_to(loop)
        r = annotate(artifacts / "queries.fa", loop, out)
    elif what == "config.json":
        loop = x / "model" / "config.json"
        loop.unlink()
        loop.symlink_to(loop)
        r = annotate(artifacts / "queries.fa", x / "model", out)
    else:
        loop = tmp_path / "enc"
        loop.symlink_to(loop)
        r = runner.invoke(app, ["search", str(artifacts / "queries.fa"), "--index", str(x / "index"),
                                "--encoder", str(loop), "--out", str(out)])
    one_line_error(r, str(loop), "a symbolic link loop")
    assert not out.parent.exists()


def test_evaluate_finds_the_index_beside_a_moved_model_or_names_the_option(artifacts, tmp_path, monkeypatch):
    """`evaluate` reads the index the model records (relative to it) before train_config.json's
    (as given to `train`, relative to that run's directory)."""
    from types import SimpleNamespace

    from llamadna.errors import ConfigError
    from llamadna.evaluate.run import _model_index

    x = tmp_path / "x"
    for part in ("model", "index"):
        shutil.copytree(artifacts / "art" / part, x / part)
    monkeypatch.chdir(tmp_path)
    models = SimpleNamespace(model_dir=x / "model", train_config={"index": "art/index"})
    assert _model_index(models) == str(x / "index")
    shutil.rmtree(x / "index")
    # not beside the model, but where it was built (the absolute path recorded too): found there
    assert _model_index(models) == str((artifacts / "art" / "index").resolve())
    away = artifacts.with_name(artifacts.name + "-away")
    os.rename(artifacts, away)
    try:
        with pytest.raises(ConfigError, match=r"art/index \(train_config.json\), does not exist: pass the "
                           r"index directory with --index DIR"):
            _model_index(models)
    finally:
        os.rename(away, artifacts)


def test_old_artifacts_with_absolute_paths_load_where_built_and_moved_together(artifacts, unmoved, tmp_path,
                                                                               monkeypatch):
    """A model and index written before the paths were relative record them absolute (the model
    its index, the index its encoder); they load while those paths exist, and after the three
    directories are moved together (train_config.json and index.json hold `--out` as given, so
    where each sat relative to the other is known)."""
    y = shutil.copytree(artifacts / "art", tmp_path / "y")
    meta = json.loads((y / "index" / "index.json").read_text())
    del meta["paths"], meta["files"]
    meta["encoder"], meta["config"]["out"] = str(y / "encoder"), str(y / "index")
    (y / "index" / "index.json").write_text(json.dumps(meta))
    proc = json.loads((y / "model" / "processor_config.json").read_text())
    (y / "model" / "processor_config.json").write_text(json.dumps({**proc, "index": str(y / "index")}))
    (y / "model" / "train_config.json").write_text(json.dumps({"index": str(y / "index"),
                                                               "out": str(y / "model")}))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "o" / "p.tsv"
    r = annotate(artifacts / "queries.fa", y / "model", out)
    assert r.exit_code == 0, r.output
    assert out.read_text() == unmoved
    z = tmp_path / "elsewhere" / "z"
    z.parent.mkdir()
    os.rename(y, z)
    out.unlink()
    r = annotate(artifacts / "queries.fa", z / "model", out)
    assert r.exit_code == 0, r.output
    assert out.read_text() == unmoved


def test_calibrate_refuses_what_it_cannot_refit_in_one_line(artifacts, tmp_path):
    """`llamadna calibrate`: a directory without train_config.json, a model trained without an
    index, and a model whose recorded dataset or index is gone are one-line errors naming the
    fix; nothing is written."""
    from dataclasses import asdict

    from llamadna.train.config import TrainConfig

    x = shutil.copytree(artifacts / "art", tmp_path / "art")
    model = x / "model"
    before = (model / "calibration.json").read_text()
    one_line_error(runner.invoke(app, ["calibrate", str(model)]), str(model), "no train_config.json")
    cfg = asdict(TrainConfig(dataset=str(tmp_path), out=str(model), encoder=str(x / "encoder")))
    (model / "train_config.json").write_text(json.dumps(cfg))
    one_line_error(runner.invoke(app, ["calibrate", str(model)]), str(model),
                   "trained without --index: only a retrieval model has an outcome confidence")
    (model / "train_config.json").write_text(json.dumps({**cfg, "index": str(tmp_path / "gone")}))
    one_line_error(runner.invoke(app, ["calibrate", str(model)]), str(tmp_path / "gone"),
                   "the model's index is not there: give its place with --index")
    one_line_error(runner.invoke(app, ["calibrate", str(model), "--rows", "0"]), "--rows must be >= 1")
    assert (model / "calibration.json").read_text() == before
