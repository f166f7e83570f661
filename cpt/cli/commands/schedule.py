"""`cpt schedule <overrides>`: the LR of every optimizer step of a chain, over tokens, as a PNG.

The curve is what the stage runner feeds the optimizer (`cpt.plan.schedules.lr_at`, per step); the
x axis is the run's step axis (tokens since the chain began, `cpt.plan.stages.stage_starts`). Where an
infinite schedule continues from the pre-anneal weights, the annealed tail of the earlier stage
is drawn dashed: a branch (the evaluated model), not part of the chain.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path


def add_parser(sub):
    p = sub.add_parser("schedule", help="draw the learning rate of a whole chain over tokens (PNG)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, as for run.py (e.g. schedule=infinite-cosine)")
    p.add_argument("--out", help="PNG to write (default: <paths.output_dir>/schedules/<schedules>-<hash>.png)")
    return p


def curves(stages, batch_tokens: int) -> list[dict]:
    """Per stage: tokens and LR of each optimizer step, and the step where a branch starts
    (`branch_at`: the next stage continues from before this stage's anneal; else None)."""
    from cpt.plan.stages import stage_starts
    from cpt.plan.schedules import anneal_start_step, lr_at

    out = []
    for i, (stage, start) in enumerate(zip(stages, stage_starts(stages, batch_tokens))):
        nxt = stages[i + 1] if i + 1 < len(stages) else None
        T = stage.steps
        out.append({
            "stage": stage.index, "dataset": stage.dataset,
            "tokens": [start + t * batch_tokens for t in range(T)],
            "lr": [lr_at(t, T, stage.schedule) for t in range(T)],
            "branch_at": anneal_start_step(stage.schedule, T) if nxt is not None and nxt.from_pre_anneal else None,
        })
    return out


def draw(lines: list[dict], names: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=120)
    for c in lines:
        color = f"C{c['stage'] % 10}"
        label = f"stage {c['stage']} ({names[c['dataset']]})"
        cut = len(c["tokens"]) if c["branch_at"] is None else c["branch_at"]
        ax.plot(c["tokens"][:cut + 1], c["lr"][:cut + 1], color=color, label=label)
        if cut < len(c["tokens"]):  # the anneal that gives this stage's evaluated model
            ax.plot(c["tokens"][cut:], c["lr"][cut:], color=color, linestyle="--", alpha=0.7)
            ax.plot([c["tokens"][cut]], [c["lr"][cut]], "o", color=color, markersize=4)
        ax.axvline(c["tokens"][0], color="0.8", linewidth=0.8, zorder=0)
    ax.set_xlabel("tokens since the start of the chain")
    ax.set_ylabel("learning rate")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fig.savefig(tmp, format="png")  # then renamed: never a half-written PNG under the final name
    plt.close(fig)
    os.replace(tmp, path)


def main(args) -> int:
    from cpt.cli.compose import compose
    from cpt.config.schema import parse
    from cpt.plan.identity import canonical_hash
    from cpt.plan.stages import build_plan

    cfg = parse(compose(args.overrides))
    stages = build_plan(cfg)
    names = [d.name for d in cfg.shift.datasets]
    shapes = cfg.schedule.name if cfg.pretrain.schedule == cfg.schedule.name \
        else f"{cfg.pretrain.schedule}-then-{cfg.schedule.name}"
    key = canonical_hash([[dataclasses.asdict(s.schedule), s.steps, s.from_pre_anneal] for s in stages]
                         + [cfg.batch.tokens])
    path = Path(args.out) if args.out else cfg.paths.root / "schedules" / f"{shapes}-{key[:8]}.png"
    title = (f"pretrain.schedule={cfg.pretrain.schedule} schedule={cfg.schedule.name}, "
             f"{len(stages)} stages, batch {cfg.batch.tokens:,} tokens")
    draw(curves(stages, cfg.batch.tokens), names, title, path)
    print(path)
    return 0
