"""Measure the loss-law forecast on a finished grid: fit on a few of its runs, forecast the others.

For every held-out run: the forecast final loss of each dataset against the measured one (MAPE,
max error), against the naive predictor "the final loss of the nearest fitted run" (nearest in
the swept keys, each scaled to [0, 1] over the grid, log scale for lr.max), the Spearman rank
correlation of the objective over all runs, and whether the forecast best is the measured best
(or within 0.5 % of it). `--time` also times the fit on every run of the sweep: the point fit
(median of 3) against the target of under 5 s for a 12-run sweep, and the 20-replicate bootstrap
band of `cpt forecast`. Pure measurement: nothing is trained, nothing logged.

    python bench/forecast_grid.py --store sqlite:///outputs/mlflow.db --sweep <sweep id> \\
        --fit 'warmup=0 lr.max=1.5e-4' --fit 'warmup=0.02 lr.max=6e-4'
"""

from __future__ import annotations

import argparse
import math

import numpy as np

import _common  # noqa: F401  (this checkout's cpt on sys.path)


def _key_values(f, keys):
    return {k: float(f.run.params[k]) for k in keys}


def _scaled(values: dict, lo: dict, hi: dict) -> np.ndarray:
    out = []
    for k, v in values.items():
        if k.endswith("lr.max"):
            v, a, b = math.log(v), math.log(lo[k]), math.log(hi[k])
        else:
            a, b = lo[k], hi[k]
        out.append(0.0 if b == a else (v - a) / (b - a))
    return np.array(out)


def _matches(f, point: list[str]) -> bool:
    return all(math.isclose(float(f.run.params[k]), float(v)) for k, v in (o.split("=", 1) for o in point))


def measure(runs, fit_points: list[list[str]], keys: list[str], law: str, objective: str) -> dict:
    from scipy.stats import spearmanr

    from cpt.forecast.sweep import chain_of, fit_datasets, forecast, measured

    fitted = [r for r in runs if any(_matches(r, p) for p in fit_points)]
    held = [r for r in runs if r not in fitted]
    if len(fitted) != len(fit_points) or not held:
        raise SystemExit(f"--fit names {len(fit_points)} points, {len(fitted)} runs match; {len(held)} held out")
    names = [d.name for d in fitted[0].cfg.shift.datasets]
    curves = [measured(chain_of(f.cfg), f.points, with_prefix=i == 0) for i, f in enumerate(fitted)]
    fits = fit_datasets(curves, names, law, 0)
    values = {id(r): _key_values(r, keys) for r in runs}
    lo = {k: min(v[k] for v in values.values()) for k in keys}
    hi = {k: max(v[k] for v in values.values()) for k in keys}
    out = {"fit_on": [" ".join(p) for p in fit_points], "held_out": len(held), "laws": {n: f.best.law for n, f in fits.items()}}
    pred = {id(r): forecast(fits, r.cfg, "", []).metrics for r in runs}
    for n in names:
        key = f"final/{n}/loss"
        ape = [abs(pred[id(r)][key] - r.run.metrics[key]) / r.run.metrics[key] for r in held]
        nearest = [min(fitted, key=lambda f: np.linalg.norm(_scaled(values[id(r)], lo, hi) - _scaled(values[id(f)], lo, hi)))
                   for r in held]
        naive = [abs(f.run.metrics[key] - r.run.metrics[key]) / r.run.metrics[key] for r, f in zip(held, nearest)]
        worst = held[int(np.argmax(ape))]
        out[n] = {"mape": float(np.mean(ape)), "max_ape": float(np.max(ape)), "naive_mape": float(np.mean(naive)),
                  "worst": " ".join(f"{k}={worst.run.params[k]}" for k in keys),
                  "worst_sign": "under" if pred[id(worst)][key] < worst.run.metrics[key] else "over"}
    got = [(pred[id(r)][objective], r.run.metrics[objective]) for r in runs]
    out["spearman"] = float(spearmanr(*zip(*got))[0])
    best_f = min(range(len(got)), key=lambda i: got[i][0])
    best_m = min(range(len(got)), key=lambda i: got[i][1])
    out["best_forecast"] = " ".join(f"{k}={runs[best_f].run.params[k]}" for k in keys)
    out["best_measured"] = " ".join(f"{k}={runs[best_m].run.params[k]}" for k in keys)
    out["best_gap"] = (got[best_f][1] - got[best_m][1]) / got[best_m][1]  # measured loss of the forecast best vs the best
    return out


def fit_seconds(runs, law: str, bootstrap: int, repeats: int) -> float:
    """Median wall time of fitting the laws to every run's curves (what `cpt forecast` fits)."""
    import statistics
    import time

    from cpt.forecast.sweep import chain_of, fit_datasets, measured

    names = [d.name for d in runs[0].cfg.shift.datasets]
    curves = [measured(chain_of(f.cfg), f.points, with_prefix=i == 0) for i, f in enumerate(runs)]
    took = []
    for _ in range(repeats):
        t = time.perf_counter()
        fit_datasets(curves, names, law, bootstrap)
        took.append(time.perf_counter() - t)
    return statistics.median(took)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", required=True, help="tracking URI, e.g. sqlite:///outputs/mlflow.db")
    p.add_argument("--sweep", required=True, help="the sweep id (its multirun directory's name)")
    p.add_argument("--fit", action="append", required=True, metavar="'K=V …'", help="a point to fit on (repeat)")
    p.add_argument("--keys", default="warmup,lr.max", help="the swept keys (comma-separated)")
    p.add_argument("--law", default="auto")
    p.add_argument("--objective", default="final/avg_loss")
    p.add_argument("--time", action="store_true", help="also time the fit on every run (point fit, bootstrap band)")
    a = p.parse_args()
    from cpt.config.schema import Tracking
    from cpt.forecast.runs import load_fitted

    runs = load_fitted(Tracking(a.store, "cpt", "/tmp/unused"), [a.sweep])
    r = measure(runs, [f.split() for f in a.fit], a.keys.split(","), a.law, a.objective)
    print(f"sweep {a.sweep}: {len(runs)} runs, fitted on {len(a.fit)} ({'; '.join(r['fit_on'])}), laws {r['laws']}")
    for n in [k for k in r if isinstance(r[k], dict) and "mape" in r[k]]:
        m = r[n]
        print(f"  {n:<12} MAPE {100 * m['mape']:.2f}%  max {100 * m['max_ape']:.2f}%  "
              f"naive (nearest fitted run) {100 * m['naive_mape']:.2f}%  ratio {m['mape'] / m['naive_mape']:.2f}  "
              f"(worst: {m['worst']}, {m['worst_sign']}estimated)")
    print(f"  Spearman rho of {a.objective}: {r['spearman']:.3f}")
    print(f"  forecast best {r['best_forecast']}; measured best {r['best_measured']}; "
          f"the forecast best measures {100 * r['best_gap']:.2f}% above the best")
    if a.time:
        point, band = fit_seconds(runs, a.law, 0, 3), fit_seconds(runs, a.law, 20, 1)
        print(f"  fit on all {len(runs)} runs: {point:.2f} s (target under 5 s: {point / 5:.2f} of it); "
              f"with the 20-replicate bootstrap band (cpt forecast's default): {band:.1f} s")


if __name__ == "__main__":
    main()
