import os
import signal
import subprocess
import sys
import time

import pytest

from llamadna.io.atomic import atomic_write, current_umask, stale_temporaries, temporaries


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
