"""Hydra override grammar <-> Optuna search space.

``build_search_space`` turns ``key=<sweep>`` overrides into Optuna distributions:

==============================================  =====================================
override value                                  distribution
==============================================  =====================================
``interval(0, 0.5)``                            ``FloatDistribution(0, 0.5)``
``tag(log, interval(1e-4, 1e-3))``              ``FloatDistribution(..., log=True)``
``tag(int, interval(1, 8))``                    ``IntDistribution(1, 8)``
``range(1, 10, 2)``                             ``IntDistribution(1, 9, step=2)``
``range(0, 1, 0.25)``                           ``FloatDistribution(0, 0.75, step=0.25)``
``choice(a, b)`` / ``a,b`` / ``glob(*)``        ``CategoricalDistribution``
==============================================  =====================================

Non-sweep overrides (``key=value``) are kept verbatim and applied to every trial.
``SearchSpace.overrides`` maps a trial's sampled params back to override strings.
"""

# No ``from __future__ import annotations`` here: Hydra's plugin scan executes this
# module before registering it in sys.modules, and dataclasses with string
# annotations then fail to resolve their module.
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from hydra.errors import HydraException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

# Tags understood inside tag(...); anything else is a typo worth reporting.
_KNOWN_TAGS = {"log", "int"}


@dataclass
class SearchSpace:
    """What to sample, and what to pass unchanged, for every trial."""

    # Override key (as written, e.g. ``+model@x``) -> distribution; the key is also
    # the Optuna parameter name, so stored studies read like the command line.
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    # Override key -> full override string, applied to every trial.
    fixed: dict[str, str] = field(default_factory=dict)
    # Categorical key -> {Optuna choice -> override value text}: choices are kept
    # as plain values for readable results, but lists / dicts / odd strings need
    # Hydra's own escaping to survive the trip back into an override.
    choice_text: dict[str, dict[Any, str]] = field(default_factory=dict)

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """Override strings for one trial: the fixed ones, then the sampled ones."""
        lines = list(self.fixed.values())
        for key, value in params.items():
            text = self.choice_text.get(key, {}).get(value)
            lines.append(f"{key}={text if text is not None else _number_text(value)}")
        return lines

    def extremes(self) -> dict[str, list[Any]]:
        """Every choice of a categorical parameter, both bounds of any other: the values checked
        before the first trial (a bound the run rejects would otherwise fail trials at random)."""
        return {key: list(dist.choices) if isinstance(dist, CategoricalDistribution) else [dist.low, dist.high]
                for key, dist in self.distributions.items()}

    def grid(self) -> dict[str, list[Any]]:
        """Every value of every parameter, for ``optuna.samplers.GridSampler``."""
        return {key: _grid_values(key, dist) for key, dist in self.distributions.items()}


def build_search_space(
    config_params: Mapping[str, Any] | None,
    arguments: Sequence[str],
    parser: OverridesParser,
) -> SearchSpace:
    """Merge ``hydra.sweeper.params`` with command-line overrides (CLI wins)."""
    lines = [f"{key}={value}" for key, value in (config_params or {}).items()]
    space = SearchSpace()
    # Config entries first, so a later command-line entry for the same key replaces it.
    for override in parser.parse_overrides(list(lines) + list(arguments)):
        key = override.get_key_element()
        space.distributions.pop(key, None)
        space.fixed.pop(key, None)
        space.choice_text.pop(key, None)
        if override.is_sweep_override():
            space.distributions[key] = to_distribution(override)
            if override.is_choice_sweep():
                space.choice_text[key] = _choice_texts(override)
        else:
            assert override.input_line is not None
            space.fixed[key] = override.input_line
    return space


def to_distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override."""
    key = override.get_key_element()
    sweep = override.value()
    tags = set(getattr(sweep, "tags", ()) or ())
    unknown = tags - _KNOWN_TAGS
    if unknown:
        raise HydraException(f"{key}: unknown tag(s) {sorted(unknown)}; known: {sorted(_KNOWN_TAGS)}")
    log = "log" in tags

    if isinstance(sweep, IntervalSweep):
        assert sweep.start is not None and sweep.end is not None
        # Hydra parses interval bounds as floats, so integers need an explicit tag.
        if "int" in tags:
            return IntDistribution(int(sweep.start), int(sweep.end), log=log)
        return FloatDistribution(sweep.start, sweep.end, log=log)

    if isinstance(sweep, RangeSweep):
        values = list(sweep.range())
        if not values:
            raise HydraException(f"{key}: {override.get_value_string()} is empty")
        low, high = min(values), max(values)
        step = abs(sweep.step)
        if log and step != 1:
            raise HydraException(f"{key}: Optuna cannot combine a log scale with a step ({step})")
        if all(isinstance(v, int) for v in (sweep.start, sweep.stop, sweep.step)) or "int" in tags:
            return IntDistribution(int(low), int(high), log=log, step=1 if log else int(step))
        return FloatDistribution(float(low), float(high), log=log, step=None if log else float(step))

    if override.is_choice_sweep():
        if log:
            raise HydraException(f"{key}: tag(log, ...) needs interval(...) or range(...), not a choice")
        return CategoricalDistribution(list(_choice_texts(override)))

    raise HydraException(f"{key}: unsupported sweep {override.get_value_string()!r}")


def _choice_texts(override: Override) -> dict[Any, str]:
    """Optuna choice -> override text, for the elements of a choice sweep."""
    texts: dict[Any, str] = {}
    for element in override.sweep_iterator(transformer=Transformer.identity):
        # Optuna choices must be None/bool/int/float/str; lists and dicts become
        # their override text, which is also how they read in the results file.
        choice = element if isinstance(element, (bool, int, float, str)) else Transformer.str(element)
        texts[choice] = Transformer.str(element)
    return texts


def _number_text(value: Any) -> str:
    # repr keeps full float precision (e.g. 1e-05), which Hydra parses back exactly.
    return repr(value) if isinstance(value, float) else str(value)


def _grid_values(key: str, dist: BaseDistribution) -> list[Any]:
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        return list(range(dist.low, dist.high + 1, dist.step))
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        count = round((dist.high - dist.low) / dist.step) + 1
        return [dist.low + i * dist.step for i in range(count)]
    raise HydraException(
        f"{key}: the grid sampler needs a discrete space (choice / range / a,b,c), got {dist}"
    )


def describe(distributions: Mapping[str, BaseDistribution]) -> Iterable[str]:
    """One human-readable line per parameter, for the start-of-sweep log."""
    for key, dist in distributions.items():
        yield f"  {key}: {dist}"
