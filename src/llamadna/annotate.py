"""Model + DNA sequences -> predictions, streamed batch by batch.

    SEQS.fa --io.fasta.iter_fasta--> records --tiles (longer than --tile)--> rows
    rows --[splash.scores per chunk, with --splash]--> rows with SPLASH scores
    rows --processor (left-padded prompt)--> class head softmax --> source, source_prob
                                         --> greedy generate --> sentence, confidence
    [retrieval model, decoding "grounded"] the candidate whose gene the greedy sentence names,
        else the one the model scores highest --> that candidate's sentence (`_ground`)
    [retrieval model, decoding "rerank"] greedy sentence vs the top candidate's sentence
                                         --> the one the model scores higher (`_rerank`)
    sentence --data.template.parse_annotation--> chrom, gene, description, transcript_type,
                                                 phenotype, source_from_text
    predictions --io.predictions writer--> .tsv / .jsonl / .gff3

Memory stays bounded by one batch: records are read lazily, predictions are written as they
come to a temporary file beside the output, which is renamed over it only at the end
(`io.atomic.atomic_write`), so an interrupted run never leaves a partial output behind.

Before any model work the FASTA is read once to validate it (cheap next to generation) and to
count the records for the progress bar: a bad record at the end of a large file is reported
before hours of annotation, naming the file, the record and the line.

Confidence is the mean log-probability of the generated tokens, up to and including the first
eos (<= 0; 0 = certain). It uses the raw next-token logits (`output_logits`), not the processed
`scores`, so it is the model's own probability whatever logits processors the LLM's generation
config may add (under plain greedy decoding they are the same). Grounded decoding stops a row
with evidence once it has named a gene (`GeneNamed`): its confidence is over the tokens up to
there, or, where no candidate has the name, the kept candidate sentence's (`_ground`).

The class head runs on the left-padded generation prompt: `classify` derives the LLM's position
ids from the attention mask, so padding changes neither the positions nor the probabilities.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch

from llamadna.constants import (
    DECODINGS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_DECODING,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_TILE,
    MODEL_PASS_ROWS,
    PREDICTION_COLUMNS,
    SEED_FAITHFUL_FIELDS,
    SPLASH_COLUMNS,
)
from llamadna.data.template import annotation_sentence, parse_annotation
from llamadna.errors import ConfigError, InputError
from llamadna.io.atomic import atomic_write
from llamadna.io.fasta import FastaRecord, iter_fasta
from llamadna.io.predictions import output_format, prediction_writer
from llamadna.model.loading import load_model, pad_to_bucket
from llamadna.progress import Progress, no_progress

log = logging.getLogger(__name__)

_SPLASH_CHUNK = 256  # records scored against the anchors at a time


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


def _check_context(model, rows: Sequence[dict], prompt_lengths: torch.Tensor, max_new_tokens: int) -> None:
    """A prompt plus the tokens to generate must fit the LLM's positions: never run past them
    silently (the positions beyond are untrained and the sentence comes out malformed)."""
    limit = getattr(model.language_model.config, "max_position_embeddings", None)
    worst = int(prompt_lengths.argmax())
    need = int(prompt_lengths[worst]) + max_new_tokens
    if limit is not None and need > limit:
        name = rows[worst].get("id", worst)
        raise ConfigError(
            f"sequence {name!r}: its prompt holds {int(prompt_lengths[worst])} tokens; with "
            f"{max_new_tokens} new tokens that is {need}, past the LLM's {limit} positions. Annotate "
            "it in shorter pieces (annotate --tile) or lower --max-new-tokens")


def check_decoding(decoding: str) -> None:
    if decoding not in DECODINGS:
        raise ConfigError(f"--decoding must be one of {', '.join(DECODINGS)}, got {decoding!r}")


def candidate_sentence(candidate: dict, source: str) -> str:
    """The annotation sentence a reference candidate's own fields make (`source`: the database
    named at its end, which a candidate does not have: the model's own)."""
    return annotation_sentence(
        chrom=candidate.get("chrom"), gene_name=candidate.get("gene"),
        gene_description=candidate.get("description"), transcript_type=candidate.get("transcript_type"),
        phenotype=candidate.get("phenotype"), Dataset=source)


def _rerank(model, rows: Sequence[dict], texts: list[str], confidence: torch.Tensor,
            finished: torch.Tensor, head_labels: list[str]) -> tuple[list[str], torch.Tensor]:
    """`decoding="rerank"`: per row, the greedy sentence or the top candidate's sentence
    (`candidate_sentence`, with the source the greedy sentence names, else the class head's),
    whichever has the higher mean log-probability per token (eos included) under the model;
    a greedy sentence that ran out of tokens without eos always gives way. Returns the chosen
    sentences and their mean log-probabilities (the confidence)."""
    alt = {}
    for b, row in enumerate(rows):
        ev = row.get("evidence") or []
        if ev:
            src = parse_annotation(texts[b])["source"] or head_labels[b]
            sentence = candidate_sentence(ev[0], src)
            if sentence != texts[b]:
                alt[b] = sentence
    if not alt:
        return texts, confidence
    idx = sorted(alt)
    mean = _score_sentences(model, [rows[b] for b in idx], [alt[b] for b in idx],
                            len(rows)).to(confidence.device)
    texts, confidence = list(texts), confidence.clone()
    for j, b in enumerate(idx):
        if not bool(finished[b]) or float(mean[j]) > float(confidence[b]):
            texts[b], confidence[b] = alt[b], mean[j]
    return texts, confidence


class GeneNamed:
    """Stop for grounded decoding: a row (of those `active`) is done once its new tokens have
    named a gene (the template's gene clause, "... chromosome part of NAME gene", is closed):
    what follows comes from the candidate that has that gene (`_ground`). Called with the new
    tokens so far (B, t), returns the rows to stop now; `kept` gives each row's tokens to keep."""

    def __init__(self, tokenizer, active: Sequence[bool]):
        self.tokenizer = tokenizer
        self.active = list(active)
        self.length = [None] * len(self.active)  # new tokens of a stopped row

    def __call__(self, seqs: torch.Tensor) -> torch.Tensor:
        now = torch.zeros(len(seqs), dtype=torch.bool)
        for b, on in enumerate(self.active):
            if on and self.length[b] is None:
                text = self.tokenizer.decode(seqs[b].tolist(), skip_special_tokens=True)
                if parse_annotation(text)["gene"] is not None:
                    self.length[b], now[b] = seqs.shape[1], True
        return now

    def kept(self, steps: int) -> torch.Tensor:
        """(B, steps) bool: the positions before each stopped row's stop (all for the others)."""
        ends = torch.tensor([steps if n is None else n for n in self.length])
        return torch.arange(steps)[None, :] < ends[:, None]


def _score_sentences(model, rows: Sequence[dict], sentences: Sequence[str],
                     batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """Mean log-probability per token (eos included) of each row's target sentence under the
    model (teacher forcing, the distribution generation samples from), `batch_size` sentences
    per forward pass: a batch of rows with k candidates each holds up to k x its rows to score,
    and one pass over them all would make peak memory grow with k and with the worst batch of a
    long run."""
    means = []
    for a in range(0, len(rows), max(1, batch_size)):
        batch = model.processor(list(rows[a : a + batch_size]), targets=list(sentences[a : a + batch_size]),
                                padding_side="left")
        total, count = model.target_log_probs(**{k: v.to(model.device) for k, v in batch.items()})
        means.append(total / count.clamp(min=1))
    return torch.cat(means)


def _ground(model, rows: Sequence[dict], texts: list[str], confidence: torch.Tensor,
            head_labels: list[str]) -> tuple[list[str], torch.Tensor]:
    """`decoding="grounded"`: per row with reference evidence, the sentence of one candidate
    (`candidate_sentence`, with the source the greedy sentence names, else the class head's):
    the candidate whose gene the greedy sentence names (the same chromosome first), its
    confidence the greedy sentence's; when no candidate has that gene (a name broken off or
    mis-copied: "CCDC74" for "CCDC74BP1"), the candidate whose sentence the model scores highest
    (mean log-probability per token), its confidence that score. Rows without evidence keep the
    greedy sentence. Returns the sentences and their confidences."""
    texts, confidence = list(texts), confidence.clone()
    scored: list[tuple[int, str]] = []  # (row, candidate sentence) for rows naming no candidate
    for b, row in enumerate(rows):
        ev = row.get("evidence") or []
        if not ev:
            continue
        fields = parse_annotation(texts[b])
        src = fields["source"] or head_labels[b]
        named = [c for c in ev if fields["gene"] and c.get("gene") == fields["gene"]]
        if named:
            same = [c for c in named if c.get("chrom") == fields["chrom"]]
            texts[b] = candidate_sentence((same or named)[0], src)
        else:
            scored += [(b, candidate_sentence(c, src)) for c in ev]
    if scored:
        # k candidates a row: scored as many at a time as the batch holds rows
        mean = _score_sentences(model, [rows[b] for b, _ in scored], [s for _, s in scored],
                                len(rows))
        mean = mean.to(confidence.device)
        best: dict[int, int] = {}
        for j, (b, _) in enumerate(scored):
            if b not in best or float(mean[j]) > float(mean[best[b]]):
                best[b] = j
        for b, j in best.items():
            texts[b], confidence[b] = scored[j][1], mean[j]
    return texts, confidence


@torch.inference_mode()
def predict_batch(model, rows: Sequence[dict], max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                  decoding: str = DEFAULT_DECODING) -> list[dict]:
    """Predictions for one batch of rows (dicts with `Sequence` and the SPLASH columns).
    `decoding`: one of DECODINGS (constants.py); "rerank" and "grounded" apply to retrieval models only.

    Returns one dict per row with PREDICTION_COLUMNS except `id`.
    """
    check_decoding(decoding)
    proc = model.processor
    tt = proc.text_tokenizer
    eos, dev = tt.eos_token_id, model.device
    if proc.retrieval and any("evidence" not in r for r in rows):
        rows = with_evidence(model, rows)  # the retriever takes the whole batch at once
    if len(rows) > MODEL_PASS_ROWS:  # the model passes a few rows at a time: memory bounded by those
        return [p for a in range(0, len(rows), MODEL_PASS_ROWS)
                for p in predict_batch(model, rows[a : a + MODEL_PASS_ROWS], max_new_tokens, decoding)]

    gen_in = proc(rows, padding_side="left")
    _check_context(model, rows, gen_in["attention_mask"].sum(1), max_new_tokens)
    if getattr(model, "prompt_bucket", None):  # compiled generation: a few prompt lengths only
        gen_in = pad_to_bucket(gen_in, model.prompt_bucket, tt.pad_token_id)
    # one pass over the prompt: generation, and the class head on its prefill states (positions
    # follow the mask, so left padding is fine)
    # grounded: a row with evidence stops once it has named a gene (the candidate gives the rest)
    stop = (GeneNamed(tt, [bool(r.get("evidence")) for r in rows])
            if decoding == "grounded" and proc.retrieval else None)
    out, cls_logits = model.generate_with_class(
        **{k: v.to(dev) for k, v in gen_in.items()}, max_new_tokens=max_new_tokens, do_sample=False,
        num_beams=1, eos_token_id=eos, pad_token_id=tt.pad_token_id, output_logits=True, stop=stop,
    )
    probs = torch.softmax(cls_logits.float(), dim=-1)  # (B, K)
    prob, label = probs.max(dim=-1)  # (B,)
    seqs = out.sequences  # (B, S) new tokens only (generation ran on inputs_embeds)
    logp = torch.stack([  # (B, S) log-probability of each generated token
        torch.log_softmax(step.float(), dim=-1).gather(1, seqs[:, t : t + 1]).squeeze(1)
        for t, step in enumerate(out.logits)
    ], dim=1)
    is_eos = seqs == eos
    keep = (is_eos.long().cumsum(1) - is_eos.long()) == 0  # (B, S) up to and including first eos
    if stop is not None:  # a stopped row: its tokens up to the stop
        keep &= stop.kept(seqs.shape[1]).to(keep.device)
    confidence = (logp * keep).sum(1) / keep.sum(1)  # (B,)

    labels = model.config.class_labels
    texts = [" ".join(tt.decode(seqs[b][keep[b] & ~is_eos[b]].tolist(), skip_special_tokens=True).split())
             for b in range(len(rows))]
    if decoding != "greedy" and proc.retrieval:
        heads = [labels[int(i)] for i in label]
        if decoding == "rerank":
            texts, confidence = _rerank(model, rows, texts, confidence, is_eos.any(1), heads)
        else:
            texts, confidence = _ground(model, rows, texts, confidence, heads)
    calibration = getattr(model, "calibration", None)
    preds = []
    for b in range(len(rows)):
        text = texts[b]
        fields = parse_annotation(text)
        top = (rows[b].get("evidence") or [None])[0] if proc.retrieval else None
        preds.append({
            "annotation": text,
            "source": labels[int(label[b])],
            "source_prob": float(prob[b]),
            "source_from_text": fields["source"],
            "chrom": fields["chrom"],
            "gene": fields["gene"],
            "description": fields["description"],
            "transcript_type": fields["transcript_type"],
            "phenotype": fields["phenotype"],
            "confidence": float(confidence[b]),
            "gene_confidence": (calibration.gene_confidence(float(confidence[b]), fields["gene"],
                                                            rows[b]["evidence"])
                                if calibration is not None else None),
            "evidence_gene": top["gene"] if top else None,
            "evidence_score": top["score"] if top else None,
            "evidence_via": top["via"] if top else None,
        })
    return preds


def use_index(model, index=None, encoder=None):
    """Give a retrieval model its retriever: on `index` (a `llamadna index` directory, or a loaded
    `ReferenceIndex`, e.g. a user's own reference), else on the index it was trained with (kept
    beside the model as training left them: the model records it relative to its directory).
    `encoder`: the index's DNA encoder directory, when it is no longer where the index records it.
    Returns the retriever (None for a model without retrieval)."""
    from llamadna.retrieve.index import ReferenceIndex
    from llamadna.retrieve.retriever import Retriever

    proc = model.processor
    if not proc.retrieval:
        if index is not None:
            raise ConfigError("this model was trained without reference evidence: --index does not apply")
        return None
    if index is None:
        if not proc.index:
            raise ConfigError("the model records no reference index: give one (--index)")
        index = _trained_index(proc)
    if not isinstance(index, ReferenceIndex):
        index = ReferenceIndex.load(index)
    model.retriever = Retriever(index, index.encoder_dir(encoder), k=proc.evidence_k)
    return model.retriever


def _trained_index(proc) -> str:
    """The index a retrieval model was trained with, where it is now: as processor_config.json
    records it (relative to the model directory; a model from before that records it absolute,
    and its train_config.json holds `--index` and `--out` as given, so the index is also found
    where it sits relative to a moved model as it did at training). Not found: InputError naming
    --index."""
    import json

    found = proc.index
    if not Path(found).is_dir() and proc.source is not None:
        try:
            given = json.loads((proc.source.parent / "train_config.json").read_text())
            index, out = Path(given["index"]), Path(given["out"])
        except (OSError, ValueError, KeyError, TypeError):
            index = out = None
        if index is not None and index.is_absolute() == out.is_absolute():
            beside = os.path.normpath(proc.source.parent.resolve() / os.path.relpath(index, out))
            found = beside if Path(beside).is_dir() else found
    if not Path(found).is_dir():
        raise InputError(proc.source or "the model",
                         f"the reference index this model was trained with, {os.path.normpath(proc.index)}, "
                         "does not exist (moved without it?): pass the index directory with --index DIR")
    return found


def with_evidence(model, rows: Sequence[dict]) -> list[dict]:
    """Rows with the reference evidence of their sequence (`evidence`), found by the model's
    retriever (`use_index`; the index it was trained with unless another was given)."""
    from llamadna.retrieve.retriever import attach_evidence

    retriever = getattr(model, "retriever", None) or use_index(model)
    return attach_evidence(rows, retriever([r["Sequence"] for r in rows]))


def iter_annotations(
    model, rows: Iterable[dict], batch_size: int = DEFAULT_BATCH_SIZE,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, decoding: str = DEFAULT_DECODING,
) -> Iterator[dict]:
    """Predictions (PREDICTION_COLUMNS) for rows read lazily, `batch_size` at a time.

    `id` is the row's `id` when it has one, else its position in `rows`. The model is put in
    eval mode for the call and given back in the mode it had.
    """
    if batch_size < 1 or max_new_tokens < 1:
        raise ConfigError("batch_size and max_new_tokens must be >= 1")
    if getattr(model, "processor", None) is None:
        raise ValueError("the model has no processor attached (model.processor)")
    was_training = model.training
    model.eval()
    try:
        pos = 0
        for batch in _batched(rows, batch_size):
            _check_rows(batch, model.processor.prompt_mode)
            for row, pred in zip(batch, predict_batch(model, batch, max_new_tokens, decoding)):
                yield {"id": row.get("id", pos), **pred}
                pos += 1
    finally:
        model.train(was_training)


def annotate_rows(
    model, rows: Iterable[dict], batch_size: int = DEFAULT_BATCH_SIZE,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, decoding: str = DEFAULT_DECODING,
) -> list[dict]:
    """Predictions for dataset rows (dicts with `Sequence` and SPLASH_*; gene fields too for a
    seed-faithful model), e.g. `annotate_rows(model, df.filter(test).to_dicts())`.

    Returns one dict per row, in order, keyed by PREDICTION_COLUMNS (see iter_annotations).
    """
    return list(iter_annotations(model, rows, batch_size, max_new_tokens, decoding))


def tiles(length: int, tile: int) -> list[tuple[int, int]]:
    """[start, end) 0-based spans a record of `length` bases is annotated in: the whole record
    when it fits in one tile, else consecutive tiles of `tile` bases, the last shifted inside so
    that every tile has the full length (as dataset windows are)."""
    if length <= tile:
        return [(0, length)]
    starts = list(range(0, length - tile + 1, tile))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return [(s, s + tile) for s in starts]


def _tile_rows(records: Iterable[FastaRecord], tile: int) -> Iterator[dict]:
    """One row per tile: `id` (the record's id, `id:start-end` when it has several tiles),
    `record`, 1-based inclusive `start`/`end` on the record, and the tile's `Sequence`."""
    for r in records:
        seq = r.sequence
        spans = tiles(len(seq), tile)
        for s, e in spans:
            rid = r.id if len(spans) == 1 else f"{r.id}:{s + 1}-{e}"
            yield {"id": rid, "record": r.id, "start": s + 1, "end": e, "Sequence": seq[s:e]}


def _fasta_rows(rows: Iterable[dict], anchors, chunk: int) -> Iterator[dict]:
    """Tile rows with SPLASH scores (the per-sequence rule of splash.scores), a chunk of rows at
    a time; without anchors the scores are null ("not available" in the prompt)."""
    from llamadna.splash.scores import score_sequences

    for batch in _batched(rows, chunk):
        if anchors is not None:
            sc = score_sequences([r["Sequence"] for r in batch], anchors)
            cols = {c: sc[c].to_list() for c in SPLASH_COLUMNS}
        for i, row in enumerate(batch):
            row.update({c: cols[c][i] if anchors is not None else None for c in SPLASH_COLUMNS})
            yield row


def _survey(fasta: str | Path, tile: int) -> dict:
    """Validate the whole FASTA before any model work (a bad record at the end of a large file
    is reported first) and count records, tiles, the bases read differently from written and the
    tiles without any A/C/G/T base (`first_all_n`: the first such record's id and line)."""
    n = {"records": 0, "tiles": 0, "u_to_t": 0, "iupac_to_n": 0, "all_n_tiles": 0}
    for rec in iter_fasta(fasta):
        spans = tiles(len(rec.seq), tile)
        n["records"] += 1
        n["tiles"] += len(spans)
        n["u_to_t"] += rec.u_to_t
        n["iupac_to_n"] += rec.iupac
        all_n = sum(rec.seq.count(b"N", s, e) == e - s for s, e in spans)
        if all_n and not n["all_n_tiles"]:
            n["first_all_n"] = (rec.id, rec.line)
        n["all_n_tiles"] += all_n
    return n


# What the `skipped` column says of a tile that was not given to the model: a tile of N only
# tells it nothing, and any sentence it wrote would be made up (a gene claim without evidence).
NO_BASE = "no A/C/G/T base (all N): not annotated"


def _has_base(seq: str) -> bool:
    """Whether a tile (upper-case A/C/G/T/N) holds any A, C, G or T."""
    return seq.count("N") < len(seq)


def _annotate_tiles(model, batch: list[dict], batch_size: int, max_new_tokens: int,
                    decoding: str) -> Iterator[tuple[dict, dict]]:
    """(row, prediction with `skipped`) for one batch of tile rows, in order. A tile without any
    A/C/G/T base is not given to the model: its prediction has empty fields and `skipped` says
    why, so the output keeps one row per tile."""
    todo = [r for r in batch if _has_base(r["Sequence"])]
    preds = iter(annotate_rows(model, todo, batch_size, max_new_tokens, decoding))
    for row in batch:
        if _has_base(row["Sequence"]):
            yield row, {**next(preds), "skipped": None}
        else:
            yield row, {**dict.fromkeys(PREDICTION_COLUMNS), "id": row["id"], "skipped": NO_BASE}


def _read_anchors(spec: str | Path):
    """One anchors table; a FASTA carries no genome build, so per-build tables cannot apply."""
    from llamadna.splash.scores import read_anchor_tables

    tables = read_anchor_tables(spec)
    if len(tables) != 1:
        raise ConfigError("give one SPLASH anchors table for a FASTA (it carries no genome build)")
    return next(iter(tables.values()))


def annotate_fasta(
    model, fasta: str | Path, out: str | Path, splash: str | Path | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    progress: Progress = no_progress, tile: int = DEFAULT_TILE, decoding: str = DEFAULT_DECODING,
) -> dict:
    """Annotate every record of a FASTA and write the predictions (.tsv, .jsonl or .gff3).

    A record longer than `tile` bases is annotated tile by tile (`tiles`): one prediction per
    tile, with its start and end on the record, so that a long sequence never overflows the
    LLM's context and each part of it gets its own annotation.

    Parameters
    ----------
    model : a LlamaDNAForAnnotation with its processor, a model directory, or a function
        returning a model (e.g. `load_model` with options), called once the FASTA is validated:
        a bad input fails before the model loads.
    fasta : FASTA of the sequences (plain or gzip); validated first (see iter_fasta).
    out : output path; the format comes from the suffix. Written atomically.
    splash : anchors TSV (`llamadna splash` output): SPLASH scores per sequence, as
        `splash-scores` computes them; without it the prompt says "not available".
    progress : callback("annotate", tiles_done, tiles_total) after each batch.
    tile : bases per annotated tile (default: the dataset's window, what the model was trained on).

    Returns
    -------
    summary : records, tiles, seconds, tiles_per_s, splash_scored (tiles
        with a tested anchor, None without --splash), u_to_t and iupac_to_n (bases read as T or
        N), all_n_tiles (tiles without any A/C/G/T base: written with empty fields and the
        reason in `skipped`, never given to the model), output, format.
    """
    fmt = output_format(out)
    if batch_size < 1 or max_new_tokens < 1 or tile < 1:
        raise ConfigError("--batch-size, --max-new-tokens and --tile must be >= 1")
    check_decoding(decoding)
    anchors = _read_anchors(splash) if splash is not None else None
    survey = _survey(fasta, tile)
    total = survey["tiles"]
    if survey["all_n_tiles"]:
        rid, line = survey["first_all_n"]
        log.warning("%s:%d (record %r): %d tile(s) hold no A/C/G/T base (all N): written with empty "
                    "fields and the reason in `skipped`, not annotated", fasta, line, rid,
                    survey["all_n_tiles"])
    if isinstance(model, (str, Path)):
        model = load_model(model)
    elif not hasattr(model, "processor"):
        model = model()
    if model.processor is None:
        raise ValueError("the model has no processor attached (model.processor)")
    if model.processor.prompt_mode == "seed-faithful":
        raise ConfigError(
            "this model was trained with seed-faithful prompts, which hold the gene's name, "
            "description and phenotype; a FASTA of unknown sequences has none of them. Annotate "
            "FASTA with a leak-free model (or dataset rows with annotate_rows)")
    start = time.perf_counter()
    stats = {"tiles": 0, "splash_scored": 0}

    def write(tmp: Path) -> None:
        # SPLASH matching is vectorised over a chunk of records; without it, one batch at a time
        chunk = max(batch_size, _SPLASH_CHUNK) if anchors is not None else batch_size
        rows = _fasta_rows(_tile_rows(iter_fasta(fasta), tile), anchors, chunk)
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = prediction_writer(fmt, fh)
            for batch in _batched(rows, batch_size):
                for row, pred in _annotate_tiles(model, batch, batch_size, max_new_tokens, decoding):
                    writer.write({**pred, "record": row["record"], "start": row["start"],
                                  "end": row["end"]})
                    stats["splash_scored"] += row["SPLASH_pval"] is not None
                stats["tiles"] += len(batch)
                progress("annotate", stats["tiles"], total)

    atomic_write(out, write)
    seconds = time.perf_counter() - start
    n = stats["tiles"]
    log.debug("annotated %d tiles in %.1f s (%.2f tiles/s) -> %s", n, seconds,
             n / seconds if seconds else math.inf, out)
    return {
        "records": survey["records"],
        "tiles": n,
        "u_to_t": survey["u_to_t"],
        "iupac_to_n": survey["iupac_to_n"],
        "all_n_tiles": survey["all_n_tiles"],
        "seconds": round(seconds, 3),
        "tiles_per_s": round(n / seconds, 3) if seconds else None,
        "splash_scored": stats["splash_scored"] if anchors is not None else None,
        "output": str(out),
        "format": fmt.lstrip("."),
    }


