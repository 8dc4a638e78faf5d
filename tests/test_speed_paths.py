"""The faster paths of PPO's training compute the same math as the plain ones they replace: the dense layer's own
backward pass, the feed-forward critic's values over a whole rollout at once, the single-sort permutation, the
minibatch gradient accumulated over slices, actions sampled with noise drawn before the rollout."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.initializers import constant, orthogonal

from jmarl.agents.networks import Dense, ValueNet, apply_per_agent, chunked_grad, grad_chunks
from jmarl.agents.rollout import permutation
from jmarl.algos.ppo import CPU_CHUNK_ROWS, PPOConfig, gumbel_max, rollout_values, rows_per_pass


class _MLP(nn.Module):
    dense: type

    @nn.compact
    def __call__(self, x):
        x = nn.tanh(self.dense(8, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(x))
        return self.dense(3, kernel_init=orthogonal(0.01), bias_init=constant(0.0))(x)


def test_dense_matches_flax_dense_in_parameters_and_gradients():
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 5, 3, 7))  # [T, B, N, D]: any leading axes
    mine, flax_ = _MLP(Dense), _MLP(nn.Dense)
    p, q = (jax.jit(m.init)(jax.random.PRNGKey(0), x) for m in (mine, flax_))
    assert jax.tree.structure(p) == jax.tree.structure(q)  # same names: checkpoints load either way
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool((a == b).all()), p, q)))

    def close(a, b):
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6)

    grads = lambda m: jax.jit(jax.grad(lambda p, x: jnp.sin(m.apply(p, x)).sum(), (0, 1)))  # noqa: E731
    close(grads(mine)(p, x), grads(flax_)(q, x))
    # Independent parameters per agent (vmapped over a parameter axis, as apply_per_agent does).
    keys = jax.random.split(jax.random.PRNGKey(2), 3)
    pv, qv = (jax.jit(jax.vmap(lambda k, m=m: m.init(k, x[:, :, 0])))(keys) for m in (mine, flax_))
    per_agent = lambda m: jax.jit(jax.grad(  # noqa: E731
        lambda p: jnp.sin(jax.vmap(m.apply, in_axes=(0, 2))(p, x)).sum()))
    close(per_agent(mine)(pv), per_agent(flax_)(qv))


def test_rollout_values_equal_per_step_values():
    """V(obs) and V(final obs) from passes over slices of the rollout equal the critic applied step by step (the
    values the rollout used to compute inside its loop), for shared and independent parameters, with and without a
    vmap over runs: the final observations valued only in slices that end an episode (or the rollout), the next
    step's value elsewhere."""
    T, B, N, D = 7, 3, 2, 6
    critic = ValueNet(hidden_dim=16, num_layers=2)
    k_in, k_final, k_init = jax.random.split(jax.random.PRNGKey(0), 3)
    cin = jax.random.normal(k_in, (T, B, N, D))
    done = np.zeros((T, B), bool)
    done[1, 0] = done[5, :] = True  # env 0 ends at step 1; every env at step 5; the rollout ends at step 6
    ended = done | (np.arange(T) == T - 1)[:, None]
    # The final observation is the next one except where an episode (or the rollout) ended: there a pre-reset one.
    final_in = jnp.where(ended[..., None, None], jax.random.normal(k_final, (T, B, N, D)),
                         jnp.concatenate([cin[1:], cin[-1:]]))
    h, starts = jnp.zeros((1, 1)), jnp.zeros((1, 1), bool)
    for shared in (True, False):
        init = lambda k: critic.init(k, h, jnp.zeros((1, 1, D)), starts)  # noqa: E731
        params = jax.jit(init if shared else lambda k: jax.vmap(init)(jax.random.split(k, N)))(k_init)
        # The critic step by step, as inside the rollout's loop: one [B, N] step at a time.
        step = jax.jit(jax.vmap(lambda x: apply_per_agent(critic, params, jnp.zeros((B, N, 1)), x[None],
                                                          jnp.zeros((1, B, N), bool), shared)[1][0]))
        # one pass; a step per slice (2 and 3 skip slices without an end); 3 (a remainder); all
        for chunk_rows in (0, B * N, 2 * B * N, 3 * B * N, 512):
            run = jax.jit(rollout_values, static_argnums=(0, 5, 6))
            value, next_value = run(critic, params, cin, final_in, done, shared, chunk_rows)
            assert value.shape == next_value.shape == (T, B, N)
            np.testing.assert_allclose(value, step(cin), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(next_value, step(final_in), rtol=1e-5, atol=1e-6)
            assert not np.allclose(value, next_value)  # not the same inputs
            # Two runs side by side (the slice tests become selects): the same values for each.
            runs = jax.jit(jax.vmap(rollout_values, in_axes=(None, None, 0, 0, 0, None, None)),
                           static_argnums=(0, 5, 6))
            both = runs(critic, params, jnp.stack([cin, cin]), jnp.stack([final_in, final_in]),
                        np.stack([done, np.zeros_like(done)]), shared, chunk_rows)
            np.testing.assert_allclose(both[1][0], next_value, rtol=1e-6, atol=1e-7)
            # Without the episode ends, the second run bootstraps from the next step's value there.
            np.testing.assert_allclose(both[1][1][:-1], value[1:], rtol=1e-6, atol=1e-7)


def test_permutation_is_a_random_permutation():
    for n in (1, 5, 25_600):
        perm = np.asarray(jax.jit(permutation, static_argnums=1)(jax.random.PRNGKey(n), n))
        assert perm.dtype == np.int32 and np.array_equal(np.sort(perm), np.arange(n))
    draws = np.asarray(jax.jit(jax.vmap(lambda k: permutation(k, 2048)))(jax.random.split(jax.random.PRNGKey(0), 2)))
    assert (draws[0] != draws[1]).mean() > 0.99 and (draws[0] != np.arange(2048)).mean() > 0.99
    # Every element lands at every position about equally often (4 elements, 2000 draws: 500 expected per cell).
    counts = np.zeros((4, 4))
    draws = jax.jit(jax.vmap(lambda k: permutation(k, 4)))(jax.random.split(jax.random.PRNGKey(1), 2000))
    for perm in np.asarray(draws):
        counts[np.arange(4), perm] += 1
    assert counts.min() > 420 and counts.max() < 580


def test_chunked_grad_equals_the_whole_minibatch_gradient():
    """A per-sample-mean loss over data [T, B, ...] with initial state [B, ...]: the mean of the slices' gradients and
    statistics is the whole batch's (float summation order aside)."""
    T, B, D = 2, 12, 5
    mlp = _MLP(Dense)
    k_x, k_y, k_h, k_p = jax.random.split(jax.random.PRNGKey(3), 4)
    data = (jax.random.normal(k_x, (T, B, D)), jax.random.normal(k_y, (T, B, 3)))
    h0 = jax.random.normal(k_h, (B, 3))
    params = mlp.init(k_p, data[0])

    def loss(p, h, d):  # every term a mean over samples; h enters per sample as a recurrent state would
        x, y = d
        err = jnp.square(mlp.apply(p, x) + h[None] - y)
        return err.mean(), {"err": err.mean(), "max": err.max()}

    whole, whole_stats = jax.grad(loss, has_aux=True)(params, h0, data)
    for chunks in (1, 2, 3, 4, 12):
        grads, stats = jax.jit(chunked_grad, static_argnums=(0, 4))(loss, params, h0, data, chunks)
        for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(whole)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(stats["err"], whole_stats["err"], rtol=1e-6)
    # A statistic that is not a per-sample mean is averaged over slices, not recomputed: why the docstring asks
    # for per-sample means (PPO normalises advantages over the minibatch before slicing).
    assert not np.isclose(float(chunked_grad(loss, params, h0, data, 4)[1]["max"]), float(whole_stats["max"]))


def test_grad_chunks_keeps_slices_within_the_row_budget():
    assert grad_chunks(512, 3, 512) == 4  # 1536 rows -> 4 slices of 384
    assert grad_chunks(6400, 3, 512) == 40  # 19200 rows -> 40 slices of 480
    assert grad_chunks(100, 3, 512) == 1  # fits already
    assert grad_chunks(512, 3, 0) == 1  # 0: never sliced
    assert grad_chunks(509, 3, 512) == 1  # prime: slices of 3 rows would cost more than they save
    for batch, rows, budget in ((2048, 5, 512), (96, 7, 100), (1000, 1, 64)):
        c = grad_chunks(batch, rows, budget)
        assert batch % c == 0 and batch // c * rows <= budget  # within budget, and the fewest such slices:
        assert all(batch % d or batch // d * rows > budget for d in range(1, c))


def test_gumbel_max_samples_the_masked_softmax():
    """PPO's rollout samples actions with Gumbel noise drawn for all its steps at once: the frequencies are the
    policy's probabilities over the available actions, and a masked action is never drawn."""
    logits = jnp.array([1.0, 0.0, -1.0, 2.0, 0.5])
    avail = jnp.array([True, True, True, False, True])
    n = 200_000
    noise = jax.random.gumbel(jax.random.PRNGKey(0), (n, 5))
    actions = jax.jit(gumbel_max)(jnp.broadcast_to(logits, (n, 5)), jnp.broadcast_to(avail, (n, 5)), noise)
    freq = np.bincount(np.asarray(actions), minlength=5) / n
    probs = np.asarray(jax.nn.softmax(jnp.where(avail, logits, -1e9)))
    assert freq[3] == 0.0
    np.testing.assert_allclose(freq, probs, atol=4 * np.sqrt(0.25 / n))  # 4 standard errors at most


def test_chunk_rows_default_is_the_backends():
    """None (the default): cache-sized slices on a CPU, one pass on an accelerator, where slices would run one after
    another; a value set is kept on every backend."""
    assert PPOConfig().chunk_rows is None
    assert rows_per_pass(PPOConfig(), "cpu") == CPU_CHUNK_ROWS
    assert rows_per_pass(PPOConfig(), "gpu") == 0 == rows_per_pass(PPOConfig(), "tpu")
    assert rows_per_pass(PPOConfig(chunk_rows=0), "cpu") == 0 and rows_per_pass(PPOConfig(chunk_rows=64), "gpu") == 64
