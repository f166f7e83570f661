"""Fault injection for the crash tests: make this process die at a chosen point.

`CPT_FAULT=<point>:<n>[:<action>]` fires at the n-th time this process reaches `point`
(counted over the whole process: every stage, every point of a multirun):
- `step`: right after an optimizer step has run (n = 1 is the first step this process trains);
- `checkpoint`: in the middle of a checkpoint write — the state file is on disk in the
  temporary directory, the rename that publishes it has not happened;
- `init`: a model.init stage 0 has started its MLflow run and not yet evaluated the model.
`action` is `kill` (default: SIGKILL to itself, exactly what `kill -9` does: no cleanup, no
`finally`, no atexit), `raise` (an InjectedFault exception, for cheap in-process tests), or
`term` / `int` / `usr1` / `usr2`: that signal to itself, as a scheduler or Ctrl-C sends it (cpt/signals.py).
`@<rank>` after the action fires it in that rank's process only (LOCAL_RANK; every rank without it).
Unset, it costs one dictionary lookup per call.
"""

from __future__ import annotations

import os
import signal

ENV = "CPT_FAULT"
POINTS = ("step", "checkpoint", "init")
SIGNALS = {"term": signal.SIGTERM, "int": signal.SIGINT, "usr1": signal.SIGUSR1, "usr2": signal.SIGUSR2}
_counts: dict[str, int] = {}


class InjectedFault(RuntimeError):
    pass


def parse(spec: str) -> tuple[str, int, str]:
    spec, _, _rank = spec.partition("@")
    parts = spec.split(":")
    if len(parts) not in (2, 3) or parts[0] not in POINTS or not parts[1].isdigit():
        raise ValueError(f"{ENV}={spec}: expected <{'|'.join(POINTS)}>:<n>[:kill|raise]")
    action = parts[2] if len(parts) == 3 else "kill"
    if action not in ("kill", "raise", *SIGNALS):
        raise ValueError(f"{ENV}={spec}: action must be kill, raise, {', '.join(SIGNALS)}")
    return parts[0], int(parts[1]), action


def reached(point: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    want, n, action = parse(spec)
    rank = spec.partition("@")[2]
    if want != point or (rank and os.environ.get("LOCAL_RANK", "0") != rank):
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] != n:
        return
    if action == "raise":
        raise InjectedFault(f"{ENV}: injected fault at {point} {n}")
    os.kill(os.getpid(), SIGNALS.get(action, signal.SIGKILL))


def reset() -> None:
    """Forget the counts (tests that inject faults in-process several times)."""
    _counts.clear()
