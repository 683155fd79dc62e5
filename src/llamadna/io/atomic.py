"""Atomic output: write to a temporary file beside the target, then rename over it.

The temporary file is `.NAME.<random>.tmp` in the target's directory. It is removed when the
write fails or the process is interrupted (KeyboardInterrupt, and SIGTERM, which the CLI turns
into SystemExit); what a kill -9 leaves behind is removed by the next write of the same output.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def stale_temporaries(path: str | Path) -> list[Path]:
    """Temporary files that earlier writes of `path` left behind (interrupted by kill -9)."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.glob(f".{path.name}.*.tmp") if p.is_file())


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` and move the result to `path` only if it succeeded. The file gets
    the usual permissions (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in stale_temporaries(path):
        log.info("removing %s, left by an interrupted earlier run", old)
        old.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
