"""The SPLASH pipeline: samples -> counts -> per-anchor tables -> filters -> statistics -> TSV.

    samples (NAME=R1[,R2], or a sheet)      parse_sample_arg / read_sample_sheet
      -> (anchor, target, sample) counts     count_samples      (kmers.py, one thread per sample)
      -> filters, per batch of anchors       stats.filter_cells (removals logged per filter)
      -> pval_opt, effect size, entropy      stats.pval_opt ...  (batches of anchors)
      -> BY correction over all anchors, sort by pval_opt, write TSV (atomic) + summary JSON.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from llamadna.errors import ConfigError, InputError
from llamadna.io.atomic import atomic_write
from llamadna.io.reads import detect_format, read_length_mode
from llamadna.progress import Progress, no_progress
from llamadna.splash import stats
from llamadna.splash.config import SplashConfig
from llamadna.splash.kmers import (
    CountTable,
    MemoryBudget,
    combine_samples,
    count_sample,
    unpack,
)

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = [
    "anchor",
    "pval_opt",
    "pval_opt_corrected",
    "effect_size_bin",
    "target_entropy",
    "M",
    "anch_uniqTargs",
    "number_nonzero_samples",
    "most_freq_target_1",
    "cnt_most_freq_target_1",
    "most_freq_target_2",
    "cnt_most_freq_target_2",
]
SHEET_COLUMNS = ("sample", "path")


@dataclass
class Sample:
    name: str
    paths: tuple[Path, ...]  # one file, or R1 and R2 of a pair (each read as sequenced)


# ----------------------------------------------------------------------------------------------
# Samples


def parse_sample_arg(text: str) -> Sample:
    """`NAME=PATH` or `NAME=R1,R2` -> Sample."""
    name, sep, paths = text.partition("=")
    name = name.strip()
    if not sep or not name or not paths.strip():
        raise ConfigError(f"--sample {text!r}: expected NAME=PATH or NAME=R1.fq.gz,R2.fq.gz")
    return Sample(name, tuple(Path(p.strip()) for p in paths.split(",") if p.strip()))


def read_sample_sheet(path: str | Path) -> list[Sample]:
    """TSV with columns `sample` and `path` (comma-joined for paired files); relative paths are
    taken relative to the sheet's folder."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "sample sheet not found")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, comment=None, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(path, f"could not read the sample sheet as TSV: {exc}") from None
    missing = [c for c in SHEET_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            path, f"missing column(s) {', '.join(missing)}: expected a TSV with columns "
            f"'sample' and 'path' (got {', '.join(map(str, df.columns))})", line=1,
        )
    samples = []
    for i, row in enumerate(df.itertuples(index=False), start=2):
        name, paths = str(row.sample).strip(), str(row.path).strip()
        if not name or not paths:
            raise InputError(path, "empty sample name or path", line=i)
        ps = []
        for p in paths.split(","):
            p = Path(p.strip())
            p = p if p.is_absolute() else path.parent / p
            if not p.exists():  # named here with the sheet's line, not later as a bare path
                raise InputError(path, f"sample {name!r}: reads file {p} not found", line=i)
            ps.append(p)
        samples.append(Sample(name, tuple(ps)))
    return samples


def load_samples(args: Sequence[str] | None, sheet: str | Path | None) -> list[Sample]:
    """A run's samples, given either as `NAME=PATH` arguments (`--sample`) or as a sample sheet
    (`--samples`), never both."""
    if (args is None) == (sheet is None):
        raise ConfigError("give the samples with --sample NAME=PATH (twice or more) "
                          "or with --samples SHEET.tsv, not both")
    return read_sample_sheet(sheet) if sheet is not None else [parse_sample_arg(s) for s in args]


def check_samples(samples: Sequence[Sample]) -> None:
    """At least 2 samples, unique names, every file present and readable as reads."""
    if len(samples) < 2:
        raise ConfigError(
            f"SPLASH needs at least 2 samples (got {len(samples)}): the statistic compares "
            "target usage between samples and is undefined for one"
        )
    names = [s.name for s in samples]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"duplicate sample name(s): {', '.join(dup)}")
    for s in samples:
        if not s.paths:
            raise ConfigError(f"sample {s.name!r} has no files")
        for p in s.paths:
            detect_format(p)  # raises InputError naming the file


# ----------------------------------------------------------------------------------------------
# Counting


def count_samples(
    samples: Sequence[Sample], cfg: SplashConfig, gap: int, progress: Progress = no_progress
) -> CountTable:
    """Count (anchor, target) per sample (in parallel with cfg.threads) and join them."""
    budget = MemoryBudget(cfg.max_memory_gb * 2**30)

    def one(s: Sample):
        t0 = time.perf_counter()
        table, summary = count_sample(
            s.paths, cfg.anchor_len, gap, cfg.target_len, name=s.name, budget=budget,
            chunk_bytes=cfg.chunk_bytes, progress=progress,
        )
        summary["seconds"] = round(time.perf_counter() - t0, 3)
        log.info("%s: %d reads, %d windows, %d distinct (anchor, target) pairs (%.1f s)",
                 s.name, summary["reads"], summary["windows"], summary["distinct_pairs"],
                 summary["seconds"])
        return table, summary

    workers = max(1, min(cfg.threads, len(samples)))
    if workers == 1:
        results = [one(s) for s in samples]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one, samples))
    table = combine_samples(
        [r[0] for r in results], [s.name for s in samples], cfg.anchor_len, cfg.target_len, gap
    )
    table.summary = {s.name: {"paths": [str(p) for p in s.paths], **r[1]}
                     for s, r in zip(samples, results)}
    return table


def _anchor_batches(anchor: np.ndarray, batch_cells: int) -> list[tuple[int, int]]:
    """Cell ranges [lo, hi) of about batch_cells cells that never split an anchor."""
    if not len(anchor):
        return []
    starts = np.flatnonzero(np.concatenate(([True], anchor[1:] != anchor[:-1])))
    cuts = np.unique(starts[np.searchsorted(
        starts, np.arange(0, len(anchor), max(1, batch_cells)), side="right") - 1])
    bounds = [*cuts.tolist(), len(anchor)]
    return list(zip(bounds[:-1], bounds[1:]))


# ----------------------------------------------------------------------------------------------
# Statistics


def anchor_statistics(
    table: CountTable, cfg: SplashConfig, progress: Progress = no_progress
) -> tuple[pd.DataFrame, dict]:
    """Filter the anchors of `table` and compute their statistics (unsorted, no BY yet)."""
    J = len(table.samples)
    removed = dict.fromkeys(stats.FILTERS, 0)
    keep = np.zeros(len(table), dtype=bool)
    batches = _anchor_batches(table.anchor, cfg.batch_cells)
    for i, (lo, hi) in enumerate(batches):
        k, rem = stats.filter_cells(
            table.anchor[lo:hi], table.target[lo:hi], table.sample[lo:hi], table.count[lo:hi],
            J, table.anchor_len, cfg.filters,
        )
        keep[lo:hi] = k
        for name, v in rem.items():
            removed[name] += v
        progress("filtering", i + 1, len(batches))
    n_anchors = int(np.count_nonzero(np.diff(table.anchor)) + 1) if len(table) else 0
    filt = {"anchors_counted": n_anchors, "removed": removed,
            "anchors_tested": n_anchors - sum(removed.values())}
    for name, v in removed.items():
        log.info("filter %-12s removed %d anchors", name, v)
    log.info("%d of %d anchors pass the filters", filt["anchors_tested"], n_anchors)

    a, t = table.anchor[keep], table.target[keep]
    s, c = table.sample[keep], table.count[keep]
    rng = np.random.default_rng(cfg.seed)
    parts = []
    batches = _anchor_batches(a, cfg.batch_cells)
    for i, (lo, hi) in enumerate(batches):
        parts.append(_batch_statistics(a[lo:hi], t[lo:hi], s[lo:hi], c[lo:hi], J, table, cfg, rng))
        progress("statistics", i + 1, len(batches))
    df = pd.concat(parts, ignore_index=True) if parts else _empty_frame()
    return df, filt


def _batch_statistics(
    a: np.ndarray, t: np.ndarray, s: np.ndarray, c: np.ndarray, J: int, table: CountTable,
    cfg: SplashConfig, rng: np.random.Generator,
) -> pd.DataFrame:
    tables, anchors, row_targets = stats.tables_from_cells(a, t, s, c, J)
    opt = stats.pval_opt(
        tables, rng, splits=cfg.splits, train_fraction=cfg.train_fraction,
        n_starts=cfg.n_starts, max_iter=cfg.max_iter,
    )
    n = tables.sample_totals()
    rows, counts = stats.top_targets(tables, k=2)
    out = {
        "anchor": unpack(anchors, table.anchor_len).astype(str),
        "pval_opt": opt.pval_opt,
        "effect_size_bin": opt.effect_size_bin,
        "target_entropy": stats.target_entropy(tables),
        "M": n.sum(axis=1).astype(np.int64),
        "anch_uniqTargs": np.bincount(tables.row_anchor, minlength=tables.n_anchors),
        "number_nonzero_samples": (n > 0).sum(axis=1),
    }
    names = unpack(row_targets, table.target_len).astype(str)
    for j in range(2):
        has = rows[:, j] >= 0
        out[f"most_freq_target_{j + 1}"] = np.where(has, names[np.maximum(rows[:, j], 0)], "")
        out[f"cnt_most_freq_target_{j + 1}"] = counts[:, j]
    return pd.DataFrame(out)


def _empty_frame() -> pd.DataFrame:
    text = {"anchor", "most_freq_target_1", "most_freq_target_2"}
    ints = {"M", "anch_uniqTargs", "number_nonzero_samples", "cnt_most_freq_target_1",
            "cnt_most_freq_target_2"}
    return pd.DataFrame({
        c: pd.Series(dtype=object if c in text else np.int64 if c in ints else np.float64)
        for c in OUTPUT_COLUMNS if c != "pval_opt_corrected"
    })


def finish_table(df: pd.DataFrame) -> pd.DataFrame:
    """Add pval_opt_corrected (BY over all tested anchors), sort by pval_opt, fix column order."""
    df = df.copy()
    df["pval_opt_corrected"] = stats.benjamini_yekutieli(df["pval_opt"].to_numpy())
    df = df.sort_values(["pval_opt", "anchor"], kind="stable").reset_index(drop=True)
    return df[OUTPUT_COLUMNS]


# ----------------------------------------------------------------------------------------------
# Entry point


def run_splash(
    samples: Sequence[Sample], cfg: SplashConfig, progress: Progress = no_progress
) -> tuple[pd.DataFrame, dict]:
    """Run SPLASH on samples; return the anchors table (sorted by pval_opt) and a summary."""
    check_samples(samples)
    t0 = time.perf_counter()
    read_length = None
    if cfg.gap == "auto":
        read_length = read_length_mode([p for s in samples for p in s.paths])
        log.info("gap auto: most common read length %d", read_length)
    gap = cfg.resolved_gap(read_length)
    table = count_samples(samples, cfg, gap, progress)
    t_count = time.perf_counter() - t0
    df, filt = anchor_statistics(table, cfg, progress)
    df = finish_table(df)
    summary = {
        "config": {**asdict(cfg), "gap": gap, "gap_option": cfg.gap},
        "read_length_mode": read_length,
        "samples": table.summary,
        "filters": filt,
        "anchors_q_below_0.05": int((df["pval_opt_corrected"] < 0.05).sum()),
        "seconds": {"counting": round(t_count, 3),
                    "total": round(time.perf_counter() - t0, 3)},
    }
    return df, summary


def summary_path(out: str | Path) -> Path:
    """The run summary written beside the anchors TSV `out`: `<out stem>.summary.json`."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".tsv") + ".summary.json")


def write_results(df: pd.DataFrame, summary: dict, out: str | Path) -> tuple[Path, Path]:
    """Write the anchors TSV and `<out stem>.summary.json` beside it, each atomically."""
    out = Path(out)
    js = summary_path(out)
    atomic_write(out, lambda p: df.to_csv(p, sep="\t", index=False))
    atomic_write(js, lambda p: p.write_text(json.dumps(summary, indent=2, default=str) + "\n"))
    return out, js
