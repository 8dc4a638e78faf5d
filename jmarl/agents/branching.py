"""Branching: restart a batch of environments from the same states K times.

A JAX environment state is a pytree of arrays, so K copies of a batch of states are one ``jnp.repeat``
per leaf: no ``clone``/``restore`` API is needed from the environment, and wrappers' state (episode
statistics, auto-reset, fixed-team opponents and their recurrent state) is branched with it. What makes
the K branches differ is their randomness only: give each branch its own key stream (``branch_keys``),
and a branch is a function of (root state, its keys), so the same keys replay it exactly.

Used by group-relative optimisation (``algos/grpo.py``: K joint rollouts from one state, each scored
against the group), and usable for search or counterfactual baselines (roll every branch with a
different action at the root).

Layout: a branched batch is *group-major*: row ``b * K + k`` is branch k of root b, so
``groups(x, K)`` (a reshape, no copy) gives ``[B, K, ...]`` and ``pick`` takes one branch per group.

Shape legend: B roots (the batch being branched), K branches per root (group size).
"""
from __future__ import annotations

from typing import TypeVar

import jax
import jax.numpy as jnp

T = TypeVar("T")


def branch(tree: T, k: int) -> T:
    """Replicate every leaf's leading batch axis ``k`` times, group-major: ``[B, ...] -> [B * k, ...]``,
    where rows ``b * k .. b * k + k - 1`` are copies of row ``b``. Works on any pytree whose leaves share
    the leading axis B: env states, TimeSteps, recurrent hidden states, raw or typed PRNG keys."""
    if k < 1:
        raise ValueError(f"branch: k={k} must be at least 1")
    return jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), tree)


def groups(tree: T, k: int) -> T:
    """View a branched batch as groups: ``[B * k, ...] -> [B, k, ...]`` (a reshape)."""
    return jax.tree.map(lambda x: x.reshape((x.shape[0] // k, k) + x.shape[1:]), tree)


def ungroup(tree: T) -> T:
    """The inverse of ``groups``: ``[B, k, ...] -> [B * k, ...]``."""
    return jax.tree.map(lambda x: x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:]), tree)


def pick(tree: T, k: int, index: jax.Array) -> T:
    """One branch of every group: ``[B * k, ...]`` and ``index`` i32[B] (each in ``[0, k)``) -> ``[B, ...]``.
    E.g. continue a running episode from one of its branches."""
    grouped = groups(tree, k)
    return jax.tree.map(lambda x: jnp.take_along_axis(x, index.reshape((-1, 1) + (1,) * (x.ndim - 2)), 1)[:, 0],
                        grouped)


def branch_keys(key: jax.Array, num_roots: int, k: int, same: bool = False) -> jax.Array:
    """One PRNG key per branch, group-major like ``branch``: ``[num_roots * k, ...key shape]``.

    ``same=False``: every branch gets its own key, so the branches of a group differ wherever anything
    random happens (sampled actions, env noise). ``same=True``: the k branches of a root share its key,
    so they replay one another exactly (common random numbers; what the exactness tests check).
    """
    if same:
        return branch(jax.random.split(key, num_roots), k)
    return jax.random.split(key, num_roots * k)
