"""Shared fixtures: compose the *real* config (conf/) and shrink it for tests.

Tiny runs use 4-sequence batches (512 tokens) and budgets of a few dozen steps; the synthetic
data and the BPE are built once per session and copied into each test's output directory, so
every test gets its own MLflow store and prefix cache without paying for data again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

TINY_STEPS = 24
TINY = [
    "batch.tokens=512",
    "batch.micro_sequences=4",
    f"shift.datasets.0.tokens={TINY_STEPS * 512}",
    f"shift.datasets.1.tokens={TINY_STEPS * 512}",
    "shift.datasets.0.val_tokens=1024",
    "shift.datasets.1.val_tokens=1024",
    "eval.interval_steps=8",
    "eval.warmup_interval_steps=2",
    "log_interval_steps=1",
    "warmup=0.1",
    "pretrain.warmup=0.1",
]


def compose(overrides: list[str], output_dir: Path | None = None):
    """The composed DictConfig of `python run.py <overrides>` (with hydra settings)."""
    from cpt.cli.compose import compose as compose_config

    extra = [f"paths.output_dir={output_dir}"] if output_dir else []
    return compose_config(overrides + extra)


def parse(overrides: list[str], output_dir: Path | None = None):
    from cpt.config.schema import parse as parse_cfg

    return parse_cfg(compose(overrides, output_dir))


@pytest.fixture(scope="session")
def prepared_root(tmp_path_factory) -> Path:
    """An output dir whose data/ and tokenizers/ hold the tiny embedded shards of every shift."""
    from cpt.data.prepare import prepare

    root = tmp_path_factory.mktemp("prepared")
    for shift in sorted(p.stem for p in (CONF / "shift").glob("synthetic*.yaml")):
        cfg = parse(TINY + [f"shift={shift}"] + _tiny_budgets(shift), root)
        prepare(cfg)
    return root


def _tiny_budgets(shift: str) -> list[str]:
    """TINY covers datasets 0 and 1; longer chains get the same tiny budgets."""
    import yaml

    n = len(yaml.safe_load((CONF / "shift" / f"{shift}.yaml").read_text())["datasets"])
    return [o for i in range(2, n) for o in (f"shift.datasets.{i}.tokens={TINY_STEPS * 512}",
                                             f"shift.datasets.{i}.val_tokens=1024")]


@pytest.fixture
def out(tmp_path, prepared_root) -> Path:
    """A fresh output dir that already holds the prepared tiny data (copied, not rebuilt)."""
    dst = tmp_path / "outputs"
    for sub in ("data", "tokenizers"):
        shutil.copytree(prepared_root / sub, dst / sub)
    return dst


def run_cli(args: list[str], cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python run.py ...` in a real subprocess (where a process boundary is the point)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def hydra_multirun(args: list[str]) -> str:
    """`python run.py <args>` in this process (Hydra, the sweepers and the callbacks for real);
    returns what it printed."""
    import contextlib
    import io

    import hydra

    from cpt.cli.task import main_guard, task

    main = hydra.main(version_base="1.3", config_path=str(CONF), config_name="config")(task)
    argv, out = sys.argv, io.StringIO()
    sys.argv = ["run.py", *args]
    try:
        with contextlib.redirect_stdout(out):
            main_guard(main, CONF, args)
    finally:
        sys.argv = argv
    return out.getvalue()
