"""report.md and the CSV tables beside it."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from cpt.reports.analysis import (SEED, Chain, ComputeRow, Variant, dataset_names, n_datasets, num, point_kind, short,
                                  table)
from cpt.reports.stability import gap_stats


def md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _fmt(x: float, digits: int = 3) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.{digits}f}"


@dataclass
class Facet:
    """One chain's part of the report: its analysis and the figures drawn of it."""
    chain: Chain
    figures: dict  # kind -> path (final_vs: key -> path, heatmaps: (a, b) -> path)
    front: list[str]  # labels of the Pareto front
    compute: list[ComputeRow]
    union_source: str
    front_note: str = ""  # how many merge / EMA / grid points are on the front, at what compute


def write_tables(facets: list[Facet], out: Path) -> None:
    """table.csv: one row per variant (means and stds); runs.csv: one row per run; both name
    each row's chain, as a label names only what differs within it."""
    n = max(n_datasets(f.chain.variants) for f in facets)
    keys = list(dict.fromkeys(k for f in facets for k in f.chain.keys))
    stats = [(f"D{k}_loss", lambda v, k=k: v.final(k)) for k in range(n)]
    stats += [(m.split("/")[-1], lambda v, m=m: v.stat(m)) for m in
              ("final/upstream_loss", "final/downstream_loss", "final/avg_loss", "forgetting", "adaptation",
               "final/harness_avg")]  # harness_avg: the task-score average (cpt/harness/metrics.py); nan without harness
    stats += gap_stats(n)  # the last stage's stability gap (cpt/reports/stability.py)
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["chain", "run", "baseline", "kind", *keys, "seeds"] + [f"{s}_{p}" for s, _ in stats for p in ("mean", "std")]
                   + ["tokens_over_union", "tokens_with_prefix_over_union"])
        for facet in facets:
            for v, c in zip(facet.chain.variants, facet.compute):
                row = [facet.chain.label, v.label, int(v.baseline), point_kind(v), *(v.values.get(k, "") for k in keys),
                       len(v.runs)]
                for _, get in stats:
                    s = get(v)
                    row += [s.mean, s.std]
                w.writerow(row + [c.own_ratio, c.total_ratio])
    with open(out / "runs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["chain", "run", "mlflow_run_id", "seed", *keys] + [f"D{k}_loss" for k in range(n)]
                   + ["avg_loss", "forgetting", "adaptation"])
        for facet in facets:
            for v in facet.chain.variants:
                for r in v.runs:
                    names = dataset_names(r.params)
                    w.writerow([facet.chain.label, v.label, r.run_id, r.params.get(SEED, ""),
                                *(r.params.get(k, "") for k in keys)]
                               + [r.metrics.get(f"final/{names[k]}/loss", "") if k < len(names) else "" for k in range(n)]
                               + [r.metrics.get(m, "") for m in ("final/avg_loss", "forgetting", "adaptation")])


def head_md(loaded, facets: list[Facet]) -> list[str]:
    """The title and what the report covers; a lone chain's summary too, else one line per chain."""
    variants = [v for f in facets for v in f.chain.variants]
    runs = sum(len(v.runs) for v in variants)
    seeds = sorted({r.params.get(SEED, "") for v in variants for r in v.runs}, key=num)
    chains = f"{len(facets)} chains (one section each), " if len(facets) > 1 else ""
    out = [
        f"# Report: {loaded.report_id}",
        "",
        f"{loaded.scope.capitalize()} `{loaded.report_id}`: {runs} finished runs in `{loaded.uri}` "
        f"(experiment `{loaded.experiment}`), {chains}{len(variants)} variants, seeds {', '.join(seeds)}. "
        "Where a variant has several seeds, numbers are mean ± sample standard deviation, "
        "curves are means with a ±1 std band.",
        "",
    ]
    if len(facets) == 1:
        return out + summary_md(facets[0].chain)
    return out + [f"- chain `{f.chain.label}`: " + _datasets(f.chain) for f in facets] + [
        "", "A chain is the model and the shift's datasets with their budgets: D1 of one chain is "
        "another dataset than D1 of the next, so no table, curve or baseline spans two."]


def summary_md(chain: Chain) -> list[str]:
    grid = [v for v in chain.variants if not v.baseline]
    base = [v for v in chain.variants if v.baseline]
    swept = "; ".join(f"`{k}` ∈ {{{', '.join(short(x) for x in sorted({v.values[k] for v in grid}, key=num))}}}"
                      for k in chain.keys)
    return [f"- swept: {swept or 'nothing (one point)'}",
            f"- baselines: {', '.join(v.label for v in base) or 'none'}",
            *_optuna_lines(grid),
            "- datasets: " + _datasets(chain)]


def _datasets(chain: Chain) -> str:
    n = n_datasets(chain.variants)
    names = [sorted({v.datasets[k] for v in chain.variants if k < len(v.datasets)}) for k in range(n)]
    return ", ".join(f"D{k} = {' / '.join(s)}" for k, s in enumerate(names))


def chain_md(facet: Facet, h: str = "##", titled: bool = False) -> list[str]:
    """One chain's sections, headed `h`; `titled`: under a heading of its own with its summary."""
    variants, figures = facet.chain.variants, facet.figures
    out = ["", f"## Chain `{facet.chain.label}`", "", *summary_md(facet.chain)] if titled else []
    out += [
        "", f"{h} Final validation loss (nats)", "",
        "The layout of 2403.08763's tables: one row per run, baselines last.",
        "",
        md_table(*table(variants)),
        "",
        "Every number per run: [runs.csv](runs.csv); per variant with forgetting and adaptation: "
        "[table.csv](table.csv).",
        "", f"{h} Forgetting vs adaptation", "",
        f"![forgetting vs adaptation]({figures['tradeoff'].name})",
        "",
        f"Pareto front of the swept runs (no other is lower on both upstream and downstream loss; "
        f"baselines are references): {', '.join(facet.front) or '-'}. {facet.front_note}".rstrip(),
    ]
    for key, path in figures.get("final_vs", {}).items():
        out += ["", f"{h} Final loss vs `{key}`", "", f"![final loss vs {key}]({path.name})"]
    if figures.get("heatmaps"):
        out += ["", f"{h} Heatmaps", ""]
        out += [f"![{a} × {b}]({p.name})" for (a, b), p in figures["heatmaps"].items()]
    return out + _curves_and_compute(facet, h)


def _curves_and_compute(facet: Facet, h: str) -> list[str]:
    figures, rows = facet.figures, facet.compute
    return ["", f"{h} Validation loss over tokens", "", f"![curves]({figures['curves'].name})", "",
            "Black: the prefix runs (earlier stages) a run continued from. The lower row zooms on the "
            "start of the last stage: re-warming the learning rate first raises the loss (the "
            "stability gap), which then settles.",
            "", f"{h} Learning rate", "", f"![learning rate]({figures['lr'].name})",
            "", f"{h} Compute relative to the union baseline", "",
            md_table(["run", "own tokens", "with prefix", "own / union", "with prefix / union"],
                     [[c.label, f"{c.own_tokens:,.0f}", f"{c.total_tokens:,.0f}", _fmt(c.own_ratio, 2),
                       _fmt(c.total_ratio, 2)] for c in rows]),
            "", f"Union tokens: {facet.union_source}. A continual run trains only its own stage; the prefix "
            "it starts from is trained once and reused by every run of the sweep.",
            "", f"![compute]({figures['compute'].name})"]


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
