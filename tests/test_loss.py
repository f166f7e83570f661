"""cpt/train/loss.py: the chunked output-layer + cross-entropy equals the plain logits loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cpt.train import loss as loss_mod
from cpt.train.loss import causal_lm_loss
from cpt.model.spec import ModelSpec, build_model

SPEC = ModelSpec(name="t", n_layer=2, d_model=32, n_head=2, seq_len=16)
VOCAB = 384


def plain_loss(model, tokens):
    logits = model(input_ids=tokens[:, :-1], use_cache=False).logits
    return F.cross_entropy(logits.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1))


def loss_and_grads(model, fn, scale=1.0):
    model.zero_grad(set_to_none=True)
    loss = fn()
    (loss * scale).backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.fixture
def model_and_tokens():
    torch.manual_seed(0)
    model = build_model(SPEC, VOCAB)
    model.train()
    return model, torch.randint(0, VOCAB, (3, SPEC.seq_len + 1))


@pytest.mark.parametrize("chunk_elements", [1 << 24, 5 * VOCAB])  # one chunk; 10 chunks of 5 rows (48 tokens)
@pytest.mark.parametrize("scale", [1.0, 0.25])  # 0.25: a loss divided by 4 accumulated micro-batches
def test_fused_loss_and_gradients_equal_the_plain_loss(model_and_tokens, monkeypatch, chunk_elements, scale):
    model, tokens = model_and_tokens
    monkeypatch.setattr(loss_mod, "CHUNK_ELEMENTS", chunk_elements)
    want, want_grads = loss_and_grads(model, lambda: plain_loss(model, tokens), scale)
    got, got_grads = loss_and_grads(model, lambda: causal_lm_loss(model, tokens), scale)
    assert got == pytest.approx(want, rel=1e-6)
    for name, g in want_grads.items():
        rel = ((got_grads[name] - g).norm() / g.norm()).item()
        assert rel < 1e-5, (name, rel)


def test_no_grad_loss_equals_the_plain_loss(model_and_tokens, monkeypatch):
    model, tokens = model_and_tokens
    monkeypatch.setattr(loss_mod, "CHUNK_ELEMENTS", 7 * VOCAB)  # 48 tokens: chunks of 7, the last of 6
    with torch.no_grad():
        assert causal_lm_loss(model, tokens).item() == pytest.approx(plain_loss(model, tokens).item(), rel=1e-6)


def test_unfused_and_autocast_take_the_plain_path(model_and_tokens):
    model, tokens = model_and_tokens
    assert causal_lm_loss(model, tokens, fused=False).item() == pytest.approx(plain_loss(model, tokens).item(), rel=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = causal_lm_loss(model, tokens)
        want = F.cross_entropy(model(input_ids=tokens[:, :-1]).logits.reshape(-1, VOCAB).float(), tokens[:, 1:].reshape(-1))
    assert got.requires_grad and got.item() == want.item()  # bf16 logits: the plain path's exact number


def test_evaluation_splits_batches_over_ranks(model_and_tokens):
    """Under DDP rank r evaluates batches r, r + world, …; the summed shares give the one-process loss."""
    from cpt.train.module import evaluate

    model, _ = model_and_tokens
    windows = torch.randint(0, VOCAB, (5, SPEC.seq_len + 1))
    loader = torch.utils.data.DataLoader(windows, batch_size=2)  # batches of 2, 2, 1 windows
    full = evaluate(model, {"d": loader}, "cpu")["d"]
    shares = []
    for rank in (0, 1):
        evaluate(model, {"d": loader}, "cpu", rank=rank, world=2, reduce_sum=lambda t: shares.append(t) or t)
    assert [int(s[1]) for s in shares] == [3 * SPEC.seq_len, 2 * SPEC.seq_len]  # batches 0 and 2 | batch 1
    assert float(sum(s[0] for s in shares) / sum(s[1] for s in shares)) == pytest.approx(full, rel=1e-9)
