"""Command-line overrides checked before Hydra composes: Hydra's own messages for a misspelled
key (`lr.maxx=1e-3`, `shfit=files`) or a syntax error (`warmup=[1,`) span several lines and end
with a stack-trace hint; here each is one UserError line naming the nearest valid key.

Keys are looked up in the schema (cpt/config/schema.py): a key the schema has is left to Hydra
and parse; `+key=`, `++key=`, `~key`, `key@package` and `hydra.*` are Hydra's business.
"""

from __future__ import annotations

import dataclasses
import types
import typing

from cpt.config.schema import RunConfig, unknown_key
from cpt.errors import UserError

GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"


def check_overrides(overrides: list[str]) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for line in overrides:
        try:
            (o,) = parser.parse_overrides([line])
        except HydraException as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"{line}: not a valid override ({reason}); allowed key=value, "
                            f"e.g. warmup=0.01 or lr.max=1e-4,3e-4 ({GRAMMAR})") from None
        key = o.key_or_group
        if o.is_add() or o.is_force_add() or o.is_delete() or o.package or "/" in key or key.split(".")[0] == "hydra":
            continue
        _check_key(key.split("."), RunConfig, "")


def _check_key(path: list[str], tp, prefix: str) -> None:
    """Raise the unknown-key line if the schema has no `path` below type `tp`."""
    if not path:
        return
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    head, rest = path[0], path[1:]
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        if head not in names:
            raise unknown_key(prefix, head, names)
        _check_key(rest, hints[head], f"{prefix}{head}.")
    elif typing.get_origin(tp) is list and typing.get_args(tp) and head.isdigit():
        _check_key(rest, typing.get_args(tp)[0], f"{prefix}{head}.")
    # dict, Any, a list's own items or a scalar below which Hydra names the problem: not ours
