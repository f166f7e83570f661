"""The report's forecast section: the loss laws (cpt/forecast/) fitted on the sweep's first
continual runs forecast the others, checked against what those runs measured."""

from __future__ import annotations

import math
from dataclasses import dataclass

FIT_RUNS = 2  # the first runs of the sweep (by start time) the laws are fitted on


@dataclass
class Check:
    fit_on: list  # load.Run the laws were fitted on
    rows: list[tuple]  # (run, fitted?, forecast) for every continual run
    names: list[str]
    objective: str

    def errors(self, name: str) -> tuple[float, float]:
        """(MAPE, max absolute error) of the final loss of `name` over the held-out runs."""
        key = f"final/{name}/loss"
        err = [(abs(f.metrics[key] - r.metrics[key]), r.metrics[key]) for r, fitted, f in self.rows
               if not fitted and key in r.metrics]
        if not err:
            return math.nan, math.nan
        return sum(e / m for e, m in err) / len(err), max(e for e, _ in err)

    def rank(self) -> tuple[float, bool]:
        """(Spearman ρ of forecast vs measured objective over every run, is the forecast best the measured best)."""
        from scipy.stats import spearmanr

        pairs = [(f.metrics[self.objective], r.metrics[self.objective]) for r, _, f in self.rows
                 if self.objective in r.metrics and self.objective in f.metrics]
        rho = float(spearmanr(*zip(*pairs))[0]) if len(pairs) > 2 else math.nan
        best = min(range(len(pairs)), key=lambda i: pairs[i][0]) == min(range(len(pairs)), key=lambda i: pairs[i][1])
        return rho, best


def check(runs: list, n_fit: int = FIT_RUNS) -> Check | str:
    """The check, or why there is none (a sentence)."""
    from cpt.forecast.runs import continual, fitted
    from cpt.forecast.sweep import chain_of, fit_datasets, forecast, measured

    try:
        cands = [fitted(r) for r in runs if continual(r) and r.prefixes]
    except Exception as e:  # a config that no longer parses: no section, not no report
        return f"the runs' configs could not be rebuilt ({e})"
    names = [d.name for d in cands[0].cfg.shift.datasets] if cands else []
    cands = [c for c in cands if [d.name for d in c.cfg.shift.datasets] == names]
    if len(cands) <= n_fit:
        return f"needs more than {n_fit} continual runs of one chain (has {len(cands)})"
    try:
        curves = [measured(chain_of(c.cfg), c.points, with_prefix=i == 0) for i, c in enumerate(cands[:n_fit])]
        fits = fit_datasets(curves, names)
        rows = [(c.run, i < n_fit, forecast(fits, c.cfg, c.run.name, [])) for i, c in enumerate(cands)]
    except ValueError as e:
        return f"the fit failed: {e}"
    objective = cands[0].cfg.objective
    objective = objective if isinstance(objective, str) and objective.startswith("final/") else "final/avg_loss"
    return Check([c.run for c in cands[:n_fit]], rows, names, objective)


def section(runs: list, md_table, label_of, h: str = "##") -> list[str]:
    """report.md's lines, headed `h`; `label_of(run)`: the run's label in the report's tables."""
    c = check(runs)
    out = ["", f"{h} Forecast", ""]
    if isinstance(c, str):
        return out + [f"No forecast: {c}."]
    rho, same = c.rank()
    head = ["run", "fitted"] + [f"{n} forecast / measured" for n in c.names] + [f"{c.objective} forecast / measured"]
    rows = [[label_of(r), "yes" if fitted else "no"]
            + [f"{f.metrics[k]:.4f} ± {f.band.get(k, math.nan):.4f} / {r.metrics.get(k, math.nan):.4f}"
               for k in [*(f"final/{n}/loss" for n in c.names), c.objective]] for r, fitted, f in c.rows]
    errs = [[n, f"{100 * m:.2f}%", f"{x:.4f}"] for n in c.names for m, x in [c.errors(n)]]
    return out + [
        f"The law of 2505.07796 Eq. 4 (per dataset, cpt/forecast/law.py), fitted on the first {len(c.fit_on)} "
        f"continual runs ({', '.join(label_of(r) for r in c.fit_on)}), forecasts every run's final loss from "
        "its schedule alone (band: ± 2·RMSE of the fit).", "", md_table(head, rows), "",
        "Held-out runs' final-loss error per dataset:", "", md_table(["dataset", "MAPE", "max error (nats)"], errs), "",
        f"Spearman rank correlation of `{c.objective}`, forecast vs measured, over all {len(c.rows)} runs: "
        f"{'-' if math.isnan(rho) else f'{rho:.3f}'}; the forecast best is {'' if same else 'not '}the measured best."]
