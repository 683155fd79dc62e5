"""Model + DNA sequences -> predictions, streamed batch by batch.

    SEQS.fa --iter_fasta--> (id, sequence) --[score_sequences per batch, with --splash]--> rows
    rows --processor (left-padded prompt)--> greedy generate --> sentence, confidence
         --processor (right-padded prompt)--> forward --> class head softmax --> dataset, dataset_prob
    sentence --parse_annotation--> chrom, gene, description, transcript_type, phenotype, dataset_from_text

Memory stays bounded by one batch: records are read lazily (pysam), predictions are written as
they come to a temporary file beside the output, which is renamed over it only at the end
(`io.atomic.atomic_write`), so an interrupted run never leaves a partial output behind.

Before any model work the FASTA is read once to validate it (cheap next to generation) and to
count the records for the progress bar: a bad record at the end of a large file is reported
before hours of annotation, naming the file, the record and the line.

Confidence is the mean log-probability of the generated tokens, up to and including the first
eos (<= 0; 0 = certain). It uses the raw next-token logits (`output_logits`), not the processed
`scores`, so it is the model's own probability whatever logits processors the LLM's generation
config may add (under plain greedy decoding they are the same).

The class head is run on a right-padded batch, as in training: the model's `forward` gives the
LLM no position ids, so a left-padded prompt would shift positions by the padding and make the
class probabilities depend on the other sequences of the batch. `generate` derives position ids
from the attention mask, so the left-padded generation batch is batch-invariant.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import logging
import math
import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pysam
import torch

from llamadna.constants import SPLASH_COLUMNS
from llamadna.errors import InputError
from llamadna.evaluate.parse import parse_annotation
from llamadna.io.atomic import atomic_write
from llamadna.io.text import is_gzip

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 16
DEFAULT_MAX_NEW_TOKENS = 96  # the template sentence is ~40-70 Llama tokens; room for long descriptions

PREDICTION_COLUMNS = [
    "id",
    "annotation",  # the generated sentence
    "dataset",  # class head: argmax label over model.config.class_labels
    "dataset_prob",  # class head: its softmax probability
    "dataset_from_text",  # the dataset the sentence itself names
    "chrom",
    "gene",
    "description",
    "transcript_type",
    "phenotype",
    "confidence",  # mean log-probability of the generated tokens (eos included)
]
OUTPUT_FORMATS = (".tsv", ".jsonl", ".gff3")
# Fields of the seed-faithful prompt (gene metadata); a FASTA has none of them.
SEED_FAITHFUL_FIELDS = ("gene_name", "gene_description", "phenotype")

# ---------------------------------------------------------------------------------------- FASTA
# A/C/G/T/N pass (upper-cased); IUPAC ambiguity codes (and U) become N; anything else is an error.
_IUPAC = "RYKMSWBDHVU"
_VALID = re.compile(f"[^ACGTN{_IUPAC}acgtn{_IUPAC.lower()}]")
_TO_UPPER_N = str.maketrans("acgtn" + _IUPAC + _IUPAC.lower(), "ACGTN" + "N" * (2 * len(_IUPAC)))
_HEAD_BYTES = 1 << 16
_SPLASH_CHUNK = 256  # records scored against the anchors at a time


@dataclass
class FastaRecord:
    id: str  # the header's first word
    sequence: str  # upper-case A/C/G/T/N


def _open_text(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def _check_head(path: Path) -> None:
    """Missing, empty, FASTQ or non-FASTA files, from the first non-blank line."""
    if not path.exists():
        raise InputError(path, "FASTA file not found")
    if path.stat().st_size == 0:
        raise InputError(path, "empty file (expected a FASTA of sequences)")
    try:
        with _open_text(path) as fh:
            head = fh.read(_HEAD_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(path, f"could not read the file: {exc}") from None
    for i, line in enumerate(head.split(b"\n"), start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith(b"@"):
            raise InputError(path, "this is FASTQ (a record starts with '@'); expected FASTA", line=i)
        if not line.startswith(b">"):
            raise InputError(path, "not FASTA: expected the first record's header ('>id') here",
                             line=i)
        return
    if len(head) < _HEAD_BYTES:  # (a longer blank head is left to the parser)
        raise InputError(path, "no FASTA records found (the file holds only blank lines)")


def _line_of(path: Path, index: int, offset: int | None = None) -> int | None:
    """1-based line of the header of record `index` (0-based, file order), or of its sequence
    offset `offset`. Streams the file; used on the error path only."""
    try:
        with _open_text(path) as fh:
            k, seen = -1, 0
            for i, line in enumerate(fh, start=1):
                if line.startswith(b">"):
                    k += 1
                    if k == index and offset is None:
                        return i
                    if k > index:
                        return None
                    seen = 0
                elif k == index:
                    n = len(line.rstrip(b"\r\n"))
                    if seen + n > offset:
                        return i
                    seen += n
    except (OSError, EOFError, zlib.error):
        return None
    return None


def _gzip_problem(path: Path) -> str | None:
    """A description of a damaged gzip stream, or None when it decompresses to the end."""
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(1 << 20):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        return f"truncated or corrupt gzip file ({exc}); was the download interrupted?"
    return None


def iter_fasta(path: str | Path) -> Iterator[FastaRecord]:
    """Validated records of a FASTA (plain or gzip), read lazily one at a time.

    Raises InputError naming the file and the record/line for: a missing or empty file, FASTQ,
    no records, a record without an id or without a sequence, a character other than
    A/C/G/T/N or an IUPAC ambiguity code (those become N), a duplicate id, a damaged gzip file.
    Only the ids seen so far are kept (to detect duplicates), never the sequences.
    """
    path = Path(path)
    _check_head(path)
    first_index: dict[str, int] = {}
    n = 0
    try:
        with pysam.FastxFile(str(path)) as fh:
            for rec in fh:
                name, seq = rec.name, rec.sequence or ""
                if rec.quality is not None:
                    raise InputError(path, "this is FASTQ (a record has qualities); expected FASTA",
                                     record=name, line=_line_of(path, n))
                if not name:
                    raise InputError(path, f"record {n + 1} has no id (a header must be '>id')",
                                     line=_line_of(path, n))
                if name in first_index:
                    raise InputError(
                        path, f"duplicate id (also record {first_index[name] + 1}): ids must be unique",
                        record=name, line=_line_of(path, n))
                first_index[name] = n
                if not seq:
                    raise InputError(path, "record has no sequence", record=name,
                                     line=_line_of(path, n))
                bad = _VALID.search(seq)
                if bad is not None:
                    off = bad.start()
                    raise InputError(
                        path, f"invalid character {seq[off]!r} at sequence position {off + 1}: "
                        "expected A, C, G, T, N or an IUPAC ambiguity code",
                        record=name, line=_line_of(path, n, off))
                n += 1
                yield FastaRecord(name, seq.translate(_TO_UPPER_N))
    except (OSError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        problem = _gzip_problem(path) if is_gzip(path) else None
        raise InputError(path, problem or f"could not parse FASTA after {n} records: {exc}") from None
    if n == 0:
        raise InputError(path, "no FASTA records found (expected lines starting with '>')")


def count_fasta(path: str | Path) -> int:
    """Validate the whole FASTA (see iter_fasta) and return its number of records."""
    return sum(1 for _ in iter_fasta(path))


# ---------------------------------------------------------------------------------------- model
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PROMPT_BUCKET = 64  # compiled generation: prompts left-padded to a multiple of this many tokens


def load_model(path: str | Path, device: str | torch.device | None = None, dtype: str | None = None,
               compile: bool = False):
    """A trained model directory (`save_pretrained` output with its processor), in eval mode on
    `device` (default: CUDA when available, else CPU), in `dtype` (float32, bfloat16 or
    float16; default float32; an 8/4-bit LLM keeps its quantized weights). `compile`: see
    `compile_generation`."""
    from llamadna.model.modeling import LlamaDNAForAnnotation

    path = Path(path)
    if not (path / "config.json").exists():
        raise InputError(path, "not a model directory (no config.json; expected a trained "
                         "LlamaDNAForAnnotation saved with save_pretrained)")
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    torch_dtype = DTYPES[dtype] if dtype else None
    model = LlamaDNAForAnnotation.from_pretrained(path, **({"dtype": torch_dtype} if torch_dtype else {}))
    if model.processor is None:
        raise InputError(path, "the model directory has no processor (processor_config.json and "
                         "the tokenizers); save the model with its processor attached")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cast = torch_dtype is not None and not model.config.llm_quantization  # LoRA, projector, head too
    model = model.to(device, torch_dtype) if cast else model.to(device)
    model.eval()
    if compile:
        compile_generation(model)
    return model


def compile_generation(model, bucket: int = PROMPT_BUCKET) -> None:
    """Faster generation for long runs: the LLM decodes with a static KV cache and its forward
    is compiled (torch.compile; CUDA graphs on a GPU). Prompts are then left-padded to a multiple
    of `bucket` tokens, so that a few shapes are compiled rather than one per batch. The first
    batches of each shape pay the compilation. Predictions are those of the plain path (tested)."""
    lm = model.language_model
    lm.generation_config.cache_implementation = "static"
    mode = "reduce-overhead" if model.device.type == "cuda" else None
    lm.forward = torch.compile(lm.forward, mode=mode, dynamic=False)
    model.prompt_bucket = bucket


def _left_pad_to_multiple(batch: dict[str, torch.Tensor], multiple: int, pad_id: int) -> dict:
    """Left-pad the (B, T) prompt tensors to T rounded up to `multiple`."""
    T = batch["input_ids"].shape[1]
    extra = -T % multiple
    if not extra:
        return batch
    fill = {"input_ids": pad_id, "attention_mask": 0, "prompt_mask": 0}
    out = dict(batch)
    for k, v in fill.items():
        if k in batch:
            out[k] = torch.nn.functional.pad(batch[k], (extra, 0), value=v)
    return out


def _batched(items: Iterable, n: int) -> Iterator[list]:
    it = iter(items)
    while batch := list(itertools.islice(it, n)):
        yield batch


def _check_rows(rows: Sequence[dict], prompt_mode: str) -> None:
    for row in rows:
        if "Sequence" not in row:
            raise ValueError("a row has no 'Sequence'")
        if prompt_mode == "seed-faithful":
            missing = [k for k in SEED_FAITHFUL_FIELDS if k not in row]
            if missing:
                raise ValueError(
                    f"the model was trained with seed-faithful prompts (gene metadata in the "
                    f"prompt), but a row has no {', '.join(missing)}")


@torch.inference_mode()
def predict_batch(model, rows: Sequence[dict], max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
                  ) -> list[dict]:
    """Predictions for one batch of rows (dicts with `Sequence` and the SPLASH columns).

    Returns one dict per row with PREDICTION_COLUMNS except `id`.
    """
    proc = model.processor
    tt = proc.text_tokenizer
    eos, dev = tt.eos_token_id, model.device
    keys = ("input_ids", "attention_mask", "dna_input_ids", "dna_attention_mask")

    gen_in = proc(rows, padding_side="left")
    if getattr(model, "prompt_bucket", None):  # compiled generation: a few prompt lengths only
        gen_in = _left_pad_to_multiple(gen_in, model.prompt_bucket, tt.pad_token_id)
    # class head on the prompt (positions follow the mask, so left padding is fine)
    cls_logits = model.classify(**{k: v.to(dev) for k, v in gen_in.items()}).float()  # (B, K)
    probs = torch.softmax(cls_logits, dim=-1)
    prob, label = probs.max(dim=-1)  # (B,)

    out = model.generate(
        **{k: gen_in[k].to(dev) for k in keys if k in gen_in}, max_new_tokens=max_new_tokens, do_sample=False,
        num_beams=1, eos_token_id=eos, pad_token_id=tt.pad_token_id, return_dict_in_generate=True,
        output_logits=True,
    )
    seqs = out.sequences  # (B, S) new tokens only (generation ran on inputs_embeds)
    logp = torch.stack([  # (B, S) log-probability of each generated token
        torch.log_softmax(step.float(), dim=-1).gather(1, seqs[:, t : t + 1]).squeeze(1)
        for t, step in enumerate(out.logits)
    ], dim=1)
    is_eos = seqs == eos
    keep = (is_eos.long().cumsum(1) - is_eos.long()) == 0  # (B, S) up to and including first eos
    confidence = (logp * keep).sum(1) / keep.sum(1)  # (B,)

    labels = model.config.class_labels
    preds = []
    for b in range(len(rows)):
        ids = seqs[b][keep[b] & ~is_eos[b]].tolist()
        text = " ".join(tt.decode(ids, skip_special_tokens=True).split())
        fields = parse_annotation(text)
        preds.append({
            "annotation": text,
            "dataset": labels[int(label[b])],
            "dataset_prob": float(prob[b]),
            "dataset_from_text": fields["dataset"],
            "chrom": fields["chrom"],
            "gene": fields["gene"],
            "description": fields["description"],
            "transcript_type": fields["transcript_type"],
            "phenotype": fields["phenotype"],
            "confidence": float(confidence[b]),
        })
    return preds


def iter_annotations(
    model, rows: Iterable[dict], batch_size: int = DEFAULT_BATCH_SIZE,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> Iterator[dict]:
    """Predictions (PREDICTION_COLUMNS) for rows read lazily, `batch_size` at a time.

    `id` is the row's `id` when it has one, else its position in `rows`. The model is put in
    eval mode for the call and given back in the mode it had.
    """
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError("batch_size and max_new_tokens must be >= 1")
    if getattr(model, "processor", None) is None:
        raise ValueError("the model has no processor attached (model.processor)")
    was_training = model.training
    model.eval()
    try:
        pos = 0
        for batch in _batched(rows, batch_size):
            _check_rows(batch, model.processor.prompt_mode)
            for row, pred in zip(batch, predict_batch(model, batch, max_new_tokens)):
                yield {"id": row.get("id", pos), **pred}
                pos += 1
    finally:
        model.train(was_training)


def annotate_rows(
    model, rows: Iterable[dict], batch_size: int = DEFAULT_BATCH_SIZE,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> list[dict]:
    """Predictions for dataset rows (dicts with `Sequence` and SPLASH_*; gene fields too for a
    seed-faithful model), e.g. `annotate_rows(model, df.filter(test).to_dicts())`.

    Returns one dict per row, in order, keyed by PREDICTION_COLUMNS (see iter_annotations).
    """
    return list(iter_annotations(model, rows, batch_size, max_new_tokens))


# ---------------------------------------------------------------------------------------- output
_GFF_SEQID_OK = re.compile(r"[a-zA-Z0-9.:^*$@!+_?\-|]")


def gff3_escape(value: str) -> str:
    """Percent-escape what GFF3 column 9 reserves: ; = & , % tab, newline, CR, control chars."""
    return "".join(f"%{ord(c):02X}" if c in ";=&,%" or ord(c) < 0x20 or ord(c) == 0x7F else c
                   for c in value)


def gff3_escape_seqid(value: str) -> str:
    """Percent-escape a GFF3 seqid: everything outside [a-zA-Z0-9.:^*$@!+_?-|]."""
    return "".join(c if _GFF_SEQID_OK.fullmatch(c) else
                   "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in value)


def _cell(value) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


class _TsvWriter:
    def __init__(self, fh: IO[str]):
        self.w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        self.w.writerow(PREDICTION_COLUMNS)

    def write(self, pred: dict, length: int) -> None:
        self.w.writerow([_cell(pred[c]) for c in PREDICTION_COLUMNS])


class _JsonlWriter:
    def __init__(self, fh: IO[str]):
        self.fh = fh

    def write(self, pred: dict, length: int) -> None:
        self.fh.write(json.dumps({c: pred[c] for c in PREDICTION_COLUMNS}) + "\n")


class _Gff3Writer:
    """One `region` feature per record, 1..len on the record itself (seqid = record id)."""

    def __init__(self, fh: IO[str]):
        self.fh = fh
        fh.write("##gff-version 3\n")

    def write(self, pred: dict, length: int) -> None:
        attrs = [("ID", str(pred["id"]))]
        if pred["gene"] is not None:
            attrs.append(("Name", pred["gene"]))
        attrs += [("Note", pred["annotation"]), ("dataset", pred["dataset"]),
                  ("dataset_prob", repr(pred["dataset_prob"]))]
        col9 = ";".join(f"{k}={gff3_escape(v)}" for k, v in attrs)
        cols = [gff3_escape_seqid(str(pred["id"])), "llamadna", "region", "1", str(length),
                repr(pred["confidence"]), ".", ".", col9]
        self.fh.write("\t".join(cols) + "\n")


_WRITERS = {".tsv": _TsvWriter, ".jsonl": _JsonlWriter, ".gff3": _Gff3Writer}


def output_format(path: str | Path) -> str:
    """The output format from the file suffix; a clear error for any other suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in _WRITERS:
        raise ValueError(f"{path}: unknown output format {suffix or '(no suffix)'!r}; "
                         f"expected one of {', '.join(OUTPUT_FORMATS)}")
    return suffix


# ---------------------------------------------------------------------------------------- FASTA job
def _fasta_rows(records: Iterable[FastaRecord], anchors, chunk: int) -> Iterator[dict]:
    """Records -> prompt rows with SPLASH scores (per-sequence rule of splash.annotate), a chunk
    of records at a time; without anchors the scores are null ("not available" in the prompt)."""
    from llamadna.splash.annotate import score_sequences

    for batch in _batched(records, chunk):
        if anchors is not None:
            sc = score_sequences([r.sequence for r in batch], anchors)
            cols = {c: sc[c].to_list() for c in SPLASH_COLUMNS}
        for i, r in enumerate(batch):
            row = {"id": r.id, "Sequence": r.sequence}
            row.update({c: cols[c][i] if anchors is not None else None for c in SPLASH_COLUMNS})
            yield row


def _read_anchors(spec: str | Path):
    """One anchors table; a FASTA carries no genome build, so per-build tables cannot apply."""
    from llamadna.splash.annotate import read_anchor_tables

    tables = read_anchor_tables(spec)
    if len(tables) != 1:
        raise ValueError("give one SPLASH anchors table for a FASTA (it carries no genome build)")
    return next(iter(tables.values()))


def annotate_fasta(
    model, fasta: str | Path, out: str | Path, splash: str | Path | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    progress: Callable[[int, int], None] | None = None, dtype: str | None = None,
    compile: bool = False,
) -> dict:
    """Annotate every record of a FASTA and write the predictions (.tsv, .jsonl or .gff3).

    Parameters
    ----------
    model : a LlamaDNAForAnnotation with its processor, or a model directory (see load_model;
        `dtype` and `compile` apply to a directory).
    fasta : FASTA of the sequences (plain or gzip); validated first (see iter_fasta).
    out : output path; the format comes from the suffix. Written atomically.
    splash : anchors TSV (`llamadna splash` output): SPLASH scores per sequence, as
        `splash-annotate` computes them; without it the prompt says "not available".
    progress : optional callback(records_done, records_total) after each batch.

    Returns
    -------
    summary : records, seconds, records_per_s, splash_scored (records with a tested anchor,
        None without --splash), output, format.
    """
    fmt = output_format(out)
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError("--batch-size and --max-new-tokens must be >= 1")
    anchors = _read_anchors(splash) if splash is not None else None
    total = count_fasta(fasta)
    if isinstance(model, (str, Path)):
        model = load_model(model, dtype=dtype, compile=compile)
    if model.processor is None:
        raise ValueError("the model has no processor attached (model.processor)")
    if model.processor.prompt_mode == "seed-faithful":
        raise ValueError(
            "this model was trained with seed-faithful prompts, which hold the gene's name, "
            "description and phenotype; a FASTA of unknown sequences has none of them. Annotate "
            "FASTA with a leak-free model (or dataset rows with annotate_rows)")
    start = time.perf_counter()
    stats = {"records": 0, "splash_scored": 0}

    def write(tmp: Path) -> None:
        # SPLASH matching is vectorised over a chunk of records; without it, one batch at a time
        chunk = max(batch_size, _SPLASH_CHUNK) if anchors is not None else batch_size
        rows = _fasta_rows(iter_fasta(fasta), anchors, chunk)
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = _WRITERS[fmt](fh)
            for batch in _batched(rows, batch_size):
                for row, pred in zip(batch, iter_annotations(model, batch, batch_size, max_new_tokens)):
                    writer.write(pred, len(row["Sequence"]))
                    stats["splash_scored"] += row["SPLASH_pval"] is not None
                stats["records"] += len(batch)
                if progress is not None:
                    progress(stats["records"], total)

    atomic_write(out, write)
    seconds = time.perf_counter() - start
    n = stats["records"]
    log.debug("annotated %d records in %.1f s (%.2f records/s) -> %s", n, seconds,
             n / seconds if seconds else math.inf, out)
    return {
        "records": n,
        "seconds": round(seconds, 3),
        "records_per_s": round(n / seconds, 3) if seconds else None,
        "splash_scored": stats["splash_scored"] if anchors is not None else None,
        "output": str(out),
        "format": fmt.lstrip("."),
    }


# ---------------------------------------------------------------------------------------- datasets
def predict_dataset(
    model_or_dir, dataset: str | Path, out: str | Path, split: str = "split_gene",
    subset: str = "test", limit: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, progress=None,
) -> dict:
    """Annotate one subset (train/val/test) of a dataset split and write a predictions TSV with
    the truth beside it: `id, reference, prediction, label_true, label_pred, label_prob,
    confidence` (the columns `llamadna score` reads) plus row context (chrom, gene_name, Dataset).
    """
    import polars as pl

    model = load_model(model_or_dir) if not hasattr(model_or_dir, "processor") else model_or_dir
    p = Path(dataset)
    p = p / "dataset.parquet" if p.is_dir() else p
    if not p.exists():
        raise InputError(p, "dataset not found (expected the output of `llamadna build-dataset`)")
    df = pl.read_parquet(p)
    if split not in df.columns:
        raise InputError(p, f"no split column {split!r}")
    rows = df.with_row_index("row").filter(pl.col(split) == subset)
    if limit is not None:
        rows = rows.head(limit)
    if rows.height == 0:
        raise InputError(p, f"no rows with {split} == {subset!r}")
    records = rows.to_dicts()
    t0 = time.perf_counter()
    preds = []
    for i, pred in enumerate(iter_annotations(model, records, batch_size, max_new_tokens)):
        r = records[i]
        preds.append({
            "id": f"{r['build']}:{r['variant_id']}:{r['row']}", "reference": r["Annotation"],
            "prediction": pred["annotation"], "label_true": r["Dataset"],
            "label_pred": pred["dataset"], "label_prob": pred["dataset_prob"],
            "label_from_text": pred["dataset_from_text"], "confidence": pred["confidence"],
            "build": r["build"], "chrom": r["chrom"], "gene_name": r["gene_name"],
        })
        if progress is not None:
            progress(i + 1, len(records))
    seconds = time.perf_counter() - t0
    table = pl.DataFrame(preds)
    atomic_write(out, lambda tmp: table.write_csv(tmp, separator="\t"))
    # examples for reading: the first row of each gene, up to 10 genes
    seen: set[str] = set()
    examples = [p for p in preds if not (p["gene_name"] in seen or seen.add(p["gene_name"]))][:10]
    return {"rows": len(preds), "seconds": round(seconds, 2),
            "records_per_s": round(len(preds) / seconds, 2), "output": str(out),
            "examples": examples}
