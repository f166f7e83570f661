"""Benchmark: `bench/loop.py` on an earlier commit and on this checkout, interleaved.

A refactor must not slow the loop. Each round runs loop.py once in a git worktree of the
earlier commit and once here (alternating which goes first), each printing its cpt / bare
PyTorch ratio; the two medians are compared. The ratio, not raw tokens/s, is compared, because
its bare side absorbs the machine's load of the moment. Target: new median >= old median - 0.02.

    python bench/vs_commit.py ba1decd                 # 5 rounds, loop.py --pairs 2 each side
    python bench/vs_commit.py ba1decd --rounds 3 --pairs 1 --steps 60
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys

from _common import ROOT, machine, scratch

RATIO = re.compile(r"median of \d+ pairs = ([0-9.]+)")


def worktree(rev: str):
    path = scratch("vs_commit") / rev
    subprocess.run(["git", "worktree", "add", "--detach", "--force", str(path), rev], cwd=ROOT, check=True,
                   capture_output=True)
    return path


def loop_ratio(checkout, pairs: int, steps: int) -> float:
    """loop.py's median ratio, run from `checkout` (its own cpt: _common puts it first on sys.path)."""
    res = subprocess.run([sys.executable, str(checkout / "bench" / "loop.py"), "--pairs", str(pairs),
                          "--steps", str(steps)], cwd=checkout, capture_output=True, text=True)
    found = RATIO.search(res.stdout)
    if res.returncode or not found:
        sys.exit(f"bench/loop.py failed in {checkout}:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return float(found.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rev", help="the earlier commit (e.g. the one before a refactor)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=2, help="loop.py --pairs on each side per round")
    ap.add_argument("--steps", type=int, default=100, help="loop.py --steps")
    args = ap.parse_args()
    old = worktree(args.rev)
    print(f"machine: {machine()}")
    print(f"loop.py (cpt / bare ratio) on {args.rev} vs this checkout, {args.rounds} interleaved rounds")
    ratios: dict[str, list[float]] = {"old": [], "new": []}
    try:
        for i in range(args.rounds):
            order = [("old", old), ("new", ROOT)] if i % 2 == 0 else [("new", ROOT), ("old", old)]
            for side, checkout in order:
                ratios[side].append(loop_ratio(checkout, args.pairs, args.steps))
            print(f"  round {i + 1}/{args.rounds}: old {ratios['old'][-1]:.3f}  new {ratios['new'][-1]:.3f}", flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, capture_output=True)
    o, n = statistics.median(ratios["old"]), statistics.median(ratios["new"])
    verdict = "met" if n >= o - 0.02 else "NOT met"
    print(f"loop ratio median: old {o:.3f}, new {n:.3f} (target: new >= old - 0.02: {verdict})")


if __name__ == "__main__":
    main()
