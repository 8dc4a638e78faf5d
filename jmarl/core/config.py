"""Typed configuration: frozen dataclasses built from overrides that are checked before anything compiles.

One place turns ``{"lr": "3e-4", "num_envs": 64}`` (from Python or the command line) into a config
dataclass, raising an error that names the bad key and lists what is valid.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, Mapping, TypeVar

C = TypeVar("C")


class ConfigError(ValueError):
    """A configuration key or value that is not valid; the message says what is."""


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def describe_fields(cls) -> str:
    """One line per field: ``name: type = default``."""
    lines = []
    for f in dataclasses.fields(cls):
        tp = _field_types(cls)[f.name]
        name = tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")
        default = f.default if f.default is not dataclasses.MISSING else "(required)"
        lines.append(f"  {f.name}: {name} = {default!r}")
    return "\n".join(lines)


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
            close = difflib.get_close_matches(key, types, n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise ConfigError(f"{what}: unknown key {key!r}.{hint} Valid keys:\n{describe_fields(cls)}")
        clean[key] = _coerce(value, types[key], key, what)
    if base is not None:
        return dataclasses.replace(base, **clean)
    missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and f.name not in clean]
    if missing:
        raise ConfigError(f"{what}: missing required keys {missing}. Valid keys:\n{describe_fields(cls)}")
    return cls(**clean)


class ChunkedSchedule:
    """How a run's budget becomes updates and chunks; mixed into the algorithms' static configs, which
    define ``num_envs``, ``num_steps``, ``total_timesteps`` and ``num_evals``. The run is ``num_chunks``
    calls of one compiled chunk of ``updates_per_chunk`` updates, each followed by an evaluation."""

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
