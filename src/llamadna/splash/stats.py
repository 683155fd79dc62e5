"""SPLASH statistics on many anchors at once (pure numpy; see SPLASH_SPEC.md).

Every anchor has a contingency table X (rows = its distinct targets i, columns = samples j).
All anchors are held together in sparse form (`AnchorTables`): one entry per non-zero cell, rows
contiguous per anchor. Per-anchor quantities are group sums (`np.bincount`), so one numpy call
handles every anchor; the alternating maximisation iterates all anchors together and drops
converged ones from the working set.

Notation (per anchor): n_j = sum_i X_ij, r_i = sum_j X_ij, M = sum_j n_j,
X~_ij = (X_ij - r_i n_j / M) / sqrt(n_j); for f in [0,1]^I and c in R^J,
S = f' X~ c = sum_j c_j sqrt(n_j) (fbar_j - mu), fbar_j = sum_i f_i X_ij / n_j,
mu = sum_i f_i r_i / M; OASIS p = min(1, 2 exp(-2 S^2 / gamma)),
gamma = |c|^2 - (sum_j c_j sqrt(n_j))^2 / M.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Hypergeometric sampling in numpy needs ngood, nbad < 1e9.
_HYPERGEOM_MAX = 10**9


@dataclass
class AnchorTables:
    """Contingency tables of many anchors, sparse.

    Attributes
    ----------
    cell_row : (C,) int64 row of each cell; cells are sorted by row.
    cell_sample : (C,) int64 sample (column) of each cell, 0..n_samples-1.
    count : (C,) int64 (or float) counts X_ij; zero entries are allowed.
    row_anchor : (R,) int64 anchor of each row, non-decreasing, every anchor has >= 1 row.
    n_anchors, n_samples : table sizes A and J.
    """

    cell_row: np.ndarray
    cell_sample: np.ndarray
    count: np.ndarray
    row_anchor: np.ndarray
    n_anchors: int
    n_samples: int

    def __post_init__(self) -> None:
        rows_per_anchor = np.bincount(self.row_anchor, minlength=self.n_anchors)
        if len(rows_per_anchor) != self.n_anchors or (rows_per_anchor == 0).any():
            raise ValueError("every anchor needs at least one row and row_anchor < n_anchors")
        self.row_start = np.concatenate(([0], np.cumsum(rows_per_anchor)[:-1])).astype(np.int64)
        self.cell_anchor = self.row_anchor[self.cell_row]
        self.cell_col = self.cell_anchor * self.n_samples + self.cell_sample  # (anchor, sample)

    @property
    def n_rows(self) -> int:
        return len(self.row_anchor)

    @classmethod
    def from_dense(cls, tables: Sequence[np.ndarray]) -> AnchorTables:
        """Build from dense (I_a, J) count matrices, one per anchor (same J for all)."""
        if not tables:
            raise ValueError("no tables")
        J = np.asarray(tables[0]).shape[1]
        rows, samples, counts, row_anchor = [], [], [], []
        r0 = 0
        for a, X in enumerate(tables):
            X = np.asarray(X)
            if X.ndim != 2 or X.shape[1] != J or X.shape[0] < 1:
                raise ValueError(f"table {a}: expected shape (I >= 1, {J}), got {X.shape}")
            i, j = np.nonzero(X)
            rows.append(i + r0)
            samples.append(j)
            counts.append(X[i, j])
            row_anchor.append(np.full(X.shape[0], a))
            r0 += X.shape[0]
        return cls(
            np.concatenate(rows).astype(np.int64), np.concatenate(samples).astype(np.int64),
            np.concatenate(counts), np.concatenate(row_anchor).astype(np.int64), len(tables), J,
        )

    def with_counts(self, count: np.ndarray) -> AnchorTables:
        """Same cells with other counts (e.g. the train or test part)."""
        out = AnchorTables.__new__(AnchorTables)
        out.__dict__.update(self.__dict__)
        out.count = count
        return out

    # Group sums -------------------------------------------------------------------------------
    def sample_totals(self, weights: np.ndarray | None = None) -> np.ndarray:
        """(A, J) sum over rows of `weights` (default the counts): n_j per anchor."""
        w = self.count if weights is None else weights
        return np.bincount(
            self.cell_col, weights=w, minlength=self.n_anchors * self.n_samples
        ).reshape(self.n_anchors, self.n_samples)

    def row_totals(self) -> np.ndarray:
        """(R,) r_i."""
        return np.bincount(self.cell_row, weights=self.count, minlength=self.n_rows)

    def anchor_sum(self, row_values: np.ndarray) -> np.ndarray:
        """(A,) sum of a per-row quantity over each anchor's rows."""
        return np.bincount(self.row_anchor, weights=row_values, minlength=self.n_anchors)

    def anchor_min_max(self, row_values: np.ndarray, row_mask: np.ndarray):
        """(A,) min and max of a per-row quantity over the rows where row_mask (inf/-inf if none)."""
        lo = np.minimum.reduceat(np.where(row_mask, row_values, np.inf), self.row_start)
        hi = np.maximum.reduceat(np.where(row_mask, row_values, -np.inf), self.row_start)
        return lo, hi


# ----------------------------------------------------------------------------------------------
# OASIS p-value, effect size, entropy


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(a, b).shape, dtype=np.float64)
    np.divide(a, b, out=out, where=b != 0)
    return out


def oasis_pvalue(tables: AnchorTables, c: np.ndarray, f: np.ndarray) -> np.ndarray:
    """OASIS p-value of every anchor for given c (A, J) and f (R,) with values in [0, 1].

    p = 1 when the anchor has no counts, when c is constant over the samples present
    (n_j > 0), when f is constant over the targets present (r_i > 0), or when gamma <= 0.
    """
    n = tables.sample_totals()  # (A, J)
    M = n.sum(axis=1)
    F = tables.sample_totals(tables.count * f[tables.cell_row])  # (A, J) sum_i f_i X_ij
    mu = _safe_div(F.sum(axis=1), M)
    sq = np.sqrt(n)
    S = (c * _safe_div(F - mu[:, None] * n, sq)).sum(axis=1)
    gamma = (c**2).sum(axis=1) - _safe_div((c * sq).sum(axis=1) ** 2, M)
    present = n > 0
    c_const = np.where(present, c, np.inf).min(1) >= np.where(present, c, -np.inf).max(1)
    f_lo, f_hi = tables.anchor_min_max(f, tables.row_totals() > 0)
    scale = (c**2).sum(axis=1)
    degenerate = (M <= 0) | c_const | (f_lo >= f_hi) | (gamma <= 1e-12 * np.maximum(scale, 1e-300))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p = np.minimum(1.0, 2.0 * np.exp(-2.0 * S**2 / gamma))
    p[degenerate] = 1.0
    return p


def effect_size_bin(tables: AnchorTables, c: np.ndarray, f: np.ndarray) -> np.ndarray:
    """|mean f over the samples with c > 0 - mean f over those with c < 0| per anchor, in [0, 1].

    Means are pooled over records (sum f_i X_ij / sum n_j); 0 when either side is empty.
    """
    n = tables.sample_totals()
    F = tables.sample_totals(tables.count * f[tables.cell_row])
    pos, neg = (c > 0) & (n > 0), (c < 0) & (n > 0)
    n_pos, n_neg = (n * pos).sum(1), (n * neg).sum(1)
    es = np.abs(_safe_div((F * pos).sum(1), n_pos) - _safe_div((F * neg).sum(1), n_neg))
    es[(n_pos == 0) | (n_neg == 0)] = 0.0
    return es


def target_entropy(tables: AnchorTables) -> np.ndarray:
    """Base-2 Shannon entropy of each anchor's target counts pooled over samples: (A,)."""
    r = tables.row_totals()
    M = tables.anchor_sum(r)
    p = _safe_div(r, M[tables.row_anchor])
    plogp = np.zeros_like(p)
    np.multiply(p, np.log(p, where=p > 0, out=np.zeros_like(p)), out=plogp, where=p > 0)
    return np.maximum(-tables.anchor_sum(plogp) / np.log(2.0), 0.0)


def benjamini_yekutieli(p: np.ndarray) -> np.ndarray:
    """Benjamini-Yekutieli adjusted p-values (as statsmodels multipletests 'fdr_by')."""
    p = np.asarray(p, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    rank = np.arange(1, m + 1, dtype=np.float64)
    harmonic = (1.0 / rank).sum()
    q = p[order] * m * harmonic / rank
    q = np.minimum.accumulate(q[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return out


# ----------------------------------------------------------------------------------------------
# Data splitting


def split_train(tables: AnchorTables, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Counts of a random train part: floor(fraction * n_j) records of each (anchor, sample),
    drawn without replacement (a multivariate hypergeometric draw). Returns (C,) int64.

    The draw is sequential over the cells of each (anchor, sample) group, vectorised over groups:
    cell k gets Hypergeometric(X_k, rest of the group, draws left).
    """
    x = np.asarray(tables.count).astype(np.int64)
    col = tables.cell_col
    size = tables.n_anchors * tables.n_samples
    group_total = np.bincount(col, weights=x, minlength=size).astype(np.int64)
    draws_left = np.floor(fraction * group_total).astype(np.int64)
    rest = group_total.copy()
    train = np.zeros(len(x), dtype=np.int64)
    if not len(x):
        return train
    # Position of each cell within its group, and cells listed by that position.
    by_col = np.argsort(col, kind="stable")
    first = np.concatenate(([0], np.cumsum(np.bincount(col, minlength=size))[:-1]))
    pos = np.empty(len(x), dtype=np.int64)
    pos[by_col] = np.arange(len(x)) - first[col[by_col]]
    by_pos = np.argsort(pos, kind="stable")
    bounds = np.searchsorted(pos[by_pos], np.arange(pos.max() + 2))
    for k in range(pos.max() + 1):
        cells = by_pos[bounds[k] : bounds[k + 1]]
        g = col[cells]
        good = x[cells]
        bad = rest[g] - good
        want = draws_left[g]
        todo = want > 0
        d = np.zeros(len(cells), dtype=np.int64)
        small = todo & (good < _HYPERGEOM_MAX) & (bad < _HYPERGEOM_MAX)
        d[small] = rng.hypergeometric(good[small], bad[small], want[small])
        big = todo & ~small
        if big.any():  # beyond numpy's limit: a binomial draw is indistinguishable here
            pr = good[big] / (good[big] + bad[big])
            d[big] = np.clip(rng.binomial(want[big], pr), want[big] - bad[big], good[big])
        train[cells] = d
        rest[g] -= good
        draws_left[g] -= d
    return train


# ----------------------------------------------------------------------------------------------
# Alternating maximisation of |S| over (c, f)


class _Work:
    """The anchors still iterating, with ids remapped to 0..a-1 (rows and cells too)."""

    def __init__(self, t: AnchorTables, anchors: np.ndarray, n: np.ndarray, r: np.ndarray):
        J = t.n_samples
        keep_anchor = np.zeros(t.n_anchors, dtype=bool)
        keep_anchor[anchors] = True
        self.anchors = anchors  # (a,) global anchor ids, ascending
        self.rows = np.flatnonzero(keep_anchor[t.row_anchor])  # (m,) global row ids
        cells = np.flatnonzero(keep_anchor[t.cell_anchor] & (t.count > 0))
        anchor_map = np.full(t.n_anchors, -1, dtype=np.int64)
        anchor_map[anchors] = np.arange(len(anchors))
        row_map = np.full(t.n_rows, -1, dtype=np.int64)
        row_map[self.rows] = np.arange(len(self.rows))
        self.cell_row = row_map[t.cell_row[cells]]
        self.cell_col = anchor_map[t.cell_anchor[cells]] * J + t.cell_sample[cells]
        self.x = np.asarray(t.count[cells], dtype=np.float64)
        self.row_anchor = anchor_map[t.row_anchor[self.rows]]
        self.r = r[self.rows]
        self.n = n[anchors]  # (a, J)
        self.M = self.n.sum(axis=1)
        self.sq = np.sqrt(self.n)
        self.inv_sq = _safe_div(np.ones_like(self.n), self.sq)
        self.J = J

    def subset(self, idx: np.ndarray) -> tuple[_Work, np.ndarray]:
        """The working set restricted to anchors `idx` (positions in self), and its row positions."""
        sub = _Work.__new__(_Work)
        keep_anchor = np.zeros(len(self.anchors), dtype=bool)
        keep_anchor[idx] = True
        anchor_map = np.full(len(self.anchors), -1, dtype=np.int64)
        anchor_map[idx] = np.arange(len(idx))
        rows = np.flatnonzero(keep_anchor[self.row_anchor])
        row_map = np.full(len(self.rows), -1, dtype=np.int64)
        row_map[rows] = np.arange(len(rows))
        cell_anchor = self.cell_col // self.J
        cells = np.flatnonzero(keep_anchor[cell_anchor])
        sub.anchors = self.anchors[idx]
        sub.rows = self.rows[rows]
        sub.cell_row = row_map[self.cell_row[cells]]
        sub.cell_col = anchor_map[cell_anchor[cells]] * self.J + self.cell_col[cells] % self.J
        sub.x = self.x[cells]
        sub.row_anchor = anchor_map[self.row_anchor[rows]]
        sub.r, sub.n, sub.M = self.r[rows], self.n[idx], self.M[idx]
        sub.sq, sub.inv_sq, sub.J = self.sq[idx], self.inv_sq[idx], self.J
        return sub, rows

    def f_step(self, c: np.ndarray) -> np.ndarray:
        """f_i = 1 if (X~ c)_i > 0, 0 if < 0, 0.5 on (numerical) ties."""
        t1 = np.bincount(self.cell_row, weights=self.x * (c * self.inv_sq).ravel()[self.cell_col],
                         minlength=len(self.rows))
        t2 = self.r * _safe_div((c * self.sq).sum(axis=1), self.M)[self.row_anchor]
        v = t1 - t2
        tol = 1e-9 * (np.abs(t1) + np.abs(t2)) + 1e-12
        f = np.where(v > tol, 1.0, np.where(v < -tol, 0.0, 0.5))
        # Replacing f by 1 - f never increases |S| here: the columns of X~ sum to zero, so
        # (1 - f)' X~ c = -f' X~ c. The spec's flip is therefore a no-op and is not done.
        return f

    def c_step(self, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """c = X~' f / |X~' f| and S = f' X~ c = |X~' f| (0 where X~' f = 0)."""
        a = len(self.anchors)
        F = np.bincount(self.cell_col, weights=self.x * f[self.cell_row],
                        minlength=a * self.J).reshape(a, self.J)
        fr = np.bincount(self.row_anchor, weights=f * self.r, minlength=a)
        u = (F - self.n * _safe_div(fr, self.M)[:, None]) * self.inv_sq
        S = np.sqrt((u**2).sum(axis=1))
        return _safe_div(u, S[:, None]), S


def _random_signs(present: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(A, J) random +-1 on present columns (0 elsewhere), not all equal within a row."""
    c = np.where(rng.random(present.shape) < 0.5, -1.0, 1.0) * present
    redo = np.flatnonzero(np.abs(c.sum(axis=1)) == present.sum(axis=1))
    while redo.size:  # rows with >= 2 present columns; each retry succeeds with p >= 1/2
        c[redo] = np.where(rng.random((len(redo), present.shape[1])) < 0.5, -1.0, 1.0)
        c[redo] *= present[redo]
        redo = redo[np.abs(c[redo].sum(axis=1)) == present[redo].sum(axis=1)]
    return c


def optimise_cf(
    tables: AnchorTables, rng: np.random.Generator, n_starts: int = 10, max_iter: int = 50,
    rel_tol: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Alternating maximisation of |f' X~ c| for every anchor of (train) tables.

    Only rows with r_i > 0 and columns with n_j > 0 take part; an anchor needs at least 2 of
    each (`valid`). Each start draws c in {+-1}^J (not all equal), then alternates the f and c
    steps until S changes by less than `rel_tol` (relative) or `max_iter` iterations.

    Returns
    -------
    c : (A, J) best c (unit norm; 0 on absent columns and for invalid anchors).
    f : (R,) best f (values in {0, 0.5, 1}; meaningless on absent rows).
    S : (A,) best |S|.
    valid : (A,) bool.
    """
    A, J = tables.n_anchors, tables.n_samples
    n = tables.sample_totals()
    r = tables.row_totals()
    present = n > 0
    valid = (present.sum(axis=1) >= 2) & (tables.anchor_sum((r > 0).astype(np.float64)) >= 2)
    best_c = np.zeros((A, J))
    best_f = np.full(tables.n_rows, 0.5)
    best_S = np.full(A, -1.0)
    anchors = np.flatnonzero(valid)
    if not anchors.size:
        return best_c, best_f, np.zeros(A), valid
    full = _Work(tables, anchors, n, r)
    for _ in range(n_starts):
        c0 = _random_signs(present[anchors], rng)
        out_c, out_f, out_S = _iterate(full, c0, max_iter, rel_tol)
        better = out_S > best_S[anchors]
        best_S[anchors[better]] = out_S[better]
        best_c[anchors[better]] = out_c[better]
        rows_better = better[full.row_anchor]
        best_f[full.rows[rows_better]] = out_f[rows_better]
    best_S[~valid] = 0.0
    return best_c, best_f, best_S, valid


def _iterate(
    full: _Work, c: np.ndarray, max_iter: int, rel_tol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One start for all anchors of `full`; converged anchors leave the working set."""
    a = len(full.anchors)
    out_c, out_f, out_S = c.copy(), np.full(len(full.rows), 0.5), np.zeros(a)
    work, idx = full, np.arange(a)  # idx: positions of the working anchors in `full`
    rows_idx = np.arange(len(full.rows))
    S_prev = np.full(a, np.nan)
    for _ in range(max_iter):
        f = work.f_step(c)
        c, S = work.c_step(f)
        out_c[idx], out_S[idx], out_f[rows_idx] = c, S, f
        done = np.abs(S - S_prev) < rel_tol * np.abs(S_prev)  # False while S_prev is nan
        S_prev = S
        if done.all():
            break
        if done.mean() > 0.5:  # shrink the working set
            keep = np.flatnonzero(~done)
            idx = idx[keep]
            work, rows_idx = full.subset(idx)
            c, S_prev = c[keep], S_prev[keep]
    return out_c, out_f, out_S


# ----------------------------------------------------------------------------------------------
# pval_opt


@dataclass
class OptResult:
    """Per-anchor results of `pval_opt` ((A,) arrays; c is (A, J), f is (R,))."""

    pval_opt: np.ndarray
    effect_size_bin: np.ndarray
    c: np.ndarray
    f: np.ndarray


def pval_opt(
    tables: AnchorTables, rng: np.random.Generator, splits: int = 1,
    train_fraction: float = 0.25, n_starts: int = 10, max_iter: int = 50,
) -> OptResult:
    """SPLASH pval_opt with data splitting, and effect_size_bin on the test part.

    For each split: draw the train part, optimise (c, f) on it, give targets absent from train a
    random f in {0, 1} (absent samples already have c_j = 0), and compute the OASIS p-value and
    the effect size on the test part. With several splits the smallest p is kept and multiplied
    by the number of splits (Bonferroni); effect size and (c, f) come from that split.
    """
    if splits < 1:
        raise ValueError(f"splits must be >= 1, got {splits}")
    A = tables.n_anchors
    best = OptResult(np.full(A, np.inf), np.zeros(A), np.zeros((A, tables.n_samples)),
                     np.zeros(tables.n_rows))
    for _ in range(splits):
        train = split_train(tables, train_fraction, rng)
        t_train = tables.with_counts(train)
        c, f, _S, valid = optimise_cf(t_train, rng, n_starts=n_starts, max_iter=max_iter)
        in_train = t_train.row_totals() > 0
        f = np.where(in_train, f, rng.integers(0, 2, tables.n_rows).astype(np.float64))
        t_test = tables.with_counts(np.asarray(tables.count, dtype=np.int64) - train)
        p = oasis_pvalue(t_test, c, f)
        p[~valid] = 1.0
        es = effect_size_bin(t_test, c, f)
        better = p < best.pval_opt
        best.pval_opt[better], best.effect_size_bin[better] = p[better], es[better]
        best.c[better] = c[better]
        rows_better = better[tables.row_anchor]
        best.f[rows_better] = f[rows_better]
    best.pval_opt = np.minimum(1.0, best.pval_opt * splits)
    return best


# ----------------------------------------------------------------------------------------------
# Filters

FILTERS = ("sample_count", "anchor_count", "targets", "samples", "max_run")


@dataclass
class FilterConfig:
    """Thresholds; defaults are the spec's. Each removes what the comment says."""

    min_sample_count: int = 5  # (anchor, sample) cell groups with n_j <= this are dropped
    min_anchor_count: int = 50  # anchors with M <= this (after the line above) are dropped
    min_targets: int = 2  # anchors with fewer distinct targets are dropped (spec: <= 1)
    min_samples: int = 2  # anchors present in fewer samples are dropped (spec: <= 1)
    max_run: int = 8  # anchors with a single-base run of >= this many bases are dropped; 0 = off


def max_run(values: np.ndarray, k: int) -> np.ndarray:
    """Longest single-base run in each 2-bit packed k-mer (first base in the high bits): (n,)."""
    values = np.asarray(values, dtype=np.uint64)
    best = np.ones(len(values), dtype=np.int64)
    run = np.ones(len(values), dtype=np.int64)
    prev = (values >> np.uint64(2 * (k - 1))) & np.uint64(3)
    for j in range(1, k):
        cur = (values >> np.uint64(2 * (k - 1 - j))) & np.uint64(3)
        run = np.where(cur == prev, run + 1, 1)
        np.maximum(best, run, out=best)
        prev = cur
    return best


def filter_cells(
    anchor: np.ndarray, target: np.ndarray, sample: np.ndarray, count: np.ndarray,
    n_samples: int, anchor_len: int, cfg: FilterConfig,
) -> tuple[np.ndarray, dict[str, int]]:
    """Apply the SPLASH filters to count cells of whole anchors.

    Parameters
    ----------
    anchor, target : (C,) uint64 packed k-mers; cells sorted by anchor, the cells of one
        (anchor, target) pair contiguous.
    sample : (C,) sample index; count : (C,) counts.

    Returns
    -------
    keep : (C,) bool, the cells that survive.
    removed : anchors removed by each filter (`FILTERS`), applied in that order, so an anchor
        is charged to the first filter that removes it. "sample_count" counts anchors left with
        no sample after dropping the (anchor, sample) groups with n_j <= min_sample_count.
    """
    removed = dict.fromkeys(FILTERS, 0)
    if not len(anchor):
        return np.zeros(0, dtype=bool), removed
    new_anchor = np.concatenate(([True], anchor[1:] != anchor[:-1]))
    new_pair = new_anchor | np.concatenate(([True], target[1:] != target[:-1]))
    aid = np.cumsum(new_anchor) - 1
    A, J = int(aid[-1]) + 1, n_samples
    count = np.asarray(count, dtype=np.int64)
    sample = np.asarray(sample, dtype=np.int64)
    alive = np.ones(A, dtype=bool)

    def drop(mask: np.ndarray, name: str) -> None:
        mask = mask & alive
        removed[name] += int(mask.sum())
        alive[mask] = False

    n = np.bincount(aid * J + sample, weights=count, minlength=A * J).reshape(A, J)
    keep = n[aid, sample] > cfg.min_sample_count
    drop(np.bincount(aid, weights=keep, minlength=A) == 0, "sample_count")
    M = np.bincount(aid, weights=count * keep, minlength=A)
    drop(M <= cfg.min_anchor_count, "anchor_count")
    pid = np.cumsum(new_pair) - 1
    pair_kept = np.bincount(pid, weights=keep) > 0
    n_targets = np.bincount(aid[new_pair], weights=pair_kept, minlength=A)
    drop(n_targets < cfg.min_targets, "targets")
    drop((n > cfg.min_sample_count).sum(axis=1) < cfg.min_samples, "samples")
    if cfg.max_run > 0:
        drop(max_run(anchor[new_anchor], anchor_len) >= cfg.max_run, "max_run")
    return keep & alive[aid], removed


def tables_from_cells(
    anchor: np.ndarray, target: np.ndarray, sample: np.ndarray, count: np.ndarray, n_samples: int
) -> tuple[AnchorTables, np.ndarray, np.ndarray]:
    """AnchorTables from cells sorted as in `filter_cells`.

    Returns the tables, the (A,) anchors and the (R,) targets (packed) of the rows.
    """
    if not len(anchor):
        raise ValueError("no cells")
    new_anchor = np.concatenate(([True], anchor[1:] != anchor[:-1]))
    new_pair = new_anchor | np.concatenate(([True], target[1:] != target[:-1]))
    cell_row = np.cumsum(new_pair) - 1
    row_anchor = (np.cumsum(new_anchor) - 1)[new_pair]
    tables = AnchorTables(
        cell_row.astype(np.int64), np.asarray(sample, dtype=np.int64),
        np.asarray(count, dtype=np.int64), row_anchor.astype(np.int64),
        int(new_anchor.sum()), n_samples,
    )
    return tables, anchor[new_anchor], target[new_pair]


def top_targets(tables: AnchorTables, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Row index and count of each anchor's k most frequent targets (pooled over samples).

    Ties go to the lower row. Returns (A, k) int64 arrays; row -1 and count 0 where an anchor
    has fewer than k targets.
    """
    r = tables.row_totals()
    order = np.lexsort((np.arange(tables.n_rows), -r, tables.row_anchor))
    rank = np.arange(tables.n_rows) - tables.row_start[tables.row_anchor[order]]
    rows = np.full((tables.n_anchors, k), -1, dtype=np.int64)
    counts = np.zeros((tables.n_anchors, k), dtype=np.int64)
    sel = rank < k
    rows[tables.row_anchor[order[sel]], rank[sel]] = order[sel]
    counts[tables.row_anchor[order[sel]], rank[sel]] = r[order[sel]].astype(np.int64)
    return rows, counts
