"""The stability gap in a report (pure): gap/<dataset>/… of each run's own continual stage, and
computed from its logged curve where a run finished before cpt logged them (cpt/plan/gap.py)."""

from __future__ import annotations

from cpt.plan.gap import gap_metrics
from cpt.reports.analysis import Variant, baseline_label, dataset_names, n_datasets, stat

GAP_KEYS = ("depth", "peak_tokens", "recovery_tokens")


def _continual(run) -> bool:
    # A grid run of recipe cpt trained its own continual stage; baselines and merges did not.
    return baseline_label(run.params, run.tags) is None and run.params.get("recipe", "cpt") == "cpt" \
        and bool(run.tags.get("cpt.prefix_run_id"))


def fill_gaps(runs: list) -> None:
    """Add the gap metrics a continual run lacks, from its own val curves: those start at its
    stage's first eval (step 0), so tokens since the start are tokens − the first point's."""
    for run in runs:
        if not _continual(run) or any(k.startswith("gap/") and k.count("/") == 2 for k in run.metrics):
            continue
        for name in dataset_names(run.params):
            curve = run.curves.get(f"val/{name}/loss") or []
            if len(curve) > 1:
                t0 = curve[0][0]
                run.metrics.update(gap_metrics(name, [(t - t0, v) for t, v in curve]))


def gap_stat(v: Variant, position: int, key: str):
    """One gap number of dataset D<position> over the variant's seeds."""
    return stat([r.metrics.get(f"gap/{dataset_names(r.params)[position]}/{key}")
                 if position < len(dataset_names(r.params)) else None for r in v.runs])


def gap_stats(n: int) -> list:
    """(table.csv column, Variant → Stat) for every dataset position and gap metric."""
    return [(f"D{k}_gap_{key}", lambda v, k=k, key=key: gap_stat(v, k, key)) for k in range(n) for key in GAP_KEYS]


def gap_table(variants: list[Variant]) -> tuple[list[str], list[list[str]]]:
    """report.md's table: one row per continual variant; recovery '-' where no seed got back."""
    n = n_datasets(variants)
    head = ["run"] + [f"D{k} {label}" for k in range(n) for label in ("depth", "peak tokens", "recovery tokens")]
    rows = []
    for v in variants:
        if not any(_continual(r) for r in v.runs):
            continue
        cells = []
        for k in range(n):
            depth, peak, rec = (gap_stat(v, k, key) for key in GAP_KEYS)
            cells += [depth.text(), peak.text(0), rec.text(0) + (f" ({rec.n}/{len(v.runs)})" if 0 < rec.n < len(v.runs) else "")]
        rows.append([v.label] + cells)
    return head, rows


def section(variants: list[Variant], md_table, h: str = "##") -> list[str]:
    head, rows = gap_table(variants)
    if not rows:
        return []
    return ["", f"{h} Stability gap of the last stage", "",
            "Per dataset: depth = highest loss after the stage's start minus the loss at its start (nats); "
            "peak / recovery tokens = tokens from the start to that peak / back at or below the start "
            "loss ('-': never within the stage). Resolution: the eval grid (`eval.dense_fraction`, "
            "`eval.dense_evals`).", "", md_table(head, rows)]
