"""Pretrained checkpoints in (`model.init`) and Hugging Face model directories out (`export=true`).

`model.init` names a GPT-NeoX / Pythia checkpoint, a local directory in `save_pretrained` format or
a hub id (fetched once into the Hugging Face cache). Its weights become stage 0 of the chain: the
setup of 2308.04014, Pythia-410M then SlimPajama. The checkpoint must have the architecture of
the `model` option (e.g. `model=pythia-410m model.init=EleutherAI/pythia-410m`): that keeps one
description of the model for FLOPs, the plan and the cache key.

An export is what `transformers` loads back: `config.json` + `model.safetensors`, plus the run's
`tokenizer.json` with a `tokenizer_config.json`, so `AutoTokenizer.from_pretrained(dir)` works too.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

from cpt.errors import UserError, short_reason
from cpt.model.spec import ModelSpec

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def _is_hub_id(init: str) -> bool:
    return bool(_HUB_ID.match(init)) and not init.startswith((".", "/", "~"))


def resolve_init(init: str) -> Path:
    """The local directory of `model.init` (downloading a hub id into the HF cache if needed)."""
    p = Path(init).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise UserError(f"model.init={init}: {p} holds no config.json; allowed: a Hugging Face model "
                            "directory (save_pretrained format) or a hub id such as EleutherAI/pythia-410m")
        return p
    if p.exists():
        raise UserError(f"model.init={init}: not a directory; allowed: a Hugging Face model directory or a hub id")
    if not _is_hub_id(init):
        raise UserError(f"model.init={init}: no such directory; allowed: a Hugging Face model directory "
                        "or a hub id such as EleutherAI/pythia-410m")
    return _download(init)


def _download(repo: str) -> Path:
    from huggingface_hub import snapshot_download

    from cpt.hub import is_unreachable, unreachable_reason

    reason = unreachable_reason()  # then only a copy in the local HF cache will do, found at once
    try:
        path = Path(snapshot_download(repo, allow_patterns=["*.json", "*.safetensors"], local_files_only=bool(reason)))
        if not any(path.glob("*.safetensors")):  # older repos ship only pytorch_model.bin
            path = Path(snapshot_download(repo, allow_patterns=["*.json", "*.bin"], local_files_only=bool(reason)))
        return path
    except Exception as e:
        if is_unreachable(e):
            why = reason or f"this machine looks offline: {type(e).__name__}"
            raise UserError(
                f"model.init={repo}: cannot fetch it from the Hugging Face hub ({why}); download it where the "
                f"hub answers (huggingface-cli download {repo} --local-dir DIR), then give model.init=DIR") from None
        raise UserError(f"model.init={repo}: no such local directory, and the hub has no such model "
                        f"({type(e).__name__}); allowed: a Hugging Face model directory or a hub id") from None


def _arch_of_config(c) -> dict:
    rope = getattr(c, "rope_parameters", None) or {}
    return {
        "n_layer": c.num_hidden_layers, "d_model": c.hidden_size, "n_head": c.num_attention_heads,
        "d_ff": c.intermediate_size,
        "rotary_pct": rope.get("partial_rotary_factor", getattr(c, "rotary_pct", None)),
        "rotary_base": rope.get("rope_theta", getattr(c, "rotary_emb_base", None)),
        "parallel_residual": c.use_parallel_residual, "layer_norm_eps": c.layer_norm_eps,
    }


def _arch_of_spec(spec: ModelSpec) -> dict:
    return {"n_layer": spec.n_layer, "d_model": spec.d_model, "n_head": spec.n_head, "d_ff": spec.ff,
            "rotary_pct": spec.rotary_pct, "rotary_base": spec.rotary_base,
            "parallel_residual": spec.parallel_residual, "layer_norm_eps": spec.layer_norm_eps}


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-6)
    return a == b


def _matching_model_option(arch: dict) -> str | None:
    import yaml

    from cpt.cli.compose import CONF_DIR

    for f in sorted((CONF_DIR / "model").glob("*.yaml")):
        spec = ModelSpec(**{k: v for k, v in yaml.safe_load(f.read_text()).items() if k != "init"})
        if all(_same(v, _arch_of_spec(spec)[k]) for k, v in arch.items()):
            return f.stem
    return None


def checkpoint_config(spec: ModelSpec, init: str, path: Path):
    """The checkpoint's config, checked against the `model` option (one line for any mismatch)."""
    from transformers import AutoConfig

    try:
        c = AutoConfig.from_pretrained(path)
    except Exception as e:
        raise UserError(f"model.init={init}: {path / 'config.json'} is not a readable model config "
                        f"({short_reason(e, limit=100)})") from None
    if c.model_type != "gpt_neox":
        raise UserError(f"model.init={init}: a {c.model_type} checkpoint; allowed: GPT-NeoX / Pythia "
                        "checkpoints (config.json model_type gpt_neox)")
    if getattr(c, "tie_word_embeddings", False):
        raise UserError(f"model.init={init}: its input and output embeddings are tied; cpt's GPT-NeoX "
                        "(like Pythia) keeps them separate")
    have, want = _arch_of_config(c), _arch_of_spec(spec)
    diff = [k for k in want if not _same(have[k], want[k])]
    if diff:
        option = _matching_model_option(have)
        fix = (f"use model={option}" if option else
               "set " + " ".join(f"model.{k}={have[k]}" for k in diff))
        raise UserError(f"model.init={init}: its architecture (" + ", ".join(f"{k} {have[k]}" for k in diff)
                        + f") is not model={spec.name}'s (" + ", ".join(f"{k} {want[k]}" for k in diff)
                        + f"); {fix}")
    if spec.seq_len > c.max_position_embeddings:
        raise UserError(f"model.seq_len={spec.seq_len}: the checkpoint model.init={init} has "
                        f"{c.max_position_embeddings} positions; allowed <= {c.max_position_embeddings}")
    return c


def check_init(spec: ModelSpec) -> None:
    """Fail before any work when `model.init` cannot be used (missing, offline, other architecture)."""
    if spec.init:
        checkpoint_config(spec, spec.init, resolve_init(spec.init))


def vocab_rows(spec: ModelSpec, tokenizer_vocab: int) -> int:
    """Embedding rows of the chain's model: the checkpoint's with model.init, else padded."""
    if not spec.init:
        return spec.padded_vocab(tokenizer_vocab)
    c = checkpoint_config(spec, spec.init, resolve_init(spec.init))
    if tokenizer_vocab > c.vocab_size:
        raise UserError(f"model.init={spec.init}: its embedding has {c.vocab_size} rows but the tokenizer "
                        f"has {tokenizer_vocab} tokens; use the checkpoint's own tokenizer (tokenizer="
                        "gpt-neox-20b for Pythia, or tokenizer=<dir>/tokenizer.json)")
    return c.vocab_size


def load_init_weights(spec: ModelSpec) -> dict:
    """The state dict of the `model.init` checkpoint, in float32."""
    import torch
    from transformers import GPTNeoXForCausalLM

    path = resolve_init(spec.init)
    checkpoint_config(spec, spec.init, path)
    try:
        model = GPTNeoXForCausalLM.from_pretrained(path, dtype=torch.float32)
    except (OSError, ValueError, RuntimeError) as e:
        raise UserError(f"model.init={spec.init}: its weights cannot be loaded from {path} "
                        f"({short_reason(e, limit=120)})") from None
    return model.state_dict()


def init_identity(init: str) -> dict:
    """What identifies the loaded weights, without downloading anything (dry runs stay offline):
    a local directory by its config and weight files; a hub id by the commit cached locally."""
    p = Path(init).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.name == "config.json" or f.suffix in WEIGHT_SUFFIXES)
        blob = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
        config = (p / "config.json").read_bytes() if (p / "config.json").is_file() else b""
        return {"dir": str(p.resolve()), "config_sha": hashlib.sha256(config).hexdigest()[:16],
                "files_sha": hashlib.sha256(json.dumps(blob).encode()).hexdigest()[:16]}
    return {"hub": init, "revision": _cached_revision(init)}


def _cached_revision(repo: str) -> str | None:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:  # pragma: no cover
        return None
    ref = Path(HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "refs" / "main"
    return ref.read_text().strip() if ref.is_file() else None


def export_model(model, tokenizer, path: Path) -> Path:
    """Write `model` (+ tokenizer) as a Hugging Face directory at `path`, atomically."""
    from cpt.store.atomic import atomic_dir

    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save(str(tmp / "tokenizer.json"))
        config = tokenizer_config(model.config.max_position_embeddings)
        (tmp / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    return path


def tokenizer_config(max_length: int) -> dict:
    """The chain's BPE as transformers sees it: an export's tokenizer_config.json, lm-eval's tokenizer."""
    from cpt.data.tokenizer import EOS

    return {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": EOS, "bos_token": EOS,
            "unk_token": EOS, "model_max_length": max_length}


def export_dir(root: Path, run_key: str) -> Path:
    return Path(root) / "export" / run_key

