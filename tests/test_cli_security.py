"""No code and no pickle from any directory a user hands Llama-DNA (issue 27), through the CLI.

A directory that names its own code (an `auto_map` in tokenizer_config.json or config.json, the
Python file beside it) or holds its weights only as a pickle is refused: exit 2, one line naming
the file, whatever stdin says ("y" included: transformers would ask), no code run (each payload
writes a marker file when imported or unpickled), nothing copied into the Hugging Face modules
cache, nothing written.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from llamadna.cli import app
from tests.model.conftest import make_tokenizers

runner = CliRunner()
STDIN = {"y-on-stdin": "y\n", "no-stdin": ""}
HOSTILE_TOKENIZER = "from transformers import PreTrainedTokenizerFast as EvilTokenizer\n"


class Evil:
    """Unpickled, it opens (creates) `marker`: what a hostile pickle could do instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _payload(directory, module: str, marker, body: str = "") -> None:
    """`module`.py in `directory`: importing it writes `marker` (then defines `body`)."""
    (directory / f"{module}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('code from the directory ran')\n{body}")


def _edit_json(path, change) -> None:
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


def _tokenizer_with_code(directory, marker, known_class: bool = False) -> None:
    """tokenizer_config.json names a class in the folder's own evil_tokenizer.py. With an unknown
    class transformers asks on stdin; with a known one it silently used its own class."""
    def change(cfg):
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast" if known_class else "EvilTokenizer"
        cfg["auto_map"] = {"AutoTokenizer": [None, "evil_tokenizer.EvilTokenizer"]}
    _edit_json(directory / "tokenizer_config.json", change)
    _payload(directory, "evil_tokenizer", marker, HOSTILE_TOKENIZER)


def _pickle_only(directory, marker) -> None:
    """The safetensors weights replaced by a pickle whose unpickling would write `marker`."""
    for f in directory.glob("*.safetensors"):
        f.unlink()
    torch.save({"weight": torch.zeros(2), "payload": Evil(marker)}, directory / "pytorch_model.bin")


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    """Hugging Face's home and modules cache under tmp_path: where transformers copies a
    directory's code before importing it."""
    import transformers.dynamic_module_utils as dmu

    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_MODULES_CACHE", str(home / "modules"))
    monkeypatch.setattr(dmu, "HF_MODULES_CACHE", str(home / "modules"))  # read at import
    return home


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "CODE_RAN"


def _refused(r, path, *causes) -> None:
    """Exit 2 and exactly one error line, naming `path`, with each cause; no traceback."""
    assert r.exit_code == 2, r.output
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, r.output
    assert errors[0].startswith(f"error: {path}: "), r.output
    assert all(c in errors[0] for c in causes), r.output
    assert "Traceback" not in r.output and isinstance(r.exception, SystemExit), r.exception


def _clean(hf_home, marker, *outputs) -> None:
    """No code ran, none was copied into the modules cache, no output was written."""
    assert not marker.exists()
    assert not [p for p in hf_home.rglob("*") if p.is_file()]
    assert not any(o.exists() for o in outputs)


# ------------------------------------------------------------------------------ a trained model
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tests.model.conftest import make_model, make_processor

    d = tmp_path_factory.mktemp("model") / "model"
    make_model().save_pretrained(d)
    make_processor().save_pretrained(d)
    return d


@pytest.fixture
def fasta(tmp_path):
    p = tmp_path / "in.fa"
    p.write_text(">a\nACGTACGTACGTAGCTAGCTAGGATC\n")
    return p


def _annotate(model, fasta, out, stdin: str = "y\n", *extra):
    return runner.invoke(app, ["annotate", str(fasta), "--model", str(model), "--out", str(out),
                               "--max-new-tokens", "2", *extra], input=stdin)


def test_the_untouched_model_annotates(model_dir, fasta, tmp_path, hf_home):
    """The control: the fixture's model is fine, so the refusals below come from the damage."""
    r = _annotate(model_dir, fasta, tmp_path / "p.tsv")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "p.tsv").exists()


@pytest.mark.parametrize("stdin", list(STDIN))
@pytest.mark.parametrize("folder", ["text_tokenizer", "dna_tokenizer"])
def test_a_tokenizer_naming_its_own_code_is_refused_whatever_stdin_says(
        folder, stdin, model_dir, fasta, tmp_path, hf_home, marker):
    d = shutil.copytree(model_dir, tmp_path / "m")
    _tokenizer_with_code(d / folder, marker)
    out = tmp_path / "out" / "p.tsv"
    r = _annotate(d, fasta, out, STDIN[stdin])
    _refused(r, d / folder / "tokenizer_config.json", "names custom code (auto_map",
             "evil_tokenizer.EvilTokenizer", "Llama-DNA never runs code from a model directory")
    _clean(hf_home, marker, out)


def test_a_tokenizer_auto_map_is_refused_even_when_a_known_class_would_stand_in(
        model_dir, fasta, tmp_path, hf_home, marker):
    """transformers silently loads its own class then; a directory asking for code is refused."""
    d = shutil.copytree(model_dir, tmp_path / "m")
    _tokenizer_with_code(d / "text_tokenizer", marker, known_class=True)
    r = _annotate(d, fasta, tmp_path / "p.tsv")
    _refused(r, d / "text_tokenizer" / "tokenizer_config.json", "names custom code (auto_map")
    _clean(hf_home, marker, tmp_path / "p.tsv")


def test_a_config_in_a_tokenizer_folder_naming_its_own_code_is_refused(
        model_dir, fasta, tmp_path, hf_home, marker):
    """AutoTokenizer reads the folder's config.json through AutoConfig, which asks on stdin for
    an unknown model_type with an auto_map."""
    d = shutil.copytree(model_dir, tmp_path / "m")
    tok = d / "text_tokenizer"
    (tok / "config.json").write_text(json.dumps(
        {"model_type": "evil", "auto_map": {"AutoConfig": "evil_config.EvilConfig"}}))
    _payload(tok, "evil_config", marker, "from transformers import PretrainedConfig\n\n\n"
             "class EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n")
    r = _annotate(d, fasta, tmp_path / "p.tsv")
    _refused(r, tok / "config.json", "names custom code (auto_map", "evil_config.EvilConfig")
    _clean(hf_home, marker, tmp_path / "p.tsv")


@pytest.mark.parametrize("part", ["top level", "text_config", "dna_config"])
def test_a_model_config_naming_custom_code_is_refused(part, model_dir, fasta, tmp_path, hf_home, marker):
    """transformers would fall back to its own classes here; the model is refused, not silently
    loaded as something its directory does not say."""
    d = shutil.copytree(model_dir, tmp_path / "m")
    auto_map = {"AutoModel": "evil_model.EvilModel", "AutoModelForCausalLM": "evil_model.EvilModel"}

    def change(cfg):
        (cfg if part == "top level" else cfg[part])["auto_map"] = auto_map
    _edit_json(d / "config.json", change)
    _payload(d, "evil_model", marker)
    r = _annotate(d, fasta, tmp_path / "p.tsv")
    where = "" if part == "top level" else f" in {part}"
    _refused(r, d / "config.json", f"names custom code (auto_map{where} ", "evil_model.EvilModel")
    _clean(hf_home, marker, tmp_path / "p.tsv")


def test_a_model_with_pickled_weights_only_is_refused(model_dir, fasta, tmp_path, hf_home, marker):
    d = shutil.copytree(model_dir, tmp_path / "m")
    _pickle_only(d, marker)
    r = _annotate(d, fasta, tmp_path / "p.tsv")
    _refused(r, d / "pytorch_model.bin", "pickle weights are never loaded", "convert them to safetensors")
    _clean(hf_home, marker, tmp_path / "p.tsv")


# ------------------------------------------------------------------------------ a full-preset model: --llm
@pytest.fixture(scope="module")
def full_model(tmp_path_factory):
    """A model that reads its frozen LLM from its own directory (the full preset's layout, tiny),
    and that LLM's directory."""
    from transformers import BertConfig, LlamaConfig, LlamaForCausalLM

    from llamadna.model.configuration import LlamaDNAConfig
    from llamadna.model.modeling import LlamaDNAForAnnotation
    from llamadna.model.processing import LlamaDNAProcessor

    root = tmp_path_factory.mktemp("full")
    dna, txt = make_tokenizers()
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(
        vocab_size=len(txt), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=512,
        tie_word_embeddings=False)).save_pretrained(root / "llm")
    txt.save_pretrained(root / "llm")
    proc = LlamaDNAProcessor(dna, txt, dna_chunk_tokens=32)
    cfg = LlamaDNAConfig(
        dna_config=BertConfig(vocab_size=len(dna), hidden_size=32, num_hidden_layers=1,
                              num_attention_heads=2, intermediate_size=64,
                              max_position_embeddings=32).to_dict(),
        text_config={"model_type": "llama"}, dna_placeholder_id=proc.placeholder_id,
        dna_chunk_tokens=32, llm_path=str(root / "llm"))
    LlamaDNAForAnnotation.from_base(cfg).save_pretrained(root / "model")
    proc.save_pretrained(root / "model")
    return root / "model", root / "llm"


@pytest.mark.parametrize("damage", ["none", "config auto_map", "pickle only"])
def test_llm_given_with_code_or_pickled_weights_is_refused(damage, full_model, fasta, tmp_path, hf_home, marker):
    model, llm = full_model
    other = shutil.copytree(llm, tmp_path / "llm")
    if damage == "config auto_map":  # model_type llama: transformers would use its own class
        _edit_json(other / "config.json",
                   lambda c: c.update(auto_map={"AutoModelForCausalLM": "evil_llm.EvilLlama"}))
        _payload(other, "evil_llm", marker)
    elif damage == "pickle only":
        _pickle_only(other, marker)
    out = tmp_path / "p.tsv"
    r = _annotate(model, fasta, out, "y\n", "--llm", str(other))
    if damage == "none":  # the control: that LLM directory, moved, loads
        assert r.exit_code == 0, r.output
        return
    if damage == "config auto_map":
        _refused(r, other / "config.json", "names custom code (auto_map", "evil_llm.EvilLlama")
    else:
        _refused(r, other / "pytorch_model.bin", "pickle weights are never loaded")
    _clean(hf_home, marker, out)


# ------------------------------------------------------------------------------ encoders: index, pretrain-encoder --init
@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """A DNA encoder directory as `pretrain-encoder` lays it out: a BERT with its DNA tokenizer,
    its masked-LM model in mlm/ and pretrain_config.json (for --init)."""
    from transformers import BertConfig, BertForMaskedLM, BertModel

    d = tmp_path_factory.mktemp("encoder") / "encoder"
    dna, _ = make_tokenizers()
    cfg = BertConfig(vocab_size=len(dna), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(d)
    dna.save_pretrained(d)
    BertForMaskedLM(cfg).save_pretrained(d / "mlm")
    (d / "pretrain_config.json").write_text("{}")
    return d


def _encoder_pickle_only(enc, marker):
    _pickle_only(enc, marker)
    return enc / "pytorch_model.bin", "pickle weights are never loaded"


def _encoder_tokenizer_code(enc, marker):
    _tokenizer_with_code(enc, marker)
    return enc / "tokenizer_config.json", "names custom code (auto_map"


def _dnabert2_claim_with_other_code(enc, marker):
    """config.json looks like DNABERT-2's (alibi_starting_size) but its auto_map names other code."""
    _edit_json(enc / "config.json", lambda c: c.update(
        alibi_starting_size=64, auto_map={"AutoModel": "evil_model.EvilModel"}))
    _payload(enc, "evil_model", marker)
    return enc / "config.json", "names custom code (auto_map"


ENCODER_DAMAGES = {
    "pickle only": _encoder_pickle_only,
    "tokenizer code": _encoder_tokenizer_code,
    "DNABERT-2 claim, other code": _dnabert2_claim_with_other_code,
}


@pytest.mark.parametrize("damage", list(ENCODER_DAMAGES))
def test_index_refuses_an_encoder_with_code_or_pickled_weights(
        damage, encoder_dir, small_bundle, tmp_path, hf_home, marker):
    enc = shutil.copytree(encoder_dir, tmp_path / "enc")
    named, cause = ENCODER_DAMAGES[damage](enc, marker)
    out = tmp_path / "index"
    r = runner.invoke(app, ["index", "--encoder", str(enc), "--out", str(out), "--data",
                            str(small_bundle.path)], input="y\n")
    _refused(r, named, cause)
    _clean(hf_home, marker, out)


@pytest.mark.parametrize("damage", ["masked-LM pickle only", "tokenizer code"])
def test_pretrain_encoder_init_refuses_an_encoder_with_code_or_pickled_weights(
        damage, encoder_dir, small_bundle, tmp_path, hf_home, marker):
    enc = shutil.copytree(encoder_dir, tmp_path / "enc")
    if damage == "tokenizer code":
        _tokenizer_with_code(enc, marker)
        named, cause = enc / "tokenizer_config.json", "names custom code (auto_map"
    else:
        _pickle_only(enc / "mlm", marker)
        named, cause = enc / "mlm" / "pytorch_model.bin", "pickle weights are never loaded"
    out = tmp_path / "enc2"
    r = runner.invoke(app, ["pretrain-encoder", "--init", str(enc), "--out", str(out), "--data",
                            str(small_bundle.path), "--contrastive-steps", "1"], input="y\n")
    _refused(r, named, cause)
    _clean(hf_home, marker, out)
