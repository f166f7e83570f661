"""What the MLflow UI shows, read back from a real SQLite store after real Hydra multiruns (in
this process, through run.py's task, sweeper and callbacks): the experiment's kind, each run's
datasets as inputs, a sweep as one parent run with its children, short run names, the plan as
the description; a run reused by a later sweep keeps its parent and joins that sweep's report."""

from __future__ import annotations

import json
import shutil

import pytest
from mlflow.tracking import MlflowClient

from conftest import TINY, hydra_multirun, run_cli

pytestmark = pytest.mark.slow

STEPS = 4  # a stage: the store, not the training, is tested
SHORT = [o for o in TINY if not o.startswith(("shift.datasets.0.tokens", "shift.datasets.1.tokens"))] + [
    f"shift.datasets.{i}.tokens={STEPS * 512}" for i in (0, 1)]


@pytest.fixture(scope="module")
def store(tmp_path_factory, prepared_root):
    """Two sweeps into one store whose experiment predates cpt's kind tag: `first` trains stage 0
    and two points; `second` re-runs one of them (skipped) and trains one more."""
    out = tmp_path_factory.mktemp("ui") / "outputs"
    for sub in ("data", "tokenizers"):
        shutil.copytree(prepared_root / sub, out / sub)
    c = MlflowClient(f"sqlite:///{out}/mlflow.db")
    c.create_experiment("cpt", artifact_location=(out / "mlartifacts").as_uri())  # made by hand: no kind
    for sweep, grid in (("first", "1e-4,2e-4"), ("second", "2e-4,4e-4")):
        hydra_multirun(["-m", f"lr.max={grid}", *SHORT, f"paths.output_dir={out}",
                        f"hydra.sweep.dir={out}/multirun/{sweep}"])
    exp = c.get_experiment_by_name("cpt")
    every = c.search_runs([exp.experiment_id])
    sweeps = {r.data.tags["cpt.sweep_id"]: r for r in every if r.data.tags["cpt.kind"] == "sweep"}
    runs = {r.info.run_name: r for r in every if r.data.tags["cpt.kind"] != "sweep"}  # by name
    assert len(runs) + len(sweeps) == len(every)
    return out, c, exp, runs, sweeps


def test_the_experiment_opens_on_its_runs(store):
    exp = store[2]
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def test_each_sweep_is_one_parent_run_of_its_jobs_and_of_the_prefix_it_trained(store):
    _, c, _, runs, sweeps = store
    assert set(sweeps) == {"first", "second"} and not [r for r in runs.values() if r.data.tags["cpt.kind"] == "report"]
    first, second = sweeps["first"], sweeps["second"]
    assert first.info.run_name == second.info.run_name == "sweep lr.max"
    assert {first.info.status, second.info.status} == {"FINISHED"}
    assert {"report.md", "sweep_table.txt", "curves.png"} <= {a.path for a in c.list_artifacts(first.info.run_id)}
    parent = {name: r.data.tags.get("mlflow.parentRunId") for name, r in runs.items()}
    (prefix,) = [n for n in runs if n.startswith("prefix-")]
    assert parent == {prefix: first.info.run_id, "lr.max=1e-4": first.info.run_id, "lr.max=2e-4": first.info.run_id,
                      "lr.max=4e-4": second.info.run_id}
    # reused by the second sweep: one parent still, both sweeps in the list
    ids = {name: r.data.tags["cpt.sweep_ids"] for name, r in runs.items()}
    assert ids == {prefix: "first,second", "lr.max=1e-4": "first", "lr.max=2e-4": "first,second",
                   "lr.max=4e-4": "second"}
    assert runs["lr.max=2e-4"].data.tags["cpt.sweep_id"] == "first"  # not re-tagged away from its sweep


def test_every_report_selects_by_the_list(store):
    from cpt.config.schema import Tracking
    from cpt.sweep.table import sweep_rows

    out = store[0]
    tracking = Tracking(f"sqlite:///{out}/mlflow.db", "cpt", str(out / "mlartifacts"))
    got = {s: sorted(r["lr.max"] for r in sweep_rows(tracking, s)[1]) for s in ("first", "second")}
    assert got == {"first": ["0.0001", "0.0002"], "second": ["0.0002", "0.0004"]}
    for sweep, points in got.items():
        with open(out / "reports" / sweep / "runs.csv") as f:
            assert len(f.read().strip().splitlines()) == 1 + len(points)


def test_runs_log_their_datasets_as_inputs(store):
    out, runs = store[0], store[3]

    def contexts(run):
        got = {}
        for d in run.inputs.dataset_inputs:  # source and digest: the shard's manifest and key
            manifest = json.loads((out / "data" / f"{d.dataset.name}-{d.dataset.digest}" / "manifest.json").read_text())
            assert json.loads(d.dataset.source) == manifest["source"] and d.dataset.source_type == "synthetic"
            got[d.dataset.name] = [t.value for t in d.tags if t.key == "mlflow.data.context"]
        return got

    (prefix,) = [r for n, r in runs.items() if n.startswith("prefix-")]
    assert contexts(prefix) == {"syn-en-a": ["training"], "syn-en-b": ["validation"]}
    assert contexts(runs["lr.max=1e-4"]) == {"syn-en-a": ["validation"], "syn-en-b": ["training"]}


def test_names_are_short_and_the_description_is_the_plan(store):
    _, c, exp, runs, sweeps = store
    run = runs["lr.max=4e-4"]
    assert all(len(r.info.run_name) <= 60 for r in [*runs.values(), *sweeps.values()])
    assert run.data.tags["cpt.overrides"].split() == ["lr.max=0.0004", *SHORT, f"paths.output_dir={store[0]}"]
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith("plan: model=tiny") and "stage 1 syn-en-b: 4 steps" in note
    assert "[cached" in note.splitlines()[3]  # stage 0 was cached when this run started
    found = c.search_runs([exp.experiment_id], "datasets.name = 'syn-en-b'")  # runs filter by dataset
    assert sorted(r.info.run_name for r in found) == sorted(runs)  # not the sweeps: they train nothing


def test_a_sweep_whose_job_fails_ends_its_parent_failed(out):
    """The job stops (exit 2) after the sweep's run was made: the run ends FAILED, not RUNNING."""
    res = run_cli(["-m", "model.init=/nonexistent/a,/nonexistent/b", *SHORT, f"paths.output_dir={out}"], timeout=120)
    assert res.returncode == 2 and "model.init=/nonexistent/a: no such directory" in res.stderr
    c = MlflowClient(f"sqlite:///{out}/mlflow.db")
    (sweep,) = c.search_runs([c.get_experiment_by_name("cpt").experiment_id])
    assert sweep.data.tags["cpt.kind"] == "sweep" and sweep.info.run_name == "sweep model.init"
    assert sweep.info.status == "FAILED"


def test_a_sweep_killed_with_sigkill_leaves_no_parent_running(tmp_path):
    """A multirun killed by SIGKILL cannot end its parent; the next sweep on this host finds the
    parent's process gone and ends it KILLED (a live one, this process's, stays RUNNING)."""
    import subprocess

    from cpt.config.schema import Tracking
    from cpt.store.tracking import Tracker

    tracker = Tracker(Tracking(f"sqlite:///{tmp_path}/mlflow.db", "cpt", str(tmp_path / "art")))
    dead = tracker.open_sweep("killed", "sweep killed", {})
    gone = subprocess.Popen(["true"])
    gone.wait()
    tracker.set_tags(dead, {"cpt.pid": str(gone.pid)})  # as if a process that no longer exists opened it
    live = tracker.open_sweep("live", "sweep live", {})
    tracker.open_sweep("next", "sweep next", {})
    status = {r["tags"]["cpt.sweep_id"]: r["status"] for r in tracker.records("tags.`cpt.kind` = 'sweep'")}
    assert status == {"killed": "KILLED", "live": "RUNNING", "next": "RUNNING"}, status
    assert tracker.record(live)["tags"]["cpt.host"]


def test_the_closing_summary_gives_the_address_of_the_runs_page(tmp_path):
    """MLflow 3.17's UI ignores the kind tag (a per-browser GenAI / training switch): the summary
    prints the address that opens the runs page."""
    from cpt.cli.task import _runs_page
    from cpt.config.schema import Tracking
    from cpt.store.tracking import Tracker

    tracking = Tracking(f"sqlite:///{tmp_path}/mlflow.db", "cpt", str(tmp_path / "art"))
    exp = Tracker(tracking).experiment_id
    assert _runs_page(tracking) == [
        f"  then:     http://127.0.0.1:5000/#/experiments/{exp}/runs?workflowType=machine_learning"]
