"""Subcommands of the `cpt` CLI: one module each, with `add_parser(subparsers)` and `main(args)`.

Modules are imported only when their command runs, so `cpt --help` stays fast.
"""

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "plan": ("cpt.cli.commands.plan", "print what `python run.py <overrides>` would train (a dry run)"),
    "schedule": ("cpt.cli.commands.schedule", "draw the learning rate of a whole chain over tokens (PNG)"),
    "prepare": ("cpt.cli.commands.prepare", "tokenize and shard the datasets of a run ahead of training"),
    "cache": ("cpt.cli.commands.cache", "list or remove cached stage prefixes and periodic checkpoints"),
    "evaluate": ("cpt.cli.commands.evaluate", "score an existing model with lm-evaluation-harness (no training)"),
    "report": ("cpt.cli.commands.report", "write the trade-off report of a sweep or experiment from MLflow"),
    "forecast": ("cpt.cli.commands.forecast", "fit loss laws to finished runs' curves and forecast untried configs"),
}
