"""The one exception type for bad input.

Anything a user can fix (a config value, a missing file, an unreachable hub) raises
`UserError` with a single line that names the key or file and what is allowed. The entry
points print that line alone and exit with status 2; every other exception is a bug and
keeps its traceback.
"""


class UserError(Exception):
    """Bad input: the message is one line, naming the key/file and what is allowed."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always one line


def check(ok: bool, key: str, value, allowed: str) -> None:
    """The config checks' one rule: unless `ok`, raise `key=value: allowed <allowed>`."""
    if not ok:
        raise UserError(f"{key}={value}: allowed {allowed}")


class TrainingDiverged(UserError):
    """The loss became NaN or inf: the run stops, its MLflow run is FAILED, nothing is cached."""

    exit_code = 3


class Preempted(UserError):
    """SIGTERM / SIGINT / SLURM's warning signal stopped the run (cpt/signals.py): its MLflow run
    is KILLED, its checkpoint written; the exit status is the shell's 128 + signal number
    (a submitit job that submitit requeued exits with submitit's status: cpt/signals.py)."""

    label = "stopped"

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + (15 if signum not in (2, 15) else signum)  # SLURM's requeue: as SIGTERM


def report(error: UserError) -> int:
    """Print `error` as the one line the entry points show; returns the exit status to use."""
    import sys

    print(f"{getattr(error, 'label', 'error')}: {error}", file=sys.stderr)
    return error.exit_code


def short_reason(error: BaseException, limit: int = 160) -> str:
    """The first line of `error`'s message, cut to `limit` characters, for quoting in a UserError."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
