"""Loss laws over LR areas: fit them to logged validation curves, predict untried schedules (pure).

Notation (docs/forecast.md has the formulas with their sources). η_i is the LR of optimizer step
i (0-based here: the chain's step i trains with lrs[i]); a quantity "after t steps" has seen
steps 0..t-1, which is what an eval logged before optimizer step t measured.

- forward area S1(t) = Σ_{i<t} η_i;
- annealing area S2(t) = Σ_{i<t} m_i, m_i = λ·m_{i-1} + (η_{i-1} − η_i), m_0 = 0 — the double
  sum Σ_i Σ_{k≤i} (η_{k-1} − η_k)·λ^{i-k} of arXiv 2505.07796 Eq. 1, λ = 0.999 (its App. C).
  A re-warm-up makes η_{i-1} − η_i negative: S2 falls and the law's loss rises.

Laws (`LAWS`; every one is linear in some parameters once the others are fixed):

- "annealing", Tissue et al. arXiv 2408.11029 (its headline law; as restated in 2505.07796
  Eq. 1): L = L0 + A·S1^(−α) − C·S2.
- "cpt", Wang et al. arXiv 2505.07796 Eq. 4: with the chain split at the transfer step T into
  pre-training (pt, steps < T) and continual (cpt) areas,
  L = L0 + A·(S1pt + S1cpt)^(−α) − C1·S2pt − C2·S2cpt + B·(1 − (1 + E·S1cpt)^(−β)).
  The last term is the distribution shift ΔL (Eq. 3), independent of the checkpoint the stage
  starts from; B > 0 on the upstream (D_pt) set — forgetting — and B < 0 downstream.
- "cpt-replay", 2505.07796 Eq. 8 (App. H): replay ratio r_pt (r_cpt = 1 − r_pt) scales the
  continual annealing term by e^(a1·r) and ΔL by (1 − e^(−a2·r_cpt)) upstream, where r = r_pt,
  or by (e^(a2·r_cpt) − 1) downstream, where r = r_cpt.

Fitting follows 2505.07796 App. C (after Chinchilla, arXiv 2203.15556 §3.3): the Huber loss
(δ = 1e-3, Chinchilla's) of log predicted − log observed loss, minimised from several initial
conditions, best kept. The minimiser is scipy's trust-region least_squares with loss="huber"
(the same objective, up to a factor 2, as their L-BFGS), started from the best points of a grid
over the nonlinear exponents, at each of which the linear coefficients are solved exactly.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.optimize import least_squares
from scipy.signal import lfilter

from cpt.plan.schedules import anneal_start_step, lr_at

LAMBDA = 0.999  # 2505.07796 App. C: the momentum decay of S2 in all their fits
# Chinchilla's δ on log loss (2203.15556 §3.3); 2505.07796 App. C follows that fit, names no δ.
HUBER_DELTA = 1e-3
DOMAINS = ("upstream", "downstream")  # the D_pt / D_cpt validation sets of Eq. 8

# name: (linear coefficients, nonlinear parameters), in the order of `_columns`.
LAWS = {
    "annealing": (("L0", "A", "C"), ("alpha",)),
    "cpt": (("L0", "A", "C1", "C2", "B"), ("alpha", "E", "beta")),
    "cpt-replay": (("L0", "A", "C1", "C2", "B"), ("alpha", "E", "beta", "a1", "a2")),
}
# Bounds of the nonlinear parameters as the optimiser sees them (E as log E: it spans decades).
_BOUNDS = {"alpha": (1e-4, 10.0), "E": (np.log(1e-3), np.log(1e7)), "beta": (1e-4, 20.0),
           "a1": (-20.0, 20.0), "a2": (1e-4, 20.0)}
# 2505.07796 under its Eq. 1: "L0, A, C, α are constant positive parameters"; C1, C2 likewise.
_POSITIVE = {"L0", "A", "C", "C1", "C2"}


@dataclass(frozen=True)
class Curve:
    """One dataset's validation curve along one chain.

    `lrs`: the chain's per-step LRs (`chain_lrs`); `steps[j]`: optimizer steps taken before the
    j-th measurement; `transfer`: steps before the continual stage starts (None: a pre-training
    curve, every step is pt); `replay`: fraction of the continual stage's data from D_pt.
    """

    lrs: np.ndarray
    steps: np.ndarray
    loss: np.ndarray | None = None
    transfer: int | None = None
    replay: float = 0.0


@dataclass(frozen=True)
class Fit:
    """A fitted law: `params` by the names of `LAWS[law]` (E itself, not log E), the λ its areas
    used, the domain it was fitted for, and how far it is from the curves it was fitted on."""

    law: str
    params: dict[str, float]
    lam: float
    domain: str
    error: dict[str, float] = field(default_factory=dict)  # rmse (nats), mape, max_ape, huber


def areas(lrs: Sequence[float], lam: float = LAMBDA) -> tuple[np.ndarray, np.ndarray]:
    """(S1, S2) after t = 0..n steps of the per-step LRs `lrs` (arrays of n + 1, both 0 at t = 0)."""
    lrs = np.asarray(lrs, dtype=float)
    drop = np.zeros_like(lrs)
    drop[1:] = lrs[:-1] - lrs[1:]  # η_{i-1} − η_i; none before the first step
    momentum = lfilter([1.0], [1.0, -lam], drop)  # m_i = λ·m_{i-1} + drop_i
    return (np.concatenate([[0.0], np.cumsum(lrs)]), np.concatenate([[0.0], np.cumsum(momentum)]))


def chain_lrs(stages) -> np.ndarray:
    """Per-step LRs of a chain of `cpt.plan.stages.Stage`s (`build_plan(cfg)`), concatenated in
    the order the weights saw them: a stage that continues from the previous one's pre-anneal
    weights drops that stage's annealed tail (a branch off the chain)."""
    return np.concatenate([[], *_lineage(stages)]).astype(float)


def chain_starts(stages) -> list[int]:
    """The step of `chain_lrs(stages)` at which each stage starts (a continual curve's transfer)."""
    return [int(x) for x in np.cumsum([0] + [len(p) for p in _lineage(stages)[:-1]])]


def _lineage(stages) -> list[np.ndarray]:
    parts = []
    for k, stage in enumerate(stages):
        if k > 0 and getattr(stage, "from_scratch", False):
            raise ValueError(f"stage {k} starts from scratch: it is not part of the chain before it")
        nxt = stages[k + 1] if k + 1 < len(stages) else None
        steps = stage.steps
        if nxt is not None and getattr(nxt, "from_pre_anneal", False):
            steps = anneal_start_step(stage.schedule, stage.steps)
        parts.append(np.array([lr_at(t, stage.steps, stage.schedule) for t in range(steps)], float))
    return parts


def features(curve: Curve, lam: float = LAMBDA) -> dict[str, np.ndarray]:
    """The areas each law reads, at the curve's measured steps, split at its transfer step."""
    s1, s2 = areas(curve.lrs, lam)
    t = np.asarray(curve.steps, dtype=int)
    if t.min(initial=0) < 0 or t.max(initial=0) > len(curve.lrs):
        raise ValueError(f"curve steps must lie in [0, {len(curve.lrs)}] (its LRs' steps)")
    cut = np.minimum(t, len(curve.lrs) if curve.transfer is None else curve.transfer)
    return {"s1pt": s1[cut], "s2pt": s2[cut], "s1cpt": s1[t] - s1[cut], "s2cpt": s2[t] - s2[cut],
            "replay": np.full(t.shape, float(curve.replay))}


def _columns(law: str, theta: dict[str, float], f: dict[str, np.ndarray], domain: str) -> np.ndarray:
    """The law's terms for fixed nonlinear parameters: loss = columns @ linear coefficients."""
    s1 = f["s1pt"] + f["s1cpt"]
    power = np.power(np.maximum(s1, 1e-300), -theta["alpha"])
    if law == "annealing":
        return np.column_stack([np.ones_like(s1), power, -(f["s2pt"] + f["s2cpt"])])
    shift = 1.0 - np.power(1.0 + np.exp(theta["E"]) * f["s1cpt"], -theta["beta"])
    anneal_cpt = f["s2cpt"]
    if law == "cpt-replay":
        r_pt, r_cpt = f["replay"], 1.0 - f["replay"]
        up = domain == "upstream"
        anneal_cpt = anneal_cpt * np.exp(theta["a1"] * (r_pt if up else r_cpt))
        shift = shift * ((1.0 - np.exp(-theta["a2"] * r_cpt)) if up else np.expm1(theta["a2"] * r_cpt))
    return np.column_stack([np.ones_like(s1), power, -f["s2pt"], -anneal_cpt, shift])


def evaluate(fit: Fit, curve: Curve) -> np.ndarray:
    """The law's loss at the curve's steps."""
    linear, nonlinear = LAWS[fit.law]
    theta = {k: (np.log(fit.params[k]) if k == "E" else fit.params[k]) for k in nonlinear}
    cols = _columns(fit.law, theta, features(curve, fit.lam), fit.domain)
    return cols @ np.array([fit.params[k] for k in linear])


def predict(fit: Fit, lrs: Sequence[float], steps: Sequence[int], *, transfer: int | None = None,
            replay: float = 0.0) -> np.ndarray:
    """Forecast the loss after `steps` of an untried schedule `lrs` (e.g. `chain_lrs` of a sweep
    point's plan), its continual stage starting at `transfer`, with `replay`."""
    return evaluate(fit, Curve(np.asarray(lrs, float), np.asarray(steps), None, transfer, replay))


def fit(curves: Sequence[Curve], law: str = "annealing", *, domain: str = "upstream",
        lam: float = LAMBDA, delta: float = HUBER_DELTA, start: Fit | None = None) -> Fit:
    """Fit `law` to the curves (each with `loss`) of one validation dataset; `domain` says
    whether that dataset is the chain's upstream D_pt or its downstream D_cpt (Eq. 8 only).
    `start`: polish from that fit's parameters alone, not from the grid's best few (a bootstrap
    replicate: its data is that fit's curve with resampled residuals, so its optimum is near).

    Points with no forward area yet (S1 = 0: A·S1^(−α) is infinite there) are left out.
    """
    _check(curves, law, domain)
    f, y = _stack(curves, lam, sum(len(p) for p in LAWS[law]))
    with _one_blas_thread():
        starts = [_vector(law, start.params)] if start is not None else _starts(law, f, y, domain)
        runs = [_polish(law, f, y, domain, x0, delta) for x0 in starts]
    best = min(runs, key=lambda r: r.cost)
    params = _params(law, best.x)
    pred = _model(law, best.x, f, domain)
    err = pred - y
    error = {"rmse": float(np.sqrt(np.mean(err**2))), "mape": float(np.mean(np.abs(err) / y)),
             "max_ape": float(np.max(np.abs(err) / y)), "huber": float(best.cost)}
    return Fit(law, params, lam, domain, error)


def _one_blas_thread():
    """The fit's matrices are tiny (points × ≤ 10): BLAS threads only contend, 2-4× slower."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _check(curves: Sequence[Curve], law: str, domain: str) -> None:
    if law not in LAWS:
        raise ValueError(f"unknown law {law!r}; known: {', '.join(LAWS)}")
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; known: {', '.join(DOMAINS)}")
    if not curves or any(c.loss is None or len(c.loss) != len(c.steps) for c in curves):
        raise ValueError("fit needs curves with one loss per step")
    continual = [c for c in curves if c.transfer is not None]
    if law != "annealing" and not continual:
        raise ValueError(f"law {law!r} needs at least one curve with a continual stage (transfer)")
    if law == "cpt-replay" and len({c.replay for c in continual}) < 2:
        # With one replay ratio B and a2 (and C2 and a1) cannot be told apart.
        raise ValueError("law 'cpt-replay' needs continual curves at two or more replay ratios")


def _stack(curves: Sequence[Curve], lam: float, n_params: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    feats = [features(c, lam) for c in curves]
    f = {k: np.concatenate([x[k] for x in feats]) for k in feats[0]}
    y = np.concatenate([np.asarray(c.loss, dtype=float) for c in curves])
    keep = (f["s1pt"] + f["s1cpt"] > 0) & np.isfinite(y) & (y > 0)
    if keep.sum() < 2 * n_params:
        raise ValueError(f"too few usable points to fit ({int(keep.sum())})")
    return {k: v[keep] for k, v in f.items()}, y[keep]


def _model(law: str, x: np.ndarray, f: dict[str, np.ndarray], domain: str) -> np.ndarray:
    linear, nonlinear = LAWS[law]
    theta = dict(zip(nonlinear, x[len(linear):]))
    return _columns(law, theta, f, domain) @ x[: len(linear)]


def _starts(law: str, f: dict[str, np.ndarray], y: np.ndarray, domain: str, keep: int = 3) -> list:
    """Initial conditions: the best few points of a grid over the nonlinear parameters, each with
    its linear coefficients solved exactly (least squares on relative error ≈ log error)."""
    linear, nonlinear = LAWS[law]
    grids = {"alpha": np.geomspace(0.02, 3.0, 16), "E": np.log(np.geomspace(1e-2, 1e6, 13)),
             "beta": np.geomspace(0.02, 4.0, 10), "a1": [0.0], "a2": [1.0]}
    scored = []
    for combo in itertools.product(*(grids[k] for k in nonlinear)):
        cols = _columns(law, dict(zip(nonlinear, combo)), f, domain) / y[:, None]
        coef = np.linalg.lstsq(cols, np.ones_like(y), rcond=None)[0]
        r = cols @ coef - 1.0
        scored.append((float(r @ r), np.concatenate([coef, combo])))
    scored.sort(key=lambda s: s[0])
    return [x for _, x in scored[:keep]]


def _polish(law: str, f: dict[str, np.ndarray], y: np.ndarray, domain: str, x0: np.ndarray,
            delta: float):
    linear, nonlinear = LAWS[law]
    lo = np.array([0.0 if k in _POSITIVE else -np.inf for k in linear] + [_BOUNDS[k][0] for k in nonlinear])
    hi = np.array([np.inf] * len(linear) + [_BOUNDS[k][1] for k in nonlinear])
    log_y = np.log(y)

    def residual(x):
        # A trial point may predict a loss <= 0; the floor keeps the log defined and large.
        return np.log(np.maximum(_model(law, x, f, domain), 1e-12)) - log_y

    return least_squares(residual, np.clip(x0, lo, hi), bounds=(lo, hi), loss="huber", f_scale=delta,
                         x_scale="jac", ftol=1e-10, xtol=1e-10, gtol=1e-10, max_nfev=1000)


def _vector(law: str, params: dict[str, float]) -> np.ndarray:
    """`_params`' inverse: the minimiser's vector (E as its log)."""
    linear, nonlinear = LAWS[law]
    return np.array([np.log(params[k]) if k == "E" else params[k] for k in linear + nonlinear])


def _params(law: str, x: np.ndarray) -> dict[str, float]:
    linear, nonlinear = LAWS[law]
    out = dict(zip(linear + nonlinear, map(float, x)))
    if "E" in out:
        out["E"] = float(np.exp(out["E"]))
    return out
