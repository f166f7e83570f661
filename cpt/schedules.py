"""Learning-rate schedules: pure functions of (step, stage steps, knobs).

Notation of PAPERS.md: T = the stage's optimizer steps, T_w = floor(warmup·T), τ = t − T_w.
A step index t in [0, T) names the optimizer step; `lr_at(t)` is the LR that step uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ScheduleSpec:
    """One stage's schedule. `name` is a conf/schedule option; LRs are absolute."""

    name: str
    warmup: float  # warm-up length, fraction of the stage's steps
    lr_max: float
    lr_min: float


def warmup_steps(spec: ScheduleSpec, total_steps: int) -> int:
    return int(math.floor(spec.warmup * total_steps))


def lr_at(step: int, total_steps: int, spec: ScheduleSpec) -> float:
    if spec.name == "cosine":
        return cosine(step, total_steps, warmup_steps(spec, total_steps), spec.lr_max, spec.lr_min)
    raise ValueError(f"unknown schedule {spec.name!r}")


def cosine(t: int, T: int, T_w: int, lr_max: float, lr_min: float) -> float:
    """Linear warm-up from 0 (step 0 has LR 0 when T_w > 0), then cosine decay to lr_min at t = T."""
    if t < T_w:
        return lr_max * t / T_w
    progress = (t - T_w) / max(1, T - T_w)
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos(math.pi * progress))
