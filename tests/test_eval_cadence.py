"""The eval cadence (cpt/plan/stages.py eval_steps): the dense window where the stability gap
lives, its config keys, and its place in the run's identity (not the prefix key)."""

from __future__ import annotations

import pytest

from cpt.plan.stages import eval_steps

from conftest import parse


def test_the_default_stage_evaluates_the_first_tenth_ten_times():
    # 1000 steps, 1% warm-up (10 steps), every 50, every 10 in the warm-up band, window 0.1 · 10
    got = eval_steps(1000, 10, 50, 10, 0.1, 10)
    assert got[:12] == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 150]
    assert got[-1] == 1000 and len(got) == 29  # 22 before the dense window: 7 more per stage
    assert eval_steps(1000, 10, 50, 10, 0.0, 0) == sorted({*range(0, 1000, 50), 10, 1000})  # window off: as before


def test_without_warm_up_the_window_is_still_dense():
    assert eval_steps(1000, 0, 50, 10, 0.1, 10)[:11] == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert eval_steps(1000, 0, 50, 10, 0.1, 0)[:3] == [0, 50, 100]


def test_a_short_window_is_stretched_to_hold_its_evaluations():
    # 24 steps (the tests' TINY): 0.1 · 24 → 3 steps, stretched to 10, one eval per step
    assert eval_steps(24, 2, 8, 2, 0.1, 10) == [*range(10), 16, 24]
    assert eval_steps(6, 0, 8, 2, 0.1, 10) == [0, 1, 2, 3, 4, 5, 6]  # a stage shorter than the window
    # 0.5 of 100 steps, 10 evaluations: every 5 steps in [0, 50)
    assert [s for s in eval_steps(100, 0, 1000, 1, 0.5, 10) if s < 100] == list(range(0, 50, 5))


def test_the_cadence_is_in_the_run_key_not_the_prefix_key():
    from cpt.plan.identity import prefix_key, run_key
    from cpt.plan.stages import build_plan

    keys = []
    for o in ([], ["eval.dense_evals=20"], ["eval.dense_fraction=0.2"], ["eval.interval_steps=25"]):
        cfg = parse(o)
        stages = build_plan(cfg)
        keys.append((prefix_key(cfg, stages, len(stages) - 1), run_key(cfg, stages)))
    assert len({p for p, _ in keys}) == 1 and len({r for _, r in keys}) == 4


@pytest.mark.parametrize("override, message", [
    ("eval.dense_fraction=1.5", r"^eval.dense_fraction=1.5: allowed 0 <= eval.dense_fraction <= 1"),
    ("eval.dense_evals=-1", r"^eval.dense_evals=-1: allowed >= 0"),
])
def test_bad_cadence_is_one_line(override, message):
    from cpt.errors import UserError

    with pytest.raises(UserError, match=message):
        parse([override])
