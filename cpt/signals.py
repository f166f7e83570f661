"""Pre-emption: SIGTERM, SIGINT and SLURM's warning signal stop a run so that it can resume.

Outside a stage's training loop the handler raises `Preempted` at once (nothing is half-done
there that a checkpoint could keep). Inside it (`deferred`) the signal is only recorded: the
current optimizer step finishes, PeriodicCheckpoint writes the stage's checkpoint and raises
(cpt/train/resume.py). `run_status` marks the MLflow run KILLED on `Preempted`; the entry point
prints one line with the command that resumes and exits 128 + the signal number.

SLURM: `signal_delay_s` of conf/hydra/launcher/submitit_slurm.yaml makes SLURM send SIGUSR2
(submitit's choice; `--signal=USR1@<s>` sends SIGUSR1) before the time limit. cpt checkpoints at
the step boundary, then the job is requeued and resumes from that checkpoint:
- in a submitit job (hydra/launcher=submitit_slurm or submitit_local), by submitit's own handler,
  which `install` found on the signal and kept: it calls Hydra's launcher `checkpoint` (the same
  job again), requeues (`scontrol requeue`; submitit_local restarts it) and exits with its status;
- in a plain SLURM job (`sbatch ... python run.py`), by `scontrol requeue` here.
Lightning's own requeue is off (cpt/train/trainer.py).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys

from cpt.errors import Preempted

# SLURM's warning before the time limit: submitit asks for SIGUSR2 (signal_delay_s), `--signal=USR1@<s>` for SIGUSR1.
WARNING = (signal.SIGUSR1, signal.SIGUSR2)
_pending: list[int] = []  # the signal received while deferred
_deferring = [False]
_submitit: dict[int, object] = {}  # signal -> submitit's checkpoint-and-requeue handler, in a submitit job


def _signals() -> list[int]:
    # The warning signals only under SLURM or submitit: elsewhere their default (terminate) is what a user expects.
    ours = os.environ.get("SLURM_JOB_ID") or _submitit
    return [signal.SIGTERM, signal.SIGINT] + (list(WARNING) if ours else [])


def _is_submitits(handler) -> bool:
    return type(getattr(handler, "__self__", None)).__module__.startswith("submitit.")


def _handler(signum, _frame):
    if _deferring[0]:
        _pending[:] = [signum]
        return
    raise stopped(signum, "the run stopped outside a training loop (nothing of it is half-written)")


def install() -> None:
    """Take SIGTERM / SIGINT (/ SIGUSR1 under SLURM) for this process (the main thread only);
    Lightning registers its own SIGTERM handler at fit start, `deferred` takes it back."""
    import threading

    if threading.current_thread() is threading.main_thread():
        for s in WARNING:  # a submitit job: its handler requeues once cpt's checkpoint is written (`requeue`)
            if _is_submitits(signal.getsignal(s)):
                _submitit[s] = signal.getsignal(s)
        for s in _signals():
            signal.signal(s, _handler)


class deferred:
    """Inside a training loop: a signal waits for the step boundary (see `pending`)."""

    def __enter__(self):
        self.before = {s: signal.getsignal(s) for s in _signals()}
        install()
        _deferring[0] = True

    def __exit__(self, *exc):
        _deferring[0] = False
        import threading

        for s, h in self.before.items() if threading.current_thread() is threading.main_thread() else ():  # e.g. pytest's own SIGINT handler, in-process runs
            if h is not None:
                signal.signal(s, h)


def pending() -> int | None:
    return _pending[0] if _pending else None


def agreed(device) -> int | None:
    """`pending` as all ranks see it: a signal that reached one rank stops them all at the same
    step (the checkpoint is written collectively; a rank stopping alone would hang the others).
    One all-reduce of one number per optimizer step, only when several ranks run."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return pending()
    flag = torch.tensor([pending() or 0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item() and not _pending:
        _pending[:] = [int(flag.item())]  # this rank too: `check` after a stage's last step stops it as well
    return pending()


def check(where: str) -> None:
    """Raise `Preempted` if a signal came while its training loop could not stop (its last step)."""
    if _pending:
        raise stopped(_pending.pop(), where)


def name(signum: int) -> str:
    return signal.Signals(signum).name


def resume_command() -> str:
    return shlex.join(["python", *sys.argv]) if sys.argv and sys.argv[0].endswith("run.py") else "the same command"


def stopped(signum: int, what: str) -> Preempted:
    _pending.clear()
    return Preempted(what, signum)


def final_line(error: Preempted) -> Preempted:
    """The entry point's one line: the signal, what stopped where, the requeue, how to resume;
    its exit status is submitit's where submitit requeued the job."""
    requeued, status = requeue(error)
    then = "it resumes from that checkpoint when it starts again" if status is not None else \
        f"to resume, run the same command: {resume_command()}"
    line = Preempted(f"{name(error.signum)}: {error}{requeued}; {then}", error.signum)
    if status is not None:
        line.exit_code = status
    return line


def requeue(error: Preempted) -> tuple[str, int | None]:
    """After SLURM's warning signal, once the checkpoint is written: put the job back in the queue.
    Returns what to say and, where submitit requeued it, submitit's exit status."""
    handler, job = _submitit.get(error.signum), os.environ.get("SLURM_JOB_ID")
    if error.signum not in WARNING or not (handler or job):
        return "", None
    import threading

    if threading.current_thread() is threading.main_thread():
        # Requeueing ends the job with SIGTERM: it must not cut this short (submitit ignores it too).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if handler:
        return _submitit_requeue(handler, error.signum)
    res = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    return (f"; SLURM job {job} requeued" if res.returncode == 0 else
            f"; scontrol requeue {job} failed ({(res.stderr or res.stdout).strip()[:120]})"), None


def _submitit_requeue(handler, signum: int) -> tuple[str, int | None]:
    """Submitit's own hook: it pickles the job again (Hydra's launcher `checkpoint`), requeues it
    and exits. Its exit status is kept: submitit_local restarts a job that exits with 144."""
    from cpt.errors import short_reason

    try:
        handler(signum, None)
    except SystemExit as done:
        return "; submitit requeued the job", done.code if isinstance(done.code, int) else 1
    except Exception as e:  # noqa: BLE001 — submitit's UncompletedJobError: e.g. timed out too many times
        return f"; submitit did not requeue it ({short_reason(e)})", None
    return "; submitit requeues the job from rank 0", None  # the other ranks: submitit leaves it to rank 0
