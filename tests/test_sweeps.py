"""Every shipped sweep (sweeps/*.yaml) composes and expands to the jobs of its figure or table.

Expansion goes through the sweepers' own code without launching anything: the grid sweeper's
`split` (what `GridWithBaselinesSweeper` launches) and the Optuna sweeper's search space. Every
job's config is composed by Hydra and validated by `cpt.config.schema.parse`, as a run would be.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import FloatDistribution

from cpt.config.schema import parse
from hydra_plugins.cpt_grid_sweeper.sweeper import split
from hydra_plugins.cpt_optuna_sweeper.search_space import build_search_space

from conftest import CONF, ROOT

SWEEPS = ROOT / "sweeps"
BASELINES = ["recipe=union", "recipe=scratch", "recipe=upstream-only"]


def _num(v: str):
    try:
        return float(v)  # Hydra writes 1.5e-4 back as 0.00015
    except ValueError:
        return v


def _grid(**axes) -> list[dict]:
    return [{k: _num(v) for k, v in zip(axes, vals)} for vals in itertools.product(*axes.values())]


# sweep -> (points of the grid as {key: value}, baseline labels, group options it needs)
GRIDS = {
    "warmup": (_grid(seed=["0", "1", "2"], warmup=["0", "0.005", "0.01", "0.02"]), [], {}),
    "lr-max": (_grid(**{"lr.max": ["1.5e-4", "3e-4", "6e-4"]}), ["schedule=constant"], {"schedule": "constant"}),
    "warmup-lr-grid": (_grid(warmup=["0", "0.005", "0.01", "0.02"], **{"lr.max": ["1.5e-4", "3e-4", "6e-4"]}),
                       [], {}),
    "replay-weak": (_grid(replay=["0", "0.005", "0.01", "0.05", "0.1", "0.5"]), BASELINES, {"recipe": "union"}),
    "replay-strong": (_grid(replay=["0", "0.01", "0.05", "0.1", "0.25", "0.5"]), BASELINES, {"recipe": "union"}),
    "rewarm-same-data": (_grid(**{"lr.max": ["1.5e-4", "3e-4", "6e-4"]}), ["schedule=constant"],
                         {"schedule": "constant"}),
    "infinite-schedules": (_grid(schedule=["cosine", "infinite-cosine", "infinite-invsqrt"]), [],
                           {"schedule": "infinite-cosine", "shift": "synthetic-3split"}),
    "forecast-warmup-lr": (_grid(warmup=["0", "0.005", "0.01", "0.02"], **{"lr.max": ["1.5e-4", "3e-4", "6e-4"]}),
                           [], {}),  # hydra/sweeper=forecast: the same grid, trained in part
    "merge-vs-replay": (_grid(replay=["0", "0.01", "0.05", "0.1", "0.25", "0.5"]),
                        ["recipe=merge", "ema.decay=0.99 ema.use=true", "ema.decay=0.999 ema.use=true"],
                        {"recipe": "merge"}),
}
OPTUNA = {"optuna-replay": ["final/avg_loss"],
          "optuna-replay-pareto": ["final/upstream_loss", "final/downstream_loss"]}


def _needs(options: dict) -> None:
    """Sweeps of recipes / schedules / shifts from other issues skip until those options exist."""
    missing = [f"{g}={o}" for g, o in options.items() if not (CONF / g / f"{o}.yaml").exists()]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} in conf/")


def _compose(name: str, overrides=(), hydra_cfg: bool = False):
    with initialize_config_dir(config_dir=str(SWEEPS), version_base="1.3"):
        return compose(name, overrides=list(overrides), return_hydra_config=hydra_cfg)


def _jobs(name: str, cli=()) -> list[list[str]]:
    s = _compose(name, hydra_cfg=True).hydra.sweeper
    return split(s.grid, s.params, s.get("baselines", []), list(cli), OverridesParser.create())  # forecast: none


def _point(job: list[str]) -> tuple[dict, str | None]:
    """A job's overrides as {key: value} (numbers as floats), and its baseline label (None for
    a grid point)."""
    kv = dict(o.split("=", 1) for o in job)
    label = kv.pop("++hydra.job.env_set.CPT_BASELINE", None)
    return {k: _num(v) for k, v in kv.items()}, label.strip("'") if label else None


def test_every_shipped_sweep_is_tested():
    assert {p.stem for p in SWEEPS.glob("*.yaml")} == set(GRIDS) | set(OPTUNA)


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_grid_sweep_expands_to_its_figure(name):
    points, baselines, needs = GRIDS[name]
    _needs(needs)
    jobs = _jobs(name)
    assert len(jobs) == len(points) + len(baselines)
    got = [_point(j) for j in jobs]
    assert [kv for kv, label in got if label is None] == points
    assert [label for _, label in got if label is not None] == baselines
    assert [kv for kv, label in got if label is not None] == [_point(b.split())[0] for b in baselines]
    # The first grid point and every baseline compose and pass validation, as launched jobs
    # would (one grid point stands for the rest: they differ only in the swept values, ~0.3 s each).
    for job in [jobs[0]] + jobs[len(points):]:
        cfg = parse(_compose(name, [o for o in job if not o.startswith("++hydra")]))
        assert cfg.dry_run is False and cfg.model.name == "tiny"  # CPU scale by default


def test_baselines_are_crossed_with_seeds_from_the_command_line():
    jobs = [_point(j) for j in _jobs("lr-max", ["seed=0,1"])]
    assert len(jobs) == 2 * 3 + 2
    assert sorted((kv["seed"], label) for kv, label in jobs if label) == [(0, "schedule=constant"),
                                                                         (1, "schedule=constant")]


def test_a_grid_key_on_the_command_line_replaces_its_axis():
    jobs = [_point(j) for j in _jobs("warmup-lr-grid", ["lr.max=1e-3", "model=pythia-14m"])]
    assert len(jobs) == 4
    assert {kv["lr.max"] for kv, _ in jobs} == {1e-3} and {kv["model"] for kv, _ in jobs} == {"pythia-14m"}


PAPERS = ["model=pythia-410m", "shift.tokens=300000000000", "batch.tokens=2260992"]  # 405M, 300B, 1104·2048


@pytest.mark.parametrize("name, shift", [("warmup", "pile-slimpajama"), ("replay-weak", "pile-slimpajama"),
                                         ("replay-strong", "en-de"), ("infinite-schedules", "slimpajama-3split")])
def test_papers_scale_by_overrides(name, shift):
    _needs({"shift": shift})
    cfg = parse(_compose(name, PAPERS + [f"shift={shift}"]))
    assert cfg.model.n_layer == 24 and cfg.model.d_model == 1024 and cfg.tokenizer == "gpt-neox-20b"
    assert cfg.shift.name == shift and {d.tokens for d in cfg.shift.datasets} == {300_000_000_000}


@pytest.mark.parametrize("name", sorted(OPTUNA))
def test_optuna_sweep_searches_replay_with_a_persistent_study(name):
    dc = _compose(name, ["paths.output_dir=/data/out"], hydra_cfg=True)
    s = dc.hydra.sweeper
    assert s._target_.endswith("OptunaSweeper")
    assert s.storage == "sqlite:////data/out/optuna.db" and s.study_name
    assert dc.hydra.sweep.dir == f"/data/out/multirun/{s.study_name}"  # the report covers the whole study
    space = build_search_space(s.params, [], OverridesParser.create())
    assert space.distributions == {"replay": FloatDistribution(0.0, 0.5)}
    extra = build_search_space(s.params, ["lr.max=tag(log, interval(1e-4, 1e-3))"], OverridesParser.create())
    assert extra.distributions["lr.max"] == FloatDistribution(1e-4, 1e-3, log=True)
    objective = OPTUNA[name]
    directions = [s.direction] if isinstance(s.direction, str) else list(s.direction)
    assert directions == ["minimize"] * len(objective)
    cfg = parse(_compose(name, ["replay=0.25"]))
    assert (cfg.objective if isinstance(cfg.objective, list) else [cfg.objective]) == objective


def test_sweeps_find_conf_through_their_search_path():
    assert "file://conf" in list(_compose("warmup", hydra_cfg=True).hydra.searchpath)
    assert Path(ROOT / "conf").is_dir()


def test_grid_sweeper_rejects_what_it_cannot_enumerate():
    parser = OverridesParser.create()
    with pytest.raises(ValueError, match="replay: the grid sweeper takes lists"):
        split({"replay": "interval(0, 0.5)"}, {}, [], [], parser)
    with pytest.raises(ValueError, match="hydra.sweeper.baselines"):
        split({"replay": "0,0.1"}, {}, [{"recipe": "union"}], [], parser)
    # a baseline given as a list of overrides keeps them together, in one job
    jobs = split({"replay": "0,0.1"}, {}, [["schedule=constant", "lr.max=3e-4"]], [], parser)
    assert jobs[-1] == ["schedule=constant", "lr.max=3e-4",
                        "++hydra.job.env_set.CPT_BASELINE='schedule=constant lr.max=3e-4'"]
