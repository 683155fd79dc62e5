"""`SplashConfig`, the one home of a SPLASH run's settings and their defaults. Kept apart from
`splash.run` so that the CLI, which reads its options' defaults from here at every start, does not
import what a run needs (pandas, ~0.35 s; docs/BENCHMARKS.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from llamadna.errors import ConfigError
from llamadna.io.reads import DEFAULT_CHUNK_BYTES
from llamadna.splash import stats
from llamadna.splash.kmers import MAX_K


@dataclass
class SplashConfig:
    """Everything a SPLASH run depends on; written next to the output (`*.summary.json`)."""

    anchor_len: int = 31
    target_len: int = 31
    gap: int | str = 0  # bases between anchor and target; "auto" = max(0, (L - a - t) // 2)
    filters: stats.FilterConfig = field(default_factory=stats.FilterConfig)
    splits: int = 1  # train/test splits; pval_opt = min over splits x splits
    train_fraction: float = 0.25  # share of each (anchor, sample)'s records used to fit (c, f)
    n_starts: int = 10  # random starts of the alternating maximisation
    max_iter: int = 50
    seed: int = 0
    threads: int = 1  # samples counted in parallel
    max_memory_gb: float = 8.0  # budget for the distinct (anchor, target) tables of all samples
    chunk_bytes: int = DEFAULT_CHUNK_BYTES  # reads text parsed per chunk
    batch_cells: int = 1_000_000  # count cells per batch of anchors in filters and statistics

    def __post_init__(self) -> None:
        """Check the k-mer lengths before any file is read: a k-mer is packed 2 bits per base
        into one 64-bit word (`kmers.MAX_K` bases)."""
        for name, k in (("anchor", self.anchor_len), ("target", self.target_len)):
            if not 1 <= k <= MAX_K:
                raise ConfigError(
                    f"--{name}-len {k}: the {name} length must be 1 to {MAX_K} bases (k-mers are "
                    f"packed 2 bits per base into one 64-bit word)")

    def resolved_gap(self, read_length: int | None) -> int:
        if self.gap == "auto":
            if read_length is None:
                raise ConfigError("gap 'auto' needs the read length")
            return max(0, (read_length - self.anchor_len - self.target_len) // 2)
        gap = int(self.gap)
        if gap < 0:
            raise ConfigError(f"gap must be >= 0 or 'auto', got {self.gap!r}")
        return gap
