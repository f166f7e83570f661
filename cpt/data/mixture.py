"""Which dataset each training sequence of a stage comes from: pure arithmetic, no I/O.

Replay is compute-equivalent (2403.08763): a stage has a fixed number of sequences n; a
fraction r of them are re-read from earlier datasets and the new dataset's share shrinks by as
much. The assignment is Bresenham-exact: sequence i is a replay iff floor((i+1)·r) > floor(i·r),
so among the first i sequences exactly floor(i·r) are replays (within one sequence of r·i), and
the j-th fresh sequence is the same at every r (a run with r = 0.05 reads a prefix of the fresh
data a run with r = 0 reads). Fractions are turned into exact rationals first so that float
rounding can never move a boundary.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Sequence


def as_fraction(x: float) -> Fraction:
    return Fraction(x).limit_denominator(1_000_000)


def count_below(i: int, share: Fraction) -> int:
    """How many of the first i draws belong to a share (Bresenham)."""
    return (i * share.numerator) // share.denominator


def split_draw(i: int, share: Fraction) -> tuple[bool, int]:
    """Is draw i in the share, and its index among the share's draws (or among the rest's)."""
    before = count_below(i, share)
    if count_below(i + 1, share) > before:
        return True, before
    return False, i - before


def assign(i: int, replay: float, replay_weights: Sequence[float]) -> tuple[int, int]:
    """Sequence i of a stage -> (source, k): source -1 is the stage's own dataset, else the index
    of an earlier dataset; k counts the draws from that source before this one.

    `replay_weights` splits the replay share over the earlier datasets (they need not sum to 1).
    Among replays the split is again exact, one dataset at a time: dataset 0 takes its share of
    the replay draws, dataset 1 its share of what remains, and so on.
    """
    is_replay, k = split_draw(i, as_fraction(replay)) if replay > 0 else (False, i)
    if not is_replay:
        return -1, k
    remaining = Fraction(0)
    weights = [as_fraction(w) for w in replay_weights]
    remaining = sum(weights, Fraction(0))
    for src, w in enumerate(weights[:-1]):
        taken, k = split_draw(k, w / remaining) if w > 0 else (False, k)
        if taken:
            return src, k
        remaining -= w
    return len(weights) - 1, k


def affine_permutation(j: int, n: int, seed: int) -> int:
    """A pure, O(1)-memory permutation of range(n): (a·j + b) mod n with gcd(a, n) = 1.

    Consecutive draws land far apart in the corpus, which is what shuffling buys here; a
    materialised permutation of the papers' 150M windows would cost 1.2 GB.
    """
    import math

    a = (seed * 2_654_435_761 + 40_503) % n or 1
    while math.gcd(a, n) != 1:
        a = a % n + 1
    b = (seed * 97 + 13) % n
    return (a * j + b) % n
