"""Benchmark: a merge of a cached run costs an evaluation, not a training run.

    merge:     `recipe=merge merge.alphas=[0.5] force=true`, in this process, on a cpt run whose
               final weights are cached (one α: read two state dicts, interpolate, evaluate every
               dataset, log one MLflow run)
    baseline:  re-evaluating that run's cached final model on every dataset (open the data, build
               the model, load the entry, evaluate): the least any merge point can cost
Prints each pair, the median ratio merge / baseline (target: a small constant, well under 2), and
the training time of the cpt run it merges for scale (measured once, while setting up).

    python bench/merge.py --pairs 5 --steps 200
"""

from __future__ import annotations

import argparse
import time

from _common import machine, median_ratio, pairs, scratch, timed


def context(dc):
    from omegaconf import OmegaConf

    from cpt.run.experiment import RunContext
    from cpt.store.tracking import flatten

    resolved = OmegaConf.to_container(OmegaConf.masked_copy(dc, [k for k in dc if k != "hydra"]), resolve=True)
    return RunContext(params=flatten(resolved), run_name="bench")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=200, help="optimizer steps of each stage (1000 = the default run)")
    args = ap.parse_args()
    from cpt.cli.compose import compose
    from cpt.config.schema import parse
    from cpt.run.experiment import run

    root = scratch("merge")
    base = [f"shift.datasets.{i}.tokens={args.steps * 2048}" for i in (0, 1)] + [f"paths.output_dir={root}"]
    t = time.perf_counter()
    dc = compose(base)
    run(parse(dc), context(dc), say=lambda *_: None)
    trained = time.perf_counter() - t
    dm = compose(base + ["recipe=merge", "merge.alphas=[0.5]", "force=true"])
    cfg_m, ctx_m = parse(dm), context(dm)
    print(f"{machine()}\ncpt run trained in {trained:.1f} s ({args.steps} steps a stage)")
    ps = pairs(args.pairs, lambda: timed(lambda: run(cfg_m, ctx_m, say=lambda *_: None)),
               lambda: timed(lambda: reevaluate(parse(dc))))
    print(f"merge / re-evaluating the cached model: median ratio {median_ratio(ps):.3f}; "
          f"merge / training the run: {min(x for x, _ in ps) / trained:.4f}")


def reevaluate(cfg):
    """The cached final model of the cpt run, evaluated on every dataset."""
    from cpt.data.prepare import prepare
    from cpt.plan.identity import prefix_key
    from cpt.plan.stages import build_plan
    from cpt.run.job import Job
    from cpt.store.prefix_cache import PrefixCache

    stages = build_plan(cfg)
    cache = PrefixCache(cfg.paths.root / "cache")
    job = Job(cfg, None, prepare(cfg), None, cache, lambda *_: None)
    entry = cache.get(prefix_key(cfg, stages, len(stages) - 1))
    return job.evaluate(job.weights(entry), job.names)


if __name__ == "__main__":
    main()
