"""The grid of a multirun as a table: one row per point, the swept keys, the final losses."""

from __future__ import annotations

from cpt.config.schema import Tracking
from cpt.reports.analysis import SEED, num, swept_keys

COLUMNS = ("final/upstream_loss", "final/downstream_loss", "final/avg_loss")


def sweep_rows(tracking: Tracking, sweep_id: str) -> tuple[list[str], list[dict]]:
    """(swept keys, rows) of the finished runs of a sweep; swept = params that differ between rows
    (keys that come with a group choice, e.g. schedule.cooldown with schedule, left out)."""
    from cpt.store.tracking import Tracker

    runs = [r for r in Tracker(tracking).sweep_records(sweep_id) if r["status"] == "FINISHED"]
    params = [r["params"] for r in runs]
    keys = swept_keys(params) + ([SEED] if len({p.get(SEED) for p in params}) > 1 else [])
    rows = [{**{k: p.get(k, "") for k in keys}, **{c: r["metrics"].get(c) for c in COLUMNS}}
            for p, r in zip(params, runs)]
    rows.sort(key=lambda row: [num(row[k]) for k in keys])
    return keys, rows


def format_table(keys: list[str], rows: list[dict]) -> str:
    head = keys + ["upstream", "downstream", "avg"]
    body = [[str(r[k]) for k in keys] + [_cell(r, c) for c in COLUMNS] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*b) for b in body])


def _cell(row: dict, column: str) -> str:
    """A loss to 4 decimals, with its band where the row has one (`<column>±`: a forecast's)."""
    if row[column] is None:
        return "-"
    band = row.get(f"{column}±")
    return f"{row[column]:.4f}" + (f" ± {band:.4f}" if band is not None else "")


def sweep_table(tracking: Tracking, sweep_id: str) -> str:
    keys, rows = sweep_rows(tracking, sweep_id)
    return f"\nsweep {sweep_id}: {len(rows)} finished runs (final validation loss, nats)\n" + format_table(keys, rows)
