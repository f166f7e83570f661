"""forecast.png: every dataset's forecast (dashed, with its band) over the measured curves."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

DPI = 110


def forecast_png(forecasts: list, measured: list[tuple[str, dict]], names: list[str], path: Path) -> Path:
    """`forecasts`: cpt.forecast.sweep.Forecast; `measured`: (label, {dataset: [(tokens, loss)]})
    of the runs fitted or held out. One panel per dataset; a forecast and the measured run of the
    same label share a colour."""
    from matplotlib import colormaps

    labels = list(dict.fromkeys([f.label for f in forecasts] + [m for m, _ in measured]))
    colour = {lab: colormaps["viridis"](0.9 * i / max(1, len(labels) - 1)) for i, lab in enumerate(labels)}
    fig = Figure(layout="constrained", figsize=(4.6 * len(names) + 2.5, 3.4))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names):
        for label, points in measured:
            if points.get(name):
                ax.plot(*zip(*points[name]), color=colour[label], lw=1.2, label=f"{label} (measured)")
        for f in forecasts:
            if name in f.curves:
                lo, hi = f.bands[name]
                ax.plot(f.tokens, f.curves[name], color=colour[f.label], lw=1.2, ls="--", label=f"{f.label} (forecast)")
                ax.fill_between(f.tokens, lo, hi, color=colour[f.label], alpha=0.15, lw=0)
        seen = [v for _, pts in measured for _, v in pts.get(name, [])] + [v for f in forecasts for v in f.curves.get(name, [])]
        if seen:  # a bootstrap band far outside the fitted range would flatten every curve
            pad = 0.1 * (max(seen) - min(seen) or 1.0)
            ax.set_ylim(min(seen) - pad, max(seen) + pad)
        ax.set_title(f"{name} validation loss", fontsize=9)
        ax.set_xlabel("tokens")
        ax.set_ylabel("loss (nats)")
    handles, texts = axes[-1].get_legend_handles_labels()
    fig.legend(handles[:24], texts[:24], loc="outside right upper", fontsize=7)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path
