"""Failures that tell the truth: one line on stderr, a distinct exit status, no traceback, no
RUNNING MLflow run and nothing that a later run could take for a result.

Exit statuses: 2 bad input, 3 NaN loss, 130 SIGINT, 143 SIGTERM (and SLURM's warning signal,
after the requeue; submitit's own status in a submitit job it requeued). Every case runs `python run.py` in this process (run.py's main through
main_guard, with sys.argv set), except the first SIGTERM run: a process of its own, where the
exit status and what runs at exit (atexit, MLflow's own end_run) are the point. Signals are sent
at a chosen step through CPT_FAULT (cpt/faults.py). Signal runs train T steps per stage on data
prepared once for this module; their uninterrupted reference is trained once (`baseline`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from mlflow.tracking import MlflowClient

from cpt import faults
from cpt.faults import ENV
from cpt.store.prefix_cache import PrefixCache

from conftest import ROOT, TINY, parse
from test_end_to_end import run_tiny

T = 12  # steps per stage of the signal runs
SIG = [f"shift.datasets.{i}.tokens={T * 512}" for i in (0, 1)] + ["checkpoint.interval_steps=6"]


@pytest.fixture(scope="module")
def weak_root(tmp_path_factory):
    """The default shift's data and tokenizer at the signal runs' budgets, prepared once."""
    from cpt.data.prepare import prepare

    root = tmp_path_factory.mktemp("weak")
    prepare(parse(TINY + SIG, root))
    return root


@pytest.fixture
def out(tmp_path):
    """An empty output dir (bad input stops before data): overrides conftest's copy of every shift."""
    return tmp_path / "outputs"


def _with_data(out, root):
    for sub in ("data", "tokenizers"):
        shutil.copytree(root / sub, out / sub)
    return out


@pytest.fixture(scope="module")
def baseline(weak_root, tmp_path_factory):
    """The signal runs' uninterrupted reference: its MLflow run."""
    _, result = run_tiny(_with_data(tmp_path_factory.mktemp("ref") / "outputs", weak_root), SIG)
    return result


@pytest.fixture(autouse=True)
def _own_signal_handlers():
    """An in-process run installs cpt's handlers (cpt/signals.py): pytest gets its own back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)}
    faults.reset()
    yield
    faults.reset()
    for s, h in saved.items():
        signal.signal(s, h)


def _statuses(out) -> list[str]:
    if not (out / "mlflow.db").exists():
        return []  # no store, no run (opening one would create and migrate it: seconds)
    c = MlflowClient(f"sqlite:///{out}/mlflow.db")
    exp = c.get_experiment_by_name("cpt")
    return sorted(r.info.status for r in c.search_runs([exp.experiment_id])) if exp else []


def _argv(out, args=(), base=(*TINY, *SIG)) -> list[str]:
    n = next((i for i, a in enumerate(args) if "=" in a and not a.startswith("-")), len(args))
    # The flags (-m, -cd DIR, ...) before every override, as argparse wants.
    return ["run.py", *args[:n], *base, *args[n:], f"paths.output_dir={out}",
            f"tracking.uri=sqlite:///{out}/mlflow.db", f"hydra.run.dir={out}/hydra", f"hydra.sweep.dir={out}/sweep"]


def _run_py(out, fault=None) -> subprocess.CompletedProcess:
    """`python run.py` in a process of its own."""
    # The thread count of this process: the subprocess must compute what the baseline computes here.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    env.pop(ENV, None)
    if fault:
        env[ENV] = fault
    return subprocess.run([sys.executable, *_argv(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def _in_process(argv, monkeypatch, capsys, fault=None) -> subprocess.CompletedProcess:
    """`python run.py <argv[1:]>` in this process: its exit status, stdout and stderr."""
    import runpy

    from hydra.core.global_hydra import GlobalHydra

    monkeypatch.setattr(sys, "argv", [str(ROOT / "run.py"), *argv[1:]])
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv(ENV, raising=False)
    if fault:
        monkeypatch.setenv(ENV, fault)
    GlobalHydra.instance().clear()
    capsys.readouterr()
    code = 0
    try:
        runpy.run_path(str(ROOT / "run.py"), run_name="__main__")
    except SystemExit as e:
        code = e.code or 0
    finally:
        monkeypatch.delenv(ENV, raising=False)
    got = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, got.out, got.err)


def _one_line(res, status: int, *needles: str) -> str:
    err = res.stderr.strip()
    assert res.returncode == status, res.stderr[-3000:]
    assert "\n" not in err and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


def _same_metrics(out, want) -> None:
    c = MlflowClient(f"sqlite:///{out}/mlflow.db")
    (got,) = [r for r in c.search_runs([c.get_experiment_by_name("cpt").experiment_id])
              if r.data.tags.get("cpt.kind") == "run"]
    for k, v in want.metrics.items():
        assert got.data.metrics[k] == pytest.approx(v, abs=1e-6), k


# --- A. pre-emption -----------------------------------------------------------------------

@pytest.mark.slow
def test_sigterm_mid_stage_checkpoints_marks_killed_and_the_same_command_resumes(out, weak_root, baseline,
                                                                                  monkeypatch, capsys):
    _with_data(out, weak_root)
    res = _run_py(out, f"step:{T + 8}:term")  # step 8 of stage 1: after the checkpoint of step 6
    err = _one_line(res, 143, f"SIGTERM: stage 1 syn-en-b stopped after step 8 of {T}", "marked KILLED",
                    "to resume, run the same command: python run.py ")
    assert _statuses(out) == ["FINISHED", "KILLED"]  # the cached prefix, the pre-empted run
    assert sorted(p.name for p in next((out / "checkpoints").iterdir()).glob("step-*")) == \
        ["step-00000006", "step-00000008"]
    res = _in_process(_argv(out), monkeypatch, capsys)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming from its checkpoint at step 8" in res.stdout and "continuing MLflow run" in res.stdout
    assert _statuses(out) == ["FINISHED", "FINISHED"], err
    _same_metrics(out, baseline)


@pytest.mark.slow
def test_sigint_in_stage_0_is_130_killed_and_caches_nothing(out, weak_root, monkeypatch, capsys):
    res = _in_process(_argv(_with_data(out, weak_root)), monkeypatch, capsys, "step:3:int")
    _one_line(res, 130, f"SIGINT: stage 0 syn-en-a stopped after step 3 of {T}", "marked KILLED")
    assert _statuses(out) == ["KILLED"]
    assert PrefixCache(out / "cache").entries() == []


@pytest.mark.slow
def test_slurm_warning_signal_checkpoints_and_requeues_the_job(out, weak_root, tmp_path, monkeypatch, capsys):
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    res = _in_process(_argv(_with_data(out, weak_root)), monkeypatch, capsys, "step:7:usr1")
    _one_line(res, 143, f"SIGUSR1: stage 0 syn-en-a stopped after step 7 of {T}", "SLURM job 4242 requeued")
    assert calls.read_text().split() == ["requeue", "4242"]
    assert _statuses(out) == ["KILLED"]
    assert (next((out / "checkpoints").iterdir()) / "step-00000007").is_dir()


class _SubmittedJob:
    """A submitted callable with the checkpoint hook Hydra's submitit launcher has."""

    def __call__(self):
        return 0

    def checkpoint(self):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)


def test_in_a_submitit_slurm_job_the_requeue_is_submitits_scontrol_call(tmp_path, monkeypatch):
    """Submitit's SLURM flavour of the hook (the end-to-end test below runs its local one): the
    handler submitit's job process binds to SIGUSR2 is kept by cpt's `install` and, once cpt's
    checkpoint is written, re-pickles the job and calls `scontrol requeue` (a stand-in here)."""
    from submitit.core.utils import DelayedSubmission, JobPaths
    from submitit.slurm.slurm import SlurmJobEnvironment

    from cpt import signals
    from cpt.errors import Preempted

    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    for k, v in {"SLURM_JOB_ID": "4243", "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0",
                 "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SUBMITIT_FOLDER": str(tmp_path)}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(signals, "_submitit", {})  # this process is no submitit job after the test
    cont = signal.getsignal(signal.SIGCONT)
    delayed = DelayedSubmission(_SubmittedJob())
    delayed.set_timeout(60, 3)
    paths = JobPaths(tmp_path, job_id="4243")
    try:
        SlurmJobEnvironment()._handle_signals(paths, delayed)  # what submitit's job process does first
        signals.install()
        assert signal.getsignal(signal.SIGUSR2) == signals._handler  # cpt's now; submitit's kept for after:
        assert signals._submitit[signal.SIGUSR2].__name__ == "checkpoint_and_try_requeue"
        line = signals.final_line(Preempted("stage 1 b stopped after step 8 of 12, checkpoint written", signal.SIGUSR2))
    finally:
        signal.signal(signal.SIGCONT, cont)
    assert calls.read_text().split() == ["requeue", "4243"]
    assert paths.submitted_pickle.exists()  # submitit pickled the job again, through its checkpoint hook
    assert "; submitit requeued the job; it resumes from that checkpoint when it starts again" in str(line), line
    assert line.exit_code == -1  # submitit's own exit (sys.exit(-1)): the job is requeued already


@pytest.mark.slow
def test_submitit_job_checkpoints_then_submitits_own_hook_requeues_and_it_resumes(out, weak_root, baseline,
                                                                                   monkeypatch, capsys):
    """A real submitit job (submitit_local: the same handler and pickles as under SLURM; its
    requeue is a restart by its local controller). SIGUSR2, submitit's warning signal, at step 8
    of stage 1: cpt checkpoints, submitit's own handler re-pickles the job and requeues it, the
    requeued job resumes from cpt's checkpoint and finishes with the uninterrupted run's numbers."""
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))  # the job computes what the baseline did
    argv = _argv(_with_data(out, weak_root), ["-m", "hydra/launcher=submitit_local"])
    res = _in_process(argv, monkeypatch, capsys, f"step:{T + 8}:usr2")
    assert res.returncode == 0, res.stderr[-3000:]
    (job,) = [d for d in (out / "sweep" / ".submitit").iterdir() if d.name.isdigit()]  # beside its "%j" template
    log_err, log_out = ((job / f"{job.name}_0_log.{x}").read_text() for x in ("err", "out"))
    said = [line for line in log_err.splitlines() if line.startswith("stopped:")]
    assert len(said) == 1 and "Traceback" not in log_err, log_err[-3000:]
    assert f"SIGUSR2: stage 1 syn-en-b stopped after step 8 of {T}" in said[0], said
    assert "marked KILLED; submitit requeued the job; it resumes from that checkpoint" in said[0], said
    assert f"Requeued job {job.name}" in log_out  # submitit's own requeue, not a second mechanism
    assert "resuming from its checkpoint at step 8" in log_out and "continuing MLflow run" in log_out
    assert _statuses(out) == ["FINISHED", "FINISHED", "FINISHED"]  # the prefix, the run, the sweep
    _same_metrics(out, baseline)


# --- E. a damaged checkpoint ---------------------------------------------------------------

@pytest.mark.slow
def test_truncated_latest_checkpoint_falls_back_to_the_intact_one(out, weak_root, baseline, monkeypatch, capsys):
    res = _in_process(_argv(_with_data(out, weak_root)), monkeypatch, capsys, f"step:{T + 8}:term")
    _one_line(res, 143, f"stopped after step 8 of {T}")
    (ckpts,) = (out / "checkpoints").iterdir()
    state = ckpts / "step-00000008" / "state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # a copy cut short
    res = _in_process(_argv(out), monkeypatch, capsys)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
    (said,) = [line for line in res.stdout.splitlines() if "is damaged" in line]
    assert "checkpoint at step 8 is damaged" in said and "resuming from the intact one at step 6" in said, said
    assert "resuming from its checkpoint at step 6" in res.stdout
    assert _statuses(out) == ["FINISHED", "FINISHED"]
    assert not ckpts.exists() or not list(ckpts.glob("step-*"))  # the finished run's checkpoints are gone
    _same_metrics(out, baseline)


def _two_checkpoints(root):
    from cpt.store.stage_checkpoints import StageCheckpoints

    store = StageCheckpoints(root)
    meta = {"stage": 1, "model": {"d_model": 8}, "vocab_rows": 16}
    state = {"model": {"w": torch.ones(2)}, "optimizer": {}, "scheduler": {}, "callbacks": {}}
    for step in (6, 8):
        store.save(step, {**state, "step": step}, meta, keep_last=2)
    return store, meta


@pytest.mark.parametrize("damage", ["empty", "garbage", "no-state"])
def test_damaged_newest_checkpoint_loads_the_older_one(damage, tmp_path):
    store, meta = _two_checkpoints(tmp_path / "ckpt")
    f = tmp_path / "ckpt" / "step-00000008" / "state.pt"
    {"empty": lambda: f.write_bytes(b""), "garbage": lambda: f.write_bytes(b"\0" * f.stat().st_size),
     "no-state": f.unlink}[damage]()
    said = []
    step, state = store.load_newest(meta, said.append)
    assert step == 6 and state["step"] == 6 and store.steps() == [6]
    assert len(said) == 1 and "\n" not in said[0] and "resuming from the intact one at step 6" in said[0], said


def test_every_checkpoint_damaged_is_one_line(tmp_path):
    from cpt.errors import UserError

    store, meta = _two_checkpoints(tmp_path / "ckpt")
    for step in ("00000006", "00000008"):
        (tmp_path / "ckpt" / f"step-{step}" / "state.pt").write_bytes(b"")
    with pytest.raises(UserError, match="step-00000006/state.pt: checkpoint state is empty .*delete its directory"):
        store.load_newest(meta, print)


# --- B, C, D: bad input through the real entry point, in this process -----------------------

def _small_files(out):
    d = out / "few"
    d.mkdir(parents=True, exist_ok=True)
    (d / "a.jsonl").write_text("".join(f'{{"text": "words of the first kind number {i}"}}\n' for i in range(400)))
    (d / "b.jsonl").write_text("".join(f'{{"text": "other words, second kind {i}"}}\n' for i in range(400)))
    return d


FILES = ["shift=files", "shift.upstream={out}/few/a.jsonl", "shift.downstream={out}/few/b.jsonl",
         "shift.val_tokens=512", "model.seq_len=32"]

# (id, argv, what stderr must say)
CASES = [
    # B. silent wrong science
    ("budget-beyond-data", FILES + ["shift.tokens=100000"], "dataset upstream has only"),
    ("val-beyond-data", FILES + ["shift.tokens=2048", "shift.val_tokens=50000"], "validation tokens"),
    ("same-name-two-sources", ["shift=files", "shift.paths=[{out}/few/a.jsonl,{out}/few/b.jsonl]",
                               "shift.names=[a,a]", "shift.tokens=2048", "shift.val_tokens=512"],
     "allowed distinct names for different sources"),
    # C. tracebacks before
    ("head-split", ["model.d_model=100", "model.n_head=3"], "model.d_model=100: allowed a multiple of model.n_head (3)"),
    ("head-split-dry-run", ["model.d_model=100", "model.n_head=3", "dry_run=true"], "model.d_model=100"),
    ("precision", ["trainer.precision=fp13"], "trainer.precision=fp13: allowed 32-true, bf16-mixed"),
    ("objective", ["objective=final/bogus"], "objective=final/bogus: allowed one of the metrics the run logs"),
    ("objective-list", ["objective=[final/avg_loss,forgetting/nope]"], "objective=forgetting/nope"),
    # Hydra's multi-line messages
    ("misspelled-key", ["lr.maxx=1e-3"], "lr.maxx: unknown key; allowed keys here: max, min_ratio; nearest: lr.max"),
    ("misspelled-group", ["shfit=files"], "shfit: unknown key; allowed keys here: batch,"),
    ("override-syntax", ["warmup=[1,"], "warmup=[1,: not a valid override (no viable alternative"),
    ("empty-value", ["lr.max="], "lr.max='': expected a number"),
    # D. sweeps that fail late
    ("sweep-bad-second-value", ["-m", "lr.max=3e-4,abc"], "lr.max='abc': expected a number"),
    ("sweep-bad-later-key", ["-m", "warmup=0,0.01", "replay=0,1.5"], "replay=1.5: allowed 0 <= replay < 1"),
    ("sweep-bad-group-knob", ["-m", "seed=0,1", "checkpoint.keep_last=2,0"], "checkpoint.keep_last=0: allowed >= 1"),
    ("grid-bad-axis-value", ["-cd", "sweeps", "-cn", "replay-weak", "replay=0,1.5"], "replay=1.5: allowed 0 <= replay < 1"),
    ("grid-bad-common-value", ["-cd", "sweeps", "-cn", "warmup", "seed=0,x"], "seed='x': expected an integer"),
    ("grid-bad-baseline", ["-cd", "sweeps", "-cn", "replay-weak", "hydra.sweeper.baselines=['recipe=unionn']"],
     "recipe=unionn"),
    ("optuna-bad-bound", ["-cd", "sweeps", "-cn", "optuna-replay", "replay=interval(0, 1.5)"],
     "replay=1.5: allowed 0 <= replay < 1"),
    ("optuna-bad-choice", ["-cd", "sweeps", "-cn", "optuna-replay", "warmup=choice(0.01, 2)"],
     "allowed 0 <= warmup < 1"),
    ("optuna-misspelled-key", ["-cd", "sweeps", "-cn", "optuna-replay", "lr.maxx=interval(1e-4, 1e-3)"],
     "lr.maxx: unknown key"),
]
BY_SWEEPER = {"grid-bad-axis-value", "grid-bad-common-value", "grid-bad-baseline", "optuna-bad-bound",
              "optuna-bad-choice"}
if not torch.cuda.is_available():
    CASES.append(("gpu-without-gpu", ["trainer=gpu"], "trainer.accelerator=gpu: allowed cpu on this machine"))


@pytest.mark.parametrize("case,argv,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_before_any_work(case, argv, needle, out, monkeypatch, capsys):
    _small_files(out)
    res = _in_process(_argv(out, [a.format(out=out) for a in argv], TINY), monkeypatch, capsys)
    err = _one_line(res, 2, needle)
    assert err.startswith("error: "), err
    # A sweep file's sweeper checks its jobs after the multirun's parent run opened: it ends FAILED.
    _nothing_left(out, ["FAILED"] if case in BY_SWEEPER else [])


CLI_CASES = [
    ("plan-misspelled-key", ["plan", "lr.maxx=1e-3"], "lr.maxx: unknown key; allowed keys here: max, min_ratio; nearest: lr.max"),
    ("prepare-misspelled-group", ["prepare", "shfit=files"], "; nearest: shift"),
    ("plan-override-syntax", ["plan", "warmup=[1,"], "warmup=[1,: not a valid override"),
]


@pytest.mark.parametrize("case,argv,needle", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cpt_command_bad_input_exits_2_with_one_line(case, argv, needle, out, monkeypatch, capsys):
    from cpt.cli.main import main

    monkeypatch.chdir(ROOT)
    argv = argv + [f"paths.output_dir={out}", f"tracking.uri=sqlite:///{out}/mlflow.db"]
    capsys.readouterr()
    res = subprocess.CompletedProcess(argv, main(argv), "", capsys.readouterr().err)
    assert _one_line(res, 2, needle).startswith("error: ")
    _nothing_left(out)


def _nothing_left(out, statuses=()) -> None:
    """No MLflow run opened (none RUNNING), nothing cached, no checkpoint, no shard marked complete."""
    assert _statuses(out) == list(statuses)
    assert not (out / "cache").exists() or PrefixCache(out / "cache").entries() == []
    assert not (out / "checkpoints").exists() or not list((out / "checkpoints").iterdir())


# --- F. paths that cannot be written, a store that is no database, a full disk ------------

@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs (root only): `tmpfs(size, read_only)` returns its directory."""
    mounted = []

    def mount(size: str, read_only: bool = False):
        d = tmp_path / f"fs{len(mounted)}"
        d.mkdir()
        opts = f"size={size}" + (",ro" if read_only else "")
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)], capture_output=True, text=True)
        if res.returncode:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {res.stderr.strip()[:80]}")
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)  # -l: a memory map of a shard may still be open


def _paths_argv(out, output_dir, uri, extra=()) -> list[str]:
    return ["run.py", *TINY, *SIG, *extra, f"paths.output_dir={output_dir}", f"tracking.uri={uri}",
            f"hydra.run.dir={output_dir}/hydra"]


def _place(case, out, tmpfs):
    """(paths.output_dir, tracking.uri) for a path case; `out` is an ordinary writable dir."""
    out.mkdir(parents=True)
    (out / "afile").write_text("a file in the way")
    (out / "text.db").write_text("this is not a database\n")
    (out / "gone").symlink_to(out / "moved-away")  # e.g. a scratch link whose target was cleaned up
    db = f"sqlite:///{out}/mlflow.db"
    return {
        "output-dir-under-a-file": lambda: (out / "afile" / "outputs", db),
        "output-dir-is-a-file": lambda: (out / "afile", db),
        "output-dir-dangling-symlink": lambda: (out / "gone" / "outputs", db),
        "output-dir-read-only": lambda: (tmpfs("1m", read_only=True) / "outputs", db),
        "tracking-under-a-file": lambda: (out / "o", f"sqlite:///{out}/afile/mlflow.db"),
        "tracking-not-a-database": lambda: (out / "o", f"sqlite:///{out}/text.db"),
        "tracking-is-a-directory": lambda: (out / "o", f"sqlite:///{out}"),
        "tracking-read-only": lambda: (out / "o", f"sqlite:///{tmpfs('1m', read_only=True)}/mlflow.db"),
    }[case]()


PATH_CASES = [
    ("output-dir-under-a-file", "afile is a file, not a directory; allowed: a directory that can be created"),
    ("output-dir-is-a-file", "afile is a file, not a directory"),
    ("output-dir-dangling-symlink", "gone is a symlink to nothing, not a directory"),
    ("output-dir-read-only", "cannot be written (a read-only file system)"),
    ("tracking-under-a-file", "afile is a file, not a directory"),
    ("tracking-not-a-database", "text.db is not an SQLite database (it starts with b'this is '"),
    ("tracking-is-a-directory", "is a directory; allowed: sqlite:///<file>"),
    ("tracking-read-only", "cannot be written (a read-only file system)"),
]


@pytest.mark.parametrize("case,needle", PATH_CASES, ids=[c[0] for c in PATH_CASES])
def test_a_path_that_cannot_be_written_is_one_line_before_any_work(case, needle, out, tmpfs, monkeypatch, capsys):
    output_dir, uri = _place(case, out, tmpfs)
    res = _in_process(_paths_argv(out, output_dir, uri), monkeypatch, capsys)
    assert _one_line(res, 2, needle).startswith("error: ")
    assert not (out / "mlflow.db").exists()  # no store made, so no run opened (and none RUNNING)
    assert not (out / "o").exists()


def test_too_little_disk_for_the_stage_stops_before_its_first_checkpoint(out, weak_root, tmpfs, monkeypatch, capsys):
    disk = tmpfs("2m")
    _with_data(disk / "outputs", weak_root)
    res = _in_process(_paths_argv(out, disk / "outputs", f"sqlite:///{out}/mlflow.db"), monkeypatch, capsys)
    err = _one_line(res, 2, "free, this stage (3 checkpoints and its cached weights) needs",
                    "set paths.output_dir to a disk with room")
    assert _statuses(out) == []  # checked before its MLflow run was opened
    assert PrefixCache(disk / "outputs" / "cache").entries() == [], err
    assert not list((disk / "outputs" / "checkpoints").glob("*/step-*")), err


@pytest.mark.parametrize("how", ["run.py", "cpt prepare"])
def test_a_disk_that_fills_up_while_preparing_is_one_line(how, out, tmpfs, monkeypatch, capsys):
    disk = tmpfs("64k")
    argv = _paths_argv(out, disk / "outputs", f"sqlite:///{out}/mlflow.db")
    if how == "run.py":
        res = _in_process(argv, monkeypatch, capsys)
    else:
        from cpt.cli.main import main

        monkeypatch.chdir(ROOT)
        capsys.readouterr()
        status = main(["prepare", *argv[1:-2]])
        res = subprocess.CompletedProcess(argv, status, "", capsys.readouterr().err.splitlines()[-1])  # after its bars
    _one_line(res, 2, "No space left on device while writing", "run the same command again")
    assert _statuses(out) == []
    assert not list((disk / "outputs" / "data").glob("*/manifest.json"))  # no shard marked complete


# --- G. a hub that does not answer: fail in seconds, not after the libraries' retries ------

HUB_CASES = [
    ("streamed-dataset", ["shift=en-de"], "cannot load Hugging Face dataset"),
    ("model-init", ["model.init=EleutherAI/pythia-14m"], "model.init=EleutherAI/pythia-14m: cannot fetch it"),
    ("tokenizer", [*FILES, "shift.tokens=2048", "tokenizer=gpt-neox-20b"], "cannot fetch EleutherAI/gpt-neox-20b"),
]


@pytest.mark.parametrize("case,argv,needle", HUB_CASES, ids=[c[0] for c in HUB_CASES])
def test_a_silent_hub_is_one_line_from_one_quick_probe(case, argv, needle, out, monkeypatch, capsys):
    import socket

    from cpt import hub

    with socket.socket() as s:  # a port nothing listens on: connection refused at once
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    for flag in hub.OFFLINE_FLAGS:
        monkeypatch.delenv(flag, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setattr(hub, "_probed", {})
    _small_files(out)
    res = _in_process(_argv(out, [a.format(out=out) for a in argv], TINY), monkeypatch, capsys)
    _one_line(res, 2, needle, f"{endpoint} did not answer within 3 s")
    _nothing_left(out)
