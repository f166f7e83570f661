"""`write_report`: load the runs → analyse → draw → write report.md → log it all to MLflow."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import uuid
from pathlib import Path

from cpt.config.schema import Tracking
from cpt.errors import UserError


def write_report(tracking: Tracking, report_id: str, output_dir: Path, name: str | None = None) -> Path:
    """Write <output_dir>/reports/<name>/ (name: the report id) and log its files as the
    artifacts of one MLflow run: the sweep's parent (cpt.kind=sweep), or for an experiment a run
    tagged cpt.kind=report. Returns the path of report.md."""
    from cpt.reports.load import load
    from cpt.store.tracking import Tracker

    if not re.fullmatch(r"[\w.\-: ]+", report_id):
        raise UserError(f"report id {report_id!r}: allowed letters, digits and _ . - : (a sweep or experiment name)")
    name = name or report_id
    if not re.fullmatch(r"[\w.\-]+", name):
        raise UserError(f"--name {name!r}: allowed letters, digits and _ . - (it names a folder)")
    loaded = load(tracking, report_id)
    final = Path(output_dir) / "reports" / name
    with _replacing(final) as tmp:
        render(loaded, tmp)
    # A sweep's report goes to the sweep's parent run; an experiment's to a run of its own.
    tags = {"cpt.kind": "sweep", "cpt.sweep_id": report_id} if loaded.scope == "sweep" else \
        {"cpt.kind": "report", "cpt.report": name}
    Tracker(Tracking(loaded.uri, loaded.experiment, tracking.artifact_dir)).publish(
        f"sweep {report_id}" if loaded.scope == "sweep" else f"report-{name}", final, tags, {"cpt.report": name})
    return final / "report.md"


def render(loaded, out: Path) -> list:
    """Every figure and table of the report into `out`, one facet per chain (its figures named
    after it when there are several); returns the facets (markdown.Facet)."""
    from cpt.reports import analysis, forecast, markdown, stability

    stability.fill_gaps(loaded.runs)  # runs logged before gap/* existed: from their curves
    chains = analysis.chains(loaded.runs)
    alone = len(chains) == 1
    facets = [_draw(c, out, "" if alone else "-" + _safe(c.label)) for c in chains]
    markdown.write_tables(facets, out)
    h = "##" if alone else "###"  # several chains: their sections under a heading each
    lines = markdown.head_md(loaded, facets)
    for f in facets:
        labels = {r.run_id: v.label for v in f.chain.variants for r in v.runs}
        lines += markdown.chain_md(f, h, titled=not alone)
        lines += stability.section(f.chain.variants, markdown.md_table, h)
        lines += forecast.section(f.chain.runs, markdown.md_table, lambda r: labels.get(r.run_id, r.name), h)
    (out / "report.md").write_text("\n".join(lines + [""]))
    return facets


def _draw(chain, out: Path, suffix: str):
    """One chain's figures into `out` (file names end with `suffix`)."""
    from cpt.reports import analysis, markdown, plots

    keys, variants = chain.keys, chain.variants
    grid = [v for v in variants if not v.baseline]
    figures: dict = {"curves": plots.curves(variants, out / f"curves{suffix}.png"),
                     "lr": plots.learning_rate(variants, out / f"lr{suffix}.png")}
    figures["tradeoff"], front_at = plots.tradeoff(variants, out / f"tradeoff{suffix}.png")
    front = [variants[i].label for i in front_at]
    values = {k: {v.values[k] for v in grid} for k in keys}
    searched = analysis.searched([r for v in grid for r in v.runs])
    figures["final_vs"] = {k: plots.final_vs(variants, keys, k, out / f"final_vs_{_safe(k)}{suffix}.png", searched)
                           for k in keys if len(values[k]) > 1}
    cells = [k for k in keys if 1 < len(values[k]) <= plots.MAX_CATEGORIES]  # Optuna draws make no cells
    figures["heatmaps"] = {} if searched else {
        (a, b): plots.heatmap(variants, keys, a, b, out / f"heatmap_{_safe(a)}_x_{_safe(b)}{suffix}.png")
        for a, b in itertools.combinations(cells, 2)}
    rows, source = analysis.compute_rows(variants)
    figures["compute"] = plots.compute(rows, out / f"compute{suffix}.png")
    return markdown.Facet(chain, figures, front, rows, source, analysis.front_note(variants, front_at))


def _safe(key: str) -> str:
    return re.sub(r"[^\w.\-]", "_", key)


class _replacing:
    """Build a directory under a temporary name, then swap it in for `final`: a reader never
    sees a half-written report, and an old one is replaced only by a complete new one."""

    def __init__(self, final: Path):
        self.final = final
        self.tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> Path:
        self.tmp.mkdir(parents=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = self.final.parent / f".old-{self.final.name}-{uuid.uuid4().hex[:8]}"
        if self.final.exists():
            os.rename(self.final, old)
        os.rename(self.tmp, self.final)
        shutil.rmtree(old, ignore_errors=True)
