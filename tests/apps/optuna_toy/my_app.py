"""Toy task for the Optuna sweeper tests: imports only hydra / omegaconf (fast)."""

import json
import os

import hydra
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path=".", config_name="config")
def main(cfg: DictConfig):
    if cfg.env_file:
        with open(cfg.env_file, "a") as f:
            env = {k: v for k, v in os.environ.items() if k.startswith("CPT_OPTUNA_")}
            f.write(json.dumps(env) + "\n")
    if cfg.fail_if_x_above is not None and cfg.x > cfg.fail_if_x_above:
        raise RuntimeError(f"x={cfg.x} is above {cfg.fail_if_x_above}")
    loss = (cfg.x - 1.0) ** 2 + (cfg.y - 2) ** 2 + (0.0 if cfg.opt == "adam" else 0.5)
    if cfg.return_mode == "not_a_number":
        return float("nan")
    if cfg.return_mode == "wrong_count":
        return loss, loss
    if cfg.return_mode == "nothing":
        return None
    return (loss, float(cfg.x)) if cfg.multi else loss


if __name__ == "__main__":
    main()
