"""A FASTA of DNA sequences -> predictions, streamed batch by batch through an `Annotator`.

    SEQS.fa --io.fasta.iter_fasta--> records --tiles (longer than --tile)--> rows
    rows --[splash.scores per chunk, with --splash]--> rows with SPLASH scores
    rows --Annotator.annotate_rows--> predictions (tiles without A/C/G/T: `skipped`, no model)
    predictions --io.predictions writer--> .tsv / .jsonl / .gff3

Memory stays bounded by one batch: records are read lazily, a part's predictions are streamed
into `<out>.parts/` (the part counts as done once renamed into place, `io.parts`), and the main
process streams the parts into a
temporary file beside the output, renamed over it only at the end (`io.atomic.atomic_write`):
an interrupted run never leaves a partial output behind, and `--resume` redoes only the parts
that were not done. Under `accelerate launch` every process takes parts
(`annotate.distributed`); the output is the same bytes.

Before any model work the FASTA is read once to validate it (cheap next to generation) and to
count the records for the progress bar (`io.fasta.count_fasta`): a bad record at the end of a
large file is reported before hours of annotation, naming the file, the record and the line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from llamadna.annotate.annotator import Annotator, batched
from llamadna.annotate.decoding import check_decoding
from llamadna.constants import DEFAULT_PROCESSES, DEFAULT_TILE, PREDICTION_COLUMNS, SPLASH_COLUMNS
from llamadna.errors import ConfigError
from llamadna.io.atomic import atomic_write
from llamadna.io.fasta import FastaRecord, count_fasta, iter_fasta
from llamadna.io.parts import check_part_size, files_digest, part_rows, parts_dir
from llamadna.io.predictions import output_format, prediction_writer
from llamadna.progress import Progress, no_progress

log = logging.getLogger(__name__)

_SPLASH_CHUNK = 256  # records scored against the anchors at a time

# What the `skipped` column says of a tile that was not given to the model: a tile of N only
# tells it nothing, and any sentence it wrote would be made up (a gene claim without evidence).
NO_BASE = "no A/C/G/T base (all N): not annotated"


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


def tile_rows(records: Iterable[FastaRecord], tile: int) -> Iterator[dict]:
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

    for batch in batched(rows, chunk):
        if anchors is not None:
            sc = score_sequences([r["Sequence"] for r in batch], anchors)
            cols = {c: sc[c].to_list() for c in SPLASH_COLUMNS}
        for i, row in enumerate(batch):
            row.update({c: cols[c][i] if anchors is not None else None for c in SPLASH_COLUMNS})
            yield row


@dataclass
class Survey:
    """What validating a FASTA counted: records, tiles, bases read differently from written
    (U as T, IUPAC codes as N), tiles without any A/C/G/T base and the first such record's id and
    line (`first_all_n`)."""

    tile: int
    records: int = 0
    tiles: int = 0
    u_to_t: int = 0
    iupac_to_n: int = 0
    all_n_tiles: int = 0
    first_all_n: tuple[str, int] | None = None

    def add(self, rec: FastaRecord) -> None:
        spans = tiles(len(rec.seq), self.tile)
        self.tiles += len(spans)
        self.u_to_t += rec.u_to_t
        self.iupac_to_n += rec.iupac
        all_n = sum(rec.seq.count(b"N", s, e) == e - s for s, e in spans)
        if all_n and not self.all_n_tiles:
            self.first_all_n = (rec.id, rec.line)
        self.all_n_tiles += all_n

    def warn(self, fasta: str | Path) -> None:
        """Log the tiles without any A/C/G/T base, naming the first one's record and line."""
        if self.all_n_tiles:
            rid, line = self.first_all_n
            log.warning("%s:%d (record %r): %d tile(s) hold no A/C/G/T base (all N): written with empty "
                        "fields and the reason in `skipped`, not annotated", fasta, line, rid,
                        self.all_n_tiles)


def survey(fasta: str | Path, tile: int) -> Survey:
    """Validate the whole FASTA before any model work (a bad record at the end of a large file
    is reported first) and count what `Survey` holds."""
    found = Survey(tile)
    found.records = count_fasta(fasta, each=found.add)
    return found


def _has_base(seq: str) -> bool:
    """Whether a tile (upper-case A/C/G/T/N) holds any A, C, G or T."""
    return seq.count("N") < len(seq)


def _annotate_tiles(annotator: Annotator, batch: list[dict]) -> Iterator[tuple[dict, dict]]:
    """(row, prediction with `skipped`) for one batch of tile rows, in order. A tile without any
    A/C/G/T base is not given to the model: its prediction has empty fields and `skipped` says
    why, so the output keeps one row per tile."""
    has_base = [_has_base(r["Sequence"]) for r in batch]
    preds = iter(annotator.annotate_rows([r for r, b in zip(batch, has_base) if b]))
    for row, b in zip(batch, has_base):
        if b:
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


def _ready(annotator: Annotator, changes: dict) -> Annotator:
    """The loaded Annotator with `changes` to its config; a seed-faithful model is refused (a
    FASTA holds no gene metadata)."""
    if changes:
        annotator = annotator.with_config(**changes)
    if annotator.processor.prompt_mode == "seed-faithful":
        raise ConfigError(
            "this model was trained with seed-faithful prompts, which hold the gene's name, "
            "description and phenotype; a FASTA of unknown sequences has none of them. Annotate "
            "FASTA with a leak-free model (or dataset rows with Annotator.annotate_rows)")
    return annotator


def annotate_fasta(
    annotator, fasta: str | Path, out: str | Path, splash: str | Path | None = None,
    batch_size: int | None = None, max_new_tokens: int | None = None,
    progress: Progress = no_progress, tile: int = DEFAULT_TILE, decoding: str | None = None,
    resume: bool = False, part_size: int | None = None, processes: int = DEFAULT_PROCESSES,
) -> dict | None:
    """Annotate every record of a FASTA and write the predictions (.tsv, .jsonl or .gff3).

    A record longer than `tile` bases is annotated tile by tile (`tiles`), one prediction per
    tile with its start and end on the record. The tiles are annotated in parts of `part_size`
    (`annotate.distributed`): under `accelerate launch` by every process, merged by the main one
    into `out` in FASTA order (a one-process run's bytes); an interrupted run leaves
    `<out>.parts/`, which `resume` finishes.

    Parameters
    ----------
    annotator : an `Annotator`, a model directory, a `distributed.ModelLoader` (each process
        loads the model on its device; one reference index per machine) or a function returning
        an Annotator, loaded once the FASTA is validated (a bad input fails first).
    fasta : FASTA of the sequences (plain or gzip); validated first (see iter_fasta).
    out : output path; the format comes from the suffix. Written atomically.
    splash : anchors TSV (`llamadna splash`): SPLASH scores per sequence (else "not available").
    batch_size, max_new_tokens, decoding : the annotator's config, unless given.
    progress : callback("annotate", tiles_done, tiles_total), the tiles of every process.
    tile : bases per annotated tile (default: the dataset's window, what the model was trained on).
    resume, part_size, processes : finish the run `<out>.parts/` holds; tiles per part (a multiple
        of the batch size); > 1: this process forks the other ranks (CPUs; `annotate.distributed`).

    Returns
    -------
    summary (the main process; None on the others) : records, tiles, seconds, tiles_per_s,
        splash_scored (tiles with a tested anchor; None without --splash), u_to_t and iupac_to_n
        (bases read as T or N), all_n_tiles (tiles without any A/C/G/T base: empty fields, the
        reason in `skipped`, never given to the model), output, format, and the parts: parts,
        parts_reused, parts_computed, per_rank (this run's parts, rows, seconds per process).
    """
    from llamadna.annotate.distributed import ShardedRun, inference_settings, origin

    fmt = output_format(out)
    changes = _changes(batch_size, max_new_tokens, decoding, tile, part_size)
    with ShardedRun(parts_dir(out), resume, "annotate", processes) as run:
        if run.idle:  # a fork of local rank 0 annotates this process's share
            return None
        anchors = _read_anchors(splash) if splash is not None else None
        found = survey(fasta, tile)
        if run.rt.is_main:
            found.warn(fasta)
        model = _ready(run.load(annotator), changes)
        run.begin(found.tiles, part_rows(part_size, model.config.batch_size, found.tiles), lambda: {
            "input": {"fasta": files_digest([fasta])}, **origin(annotator, model),
            "settings": {**inference_settings(model), "tile": tile, "format": fmt,
                         "splash": files_digest([splash]) if splash is not None else None}})
        run.serve(model, annotator)
        run.walk(tile_rows(iter_fasta(fasta), tile),
                 lambda part, advance, counts: _annotate_part(model, part, anchors, advance, counts),
                 progress, "annotate")
        parts = run.merge(lambda records: _write_output(out, fmt, records), progress, "annotate")
    if parts is None:  # not the main process
        return None
    return _summary(found, parts, anchors is not None, out, fmt)


def _summary(found: Survey, parts: dict, splash: bool, out, fmt: str) -> dict:
    """annotate_fasta's summary: the survey's counts, the seconds of the run and the rate of the
    tiles computed in it (reused parts left out; `ShardedRun.merge`), and the parts' counts."""
    log.debug("annotated in %.1f s (%s tiles/s computed) -> %s", parts["seconds"], parts["rows_per_s"], out)
    return {
        "records": found.records, "tiles": found.tiles, "u_to_t": found.u_to_t,
        "iupac_to_n": found.iupac_to_n, "all_n_tiles": found.all_n_tiles, "seconds": parts["seconds"],
        "tiles_per_s": parts["rows_per_s"],
        "splash_scored": parts["counts"].get("splash_scored", 0) if splash else None,
        "output": str(out), "format": fmt.lstrip("."),
        **{k: parts[k] for k in ("parts", "parts_reused", "parts_computed", "per_rank")},
    }


def _changes(batch_size: int | None, max_new_tokens: int | None, decoding: str | None, tile: int,
             part_size: int | None) -> dict:
    """The inference settings given (the annotator's own otherwise), checked with the tile and
    part sizes before any work."""
    changes = {k: v for k, v in (("batch_size", batch_size), ("max_new_tokens", max_new_tokens),
                                 ("decoding", decoding)) if v is not None}
    if changes.get("batch_size", 1) < 1 or changes.get("max_new_tokens", 1) < 1 or tile < 1:
        raise ConfigError("--batch-size, --max-new-tokens and --tile must be >= 1")
    check_part_size(part_size)
    if decoding is not None:
        check_decoding(decoding)
    return changes


def _write_output(out: str | Path, fmt: str, records: Iterable[dict]) -> None:
    """Every tile's record, in FASTA order, through the format's writer into `out` (atomically)."""
    def lines(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = prediction_writer(fmt, fh)
            for r in records:
                writer.write(r)

    atomic_write(out, lines)


def _annotate_part(annotator: Annotator, part: Iterable[dict], anchors, advance,
                   counts: dict) -> Iterator[dict]:
    """One part's tile rows (read lazily) -> its output records, a batch at a time: SPLASH scores
    (with anchors), then the annotator; `advance(rows)` after each batch, the tiles with a
    SPLASH score counted in `counts`."""
    batch_size = annotator.config.batch_size
    # SPLASH matching is vectorised over a chunk of records; without it, one batch at a time
    chunk = max(batch_size, _SPLASH_CHUNK) if anchors is not None else batch_size
    counts["splash_scored"] = 0
    for batch in batched(_fasta_rows(part, anchors, chunk), batch_size):
        for row, pred in _annotate_tiles(annotator, batch):
            counts["splash_scored"] += row["SPLASH_pval"] is not None
            yield {**pred, "record": row["record"], "start": row["start"], "end": row["end"]}
        advance(len(batch))
