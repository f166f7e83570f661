"""Periodic checkpoints of one stage on disk, so that re-running the same command resumes it.

Layout: `<paths.output_dir>/checkpoints/<name>/` where name is `prefix-<prefix key>` for a
prefix stage and `run-<run key>` for a run's own last stage. Both keys come from the run
identity (cpt/plan/identity.py), so the same command finds the directory again, and the job that
holds the stage's lock is the only one writing it.

    step-00000120/state.pt   weights, optimizer, LR scheduler, callback states (torch.save)
    step-00000120/meta.json  the step, the stage and the model it belongs to
    run.json                 the MLflow run the stage logs to, reopened on resume

A step directory is written under a temporary name and renamed (storage.atomic_dir): a kill in
the middle of a write leaves a `.tmp-*` directory that nothing reads and the next start removes.
Loading is weights-only (`torch.load(weights_only=True)`: tensors and plain containers, no
pickled code) and every problem is one UserError line naming the file.

A 410M model with AdamW state is ~5 GB per checkpoint (4 bytes x 405M x 3), hence `keep_last`
and the deletion of a stage's checkpoints as soon as its result is cached or its run finished.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cpt import faults
from cpt.errors import UserError, short_reason
from cpt.store.atomic import atomic_dir, remove_dir, write_atomic

FORMAT = 1
STATE, META, RUN = "state.pt", "meta.json", "run.json"


def starting_point(checkpoint_step: int | None, init: str | None, from_scratch: bool) -> str:
    """Where a stage's starting weights come from; the first that applies wins.

    1. "checkpoint": a checkpoint in the run's own output (a crashed run resuming) — it wins over
       an initial checkpoint, the rule of Composer, OLMo-core and torchtitan, so resuming a run
       that started from `model.init` continues it instead of starting it over;
    2. "init": the pretrained checkpoint the stage names (`model.init`);
    3. "scratch": random initialisation (stage 0), else "previous": the previous stage's weights.
    """
    if checkpoint_step is not None:
        return "checkpoint"
    if init:
        return "init"
    return "scratch" if from_scratch else "previous"


def load_state_dict_checked(model, state_dict: dict, source: Path | str) -> None:
    """model.load_state_dict, with a mismatch (another model size) as one UserError line."""
    own = model.state_dict()
    for name, tensor in own.items():
        other = state_dict.get(name)
        if other is None or tuple(other.shape) != tuple(tensor.shape):
            got = "missing" if other is None else f"shape {tuple(other.shape)}"
            raise UserError(f"{source}: holds weights of another model ({name}: {got}, this run's model "
                            f"needs {tuple(tensor.shape)}); allowed: a checkpoint of this run's model size")
    extra = sorted(set(state_dict) - set(own))
    if extra:
        raise UserError(f"{source}: holds weights of another model (unexpected {extra[0]}); "
                        "allowed: a checkpoint of this run's model size")
    model.load_state_dict(state_dict)


class Damaged(UserError):
    """A file we wrote that is missing, truncated or unreadable (not one of another stage or model)."""


def torch_load(path: Path, what: str) -> dict:
    """Weights-only load of a file we wrote; missing, empty or corrupt files are one line."""
    import pickle

    import torch

    if not path.is_file():
        raise Damaged(f"{path}: {what} is missing; delete its directory to start over")
    if path.stat().st_size == 0:
        raise Damaged(f"{path}: {what} is empty (corrupt); delete its directory to start over")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        reason = short_reason(e, limit=120)
        raise Damaged(f"{path}: {what} is corrupt or not a weights-only torch file ({reason}); "
                      "delete its directory to start over") from None


class StageCheckpoints:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _dir(self, step: int) -> Path:
        return self.root / f"step-{step:08d}"

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(int(p.name[5:]) for p in self.root.glob("step-*")
                      if p.name[5:].isdigit() and (p / META).exists())

    def latest(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, state: dict, meta: dict, keep_last: int) -> Path:
        import torch

        with atomic_dir(self._dir(step)) as tmp:
            torch.save(state, tmp / STATE)
            faults.reached("checkpoint")  # a crash here must leave the previous checkpoint intact
            (tmp / META).write_text(json.dumps({"format": FORMAT, "step": step, **meta}, indent=1, sort_keys=True))
        for old in self.steps()[:-keep_last]:
            shutil.rmtree(self._dir(old), ignore_errors=True)
        return self._dir(step)

    def load(self, step: int, expect: dict) -> dict:
        """The state saved at `step`, after checking it belongs to this stage and model.

        expect: {"stage": index, "model": asdict(ModelSpec), "vocab_rows": int}.
        """
        d = self._dir(step)
        meta = self._read_json(d / META, "checkpoint metadata")
        got_model, want_model = meta.get("model", {}), expect["model"]
        if got_model.get("seq_len") is not None and got_model["seq_len"] < want_model["seq_len"]:
            raise UserError(f"{d}: its model has {got_model['seq_len']} positions (model.seq_len), this run's "
                            f"model.seq_len={want_model['seq_len']} is beyond them; allowed "
                            f"model.seq_len <= {got_model['seq_len']}, or delete {self.root} to start over")
        for key in ("stage", "vocab_rows"):
            if meta.get(key) != expect[key]:
                raise UserError(f"{d}: checkpoint of {key} {meta.get(key)}, this run needs {expect[key]}; "
                                f"allowed: only this stage's own checkpoints (delete {self.root} to start over)")
        if got_model != want_model:
            diff = sorted(k for k in set(got_model) | set(want_model) if got_model.get(k) != want_model.get(k))
            shown = ", ".join(f"{k}={got_model.get(k)} (this run: {want_model.get(k)})" for k in diff[:3])
            raise UserError(f"{d}: checkpoint of another model size: {shown}; allowed: a checkpoint of this "
                            f"run's model (delete {self.root} to start over)")
        state = torch_load(d / STATE, "checkpoint state")
        for part in ("model", "optimizer", "scheduler", "callbacks"):
            if part not in state:
                raise UserError(f"{d / STATE}: checkpoint lacks its {part} state; delete {self.root} to start over")
        return state

    def load_newest(self, expect: dict, say) -> tuple[int, dict]:
        """The newest checkpoint that loads: a damaged one (a crash or a full disk mid-copy) is
        removed, `say` tells which and which older one is used; none intact: its one line."""
        steps = self.steps()
        for i, step in enumerate(reversed(steps)):
            try:
                return step, self.load(step, expect)
            except Damaged as e:
                if i == len(steps) - 1:
                    raise
                older = steps[-2 - i]
                reason = str(e).split("; ")[0]  # without its advice to delete: the fallback is the remedy
                say(f"checkpoint at step {step} is damaged ({reason}); removed, resuming from the intact one "
                    f"at step {older} instead")
                shutil.rmtree(self._dir(step), ignore_errors=True)
        raise Damaged(f"{self.root}: no checkpoint to resume from")

    def record_run(self, info: dict) -> None:
        write_atomic(self.root / RUN, json.dumps(info, indent=1, sort_keys=True))

    def recorded_run(self) -> dict | None:
        path = self.root / RUN
        return self._read_json(path, "MLflow run record") if path.exists() else None

    def discard_partial(self) -> None:
        """Remove what a killed writer left: only the lock holder writes here, so any is stale."""
        if self.root.is_dir():
            for p in self.root.glob(".tmp-*"):
                shutil.rmtree(p, ignore_errors=True)

    def clear(self) -> None:
        """Delete every checkpoint of the stage (its result is cached or its run finished)."""
        if not self.root.exists():
            return
        remove_dir(self.root)  # one step: a reader sees all checkpoints or none

    @staticmethod
    def _read_json(path: Path, what: str) -> dict:
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise Damaged(f"{path}: {what} is unreadable ({type(e).__name__}); delete "
                          f"{path.parent} to start over") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: {what} is not a JSON object; delete {path.parent} to start over")
        return data
