"""Model presets: `tiny` (offline, weights trained here) and `full` (local DNABERT-2 + Llama-2).

Both build the same `LlamaDNAForAnnotation` (`model.build` joins the parts); sizes, where the
pretrained parts come from and how the LLM is trained differ.

- tiny: the DNA encoder + BPE tokenizer from `llamadna pretrain-encoder` (masked-LM on the
  reference regions); a small `LlamaForCausalLM` built from a `LlamaConfig` with a byte-level BPE
  tokenizer trained on the training split's text, first pretrained as a language model on that
  text, then fine-tuned with all its weights (`llm_training` "full", the tiny preset's default:
  the LLM is ours; `--llm-training lora` adapts it with LoRA as the full preset does).
- full: `--encoder` = a local DNABERT-2-117M directory (loaded into the project's own DNABERT-2
  implementation, `model.dnabert2`: no code from the directory runs), `--llm` = a local
  Llama-2-7b-hf directory; bf16 and gradient checkpointing available; the `<dna>` placeholder
  is added to the Llama tokenizer (its embedding row is never used: placeholders are replaced).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import LlamaConfig

from llamadna.constants import DNA_PLACEHOLDER
from llamadna.errors import InputError, refuse_link_loop
from llamadna.model.configuration import LlamaDNAConfig
from llamadna.model.processing import LlamaDNAProcessor
from llamadna.model.safe_loading import load_tokenizer


@dataclass
class TinyLLMShape:
    """The tiny LLM (a LlamaConfig; ~3M parameters with a 2k vocabulary)."""

    hidden_size: int = 192
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 512
    max_position_embeddings: int = 2048


def tiny_llm_config(vocab_size: int, tok, shape: TinyLLMShape | None = None) -> LlamaConfig:
    s = shape or TinyLLMShape()
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=s.hidden_size, num_hidden_layers=s.num_hidden_layers,
        num_attention_heads=s.num_attention_heads, num_key_value_heads=s.num_attention_heads,
        intermediate_size=s.intermediate_size, max_position_embeddings=s.max_position_embeddings,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )


def check_local_dir(path: str | Path, what: str) -> Path:
    """A local model directory (config.json inside); a model hub id or a missing path is refused
    with what to do instead."""
    p = Path(path)
    refuse_link_loop(p)
    if not p.exists():
        hub = len(p.parts) == 2 and not str(path).startswith((".", "/", "~"))
        raise InputError(p, f"no such directory (expected a local {what} directory"
                         + ("; if it is meant as a model hub id: model hubs are not used, download the "
                            f"{what} weights yourself and pass their folder)" if hub else ")"))
    if not (p / "config.json").exists():
        raise InputError(
            p, f"no config.json — expected a local {what} directory (model hubs are not used; "
            "download the weights yourself and pass their folder)")
    return p


def full_text_tokenizer(llm_path: str | Path):
    """The Llama tokenizer with `<dna>` and a pad token added."""
    tok = load_tokenizer(check_local_dir(llm_path, "Llama-2-7b-hf"))
    tok.add_special_tokens({"additional_special_tokens": [DNA_PLACEHOLDER]})
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token or tok.eos_token
    return tok


def make_config(
    dna_config, text_config, processor: LlamaDNAProcessor, class_labels: list[str], **overrides
) -> LlamaDNAConfig:
    return LlamaDNAConfig(
        dna_config=dna_config.to_dict() if hasattr(dna_config, "to_dict") else dna_config,
        text_config=text_config.to_dict() if hasattr(text_config, "to_dict") else text_config,
        dna_placeholder_id=processor.placeholder_id, class_labels=list(class_labels),
        prompt_mode=processor.prompt_mode, dna_chunk_tokens=processor.dna_chunk_tokens, **overrides,
    )
