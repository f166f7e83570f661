"""bench/.venv-litgpt: litgpt in its own environment (it pins huggingface-hub < 1.4 and, through
its extras, transformers < 4.57, which cpt's environment does not satisfy).

The recipe of docs/stack.md: torch 2.13.0 (the CPU build) first, then litgpt with torch
held at 2.13.0 by a constraints file (else pip swaps in a CUDA build through torchvision), then
torchvision removed (its wheel links libtorch_cuda). Idempotent: an existing venv is reused.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

VENV = Path(__file__).resolve().parent / ".venv-litgpt"
TORCH = "torch==2.13.0"


def python() -> Path:
    return VENV / "bin" / "python"


def litgpt() -> Path:
    return VENV / "bin" / "litgpt"


def ensure() -> Path:
    if litgpt().exists():
        return litgpt()
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python()), "-m", "pip", "install", "-q"]
    subprocess.run(pip + [TORCH], check=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(TORCH + "\n")
    subprocess.run(pip + ["litgpt", "litdata==0.2.59", "-c", f.name], check=True)
    subprocess.run([str(python()), "-m", "pip", "uninstall", "-q", "-y", "torchvision"], check=False)
    return litgpt()


if __name__ == "__main__":
    print(ensure())
