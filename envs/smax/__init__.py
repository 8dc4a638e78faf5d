"""SMAX: a StarCraft-lite for cooperative multi-agent RL. Build it with ``jmarl.make("smax", scenario="3m")``.

- ``env.SMAX``: the environment (its ``Config``: scenario, enemy="heuristic" | "learning", ...).
- ``scenarios``: ``SCENARIOS``, ``Scenario``, ``team``, ``register_scenario``.
- ``units``: the unit-type table. ``heuristic``: the scripted policy.
- ``PolicyEnemy``: a two-team env (enemy="learning") with the enemies played by a fixed policy.
"""
from jmarl.envs.smax.env import SMAX, PolicyEnemy, SMAXState, random_policy
from jmarl.envs.smax.heuristic import heuristic_actions
from jmarl.envs.smax.scenarios import SCENARIOS, Scenario, get_scenario, register_scenario, team
from jmarl.envs.smax.units import UNIT_TYPES

__all__ = ["SCENARIOS", "SMAX", "SMAXState", "PolicyEnemy", "Scenario", "UNIT_TYPES", "get_scenario",
           "heuristic_actions", "random_policy", "register_scenario", "team"]
