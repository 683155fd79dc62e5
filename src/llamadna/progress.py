"""The one progress-callback signature every long-running stage reports through.

`progress(description, done, total)`: `done` of `total` units (records, steps, bytes...) are
finished; `total` is None when unknown. The text before the first ':' of `description` names
the bar (the CLI keeps one bar per name); what follows may change (e.g. the current loss).
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, "int | None"], None]


def no_progress(description: str, done: int, total: int | None) -> None:
    """The default: report nothing."""
