"""The GPT-NeoX / Pythia architecture, built from a model config.

We use transformers' `GPTNeoXForCausalLM` itself rather than a re-implementation: it *is* the
papers' architecture (rotary on 25% of head dims, parallel attention+MLP residual, untied
embeddings), it loads Pythia checkpoints as they are, and `save_pretrained` exports a
directory any `transformers` user can load. This module knows nothing of Lightning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    """Architecture; one YAML per model in conf/model/."""

    name: str
    n_layer: int
    d_model: int
    n_head: int
    seq_len: int  # training context length in tokens (also the rotary cache size)
    d_ff: int | None = None  # MLP width; None = 4 * d_model, as in Pythia
    rotary_pct: float = 0.25  # fraction of each head's dims that get rotary embeddings
    rotary_base: int = 10000
    parallel_residual: bool = True
    vocab_multiple: int = 128  # embedding rows are padded to a multiple (50277 -> 50304 for Pythia)
    vocab_size: int | None = None  # fixed embedding rows (e.g. 50432 for the authors' 10B); None = from tokenizer
    init_std: float = 0.02
    layer_norm_eps: float = 1e-5
    init: str | None = None  # a pretrained GPT-NeoX/Pythia checkpoint (hub id or local dir) as stage 0

    @property
    def ff(self) -> int:
        return self.d_ff or 4 * self.d_model

    def padded_vocab(self, tokenizer_vocab: int) -> int:
        if self.vocab_size is not None:
            if self.vocab_size < tokenizer_vocab:  # token ids past the embedding rows would crash mid-run
                from cpt.errors import UserError

                raise UserError(f"model.vocab_size={self.vocab_size}: allowed at least the tokenizer's "
                                f"{tokenizer_vocab} tokens (or null: sized from the tokenizer)")
            return self.vocab_size
        return int(math.ceil(tokenizer_vocab / self.vocab_multiple) * self.vocab_multiple)


def hf_config(spec: ModelSpec, vocab_size: int, attn_implementation: str = "sdpa"):
    from transformers import GPTNeoXConfig

    cfg = GPTNeoXConfig(
        vocab_size=vocab_size,
        hidden_size=spec.d_model,
        num_hidden_layers=spec.n_layer,
        num_attention_heads=spec.n_head,
        intermediate_size=spec.ff,
        rotary_pct=spec.rotary_pct,
        rotary_emb_base=spec.rotary_base,
        max_position_embeddings=spec.seq_len,
        use_parallel_residual=spec.parallel_residual,
        tie_word_embeddings=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        initializer_range=spec.init_std,
        layer_norm_eps=spec.layer_norm_eps,
        bos_token_id=0,
        eos_token_id=0,
    )
    cfg._attn_implementation = attn_implementation
    return cfg


def build_model(spec: ModelSpec, vocab_size: int, device: str | None = None):
    """A freshly initialised GPTNeoXForCausalLM (on `device`, e.g. "meta" to count parameters)."""
    import torch
    from transformers import GPTNeoXForCausalLM

    cfg = hf_config(spec, vocab_size)
    if device is None:
        return GPTNeoXForCausalLM(cfg)
    with torch.device(device):
        return GPTNeoXForCausalLM(cfg)


def n_params(spec: ModelSpec, vocab_size: int) -> int:
    """Exact parameter count, arithmetic only (checked against the built model in tests)."""
    d, ff, L, V = spec.d_model, spec.ff, spec.n_layer, vocab_size
    attn = d * 3 * d + 3 * d + d * d + d  # fused qkv + dense, with biases
    mlp = d * ff + ff + ff * d + d
    norms = 2 * 2 * d  # two LayerNorms per block (weight + bias)
    return L * (attn + mlp + norms) + 2 * V * d + 2 * d  # untied in/out embeddings + final norm


def flops_per_token(spec: ModelSpec, vocab_size: int) -> float:
    """Training FLOPs per token: 6·N (forward + backward matmuls) + attention scores.

    The attention term 12·L·d·seq_len is PaLM's (Chowdhery et al. 2022, appendix B); input
    embeddings are a lookup, so they are excluded from N.
    """
    n = n_params(spec, vocab_size) - vocab_size * spec.d_model
    return 6.0 * n + 12.0 * spec.n_layer * spec.d_model * spec.seq_len
