"""Typed configuration: frozen dataclasses built from overrides that are checked before anything compiles.

One place turns ``{"lr": "3e-4", "num_envs": 64}`` (from Python or the command line) into a config
dataclass, raising an error that names the bad key and lists what is valid.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from typing import Any, Callable, Iterable, Mapping, TypeVar

C = TypeVar("C")


class ConfigError(ValueError):
    """A configuration key or value that is not valid; the message says what is."""


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def type_name(tp: Any) -> str:
    """A field type as a user reads it: ``int``, ``Literal['tanh', 'relu']``, ``tuple[str, ...]``."""
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def field_types(cls) -> dict[str, Any]:
    """{field: type} of dataclass ``cls``, string annotations resolved."""
    return _field_types(cls)


def _coerce(value: Any, tp: Any, key: str, what: str) -> Any:
    """Return ``value`` as type ``tp`` (parsing strings from the command line) or raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:  # Optional[X] and X | None
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        return _coerce(value, args[0], key, what)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        for choice in choices:  # a command-line string matches a non-string choice by its str()
            if value == choice or (isinstance(value, str) and not isinstance(choice, str) and value == str(choice)):
                return choice
        raise ConfigError(f"{what}: {key}={value!r} is not one of {list(choices)}")
    if origin in (tuple, list):
        (elem, *_rest) = typing.get_args(tp) or (Any,)
        if isinstance(value, str):
            value = [v for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{what}: {key} must be a sequence, got {value!r}")
        return tuple(_coerce(v, elem, key, what) for v in value)
    if tp is bool:
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, str):
            try:
                return int(float(value)) if float(value).is_integer() else _bad(value, tp, key, what)
            except ValueError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        return value  # arrays and other leaves: left to the consumer
    return _bad(value, tp, key, what)


def _bad(value, tp, key, what):
    raise ConfigError(f"{what}: {key}={value!r} is not a valid {getattr(tp, '__name__', tp)}")


def build(cls: type[C], overrides: Mapping[str, Any] | None = None, what: str | None = None, base: C | None = None) -> C:
    """Build dataclass ``cls`` from ``base`` (or its defaults) with ``overrides`` checked and coerced.

    Raises ConfigError for an unknown key (with close matches and the full list) or an ill-typed value.
    """
    what = what or cls.__name__
    types = _field_types(cls)
    clean = {}
    for key, value in (overrides or {}).items():
        if key not in types:
            raise ConfigError(f"{what}: unknown key {key!r}.{suggest(key, types)} Valid keys: {list(types)}")
        clean[key] = _coerce(value, types[key], key, what)
    if base is not None:
        return dataclasses.replace(base, **clean)
    missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and f.name not in clean]
    if missing:
        raise ConfigError(f"{what}: missing required keys {missing}. Valid keys: {list(types)}")
    return cls(**clean)


def require_at_least(what: str, config: Any, **least: int) -> None:
    """Raise ValueError naming the first field of ``config`` below its least valid value, e.g.
    ``require_at_least("mpe_tag", config, num_adversaries=1, num_obstacles=0)`` ->
    ``mpe_tag: num_adversaries must be at least 1, got 0`` (an environment's own check of its config)."""
    for name, low in least.items():
        value = getattr(config, name)
        if value is not None and value < low:
            raise ValueError(f"{what}: {name} must be at least {low}, got {value}")


def close_matches(key: str, valid: Iterable[str]) -> list[str]:
    """Up to three names of ``valid`` close to a mistyped ``key``, closest first."""
    return difflib.get_close_matches(key, list(valid), n=3)


def suggest(key: str, valid: Iterable[str], prefix: str = "") -> str:
    """`` Did you mean ['lr']?`` for a mistyped ``key`` (empty when nothing is close); ``prefix`` is put before
    each match shown (``jaxmarl:``)."""
    close = close_matches(key, valid)
    return f" Did you mean {[prefix + c for c in close]}?" if close else ""


@dataclasses.dataclass(frozen=True)
class Interval:
    """A range of valid values, e.g. ``Interval.parse("(0, 1]")``; NaN is in no interval, and an infinite
    value only in one whose bound is ``inf`` and closed (which none of jmarl's ranges are)."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    @classmethod
    def parse(cls, spec: str) -> "Interval":
        """``"(0, inf)"``, ``"[0, 1]"``, ``"(0, 1]"``: brackets include the bound, parentheses exclude it."""
        lo, hi = (float(x) for x in spec.strip()[1:-1].split(","))
        return cls(lo, hi, spec.strip()[0] == "(", spec.strip()[-1] == ")")

    def __contains__(self, x: float) -> bool:
        x = float(x)
        if math.isnan(x):
            return False
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return above and below

    def __str__(self) -> str:
        fmt = lambda v: "inf" if v == math.inf else "-inf" if v == -math.inf else f"{v:g}"  # noqa: E731
        return f"{'(' if self.low_open else '['}{fmt(self.low)}, {fmt(self.high)}{')' if self.high_open else ']'}"


def check_ranges(values: Any, ranges: Mapping[str, str], what: str) -> None:
    """Raise ConfigError naming the first field of ``values`` (a dataclass of floats, e.g. hyperparameters)
    outside its range in ``ranges`` ({field: "(0, inf)"}), with the range; NaN and inf are never in range."""
    for key, spec in ranges.items():
        value = getattr(values, key)
        try:
            value = float(value)
        except TypeError:  # a traced or batched value: checked where it is concrete
            continue
        interval = Interval.parse(spec)
        if value not in interval:
            raise ConfigError(f"{what}: {key}={value:g} is out of range; valid: {key} in {interval}")


def check_positive(config: Any, keys: Iterable[str], what: str) -> None:
    """Raise ConfigError for the first size among ``keys`` of ``config`` that is below 1, saying the valid range."""
    for key in keys:
        value = getattr(config, key)
        if value < 1:
            raise ConfigError(f"{what}: {key}={value} must be at least 1 (sizes are positive integers: valid {key} >= 1)")


def construct(factory: Callable[[Any], Any], config: Any, what: str) -> Any:
    """``factory(config)``, with a ValueError it raises about the config turned into a ConfigError that names
    the field(s) at fault: each field set away from its default is tried alone on the defaults, and those that
    fail alone are named (else the set fields together). E.g. ``environment 'mpe_spread': num_agents=0 is not
    valid (...)`` instead of the whole config."""
    try:
        return factory(config)
    except ConfigError:
        raise
    except ValueError as e:
        try:
            defaults = type(config)()
        except TypeError:  # required fields: no defaults to compare with
            raise ConfigError(f"{what}: {e}") from None
        changed = [f.name for f in dataclasses.fields(config) if getattr(config, f.name) != getattr(defaults, f.name)]
        culprits = []
        for name in changed:
            try:
                factory(dataclasses.replace(defaults, **{name: getattr(config, name)}))
            except ValueError:
                culprits.append(name)
            except Exception:  # noqa: BLE001  a field that fails differently alone is still at fault
                culprits.append(name)
        named = culprits or changed
        values = ", ".join(f"{k}={getattr(config, k)!r}" for k in named)
        verb = "is" if len(named) == 1 else "are"
        together = "" if culprits or len(named) < 2 else " together"
        raise ConfigError(f"{what}: {values} {verb} not valid{together} ({e})" if named else f"{what}: {e}") from None


class ChunkedSchedule:
    """How a run's budget becomes updates and chunks; mixed into the algorithms' static configs, which
    define ``num_envs``, ``num_steps``, ``total_timesteps`` and ``num_evals``. The run is ``num_chunks``
    calls of one compiled chunk of ``updates_per_chunk`` updates, each followed by an evaluation."""

    #: Sizes every schedule needs at least 1 of; ``check_schedule`` checks them (before the properties
    #: below divide by them).
    SCHEDULE_SIZES = ("num_envs", "num_steps", "total_timesteps", "num_evals", "eval_episodes")

    def check_schedule(self, what: str = "config") -> None:
        """Raise ConfigError for a size below 1 or a budget smaller than one update's batch."""
        check_positive(self, [k for k in self.SCHEDULE_SIZES if hasattr(self, k)], what)
        if self.total_timesteps < self.batch_size:
            raise ConfigError(f"{what}: total_timesteps={self.total_timesteps} is less than one update's batch "
                              f"(num_envs x num_steps = {self.batch_size}); valid: total_timesteps >= "
                              f"{self.batch_size}")

    @property
    def batch_size(self) -> int:
        """Env steps per update: num_envs x num_steps."""
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.updates_per_chunk * self.num_chunks

    @property
    def updates_per_chunk(self) -> int:
        return max(1, self.total_timesteps // self.batch_size // self.num_evals)

    @property
    def num_chunks(self) -> int:
        return max(1, self.total_timesteps // self.batch_size // self.updates_per_chunk)
