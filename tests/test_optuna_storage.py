"""Optuna studies on a real PostgreSQL server (the multi-node storage the README names), and a
storage that cannot be opened as one line.

The server is the machine's own PostgreSQL (Debian's postgresql package: initdb, pg_ctl), a
throw-away cluster in a temporary folder on a free port; as root it runs as the `postgres` user
(PostgreSQL refuses root). Without PostgreSQL binaries the server tests skip, saying so.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import ROOT
from test_optuna_sweeper import TOY_APP, run_toy
from test_tracking_reliability import _free_port


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


@pytest.fixture(scope="module")
def postgres_url():
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    pytest.importorskip("psycopg", reason="the PostgreSQL driver (pip install 'psycopg[binary]', in .[dev])")
    as_user = []
    # Not under pytest's tmp folder: its parents are private to root, and the server's user must reach it.
    root = Path(tempfile.mkdtemp(prefix="cpt-postgres-"))
    if os.geteuid() == 0:  # PostgreSQL will not run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    data, port = root / "data", _free_port()
    subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"], check=True, capture_output=True)
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "start",
                    "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_two_sweeps_at_once_share_one_study_on_postgresql(tmp_path, postgres_url):
    """Two sweeper processes (as on two nodes) add trials to one study in PostgreSQL at the same
    time; a third invocation resumes it."""
    args = [f"hydra.sweeper.storage={postgres_url}", "hydra.sweeper.study_name=shared"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CPT_OPTUNA_", "HYDRA_"))}
    procs = [subprocess.Popen([sys.executable, str(TOY_APP), "-m", f"hydra.sweep.dir={tmp_path / name}", *args],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name in ("node-a", "node-b")]
    for p in procs:
        out = p.communicate(timeout=120)[0]
        assert p.returncode == 0, out[-3000:]
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    assert sorted(t.number for t in study.trials) == list(range(6))  # 3 + 3, numbered by the database
    assert all(t.state == TrialState.COMPLETE for t in study.trials)

    res = run_toy(tmp_path, *args, sweep="again")
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(optuna.load_study(study_name="shared", storage=postgres_url).trials) == 9


@pytest.mark.parametrize("storage, reason", [
    ("postgresql://me:secret@127.0.0.1:{port}/db", "Connection refused"),  # no server there
    ("mysql://me@127.0.0.1:{port}/db", "no driver for this database: No module named 'MySQLdb'"),
])
def test_a_storage_that_cannot_be_opened_is_one_line(tmp_path, storage, reason):
    storage = storage.format(port=_free_port())
    res = subprocess.run([sys.executable, str(ROOT / "run.py"), "-cd", str(ROOT / "sweeps"), "-cn", "optuna-replay",
                          f"hydra.sweeper.storage={storage}", f"paths.output_dir={tmp_path / 'out'}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)  # sweeps/ find conf/ from the root
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: hydra.sweeper.storage=") and reason in lines[0], lines
    assert "secret" not in lines[0]  # the password is masked
    assert not (tmp_path / "out").exists()  # nothing written: no sweep folder, no store
