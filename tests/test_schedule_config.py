"""Schedules through the real config: composition, the plan of a chain, bad input, `cpt schedule`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cpt.cli.commands.schedule import curves
from cpt.errors import UserError
from cpt.plan.stages import build_plan, stage_starts

from conftest import ROOT, parse

# A three-dataset chain of 1000-step stages (2,048,000 tokens / 2,048 per step), embedded data.
THREE = ("shift.datasets=[{name: a, tokens: 2048000, source: {type: synthetic, language: en, topic_weights: [1,0,0,0,0,0]}},"
         "{name: b, tokens: 2048000, source: {type: synthetic, language: en, topic_weights: [0,1,0,0,0,0]}},"
         "{name: c, tokens: 2048000, source: {type: synthetic, language: en, topic_weights: [0,0,1,0,0,0]}}]")


def test_an_infinite_schedule_spans_the_chain():
    cfg = parse(["schedule=infinite-cosine", THREE])
    assert cfg.pretrain.schedule == "infinite-cosine"  # the group sets stage 0's default too
    s0, s1, s2 = build_plan(cfg)
    assert (s0.schedule.warmup, s0.schedule.cooldown, s0.schedule.lr_max, s0.schedule.lr_const) == (0.01, 0.6, 3e-4, 1.65e-4)
    for s in (s1, s2):
        assert s.from_pre_anneal and (s.schedule.warmup, s.schedule.cooldown, s.schedule.lr_max) == (0.0, 0.0, 1.65e-4)
    assert not s0.from_pre_anneal
    # stage 1 starts from stage 0's weights before its anneal: after 860 of its 1000 steps;
    # stage 2 after 850 of stage 1's (no warm-up there): 860·2048 = 1,761,280; + 850·2048 = 3,502,080
    assert stage_starts([s0, s1, s2], 2048) == [0, 1_761_280, 3_502_080]


def test_the_chain_curve_has_no_rewarm():
    cfg = parse(["schedule=infinite-invsqrt", THREE])
    lines = curves(build_plan(cfg), cfg.batch.tokens)
    assert [c["branch_at"] for c in lines] == [860, 850, None]
    assert lines[0]["lr"][0] == 0.0 and max(lines[0]["lr"]) == pytest.approx(3e-4)
    for prev, c in zip(lines, lines[1:]):
        assert c["tokens"][0] == prev["tokens"][prev["branch_at"]]  # continues where the branch leaves
        assert c["lr"][0] == pytest.approx(prev["lr"][prev["branch_at"] - 1]) == pytest.approx(1.65e-4)
        assert max(c["lr"]) == pytest.approx(1.65e-4)


def test_other_schedules_leave_stage_0_cosine_and_restart_every_stage():
    for name in ("constant", "rewarm-constant", "wsd", "cosine"):
        cfg = parse([f"schedule={name}"])
        s0, s1 = build_plan(cfg)
        assert (cfg.pretrain.schedule, s0.schedule.name, s1.schedule.name) == ("cosine", "cosine", name)
        assert not s1.from_pre_anneal and stage_starts([s0, s1], 2048) == [0, 2_048_000]
    cfg = parse(["pretrain.schedule=wsd", "+schedule.decay=0.1"])
    assert build_plan(cfg)[0].schedule.decay == 0.1  # stage 0 may use any schedule, with its knobs


BAD = [
    (["schedule=infinite-cosine", "schedule.cooldown=0.9"], "schedule.cooldown"),  # cooldown past the constant phase
    (["schedule=infinite-cosine", "schedule.cooldown=-0.1"], "schedule.cooldown"),
    (["schedule=infinite-cosine", "schedule.constant_until=1.2"], "schedule.constant_until"),
    (["schedule=infinite-cosine", "schedule.constant_until=0.995"], "schedule.constant_until"),  # + warm-up ≥ 1
    (["schedule=infinite-cosine", "schedule.lr_const=5e-4"], "schedule.lr_const"),  # above η_max
    (["schedule=infinite-cosine", "schedule.lr_const=1e-5"], "schedule.lr_const"),  # below η_min
    (["schedule=infinite-invsqrt", "schedule.alpha=0"], "schedule.alpha"),
    (["schedule=infinite-cosine", "pretrain.schedule=cosine"], "pretrain.schedule"),
    (["schedule=wsd", "schedule.decay=0"], "schedule.decay"),
    (["schedule=wsd", "schedule.decay=0.995"], "schedule.decay"),  # warm-up + decay > the stage
    (["schedule=wsd", "schedule.decay_shape=exp"], "schedule.decay_shape"),
    (["pretrain.schedule=linear"], "pretrain.schedule"),
    (["schedule=rewarm-constant", "warmup=1"], "warmup"),  # a warm-up as long as the stage
]


@pytest.mark.parametrize("overrides,key", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_schedule_input_is_one_line_naming_the_key(overrides, key):
    with pytest.raises(UserError) as e:
        parse(overrides)
    msg = str(e.value)
    assert msg.startswith(key + "=") and "allowed" in msg and "\n" not in msg, msg


def cli(*args):
    return subprocess.run([sys.executable, "-m", "cpt.cli.main", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_cpt_schedule_draws_a_png_and_prints_its_path(tmp_path):
    out = tmp_path / "outputs"
    res = cli("schedule", "schedule=infinite-cosine", THREE, f"paths.output_dir={out}")
    assert res.returncode == 0, res.stderr
    path = res.stdout.strip().splitlines()[-1]
    assert path.startswith(str(out / "schedules" / "infinite-cosine-")) and path.endswith(".png")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in (out / "schedules").iterdir()] == [os.path.basename(path)]  # no temp file left


def test_cpt_schedule_bad_input_exits_2_with_one_line(tmp_path):
    out = tmp_path / "outputs"
    res = cli("schedule", "schedule=infinite-cosine", "schedule.cooldown=0.9", f"paths.output_dir={out}")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: schedule.cooldown=0.9: allowed 0 <= schedule.cooldown <= schedule.constant_until (0.85)"]
    assert not out.exists()
