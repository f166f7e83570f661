"""``hydra/sweeper=forecast``: the informative points, a fit, then only the promising points."""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf

from cpt.cli.sweep_check import check_sweeper_jobs
from hydra_plugins.cpt_grid_sweeper.sweeper import _as_list, split

from . import config as _config  # noqa: F401  (registers the config with Hydra)


class ForecastSweeper(Sweeper):
    def __init__(self, grid: Optional[Dict[str, str]] = None, params: Optional[Dict[str, str]] = None,
                 first: Optional[List[Any]] = None, margin: float = 0.005, budget: float = 0.5,
                 law: str = "auto") -> None:
        self.grid, self.common = dict(grid or {}), dict(params or {})
        self.first = [_as_list(f) for f in (first or [])]
        self.margin, self.budget, self.law = margin, budget, law
        self.config = self.launcher = self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        from cpt.config.schema import parse
        from cpt.errors import UserError
        from cpt.forecast.select import first_points, to_train

        loader = self.hydra_context.config_loader
        jobs = split(self.grid, self.common, [], list(arguments), OverridesParser.create(config_loader=loader))
        check_sweeper_jobs(jobs, loader, self.config)  # every value before the first job trains
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        base = parse(self.config)
        try:
            _check(base.objective, self.margin, self.budget)
            first = first_points(jobs, self.first)
        except (UserError, ValueError) as e:
            _stop(e if isinstance(e, UserError) else UserError(str(e)))
        returns = [self._launch(jobs, first, 0)]
        measured = [float(r.return_value) for r in returns[0]]
        try:
            forecasts = self._forecasts(base, jobs, [i for i in range(len(jobs)) if i not in first])
        except UserError as e:  # e.g. no stage-0 run in this store to fit the chain's curve on
            _stop(e)
        if forecasts and base.objective not in next(iter(forecasts.values())).metrics:
            _stop(UserError(f"objective={base.objective}: the laws forecast final losses, forgetting and "
                            f"adaptation only; allowed: {', '.join(next(iter(forecasts.values())).metrics)}"))
        predicted = {i: f.metrics[base.objective] for i, f in forecasts.items()}
        chosen = to_train(predicted, measured, len(jobs), self.margin, self.budget)
        print(f"forecast sweeper: fitted on {len(first)} of {len(jobs)} points; training {len(chosen)} more "
              f"(within {self.margin:.1%} of the best forecast), {len(jobs) - len(first) - len(chosen)} forecast only")
        if chosen:
            returns.append(self._launch(jobs, chosen, len(first)))
        from cpt.forecast.points import log_forecast_only

        log_forecast_only(base.tracking, sweep_dir.name, [f for i, f in forecasts.items() if i not in chosen],
                          self._fit_ids)
        return returns

    def _launch(self, jobs: List[List[str]], indices: Sequence[int], start: int):
        results = self.launcher.launch([list(jobs[i]) for i in indices], initial_job_idx=start)
        for r in results:
            _ = r.return_value  # a failed job raises its error here, as in Hydra's basic sweeper
        return results

    def _forecasts(self, base, jobs: List[List[str]], indices: List[int]) -> Dict[int, Any]:
        """The fit on this sweep's finished runs, and the forecast of every point in `indices`."""
        from cpt.config.schema import parse
        from cpt.forecast.runs import load_fitted
        from cpt.forecast.sweep import chain_of, fit_datasets, forecast, measured

        fitted = load_fitted(base.tracking, [Path(self.config.hydra.sweep.dir).name])
        self._fit_ids = [f.run.run_id for f in fitted]
        names = [d.name for d in fitted[0].cfg.shift.datasets]
        curves = [measured(chain_of(f.cfg), f.points, with_prefix=k == 0) for k, f in enumerate(fitted)]
        fits = fit_datasets(curves, names, self.law, 0, seed=base.seed)
        loader = self.hydra_context.config_loader
        return {i: forecast(fits, parse(loader.load_sweep_config(self.config, jobs[i])), " ".join(jobs[i]), jobs[i])
                for i in indices}


def _stop(error) -> None:
    """One line and a FAILED sweep parent: Hydra prints an exception raised here with a traceback."""
    from cpt.errors import report
    from cpt.sweep.hydra_callbacks import abandon

    abandon()
    raise SystemExit(report(error))


def _check(objective, margin: float, budget: float) -> None:
    from cpt.errors import UserError

    if isinstance(objective, (list, tuple)):
        raise UserError(f"objective={list(objective)}: hydra/sweeper=forecast ranks points by one metric; "
                        "allowed: a single metric such as final/avg_loss")
    if not 0 <= margin:
        raise UserError(f"hydra.sweeper.margin={margin}: allowed >= 0")
    if not 0 < budget <= 1:
        raise UserError(f"hydra.sweeper.budget={budget}: allowed 0 < budget <= 1")
