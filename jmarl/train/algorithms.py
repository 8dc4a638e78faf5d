"""Algorithm registry and config resolution: ``ippo``/``mappo`` (algos/ppo.py), ``iql``/``vdn``/``qmix``
(algos/qlearning.py). An algorithm module provides ``Config`` (static, frozen dataclass), ``Hparams``
(traced pytree dataclass), ``make_train(config, env)`` and ``PRESETS`` ({env name: overrides}, refined by
{"algo/env": overrides} where one algorithm of a module wants other defaults, e.g. "ippo/mpe_spread", then by
keys qualified with an environment keyword, "smax[scenario=5m_vs_6m]" and "ippo/smax[scenario=5m_vs_6m]", where
one map or size wants its own settings, then by "continuous" where the environment's actions are Box spaces).
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
from types import ModuleType
from typing import Any, Mapping

from jmarl.core.config import ConfigError, build, describe_fields
from jmarl.core.registry import env_class

# name -> (module, static overrides that the name implies)
ALGORITHMS: dict[str, tuple[str, dict[str, Any]]] = {
    "ippo": ("jmarl.algos.ppo", {"algo": "ippo"}),
    "mappo": ("jmarl.algos.ppo", {"algo": "mappo"}),
    "iql": ("jmarl.algos.qlearning", {"mixer": "none"}),
    "vdn": ("jmarl.algos.qlearning", {"mixer": "vdn"}),
    "qmix": ("jmarl.algos.qlearning", {"mixer": "qmix"}),
    "maddpg": ("jmarl.algos.maddpg", {}),
}


def algorithm_module(name: str) -> ModuleType:
    if name not in ALGORITHMS:
        close = difflib.get_close_matches(name, ALGORITHMS, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ConfigError(f"unknown algorithm {name!r}.{hint} Available: {sorted(ALGORITHMS)}")
    return importlib.import_module(ALGORITHMS[name][0])


@dataclasses.dataclass(frozen=True)
class ResolvedConfig:
    """Everything that defines a run: algorithm, environment, static config and hyperparameters."""

    algo: str
    env: str
    env_kwargs: dict
    config: Any
    hparams: Any

    def to_dict(self) -> dict:
        return {"algo": self.algo, "env": self.env, "env_kwargs": dict(self.env_kwargs),
                "config": dataclasses.asdict(self.config),
                "hparams": {f.name: float(getattr(self.hparams, f.name)) for f in dataclasses.fields(self.hparams)}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ResolvedConfig":
        overrides = {**d["config"], **d["hparams"], **{f"env.{k}": v for k, v in d["env_kwargs"].items()}}
        return resolve(d["algo"], d["env"], overrides, use_preset=False)


def split_overrides(module: ModuleType, overrides: Mapping[str, Any], env: str, algo: str):
    """Sort ``key=value`` overrides into static config, hyperparameters and ``env.*`` kwargs."""
    static_keys = {f.name for f in dataclasses.fields(module.Config)}
    hparam_keys = {f.name for f in dataclasses.fields(module.Hparams)}
    env_keys = {f.name for f in dataclasses.fields(env_class(env).Config)}
    static, hparams, env_kwargs = {}, {}, {}
    for key, value in overrides.items():
        if key.startswith("env."):
            if key[4:] not in env_keys:
                raise ConfigError(f"environment {env!r}: unknown key {key[4:]!r}. Valid env.* keys: {sorted(env_keys)}")
            env_kwargs[key[4:]] = value
        elif key in static_keys:
            static[key] = value
        elif key in hparam_keys:
            hparams[key] = value
        else:
            valid = sorted(static_keys | hparam_keys)
            close = difflib.get_close_matches(key, valid, n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise ConfigError(
                f"{algo}: unknown key {key!r}.{hint}\nStatic config (fixes shapes):\n{describe_fields(module.Config)}\n"
                f"Traced hyperparameters (sweepable):\n{describe_fields(module.Hparams)}\n"
                f"Environment keys as env.KEY: {sorted(env_keys)}")
    return static, hparams, env_kwargs


def has_box_actions(env: str, env_kwargs: Mapping[str, Any]) -> bool:
    """Whether any team of ``env`` built with ``env_kwargs`` acts in a Box (continuous) action space."""
    from jmarl.core.registry import make
    from jmarl.core.spaces import Box

    try:
        teams = make(env, **env_kwargs).teams
    except ConfigError:
        return False  # ill-typed kwargs are reported by the full check below
    return any(isinstance(team.action_space, Box) for team in teams.values())


def qualified_presets(module: ModuleType, algo: str, env: str, env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The presets keyed ``env[key=value]`` then ``algo/env[key=value]`` whose keyword matches the environment
    as built (``env_kwargs`` over its defaults), e.g. ``smax[scenario=5m_vs_6m]``."""
    built = {f.name: f.default for f in dataclasses.fields(env_class(env).Config)} | dict(env_kwargs)
    merged: dict[str, Any] = {}
    for prefix in (env, f"{algo}/{env}"):
        for key, value in sorted(built.items()):
            merged.update(module.PRESETS.get(f"{prefix}[{key}={value}]", {}))
    return merged


def resolve(algo: str, env: str, overrides: Mapping[str, Any] | None = None, use_preset: bool = True) -> ResolvedConfig:
    """Defaults <- the algorithm's preset for ``env`` <- ``overrides``, every key checked and typed."""
    module = algorithm_module(algo)
    env_class(env)  # unknown env names fail here, with the registered ones listed
    preset = {**module.PRESETS.get(env, {}), **module.PRESETS.get(f"{algo}/{env}", {})} if use_preset else {}
    static_p, hparams_p, env_p = split_overrides(module, preset, env, algo)
    static_o, hparams_o, env_o = split_overrides(module, dict(overrides or {}), env, algo)
    if use_preset and (qualified := qualified_presets(module, algo, env, {**env_p, **env_o})):
        preset.update(qualified)
        static_p, hparams_p, env_p = split_overrides(module, preset, env, algo)
    if use_preset and has_box_actions(env, {**env_p, **env_o}):
        preset.update(module.PRESETS.get("continuous", {}))
        static_p, hparams_p, env_p = split_overrides(module, preset, env, algo)
    implied = ALGORITHMS[algo][1]
    for key, value in implied.items():
        if key in static_o and static_o[key] != value:
            raise ConfigError(f"{algo} implies {key}={value!r}; got {key}={static_o[key]!r}")
    config = build(module.Config, {**static_p, **static_o, **implied}, what=algo)
    hparams = build(module.Hparams, {**hparams_p, **hparams_o}, what=f"{algo} hyperparameters")
    env_kwargs = {**env_p, **env_o}
    # Checked early and kept as typed values (env.flag=true on the command line is recorded as True).
    env_config = build(env_class(env).Config, env_kwargs, what=f"environment {env!r}")
    env_kwargs = {k: getattr(env_config, k) for k in env_kwargs}
    return ResolvedConfig(algo, env, env_kwargs, config, hparams)
