"""The command line: the `cpt` console script, the Hydra task behind `run.py`, config composition, subcommands."""
