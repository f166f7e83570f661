"""The `cpt` console script: helper commands around runs (`python run.py` trains)."""

from __future__ import annotations

import argparse
import importlib
import sys

from cpt.errors import UserError, report


def build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, dict]:
    from cpt.cli.commands import COMMANDS

    parser = argparse.ArgumentParser(
        prog="cpt", description="Continual pre-training experiments. Train with `python run.py [overrides]`; "
        "these commands plan, prepare, inspect and report.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name, (module, help_text) in COMMANDS.items():
        if name in argv[:1]:  # import only the module of the command that runs
            modules[name] = importlib.import_module(module)
            modules[name].add_parser(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser, modules = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return modules[args.command].main(args) or 0
    except UserError as e:
        return report(e)
    except Exception as e:  # a full or read-only disk met while writing: one line too
        from cpt.store.writable import disk_error

        error = disk_error(e)
        if error is None:
            raise
        return report(error)


if __name__ == "__main__":
    sys.exit(main())
