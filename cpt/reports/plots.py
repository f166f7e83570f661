"""The report's figures (matplotlib, no pyplot state: each figure is its own object).

Every function takes variants (analysis.Variant) and a path, draws one PNG, returns the path.
Seeds are aggregated: lines are means, bands and error bars one standard deviation.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from cpt.reports.analysis import (Variant, dataset_names, is_choice, n_datasets, num, pareto_front,
                                  point_kind, short)

DPI = 110
MAX_CATEGORIES = 12  # more distinct values than this (an Optuna search): numeric axes, no grid cells
ZOOM = (0.05, 0.35)  # stability-gap panel: this fraction of the last stage before / after its start


def colors(variants: list[Variant]) -> list:
    """Grid points along viridis (their order is the sweep's), baselines in distinct tab10 colours."""
    from matplotlib import colormaps

    grid = [v for v in variants if not v.baseline]
    vir, tab = colormaps["viridis"], colormaps["tab10"]
    out, g, b = [], 0, 0
    for v in variants:
        if v.baseline:
            out.append(tab((b + 3) % 10))
            b += 1
        else:
            out.append(vir(0.9 * g / max(1, len(grid) - 1)))
            g += 1
    return out


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _mean_curve(runs: list, key_of) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Mean and std over seeds of one curve, on the steps every seed logged."""
    series = [dict(r.curves.get(key_of(r), [])) for r in runs]
    series = [s for s in series if s]
    if not series:
        return None
    steps = sorted(set.intersection(*(set(s) for s in series))) or sorted(series[0])
    series = [s for s in series if all(t in s for t in steps)]
    vals = np.array([[s[t] for t in steps] for s in series])
    return np.array(steps, float), vals.mean(0), vals.std(0, ddof=1) if len(vals) > 1 else np.zeros(len(steps))


def _val_key(position: int):
    def key(run) -> str:
        names = dataset_names(run.params)
        return f"val/{names[position]}/loss" if position < len(names) else ""
    return key


def _seam(variants: list[Variant]) -> tuple[float, float] | None:
    """(tokens where the continual runs' own stage starts, its length), the most common one."""
    seams = []
    for v in variants:
        for r in v.runs:
            if r.prefixes:
                steps = [t for k, c in r.curves.items() if k.startswith("val/") for t, _ in c]
                if steps:
                    seams.append((min(steps), max(steps) - min(steps)))
    return max(set(seams), key=seams.count) if seams else None


def curves(variants: list[Variant], path: Path) -> Path:
    """Validation loss of every dataset over tokens, every variant, the prefix runs in black;
    the second row zooms on the start of the last stage, where re-warming opens the stability gap."""
    n = n_datasets(variants)
    seam = _seam(variants)
    fig = Figure(layout="constrained", figsize=(4.2 * n + 2.5, 3.2 * (2 if seam else 1)))
    axes = fig.subplots(2 if seam else 1, n, squeeze=False)
    cols = colors(variants)
    for k in range(n):
        names = sorted({v.datasets[k] for v in variants if k < len(v.datasets)})
        _loss_panel(axes[0][k], variants, cols, k, None)
        axes[0][k].set_title(f"D{k} validation loss ({', '.join(names)})", fontsize=9)
        if seam:
            _loss_panel(axes[1][k], variants, cols, k, seam)
            axes[1][k].set_title(f"D{k}: start of the last stage (stability gap)", fontsize=9)
    _legend(fig, axes[0][-1])
    return _save(fig, path)


def _loss_panel(ax, variants: list[Variant], cols: list, k: int, seam) -> None:
    """Dataset D_k's loss: each prefix run once, then each variant (seed mean ± std); with a
    `seam`, only the window around the start of the last stage, y-range fitted to it."""
    drawn, shown = set(), []  # prefix runs drawn; loss values inside the window
    for v, c in zip(variants, cols):
        for p in (p for r in v.runs for p in r.prefixes):
            pts = p.curves.get(_val_key(k)(v.runs[0]), [])
            if pts and p.run_id not in drawn:
                ax.plot(*zip(*pts), color="black", lw=1, alpha=0.7, label=None if drawn else "prefix (earlier stages)")
                drawn.add(p.run_id)
                shown += [y for t, y in pts if seam is None or _in(t, seam)]
        m = _mean_curve(v.runs, _val_key(k))
        if m is None:
            continue
        x, y, s = m
        # the zoom marks every eval in its window: the gap is only as sharp as the eval grid
        ax.plot(x, y, color=c, lw=1.4, ls="--" if v.baseline else "-", marker="." if len(x) < 3 or seam else None,
                ms=3 if seam else 6, label=v.label)
        if s.any():
            ax.fill_between(x, y - s, y + s, color=c, alpha=0.2, lw=0)
        if not (seam and v.baseline):  # the zoom fits the continual runs, not a baseline passing by
            shown += [yy for t, yy in zip(x, y) if seam is None or _in(t, seam)]
    if seam is not None:
        start, length = seam
        ax.set_xlim(start - ZOOM[0] * length, start + ZOOM[1] * length)
        if shown:
            pad = 0.05 * (max(shown) - min(shown) or 1.0)
            ax.set_ylim(min(shown) - pad, max(shown) + pad)
        ax.axvline(start, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("tokens since the start of the chain", fontsize=8)
    ax.set_ylabel("loss (nats)", fontsize=8)
    ax.tick_params(labelsize=7)


def _in(t: float, seam) -> bool:
    start, length = seam
    return start - ZOOM[0] * length <= t <= start + ZOOM[1] * length


def _legend(fig: Figure, ax, limit: int = 18) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles[:limit], labels[:limit], fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                  title=None if len(handles) <= limit else f"first {limit} of {len(handles)}", title_fontsize=7)


def learning_rate(variants: list[Variant], path: Path) -> Path:
    """The LR each variant's optimizer used (first seed), after its prefix's: re-warms are visible."""
    fig = Figure(layout="constrained", figsize=(8, 3.2))
    ax = fig.subplots()
    drawn = set()
    for v, c in zip(variants, colors(variants)):
        run = v.runs[0]
        for p in run.prefixes:
            if p.run_id not in drawn and p.curves.get("train/lr"):
                ax.plot(*zip(*p.curves["train/lr"]), color="black", lw=1,
                        label="prefix (earlier stages)" if not drawn else None)
                drawn.add(p.run_id)
        if run.curves.get("train/lr"):
            ax.plot(*zip(*run.curves["train/lr"]), color=c, lw=1.2, ls="--" if v.baseline else "-", label=v.label)
    ax.set_xlabel("tokens since the start of the chain", fontsize=8)
    ax.set_ylabel("learning rate", fontsize=8)
    ax.tick_params(labelsize=7)
    _legend(fig, ax)
    return _save(fig, path)


MARKERS = {"grid": "o", "baseline": "s", "merge": "D", "soup": "*", "ema": "^"}


def tradeoff(variants: list[Variant], path: Path) -> tuple[Path, list[int]]:
    """Forgetting vs adaptation: final upstream loss (x) against final downstream loss (y),
    with the Pareto front of the points that are choices (grid, merge, soup and EMA points; the
    baselines are references). Each merged run's θ(α) points are joined in α order. Points
    carry numbers, the legend their labels: clustered points would overprint full labels.
    Returns the front's indices into `variants`."""
    fig = Figure(layout="constrained", figsize=(6.5, 5))
    ax = fig.subplots()
    pts = [(v.stat("final/upstream_loss"), v.stat("final/downstream_loss")) for v in variants]
    choices = [i for i, v in enumerate(variants) if is_choice(v)] or list(range(len(variants)))
    front = [choices[i] for i in pareto_front([(pts[i][0].mean, pts[i][1].mean) for i in choices])]
    _alpha_curves(ax, variants, pts)
    for number, ((x, y), v, c) in enumerate(zip(pts, variants, colors(variants)), 1):
        if math.isnan(x.mean) or math.isnan(y.mean):
            continue
        kind = point_kind(v)
        ax.errorbar(x.mean, y.mean, xerr=x.std if x.n > 1 else None, yerr=y.std if y.n > 1 else None,
                    fmt=MARKERS[kind], color=c, ms=9 if kind == "soup" else 6, capsize=2,
                    label=f"{number}: {v.label}" + (f" ({kind})" if kind in ("soup", "ema") else ""))
        ax.annotate(str(number), (x.mean, y.mean), textcoords="offset points", xytext=(4, 3), fontsize=7)
    if front:
        fx, fy = zip(*[(pts[i][0].mean, pts[i][1].mean) for i in front])
        ax.step(fx, fy, where="post", color="crimson", lw=1.2, alpha=0.8, label="Pareto front")
        ax.plot(fx, fy, "o", mfc="none", mec="crimson", ms=11)
    _legend(fig, ax, limit=40)
    ax.set_xlabel("final upstream loss, nats (forgetting: lower is better)", fontsize=8)
    ax.set_ylabel("final downstream loss, nats (adaptation: lower is better)", fontsize=8)
    ax.tick_params(labelsize=7)
    return _save(fig, path), front


def _alpha_curves(ax, variants: list[Variant], pts) -> None:
    """One dotted line per merged run through its θ(α) points, in α order (no training on it)."""
    families: dict[tuple, list[int]] = {}
    for i, v in enumerate(variants):
        if point_kind(v) == "merge":
            families.setdefault(tuple((k, x) for k, x in v.values.items() if k != "merge.alpha"), []).append(i)
    drawn = False
    for members in families.values():
        members.sort(key=lambda i: num(variants[i].runs[0].params.get("merge.alpha", "")))
        xy = [(pts[i][0].mean, pts[i][1].mean) for i in members]
        if len(xy) > 1:
            ax.plot(*zip(*xy), ":", color="grey", lw=1.2, label=None if drawn else "θ(α) of one run (α = 0 → 1)")
            drawn = True


HEAT_METRICS = (("final/upstream_loss", "upstream"), ("final/downstream_loss", "downstream"),
                ("final/avg_loss", "avg"))


def heatmap(variants: list[Variant], keys: list[str], a: str, b: str, path: Path) -> Path:
    """Final upstream / downstream / avg loss over two swept keys (other swept keys averaged)."""
    grid = [v for v in variants if not v.baseline]
    ya = sorted({v.values[a] for v in grid}, key=num)
    xb = sorted({v.values[b] for v in grid}, key=num)
    fig = Figure(layout="constrained", figsize=(4.2 * len(HEAT_METRICS), 0.45 * len(ya) + 2.4))
    axes = fig.subplots(1, len(HEAT_METRICS))
    for ax, (metric, title) in zip(axes, HEAT_METRICS):
        cells = np.full((len(ya), len(xb)), np.nan)
        for i, j in itertools.product(range(len(ya)), range(len(xb))):
            vals = [v.stat(metric).mean for v in grid if v.values[a] == ya[i] and v.values[b] == xb[j]]
            vals = [x for x in vals if not math.isnan(x)]
            if vals:
                cells[i, j] = sum(vals) / len(vals)
        im = ax.imshow(cells, cmap="viridis_r", aspect="auto", origin="lower")
        for i, j in itertools.product(range(len(ya)), range(len(xb))):
            if not np.isnan(cells[i, j]):
                dark = im.norm(cells[i, j]) > 0.5  # viridis_r: high losses are the dark cells
                ax.text(j, i, f"{cells[i, j]:.3f}", ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
        ax.set_xticks(range(len(xb)), [short(x) for x in xb], fontsize=7)
        ax.set_yticks(range(len(ya)), [short(y) for y in ya], fontsize=7)
        ax.set_xlabel(b, fontsize=8)
        ax.set_ylabel(a, fontsize=8)
        others = [k for k in keys if k not in (a, b)]
        ax.set_title(f"final {title} loss" + (f"\n(mean over {', '.join(others)})" if others else ""), fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8).ax.tick_params(labelsize=7)
    return _save(fig, path)


def final_vs(variants: list[Variant], keys: list[str], key: str, path: Path, searched: bool = False) -> Path:
    """Final loss of every dataset and AVG (and the task-score average where the runs have one)
    against one swept key (the papers' replay curves),
    one line per combination of the other swept keys, error bars over seeds, baselines as
    dashed horizontal lines. Grid values sit evenly spaced, as in the papers; values an Optuna
    search drew (`searched`) are points on a numeric axis."""
    grid = [v for v in variants if not v.baseline]
    base = [(v, c) for v, c in zip(variants, colors(variants)) if v.baseline]
    xs = sorted({v.values[key] for v in grid}, key=num)
    categorical = len(xs) <= MAX_CATEGORIES and not searched
    pos = {x: i for i, x in enumerate(xs)}
    n = n_datasets(variants)
    panels = [(f"D{k} loss", lambda v, k=k: v.final(k)) for k in range(n)]
    panels.append(("AVG", lambda v: v.stat("final/avg_loss")))
    if any(v.stat("final/harness_avg").n for v in variants):  # harness tasks scored: 2403.08763 judges by both
        panels.append(("task-score average (harness)", lambda v: v.stat("final/harness_avg")))
    others = [] if searched else [k for k in keys if k != key]  # draws share no values: one cloud
    series: dict[tuple, list[Variant]] = {}
    for v in grid:
        series.setdefault(tuple(v.values[k] for k in others), []).append(v)
    fig = Figure(layout="constrained", figsize=(3.8 * len(panels) + 2.5, 3.3))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    from matplotlib import colormaps

    for ax, (title, get) in zip(axes, panels):
        for i, (combo, vs) in enumerate(series.items()):
            vs = sorted(vs, key=lambda v: num(v.values[key]))
            x = [pos[v.values[key]] if categorical else num(v.values[key])[1] for v in vs]
            s = [get(v) for v in vs]
            label = ", ".join(f"{k}={short(c)}" for k, c in zip(others, combo)) or ("trials" if searched else "continual")
            ax.errorbar(x, [q.mean for q in s], yerr=[q.std for q in s], marker="o", ms=4, capsize=2,
                        lw=1.2 if categorical else 0, color=colormaps["viridis"](0.9 * i / max(1, len(series) - 1)),
                        label=label)
        for v, c in base:
            s = get(v)
            if not math.isnan(s.mean):
                ax.axhline(s.mean, color=c, ls="--", lw=1, label=v.label)
                if s.n > 1:
                    ax.axhspan(s.mean - s.std, s.mean + s.std, color=c, alpha=0.1)
        if categorical:
            ax.set_xticks(range(len(xs)), [short(x) for x in xs], fontsize=7)
        ax.set_xlabel(key, fontsize=8)
        ax.set_title(f"final {title}", fontsize=9)
        ax.tick_params(labelsize=7)
    _legend(fig, axes[-1])
    return _save(fig, path)


def compute(rows: list, path: Path) -> Path:
    """Tokens each variant trained, relative to the union baseline: its own stage(s) solid, the
    cached prefix it reused hatched."""
    fig = Figure(layout="constrained", figsize=(7, 0.35 * len(rows) + 1.6))
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    own = [r.own_ratio for r in rows]
    prefix = [max(0.0, r.total_ratio - r.own_ratio) for r in rows]
    ax.barh(y, own, color="tab:blue", label="own stage(s)")
    ax.barh(y, prefix, left=own, color="white", edgecolor="tab:blue", hatch="//", label="reused prefix")
    ax.axvline(1.0, color="crimson", ls="--", lw=1, label="union baseline")
    ax.set_yticks(y, [r.label for r in rows], fontsize=7)
    ax.set_xlabel("training tokens / union baseline's", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)
