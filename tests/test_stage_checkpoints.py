"""Checkpoint store, precedence rule, fault hook and locks: fast, no training.

Two tests kill a real subprocess with SIGKILL: one in the middle of a checkpoint write, one
while it holds a prefix lock.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from cpt import faults
from cpt.store.locks import LockTaken
from cpt.store.prefix_cache import PrefixCache
from cpt.store.stage_checkpoints import StageCheckpoints, load_state_dict_checked, starting_point
from cpt.errors import UserError
from cpt.model.spec import ModelSpec, build_model

from conftest import ROOT

SPEC = ModelSpec("tiny", 2, 64, 4, 128, vocab_multiple=64)
META = {"stage": 1, "model": dataclasses.asdict(SPEC), "vocab_rows": 1024}


@pytest.mark.parametrize("checkpoint_step,init,from_scratch,expected", [
    (120, None, False, "checkpoint"),
    (120, "EleutherAI/pythia-410m", True, "checkpoint"),  # the run's own checkpoint wins over model.init
    (0, "/ckpt/dir", False, "checkpoint"),  # step 0 is still a checkpoint
    (None, "EleutherAI/pythia-410m", True, "init"),
    (None, "/ckpt/dir", False, "init"),
    (None, None, True, "scratch"),
    (None, None, False, "previous"),
    (None, "", False, "previous"),
])
def test_starting_point_precedence(checkpoint_step, init, from_scratch, expected):
    assert starting_point(checkpoint_step, init, from_scratch) == expected


def _state(step: int) -> dict:
    return {"step": step, "model": {"w": torch.full((2,), float(step))}, "optimizer": {}, "scheduler": {},
            "callbacks": {"StageMetrics": {"evals": {0: {"a": 1.0}}, "replayed": 0, "consumed": 4 * step}}, "rng": torch.get_rng_state()}


def test_keep_last_k_and_latest(tmp_path):
    store = StageCheckpoints(tmp_path / "run-x")
    assert store.latest() is None and store.steps() == []
    for step in (5, 10, 15, 20):
        store.save(step, _state(step), META, keep_last=2)
    assert store.steps() == [15, 20] and store.latest() == 20
    got = store.load(20, META)
    assert got["step"] == 20 and torch.equal(got["model"]["w"], torch.full((2,), 20.0))
    assert got["callbacks"]["StageMetrics"]["evals"] == {0: {"a": 1.0}}
    store.record_run({"run_id": "abc"})
    assert store.recorded_run() == {"run_id": "abc"}
    store.clear()
    assert not store.root.exists() and not list(tmp_path.iterdir())


def test_partial_write_is_never_read_and_is_discarded(tmp_path):
    store = StageCheckpoints(tmp_path / "prefix-y")
    store.save(5, _state(5), META, keep_last=3)
    os.environ[faults.ENV] = "checkpoint:1:raise"
    faults.reset()
    try:
        with pytest.raises(faults.InjectedFault):
            store.save(10, _state(10), META, keep_last=3)
    finally:
        del os.environ[faults.ENV]
    assert store.latest() == 5


def test_kill_during_checkpoint_write_keeps_the_previous_one(tmp_path):
    """SIGKILL between writing state.pt and publishing it: a .tmp dir is left, never read."""
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(ROOT)!r})
        import torch
        from cpt.store.stage_checkpoints import StageCheckpoints
        store = StageCheckpoints({str(tmp_path / 'run-z')!r})
        for step in (5, 10):
            store.save(step, {{"step": step, "model": {{"w": torch.zeros(3)}}, "optimizer": {{}},
                               "scheduler": {{}}, "callbacks": {{}}}}, {META!r}, keep_last=2)
    """)
    res = subprocess.run([sys.executable, "-c", script], env={**os.environ, faults.ENV: "checkpoint:2"},
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == -signal.SIGKILL, res.stderr
    store = StageCheckpoints(tmp_path / "run-z")
    leftovers = [p.name for p in store.root.iterdir() if p.name.startswith(".tmp-")]
    assert len(leftovers) == 1 and (store.root / leftovers[0] / "state.pt").exists()
    assert store.latest() == 5 and store.load(5, META)["step"] == 5
    store.discard_partial()
    assert sorted(p.name for p in store.root.iterdir()) == ["step-00000005"]


@pytest.mark.parametrize("damage,needle", [
    ("empty", "is empty"),
    ("truncated", "is corrupt"),
    ("missing", "is missing"),
    ("meta", "checkpoint metadata is unreadable"),
    ("pickle", "not a weights-only torch file"),
    ("other-size", "checkpoint of another model size: d_model=128 (this run: 64)"),
    ("positions", "its model has 64 positions"),
    ("stage", "checkpoint of stage 0, this run needs 1"),
])
def test_damaged_checkpoints_are_one_line_errors(tmp_path, damage, needle):
    store = StageCheckpoints(tmp_path / "run-d")
    meta = META
    if damage == "other-size":
        meta = {**META, "model": {**META["model"], "d_model": 128}}
    elif damage == "positions":
        meta = {**META, "model": {**META["model"], "seq_len": 64}}
    elif damage == "stage":
        meta = {**META, "stage": 0}
    d = store.save(5, _state(5), meta, keep_last=2)
    if damage == "empty":
        (d / "state.pt").write_bytes(b"")
    elif damage == "truncated":
        blob = (d / "state.pt").read_bytes()
        (d / "state.pt").write_bytes(blob[: len(blob) // 2])
    elif damage == "missing":
        (d / "state.pt").unlink()
    elif damage == "meta":
        (d / "meta.json").write_text("{not json")
    elif damage == "pickle":  # arbitrary pickled objects are refused, not executed
        torch.save({"model": {}, "optimizer": {}, "scheduler": {}, "callbacks": Evil()}, d / "state.pt")
    with pytest.raises(UserError) as e:
        store.load(5, META)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_weights_of_another_model_size_are_refused(tmp_path):
    small, big = build_model(SPEC, 1024), build_model(dataclasses.replace(SPEC, d_model=128), 1024)
    with pytest.raises(UserError) as e:
        load_state_dict_checked(small, big.state_dict(), tmp_path / "w.pt")
    msg = str(e.value)
    assert "holds weights of another model" in msg and "allowed: a checkpoint of this run's model size" in msg


def test_fault_spec_is_checked():
    assert faults.parse("step:7") == ("step", 7, "kill")
    assert faults.parse("checkpoint:2:raise") == ("checkpoint", 2, "raise")
    for bad in ("step", "steps:3", "step:x", "step:3:explode"):
        with pytest.raises(ValueError):
            faults.parse(bad)


def test_lock_of_a_killed_holder_is_taken_over(tmp_path):
    """flock belongs to the open file: the kernel releases it when the holder dies, even by SIGKILL."""
    root = tmp_path / "cache"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time; sys.path.insert(0, {str(ROOT)!r})
        from cpt.store.prefix_cache import PrefixCache
        with PrefixCache({str(root)!r}).lock("k"):
            print("locked", flush=True)
            time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockTaken):
            with PrefixCache(root).lock("k", wait=False):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        t0 = time.monotonic()
        with PrefixCache(root).lock("k", wait=False):
            pass  # no stale lock: taken at once
        assert time.monotonic() - t0 < 1
    finally:
        if holder.poll() is None:
            holder.kill()


def test_cache_entries_hold_weights_only(tmp_path):
    model = build_model(SPEC, 1024)
    cache = PrefixCache(tmp_path / "cache")
    entry = cache.put("abc123", model.state_dict(), {"val": {"a": 1.0}, "run_id": "r", "stage": 0})
    loaded = entry.load_weights()
    assert set(loaded) == set(model.state_dict())  # no optimizer, no scheduler
    assert all(isinstance(v, torch.Tensor) for v in loaded.values())
    assert json.loads((entry.path / "result.json").read_text())["run_id"] == "r"
