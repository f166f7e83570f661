"""Weights merged after training, pure tensor arithmetic on state dicts (no model, no I/O).

- `interpolate`: θ(α) = (1 − α)·θ_start + α·θ_end, the linear path between the weights a
  continual stage started from and its final weights (the merge of Wortsman et al.'s WiSE-FT,
  arXiv 2109.01903, applied to continual pre-training);
- `average`: Σ_i w_i·θ_i with Σ w_i = 1, a "model soup" of runs that share their start
  (arXiv 2203.05482).

Floating-point tensors are combined in float64 and cast back, so α = 0 and α = 1 (and a soup of
one run) give back the inputs exactly; other tensors (integer buffers) must agree and are kept.
"""

from __future__ import annotations


class Mismatch(ValueError):
    """The state dicts do not have the same keys, shapes and dtypes (not the same architecture)."""


def check_same_shapes(state_dicts: list[dict], names: list[str]) -> None:
    """Raise Mismatch naming the first state dict (by `names`) that differs from the first one."""
    ref = {k: (tuple(v.shape), v.dtype) for k, v in state_dicts[0].items()}
    for sd, name in zip(state_dicts[1:], names[1:]):
        got = {k: (tuple(v.shape), v.dtype) for k, v in sd.items()}
        if got != ref:
            diff = sorted(set(got) ^ set(ref)) or sorted(k for k in ref if got[k] != ref[k])
            raise Mismatch(f"{name} has other weights than {names[0]} (first difference: {diff[0]})")


def average(state_dicts: list[dict], weights: list[float] | None = None) -> dict:
    """The weighted average of `state_dicts` (weights ≥ 0, normalised to sum 1; None: uniform)."""
    weights = [1.0] * len(state_dicts) if weights is None else [float(w) for w in weights]
    if not state_dicts or len(weights) != len(state_dicts) or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"weights {weights}: one per state dict, >= 0, not all 0")
    return combine(state_dicts, [w / sum(weights) for w in weights])


def interpolate(start: dict, end: dict, alpha: float) -> dict:
    """θ(α) = (1 − α)·start + α·end; α outside [0, 1] extrapolates along the same line."""
    return combine([start, end], [1.0 - alpha, float(alpha)])


def combine(state_dicts: list[dict], coefficients: list[float]) -> dict:
    """Σ_i c_i·θ_i, tensor by tensor (the coefficients of an average or a line sum to 1). A
    single non-zero coefficient of 1 gives that state dict's tensors themselves (copied)."""
    import torch

    check_same_shapes(state_dicts, [f"state dict {i}" for i in range(len(state_dicts))])
    used = [(c, sd) for c, sd in zip(coefficients, state_dicts) if c != 0]
    only = used[0][1] if len(used) == 1 and used[0][0] == 1 else None
    out = {}
    for k, first in state_dicts[0].items():
        if not first.is_floating_point():  # integer buffers: nothing to average, they must agree
            if any(not torch.equal(sd[k], first) for sd in state_dicts[1:]):
                raise Mismatch(f"{k}: a non-float tensor that differs between the state dicts")
            out[k] = first.clone()
        elif only is not None:
            out[k] = only[k].clone()
        else:
            out[k] = sum(c * sd[k].double() for c, sd in used).to(first.dtype)
    return out
