"""Stability-gap metrics of one continual stage for one dataset, from its validation curve (pure).

The stability gap (arXiv 2308.04014, after De Lange et al., arXiv 2205.13452): just after the LR
is re-warmed, the loss on every dataset rises before it falls again. The papers draw it and
give no formula; the three numbers below are the ones their plots show:

- depth: the highest loss after the stage's start minus the loss at its start (>= 0),
- peak_tokens: tokens from the start to that peak,
- recovery_tokens: tokens from the start to the first logged point, at or after the peak, whose
  loss is back at or below the start loss; absent when the curve never gets back there.

A curve is a list of (tokens since the stage's start, loss) points, the first at the stage's
start. Tokens are measured from the first point. The resolution is the eval grid's: recovery
is the first *logged* point at or below the start, not an interpolation between points.
"""

from __future__ import annotations

import math
from typing import Sequence


def gap(curve: Sequence[tuple[float, float]]) -> dict[str, float | int | None]:
    """{"depth", "peak_tokens", "recovery_tokens"} of one curve; recovery_tokens is None when the
    loss never gets back to its start value. A curve with no rise has depth 0 and both token
    counts 0 (the start is its own peak and is already recovered)."""
    if not curve or not math.isfinite(float(curve[0][1])):
        raise ValueError(f"a stability-gap curve needs a finite start point, got {list(curve)[:1]}")
    # A diverged eval (NaN/inf) later on says nothing about the gap: skip it.
    points = [(float(t), float(v)) for t, v in curve if math.isfinite(float(v))]
    if any(b[0] < a[0] for a, b in zip(points, points[1:])):
        raise ValueError("stability-gap curve points must be in order of tokens")
    t0, start = points[0]
    # Earliest maximum: a plateau at the peak counts from its first point.
    peak = max(range(len(points)), key=lambda i: (points[i][1], -i))
    recovery = next((t - t0 for t, v in points[peak:] if v <= start), None)
    return {
        "depth": points[peak][1] - start,
        "peak_tokens": _tokens(points[peak][0] - t0),
        "recovery_tokens": None if recovery is None else _tokens(recovery),
    }


def gap_metrics(dataset: str, curve: Sequence[tuple[float, float]]) -> dict[str, float | int]:
    """The metrics to log: gap/<dataset>/depth, …/peak_tokens and …/recovery_tokens, the last
    left out when the loss never recovers (a missing metric, not a sentinel number)."""
    out = {f"gap/{dataset}/{key}": value for key, value in gap(curve).items() if value is not None}
    return out


def _tokens(x: float) -> int | float:
    # Token counts are whole numbers in the logs; keep a fractional axis as it came.
    return int(x) if float(x).is_integer() else x


def stage_gap_metrics(evals: dict[int, dict[str, float]], batch_tokens: int) -> dict[str, float | int]:
    """gap/<dataset>/… of one continual stage for every dataset evaluated at its step 0, from its
    evals by optimizer step ({step: {dataset: loss}}); tokens since the start = step · batch."""
    steps = sorted(evals)
    if not steps or steps[0] != 0:
        return {}
    out: dict[str, float | int] = {}
    for name in evals[0]:
        curve = [(s * batch_tokens, evals[s][name]) for s in steps if name in evals[s]]
        if math.isfinite(float(curve[0][1])):
            out.update(gap_metrics(name, curve))
    return out


def staged(metrics: dict[str, float | int], stage: int) -> dict[str, float | int]:
    """An earlier continual stage's gap metrics as the run logs them: gap/stage<k>/<dataset>/…
    (the run's own stage keeps gap/<dataset>/…)."""
    return {f"gap/stage{stage}/{k.removeprefix('gap/')}": v for k, v in metrics.items()}
