"""Outputs through the command line (issue 27): an output that is, links to or holds one of the
run's inputs, a place that cannot be written and an output of the wrong kind are each refused
before any work with one line (exit 2), the input unchanged and nothing left behind; two runs
writing one output at the same time end with one complete file or a clear refusal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from llamadna.cli import app
from llamadna.io.atomic import (
    atomic_write,
    owner_prefix,
    replace_dir,
    stale_temporaries,
    temporaries,
    temporary_dir,
)
from tests.test_annotate import IDS, SEQS, _fasta, save_tiny_model

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The tiny untrained model of tests/test_annotate.py, saved as `train` saves one."""
    return save_tiny_model(tmp_path_factory.mktemp("model"))


def _snapshot(root: Path) -> dict[str, bytes | str | None]:
    """Every path under `root` with its bytes (a link: its target; a directory: None): proves
    nothing changed."""
    return {str(p.relative_to(root)): os.readlink(p) if p.is_symlink() else None if p.is_dir()
            else p.read_bytes() for p in sorted(root.rglob("*"))}


def _refused(args: list[str], root: Path, *expected: str) -> str:
    """Run the CLI and check a refusal: exit 2, one line holding `expected`, no traceback, and
    nothing under `root` changed, added or left behind."""
    before = _snapshot(root)
    r = runner.invoke(app, args)
    line = r.output.strip()
    assert r.exit_code == 2, r.output
    assert line.startswith("error: ") and "\n" not in line, r.output
    assert "Traceback" not in r.output
    for text in expected:
        assert text in line, line
    assert _snapshot(root) == before, "the refused run changed or left files"
    return line


@pytest.fixture
def work(tmp_path):
    """A query FASTA, its directory the only place the tests write in."""
    _fasta(tmp_path / "q.fa", list(zip(IDS, SEQS)))
    return tmp_path


@pytest.fixture
def no_model(monkeypatch):
    """A model load fails the test: the refusals come before any work."""
    from llamadna.annotate.distributed import ModelLoader

    def load(*a, **k):
        raise AssertionError("the model was loaded before the output was checked")
    monkeypatch.setattr(ModelLoader, "load", load)


# ------------------------------------------------------------------------------ output is an input
@pytest.mark.parametrize("how", ["same path", "other spelling", "symlink", "hard link"])
def test_annotate_refuses_to_write_over_its_fasta(work, model_dir, how, monkeypatch, no_model):
    fa = work / "q.fa"
    monkeypatch.chdir(work)
    out = {"same path": str(fa), "other spelling": "sub/../q.fa", "symlink": "link.tsv",
           "hard link": "hard.tsv"}[how]
    (work / "sub").mkdir()
    if how == "symlink":
        (work / "link.tsv").symlink_to(fa)
    if how == "hard link":
        os.link(fa, work / "hard.tsv")
    _refused(["annotate", str(fa), "--model", str(model_dir), "--out", out], work,
             f"--out {out} is the input FASTA", "choose another path")


def test_annotate_refuses_a_file_of_the_model(work, model_dir, no_model):
    weights = next(p for p in model_dir.iterdir() if p.suffix == ".safetensors")
    os.link(weights, work / "w.tsv")  # a hard link elsewhere to the model's weights
    for out, text in ((model_dir / "config.json", "lies in the model directory"),
                      (work / "w.tsv", f"is a link to {weights}, a file of the model directory")):
        _refused(["annotate", str(work / "q.fa"), "--model", str(model_dir), "--out", str(out)],
                 model_dir, text)
    assert (work / "w.tsv").read_bytes() == weights.read_bytes()


def test_file_outputs_of_every_command_refuse_their_inputs(work, model_dir):
    ds = work / "ds.parquet"
    pl.DataFrame({"id": ["a"], "Sequence": ["ACGT"]}).write_parquet(ds)
    bench = work / "bench"
    bench.mkdir()
    (bench / "truth.tsv").write_text("id\tgene\n")
    (work / "p.tsv").write_text("reference\tprediction\nx\tx\n")
    (work / "r.fq").write_text("@r\nACGT\n+\nIIII\n")
    cases = [
        (["search", str(work / "q.fa"), "--index", str(work / "none"), "--out", str(work / "q.fa")],
         "is the query FASTA"),
        (["predict", "--dataset", str(ds), "--model", str(model_dir), "--out", str(ds)],
         "is the dataset"),
        (["benchmark", str(bench), "--model", str(model_dir), "--out", str(bench / "truth.tsv")],
         "lies in the benchmark directory"),
        (["score", "--predictions", str(work / "p.tsv"), "--out", str(work / "p.tsv")],
         "is the predictions"),
        (["splash", "--sample", f"a={work / 'r.fq'}", "--sample", f"b={work / 'r.fq'}",
          "--out", str(work / "r.fq")], "is a read file"),
    ]
    for args, text in cases:
        _refused(args, work, text)


def test_directory_outputs_refuse_to_be_or_hold_their_inputs(work, model_dir):
    enc, index, data = work / "enc", work / "runs" / "index", work / "data"
    for d in (enc, index, data):
        d.mkdir(parents=True)
        (d / "config.json").write_text("{}")
    (work / "a.tsv").write_text("anchor\n")
    cases = [
        (["train", "--dataset", str(work / "ds"), "--encoder", str(enc), "--out", str(enc)],
         f"--out {enc} is the encoder directory"),
        (["train", "--dataset", str(work / "ds"), "--encoder", str(enc), "--index", str(index),
          "--out", str(work / "runs")],
         "holds the index directory"),
        (["index", "--encoder", str(enc), "--out", str(enc)], "is the encoder directory"),
        (["evaluate", "--model", str(model_dir), "--dataset", str(work / "ds"), "--out", str(model_dir)],
         "is the model directory"),
        (["evaluate", "--model", str(model_dir), "--dataset", str(work / "ds"),
          "--out", str(model_dir.parent)], "holds the model directory"),
        (["build-dataset", "--data", str(data), "--out", str(data)], "is the data directory"),
        (["pretrain-encoder", "--data", str(data), "--init", str(enc), "--out", str(enc)],
         "is the --init encoder"),
        (["splash-scores", str(work / "ds"), str(work / "a.tsv"), "--out", str(work / "a.tsv")],
         "is a SPLASH anchors table"),
    ]
    for args, text in cases:
        _refused(args, work, text)
    _refused(cases[3][0], model_dir, "is the model directory")  # the model untouched


# ------------------------------------------------------------------------------ the place
def test_annotate_out_of_the_wrong_kind_is_refused_before_any_work(work, model_dir, no_model):
    (work / "adir").mkdir()
    (work / "afile").write_text("x")
    fa = str(work / "q.fa")
    base = ["annotate", fa, "--model", str(model_dir), "--out"]
    _refused(base + [str(work / "adir")], work, "is an existing directory",
             "ending in .tsv, .jsonl, .gff3")
    _refused(base + [str(work / "preds")], work, "unknown output format", "has no suffix",
             ".tsv, .jsonl, .gff3")
    _refused(base + [str(work / "preds.csv")], work, "unknown output format", "'.csv'")
    _refused(base + [str(work / "afile" / "p.tsv")], work, f"{work / 'afile'} is not a directory")
    _refused(base + [str(work / "afile" / "deeper" / "p.tsv")], work, "is not a directory")
    (work / "loop1").symlink_to(work / "loop2")
    (work / "loop2").symlink_to(work / "loop1")
    for out in (work / "loop1", work / "loop1" / "p.tsv"):
        _refused(base + [str(out)], work, f"--out {out}: a symbolic link loop")


def test_other_commands_refuse_an_existing_directory_or_file_of_the_wrong_kind(work, model_dir):
    (work / "adir").mkdir()
    (work / "afile").write_text("x")
    (work / "p.tsv").write_text("reference\tprediction\nx\tx\n")
    _refused(["score", "--predictions", str(work / "p.tsv"), "--out", str(work / "adir")], work,
             "is an existing directory")
    _refused(["search", str(work / "q.fa"), "--index", str(work / "i"), "--out", str(work / "adir")],
             work, "is an existing directory", "ending in .tsv, .jsonl")
    _refused(["benchmark", str(work / "bench"), "--model", str(model_dir), "--out", str(work / "adir")],
             work, "is an existing directory")  # it was written only after the whole run
    _refused(["predict", "--dataset", str(work / "ds"), "--model", str(model_dir),
              "--out", str(work / "adir")], work, "is an existing directory")
    _refused(["index", "--encoder", str(work / "e"), "--out", str(work / "afile")], work,
             "exists and is not a directory")
    _refused(["train", "--dataset", str(work / "d"), "--encoder", str(work / "e"),
              "--out", str(work / "afile" / "model")], work,
             f"{work / 'afile'} is not a directory")


def test_a_place_that_cannot_be_written_is_refused(work, model_dir, no_model):
    """/sys refuses new files even to root (sysfs); a 0555 directory refuses them to anyone
    else (root ignores permission bits, so that half runs only as another user)."""
    base = ["annotate", str(work / "q.fa"), "--model", str(model_dir), "--out"]
    ran = 0
    sysfs = Path("/sys")
    if sysfs.is_dir():
        try:
            (sysfs / "llamadna_probe").touch()
        except OSError:
            _refused(base + ["/sys/llamadna_preds.tsv"], work, "cannot write in /sys")
            _refused(["index", "--encoder", str(work / "e"), "--out", "/sys/llamadna_index"], work,
                     "--out /sys/llamadna_index: cannot write in /sys")
            ran += 1
        else:
            (sysfs / "llamadna_probe").unlink()
    if os.geteuid() != 0:
        ro = work / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            _refused(base + [str(ro / "p.tsv")], work, f"cannot write in {ro}", "permission denied")
            _refused(["index", "--encoder", str(work / "e"), "--out", str(ro / "idx")], work,
                     f"cannot write in {ro}")
            ran += 1
        finally:
            ro.chmod(0o755)
    if not ran:
        pytest.skip("no place here refuses this process a new file")


# ------------------------------------------------------------------------------ concurrent writers
_SLOW_WRITER = """
import sys, time
from pathlib import Path
from llamadna.io.atomic import atomic_write
out, go, text = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
def write(tmp):
    with open(tmp, "w") as fh:
        fh.write(text[: len(text) // 2])
        fh.flush()
        while not go.exists():  # the other run writes the same output meanwhile
            time.sleep(0.02)
        fh.write(text[len(text) // 2:])
atomic_write(out, write)
"""


def test_two_writers_of_one_output_end_with_one_complete_file(tmp_path):
    out, go = tmp_path / "preds.tsv", tmp_path / "go"
    slow_text, fast_text = "A" * 100_000 + "\n", "B" * 50_000 + "\n"
    slow = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(out), str(go), slow_text],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not temporaries(out) and time.time() < deadline and slow.poll() is None:
            time.sleep(0.02)
        live = temporaries(out)
        assert len(live) == 1 and slow.poll() is None, "the slow writer never started"
        assert stale_temporaries(out) == []  # its writer runs
        atomic_write(out, lambda p: p.write_text(fast_text))  # the second run, in this process
        assert out.read_text() == fast_text  # one complete file
        assert live[0].exists(), "the second run removed the first's live temporary"
        go.touch()
        _, err = slow.communicate(timeout=60)
        assert slow.returncode == 0, err
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait()
    assert out.read_text() == slow_text  # the last rename wins, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go", "preds.tsv"]


def test_a_dead_writers_temporary_is_removed_a_live_ones_kept(tmp_path):
    out = tmp_path / "out.tsv"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        gone = tmp_path / f"{owner_prefix(out, dead.pid)}abc123.tmp"
        live = tmp_path / f"{owner_prefix(out, alive.pid)}def456.tmp"
        other_host = tmp_path / f"{owner_prefix(out, dead.pid, 'another-host')}ghi789.tmp"
        gone_dir = tmp_path / f"{owner_prefix(out, dead.pid)}jkl012.old"
        for p in (gone, live, other_host):
            p.write_text("partial")
        gone_dir.mkdir()
        (gone_dir / "f").write_text("x")
        assert stale_temporaries(out) == sorted([gone, gone_dir])
        atomic_write(out, lambda p: p.write_text("done"))
        assert not gone.exists() and not gone_dir.exists()
        assert live.exists() and other_host.exists()  # a writer that may still run
        assert out.read_text() == "done"
    finally:
        alive.kill()
        alive.wait()
    assert stale_temporaries(out) == [live]  # once its writer is gone


def test_racing_directory_replacements_leave_one_complete_directory(tmp_path):
    out, n = tmp_path / "model", 8
    (out).mkdir()
    (out / "old").write_text("the previous run's")
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            tmp = temporary_dir(out)
            for j in range(5):
                (tmp / f"part{j}").write_text(str(i))
            barrier.wait()
            replace_dir(tmp, out)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(p.name for p in out.iterdir()) == [f"part{j}" for j in range(5)]
    assert len({p.read_text() for p in out.iterdir()}) == 1  # one writer's, complete
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no .tmp or .old left


def test_an_output_directory_made_for_a_run_that_failed_is_removed(tmp_path):
    (tmp_path / "enc").mkdir()
    before = _snapshot(tmp_path)
    r = runner.invoke(app, ["index", "--encoder", str(tmp_path / "enc"), "--data",
                            str(tmp_path / "nowhere"), "--out", str(tmp_path / "x" / "y" / "idx")])
    assert r.exit_code == 2 and "nowhere" in r.output.strip().splitlines()[-1], r.output
    assert _snapshot(tmp_path) == before  # x/y/idx, made to be held, removed again


_HOLDER = """
import sys, time
from llamadna.io.atomic import exclusive_dir
with exclusive_dir(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_run_writing_a_held_output_directory_is_refused(tmp_path):
    out = tmp_path / "index"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        _refused(["index", "--encoder", str(tmp_path / "enc"), "--out", str(out)], tmp_path,
                 f"--out {out}: another run is writing this directory now")
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # the lock dies with its process, however it ends
        holder.wait()
        holder.stdout.close()
    from llamadna.io.atomic import exclusive_dir

    with exclusive_dir(out):
        assert out.is_dir()
