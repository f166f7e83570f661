"""Benchmark 3: start-up — process start to the first optimizer step, against the bare import
time of the dependencies, measured in the same run.

Baseline: `python -c "import lightning, mlflow, transformers, hydra"`.
cpt: `python run.py <small budgets> seed=<new>` on data prepared beforehand and an existing MLflow
store (as every run after the first sees them), so data preparation is excluded. A new seed
per measurement makes every run train its own stage 0: its first optimizer step is the run's
first. Its time is the timestamp of the first `train/loss` MLflow holds (logged right after
step 0) minus the moment the process was started. Prints the median of the differences
(target: at most 3 s above the imports) and the median ratio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from _common import machine, median_ratio, pairs, run_py, scratch

SMALL = ["shift.datasets.0.tokens=20480", "shift.datasets.1.tokens=20480", "eval.interval_steps=1000",
         "eval.warmup_interval_steps=1000", "eval.dense_evals=0", "log_interval_steps=1"]


def imports() -> float:
    t = time.time()
    subprocess.run([sys.executable, "-c", "import lightning, mlflow, transformers, hydra"], check=True)
    return time.time() - t


class Runs:
    def __init__(self, out):
        self.out, self.seed = out, 0

    def prepare(self):
        res = run_py([*SMALL, f"paths.output_dir={self.out}", "seed=1000"])  # data + store + a first run
        assert res.returncode == 0, res.stderr[-2000:]

    def first_step(self) -> float:
        from mlflow.tracking import MlflowClient

        self.seed += 1
        t = time.time()
        res = run_py([*SMALL, f"paths.output_dir={self.out}", f"seed={self.seed}"])
        assert res.returncode == 0, res.stderr[-2000:]
        c = MlflowClient(tracking_uri=f"sqlite:///{self.out}/mlflow.db")
        exp = c.get_experiment_by_name("cpt")
        run = c.search_runs([exp.experiment_id], f"tags.`cpt.kind` = 'prefix' and params.seed = '{self.seed}'")[0]
        first = min(c.get_metric_history(run.info.run_id, "train/loss"), key=lambda m: m.step)
        return first.timestamp / 1000 - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=10)
    args = ap.parse_args()
    runs = Runs(scratch("startup"))
    runs.prepare()
    print(f"machine: {machine()}")
    print(f"{args.pairs} interleaved pairs, seconds: (run.py start -> first optimizer step, bare imports)")
    ps = pairs(args.pairs, runs.first_step, imports)
    above = statistics.median(x - y for x, y in ps)
    print(f"start-up: first optimizer step {statistics.median(x for x, _ in ps):.2f} s, imports "
          f"{statistics.median(y for _, y in ps):.2f} s; median difference {above:+.2f} s (target <= +3 s), "
          f"median ratio {median_ratio(ps):.2f}")


if __name__ == "__main__":
    main()
