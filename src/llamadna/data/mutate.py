"""Diverged copies of dataset windows: how annotation degrades as a sequence drifts away from the
reference (a homologue, another individual, a sequencing error profile).

`mutate_nested(seq, rates, seed)` gives one copy per rate from ONE seeded draw per sequence, so the
mutations at a lower rate are a subset of those at a higher one (a 5 % copy is the 10 % copy with
some of its events undone), and a curve over rates measures the rate, not the draw. Per input
position i, drawn once whatever the rates:

- ``u_sub[i]``, ``shift[i]``: a **substitution** happens at rate r iff the base is A/C/G/T and
  ``u_sub[i] < r``; it moves the base's 2-bit code by ``shift[i]`` (1..3), i.e. to each of the
  three other bases with probability 1/3.
- ``u_indel[i]``, ``insertion[i]``, ``length[i]``, ``inserted[i, :]``: an **indel event** starts
  at an A/C/G/T base at rate r iff ``u_indel[i] < r * indel_fraction``; with probability 1/2 it
  is an insertion of ``inserted[i, :length[i]]`` (uniform A/C/G/T) after that base, otherwise a
  deletion of that base and the next ones, ``length[i]`` (1..max_indel) in all. Substitutions act
  on the input, indels then act on the substituted sequence.
- **N stays N** (and so does any other non-ACGT byte): never substituted, never deleted, never
  an event start; an inserted base is always A/C/G/T.
- **Length kept**: the result is trimmed at the end, or padded at the end with the first bases of
  a fixed draw ``pad[:]`` of uniform A/C/G/T, to the input's length, so every rate feeds the model
  windows of one size.
- **Deterministic** for a seed; `row_seed(seed, row)` seeds row ``row`` of a table from the run's
  seed alone, so a row mutates the same way whatever rows are scored with it, and `mutate_rows`
  does a whole column.

`mutate(seq, rate, rng)` is the one-rate form (the draw taken from `rng`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DIVERGENCE_RATES = (0, 0.01, 0.05, 0.10, 0.20, 0.30, 0.40)

_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
_CODE = np.full(256, -1, dtype=np.int8)  # byte -> 0..3 for A/C/G/T, -1 otherwise
_CODE[_BASES] = np.arange(4)

# what np.random.default_rng takes: the seed of one sequence's draw
SeedLike = int | Sequence[int] | np.random.SeedSequence | np.random.Generator


@dataclass(frozen=True)
class _Draws:
    """Every random number one sequence's mutations use, drawn once (L = input length)."""

    u_sub: np.ndarray  # (L,) float: substitution at rate r iff u_sub < r
    shift: np.ndarray  # (L,) int 1..3: code shift of a substitution
    u_indel: np.ndarray  # (L,) float: indel event at rate r iff u_indel < r * indel_fraction
    insertion: np.ndarray  # (L,) bool: the event is an insertion (else a deletion)
    length: np.ndarray  # (L,) int 1..max_indel: bases inserted or deleted
    inserted: np.ndarray  # (L, max_indel) uint8 A/C/G/T: the bases an insertion adds
    pad: np.ndarray  # (L,) uint8 A/C/G/T: the bases that pad a shortened result

    @classmethod
    def draw(cls, rng: np.random.Generator, n: int, max_indel: int) -> _Draws:
        return cls(
            u_sub=rng.random(n), shift=rng.integers(1, 4, n), u_indel=rng.random(n),
            insertion=rng.random(n) < 0.5, length=rng.integers(1, max_indel + 1, n),
            inserted=_BASES[rng.integers(0, 4, (n, max_indel))], pad=_BASES[rng.integers(0, 4, n)],
        )


def _check(rates: Sequence[float], indel_fraction: float, max_indel: int) -> None:
    for rate in rates:
        if not 0 <= rate <= 1:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
    top = max(rates, default=0)
    if indel_fraction < 0 or top * indel_fraction > 1:
        raise ValueError(f"indel_fraction must be >= 0 with rate * indel_fraction <= 1, "
                         f"got {indel_fraction}")
    if max_indel < 1:
        raise ValueError(f"max_indel must be >= 1, got {max_indel}")


def _events(code: np.ndarray, d: _Draws, rate: float, indel_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(substituted, indel start) masks, each (L,) bool, at `rate`: nested in `rate` by design."""
    is_base = code >= 0
    return is_base & (d.u_sub < rate), is_base & (d.u_indel < rate * indel_fraction)


def _apply(a: np.ndarray, code: np.ndarray, d: _Draws, rate: float, indel_fraction: float) -> np.ndarray:
    """The mutated bytes (L,) uint8 of input bytes `a` (L,) at `rate` (rules in the module doc)."""
    n = a.size
    sub, event = _events(code, d, rate, indel_fraction)
    b = a.copy()
    b[sub] = _BASES[(code[sub] + d.shift[sub]) % 4]

    dels = np.flatnonzero(event & ~d.insertion)
    ins_len = np.where(event & d.insertion, d.length, 0)  # (L,) bases inserted after each base
    keep = np.ones(n, dtype=bool)
    if dels.size:
        dl = d.length[dels]
        # each deletion covers [start, start + len): flatten the runs without a Python loop
        first = np.repeat(np.cumsum(dl) - dl, dl)
        covered = np.repeat(dels, dl) + (np.arange(dl.sum()) - first)
        covered = covered[covered < n]
        keep[covered[code[covered] >= 0]] = False  # N is never deleted

    # output slots: each input base, then its inserted bases; drop deleted input bases
    slots = 1 + ins_len
    owner = np.repeat(np.arange(n), slots)  # (S,) input base each slot belongs to
    offset = np.arange(owner.size) - np.repeat(np.cumsum(slots) - slots, slots)  # 0 = the base
    inserted = offset > 0
    out = np.where(inserted, d.inserted[owner, np.maximum(offset - 1, 0)], b[owner])
    out = out[inserted | keep[owner]]
    return out[:n] if out.size >= n else np.concatenate([out, d.pad[: n - out.size]])


def mutate_nested(
    seq: str,
    rates: Sequence[float],
    seed: SeedLike,
    indel_fraction: float = 0.1,
    max_indel: int = 3,
) -> list[str]:
    """Diverged copies of `seq` (upper-case ACGTN), one per rate, with nested mutations.

    Parameters
    ----------
    seq : the input, length L.
    rates : R substitution rates per base, each in [0, 1], in any order.
    seed : what `np.random.default_rng` takes (an int, ints such as `row_seed(seed, row)`, a
        Generator, whose state then advances). One draw serves every rate.
    indel_fraction : indel events per base relative to the rate (0 = substitutions only).
    max_indel : longest insertion or deletion.

    Returns
    -------
    R strings of length L, in the order of `rates`; the events (substitutions, indels) of a
    copy are a subset of those of every copy at a higher rate, and rate 0 gives `seq` itself.
    """
    rates = list(rates)
    _check(rates, indel_fraction, max_indel)
    a = np.frombuffer(seq.encode("latin-1"), dtype=np.uint8)
    code = _CODE[a]  # (L,)
    d = _Draws.draw(np.random.default_rng(seed), a.size, max_indel)
    return [seq if rate == 0 else _apply(a, code, d, rate, indel_fraction).tobytes().decode("latin-1")
            for rate in rates]


def mutate(
    seq: str,
    rate: float,
    rng: np.random.Generator,
    indel_fraction: float = 0.1,
    max_indel: int = 3,
) -> str:
    """A diverged copy of `seq` (upper-case ACGTN) of the same length (rules in the module doc):
    `mutate_nested` at one rate, its draw taken from `rng`, so one generator state gives nested
    mutations across rates.

    Parameters
    ----------
    rate : substitutions per base, in [0, 1].
    indel_fraction : indel events per base relative to `rate` (0 = substitutions only).
    max_indel : longest insertion or deletion.
    """
    return mutate_nested(seq, [rate], rng, indel_fraction=indel_fraction, max_indel=max_indel)[0]


def row_seed(seed: int, row: int) -> np.random.SeedSequence:
    """The seed of row `row` (>= 0) of a table under the run seed `seed` (>= 0): the row's
    mutations depend on these two numbers only, not on which other rows are mutated with it."""
    return np.random.SeedSequence([seed, row])


def mutate_rows(
    sequences: Sequence[str],
    rates: Sequence[float],
    seed: int,
    indel_fraction: float = 0.1,
    max_indel: int = 3,
) -> dict[float, list[str]]:
    """`mutate_nested` over a column: N sequences, row i seeded by `row_seed(seed, i)`.

    Returns
    -------
    {rate: N mutated sequences}, one entry per rate (in the order of `rates`).
    """
    rates = list(rates)
    per_row = [mutate_nested(s, rates, row_seed(seed, i), indel_fraction, max_indel)
               for i, s in enumerate(sequences)]  # (N, R)
    return {rate: [row[k] for row in per_row] for k, rate in enumerate(rates)}
