"""LR schedule values against numbers computed by hand from 2403.08763's formula (docs/papers.md)."""

import math

import pytest

from cpt.plan.schedules import ScheduleSpec, cosine, lr_at, warmup_steps

# T = 1000 steps, warmup 1% -> T_w = 10; η_max = 3e-4, η_min = 3e-5.
# After warm-up: η = η_min + ½(η_max − η_min)(1 + cos(π (t − 10) / 990)).
COSINE = ScheduleSpec("cosine", 0.01, 3e-4, 3e-5)
TABLE = [
    (0, 0.0),  # step 0 of a warm-up has LR 0
    (1, 3e-5),  # 3e-4 · 1/10
    (5, 1.5e-4),
    (10, 3e-4),  # end of warm-up: the peak
    (505, 3e-5 + 0.5 * 2.7e-4 * (1 + math.cos(math.pi * 495 / 990))),  # halfway: 1.65e-4
    (999, 3e-5 + 0.5 * 2.7e-4 * (1 + math.cos(math.pi * 989 / 990))),  # last step, just above η_min
]


@pytest.mark.parametrize("step,expected", TABLE)
def test_cosine_table(step, expected):
    assert lr_at(step, 1000, COSINE) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_cosine_halfway_is_mean_of_max_and_min():
    assert lr_at(505, 1000, COSINE) == pytest.approx((3e-4 + 3e-5) / 2)


def test_no_warmup_starts_at_peak():
    spec = ScheduleSpec("cosine", 0.0, 6e-4, 6e-5)
    assert warmup_steps(spec, 1000) == 0
    assert lr_at(0, 1000, spec) == pytest.approx(6e-4)


def test_warmup_is_floor_of_fraction():
    assert warmup_steps(ScheduleSpec("cosine", 0.005, 1, 0.1), 1000) == 5
    assert warmup_steps(ScheduleSpec("cosine", 0.005, 1, 0.1), 999) == 4


def test_monotone_decay_after_warmup():
    values = [cosine(t, 200, 10, 1.0, 0.1) for t in range(10, 200)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert values[-1] > 0.1


# ── the other schedules ─────────────────────────────────────────────────────────────────────
# The same stage throughout: T = 1000, warm-up 1% -> T_w = 10, η_max = 3e-4, η_min = 3e-5,
# η_const = (3e-4 + 3e-5)/2 = 1.65e-4. Infinite: T_cd = 0.6·1000 = 600, T_c = 0.85·1000 = 850,
# so warm-up t = 0..9, cooldown t = 10..609, constant t = 610..859, anneal t = 860..999 over
# T − T_w − T_c = 1000 − 10 − 850 = 140 steps. Characteristic steps: 0, the end of the warm-up
# (t = 10), the middle of the cooldown or decay, the start of the anneal, the last step (999).
from cpt.plan.schedules import anneal_start_step, stage_spec  # noqa: E402

CONSTANT = ScheduleSpec("constant", 0.01, 3e-4, 3e-5)  # warmup set on purpose: constant ignores it
REWARM = ScheduleSpec("rewarm-constant", 0.01, 3e-4, 3e-5)
INF_COS = ScheduleSpec("infinite-cosine", 0.01, 3e-4, 3e-5, cooldown=0.6, constant_until=0.85, lr_const=1.65e-4)
INF_SQRT = ScheduleSpec("infinite-invsqrt", 0.01, 3e-4, 3e-5, cooldown=0.6, constant_until=0.85, alpha=10.0,
                        lr_const=1.65e-4)
# A later stage of an infinite chain: no warm-up, no cooldown, peak = η_const; T_c = 850 from t = 0,
# anneal t = 850..999 over 1000 − 0 − 850 = 150 steps.
INF_NEXT = ScheduleSpec("infinite-cosine", 0.0, 1.65e-4, 3e-5, cooldown=0.0, constant_until=0.85, lr_const=1.65e-4)
# wsd: decay over the last 0.2·1000 = 200 steps, t = 800..999, x = (t − 800)/200.
WSD = {shape: ScheduleSpec("wsd", 0.01, 3e-4, 3e-5, decay=0.2, decay_shape=shape)
       for shape in ("linear", "cosine", "1-sqrt")}

TABLES = [
    # constant: η_min everywhere, step 0 included (no warm-up)
    (CONSTANT, 0, 3e-5), (CONSTANT, 10, 3e-5), (CONSTANT, 505, 3e-5), (CONSTANT, 999, 3e-5),
    # rewarm-constant: 3e-4 · t/10 during the warm-up, then 3e-4 to the end
    (REWARM, 0, 0.0), (REWARM, 5, 1.5e-4), (REWARM, 10, 3e-4), (REWARM, 505, 3e-4), (REWARM, 999, 3e-4),
    # infinite-cosine. t = 10: τ = 0, 1.65e-4 + ½·1.35e-4·(1 + cos 0) = 3e-4 (the peak).
    (INF_COS, 0, 0.0), (INF_COS, 5, 1.5e-4), (INF_COS, 10, 3e-4),
    (INF_COS, 310, 2.325e-4),  # τ = 300 = T_cd/2: 1.65e-4 + ½·1.35e-4·(1 + cos π/2) = 1.65e-4 + 6.75e-5
    (INF_COS, 610, 1.65e-4),  # τ = 600 = T_cd: the constant phase
    (INF_COS, 859, 1.65e-4),  # τ = 849 < T_c: last constant step
    (INF_COS, 860, 1.65e-4),  # τ = 850 = T_c: start of the anneal, exponent 0
    (INF_COS, 930, 7.0356236e-5),  # exponent (920 − 850)/140 = ½: √(1.65e-4 · 3e-5) = √4.95e-9
    # last step: exponent 139/140, 1.65e-4·(3e-5/1.65e-4)^(139/140) = 3e-5·5.5^(1/140)
    # = 3e-5·exp(ln 5.5/140) = 3e-5·exp(1.7047481/140) = 3e-5·exp(0.012176772) = 3e-5·1.0122512
    (INF_COS, 999, 3.0367536e-5),
    (INF_COS, 1000, 3e-5),  # t = T: exponent 1, η_min
    # infinite-invsqrt: h(x) = 1/√(1 + 10x) − 1, h(1) = 1/√11 − 1 = 0.30151134 − 1 = −0.69848866.
    (INF_SQRT, 0, 0.0), (INF_SQRT, 10, 3e-4),  # τ = 0: h(0) = 0, η = η_max
    # τ = 300: h(½) = 1/√6 − 1 = −0.59175171; h(½)/h(1) = 0.84718872;
    # 3e-4 + (1.65e-4 − 3e-4)·0.84718872 = 3e-4 − 1.1437048e-4
    (INF_SQRT, 310, 1.8562952e-4),
    (INF_SQRT, 610, 1.65e-4),  # τ = T_cd: h(1)/h(1) = 1, η_const
    (INF_SQRT, 860, 1.65e-4), (INF_SQRT, 930, 7.0356236e-5), (INF_SQRT, 999, 3.0367536e-5),  # as infinite-cosine
    # a later stage of an infinite chain: η_const from step 0 (no re-warm) until T_c = 850
    (INF_NEXT, 0, 1.65e-4), (INF_NEXT, 849, 1.65e-4), (INF_NEXT, 850, 1.65e-4),
    (INF_NEXT, 925, 7.0356236e-5),  # exponent 75/150 = ½
    # exponent 149/150: 3e-5·5.5^(1/150) = 3e-5·exp(1.7047481/150) = 3e-5·exp(0.011364987) = 3e-5·1.0114298
    (INF_NEXT, 999, 3.0342894e-5),
    # wsd linear: warm-up, stable 3e-4 until t = 800, then 3e-4 − 2.7e-4·x
    (WSD["linear"], 0, 0.0), (WSD["linear"], 10, 3e-4), (WSD["linear"], 505, 3e-4),
    (WSD["linear"], 799, 3e-4), (WSD["linear"], 800, 3e-4),  # x = 0: start of the decay
    (WSD["linear"], 900, 1.65e-4),  # x = ½: 3e-4 − 1.35e-4
    (WSD["linear"], 999, 3.135e-5),  # x = 199/200: 3e-5 + 2.7e-4/200 = 3e-5 + 1.35e-6
    # wsd cosine: 3e-5 + 2.7e-4·½(1 + cos πx)
    (WSD["cosine"], 800, 3e-4), (WSD["cosine"], 900, 1.65e-4),  # cos π/2 = 0
    # x = 0.995: ½(1 + cos 0.995π) = ½(1 − cos 0.005π) ≈ ¼(0.005π)² = ¼·2.4674011e-4 = 6.1685028e-5;
    # 2.7e-4 · 6.1685028e-5 = 1.6654958e-8
    (WSD["cosine"], 999, 3.0016655e-5),
    # wsd 1-sqrt: 3e-5 + 2.7e-4·(1 − √x)
    (WSD["1-sqrt"], 800, 3e-4),
    (WSD["1-sqrt"], 900, 1.0908117e-4),  # 1 − √½ = 0.29289322; 2.7e-4 · 0.29289322 = 7.9081169e-5
    (WSD["1-sqrt"], 999, 3.0675845e-5),  # 1 − √0.995 = 1 − 0.99749687 = 0.00250313; · 2.7e-4 = 6.75845e-7
]


@pytest.mark.parametrize("spec,step,expected", TABLES,
                         ids=[f"{s.name}{'-' + s.decay_shape if s.decay_shape else ''}-{t}" for s, t, _ in TABLES])
def test_schedule_tables(spec, step, expected):
    assert lr_at(step, 1000, spec) == pytest.approx(expected, rel=1e-7, abs=1e-15)


def test_anneal_start_is_the_first_step_with_tau_at_least_T_c():
    assert anneal_start_step(INF_COS, 1000) == 860  # T_w + T_c = 10 + 850
    assert anneal_start_step(INF_NEXT, 1000) == 850
    # T = 24, warm-up 0.1 -> T_w = 2, T_c = 0.85·24 = 20.4 -> first τ ≥ 20.4 is 21, t = 23
    assert anneal_start_step(ScheduleSpec("infinite-cosine", 0.1, 1, 0.1, cooldown=0.6, constant_until=0.85, lr_const=0.5), 24) == 23
    assert anneal_start_step(COSINE, 1000) is None and anneal_start_step(WSD["linear"], 1000) is None


def test_infinite_lr_never_rises_after_the_warm_up():
    for spec in (INF_COS, INF_SQRT, INF_NEXT):
        values = [lr_at(t, 1000, spec) for t in range(warmup_steps(spec, 1000), 1001)]
        assert all(a >= b for a, b in zip(values, values[1:])), spec.name


def test_later_infinite_stage_drops_warmup_cooldown_and_irrelevant_knobs():
    knobs = dict(cooldown=0.6, constant_until=0.85, alpha=10.0, lr_const=1.65e-4, decay=0.2, decay_shape="linear")
    first = stage_spec("infinite-invsqrt", 0.01, 3e-4, 3e-5, continues=False, **knobs)
    later = stage_spec("infinite-invsqrt", 0.01, 3e-4, 3e-5, continues=True, **knobs)
    assert (first.warmup, first.cooldown, first.lr_max, first.alpha, first.decay) == (0.01, 0.6, 3e-4, 10.0, 0.0)
    assert (later.warmup, later.cooldown, later.lr_max, later.alpha) == (0.0, 0.0, 1.65e-4, 0.0)
    # knobs a schedule does not read stay unset, so they cannot change its prefix key
    assert stage_spec("cosine", 0.01, 3e-4, 3e-5, continues=True, **knobs) == COSINE
    assert stage_spec("constant", 0.01, 3e-4, 3e-5, continues=True, **knobs).warmup == 0.0
