"""Trade-off reports of a sweep: `cpt report <sweep or experiment>` and the end of every multirun.

- load      -- the finished runs, their curves and prefix chains, from MLflow (via cpt.store.tracking)
- analysis  -- chains (the report's facets), swept keys, variants (seeds aggregated), baselines, Pareto front, compute (pure)
- plots     -- the figures: curves, learning rate, trade-off, heatmaps, final loss vs a key, compute
- markdown  -- report.md, table.csv, runs.csv
- build     -- write_report: all of the above, one section per chain, into outputs/reports/<name>/, logged to MLflow
"""

from cpt.reports.build import write_report

__all__ = ["write_report"]
