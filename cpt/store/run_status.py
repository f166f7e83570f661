"""How an MLflow run ends: FINISHED when its work completed, FAILED when it raised, KILLED when a
signal stopped it (cpt/signals.py).

KILLED is the third end state: `Tracker.end_stale` marks it on a RUNNING run that a killed
process left behind (found under the lock of the stage or run it belongs to).
"""

from __future__ import annotations

from contextlib import contextmanager

FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"


@contextmanager
def run_status(log, finish: bool = True):
    """End `log` FAILED if the block raises (the error goes on), FINISHED when it completes.
    finish=False: the block only guards; the caller ends the run later (e.g. a trained stage,
    whose run is ended once its result is stored)."""
    try:
        yield log
    except BaseException as e:
        from cpt.errors import Preempted

        log.end(KILLED if isinstance(e, Preempted) else FAILED)  # pre-empted: resumable, not broken
        raise
    if finish:
        log.end(FINISHED)
