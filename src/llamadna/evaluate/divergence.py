"""Diverged copies of dataset windows: how annotation degrades as a sequence drifts away from the
reference (a homologue, another individual, a sequencing error profile).

`mutate(seq, rate, rng)`:
- **Substitutions**: each A/C/G/T base independently with probability `rate`, to one of the
  three other bases uniformly.
- **Indels**: events start at each A/C/G/T base with probability `rate * indel_fraction`; half
  are insertions (1..max_indel uniformly random bases after that base), half deletions (that
  base and the next ones, 1..max_indel in all). Substitutions are drawn on the input, indels
  then act on the substituted sequence.
- **N stays N** (and so does any other non-ACGT byte): never substituted, never deleted, never
  an event start; a base inserted is always A/C/G/T.
- **Length kept**: the result is trimmed at the end, or padded at the end with uniformly random
  bases, to the input's length, so every rate feeds the model windows of one size.
- **Deterministic** for a generator state; every draw has the input's length whatever the
  rate, so for one seed the substitutions at a lower rate are a subset of those at a higher one.
"""

from __future__ import annotations

import numpy as np

DIVERGENCE_RATES = (0, 0.01, 0.05, 0.10, 0.20, 0.30)

_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
_CODE = np.full(256, -1, dtype=np.int8)  # byte -> 0..3 for A/C/G/T, -1 otherwise
_CODE[_BASES] = np.arange(4)


def mutate(
    seq: str,
    rate: float,
    rng: np.random.Generator,
    indel_fraction: float = 0.1,
    max_indel: int = 3,
) -> str:
    """A diverged copy of `seq` (upper-case ACGTN) of the same length (rules in the module doc).

    Parameters
    ----------
    rate : substitutions per base, in [0, 1].
    indel_fraction : indel events per base relative to `rate` (0 = substitutions only).
    max_indel : longest insertion or deletion.
    """
    if not 0 <= rate <= 1:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    if indel_fraction < 0 or rate * indel_fraction > 1:
        raise ValueError(f"indel_fraction must be >= 0 with rate * indel_fraction <= 1, "
                         f"got {indel_fraction}")
    if max_indel < 1:
        raise ValueError(f"max_indel must be >= 1, got {max_indel}")
    a = np.frombuffer(seq.encode("latin-1"), dtype=np.uint8)
    n = a.size
    code = _CODE[a]  # (L,)
    is_base = code >= 0

    # substitutions: shift the 2-bit code by 1..3, i.e. to each other base with p = 1/3
    sub = is_base & (rng.random(n) < rate)
    shift = rng.integers(1, 4, n)
    b = a.copy()
    b[sub] = _BASES[(code[sub] + shift[sub]) % 4]

    # indel events
    event = is_base & (rng.random(n) < rate * indel_fraction)
    insertion = rng.random(n) < 0.5
    length = rng.integers(1, max_indel + 1, n)
    dels = np.flatnonzero(event & ~insertion)
    ins_len = np.where(event & insertion, length, 0)  # (L,) bases inserted after each base
    keep = np.ones(n, dtype=bool)
    if dels.size:
        dl = length[dels]
        # each deletion covers [start, start + len): flatten the runs without a Python loop
        first = np.repeat(np.cumsum(dl) - dl, dl)
        covered = np.repeat(dels, dl) + (np.arange(dl.sum()) - first)
        covered = covered[covered < n]
        keep[covered[is_base[covered]]] = False

    # output slots: each input base, then its inserted bases; drop deleted input bases
    slots = 1 + ins_len
    owner = np.repeat(np.arange(n), slots)  # (S,) input base each slot belongs to
    offset = np.arange(owner.size) - np.repeat(np.cumsum(slots) - slots, slots)
    inserted = offset > 0
    out = np.where(inserted, _BASES[rng.integers(0, 4, owner.size)], b[owner])
    out = out[inserted | keep[owner]]

    if out.size >= n:
        out = out[:n]
    else:
        out = np.concatenate([out, _BASES[rng.integers(0, 4, n - out.size)]])
    return out.astype(np.uint8).tobytes().decode("latin-1")
