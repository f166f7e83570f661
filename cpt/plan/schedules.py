"""Learning-rate schedules: pure functions of (step, stage steps, knobs).

Notation of docs/papers.md: T = the stage's optimizer steps, T_w = floor(warmup·T), τ = t − T_w.
A step index t in [0, T) names the optimizer step; `lr_at(t)` is the LR that step uses, and
t = T is where the schedule ends (η_min for the decaying ones).
Every schedule but `constant` opens with the same linear warm-up from 0 (step 0 has LR 0 when
T_w > 0). Phase boundaries given as fractions of T stay real numbers (T_cd = 0.6·T may be 14.4
steps); a step belongs to the phase its τ falls in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

INFINITE = ("infinite-cosine", "infinite-invsqrt")  # 2403.08763: span the whole chain, no re-warm
NAMES = ("cosine", "constant", "rewarm-constant", *INFINITE, "wsd")
WSD_SHAPES = ("linear", "cosine", "1-sqrt")


@dataclass(frozen=True)
class ScheduleSpec:
    """One stage's schedule. `name` is a conf/schedule option; LRs are absolute.

    Only the knobs its schedule reads are set (the rest stay 0 / ""): the spec enters the
    prefix key, so a knob of another schedule must not change it.
    """

    name: str
    warmup: float  # warm-up length, fraction of the stage's steps
    lr_max: float
    lr_min: float
    cooldown: float = 0.0  # infinite-*: T_cd / T, from η_max down to η_const (0: none, a later stage)
    constant_until: float = 0.0  # infinite-*: T_c / T, the τ where the anneal starts
    alpha: float = 0.0  # infinite-invsqrt: α of h(x) = 1/√(1 + αx) − 1
    lr_const: float = 0.0  # infinite-*: η_const
    decay: float = 0.0  # wsd: decay length, fraction of T (the last steps of the stage)
    decay_shape: str = ""  # wsd: linear | cosine | 1-sqrt


def stage_spec(name: str, warmup: float, lr_max: float, lr_min: float, *, continues: bool,
               cooldown: float, constant_until: float, alpha: float, lr_const: float, decay: float,
               decay_shape: str) -> ScheduleSpec:
    """The spec of one stage from the config's knobs. `continues`: a later stage of a chain.

    A later stage of an infinite schedule has no warm-up and no cooldown: it starts at η_const,
    which is then its peak (so neither lr.max nor α enters its identity).
    """
    if name == "constant":
        return ScheduleSpec(name, 0.0, lr_max, lr_min)
    if name in INFINITE:
        if continues:
            warmup, cooldown, lr_max, alpha = 0.0, 0.0, lr_const, 0.0
        return ScheduleSpec(name, warmup, lr_max, lr_min, cooldown=cooldown, constant_until=constant_until,
                            alpha=alpha if name == "infinite-invsqrt" else 0.0, lr_const=lr_const)
    if name == "wsd":
        return ScheduleSpec(name, warmup, lr_max, lr_min, decay=decay, decay_shape=decay_shape)
    return ScheduleSpec(name, warmup, lr_max, lr_min)


def describe(spec: ScheduleSpec) -> str:
    """The spec in one line (the dry run's stage lines)."""
    if spec.name == "constant":
        return f"constant lr {spec.lr_min:g} (no warm-up)"
    if spec.name == "rewarm-constant":
        return f"rewarm-constant warmup {spec.warmup:g} lr {spec.lr_max:g} (no decay)"
    if spec.name in INFINITE:
        alpha = f" alpha {spec.alpha:g}," if spec.alpha else ""
        if spec.cooldown == 0 and spec.warmup == 0:
            return (f"{spec.name} lr {spec.lr_const:g}→{spec.lr_min:g} (no warm-up, no cooldown,{alpha} "
                    f"anneal from {spec.constant_until:g}·T)")
        return (f"{spec.name} warmup {spec.warmup:g} lr {spec.lr_max:g}→{spec.lr_const:g}→{spec.lr_min:g} "
                f"(cooldown {spec.cooldown:g},{alpha} anneal from τ = {spec.constant_until:g}·T)")
    text = f"{spec.name} warmup {spec.warmup:g} lr {spec.lr_max:g}→{spec.lr_min:g}"
    if spec.name == "wsd":
        text += f" (decay over the last {spec.decay:g}, {spec.decay_shape})"
    return text


def warmup_steps(spec: ScheduleSpec, total_steps: int) -> int:
    return int(math.floor(spec.warmup * total_steps))


def anneal_start_step(spec: ScheduleSpec, total_steps: int) -> int | None:
    """Infinite schedules: the first step of the anneal (the pre-anneal checkpoint is the weights
    before it), i.e. the first t with τ ≥ T_c; T when the anneal has no whole step. Else None."""
    if spec.name not in INFINITE:
        return None
    return min(total_steps, warmup_steps(spec, total_steps) + math.ceil(spec.constant_until * total_steps))


def lr_at(step: int, total_steps: int, spec: ScheduleSpec) -> float:
    T, T_w = total_steps, warmup_steps(spec, total_steps)
    if spec.name == "constant":  # the papers' "no re-warming" baseline: η_min throughout
        return spec.lr_min
    if step < T_w:
        return spec.lr_max * step / T_w
    if spec.name == "cosine":
        return cosine(step, T, T_w, spec.lr_max, spec.lr_min)
    if spec.name == "rewarm-constant":  # re-warm without re-decay
        return spec.lr_max
    if spec.name in INFINITE:
        return infinite(step - T_w, T - T_w, T, spec)
    if spec.name == "wsd":
        return wsd(step, T, spec)
    raise ValueError(f"unknown schedule {spec.name!r}")


def cosine(t: int, T: int, T_w: int, lr_max: float, lr_min: float) -> float:
    """Linear warm-up from 0 (step 0 has LR 0 when T_w > 0), then cosine decay to lr_min at t = T."""
    if t < T_w:
        return lr_max * t / T_w
    progress = (t - T_w) / max(1, T - T_w)
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos(math.pi * progress))


def infinite(tau: int, T_after_warmup: int, T: int, spec: ScheduleSpec) -> float:
    """After warm-up (τ = t − T_w ≥ 0): cooldown over T_cd from η_max to η_const, constant
    η_const until T_c, then η = η_const·(η_min/η_const)^((τ − T_c)/(T − T_w − T_c))."""
    T_cd, T_c = spec.cooldown * T, spec.constant_until * T
    lr_max, lr_const, lr_min = spec.lr_max, spec.lr_const, spec.lr_min
    if tau < T_cd:
        x = tau / T_cd
        if spec.name == "infinite-cosine":
            return lr_const + 0.5 * (lr_max - lr_const) * (1.0 + math.cos(math.pi * x))

        def h(x: float) -> float:
            return 1.0 / math.sqrt(1.0 + spec.alpha * x) - 1.0

        return lr_max + (lr_const - lr_max) * h(x) / h(1.0)
    if tau < T_c:
        return lr_const
    return lr_const * (lr_min / lr_const) ** ((tau - T_c) / (T_after_warmup - T_c))


def wsd(t: int, T: int, spec: ScheduleSpec) -> float:
    """Warm-up (done by the caller), stable at η_max, then decay to η_min over the last decay·T
    steps: x = (t − (T − T_d)) / T_d in [0, 1) and linear 1 − x, cosine ½(1 + cos πx) or
    1-sqrt 1 − √x of the way from η_min to η_max (1-sqrt: Hägele et al. 2024)."""
    T_d = spec.decay * T
    x = (t - (T - T_d)) / T_d
    if x < 0:
        return spec.lr_max
    if spec.decay_shape == "linear":
        f = 1.0 - x
    elif spec.decay_shape == "cosine":
        f = 0.5 * (1.0 + math.cos(math.pi * x))
    elif spec.decay_shape == "1-sqrt":
        f = 1.0 - math.sqrt(x)
    else:
        raise ValueError(f"unknown wsd decay_shape {spec.decay_shape!r}")
    return spec.lr_min + (spec.lr_max - spec.lr_min) * f
