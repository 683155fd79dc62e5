"""The two tokenizers the project trains itself.

- DNA: DNABERT-2 style BPE over upper-case DNA (A/C/G/T/N). A window is one "word" (no
  pre-tokenizer: DNA has no spaces), so merges may span any bases; `[CLS] ... [SEP]` are added by
  the post-processor and `decode` concatenates the pieces without spaces.
- Text: byte-level BPE (GPT-2/Llama-3 style, so every string encodes and decodes back exactly)
  for the tiny Llama, with `<s> </s> <unk> <pad>` and the DNA placeholder `<dna>`, which is a
  special token and therefore always one id.

Both are `transformers` fast tokenizers: `save_pretrained(dir)` and
`AutoTokenizer.from_pretrained(dir)` round-trip them offline.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from llamadna.constants import DNA_PLACEHOLDER, DNA_SPECIAL_TOKENS, TEXT_SPECIAL_TOKENS

log = logging.getLogger(__name__)

DNA_ALPHABET = ("A", "C", "G", "T", "N")
# DNA tokens per input, [CLS] and [SEP] included (DNABERT-2 uses 512 too).
DNA_MODEL_MAX_LENGTH = 512


def train_dna_tokenizer(
    sequences: Iterable[str],
    vocab_size: int = 4096,
    min_frequency: int = 2,
    model_max_length: int = DNA_MODEL_MAX_LENGTH,
) -> PreTrainedTokenizerFast:
    """Train a DNABERT-2 style BPE tokenizer on DNA sequences.

    Parameters
    ----------
    sequences : DNA strings (A/C/G/T/N; lower case is upper-cased). Each is one BPE word.
    vocab_size : target vocabulary, the 5 special tokens and 5 bases included; smaller when the
        corpus has fewer pairs seen `min_frequency` times.
    min_frequency : a pair must occur this often to be merged.
    model_max_length : tokens per input ([CLS]/[SEP] included) that `truncation=True` keeps.

    Returns
    -------
    A fast tokenizer: ids 0-4 are [PAD] [UNK] [CLS] [SEP] [MASK]; `tok(seq)` gives
    `[CLS] pieces [SEP]`; characters outside ACGTN become [UNK]. Training is deterministic.
    """
    sp = DNA_SPECIAL_TOKENS
    special = [sp["pad"], sp["unk"], sp["cls"], sp["sep"], sp["mask"]]
    tok = Tokenizer(models.BPE(unk_token=sp["unk"]))
    tok.normalizer = normalizers.Sequence([normalizers.Replace(b.lower(), b) for b in DNA_ALPHABET])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special,
        initial_alphabet=list(DNA_ALPHABET), show_progress=False,
    )
    tok.train_from_iterator(sequences, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{sp['cls']} $A {sp['sep']}",
        pair=f"{sp['cls']} $A {sp['sep']} $B:1 {sp['sep']}:1",
        special_tokens=[(sp["cls"], tok.token_to_id(sp["cls"])), (sp["sep"], tok.token_to_id(sp["sep"]))],
    )
    tok.decoder = decoders.Fuse()  # pieces back to one string, no spaces between them
    log.info("DNA tokenizer: %d tokens (%d requested)", tok.get_vocab_size(), vocab_size)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, model_max_length=model_max_length,
        pad_token=sp["pad"], unk_token=sp["unk"], cls_token=sp["cls"], sep_token=sp["sep"],
        mask_token=sp["mask"],
    )


def train_text_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer for the tiny Llama.

    Special tokens get ids 0-4: `<s> </s> <unk> <pad> <dna>`. bos/eos/unk/pad are set on the
    returned tokenizer and `<dna>` is its one additional special token. Nothing is inserted
    automatically (no BOS/EOS template): the processor adds `<s>`/`</s>` where it wants them, so
    `tok(text)` and `tok(text, add_special_tokens=False)` give the same ids. Byte-level means
    there is no unknown input: `decode(..., skip_special_tokens=True,
    clean_up_tokenization_spaces=False)` gives the text back exactly. `model_max_length` is left
    unset: the LLM's context length governs.
    """
    sp = TEXT_SPECIAL_TOKENS
    special = [sp["bos"], sp["eos"], sp["unk"], sp["pad"], DNA_PLACEHOLDER]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)  # offsets only; adds no tokens
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    log.info("text tokenizer: %d tokens (%d requested)", tok.get_vocab_size(), vocab_size)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=sp["bos"], eos_token=sp["eos"], unk_token=sp["unk"],
        pad_token=sp["pad"], additional_special_tokens=[DNA_PLACEHOLDER],
    )
