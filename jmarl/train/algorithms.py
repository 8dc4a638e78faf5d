"""Algorithms by name, file or module, and config resolution.

An algorithm is named on the command line or in Python by

- a built-in name: ``ippo``/``mappo`` (jmarl.algos.ppo), ``iql``/``vdn``/``qmix`` (jmarl.algos.qlearning),
  ``maddpg`` (jmarl.algos.maddpg), or a name added with ``register_algorithm``;
- the path of a Python file (``my_ppo.py``, ``./algos/ppo.py``): a copied and edited algorithm;
- a dotted module path (``mypkg.my_ppo``).

Any of them gets the whole machinery (run directory, checkpoints, ``--resume``, sweeps, ``jmarl.load``,
render, reproduce rows), provided the module meets the contract of ``jmarl.train.contract``. A run records
where its algorithm came from (``algorithm_source``: kind, module, file and a SHA-256 of the source), and
``trusted_algorithm`` finds it again on resume, load and render: a built-in or registered one by name; a file
or module only when it is named again (or the caller opts in), since a run directory received from someone
else must not run code the user did not ask for; a moved file or one whose source changed is an error that
says what changed and how to proceed.

Presets: an algorithm module's ``PRESETS`` ({env name: overrides}) are refined by {"algo/env": overrides}
where one algorithm of a module wants other defaults (e.g. "ippo/mpe_spread"), then by keys qualified with an
environment keyword, "smax[scenario=5m_vs_6m]" and "ippo/smax[scenario=5m_vs_6m]", where one map or size
wants its own settings, then by "continuous" where the environment's actions are Box spaces.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping

from jmarl.core.config import ConfigError, build, suggest
from jmarl.core.registry import env_class, env_config_class
from jmarl.train.contract import check_algorithm

# Built-in names -> (module, static overrides that the name implies).
BUILTIN: dict[str, tuple[str, dict[str, Any]]] = {
    "ippo": ("jmarl.algos.ppo", {"algo": "ippo"}),
    "mappo": ("jmarl.algos.ppo", {"algo": "mappo"}),
    "iql": ("jmarl.algos.qlearning", {"mixer": "none"}),
    "vdn": ("jmarl.algos.qlearning", {"mixer": "vdn"}),
    "qmix": ("jmarl.algos.qlearning", {"mixer": "qmix"}),
    "pqn_vdn": ("jmarl.algos.qlearning", {"mixer": "vdn", "algo_variant": "pqn"}),
    "maddpg": ("jmarl.algos.maddpg", {}),
    "grpo": ("jmarl.algos.grpo", {}),
}
# Names added at run time: name -> (module object, implied static overrides).
_REGISTERED: dict[str, tuple[ModuleType, dict[str, Any]]] = {}
# Files and dotted modules loaded in this process: spec -> module.
_LOADED: dict[str, ModuleType] = {}

# Kept for code that read the table: every name the registry knows.
ALGORITHMS = BUILTIN


def registered_algorithms() -> list[str]:
    """Algorithm names (built-in and registered); files and dotted modules are accepted too."""
    return sorted({**BUILTIN, **_REGISTERED})


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def source_sha256(module: ModuleType) -> str | None:
    """The sha256 of ``module``'s source file (what a run and a results row record), None without one."""
    path = getattr(module, "__file__", None)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path and Path(path).is_file() else None


def _load_file(path: Path, kind: str = "algorithm") -> ModuleType:
    """Import the file ``path`` under a private module name (so two copies can coexist)."""
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(f"{kind} file {path} does not exist")
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
    name = f"jmarl_user_algos.{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file executes
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise ConfigError(f"{kind} file {path} failed to import: {type(e).__name__}: {e}") from e
    return module


def _import(spec: str) -> ModuleType:
    if spec in _LOADED:
        return _LOADED[spec]
    if _is_path(spec):
        module = _load_file(Path(spec))
    else:
        try:
            module = importlib.import_module(spec)
        except ImportError as e:
            raise ConfigError(f"algorithm module {spec!r} cannot be imported: {e}") from e
    check_algorithm(module, spec)
    _LOADED[spec] = module
    return module


def metric_function(spec: Any) -> Callable:
    """A user metric (see ``jmarl.core.wrappers.WithMetrics``): a callable as it is, or ``"file.py:name"`` /
    ``"pkg.module:name"``, imported; ConfigError naming what is wrong otherwise."""
    if callable(spec):
        return spec
    where, _, name = str(spec).rpartition(":")
    if not where or not name:
        raise ConfigError(f"metric {spec!r}: give FILE.py:FUNCTION or MODULE:FUNCTION")
    if _is_path(where):
        module = _load_file(Path(where), kind="metric")
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise ConfigError(f"metric {spec!r}: cannot import {where}: {e}") from e
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"metric {spec!r}: {where} has no function {name!r}")
    return fn


def algorithm_module(spec: str) -> ModuleType:
    """The module of algorithm ``spec``: a built-in or registered name, a file path or a dotted module."""
    if spec in _REGISTERED:
        return _REGISTERED[spec][0]
    if spec in BUILTIN:
        return importlib.import_module(BUILTIN[spec][0])
    if spec in _LOADED:
        return _LOADED[spec]
    if _is_path(spec) or "." in spec:
        return _import(spec)
    raise ConfigError(f"unknown algorithm {spec!r}.{suggest(spec, registered_algorithms())} Available: "
                      f"{registered_algorithms()}, or the path of an algorithm file (my_ppo.py) or a dotted module "
                      f"(mypkg.my_ppo)")


def implied_overrides(spec: str) -> dict[str, Any]:
    """Static settings a name implies (``mappo`` -> algo=mappo); none for files and modules."""
    if spec in _REGISTERED:
        return dict(_REGISTERED[spec][1])
    return dict(BUILTIN[spec][1]) if spec in BUILTIN else {}


def register_algorithm(name: str, module: ModuleType | str, overwrite: bool = False, **implied: Any) -> None:
    """Make ``name`` an algorithm: ``module`` is a module object, a dotted module path or a file path;
    ``implied`` are static settings the name fixes (e.g. ``register_algorithm("mappo2", "my_ppo.py",
    algo="mappo")``). Runs trained under ``name`` record the module's file and source hash, so
    ``jmarl.load`` finds them again in a process that registered the same name (or names the file)."""
    if (name in BUILTIN or name in _REGISTERED) and not overwrite:
        raise ValueError(f"algorithm {name!r} is already registered; pass overwrite=True to replace it")
    if not isinstance(module, ModuleType):
        module = _import(module)
    check_algorithm(module, name)
    _REGISTERED[name] = (module, dict(implied))


def algorithm_source(spec: str) -> dict[str, Any]:
    """Where algorithm ``spec`` comes from, as a run records it: ``kind`` (builtin, registered, file or
    module), ``module`` (dotted name), ``file`` (absolute path) and ``sha256`` of the source."""
    module = algorithm_module(spec)
    kind = ("registered" if spec in _REGISTERED else "builtin" if spec in BUILTIN
            else "file" if module.__name__.startswith("jmarl_user_algos.") else "module")
    file = getattr(module, "__file__", None)
    return {"spec": spec, "kind": kind, "module": None if kind == "file" else module.__name__,
            "file": str(Path(file).resolve()) if file else None, "sha256": source_sha256(module)}


def trusted_algorithm(source: Mapping[str, Any] | None, spec: str, algorithm: str | None = None,
                      trust: bool = False, allow_changed: bool = False, where: str = "the run") -> str:
    """The algorithm spec to use for a run that recorded ``source`` (``spec`` is its ``algo``), checked.

    Built-in names and names registered in this process are used as they are (a built-in whose source
    changed since the run, e.g. after an upgrade, gives a warning). A file or dotted module runs only if
    ``algorithm`` names it again (a path or module) or ``trust`` is set; it must still exist and, unless
    ``allow_changed``, have the recorded source hash. Raises ConfigError saying what differs and what to do.
    """
    source = dict(source or {})
    kind = source.get("kind", "builtin")  # runs from before sources were recorded used built-ins only
    if kind == "module" and str(source.get("module")).startswith("jmarl.algos."):
        kind = "builtin"  # a built-in named by its dotted path
    if algorithm is not None and (kind in ("builtin", "registered") or algorithm in BUILTIN
                                  or algorithm in _REGISTERED):
        if algorithm != spec:
            raise ConfigError(f"{where} was trained with algorithm {spec!r}, not {algorithm!r}; resume or load it "
                              f"as it was trained, or train {algorithm!r} in a new directory")
        algorithm = None
    if algorithm is None and (kind == "builtin" or spec in _REGISTERED):
        if kind == "builtin" and spec not in BUILTIN:
            raise ConfigError(f"{where} was trained with algorithm {spec!r}, which this jmarl does not have")
        module = algorithm_module(spec)
        recorded, now = source.get("sha256"), source_sha256(module)
        if recorded and now and recorded != now:
            if kind == "builtin":
                warnings.warn(f"{where}: the built-in algorithm {spec!r} changed since the run was trained "
                              f"(jmarl upgraded?); a resumed run may not match an uninterrupted one", stacklevel=2)
            elif not allow_changed:
                raise ConfigError(f"{where}: algorithm {spec!r} ({module.__file__}) changed since the run was trained "
                                  f"(sha256 {recorded[:12]} -> {now[:12]}); restore it, or allow the change "
                                  f"(--allow-changed / allow_changed=True)")
        return spec
    if algorithm is None and not trust:
        named = source.get("file") or source.get("module") or spec
        raise ConfigError(f"{where} was trained with the algorithm {kind} {named}, which is not built in: name it "
                          f"again to run its code (CLI: `jmarl ... {named} --resume RUN` / `--algo {named}`; Python: "
                          f"algorithm={named!r}) or trust the run's record (--trust-algorithm / trust=True)")
    use = algorithm or source.get("file") or source.get("module") or spec
    if _is_path(use) and not Path(use).is_file():
        raise ConfigError(f"{where}: the algorithm file {use} is gone (moved?); name its new place "
                          f"(--algo PATH / algorithm=PATH)")
    module = algorithm_module(use)
    recorded, now = source.get("sha256"), source_sha256(module)
    if recorded and now and recorded != now and not allow_changed:
        raise ConfigError(f"{where}: the algorithm {use} is not the source the run was trained with (sha256 "
                          f"{recorded[:12]} recorded, {now[:12]} now); use the original, or allow the change "
                          f"(--allow-changed / allow_changed=True)")
    return use


@dataclasses.dataclass(frozen=True)
class ResolvedConfig:
    """Everything that defines a run: algorithm, environment, static config and hyperparameters."""

    algo: str
    env: str
    env_kwargs: dict
    config: Any
    hparams: Any

    def to_dict(self) -> dict:
        return {"algo": self.algo, "algorithm_source": algorithm_source(self.algo), "env": self.env,
                "env_kwargs": dict(self.env_kwargs),
                "config": dataclasses.asdict(self.config),
                "hparams": {f.name: float(getattr(self.hparams, f.name)) for f in dataclasses.fields(self.hparams)}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], algorithm: str | None = None, trust: bool = False,
                  allow_changed: bool = False, where: str = "the run") -> "ResolvedConfig":
        """The config a run recorded (its ``config.json``); the algorithm is found as ``trusted_algorithm``
        says (a file or module only when named again by ``algorithm`` or with ``trust``)."""
        spec = trusted_algorithm(d.get("algorithm_source"), d["algo"], algorithm, trust, allow_changed, where)
        if spec != d["algo"]:  # the run keeps its recorded name; in this process it means the module found
            _LOADED[d["algo"]] = algorithm_module(spec)
        overrides = {**d["config"], **d["hparams"], **{f"env.{k}": v for k, v in d["env_kwargs"].items()}}
        try:
            return resolve(d["algo"], d["env"], overrides, use_preset=False)
        except ConfigError as e:  # say where the settings came from: the run's config.json, not the command line
            raise ConfigError(f"{where}, its config.json: {e}") from None


def unknown_key(module: ModuleType, key: str, algo: str, env: str) -> ConfigError:
    """The error for a setting that is none of ``module``'s static or hyperparameter keys: close matches, every
    valid key on one line, and the command that shows each with its type and default."""
    static = [f.name for f in dataclasses.fields(module.Config)]
    hparams = [f.name for f in dataclasses.fields(module.Hparams)]
    env_keys = sorted(f.name for f in dataclasses.fields(env_config_class(env)))
    return ConfigError(f"{algo}: unknown key {key!r}.{suggest(key, static + hparams)} Static config (fixes shapes): "
                       f"{static}; traced hyperparameters (sweepable): {hparams}; environment keys as env.KEY: "
                       f"{env_keys}. `jmarl config {algo} --env {env}` shows each with its type and default")


def unknown_env_key(env: str, key: str) -> ConfigError:
    """The error for an ``env.KEY`` that ``env`` (with the message channel's keys) does not take."""
    keys = [f.name for f in dataclasses.fields(env_config_class(env))]
    return ConfigError(f"environment {env!r}: unknown key {key!r}.{suggest(key, keys)} Valid env.* keys: {keys}")


def split_overrides(module: ModuleType, overrides: Mapping[str, Any], env: str, algo: str
                    ) -> tuple[dict, dict, dict]:
    """Sort ``key=value`` overrides into static config, hyperparameters and ``env.*`` kwargs."""
    static_keys = {f.name for f in dataclasses.fields(module.Config)}
    hparam_keys = {f.name for f in dataclasses.fields(module.Hparams)}
    env_keys = {f.name for f in dataclasses.fields(env_config_class(env))}  # with the message keys
    static, hparams, env_kwargs = {}, {}, {}
    for key, value in overrides.items():
        if key.startswith("env."):
            if key[4:] not in env_keys:
                raise unknown_env_key(env, key[4:])
            env_kwargs[key[4:]] = value
        elif key in static_keys:
            static[key] = value
        elif key in hparam_keys:
            hparams[key] = value
        else:
            raise unknown_key(module, key, algo, env)
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
    built = {f.name: f.default for f in dataclasses.fields(env_config_class(env))} | dict(env_kwargs)
    merged: dict[str, Any] = {}
    for prefix in (env, f"{algo}/{env}"):
        for key, value in sorted(built.items()):
            merged.update(module.PRESETS.get(f"{prefix}[{key}={value}]", {}))
    return merged


def preset_name(spec: str, module: ModuleType, overrides: Mapping[str, Any]) -> str:
    """The name ``algo/env`` presets are looked up by: the algorithm's name, or for a file or module (a copy of
    ``ppo.py``) the ``algo`` it is set to (``algo=mappo``, else its Config's default), so a copy keeps the
    presets of the algorithm it copies."""
    if spec in BUILTIN or spec in _REGISTERED:
        return spec
    default = next((f.default for f in dataclasses.fields(module.Config) if f.name == "algo"), None)
    return str(overrides.get("algo", default)) if default is not None else spec


def preset_settings(algo: str, env: str, env_kwargs: Mapping[str, Any] | None = None,
                    overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The KEY=VALUE settings ``algo``'s presets give ``env`` built with ``env_kwargs``: ``PRESETS[env]``, then
    ``PRESETS[algo/env]``, then the qualified ones (``env[key=value]``, ``algo/env[key=value]``), then
    ``PRESETS["continuous"]`` where a team acts in a Box. ``overrides`` only name the algorithm a file or module
    copies (``algo=mappo``; ``preset_name``)."""
    module = algorithm_module(algo)
    name = preset_name(algo, module, overrides or {})
    preset = {**module.PRESETS.get(env, {}), **module.PRESETS.get(f"{name}/{env}", {})}
    env_p = split_overrides(module, preset, env, algo)[2]
    built = {**env_p, **dict(env_kwargs or {})}
    preset.update(qualified_presets(module, name, env, built))
    built = {**split_overrides(module, preset, env, algo)[2], **dict(env_kwargs or {})}
    if has_box_actions(env, built):
        preset.update(module.PRESETS.get("continuous", {}))
    return preset


def resolve(algo: str, env: str, overrides: Mapping[str, Any] | None = None, use_preset: bool = True) -> ResolvedConfig:
    """Defaults <- the algorithm's preset for ``env`` <- ``overrides``, every key checked and typed."""
    module = algorithm_module(algo)
    env_class(env)  # unknown env names fail here, with the registered ones listed
    static_o, hparams_o, env_o = split_overrides(module, dict(overrides or {}), env, algo)
    preset = preset_settings(algo, env, env_o, overrides) if use_preset else {}
    static_p, hparams_p, env_p = split_overrides(module, preset, env, algo)
    implied = implied_overrides(algo)
    for key, value in implied.items():
        if key in static_o and static_o[key] != value:
            raise ConfigError(f"{algo} implies {key}={value!r}; got {key}={static_o[key]!r}")
    config = build(module.Config, {**static_p, **static_o, **implied}, what=algo)
    hparams = build(module.Hparams, {**hparams_p, **hparams_o}, what=f"{algo} hyperparameters")
    env_kwargs = {**env_p, **env_o}
    # Checked early and kept as typed values (env.flag=true on the command line is recorded as True).
    env_config = build(env_config_class(env), env_kwargs, what=f"environment {env!r}")
    env_kwargs = {k: getattr(env_config, k) for k in env_kwargs}
    return ResolvedConfig(algo, env, env_kwargs, config, hparams)
