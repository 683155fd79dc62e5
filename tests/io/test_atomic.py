import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from llamadna.io.atomic import (
    atomic_dir,
    atomic_write,
    current_umask,
    owner_prefix,
    stale_temporaries,
    temporaries,
)


def test_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "out.tsv"

    def broken(p):
        p.write_text("partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write(out, broken)
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_of_a_killed_run_are_removed_and_permissions_are_usual(tmp_path):
    out = tmp_path / "out.tsv"
    left = [tmp_path / ".out.tsv.abc123.tmp", tmp_path / ".out.tsv.zz.tmp"]
    for p in left:
        p.write_text("partial results of a kill -9")
    other = tmp_path / ".other.tsv.x.tmp"  # another output's temporary is not touched
    other.write_text("x")
    assert stale_temporaries(out) == sorted(left)
    atomic_write(out, lambda p: p.write_text("done"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tsv.x.tmp", "out.tsv"]
    assert out.stat().st_mode & 0o777 == 0o666 & ~current_umask()  # not mkstemp's 0600


def test_sigterm_removes_the_partial_output(tmp_path):
    """The CLI turns SIGTERM into SystemExit, so an interrupted write cleans up after itself."""
    out = tmp_path / "out.tsv"
    script = (
        "import signal, time\n"
        "from llamadna.cli import _terminated\n"
        "from llamadna.io.atomic import atomic_write\n"
        "signal.signal(signal.SIGTERM, _terminated)\n"
        "def slow(p):\n"
        "    p.write_text('partial')\n"
        "    time.sleep(60)\n"
        f"atomic_write({str(out)!r}, slow)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while not temporaries(out) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert temporaries(out), "the write never started"
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(30) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- atomic_dir


def _tree(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_atomic_dir_writes_beside_the_target_then_puts_it_in_place(tmp_path):
    out = tmp_path / "a" / "model"
    with atomic_dir(out) as tmp:
        assert tmp.parent == out.parent and tmp.name.startswith(".model.") and tmp.name.endswith(".tmp")
        assert not out.exists()  # nothing visible while it is written
        (tmp / "sub").mkdir()
        (tmp / "sub" / "w.bin").write_bytes(b"w")
        (tmp / "config.json").write_text("{}")
        os.chmod(tmp / "config.json", 0o600)  # as safetensors writes its files
    assert _tree(out) == {"config.json": b"{}", "sub/w.bin": b"w"}
    assert list(out.parent.iterdir()) == [out]  # no temporary left
    assert (out / "config.json").stat().st_mode & 0o777 == 0o666 & ~current_umask()
    assert out.stat().st_mode & 0o777 == 0o777 & ~current_umask()  # not mkdtemp's 0700


def test_atomic_dir_replaces_the_target_whole(tmp_path):
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "old_only.bin").write_bytes(b"old")
    (out / "both.bin").write_bytes(b"old")
    with atomic_dir(out) as tmp:
        (tmp / "both.bin").write_bytes(b"new")
        assert _tree(out) == {"old_only.bin": b"old", "both.bin": b"old"}  # untouched meanwhile
    assert _tree(out) == {"both.bin": b"new"}  # no file of the old directory survives
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_atomic_dir_failure_leaves_nothing_behind(tmp_path):
    out = tmp_path / "best"
    with pytest.raises(RuntimeError, match="disk full"), atomic_dir(out) as tmp:
        (tmp / "half.bin").write_bytes(b"half")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
    out.mkdir()
    (out / "kept.bin").write_bytes(b"kept")
    with pytest.raises(KeyboardInterrupt), atomic_dir(out) as tmp:
        (tmp / "kept.bin").write_bytes(b"half")
        raise KeyboardInterrupt
    assert _tree(out) == {"kept.bin": b"kept"}  # the previous directory is left as it was
    assert [p.name for p in tmp_path.iterdir()] == ["best"]


def test_atomic_dir_removes_a_killed_writers_temporary(tmp_path):
    out = tmp_path / "enc"
    dead = tmp_path / (owner_prefix(out, pid=2**22 + 12345) + "abc123.tmp")  # pid beyond pid_max
    dead.mkdir()
    (dead / "x").write_bytes(b"x")
    stale = tmp_path / ".enc.abc123.tmp"  # an older version's name: no owner
    stale.mkdir()
    with atomic_dir(out) as tmp:
        (tmp / "y").write_bytes(b"y")
    assert [p.name for p in tmp_path.iterdir()] == ["enc"]


def test_atomic_dir_keep_existing_keeps_a_copy_finished_first(tmp_path):
    out = tmp_path / "wordnet"
    with atomic_dir(out, keep_existing=True) as tmp:
        (tmp / "data").write_bytes(b"mine")
        out.mkdir()  # another run finishes its copy meanwhile
        (out / "data").write_bytes(b"theirs")
    assert _tree(out) == {"data": b"theirs"}
    assert [p.name for p in tmp_path.iterdir()] == ["wordnet"]
    shutil.rmtree(out)
    with atomic_dir(out, keep_existing=True) as tmp:
        (tmp / "data").write_bytes(b"mine")
    assert _tree(out) == {"data": b"mine"}
