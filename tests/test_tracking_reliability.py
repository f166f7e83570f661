"""MLflow under stress: a silent server fails fast, a busy SQLite store loses nothing, a reopened
run takes no metric twice. Real MLflow SQLite stores, real sockets."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time

import pytest

from cpt.config.schema import Tracking
from cpt.errors import UserError
from cpt.store.tracking import RunLog, Tracker, check_uri, is_busy, retry_busy


@pytest.fixture(scope="module")
def tracker(tmp_path_factory) -> Tracker:
    """One store for the module: creating MLflow's tables costs seconds."""
    root = tmp_path_factory.mktemp("store")
    return Tracker(Tracking(uri=f"sqlite:///{root}/mlflow.db", experiment="t", artifact_dir=str(root / "art")))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_server_is_one_line_before_any_work():
    uri = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(UserError) as e:
        Tracker(Tracking(uri=uri, connect_timeout_s=2))
    msg = str(e.value)
    assert msg.startswith(f"tracking.uri={uri}: no MLflow server answered within 2 s") and "allowed" in msg


def test_silent_server_times_out_quickly():
    with socket.socket() as listener:  # accepts connections (kernel backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
        t0 = time.monotonic()
        with pytest.raises(UserError) as e:
            check_uri(uri, 0.5)
        assert time.monotonic() - t0 < 5 and "within 0.5 s" in str(e.value)


def test_any_http_answer_counts_as_a_server():
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        check_uri(f"http://127.0.0.1:{server.server_port}", 2)  # no error
    finally:
        server.shutdown()


@pytest.mark.parametrize("uri", ["ftp://host/x", "outputs/mlruns", "mlflow.db"])
def test_unusable_uri_is_named(uri):
    with pytest.raises(UserError) as e:
        check_uri(uri, 1)
    assert str(e.value).startswith(f"tracking.uri={uri}: allowed sqlite:///")


def _hold_exclusive(db: str, seconds: float, ready: threading.Event):
    con = sqlite3.connect(db, timeout=0, isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")
    ready.set()
    time.sleep(seconds)
    con.execute("COMMIT")
    con.close()


def test_busy_sqlite_store_loses_no_metric(tracker):
    log = tracker.start_run("busy", {}, {})
    ready = threading.Event()
    holder = threading.Thread(target=_hold_exclusive, args=(tracker.uri[len("sqlite:///"):], 1.0, ready))
    holder.start()
    ready.wait()
    t0 = time.monotonic()
    for step in range(1500):  # > one log_batch (900): two writes against the locked store
        log.log_metrics({"train/loss": float(step)}, step)
    log.end("FINISHED")
    holder.join()
    assert time.monotonic() - t0 >= 0.5  # it did wait for the lock
    hist = tracker.client.get_metric_history(log.run_id, "train/loss")
    assert sorted(h.step for h in hist) == list(range(1500))


def test_retry_outlasts_a_lock_that_sqlite_itself_gives_up_on(tmp_path):
    """A writer with no busy timeout fails at once with "database is locked"; retry_busy waits."""
    db = str(tmp_path / "x.db")
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.commit()
    ready = threading.Event()
    holder = threading.Thread(target=_hold_exclusive, args=(db, 0.8, ready))
    holder.start()
    ready.wait()
    tries = []

    def write():
        tries.append(1)
        con = sqlite3.connect(db, timeout=0)
        with con:
            con.execute("INSERT INTO t VALUES (1)")
        con.close()

    retry_busy(write)
    holder.join()
    assert len(tries) >= 2 and sqlite3.connect(db).execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_retry_gives_up_on_other_errors_and_after_the_deadline():
    calls = []

    def broken():
        calls.append(1)
        raise ValueError("not a lock")

    with pytest.raises(ValueError):
        retry_busy(broken)
    assert len(calls) == 1
    waits = []

    def locked():
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError):
        retry_busy(locked, deadline_s=20, sleep=waits.append)
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0] and sum(waits[:-1]) < 20 <= sum(waits)
    wrapped = RuntimeError("log_batch failed")
    wrapped.__cause__ = sqlite3.OperationalError("database is locked")
    assert is_busy(wrapped) and not is_busy(RuntimeError("disk full"))


class FlakyClient:
    """The real MlflowClient, whose first `fail` log_batch calls hit a locked store."""

    def __init__(self, client, fail: int):
        self.client, self.fail = client, fail

    def log_batch(self, *args, **kw):
        if self.fail:
            self.fail -= 1
            raise sqlite3.OperationalError("database is locked")
        return self.client.log_batch(*args, **kw)

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_metrics_stay_buffered_until_a_write_succeeds(tracker):
    run_id = tracker.start_run("flaky", {}, {}).run_id
    log = RunLog(FlakyClient(tracker.client, fail=2), run_id)
    log.log_metrics({"a": 1.0, "b": 2.0}, 7)
    log.flush()
    assert {k: v for k, v in tracker.client.get_run(run_id).data.metrics.items()} == {"a": 1.0, "b": 2.0}


def test_reopened_run_takes_no_step_twice(tracker):
    log = tracker.start_run("crashy", {}, {})
    for step in range(10):
        log.log_metrics({"train/loss": float(step)}, step)
    log.flush()  # then the process dies; the new one resumes from step 6
    again = tracker.reopen(log.run_id, {"cpt.resumed_from_step": 6})
    assert again.run_id == log.run_id and again.logged_upto == {"train/loss": 9}
    for step in range(6, 14):
        again.log_metrics({"train/loss": float(step)}, step)
    again.end("FINISHED")
    run = tracker.client.get_run(log.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["cpt.resumed_from_step"] == "6"
    assert sorted(h.step for h in tracker.client.get_metric_history(log.run_id, "train/loss")) == list(range(14))
    assert tracker.reopen("0" * 32, {}) is None  # not in this store: a new run is started instead
