"""The errors a user sees as one line: bad input files (file, line, what was expected), a
missing data directory, and invalid settings. Everything else is a bug and shows its traceback."""

from __future__ import annotations

import errno
import os
from pathlib import Path


class InputError(ValueError):
    """A problem with an input file.

    Parameters
    ----------
    path : the file.
    message : what is wrong and what was expected.
    line : 1-based line number in the (decompressed) file, when known.
    record : a record name (FASTA/FASTQ id) when a line number is not meaningful.
    """

    def __init__(
        self, path: str | Path, message: str, line: int | None = None, record: str | None = None
    ):
        self.path = str(path)
        self.line = line
        self.record = record
        self.message = message
        where = self.path
        if line is not None:
            where += f":{line}"
        if record is not None:
            where += f" (record {record!r})"
        super().__init__(f"{where}: {message}")


class DataDirError(FileNotFoundError):
    """The data directory is missing or incomplete."""


class ConfigError(ValueError):
    """A setting the user chose is invalid or inconsistent (an option, a config value).

    The CLI prints it as one line; any other exception is a bug and keeps its traceback.
    """


class RankError(RuntimeError):
    """Another process of a sharded run failed (killed, or its own error, which it printed): the
    CLI says which in one line and exits 1; the finished parts stay for --resume."""


def refuse_link_loop(path: str | Path) -> None:
    """InputError when `path` is a symbolic link loop (a link that leads back to itself, directly
    or through others), which would otherwise read as a missing file; anything else is left to
    the caller's own checks."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(path, "a symbolic link loop (the link leads back to itself): replace it "
                             "by the file or directory it should name") from None
