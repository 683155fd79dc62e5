import json

import numpy as np
import pytest
from transformers import AutoTokenizer

from llamadna.constants import DNA_PLACEHOLDER, DNA_SPECIAL_TOKENS, TEXT_SPECIAL_TOKENS
from llamadna.data.corpus import reference_windows
from llamadna.data.template import annotation_sentence
from llamadna.model.tokenizers import train_dna_tokenizer, train_text_tokenizer

SENTENCES = [
    annotation_sentence("chr21", "APP", "amyloid beta precursor protein", "protein coding",
                        "Alzheimer disease 1 and Cerebral amyloid angiopathy", "ClinVar"),
    annotation_sentence("chr7", "CFTR", "CF transmembrane conductance regulator", "protein coding",
                        "not specified", "dbSNP"),
    annotation_sentence("chr17", "TP53", "tumor protein p53", "protein coding",
                        "Li-Fraumeni syndrome", "COSMIC"),
    annotation_sentence("chrX", "LINC01002", "long intergenic non-protein coding RNA 1002",
                        "lncRNA", "not specified", "dbSNP"),
]
# Not in the training texts: unseen words, digits, punctuation, double spaces, non-ASCII.
UNSEEN = [
    "This gene is described as Sjögren's syndrome (type 2), 5'-UTR; p.Arg273His  and a "
    "misc RNA transcript type.",
    "It is of β-thalassemia [HbE] phenotype. It is part of the HGMD dataset.",
]


def trained_state(tok) -> dict:
    """Vocabulary, merges and special tokens (not the padding/truncation state calls leave)."""
    d = json.loads(tok.backend_tokenizer.to_str())
    return {"model": d["model"], "added": d["added_tokens"]}


@pytest.fixture(scope="module")
def windows(small_bundle):
    return list(reference_windows(small_bundle.path, 500))


@pytest.fixture(scope="module")
def dna_tok(windows):
    return train_dna_tokenizer(windows, vocab_size=300)


@pytest.fixture(scope="module")
def text_tok():
    return train_text_tokenizer(SENTENCES * 5, vocab_size=400)


def test_dna_tokenizer_vocab_specials_and_round_trip(dna_tok, windows):
    assert len(dna_tok) == 300
    assert [dna_tok.convert_ids_to_tokens(i) for i in range(5)] == list(DNA_SPECIAL_TOKENS.values())
    assert dna_tok.model_max_length == 512
    for w in windows[:20]:
        ids = dna_tok(w)["input_ids"]
        assert ids[0] == dna_tok.cls_token_id and ids[-1] == dna_tok.sep_token_id
        assert dna_tok.unk_token_id not in ids
        assert len(ids) < len(w) / 2  # BPE merges: several bases per token
        assert dna_tok.decode(ids, skip_special_tokens=True) == w  # no spaces between pieces
    assert len(dna_tok(windows[:3], padding=True)["input_ids"][0]) == max(
        len(dna_tok(w)["input_ids"]) for w in windows[:3])


def test_dna_tokenizer_handles_n_lower_case_and_truncation(dna_tok):
    seq = "ACGTNNNNNNACGTTGCAN"
    ids = dna_tok(seq)["input_ids"]
    assert dna_tok.unk_token_id not in ids
    assert dna_tok.decode(ids, skip_special_tokens=True) == seq
    assert dna_tok(seq.lower())["input_ids"] == ids
    assert dna_tok.unk_token_id in dna_tok("ACGTXACGT")["input_ids"]  # not DNA: [UNK], no error
    long = dna_tok("ACGT" * 2000, truncation=True)["input_ids"]
    assert len(long) == 512 and long[-1] == dna_tok.sep_token_id


def test_dna_tokenizer_training_is_deterministic(windows, dna_tok):
    again = train_dna_tokenizer(windows, vocab_size=300)
    assert trained_state(again) == trained_state(dna_tok)
    other = train_dna_tokenizer(windows[::-1][:40], vocab_size=300)
    assert trained_state(other) != trained_state(dna_tok)


def test_dna_tokenizer_vocab_is_capped_by_the_corpus():
    tok = train_dna_tokenizer(["ACGTACGTAC"] * 3, vocab_size=4096)
    assert 10 < len(tok) < 30  # 5 specials + 5 bases + the few merges this corpus has


def test_text_tokenizer_dna_placeholder_is_one_id(text_tok):
    ph = text_tok.convert_tokens_to_ids(DNA_PLACEHOLDER)
    assert ph not in (None, text_tok.unk_token_id)
    assert text_tok(DNA_PLACEHOLDER)["input_ids"] == [ph]
    for text in (f"DNA: {DNA_PLACEHOLDER * 7} Annotation:", f"x{DNA_PLACEHOLDER}{DNA_PLACEHOLDER}y",
                 f"{DNA_PLACEHOLDER} {DNA_PLACEHOLDER}\n{DNA_PLACEHOLDER}"):
        ids = text_tok(text)["input_ids"]
        assert ids.count(ph) == text.count(DNA_PLACEHOLDER)
    assert DNA_PLACEHOLDER in text_tok.all_special_tokens


def test_text_tokenizer_round_trips_sentences(text_tok):
    for s in SENTENCES + UNSEEN + [" " + SENTENCES[0], SENTENCES[1] + "\n"]:
        ids = text_tok(s)["input_ids"]
        assert text_tok.unk_token_id not in ids
        assert text_tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False) == s
    assert len(text_tok(SENTENCES[0])["input_ids"]) < len(SENTENCES[0]) / 3  # learned merges
    # placeholders drop out of the decoded text
    ids = text_tok(f"{DNA_PLACEHOLDER * 3}{SENTENCES[2]}")["input_ids"]
    assert text_tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False) == SENTENCES[2]


def test_text_tokenizer_special_ids_and_no_automatic_bos_eos(text_tok):
    sp = TEXT_SPECIAL_TOKENS
    assert (text_tok.bos_token, text_tok.eos_token, text_tok.unk_token, text_tok.pad_token) == (
        sp["bos"], sp["eos"], sp["unk"], sp["pad"])
    assert [text_tok.bos_token_id, text_tok.eos_token_id, text_tok.unk_token_id,
            text_tok.pad_token_id, text_tok.convert_tokens_to_ids(DNA_PLACEHOLDER)] == [0, 1, 2, 3, 4]
    ids = text_tok(SENTENCES[0])["input_ids"]
    assert ids == text_tok(SENTENCES[0], add_special_tokens=False)["input_ids"]
    assert text_tok.bos_token_id not in ids and text_tok.eos_token_id not in ids
    batch = text_tok(["It is", SENTENCES[0]], padding=True)
    assert batch["input_ids"][0][-1] == text_tok.pad_token_id and batch["attention_mask"][0][-1] == 0


def test_text_tokenizer_training_is_deterministic(text_tok):
    again = train_text_tokenizer(SENTENCES * 5, vocab_size=400)
    assert trained_state(again) == trained_state(text_tok)


def test_both_tokenizers_save_and_load(dna_tok, text_tok, windows, tmp_path):
    dna_tok.save_pretrained(tmp_path / "dna")
    text_tok.save_pretrained(tmp_path / "text")
    dna = AutoTokenizer.from_pretrained(tmp_path / "dna")
    text = AutoTokenizer.from_pretrained(tmp_path / "text")
    assert dna(windows[:4])["input_ids"] == dna_tok(windows[:4])["input_ids"]
    assert (dna.cls_token_id, dna.sep_token_id, dna.pad_token_id, dna.mask_token_id,
            dna.model_max_length) == (dna_tok.cls_token_id, dna_tok.sep_token_id,
                                      dna_tok.pad_token_id, dna_tok.mask_token_id, 512)
    s = f"{DNA_PLACEHOLDER * 2} {SENTENCES[3]}"
    assert text(s)["input_ids"] == text_tok(s)["input_ids"]
    assert (text.bos_token_id, text.eos_token_id, text.pad_token_id, text.unk_token_id) == (0, 1, 3, 2)
    assert text.convert_tokens_to_ids(DNA_PLACEHOLDER) == 4 and DNA_PLACEHOLDER in text.all_special_tokens
    ids = text(SENTENCES[3])["input_ids"]
    assert text.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False) == SENTENCES[3]
    assert np.array_equal(dna("ACGTN")["input_ids"], dna_tok("ACGTN")["input_ids"])
