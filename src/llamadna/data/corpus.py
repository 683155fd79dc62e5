"""Fixed-length windows tiled over a bundle's reference regions (the DNA encoder's training text)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from llamadna.data.paths import discover_sets
from llamadna.errors import ConfigError
from llamadna.io.fasta import read_reference

log = logging.getLogger(__name__)


def reference_windows(
    data_dir: str | Path, window: int, stride: int | None = None, max_n_fraction: float = 0.1
) -> Iterator[str]:
    """DNA windows from every reference FASTA of a bundle (both builds, records in file order).

    Parameters
    ----------
    data_dir : bundle laid out like `../shared/data` (`discover_sets`).
    window : bases per window; records shorter than this give none.
    stride : bases between window starts (default `window`: non-overlapping). The tail of a
        record shorter than a window is not used.
    max_n_fraction : windows with a larger fraction of N are skipped.

    Yields
    ------
    Upper-case strings of length `window` over ACGTN.
    """
    if window < 1:
        raise ConfigError(f"window must be >= 1, got {window}")
    stride = window if stride is None else stride
    if stride < 1:
        raise ConfigError(f"stride must be >= 1, got {stride}")
    max_n = int(np.floor(max_n_fraction * window + 1e-9))
    for aset in discover_sets(data_dir):
        ref = read_reference(aset.fasta)
        kept = skipped = 0
        for contig in ref.contigs:
            seq = contig.seq
            if len(seq) < window:
                continue
            starts = np.arange(0, len(seq) - window + 1, stride)
            n_cum = np.concatenate([[0], np.cumsum(seq == ord("N"))])  # (L + 1,)
            n_count = n_cum[starts + window] - n_cum[starts]
            for s, n in zip(starts, n_count):
                if n > max_n:
                    skipped += 1
                    continue
                kept += 1
                yield seq[s : s + window].tobytes().decode("ascii")
        log.info("%s (%s): %d windows of %d bases, %d skipped for N > %.0f%%",
                 aset.fasta.name, aset.build, kept, window, skipped, 100 * max_n_fraction)
