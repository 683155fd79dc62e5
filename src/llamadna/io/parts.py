"""The part store of a sharded run: a run's rows cut into parts that ranks claim, write and merge.

`annotate`, `predict` and `benchmark` cut their rows (in input order) into parts of `part_rows`
rows; every rank (one process, or each of `accelerate launch`'s) walks the parts in order,
claims the ones not done, predicts their rows and writes each part atomically; the main rank
then streams every part, in order, through the command's own writer. The directory
`<out>.parts/` beside the output holds:

    run.json                   the run's fingerprint (`fingerprint`): rows, part size, digests
                               of the input and the model, the index, the settings
    part-000012.claim-<attempt>  made with O_CREAT|O_EXCL by the rank that takes part 12 in
                               this attempt (claims of another attempt are ignored: a killed
                               run's claims never block --resume)
    part-000012.json           who wrote it: rank, host, rows, seconds, attempt, counts
    part-000012.jsonl          its predictions, one JSON line per row (JSON gives Python floats
                               back bit for bit); written last, atomically: it exists = done

A run that stops (kill -9, Ctrl-C, a lost machine) leaves the directory; `--resume` checks
run.json against the new run's fingerprint (any difference is refused, naming the keys) and
computes only the parts without a .jsonl. File logic only: no torch (the ranks and their
collectives live in `annotate.distributed`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from pathlib import Path

from llamadna.constants import DEFAULT_PART_ROWS, MIN_PARTS
from llamadna.errors import ConfigError
from llamadna.io.atomic import atomic_write

log = logging.getLogger(__name__)

PARTS_FORMAT = 1
RUN_FILE = "run.json"
_PART = re.compile(r"part-(\d{6,})\.jsonl")
_POLL_S = 0.5  # how often the main rank looks for the other ranks' parts
_CHUNK = 1 << 16  # bytes hashed at a time (memory stays flat whatever the input)


def parts_dir(out: str | Path) -> Path:
    """The parts directory of an output file: `<out>.parts` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".parts")


def check_part_size(part_size: int | None) -> None:
    """--part-size: None (the default rule) or >= 1 (ConfigError)."""
    if part_size is not None and part_size < 1:
        raise ConfigError(f"--part-size {part_size}: the rows per part must be >= 1")


def part_rows(part_size: int | None, batch_size: int, rows: int) -> int:
    """Rows per part: `part_size` (None: `rows` / MIN_PARTS, at most DEFAULT_PART_ROWS) rounded up
    to a multiple of `batch_size`, so that the batches inside a part are the batches of a
    one-process run (same padding, same floats)."""
    check_part_size(part_size)
    if part_size is None:
        part_size = min(DEFAULT_PART_ROWS, -(-rows // MIN_PARTS))
    return max(1, -(-part_size // batch_size)) * batch_size


def _hash_file(h, path: Path) -> None:
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)


def files_digest(paths: Iterable[str | Path]) -> str:
    """BLAKE2b of the files' bytes, in the order given (each preceded by its size, so that
    moving bytes from one file to the next changes the digest)."""
    h = hashlib.blake2b(digest_size=16)
    for p in paths:
        p = Path(p)
        h.update(f"{p.stat().st_size}\n".encode())
        _hash_file(h, p)
    return h.hexdigest()


def dir_digest(directory: str | Path, skip: tuple[str, ...] = ("checkpoints",)) -> str:
    """BLAKE2b of a directory's regular files (sorted relative paths and bytes), the top-level
    entries named in `skip` left out (a model directory's training checkpoints)."""
    root = Path(directory)
    h = hashlib.blake2b(digest_size=16)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] not in skip)
    for p in files:
        h.update(f"{p.relative_to(root).as_posix()}\n{p.stat().st_size}\n".encode())
        _hash_file(h, p)
    return h.hexdigest()


def fingerprint(command: str, rows: int, part_rows: int, input: dict, model: dict | None,
                index: dict | None, settings: dict) -> dict:
    """What run.json records: everything that decides a part's bytes. `input`: the input's
    digest (and what it is); `model`: the model directory's digest; `index`: the reference
    index's id (None: no retrieval); `settings`: the options that change predictions or the
    output (batch size, new tokens, decoding, tile, SPLASH anchors' digest, dtype, format...)."""
    return {"format": PARTS_FORMAT, "command": command, "rows": rows, "part_rows": part_rows,
            "parts": -(-rows // part_rows), "input": input, "model": model, "index": index,
            "settings": settings}


_FILES = ("input", "model", "index")  # digests and ids: said to differ, never printed


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The keys whose values differ between two fingerprints, in words: "model differs" for the
    input, the model or the index (digests, ids), "settings.batch_size 16 in the parts, 32 now"
    for the rest."""
    said: list[str] = []
    for key in dict.fromkeys([*old, *new]):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        name = f"{prefix}{key}"
        if not prefix and key in _FILES or (a is None) != (b is None) and isinstance(a or b, dict):
            said.append(f"{name} differs")
        elif isinstance(a, dict) and isinstance(b, dict):
            said += differences(a, b, name + ".")
        else:
            said.append(f"{name} {json.dumps(a)} in the parts, {json.dumps(b)} now")
    return said


def refuse_stale(directory: Path) -> None:
    """A new run (no --resume) is refused where the parts of another are (ConfigError)."""
    if directory.exists():
        raise ConfigError(f"{directory} holds the parts of an interrupted run: add --resume to "
                          "finish it, or delete it")


class PartStore:
    """One run's parts directory (module doc). The main rank `prepare`s it; every rank `claim`s
    and `write`s parts; the main rank `wait`s for all of them, streams them (`predictions`) and
    `remove`s the directory."""

    def __init__(self, directory: str | Path, parts: int):
        self.dir = Path(directory)
        self.parts = parts
        self._meta: dict[int, dict] = {}  # done parts' metadata, read once
        self._made: list[Path] = []  # the directories `prepare` made

    # ------------------------------------------------------------------ names
    def _name(self, k: int) -> str:
        return f"part-{k:06d}"

    def output(self, k: int) -> Path:
        return self.dir / f"{self._name(k)}.jsonl"

    def meta_path(self, k: int) -> Path:
        return self.dir / f"{self._name(k)}.json"

    def claim_path(self, k: int, attempt: int) -> Path:
        return self.dir / f"{self._name(k)}.claim-{attempt}"

    # ------------------------------------------------------------------ the main rank, first
    def prepare(self, run: dict, resume: bool, option: str = "--out") -> int:
        """Make the directory and write run.json (atomically), before any part. An existing
        directory is refused without `resume` (ConfigError); with it, its run.json must equal
        `run` (else ConfigError naming each difference). Returns the parts already done."""
        there = self.dir.exists()
        if not resume:
            refuse_stale(self.dir)
        if there:
            try:
                old = json.loads((self.dir / RUN_FILE).read_text())
            except (OSError, ValueError):
                raise ConfigError(f"--resume: {self.dir} holds no readable {RUN_FILE} (not a run's "
                                  "parts, or written before it was killed): delete it") from None
            diff = differences(old, run)
            if diff:
                raise ConfigError(f"--resume: {self.dir} was written by another run ({'; '.join(diff)})")
            done = len(self.done())
            log.info("--resume: %d of %d parts in %s are done; computing the other %d", done,
                     self.parts, self.dir, self.parts - done)
            return done
        self._made = [p for p in (self.dir, *self.dir.parents) if not p.exists()]  # deepest first
        self.dir.mkdir(parents=True)
        atomic_write(self.dir / RUN_FILE, lambda p: p.write_text(json.dumps(run, indent=1) + "\n"))
        return 0

    # ------------------------------------------------------------------ every rank
    def done(self) -> set[int]:
        """The parts whose predictions are written (one directory listing)."""
        found = set()
        for p in self.dir.iterdir():
            if m := _PART.fullmatch(p.name):
                found.add(int(m[1]))
        return {k for k in found if k < self.parts}

    def is_done(self, k: int) -> bool:
        return self.output(k).exists()

    def claim(self, k: int, attempt: int) -> bool:
        """Take part `k` for this attempt: True for the one rank whose claim file is new."""
        try:
            fd = os.open(self.claim_path(k, attempt), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()}@{socket.gethostname()}\n")
        return True

    def write(self, k: int, records: Iterable[dict], meta: Callable[[int], dict]) -> int:
        """Part `k`'s records (one JSON line each, streamed: memory stays one record's), then its
        metadata `meta(rows written)`; the .jsonl, renamed into place last, marks the part done.
        Returns the rows written."""
        written = [0]

        def lines(p: Path) -> None:
            with open(p, "w", encoding="utf-8") as fh:
                for r in records:
                    fh.write(json.dumps(r) + "\n")
                    written[0] += 1
            info = meta(written[0])
            atomic_write(self.meta_path(k), lambda m: m.write_text(json.dumps(info) + "\n"))

        atomic_write(self.output(k), lines)
        return written[0]

    def meta(self, k: int) -> dict:
        """A done part's metadata (rank, host, rows, seconds, attempt, counts)."""
        if k not in self._meta:
            self._meta[k] = json.loads(self.meta_path(k).read_text())
        return self._meta[k]

    def rows_done(self, done: Iterable[int] | None = None) -> int:
        """Rows of the done parts (`done`, default: one listing; the progress of the whole run)."""
        return sum(self.meta(k)["rows"] for k in (self.done() if done is None else done))

    # ------------------------------------------------------------------ the main rank, last
    def wait(self, progress: Callable[[int], None] | None = None, poll: float = _POLL_S) -> None:
        """Until every part is done, polling (no collective: no timeout, however long the other
        ranks take); `progress(rows_done)` after each look."""
        while True:
            done = self.done()
            if progress is not None:
                progress(self.rows_done(done))
            if len(done) == self.parts:
                return
            time.sleep(poll)

    def predictions(self) -> Iterator[dict]:
        """Every part's records, in part order (= input order)."""
        for k in range(self.parts):
            with open(self.output(k), encoding="utf-8") as fh:
                for line in fh:
                    yield json.loads(line)

    def summary(self, attempt: int, reused: int) -> dict:
        """parts, parts_reused, parts_computed and per_rank {rank: {parts, rows, seconds}} of this
        attempt's parts; `counts` summed over every part."""
        per_rank: dict[int, dict] = {}
        counts: dict[str, int] = {}
        for k in range(self.parts):
            m = self.meta(k)
            for c, n in (m.get("counts") or {}).items():
                counts[c] = counts.get(c, 0) + n
            if m["attempt"] == attempt:
                r = per_rank.setdefault(m["rank"], {"parts": 0, "rows": 0, "seconds": 0.0})
                r["parts"] += 1
                r["rows"] += m["rows"]
                r["seconds"] = round(r["seconds"] + m["seconds"], 3)
        return {"parts": self.parts, "parts_reused": reused, "parts_computed": self.parts - reused,
                "per_rank": dict(sorted(per_rank.items())), "counts": counts}

    def finished_path(self, rank: int, attempt: int) -> Path:
        return self.dir / f"rank-{rank}.finished-{attempt}"

    def finish(self, rank: int, attempt: int) -> None:
        """Mark that `rank` is done with the directory in this attempt (its walk is over)."""
        self.finished_path(rank, attempt).touch()

    def wait_finished(self, ranks: Iterable[int], attempt: int, poll: float = _POLL_S,
                      check: Callable[[], None] | None = None) -> None:
        """Until every rank of `ranks` has marked itself finished in this attempt, polling (no
        collective: a long merge on the main rank never runs into a barrier's timeout); `check()`
        after each look (it raises to stop waiting)."""
        for r in ranks:
            while not self.finished_path(r, attempt).exists():
                if check is not None:
                    check()
                time.sleep(poll)

    def remove(self) -> None:
        """Remove the directory, and the folders above it that `prepare` made and nothing else
        fills (a run that failed before its output)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        with suppress(OSError):
            for p in self._made[1:]:
                p.rmdir()  # only when empty
