"""`cpt forecast <run or sweep ids> [overrides] [--at 'k=v,w ...'] [-cd sweeps -cn <sweep>]`:
fit the loss laws (cpt/forecast/law.py) to finished runs' curves, forecast other configs."""

from __future__ import annotations

import re
from pathlib import Path


def add_parser(sub):
    p = sub.add_parser("forecast", help="fit loss laws to finished runs and forecast untried configs")
    p.add_argument("args", nargs="+", metavar="ID_OR_OVERRIDE",
                   help="MLflow run ids or sweep ids to fit on; key=value Hydra overrides for every config "
                        "(the store's location, the base of every forecast point)")
    p.add_argument("--at", action="append", default=[], metavar="'K=V[,V…] …'",
                   help="a point (or, with comma lists, a grid) to forecast; repeatable")
    p.add_argument("-cd", "--config-dir", help="with -cn: forecast every point of this sweep's grid")
    p.add_argument("-cn", "--config-name", help="a sweep config (e.g. warmup-lr-grid in sweeps/)")
    p.add_argument("--runs", type=int, help="fit on only the first N of the runs named")
    p.add_argument("--law", default="auto", choices=["auto", "cpt", "cpt-replay"],
                   help="auto: cpt-replay where the runs have two or more replay ratios, else cpt")
    p.add_argument("--bootstrap", type=int, default=20, help="residual-bootstrap refits for the band (0: ± 2·RMSE)")
    p.add_argument("--name", help="folder under outputs/forecasts/ (default: the first id)")
    return p


def points(args, base: list[str]) -> list[tuple[list[str], tuple]]:
    """(overrides, (sweep config dir, name) or ()) of every point to forecast; none named: the base."""
    from cpt.forecast.configs import grid_points

    out = [(p, ()) for at in args.at for p in grid_points(dict(o.split("=", 1) for o in at.split()))]
    if args.config_name:
        import yaml

        cd = Path(args.config_dir or "sweeps")
        sweeper = (yaml.safe_load((cd / f"{args.config_name}.yaml").read_text()).get("hydra") or {}).get("sweeper") or {}
        grid = {**sweeper.get("grid", {}), **sweeper.get("params", {})}
        cli = dict(o.split("=", 1) for o in base if o.split("=", 1)[0] in grid)  # a grid key on the CLI replaces its axis
        out += [(p, (str(cd), args.config_name)) for p in grid_points({**grid, **cli}, sweeper.get("baselines"))]
    return out or [([], ())]


def compose_point(base: list[str], point: list[str], sweep: tuple):
    """A point's RunConfig: conf/config.yaml, or the sweep's own config (its defaults and keys)."""
    from cpt.cli.compose import CONF_DIR, compose_run_config

    if not sweep:
        return compose_run_config([*base, *point])
    from hydra import compose, initialize_config_dir

    from cpt.config.schema import parse

    config_dir, name = sweep
    with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
        return parse(compose(name, overrides=[*base, *point, f"hydra.searchpath=[file://{CONF_DIR}]"],
                             return_hydra_config=True))


def main(args) -> int:
    from cpt.cli.compose import compose_run_config
    from cpt.errors import UserError
    from cpt.forecast.runs import load_fitted
    from cpt.forecast.sweep import fit_datasets, measured

    ids = [a for a in args.args if "=" not in a]
    base = [a for a in args.args if "=" in a]
    if not ids:
        raise UserError("forecast: name at least one MLflow run id or sweep id to fit on")
    cfg = compose_run_config(base)
    runs = load_fitted(cfg.tracking, ids, base)[: args.runs]
    names = [d.name for d in runs[0].cfg.shift.datasets]
    from cpt.forecast.sweep import chain_of

    curves = [measured(chain_of(f.cfg), f.points, with_prefix=i == 0) for i, f in enumerate(runs)]
    fits = fit_datasets(curves, names, args.law, args.bootstrap, seed=cfg.seed)
    forecasts = _forecasts(fits, base, points(args, base))
    out = cfg.paths.root / "forecasts" / re.sub(r"[^\w.\-]", "_", args.name or ids[0])
    out.mkdir(parents=True, exist_ok=True)
    print(render(forecasts, fits, runs, cfg.objective))
    write(forecasts, runs, names, out)
    run_id = log_forecast(cfg.tracking, fits, forecasts, runs, out)
    print(f"forecast: {out / 'forecast.png'}; MLflow run {run_id} (cpt.kind=forecast)")
    return 0


def _forecasts(fits, base, pts) -> list:
    from cpt.errors import UserError
    from cpt.forecast.sweep import forecast

    out = []
    for point, cd in pts:
        cfg = compose_point(base, point, cd)
        try:
            out.append(forecast(fits, cfg, " ".join(point) or "base", point))
        except ValueError as e:  # a baseline of the sweep (union, scratch …): no continual stage
            print(f"skipped {' '.join(point)}: {e}")
    if not out:
        raise UserError("forecast: no continual config to forecast")
    return out


def table_rows(forecasts) -> tuple[list[str], list[dict]]:
    """The sweep table's keys and rows (cpt/sweep/table.py), forecast means with their bands."""
    from cpt.reports.analysis import num
    from cpt.sweep.table import COLUMNS

    keys = list(dict.fromkeys(o.split("=", 1)[0] for f in forecasts for o in f.overrides))
    rows = []
    for f in forecasts:
        values = dict(o.split("=", 1) for o in f.overrides)
        rows.append({**{k: values.get(k, "") for k in keys}, **{c: f.metrics.get(c) for c in COLUMNS},
                     **{f"{c}±": f.band.get(c) for c in COLUMNS}})
    rows.sort(key=lambda r: [num(r[k]) for k in keys])
    return keys, rows


def best(forecasts, objective):
    """The forecast point with the lowest objective (a single metric; None for several)."""
    if isinstance(objective, (list, tuple)) or not all(objective in f.metrics for f in forecasts):
        return None
    return min(forecasts, key=lambda f: f.metrics[objective])


def render(forecasts, fits, runs, objective) -> str:
    from cpt.sweep.table import format_table

    lines = [f"fitted on {len(runs)} runs ({', '.join(f.run.run_id[:8] for f in runs)}):"]
    lines += [f"  {n}: law {f.best.law}, RMSE {f.best.error['rmse']:.4f} nats, MAPE {100 * f.best.error['mape']:.2f}%"
              for n, f in fits.items()]
    lines += ["", f"forecast: {len(forecasts)} points (final validation loss, nats; band: "
              + ("5-95% of the residual bootstrap)" if next(iter(fits.values())).members else "± 2·RMSE)"),
              format_table(*table_rows(forecasts))]
    b = best(forecasts, objective)
    if b is not None:
        lines.append(f"predicted best ({objective}): {b.label} {b.metrics[objective]:.4f} ± {b.band.get(objective, 0):.4f}")
    return "\n".join(lines)


def write(forecasts, runs, names, out: Path) -> None:
    import csv

    from cpt.forecast.plot import forecast_png

    measured = [(f.run.name or f.run.run_id[:8], f.points) for f in runs]
    forecast_png(forecasts, measured, names, out / "forecast.png")
    keys = sorted({k for f in forecasts for k in f.metrics})
    with open(out / "forecast.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["point"] + [f"{k}{s}" for k in keys for s in ("", "_band")])
        for f in forecasts:
            w.writerow([f.label] + [x for k in keys for x in (f.metrics.get(k, ""), f.band.get(k, ""))])


def metric_label(label: str) -> str:
    """A point's label as MLflow metric keys allow it (letters, digits, _-. /: only)."""
    return re.sub(r"[^\w\-. /:]", "_", label.replace("=", ":"))


def log_forecast(tracking, fits, forecasts, runs, out: Path) -> str:
    """One MLflow run, cpt.kind=forecast: the fit's params and errors, forecasts under forecast/*."""
    from cpt.store.tracking import Tracker

    tracker = Tracker(tracking)
    params = {"forecast.fit_runs": ",".join(f.run.run_id for f in runs),
              "forecast.bootstrap": len(next(iter(fits.values())).members)}
    params.update({f"forecast.{n}.law": f.best.law for n, f in fits.items()})
    params.update({f"forecast.{n}.{k}": v for n, f in fits.items() for k, v in f.best.params.items()})
    log = tracker.start_run(f"forecast {out.name}", params, {"cpt.kind": "forecast", "cpt.forecast": out.name})
    log.log_metrics({f"fit/{n}/{k}": v for n, f in fits.items() for k, v in f.best.error.items()}, 0)
    for f in forecasts:
        label = metric_label(f.label)
        log.log_metrics({f"forecast/{label}/{k}": v for k, v in f.metrics.items()}, 0)
        log.log_metrics({f"forecast/{label}/band/{k}": v for k, v in f.band.items()}, 0)
    tracker.client.log_artifacts(log.run_id, str(out))
    log.end("FINISHED")
    return log.run_id
