"""Benchmark: the wall time the embedded tasks add to the default run (issue bound: +20 %).

    scored:    `python run.py harness=synthetic harness.limit=200`
    baseline:  `python run.py`
Each run starts from an output directory holding only the prepared data and tokenizer (copied
from one `cpt prepare`), so both train both stages and neither pays tokenization; lm-eval's
import and its task files are part of the scored side, as a user pays them. Pairs are
interleaved; prints each pair and the median ratio scored / baseline.

    python bench/harness_overhead.py --pairs 2
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

from _common import ROOT, machine, median_ratio, pairs, run_py, scratch, timed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=2)
    a = p.parse_args()
    print(machine())
    root = scratch("harness_overhead")
    prepared = root / "prepared"
    _check(subprocess.run([sys.executable, "-m", "cpt.cli.main", "prepare", f"paths.output_dir={prepared}"],
                          cwd=ROOT, capture_output=True, text=True))

    def one(*overrides: str):
        def go() -> float:
            out = root / "run"
            shutil.rmtree(out, ignore_errors=True)
            for sub in ("data", "tokenizers"):
                shutil.copytree(prepared / sub, out / sub)
            return timed(lambda: _check(run_py([f"paths.output_dir={out}", *overrides])))
        return go

    ps = pairs(a.pairs, one("harness=synthetic", "harness.limit=200"), one())
    print(f"median scored / baseline: {median_ratio(ps):.3f} (bound: <= 1.20)")


def _check(res) -> None:
    assert res.returncode == 0, res.stderr[-2000:]


if __name__ == "__main__":
    main()
