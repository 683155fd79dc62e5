"""Sharded runs: `annotate`, `predict` and `benchmark` on every rank of `accelerate launch`.

    rank 0 (main)          prepare <out>.parts (run.json; --resume: compare)  --attempt-->  all
    every rank             load the model on its device; the search service of its machine
                           walk the parts in order: done -> skip; claimed -> skip; else
                           predict its rows in batches, write it (io.parts)
    rank 0                 wait for every part (polling), stream them in order through the
                           output writer; once every rank marked itself finished, remove
                           <out>.parts (files only after the start: no collective's timeout)

One process is the same path with a world of one, so every run can be resumed. The output is
byte-identical whatever the number of processes: a part's batches are a one-process run's
(parts are a whole number of batches), every prediction goes through JSON (which gives Python
floats back bit for bit) and one writer writes them all in input order. The float reductions of
the model depend on the threads per process (OMP_NUM_THREADS): run every process with the same.

Memory on one machine of CPUs (ACCELERATE_USE_CPU, every rank on it; Linux): the ranks are forks.
Local rank 0 loads the model and the reference index and prepares the parts; then, before it reads
a row, it forks one process for each other rank, which walks that rank's parts and exits. The forks
share the loaded pages copy-on-write (the garbage collector frozen first, so that it does not
write to them), so a second rank costs what it computes, not another interpreter, torch, model and
index. The processes that the launcher started for ranks 1..N-1 return at once (`ShardedRun.idle`).
A fork that dies fails the run on rank 0 (RankError: its parts stay for --resume); a fork dies with
rank 0 (PR_SET_PDEATHSIG). LLAMADNA_FORK_RANKS=0 turns this off.

Without a launcher, `processes` > 1 (the commands' --processes) makes the one process local rank 0
of that many forked CPU ranks, the same path: every process runs the usable CPUs // processes
torch threads (unless OMP_NUM_THREADS says), set before the model loads and given back when the run
ends. Forked ranks, launched or not, run minimap2 with the usable CPUs // ranks threads unless
--threads says.

Otherwise (GPUs, several machines, or turned off) every launched process is a rank and loads the
model on its device; the reference index is loaded once per machine: local rank 0 loads it and
serves searches to its neighbours (`retrieve.service.SearchService`, advertised in
`<out>.parts/search.<host>.<attempt>.json`); the other local ranks load the model without it.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import json
import logging
import os
import secrets
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from llamadna.constants import DEFAULT_PROCESSES, WITHHOLD_BELOW
from llamadna.errors import ConfigError, InputError, RankError
from llamadna.io.parts import PartStore, dir_digest, fingerprint, refuse_stale
from llamadna.launch import check_processes, forks_ranks, idle_process, launched
from llamadna.progress import Progress, no_progress

log = logging.getLogger(__name__)

_PROGRESS_S = 1.0  # how often the main rank lists the parts directory for the whole run's progress


@dataclass(frozen=True)
class Runtime:
    """This process's place in the run: rank and world, local rank and local world (the
    processes of its machine), the device it computes on (None: the model's default),
    accelerate's PartialState (None for one process and for forked ranks), whether the machine's
    ranks are forks of local rank 0 (module doc), and whether this launched process is idle (a
    fork does its rank's share)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    device: object = None
    state: object = None
    forked: bool = False
    idle: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, values: list[int]) -> list[int]:
        """Rank 0's integers on every rank, as a tensor (no pickle)."""
        if self.world == 1 or self.forked:  # forks inherit them
            return values
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.int64, device=self.device)
        dist.broadcast(t, src=0)
        return [int(x) for x in t.tolist()]


def runtime(own: int = DEFAULT_PROCESSES) -> Runtime:
    """The run's ranks from accelerate's PartialState (ACCELERATE_USE_CPU as Accelerator()
    reads it: torchrun on CPUs); one process without torchrun's variables. A run launched as
    several processes without a distributed device is refused (as `llamadna index` does).
    `own` != 1 (--processes; no launcher): this process is local rank 0 of that many forked CPU
    ranks."""
    if own != 1:
        return _local_forks(own)
    processes = launched()
    if processes <= 1:
        return Runtime()
    if forks_ranks(processes):  # no torch.distributed: the ranks are forks of local rank 0
        return Runtime(0, processes, 0, processes, device="cpu", forked=True, idle=idle_process())
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    world = state.num_processes
    if world == 1:
        raise ConfigError(f"launched as {os.environ['WORLD_SIZE']} processes but accelerate found no "
                          "distributed device; on CPUs set ACCELERATE_USE_CPU=true")
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    return Runtime(state.process_index, world, state.local_process_index, local_world, state.device, state)


def _local_forks(processes: int) -> Runtime:
    """Local rank 0 of `processes` forked CPU ranks started by this process itself (--processes;
    `launch.check_processes` refuses it under a launcher and off Linux)."""
    check_processes(processes)
    return Runtime(0, processes, 0, processes, device="cpu", forked=True)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity on Linux; elsewhere every CPU)."""
    usable = getattr(os, "sched_getaffinity", None)
    return len(usable(0)) if usable else (os.cpu_count() or 1)


def rank_threads(ranks: int) -> int:
    """Threads for each of `ranks` processes on this machine: its usable CPUs shared out."""
    return max(1, usable_cpus() // max(1, ranks))


def warn_oversubscribed(processes: int) -> bool:
    """Warn (and say True) when the machine's `processes` ranks, each with torch's threads, ask
    for more threads than this process may use CPUs: measured 5x slower than one process, on 2
    CPUs with 2 ranks of 2 threads (docs/BENCHMARKS.md)."""
    import torch

    threads, cpus = torch.get_num_threads(), usable_cpus()
    if processes < 2 or processes * threads <= cpus:
        return False
    log.warning("%d processes x %d threads on %d CPUs: oversubscribed, which can be several times "
                "slower than one process; set OMP_NUM_THREADS=%d", processes, threads, cpus,
                rank_threads(processes))
    return True


def _die_with(parent: int) -> None:
    """This fork gets SIGKILL when its parent dies (PR_SET_PDEATHSIG), as torchrun stops every
    rank when one fails; it exits now if the parent died already."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


# ------------------------------------------------------------------------------ the model
def index_record(meta: dict) -> dict:
    """Which reference index (its index.json `meta`): its id, windows and creation time."""
    return {k: meta.get(k) for k in ("index_id", "windows", "created")}


@dataclass(frozen=True)
class ModelLoader:
    """How each rank loads a trained model (the CLI's options): on the rank's device, the
    reference index attached by `attach_index` on the ranks that hold it."""

    model: Path
    index: Path | None = None  # a retrieval model's index (None: the one it was trained with)
    encoder: Path | None = None  # the DNA encoder directory, where it is now
    dtype: str | None = None
    compile: bool = False
    llm: Path | None = None
    threads: int | None = None  # minimap2's threads on the rank that searches (None: the CPUs)
    # InferenceConfig.withhold_below; 0 (the CLI's "off") is None: every gene answer stands
    withhold_below: float | None = WITHHOLD_BELOW

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads {self.threads}: minimap2's threads must be >= 1")
        self.inference_config()  # checked now, before any work

    def inference_config(self):
        """The InferenceConfig of these options (the CLI's --withhold-below 0: None, off)."""
        from llamadna.annotate.annotator import InferenceConfig

        return InferenceConfig(withhold_below=self.withhold_below or None)

    def load(self, device=None):
        """The Annotator, without its reference index."""
        from llamadna.annotate.annotator import Annotator

        return Annotator.from_pretrained(self.model, dna_encoder=self.encoder, device=device,
                                         dtype=self.dtype, compile=self.compile, llm=self.llm,
                                         config=self.inference_config())

    def attach_index(self, annotator) -> None:
        """Give a retrieval model its retriever now (a missing index fails before any work); a
        model without retrieval is refused an --index."""
        if self.index is not None or annotator.processor.retrieval:
            annotator.use_index(self.index, self.encoder, self.threads)

    def record(self, annotator) -> dict:
        """The model and index part of a run's fingerprint (before the index is attached)."""
        return {"model": {"digest": dir_digest(self.model)}, "index": _index_of(annotator, self.index)}


def _index_of(annotator, given: Path | None = None) -> dict | None:
    """Which index a retrieval model searches (None: no retrieval): `given`, else the one its
    retriever holds, else the one it was trained with. One that cannot be read is recorded by
    its path (attaching it reports why)."""
    proc = annotator.processor
    if not getattr(proc, "retrieval", False):
        return None
    index = getattr(annotator.retriever, "index", None)
    if given is None and isinstance(getattr(index, "meta", None), dict):
        return index_record(index.meta)
    from llamadna.annotate.annotator import _trained_index

    try:
        where = Path(given if given is not None else _trained_index(proc))
        return index_record(json.loads((where / "index.json").read_text()))
    except (ConfigError, InputError, OSError, ValueError, TypeError):  # none recorded, or unreadable
        return {"path": str(given if given is not None else getattr(proc, "index", None))}


def model_record(annotator) -> dict:
    """The fingerprint's model and index for an Annotator given as an object (a library
    call): the digest of the directory it was loaded from, when known."""
    where = getattr(getattr(annotator.model, "config", None), "_name_or_path", None)
    digest = dir_digest(where) if isinstance(where, str) and where and Path(where).is_dir() else None
    return {"model": {"digest": digest}, "index": _index_of(annotator)}


def origin(given, annotator) -> dict:
    """The model and index of a run's fingerprint: `given` is what the command was handed (a
    ModelLoader, or an Annotator / function / directory), `annotator` the loaded model."""
    return given.record(annotator) if isinstance(given, ModelLoader) else model_record(annotator)


def inference_settings(annotator) -> dict:
    """The inference settings of a run's fingerprint: what changes a prediction."""
    cfg = annotator.config
    return {"batch_size": cfg.batch_size, "max_new_tokens": cfg.max_new_tokens, "decoding": cfg.decoding,
            "withhold_below": cfg.withhold_below, "prompt_bucket": cfg.prompt_bucket,
            "dtype": str(getattr(annotator.model, "dtype", None))}


# ------------------------------------------------------------------------------ a sharded run
class ShardedRun:
    """One command's run over parts (module doc). Use as a context manager:

        with ShardedRun(parts_dir, resume, "annotate") as run:
            if run.idle:                             # a fork of local rank 0 does its share
                return None
            annotator = run.load(loader)             # on this rank's device
            run.begin(rows, part_rows, describe)     # rank 0 prepares; the attempt id to all
            run.serve(annotator, loader)             # the index, or its machine's service
            run.walk(rows, predict_part, progress)   # this rank's parts (forked ranks: forks here)
            summary = run.merge(write, progress)     # rank 0: dict; the others: None

    On an error, the parts stay for --resume, except after a user error (ConfigError,
    InputError) in a one-process run that reused nothing (the settings must change: its parts
    could never be resumed) and for a temporary directory (no output named: nothing to resume).
    """

    def __init__(self, directory: str | Path | None, resume: bool, command: str,
                 processes: int = DEFAULT_PROCESSES):
        self.rt, self.processes = runtime(processes), processes
        self._threads: int | None = None  # --processes: torch's threads before the run (__enter__)
        self.resume, self.command = resume, command
        self.temporary = directory is None
        if self.temporary and resume:
            raise ConfigError(f"--resume needs --out: a {command} run without an output keeps no parts")
        self.dir = None if directory is None else Path(directory)
        self.store: PartStore | None = None
        self.attempt = self.reused = 0
        self.service = self.client = None
        self.t0: float | None = None  # when this rank's walk began (the run's clock: `merge`)
        self._own = 0  # rows of the part this (main) rank is predicting
        self.forks: dict[int, int] = {}  # forked ranks: rank -> process id (on local rank 0)

    @property
    def idle(self) -> bool:
        """A launched process with nothing to do: a fork of local rank 0 does its share (module
        doc). The command returns None at once."""
        return self.rt.idle

    def _share_cpus(self) -> int:
        """--processes: every rank's torch threads are the CPUs shared out (OMP_NUM_THREADS: the
        user's), set before the model loads, so that the forks inherit them. Returns the threads
        before (given back by __exit__)."""
        import torch

        before = torch.get_num_threads()
        if "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(rank_threads(self.rt.local_world))
        return before

    def __enter__(self) -> ShardedRun:
        if self.rt.is_main and self.dir is not None and not self.resume:
            refuse_stale(self.dir)  # before the model loads
        if self.processes > 1:  # the ranks this process forks: the CPUs shared out first
            self._threads = self._share_cpus()
        return self

    # ------------------------------------------------------------------ setup
    def load(self, annotator):
        """The Annotator on this rank's device: a ModelLoader is loaded, with its reference index
        on the ranks that hold one (one per machine: `serve`); a function is called, a model
        directory loaded, an Annotator kept as it is."""
        from llamadna.annotate.annotator import Annotator

        if isinstance(annotator, ModelLoader):
            if self.rt.forked and annotator.threads is None:  # minimap2's: the CPUs shared out too
                annotator = dataclasses.replace(annotator, threads=rank_threads(self.rt.local_world))
            model = annotator.load(self.rt.device)
            if self._holds_index(model):  # now: a missing index fails before any work
                annotator.attach_index(model)
            return model
        if isinstance(annotator, (str, Path)):
            return Annotator.from_pretrained(annotator, device=self.rt.device)
        if not isinstance(annotator, Annotator):
            return annotator()
        return annotator

    def begin(self, rows: int, part_rows: int, describe: Callable[[], dict]) -> None:
        """Rank 0 prepares the parts directory (`PartStore.prepare`: run.json, or --resume's
        check) for `rows` rows in parts of `part_rows`, the rest of the fingerprint from
        `describe()` (input, model, index, settings: see io.parts.fingerprint); then every rank
        gets the attempt id and the number of parts done before it."""
        rt = self.rt
        parts = -(-rows // part_rows)
        values, store = [0, 0], None
        if rt.is_main:
            values[0] = secrets.randbits(63)
            if self.temporary:
                self.dir = _temporary_parts(self.command, values[0], rt)
            run = fingerprint(self.command, rows, part_rows, **describe())
            store = PartStore(self.dir, parts)
            values[1] = store.prepare(run, self.resume)  # refused: no store, nothing removed
        self.attempt, self.reused = rt.broadcast(values)
        if self.temporary and not rt.is_main:
            self.dir = _temporary_parts(self.command, self.attempt, rt)
        self.store = store or PartStore(self.dir, parts)
        self.part_rows, self.rows = part_rows, rows

    def _holds_index(self, annotator) -> bool:
        """Whether this rank loads the reference index itself: one rank per machine does (local
        rank 0), and every rank of a model without retrieval (nothing to load, or an --index to
        refuse)."""
        return (self.rt.local_world == 1 or self.rt.local_rank == 0
                or not getattr(annotator.processor, "retrieval", False))

    def serve(self, annotator, loader=None) -> None:
        """The reference index, one copy per machine: with a ModelLoader's retrieval model and
        several ranks on the machine, local rank 0 (which `load` gave the index) serves its
        neighbours, which search through it. An Annotator given otherwise keeps its retriever."""
        rt = self.rt
        retrieval = getattr(annotator.processor, "retrieval", False)
        if not isinstance(loader, ModelLoader) or rt.local_world == 1 or not retrieval or rt.forked:
            return
        from llamadna.retrieve.service import SearchService, connect

        advert = self.dir / f"search.{socket.gethostname()}.{self.attempt}.json"
        if rt.local_rank == 0:
            self.service = SearchService(annotator.retriever, clients=rt.local_world - 1)
            self.service.start()
            self.service.advertise(advert)
        else:
            self.client = annotator.retriever = connect(advert)

    # ------------------------------------------------------------------ the parts
    def walk(self, rows: Iterable[dict], predict_part: Callable, progress: Progress = no_progress,
             what: str = "rows") -> None:
        """This rank's parts: every part's rows are read (`rows`, in input order, lazily) but only
        the parts it claims are predicted: `predict_part(rows, advance, counts)` yields the part's
        records (one per row, in order) a batch at a time, calling `advance(n)` after each batch
        of n rows and adding to `counts` what the summary sums; the records are streamed into the
        part's file (memory: one batch). Forked ranks: local rank 0 forks the others first, and
        each fork walks its rank's parts and exits (`_forked_walk`)."""
        if self.rt.is_main:
            warn_oversubscribed(self.rt.local_world)
        if self.rt.forked and self.rt.is_main and self._fork():  # forked: 2+ processes, rank 0 forks
            self._forked_walk(rows, predict_part, what)
        self._walk(rows, predict_part, progress, what)

    def _walk(self, rows: Iterable[dict], predict_part: Callable, progress: Progress, what: str) -> None:
        store, rt = self.store, self.rt
        self.t0 = time.perf_counter()
        report = self._reporter(progress, what) if rt.is_main else (lambda force=False: None)
        it = iter(rows)
        for k in range(store.parts):
            self._check_forks()  # one died: stop now, as torchrun stops every rank when one fails
            part = _Counted(itertools.islice(it, self.part_rows))
            if store.is_done(k) or not store.claim(k, self.attempt):
                for _ in part:  # read past it: no scoring, no model
                    pass
                continue
            t0 = time.perf_counter()
            self._own, counts = 0, {}

            def advance(n: int) -> None:
                self._own += n
                report()

            def meta(written: int, k=k, t0=t0, part=part, counts=counts) -> dict:
                if written != part.n:
                    raise RuntimeError(f"part {k}: {written} records for {part.n} rows")
                return {"rank": rt.rank, "host": socket.gethostname(), "rows": written,
                        "seconds": round(time.perf_counter() - t0, 3), "attempt": self.attempt,
                        "counts": counts}

            store.write(k, predict_part(part, advance, counts), meta)
            self._own = 0
            report(force=True)

    def _fork(self) -> int:
        """Local rank 0 of a forked run (module doc), its model and index loaded, its parts
        prepared, no row read yet: fork one process per other rank of the machine. Returns 0 here
        and the rank in each fork."""
        gc.collect()
        gc.freeze()  # the loaded objects: out of the collector's reach, their pages stay shared
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        parent = os.getpid()
        for rank in range(1, self.rt.local_world):
            pid = os.fork()
            if pid == 0:
                _die_with(parent)
                self.forks, self.rt = {}, dataclasses.replace(self.rt, rank=rank, local_rank=rank)
                return rank
            self.forks[rank] = pid
        log.info("ranks 1-%d: forks of rank 0 (processes %s), sharing its model and index",
                 self.rt.local_world - 1, ", ".join(map(str, self.forks.values())))
        return 0

    def _forked_walk(self, rows: Iterable[dict], predict_part: Callable, what: str) -> NoReturn:
        """A fork: its rank's parts, then it marks itself finished and exits (never returning into
        the command, which rank 0 finishes); an error is printed and exits 1."""
        code = 1
        try:  # plain logging: a lock that rank 0's progress display held at the fork stays held here
            logging.root.handlers = [logging.StreamHandler(sys.stderr)]
            self._walk(rows, predict_part, no_progress, what)
            self.store.finish(self.rt.rank, self.attempt)
            code = 0
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C, SIGTERM (cli): rank 0 reports the stop
            pass
        except BaseException:
            print(f"rank {self.rt.rank} (process {os.getpid()}, a fork of rank 0):", file=sys.stderr)
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os._exit(code)

    def _check_forks(self, block: bool = False) -> None:
        """RankError for a fork that died or failed (its parts and the finished ones stay for
        --resume); one that exited cleanly is forgotten. `block`: wait for each to end."""
        for rank, pid in list(self.forks.items()):
            ended, status = os.waitpid(pid, 0 if block else os.WNOHANG)
            if ended == 0:
                continue
            del self.forks[rank]
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                how = f"was killed by signal {-code}" if code < 0 else f"failed (exit status {code})"
                raise RankError(f"rank {rank} of {self.rt.world} (process {pid}, a fork of rank 0) {how}; "
                                "the finished parts are kept: run the same command with --resume")

    def _reporter(self, progress: Progress, what: str) -> Callable:
        """The main rank's progress over all ranks: rows of the finished parts (the directory
        listed at most once a second) plus its own rows in progress."""
        last = [-_PROGRESS_S, 0]  # when the parts were last listed, their rows

        def report(force: bool = False) -> None:
            now = time.monotonic()
            if force or now - last[0] >= _PROGRESS_S:
                last[:] = [now, self.store.rows_done()]
            progress(what, last[1] + self._own, self.rows)

        return report

    def merge(self, write: Callable[[Iterable[dict]], None], progress: Progress = no_progress,
              what: str = "rows") -> dict | None:
        """Rank 0: wait for every part, then `write(records)` (all parts' records in input order,
        streamed) and the summary; the other ranks: None. Then each other rank marks itself
        finished (a file: no barrier, whose timeout a long merge could outlast) and rank 0,
        once all are, removes the parts directory (no rank reads it any more)."""
        rt, store = self.rt, self.store
        if self.client is not None:
            self.client.close()
            self.client = None
        summary = None
        if rt.is_main:
            store.wait(lambda done: (self._check_forks(), progress(what, done, self.rows)))
            write(store.predictions())
            seconds = time.perf_counter() - self.t0
            summary = store.summary(self.attempt, self.reused)
            computed = sum(r["rows"] for r in summary["per_rank"].values())
            summary.update(rows=self.rows, seconds=round(seconds, 3),
                           rows_per_s=round(computed / seconds, 3) if seconds else None)
        if self.service is not None:
            self.service.wait()
            self.service.close()
            self.service = None
        if rt.is_main:  # the other ranks are done with the directory: remove it
            store.wait_finished(range(1, rt.world), self.attempt, check=self._check_forks)
            self._check_forks(block=True)
            store.remove()
        else:
            store.finish(rt.rank, self.attempt)
        return summary

    def __exit__(self, kind, exc, tb) -> None:
        for held in (self.client, self.service):
            if held is not None:
                held.close()
        for pid in self.forks.values():  # rank 0 failed: its forks stop with it
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        self.forks = {}
        if self._threads is not None:  # --processes: this process's threads as they were
            import torch

            torch.set_num_threads(self._threads)
        if kind is None or self.store is None or not self.rt.is_main:
            return
        user_error = issubclass(kind, (ConfigError, InputError))
        if self.temporary or (user_error and self.rt.world == 1 and self.reused == 0):
            self.store.remove()
        elif self.store.dir.exists():
            done = len(self.store.done())
            log.warning("%d of %d parts of this run are done in %s: finish it with --resume (same "
                        "options), or delete it", done, self.store.parts, self.store.dir)


def predict_rows(annotator, part: Iterable[dict], advance: Callable[[int], None]):
    """A part's predictions (rows as they are: dataset rows, benchmark queries) without `id`
    (the writers name rows themselves), `advance(1)` after each: `walk`'s `predict_part` for
    `predict` and `benchmark`."""
    for pred in annotator.annotate(part):
        yield {k: v for k, v in pred.items() if k != "id"}
        advance(1)


class _Counted:
    """An iterator that counts what it gave (a part's rows)."""

    def __init__(self, it):
        self.it, self.n = it, 0

    def __iter__(self):
        for x in self.it:
            self.n += 1
            yield x


def _temporary_parts(command: str, attempt: int, rt: Runtime) -> Path:
    """The parts directory of a run that names no output: the temporary directory on one
    machine, the working directory across machines (which they must share)."""
    base = Path(tempfile.gettempdir()) if rt.local_world == rt.world else Path.cwd()
    return base / f".llamadna-{command}.{attempt}.parts"

