"""The typed, documented schema of a run, and its validation.

Hydra composes the YAML in conf/; `parse(cfg)` turns the composed DictConfig into these
dataclasses and checks every range before any work starts. Each problem is one `UserError`
line naming the key and what is allowed. Cross-field checks live in `__post_init__`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from cpt.data.sources import check_source
from cpt.errors import UserError, check as _check
from cpt.model.spec import ModelSpec
from cpt.plan.schedules import INFINITE, NAMES as SCHEDULES, WSD_SHAPES
from cpt.config.shift_forms import expand_shift

GROUPS = ("model", "shift", "schedule", "recipe", "trainer", "tracking", "harness")
RECIPES = ("cpt", "union", "scratch", "upstream-only", "merge")  # conf/recipe/; stages in cpt/plan/recipes.py


@dataclass
class LR:
    max: float = 3e-4  # η_max, the peak LR of the stage
    min_ratio: float = 0.1  # η_min = min_ratio · η_max, the end of the decay

    def check(self, prefix: str) -> None:
        _check(self.max > 0, f"{prefix}lr.max", self.max, "a learning rate > 0")
        _check(0 <= self.min_ratio <= 1, f"{prefix}lr.min_ratio", self.min_ratio, "0 <= lr.min_ratio <= 1")


@dataclass
class Pretrain:
    """Stage 0's recipe (the upstream pre-training)."""

    warmup: float = 0.01  # fraction of stage 0's steps
    lr: LR = field(default_factory=LR)
    schedule: str = "cosine"  # a conf/schedule option name (default: the schedule's pretrain_schedule)


@dataclass
class Schedule:
    """LR shape of continual stages (conf/schedule/<name>.yaml). Its knobs also shape stage 0
    when `pretrain.schedule` names a schedule that has them; unset knobs keep these defaults.
    Fractions are of the stage's optimizer steps T."""

    name: str = "cosine"
    # Default of the root `pretrain.schedule` that goes with this schedule: cosine, except for the
    # infinite schedules, which span the whole chain (stage 0 runs warm-up and cooldown).
    pretrain_schedule: str = "cosine"
    cooldown: float = 0.6  # infinite-*: T_cd/T, cooldown from η_max to η_const after the warm-up
    constant_until: float = 0.85  # infinite-*: T_c/T, constant η_const until τ = T_c, then the anneal
    alpha: float = 10.0  # infinite-invsqrt: α of the inverse-sqrt cooldown
    lr_const: float | None = None  # infinite-*: η_const; null = (η_max + η_min)/2 of stage 0 (1.65e-4)
    decay: float = 0.2  # wsd: length of the final decay to η_min
    decay_shape: str = "linear"  # wsd: linear | cosine | 1-sqrt

    def resolved_lr_const(self, pretrain_lr: LR) -> float:
        """schedule.lr_const, or its default when null."""
        if self.lr_const is not None:
            return self.lr_const
        return (pretrain_lr.max + pretrain_lr.max * pretrain_lr.min_ratio) / 2

    def check(self, cfg: "RunConfig") -> None:
        """Range checks of the knobs, and of how they fit each stage that uses them."""
        p = cfg.pretrain
        _check(self.name in SCHEDULES, "schedule", self.name, ", ".join(SCHEDULES))
        _check(p.schedule in SCHEDULES, "pretrain.schedule", p.schedule, ", ".join(SCHEDULES))
        _check(self.name not in INFINITE or p.schedule == self.name, "pretrain.schedule", p.schedule,
               f"{self.name} when schedule={self.name} (an infinite schedule spans the whole chain)")
        _check(0 <= self.constant_until < 1, "schedule.constant_until", self.constant_until,
               "0 <= schedule.constant_until < 1")
        _check(0 <= self.cooldown <= self.constant_until, "schedule.cooldown", self.cooldown,
               f"0 <= schedule.cooldown <= schedule.constant_until ({self.constant_until:g})")
        _check(self.alpha > 0, "schedule.alpha", self.alpha, "> 0")
        _check(0 < self.decay <= 1, "schedule.decay", self.decay, "0 < schedule.decay <= 1")
        _check(self.decay_shape in WSD_SHAPES, "schedule.decay_shape", self.decay_shape, ", ".join(WSD_SHAPES))
        # Only stage 0 of an infinite chain warms up (later stages continue at η_const).
        uses = [("pretrain.", p.schedule, p.warmup, p.lr),
                ("", self.name, 0.0 if self.name in INFINITE else cfg.warmup, cfg.lr)]
        for prefix, name, warmup, lr in uses:
            if name in INFINITE:
                _check(warmup + self.constant_until < 1, "schedule.constant_until", self.constant_until,
                       f"{prefix}warmup + schedule.constant_until < 1 ({prefix}warmup={warmup:g}; "
                       "the anneal needs steps)")
                lo, hi = lr.max * lr.min_ratio, lr.max
                lr_const = self.resolved_lr_const(p.lr)
                _check(0 < lr_const and lo <= lr_const <= hi, "schedule.lr_const", lr_const,
                       f"{lo:g} <= schedule.lr_const <= {hi:g} (η_min..η_max of {prefix}lr)")
            if name == "wsd":
                _check(warmup + self.decay <= 1, "schedule.decay", self.decay,
                       f"{prefix}warmup + schedule.decay <= 1 ({prefix}warmup={warmup:g})")


@dataclass
class Recipe:
    name: str = "cpt"  # cpt (the chain) | union | scratch | upstream-only (the baselines of 2403.08763) | merge


@dataclass
class Merge:
    """recipe=merge (cpt/run/merge.py): weights averaged after training, nothing trained. Each
    point is one MLflow run; `merge.*` is part of its run key."""

    # θ(α) = (1 − α)·θ_start + α·θ_end between the weights the last continual stage started from
    # and its final weights, one MLflow run per α (outside [0, 1]: extrapolation along the line)
    alphas: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    runs: list[str] = field(default_factory=list)  # instead: a soup of these runs' final weights (MLflow run ids or sweep ids)
    weights: list[float] = field(default_factory=list)  # the soup's weight of each run (empty: uniform), normalised to sum 1

    def check(self, recipe: str) -> None:
        _check(bool(self.alphas) and len(set(self.alphas)) == len(self.alphas), "merge.alphas", self.alphas,
               "a non-empty list of distinct numbers")
        _check(recipe == "merge" or not (self.runs or self.weights), "merge.runs", self.runs,
               "[] unless recipe=merge")
        _check(all(w >= 0 for w in self.weights) and (not self.weights or sum(self.weights) > 0),
               "merge.weights", self.weights, "numbers >= 0, not all 0")
        _check(not self.weights or self.runs, "merge.weights", self.weights, "[] without merge.runs")


@dataclass
class EMA:
    """An exponential moving average of the weights while each stage trains (cpt/train/ema.py),
    evaluated beside them (val/<dataset>/loss_ema). Off by default; when on, `ema.*` is part of
    the prefix key, so a stage trained with it is cached apart from one trained without."""

    decay: Optional[float] = None  # θ_ema ← decay·θ_ema + (1 − decay)·θ after every optimizer step; null = off
    use: bool = False  # the average is each stage's final model: cached, evaluated, continued from

    def check(self) -> None:
        _check(self.decay is None or 0 <= self.decay < 1, "ema.decay", self.decay,
               "null (off) or 0 <= ema.decay < 1")
        _check(not self.use or self.decay is not None, "ema.use", self.use, "false while ema.decay is null")


@dataclass
class DatasetSpec:
    """One dataset of the chain."""

    name: str  # appears in metric keys: val/<name>/loss
    source: dict  # {type: synthetic|files|hf, ...}; its contents identify the data
    tokens: int  # training tokens of the stage that trains on this dataset (and the shard's cap)
    val_tokens: int = 8192  # held-out tokens, evaluated at every evaluation

    def identity(self) -> dict:
        return {"source": self.source}


@dataclass
class Shift:
    """The ordered datasets D0 → D1 → … and how their text becomes tokens."""

    name: str
    datasets: list[DatasetSpec]
    tokenizer: str = "bpe"  # default of the root `tokenizer` key for this shift
    bpe_vocab_size: int = 1024  # vocabulary of the `bpe` tokenizer trained on D0
    # Shorthands that shift YAMLs interpolate into `datasets` (cpt/config/shift_forms.py):
    tokens: int | None = None  # every dataset's training budget unless datasets.<i>.tokens says otherwise
    val_tokens: int | None = None  # every dataset's held-out tokens, likewise
    text_field: str = "text"  # JSON field / parquet column holding the text (files and hf sources)
    upstream: Any = None  # shift=files: D0's files, directories or globs (a string or a list)
    downstream: Any = None  # shift=files: D1's, likewise
    paths: list | None = None  # shift=files, N datasets: one entry per dataset (replaces up/downstream)
    names: list | None = None  # names of the `paths` datasets (default d0, d1, ...)
    allow_epochs: bool = False  # a budget beyond a dataset's tokens re-reads it; false: that is an error

    def __post_init__(self):
        first = {}
        for i, d in enumerate(self.datasets):  # a repeat must be the same data, else its metrics lie
            j = first.setdefault(d.name, i)
            _check(self.datasets[j].source == d.source, "shift.names" if self.names else f"shift.datasets.{i}.name",
                   self.names or d.name, f"distinct names for different sources ({d.name!r} names datasets {j} "
                   f"and {i}; the same source listed twice is allowed and named {d.name}.1)")
        for d, name in zip(self.datasets, occurrence_names([d.name for d in self.datasets])):
            d.name = name


def occurrence_names(names: list[str]) -> list[str]:
    """A dataset listed again keeps its own metric keys: its k-th repeat is named `<name>.k`
    (D0 → D0: syn-en-a, syn-en-a.1). MLflow keys allow only letters, digits and `_-. /:`,
    so `@` cannot mark the repeat; `.` reads as "occurrence k" and survives every store."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(f"{n}.{k}" if k else n)
    return out


@dataclass
class Batch:
    tokens: int = 2048  # global batch per optimizer step, in tokens (the papers: 1104·2048 ≈ 2.26M)
    micro_sequences: int = 16  # sequences per device per forward pass; accumulation is derived


@dataclass
class Eval:
    """When every dataset is evaluated (cpt/plan/stages.py eval_steps), in every stage. The
    cadence is part of the run's identity, not of the prefix key: a denser one re-trains the run
    and reuses its cached prefix."""

    interval_steps: int = 50  # evaluate every dataset every this many optimizer steps
    warmup_interval_steps: int = 10  # also every this many while warming up and for as long again
    # The dense window, where the stability gap shows (with or without warm-up): the first
    # dense_fraction of the stage's steps (at least dense_evals steps), holding at least
    # dense_evals evaluations from step 0 on; dense_evals=0 switches it off.
    dense_fraction: float = 0.1
    dense_evals: int = 10


@dataclass
class Trainer:
    """Lightning Trainer settings (conf/trainer/<name>.yaml). Scale-out is described in cpt/dist/strategy.py."""

    name: str = "cpu"
    accelerator: str = "cpu"  # cpu | gpu
    devices: int = 1  # processes (GPUs) per node; the global batch is split over devices · num_nodes
    num_nodes: int = 1  # nodes; > 1 needs SLURM (hydra/launcher=submitit_slurm) or torchrun to start them
    strategy: str = "auto"  # auto (one device) | ddp | fsdp (shards parameters, gradients, optimizer state; on cpu over gloo)
    precision: str = "32-true"  # fp32 on CPU: bf16 autocast is ~2x slower there (docs/stack.md)
    activation_checkpointing: bool = False  # recompute each layer's activations in backward: less memory, ~1/3 more compute
    compile: bool = False  # torch.compile the model (slower on CPU: 0.8-1.0x after a 45-70 s compile, docs/stack.md)
    peak_flops: Optional[float] = None  # peak FLOP/s of one device for perf/mfu; null = known GPUs' bf16 peak, else no MFU


@dataclass
class Tracking:
    uri: str = "sqlite:///outputs/mlflow.db"  # MLflow tracking URI: SQLite file or a server URL
    experiment: str = "cpt"
    artifact_dir: str = "outputs/mlartifacts"  # where a new SQLite-backed experiment stores artifacts
    connect_timeout_s: float = 5.0  # an http(s) server must answer within this, else the run stops at once


@dataclass
class Checkpoint:
    """Periodic checkpoints of every stage (weights, optimizer, LR scheduler, data position) in
    <paths.output_dir>/checkpoints/: re-running the same command resumes from the last one."""

    interval_steps: int = 100  # save every this many optimizer steps of a stage; 0 = never
    keep_last: int = 2  # checkpoints kept per stage (a 410M model with AdamW state is ~5 GB each)


@dataclass
class Harness:
    """Task scores by lm-evaluation-harness (conf/harness/<name>.yaml, cpt/harness/): not part of
    a run's identity."""

    name: str = "none"
    tasks: list[Any] = field(default_factory=list)  # names, YAML paths, `synthetic`, or {task, dataset}; [] = off
    num_fewshot: Optional[int] = None  # null: each task's own
    limit: Optional[float] = None  # items per task (< 1: a fraction); null: all
    batch_size: int = 64
    at: str = "stages"  # stages: every stage end and the final model; final: the final model and its references


@dataclass
class Paths:
    output_dir: str = "outputs"  # root of everything a run writes

    @property
    def root(self) -> Path:
        return Path(self.output_dir)


@dataclass
class RunConfig:
    model: ModelSpec
    shift: Shift
    warmup: float = 0.01  # linear warm-up, fraction of each continual stage's steps
    lr: LR = field(default_factory=LR)
    replay: float = 0.0  # fraction of each continual stage's sequences re-read from earlier data
    schedule: Schedule = field(default_factory=Schedule)
    recipe: Recipe = field(default_factory=Recipe)
    merge: Merge = field(default_factory=Merge)
    ema: EMA = field(default_factory=EMA)
    pretrain: Pretrain = field(default_factory=Pretrain)
    tokenizer: str = "bpe"
    objective: Any = "final/avg_loss"  # a metric name, or a list for multi-objective sweeps
    seed: int = 0
    batch: Batch = field(default_factory=Batch)
    eval: Eval = field(default_factory=Eval)
    log_interval_steps: int = 10  # train/loss, train/lr, perf/* every this many steps
    dry_run: bool = False  # print the plan and exit
    export: bool = False  # save the final model as a Hugging Face directory (cpt/model/hf.py)
    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    force: bool = False  # train even if a finished MLflow run has this run's identity (else it is skipped)
    paths: Paths = field(default_factory=Paths)
    trainer: Trainer = field(default_factory=Trainer)
    tracking: Tracking = field(default_factory=Tracking)
    harness: Harness = field(default_factory=Harness)

    def __post_init__(self):
        _check(0 <= self.warmup < 1, "warmup", self.warmup, "0 <= warmup < 1")
        _check(0 <= self.replay < 1, "replay", self.replay, "0 <= replay < 1")
        self.lr.check("")
        self.pretrain.lr.check("pretrain.")
        _check(0 <= self.pretrain.warmup < 1, "pretrain.warmup", self.pretrain.warmup, "0 <= pretrain.warmup < 1")
        self.schedule.check(self)
        _check(self.recipe.name in RECIPES, "recipe", self.recipe.name, ", ".join(RECIPES))
        self.merge.check(self.recipe.name)
        self.ema.check()
        _check(not (self.recipe.name == "scratch" and self.model.init), "model.init", self.model.init,
               "only without recipe=scratch (scratch trains from random weights)")
        _check(len(self.shift.datasets) >= 2, "shift.datasets", len(self.shift.datasets), "at least 2 datasets")
        names = [d.name for d in self.shift.datasets]
        _check(len(set(names)) == len(names), "shift.datasets", names,
               "distinct dataset names (a repeat of `x` is named `x.1`, `x.2`, ...)")
        self._check_model_and_objective(names)
        seq = self.model.seq_len
        _check(self.batch.tokens % seq == 0 and self.batch.tokens >= seq, "batch.tokens", self.batch.tokens,
               f"a positive multiple of model.seq_len ({seq})")
        _check(self.batch.micro_sequences > 0, "batch.micro_sequences", self.batch.micro_sequences, "> 0")
        from cpt.dist.strategy import check_trainer

        check_trainer(self)
        from cpt.harness.spec import check_harness

        check_harness(self.harness, names)
        for i, d in enumerate(self.shift.datasets):
            check_source(d.source, f"shift.datasets.{i}.source")
            _check(d.tokens >= self.batch.tokens, f"shift.datasets.{i}.tokens", d.tokens,
                   f"at least one batch (batch.tokens={self.batch.tokens})")
            _check(d.val_tokens >= seq, f"shift.datasets.{i}.val_tokens", d.val_tokens,
                   f"at least one sequence (model.seq_len={seq})")
        _check(self.eval.interval_steps > 0, "eval.interval_steps", self.eval.interval_steps, "> 0")
        _check(self.eval.warmup_interval_steps > 0, "eval.warmup_interval_steps", self.eval.warmup_interval_steps, "> 0")
        _check(0 <= self.eval.dense_fraction <= 1, "eval.dense_fraction", self.eval.dense_fraction, "0 <= eval.dense_fraction <= 1")
        _check(self.eval.dense_evals >= 0, "eval.dense_evals", self.eval.dense_evals, ">= 0 (0 = no dense window)")
        _check(self.log_interval_steps > 0, "log_interval_steps", self.log_interval_steps, "> 0")
        _check(self.checkpoint.interval_steps >= 0, "checkpoint.interval_steps", self.checkpoint.interval_steps,
               ">= 0 (0 = no periodic checkpoints)")
        _check(self.checkpoint.keep_last >= 1, "checkpoint.keep_last", self.checkpoint.keep_last, ">= 1")
        _check(self.tracking.connect_timeout_s > 0, "tracking.connect_timeout_s", self.tracking.connect_timeout_s, "> 0")
        _check(self.shift.bpe_vocab_size >= 300, "shift.bpe_vocab_size", self.shift.bpe_vocab_size,
               ">= 300 (256 bytes + merges + EOS)")

    def _check_model_and_objective(self, names: list[str]) -> None:
        m = self.model  # a shape Hugging Face cannot build fails at model construction, with a traceback
        _check(m.n_head > 0 and m.d_model % m.n_head == 0, "model.d_model", m.d_model,
               f"a multiple of model.n_head ({m.n_head}): each head gets d_model / n_head dimensions")
        logged = self._closing_metrics(names)
        for o in self.objective if isinstance(self.objective, (list, tuple)) else [self.objective]:
            _check(o in logged, "objective", o, "one of the metrics the run logs: " + ", ".join(logged))

    def _closing_metrics(self, names: list[str]) -> list[str]:
        """The metrics every run of this config logs at its end (cpt/plan/metrics.py, docs/metrics.md):
        what an objective may name, checked before any training."""
        from cpt.harness.spec import task_refs

        logged = [*(f"final/{n}/loss" for n in names), "final/upstream_loss", "final/downstream_loss",
                  "final/avg_loss", "forgetting", *(f"forgetting/{n}" for n in names[:-1]), "adaptation",
                  "compute/tokens", "compute/tokens_with_prefix", "compute/flops"]
        continual = self.recipe.name == "cpt" and len(names) > 1
        if self.ema.decay is not None and self.recipe.name == "cpt":  # of the run's own stage
            logged += [f"final/{n}/loss_ema" for n in names]
        if continual:  # recovery_tokens is absent when the loss never came back: no objective
            logged += [f"gap/{n}/{m}" for n in names for m in ("depth", "peak_tokens")]
        refs = task_refs(list(self.harness.tasks), names) if self.harness.tasks else []
        if refs:
            last = len(names) - 1
            logged.append("final/harness_avg")
            if any(r.dataset is None or r.dataset < last for r in refs):
                logged += ["final/harness_upstream_avg"] + (["harness_forgetting"] if continual else [])
            if any(r.dataset is None or r.dataset == last for r in refs):
                logged.append("final/harness_downstream_avg")
        return logged

    @property
    def sequences_per_batch(self) -> int:
        return self.batch.tokens // self.model.seq_len


def parse(cfg) -> RunConfig:
    """DictConfig (or plain dict) -> RunConfig, raising UserError on the first bad key."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):  # hydra's own node may hold job-time interpolations
        cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        data = OmegaConf.to_container(cfg, resolve=True)
    else:
        data = {k: v for k, v in dict(cfg).items() if k != "hydra"}
    return _build(RunConfig, expand_shift(data), "")


def _build(cls, data: Any, prefix: str):
    if not isinstance(data, dict):
        raise UserError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise unknown_key(prefix, unknown[0], names)
    kwargs = {k: _convert(hints[k], v, f"{prefix}{k}") for k, v in data.items()}
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise UserError(f"{prefix}{missing[0]}: required key is missing")
    return cls(**kwargs)


def unknown_key(prefix: str, name: str, names) -> UserError:
    """The one message for a key the schema lacks (`+key=`, or any override: cpt/config/overrides.py):
    the keys allowed at its level and the nearest of them."""
    import difflib

    near = difflib.get_close_matches(name, sorted(names), n=1, cutoff=0.6)
    return UserError(f"{prefix}{name}: unknown key; allowed keys here: {', '.join(sorted(names))}"
                     + (f"; nearest: {prefix}{near[0]}" if near else ""))


def _convert(tp, value, key: str):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value, key)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise UserError(f"{key}={value!r}: expected a list")
        return [_convert(inner, v, f"{key}.{i}") for i, v in enumerate(value)]
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{key}={value!r}: expected a number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise UserError(f"{key}={value!r}: expected an integer")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{key}={value!r}: expected true or false")
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise UserError(f"{key}={value!r}: expected a string")
        return str(value)
    return value  # dict / Any


def check_group_choices(overrides: list[str], options: Path | Callable[[str], list[str]]) -> None:
    """Fail with one line on `group=option` naming an option that no config source holds.

    `options` maps a group to its options: Hydra's own listing over its search path (the primary
    conf, `--config-dir`, `hydra.searchpath`: cpt/cli/search_path.py), or a conf directory to glob. Hydra's own message spans several lines and a stack-trace hint; this runs first.
    """
    if not callable(options):
        conf_dir = options
        options = lambda group: sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))
    for o in overrides:
        key, sep, value = o.lstrip("+~").partition("=")
        if not sep or key not in GROUPS:
            continue
        allowed = options(key)
        for choice in value.split(","):
            choice = choice.strip()
            if choice and "(" not in choice and choice not in allowed:
                raise UserError(f"{key}={choice}: unknown option; allowed: {', '.join(allowed)}")
