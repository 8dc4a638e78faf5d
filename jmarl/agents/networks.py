"""Policy and value networks, each defined once: an MLP torso with an optional GRU layer.

Every network maps a sequence to a sequence so that feed-forward and recurrent policies share one code
path: ``(hidden f32[B, H], inputs f32[T, B, D], starts bool[T, B]) -> (hidden, outputs f32[T, B, ...])``.
``starts[t]`` marks inputs that begin an episode; the GRU state is zeroed *before* reading them, which is
the alignment JaxMARL #119/#169 and Mava #1006 got wrong. B may be any batch shape (e.g. envs x agents).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.linen.initializers import constant, orthogonal

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}


@jax.custom_vjp
def dense(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """``x @ kernel + bias``: f32[..., D], f32[D, F], f32[F] -> f32[..., F] (flax's ``nn.Dense``, same math).

    Its own backward pass for one reason, measured on XLA:CPU (jax 0.10): autodiff's weight gradient
    ``x^T @ dy`` contracts the batch axis of ``x`` where it lies, and XLA:CPU computes that dot about twice as slowly
    as the same dot with ``x^T`` laid out first; a PPO minibatch step (2x64 MLPs, 1536 samples) spends most of its
    time in these dots. The optimisation barrier keeps XLA from folding the transpose back into the dot (on a CPU
    only: a GPU's matmul takes transposed operands as they are).
    """
    return x @ kernel + bias


def _dense_fwd(x, kernel, bias):
    return x @ kernel + bias, (x, kernel)


def _dense_bwd(res, dy):
    x, kernel = res
    x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])  # [B, D], [B, F] over all leading axes
    # CPU: x^T (f32[D, B]) laid out before the dot; elsewhere (GPU, TPU) the dot takes x as it is.
    dkernel = jax.lax.platform_dependent(x2, dy2, cpu=lambda a, b: jax.lax.optimization_barrier(a.T) @ b,
                                         default=lambda a, b: a.T @ b)
    return dy @ kernel.T, dkernel, dy2.sum(0)


dense.defvjp(_dense_fwd, _dense_bwd)


class Dense(nn.Module):
    """A dense layer computed by ``dense``; parameters named, shaped and initialised as flax's ``nn.Dense`` (same
    module name, so parameter trees and checkpoints are those of ``nn.Dense``)."""

    features: int
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        return dense(x, kernel, bias)


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
        x = act(Dense(self.hidden_dim, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(inputs))
        if self.recurrent:
            hidden, x = ResettingGRU(self.hidden_dim)(hidden, (x, starts))
        for _ in range(self.num_layers - 1 - int(self.recurrent)):
            x = act(Dense(self.hidden_dim, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(x))
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
        out = Dense(self.num_actions, kernel_init=orthogonal(0.01), bias_init=constant(0.0))(x)
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
        return hidden, Dense(1, kernel_init=orthogonal(1.0), bias_init=constant(0.0))(x)[..., 0]


def flatten_obs(obs: jax.Array, obs_shape: tuple[int, ...]) -> jax.Array:
    """f32[..., N, *obs_shape] -> f32[..., N, O]: what an MLP or GRU torso takes."""
    return obs.reshape(obs.shape[:obs.ndim - len(obs_shape)] + (-1,))


def td_target(reward: jax.Array, terminated: jax.Array, next_value: jax.Array, gamma: jax.Array) -> jax.Array:
    """r + gamma * V(next): ``next_value`` is computed on the final observation, so a truncated episode is
    bootstrapped; a terminated one is not (there is no next state inside the MDP)."""
    return reward + gamma * (1.0 - terminated.astype(jnp.float32)) * next_value


def with_agent_ids(x: jax.Array) -> jax.Array:
    """Append a one-hot agent id: f32[..., N, D] -> f32[..., N, D + N] (agent i gets e_i)."""
    n = x.shape[-2]
    return jnp.concatenate([x, jnp.broadcast_to(jnp.eye(n, dtype=x.dtype), x.shape[:-1] + (n,))], axis=-1)


def apply_per_agent(net: nn.Module, params: Any, hidden: jax.Array, inputs: jax.Array, starts: jax.Array,
                    shared: bool) -> tuple[jax.Array, Any]:
    """Apply ``net`` to team data with the agent axis kept: hidden [B, N, H], inputs [T, B, N, D],
    starts [T, B, N]. Shared parameters see agents as batch; independent ones (a leading agent axis N on
    every parameter) are vmapped over the agent axis."""
    if shared:
        return net.apply(params, hidden, inputs, starts)
    return jax.vmap(net.apply, in_axes=(0, 1, 2, 2), out_axes=(1, 2))(params, hidden, inputs, starts)


class QNet(nn.Module):
    """Action values f32[T, B, A]: the agent network of IQL, VDN and QMIX (a Torso and a linear head).

    ``layer_norm`` normalises the torso's features before the head (PQN trains without a target network
    and relies on normalisation for stability).
    """

    num_actions: int
    hidden_dim: int = 64
    num_layers: int = 2
    activation: str = "relu"
    recurrent: bool = True
    layer_norm: bool = False

    @nn.compact
    def __call__(self, hidden, inputs, starts):
        hidden, x = Torso(self.hidden_dim, self.num_layers, self.activation, self.recurrent)(hidden, inputs, starts)
        if self.layer_norm:
            x = nn.LayerNorm()(x)
        return hidden, Dense(self.num_actions, kernel_init=orthogonal(1.0), bias_init=constant(0.0))(x)


class QMixer(nn.Module):
    """QMIX's monotonic mixing network (Rashid et al. 2018): ``qs f32[..., N], state f32[..., G] -> f32[...]``.

    Q_tot = elu(qs @ |W1(s)| + b1(s)) @ |w2(s)| + V(s), where W1, b1, w2 and V are (hyper)networks of the
    global state s. The absolute values and the increasing elu make dQ_tot/dq_i >= 0 for every agent i,
    so the greedy joint action is the tuple of each agent's greedy action.
    """

    embed_dim: int = 32
    hypernet_dim: int = 64

    @nn.compact
    def __call__(self, qs: jax.Array, state: jax.Array) -> jax.Array:
        n = qs.shape[-1]
        dense = lambda features: nn.Dense(features, kernel_init=orthogonal(1.0), bias_init=constant(0.0))
        w1 = jnp.abs(dense(n * self.embed_dim)(nn.relu(dense(self.hypernet_dim)(state))))
        w1 = w1.reshape(state.shape[:-1] + (n, self.embed_dim))
        b1 = dense(self.embed_dim)(state)
        w2 = jnp.abs(dense(self.embed_dim)(nn.relu(dense(self.hypernet_dim)(state))))
        v = dense(1)(nn.relu(dense(self.embed_dim)(state)))[..., 0]
        hidden = nn.elu(jnp.einsum("...n,...ne->...e", qs, w1) + b1)
        return jnp.einsum("...e,...e->...", hidden, w2) + v


def sequential_under_vmap(fn: Callable) -> Callable:
    """Wrap a parameter initialiser so that, when vmapped (a population), it runs once per member with
    ``lax.map`` instead of batched; unvmapped it is ``fn`` itself.

    Why: a vmapped orthogonal initialiser becomes a batched LAPACK QR on CPU, and jaxlib's batched QR
    kernel waits on XLA's intra-op thread pool from inside that pool; when two such kernels run at once
    on a 2-thread pool (a 2-core machine) each waits for the other forever (jaxlib 0.10: ``jit(vmap(init))``
    of a GRU network with 2+ seeds hangs, every thread idle). Initialisation runs once, so the sequential
    loop costs nothing that matters. ``fn`` must not close over traced values; map an inner axis with
    ``lax.map`` (not ``vmap``) so that an outer vmap still reaches this rule.
    """

    @jax.custom_batching.custom_vmap
    def wrapped(*args):
        return fn(*args)

    @wrapped.def_vmap
    def rule(axis_size, in_batched, *args):
        args = jax.tree.map(lambda x, b: x if b else jnp.broadcast_to(x, (axis_size,) + jnp.shape(x)),
                            args, tuple(in_batched))
        out = jax.lax.map(lambda a: fn(*a), args)
        return out, jax.tree.map(lambda _: True, out)

    return wrapped


class DeterministicActor(nn.Module):
    """MADDPG's actor, feed-forward: actions f32[T, B, A] squashed into ``[low, high]`` by a tanh (Box), or
    action logits f32[T, B, A] for the Gumbel-softmax relaxation (``low = high = None``: Discrete).

    The critic that scores it is a ``ValueNet`` on the concatenated observations and actions (Q(x, a)).
    The small head init starts Box actions at the middle of the box.
    """

    num_actions: int
    low: float | None = None
    high: float | None = None
    hidden_dim: int = 64
    num_layers: int = 2
    activation: str = "relu"

    @nn.compact
    def __call__(self, hidden, inputs, starts):
        hidden, x = Torso(self.hidden_dim, self.num_layers, self.activation)(hidden, inputs, starts)
        out = Dense(self.num_actions, kernel_init=orthogonal(0.01), bias_init=constant(0.0))(x)
        if self.low is None:
            return hidden, out
        return hidden, self.low + 0.5 * (jnp.tanh(out) + 1.0) * (self.high - self.low)


def clipped_adam(max_grad_norm: jax.Array, eps: float = 1e-5) -> optax.GradientTransformation:
    """Adam direction after global-norm clipping (not element-wise), *without* a learning rate: the
    traced (swept, annealed) rate is applied by ``descend``, so one optimiser state serves any rate."""
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.scale_by_adam(eps=eps))


def chunked_grad(loss_fn: Callable, params: Any, h0: Any, data: Any, num_chunks: int) -> tuple[Any, Any]:
    """``jax.grad(loss_fn, has_aux=True)(params, h0, data)`` for a loss that is a mean over the batch axis (axis 1
    of every ``data`` leaf [T, B, ...], axis 0 of every ``h0`` leaf [B, ...]), computed as the mean of the
    gradients (and statistics) of ``num_chunks`` equal slices of that axis, accumulated in a scan. Same math
    (exactly so for a loss whose every term is a per-sample mean; anything normalised over the batch must be
    computed before); smaller passes: XLA:CPU computes the gradient of a 2x64 MLP on a few hundred rows faster per
    row than on thousands, whose activations spill the caches. Returns (grads, stats)."""
    grad = jax.grad(loss_fn, has_aux=True)
    if num_chunks == 1:
        return grad(params, h0, data)
    B = jax.tree.leaves(data)[0].shape[1]
    split = lambda x, axis: jnp.moveaxis(x.reshape(x.shape[:axis] + (num_chunks, B // num_chunks) + x.shape[axis + 1:]),
                                         axis, 0)
    chunks = (jax.tree.map(lambda h: split(h, 0), h0), jax.tree.map(lambda x: split(x, 1), data))

    def accumulate(total, chunk):
        g = grad(params, *chunk)
        return jax.tree.map(jnp.add, total, g), None

    zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype),
                         jax.eval_shape(grad, params, *jax.tree.map(lambda x: x[0], chunks)))
    total, _ = jax.lax.scan(accumulate, zeros, chunks)
    return jax.tree.map(lambda x: x / num_chunks, total)


def grad_chunks(batch: int, rows_per_item: int, max_rows: int) -> int:
    """How many equal slices of a batch axis of ``batch`` items (``rows_per_item`` network rows each, e.g. agents)
    ``chunked_grad`` takes: the fewest that keep every slice at most ``max_rows`` rows. 1 (no slicing) with
    ``max_rows`` 0, when the batch already fits, or when no divisor of ``batch`` leaves slices of at least a
    quarter of ``max_rows`` (e.g. a prime batch: slivers would cost more than they save)."""
    if max_rows <= 0 or batch * rows_per_item <= max_rows:
        return 1
    c = next((c for c in range(2, batch + 1) if batch % c == 0 and batch // c * rows_per_item <= max_rows), batch)
    return c if batch // c * rows_per_item * 4 >= max_rows else 1


def descend(tx: optax.GradientTransformation, lr: jax.Array, params: Any, opt_state: Any, grads: Any
            ) -> tuple[Any, Any]:
    """One step of ``tx`` (e.g. ``clipped_adam``) scaled by ``lr``: returns (params, opt_state)."""
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, jax.tree.map(lambda u: -lr * u, updates)), opt_state
