"""MLflow, and nothing else imports it. Metrics are buffered and sent with `log_batch`
(one `log_metric` costs ~8 ms on SQLite; a batch of 1000 ~0.2 s)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from cpt.config import Tracking

FLUSH_EVERY = 900  # MLflow accepts at most 1000 metrics per log_batch
PARAMS_PER_BATCH = 100


def _quiet():
    """After importing mlflow (its import sets its loggers to INFO): table creation etc. are noise."""
    import logging

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Tracker:
    def __init__(self, cfg: Tracking):
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        from mlflow.tracking import MlflowClient

        _quiet()

        if cfg.uri.startswith("sqlite:///"):
            Path(cfg.uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.uri = cfg.uri
        self.client = MlflowClient(tracking_uri=cfg.uri)
        exp = self.client.get_experiment_by_name(cfg.experiment)
        if exp is None:
            location = None
            if cfg.uri.startswith("sqlite:"):  # keep artifacts under outputs/, not ./mlruns
                location = Path(cfg.artifact_dir).resolve().as_uri()
            self.experiment_id = self.client.create_experiment(cfg.experiment, artifact_location=location)
        else:
            self.experiment_id = exp.experiment_id

    def start_run(self, name: str, params: dict, tags: dict) -> "RunLog":
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={k: str(v) for k, v in tags.items()})
        log = RunLog(self.client, run.info.run_id)
        log.log_params(params)
        return log

    def runs(self, filter_string: str) -> list:
        return self.client.search_runs([self.experiment_id], filter_string, max_results=10_000)


class RunLog:
    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id
        self._pending: list = []

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[i:i + PARAMS_PER_BATCH])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), ts, int(step)) for k, v in metrics.items())
        if len(self._pending) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        while self._pending:
            chunk, self._pending = self._pending[:FLUSH_EVERY], self._pending[FLUSH_EVERY:]
            self.client.log_batch(self.run_id, metrics=chunk)

    def set_tags(self, tags: dict) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def end(self, status: str = "FINISHED") -> None:
        self.flush()
        self.client.set_terminated(self.run_id, status)


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
