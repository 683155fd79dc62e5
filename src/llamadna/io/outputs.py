"""An output path checked before a run does any work: one line (ConfigError) instead of a run
that fails at its end, or that destroys what it reads.

`check_output` refuses an output that

- is, or links to (symbolic or hard link), one of the run's inputs: the input file, a file of
  the model, index, encoder or dataset directory; a directory output that is or holds an input
  directory (a run must never write over what it reads);
- cannot be written: a path under a regular file, a place this process may not create files in
  (tried with a temporary file that vanishes when closed, so permissions, read-only mounts and
  root's rights all count as they will for the run);
- has the wrong kind: an existing directory where a file is written, an existing file where a
  directory is, or (for a file output with `formats`) a suffix naming no known format.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from llamadna.errors import ConfigError
from llamadna.io.predictions import output_format

PathLike = str | os.PathLike
Inputs = Mapping[str, PathLike | Iterable[PathLike] | None]
_MAX_FILES = 100_000  # files of an input directory compared with a file output (links into it)


def check_output(out: PathLike, inputs: Inputs | None = None, *, kind: str = "file",
                 formats: tuple[str, ...] = (), option: str = "--out", beside: bool = False) -> Path:
    """Check the output path `out` of a run before the run starts; returns it as a Path.

    Parameters
    ----------
    out : the output path (a file for kind="file", a directory for kind="dir").
    inputs : {what: path(s) or None} of the run's inputs, `what` as a user says it ("the input
        FASTA", "the model directory"); None and missing paths are skipped (their own checks
        report them).
    kind : "file" or "dir".
    formats : file outputs whose format comes from the suffix: the suffixes allowed.
    option : the option's name in messages.
    beside : the run also writes beside `out` (a temporary directory renamed into place), so
        the directory holding `out` must be writable too.

    Raises
    ------
    ConfigError : one line naming the path, the true cause and what to do.
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    out = Path(out)
    _resolved(out, option)
    for what, paths in (inputs or {}).items():  # first: the gravest, whatever the suffix says
        for p in _paths(paths):
            _check_not_input(out, Path(p), what, kind, option)
    _check_kind(out, kind, formats, option)
    if formats:
        output_format(out, formats)
    _check_writable(out, kind, option, beside)
    return out


def _paths(paths) -> list[PathLike]:
    if paths is None:
        return []
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    return [p for p in paths if p is not None]


def _resolved(path: Path, option: str) -> Path:
    """`path` with its links followed; a link loop in it is a ConfigError."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # Python < 3.13: RuntimeError; later: OSError (ELOOP)
        raise ConfigError(f"{option} {path}: a symbolic link loop (a link that leads back to "
                          "itself); choose another path") from None


def _suffixes(formats: tuple[str, ...]) -> str:
    return f" ending in {', '.join(formats)}" if formats else ""


def _check_kind(out: Path, kind: str, formats: tuple[str, ...], option: str) -> None:
    if kind == "file" and out.is_dir():
        raise ConfigError(f"{option} {out} is an existing directory; give the path of a file"
                          f"{_suffixes(formats)} to write")
    if kind == "dir" and out.exists() and not out.is_dir():
        raise ConfigError(f"{option} {out} exists and is not a directory; give a new or existing "
                          "directory")


def _nearest_existing(path: Path) -> Path:
    """`path` itself or its nearest ancestor that exists."""
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path.cwd()


def _check_writable(out: Path, kind: str, option: str, beside: bool) -> None:
    places = [_nearest_existing(out if kind == "dir" else out.parent)]
    if beside and out.exists():
        places.append(_nearest_existing(out.parent))
    for place in places:
        if not place.is_dir():
            raise ConfigError(f"{option} {out}: {place} is not a directory, so nothing can be "
                              "written under it; choose another path")
        try:
            with tempfile.TemporaryFile(dir=place):
                pass
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise ConfigError(f"{option} {out}: cannot write in {place} ({reason}); choose a "
                              "writable place") from None


def _file_ids(directory: Path) -> dict[tuple[int, int], Path]:
    """(device, inode) -> path of the files under `directory` (links followed to their files)."""
    ids: dict[tuple[int, int], Path] = {}
    for root, _dirs, files in os.walk(directory):
        for name in files:
            p = Path(root, name)
            try:
                st = p.stat()
            except OSError:  # a dangling link
                continue
            ids.setdefault((st.st_dev, st.st_ino), p)
            if len(ids) >= _MAX_FILES:
                return ids
    return ids


def _inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def _check_not_input(out: Path, inp: Path, what: str, kind: str, option: str) -> None:
    if not inp.exists():
        return
    out_res, inp_res = _resolved(out, option), inp.resolve()
    if out_res == inp_res or (out.exists() and os.path.samefile(out, inp)):
        raise ConfigError(f"{option} {out} is {what} ({inp}); choose another path")
    if inp.is_dir():
        if kind == "dir" and _inside(inp_res, out_res):
            raise ConfigError(f"{option} {out} holds {what} ({inp}); choose another path")
        if out.exists() and _inside(out_res, inp_res):
            raise ConfigError(f"{option} {out} lies in {what} ({inp}); choose another path")
        if kind == "file" and out.exists():
            st = out.stat()
            linked = _file_ids(inp).get((st.st_dev, st.st_ino))
            if linked is not None:
                raise ConfigError(f"{option} {out} is a link to {linked}, a file of {what} ({inp}); "
                                  "choose another path")
