"""Compose the run config outside `run.py` (for `cpt <command> <overrides>` and tests).

cpt is used from a clone (editable install): conf/ lives beside the package.
"""

from __future__ import annotations

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def silence_schema_match() -> None:
    """conf/hydra/launcher/ overrides the launcher plugins' own configs by name; Hydra 1.3 merges
    them into the plugins' schemas, as wanted, and warns that it will stop doing so."""
    import warnings

    warnings.filterwarnings("ignore", message=r"(?s).*is validated against ConfigStore schema with the same name")


def compose(overrides: list[str], return_hydra_config: bool = True):
    """The DictConfig `python run.py <overrides>` would see (unknown group options: one line).

    A user's own config dir reaches it as `hydra.searchpath=[file://my_conf]` among the overrides
    (Hydra's compose API has no --config-dir); its options are then allowed like conf/'s."""
    from hydra import compose as hydra_compose, initialize_config_dir

    from cpt.cli.search_path import initialized_options
    from cpt.config.overrides import check_overrides
    from cpt.config.schema import check_group_choices

    silence_schema_match()
    check_overrides(list(overrides))  # one line, as from run.py (cpt/cli/task.py main_guard)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        check_group_choices(list(overrides), initialized_options("config", overrides))
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)


def compose_run_config(overrides: list[str]):
    """Composed and validated: a RunConfig."""
    from cpt.config.schema import parse

    return parse(compose(overrides))
