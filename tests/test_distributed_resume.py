"""Resume under DDP and FSDP on two CPU processes (gloo): the run's own stage is stopped at random
steps, once by SIGKILL after a periodic checkpoint (both ranks die) and once by SIGTERM to rank 0
alone (the ranks agree to stop at the same step and write the checkpoint together: exit 143), and
finished by the same command; its MLflow
record equals that of an uninterrupted two-process DDP run: the replay fraction exactly (and as
planned), the per-step loss within 1e-5 relative, and so the moving average of the weights
(`ema.decay`, here with `ema.use`: its losses and the final ones).

The replay fraction is where a resumed DDP stage used to go wrong: each rank counts its own
sequences and the log sums the counts over the ranks, so a checkpoint must hold the sums and
only one rank may carry them on. With 4 sequences a step and replay 0.3 the two ranks replay
different numbers of sequences, so counting one rank's share twice shows. Under FSDP each rank
holds a shard of the weights and AdamW moments: a checkpoint must hold them gathered.

A start of two processes costs ~20 s here, so one chain of starts covers both strategies, the
crash runs reuse the baseline's cached stage 0 (it has no replay): only stage 1 is trained, and
the baseline itself is also the two-process run that must log what one process logs.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from cpt.faults import ENV
from cpt.store.stage_checkpoints import STATE

from conftest import ROOT, TINY
from test_end_to_end import client, runs_of_kind

pytestmark = pytest.mark.slow

S0, S1, EVERY = 8, 16, 4  # steps of stage 0 and stage 1, checkpoint interval
PEAK = 1e11  # FLOP/s of one device, for perf/mfu
ONE = [*TINY, f"shift.datasets.0.tokens={S0 * 512}", f"shift.datasets.1.tokens={S1 * 512}", "replay=0.3",
       f"checkpoint.interval_steps={EVERY}", "trainer.accelerator=cpu", "trainer.precision=32-true",
       f"trainer.peak_flops={PEAK}", "ema.decay=0.8", "ema.use=true"]
ARGS = [*ONE, "trainer.devices=2"]
DDP = ["trainer=ddp"]
FSDP = ["trainer=fsdp", "trainer.activation_checkpointing=false"]
LOSSES = ("val/syn-en-a/loss", "val/syn-en-b/loss", "val/syn-en-a/loss_ema", "val/syn-en-b/loss_ema")
KEYS = ("train/loss", "train/replay_fraction", "train/lr", *LOSSES)
FINAL = ("final/syn-en-a/loss", "final/syn-en-b/loss", "final/syn-en-a/loss_ema", "final/syn-en-b/loss_ema")


def run_py(out, trainer: list[str], fault: str | None = None) -> subprocess.CompletedProcess:
    """`python run.py` on 2 ranks, one thread each (the 2 cores; the same arithmetic in every run)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop(ENV, None)
    if fault:
        env[ENV] = fault  # rank 1 inherits it: both ranks die after the same step
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *ARGS, *trainer, f"paths.output_dir={out}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def history(out, kind: str = "run") -> dict:
    """{metric: {step: value}} of the store's one run of `kind` (`run`: stage 1, `prefix`: stage 0),
    and its final metrics (a `run`'s)."""
    (run,) = runs_of_kind(out, kind)
    c = client(out)
    return {**{k: {h.step: h.value for h in c.get_metric_history(run.info.run_id, k)} for k in KEYS},
            **{k: run.data.metrics[k] for k in FINAL if kind == "run"}}


def test_ddp_on_two_processes_logs_what_one_process_logs(baseline, tmp_path, prepared_root):
    """The same global batch (4 sequences a step) on 1 process and on 2 DDP ranks of 2 sequences:
    the same loss at every step of both stages (within 1e-5 relative) and the same, exact,
    replay fraction; perf/mfu counts both devices; rank 1 logs nothing itself."""
    from test_end_to_end import run_tiny

    ddp_out, _ = baseline
    out = tmp_path / "outputs"
    for sub in ("data", "tokenizers"):
        shutil.copytree(prepared_root / sub, out / sub)
    run_tiny(out, ONE[len(TINY):])
    for kind in ("prefix", "run"):
        one, two = history(out, kind), history(ddp_out, kind)
        for key in KEYS:
            assert one[key].keys() == two[key].keys() and one[key], (kind, key)
            for step, v in one[key].items():
                assert two[key][step] == pytest.approx(v, rel=1e-5, abs=1e-12), (kind, key, step)
    (run,) = runs_of_kind(ddp_out, "run")
    c = client(ddp_out)
    tps = {h.step: h.value for h in c.get_metric_history(run.info.run_id, "perf/tokens_per_s")}
    mfu = {h.step: h.value for h in c.get_metric_history(run.info.run_id, "perf/mfu")}
    fpt = run.data.metrics["compute/flops"] / run.data.metrics["compute/tokens"]
    assert mfu.keys() == tps.keys() and len(mfu) >= S1 // 4  # none right after an evaluation (dense ones here)
    assert all(mfu[s] == pytest.approx(tps[s] * fpt / (2 * PEAK)) for s in mfu)
    assert len(list(ddp_out.glob("runs/*/rank1.out"))) == 1


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, prepared_root):
    """The uninterrupted two-process DDP run (it writes its periodic checkpoints too)."""
    out = tmp_path_factory.mktemp("uninterrupted") / "outputs"
    for sub in ("data", "tokenizers"):
        shutil.copytree(prepared_root / sub, out / sub)
    res = run_py(out, DDP)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, history(out)


def crash(out, trainer: list[str], fault: str, resumes_from: int | None, why: str):
    """Run `trainer` until the CPT_FAULT `fault` stops it; returns the state of the checkpoint
    it leaves last."""
    res = run_py(out, trainer, fault)
    if fault.endswith(":term@0"):
        err = res.stderr.strip().splitlines()
        assert res.returncode == 143 and "SIGTERM: stage 1 syn-en-b stopped after step" in err[-1], \
            f"{why}\n{res.stderr[-3000:]}"
    else:
        assert res.returncode == -signal.SIGKILL, f"{why}\n{res.stderr[-3000:]}"
    if resumes_from is not None:
        assert f"resuming from its checkpoint at step {resumes_from} of {S1}" in res.stdout, why
    (ckpt,) = (out / "checkpoints").iterdir()
    last = sorted(ckpt.glob("step-*"))[-1]
    return torch.load(last / STATE, weights_only=True)


def assert_counts(state, why):
    """The checkpoint holds the sequence counts of both ranks: 4 a step, floor(0.3·n) replayed."""
    (counts,) = [v for k, v in state["callbacks"].items() if "StageMetrics" in k]
    n = 4 * state["step"]
    assert (counts["consumed"], counts["replayed"]) == (n, n * 3 // 10), why


def assert_full_state(state, cfg, why):
    """Whole tensors in the plain formats (weights by name, AdamW moments by position), not FSDP's
    flattened shards of one rank."""
    from cpt.model.spec import build_model

    plain = build_model(cfg.model, state["model"]["gpt_neox.embed_in.weight"].shape[0])
    assert {k: tuple(v.shape) for k, v in state["model"].items()} == \
        {k: tuple(v.shape) for k, v in plain.state_dict().items()}, why
    params = [p for _, p in plain.named_parameters()]
    moments = state["optimizer"]["state"]
    assert sorted(moments) == list(range(len(params))), why  # every parameter, by its position
    assert sorted(tuple(m["exp_avg"].shape) for m in moments.values()) == sorted(tuple(p.shape) for p in params), why
    assert all(float(m["step"]) == state["step"] for m in moments.values()), why


def test_stage_resumed_under_ddp_and_fsdp_logs_what_an_uninterrupted_run_logs(baseline, tmp_path):
    """Stage 1 is stopped twice and finished by a third start, switching strategy each time:
    FSDP writes a checkpoint that DDP resumes from, DDP one that FSDP resumes from (a
    checkpoint holds the full state in one format whatever wrote it)."""
    from conftest import parse

    base_out, want = baseline
    out = tmp_path / "outputs"
    for sub in ("data", "tokenizers", "cache"):  # stage 0 comes from the baseline's cache
        shutil.copytree(base_out / sub, out / sub)
    # The checkpoint of step s is written before step s + 1: a kill after step k keeps
    # the one of the last multiple of EVERY below k.
    k1, k2 = random.randint(EVERY + 1, 2 * EVERY - 1), random.randint(2 * EVERY + 1, 3 * EVERY - 1)
    why = f"fsdp killed after step {k1} of stage 1"
    state = crash(out, FSDP, f"step:{k1}", None, why)
    assert state["step"] == EVERY, why
    assert_full_state(state, parse(ARGS + FSDP, out), why)
    assert_counts(state, why)
    (run_id,) = [r.info.run_id for r in runs_of_kind(out, "run")]

    why += f", ddp resumed from {EVERY} and rank 0 sent SIGTERM in step {k2}"
    state = crash(out, DDP, f"step:{k2 - EVERY}:term@0", EVERY, why)
    assert state["step"] == k2, why  # both ranks stopped after step k2 and wrote its checkpoint
    assert_counts(state, why)

    why += f", fsdp resumed from {k2}"
    res = run_py(out, FSDP)
    assert res.returncode == 0, f"{why}\n{res.stderr[-3000:]}"
    assert f"resuming from its checkpoint at step {k2} of {S1}" in res.stdout, why
    (run,) = runs_of_kind(out, "run")  # the same MLflow run, continued
    assert run.info.run_id == run_id and run.info.status == "FINISHED", why

    got = history(out)
    offset = S0 * 512
    # Cumulative replay fraction after step t: exactly floor(4(t+1)·0.3) of 4(t+1) sequences.
    planned = {offset + t * 512: (4 * (t + 1) * 3 // 10) / (4 * (t + 1)) for t in range(S1)}
    assert got["train/replay_fraction"] == want["train/replay_fraction"] == planned, why
    assert got["train/lr"] == want["train/lr"], why
    for key in ("train/loss", *LOSSES):  # the EMA's too: each rank's average resumed (DDP) or its shard (FSDP)
        assert got[key].keys() == want[key].keys() and want[key], f"{why}: {key} steps"
        for step, v in want[key].items():
            assert got[key][step] == pytest.approx(v, rel=1e-5), f"{why}: {key} at {step}"
    for key in FINAL:  # ema.use: the final model is the average, gathered from the shards under FSDP
        assert got[key] == pytest.approx(want[key], rel=1e-5), f"{why}: {key}"
    assert want["final/syn-en-b/loss"] == want["final/syn-en-b/loss_ema"]
    c = client(out)
    assert len(c.get_metric_history(run_id, "train/loss")) == S1, why  # every step logged once
