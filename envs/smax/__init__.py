"""SMAX: a StarCraft-lite for cooperative multi-agent RL. Build it with ``jmarl.make("smax", scenario="3m")``.

- ``env.SMAX``: the environment (its ``Config``: scenario, enemy="heuristic" | "learning", ...).
- ``scenarios``: ``SCENARIOS``, ``Scenario``, ``team``, ``register_scenario``.
- ``units``: the unit-type table. ``heuristic``: the scripted policy. ``scene``: how ``jmarl render`` draws it.

``enemy="heuristic"`` (the default) plays the scripted enemy inside the step: the fast path. Any other enemy
is an opponent like any other (``jmarl.agents.opponents``) on the two-team env ``enemy="learning"``:
``with_fixed_teams(jmarl.make("smax", enemy="learning"), ["enemies"], "random")``, or ``"heuristic"``, a run
directory, or an ``Opponent`` of your own.
"""
from jmarl.envs.smax.env import SMAX, SMAXState
from jmarl.envs.smax.heuristic import heuristic_actions
from jmarl.envs.smax.scenarios import SCENARIOS, Scenario, get_scenario, register_scenario, team
from jmarl.envs.smax.units import UNIT_TYPES

__all__ = ["SCENARIOS", "SMAX", "SMAXState", "Scenario", "UNIT_TYPES", "get_scenario", "heuristic_actions",
           "register_scenario", "team"]


def __getattr__(name: str):
    # Names that moved to the one home of opponents: say where (ImportError, so that ``from jmarl.envs.smax
    # import PolicyEnemy`` shows the message).
    from jmarl.envs.smax import env

    if name in env._REMOVED:
        raise ImportError(env._REMOVED[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
