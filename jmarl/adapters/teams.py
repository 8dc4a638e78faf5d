"""Grouping named agents into jmarl teams, shared by the JaxMARL and PettingZoo adapters (no third-party
imports: ``jmarl.adapters.pettingzoo`` works without jaxmarl).

Agents with the same name prefix ("adversary" of "adversary_0"), observation shape and action space form
one team, named by that prefix (or ``team_{k}`` where agents share no whole-word prefix).
"""
from __future__ import annotations

import os
import re
from typing import Callable, Hashable, Sequence

__all__ = ["agent_prefix", "prefix_name", "name_teams", "group_agents"]


def agent_prefix(agent: str) -> str:
    """An agent's name without its trailing separator and index: "adversary_1" -> "adversary"."""
    return re.fullmatch(r"(.*?)[\W_]*\d*", agent).group(1)


def prefix_name(agents: Sequence[str]) -> str:
    """The common prefix of ``agents`` without a trailing separator and index ("" when there is none).

    ["adversary_0", "adversary_1"] -> "adversary"; ["agent_0"] -> "agent"; ["adversary_0", "agent_0"]
    -> "" (the shared "a" is not a whole word).
    """
    name = agent_prefix(os.path.commonprefix(list(agents)))
    whole_word = all(not a[len(name):] or not a[len(name)].isalpha() for a in agents)
    return name if name and whole_word else ""


def name_teams(groups: Sequence[Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """{team: agents} for groups of agent names: each named by its agents' common prefix or ``team_{k}``."""
    teams: dict[str, tuple[str, ...]] = {}
    for k, agents in enumerate(groups):
        name = prefix_name(agents)
        teams[name if name and name not in teams else f"team_{k}"] = tuple(agents)
    return teams


def group_agents(agents: Sequence[str], key: Callable[[str], Hashable]) -> dict[str, tuple[str, ...]]:
    """{team: agents}: ``agents`` grouped by name prefix and ``key(agent)`` (observation shape, action space),
    teams in order of their first agent."""
    groups: dict[tuple, list[str]] = {}
    for agent in agents:
        groups.setdefault((agent_prefix(agent), key(agent)), []).append(agent)
    return name_teams(list(groups.values()))
