"""Benchmark 4: the twelve-point grid against twelve independent two-stage runs.

    grid:         python run.py -m warmup=0,0.005,0.01,0.02 lr.max=1.5e-4,3e-4,6e-4
                  (one stage-0 pre-training, reused by the other eleven points from the cache)
    independent:  the same command, every job in its own output directory (its own cache and
                  data, prepared beforehand and not timed; one shared MLflow store), so every
                  point trains its own stage 0
Both are one multirun process, so process start-up is paid once on each side and the only
difference is the cache. The two stages have equal budgets. Prints the wall time of each pair
and the median ratio (target <= 0.6; with equal stages the ideal is 13/24 = 0.54).

    python bench/grid.py --pairs 10 --steps 50     # reduced budgets: 50 optimizer steps a stage
"""

from __future__ import annotations

import argparse
import shutil
import time

from _common import machine, median_ratio, pairs, run_py, scratch

GRID = ["warmup=0,0.005,0.01,0.02", "lr.max=1.5e-4,3e-4,6e-4"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=1000, help="optimizer steps of each stage (1000 = the default run)")
    args = ap.parse_args()
    budget = [f"shift.datasets.{i}.tokens={args.steps * 2048}" for i in (0, 1)]
    root = scratch("grid")
    seed = root / "seed"  # prepared data to copy: not part of either timing
    from cpt.cli.compose import compose_run_config
    from cpt.data.prepare import prepare

    prepare(compose_run_config([*budget, f"paths.output_dir={seed}"]))
    count = [0]

    def fresh(name: str, jobs: int):
        count[0] += 1
        d = root / f"{name}-{count[0]}"
        for j in range(jobs):
            for sub in ("data", "tokenizers"):
                shutil.copytree(seed / sub, d / (str(j) if jobs > 1 else "") / sub)
        return d

    def grid() -> float:
        d = fresh("grid", 1)
        t = time.perf_counter()
        res = run_py(["-m", *GRID, *budget, f"paths.output_dir={d}"])
        assert res.returncode == 0, res.stderr[-2000:]
        return time.perf_counter() - t

    def independent() -> float:
        d = fresh("indep", 12)
        t = time.perf_counter()
        res = run_py(["-m", *GRID, *budget, f"paths.output_dir={d}/" + "${hydra:job.num}",
                      f"tracking.uri=sqlite:///{d}/mlflow.db", f"hydra.sweep.dir={d}/multirun"])
        assert res.returncode == 0, res.stderr[-2000:]
        return time.perf_counter() - t

    print(f"machine: {machine()}")
    print(f"{args.steps} optimizer steps of 2048 tokens per stage (both stages), {args.pairs} interleaved pairs, "
          "seconds: (grid, twelve independent runs)")
    ps = pairs(args.pairs, grid, independent)
    print(f"grid: twelve-point grid / twelve independent two-stage runs, wall time, median of {len(ps)} pairs = "
          f"{median_ratio(ps):.3f} (target <= 0.6)")


if __name__ == "__main__":
    main()
