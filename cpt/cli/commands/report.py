"""`cpt report <sweep or experiment> [overrides]`: the trade-off report of a sweep, from MLflow."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("report", help="write outputs/reports/<name>/: tables, curves, heatmaps, Pareto front")
    p.add_argument("id", help="a sweep id (the multirun folder's name, tag cpt.sweep_id) or an MLflow experiment name")
    p.add_argument("overrides", nargs="*",
                   help="Hydra overrides locating the store, as for run.py (e.g. paths.output_dir=/data/outputs)")
    p.add_argument("--name", help="folder name under reports/ (default: the id)")
    return p


def main(args) -> int:
    from cpt.cli.compose import compose_run_config
    from cpt.reports import write_report

    cfg = compose_run_config(args.overrides)
    path = write_report(cfg.tracking, args.id, cfg.paths.root, args.name)
    print(f"report: {path}")
    return 0
