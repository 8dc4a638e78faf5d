"""jmarl: GPU-vectorised multi-agent reinforcement learning in JAX."""
from jmarl.config import ConfigError
from jmarl.policy import load
from jmarl.env import Environment, Team, TimeStep, check_actions
from jmarl.registry import make, register, registered_envs
from jmarl.spaces import Box, Discrete
from jmarl.wrappers import AutoReset, EpisodeStats

__version__ = "0.1.0"

__all__ = [
    "AutoReset", "Box", "ConfigError", "Discrete", "Environment", "EpisodeStats", "Team", "TimeStep",
    "check_actions", "load", "make", "register", "registered_envs", "__version__",
]
