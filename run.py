"""cpt entry point: compose the config → validate → run the chain → return the objective.

    python run.py                                   # embedded data, tiny model, CPU
    python run.py -m warmup=0,0.005,0.01,0.02 lr.max=1.5e-4,3e-4,6e-4
    python run.py dry_run=true shift=synthetic-strong
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from cpt.cli.task import main_guard, task

CONF = Path(__file__).parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig):
    return task(cfg)


if __name__ == "__main__":
    main_guard(main, CONF, sys.argv[1:])
