"""The model built per preset (model.build): a tiny model builds from its parts, its random
weights are drawn in one fixed order from torch's seed, and the full preset records its
directories and trains LoRA only."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel, LlamaForCausalLM

from llamadna.errors import InputError
from llamadna.model.build import build_full, build_tiny, tiny_parts
from llamadna.model.modeling import LlamaDNAForAnnotation
from llamadna.model.presets import TinyLLMShape, make_config, tiny_llm_config
from tests.model.conftest import make_tokenizers, rows

LABELS = ["ClinVar", "COSMIC", "dbSNP"]
SHAPE = TinyLLMShape(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
PROMPT = dict(prompt_mode="leak-free", use_dna=True, use_splash=True, retrieval=False, evidence_k=4,
              index=None)


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """A BERT encoder directory with its DNA tokenizer, as `pretrain-encoder` writes one."""
    d = tmp_path_factory.mktemp("encoder")
    dna, _ = make_tokenizers()
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(dna), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=32,
                         pad_token_id=dna.pad_token_id)).save_pretrained(d)
    dna.save_pretrained(d)
    return d


def corpus() -> list[str]:
    return [r["Annotation"] for r in rows(6)] * 3 + ["DNA: SPLASH effect 0.5. Annotation:"]


def tiny(encoder_dir, seed: int, **overrides):
    torch.manual_seed(seed)
    parts = tiny_parts(encoder_dir, corpus(), 300, SHAPE)
    return build_tiny(parts, LABELS, overrides, PROMPT)


def test_tiny_builds_and_runs(encoder_dir):
    model, processor = tiny(encoder_dir, 0, llm_training="full", lora_r=4)
    assert model.config.class_labels == LABELS and model.config.llm_training == "full"
    assert processor.dna_chunk_tokens == 32  # the encoder's positions
    assert model.config.dna_placeholder_id == processor.placeholder_id
    llm = [p.requires_grad for n, p in model.named_parameters() if n.startswith("language_model.")]
    assert llm and all(llm)  # "full": every LLM weight trains
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith("dna_encoder."))
    batch = rows(2)
    out = model(**processor(batch, targets=[r["Annotation"] for r in batch], class_ids=[0, 2]))
    assert torch.isfinite(out.loss)

    lora, _ = tiny(encoder_dir, 0, llm_training="lora", lora_r=4)
    trained = [n for n, p in lora.named_parameters() if p.requires_grad and n.startswith("language_model.")]
    assert trained and all("lora_" in n for n in trained)


def test_tiny_weights_follow_the_seed_in_a_fixed_order(encoder_dir):
    model, _ = tiny(encoder_dir, 3, llm_training="full")
    again, _ = tiny(encoder_dir, 3, llm_training="full")
    other, _ = tiny(encoder_dir, 4, llm_training="full")
    sd, sd2, sd3 = model.state_dict(), again.state_dict(), other.state_dict()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    assert not all(torch.equal(sd[k], sd3[k]) for k in sd)

    # the order pinned: the LLM first, then the projector and head, from the same seed
    torch.manual_seed(3)
    parts = tiny_parts(encoder_dir, corpus(), 300, SHAPE)
    assert all(torch.equal(v, sd[f"language_model.{k}"]) for k, v in parts.llm.state_dict().items())
    from llamadna.model.processing import LlamaDNAProcessor

    torch.manual_seed(3)
    llm = LlamaForCausalLM(tiny_llm_config(len(parts.text_tokenizer), parts.text_tokenizer, SHAPE))
    proc = LlamaDNAProcessor(parts.dna_tokenizer, parts.text_tokenizer, dna_chunk_tokens=32, **PROMPT)
    by_hand = LlamaDNAForAnnotation(make_config(parts.encoder.config, llm.config, proc, LABELS,
                                                llm_training="full"),
                                    dna_encoder=parts.encoder, language_model=llm)
    assert all(torch.equal(v, sd[k]) for k, v in by_hand.state_dict().items())


def test_tiny_without_an_encoder_says_what_to_run(tmp_path):
    with pytest.raises(InputError, match="pretrain-encoder"):
        tiny_parts(tmp_path, corpus(), 300, SHAPE)


def test_full_records_its_directories_and_trains_lora(encoder_dir, tmp_path):
    _, txt = make_tokenizers()
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_llm_config(len(txt), txt, SHAPE)).save_pretrained(tmp_path / "llm")
    txt.save_pretrained(tmp_path / "llm")
    torch.manual_seed(0)
    model, processor = build_full(encoder_dir, tmp_path / "llm", LABELS, {"lora_r": 4}, PROMPT)
    assert model.config.dna_model_path == str(encoder_dir)
    assert model.config.llm_path == str(tmp_path / "llm")
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert {n.split(".")[0] for n in trained} == {"language_model", "projector", "cls_head"}
    assert all("lora_" in n for n in trained if n.startswith("language_model."))
    assert processor.text_tokenizer.pad_token is not None
