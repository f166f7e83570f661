"""Which points of a grid a forecast-driven sweep trains (pure; hydra/sweeper=forecast).

First the informative points: the grid's two opposite corners (every axis at its first value,
then every axis at its last: for warm-up × η_max, the lowest η_max with no warm-up and the
highest with the longest), unless the sweep names its own. Their curves fit the law
(2408.11029 fits on one or two curves, §4). Then the points whose forecast objective is within
`margin` (relative) of the best forecast, most promising first, while the trained total stays
within `budget` × the grid's size; the rest are forecast only.
"""

from __future__ import annotations

import math


def first_points(jobs: list[list[str]], named: list[list[str]] | None = None) -> list[int]:
    """Indices into `jobs` of the points trained before any fit."""
    if named:
        picked = [next((i for i, j in enumerate(jobs) if set(n) <= set(j)), None) for n in named]
        missing = [" ".join(n) for n, i in zip(named, picked) if i is None]
        if missing:
            raise ValueError(f"hydra.sweeper.first: {', '.join(missing)} is not a point of the grid")
        return list(dict.fromkeys(picked))
    return list(dict.fromkeys([0, len(jobs) - 1]))


def to_train(predicted: dict[int, float], measured: list[float], total: int, margin: float,
             budget: float) -> list[int]:
    """The untrained points (index -> forecast objective) worth training: within `margin` of the
    best so far (forecast, or measured on the points trained already: `measured`), best first,
    at most `budget` · `total` points trained in all."""
    finite = {i: v for i, v in predicted.items() if math.isfinite(v)}
    known = [v for v in measured if math.isfinite(v)]
    if not finite:
        return []
    best = min([*finite.values(), *known])
    close = sorted((v, i) for i, v in finite.items() if v <= best + margin * abs(best))
    room = max(int(budget * total) - len(measured), 0)
    return [i for _, i in close[:room]]
