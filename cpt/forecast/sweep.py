"""Fit the laws of cpt/forecast/law.py to the logged val curves of finished runs and forecast
every dataset's curve and final metrics for other configs, with a band from the fit (pure: runs
come in as configs and curves, nothing is read from MLflow here).

The band: a residual bootstrap (resample the fit's log residuals, refit, 5–95 % of the
forecasts) when `bootstrap` > 0, else ± 2·RMSE of the fit (the final-loss metrics only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cpt.forecast.law import Curve, Fit, chain_lrs, chain_starts, evaluate, fit, predict
from cpt.plan.metrics import final_metrics
from cpt.plan.stages import build_plan, eval_steps

QUANTILES = (0.05, 0.95)
SKIP = 0.25  # fraction of the prefix's steps left out of a fit


@dataclass
class Chain:
    """What the laws need of one config: its chain's per-step LRs and stage starts (steps)."""

    names: list[str]
    lrs: np.ndarray
    starts: list[int]
    batch_tokens: int
    replay: float

    @property
    def transfer(self) -> int:
        return self.starts[-1]


def chain_of(cfg) -> Chain:
    """The chain of a recipe=cpt config; other recipes have no continual stage to forecast."""
    if cfg.recipe.name != "cpt" or len(cfg.shift.datasets) < 2:
        raise ValueError(f"recipe={cfg.recipe.name}: only continual (recipe=cpt) runs can be forecast")
    stages = build_plan(cfg)
    return Chain([d.name for d in cfg.shift.datasets], chain_lrs(stages), chain_starts(stages),
                 cfg.batch.tokens, stages[-1].replay)


def measured(chain: Chain, curves: dict[str, list[tuple[int, float]]], with_prefix: bool = True,
             skip: float = SKIP) -> dict[str, Curve]:
    """Each dataset's Curve from logged (tokens since the chain began, loss) points: the prefix's
    from `skip` of its steps on (the first steps are a transient no law models; docs/forecast.md),
    none past the transfer (an infinite schedule's annealed tail is a branch), then the run's own."""
    out = {}
    first = skip * chain.transfer if with_prefix else chain.transfer
    for name in chain.names:
        points = sorted({int(t) // chain.batch_tokens: v for t, v in curves.get(name, [])}.items())
        points = [(s, v) for s, v in points if first <= s <= len(chain.lrs)]
        if points:
            steps, loss = map(np.array, zip(*points))
            out[name] = Curve(chain.lrs, steps, loss.astype(float), chain.transfer, chain.replay)
    return out


@dataclass
class DatasetFit:
    best: Fit
    members: list[Fit] = field(default_factory=list)  # bootstrap refits (empty: RMSE band)


def domain_of(chain_names: list[str], name: str) -> str:
    return "downstream" if name == chain_names[-1] else "upstream"


def fit_datasets(curves: list[dict[str, Curve]], names: list[str], law: str = "auto", bootstrap: int = 0,
                 seed: int = 0) -> dict[str, DatasetFit]:
    """One law per dataset over every run's curve of it; `auto`: cpt-replay where the continual
    curves have two or more replay ratios (its Eq. 8 needs them), else cpt (2505.07796 Eq. 4)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in names:
        cs = [c[name] for c in curves if name in c]
        chosen = law if law != "auto" else "cpt-replay" if len({c.replay for c in cs}) > 1 else "cpt"
        domain = domain_of(names, name)
        best = fit(cs, chosen, domain=domain)
        out[name] = DatasetFit(best, [_refit(best, cs, rng) for _ in range(bootstrap)])
    return out


def _refit(best: Fit, cs: list[Curve], rng) -> Fit:
    """The fit of one residual-bootstrap replicate: the fitted curve times resampled log residuals."""
    fitted = [evaluate(best, c) for c in cs]
    res = np.concatenate([np.log(c.loss) - np.log(f) for c, f in zip(cs, fitted)])
    res = res[np.isfinite(res)]
    boot = [Curve(c.lrs, c.steps, f * np.exp(rng.choice(res, len(f))), c.transfer, c.replay) for c, f in zip(cs, fitted)]
    return fit(boot, best.law, domain=best.domain, lam=best.lam, start=best)


@dataclass
class Forecast:
    label: str
    overrides: list[str]
    chain: Chain
    steps: np.ndarray  # chain steps the curves are forecast at
    curves: dict[str, np.ndarray]  # dataset -> loss at `steps`
    bands: dict[str, tuple[np.ndarray, np.ndarray]]  # dataset -> (low, high) at `steps`
    metrics: dict[str, float]  # final/*, forgetting, adaptation as a run would log them
    band: dict[str, float] = field(default_factory=dict)  # metric -> half-width of its band

    @property
    def tokens(self) -> np.ndarray:
        return self.steps * self.chain.batch_tokens


def forecast_steps(cfg, chain: Chain) -> np.ndarray:
    """Steps of the chain at which a run of `cfg` would evaluate: every stage's own eval grid."""
    from cpt.plan.schedules import warmup_steps

    steps = set()
    for stage, start in zip(build_plan(cfg), chain.starts):
        e = cfg.eval
        grid = eval_steps(stage.steps, warmup_steps(stage.schedule, stage.steps), e.interval_steps,
                          e.warmup_interval_steps, e.dense_fraction, e.dense_evals)
        steps.update(start + s for s in grid if start + s <= len(chain.lrs))
    s1 = np.cumsum(chain.lrs)
    return np.array(sorted(s for s in steps if s > 0 and s1[s - 1] > 0))  # S1 = 0: the law is infinite there


def _metrics(chain: Chain, at: dict[str, callable]) -> dict[str, float]:
    """The run's closing numbers (cpt/plan/metrics.py, the one definition) from forecast losses:
    each dataset's reference is its loss at the end of the stage that trained on it."""
    names, ends = chain.names, chain.starts[1:] + [len(chain.lrs)]
    final = {n: at[n](len(chain.lrs)) for n in names}
    ref = {n: at[n](ends[k]) for k, n in enumerate(names[:-1])}
    return final_metrics(names, final, ref, at[names[-1]](chain.transfer))


def forecast(fits: dict[str, DatasetFit], cfg, label: str, overrides: list[str]) -> Forecast:
    chain = chain_of(cfg)
    steps = forecast_steps(cfg, chain)
    kw = dict(transfer=chain.transfer, replay=chain.replay)

    def at(f: Fit):
        return lambda s: float(predict(f, chain.lrs, [s], **kw)[0])

    curves = {n: predict(fits[n].best, chain.lrs, steps, **kw) for n in chain.names}
    metrics = _metrics(chain, {n: at(fits[n].best) for n in chain.names})
    members = min(len(fits[n].members) for n in chain.names)
    if members:
        sims = [{n: predict(fits[n].members[i], chain.lrs, steps, **kw) for n in chain.names} for i in range(members)]
        bands = {n: tuple(np.nanquantile([s[n] for s in sims], QUANTILES, axis=0)) for n in chain.names}
        ms = [_metrics(chain, {n: at(fits[n].members[i]) for n in chain.names}) for i in range(members)]
        band = {k: float(np.diff(np.nanquantile([m[k] for m in ms], QUANTILES))[0] / 2) for k in metrics}
    else:
        rmse = {n: 2 * fits[n].best.error["rmse"] for n in chain.names}
        bands = {n: (curves[n] - rmse[n], curves[n] + rmse[n]) for n in chain.names}
        up = float(np.mean([rmse[n] for n in chain.names[:-1]]))
        band = {**{f"final/{n}/loss": rmse[n] for n in chain.names}, "final/upstream_loss": up,
                "final/downstream_loss": rmse[chain.names[-1]], "final/avg_loss": (up + rmse[chain.names[-1]]) / 2}
    return Forecast(label, overrides, chain, steps, curves, bands, metrics, band)
