"""jmarl: GPU-vectorised multi-agent reinforcement learning in JAX.

The kernel is split by role, imports flowing one way (``core <- agents <- train <- tools``):

- ``jmarl.core``: the environment API, spaces, registry (``make``), wrappers, typed config
- ``jmarl.agents``: networks, rollout and evaluation, opponents, branching env states
- ``jmarl.train``: the algorithm contract and registry, the chunked run, checkpoints, metrics, ``load``
- ``jmarl.tools``: the ``jmarl`` command, render, reproduce
- ``jmarl.adapters``: JaxMARL (both ways)

``import jmarl`` loads only ``core``; the training run (and orbax, wandb, matplotlib) load on first use.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

from jmarl.core.config import ConfigError
from jmarl.core.env import Environment, Team, TimeStep, check_actions
from jmarl.core.registry import make, register, registered_envs
from jmarl.core.spaces import Box, Discrete
from jmarl.core.wrappers import AutoReset, EpisodeStats

__version__ = "0.1.0"

# Public names that live above core: imported when first used.
_LAZY = {
    "load": "jmarl.train.load",
    "Policy": "jmarl.train.load",
    "register_algorithm": "jmarl.train.algorithms",
    "registered_algorithms": "jmarl.train.algorithms",
    "register_opponent": "jmarl.agents.opponents",
    "branch": "jmarl.agents.branching",
}

__all__ = [
    "AutoReset", "Box", "ConfigError", "Discrete", "Environment", "EpisodeStats", "Team", "TimeStep",
    "check_actions", "make", "register", "registered_envs", "__version__", *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'jmarl' has no attribute {name!r}")


# Modules that moved when the kernel was split by role: the old import paths keep working (they are the
# same module objects as the new ones).
MOVED = {
    "jmarl.env": "jmarl.core.env", "jmarl.spaces": "jmarl.core.spaces", "jmarl.registry": "jmarl.core.registry",
    "jmarl.wrappers": "jmarl.core.wrappers", "jmarl.config": "jmarl.core.config",
    "jmarl.networks": "jmarl.agents.networks", "jmarl.rollout": "jmarl.agents.rollout",
    "jmarl.opponents": "jmarl.agents.opponents", "jmarl.algorithms": "jmarl.train.algorithms",
    "jmarl.run": "jmarl.train.run", "jmarl.checkpoint": "jmarl.train.checkpoint", "jmarl.stats": "jmarl.train.stats",
    "jmarl.plots": "jmarl.train.plots", "jmarl.policy": "jmarl.train.load", "jmarl.cli": "jmarl.tools.cli",
    "jmarl.render": "jmarl.tools.render", "jmarl.reproduce": "jmarl.tools.reproduce",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        module = importlib.import_module(MOVED[spec.name])
        self._spec = module.__spec__  # the import system writes the alias's spec onto the module: put it back
        return module

    def exec_module(self, module):
        module.__spec__ = self._spec


sys.meta_path.append(_MovedModules())
