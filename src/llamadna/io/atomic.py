"""Atomic output: write to a temporary file beside the target, then rename over it.

The temporary file is `.NAME.<pid>@<host>.<random>.tmp` in the target's directory: its writer's
process id and host are in its name. It is removed when the write fails or the process is
interrupted (KeyboardInterrupt, and SIGTERM, which the CLI turns into SystemExit); what a kill -9
leaves behind is removed by the next write of the same output, once its writer is gone
(`stale_temporaries`). Two runs writing one output at the same time each keep their own
temporary and the last rename wins (each rename is atomic): the output is one complete file.

Directories written whole (`atomic_dir`, built on `temporary_dir` + `replace_dir`) follow the
same rule, and a directory that a run writes into file by file is held by `exclusive_dir` for
the run, so that a second run writing it at the same time is refused instead of mixing its files
with the first's.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from llamadna.errors import ConfigError

log = logging.getLogger(__name__)

_HOST = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "localhost"
_SUFFIXES = (".tmp", ".old")  # a temporary being written; an old directory being replaced
_OWNED = re.compile(r"(\d+)@([A-Za-z0-9.-]+)\.[a-z0-9_]+")  # <pid>@<host>.<mkstemp's random part>
_UNOWNED = re.compile(r"[a-z0-9_]+")  # the names written before owners were named: no owner known


def owner_prefix(path: str | Path, pid: int | None = None, host: str = _HOST) -> str:
    """The start of the name of a temporary of `path` made by process `pid` (default: this one)
    of `host`: `.NAME.<pid>@<host>.`"""
    return f".{Path(path).name}.{os.getpid() if pid is None else pid}@{host}."


def _owner(path: Path, tmp: Path) -> tuple[int, str] | None | bool:
    """(pid, host) of a temporary of `path`; None for one without an owner in its name (an
    older version's); False for a name that is not a temporary of `path` (another output's)."""
    head = f".{path.name}."
    name = tmp.name
    suffix = next((s for s in _SUFFIXES if name.endswith(s)), None)
    if suffix is None or not name.startswith(head) or len(name) <= len(head) + len(suffix):
        return False
    rest = name[len(head):-len(suffix)]
    if m := _OWNED.fullmatch(rest):
        return int(m[1]), m[2]
    return None if _UNOWNED.fullmatch(rest) else False


def temporaries(path: str | Path) -> list[Path]:
    """Every temporary file or directory of `path` beside it, its writer running or gone."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.iterdir() if _owner(path, p) is not False)


def writer_alive(pid: int, host: str = _HOST) -> bool:
    """Whether process `pid` of `host` may still be writing. This process counts as alive, and so
    does any process of another host (it cannot be asked: its temporaries are left alone)."""
    if host != _HOST or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


def stale_temporaries(path: str | Path) -> list[Path]:
    """Temporaries of `path` whose writer is gone (killed with kill -9, or the machine stopped):
    its pid no longer runs on this host, or its name holds no owner (an older version's). A pid
    that another process took since is kept: an orphan may stay, a live temporary never goes."""
    path = Path(path)
    stale = []
    for tmp in temporaries(path):
        owner = _owner(path, tmp)
        if owner is None or not writer_alive(*owner):
            stale.append(tmp)
    return stale


def remove_stale(path: str | Path) -> None:
    """Remove the stale temporaries of `path` (files or directories); leave the live ones."""
    path = Path(path)
    stale = stale_temporaries(path)
    for old in stale:
        log.info("removing %s, left by an interrupted earlier run", old)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    others = [t for t in temporaries(path) if t not in stale and _owner(path, t) != (os.getpid(), _HOST)]
    if others:
        log.warning("%s is being written by another run too (%s); the last to finish wins",
                    path, others[0].name)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` and move the result to `path` only if it succeeded. The file gets
    the usual permissions (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=owner_prefix(path), suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def temporary_dir(path: str | Path) -> Path:
    """A new empty directory beside `path` to write it into (`.NAME.<pid>@<host>.<random>.tmp`),
    once the stale temporaries of earlier runs are removed; `replace_dir` moves it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    return Path(tempfile.mkdtemp(dir=path.parent, prefix=owner_prefix(path), suffix=".tmp"))


def replace_dir(tmp: str | Path, path: str | Path, tries: int = 100) -> Path:
    """Move the finished directory `tmp` to `path`, replacing the directory there. Every step is
    one rename, so `path` is at every moment absent, the old directory or a complete new one;
    when runs race, the last to rename wins and the directories it replaced are removed."""
    tmp, path = Path(tmp), Path(path)
    olds: list[Path] = []
    try:
        for _ in range(tries):
            try:
                os.rename(tmp, path)  # onto nothing or an empty directory
                return path
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            olds.append(Path(tempfile.mkdtemp(dir=path.parent, prefix=owner_prefix(path), suffix=".old")))
            try:
                os.rename(path, olds[-1])  # onto the empty directory mkdtemp made
            except FileNotFoundError:
                pass  # another run moved it away first: try again
        raise OSError(errno.EBUSY, f"{path} kept being replaced by other runs", str(path))
    finally:
        for old in olds:
            shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(path: str | Path, keep_existing: bool = False) -> Iterator[Path]:
    """Write the directory `path` whole: yields a new empty temporary directory beside it
    (`temporary_dir`) to write into. When the block ends normally, everything in it gets the
    usual permissions (`usual_permissions`) and it replaces `path` (`replace_dir`: `path` is at
    every moment absent, the old directory or the complete new one, never a mix). When the block
    raises or is interrupted, the temporary is removed and `path` is left as it was.

    keep_existing : for a cache that others may be reading: a `path` that exists by the end
        (another run finished first) is kept and this copy dropped, instead of replaced.

    Examples
    --------
    >>> with atomic_dir(run_dir / "checkpoint-0000100") as tmp:  # doctest: +SKIP
    ...     save_file(weights, tmp / "trainable.safetensors")
    """
    path = Path(path)
    tmp = temporary_dir(path)
    try:
        yield tmp
        usual_permissions(tmp)
        if not keep_existing:
            replace_dir(tmp, path)
            return
        try:
            os.rename(tmp, path)  # onto nothing or an empty directory
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            log.debug("%s was written by another run meanwhile; keeping it", path)
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def exclusive_dir(out: str | Path, option: str = "--out") -> Iterator[Path]:
    """Hold the output directory `out` (made when missing) for the length of a run that writes
    into it file by file: a second run writing it at the same time is refused (ConfigError)
    instead of mixing its files with the first's. The lock (flock on the directory itself) dies
    with the process however it ends, so nothing is left behind; a directory made here and still
    empty at the end (a run that failed before writing) is removed."""
    out = Path(out)
    made = [p for p in (out, *out.parents) if not p.exists()]  # deepest first
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{option} {out}: another run is writing this directory now; wait "
                              "for it to end or choose another path") from None
        except OSError as exc:  # a file system without locks: run unguarded, as before
            log.debug("cannot lock %s (%s); running without the lock", out, exc.strerror)
        yield out
    finally:
        os.close(fd)
        with suppress(OSError):
            for p in made:
                p.rmdir()  # only when empty: the first one written into stops the removal


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def usual_permissions(path: str | Path) -> None:
    """Give `path` (a file, or a directory and everything below it) the permissions a plain
    `open` would: 0666 / 0777 less the umask. safetensors writes 0600 files and mkdtemp makes
    0700 directories, which would keep a shared model directory from its other readers."""
    umask = current_umask()
    root = Path(path)
    for p in [root, *root.rglob("*")] if root.is_dir() else [root]:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)
