"""GPU check: cpt's GPU paths measured on one real GPU, one script, <= 8 minutes (--budget-s 480).

One line per check, in order:
  1. gpu-tests: `python -m pytest -m gpu -q tests/test_gpu.py`, passed / failed;
  2. default: `python run.py` (300 steps a stage, not 1,000) with trainer=gpu against trainer=cpu, same data and
     seed: every final/*loss within 2e-2 nats (bf16 autocast against fp32), and the speed-up in training time
     (the MLflow runs' start to end: start-up and data preparation excluded);
  3. mfu: perf/tokens_per_s and perf/mfu (cpt's 6N + attention FLOPs over the dense bf16 peak) of pythia-160m and
     pythia-410m at seq 2048, trainer=gpu, eager and trainer.compile=true, at the largest of a few micro-batches
     that does not run out of CUDA memory; the median of the second half of the steps. The embedded data's BPE
     has 1,024 tokens, not Pythia's 50k: a smaller output layer (cpt's FLOPs count the same vocabulary);
  4. fsdp-resume: a 1-GPU trainer=fsdp run SIGKILLed mid-stage (CPT_FAULT=step:<n>, cpt/faults.py) and run again
     equals an uninterrupted one within 1e-3 nats (GPU kernels are not bitwise deterministic; CPU tests: 1e-6);
  5. each check's peak GPU memory: torch.cuda.max_memory_allocated of its run.py processes (cpt logs no memory
     metric: each runs as `gpu_check.py --as-run`, run.py in-process and the peak written at exit), and the peak
     nvidia-smi memory.used while it ran (all that the pytest check has).
Each check has its own timeout; once --budget-s is spent the rest are skipped. Results: bench/gpu_check.json
(--out; rewritten after every check) and a table in bench/README.md's `## GPU`; logs: outputs/bench/gpu_check/logs/.

    python bench/gpu_check.py              # on a GPU machine; without CUDA: one line, exit 0
    python bench/gpu_check.py --dry-run    # the commands each check would run
    python bench/gpu_check.py --cpu-smoke  # the same checks on trainer=cpu, tiny budgets, README in a copy
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

from _common import ROOT, scratch

sys.path.append(str(ROOT / "tests"))  # last: under --as-run it must shadow nothing run.py imports
from conftest import TINY, TINY_STEPS  # noqa: E402  (the tests' tiny budgets: one home; imports no cpt)

BF16_TOL, RESUME_TOL = 2e-2, 1e-3  # nats: bf16-mixed vs fp32 final losses; resumed vs uninterrupted on a GPU
MIN_CHECK_S = 30  # a check that would get less than this is skipped
PEAK_ENV = "GPU_CHECK_PEAK_FILE"
KILL_AT = 15  # SIGKILL after step 15 of stage 1 (checkpoints every 6 steps: it resumes at 12)
KILL = {"CPT_FAULT": f"step:{TINY_STEPS + KILL_AT}"}  # steps count over the process: stage 0's come first
PYTEST = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "tests/test_gpu.py"]


@dataclass(frozen=True)
class Profile:
    trainer: list[str]  # under test
    ref: list[str]      # check 2's reference: fp32 on the CPU
    fsdp: list[str]
    models: list[tuple[str, int, list[int]]]  # model, seq len, micro-batches to try, largest first
    compile: tuple[bool, ...]
    default_steps: int  # a stage of the default run
    mfu_steps: int      # at the largest micro-batch (a smaller one runs more steps of the same tokens)
    timeouts: dict      # per check, s; they add up to the budget so a slow check cannot starve the last
    budget_s: int


GPU = Profile(["trainer=gpu"], ["trainer=cpu"], ["trainer=fsdp", "trainer.devices=1"],
              [("pythia-160m", 2048, [64, 32, 16]), ("pythia-410m", 2048, [32, 16, 8])], (False, True), 300, 12,
              {"gpu-tests": 130, "default": 70, "mfu": 200, "fsdp-resume": 80}, 480)
# The same checks on CPU: a peak_flops so that perf/mfu is logged; no compile (a minute on 2 cores).
SMOKE = Profile(["trainer=cpu", "trainer.peak_flops=1e12"], ["trainer=cpu"],
                ["trainer=fsdp", "trainer.devices=1", "trainer.accelerator=cpu", "trainer.precision=32-true"],
                [("tiny", 128, [16, 8])], (False,), 12, 6,
                {"gpu-tests": 120, "default": 240, "mfu": 120, "fsdp-resume": 300}, 900)


class CheckFailed(Exception):
    pass


@dataclass
class Check:
    name: str
    status: str  # PASS | FAIL | TIMEOUT | ERROR | SKIP
    summary: str
    figures: dict = field(default_factory=dict)
    wall_s: float = 0.0
    peak_allocated_gib: float | None = None
    peak_used_gib: float | None = None

    def line(self) -> str:
        mem = [f"peak {v:.1f} GiB {k}" for k, v in (("allocated", self.peak_allocated_gib),
                                                     ("used", self.peak_used_gib)) if v is not None]
        tail = f" ({', '.join([f'{self.wall_s:.0f} s', *mem])})" if self.wall_s else ""
        return f"{self.status:<5} {self.name}: {self.summary}{tail}"


# ---- pure parts (tests/test_gpu_check.py) ----

def parse_pytest(text: str) -> dict[str, int]:
    """The counts of pytest's closing line ("3 passed, 2 skipped in 9.1s")."""
    n = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    last = [l for l in text.splitlines() if re.search(r"\d+ (passed|failed|skipped|errors?|deselected)\b", l)]
    for k, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)\b", last[-1] if last else ""):
        n["errors" if word.startswith("error") else word] = int(k)
    return n


def is_oom(stderr: str) -> bool:
    return "CUDA out of memory" in stderr or "OutOfMemoryError" in stderr


def steady(values: list[float]) -> float | None:
    """The median of the second half: the first steps pay for warm-up and compilation."""
    return statistics.median(values[len(values) // 2:]) if values else None


def max_delta(a: dict, b: dict) -> float:
    """max |a[k] - b[k]|; a key only one side has (a lost or doubled step) counts as infinity."""
    return max((abs(a[k] - b[k]) if k in a and k in b else float("inf") for k in {*a, *b}), default=float("inf"))


def run_all(checks, budget_s: float, call, done=lambda checks: None, clock=time.monotonic) -> list[Check]:
    """call(name, fn, timeout) for each (name, fn, timeout): the timeout is the check's own or what is left
    of the budget; with less than MIN_CHECK_S left, skipped. done(results so far) after each."""
    out, t0 = [], clock()
    for name, fn, want in checks:
        left = budget_s - (clock() - t0)
        out.append(call(name, fn, min(want, left)) if left >= MIN_CHECK_S else
                   Check(name, "SKIP", f"budget spent ({max(left, 0):.0f} s of {budget_s:.0f} s left, "
                                       f"a check needs {MIN_CHECK_S} s)"))
        print(out[-1].line(), flush=True)
        done(out)
    return out


def rewrite_section(text: str, body: str, heading: str = "## GPU") -> str:
    """`text` with its `heading` section's body (up to the next `## `) replaced by `body`."""
    m = re.search(rf"^{re.escape(heading)}[ \t]*\n", text, re.M)
    if not m:
        return text.rstrip("\n") + f"\n\n{heading}\n\n{body}"
    nxt = re.search(r"^## ", text[m.end():], re.M)
    end = m.end() + nxt.start() if nxt else len(text)
    return text[:m.end()] + "\n" + body.rstrip("\n") + "\n" + ("\n" if nxt else "") + text[end:]


def table(machine: dict, checks: list[Check], budget_s: float) -> str:
    gib = lambda v: "—" if v is None else f"{v:.1f} GiB"
    rows = [f"| {c.name} | {c.status} | {c.summary.replace('|', chr(92) + '|')} | {gib(c.peak_allocated_gib)} | "
            f"{gib(c.peak_used_gib)} | {c.wall_s:.0f} s |" for c in checks]
    m = machine
    return "\n".join([
        f"`python bench/gpu_check.py` on {m['device']} (driver {m['driver']}, torch {m['torch']}, CUDA {m['cuda']}), "
        f"{m['date']}, commit {m['commit']}: {sum(c.wall_s for c in checks):.0f} s of a {budget_s:.0f} s budget. "
        "Peak allocated: `torch.cuda.max_memory_allocated` of the check's run.py processes (cpt logs no memory "
        "metric; `--as-run` records it at exit). Peak used: nvidia-smi `memory.used` while the check ran (with "
        "the CUDA context and the allocator's cache).", "",
        "| check | result | figures | peak allocated | peak used | wall |", "|---|---|---|---|---|---|", *rows]) + "\n"


# ---- commands ----

def as_run(args: list[str]) -> None:
    """run.py in this process; at exit (sys.exit too, not SIGKILL) the peak CUDA memory into $GPU_CHECK_PEAK_FILE."""
    import atexit
    import runpy

    def dump():
        import torch

        if os.environ.get(PEAK_ENV) and torch.cuda.is_available() and torch.cuda.is_initialized():
            Path(os.environ[PEAK_ENV]).write_text(str(torch.cuda.max_memory_allocated()))

    atexit.register(dump)
    sys.argv = [str(ROOT / "run.py"), *args]
    runpy.run_path(sys.argv[0], run_name="__main__")


def run_argv(args: list[str]) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--as-run", *args]


def default_args(p: Profile, trainer: list[str], d: Path) -> list[str]:
    n = p.default_steps * 2048  # the default batch: 2,048 tokens
    return [*trainer, "batch.tokens=2048", f"shift.datasets.0.tokens={n}", f"shift.datasets.1.tokens={n}",
            f"paths.output_dir={d}"]


def mfu_args(p: Profile, model: str, seq: int, mb: int, compile_: bool, d: Path) -> list[str]:
    top = max(c[0] * s for _, s, c in p.models)  # one shift budget for all: the data is prepared once
    return [f"model={model}", *p.trainer, "recipe=upstream-only", f"batch.tokens={mb * seq}",
            f"batch.micro_sequences={mb}", f"shift.datasets.0.tokens={p.mfu_steps * top}",
            f"shift.datasets.1.tokens={top}", *(f"shift.datasets.{i}.val_tokens={4 * seq}" for i in (0, 1)),
            "eval.interval_steps=1000000", "eval.warmup_interval_steps=1000000", "eval.dense_evals=0", "log_interval_steps=1",
            "checkpoint.interval_steps=0", f"trainer.compile={str(compile_).lower()}", f"paths.output_dir={d}"]


def mfu_dir(model: str, mb: int, compile_: bool) -> str:
    return f"mfu-{model}-{mb}" + ("-compile" if compile_ else "")


def fsdp_args(p: Profile, d: Path) -> list[str]:
    return [*TINY, *p.fsdp, "checkpoint.interval_steps=6", "checkpoint.keep_last=2", f"paths.output_dir={d}"]


def dry_run(p: Profile, w: Path) -> None:
    q = lambda args, env={}: "  $ " + " ".join([*(f"{k}={v}" for k, v in env.items()), shlex.join(run_argv(args))])
    t = p.timeouts
    print(f"gpu-tests (timeout {t['gpu-tests']} s):\n  $ {shlex.join(PYTEST)}")
    print(f"default (timeout {t['default']} s; the second starts from a copy of the first's data):\n"
          f"{q(default_args(p, p.ref, w / 'default-ref'))}\n{q(default_args(p, p.trainer, w / 'default'))}")
    print(f"mfu (timeout {t['mfu']} s; on CUDA out of memory the next micro-batch; compiled from the eager fit):")
    for c in p.compile:
        for m, seq, mbs in p.models:
            print(q(mfu_args(p, m, seq, mbs[0], c, w / mfu_dir(m, mbs[0], c))) + f"   # then {mbs[1:]}")
    print(f"fsdp-resume (timeout {t['fsdp-resume']} s):")
    for d, env in (("fsdp-whole", {}), ("fsdp-killed", KILL), ("fsdp-killed", {})):
        print(q(fsdp_args(p, w / d), env))


# ---- running ----

class Ctx:
    """One check's subprocesses: its deadline, its logs, the peaks its run.py processes report."""

    def __init__(self, p: Profile, work: Path, timeout_s: float):
        self.p, self.work, self.deadline, self.peaks = p, work, time.monotonic() + timeout_s, []
        (work / "logs").mkdir(parents=True, exist_ok=True)

    def dir(self, name: str, seed: Path | None = None) -> Path:
        """A fresh output dir; with `seed`, a copy of its prepared data (not rebuilt, not timed)."""
        shutil.rmtree(d := self.work / name, ignore_errors=True)
        for sub in ("data", "tokenizers") if seed else ():
            shutil.copytree(seed / sub, d / sub)
        return d

    def run(self, label: str, argv: list[str], env: dict | None = None, check: bool = True):
        log, peak = self.work / "logs" / f"{label}.log", self.work / "logs" / f"{label}.peak"
        peak.unlink(missing_ok=True)
        env = {**{k: v for k, v in os.environ.items() if k != "CPT_FAULT"}, "PYTHONUNBUFFERED": "1",
               PEAK_ENV: str(peak), **(env or {})}
        t, left = time.perf_counter(), max(self.deadline - time.monotonic(), 0.1)
        # Its own session: a timeout kills the whole group, pytest's run.py children too.
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        out = err = ""
        try:
            out, err = proc.communicate(timeout=left)
        except BaseException:  # a timeout or ^C: in its own session, nothing else would stop the group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise
        finally:
            log.write_text(f"$ {shlex.join(argv)}\n{out}\n--- stderr\n{err}")
        if peak.exists() and proc.returncode == 0:  # not a run that ran out of memory
            self.peaks.append(int(peak.read_text()))
        if check and proc.returncode:
            last = next((l for l in reversed(err.splitlines()) if l.strip()), "")
            raise CheckFailed(f"{label} exited {proc.returncode}: {last[-300:]} (log {log})")
        return subprocess.CompletedProcess(argv, proc.returncode, out, err), time.perf_counter() - t


def smi(query: str) -> str | None:
    try:
        return subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def poll_smi(peak: list, stop: threading.Event) -> None:
    """peak[0]: the largest nvidia-smi memory.used (MiB) seen, polled every second until `stop`."""
    while True:
        if used := smi("memory.used"):
            peak[0] = max([peak[0] or 0, *map(int, used.split())])
        if stop.wait(1.0):
            return


def call(p: Profile, work: Path):
    def go(name, fn, timeout_s) -> Check:
        ctx, peak, stop, t = Ctx(p, work, timeout_s), [None], threading.Event(), time.perf_counter()
        threading.Thread(target=poll_smi, args=(peak, stop), daemon=True).start()
        try:
            ok, summary, figures = fn(ctx)
            c = Check(name, "PASS" if ok else "FAIL", summary, figures)
        except subprocess.TimeoutExpired:
            c = Check(name, "TIMEOUT", f"over its {timeout_s:.0f} s (logs in {work / 'logs'})")
        except CheckFailed as e:
            c = Check(name, "FAIL", str(e))
        except Exception as e:  # a broken check must not cost the others their turn
            c = Check(name, "ERROR", f"{type(e).__name__}: {e}")
        stop.set()
        c.wall_s = time.perf_counter() - t
        c.peak_allocated_gib = max(ctx.peaks) / 2**30 if ctx.peaks else None
        c.peak_used_gib = peak[0] / 1024 if peak[0] is not None else None
        return c
    return go


def store(out: Path, keys=("train/loss", "perf/tokens_per_s", "perf/mfu")) -> dict:
    """What a run logged to its MLflow store: the final losses and tags of its `cpt.kind=run` run, the
    seconds inside all its runs (stage start to end: no start-up or data preparation), and {step: value}
    of `keys` over all of them (steps are tokens since the chain's start: unique)."""
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=f"sqlite:///{out}/mlflow.db")
    rs = c.search_runs([c.get_experiment_by_name("cpt").experiment_id])
    (run,) = [r for r in rs if r.data.tags.get("cpt.kind") == "run"]
    return {"final": {k: v for k, v in run.data.metrics.items() if k.startswith("final/") and k.endswith("loss")},
            "tags": run.data.tags, "train_s": sum((r.info.end_time - r.info.start_time) / 1000 for r in rs),
            **{k: {h.step: h.value for r in rs for h in c.get_metric_history(r.info.run_id, k)} for k in keys}}


# ---- the checks: (ok, summary, figures) ----

def check_tests(ctx: Ctx):
    n = parse_pytest(ctx.run("gpu-tests", PYTEST, check=False)[0].stdout)
    ok = n["failed"] + n["errors"] == 0 and (n["passed"] > 0 or ctx.p is SMOKE)  # all skipped on a GPU: fail
    return ok, f"{n['passed']} passed, {n['failed']} failed, {n['errors']} errors, {n['skipped']} skipped", n


def check_default(ctx: Ctx):
    p, ref = ctx.p, ctx.dir("default-ref")
    _, wall_ref = ctx.run("default-ref", run_argv(default_args(p, p.ref, ref)))
    _, wall = ctx.run("default", run_argv(default_args(p, p.trainer, d := ctx.dir("default", seed=ref))))
    a, b = store(ref), store(d)
    f = {"final": b["final"], "final_ref": a["final"], "final_delta": max_delta(a["final"], b["final"]),
         "tol": BF16_TOL, "speedup_train": a["train_s"] / b["train_s"], "speedup_process": wall_ref / wall}
    return f["final_delta"] <= BF16_TOL, (
        f"{' '.join(p.trainer)} vs {' '.join(p.ref)}, {p.default_steps} steps a stage: |Δ final loss| "
        f"{f['final_delta']:.3g} <= {BF16_TOL:g} nats, speed-up {f['speedup_train']:.1f}x in training time "
        f"({f['speedup_process']:.1f}x process wall, start-up and data preparation included)"), f


def mfu_run(ctx: Ctx, model: str, seq: int, mbs: list[int], compile_: bool, seed: Path | None):
    """The figures at the first micro-batch of `mbs` that does not run out of CUDA memory."""
    for mb in mbs:
        d = ctx.dir(mfu_dir(model, mb, compile_), seed)
        r, _ = ctx.run(d.name, run_argv(mfu_args(ctx.p, model, seq, mb, compile_, d)), check=False)
        if r.returncode == 0:
            s = store(d)
            tps, mfu = (steady([v for _, v in sorted(s[k].items())]) for k in ("perf/tokens_per_s", "perf/mfu"))
            return d, {"model": model, "compile": compile_, "micro_batch": mb, "tried": mbs, "seq": seq,
                       "tokens_per_s": tps, "mfu": mfu,
                       "peak_allocated_gib": ctx.peaks[-1] / 2**30 if ctx.peaks else None}
        if not is_oom(r.stderr):
            raise CheckFailed(f"{d.name} exited {r.returncode} (log {ctx.work / 'logs' / d.name}.log)")
        print(f"  {model} micro-batch {mb}: CUDA out of memory", flush=True)
    raise CheckFailed(f"{model}: every micro-batch of {mbs} ran out of memory")


def check_mfu(ctx: Ctx):
    got, seed, fits = [], None, {}
    say = lambda m: (f"{m['model']} {'compiled' if m['compile'] else 'eager'} micro-batch {m['micro_batch']} "
                     f"(the largest that fits of {'/'.join(map(str, m['tried']))}): "
                     f"{m['tokens_per_s'] or 0:,.0f} tokens/s, MFU {m['mfu'] or 0:.3f}")
    try:  # eager for every model first: a timeout leaves those figures
        for compile_ in ctx.p.compile:
            for model, seq, mbs in ctx.p.models:
                d, m = mfu_run(ctx, model, seq, mbs[mbs.index(fits.get(model, mbs[0])):], compile_, seed)
                seed, fits[model] = seed or d, m["micro_batch"]
                got.append(m)
                print("  " + say(m), flush=True)
    except subprocess.TimeoutExpired:
        if not got:
            raise
    missing = len(ctx.p.compile) * len(ctx.p.models) - len(got)
    ok = not missing and all(m["mfu"] and 0 < m["mfu"] < 1 for m in got)
    return ok, "; ".join(map(say, got)) + (f"; {missing} not measured (timeout)" if missing else ""), {"runs": got}


def check_fsdp(ctx: Ctx):
    ctx.run("fsdp-whole", run_argv(fsdp_args(ctx.p, whole := ctx.dir("fsdp-whole"))))
    d = ctx.dir("fsdp-killed", seed=whole)
    rc = ctx.run("fsdp-killed", run_argv(fsdp_args(ctx.p, d)), env=KILL, check=False)[0].returncode
    if rc != -signal.SIGKILL:
        raise CheckFailed(f"{KILL} should SIGKILL the run; it exited {rc}")
    ctx.run("fsdp-resumed", run_argv(fsdp_args(ctx.p, d)))
    a, b = store(whole), store(d)
    at = b["tags"].get("cpt.resumed_from_step")
    f = {"final_delta": max_delta(a["final"], b["final"]), "curve_delta": max_delta(a["train/loss"], b["train/loss"]),
         "resumed_from_step": at, "tol": RESUME_TOL}
    return max(f["final_delta"], f["curve_delta"]) <= RESUME_TOL and at is not None, (
        f"SIGKILLed after step {KILL_AT} of stage 1, resumed from step {at}: |Δ final loss| {f['final_delta']:.3g}, "
        f"max |Δ train/loss| over every step {f['curve_delta']:.3g} <= {RESUME_TOL:g} nats"), f


CHECKS = [("gpu-tests", check_tests), ("default", check_default), ("mfu", check_mfu), ("fsdp-resume", check_fsdp)]


def machine() -> dict:
    import torch

    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = " + uncommitted changes" if git("status", "--porcelain") else ""
    return {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device (CPU smoke)",
            "driver": (smi("driver_version") or "—").splitlines()[0], "torch": torch.__version__,
            "cuda": torch.version.cuda or "—", "date": date.today().isoformat(),
            "commit": git("rev-parse", "--short", "HEAD") + dirty}


def main():
    if sys.argv[1:2] == ["--as-run"]:
        return as_run(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-s", type=float, help="all checks together (default 480; --cpu-smoke 900)")
    ap.add_argument("--out", type=Path,
                    help="results JSON (default bench/gpu_check.json; --cpu-smoke: in its scratch dir)")
    ap.add_argument("--dry-run", action="store_true", help="print the commands each check would run")
    ap.add_argument("--cpu-smoke", action="store_true", help="trainer=cpu, tiny budgets, README rewritten in a copy")
    args = ap.parse_args()
    p = SMOKE if args.cpu_smoke else GPU
    if args.dry_run:
        return dry_run(p, ROOT / "outputs" / "bench" / "gpu_check")
    import torch

    if not (torch.cuda.is_available() or args.cpu_smoke):
        return print("no CUDA device: nothing measured (--cpu-smoke runs the checks on CPU, --dry-run prints them)")
    work, budget = scratch("gpu_check"), args.budget_s or p.budget_s
    out = args.out or (work if args.cpu_smoke else ROOT / "bench") / "gpu_check.json"
    save = lambda checks, info=None: out.write_text(json.dumps(  # after every check: a killed script keeps them
        {"machine": info, "budget_s": budget, "checks": [asdict(c) for c in checks]}, indent=1) + "\n")
    checks = run_all([(n, fn, p.timeouts[n]) for n, fn in CHECKS], budget, call(p, work), save)
    save(checks, info := machine())  # only now: get_device_name opens a CUDA context in this process
    readme = ROOT / "bench" / "README.md"
    if args.cpu_smoke:  # the real README holds GPU figures only
        readme = Path(shutil.copy(readme, work / "README.md"))
    readme.write_text(rewrite_section(readme.read_text(), table(info, checks, budget)))
    print(f"results: {out}; table: {readme} (## GPU)")


if __name__ == "__main__":
    main()
