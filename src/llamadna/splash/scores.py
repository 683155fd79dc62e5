"""Per-sequence SPLASH scores for the dataset (SPLASH_pval, SPLASH_Effect, SPLASH_entropy).

SPLASH scores anchors, not sequences. Rule (SPLASH_SPEC.md, "Per-sequence scores"): among the
tested anchors that occur in a row's `Sequence` on either strand (the anchor or its reverse
complement is a substring), take the one with the smallest `pval_opt` (ties: the
lexicographically smallest anchor); SPLASH_pval = min(1, n_a * that p) with n_a the number of
distinct tested anchors found in the sequence (Bonferroni); SPLASH_Effect = its
`effect_size_bin`, SPLASH_entropy = its `target_entropy`. A row with no tested anchor gets nulls,
never a made-up default, and the summary counts those rows (`splash_missing_rows`).

Matching never touches Python strings per k-mer: every k-mer of every window is packed into a
uint64 (2 bits per base, A=0 C=1 G=2 T=3, first base in the high bits, so numeric order is
lexicographic order) and looked up with `np.searchsorted` in one sorted table holding every
anchor and its reverse complement (a window k-mer w matches anchor a on the reverse strand iff
w == revcomp(a)), so each window is packed and searched once for both strands. k-mers holding
N (or any non-ACGT byte) are skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from llamadna.constants import BUILDS, SPLASH_COLUMNS
from llamadna.errors import ConfigError, InputError
from llamadna.io.dataset import DATASET_FILE, read_summary, write_dataset
from llamadna.io.tables import read_tsv

log = logging.getLogger(__name__)

ANCHOR_COLUMNS = ["anchor", "pval_opt", "effect_size_bin", "target_entropy"]
SCORE_COLUMNS = {  # dataset column <- anchors-table column
    "SPLASH_pval": "pval_opt",
    "SPLASH_Effect": "effect_size_bin",
    "SPLASH_entropy": "target_entropy",
}
MAX_K = 32  # bases per uint64
_MISSING = {"", "na", "nan", "none", "null"}
_CHUNK_BASES = 4_000_000  # window bases packed at a time: ~100 MB of temporaries
_MAX_BUCKET_BITS = 22
_SCAN_LIMIT = 16  # entries per bucket scanned linearly; larger buckets use a binary search

_CODE = np.full(256, 4, dtype=np.uint8)  # A C G T (any case) -> 0..3, anything else -> 4
for _i, _c in enumerate("ACGT"):
    _CODE[ord(_c)] = _CODE[ord(_c.lower())] = _i


@dataclass
class Anchors:
    """A SPLASH anchors table, sorted by packed anchor (= lexicographic order)."""

    path: Path
    k: int
    packed: np.ndarray  # (A,) uint64, sorted, unique
    pval: np.ndarray  # (A,) float64 pval_opt
    effect: np.ndarray  # (A,) float64 effect_size_bin (NaN where the table has none)
    entropy: np.ndarray  # (A,) float64 target_entropy (NaN where the table has none)
    # lookup table: every anchor and its reverse complement, sorted; a value occurs at most
    # twice (once as an anchor, once as the reverse complement of another one)
    both_values: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))  # (2A,)
    both_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (2A,)
    # prefix index: values whose top `bucket_bits` bits are b lie in both_values[starts[b]:
    # starts[b + 1]]; turns most lookups into two array reads instead of a binary search
    bucket_bits: int = 0
    bucket_starts: np.ndarray = field(default_factory=lambda: np.zeros(2, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.packed)


def _pack_rows(codes: np.ndarray) -> np.ndarray:
    """(A, k) codes 0..3 -> (A,) uint64, first base in the high bits."""
    out = np.zeros(len(codes), dtype=np.uint64)
    for j in range(codes.shape[1]):
        out = (out << np.uint64(2)) | codes[:, j].astype(np.uint64)
    return out


def _float_column(df: pl.DataFrame, col: str, path: Path, pvalue: bool) -> np.ndarray:
    """A numeric column as (N,) float64; a p-value must be in [0, 1], others may be empty/NaN."""
    text = df[col].fill_null("").str.strip_chars()
    missing = text.str.to_lowercase().is_in(list(_MISSING))
    val = text.cast(pl.Float64, strict=False)
    if pvalue:
        ok = ~missing & val.is_not_null() & (val >= 0) & (val <= 1)
    else:
        ok = missing | val.is_not_null()
    bad = ~ok.fill_null(False)
    if bad.any():
        i = int(bad.arg_true()[0])
        want = "a p-value in [0, 1]" if pvalue else "a number (or empty)"
        raise InputError(path, f"{col} = {text[i]!r}: expected {want}", line=int(df["line"][i]))
    return np.where(missing.to_numpy(), np.nan, val.fill_null(np.nan).to_numpy())


def read_anchors(path: str | Path) -> Anchors:
    """Read and check a SPLASH anchors TSV (`llamadna splash` output).

    Required columns: anchor, pval_opt, effect_size_bin, target_entropy (others are ignored).
    Errors name the file and line: anchors that are not ACGT, of another length than the first
    (all anchors share one k <= 32), duplicated, or a pval_opt that is not a number in [0, 1].
    """
    path = Path(path)
    df = read_tsv(path, ANCHOR_COLUMNS, "SPLASH anchors table (llamadna splash output)")
    anchors = df["anchor"].fill_null("").str.to_uppercase()
    bad = ~anchors.str.contains(r"^[ACGT]+$")
    if bad.any():
        i = int(bad.arg_true()[0])
        raise InputError(path, f"anchor {df['anchor'][i]!r}: expected A/C/G/T bases only",
                         line=int(df["line"][i]))
    if df.height == 0:
        log.warning("%s: no anchors; every row will have missing SPLASH scores", path)
        e = np.zeros(0)
        return Anchors(path, 0, np.zeros(0, dtype=np.uint64), e, e, e)
    lens = anchors.str.len_bytes().to_numpy()
    k = int(lens[0])
    if k > MAX_K:
        raise InputError(path, f"anchor length {k} > {MAX_K}: cannot pack into 64 bits",
                         line=int(df["line"][0]))
    other = np.flatnonzero(lens != k)
    if other.size:
        i = int(other[0])
        raise InputError(path, f"anchor of length {lens[i]} but the first anchor has k = {k}: "
                         "expected one anchor length", line=int(df["line"][i]))
    pval = _float_column(df, "pval_opt", path, pvalue=True)
    effect = _float_column(df, "effect_size_bin", path, pvalue=False)
    entropy = _float_column(df, "target_entropy", path, pvalue=False)
    raw = np.frombuffer("".join(anchors.to_list()).encode("ascii"), dtype=np.uint8)
    codes = _CODE[raw].reshape(-1, k)  # (A, k)
    packed = _pack_rows(codes)
    order = np.argsort(packed, kind="stable")
    sp = packed[order]
    dup = np.flatnonzero(sp[1:] == sp[:-1])
    if dup.size:
        i = int(order[dup[0] + 1])
        raise InputError(path, f"anchor {anchors[i]} appears twice", line=int(df["line"][i]))
    rc = _pack_rows(3 - codes[order, ::-1])  # (A,) reverse complements, in sorted-anchor order
    values = np.concatenate([sp, rc])
    ids = np.concatenate([np.arange(len(sp)), np.arange(len(sp))])
    o = np.argsort(values, kind="stable")
    values, ids = values[o], ids[o]
    # about one table entry per bucket, at most 2^22 buckets (32 MB of starts)
    bits = int(min(2 * k, _MAX_BUCKET_BITS, max(1, np.ceil(np.log2(len(values))))))
    starts = np.searchsorted(
        values >> np.uint64(2 * k - bits), np.arange((1 << bits) + 1, dtype=np.uint64)
    ).astype(np.int64)
    return Anchors(path, k, sp, pval[order], effect[order], entropy[order], values, ids, bits,
                   starts)


def _lookup(anchors: Anchors, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query index, anchor index) for every table entry equal to a query value.

    Queries in small buckets scan their bucket (a few vectorised steps); queries in buckets
    larger than _SCAN_LIMIT (skewed tables) fall back to a binary search of the whole table.
    """
    table, ids = anchors.both_values, anchors.both_ids
    b = (vals >> np.uint64(2 * anchors.k - anchors.bucket_bits)).astype(np.int64)
    lo = anchors.bucket_starts[b]
    cnt = anchors.bucket_starts[b + 1] - lo
    qs, hs = [], []
    active = np.flatnonzero((cnt > 0) & (cnt <= _SCAN_LIMIT))
    step = 0
    while active.size:
        j = lo[active] + step
        eq = table[j] == vals[active]
        qs.append(active[eq])
        hs.append(ids[j[eq]])
        step += 1
        active = active[cnt[active] > step]
    big = np.flatnonzero(cnt > _SCAN_LIMIT)
    if big.size:
        i = np.searchsorted(table, vals[big])
        for step in (0, 1):  # a value is in the table at most twice, side by side
            j = np.minimum(i + step, len(table) - 1)
            eq = table[j] == vals[big]
            qs.append(big[eq])
            hs.append(ids[j[eq]])
    if not qs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(qs), np.concatenate(hs)


def _kmer_hits(buf: np.ndarray, offsets: np.ndarray, anchors: Anchors) -> tuple[np.ndarray, np.ndarray]:
    """(row, anchor index) for every k-mer of every row found among the anchors, either strand.

    buf : (B,) uint8 ASCII of the rows concatenated; offsets : (R + 1,) row boundaries in buf.
    Pairs may repeat (the caller takes unique pairs).
    """
    k, n = anchors.k, len(buf)
    m = n - k + 1
    if m <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    codes = _CODE[buf]
    c64 = (codes & 3).astype(np.uint64)  # N positions are masked out below
    fwd = np.zeros(m, dtype=np.uint64)  # (m,) k-mer starting at each position
    two = np.uint64(2)
    for j in range(k):
        fwd <<= two
        fwd |= c64[j : j + m]
    bad = np.concatenate([[0], np.cumsum(codes == 4)])
    ok = bad[k : k + m] == bad[:m]  # no N in the k-mer
    row = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))[:m]
    ok &= np.arange(m) + k <= offsets[1:][row]  # k-mer does not cross into the next row
    row = row[ok]
    q, idx = _lookup(anchors, fwd[ok])
    return row[q], idx


def _best_per_row(rows: np.ndarray, idx: np.ndarray, n_rows: int, pval: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """From (row, anchor) hits: distinct anchors per row (n_rows,) and the chosen anchor per
    row (smallest p, ties -> smallest anchor index = lexicographic; -1 without hits)."""
    key = np.sort(rows * len(pval) + idx)  # sort, not np.unique: its hash path is slower here
    key = key[np.concatenate([[True], key[1:] != key[:-1]])]  # distinct (row, anchor)
    r, a = key // len(pval), key % len(pval)  # sorted by row, then anchor
    n_a = np.bincount(r, minlength=n_rows)
    starts = np.flatnonzero(np.concatenate([[True], r[1:] != r[:-1]]))
    p = pval[a]
    row_min = np.minimum.reduceat(p, starts)
    at_min = np.flatnonzero(p == np.repeat(row_min, np.diff(np.append(starts, len(r)))))
    first = at_min[np.concatenate([[True], r[at_min][1:] != r[at_min][:-1]])]
    best = np.full(n_rows, -1, dtype=np.int64)
    best[r[first]] = a[first]
    return n_a, best


def without_scores(rows: Sequence[dict]) -> list[dict]:
    """Copies of the rows with their SPLASH scores left out (SPLASH_COLUMNS None): what a prompt
    says of a sequence SPLASH has not scored, e.g. a FASTA given to `annotate`."""
    return [{**r, **dict.fromkeys(SPLASH_COLUMNS)} for r in rows]


def score_sequences(sequences: pl.Series | Sequence[str | None], anchors: Anchors) -> pl.DataFrame:
    """Per-sequence scores (rule in the module docstring).

    Returns a frame with one row per sequence: SPLASH_pval, SPLASH_Effect, SPLASH_entropy
    (Float64, null when no tested anchor occurs) and splash_n_anchors (Int64, n_a).
    """
    seqs = sequences.to_list() if isinstance(sequences, pl.Series) else list(sequences)
    n_rows = len(seqs)
    n_a = np.zeros(n_rows, dtype=np.int64)
    best = np.full(n_rows, -1, dtype=np.int64)
    if len(anchors) and n_rows:
        enc = [(s or "").encode("ascii", errors="replace") for s in seqs]
        lengths = np.fromiter((len(e) for e in enc), dtype=np.int64, count=n_rows)
        cum = np.concatenate([[0], np.cumsum(lengths)])
        lo = 0
        while lo < n_rows:  # chunks of whole rows, about _CHUNK_BASES bases each
            hi = max(lo + 1, int(np.searchsorted(cum, cum[lo] + _CHUNK_BASES, side="right")) - 1)
            hi = min(hi, n_rows)
            buf = np.frombuffer(b"".join(enc[lo:hi]), dtype=np.uint8)
            rows, idx = _kmer_hits(buf, cum[lo : hi + 1] - cum[lo], anchors)
            if rows.size:
                n_a[lo:hi], best[lo:hi] = _best_per_row(rows, idx, hi - lo, anchors.pval)
            lo = hi
    found = best >= 0
    b = np.clip(best, 0, None)

    def col(values: np.ndarray) -> pl.Series:
        return pl.Series(np.where(found, values, np.nan)).fill_nan(None)

    if len(anchors):
        pval = np.minimum(1.0, n_a * anchors.pval[b])
        effect, entropy = anchors.effect[b], anchors.entropy[b]
    else:
        pval = effect = entropy = np.full(n_rows, np.nan)
    return pl.DataFrame({
        "SPLASH_pval": col(pval), "SPLASH_Effect": col(effect), "SPLASH_entropy": col(entropy),
        "splash_n_anchors": n_a,
    })


def parse_anchor_specs(specs: Sequence[str | Path] | str | Path) -> dict[str | None, Path]:
    """`ANCHORS.tsv` (all rows) or `BUILD=ANCHORS.tsv` (rows of that build), one or several.

    Builds are never mixed: anchors from samples simulated on GRCh38 should score GRCh38 rows.
    Returns {None: path} or {build: path, ...}; one table for all rows excludes per-build ones.
    """
    if isinstance(specs, (str, Path)):
        specs = [specs]
    out: dict[str | None, Path] = {}
    for spec in specs:
        text = str(spec)
        head, sep, tail = text.partition("=")
        build, path = (head, Path(tail)) if sep and head in BUILDS else (None, Path(text))
        if build in out:
            raise ConfigError(f"anchors given twice for {build or 'all rows'}: {out[build]}, {path}")
        out[build] = path
    if None in out and len(out) > 1:
        raise ConfigError("give either one anchors table for all rows (ANCHORS.tsv) or one per "
                         f"build ({'/'.join(BUILDS)}=ANCHORS.tsv), not both")
    if not out:
        raise ConfigError("no anchors table given")
    return out


def add_splash_scores(
    df: pl.DataFrame, anchors: Anchors | str | Path, build: str | None = None
) -> tuple[pl.DataFrame, dict]:
    """Fill SPLASH_pval / SPLASH_Effect / SPLASH_entropy from an anchors table.

    build : score only the rows of this build (others keep their values); None = all rows.
    Returns (table with the three columns replaced in place, stats of this table's rows).
    """
    if not isinstance(anchors, Anchors):
        anchors = read_anchors(anchors)
    if "Sequence" not in df.columns:
        raise ConfigError("dataset table has no 'Sequence' column")
    if build is None:
        mask = np.ones(df.height, dtype=bool)
    elif "build" not in df.columns:
        raise ConfigError(f"anchors given for build {build} but the table has no 'build' column")
    else:
        mask = (df["build"] == build).fill_null(False).to_numpy()
        if not mask.any():
            log.warning("no dataset row of build %s: %s scores nothing", build, anchors.path)
    scores = score_sequences(df["Sequence"].filter(mask), anchors)
    cols = []
    for c in SCORE_COLUMNS:
        old = (df[c].cast(pl.Float64).fill_null(np.nan).to_numpy() if c in df.columns
               else np.full(df.height, np.nan))
        old = old.copy()
        old[mask] = scores[c].fill_null(np.nan).to_numpy()
        cols.append(pl.Series(c, old, dtype=pl.Float64).fill_nan(None))
    df = df.with_columns(cols)
    rows = int(mask.sum())
    missing = int(scores["SPLASH_pval"].is_null().sum())
    n_a = scores["splash_n_anchors"]
    stats = {
        "anchors_file": str(anchors.path.resolve()),
        "anchors": len(anchors),
        "k": anchors.k,
        "rows": rows,
        "rows_scored": rows - missing,
        "missing_rows": missing,
        "anchors_per_scored_row_median": (
            float(n_a.filter(n_a > 0).median()) if missing < rows else None
        ),
    }
    log.info("SPLASH scores (%s): %d rows scored, %d without a tested anchor (%s, %d anchors, "
             "k=%d)", build or "all rows", rows - missing, missing, anchors.path, len(anchors),
             anchors.k)
    return df, stats


def apply_splash(
    df: pl.DataFrame, anchors: dict[str | None, Anchors | str | Path], summary: dict | None = None
) -> tuple[pl.DataFrame, dict]:
    """Score a dataset table with one anchors table (key None) or one per build (key = build).

    Returns (table, summary): `summary` (or {}) updated with splash_missing_rows and
    splash_rows_scored over the whole table, splash_anchors_file (a path, or {build: path} for
    per-build tables, merged with earlier per-build runs) and splash_runs (stats per scope).
    """
    summary = dict(summary or {})
    runs = dict(summary.get("splash_runs") or {})
    old = summary.get("splash_anchors_file")
    files: dict | str = dict(old) if isinstance(old, dict) else ({"all": old} if old else {})
    for build, anch in anchors.items():
        df, st = add_splash_scores(df, anch, build)
        if build is None:  # every row rescored: earlier runs no longer describe the table
            files, runs = st["anchors_file"], {"all": st}
        else:
            files[build] = st["anchors_file"]
            runs[build] = st
    missing = int(df["SPLASH_pval"].is_null().sum())
    summary.update({
        "splash_anchors_file": files,
        "splash_rows_scored": df.height - missing,
        "splash_missing_rows": missing,
        "splash_runs": runs,
    })
    return df, summary


def read_anchor_tables(specs: Sequence[str | Path] | str | Path) -> dict[str | None, Anchors]:
    """parse_anchor_specs + read_anchors: every table is checked before any scoring."""
    return {b: read_anchors(p) for b, p in parse_anchor_specs(specs).items()}


def score_dataset_dir(
    dataset_dir: str | Path, anchors: Sequence[str | Path] | str | Path,
    out_dir: str | Path | None = None,
) -> tuple[Path, Path, dict]:
    """Rewrite DATASET_DIR/dataset.parquet (or OUT/dataset.parquet) with SPLASH scores and
    update summary.json, both atomically. Returns (parquet path, summary path, summary).

    anchors : `ANCHORS.tsv` or `BUILD=ANCHORS.tsv` spec(s), see parse_anchor_specs.
    """
    src = Path(dataset_dir)
    pq_in = src / DATASET_FILE
    if not pq_in.exists():
        raise InputError(pq_in, "dataset not found (expected `llamadna build-dataset` output)")
    tables = read_anchor_tables(anchors)  # check the anchors before the (larger) dataset
    try:
        df = pl.read_parquet(pq_in)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(pq_in, f"could not read the dataset: {exc}") from None
    if "Sequence" not in df.columns:
        raise InputError(pq_in, "no 'Sequence' column (expected `llamadna build-dataset` output)")
    summary = read_summary(src)
    df, summary = apply_splash(df, tables, summary)
    out = Path(out_dir) if out_dir is not None else src
    pq, js = write_dataset(df, summary, out)
    return pq, js, summary
