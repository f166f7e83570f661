"""`cpt plan <overrides>`: the dry run, from the CLI."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("plan", help="print the stages, steps, tokens, FLOPs and cache hits of a run")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, as for run.py (e.g. shift=synthetic-strong)")
    return p


def main(args) -> int:
    from cpt.cli.compose import compose
    from cpt.config.schema import GROUPS, parse
    from cpt.run.dry_run import describe

    dc = compose(args.overrides)
    print(describe(parse(dc), {g: dc.hydra.runtime.choices.get(g) for g in GROUPS}))
    return 0
