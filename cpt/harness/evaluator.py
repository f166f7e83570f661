"""lm-evaluation-harness as the evaluator: resolve `harness.tasks`, check they can run, score a model.

lm-eval is driven cheaply: its TaskManager indexes only the directories of the tasks asked for
(include_defaults=False), not the ~14,000 YAMLs it ships; a shipped task is found in its own
folder of lm_eval/tasks/ by name, and only a name found nowhere falls back to the full index.
Its datasets cache lives under paths.output_dir (harness/datasets). Tasks whose data is on this
machine (embedded tasks, a user's YAML with local files) run with the hub's offline flags set.
A task that needs the hub, on a machine that cannot reach it, fails before any work (one line).
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cpt.errors import UserError, short_reason
from cpt.harness.spec import SYNTHETIC, task_refs

LOCAL_BUILDERS = ("json", "csv", "parquet", "text", "arrow")  # `datasets` builders that read local files


@dataclass(frozen=True)
class Task:
    """One task lm-eval is given, resolved."""

    name: str  # lm-eval's task name
    spec: str  # what TaskManager.load gets: the name, or a YAML file's path
    dataset: int  # the chain's dataset it belongs to
    include: str | None  # directory to index (None: the spec is a file, or the full index)
    local: bool  # its data is on this machine: evaluated with the offline flags
    version: str = ""  # what made an embedded task (its directory's hash)
    baseline: tuple = ()  # embedded tasks: (("unigram_acc", x), ("chance", 0.25))


def resolve(harness, datasets, root: Path) -> list[Task]:
    """The tasks of `harness.tasks` for the chain's `datasets` (schema.DatasetSpec list): files
    checked, embedded tasks written under `root` (paths.output_dir), hub tasks checked reachable."""
    names = [d.name for d in datasets]
    out: list[Task] = []
    for i, ref in enumerate(task_refs(harness.tasks, names)):
        if ref.task == SYNTHETIC:
            out += _embedded(datasets, ref.dataset, root, f"harness.tasks.{i}")
        elif Path(ref.task).expanduser().exists():
            out += _user_tasks(Path(ref.task).expanduser(), ref.dataset, f"harness.tasks.{i}")
        else:
            out.append(_shipped(ref.task, ref.dataset, root, f"harness.tasks.{i}"))
    return out


def _embedded(datasets, only: int | None, root: Path, key: str) -> list[Task]:
    from cpt.harness.tasks import task_name, write_task

    picked = range(len(datasets)) if only is None else [only]
    if any(datasets[i].source.get("type") != "synthetic" for i in picked):
        bad = next(datasets[i].name for i in picked if datasets[i].source.get("type") != "synthetic")
        raise UserError(f"{key}={SYNTHETIC}: dataset {bad} is not synthetic; allowed: the embedded task "
                        "of synthetic datasets only (give other datasets their own lm-eval tasks)")
    out = []
    for i in picked:
        path, base = write_task(root / "harness" / "tasks", datasets[i].name, datasets[i].source)
        out.append(Task(task_name(datasets[i].name), task_name(datasets[i].name), i, str(path), True,
                        path.name.rsplit("-", 1)[-1], tuple(sorted(base.items()))))
    return out


def _read_yaml(path: Path) -> dict:
    """A task YAML as plain data; lm-eval's `!function` tags read as strings."""
    import yaml

    class SafeTaskLoader(yaml.SafeLoader):
        pass

    SafeTaskLoader.add_multi_constructor("!", lambda loader, suffix, node: str(getattr(node, "value", "")))
    try:
        data = yaml.load(path.read_text(), Loader=SafeTaskLoader)
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"harness.tasks: {path} is not a readable task YAML ({short_reason(e, 100)})") from None
    return data if isinstance(data, dict) else {}


def _is_local(config: dict, base: Path) -> bool:
    path = str(config.get("dataset_path", ""))
    return path in LOCAL_BUILDERS or (base / path).exists() or Path(path).expanduser().exists()


def _user_tasks(path: Path, dataset: int, key: str) -> list[Task]:
    """A user's own task YAML, or every task YAML of a directory."""
    files = [path] if path.is_file() else sorted(path.rglob("*.yaml"))
    out = []
    for f in files:
        c = _read_yaml(f)
        if isinstance(c.get("task"), str):
            out.append(Task(c["task"], str(f.resolve()) if path.is_file() else c["task"], dataset,
                            None if path.is_file() else str(path.resolve()), _is_local(c, f.parent)))
    if not out:
        raise UserError(f"{key}={path}: holds no task YAML (a file with a `task:` name); allowed: an lm-eval "
                        "task name, a task YAML file or a directory of them")
    return out


def lm_eval_tasks_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("lm_eval")  # found without importing it (seconds)
    if spec is None or not spec.origin:
        raise UserError("harness.tasks: lm-evaluation-harness is not installed; pip install \"lm-eval[hf]\"")
    return Path(spec.origin).parent / "tasks"


# Shipped tasks whose folder is not named after them (the paper-en / paper-de sets' ones).
FOLDERS = {"boolq": "super_glue/boolq", "hellaswag_de": "okapi/hellaswag_multilingual",
           "arc_de": "okapi/arc_multilingual", "truthfulqa_de_mc1": "okapi/truthfulqa_multilingual",
           "truthfulqa_de_mc2": "okapi/truthfulqa_multilingual", "m_mmlu_de": "okapi/mmlu_multilingual"}


def _shipped(name: str, dataset: int, root: Path, key: str) -> Task:
    """A task (or group) lm-eval ships: its folder (by the task's name), its YAMLs read for its data."""
    tasks = lm_eval_tasks_dir()
    pattern = re.compile(rf"^(task|group):\s*['\"]?{re.escape(name)}['\"]?\s*$", re.M)
    first = name.split("_")[0]
    for folder in dict.fromkeys([FOLDERS.get(name, name), name, first, re.sub(r"\d+$", "", first)]):
        files = sorted((tasks / folder).rglob("*.yaml")) if (tasks / folder).is_dir() else []
        for f in files:
            if pattern.search(f.read_text(errors="replace")):
                config = _read_yaml(f)
                if "dataset_path" not in config:  # a group, or a task whose template names the data
                    config = next((c for c in map(_read_yaml, files) if "dataset_path" in c), config)
                _check_reachable(name, config, f.parent, root, key)
                return Task(name, name, dataset, str(tasks / folder), _is_local(config, f.parent))
    return Task(name, name, dataset, None, False)  # a tag, or elsewhere: lm-eval's full index finds it


def _check_reachable(name: str, config: dict, base: Path, root: Path, key: str) -> None:
    """A hub dataset on a machine that cannot reach the hub, not in our datasets cache: one line."""
    if _is_local(config, base) or not config.get("dataset_path"):
        return
    hub = str(config["dataset_path"])
    if any((root / "harness" / "datasets").glob(hub.replace("/", "___") + "*")):
        return  # fetched before into paths.output_dir/harness/datasets
    from cpt.hub import unreachable_reason

    reason = unreachable_reason()
    if reason:
        raise UserError(
            f"{key}={name}: lm-eval's task {name} reads the Hugging Face dataset {hub} and the hub is "
            f"unreachable ({reason}); point lm-eval at a local copy: a task YAML of your own with "
            f"dataset_path: json and dataset_kwargs.data_files (harness.tasks=[path/to/{name}.yaml]), or "
            f"fetch it where the hub answers into {root / 'harness' / 'datasets'} (HF_DATASETS_CACHE)")


@contextmanager
def _environment(root: Path, offline: bool):
    """lm-eval's datasets cache under paths.output_dir; the offline flags for local tasks."""
    cache = str((root / "harness" / "datasets").resolve())
    flags = {"HF_DATASETS_CACHE": cache, **({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"} if offline else {})}
    saved = {k: os.environ.get(k) for k in flags}
    os.environ.update(flags)
    import datasets.config as dc

    saved_attrs = {a: getattr(dc, a) for a in ("HF_DATASETS_CACHE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
                   if hasattr(dc, a)}
    dc.HF_DATASETS_CACHE = Path(cache)  # `datasets` read the variables when it was imported
    if offline:
        dc.HF_HUB_OFFLINE = dc.HF_DATASETS_OFFLINE = True
    try:
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        for a, v in saved_attrs.items():
            setattr(dc, a, v)


@contextmanager
def _quiet():
    """lm-eval's and `datasets`' progress bars go to a buffer (the run prints one line per
    scoring instead); shown if scoring fails."""
    import contextlib
    import io
    import sys

    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf):
            yield
    except BaseException:
        sys.stderr.write(buf.getvalue()[-4000:])
        raise


def hf_tokenizer(tokenizer, max_length: int):
    """The chain's `tokenizers` BPE as the PreTrainedTokenizerFast an export carries (cpt/model/hf.py)."""
    from transformers import PreTrainedTokenizerFast

    from cpt.model.hf import tokenizer_config

    config = {k: v for k, v in tokenizer_config(max_length).items() if k != "tokenizer_class"}
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **config)


def score(model, tokenizer, tasks: list[Task], harness, root: Path) -> dict[str, dict]:
    """lm-eval's results of `model` (a GPTNeoXForCausalLM, on its device) with `tokenizer` (a
    PreTrainedTokenizerFast): {task name: {"<metric>,<filter>": value}}, as lm-eval names them."""
    import logging

    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    for name in ("lm_eval", "lm-eval"):
        logging.getLogger(name).setLevel(logging.ERROR)
    dirs = sorted({t.include for t in tasks if t.include})
    with _environment(root, offline=all(t.local for t in tasks)), _quiet():
        manager = TaskManager(include_path=dirs or None, include_defaults=any(
            t.include is None and not t.spec.endswith(".yaml") for t in tasks))
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=harness.batch_size,
                  max_length=model.config.max_position_embeddings)
        out = simple_evaluate(model=lm, tasks=[t.spec for t in tasks], num_fewshot=harness.num_fewshot,
                              limit=harness.limit, task_manager=manager, log_samples=False,
                              bootstrap_iters=1000, verbosity="ERROR")
    return {t.name: {k: v for k, v in out["results"].get(t.name, {}).items() if k != "alias"} for t in tasks}
