"""The full preset's code path (`train --preset full --encoder DIR --llm DIR`), 8/4-bit included.

No pretrained DNABERT-2 or Llama-2 weights exist offline, so the two local directories here are
small models in the same formats: the encoder from `pretrain-encoder` (a BERT directory with its
tokenizer) and a `LlamaForCausalLM` with random weights saved beside a tokenizer. What is tested
is the loading path: the frozen weights are read from those directories, LoRA/projector/head are
trained, only they are saved, and the model reloads (quantized again when it was trained so).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load_file

from llamadna.annotate import Annotator
from llamadna.model.configuration import LlamaDNAConfig
from llamadna.model.modeling import LlamaDNAForAnnotation
from llamadna.train.config import TrainConfig
from llamadna.train.train import train
from tests.conftest import model_workspace


@pytest.fixture(scope="module")
def ws(tmp_path_factory, bundle_factory):
    from transformers import LlamaForCausalLM

    from llamadna.model.presets import TinyLLMShape, tiny_llm_config
    from llamadna.model.tokenizers import train_text_tokenizer

    root = tmp_path_factory.mktemp("full")
    model_workspace(root, bundle_factory, seed=11)
    df = pl.read_parquet(root / "dataset" / "dataset.parquet")
    tok = train_text_tokenizer(list(df["Annotation"]), vocab_size=300)
    torch.manual_seed(0)
    # widths that are multiples of 32: bitsandbytes' packed CPU 4-bit kernel needs them (Llama's are)
    shape = TinyLLMShape(hidden_size=64, num_hidden_layers=2, intermediate_size=128)
    llm = LlamaForCausalLM(tiny_llm_config(len(tok), tok, shape))
    llm.save_pretrained(root / "llm")
    tok.save_pretrained(root / "llm")
    return root


def run(ws: Path, name: str, **kw) -> Path:
    out = ws / name
    kw = {"encoder": str(ws / "encoder"), **kw}
    train(TrainConfig(dataset=str(ws / "dataset"), out=str(out), preset="full",
                      llm=str(ws / "llm"), batch_size=4, max_steps=8, epochs=100, checkpoint_every=0,
                      max_val_rows=8, warmup_steps=2, lr=5e-3, **kw))
    return out


def dnabert2_dir(ws: Path) -> Path:
    """A small encoder in DNABERT-2's hub layout (config with `auto_map` and
    `alibi_starting_size`, `bert.`-prefixed weights, code files that must never run), with the
    workspace's DNA tokenizer."""
    import shutil

    from safetensors.torch import save_file
    from transformers import AutoTokenizer, BertConfig

    from llamadna.model.dnabert2 import DnaBert2Model

    d = ws / "dnabert2"
    if d.exists():
        return d
    tok = AutoTokenizer.from_pretrained(ws / "encoder")
    raw = {"model_type": "bert", "alibi_starting_size": 512, "vocab_size": len(tok), "hidden_size": 32,
           "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
           "max_position_embeddings": 512, "pad_token_id": tok.pad_token_id}
    torch.manual_seed(0)
    enc = DnaBert2Model(BertConfig(**raw), add_pooling_layer=False)
    d.mkdir()
    save_file({f"bert.{k}": v.contiguous() for k, v in enc.state_dict().items()}, str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps({**raw, "auto_map": {"AutoModel": "bert_layers.BertModel"}}))
    (d / "bert_layers.py").write_text(f"raise SystemExit('remote code ran: {d}')\n")
    for f in (ws / "encoder").iterdir():
        if "token" in f.name or f.name == "vocab.txt":
            shutil.copy(f, d / f.name)
    return d


def held_out_rows(ws: Path, n: int = 4) -> list[dict]:
    return pl.read_parquet(ws / "dataset" / "dataset.parquet").filter(
        pl.col("split_gene") == "test").head(n).to_dicts()


def annotate_rows(model: LlamaDNAForAnnotation, model_dir: Path, rows: list[dict], **config) -> list[dict]:
    """`model`'s predictions for `rows`, with the processor saved in `model_dir`."""
    from llamadna.annotate import InferenceConfig
    from llamadna.model.processing import LlamaDNAProcessor

    processor = LlamaDNAProcessor.from_pretrained(model_dir)
    return Annotator(model, processor, config=InferenceConfig(**config)).annotate_rows(rows)


def batch_loss(model: LlamaDNAForAnnotation, model_dir: Path, rows: list[dict]) -> float:
    from llamadna.model.processing import LlamaDNAProcessor

    labels = model.config.class_labels
    b = LlamaDNAProcessor.from_pretrained(model_dir)(rows, targets=[r["Annotation"] for r in rows],
                                                     class_ids=[labels.index(r["Dataset"]) for r in rows])
    with torch.no_grad():
        return float(model.eval()(**b).loss)


@pytest.mark.slow
def test_full_preset_reads_frozen_weights_from_their_directories(ws):
    out = run(ws, "plain")
    saved = load_file(out / "model.safetensors")
    llm_keys = [k for k in saved if k.startswith("language_model.")]
    assert llm_keys and all("lora_" in k for k in llm_keys)  # the frozen LLM is not copied
    assert not any(k.startswith("dna_encoder.") for k in saved)
    assert any(k.startswith("projector.") for k in saved) and any(k.startswith("cls_head.") for k in saved)

    m = LlamaDNAForAnnotation.from_pretrained(out)
    assert m.config.llm_path == str(ws / "llm") and m.config.llm_quantization is None
    base = load_file(ws / "llm" / "model.safetensors")
    assert torch.equal(m.language_model.model.embed_tokens.weight, base["model.embed_tokens.weight"])
    assert torch.equal(m.language_model.model.layers[1].self_attn.q_proj.base_layer.weight,
                       base["model.layers.1.self_attn.q_proj.weight"])
    enc = load_file(ws / "encoder" / "model.safetensors")
    key = next(k for k in enc if k.endswith("embeddings.word_embeddings.weight"))
    assert torch.equal(m.dna_encoder.embeddings.word_embeddings.weight, enc[key])
    now = m.state_dict()
    for k, v in saved.items():
        assert torch.equal(now[k], v), k
    lora_b = [v for k, v in saved.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # trained (LoRA B starts at zero)
    preds = annotate_rows(m, out, held_out_rows(ws), max_new_tokens=6)
    assert len(preds) == 4 and all(p["source"] in m.config.class_labels for p in preds)


@pytest.mark.slow
def test_full_preset_with_a_dnabert2_encoder_and_moved_directories(ws, tmp_path):
    """DNABERT-2's layout through the project's own implementation (no code from its directory
    runs), LoRA on its fused `Wqkv`; the saved model names its base directories as given and,
    once they move, loads with --llm/--encoder pointing at them."""
    import shutil

    from llamadna.annotate import InferenceConfig
    from llamadna.errors import InputError
    from llamadna.model.dnabert2 import DnaBert2Model

    enc = dnabert2_dir(ws)
    out = run(ws, "dnabert2-lora", encoder=str(enc), encoder_training="lora")
    m = Annotator.from_pretrained(out, device="cpu", config=InferenceConfig(max_new_tokens=6))
    assert isinstance(m.model.dna_encoder, DnaBert2Model)
    assert m.model.config.encoder_lora_target_modules == ["Wqkv"]
    saved = load_file(out / "model.safetensors")
    enc_lora = [k for k in saved if k.startswith("dna_encoder.") and "lora_" in k]
    assert enc_lora and all("Wqkv" in k for k in enc_lora)
    before = m.annotate_rows(held_out_rows(ws))
    # the base directories move: the error names the missing one; --llm/--encoder point at them
    moved_enc, moved_llm = shutil.copytree(enc, tmp_path / "e"), shutil.copytree(ws / "llm", tmp_path / "l")
    cfg = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**cfg, "dna_model_path": "gone/dnabert2",
                                                 "llm_path": "gone/llama"}))
    with pytest.raises(InputError, match=r"reads its frozen LLM \(Llama-2\) weights from 'gone/llama'.*--llm DIR"):
        Annotator.from_pretrained(out, device="cpu")
    m2 = Annotator.from_pretrained(out, device="cpu", llm=moved_llm, dna_encoder=moved_enc,
                                   config=InferenceConfig(max_new_tokens=6))
    after = m2.annotate_rows(held_out_rows(ws))
    assert [p["annotation"] for p in after] == [p["annotation"] for p in before]


@pytest.mark.slow
@pytest.mark.parametrize("mode, layer, dtype", [("8bit", "Linear8bitLt", torch.int8),
                                                ("4bit", "Linear4bit", torch.uint8)])
def test_quantized_llm_trains_and_reloads_quantized(ws, mode, layer, dtype):
    """QLoRA-style: the frozen LLM in 8 or 4 bits (bitsandbytes, on the CPU here), LoRA in full
    precision; the saved model records the quantization and reloads the LLM the same way."""
    out = run(ws, f"q{mode}", load_in_8bit=mode == "8bit", load_in_4bit=mode == "4bit")
    m = LlamaDNAForAnnotation.from_pretrained(out)
    assert m.config.llm_quantization == mode
    attn = m.language_model.model.layers[0].self_attn
    assert type(attn.k_proj).__name__ == layer  # not a LoRA target: the bare quantized layer
    assert type(attn.q_proj.base_layer).__name__ == layer and attn.k_proj.weight.dtype == dtype
    saved = load_file(out / "model.safetensors")
    assert all("lora_" in k for k in saved if k.startswith("language_model."))
    assert any(v.abs().sum() > 0 for k, v in saved.items() if "lora_B" in k)

    # the same adapter on the unquantized LLM: nearly the same loss, but not exactly
    cfg = LlamaDNAConfig.from_pretrained(out)
    cfg.llm_quantization = None
    plain = LlamaDNAForAnnotation.from_base(cfg)
    missing, unexpected = plain.load_state_dict(saved, strict=False)
    assert not unexpected and all(k.startswith(("language_model.", "dna_encoder.")) and "lora_" not in k
                                  for k in missing)
    rows = held_out_rows(ws)
    q_loss, p_loss = batch_loss(m, out, rows), batch_loss(plain, out, rows)
    assert q_loss != p_loss and abs(q_loss - p_loss) < 0.01 * p_loss, (q_loss, p_loss)
    preds = annotate_rows(m, out, rows, max_new_tokens=6)
    assert len(preds) == 4 and all(p["source"] in m.config.class_labels for p in preds)


def test_quantization_options_are_checked():
    with pytest.raises(ValueError, match="exclude each other"):
        TrainConfig(dataset="d", out="o", preset="full", encoder="e", llm="l", load_in_8bit=True,
                    load_in_4bit=True)
    with pytest.raises(ValueError, match="--preset full only"):
        TrainConfig(dataset="d", out="o", encoder="e", load_in_4bit=True)
    with pytest.raises(ValueError, match="needs llm_path"):
        LlamaDNAConfig(llm_quantization="4bit")
    with pytest.raises(ValueError, match="llm_quantization must be"):
        LlamaDNAConfig(llm_path="x", llm_quantization="3bit")


@pytest.mark.slow
def test_fsdp_with_bf16_weights_and_gradient_checkpointing_matches_ddp(ws):
    """The full-scale setting on two CPU processes: frozen weights loaded in bf16 beside fp32
    LoRA/projector/head in the same FSDP units (all-gathered in bf16), gradient checkpointing on.
    FSDP reaches the same losses and weights as DDP with the same options."""
    from tests.train.launch import torchrun_train

    runs = {}
    for mode in ("ddp", "fsdp"):
        out = ws / f"bf16-{mode}"
        r = torchrun_train("--dataset", str(ws / "dataset"), "--preset", "full", "--encoder", str(ws / "encoder"),
                           "--llm", str(ws / "llm"), "--out", str(out), "--max-steps", "6", "--batch-size", "2",
                           "--checkpoint-every", "0", "--bf16", "--gradient-checkpointing",
                           *(["--fsdp"] if mode == "fsdp" else []))
        assert r.returncode == 0, r.stderr[-3000:]
        runs[mode] = (json.loads((out / "train_summary.json").read_text()), load_file(out / "model.safetensors"))
    (sd, wd), (sf, wf) = runs["ddp"], runs["fsdp"]
    assert sf["parallelism"] == "fsdp" and sf["parameters_in_process"] < 0.6 * sf["total_parameters"]
    assert np.allclose(sf["losses"], sd["losses"], atol=1e-3) and len(sf["losses"]) == 6
    assert sf["losses"][0] != sf["losses"][-1]
    assert wf.keys() == wd.keys()
    assert all(torch.allclose(wf[k].float(), wd[k].float(), rtol=1e-2, atol=1e-3) for k in wf)
    m = LlamaDNAForAnnotation.from_pretrained(ws / "bf16-fsdp", dtype=torch.bfloat16)
    assert m.language_model.model.embed_tokens.weight.dtype == torch.bfloat16
