"""A multirun's values, all checked before its first job starts.

Hydra runs the jobs one after another, so `lr.max=3e-4,abc` would train job 0 fully before job 1
rejects `abc`. `check_jobs` composes and checks (cpt/config/schema.py parse) only the jobs that
hold an override not seen yet: every value once, in a few seconds. The basic sweeper's jobs are
checked from run.py (`check_sweep`), the grid and Optuna sweepers' (hydra_plugins/) in their
sweep(), with the others at their first value.
"""

from __future__ import annotations

from typing import Callable

CONFIG_FLAGS = ("-cd", "--config-dir", "-cp", "--config-path", "-cn", "--config-name")


def check_jobs(jobs: list[list[str]], compose: Callable[[list[str]], object]) -> None:
    """Raise the UserError of the first bad value among `jobs` (lists of overrides); `compose`
    turns one into its DictConfig. Hydra's own composition errors become one line too."""
    from hydra.errors import HydraException

    from cpt.config.overrides import check_overrides
    from cpt.config.schema import parse
    from cpt.errors import UserError, short_reason

    seen: set[str] = set()
    for job in jobs:
        if set(job) <= seen:
            continue
        check_overrides(job)
        try:
            parse(compose(job))
        except HydraException as e:
            raise UserError(f"{' '.join(o for o in job if o not in seen)}: {short_reason(e)}") from None
        seen.update(job)


def one_value_each(fixed: list[str], axes: list[list[str]]) -> list[list[str]]:
    """Jobs in which each value of each axis (its `key=value` lines) appears once, the other
    axes at their first value."""
    return [fixed + [a[0] for a in axes if a is not axis] + [value] for axis in axes for value in axis]


def check_sweep(argv: list[str], overrides: list[str]) -> None:
    """The basic sweeper's command-line sweep (conf/ runs only: a sweep file's own sweeper, e.g.
    grid_with_baselines or Optuna, checks its jobs itself)."""
    if not {"-m", "--multirun"} & set(argv) or any(a.split("=")[0] in CONFIG_FLAGS for a in argv):
        return
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from cpt.cli.compose import compose

    parsed = OverridesParser.create().parse_overrides(overrides)
    swept = [o for o in parsed if o.is_sweep_override() and (o.is_choice_sweep() or o.is_range_sweep())]
    if not swept or len(swept) != len([o for o in parsed if o.is_sweep_override()]):
        return  # an interval() or other sweeper syntax: that sweeper's job
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    axes = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] for o in swept]
    check_jobs(one_value_each(fixed, axes), compose)


def check_sweeper_jobs(jobs: list[list[str]], loader, config) -> None:
    """`check_jobs` from a sweeper plugin, composing as Hydra will (`loader.load_sweep_config`
    over the sweep's `config`); Hydra would print a UserError raised there with a traceback.
    Another app's sweep (the plugins are general) is not a cpt run: not checked."""
    from cpt.config.schema import GROUPS
    from cpt.errors import UserError, report

    if not all(g in config for g in GROUPS):
        return

    try:
        check_jobs(jobs, lambda job: loader.load_sweep_config(config, job))
    except UserError as e:
        from cpt.sweep.hydra_callbacks import abandon

        abandon()  # the sweep's parent MLflow run, opened before the sweeper: FAILED, not RUNNING
        raise SystemExit(report(e)) from None
