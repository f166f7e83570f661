"""Creating (or resuming) the Optuna study a sweep reports to."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.distributions import BaseDistribution, check_distribution_compatibility
from optuna.trial import FrozenTrial, Trial, TrialState

from cpt.errors import UserError, short_reason

from .search_space import SearchSpace

_DIRECTIONS = ("minimize", "maximize")
_CREATE_TRIES = 5  # create_study attempts while other sweeps create the same new database


def parse_directions(direction: Any) -> list[str]:
    """``"minimize"`` / ``["minimize", "maximize"]`` -> a validated, lower-case list."""
    raw = OmegaConf.to_container(direction) if isinstance(direction, ListConfig) else direction
    items = [raw] if isinstance(raw, str) else raw
    valid = (
        isinstance(items, (list, tuple))
        and len(items) > 0
        and all(isinstance(d, str) and d.lower() in _DIRECTIONS for d in items)
    )
    if not valid:
        raise ValueError(
            "hydra.sweeper.direction must be 'minimize' or 'maximize', or a non-empty list "
            f"of them (one per value the task function returns); got {raw!r}"
        )
    return [d.lower() for d in items]


def make_sampler(sampler: DictConfig, space: SearchSpace) -> optuna.samplers.BaseSampler:
    """Instantiate the ``hydra/sweeper/sampler`` config.

    A sampler config with an empty ``search_space`` key (the grid sampler) gets the
    grid of the sweep's own params, so the space is written only once.
    """
    extra: dict[str, Any] = {}
    if "search_space" in sampler and sampler.search_space is None:
        extra["search_space"] = space.grid()
    # "all" hands Optuna plain dicts / lists instead of OmegaConf containers.
    return instantiate(sampler, _convert_="all", **extra)


def open_study(
    *,
    study_name: str | None,
    storage: str | None,
    sampler: optuna.samplers.BaseSampler,
    directions: list[str],
) -> optuna.Study:
    """Create the study, or load it from ``storage`` when it already exists there.

    Loading is what lets a re-run of the same command add trials to a study.
    """
    from sqlalchemy.exc import IntegrityError, ProgrammingError, SQLAlchemyError

    _make_sqlite_parent(storage)
    for attempt in range(_CREATE_TRIES):
        try:
            study = optuna.create_study(
                study_name=study_name,
                storage=storage,
                sampler=sampler,
                directions=directions,
                load_if_exists=True,
            )
            break
        except ImportError as e:  # SQLAlchemy found no driver for the URL's database
            raise _storage_error(storage, f"no driver for this database: {e.__cause__ or e}") from None
        except SQLAlchemyError as e:
            # Sweeps that start at once on a new database (one per node) race to create Optuna's
            # tables and version row: the loser gets a duplicate-key or "already exists" error;
            # on the next try the tables are there (PostgreSQL: seen in tests/test_optuna_storage.py).
            if isinstance(e, (IntegrityError, ProgrammingError)) and attempt + 1 < _CREATE_TRIES:
                time.sleep(0.2 * (attempt + 1))
                continue
            raise _storage_error(storage, short_reason(e, limit=200)) from None
    stored = [d.name.lower() for d in study.directions]
    # Optuna silently keeps the stored directions, which would mis-rank every new trial.
    if stored != directions:
        raise ValueError(
            f"study {study.study_name!r} in {storage} was created with direction {stored}, "
            f"but hydra.sweeper.direction is {directions}; use another study_name"
        )
    return study


def check_storage(storage: str | None) -> None:
    """Connect to a database storage once, from Hydra's start-of-sweep callback (it runs before the
    sweeper) before it opens the sweep's MLflow run, so a storage that cannot be opened writes nothing."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError, SQLAlchemyError

    if storage is None or storage.startswith("sqlite:///"):
        return  # in memory, or a local file that opening creates
    try:
        optuna.storages.RDBStorage(storage)
    except ImportError as e:
        raise _storage_error(storage, f"no driver for this database: {e.__cause__ or e}") from None
    except (IntegrityError, ProgrammingError):
        pass  # another sweep is creating the tables: open_study retries
    except SQLAlchemyError as e:
        raise _storage_error(storage, short_reason(e, limit=200)) from None


def _storage_error(storage: str, reason: str):
    """One line naming the key and what is allowed (the sweeper prints it and exits 2)."""
    shown = re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", storage)  # no password on screen
    return UserError(f"hydra.sweeper.storage={shown}: cannot open the study's database ({reason}); "
                     "allowed: sqlite:///<file>, or a reachable database URL with its driver installed "
                     "(PostgreSQL: postgresql://user:password@host:5432/db and pip install 'psycopg[binary]')")


def check_compatible(study: optuna.Study, distributions: dict[str, BaseDistribution]) -> None:
    """Fail before launching anything if a resumed study stored a parameter differently.

    Optuna would otherwise raise in the middle of ``ask``, leaving a half-created
    trial RUNNING in the storage.
    """
    seen: set[str] = set()
    for trial in study.get_trials(deepcopy=False):
        for name, stored in trial.distributions.items():
            if name in seen or name not in distributions:
                continue
            seen.add(name)
            try:
                check_distribution_compatibility(stored, distributions[name])
            except ValueError as e:
                raise ValueError(
                    f"parameter {name!r} of study {study.study_name!r} was stored as {stored}, "
                    f"the sweep now asks for {distributions[name]} ({e}); use another study_name"
                ) from None


def tell(
    study: optuna.Study, trial: Trial, values: list[float] | None = None, state: TrialState | None = None
) -> FrozenTrial:
    """``study.tell`` that survives a sampler calling ``study.stop()``.

    GridSampler stops the study once its grid is exhausted, which Optuna only allows
    inside ``study.optimize``; in ask/tell mode that raises after the trial has been
    stored, so reading the stored trial back is all that is left to do.
    """
    try:
        return study.tell(trial, values, state=state)
    except RuntimeError:
        if not grid_exhausted(study):
            raise
        return next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)


def grid_exhausted(study: optuna.Study) -> bool:
    """True once a grid sampler has evaluated every point (more would repeat points)."""
    sampler = study.sampler
    return isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study)


def _make_sqlite_parent(storage: str | None) -> None:
    # SQLite creates the file but not its folder; sqlite:///outputs/optuna.db would
    # otherwise fail on a fresh checkout where outputs/ does not exist yet.
    prefix = "sqlite:///"
    if storage is None or not storage.startswith(prefix):
        return
    path = storage[len(prefix) :].split("?", 1)[0]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
