"""Shared by the benchmarks: interleaved pairs, medians, the machine, scratch data."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as run.py sets it (cpt/cli/task.py), before torch loads
sys.path.insert(0, str(ROOT))  # this checkout's cpt, not an installed one


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    load = os.getloadavg()[0]
    return f"{os.cpu_count()} cores ({cpu}), load average {load:.1f} at start, Python {platform.python_version()}"


def pairs(n: int, a, b) -> list[tuple[float, float]]:
    """n interleaved measurements of a() and b(), alternating which goes first (drift and
    other processes' load hit both sides alike)."""
    out = []
    for i in range(n):
        if i % 2 == 0:
            x = a()
            y = b()
        else:
            y = b()
            x = a()
        out.append((x, y))
        print(f"  pair {i + 1}/{n}: {x:.4g} vs {y:.4g} (ratio {x / y:.3f})", flush=True)
    return out


def median_ratio(ps: list[tuple[float, float]]) -> float:
    return statistics.median(x / y for x, y in ps)


def scratch(name: str) -> Path:
    d = ROOT / "outputs" / "bench" / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def run_py(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, **kw)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t
