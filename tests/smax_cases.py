"""Shared by the SMAX tests: a standard env and an env whose enemies a fixed-team wrapper plays, stepped side by
side with the same random ally actions and keys."""
from __future__ import annotations

import jax

import jmarl


def play_beside(plain, fixed, key: jax.Array, steps: int, episodes: int = 4) -> dict:
    """Step ``plain`` (a SMAX env) and ``fixed`` (a ``with_fixed_teams`` wrapper of one, enemies fixed) from the
    same resets with the same uniform-random valid ally actions, for ``steps`` steps of ``episodes`` episodes
    (no auto-reset). The fixed-team wrapper splits its step key (env key first), so ``plain`` is handed that
    env key. Returns arrays [episodes, steps, ...]: both sides' ally observations, rewards and dones, the
    enemies' last actions as ``plain`` keeps them, as ``fixed``'s env keeps them (``env_state.last_action``),
    and as the wrapper chose them (``info["fixed_actions"]``)."""
    n = plain.num_allies

    def episode(key):
        k_reset, k_run = jax.random.split(key)
        (ts_p, s_p), (ts_f, s_f) = plain.reset(k_reset), fixed.reset(k_reset)

        def step(carry, k):
            ts_p, s_p, ts_f, s_f = carry
            k_act, k_step = jax.random.split(k)
            avail = ts_p.avail_actions["allies"]
            allies = {"allies": jmarl.Discrete(avail.shape[-1]).sample(k_act, avail.shape[:-1], avail)}
            ts_p, s_p = plain.step(jax.random.split(k_step)[0], s_p, allies)  # the wrapper's env key
            ts_f, s_f = fixed.step(k_step, s_f, allies)
            return (ts_p, s_p, ts_f, s_f), {
                "obs_plain": ts_p.obs["allies"], "obs_fixed": ts_f.obs["allies"],
                "reward_plain": ts_p.reward["allies"], "reward_fixed": ts_f.reward["allies"],
                "done_plain": ts_p.done, "done_fixed": ts_f.done, "enemy_plain": s_p.last_action[n:],
                "enemy_fixed_state": s_f.env_state.last_action[n:],
                "enemy_fixed_chosen": ts_f.info["fixed_actions"]["enemies"]}

        return jax.lax.scan(step, (ts_p, s_p, ts_f, s_f), jax.random.split(k_run, steps))[1]

    # Small compiles: the suite's tests trade XLA's optimisation for compile time.
    return jax.jit(jax.vmap(episode), compiler_options={"xla_backend_optimization_level": 0})(
        jax.random.split(key, episodes))
