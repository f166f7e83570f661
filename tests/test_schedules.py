"""LR schedule values against numbers computed by hand from the PAPERS.md formula."""

import math

import pytest

from cpt.schedules import ScheduleSpec, cosine, lr_at, warmup_steps

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
