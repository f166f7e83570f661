"""`tracking=server`: a sweep logs to a real MLflow tracking server (started here, one for the
module), and everything arrives there: runs, curves, final metrics, artifacts and the report."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from cpt.cli.main import main as cli_main

from conftest import TINY, run_cli
from test_tracking_reliability import _free_port

STEPS = 8  # per stage: the server is the point, not the training
TOKENS = STEPS * 512


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` on a free local port with a SQLite backend, serving artifacts itself (as a
    shared server does: clients upload through it). Its job runner (7 worker processes) is off."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        start_new_session=True)  # its own process group: the server and its uvicorn go together
    try:
        deadline = time.monotonic() + 120  # ~8 s on an idle 2-core machine
        while True:
            try:
                urllib.request.urlopen(uri + "/health", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("mlflow server did not start:\n" + (root / "server.log").read_text()[-3000:])
                time.sleep(0.25)
        yield SimpleNamespace(uri=uri, artifacts=root / "artifacts")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group is left
        except ProcessLookupError:
            pass
        proc.wait()
        log.close()


@pytest.mark.slow
def test_sweep_logs_everything_to_a_tracking_server(server, out):
    short = [f"shift.datasets.{i}.tokens={TOKENS}" for i in (0, 1)] + ["eval.interval_steps=4", "eval.dense_evals=0"]  # the sparse cadence below
    res = run_cli(["-m", "lr.max=1e-4,2e-4", "tracking=server", f"tracking.uri={server.uri}", *TINY, *short,
                   f"paths.output_dir={out}"], timeout=400)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "View run" not in res.stdout  # MLflow's per-run URL lines stay out of the output
    assert not (out / "mlflow.db").exists() and not (out / "mlartifacts").exists()  # nothing stayed local

    c = MlflowClient(tracking_uri=server.uri)
    exp = c.get_experiment_by_name("cpt")
    kinds = sorted(r.data.tags["cpt.kind"] for r in c.search_runs([exp.experiment_id]))
    assert kinds == ["prefix", "run", "run", "sweep"]  # the sweep's parent run holds its report
    (prefix,) = c.search_runs([exp.experiment_id], "tags.`cpt.kind` = 'prefix'")
    runs = c.search_runs([exp.experiment_id], "tags.`cpt.kind` = 'run'")
    assert sorted(float(r.data.params["lr.max"]) for r in runs) == [1e-4, 2e-4]

    def curve(run, key):
        return {m.step: m.value for m in c.get_metric_history(run.info.run_id, key)}

    # The prefix: its curves on the step axis 0..TOKENS, ending at the numbers its cache entry holds.
    # stage 0's entry (the run's final weights are an entry of their own, keyed by the whole chain)
    (cached,) = [r for r in (json.loads(p.read_text()) for p in (out / "cache").glob("*/result.json"))
                 if r["stage"] == 0]
    assert cached["run_id"] == prefix.info.run_id and prefix.info.status == "FINISHED"
    end_of_stage0 = {}
    for d in ("syn-en-a", "syn-en-b"):
        val = curve(prefix, f"val/{d}/loss")
        assert sorted(val) == [0, 4 * 512, TOKENS]  # before the first step, every 4 steps, after the last
        end_of_stage0[d] = val[TOKENS]
        assert val[TOKENS] == pytest.approx(cached["val"][d], rel=1e-6)
    assert set(curve(prefix, "train/loss")) == {s * 512 for s in range(STEPS)}

    for r in runs:
        assert r.info.status == "FINISHED" and r.data.tags["cpt.prefix_run_id"] == prefix.info.run_id
        m = r.data.metrics
        val = {d: curve(r, f"val/{d}/loss") for d in ("syn-en-a", "syn-en-b")}
        assert val["syn-en-a"].keys() == val["syn-en-b"].keys()
        assert sorted(val["syn-en-a"]) == [TOKENS, TOKENS + 4 * 512, 2 * TOKENS]  # continues the axis
        assert set(curve(r, "train/loss")) == {TOKENS + s * 512 for s in range(STEPS)}  # every step, once
        # the final metrics of docs/metrics.md, consistent with the curves on the server
        for d in val:
            assert m[f"final/{d}/loss"] == pytest.approx(val[d][2 * TOKENS], rel=1e-6)
        assert m["forgetting"] == pytest.approx(m["final/syn-en-a/loss"] - end_of_stage0["syn-en-a"], abs=1e-6)
        assert m["adaptation"] == pytest.approx(val["syn-en-b"][TOKENS] - m["final/syn-en-b/loss"], abs=1e-6)
        assert m["final/avg_loss"] == pytest.approx((m["final/upstream_loss"] + m["final/downstream_loss"]) / 2)
        assert m["compute/tokens"] == TOKENS and m["compute/tokens_with_prefix"] == 2 * TOKENS
        assert f"{m['final/avg_loss']:.4f}" in res.stdout  # the sweep's table, read back from the server
        # The resolved config went up through the server into its artifact store.
        assert [a.path for a in c.list_artifacts(r.info.run_id)] == ["config.yaml"]
        on_server = server.artifacts / exp.experiment_id / r.info.run_id / "artifacts" / "config.yaml"
        assert f"uri: {server.uri}" in on_server.read_text()

    (report,) = c.search_runs([exp.experiment_id], "tags.`cpt.kind` = 'sweep'")
    assert "report.md" in [a.path for a in c.list_artifacts(report.info.run_id)]
    # The command the sweep suggests for the report names the server, and works.
    again = re.search(r"again, or after more runs: +cpt report (.*)", res.stdout).group(1).split()
    assert f"tracking.uri={server.uri}" in again
    assert cli_main(["report", *again]) == 0
    assert len(c.search_runs([exp.experiment_id], "tags.`cpt.kind` = 'sweep'")) == 1  # published again, same run
