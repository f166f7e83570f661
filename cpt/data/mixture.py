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

import zlib
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
    weights = [as_fraction(w) for w in replay_weights]
    remaining = sum(weights, Fraction(0))
    for src, w in enumerate(weights[:-1]):
        taken, k = split_draw(k, w / remaining) if w > 0 else (False, k)
        if taken:
            return src, k
        remaining -= w
    return len(weights) - 1, k


def source_counts(n: int, replay: float, replay_weights: Sequence[float]) -> tuple[int, list[int]]:
    """How many of sequences 0..n-1 `assign` gives to the stage's own dataset and to each earlier
    one, in closed form (the same exact arithmetic, without walking the n sequences).

    Replays: floor(n·r). Dataset 0 takes floor(R·w0/W) of those R, dataset 1 floor(R1·w1/(W−w0))
    of the R1 that remain, ..., the last one the rest.
    """
    replays = count_below(n, as_fraction(replay)) if replay > 0 else 0
    weights = [as_fraction(w) for w in replay_weights]
    remaining, left, counts = sum(weights, Fraction(0)), replays, []
    for w in weights[:-1]:
        taken = count_below(left, w / remaining) if w > 0 else 0
        counts.append(taken)
        left -= taken
        remaining -= w
    if weights:
        counts.append(left)
    return n - replays, counts


def seen_weights(stage_sequences: Sequence[int], replay: float) -> list[tuple[float, ...]]:
    """The replay split of every stage of a chain: stage k re-reads datasets 0..k-1 in proportion
    to the sequences of each that the model has trained on so far, fresh *and* replayed.

    That is the accounting of the 2403.08763 authors' configs (docs/papers.md). Their worked example,
    Pile 300B then SlimPajama splits of 100B at 5% replay (in B tokens):
      stage 1: 95 SP1 fresh + 5 Pile              -> seen Pile 305, SP1 95
      stage 2: 95 SP2 fresh + 5 · (305, 95)/400    -> Pile 3.8125, SP1 1.1875
               seen Pile 308.8125, SP1 96.1875, SP2 95 (sum 500)
      stage 3: 5% · seen/500 = Pile 3.088%, SP1 0.962%, SP2 0.95%  (their numbers)
    Weighting by fresh tokens alone (300 : 95 : 95) would give 3.061%, 0.969%, 0.969% instead.
    Counts are the exact ones `assign` produces (source_counts), so the weights are exact too.
    """
    seen: list[int] = []
    out: list[tuple[float, ...]] = []
    for k, n in enumerate(stage_sequences):
        if k == 0:
            out.append(())
            seen.append(n)
            continue
        total = sum(seen)
        weights = tuple(s / total for s in seen)
        own, replayed = source_counts(n, replay, weights)
        seen = [s + c for s, c in zip(seen, replayed)] + [own]
        out.append(weights)
    return out


def stable_seed(*parts) -> int:
    """A seed named by `parts`, the same in every process and run (hash() is salted per process)."""
    return zlib.crc32(repr(parts).encode())


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
