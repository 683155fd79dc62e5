"""Prediction writers: one row per annotated tile of a sequence, as TSV, JSON lines or GFF3.

The format comes from the output's suffix (`output_format`). Every writer takes a prediction
dict keyed by `constants.OUTPUT_COLUMNS`: the tile's id, its record and 1-based inclusive
start/end on the record, then the prediction. GFF3 gives each tile as a `region` feature on its
record (seqid = record id): ID, Name (the gene, when one is claimed), outcome, Note (the
sentence), source, source_prob and outcome_confidence, each only where it has a value.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import IO

from llamadna.constants import OUTPUT_COLUMNS
from llamadna.errors import ConfigError

OUTPUT_FORMATS = (".tsv", ".jsonl", ".gff3")
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


class TsvWriter:
    def __init__(self, fh: IO[str]):
        self.w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        self.w.writerow(OUTPUT_COLUMNS)

    def write(self, pred: dict) -> None:
        self.w.writerow([_cell(pred[c]) for c in OUTPUT_COLUMNS])


class JsonlWriter:
    def __init__(self, fh: IO[str]):
        self.fh = fh

    def write(self, pred: dict) -> None:
        self.fh.write(json.dumps({c: pred[c] for c in OUTPUT_COLUMNS}) + "\n")


class Gff3Writer:
    """One `region` feature per tile, start..end on its record (seqid = record id)."""

    def __init__(self, fh: IO[str]):
        self.fh = fh
        fh.write("##gff-version 3\n")

    def write(self, pred: dict) -> None:
        attrs = [("ID", str(pred["id"]))]
        if pred["gene"]:  # no Name where no gene is claimed
            attrs.append(("Name", pred["gene"]))
        if pred["skipped"] is not None:  # not annotated: no sentence, source or score
            attrs.append(("skipped", pred["skipped"]))
        else:  # source and the confidences only where they apply (the source: a gene sentence or
            # one whose outcome cannot be read, never another outcome)
            attrs += [("outcome", pred["outcome"]), ("Note", pred["annotation"]),
                      ("source", pred["source"]), ("source_prob", pred["source_prob"]),
                      ("outcome_confidence", pred["outcome_confidence"])]
        col9 = ";".join(f"{k}={gff3_escape(_cell(v))}" for k, v in attrs
                        if v is not None and v != "")
        score = "." if pred["confidence"] is None else repr(pred["confidence"])
        cols = [gff3_escape_seqid(str(pred["record"])), "llamadna", "region", str(pred["start"]),
                str(pred["end"]), score, ".", ".", col9]
        self.fh.write("\t".join(cols) + "\n")


WRITERS = {".tsv": TsvWriter, ".jsonl": JsonlWriter, ".gff3": Gff3Writer}


def output_format(path: str | Path, formats: tuple[str, ...] = OUTPUT_FORMATS) -> str:
    """The output format from the file suffix (one of `formats`); a clear error for any other:
    the path is an existing directory, has no suffix, or has another one."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in formats and not path.is_dir():
        return suffix
    allowed = ", ".join(formats)
    if path.is_dir():
        why = "is an existing directory, not a file"
    elif not suffix:
        why = "has no suffix to tell the format"
    else:
        why = f"has the suffix {suffix!r}"
    raise ConfigError(f"{path}: unknown output format: the path {why}; give a file path ending in "
                      f"one of {allowed}")


def prediction_writer(fmt: str, fh: IO[str]):
    """A writer of format `fmt` (see output_format) over an open text file."""
    return WRITERS[fmt](fh)
