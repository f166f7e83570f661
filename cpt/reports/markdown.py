"""report.md and the CSV tables beside it."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from cpt.reports.analysis import SEED, ComputeRow, Variant, dataset_names, n_datasets, num, short, table
from cpt.reports.stability import gap_stats


def md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _fmt(x: float, digits: int = 3) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def write_tables(variants: list[Variant], keys: list[str], compute_rows: list[ComputeRow], out: Path) -> None:
    """table.csv: one row per variant (means and stds); runs.csv: one row per run."""
    n = n_datasets(variants)
    stats = [(f"D{k}_loss", lambda v, k=k: v.final(k)) for k in range(n)]
    stats += [(m.split("/")[-1], lambda v, m=m: v.stat(m)) for m in
              ("final/upstream_loss", "final/downstream_loss", "final/avg_loss", "forgetting", "adaptation",
               "final/harness_avg")]  # harness_avg: the task-score average (cpt/harness/metrics.py); nan without harness
    stats += gap_stats(n)  # the last stage's stability gap (cpt/reports/stability.py)
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "baseline", *keys, "seeds"] + [f"{s}_{p}" for s, _ in stats for p in ("mean", "std")]
                   + ["tokens_over_union", "tokens_with_prefix_over_union"])
        for v, c in zip(variants, compute_rows):
            row = [v.label, int(v.baseline), *(v.values.get(k, "") for k in keys), len(v.runs)]
            for _, get in stats:
                s = get(v)
                row += [s.mean, s.std]
            w.writerow(row + [c.own_ratio, c.total_ratio])
    with open(out / "runs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "mlflow_run_id", "seed", *keys] + [f"D{k}_loss" for k in range(n)]
                   + ["avg_loss", "forgetting", "adaptation"])
        for v in variants:
            for r in v.runs:
                names = dataset_names(r.params)
                w.writerow([v.label, r.run_id, r.params.get(SEED, ""), *(r.params.get(k, "") for k in keys)]
                           + [r.metrics.get(f"final/{names[k]}/loss", "") if k < len(names) else "" for k in range(n)]
                           + [r.metrics.get(m, "") for m in ("final/avg_loss", "forgetting", "adaptation")])


def report_md(loaded, keys: list[str], variants: list[Variant], figures: dict, front: list[str],
              compute_rows: list[ComputeRow], union_source: str) -> str:
    n = n_datasets(variants)
    grid = [v for v in variants if not v.baseline]
    base = [v for v in variants if v.baseline]
    runs = sum(len(v.runs) for v in variants)
    seeds = sorted({r.params.get(SEED, "") for v in variants for r in v.runs}, key=num)
    names = [sorted({v.datasets[k] for v in variants if k < len(v.datasets)}) for k in range(n)]
    swept = "; ".join(f"`{k}` ∈ {{{', '.join(short(x) for x in sorted({v.values[k] for v in grid}, key=num))}}}"
                      for k in keys)
    out = [
        f"# Report: {loaded.report_id}",
        "",
        f"{loaded.scope.capitalize()} `{loaded.report_id}`: {runs} finished runs in `{loaded.uri}` "
        f"(experiment `{loaded.experiment}`), {len(variants)} variants, seeds {', '.join(seeds)}. "
        "Where a variant has several seeds, numbers are mean ± sample standard deviation, "
        "curves are means with a ±1 std band.",
        "",
        f"- swept: {swept or 'nothing (one point)'}",
        f"- baselines: {', '.join(v.label for v in base) or 'none'}",
        *_optuna_lines(grid),
        "- datasets: " + ", ".join(f"D{k} = {' / '.join(s)}" for k, s in enumerate(names)),
        "",
        "## Final validation loss (nats)",
        "",
        "The layout of 2403.08763's tables: one row per run, baselines last.",
        "",
        md_table(*table(variants)),
        "",
        "Every number per run: [runs.csv](runs.csv); per variant with forgetting and adaptation: "
        "[table.csv](table.csv).",
        "",
        "## Forgetting vs adaptation",
        "",
        f"![forgetting vs adaptation]({figures['tradeoff'].name})",
        "",
        f"Pareto front of the swept runs (no other is lower on both upstream and downstream loss; "
        f"baselines are references): {', '.join(front) or '-'}.",
    ]
    for key, path in figures.get("final_vs", {}).items():
        out += ["", f"## Final loss vs `{key}`", "", f"![final loss vs {key}]({path.name})"]
    if figures.get("heatmaps"):
        out += ["", "## Heatmaps", ""]
        out += [f"![{a} × {b}]({p.name})" for (a, b), p in figures["heatmaps"].items()]
    out += ["", "## Validation loss over tokens", "", f"![curves]({figures['curves'].name})", "",
            "Black: the prefix runs (earlier stages) a run continued from. The lower row zooms on the "
            "start of the last stage: re-warming the learning rate first raises the loss (the "
            "stability gap), which then settles.",
            "", "## Learning rate", "", f"![learning rate]({figures['lr'].name})",
            "", "## Compute relative to the union baseline", "",
            md_table(["run", "own tokens", "with prefix", "own / union", "with prefix / union"],
                     [[c.label, f"{c.own_tokens:,.0f}", f"{c.total_tokens:,.0f}", _fmt(c.own_ratio, 2),
                       _fmt(c.total_ratio, 2)] for c in compute_rows]),
            "", f"Union tokens: {union_source}. A continual run trains only its own stage; the prefix "
            "it starts from is trained once and reused by every run of the sweep.",
            "", f"![compute]({figures['compute'].name})", ""]
    return "\n".join(out)


def _optuna_lines(grid: list[Variant]) -> list[str]:
    """Which Optuna studies the runs are trials of, and the trial with the lowest AVG."""
    trials = [(r.tags["cpt.optuna.study"], int(r.tags["cpt.optuna.trial"]), v) for v in grid for r in v.runs
              if r.tags.get("cpt.optuna.study") and r.tags.get("cpt.optuna.trial", "").isdigit()]
    if not trials:
        return []
    studies = sorted({s for s, _, _ in trials})
    study, number, best = min(trials, key=lambda t: t[2].stat("final/avg_loss").mean)
    return [f"- Optuna: {len(trials)} trials of study {', '.join(f'`{s}`' for s in studies)}; lowest AVG: "
            f"trial {number} ({best.label}, {best.stat('final/avg_loss').text()})"]
