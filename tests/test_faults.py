"""Fault injection on real training subprocesses: `python run.py -m ...` is killed with SIGKILL
mid-prefix at a random step, then mid-multirun in the middle of a checkpoint write, and the
same command run a third time must finish with the numbers of an uninterrupted run.

The kills come from CPT_FAULT (cpt/faults.py): the process sends itself SIGKILL, which is what
`kill -9` does (no cleanup runs). The step is random; its seed is in every assertion message.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from cpt.faults import ENV

from conftest import ROOT, TINY, TINY_STEPS, hydra_multirun
from test_end_to_end import client, run_tiny, runs_of_kind

pytestmark = pytest.mark.slow

T, EVERY = TINY_STEPS, 6  # steps per stage, checkpoint interval
CKPT = [f"checkpoint.interval_steps={EVERY}", "checkpoint.keep_last=2"]
POINTS = ("1e-4", "2e-4")


def run_py(args, fault: str | None = None) -> subprocess.CompletedProcess:
    # Same thread count as this process: the subprocess must compute what run_tiny computes here.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    env.pop(ENV, None)
    if fault:
        env[ENV] = fault
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def _run_dirs(out):
    return sorted(p for p in (out / "checkpoints").iterdir() if p.name.startswith("run-"))


def test_sigkill_mid_prefix_and_mid_multirun_checkpoint_write_then_the_same_command_finishes(
        out, tmp_path_factory, prepared_root):
    seed = int(os.environ.get("CPT_FAULT_SEED") or random.randrange(10**6))  # set it to replay a failure
    rng = random.Random(seed)
    sweep = ["-m", f"lr.max={','.join(POINTS)}", *TINY, *CKPT, f"paths.output_dir={out}"]

    # 1. SIGKILL at a random step of stage 0, the prefix both points share.
    k1 = rng.randint(1, T - 1)
    why = f"seed {seed}: SIGKILL at step {k1} of stage 0"
    res = run_py(sweep, f"step:{k1}")
    assert res.returncode == -signal.SIGKILL, f"{why}\n{res.stderr[-2000:]}"
    (prefix,) = runs_of_kind(out, "prefix")
    assert prefix.info.status == "RUNNING", why  # killed: nobody could mark it
    assert not [p for p in (out / "cache").iterdir() if p.name != "locks"], why  # nothing cached

    # 2. SIGKILL inside a checkpoint write of point 2's own stage: stage 0 resumes and is cached,
    #    point 1 finishes, point 2 dies while writing its j-th checkpoint.
    # The checkpoint of step s is written before step s + 1 runs: a kill right after step k1
    # leaves the one of the last multiple of EVERY below k1.
    done0 = (k1 - 1) // EVERY * EVERY
    saves = lambda start: len(range(start + EVERY, T, EVERY))  # checkpoints a stage writes from `start`
    j = rng.randint(1, saves(0))
    why += f", then inside checkpoint write {j} of point 2"
    res = run_py(sweep, f"checkpoint:{saves(done0) + saves(0) + j}")
    assert res.returncode == -signal.SIGKILL, f"{why}\n{res.stderr[-2000:]}"
    assert [r.info.status for r in runs_of_kind(out, "prefix")] == ["FINISHED"], why
    assert sorted(r.info.status for r in runs_of_kind(out, "run")) == ["FINISHED", "RUNNING"], why
    (ckpt_dir,) = _run_dirs(out)  # point 1 finished: its checkpoints are gone already
    assert [p.name for p in ckpt_dir.iterdir() if p.name.startswith(".tmp-")], why  # the torn write
    point2_run = json.loads((ckpt_dir / "run.json").read_text())["run_id"]

    # 3. The same command (in this process: a start costs ~10 s): point 1 is skipped, point 2
    #    resumes from its last whole checkpoint.
    said = hydra_multirun(sweep)
    why += "\n" + "\n".join(line for line in said.splitlines() if "it/s" not in line)
    assert said.count("finished already as MLflow run") == 1, why
    if j > 1:  # (j = 1: no whole checkpoint yet, the stage starts over in the same MLflow run)
        assert f"resuming from its checkpoint at step {(j - 1) * EVERY}" in said, why
    assert f"continuing MLflow run {point2_run}" in said, why
    assert "sweep " in said and "2 finished runs" in said, why

    # Same numbers as uninterrupted runs, computed here in this process.
    ref = tmp_path_factory.mktemp("reference") / "outputs"
    for sub in ("data", "tokenizers"):
        shutil.copytree(prepared_root / sub, ref / sub)
    runs = {r.data.params["lr.max"]: r for r in runs_of_kind(out, "run")}
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs.values()), why
    assert runs[str(float(POINTS[1]))].info.run_id == point2_run, why  # continued, not duplicated
    for lr in POINTS:
        _, want = run_tiny(ref, CKPT + [f"lr.max={lr}"])
        got = runs[str(float(lr))].data.metrics
        for k, v in want.metrics.items():
            assert got[k] == pytest.approx(v, abs=1e-6), f"{why}: lr.max={lr} {k}"
    (prefix2,) = runs_of_kind(out, "prefix")
    assert prefix2.info.run_id == prefix.info.run_id and prefix2.info.status == "FINISHED", why
    steps = [h.step for h in client(out).get_metric_history(point2_run, "train/loss")]
    assert sorted(steps) == sorted(set(steps)) and len(steps) == T, why  # every step once
    assert not list((out / "checkpoints").iterdir()), why  # all deleted once finished
