"""The glue between Hydra and a run: validation first, one-line errors, the closing summary."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from cpt.errors import Preempted, UserError, report


def _silence_in_job_processes() -> None:
    """Launchers that run jobs in other processes (joblib's workers, submitit's jobs) unpickle the
    task function there, which imports this module, and only then compose the job's config: the
    schema-match warning that main_guard silences in the parent is silenced here for them."""
    from cpt.cli.compose import silence_schema_match

    silence_schema_match()


_silence_in_job_processes()


def main_guard(main, conf_dir: Path, argv: list[str]) -> None:
    """Check group options before Hydra (its message spans lines) where Hydra will look for them
    (conf/, --config-dir, hydra.searchpath: cpt/cli/search_path.py), then run `main`;
    a UserError anywhere becomes one line on stderr and exit status 2."""
    import os

    from hydra.errors import HydraException

    from cpt import signals
    from cpt.cli.compose import silence_schema_match
    from cpt.cli.search_path import command_line_options
    from cpt.cli.sweep_check import check_sweep
    from cpt.config.overrides import check_overrides
    from cpt.config.schema import check_group_choices

    # Before torch loads OpenMP: idle threads sleep instead of spinning. On a CPU shared with
    # other processes, spinning threads fight for the cores: a forward pass of the tiny model
    # took 280 ms instead of 35 ms with 2 threads at load 7 on 2 cores (bench/README.md).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    silence_schema_match()
    try:
        options, overrides = command_line_options(argv, conf_dir)  # honours --config-dir, hydra.searchpath
        check_overrides(overrides)  # syntax and misspelled keys: Hydra's messages span lines
        try:
            check_group_choices(overrides, options)
            check_sweep(argv, overrides)  # every value of a sweep before its first job trains
        except HydraException:
            pass  # a malformed override or hydra.searchpath: Hydra names it when it composes
        signals.install()
        main()
    except UserError as e:
        sys.exit(report(signals.final_line(e) if isinstance(e, Preempted) else e))


def task(cfg):
    """The Hydra task function: returns the objective (float, or tuple for several metrics)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from cpt import signals
    from cpt.config.schema import GROUPS, parse

    signals.install()  # also in a launcher's job process, which does not pass main_guard
    try:
        run_cfg = parse(cfg)  # every range checked before any work or any write
        hc = HydraConfig.get()
        choices = {g: hc.runtime.choices.get(g) for g in GROUPS}
        if run_cfg.dry_run:
            from cpt.run.dry_run import describe

            print(describe(run_cfg, choices))
            return float("nan")
        from cpt.dist.strategy import check_device
        from cpt.store.tracking import check_uri
        from cpt.store.writable import check_dir

        check_device(run_cfg.trainer)
        check_dir("paths.output_dir", run_cfg.paths.root)  # also in a launcher's job (PathChecks ran in its parent)

        # A tracking server that does not answer: say so now, not after ~10 s of importing torch.
        check_uri(run_cfg.tracking.uri, run_cfg.tracking.connect_timeout_s)
        from cpt.run.experiment import RunContext, run
        from cpt.sweep.job_tags import job_tags
        from cpt.store.tracking import flatten

        resolved = OmegaConf.to_container(cfg, resolve=True)
        multirun = hc.mode.name == "MULTIRUN"
        overrides = [o for o in hc.overrides.task]
        ctx = RunContext(
            choices=choices,
            params=flatten(resolved),
            resolved_yaml=OmegaConf.to_yaml(cfg, resolve=True),
            sweep_id=Path(hc.sweep.dir).name if multirun else "",
            run_name="default",
            extra_tags=job_tags(),
            overrides=overrides,  # the run's name says what differs (cpt/sweep/names.py)
        )
        from cpt.dist.ranks import ranks

        with ranks(run_cfg.trainer, relaunch_command(hc), Path(hc.runtime.output_dir)) as dist:
            result = run(run_cfg, ctx, say=print if dist.is_zero else _silent, dist=dist)
        if dist.is_zero:
            print(summary(run_cfg, result))
        signals.check(f"run {result.run_id} finished before it could stop")  # a signal in its last step
        return result.objective(run_cfg.objective)
    except UserError as e:
        sys.exit(report(signals.final_line(e) if isinstance(e, Preempted) else e))
    except Exception as e:  # a disk that filled up (or went read-only) mid-run: its run is FAILED already
        from cpt.store.writable import disk_error

        error = disk_error(e, f"paths.output_dir={cfg.paths.output_dir}")
        if error is None:
            raise
        sys.exit(report(error))


def _silent(*_):
    pass


def relaunch_command(hc) -> list[str]:
    """This Hydra job as a single run in its own output directory: how a node's other ranks
    start (cpt/dist/ranks.py). In a multirun it is the job's overrides, not the whole sweep
    (`hydra.mode=RUN`: a shipped sweep's file says MULTIRUN). The job's search path goes along:
    its primary conf, a `--config-dir` (a user's options, a sweep file) and a command-line
    `hydra.searchpath` (Hydra keeps that one among the hydra overrides, not the task's)."""
    run_py = Path(__file__).resolve().parents[2] / "run.py"
    sources = hc.runtime.config_sources
    primary = next((s for s in sources if s.provider == "main" and s.schema == "file"), None)
    where = ["--config-path", primary.path, "--config-name", hc.job.config_name] if primary else []
    where += [a for s in sources if s.provider == "command-line" and s.schema == "file"
              for a in ("--config-dir", s.path)]
    searchpath = [o for o in hc.overrides.hydra if o.lstrip("+").startswith("hydra.searchpath=")]
    return [sys.executable, str(run_py), *where, *searchpath, *hc.overrides.task,
            f'hydra.run.dir="{hc.runtime.output_dir}"', "hydra.output_subdir=null", "hydra.mode=RUN"]


def summary(cfg, result) -> str:
    m = result.metrics
    names = [d.name for d in cfg.shift.datasets]
    recipe = "" if cfg.recipe.name == "cpt" else f"({cfg.recipe.name}) "
    lines = ["", "── result " + recipe + "─" * (50 - len(recipe))]
    s0 = result.stage0
    if "unigram_entropy" in s0:
        d0, h = names[0], s0["unigram_entropy"]
        loss = s0["val"][d0]
        lines.append(f"  stage 0 {d0:<22} {loss:.4f} nats (unigram entropy {h:.4f} nats: {loss / h - 1:+.0%})")
    for n in names:
        lines.append(f"  final {n:<24} {m[f'final/{n}/loss']:.4f} nats")
    lines += [
        f"  upstream / downstream / avg  {m['final/upstream_loss']:.4f} / {m['final/downstream_loss']:.4f} / {m['final/avg_loss']:.4f}",
        f"  forgetting {m.get('forgetting', math.nan):+.4f}   adaptation {m['adaptation']:+.4f}",
        f"  MLflow run {result.run_id} in {cfg.tracking.uri} (experiment {cfg.tracking.experiment})",
    ]
    if cfg.tracking.uri.startswith("sqlite:"):
        lines.append(f"  open it:  mlflow ui --backend-store-uri {cfg.tracking.uri} --host 127.0.0.1")
        lines += _runs_page(cfg.tracking)
    return "\n".join(lines)


def _runs_page(tracking) -> list[str]:
    """The runs page's address. MLflow 3.17's UI picks GenAI or training pages per browser (a
    setting it keeps itself, GenAI first) and ignores the experiment's kind tag: this address
    opens the runs page whatever that setting says."""
    from mlflow.tracking import MlflowClient

    try:
        exp = MlflowClient(tracking.uri).get_experiment_by_name(tracking.experiment)
    except Exception:  # noqa: BLE001 — an address is a convenience; the run is done
        return []
    return [f"  then:     http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"] \
        if exp else []
