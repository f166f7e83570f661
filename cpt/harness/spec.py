"""`harness.tasks` entries and the dataset of the chain each belongs to (pure; no lm-eval import).

An entry is a task name (an lm-eval task, or `synthetic`: the embedded task of every synthetic
dataset of the chain, cpt/harness/tasks.py), a path to a task YAML file or a directory of them,
or a mapping {task: <one of those>, dataset: <index or name>}. A bare name or path belongs to
dataset 0 (upstream); `dataset: -1` is the last one (downstream). Scores of an upstream dataset's
tasks make harness_forgetting (cpt/harness/metrics.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from cpt.errors import UserError

SYNTHETIC = "synthetic"
AT = ("final", "stages")


@dataclass(frozen=True)
class TaskRef:
    task: str  # an lm-eval task name, `synthetic`, or a path
    dataset: int | None  # index in the chain; None only for `synthetic` without one: every dataset


def task_refs(entries: list, names: list[str]) -> list[TaskRef]:
    """The entries, checked against the chain's dataset names (one line for a bad entry)."""
    out = []
    for i, e in enumerate(entries):
        key = f"harness.tasks.{i}"
        if isinstance(e, str):
            task, ds = e, None
        elif isinstance(e, dict) and set(e) <= {"task", "dataset"} and isinstance(e.get("task"), str):
            task, ds = e["task"], e.get("dataset")
        else:
            raise UserError(f"{key}={e!r}: allowed a task name or path, or {{task: <name or path>, "
                            "dataset: <index or name of a dataset of the chain>}")
        out.append(TaskRef(task, _dataset(ds, names, key, task == SYNTHETIC)))
    return out


def _dataset(ds, names: list[str], key: str, synthetic: bool) -> int | None:
    if ds is None:
        return None if synthetic else 0
    if isinstance(ds, str) and ds in names:
        return names.index(ds)
    if isinstance(ds, int) and not isinstance(ds, bool) and -len(names) <= ds < len(names):
        return ds % len(names)
    raise UserError(f"{key}.dataset={ds}: allowed an index -{len(names)}..{len(names) - 1} or a name of "
                    f"the chain's datasets: {', '.join(names)}")


def check_harness(h, names: list[str]) -> None:
    """Range checks of the `harness` group (schema.Harness); the tasks' files and data are checked
    when the run starts (cpt/harness/evaluator.py resolve)."""
    from cpt.errors import check

    check(h.at in AT, "harness.at", h.at, " or ".join(AT))
    check(h.batch_size > 0, "harness.batch_size", h.batch_size, "> 0")
    check(h.limit is None or h.limit > 0, "harness.limit", h.limit, "null (every item) or > 0 (items per task; < 1: a fraction)")
    check(h.num_fewshot is None or h.num_fewshot >= 0, "harness.num_fewshot", h.num_fewshot, "null (the task's own) or >= 0")
    task_refs(h.tasks, names)
