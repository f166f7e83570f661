"""GPU paths (marker `gpu`; skipped without CUDA): bf16-mixed on one GPU, DDP and FSDP on two,
torch.compile, activation checkpointing, perf/mfu from the GPU's peak. Untested on the 2-core
CPU machines this project is developed on (bench/README.md says so)."""

from __future__ import annotations

import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import TINY, run_cli

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")


def metrics_of_run(out) -> dict:
    c = MlflowClient(tracking_uri=f"sqlite:///{out}/mlflow.db")
    run = c.search_runs([c.get_experiment_by_name("cpt").experiment_id], "tags.`cpt.kind` = 'run'")[0]
    return {k: [h.value for h in c.get_metric_history(run.info.run_id, k)] for k in ("train/loss", "perf/mfu")}


@pytest.mark.parametrize("extra", [[], ["trainer.compile=true"], ["trainer.activation_checkpointing=true"]])
def test_one_gpu_bf16(out, extra):
    res = run_cli([*TINY, "trainer=gpu", f"paths.output_dir={out}", *extra], timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    m = metrics_of_run(out)
    assert all(x == x for x in m["train/loss"])  # finite
    assert m["perf/mfu"] and all(0 < x < 1 for x in m["perf/mfu"])


@two_gpus
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_gpus(out, strategy):
    res = run_cli([*TINY, f"trainer={strategy}", "trainer.devices=2", f"paths.output_dir={out}"], timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(metrics_of_run(out)["train/loss"]) > 0
