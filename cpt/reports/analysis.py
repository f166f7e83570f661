"""What a report shows, computed from the runs (pure: no MLflow, no plotting).

- chains: the model and the shift's datasets (names, sources, token budgets) a run trained
  through. D_k means one dataset only within a chain, so a report is faceted by chain and
  nothing (a variant, a baseline, a table column, a panel) spans two;
- swept keys: the params that differ between a chain's grid runs (seed aside: seeds are repeats);
- variants: the runs grouped by their swept values, seeds aggregated (mean ± sample std);
- baselines: runs a sweeper marked (tag cpt.baseline) or of another recipe than `cpt`; they
  stand beside their chain's grid as reference rows (union, scratch, upstream-only, constant η_min ...);
- the papers' table (D0 loss / D1 loss / … / AVG), the Pareto front of (upstream, downstream)
  loss, and each variant's compute relative to the union baseline.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from cpt.config.schema import GROUPS, occurrence_names

SEED = "seed"
BASELINE_ORDER = ("union", "scratch", "upstream-only")  # the papers' order of reference rows
CHAIN_PARAMS = ("model.", "shift.datasets.", "shift.tokenizer", "shift.bpe_vocab_size")
NOT_CHAIN = (".val_tokens",)  # a larger held-out set measures the same chain


def dataset_names(params: dict[str, str]) -> list[str]:
    """The chain's dataset names as they appear in metric keys (a repeat of `x` is `x.1`)."""
    names, k = [], 0
    while f"shift.datasets.{k}.name" in params:
        names.append(params[f"shift.datasets.{k}.name"])
        k += 1
    return occurrence_names(names)


def chain_key(params: dict[str, str]) -> tuple:
    """What makes runs one chain: the model, the tokenizer, and every dataset's name, source and
    budget. Option names (`shift=…`) stay out: two names for one chain are one chain."""
    return tuple(sorted((k, v) for k, v in params.items() if _in_chain(k)))


def _in_chain(key: str) -> bool:
    return key.startswith(CHAIN_PARAMS) and not key.endswith(NOT_CHAIN)


def baseline_label(params: dict[str, str], tags: dict[str, str]) -> str | None:
    """Its label if the run is a reference run beside the grid, else None: the recipe's name for
    the papers' baselines (union, scratch, upstream-only), else the sweeper's label (the
    baseline's overrides, e.g. "schedule=constant")."""
    recipe = params.get("recipe", tags.get("cpt.recipe", "cpt"))
    label = tags.get("cpt.baseline", "")
    if label in ("", f"recipe={recipe}"):
        return None if recipe in ("cpt", "", "merge") else recipe  # merges: points on the grid's merge.alpha axis
    return label


def num(v):
    """Sort key that orders numbers numerically and puts text after them."""
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def short(v) -> str:
    """A swept value as people write it: an Optuna draw 0.27440675196 reads 0.2744."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    return f"{x:.4g}" if len(str(v)) > 8 else str(v)


def searched(runs: list) -> bool:
    """True when every run is an Optuna trial: swept values are draws, not grid points."""
    return bool(runs) and all(r.tags.get("cpt.optuna.trial") for r in runs)


OFF = ("None", "False", "[]", "")  # a key's "off" value, as a run logs it


def _absent(value: str) -> str | None:
    """What a run that lacks a key (logged by an older cpt, before the key existed) is taken to
    have: the key's off value when that is what the others logged (ema.decay=None), else nothing."""
    return value if value in OFF else None


def swept_keys(params: list[dict[str, str]]) -> list[str]:
    """Keys whose value differs between runs, seed excluded. Keys that come with a swept group
    choice are left out: those under its namespace (`schedule.cooldown` comes with `schedule`)
    and those that copy one of them by interpolation (`pretrain.schedule` is
    `${schedule.pretrain_schedule}`, `tokenizer` is `${shift.tokenizer}`). Group choices first
    (model, shift, schedule, ...), then by depth and length."""
    if len(params) < 2:
        return []
    keys = {k for p in params for k in p if k != SEED and len({q.get(k, _absent(p[k])) for q in params}) > 1}
    ordered = sorted(keys, key=lambda k: (GROUPS.index(k) if k in GROUPS else len(GROUPS), k.count("."), len(k), k))
    groups = {k for k in ordered if k in GROUPS}
    under = [k for k in ordered if k.split(".")[0] in groups and k not in groups]

    def copies(k: str) -> bool:
        return any(all(p.get(k) == p.get(g) for p in params) for g in under)

    return [k for k in ordered if k in groups or (k.split(".")[0] not in groups and not copies(k))]


@dataclass
class Stat:
    mean: float
    std: float  # sample standard deviation over seeds (0 with one seed)
    n: int

    def text(self, digits: int = 4) -> str:
        if math.isnan(self.mean):
            return "-"
        return f"{self.mean:.{digits}f}" + (f" ± {self.std:.{digits}f}" if self.n > 1 else "")


def stat(values: list[float]) -> Stat:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return Stat(math.nan, math.nan, 0)
    return Stat(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))


@dataclass
class Variant:
    label: str
    values: dict[str, str]  # swept key -> value (empty for a baseline)
    baseline: bool
    runs: list = field(default_factory=list)  # load.Run, one per seed

    @property
    def datasets(self) -> list[str]:
        return dataset_names(self.runs[0].params)

    def stat(self, key: str) -> Stat:
        return stat([r.metrics.get(key) for r in self.runs])

    def final(self, position: int) -> Stat:
        """Final loss of the chain's dataset at `position` (D0, D1, ...), over seeds."""
        return stat([r.metrics.get(f"final/{dataset_names(r.params)[position]}/loss")
                     if position < len(dataset_names(r.params)) else None for r in self.runs])


def variants(runs: list) -> tuple[list[str], list[Variant]]:
    """(swept keys of the grid, variants: grid points in swept-value order, then baselines).
    Only runs of one chain are seeds of one variant: a union of each of two shifts is two rows."""
    grid = [r for r in runs if baseline_label(r.params, r.tags) is None]
    keys = swept_keys([r.params for r in grid])
    groups: dict[tuple, Variant] = {}
    for r in grid:
        values = {k: r.params.get(k, "") for k in keys}
        key = ("grid", chain_key(r.params)) + tuple(values.values())
        label = ", ".join(f"{k}={short(v)}" for k, v in values.items() if v != "") or r.params.get("recipe", "cpt")
        groups.setdefault(key, Variant(label, values, False)).runs.append(r)
    for r in runs:
        label = baseline_label(r.params, r.tags)
        if label is not None:
            groups.setdefault(("baseline", chain_key(r.params), label), Variant(label, {}, True)).runs.append(r)
    grid_v = sorted((v for v in groups.values() if not v.baseline),
                    key=lambda v: [num(v.values[k]) for k in keys])
    base_v = sorted((v for v in groups.values() if v.baseline),  # stable: others as they first ran
                    key=lambda v: BASELINE_ORDER.index(v.label) if v.label in BASELINE_ORDER else len(BASELINE_ORDER))
    return keys, grid_v + base_v


@dataclass
class Chain:
    label: str  # the keys that tell it from the report's other chains; alone, its shift
    keys: list[str]  # swept within the chain
    variants: list[Variant]

    @property
    def runs(self) -> list:
        return [r for v in self.variants for r in v.runs]


def chains(runs: list) -> list[Chain]:
    """The report's facets, each with its own swept keys and variants (so labels name only what
    differs within it): chains with grid runs first, each in the order its runs came."""
    by_key: dict[tuple, list] = {}
    for r in runs:
        by_key.setdefault(chain_key(r.params), []).append(r)
    groups = sorted(by_key.values(), key=lambda rs: all(baseline_label(r.params, r.tags) is not None for r in rs))
    labels = chain_labels([rs[0].params for rs in groups])
    return [Chain(label, *variants(rs)) for label, rs in zip(labels, groups)]


def chain_labels(params: list[dict[str, str]]) -> list[str]:
    """Each chain named by what tells it from the others (`shift=…`, `model=…`, a budget changed
    on the command line); a lone chain by its shift."""
    if len(params) == 1:
        return [f"shift={params[0].get('shift') or params[0].get('shift.name', '?')}"]
    ident = [{k: v for k, v in p.items() if k in ("model", "shift") or _in_chain(k)} for p in params]
    keys = swept_keys(ident)
    if len({tuple(p.get(k) for k in keys) for p in ident}) < len(ident):  # a budget changed under one option
        keys += [k for k in sorted(set().union(*ident)) if k not in keys and _in_chain(k)
                 and len({p.get(k) for p in ident}) > 1]
    return [", ".join(f"{k}={short(p.get(k, ''))}" for k in keys) for p in ident]


def n_datasets(variants_: list[Variant]) -> int:
    return max(len(v.datasets) for v in variants_)


TRAINED_FREE = ("merge", "soup")  # kinds whose weights cost no training


def point_kind(v: Variant) -> str:
    """How a variant got its weights: "merge" (θ(α) between a stage's start and end), "soup" (an
    average of runs' final weights), "ema" (a moving average of the stage's weights used as its
    model), "baseline" (a reference row), or "grid" (trained, a point of the sweep)."""
    p = v.runs[0].params
    if p.get("recipe") == "merge":
        return "soup" if p.get("merge.runs", "[]") not in OFF else "merge"
    if p.get("ema.use") == "True" and p.get("ema.decay", "None") not in OFF:
        return "ema"
    return "baseline" if v.baseline else "grid"


def is_choice(v: Variant) -> bool:
    """A point the trade-off's Pareto front is drawn over: not a reference baseline."""
    return point_kind(v) != "baseline"


def front_note(variants_: list[Variant], front: list[int]) -> str:
    """How many merge / soup / EMA / grid points are on the Pareto front, and what each trained."""
    parts = []
    for kind in ("merge", "soup", "ema", "grid"):
        of = [i for i, v in enumerate(variants_) if point_kind(v) == kind]
        if not of:
            continue
        on = [i for i in of if i in front]
        tokens = {0.0} if kind in TRAINED_FREE else {variants_[i].stat("compute/tokens").mean for i in of}
        cost = "0 tokens trained" if tokens == {0.0} else \
            "tokens trained " + ", ".join(f"{t:,.0f}" for t in sorted(t for t in tokens if not math.isnan(t)))
        parts.append(f"{len(on)} of {len(of)} {kind} points ({cost})")
    return "On the front: " + "; ".join(parts) + "." if parts else ""


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (both minimised),
    ordered by the first coordinate. Ties on both coordinates keep every copy."""
    front = []
    for i, (x, y) in enumerate(points):
        if math.isnan(x) or math.isnan(y):
            continue
        dominated = any(a <= x and b <= y and (a < x or b < y) for a, b in points if not (math.isnan(a) or math.isnan(b)))
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i])


def union_tokens(variants_: list[Variant]) -> tuple[float, str]:
    """Tokens the union baseline trains: its logged compute if the sweep has one, else the sum
    of the chain's budgets (what `recipe=union` would train). Returns (tokens, where from)."""
    for v in variants_:
        if v.baseline and v.runs[0].params.get("recipe") == "union":
            s = v.stat("compute/tokens")
            if s.n:
                return s.mean, f"the union run ({v.label})"
    params = variants_[0].runs[0].params
    total = sum(float(params[f"shift.datasets.{k}.tokens"]) for k in range(len(variants_[0].datasets))
                if f"shift.datasets.{k}.tokens" in params)
    return total, "the sum of the chain's token budgets"


@dataclass
class ComputeRow:
    label: str
    own_tokens: float  # this run's own stage(s)
    total_tokens: float  # including the cached prefix it started from
    own_ratio: float  # own / union
    total_ratio: float


def compute_rows(variants_: list[Variant]) -> tuple[list[ComputeRow], str]:
    union, source = union_tokens(variants_)
    rows = []
    for v in variants_:
        own = v.stat("compute/tokens").mean
        total = v.stat("compute/tokens_with_prefix")
        total_v = total.mean if total.n else own
        rows.append(ComputeRow(v.label, own, total_v, own / union if union else math.nan,
                               total_v / union if union else math.nan))
    return rows, source


def table(variants_: list[Variant]) -> tuple[list[str], list[list[str]]]:
    """The papers' layout: one row per variant (baselines last): D0 loss, D1 loss, ..., AVG."""
    n = n_datasets(variants_)
    names = [{v.datasets[k] for v in variants_ if k < len(v.datasets)} for k in range(n)]
    head = ["run"] + [f"D{k} loss" + (f" ({next(iter(s))})" if len(s) == 1 else "") for k, s in enumerate(names)]
    head += ["AVG", "seeds"]
    rows = [[v.label] + [v.final(k).text() for k in range(n)] + [v.stat("final/avg_loss").text(), str(len(v.runs))]
            for v in variants_]
    return head, rows
