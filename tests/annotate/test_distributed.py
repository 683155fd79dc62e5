"""Sharded runs (annotate.distributed): one process and torchrun's two write the same bytes; a
killed rank's run resumes, recomputing only its unfinished parts; another run's parts are refused.

The torchrun tests share one small trained retrieval model and its index (a module fixture)
and run every process with one thread (OMP_NUM_THREADS=1), as byte-identity needs the same
threads. On CPUs of one machine the second rank is a fork of the first (the default); one test
turns the forks off (LLAMADNA_FORK_RANKS=0): two launched processes, the index served to the
second by the first one's search service."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from llamadna.annotate import Annotator, InferenceConfig, annotate_fasta
from llamadna.annotate.distributed import ModelLoader, Runtime
from llamadna.constants import ENV_FORK_RANKS, PREDICTION_COLUMNS
from llamadna.errors import ConfigError, RankError
from tests.annotate.stubs import StubModel, StubProcessor
from tests.conftest import model_workspace
from tests.train.launch import torchrun_cli, torchrun_command

pytestmark = pytest.mark.usefixtures("one_thread")

MITO = Path(__file__).parents[3] / "shared" / "benchmarks" / "mito"
N_SEQS = 2_000
TILE = 96  # records longer than the dataset's window are tiled
NEW = "3"  # new tokens: the sentences are cut short, which changes no byte-identity
PART = "64"  # tiles per part: ~33 parts of 2,000 tiles, so that both ranks take many


# ------------------------------------------------------------------------------ one process, a stub model
@pytest.fixture
def stub(monkeypatch):
    calls: list[int] = []

    def predict(self, rows):
        calls.append(len(rows))
        return [dict.fromkeys(PREDICTION_COLUMNS[1:], None) | {"confidence": -len(r["Sequence"]) / 7,
                                                               "annotation": r["Sequence"][:4]} for r in rows]

    monkeypatch.setattr(Annotator, "predict_batch", predict)
    annotator = Annotator(StubModel(), StubProcessor(), config=InferenceConfig(batch_size=2, max_new_tokens=7,
                                                                         decoding="greedy"))
    annotator.calls = calls
    return annotator


@pytest.fixture
def fasta(tmp_path):
    fa = tmp_path / "s.fa"
    fa.write_text("".join(f">s{i}\n{'ACGT' * (i + 1)}\n" for i in range(9)))
    return fa


def test_a_one_process_run_resumes_its_unfinished_parts_only(stub, fasta, tmp_path, monkeypatch):
    want = tmp_path / "want.tsv"
    annotate_fasta(stub, fasta, want)
    stub.calls.clear()
    out = tmp_path / "p.tsv"
    real = Annotator.predict_batch

    def dies(self, rows):  # the 3rd batch: parts 0 (batches 1-2) done, part 1 not
        if len(stub.calls) == 2:
            raise KeyboardInterrupt
        return real(self, rows)

    monkeypatch.setattr(Annotator, "predict_batch", dies)
    with pytest.raises(KeyboardInterrupt):
        annotate_fasta(stub, fasta, out, part_size=3)  # 4 tiles a part (2 batches of 2)
    parts = tmp_path / "p.tsv.parts"
    assert not out.exists() and sorted(p.name for p in parts.glob("part-*.jsonl")) == ["part-000000.jsonl"]
    assert json.loads((parts / "run.json").read_text())["part_rows"] == 4
    monkeypatch.setattr(Annotator, "predict_batch", real)
    with pytest.raises(ConfigError, match=r"p\.tsv\.parts holds the parts of an interrupted run: add --resume"):
        annotate_fasta(stub, fasta, out, part_size=3)
    with pytest.raises(ConfigError) as err:  # other settings: refused, naming them
        annotate_fasta(stub, fasta, out, part_size=3, max_new_tokens=5, resume=True)
    assert "settings.max_new_tokens 7 in the parts, 5 now" in str(err.value) and "\n" not in str(err.value)
    stub.calls.clear()
    s = annotate_fasta(stub, fasta, out, part_size=3, resume=True)
    assert (s["parts"], s["parts_reused"], s["parts_computed"]) == (3, 1, 2)
    assert sum(stub.calls) == 9 - 4  # the finished part's tiles were not annotated again
    assert s["per_rank"] == {0: {"parts": 2, "rows": 5, "seconds": s["per_rank"][0]["seconds"]}}
    assert out.read_bytes() == want.read_bytes() and not parts.exists()


def test_a_user_error_in_one_process_leaves_no_parts(stub, fasta, tmp_path, monkeypatch):
    def refuses(self, rows):
        raise ConfigError("sequence 's0': past the LLM's positions")

    monkeypatch.setattr(Annotator, "predict_batch", refuses)
    with pytest.raises(ConfigError, match="past the LLM"):
        annotate_fasta(stub, fasta, tmp_path / "p.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.fa"]  # rerun with other options: nothing to resume


@pytest.fixture
def forked(monkeypatch):
    """This process as local rank 0 of two CPU ranks on one machine: its walk forks rank 1."""
    for name, value in {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "LOCAL_RANK": "0", "RANK": "0",
                        "ACCELERATE_USE_CPU": "true"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(ENV_FORK_RANKS, raising=False)


def test_a_forked_rank_writes_the_bytes_of_one_process_and_its_failure_stops_the_run(
        stub, fasta, tmp_path, monkeypatch, forked):
    want = tmp_path / "want.tsv"
    with monkeypatch.context() as m:
        m.setenv("WORLD_SIZE", "1")
        annotate_fasta(stub, fasta, want)
    s = annotate_fasta(stub, fasta, tmp_path / "two.tsv", part_size=2)
    assert (tmp_path / "two.tsv").read_bytes() == want.read_bytes()
    assert s["parts_computed"] == s["parts"] == 5 and set(s["per_rank"]) <= {0, 1}
    # a fork that fails: rank 0 stops at its next part, naming it; the parts stay for --resume
    parent, real = os.getpid(), Annotator.predict_batch

    def fork_fails(self, rows):
        if os.getpid() != parent:
            raise RuntimeError("a bug in rank 1")
        time.sleep(0.3)  # rank 0 slow: the fork claims a part
        return real(self, rows)

    monkeypatch.setattr(Annotator, "predict_batch", fork_fails)
    out = tmp_path / "p.tsv"
    with pytest.raises(RankError, match=r"rank 1 of 2 \(process \d+, a fork of rank 0\) failed \(exit status 1\)"):
        annotate_fasta(stub, fasta, out, part_size=1)
    assert not out.exists() and (tmp_path / "p.tsv.parts" / "run.json").exists()
    monkeypatch.setattr(Annotator, "predict_batch", real)
    monkeypatch.setenv("WORLD_SIZE", "1")
    s = annotate_fasta(stub, fasta, out, part_size=1, resume=True)
    assert out.read_bytes() == want.read_bytes() and s["parts_computed"] < s["parts"]


def test_the_other_launched_processes_of_a_forked_run_return_at_once(stub, fasta, tmp_path, monkeypatch, forked):
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(Annotator, "predict_batch", lambda self, rows: pytest.fail("an idle process annotated"))
    assert annotate_fasta(stub, fasta, tmp_path / "p.tsv") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.fa"]


def test_processes_fork_this_process_share_the_cpus_and_write_the_bytes_of_one(
        stub, fasta, tmp_path, monkeypatch, caplog):
    """--processes 2 without a launcher: this process is rank 0 and forks rank 1; every process
    runs the CPUs / 2 torch threads (OMP_NUM_THREADS: the user's), given back at the end."""
    import logging

    import torch

    from llamadna.annotate import distributed

    for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "LOCAL_RANK", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "usable_cpus", lambda: 4)
    want = tmp_path / "want.tsv"
    annotate_fasta(stub, fasta, want)
    parent, real, threads = os.getpid(), Annotator.predict_batch, []

    def rank0_slow(self, rows):  # rank 0 slow: the fork claims parts too
        if os.getpid() == parent:
            threads.append(torch.get_num_threads())
            time.sleep(0.2)
        return real(self, rows)

    monkeypatch.setattr(Annotator, "predict_batch", rank0_slow)
    caplog.set_level(logging.INFO, logger=distributed.__name__)
    s = annotate_fasta(stub, fasta, tmp_path / "two.tsv", part_size=2, processes=2)
    assert (tmp_path / "two.tsv").read_bytes() == want.read_bytes()
    assert "ranks 1-1: forks of rank 0" in caplog.text and set(s["per_rank"]) == {0, 1}
    assert set(threads) == {2} and torch.get_num_threads() == 1  # 4 CPUs / 2; then as before
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads.clear()
    annotate_fasta(stub, fasta, tmp_path / "three.tsv", part_size=2, processes=2)
    assert set(threads) == {1} and (tmp_path / "three.tsv").read_bytes() == want.read_bytes()


def test_forked_ranks_share_the_cpus_with_minimap2_unless_threads_are_given(stub, tmp_path, monkeypatch):
    from llamadna.annotate import distributed

    for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "usable_cpus", lambda: 6)
    monkeypatch.setattr(ModelLoader, "load", lambda self, device=None: stub)
    got = []
    monkeypatch.setattr(ModelLoader, "attach_index", lambda self, annotator: got.append(self.threads))
    for processes, given in [(3, None), (3, 5), (1, None)]:
        distributed.ShardedRun(None, False, "benchmark", processes).load(ModelLoader(tmp_path, threads=given))
    assert got == [2, 5, None]


@pytest.mark.parametrize(("env", "platform", "processes", "message"), [
    ({"WORLD_SIZE": "2"}, "linux", 2, "--processes 2 under a launcher of 2 processes"),
    ({}, "darwin", 2, "--processes 2: forked ranks need Linux"),
    ({}, "linux", 0, "--processes 0: must be >= 1"),
])
def test_processes_are_refused_under_a_launcher_off_linux_and_below_one(monkeypatch, env, platform, processes,
                                                                      message):
    from llamadna.annotate import distributed

    for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "platform", platform)
    with pytest.raises(ConfigError, match=re.escape(message)):
        distributed.runtime(processes)
    if not env:  # one process is never refused
        assert distributed.runtime(1) == Runtime()


def _with_processes(tmp_path, command: str, processes: int):
    """`llamadna COMMAND ... --processes N` in this process (CliRunner), on inputs that exist but
    that nothing reads before --processes is checked."""
    from llamadna.cli import app

    (tmp_path / "in.fa").write_text(">a\nACGT\n")
    (tmp_path / "m").mkdir()
    args = {"annotate": ["annotate", str(tmp_path / "in.fa"), "--out", str(tmp_path / "o.tsv")],
            "predict": ["predict", "--dataset", str(tmp_path / "in.fa"), "--out", str(tmp_path / "o.tsv")],
            "benchmark": ["benchmark", str(tmp_path)]}[command]
    return CliRunner().invoke(app, [*args, "--model", str(tmp_path / "m"), "--processes", str(processes)])


@pytest.mark.parametrize("command", ["annotate", "predict", "benchmark"])
def test_each_command_takes_processes_and_refuses_it_under_a_launcher_in_one_line(tmp_path, command, monkeypatch):
    for name in ("LOCAL_WORLD_SIZE", "LOCAL_RANK", "ACCELERATE_USE_CPU"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    r = _with_processes(tmp_path, command, 2)
    out = " ".join(r.output.split())
    assert r.exit_code == 2 and "--processes 2 under a launcher of 2 processes" in out, out
    assert "Traceback" not in r.output


@pytest.mark.parametrize(("command", "module", "function"), [
    ("annotate", "llamadna.annotate", "annotate_fasta"),
    ("predict", "llamadna.evaluate.predict", "predict_dataset"),
    ("benchmark", "llamadna.evaluate.benchmark", "run_benchmark"),
])
def test_each_command_passes_processes_on(tmp_path, monkeypatch, command, module, function):
    import importlib

    for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    got = []
    monkeypatch.setattr(importlib.import_module(module), function,
                        lambda *a, **kw: got.append(kw.get("processes")))  # None: "not the main process"
    r = _with_processes(tmp_path, command, 3)
    assert r.exit_code == 0 and got == [3], r.output


@pytest.mark.parametrize("command", ["annotate", "predict", "benchmark"])
def test_an_idle_launched_process_leaves_before_importing_torch(tmp_path, command):
    """The CLI of a launched process whose rank is a fork: exit 0 at once, nothing written, no
    torch (the memory of N-1 such processes while rank 0 loads)."""
    env = {**os.environ, "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "LOCAL_RANK": "1", "RANK": "1",
           "ACCELERATE_USE_CPU": "true"}
    env.pop(ENV_FORK_RANKS, None)
    args = {"annotate": ["annotate", "in.fa", "--out", "o.tsv"], "predict": ["predict", "--dataset", "d", "--out", "o.tsv"],
            "benchmark": ["benchmark", "bench", "--out", "o.tsv"]}[command]
    code = ("import sys; from llamadna.cli import app; "
            f"app({[*args, '--model', 'm']!r}, standalone_mode=False); print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.split() == ["False"], r.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []


def test_resume_of_a_benchmark_without_out_is_refused(tmp_path):
    from llamadna.cli import app

    r = CliRunner().invoke(app, ["benchmark", str(tmp_path), "--model", str(tmp_path), "--resume"])
    assert r.exit_code == 2 and "--resume needs --out" in " ".join(r.output.split())


# ------------------------------------------------------------------------------ torchrun, a trained model
@pytest.fixture(scope="module")
def trained(tmp_path_factory, bundle_factory):
    """A tiny retrieval model trained a few steps on a generated bundle, its index, and a FASTA of
    N_SEQS generated sequences: reference windows (some mutated), random sequence, records
    longer than TILE (tiled) and one all-N record (skipped)."""
    from llamadna.retrieve.config import IndexConfig
    from llamadna.retrieve.index import ReferenceIndex
    from llamadna.train.config import TrainConfig
    from llamadna.train.train import train

    root = tmp_path_factory.mktemp("sharded")
    data = model_workspace(root, bundle_factory, seed=31, n_variants=120)
    ReferenceIndex.build(IndexConfig(encoder=str(root / "encoder"), out=str(root / "index"), data=str(data),
                                     dataset=str(root / "dataset"), window=96, stride=48, flank=50))
    train(TrainConfig(dataset=str(root / "dataset"), out=str(root / "model"), encoder=str(root / "encoder"),
                      index=str(root / "index"), max_steps=2, batch_size=4, llm_pretrain_steps=5,
                      text_vocab_size=300, llm_hidden_size=32, llm_layers=1, max_val_rows=4,
                      checkpoint_every=0, calibration_rows=4))
    windows = pl.read_parquet(root / "dataset" / "dataset.parquet")["Sequence"].to_list()
    rng = np.random.default_rng(5)
    with open(root / "seqs.fa", "w") as fh:
        for i in range(N_SEQS):
            kind = i % 4
            if kind == 0:
                seq = windows[i % len(windows)]
            elif kind == 1:  # a mutated window
                s = list(windows[(7 * i) % len(windows)])
                for j in rng.choice(len(s), 8, replace=False):
                    s[j] = "ACGT"[rng.integers(4)]
                seq = "".join(s)
            elif kind == 2:
                seq = "".join(rng.choice(list("ACGT"), int(rng.integers(30, 96))))
            else:  # longer than a tile: 2-3 tiles
                seq = "".join(rng.choice(list("ACGT"), int(rng.integers(100, 250))))
            fh.write(f">q{i} generated\n{'N' * 40 if i == 17 else seq}\n")
    return root


def _cli(root, command: str, *args: str, nproc: int = 2, env: dict | None = None
         ) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    r = torchrun_cli(command, *args, "--model", str(root / "model"), nproc=nproc, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return r, time.perf_counter() - t0


def _annotate_args(root, out) -> list[str]:
    return [str(root / "seqs.fa"), "--out", str(out), "--tile", str(TILE), "--max-new-tokens", NEW,
            "--batch-size", "16", "--part-size", PART]


def _one_process(root, out, **kw) -> dict:
    """The same run in this process (one thread), as `llamadna annotate` runs it alone."""
    return annotate_fasta(ModelLoader(root / "model"), root / "seqs.fa", out, tile=TILE, batch_size=16,
                          max_new_tokens=int(NEW), part_size=int(PART), **kw)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["jsonl", "tsv", "gff3"])
def test_two_processes_write_the_bytes_of_one(trained, tmp_path, fmt):
    root = trained
    t0 = time.perf_counter()
    one = _one_process(root, tmp_path / f"one.{fmt}")
    alone = time.perf_counter() - t0
    r, both = _cli(root, "annotate", *_annotate_args(root, tmp_path / f"two.{fmt}"))
    assert (tmp_path / f"two.{fmt}").read_bytes() == (tmp_path / f"one.{fmt}").read_bytes()
    assert one["tiles"] > N_SEQS and one["all_n_tiles"] == 1
    text = " ".join(r.stdout.split() + r.stderr.split())
    assert "process 0:" in text and "process 1:" in text and f"0 parts reused, {one['parts']} computed" in text
    assert "ranks 1-1: forks of rank 0" in text  # CPUs of one machine: the second rank is a fork
    assert not (tmp_path / f"two.{fmt}.parts").exists()
    rate = re.search(r"annotated \d+ records \(\d+ tiles of <= \d+ bases\) in ([\d.]+) s \(([\d.]+) tiles/s\)", text)
    print(f"{fmt}: {one['tiles']} tiles, one process {one['seconds']} s ({one['tiles_per_s']} tiles/s; "
          f"{alone:.1f} s with the model load), two processes {rate[1]} s ({rate[2]} tiles/s; {both:.1f} s "
          "with torchrun's start)")


@pytest.mark.slow
def test_two_launched_processes_without_forks_write_the_bytes_of_one(trained, tmp_path):
    """LLAMADNA_FORK_RANKS=0: each launched process is a rank, rank 1 searching through rank 0's
    search service (the path GPUs and several machines take)."""
    root = trained
    _one_process(root, tmp_path / "one.jsonl")
    r, _ = _cli(root, "annotate", *_annotate_args(root, tmp_path / "two.jsonl"), env={ENV_FORK_RANKS: "0"})
    assert (tmp_path / "two.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    text = " ".join(r.stdout.split() + r.stderr.split())
    assert "process 0:" in text and "process 1:" in text
    assert "forks of rank 0" not in text


def _plain_cli(root, command: str, *args: str) -> subprocess.CompletedProcess:
    """`llamadna COMMAND ARGS --model MODEL` as one launched process (no torchrun), one thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "400"}
    for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "LOCAL_RANK", "RANK", "ACCELERATE_USE_CPU"):
        env.pop(name, None)
    r = subprocess.run([sys.executable, "-m", "llamadna.cli", command, *args, "--model", str(root / "model")],
                       capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.mark.slow
def test_processes_without_a_launcher_write_the_bytes_of_one(trained, tmp_path):
    """`--processes 2`: the command's own process forks rank 1 (no launcher), for annotate and
    predict; the bytes of one process of as many threads."""
    root = trained
    _one_process(root, tmp_path / "one.jsonl")
    r = _plain_cli(root, "annotate", *_annotate_args(root, tmp_path / "two.jsonl"), "--processes", "2")
    assert (tmp_path / "two.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    text = " ".join(r.stdout.split() + r.stderr.split())
    assert "ranks 1-1: forks of rank 0" in text and "process 1:" in text
    args = ["--dataset", str(root / "dataset"), "--subset", "train", "--max-new-tokens", NEW, "--batch-size",
            "8", "--part-size", "16", "--show", "0"]
    _plain_cli(root, "predict", *args, "--out", str(tmp_path / "one.tsv"))
    r = _plain_cli(root, "predict", *args, "--out", str(tmp_path / "two.tsv"), "--processes", "2")
    assert (tmp_path / "one.tsv").read_bytes() == (tmp_path / "two.tsv").read_bytes()
    assert "process 1:" in r.stdout + r.stderr


@pytest.mark.parametrize(("env", "world", "forks"), [
    ({"ACCELERATE_USE_CPU": "true", "LOCAL_WORLD_SIZE": "2"}, 2, True),
    ({"ACCELERATE_USE_CPU": "1", "LOCAL_WORLD_SIZE": "4"}, 4, True),
    ({"ACCELERATE_USE_CPU": "true", "LOCAL_WORLD_SIZE": "2", ENV_FORK_RANKS: "0"}, 2, False),
    ({"ACCELERATE_USE_CPU": "true", "LOCAL_WORLD_SIZE": "2"}, 4, False),  # two machines
    ({"LOCAL_WORLD_SIZE": "2"}, 2, False),  # GPUs
    ({"ACCELERATE_USE_CPU": "true", "LOCAL_WORLD_SIZE": "1"}, 1, False),  # one process
])
def test_cpu_ranks_of_one_machine_are_forks_unless_turned_off(monkeypatch, env, world, forks):
    from llamadna.annotate.distributed import runtime
    from llamadna.launch import forks_ranks, idle_process

    for name in ("ACCELERATE_USE_CPU", "LOCAL_WORLD_SIZE", ENV_FORK_RANKS):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert forks_ranks(world) is forks
    if forks:  # decided without torch.distributed: rank 0 works, the other launched processes idle
        monkeypatch.setenv("WORLD_SIZE", str(world))
        monkeypatch.setenv("LOCAL_RANK", "0")
        assert runtime() == Runtime(0, world, 0, world, device="cpu", forked=True, idle=False)
        assert not idle_process()
        monkeypatch.setenv("LOCAL_RANK", "1")
        assert runtime().idle and idle_process() and runtime().broadcast([7, 8]) == [7, 8]


def test_more_threads_than_cpus_are_warned_of(monkeypatch, caplog):
    import torch

    from llamadna.annotate.distributed import warn_oversubscribed

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert not warn_oversubscribed(1) and not caplog.records
    assert warn_oversubscribed(2)
    assert "2 processes x 2 threads on 2 CPUs: oversubscribed" in caplog.text and "OMP_NUM_THREADS=1" in caplog.text
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert not warn_oversubscribed(2)


@pytest.mark.slow
def test_predict_in_two_processes_writes_the_bytes_of_one(trained, tmp_path):
    root = trained
    args = ["--dataset", str(root / "dataset"), "--subset", "train", "--max-new-tokens", NEW, "--batch-size",
            "8", "--part-size", "16", "--show", "0"]
    r1, _ = _cli(root, "predict", *args, "--out", str(tmp_path / "one.tsv"), nproc=1)
    r2, _ = _cli(root, "predict", *args, "--out", str(tmp_path / "two.tsv"))
    assert (tmp_path / "one.tsv").read_bytes() == (tmp_path / "two.tsv").read_bytes()
    assert "process 1:" in r2.stdout + r2.stderr and "process 1:" not in r1.stdout + r1.stderr


@pytest.mark.slow
@pytest.mark.skipif(not (MITO / "queries.fa").exists(), reason="no mito benchmark in ../shared/benchmarks")
def test_benchmark_in_two_processes_writes_the_bytes_of_one(trained, tmp_path):
    root = trained
    args = [str(MITO), "--max-new-tokens", NEW, "--batch-size", "8", "--part-size", "24", "--show", "0"]
    r1, _ = _cli(root, "benchmark", *args, "--out", str(tmp_path / "one.tsv"), nproc=1)
    r2, _ = _cli(root, "benchmark", *args, "--out", str(tmp_path / "two.tsv"))
    assert (tmp_path / "one.tsv").read_bytes() == (tmp_path / "two.tsv").read_bytes()
    scores = [[line for line in r.stderr.splitlines() if line.startswith("│")] for r in (r1, r2)]
    assert scores[0] and scores[0] == scores[1]  # the score table printed


def _workers(pid: int) -> dict[int, int]:
    """{rank: pid} of the run's ranks: torchrun's worker processes or, where the ranks are forks
    of rank 0 (`annotate.distributed`; the other workers have returned), rank 0 and its forks in
    the order they were made."""
    import psutil

    found = {}
    for child in psutil.Process(pid).children():
        try:
            env = child.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "llamadna.cli" in " ".join(child.cmdline()) and "RANK" in env:
            found[int(env["RANK"])] = child.pid
    forks = sorted(c.pid for c in psutil.Process(found[0]).children() if "llamadna.cli" in " ".join(c.cmdline()))
    return {0: found[0], **{k: p for k, p in enumerate(forks, start=1)}} if forks else found


@pytest.mark.slow
@pytest.mark.parametrize("victim", [1])
def test_a_killed_rank_resumes_to_the_same_bytes_redoing_only_unfinished_parts(trained, tmp_path, victim):
    root = trained
    want = tmp_path / "want.jsonl"
    _one_process(root, want)
    out = tmp_path / "p.jsonl"
    parts = tmp_path / "p.jsonl.parts"
    cmd, env = torchrun_command("annotate", *_annotate_args(root, out), "--model", str(root / "model"))
    run = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and run.poll() is None and len(list(parts.glob("part-*.jsonl"))) < 8:
            time.sleep(0.1)
        workers = _workers(run.pid)
        assert run.poll() is None and victim in workers, "the run ended before a rank could be killed"
        signal_sent = time.time()
        os.kill(workers[victim], signal.SIGKILL)
        _, err = run.communicate(timeout=120)  # torchrun stops the other rank and fails
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode != 0 and not out.exists() and time.time() - signal_sent < 120
    said = " ".join(err.split())
    assert f"error: rank {victim} of 2 (process {workers[victim]}, a fork of rank 0) was killed by signal 9" in said
    done = sorted(parts.glob("part-*.jsonl"))
    total = json.loads((parts / "run.json").read_text())["parts"]
    assert 8 <= len(done) < total, (len(done), total)
    claims = list(parts.glob("part-*.claim-*"))  # the killed attempt's claims: ignored by the next
    assert len(claims) >= len(done)
    # the parts of another run are refused, naming what differs
    from llamadna.cli import app

    r = CliRunner().invoke(app, ["annotate", *_annotate_args(root, out), "--model", str(root / "model"),
                                 "--resume", "--max-new-tokens", "2"])
    line = " ".join(r.output.split())
    assert r.exit_code == 2 and f"error: --resume: {parts} was written by another run" in line
    (said,) = [x for x in r.output.splitlines() if x.startswith("error:")]  # one line
    assert "settings.max_new_tokens 3 in the parts, 2 now" in said
    r = CliRunner().invoke(app, ["annotate", *_annotate_args(root, out), "--model", str(root / "model"),
                                 "--resume", "--withhold-below", "0"])
    assert r.exit_code == 2 and "settings.withhold_below 0.5 in the parts, null now" in " ".join(r.output.split())
    other = tmp_path / "other-model"
    shutil.copytree(root / "model", other)
    (other / "calibration.json").unlink(missing_ok=True)
    r = CliRunner().invoke(app, ["annotate", *_annotate_args(root, out), "--model", str(other), "--resume"])
    assert r.exit_code == 2 and "model differs" in " ".join(r.output.split()), r.output
    # --resume: the same bytes, only the unfinished parts computed
    r, _ = _cli(root, "annotate", *_annotate_args(root, out), "--resume")
    text = " ".join(r.stdout.split() + r.stderr.split())
    assert f"{len(done)} parts reused, {total - len(done)} computed (of {total})" in text, text[-2000:]
    per_process = [int(n) for n in re.findall(r"process \d: (\d+) parts", text)]
    assert len(per_process) == 2 and sum(per_process) == total - len(done), text  # unfinished only
    assert out.read_bytes() == want.read_bytes() and not parts.exists()
    print(f"killed rank {victim} with {len(done)} of {total} parts done; --resume computed {total - len(done)}")
