import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer, BertForMaskedLM, BertModel
from typer.testing import CliRunner

from llamadna.cli import app
from llamadna.constants import IGNORE_INDEX
from llamadna.data.corpus import reference_windows
from llamadna.model.tokenizers import train_dna_tokenizer
from llamadna.train.pretrain_encoder import (
    PretrainConfig,
    mask_tokens,
    pretrain_encoder,
    save_encoder,
    train_masked_lm,
)

# Tiny: ~300 windows of 500 bases from the generated bundle, a 2-layer BERT of width 32.
CFG = PretrainConfig(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=256, window=500, steps=30,
                     batch_size=8, lr=3e-3)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread, and two OpenMP threads slow down ~5x when
    other jobs share the cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def pretrained(small_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "encoder"
    summary = pretrain_encoder(small_bundle.path, out, CFG)
    return out, summary


def hidden(model, tok, seqs):
    batch = tok(seqs, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state


def test_loss_falls_and_summary(pretrained):
    out, s = pretrained
    curve = s["loss_curve"]
    assert s["steps"] == len(curve) == 30
    assert np.mean(curve[:5]) - np.mean(curve[-5:]) > 0.2
    assert s["final_loss"] < s["initial_loss"]
    assert s["unigram_loss"] < s["initial_loss"]  # the context-free baseline is below log(V)
    assert s["initial_loss"] == pytest.approx(np.log(200), abs=0.5)  # untrained: ~uniform over V
    assert s["windows"] == 120 + 100 + 80 and s["windows_truncated"] == 0
    assert s["vocab_size"] == 200 and 20 < s["tokens_per_window"] < 250


def test_output_dir_loads_offline(pretrained, small_bundle):
    out, s = pretrained
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "pretrain_config.json", "mlm"} <= {p.name for p in out.iterdir()}
    assert not list(out.parent.glob(".encoder.*"))  # no temporary directory left behind
    model = AutoModel.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert isinstance(model, BertModel) and model.config.hidden_size == 32
    assert len(tok) == model.config.vocab_size == 200 and tok.model_max_length == 256
    rec = json.loads((out / "pretrain_config.json").read_text())
    assert rec["config"]["steps"] == 30 and rec["config"]["hidden_size"] == 32
    assert rec["data_dir"] == str(small_bundle.path.resolve())
    assert rec["loss_curve"] == s["loss_curve"] and rec["final_loss"] == s["final_loss"]
    assert rec["versions"]["torch"] == torch.__version__  # what trained it: packages and machine
    assert rec["machine"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    mlm = BertForMaskedLM.from_pretrained(out / "mlm")
    seqs = ["ACGTACGTTTGACNNACGTAGGCT", "GATTACA" * 20]
    torch.testing.assert_close(hidden(model, tok, seqs), hidden(mlm.bert, tok, seqs))


def test_saved_encoder_gives_the_in_memory_hidden_states(pretrained, small_bundle, tmp_path):
    out, s = pretrained
    windows = list(reference_windows(small_bundle.path, CFG.window))
    tok = train_dna_tokenizer(windows, CFG.vocab_size, model_max_length=CFG.max_position_embeddings)
    mlm, stats = train_masked_lm(windows, tok, CFG)
    assert stats["loss_curve"] == s["loss_curve"]  # seeded: the same run as pretrain_encoder's
    save_encoder(tmp_path / "enc", mlm, tok, {"note": "test"})
    loaded = AutoModel.from_pretrained(tmp_path / "enc")
    loaded_tok = AutoTokenizer.from_pretrained(tmp_path / "enc")
    before = hidden(mlm.bert, tok, windows[:4])
    torch.testing.assert_close(hidden(loaded, loaded_tok, windows[:4]), before, rtol=0, atol=0)
    torch.testing.assert_close(hidden(AutoModel.from_pretrained(out), tok, windows[:4]), before,
                               rtol=0, atol=0)


def test_out_dir_that_is_not_an_encoder_is_refused(small_bundle, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an encoder directory"):
        pretrain_encoder(small_bundle.path, tmp_path, replace(CFG, steps=1))
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_mask_tokens_follows_bert_masking():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 100, (64, 128))
    ids[:, 0], ids[:, -1] = 2, 3
    special = (ids == 2) | (ids == 3)
    replace_ids = torch.arange(5, 100)
    inputs, labels = mask_tokens(ids, special, 4, replace_ids, 0.15, gen)
    picked = labels != IGNORE_INDEX
    assert not picked[special].any()
    assert torch.equal(labels[picked], ids[picked]) and torch.equal(inputs[~picked], ids[~picked])
    assert 0.13 < picked.float().mean() < 0.17
    masked = (inputs[picked] == 4).float().mean()
    kept = (inputs[picked] == ids[picked]).float().mean()
    swapped = ((inputs[picked] != 4) & (inputs[picked] != ids[picked])).float().mean()
    assert 0.75 < masked < 0.85 and 0.07 < kept < 0.15 and 0.06 < swapped < 0.12
    assert ((inputs[picked] == 4) | (inputs[picked] >= 5)).all()  # random tokens are never special
    # one non-special token at least, even when the draw picks none
    inputs, labels = mask_tokens(ids[:1, :3], special[:1, :3], 4, replace_ids, 1e-9, gen)
    assert (labels != IGNORE_INDEX).sum() == 1 and labels[0, 1] == ids[0, 1]


def test_cli_pretrain_encoder(small_bundle, tmp_path):
    runner = CliRunner()
    args = ["pretrain-encoder", "--data", str(small_bundle.path), "--out", str(tmp_path / "enc"),
            "--steps", "3", "--vocab-size", "100", "--hidden-size", "16", "--layers", "1",
            "--window", "400", "--batch-size", "4", "--lr", "1e-3", "--seed", "1"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "masked-LM loss" in r.output
    rec = json.loads((tmp_path / "enc" / "pretrain_config.json").read_text())
    assert rec["config"]["steps"] == 3 and rec["config"]["intermediate_size"] == 64
    assert rec["config"]["seed"] == 1 and rec["vocab_size"] == 100
    r = runner.invoke(app, args)  # an earlier encoder directory is replaced
    assert r.exit_code == 0, r.output
    assert AutoModel.from_pretrained(tmp_path / "enc").config.hidden_size == 16
    r = runner.invoke(app, [*args[:5], "--hidden-size", "30"])
    assert r.exit_code == 2 and "error:" in r.output and "attention heads" in r.output


def _separation(encoder_dir, windows, mutated) -> float:
    """Fraction of mutated copies whose most similar window (cosine of the retrieval embeddings)
    is their own."""
    from llamadna.retrieve.embed import SequenceEmbedder

    emb = SequenceEmbedder(encoder_dir)
    sims = emb(mutated) @ emb(windows).T
    return float(np.mean(sims.argmax(1) == np.arange(len(windows))))


@pytest.mark.slow
def test_contrastive_stage_separates_mutated_copies(pretrained, small_bundle, tmp_path):
    import mappy

    from llamadna.data.mutate import mutate

    enc, _ = pretrained
    cfg = replace(CFG, contrastive_steps=120, contrastive_batch=16, contrastive_window=300,
                  contrastive_lr=2e-3, contrastive_max_rate=0.15)
    out = tmp_path / "contrastive"
    s = pretrain_encoder(small_bundle.path, out, cfg, init=enc)
    assert s["contrastive_steps"] == 120 and s["contrastive_final_loss"] < s["contrastive_initial_loss"]
    assert s["contrastive_initial_loss"] == pytest.approx(np.log(16), abs=0.7)  # ~chance at first
    assert s["steps"] == 30 and s["final_loss"] == pytest.approx(json.loads(
        (enc / "pretrain_config.json").read_text())["final_loss"])  # masked-LM record kept
    record = json.loads((out / "pretrain_config.json").read_text())
    assert record["init"] == str(enc.resolve()) and record["config"]["contrastive_steps"] == 120
    assert AutoTokenizer.from_pretrained(out).get_vocab() == AutoTokenizer.from_pretrained(enc).get_vocab()
    rng = np.random.default_rng(3)
    windows = list(reference_windows(small_bundle.path, 300))[::7][:24]
    mutated = [mappy.revcomp(mutate(w, 0.1, rng)) for w in windows]
    before, after = _separation(enc, windows, mutated), _separation(out, windows, mutated)
    assert after >= before + 0.25, (before, after)


def test_contrastive_needs_steps():
    from llamadna.errors import ConfigError

    with pytest.raises(ConfigError, match="contrastive_steps"):
        replace(CFG, contrastive_steps=-1)
    with pytest.raises(ConfigError, match="give --contrastive-steps"):
        pretrain_encoder("unused", "/tmp/unused-encoder-dir", CFG, init="/tmp/x")
