"""Wall time the embedded tasks add to the default run: `python run.py` vs `python run.py
harness=synthetic harness.limit=200`, each in a fresh output directory (nothing cached).
Run from the repository root: python bench/harness_overhead.py [OUT_DIR]"""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(out: Path, *overrides: str) -> float:
    start = time.time()
    subprocess.run([sys.executable, str(ROOT / "run.py"), f"paths.output_dir={out}", *overrides], check=True)
    return time.time() - start


if __name__ == "__main__":
    base = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/bench-harness")
    plain = timed(base / "none")
    scored = timed(base / "synthetic", "harness=synthetic", "harness.limit=200")
    print(f"default run {plain:.0f}s, with harness=synthetic harness.limit=200 {scored:.0f}s: "
          f"{scored / plain - 1:+.0%} (the issue's bound: +20%)")
