"""A finished run's RunConfig from its logged MLflow params (the flattened resolved config, as
strings), and the points of a sweep's grid as override lists. Pure."""

from __future__ import annotations

import dataclasses
import itertools


def _value(text: str):
    """A logged param back to the value it was logged from (str() of an int, float, bool, None)."""
    special = {"True": True, "False": False, "None": None, "[]": [], "{}": {}}
    if text in special:
        return special[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _nest(flat: dict) -> dict:
    out: dict = {}
    for key in sorted(flat, key=lambda k: k.count(".")):  # parents first: a group choice ("shift") loses to its keys
        *head, last = key.split(".")
        node = out
        for part in head:
            child = node.get(part)
            node[part] = node = child if isinstance(child, dict) else {}
        node[last] = flat[key]
    return _lists(out)


def _lists(node):
    # flatten() writes list items by index: {"0": .., "1": ..} is a list again
    if not isinstance(node, dict):
        return node
    node = {k: _lists(v) for k, v in node.items()}
    if node and all(k.isdigit() for k in node) and sorted(map(int, node)) == list(range(len(node))):
        return [node[str(i)] for i in range(len(node))]
    return node


def config_from_params(params: dict[str, str]):
    """The RunConfig a run was logged with (its params: cpt.store.tracking.flatten of the resolved
    config, plus group choices and data.* epochs, which are not config keys)."""
    from cpt.config.schema import RunConfig, parse

    fields = {f.name for f in dataclasses.fields(RunConfig)}
    flat = {k: _value(v) for k, v in params.items() if k.split(".")[0] in fields}
    nested = {k: v for k, v in _nest(flat).items() if not (k in fields and isinstance(v, str) and k != "tokenizer"
                                                           and _is_group(k))}
    return parse(nested)


def _is_group(key: str) -> bool:
    from cpt.config.schema import GROUPS

    return key in GROUPS


def grid_points(grid: dict, baselines: list | None = None) -> list[list[str]]:
    """The override lists of a sweep's grid (Cartesian product of comma-separated values, as
    Hydra's basic sweeper and grid_with_baselines expand them), then its baselines, each once."""
    axes = [[f"{k}={v.strip()}" for v in (str(vals).split(",") if not isinstance(vals, list) else vals)]
            for k, vals in grid.items()]
    points = [list(p) for p in itertools.product(*axes)] if axes else []
    return points + [[b] if isinstance(b, str) else list(b) for b in (baselines or [])]
