"""Read a sweep's (or an experiment's) finished runs back from MLflow, through cpt.store.tracking only.

A report id names a sweep (the multirun's directory name: its id in a run's `cpt.sweep_ids`,
so a run reused by a later sweep is in both reports) or, failing that, an MLflow experiment. Each run comes with the curves a report draws and
the chain of prefix runs it started from, so a continual run's curves can be shown after the
stage-0 curves they continue (the stability gap is the jump at that seam).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from cpt.config.schema import Tracking
from cpt.errors import UserError

CURVE_KEYS = ("train/lr",)  # besides every val/<dataset>/loss


@dataclass
class Run:
    run_id: str
    name: str
    params: dict[str, str]  # the flattened resolved config + group choices, as MLflow stores them (strings)
    tags: dict[str, str]
    metrics: dict[str, float]  # the last value of every metric
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # key -> [(tokens, value)]
    prefixes: list["Run"] = field(default_factory=list)  # the chain before this run's stage, stage 0 first


@dataclass
class Loaded:
    report_id: str
    scope: str  # "sweep" or "experiment"
    uri: str
    experiment: str
    runs: list[Run]


def _is_curve(key: str) -> bool:
    return (key.startswith("val/") and key.endswith("/loss")) or key in CURVE_KEYS


def load(tracking: Tracking, report_id: str) -> Loaded:
    from cpt.store.tracking import Tracker, store_exists

    if not store_exists(tracking):
        raise UserError(f"tracking.uri={tracking.uri}: no MLflow store there; point paths.output_dir "
                        "or tracking.uri at the store the runs were logged to")
    tracker, scope = Tracker(tracking), "sweep"
    records = _finished(tracker.sweep_records(report_id))
    if not records and (report_id == tracking.experiment or tracker.has_experiment(report_id)):
        if report_id != tracking.experiment:
            tracking = dataclasses.replace(tracking, experiment=report_id)
            tracker = Tracker(tracking)
        records, scope = _finished(tracker.records("tags.`cpt.kind` = 'run'")), "experiment"
    if not records:
        sweeps = tracker.tag_values("cpt.sweep_id")
        raise UserError(f"report {report_id}: no finished runs of a sweep or experiment of that name in "
                        f"{tracking.uri}; sweeps there: {', '.join(sweeps[-8:]) or 'none'}")
    known: dict[str, Run] = {}
    runs = [with_curves(tracker, r, known) for r in records]
    for run in runs:
        run.prefixes = prefix_chain(tracker, run, known)
        if run.prefixes and not any(k.startswith("val/") for k in run.curves):
            # A baseline trains as a cached stage (union, scratch) or reuses one (upstream-only)
            # and logs only its final numbers: its curves are those of the stage it reports.
            run.curves = {**run.prefixes.pop().curves, **run.curves}
    return Loaded(report_id, scope, tracking.uri, tracking.experiment, runs)


def _finished(records: list[dict]) -> list[dict]:
    return [r for r in records if r["status"] == "FINISHED"]


def with_curves(tracker, record: dict, known: dict) -> Run:
    """A finished run's record with the curves the report draws (val losses, CURVE_KEYS), remembered in `known`
    (the report and the forecast load runs this way)."""
    run = Run(record["run_id"], record["name"] or "", record["params"], record["tags"], record["metrics"])
    run.curves = {k: tracker.history(run.run_id, k) for k in sorted(run.metrics) if _is_curve(k)}
    known[run.run_id] = run
    return run


def prefix_chain(tracker, run: Run, known: dict) -> list[Run]:
    """Prefix runs from stage 0 up to the one this run continued (tag cpt.prefix_run_id)."""
    chain, parent = [], run.tags.get("cpt.prefix_run_id", "")
    while parent and parent not in {r.run_id for r in chain}:
        if parent not in known:
            record = tracker.record(parent)
            if record is None:  # deleted from the store: the chain ends here
                break
            with_curves(tracker, record, known)
        chain.append(known[parent])
        parent = known[parent].tags.get("cpt.prefix_run_id", "")
    return chain[::-1]
