"""Bad input across config, data and checkpoints: one line naming the problem and what is
allowed, a non-zero exit code, and nothing left that a later run could take for a result.

Each case runs the real run in this process (compose → validate → cpt.run.experiment.run), as the
CLI does; the CLI prints the same UserError as one line and exits with its exit_code
(tests/test_config.py checks that path on real subprocesses). All cases share one MLflow store
(creating one costs seconds) and each has its own output directory.
"""

from __future__ import annotations

import dataclasses
import json
import socket

import pytest
import torch

from cpt.store.prefix_cache import PrefixCache
from cpt.store.stage_checkpoints import StageCheckpoints
from cpt.config.schema import check_group_choices
from cpt.data.prepare import prepare, shard_path
from cpt.errors import UserError
from cpt.plan.identity import prefix_key
from cpt.model.spec import build_model
from cpt.plan.stages import build_plan

from conftest import CONF, TINY, parse
from test_end_to_end import run_tiny


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- setups: damage the output directory before the run (out, cfg) -------------------------

def _shard(out, cfg, i=0):
    return shard_path(cfg, i, prepare(cfg).tokenizer_fp)


def truncate_shard(out, cfg):
    f = _shard(out, cfg) / "train.bin"
    f.write_bytes(f.read_bytes()[:-6])


def shard_byte_changed(out, cfg):
    """The same size, one byte different (issue #14): never trained on, never an IndexError."""
    f = _shard(out, cfg) / "train.bin"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))


def manifest_mismatch(out, cfg):
    m = _shard(out, cfg, 1) / "manifest.json"
    m.write_text(json.dumps({**json.loads(m.read_text()), "train_tokens": 99}))


def manifest_garbage(out, cfg):
    (_shard(out, cfg) / "manifest.json").write_text("{\"tokenizer\": ")


def manifest_missing(out, cfg):
    (_shard(out, cfg) / "manifest.json").unlink()


def shard_of_other_tokenizer(out, cfg):
    m = _shard(out, cfg) / "manifest.json"
    m.write_text(json.dumps({**json.loads(m.read_text()), "tokenizer": "0123456789abcdef"}))


def _checkpoint(out, cfg, **model_changes):
    """A real checkpoint of stage 0 at step 6, of this run's model changed by model_changes."""
    spec = dataclasses.replace(cfg.model, **model_changes)
    model = build_model(spec, 1024)
    store = StageCheckpoints(out / "checkpoints" / f"prefix-{prefix_key(cfg, build_plan(cfg), 0)}")
    meta = {"stage": 0, "model": dataclasses.asdict(spec), "vocab_rows": 1024}
    state = {"step": 6, "model": model.state_dict(), "optimizer": {}, "scheduler": {}, "callbacks": {}}
    return store.save(6, state, meta, keep_last=2)


def checkpoint_other_size(out, cfg):
    _checkpoint(out, cfg, d_model=128)


def checkpoint_fewer_positions(out, cfg):
    _checkpoint(out, cfg, seq_len=64)


def checkpoint_truncated(out, cfg):
    f = _checkpoint(out, cfg) / "state.pt"
    f.write_bytes(f.read_bytes()[:1000])


def checkpoint_empty(out, cfg):
    (_checkpoint(out, cfg) / "state.pt").write_bytes(b"")


def checkpoint_weights_swapped(out, cfg):
    """meta says this model, the weights are another size (a file copied over by hand)."""
    d = _checkpoint(out, cfg)
    torch.save({"step": 6, "model": build_model(dataclasses.replace(cfg.model, n_layer=3), 1024).state_dict(),
                "optimizer": {}, "scheduler": {}, "callbacks": {}}, d / "state.pt")


def _cache_entry(out, cfg, state_dict):
    PrefixCache(out / "cache").put(prefix_key(cfg, build_plan(cfg), 0), state_dict,
                                   {"val": {"syn-en-a": 7.0, "syn-en-b": 7.0}, "end_tokens": 12288, "run_id": "r",
                                    "stage": 0, "val_at_start": {}, "tokens": 12288})


def cache_entry_other_size(out, cfg):
    _cache_entry(out, cfg, build_model(dataclasses.replace(cfg.model, d_model=32), 1024).state_dict())


def cache_entry_corrupt(out, cfg):
    _cache_entry(out, cfg, build_model(cfg.model, 1024).state_dict())
    (PrefixCache(out / "cache").entries()[0].weights).write_bytes(b"PK\x03\x04garbage")


def tokenizer_file(content: str):
    def setup(out, cfg):
        (out / "tok.json").write_text(content)
    return setup


def tokenizer_without_eos(out, cfg):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(["a few words of text"] * 10, trainer=trainers.BpeTrainer(vocab_size=300, show_progress=False))
    tok.save(str(out / "tok.json"))


# (id, overrides, setup, what the line must say). {out} and {port} are filled in per case.
CASES = [
    # config: ranges, types, unknown keys and options, budgets
    ("warmup-range", ["warmup=1"], None, "warmup=1.0: allowed 0 <= warmup < 1"),
    ("replay-range", ["replay=1.5"], None, "replay=1.5: allowed 0 <= replay < 1"),
    ("lr-negative", ["lr.max=-1e-4"], None, "lr.max=-0.0001: allowed a learning rate > 0"),
    ("min-ratio", ["lr.min_ratio=2"], None, "lr.min_ratio=2.0: allowed 0 <= lr.min_ratio <= 1"),
    ("unknown-key", ["+lr.peak=1e-3"], None, "lr.peak: unknown key; allowed keys here: max, min_ratio"),
    ("unknown-option", ["model=gpt5"], None, "model=gpt5: unknown option; allowed: "),
    ("unknown-schedule", ["pretrain.schedule=linear"], None, "pretrain.schedule=linear: allowed cosine"),
    ("not-a-number", ["seed=abc"], None, "seed='abc': expected an integer"),
    ("budget-below-batch", ["shift.datasets.1.tokens=256"], None,
     "shift.datasets.1.tokens=256: allowed at least one batch (batch.tokens=512)"),
    ("batch-not-sequences", ["batch.tokens=500"], None, "batch.tokens=500: allowed a positive multiple of model.seq_len"),
    ("val-below-sequence", ["shift.datasets.0.val_tokens=100"], None,
     "shift.datasets.0.val_tokens=100: allowed at least one sequence (model.seq_len=128)"),
    ("checkpoint-interval", ["checkpoint.interval_steps=-5"], None, "checkpoint.interval_steps=-5: allowed >= 0"),
    ("checkpoint-keep", ["checkpoint.keep_last=0"], None, "checkpoint.keep_last=0: allowed >= 1"),
    ("connect-timeout", ["tracking.connect_timeout_s=0"], None, "tracking.connect_timeout_s=0.0: allowed > 0"),
    # where things come from: tracking server, sources, tokenizer
    ("server-down", ["tracking.uri=http://127.0.0.1:{port}", "tracking.connect_timeout_s=1"], None,
     "tracking.uri=http://127.0.0.1:{port}: no MLflow server answered within 1 s"),
    ("uri-scheme", ["tracking.uri=ftp://example.org/db"], None, "tracking.uri=ftp://example.org/db: allowed sqlite:///"),
    ("source-type", ["shift.datasets.1.source.type=web"], None, "shift.datasets.1.source.type=web: allowed synthetic"),
    ("source-language", ["shift.datasets.1.source.language=fr"], None,
     "shift.datasets.1.source.language=fr: allowed en, de"),
    ("tokenizer-missing", ["tokenizer={out}/nope.json"], None, "tokenizer={out}/nope.json: no such file; allowed: bpe"),
    ("tokenizer-empty", ["tokenizer={out}/tok.json"], tokenizer_file(""), "tokenizer={out}/tok.json: not a valid tokenizer.json"),
    ("tokenizer-corrupt", ["tokenizer={out}/tok.json"], tokenizer_file('{"model": {"type": "BPE", "vocab": '),
     "tokenizer={out}/tok.json: not a valid tokenizer.json"),
    ("tokenizer-no-eos", ["tokenizer={out}/tok.json"], tokenizer_without_eos, "tokenizer: has no '<|endoftext|>' token; allowed"),
    ("tokenizer-beyond-model-vocab", ["+model.vocab_size=512"], None,
     "model.vocab_size=512: allowed at least the tokenizer's 1024 tokens"),
    # token shards
    ("shard-truncated", [], truncate_shard, "train.bin: size does not match its manifest"),
    ("shard-byte-changed", [], shard_byte_changed, "train.bin: its first MiB differs from the checksum in its manifest"),
    ("manifest-mismatch", [], manifest_mismatch, "train.bin: size does not match its manifest (99 tokens"),
    ("manifest-corrupt", [], manifest_garbage, "manifest.json: unreadable manifest (JSONDecodeError"),
    ("manifest-missing", [], manifest_missing, "manifest.json: missing; the shard is incomplete"),
    ("shard-other-tokenizer", [], shard_of_other_tokenizer, "built with tokenizer 0123456789abcdef, this run's tokenizer is"),
    # checkpoints and cache entries
    ("checkpoint-other-size", [], checkpoint_other_size, "checkpoint of another model size: d_model=128 (this run: 64)"),
    ("checkpoint-positions", [], checkpoint_fewer_positions,
     "its model has 64 positions (model.seq_len), this run's model.seq_len=128 is beyond them; allowed model.seq_len <= 64"),
    ("checkpoint-truncated", [], checkpoint_truncated, "state.pt: checkpoint state is corrupt"),
    ("checkpoint-empty", [], checkpoint_empty, "state.pt: checkpoint state is empty"),
    ("checkpoint-weights-swapped", [], checkpoint_weights_swapped, "holds weights of another model"),
    ("cache-entry-other-size", [], cache_entry_other_size, "weights.pt: holds weights of another model"),
    ("cache-entry-corrupt", [], cache_entry_corrupt, "weights.pt: cache entry"),
]


def _results(out, store) -> dict:
    """Everything a later run could take for a result: cache entries, checkpoints, FINISHED runs."""
    from mlflow.tracking import MlflowClient

    c = MlflowClient(store)
    exp = c.get_experiment_by_name("cpt")
    finished = [r.info.run_id for r in c.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'")] if exp else []
    ckpts = sorted(str(p.relative_to(out)) for p in (out / "checkpoints").glob("*/step-*")) if (out / "checkpoints").exists() else []
    cache = sorted(e.key for e in PrefixCache(out / "cache").entries())
    return {"finished": finished, "checkpoints": ckpts, "cache": cache}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('bad-input-store')}/mlflow.db"


@pytest.mark.parametrize("case,overrides,setup,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_leaves_no_result(case, overrides, setup, needle, out, store):
    port = _free_port()
    fill = lambda s: s.format(out=out, port=port)
    overrides = [fill(o) for o in overrides] + [f"tracking.uri={store}"] * (not any("tracking.uri" in o for o in overrides))
    if setup is not None:
        setup(out, parse(TINY + overrides, out))
    before = _results(out, store)
    with pytest.raises(UserError) as e:
        check_group_choices(overrides, CONF)  # what run.py does before Hydra composes
        run_tiny(out, overrides)
    msg = str(e.value)
    assert fill(needle) in msg, msg
    assert "\n" not in msg and e.value.exit_code != 0
    assert any(word in msg for word in ("allowed", "expected", "delete")), msg  # says what would do
    assert _results(out, store) == before  # nothing new that looks finished
    assert not list(out.rglob(".tmp-*"))  # nothing half-written


def test_the_table_is_broad():
    assert len(CASES) >= 20
    assert sum(1 for c in CASES if c[2] is not None) >= 10  # data and checkpoint files, not only config
