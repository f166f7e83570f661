"""MLflow, and nothing else imports it. Metrics are buffered and sent with `log_batch`
(one `log_metric` costs ~8 ms on SQLite; a batch of 1000 ~0.2 s).

Reliability: a remote server that does not answer fails at start-up with one line (a short
probe, not MLflow's minutes of retries); a busy SQLite store is retried, and metrics stay
buffered until a write succeeds; a resumed stage reopens its run and drops the metrics the
crashed process had already sent, so the run's history holds every step exactly once.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from cpt.config.schema import Tracking
from cpt.errors import UserError
from cpt.store.locks import file_lock
from cpt.store.writable import check_tracking_file, sqlite_file

FLUSH_EVERY = 900  # MLflow accepts at most 1000 metrics per log_batch
PARAMS_PER_BATCH = 100
# SQLite makes a writer wait 20 s for a lock (MLflow sets busy_timeout); beyond that the write
# fails with "database is locked". We retry with backoff 0.5, 1, 2, ... 10 s for up to 10 min.
BUSY_RETRY_S = 600.0
SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "file", "databricks")
IDENTITY_TAG = "cpt.identity.run_key"  # set on a run when it finishes: re-runs of it are skipped
# The MLflow 3 UI opens an experiment without a kind on its GenAI overview; ours are training runs.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
PARENT_TAG = "mlflow.parentRunId"  # the UI nests a run under this one
SWEEP_IDS_TAG = "cpt.sweep_ids"  # every sweep a run belongs to, comma-separated (its parent's first)


def is_busy(error: BaseException) -> bool:
    """A transient lock of the store (SQLite "database is locked" / "busy"), anywhere in the chain."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        text = str(error).lower()
        if "database is locked" in text or "database is busy" in text:
            return True
        error = error.__cause__ or error.__context__
    return False


def retry_busy(call, deadline_s: float = BUSY_RETRY_S, sleep=time.sleep):
    """call(), retried while the store is busy; any other error, or a lock past the deadline, raises."""
    waited, wait = 0.0, 0.5
    while True:
        try:
            return call()
        except Exception as e:
            if not is_busy(e) or waited >= deadline_s:
                raise
        sleep(wait)
        waited += wait
        wait = min(2 * wait, 10.0)


def check_uri(uri: str, timeout_s: float) -> None:
    """Fail with one line, before any work, on a URI MLflow cannot use or a server that is silent."""
    from cpt.net import no_answer

    scheme = uri.split(":", 1)[0].split("+", 1)[0] if ":" in uri else ""
    if scheme not in SCHEMES:
        raise UserError(f"tracking.uri={uri}: allowed sqlite:///<file>, http(s)://<MLflow server>, "
                        "or a database URI (postgresql://, mysql://)")
    if scheme not in ("http", "https"):
        check_tracking_file(uri)  # a directory in the way, a read-only disk, a file that is no database
        return
    reason = no_answer(uri.rstrip("/") + "/health", timeout_s)  # any HTTP answer (even 404): a server
    if reason:
        raise UserError(f"tracking.uri={uri}: no MLflow server answered within {timeout_s:g} s ({reason}); "
                        "allowed: a running server (mlflow server --host 127.0.0.1 --port 5000) or "
                        "sqlite:///<file>") from None


def _quiet():
    """After importing mlflow (its import sets its loggers to INFO): table creation etc. are noise."""
    import logging

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def _sqlite_lock(uri: str):
    db = sqlite_file(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(db.with_name(db.name + ".lock")):
        yield


class Tracker:
    def __init__(self, cfg: Tracking):
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        # With a server, MLflow prints two "View run/experiment at <url>" lines whenever a run
        # ends, amid the progress bars; the run's summary names the run and the server instead.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        from mlflow.tracking import MlflowClient

        _quiet()

        check_uri(cfg.uri, cfg.connect_timeout_s)
        self.uri = cfg.uri
        # Parallel jobs (hydra/launcher=joblib, submitit) open a new SQLite store at once: the
        # first creates its tables and the experiment, the others wait for it (two processes
        # migrating one file fail with "table _alembic_tmp_... already exists").
        with _sqlite_lock(cfg.uri):
            self.client = MlflowClient(tracking_uri=cfg.uri)
            exp = retry_busy(lambda: self.client.get_experiment_by_name(cfg.experiment))
            if exp is None:
                location = None
                if cfg.uri.startswith("sqlite:"):  # keep artifacts under outputs/, not ./mlruns
                    location = Path(cfg.artifact_dir).resolve().as_uri()
                self.experiment_id = retry_busy(lambda: self.client.create_experiment(
                    cfg.experiment, artifact_location=location, tags=dict([EXPERIMENT_KIND])))
            else:
                self.experiment_id = exp.experiment_id
                if EXPERIMENT_KIND[0] not in exp.tags:  # made before cpt set it, or by hand
                    retry_busy(lambda: self.client.set_experiment_tag(self.experiment_id, *EXPERIMENT_KIND))

    def start_run(self, name: str, params: dict, tags: dict) -> "RunLog":
        run = retry_busy(lambda: self.client.create_run(self.experiment_id, run_name=name,
                                                        tags={k: str(v) for k, v in tags.items()}))
        log = RunLog(self.client, run.info.run_id)
        log.log_params(params)
        return log

    def reopen(self, run_id: str, tags: dict) -> "RunLog | None":
        """The run a crashed stage logged to, RUNNING again, or None if this store lacks it.

        Metrics it already holds are not sent again: for each key, steps up to the last one
        logged are dropped (the resumed process recomputes them from an earlier checkpoint).
        """
        from mlflow.exceptions import MlflowException

        try:
            run = retry_busy(lambda: self.client.get_run(run_id))
        except MlflowException:
            return None
        if run.info.lifecycle_stage != "active" or run.info.experiment_id != self.experiment_id:
            return None
        retry_busy(lambda: self.client.update_run(run_id, status="RUNNING"))
        log = RunLog(self.client, run_id)
        for key in run.data.metrics:
            history = retry_busy(lambda: self.client.get_metric_history(run_id, key))
            log.logged_upto[key] = max(m.step for m in history)
        log.set_tags(tags)
        return log

    def finished_run(self, run_key: str):
        """The newest FINISHED run with this identity, or None."""
        runs = retry_busy(lambda: self.client.search_runs(
            [self.experiment_id], f"tags.`{IDENTITY_TAG}` = '{run_key}' and attributes.status = 'FINISHED'",
            max_results=1, order_by=["attributes.end_time DESC"]))
        return runs[0] if runs else None

    def finish_if_running(self, run_id: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            if retry_busy(lambda: self.client.get_run(run_id)).info.status == "RUNNING":
                retry_busy(lambda: self.client.set_terminated(run_id, "FINISHED"))
        except MlflowException:
            pass  # not in this store: nothing to close

    def end_stale(self, filter_string: str, alive=None) -> int:
        """Mark KILLED the RUNNING runs matching `filter_string`: runs of a process that was
        killed (SIGKILL, a node lost) before it could end them. Only a caller that holds the lock
        of the work they belong to may call it (nobody else can be running them), or one whose
        `alive(run)` says which are still someone's. Returns how many."""
        found = retry_busy(lambda: self.client.search_runs(
            [self.experiment_id], f"{filter_string} and attributes.status = 'RUNNING'"))
        stale = [r for r in found if alive is None or not alive(r)]
        for run in stale:
            retry_busy(lambda: self.client.set_terminated(run.info.run_id, "KILLED"))
        return len(stale)

    def end_dead_sweeps(self) -> int:
        """Mark KILLED the RUNNING sweep parents of this host whose process is gone: a multirun
        killed with SIGKILL cannot end its own parent (atexit does not run). Another host's
        sweeps are left alone (their process cannot be checked from here)."""
        return self.end_stale(f"tags.`cpt.kind` = 'sweep' and tags.`cpt.host` = '{socket.gethostname()}'",
                              alive=lambda run: _alive(int(run.data.tags.get("cpt.pid", "0"))))

    def set_tags(self, run_id: str, tags: dict) -> None:
        RunLog(self.client, run_id).set_tags(tags)

    # -- sweeps: one parent run per multirun (cpt.kind=sweep), found by its sweep id

    def sweep_parent(self, sweep_id: str) -> dict | None:
        """The parent run of sweep `sweep_id` as a plain dict, or None (no sweep, or none made)."""
        if not sweep_id:
            return None
        found = retry_busy(lambda: self.records(f"tags.`cpt.kind` = 'sweep' and tags.`cpt.sweep_id` = '{sweep_id}'"))
        return found[0] if found else None

    def open_sweep(self, sweep_id: str, name: str, tags: dict) -> str:
        """The RUNNING parent run of sweep `sweep_id`: made now, or reopened (a sweep dir run again,
        e.g. an Optuna study that adds trials); returns its id. Before that, the parents of
        sweeps whose process died (kill -9) are ended KILLED (`end_dead_sweeps`)."""
        self.end_dead_sweeps()
        tags = {**tags, "cpt.kind": "sweep", "cpt.sweep_id": sweep_id, SWEEP_IDS_TAG: sweep_id,
                "cpt.host": socket.gethostname(), "cpt.pid": str(os.getpid())}
        found = self.sweep_parent(sweep_id)
        if found is None:
            return self.start_run(name, {}, tags).run_id
        retry_busy(lambda: self.client.update_run(found["run_id"], status="RUNNING", name=name))
        self.set_tags(found["run_id"], tags)
        return found["run_id"]

    def end_run(self, run_id: str, status: str) -> None:
        retry_busy(lambda: self.client.set_terminated(run_id, status))

    def join_sweep(self, run_id: str, sweep_id: str) -> None:
        """Run `run_id` (a finished run skipped, a cached prefix reused, a stage resumed) belongs to
        sweep `sweep_id` too: the id joins the run's list; its parent (a run has one) stays."""
        if not sweep_id:
            return
        db = sqlite_file(self.uri)
        # Read, add, write: two sweeps joining one run at once (parallel jobs reusing a prefix)
        # would each write its own list and lose the other's id, so a SQLite store is locked for
        # it (a server's store cannot be locked from here: the race remains there).
        with file_lock(db.with_name(db.name + ".sweep_ids.lock")) if db else contextlib.nullcontext():
            record = self.record(run_id)
            if record is None:
                return
            tags = record["tags"]
            ids = [i for i in tags.get(SWEEP_IDS_TAG, tags.get("cpt.sweep_id", "")).split(",") if i]
            if sweep_id not in ids:
                self.set_tags(run_id, {SWEEP_IDS_TAG: ",".join(ids + [sweep_id])})

    def sweep_records(self, sweep_id: str, kind: str = "run") -> list[dict]:
        """The runs of `kind` that belong to sweep `sweep_id` (its id in their list; runs logged
        before the list existed: their cpt.sweep_id), oldest first."""
        kind_filter = f"tags.`cpt.kind` = '{kind}'"
        found = {r["run_id"]: r for f in (f"tags.`{SWEEP_IDS_TAG}` LIKE '%{sweep_id}%'",
                                          f"tags.`cpt.sweep_id` = '{sweep_id}'")
                 for r in self.records(f"{f} and {kind_filter}")}
        return sorted((r for r in found.values() if in_sweep(r["tags"], sweep_id)),
                      key=lambda r: r["start_time"] or 0)

    def runs(self, filter_string: str) -> list:
        return self.client.search_runs([self.experiment_id], filter_string, max_results=10_000)

    # -- reading back, for reports: plain dicts and lists, so no caller touches mlflow types

    def records(self, filter_string: str) -> list[dict]:
        """The runs matching `filter_string`, oldest first, as plain dicts (see `_record`)."""
        return sorted((_record(r) for r in self.runs(filter_string)), key=lambda r: r["start_time"] or 0)

    def has_experiment(self, name: str) -> bool:
        return self.client.get_experiment_by_name(name) is not None

    def record(self, run_id: str) -> dict | None:
        """One run as a plain dict, or None if the store no longer has it."""
        from mlflow.exceptions import MlflowException

        try:
            return _record(self.client.get_run(run_id))
        except MlflowException:
            return None

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """Every logged (step, value) of one metric, by step (steps are tokens since the chain began)."""
        return sorted((m.step, m.value) for m in self.client.get_metric_history(run_id, key))

    def tag_values(self, tag: str) -> list[str]:
        """The distinct values of a tag over this experiment's runs (e.g. every sweep id)."""
        return sorted({r["tags"][tag] for r in self.records("") if r["tags"].get(tag)})

    def publish(self, name: str, folder: Path, tags: dict, more_tags: dict | None = None) -> str:
        """Log every file of `folder` as artifacts of the run tagged `tags` (a sweep's parent, or
        one made now, named `name`, FINISHED); returns its run id. An existing run keeps its status:
        a sweep's parent is ended by the sweep."""
        found = self.records(" and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items()))
        run_id = found[0]["run_id"] if found else None
        if run_id is None:
            run_id = self.client.create_run(self.experiment_id, run_name=name,
                                            tags={k: str(v) for k, v in tags.items()}).info.run_id
        self.set_tags(run_id, more_tags or {})
        self.client.log_artifacts(run_id, str(folder))
        if not found:
            self.client.set_terminated(run_id, "FINISHED")
        return run_id

    def artifacts(self, run_id: str) -> list[str]:
        return [a.path for a in self.client.list_artifacts(run_id)]


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def in_sweep(tags: dict, sweep_id: str) -> bool:
    """Does a run with these tags belong to sweep `sweep_id`? (the one rule reports select by)"""
    return sweep_id in tags.get(SWEEP_IDS_TAG, "").split(",") or tags.get("cpt.sweep_id") == sweep_id


def _record(run) -> dict:
    info = run.info
    return {"run_id": info.run_id, "name": info.run_name, "status": info.status, "start_time": info.start_time,
            "params": dict(run.data.params), "tags": dict(run.data.tags), "metrics": dict(run.data.metrics)}


def store_exists(cfg: Tracking) -> bool:
    """False for a SQLite URI whose file is missing (reading it would create an empty store)."""
    db = sqlite_file(cfg.uri)
    return db is None or db.exists()


class RunLog:
    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id
        self._pending: list = []
        self.logged_upto: dict[str, int] = {}  # key -> last step the store holds (a reopened run)

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), PARAMS_PER_BATCH):
            chunk = items[i:i + PARAMS_PER_BATCH]
            retry_busy(lambda: self.client.log_batch(self.run_id, params=chunk))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), ts, int(step)) for k, v in metrics.items()
                             if step > self.logged_upto.get(k, -1))
        if len(self._pending) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        while self._pending:
            chunk = self._pending[:FLUSH_EVERY]
            retry_busy(lambda: self.client.log_batch(self.run_id, metrics=chunk))
            del self._pending[:len(chunk)]  # only once the store has them

    def set_tags(self, tags: dict) -> None:
        from mlflow.entities import RunTag

        if tags:
            retry_busy(lambda: self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()]))

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def log_inputs(self, inputs: list[dict]) -> None:
        """The run's datasets as MLflow inputs (the UI's Dataset column; search `datasets.name`):
        dicts of name, digest, source_type, source, profile and context (training / validation / replay)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        items = [DatasetInput(Dataset(d["name"], d["digest"], d["source_type"], d["source"], profile=d.get("profile")),
                              [InputTag("mlflow.data.context", d["context"])]) for d in inputs]
        if items:
            retry_busy(lambda: self.client.log_inputs(self.run_id, items))

    def log_pipeline(self, model_dir: Path, example: str) -> str:
        """The Hugging Face directory `model_dir` as this run's MLflow model `model` (transformers
        flavour, a text-generation pipeline: `mlflow.transformers.load_model("runs:/<id>/model")`)."""
        import logging
        from importlib.metadata import version

        import mlflow
        import transformers

        logging.getLogger("mlflow.transformers").setLevel(logging.ERROR)  # no model card / license: a local model
        pipe = transformers.pipeline("text-generation", model=str(model_dir), tokenizer=str(model_dir))
        # Named, not inferred: inferring loads the model again in a subprocess (~10 s) and probes
        # packages the model does not use; the local version label (+cpu) is not on PyPI.
        requirements = [f"{p}=={version(p).split('+')[0]}" for p in ("mlflow", "torch", "transformers", "tokenizers")]
        before = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.client.tracking_uri)
        try:  # log_model wants an active run; leaving it marks the run FINISHED, `end` decides after
            with mlflow.start_run(run_id=self.run_id):
                mlflow.transformers.log_model(pipe, name="model", task="text-generation", input_example=example,
                                              model_config={"max_new_tokens": 16}, pip_requirements=requirements)
        finally:
            mlflow.set_tracking_uri(before)
        return f"runs:/{self.run_id}/model"

    def end(self, status: str = "FINISHED") -> None:
        self.flush()
        retry_busy(lambda: self.client.set_terminated(self.run_id, status))


class NullTracker:
    """What ranks other than 0 log to: nothing (rank 0 holds the same numbers and decides)."""

    uri = experiment_id = None

    def start_run(self, name: str, params: dict, tags: dict) -> "NullLog":
        return NullLog()

    def reopen(self, run_id: str, tags: dict) -> "NullLog":
        return NullLog()

    def finished_run(self, run_key: str):
        return None

    def finish_if_running(self, run_id: str) -> None: ...
    def end_stale(self, filter_string: str) -> int: return 0
    def set_tags(self, run_id: str, tags: dict) -> None: ...
    def sweep_parent(self, sweep_id: str) -> None: return None
    def join_sweep(self, run_id: str, sweep_id: str) -> None: ...


class NullLog:
    run_id = ""

    def log_params(self, params: dict) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def flush(self) -> None: ...
    def set_tags(self, tags: dict) -> None: ...
    def log_text(self, text: str, name: str) -> None: ...
    def log_inputs(self, inputs: list[dict]) -> None: ...
    def end(self, status: str = "FINISHED") -> None: ...


def flatten(d, prefix: str = "") -> dict:
    """{'lr': {'max': 3e-4}} -> {'lr.max': 3e-4}; lists by index: shift.datasets.0.name."""
    out = {}
    items = d.items() if isinstance(d, dict) else enumerate(d)
    for k, v in items:
        key = f"{prefix}{k}"
        if isinstance(v, (dict, list)) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def environment_tags() -> dict:
    import lightning
    import torch

    from cpt import __version__

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = ""
    return {"cpt.git_commit": commit or "unknown", "cpt.version": __version__,
            "torch.version": torch.__version__, "lightning.version": lightning.__version__}
