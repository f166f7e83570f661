"""Scale-out: the launcher configs, and a real sweep of separate processes sharing one stage-0
prefix through the cache's lock (DDP against one process: tests/test_distributed_resume.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime

import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import ROOT, TINY, compose, parse, run_cli


def test_slurm_launcher_composes_and_expands_a_sweep():
    """`-m hydra/launcher=submitit_slurm` on 2 nodes x 4 devices: 12 jobs, each a valid run, each
    an sbatch script asking for one task per device on every node."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.utils import instantiate
    from submitit.slurm.slurm import SlurmExecutor, _make_sbatch_string

    from cpt.config.schema import parse as parse_cfg

    base = ["hydra/launcher=submitit_slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"]
    sweep = OverridesParser.create().parse_overrides(["warmup=0,0.005,0.01,0.02", "lr.max=1.5e-4,3e-4,6e-4"])
    jobs = [job for batch in BasicSweeper.split_arguments(sweep, None) for job in batch]
    assert len(jobs) == 12
    equivalent = SlurmExecutor._equivalence_dict()
    seen = set()
    for job in jobs:
        dc = compose(base + job)
        cfg = parse_cfg(dc)
        seen.add((cfg.warmup, cfg.lr.max))
        launcher = instantiate(dc.hydra.launcher)
        assert type(launcher).__name__ == "SlurmLauncher"
        p = {equivalent.get(k, k): v for k, v in launcher.params.items()
             if v is not None and k not in ("submitit_folder", "max_num_timeout", "array_parallelism")}
        sbatch = _make_sbatch_string("python -u -m submitit.core._submit x", "/tmp/submitit", **p)
        for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --time=1440"):
            assert line in sbatch
    assert len(seen) == 12


def test_joblib_launcher_and_tracking_server_compose():
    dc = compose(["hydra/launcher=joblib", "tracking=server", "tracking.uri=http://mlflow-host:5000"])
    assert dc.hydra.launcher._target_.endswith("JoblibLauncher") and dc.hydra.launcher.n_jobs == 2
    assert parse(["tracking=server", "tracking.uri=http://mlflow-host:5000"]).tracking.uri == "http://mlflow-host:5000"


@pytest.mark.slow
def test_submitit_local_sweep_shares_one_prefix_across_processes(out):
    """Two jobs started at once as separate processes on a fresh MLflow store: one trains stage 0
    under the prefix lock, the other waits on it and reuses the entry."""
    short = [f"shift.datasets.{i}.tokens={8 * 512}" for i in (0, 1)]  # 8 steps a stage: the processes are the point
    res = run_cli(["-m", "hydra/launcher=submitit_local", "lr.max=1e-4,2e-4", *TINY, *short, f"paths.output_dir={out}"],
                  timeout=400)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    logs = [p.read_text() for p in sorted(out.glob("multirun/*/.submitit/*/*_0_log.out"))]
    assert len(logs) == 2
    assert sum("training prefix" in log for log in logs) == 1
    assert sum("cached prefix" in log for log in logs) == 1
    c = MlflowClient(tracking_uri=f"sqlite:///{out}/mlflow.db")
    exp = c.get_experiment_by_name("cpt")
    kinds = [r.data.tags["cpt.kind"] for r in c.search_runs([exp.experiment_id])]
    assert sorted(k for k in kinds if k in ("prefix", "run")) == ["prefix", "run", "run"]  # (+ the sweep's parent)
    # The job that reused stage 0 started before stage 0 was finished: it waited on the lock.
    started = {log: datetime.strptime(re.search(r"INFO \((.*?)\) - Starting", log).group(1), "%Y-%m-%d %H:%M:%S,%f")
               for log in logs}
    reuser = next(log for log in logs if "cached prefix" in log)
    prefix = c.search_runs([exp.experiment_id], "tags.`cpt.kind` = 'prefix'")[0]
    assert started[reuser].timestamp() * 1000 < prefix.info.end_time


@pytest.mark.slow
def test_joblib_sweep_shares_one_prefix_across_parallel_workers(out):
    """`-m hydra/launcher=joblib`: two jobs at once in joblib's worker processes, one SQLite store.
    Stage 0 is trained once; the other job waits on its lock and reuses it; both finish, each in
    its own Hydra job directory, with its final metrics in the store and in the sweep's table."""
    short = [f"shift.datasets.{i}.tokens={8 * 512}" for i in (0, 1)]
    res = run_cli(["-m", "hydra/launcher=joblib", "lr.max=1e-4,2e-4", *TINY, *short, f"paths.output_dir={out}"],
                  timeout=400)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    said = res.stdout + res.stderr
    assert "Joblib.Parallel(n_jobs=2" in said and "is validated against ConfigStore schema" not in said
    assert res.stdout.count("training prefix") == 1 and res.stdout.count("cached prefix") == 1
    (sweep,) = out.glob("multirun/*")
    c = MlflowClient(tracking_uri=f"sqlite:///{out}/mlflow.db")
    exp = c.get_experiment_by_name("cpt")
    (prefix,) = c.search_runs([exp.experiment_id], "tags.`cpt.kind` = 'prefix'")
    runs = c.search_runs([exp.experiment_id], "tags.`cpt.kind` = 'run'")
    assert sorted(float(r.data.params["lr.max"]) for r in runs) == [1e-4, 2e-4]
    assert sorted(r.data.tags["cpt.prefix_cached"] for r in runs) == ["False", "True"]  # one trained, one reused
    for r in runs:
        assert r.info.status == "FINISHED" and r.data.tags["cpt.prefix_run_id"] == prefix.info.run_id
        assert r.data.tags["cpt.sweep_id"] == sweep.name
        m = r.data.metrics
        assert {"final/syn-en-a/loss", "final/syn-en-b/loss", "final/avg_loss", "forgetting", "adaptation"} <= m.keys()
        # what the job printed and the sweep's table are the store's numbers
        assert f"upstream / downstream / avg  {m['final/upstream_loss']:.4f} / {m['final/downstream_loss']:.4f}" \
               f" / {m['final/avg_loss']:.4f}" in res.stdout
    assert f"sweep {sweep.name}: 2 finished runs" in res.stdout
    # Each job wrote its own Hydra job directory; the one that reused stage 0 had started before
    # stage 0 was finished: the jobs ran at once and it waited on the lock.
    jobs = {float(yaml.safe_load((d / ".hydra/overrides.yaml").read_text())[0].split("=")[1]): d
            for d in (sweep / "0", sweep / "1")}
    assert sorted(jobs) == [1e-4, 2e-4]
    reuser = next(r for r in runs if r.data.tags["cpt.prefix_cached"] == "True")
    started = (jobs[float(reuser.data.params["lr.max"])] / ".hydra/overrides.yaml").stat().st_mtime
    assert started * 1000 < prefix.info.end_time


def test_cli_help_does_not_import_lightning_or_torch():
    code = ("import sys\nfrom cpt.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('IMPORTED', [m for m in ('lightning', 'torch', 'mlflow', 'transformers') if m in sys.modules])")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.stdout.strip().splitlines()[-1] == "IMPORTED []", res.stdout + res.stderr


@pytest.mark.slow
def _four_step_losses(out, option: str) -> dict[bool, list[float]]:
    """train/loss of 4 steps of stage 0 with trainer.<option> off and on, from the same weights."""
    import dataclasses

    import torch

    from cpt.data.prepare import prepare
    from cpt.model.spec import build_model
    from cpt.plan.stages import build_plan
    from cpt.train.trainer import train_stage

    cfg = parse(TINY, out)
    data = prepare(cfg)
    stage = dataclasses.replace(build_plan(cfg)[0], steps=4, tokens=4 * 512)
    losses = {}
    for on in (False, True):
        setattr(cfg.trainer, option, on)
        torch.manual_seed(0)
        model = build_model(cfg.model, cfg.model.padded_vocab(data.vocab_size))
        got = losses[on] = []
        train_stage(cfg, stage, model, data, lambda m, _: got.append(m["train/loss"]) if "train/loss" in m else None,
                    0, "test")
        assert not model.is_gradient_checkpointing  # switched off again for whoever uses the model next
        if option == "compile":  # nn.Module.compile() in place: the body's calls go through the compiled one
            assert (model.base_model._compiled_call_impl is not None) == on
    assert len(losses[True]) == 4
    return losses


def test_activation_checkpointing_keeps_the_losses(out):
    """Recomputing activations in backward changes memory, not arithmetic."""
    losses = _four_step_losses(out, "activation_checkpointing")
    assert losses[True] == pytest.approx(losses[False], rel=1e-6)


@pytest.mark.slow
def test_compile_keeps_the_losses(out):
    """trainer.compile compiles the model's body (the fused loss calls body and output layer
    apart, cpt/train/loss.py); inductor's fused kernels round differently, hence 1e-4."""
    losses = _four_step_losses(out, "compile")
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
