"""Readable MLflow run names: what differs, not the whole command line.

A job of a sweep is named by the keys the sweep varies (`lr.max=6e-4,warmup=0.02`), a single run
by its overrides; both at most MAX_NAME characters (the full override list is the tag
cpt.overrides). A sweep's parent is named by its sweep file, or by the keys it varies.
"""

from __future__ import annotations

import math

MAX_NAME = 60
# Where a run's outputs and store are: not what the run is about.
NOT_NAMED = ("paths.", "tracking.", "hydra.", "force=", "dry_run=")


def short_value(value: str) -> str:
    """Hydra writes 6e-4 back as 0.0006: the shorter of the plain and the scientific form."""
    try:
        x = float(value)
    except ValueError:
        return value
    if not math.isfinite(x) or x == int(x):
        return value  # integers, nan, inf: as written
    mantissa, _, exp = f"{x:e}".partition("e")
    sci = f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"
    plain = f"{x:g}" if "e" not in f"{x:g}" else value
    return sci if len(sci) < len(plain) else plain


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def shorten(text: str, limit: int = MAX_NAME) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def run_name(overrides: list[str], swept: list[str] | None = None) -> str:
    """`swept`: the keys a sweep varies (None: not a sweep, every override names the run)."""
    keep = [o for o in overrides if "=" in o and not o.startswith(NOT_NAMED)
            and (swept is None or _key(o) in swept)]
    return shorten(",".join(f"{_key(o)}={short_value(o.split('=', 1)[1])}" for o in keep) or "default")


def swept_keys(task_overrides: list[str], sweeper: dict) -> list[str]:
    """The keys a multirun varies: sweep syntax on its command line (a,b / range / choice /
    interval) and the sweeper's own axes (hydra.sweeper.params, grid; baselines' keys)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys = [o.key_or_group for o in OverridesParser.create().parse_overrides(task_overrides)
            if o.is_sweep_override()]
    for axis in ("params", "grid"):
        keys += [str(k) for k in (sweeper.get(axis) or {})]
    keys += [_key(str(b)) for b in (sweeper.get("baselines") or [])]
    return list(dict.fromkeys(keys))


def sweep_name(config_name: str, swept: list[str]) -> str:
    """A shipped sweep file names its sweep; `python run.py -m ...` is named by its swept keys."""
    if config_name and config_name != "config":
        return shorten(config_name)
    return shorten("sweep " + ",".join(swept)) if swept else "sweep"
