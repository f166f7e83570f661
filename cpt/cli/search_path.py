"""The options of a config group where Hydra will look for them: the package's conf/ (or
`--config-path`), a user's `--config-dir` / `-cd`, the `hydra.searchpath` of the primary config
(the shipped sweeps add `file://conf`) or of the command line, and search-path plugins.

`group=option` is checked against this before Hydra composes, so that an option in a user's own
config dir is accepted and a missing one is still one line (cpt/config/schema.py). The listing is
Hydra's own (its config loader over the search path `_run_hydra` builds for a command line), not
a copy of its rules.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable

from cpt.errors import UserError

Options = Callable[[str], list[str]]


def _listing(loader, config_name: str | None, overrides: list[str]) -> Options:
    """group → its options, sorted; `overrides` may hold `hydra.searchpath=[...]`."""

    @functools.cache
    def options(group: str) -> list[str]:
        return sorted(set(loader.get_group_options(group, config_name=config_name, overrides=overrides)))

    return options


def command_line_options(argv: list[str], conf_dir: Path) -> tuple[Options, list[str]]:
    """For `python run.py <argv>` (run.py's primary conf is `conf_dir`): the group listing Hydra
    will use, and the overrides in `argv` (flags such as `-cd DIR -cn NAME -m` taken out)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_automatic_config_search_path, get_args_parser
    from hydra.core.config_search_path import SearchPathQuery

    args = get_args_parser().parse_args(argv)  # Hydra's own parser: what `main` will parse
    # --config-path is relative to run.py's directory, as for Hydra (conf_dir sits beside run.py).
    run_py = str(Path(conf_dir).parent / "run.py")
    search_path = create_automatic_config_search_path(run_py, None, args.config_path or Path(conf_dir).name)
    if args.config_dir is not None:
        config_dir = os.path.abspath(args.config_dir)
        if not os.path.isdir(config_dir):
            raise UserError(f"--config-dir {args.config_dir}: no such directory ({config_dir}); allowed: a "
                            "directory holding <group>/<option>.yaml, e.g. shift/my-corpus.yaml")
        search_path.prepend(provider="command-line", path=f"file://{config_dir}",
                            anchor=SearchPathQuery(provider="schema"))  # where Hydra puts it
    loader = ConfigLoaderImpl(config_search_path=search_path)
    return _listing(loader, args.config_name or "config", args.overrides), args.overrides


def initialized_options(config_name: str, overrides: list[str]) -> Options:
    """Inside `hydra.initialize_config_dir(...)` (cpt's compose): the group listing of the
    initialized Hydra, with the `hydra.searchpath` among `overrides` applied."""
    from hydra.core.global_hydra import GlobalHydra

    return _listing(GlobalHydra.instance().config_loader(), config_name, list(overrides))
