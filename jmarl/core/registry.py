"""Environment registry: ``jmarl.make(name, **kwargs)`` with kwargs checked against the env's config."""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Union

from jmarl.core.config import build, close_matches, construct, suggest
from jmarl.core.env import Environment
from jmarl.core.messages import MessageOptions, apply_message_options, message_option_types

# name -> an Environment class with a ``Config`` dataclass, or "module:Class" resolved on first use.
_REGISTRY: dict[str, Union[str, type]] = {
    "mpe_spread": "jmarl.envs.mpe.spread:SimpleSpread",
    "mpe_tag": "jmarl.envs.mpe.tag:SimpleTag",
    "mpe_adversary": "jmarl.envs.mpe.adversary:SimpleAdversary",
    "mpe_simple": "jmarl.envs.mpe.simple:Simple",
    "mpe_push": "jmarl.envs.mpe.push:SimplePush",
    "mpe_speaker_listener": "jmarl.envs.mpe.speaker_listener:SimpleSpeakerListener",
    "mpe_reference": "jmarl.envs.mpe.reference:SimpleReference",
    "mpe_crypto": "jmarl.envs.mpe.crypto:SimpleCrypto",
    "mpe_world_comm": "jmarl.envs.mpe.world_comm:SimpleWorldComm",
    "smax": "jmarl.envs.smax.env:SMAX",
    "probe_matrix": "jmarl.envs.probes:MatrixGame",
    "probe_two_step": "jmarl.envs.probes:TwoStepGame",
    "probe_continuous": "jmarl.envs.probes:ContinuousProbe",
    "probe_comm": "jmarl.envs.probes:CommProbe",
}


def register(name: str, env_cls: Union[type, str], overwrite: bool = False) -> None:
    """Register an Environment class (with a ``Config`` dataclass attribute) under ``name``."""
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"environment {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = env_cls


# Namespaces: "PREFIX:NAME" names environment NAME of another library, built through an adapter on first use.
# PREFIX -> ("module:function returning the class of NAME", "module:function listing the names"); strings, so
# the adapter (and its library) is imported only when such a name is used and core imports nothing above it.
_NAMESPACES: dict[str, tuple[str, str]] = {
    "jaxmarl": ("jmarl.adapters.jaxmarl:jaxmarl_env_class", "jmarl.adapters.jaxmarl:jaxmarl_env_names"),
}
JAXMARL_PREFIX = "jaxmarl:"  # "jaxmarl:NAME": JaxMARL's NAME through jmarl.adapters.jaxmarl.from_jaxmarl


def register_namespace(prefix: str, env_class_fn: str, env_names_fn: str, overwrite: bool = False) -> None:
    """Make ``PREFIX:NAME`` an environment name: ``env_class_fn`` ("module:function", NAME -> an Environment
    class with a ``Config``) builds it, ``env_names_fn`` ("module:function", () -> names) lists them."""
    if prefix in _NAMESPACES and not overwrite:
        raise ValueError(f"namespace {prefix!r} is already registered; pass overwrite=True to replace it")
    _NAMESPACES[prefix] = (env_class_fn, env_names_fn)


def _resolve(spec: str):
    module, fn = spec.split(":")
    return getattr(importlib.import_module(module), fn)


def registered_envs(jaxmarl: bool = False) -> list[str]:
    """Names accepted by ``jmarl.make``; with ``jaxmarl=True`` also ``PREFIX:NAME`` for every environment of each
    namespace, e.g. every environment JaxMARL registers (this imports those libraries, so it is off by default:
    ``import jmarl`` stays light)."""
    names = sorted(_REGISTRY)
    if jaxmarl:
        for prefix, (_, list_fn) in _NAMESPACES.items():
            names += [f"{prefix}:{n}" for n in _resolve(list_fn)()]
    return names


def _namespace_hint(name: str) -> str:
    """A hint naming ``PREFIX:NAME`` where ``name`` is close to an environment of a namespace (for unknown names
    only: this imports the namespaces' libraries)."""
    for prefix, (_, list_fn) in _NAMESPACES.items():
        try:
            close = close_matches(name, _resolve(list_fn)())
        except ImportError:
            continue
        if close:
            return f" {prefix}'s environments are named {prefix}:NAME: did you mean {[f'{prefix}:{c}' for c in close]}?"
    return ""


def env_class(name: str) -> type:
    """The Environment class registered as ``name`` (imported on first use), or, for ``jaxmarl:NAME`` (any
    registered namespace), a class running that library's NAME whose ``Config`` holds its constructor keywords.
    Unknown names raise ValueError with close matches."""
    prefix, sep, rest = name.partition(":")
    if sep and prefix in _NAMESPACES:
        return _resolve(_NAMESPACES[prefix][0])(rest)
    if name not in _REGISTRY:
        raise ValueError(f"unknown environment {name!r}.{suggest(name, _REGISTRY)}{_namespace_hint(name)} "
                         f"Registered: {registered_envs()}; JaxMARL's as jaxmarl:NAME")
    entry = _REGISTRY[name]
    if isinstance(entry, str):
        module, cls = entry.split(":")
        entry = _REGISTRY[name] = getattr(importlib.import_module(module), cls)
    return entry


_CONFIG_CLASSES: dict[type, type] = {}


def env_config_class(name: str) -> type:
    """The keys ``jmarl.make(name, ...)`` takes, as one dataclass: the env's ``Config`` plus the message-channel
    keys every environment has (``jmarl.core.messages.MessageOptions``: ``messages``, ``message_dim``, ...), so
    ``env.messages=2`` works for any env without editing its factory. A key the env defines itself stays the env's."""
    cls = env_class(name)
    if cls not in _CONFIG_CLASSES:
        own = {f.name for f in dataclasses.fields(cls.Config)}
        types = message_option_types()
        extra = [(f.name, types[f.name], dataclasses.field(default=f.default))
                 for f in dataclasses.fields(MessageOptions) if f.name not in own]
        _CONFIG_CLASSES[cls] = dataclasses.make_dataclass(
            cls.Config.__name__, extra, bases=(cls.Config,), frozen=cls.Config.__dataclass_params__.frozen)
    return _CONFIG_CLASSES[cls]


def make(name: str, **kwargs: Any) -> Environment:
    """Build registered environment ``name`` (or JaxMARL's, ``jaxmarl:NAME``); unknown or ill-typed kwargs raise
    with the valid ones listed. The message-channel keys (``messages=V``, ``message_dim=D``, ``message_receivers``,
    ``messages_randomised``; ``jmarl.core.messages``) wrap any env in a learned channel."""
    cls = env_class(name)
    what = f"environment {name!r}"
    build(env_config_class(name), kwargs, what=what)  # every key checked, with the env's and the channel's listed
    own = {f.name for f in dataclasses.fields(cls.Config)}
    config = build(cls.Config, {k: v for k, v in kwargs.items() if k in own}, what=what)
    env = construct(cls, config, what=what)  # a value the env rejects is named
    options = build(MessageOptions, {k: v for k, v in kwargs.items() if k not in own}, what=what)
    return apply_message_options(env, options)


def env_config_fields(name: str) -> list[str]:
    """The keys of environment ``name``'s Config (what ``env.KEY=VALUE`` may set)."""
    return [f.name for f in dataclasses.fields(env_config_class(name))]
