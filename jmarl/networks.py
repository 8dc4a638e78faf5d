"""Policy and value networks, each defined once: an MLP torso with an optional GRU layer.

Every network maps a sequence to a sequence so that feed-forward and recurrent policies share one code
path: ``(hidden f32[B, H], inputs f32[T, B, D], starts bool[T, B]) -> (hidden, outputs f32[T, B, ...])``.
``starts[t]`` marks inputs that begin an episode; the GRU state is zeroed *before* reading them, which is
the alignment JaxMARL #119/#169 and Mava #1006 got wrong. B may be any batch shape (e.g. envs x agents).
"""
from __future__ import annotations

import functools
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.initializers import constant, orthogonal

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}


class ResettingGRU(nn.Module):
    """A GRU scanned over time that restarts from zeros where ``starts`` is True."""

    features: int

    @functools.partial(nn.scan, variable_broadcast="params", in_axes=0, out_axes=0, split_rngs={"params": False})
    @nn.compact
    def __call__(self, hidden: jax.Array, step: tuple[jax.Array, jax.Array]):
        inputs, starts = step  # f32[B, D], bool[B]
        hidden = jnp.where(starts[..., None], jnp.zeros_like(hidden), hidden)
        hidden, out = nn.GRUCell(self.features)(hidden, inputs)
        return hidden, out


class Torso(nn.Module):
    """``num_layers`` dense layers (orthogonal init, gain sqrt 2); with ``recurrent`` the second is a GRU."""

    hidden_dim: int = 64
    num_layers: int = 2
    activation: str = "tanh"
    recurrent: bool = False

    @nn.compact
    def __call__(self, hidden, inputs, starts):
        act = ACTIVATIONS[self.activation]
        x = act(nn.Dense(self.hidden_dim, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(inputs))
        if self.recurrent:
            hidden, x = ResettingGRU(self.hidden_dim)(hidden, (x, starts))
        for _ in range(self.num_layers - 1 - int(self.recurrent)):
            x = act(nn.Dense(self.hidden_dim, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(x))
        return hidden, x


class PolicyNet(nn.Module):
    """Outputs action logits f32[T, B, A] (Discrete), or Gaussian means f32[T, B, A] (Box).

    For a Box, a state-independent ``log_std`` parameter f32[A] lives beside the weights.
    """

    num_actions: int
    kind: Literal["discrete", "gaussian"] = "discrete"
    hidden_dim: int = 64
    num_layers: int = 2
    activation: str = "tanh"
    recurrent: bool = False

    @nn.compact
    def __call__(self, hidden, inputs, starts):
        hidden, x = Torso(self.hidden_dim, self.num_layers, self.activation, self.recurrent)(hidden, inputs, starts)
        out = nn.Dense(self.num_actions, kernel_init=orthogonal(0.01), bias_init=constant(0.0))(x)
        if self.kind == "gaussian":
            log_std = self.param("log_std", constant(-0.5), (self.num_actions,))
            return hidden, (out, jnp.broadcast_to(log_std, out.shape))
        return hidden, out


class ValueNet(nn.Module):
    """Outputs state values f32[T, B]."""

    hidden_dim: int = 64
    num_layers: int = 2
    activation: str = "tanh"
    recurrent: bool = False

    @nn.compact
    def __call__(self, hidden, inputs, starts):
        hidden, x = Torso(self.hidden_dim, self.num_layers, self.activation, self.recurrent)(hidden, inputs, starts)
        return hidden, nn.Dense(1, kernel_init=orthogonal(1.0), bias_init=constant(0.0))(x)[..., 0]


def apply_per_agent(net: nn.Module, params, hidden, inputs, starts, shared: bool):
    """Apply ``net`` to team data with the agent axis kept: hidden [B, N, H], inputs [T, B, N, D],
    starts [T, B, N]. Shared parameters see agents as batch; independent ones (a leading agent axis N on
    every parameter) are vmapped over the agent axis."""
    if shared:
        return net.apply(params, hidden, inputs, starts)
    return jax.vmap(net.apply, in_axes=(0, 1, 2, 2), out_axes=(1, 2))(params, hidden, inputs, starts)
