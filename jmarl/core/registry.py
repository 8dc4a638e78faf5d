"""Environment registry: ``jmarl.make(name, **kwargs)`` with kwargs checked against the env's config."""
from __future__ import annotations

import dataclasses
import difflib
import importlib
from typing import Any, Union

from jmarl.core.config import build
from jmarl.core.env import Environment

# name -> an Environment class with a ``Config`` dataclass, or "module:Class" resolved on first use.
_REGISTRY: dict[str, Union[str, type]] = {
    "mpe_spread": "jmarl.envs.mpe.spread:SimpleSpread",
    "mpe_tag": "jmarl.envs.mpe.tag:SimpleTag",
    "mpe_adversary": "jmarl.envs.mpe.adversary:SimpleAdversary",
    "smax": "jmarl.envs.smax.env:SMAX",
    "probe_matrix": "jmarl.envs.probes:MatrixGame",
    "probe_two_step": "jmarl.envs.probes:TwoStepGame",
    "probe_continuous": "jmarl.envs.probes:ContinuousProbe",
}


def register(name: str, env_cls: Union[type, str], overwrite: bool = False) -> None:
    """Register an Environment class (with a ``Config`` dataclass attribute) under ``name``."""
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"environment {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = env_cls


def registered_envs() -> list[str]:
    """Names accepted by ``jmarl.make``."""
    return sorted(_REGISTRY)


def env_class(name: str) -> type:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(f"unknown environment {name!r}.{hint} Registered: {registered_envs()}")
    entry = _REGISTRY[name]
    if isinstance(entry, str):
        module, cls = entry.split(":")
        entry = _REGISTRY[name] = getattr(importlib.import_module(module), cls)
    return entry


def make(name: str, **kwargs: Any) -> Environment:
    """Build registered environment ``name``; unknown or ill-typed kwargs raise with the valid ones listed."""
    cls = env_class(name)
    config = build(cls.Config, kwargs, what=f"environment {name!r}")
    return cls(config)


def env_config_fields(name: str) -> list[str]:
    return [f.name for f in dataclasses.fields(env_class(name).Config)]
