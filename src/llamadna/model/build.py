"""The model of each preset built from its parts (see `model.presets` for what the presets are).

    tiny   tiny_parts (encoder + DNA tokenizer from `pretrain-encoder`, a text tokenizer trained
           on the given text, a fresh small Llama)  ->  [the caller pretrains the LLM]  ->
           build_tiny (processor, config, model with its trainable parts set)
    full   build_full (local DNABERT-2 and Llama-2 directories read by `from_base`)

Both return the model and its processor. The caller seeds torch first: every random weight
(the tiny LLM, projector, head, LoRA) is drawn here in a fixed order, so a seed gives one model.
`config_overrides` are `LlamaDNAConfig` fields (projector, LoRA, training modes, losses);
`prompt` are `LlamaDNAProcessor` options (prompt mode, DNA/SPLASH use, retrieval, index).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from llamadna.errors import InputError
from llamadna.model.modeling import LlamaDNAForAnnotation, load_dna_encoder
from llamadna.model.presets import (
    TinyLLMShape,
    check_local_dir,
    full_text_tokenizer,
    make_config,
    tiny_llm_config,
)
from llamadna.model.processing import LlamaDNAProcessor
from llamadna.model.safe_loading import load_tokenizer


@dataclass
class TinyParts:
    """The tiny preset's parts before they are joined: the LLM is pretrained in between."""

    encoder: nn.Module  # from `llamadna pretrain-encoder`
    dna_tokenizer: object
    text_tokenizer: object  # trained on the training text
    llm: nn.Module  # a fresh LlamaForCausalLM of the given shape


def tiny_parts(encoder_dir: str | Path, text_corpus: list[str], text_vocab_size: int,
               shape: TinyLLMShape) -> TinyParts:
    """Load the encoder and its tokenizer, train the text tokenizer on `text_corpus`, and build
    the small Llama (random weights: torch's RNG)."""
    from transformers import LlamaForCausalLM

    from llamadna.model.tokenizers import train_text_tokenizer

    enc_dir = Path(encoder_dir)
    if not (enc_dir / "config.json").exists():
        raise InputError(enc_dir, "no encoder here (no config.json); run `llamadna "
                         "pretrain-encoder` first and pass its output as --encoder")
    encoder = load_dna_encoder(enc_dir)  # no code, no pickle (model.safe_loading)
    dna_tok = load_tokenizer(enc_dir)
    text_tok = train_text_tokenizer(text_corpus, vocab_size=text_vocab_size)
    llm = LlamaForCausalLM(tiny_llm_config(len(text_tok), text_tok, shape))
    return TinyParts(encoder, dna_tok, text_tok, llm)


def build_tiny(parts: TinyParts, labels: list[str], config_overrides: dict,
               prompt: dict) -> tuple[LlamaDNAForAnnotation, LlamaDNAProcessor]:
    """The tiny preset's model around its (pretrained) parts; projector, head and any LoRA
    drawn from torch's RNG."""
    processor = LlamaDNAProcessor(parts.dna_tokenizer, parts.text_tokenizer,
                                  dna_chunk_tokens=parts.encoder.config.max_position_embeddings, **prompt)
    config = make_config(parts.encoder.config, parts.llm.config, processor, labels, **config_overrides)
    model = LlamaDNAForAnnotation(config, dna_encoder=parts.encoder, language_model=parts.llm)
    model.set_trainable()
    return model, processor


def build_full(encoder_dir: str | Path, llm_dir: str | Path, labels: list[str], config_overrides: dict,
               prompt: dict, *, quantization: str | None = None, bf16: bool = False,
               gradient_checkpointing: bool = False) -> tuple[LlamaDNAForAnnotation, LlamaDNAProcessor]:
    """The full preset's model: DNABERT-2 (`encoder_dir`, or a plain BERT directory) and Llama-2
    (`llm_dir`) read from local directories, their paths recorded in the config.

    Parameters
    ----------
    quantization : "8bit", "4bit" or None, the LLM's (bitsandbytes).
    bf16 : load both in bfloat16.
    gradient_checkpointing : on the LLM.
    """
    from llamadna.model.dnabert2 import is_dnabert2_config

    enc_dir = check_local_dir(encoder_dir, "DNABERT-2")
    overrides = dict(config_overrides)
    if is_dnabert2_config(json.loads((enc_dir / "config.json").read_text())):
        overrides["encoder_lora_target_modules"] = ("Wqkv",)  # its fused attention projection
    text_tok = full_text_tokenizer(llm_dir)
    dna_tok = load_tokenizer(enc_dir)
    processor = LlamaDNAProcessor(dna_tok, text_tok, **prompt)
    config = make_config({"model_type": "bert"}, {"model_type": "llama"}, processor, labels,
                         dna_model_path=str(encoder_dir), llm_path=str(llm_dir),
                         llm_quantization=quantization, **overrides)
    model = LlamaDNAForAnnotation.from_base(config, torch_dtype=torch.bfloat16 if bf16 else None)
    if gradient_checkpointing:
        lm = model.language_model  # transformers 5 renamed the method
        (getattr(lm, "activation_checkpointing_enable", None) or lm.gradient_checkpointing_enable)()
    model.set_trainable()
    return model, processor
