"""MLflow names of lm-eval's results and the task-score averages (pure).

lm-eval names a result `<metric>,<filter>` (`acc,none`, `exact_match,strict-match`); MLflow
refuses commas. So harness/<task>/<metric>: the `none` filter is dropped, any other becomes
/<filter> (harness/gsm8k/exact_match/strict-match), a stderr stays beside its metric
(harness/<task>/acc_stderr), and characters MLflow does not allow in a key become `_`.

Each task's primary metric (what the averages take) is acc_norm where the task reports it (the
length-normalised choice), else acc, else exact_match, else its first metric by name.
"""

from __future__ import annotations

import math
import re

PRIMARY = ("acc_norm", "acc", "exact_match")
_NOT_MLFLOW = re.compile(r"[^A-Za-z0-9_\-. :]")  # MLflow keys: letters, digits, `_-. /:`; `/` is ours


def mlflow_name(task: str) -> str:
    return _NOT_MLFLOW.sub("_", task)


def metric_names(results: dict) -> dict[str, float]:
    """One task's lm-eval results {"acc,none": 0.4, ...} as {"acc": 0.4, ...}; non-numbers dropped."""
    out = {}
    for key, value in results.items():
        metric, sep, flt = key.partition(",")
        if not sep or isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            continue
        out[mlflow_name(metric) + ("" if flt in ("none", "") else "/" + mlflow_name(flt))] = float(value)
    return out


def primary(metrics: dict[str, float]) -> str | None:
    for m in PRIMARY:
        if m in metrics:
            return m
    plain = sorted(m for m in metrics if "/" not in m and not m.endswith("_stderr"))
    return plain[0] if plain else None


def stage_metrics(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """harness/<task>/<metric> for every task, and harness/avg (unweighted mean of the primaries)."""
    out = {f"harness/{mlflow_name(t)}/{m}": v for t, ms in scores.items() for m, v in ms.items()}
    avg = average(scores, scores)
    if avg is not None:
        out["harness/avg"] = avg
    return out


def average(scores: dict[str, dict[str, float]], tasks) -> float | None:
    values = [scores[t][p] for t in tasks if t in scores and (p := primary(scores[t])) is not None]
    return sum(values) / len(values) if values else None


def final_metrics(final: dict[str, dict], reference: dict[str, dict], dataset_of: dict[str, int],
                  last: int) -> dict[str, float]:
    """final/harness_avg, final/harness_upstream_avg (tasks of datasets before the last),
    final/harness_downstream_avg (the last dataset's) and harness_forgetting: the upstream average
    of `reference` (the model the last stage started from) minus the final model's."""
    up = [t for t in final if dataset_of[t] < last]
    down = [t for t in final if dataset_of[t] == last]
    out = {"final/harness_avg": average(final, final), "final/harness_upstream_avg": average(final, up),
           "final/harness_downstream_avg": average(final, down)}
    ref = average(reference, up)
    if ref is not None and out["final/harness_upstream_avg"] is not None:
        out["harness_forgetting"] = ref - out["final/harness_upstream_avg"]
    return {k: v for k, v in out.items() if v is not None}
