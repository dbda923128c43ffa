"""The search space: Hydra's sweep grammar in ``hydra.sweeper.params`` (and on the command line)
as Optuna distributions.

- ``choice(a, b, c)`` (or ``a,b,c``): one of the values;
- ``range(start, stop[, step])``: an int (or float) grid, ``stop`` excluded, as in Hydra;
- ``interval(low, high)``: a float in [low, high] (an int when both ends are ints);
- ``tag(log, interval(low, high))``: the same on a log scale.

Anything else is a fixed override that every trial gets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from emotion_lab.errors import SearchError

_CHOICE_TYPES = (str, int, float, bool, type(None))


@dataclass
class SearchSpace:
    """What Optuna samples (``distributions``) and what every trial gets as is (``fixed``)."""

    distributions: dict[str, BaseDistribution]
    fixed: list[str]
    # Each searched key as the user wrote it, for error messages.
    written: dict[str, str]


def _choice(written: str, value: ChoiceSweep, log: bool) -> BaseDistribution:
    choices = list(value.list)
    bad = [c for c in choices if not isinstance(c, _CHOICE_TYPES)]
    if bad:
        raise SearchError(
            f"hydra.sweeper.params: {written}: choice() takes numbers, strings, booleans or "
            f"null, not {bad[0]!r}."
        )
    if log:
        raise SearchError(f"hydra.sweeper.params: {written}: tag(log, ...) needs an interval.")
    return CategoricalDistribution(choices)


def _range(written: str, value: RangeSweep, log: bool) -> BaseDistribution:
    start, stop, step = value.start, value.stop, value.step
    assert start is not None and stop is not None and step is not None
    count = math.ceil((stop - start) / step)
    if count < 1:
        raise SearchError(f"hydra.sweeper.params: {written} holds no value.")
    last = start + (count - 1) * step
    if all(isinstance(v, int) for v in (start, stop, step)):
        return IntDistribution(int(start), int(last), log=log, step=int(step))
    return FloatDistribution(float(start), float(last), log=log, step=float(step))


def _interval(written: str, value: IntervalSweep, log: bool) -> BaseDistribution:
    low, high = value.start, value.end
    assert low is not None and high is not None
    if not low < high:
        raise SearchError(f"hydra.sweeper.params: {written}: expected low < high.")
    if log and low <= 0:
        raise SearchError(f"hydra.sweeper.params: {written}: a log scale needs low > 0.")
    if isinstance(low, int) and isinstance(high, int):
        return IntDistribution(low, high, log=log)
    return FloatDistribution(float(low), float(high), log=log)


def _distribution(key: str, override: Override) -> BaseDistribution:
    value = override.value()
    written = override.input_line or key
    log = "log" in (getattr(value, "tags", set()) or set())
    if isinstance(value, ChoiceSweep):
        return _choice(written, value, log)
    if isinstance(value, RangeSweep):
        return _range(written, value, log)
    if isinstance(value, IntervalSweep):
        return _interval(written, value, log)
    raise SearchError(f"hydra.sweeper.params: {written}: not a sweep Optuna can sample.")


def parse_space(params: Mapping[str, str], arguments: Sequence[str]) -> SearchSpace:
    """``hydra.sweeper.params``, then the command line's overrides (a key set there wins: a
    fixed ``trainer.batch_size=32`` drops the batch size from the search)."""
    parser = OverridesParser.create()
    by_key: dict[str, Override] = {}
    for text in [*(f"{k}={v}" for k, v in params.items()), *arguments]:
        (override,) = parser.parse_overrides([text])
        by_key[override.get_key_element()] = override
    distributions: dict[str, BaseDistribution] = {}
    fixed: list[str] = []
    written: dict[str, str] = {}
    for key, override in by_key.items():
        if override.is_sweep_override():
            distributions[key] = _distribution(key, override)
            written[key] = override.input_line or key
        else:
            assert override.input_line is not None
            fixed.append(override.input_line)
    if not distributions:
        raise SearchError(
            "the search space is empty: nothing in hydra.sweeper.params or on the command line is "
            "a choice(...), range(...) or interval(...). Add one, e.g. "
            "'lr=tag(log, interval(1e-5, 1e-3))', or run a plain sweep without hparams_search."
        )
    return SearchSpace(distributions, fixed, written)


def grid_space(space: SearchSpace) -> dict[str, list]:
    """The values of each key for Optuna's grid sampler: choice() and range() only."""
    grid: dict[str, list] = {}
    for key, dist in space.distributions.items():
        if isinstance(dist, CategoricalDistribution):
            grid[key] = list(dist.choices)
        elif isinstance(dist, IntDistribution | FloatDistribution) and dist.step is not None:
            count = round((dist.high - dist.low) / dist.step) + 1
            grid[key] = [dist.low + i * dist.step for i in range(count)]
        else:
            raise SearchError(
                f"the grid sampler takes choice(...) or range(...) only, not {space.written[key]}: "
                "list the values as choice(...), or pick another sampler "
                "(hydra/sweeper/sampler=tpe, random or cmaes)."
            )
    return grid


def as_override(key: str, value: object) -> str:
    """A sampled value as an override the job's config accepts."""
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace("'", "\\'")
        return f"{key}='{escaped}'"
    if value is None:
        return f"{key}=null"
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    return f"{key}={value!r}" if isinstance(value, float) else f"{key}={value}"
