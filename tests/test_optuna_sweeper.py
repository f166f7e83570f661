"""The in-repo Hydra sweeper plugin on Optuna >= 4 (hydra_plugins/cpt_optuna_sweeper).

End-to-end tests run the toy app in tests/apps/optuna_toy/ in a subprocess (it
imports only hydra + optuna, about a second per sweep); the search-space tests run
in-process against Hydra's own override parser.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

import hydra_plugins.cpt_optuna_sweeper as plugin
from cpt.sweep import optuna_trial
from cpt.sweep.env_names import quoted
from hydra_plugins.cpt_optuna_sweeper.search_space import build_search_space
from hydra_plugins.cpt_optuna_sweeper.study import parse_directions

TOY_APP = Path(__file__).parent / "apps" / "optuna_toy" / "my_app.py"


def run_toy(tmp_path: Path, *overrides: str, sweep: str = "sweep") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CPT_OPTUNA_", "HYDRA_"))}
    return subprocess.run(
        [sys.executable, str(TOY_APP), "-m", f"hydra.sweep.dir={tmp_path / sweep}", *overrides],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def results(tmp_path: Path, sweep: str = "sweep") -> dict:
    return yaml.safe_load((tmp_path / sweep / "optimization_results.yaml").read_text())


# --------------------------------------------------------------------------- plugin wiring


def test_hydra_discovers_the_plugin_and_its_configs():
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    names = [f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Sweeper)]
    assert "hydra_plugins.cpt_optuna_sweeper.sweeper.OptunaSweeper" in names
    store = ConfigStore.instance()
    assert "optuna.yaml" in store.list("hydra/sweeper")
    assert {"tpe.yaml", "random.yaml", "nsga2.yaml", "cmaes.yaml", "grid.yaml"} <= set(
        store.list("hydra/sweeper/sampler")
    )
    # hydra_plugins must stay a namespace package shared with the installed launchers.
    assert not (Path(plugin.__file__).parent.parent / "__init__.py").exists()


# --------------------------------------------------------------------------- search space


def space_of(params: dict, cli: list[str] = ()):
    return build_search_space(params, list(cli), OverridesParser.create())


@pytest.mark.parametrize(
    "value, expected",
    [
        ("interval(0, 0.5)", FloatDistribution(0.0, 0.5)),
        ("tag(log, interval(1e-4, 1e-3))", FloatDistribution(1e-4, 1e-3, log=True)),
        ("tag(int, interval(1, 8))", IntDistribution(1, 8)),
        ("range(1, 10, 2)", IntDistribution(1, 9, step=2)),
        ("tag(log, range(1, 8))", IntDistribution(1, 7, log=True)),
        ("range(0, 1, 0.25)", FloatDistribution(0.0, 0.75, step=0.25)),
        ("choice(a, b)", CategoricalDistribution(["a", "b"])),
        ("0,0.1,0.2", CategoricalDistribution([0, 0.1, 0.2])),
    ],
)
def test_override_grammar_becomes_the_right_distribution(value, expected):
    space = space_of({"p": value})
    assert space.distributions == {"p": expected}
    assert space.fixed == {}


def test_cli_replaces_config_params_and_plain_values_are_fixed():
    space = space_of(
        {"lr": "interval(0, 1)", "replay": "interval(0, 0.5)", "seed": "7"},
        ["replay=choice(0.1, 0.2)", "lr=0.3", "+extra=x"],
    )
    assert space.distributions == {"replay": CategoricalDistribution([0.1, 0.2])}
    assert space.fixed == {"seed": "seed=7", "lr": "lr=0.3", "+extra": "+extra=x"}


def test_sampled_params_map_back_to_overrides_hydra_parses_identically():
    space = space_of({"opt": "choice('x y', 'a,b', [1, 2], true)", "lr": "tag(log, interval(1e-5, 1))"})
    choices = space.distributions["opt"].choices
    parser = OverridesParser.create()
    for choice in choices:
        lines = space.overrides({"opt": choice, "lr": 1.2345678901234e-05})
        parsed = {o.key_or_group: o.value() for o in parser.parse_overrides(lines)}
        assert parsed["lr"] == 1.2345678901234e-05
        assert parsed["opt"] == ([1, 2] if choice == "[1,2]" else choice)


def test_bad_search_space_is_reported():
    with pytest.raises(HydraException, match="unknown tag"):
        space_of({"p": "tag(lgo, interval(1, 2))"})
    with pytest.raises(HydraException, match="log"):
        space_of({"p": "tag(log, choice(1, 2))"})
    with pytest.raises(HydraException, match="grid sampler needs a discrete space"):
        space_of({"p": "interval(0, 1)"}).grid()
    assert space_of({"a": "choice(x, y)", "b": "range(1, 7, 3)"}).grid() == {"a": ["x", "y"], "b": [1, 4]}


@pytest.mark.parametrize("text", ["plain", "it's", "a\\b", "end\\", "x\\'y", "a b,c=d", "true", "123"])
def test_quoted_values_parse_back_unchanged(text):
    assert OverridesParser.create().parse_override("k=" + quoted(text)).value() == text


def test_directions_are_validated():
    assert parse_directions("Maximize") == ["maximize"]
    assert parse_directions(["minimize", "maximize"]) == ["minimize", "maximize"]
    for bad in ("minimise", [], ["minimize", 3], None):
        with pytest.raises(ValueError, match="must be 'minimize' or 'maximize'"):
            parse_directions(bad)


def test_current_trial_reads_the_env_vars_the_sweeper_sets(monkeypatch):
    assert (optuna_trial.STUDY_ENV_VAR, optuna_trial.TRIAL_ENV_VAR) == (plugin.STUDY_ENV_VAR, plugin.TRIAL_ENV_VAR)
    monkeypatch.delenv(plugin.STUDY_ENV_VAR, raising=False)
    monkeypatch.delenv(plugin.TRIAL_ENV_VAR, raising=False)
    assert optuna_trial.current_trial() is None
    monkeypatch.setenv(plugin.STUDY_ENV_VAR, "s")
    monkeypatch.setenv(plugin.TRIAL_ENV_VAR, "4")
    assert optuna_trial.current_trial() == ("s", 4)
    monkeypatch.setenv(plugin.TRIAL_ENV_VAR, "four")
    assert optuna_trial.current_trial() is None


# --------------------------------------------------------------------------- end to end


def test_sweep_writes_results_and_a_stored_study_resumes(tmp_path):
    db = tmp_path / "not" / "yet" / "there" / "optuna.db"  # the folder is created on demand
    storage = f"sqlite:///{db}"
    env_log = tmp_path / "env.jsonl"
    args = [f"hydra.sweeper.storage={storage}", 'hydra.sweeper.study_name="toy it\'s"', f"env_file={env_log}"]

    out = ok(run_toy(tmp_path, *args))
    study = optuna.load_study(study_name="toy it's", storage=storage)
    assert len(study.trials) == 3 and all(t.state == TrialState.COMPLETE for t in study.trials)
    res = results(tmp_path)
    assert res["best_value"] == pytest.approx(study.best_value)
    assert res["best_params"] == study.best_params and set(res["best_params"]) == {"x", "y", "opt"}
    assert -2 <= res["best_params"]["x"] <= 2 and res["best_params"]["opt"] in ("sgd", "adam")
    assert sum("COMPLETE values=" in line for line in out.splitlines()) == 3  # one log line per trial

    ok(run_toy(tmp_path, *args))  # same command again: 3 more trials in the same study
    study = optuna.load_study(study_name="toy it's", storage=storage)
    assert [t.number for t in study.trials] == list(range(6))
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert results(tmp_path)["n_trials"] == {"complete": 6}
    # Job folders follow the trial numbers, so the second run did not overwrite the first.
    assert all((tmp_path / "sweep" / str(n) / ".hydra").is_dir() for n in range(6))

    seen = [json.loads(line) for line in env_log.read_text().splitlines()]
    assert seen == [{"CPT_OPTUNA_STUDY": "toy it's", "CPT_OPTUNA_TRIAL": str(n)} for n in range(6)]


def test_multi_objective_writes_the_pareto_front(tmp_path):
    ok(run_toy(tmp_path, "multi=true", "hydra.sweeper.direction=[minimize,maximize]",
               "hydra/sweeper/sampler=nsga2", "hydra.sweeper.n_trials=5", "hydra.sweeper.n_jobs=5"))
    res = results(tmp_path)
    assert res["directions"] == ["minimize", "maximize"] and res["n_trials"] == {"complete": 5}
    front = res["solutions"]
    assert front and all(len(s["values"]) == 2 and set(s["params"]) == {"x", "y", "opt"} for s in front)
    for s in front:  # the toy's second objective is x itself
        assert s["values"][1] == pytest.approx(s["params"]["x"])
    for a in front:  # no reported solution dominates another
        for b in front:
            assert not (a["values"][0] < b["values"][0] and a["values"][1] > b["values"][1])


def test_failed_and_nan_trials_are_marked_fail_without_stopping_the_sweep(tmp_path):
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    out = ok(run_toy(tmp_path, "fail_if_x_above=0", "hydra.sweeper.n_trials=6", f"hydra.sweeper.storage={storage}",
                     "hydra.sweeper.study_name=f", "hydra/sweeper/sampler=random"))
    trials = optuna.load_study(study_name="f", storage=storage).trials
    assert len(trials) == 6
    assert {t.state for t in trials} == {TrialState.FAIL, TrialState.COMPLETE}
    assert all((t.state == TrialState.FAIL) == (t.params["x"] > 0) for t in trials)
    assert "raised RuntimeError" in out
    assert results(tmp_path)["best_params"]["x"] <= 0

    out = ok(run_toy(tmp_path, "return_mode=not_a_number", sweep="nan"))
    assert "returned NaN" in out
    res = results(tmp_path, "nan")
    assert res["n_trials"] == {"fail": 3} and res["best_value"] is None


def test_max_failure_rate_aborts_the_sweep(tmp_path):
    proc = run_toy(tmp_path, "fail_if_x_above=-10", "hydra.sweeper.max_failure_rate=0.5")
    assert proc.returncode != 0
    assert "max_failure_rate=0.5" in proc.stderr
    assert results(tmp_path)["n_trials"] == {"fail": 2}  # stopped after the first batch


def test_wrong_number_of_returned_values_is_a_clear_error(tmp_path):
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    proc = run_toy(tmp_path, "return_mode=wrong_count", f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=w")
    assert proc.returncode != 0
    assert "returned 2 value(s)" in proc.stderr and "direction lists 1" in proc.stderr
    # Nothing is left RUNNING in the stored study.
    assert {t.state for t in optuna.load_study(study_name="w", storage=storage).trials} == {TrialState.FAIL}

    proc = run_toy(tmp_path, "return_mode=nothing", sweep="none")
    assert proc.returncode != 0 and "must return a float" in proc.stderr


def test_bad_direction_is_a_clear_error(tmp_path):
    proc = run_toy(tmp_path, "hydra.sweeper.direction=minimise")
    assert proc.returncode != 0
    assert "hydra.sweeper.direction must be 'minimize' or 'maximize'" in proc.stderr
    assert not (tmp_path / "sweep" / "0").exists()  # rejected before any job ran


def test_grid_sampler_uses_the_params_and_stops_when_exhausted(tmp_path):
    out = ok(run_toy(tmp_path, "hydra/sweeper/sampler=grid", "x=choice(0.5,1.0)", "y=range(1,3)",
                     "hydra.sweeper.n_trials=50", "hydra.sweeper.n_jobs=4"))
    assert "Grid exhausted after 8" in out
    res = results(tmp_path)
    assert res["n_trials"] == {"complete": 8}
    assert res["best_params"] == {"x": 1.0, "y": 2, "opt": "adam"} and res["best_value"] == 0.0
