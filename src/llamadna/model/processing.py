"""`LlamaDNAProcessor`: owns both tokenizers, builds prompts and batches.

One DNA sequence becomes encoder chunks of at most `dna_chunk_tokens` tokens ([CLS] ... [SEP]
each); the prompt holds one `<dna>` placeholder per encoder token of all its chunks, which the
model replaces by the projected encoder states. Prompt layout (token ids):

    <s> "DNA:" <dna>*n " SPLASH effect 0.61, p-value 1.2e-03, entropy 0.60." [metadata] " Annotation:"
    target: " This sequence is part of ... dataset." </s>

The leak-free prompt carries only the sequence and the SPLASH scores; the seed-faithful prompt
adds gene name, description, phenotype and clinical significance, as the original poster's code
did (only to reproduce that setting).

With `retrieval` on, the leak-free prompt ends with the reference evidence a search of the
reference index found for the sequence (`row["evidence"]`: the retriever's candidates, best
first; never the row's own fields), the first worded like the sentence of its kind (gene or
intergenic), so that it can be copied, then how it was found (aligned: the share of the query
the alignment covers, its identity and the query's number of reference loci; else the cosine):

    ... " Reference evidence: [1] part of chr1 chromosome part of TUFT1 gene. This gene is
    described as tuftelin 1 and a protein coding transcript type. It is of skin fragility ...
    phenotype. Nearest known variant ClinVar, aligned 0.99 (whole) of it at identity 0.98
    (near-identical), 1 loci. [2] KRTAP5-1 gene on chr11, similar 0.41. [3] intergenic on chr21,
    aligned 0.20 (part) of it at identity 0.85 (close), 1 loci." " Annotation:"

    ... " Reference evidence: [1] part of chr21 chromosome between APP (12 kb) and no annotated
    gene; no gene contains it, aligned 1.00 (whole) of it at identity 0.99 (near-identical),
    1 loci." " Annotation:"

or " Reference evidence: no reference match." The share of the query aligned and the identity
are given as numbers and in words (a band each: constants.COVERAGE_WORDS, IDENTITY_WORDS), which
a small LM conditions on far more readily. `use_splash` False leaves the SPLASH text out (an
ablation). A retrieval model records the prompt wording it was trained on (`PROMPT_VERSION` in
processor_config.json); one trained on an older wording is refused: retrain it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from llamadna.constants import (
    COVERAGE_WORDS,
    DNA_PLACEHOLDER,
    IDENTITY_WORDS,
    IGNORE_INDEX,
    PROMPT_MODES,
    RETRIEVAL_K,
)
from llamadna.data.template import band_word, deciding_end, flank_text
from llamadna.errors import ConfigError, InputError
from llamadna.io.text import read_json_object
from llamadna.model.safe_loading import load_tokenizer

PROCESSOR_FILE = "processor_config.json"
NOT_AVAILABLE = "not available"
# The retrieval prompt's wording: 2 = outcome-aware evidence (candidate kinds, aligned fraction,
# identity, loci; issue 29); 3 = the aligned fraction and identity also in words (COVERAGE_WORDS,
# IDENTITY_WORDS). A retrieval model recording less (or none) read another prompt.
PROMPT_VERSION = 3


def _is_missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def splash_text(row: dict) -> str:
    """"SPLASH effect 0.61, p-value 1.2e-03, entropy 0.60" or "SPLASH scores not available"."""
    e, p, h = row.get("SPLASH_Effect"), row.get("SPLASH_pval"), row.get("SPLASH_entropy")
    if any(_is_missing(x) for x in (e, p, h)):
        return f"SPLASH scores {NOT_AVAILABLE}"
    return f"SPLASH effect {e:.2f}, p-value {p:.1e}, entropy {h:.2f}"


def _how_found(c: dict) -> str:
    """How a candidate was found: "aligned 0.99 (whole) of it at identity 0.98 (near-identical),
    1 loci" (COVERAGE_WORDS, IDENTITY_WORDS) or "similar 0.41"."""
    if c.get("identity") is not None:
        fraction, identity = float(c.get("aligned_fraction") or 0.0), float(c["identity"])
        return (f"aligned {fraction:.2f} ({band_word(fraction, COVERAGE_WORDS)}) of it at identity "
                f"{identity:.2f} ({band_word(identity, IDENTITY_WORDS)}), {int(c.get('loci') or 0)} loci")
    return f"similar {max(c.get('cosine') or 0.0, 0.0):.2f}"


def candidate_text(rank: int, c: dict) -> str:
    """One retrieved candidate in the prompt (`evidence_text`): the first in the words of its
    kind's sentence (a gene's annotation sentence, or the intergenic sentence: so the sentence to
    write is a copy of it, which even a small LM learns to make: an induction pattern), the
    others by gene (or "intergenic"), chromosome and how they were found."""
    intergenic = c.get("kind") == "intergenic"
    if rank > 1:
        what = "intergenic" if intergenic else f"{c.get('gene')} gene"
        return f" [{rank}] {what} on {c.get('chrom')}, {_how_found(c)}."
    if intergenic:
        left = flank_text(c.get("left_gene"), c.get("left_distance"))
        right = flank_text(c.get("right_gene"), c.get("right_distance"))
        return (f" [1] part of {c.get('chrom')} chromosome between {left} and {right}; no gene "
                f"contains it, {_how_found(c)}.")
    src = c.get("source") or NOT_AVAILABLE
    return (f" [1] part of {c.get('chrom')} chromosome part of {c.get('gene')} gene. This gene is "
            f"described as {c.get('description')} and a {c.get('transcript_type')} transcript type. "
            f"It is of {c.get('phenotype')} phenotype. Nearest known variant {src}, {_how_found(c)}.")


def evidence_text(candidates: Sequence[dict] | None) -> str:
    """The prompt's reference evidence: the candidates in rank order, or no match."""
    if not candidates:
        return " Reference evidence: no reference match."
    return " Reference evidence:" + "".join(candidate_text(i + 1, c) for i, c in enumerate(candidates))


def metadata_text(row: dict) -> str:
    """The seed-faithful prompt's extra fields (gene metadata, as the poster's code gave it)."""
    sig = row.get("clinical_significance") or "not provided"
    return (f" Gene {row['gene_name']}: {row['gene_description']}. Phenotype: {row['phenotype']}."
            f" Clinical significance: {sig}.")


class LlamaDNAProcessor:
    """Tokenizes DNA and prompt text into model inputs.

    Parameters
    ----------
    dna_tokenizer, text_tokenizer : Hugging Face tokenizers (text needs `<dna>`, bos, eos, pad).
    prompt_mode : "leak-free" or "seed-faithful".
    dna_chunk_tokens : encoder tokens per chunk, [CLS] and [SEP] included.
    """

    def __init__(
        self, dna_tokenizer: PreTrainedTokenizerBase, text_tokenizer: PreTrainedTokenizerBase,
        prompt_mode: str = "leak-free", dna_chunk_tokens: int = 512, use_dna: bool = True,
        retrieval: bool = False, use_splash: bool = True, evidence_k: int = RETRIEVAL_K,
        index: str | None = None,
    ):
        if prompt_mode not in PROMPT_MODES:
            raise ConfigError(f"prompt_mode must be one of {PROMPT_MODES}, got {prompt_mode!r}")
        self.dna_tokenizer = dna_tokenizer
        self.text_tokenizer = text_tokenizer
        self.prompt_mode = prompt_mode
        self.dna_chunk_tokens = dna_chunk_tokens
        self.use_dna = use_dna  # False: the no-DNA baseline (prompt only, same training)
        if retrieval and prompt_mode == "seed-faithful":
            raise ConfigError("retrieval puts retrieved gene fields in the prompt; the seed-faithful "
                              "prompt holds the row's own: use one or the other")
        self.retrieval = retrieval  # the prompt holds the retrieved reference evidence
        self.evidence_k = evidence_k  # candidates in the prompt (the first of row["evidence"])
        self.index = index  # the reference index the model was trained with (annotate's default)
        self.source: Path | None = None  # the processor_config.json it was loaded from
        self.use_splash = use_splash
        ph = text_tokenizer.convert_tokens_to_ids(DNA_PLACEHOLDER)
        if ph is None or ph == text_tokenizer.unk_token_id:
            raise ConfigError(f"the text tokenizer has no {DNA_PLACEHOLDER!r} token")
        self.placeholder_id = int(ph)
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if getattr(text_tokenizer, name) is None:
                raise ConfigError(f"the text tokenizer needs {name}")

    # ------------------------------------------------------------------ text
    def _text_ids(self, text: str) -> list[int]:
        return self.text_tokenizer(text, add_special_tokens=False)["input_ids"]

    def target_ids(self, sentence: str) -> list[int]:
        """A target sentence's tokens as they follow the prompt (after its "Annotation:"; no eos):
        what training teaches and generation writes."""
        return self._text_ids(" " + sentence)

    def deciding(self, target: str, prompt: int, length: int) -> list[int]:
        """A decision_mask row: 1 on the first of a target's `length` tokens (as `__call__`
        tokenizes it, after `prompt` tokens of prompt) that are the words deciding its outcome
        (`data.template.deciding_end`), 0 elsewhere (all 0 for a sentence of no outcome)."""
        end = deciding_end(target)
        n = min(len(self.target_ids(target[:end])), length) if end else 0
        return [0] * prompt + [1] * n + [0] * (length - n)

    def prompt_parts(self, row: dict) -> tuple[str, str]:
        """Text before and after the DNA placeholders."""
        after = f" {splash_text(row)}." if self.use_splash else ""
        if self.prompt_mode == "seed-faithful":
            after += metadata_text(row)
        if self.retrieval:
            if "evidence" not in row:
                raise ValueError("this model reads reference evidence: the row has no 'evidence' "
                                 "(attach the retriever's candidates, annotate --index)")
            after += evidence_text(row["evidence"][: self.evidence_k])
        return "DNA:", after + " Annotation:"

    def prompt_text(self, row: dict, n_dna: int = 1) -> str:
        """The prompt as text (for inspection and tests)."""
        before, after = self.prompt_parts(row)
        return before + DNA_PLACEHOLDER * n_dna + after

    # ------------------------------------------------------------------ DNA
    def dna_chunks(self, sequence: str) -> list[list[int]]:
        """Encoder token ids of one sequence, split into [CLS] ... [SEP] chunks."""
        tok = self.dna_tokenizer
        ids = tok(sequence.upper(), add_special_tokens=False)["input_ids"]
        body = self.dna_chunk_tokens - 2
        pieces = [ids[i : i + body] for i in range(0, max(len(ids), 1), body)]
        return [[tok.cls_token_id, *p, tok.sep_token_id] for p in pieces]

    # ------------------------------------------------------------------ batches
    def __call__(
        self, rows: Sequence[dict], targets: Sequence[str] | None = None,
        class_ids: Sequence[int] | None = None, padding_side: str = "right",
        with_dna: bool | None = None, decision_mask: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Batch of model inputs.

        rows : dicts with `Sequence` and the SPLASH columns (plus gene fields in seed-faithful mode).
        targets : annotation sentences (training); None for generation (prompt only).
        padding_side : "right" for training, "left" for generation.
        with_dna : False builds the no-DNA baseline's prompt (no placeholders, no encoder input);
            default: the processor's `use_dna`.
        decision_mask : with targets (training), also the target tokens that decide each outcome.

        Returns input_ids, attention_mask, prompt_mask (B, T); labels (B, T) when targets, and
        decision_mask (B, T; `deciding`) when asked;
        class_labels (B,) when class_ids; dna_input_ids, dna_attention_mask (C, L) with chunks
        in sample order.
        """
        tt = self.text_tokenizer
        with_dna = self.use_dna if with_dna is None else with_dna
        seqs, chunks = [], []
        for row in rows:
            ch = self.dna_chunks(row["Sequence"]) if with_dna else []
            chunks.extend(ch)
            seqs.append(sum(len(c) for c in ch))
        ids, labels, pmask, decide = [], [], [], []
        for i, row in enumerate(rows):
            before, after = self.prompt_parts(row)
            p = ([tt.bos_token_id] + self._text_ids(before) + [self.placeholder_id] * seqs[i]
                 + self._text_ids(after))
            t = [] if targets is None else self.target_ids(targets[i]) + [tt.eos_token_id]
            ids.append(p + t)
            labels.append([IGNORE_INDEX] * len(p) + t)
            pmask.append([1] * len(p) + [0] * len(t))
            if targets is not None and decision_mask:
                decide.append(self.deciding(targets[i], len(p), len(t)))
        T = max(len(x) for x in ids)

        def pad(seq: list[int], value: int) -> list[int]:
            fill = [value] * (T - len(seq))
            return fill + seq if padding_side == "left" else seq + fill

        out = {
            "input_ids": torch.tensor([pad(x, tt.pad_token_id) for x in ids]),
            "attention_mask": torch.tensor([pad([1] * len(x), 0) for x in ids]),
            "prompt_mask": torch.tensor([pad(m, 0) for m in pmask]),
        }
        if targets is not None:
            out["labels"] = torch.tensor([pad(x, IGNORE_INDEX) for x in labels])
        if decide:
            out["decision_mask"] = torch.tensor([pad(x, 0) for x in decide], dtype=torch.bool)
        if class_ids is not None:
            out["class_labels"] = torch.tensor(list(class_ids), dtype=torch.long)
        if with_dna:
            L = max(len(c) for c in chunks)
            pad_id = self.dna_tokenizer.pad_token_id
            out["dna_input_ids"] = torch.tensor([c + [pad_id] * (L - len(c)) for c in chunks])
            out["dna_attention_mask"] = torch.tensor([[1] * len(c) + [0] * (L - len(c)) for c in chunks])
        return out

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, directory: str | Path) -> None:
        d = Path(directory)
        self.dna_tokenizer.save_pretrained(d / "dna_tokenizer")
        self.text_tokenizer.save_pretrained(d / "text_tokenizer")
        self.save_config(d)

    def save_config(self, directory: str | Path, home: str | Path | None = None) -> None:
        """processor_config.json in `directory`. The index is recorded relative to the model
        directory, so that a model and its index moved together still find each other; `home`:
        that directory when the files are written elsewhere first (default: `directory`)."""
        d = Path(directory)
        index = absolute = None
        if self.index:  # both resolved: a link in either is followed
            absolute = str(Path(self.index).resolve())
            index = os.path.relpath(absolute, Path(home or d).resolve())
        (d / PROCESSOR_FILE).write_text(json.dumps(
            {"prompt_mode": self.prompt_mode, "dna_chunk_tokens": self.dna_chunk_tokens,
             "use_dna": self.use_dna, "retrieval": self.retrieval, "use_splash": self.use_splash,
             "evidence_k": self.evidence_k, "index": index, "prompt_version": PROMPT_VERSION,
             # where it was, for a model moved without its index
             "index_absolute": absolute},
            indent=1))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> LlamaDNAProcessor:
        d = Path(directory)
        cfg = read_processor_config(d / PROCESSOR_FILE)
        _check_prompt_version(d / PROCESSOR_FILE, cfg)
        processor = cls(
            load_tokenizer(d / "dna_tokenizer"),  # never code: model.safe_loading
            load_tokenizer(d / "text_tokenizer"),
            prompt_mode=cfg["prompt_mode"], dna_chunk_tokens=cfg["dna_chunk_tokens"],
            use_dna=cfg.get("use_dna", True), retrieval=cfg.get("retrieval", False),
            use_splash=cfg.get("use_splash", True), evidence_k=cfg.get("evidence_k", RETRIEVAL_K),
            index=recorded_index(d, cfg),
        )
        processor.source = d / PROCESSOR_FILE
        return processor


def _check_prompt_version(path: Path, cfg: dict) -> None:
    """A retrieval model trained on an older prompt wording (no `prompt_version`, or one below
    PROMPT_VERSION) would read evidence worded otherwise than it learned: InputError, retrain.
    Models without retrieval read no evidence and load whatever they record."""
    version = cfg.get("prompt_version")
    if cfg.get("retrieval") and (not isinstance(version, int) or version < PROMPT_VERSION):
        recorded = version if isinstance(version, int) else "none recorded"
        raise InputError(path, f"this retrieval model was trained on an older prompt wording (prompt_version "
                         f"{recorded}; now {PROMPT_VERSION}: outcome-aware evidence, the alignment in "
                         "words): retrain it with `llamadna train`")


def recorded_index(directory: Path, cfg: dict) -> str | None:
    """The index a model directory's processor_config.json (`cfg`) records: relative to the
    directory (an older model's is absolute, which `/` keeps); `..` taken from the resolved
    directory, where `save_config` counted it. Not there, but at the absolute path recorded
    beside it: a model moved without its index."""
    index, absolute = cfg.get("index"), cfg.get("index_absolute")
    if not index:
        return None
    found = os.path.normpath(directory.resolve() / index)
    if not Path(found).is_dir() and isinstance(absolute, str) and Path(absolute).is_dir():
        return absolute
    return found


def read_processor_config(path: Path) -> dict:
    """processor_config.json: valid JSON holding the settings the processor cannot do without."""
    restore = "restore it from the directory `llamadna train` wrote"
    cfg = read_json_object(path, restore)
    need = {"prompt_mode": str, "dna_chunk_tokens": int}
    bad = [k for k, t in need.items() if not isinstance(cfg.get(k), t)]
    if not bad and cfg.get("index") is not None and not isinstance(cfg["index"], str):
        bad = ["index"]
    if bad:
        raise InputError(path, f"{', '.join(bad)} missing or of the wrong type: {restore}")
    return cfg
