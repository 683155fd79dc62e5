"""Tiny models for tests: throwaway BPE tokenizers and a 2-layer model, built in seconds."""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import BertConfig, LlamaConfig, PreTrainedTokenizerFast

from llamadna.constants import DNA_PLACEHOLDER, DNA_SPECIAL_TOKENS, TEXT_SPECIAL_TOKENS
from llamadna.data.template import annotation_sentence
from llamadna.model.configuration import LlamaDNAConfig
from llamadna.model.modeling import LlamaDNAForAnnotation
from llamadna.model.processing import LlamaDNAProcessor


def make_tokenizers(seed: int = 0):
    rng = np.random.default_rng(seed)
    seqs = ["".join(rng.choice(list("ACGT"), 300)) for _ in range(40)]
    t = Tokenizer(models.BPE(unk_token=DNA_SPECIAL_TOKENS["unk"]))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    t.train_from_iterator(seqs, trainers.BpeTrainer(
        vocab_size=120, special_tokens=list(DNA_SPECIAL_TOKENS.values()),
        initial_alphabet=list("ACGTN"), show_progress=False))
    dna = PreTrainedTokenizerFast(
        tokenizer_object=t, **{f"{k}_token": v for k, v in DNA_SPECIAL_TOKENS.items()})
    texts = [annotation_sentence("chr1", f"GENE{i}", f"gene {i}", "protein coding", "not specified",
                                 "ClinVar") for i in range(10)]
    texts += ["DNA: SPLASH effect 0.61, p-value 1.2e-03, entropy 0.60. Annotation:"]
    u = Tokenizer(models.BPE())
    u.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    u.decoder = decoders.ByteLevel()
    u.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=400, special_tokens=[*TEXT_SPECIAL_TOKENS.values(), DNA_PLACEHOLDER],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    txt = PreTrainedTokenizerFast(
        tokenizer_object=u, **{f"{k}_token": v for k, v in TEXT_SPECIAL_TOKENS.items()},
        additional_special_tokens=[DNA_PLACEHOLDER])
    return dna, txt


def make_processor(prompt_mode: str = "leak-free", chunk: int = 32) -> LlamaDNAProcessor:
    """The processor of `make_model(prompt_mode, chunk)` (the same tokenizers)."""
    dna, txt = make_tokenizers()
    return LlamaDNAProcessor(dna, txt, prompt_mode=prompt_mode, dna_chunk_tokens=chunk)


def make_model(prompt_mode: str = "leak-free", chunk: int = 32, seed: int = 0, **overrides):
    """A tiny untrained model (a pure model: its processor is `make_processor`'s)."""
    import torch

    proc = make_processor(prompt_mode, chunk)
    dna, txt = proc.dna_tokenizer, proc.text_tokenizer
    cfg = LlamaDNAConfig(
        dna_config=BertConfig(vocab_size=len(dna), hidden_size=32, num_hidden_layers=1,
                              num_attention_heads=2, intermediate_size=64,
                              max_position_embeddings=chunk).to_dict(),
        text_config=LlamaConfig(vocab_size=len(txt), hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                                max_position_embeddings=1024, tie_word_embeddings=False).to_dict(),
        dna_placeholder_id=proc.placeholder_id, prompt_mode=prompt_mode, dna_chunk_tokens=chunk,
        **overrides)
    torch.manual_seed(seed)
    return LlamaDNAForAnnotation(cfg)


def make_annotator(prompt_mode: str = "leak-free", chunk: int = 32, seed: int = 0, **overrides):
    """`make_model`'s model with its processor, as an Annotator."""
    from llamadna.annotate import Annotator

    return Annotator(make_model(prompt_mode, chunk, seed, **overrides), make_processor(prompt_mode, chunk))


@pytest.fixture
def tiny_model():
    return make_model()


def rows(n: int = 3, length: int = 120, seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append({
            "Sequence": "".join(rng.choice(list("ACGT"), length)), "SPLASH_Effect": 0.5 + i / 10,
            "SPLASH_pval": 10.0 ** -(i + 1), "SPLASH_entropy": 1.25,
            "gene_name": f"GENE{i}", "gene_description": f"secret description {i}",
            "phenotype": f"hidden disease {i}", "clinical_significance": "pathogenic",
            "Dataset": "ClinVar",
            "Annotation": annotation_sentence("chr1", f"GENE{i}", f"gene {i}", "protein coding",
                                              "not specified", "ClinVar"),
        })
    return out
