"""Group-relative policy optimisation (GRPO; multi-agent MAGRPO, arXiv 2508.04652): no critic, one program.

From each of E starting points ("roots") K joint rollouts ("branches") are played with different random
keys for ``horizon`` steps; each branch is scored by its team return (from the root, discounted by
``gamma``, stopped at the end of the root's episode, never bootstrapped) minus a baseline computed from
its own group: the group mean (``advantage="mean"``), the mean with the group's standard deviation as
the scale (``"mean_std"``), the group maximum (``"max"``: only the best branch is not pushed down) or
the mean of the *other* K-1 branches (``"leave_one_out"``). Every step of a branch carries its branch's
advantage; each team's policy is updated with PPO's clipped ratio, an optional KL penalty to the
rollout policy and an entropy bonus, over epochs x minibatches. There is no value network: the group
is the baseline, which is why it needs an environment that restarts from one state K times. A JAX env
state is a pytree, so K branches are ``jmarl.agents.branching.branch`` (one ``jnp.repeat`` per leaf);
recurrent policies branch their hidden state with it.

Roots (``branch_at``):

- ``"start"``: fresh episode starts, new ones every update. Right when a whole episode fits in the
  horizon (MPE: 25 steps).
- ``"running"``: states along running episodes, for episodes longer than the horizon. The roots are a
  persistent batch of E envs (the "spine"); after an update's groups are played, each spine env carries
  on from branch 0 of its group (the K branches are exchangeable, so branch 0 is an on-policy
  continuation like any other), then takes ``num_steps`` more policy steps that are not trained on, so
  successive roots are ``horizon + num_steps`` steps apart along an on-policy trajectory. At init each
  spine env is moved a uniform random number of steps into its episode (``spread``), so roots cover
  every point of an episode even where that spacing divides a fixed episode length.

Env steps an update consumes: ``batch_size = num_envs x (group_size x horizon + num_steps)``: every
step of every branch, including the steps a branch plays after its root's episode ended (they carry
no return and are masked out of the loss, but they were simulated), so equal-env-step comparisons with
PPO are honest.

``make_train(config, env)`` returns a ``Trainer`` of pure functions with ``algos/ppo.py``'s contract:
``trainer.train(key, hparams)`` runs the whole run as nested ``lax.scan``s, ``trainer.run_chunk`` is the
same program cut into chunks; ``GRPOHparams`` is a pytree of traced scalars, so seeds x hyperparameters
is ``jax.vmap(trainer.train)``.

Shape legend: E roots (groups), K branches per root (group size), B = E x K branches (group-major:
branch k of root e is row e x K + k), H horizon (steps of a branch), N agents in a team, O observation,
A actions, R recurrent hidden size, U updates in a chunk.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import distrax
import jax
import jax.numpy as jnp
from flax import struct

from jmarl.core.config import ConfigError, check_positive
from jmarl.core.env import Environment, TimeStep
from jmarl.agents.branching import branch, branch_keys, groups, pick, ungroup
from jmarl.agents.networks import (PolicyNet, apply_per_agent, clipped_adam, descend, flatten_obs, sequential_under_vmap,
                                   with_agent_ids)
from jmarl.agents.opponents import with_fixed_teams
from jmarl.agents.rollout import chunked_run, episode_metrics, evaluate_episodes, minibatches, step_stats
from jmarl.core.spaces import Box
from jmarl.core.wrappers import AutoReset, EpisodeStats
from jmarl.train.contract import RunConfig, Trainer

AdvantageMode = Literal["mean", "mean_std", "max", "leave_one_out"]


# ----------------------------------------------------------------------------------------------------
# Configuration: static values fix shapes; hyperparameters are traced pytree leaves.
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GRPOConfig(RunConfig):
    """Static configuration: changing any of these changes the compiled program. With ``RunConfig``'s shared
    fields (num_evals, eval_episodes, fixed_teams, fixed_policy; jmarl/train/contract.py)."""

    num_envs: int = 16  # E: roots, i.e. groups per update
    group_size: int = 8  # K: branches per root
    horizon: int = 25  # H: steps each branch plays (the return is cut there, not bootstrapped)
    branch_at: Literal["start", "running"] = "start"  # roots: fresh episode starts, or running episodes
    num_steps: int = 0  # extra untrained policy steps the spine takes between roots ("running" only)
    total_timesteps: int = 1_000_000
    advantage: AdvantageMode = "mean_std"  # the group baseline (and scale)
    num_epochs: int = 4
    num_minibatches: int = 4
    hidden_dim: int = 64
    num_layers: int = 2
    activation: Literal["tanh", "relu"] = "tanh"
    recurrent: bool = False
    shared_params: bool = True
    agent_ids: bool = True  # one-hot agent ids in the actor's input
    anneal_lr: bool = True
    eval_greedy: bool = True

    # Sizes that must be at least 1 (RunConfig checks them): num_steps may be 0 here (no steps between roots).
    SCHEDULE_SIZES = ("num_envs", "group_size", "horizon", "total_timesteps", "num_evals", "eval_episodes")

    def check_schedule(self, what: str = "grpo") -> None:
        """RunConfig's checks (sizes, budget) with the budget stated in GRPO's terms."""
        if self.total_timesteps < self.batch_size:
            raise ConfigError(f"{what}: total_timesteps={self.total_timesteps} is less than one update's env steps "
                              f"(num_envs x (group_size x horizon + num_steps) = {self.batch_size}); valid: "
                              f"total_timesteps >= {self.batch_size}")
        super().check_schedule(what)

    @property
    def batch_size(self) -> int:
        """Env steps per update: every branch step (E x K x H) plus the spine's advancing steps (E x num_steps)."""
        return self.num_envs * (self.group_size * self.horizon + self.num_steps)


@struct.dataclass
class GRPOHparams:
    """Traced hyperparameters: vmap over a batch of these to sweep them in one program."""

    lr: float = 1e-3
    gamma: float = 1.0  # discount of the branch return from its root
    clip_eps: float = 0.2
    kl_coef: float = 0.0  # weight of KL(rollout policy || policy), estimated on the sampled actions
    ent_coef: float = 0.01
    max_grad_norm: float = 0.5


# Valid ranges of the traced hyperparameters: jmarl.train.run checks every population member's on the host
# before anything compiles.
HPARAM_RANGES = {"lr": "(0, inf)", "gamma": "(0, 1]", "clip_eps": "[0, inf)", "kl_coef": "[0, inf)",
                 "ent_coef": "[0, inf)", "max_grad_norm": "(0, inf)"}


def validate(config: GRPOConfig, env: Environment) -> None:
    """Raise ConfigError, before anything compiles, for a config that cannot work on ``env``."""
    if config.group_size < 2:
        raise ConfigError(f"group_size={config.group_size}: a group needs at least 2 branches (with one, every "
                          f"advantage is zero)")
    if config.num_steps < 0:
        raise ConfigError(f"grpo: num_steps={config.num_steps} must be at least 0 (steps between roots)")
    if config.branch_at == "start" and config.num_steps:
        raise ConfigError(f"num_steps={config.num_steps} advances running episodes between roots; with "
                          f"branch_at='start' every root is a fresh episode: set num_steps=0 or branch_at=running")
    if config.branch_at == "start" and config.horizon > env.max_steps:
        raise ConfigError(f"horizon={config.horizon} is longer than {env.name}'s episodes (max_steps="
                          f"{env.max_steps}); with branch_at='start' the extra steps are simulated and thrown "
                          f"away: use horizon<={env.max_steps}")
    config.check_schedule("grpo")
    check_positive(config, ("num_epochs", "num_minibatches", "hidden_dim", "num_layers"), "grpo")
    # Feed-forward minibatches split branches x steps; recurrent ones split branches (whole sequences).
    branches = config.num_envs * config.group_size
    split, what = ((branches, f"num_envs x group_size = {branches}") if config.recurrent else
                   (branches * config.horizon, f"num_envs x group_size x horizon = {branches * config.horizon}"))
    if split % config.num_minibatches:
        valid = [d for d in range(1, min(split, 64) + 1) if split % d == 0]
        raise ConfigError(f"num_minibatches={config.num_minibatches} does not divide {what}; "
                          f"valid num_minibatches include: {valid}")


# ----------------------------------------------------------------------------------------------------
# Typed state
# ----------------------------------------------------------------------------------------------------
class Branches(NamedTuple):
    """A batch of envs being played, each with its own RNG stream (roots [E] or branches [B])."""

    env_state: Any  # batched
    timestep: TimeStep  # batched: the latest one
    starts: jax.Array  # bool[batch]: timestep.obs begins an episode
    hidden: dict  # {team: f32[batch, N, R]} (R = 1 for feed-forward networks: unused)
    keys: jax.Array  # [batch, 2]: one key stream per env, so a branch is a function of (root, its keys)


class RunnerState(NamedTuple):
    params: dict  # {team: {"actor": ...}} for learning teams
    opt_state: dict  # {team: optax state}
    env_state: Any  # batched [E]: the spine, where the next roots come from (branch_at="running")
    timestep: TimeStep  # batched [E]
    starts: jax.Array  # bool[E]
    hidden: dict  # {team: f32[E, N, R]}
    key: jax.Array
    update: jax.Array  # i32[]: updates done so far


class Transition(NamedTuple):
    """One branch step of one team (leading axes [H, B] once stacked)."""

    obs: jax.Array  # f32[B, N, O]: the actor's input
    starts: jax.Array  # bool[B, N]
    avail: jax.Array  # bool[B, N, A]
    action: jax.Array  # i32[B, N] or f32[B, N, A]
    log_prob: jax.Array  # f32[B, N]: under the rollout policy
    reward: jax.Array  # f32[B, N]
    alive: jax.Array  # bool[B, N]: the step is inside the root's episode (before the branch's first done)


# ----------------------------------------------------------------------------------------------------
# Group-relative advantages
# ----------------------------------------------------------------------------------------------------
def group_advantages(returns: jax.Array, mode: AdvantageMode, eps: float = 1e-8) -> jax.Array:
    """Advantages of the branches of each group: returns f32[..., K] -> f32[..., K].

    mean:          R_k - mean(R)
    mean_std:      (R_k - mean(R)) / (std(R) + eps), std over the group (ddof 0)
    max:           R_k - max(R)  (<= 0: the best branch is left alone, every other pushed down)
    leave_one_out: R_k - mean_{j != k} R_j  =  K / (K - 1) (R_k - mean(R))

    The returns are first shifted by the group's first return, which changes none of these but makes
    a group of identical returns give exactly zero: otherwise float rounding in the mean can leave a
    residue of 1e-9, which mean_std divides by a std of 1e-9 into advantages of order 1.
    """
    k = returns.shape[-1]
    centred = returns - returns[..., :1]
    dev = centred - centred.mean(-1, keepdims=True)
    if mode == "mean":
        return dev
    if mode == "mean_std":
        return dev / (centred.std(-1, keepdims=True) + eps)
    if mode == "max":
        return centred - centred.max(-1, keepdims=True)
    if mode == "leave_one_out":
        return dev * (k / (k - 1))
    raise ValueError(f"advantage={mode!r} is not one of {list(AdvantageMode.__args__)}")


def branch_returns(reward: jax.Array, alive: jax.Array, gamma: jax.Array) -> jax.Array:
    """Team return of every branch from its root: reward f32[H, B, N], alive bool[H, B, N] -> f32[B].
    Sum over the team's agents of sum_t gamma^t r_t over the steps inside the root's episode."""
    discount = gamma ** jnp.arange(reward.shape[0], dtype=jnp.float32)
    return jnp.einsum("t,tbn->b", discount, jnp.where(alive, reward, 0.0))


# ----------------------------------------------------------------------------------------------------
# The algorithm
# ----------------------------------------------------------------------------------------------------
def make_train(config: GRPOConfig, env: Environment) -> Trainer:
    """Build the training functions of GRPO for ``env``; checks the config first."""
    validate(config, env)
    # Fixed teams act inside the env (jmarl/agents/opponents.py): every team this env shows learns.
    env = AutoReset(EpisodeStats(with_fixed_teams(env, config.fixed_teams, config.fixed_policy)))
    teams = env.teams
    learners = list(teams)
    E, K, H = config.num_envs, config.group_size, config.horizon
    B = E * K
    hidden_dim = config.hidden_dim if config.recurrent else 1
    actors = {t: PolicyNet(teams[t].num_actions, "gaussian" if isinstance(teams[t].action_space, Box) else "discrete",
                           hidden_dim=config.hidden_dim, num_layers=config.num_layers, activation=config.activation,
                           recurrent=config.recurrent)
              for t in learners}

    def actor_input(team: str, obs: jax.Array) -> jax.Array:
        """The agent's flat observation f32[..., N, O] (+ a one-hot agent id with ``agent_ids``)."""
        flat = flatten_obs(obs, teams[team].obs_shape)
        return with_agent_ids(flat) if config.agent_ids else flat

    def distribution(team: str, out, avail):
        if isinstance(teams[team].action_space, Box):
            mean, log_std = out
            return distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))
        return distrax.Categorical(logits=jnp.where(avail, out, -1e9))

    def to_env_action(team, action):
        space = teams[team].action_space
        return jnp.clip(action, space.low, space.high) if isinstance(space, Box) else action

    def zeros_hidden(batch: int) -> dict:
        return {t: jnp.zeros((batch, teams[t].num_agents, hidden_dim)) for t in learners}

    # --- init ---------------------------------------------------------------------------------------
    def init_params(key):
        params = {}
        for team, k in zip(learners, jax.random.split(key, len(learners))):
            n = teams[team].num_agents
            obs = actor_input(team, jnp.zeros((1, 1, n) + teams[team].obs_shape))[:, :, 0]
            h, starts = jnp.zeros((1, hidden_dim)), jnp.zeros((1, 1), bool)

            # sequential_under_vmap: a vmapped (population) GRU initialiser can deadlock XLA:CPU.
            @sequential_under_vmap
            def init_one(k, team=team, obs=obs, h=h, starts=starts):
                return {"actor": actors[team].init(k, h, obs, starts)}

            params[team] = init_one(k) if config.shared_params else jax.lax.map(init_one, jax.random.split(k, n))
        return params

    def make_optimizer(hp: GRPOHparams):
        return clipped_adam(hp.max_grad_norm)  # the traced, annealed lr is applied in `update` (descend)

    def init(key: jax.Array, hp: GRPOHparams) -> RunnerState:
        k_params, k_env, k_spread, k_run = jax.random.split(key, 4)
        params = init_params(k_params)
        tx = make_optimizer(hp)
        timestep, env_state = jax.vmap(env.reset)(jax.random.split(k_env, E))
        spine = Branches(env_state, timestep, jnp.ones(E, bool), zeros_hidden(E), jax.random.split(k_spread, E))
        if config.branch_at == "running":
            spine = spread(params, spine, k_spread)
        return RunnerState(params, {t: tx.init(params[t]) for t in learners}, spine.env_state, spine.timestep,
                           spine.starts, spine.hidden, k_run, jnp.zeros((), jnp.int32))

    # --- acting ---------------------------------------------------------------------------------------
    def act(params, hidden, timestep: TimeStep, starts, keys, greedy: bool):
        """Actions of every (learning) team for a batch of envs [b], each env sampling with its own key
        (keys [b, 2]), so a branch's actions depend on its own key stream only.
        Returns (hidden, {team: actions [b, N, ...]}, {team: (action, log_prob f32[b, N])})."""
        team_keys = jax.vmap(lambda k: jax.random.split(k, len(teams)))(keys)  # [b, teams, 2]
        actions, hidden, extras = {}, dict(hidden), {}
        for i, team in enumerate(teams):
            avail = timestep.avail_actions[team]
            n = teams[team].num_agents
            agent_starts = jnp.broadcast_to(starts[:, None], starts.shape + (n,))[None]
            h, out = apply_per_agent(actors[team], params[team]["actor"], hidden[team],
                                     actor_input(team, timestep.obs[team])[None], agent_starts, config.shared_params)
            out = jax.tree.map(lambda x: x[0], out)
            dist = distribution(team, out, avail)
            if greedy:
                action = dist.mode()
            else:
                sample = lambda k, o, a, team=team: distribution(team, o, a).sample(seed=k)
                action = jax.vmap(sample)(team_keys[:, i], out, avail)
            hidden[team] = h
            actions[team] = to_env_action(team, action)
            extras[team] = (action, dist.log_prob(action))
        return hidden, actions, extras

    def policy(params, hidden, timestep: TimeStep, starts, key, greedy: bool):
        """``act`` with one key for the whole batch [b] (the signature jmarl.load and render call).
        Returns (hidden, {team: actions [b, N, ...]}, {team: (action, log_prob)})."""
        return act(params, hidden, timestep, starts, jax.random.split(key, starts.shape[0]), greedy)

    def env_step(params, envs: Branches) -> tuple[Branches, tuple[TimeStep, dict]]:
        """One sampled policy step of every env in ``envs``, each with its own key stream."""
        keys = jax.vmap(lambda k: jax.random.split(k, 3))(envs.keys)  # [b, 3, 2]
        hidden, actions, extras = act(params, envs.hidden, envs.timestep, envs.starts, keys[:, 1], greedy=False)
        next_ts, env_state = jax.vmap(env.step)(keys[:, 2], envs.env_state, actions)
        return Branches(env_state, next_ts, next_ts.done, hidden, keys[:, 0]), (next_ts, extras)

    # --- collect groups -------------------------------------------------------------------------------
    def spread(params, spine: Branches, key: jax.Array) -> Branches:
        """Move spine env i a uniform number of policy steps in [0, max_steps) into its episodes (once, at
        init; not counted as env steps). Why: roots are ``horizon + num_steps`` steps apart, and with episodes
        of a fixed length that spacing divides (MPE: 25 steps, spacing 25), every root of an env would sit at
        the same point of an episode forever; spread, the batch's roots cover every point."""
        offsets = jax.random.randint(key, (E,), 0, env.max_steps)

        def move(spine, t):
            moved, _ = env_step(params, spine)
            take = t < offsets  # bool[E]
            return jax.tree.map(lambda a, b: jnp.where(take.reshape((E,) + (1,) * (a.ndim - 1)), a, b),
                                moved, spine), None

        return jax.lax.scan(move, spine, jnp.arange(env.max_steps))[0]

    def roots(runner: RunnerState, key: jax.Array) -> Branches:
        """The E states the groups branch from (see the module doc, ``branch_at``)."""
        k_reset, k_play = jax.random.split(key)
        if config.branch_at == "start":
            timestep, env_state = jax.vmap(env.reset)(jax.random.split(k_reset, E))
            return Branches(env_state, timestep, jnp.ones(E, bool), zeros_hidden(E), jax.random.split(k_play, E))
        spine = Branches(runner.env_state, runner.timestep, runner.starts, runner.hidden, jax.random.split(k_play, E))
        if config.num_steps:  # (a scan of length 0 would still be compiled)
            spine, _ = jax.lax.scan(lambda s, _: (env_step(runner.params, s)[0], None), spine, None, config.num_steps)
        return spine

    def branch_step(params, carry, _):
        envs, alive = carry  # alive bool[B]: still inside the root's episode
        next_envs, (next_ts, extras) = env_step(params, envs)
        transitions = {}
        for team in learners:
            n = teams[team].num_agents
            action, log_prob = extras[team]
            per_agent = lambda x: jnp.broadcast_to(x[:, None], (B, n))
            transitions[team] = Transition(actor_input(team, envs.timestep.obs[team]), per_agent(envs.starts),
                                           envs.timestep.avail_actions[team], action, log_prob,
                                           next_ts.reward[team], per_agent(alive))
        return (next_envs, alive & ~next_ts.done), (transitions, step_stats(next_ts))

    # --- update network -------------------------------------------------------------------------------
    def team_loss(params, team, h0, tr: Transition, adv, hp: GRPOHparams):
        _, out = apply_per_agent(actors[team], params["actor"], h0, tr.obs, tr.starts, config.shared_params)
        dist = distribution(team, out, tr.avail)
        log_ratio = dist.log_prob(tr.action) - tr.log_prob
        ratio = jnp.exp(log_ratio)
        # Steps after the root's episode ended carry no return: they are left out of every mean.
        mask = tr.alive.astype(jnp.float32)
        mean = lambda x: (x * mask).sum() / jnp.maximum(mask.sum(), 1.0)
        policy_loss = -mean(jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - hp.clip_eps, 1 + hp.clip_eps) * adv))
        # k3 estimator of KL(rollout || current) on the rollout's own samples: unbiased, >= 0, no logits stored.
        kl = mean((ratio - 1) - log_ratio)
        entropy = mean(dist.entropy())
        loss = policy_loss + hp.kl_coef * kl - hp.ent_coef * entropy
        stats = {"policy_loss": policy_loss, "kl": kl, "entropy": entropy,
                 "clip_frac": mean((jnp.abs(ratio - 1) > hp.clip_eps).astype(jnp.float32))}
        return loss, stats

    def update(runner: RunnerState, hp: GRPOHparams):
        key, k_roots, k_branch, k_epochs = jax.random.split(runner.key, 4)
        root = roots(runner, k_roots)
        # K branches of every root: env state, timestep, recurrent state; a fresh key stream each.
        start = Branches(*branch((root.env_state, root.timestep, root.starts, root.hidden), K),
                         branch_keys(k_branch, E, K))
        (end, _), (traj, stats) = jax.lax.scan(lambda c, x: branch_step(runner.params, c, x),
                                               (start, jnp.ones(B, bool)), None, H)

        # Group-relative advantages: every step of branch b carries its branch's advantage.
        advantages, group_metrics = {}, {}
        for team in learners:
            returns = groups(branch_returns(traj[team].reward, traj[team].alive, hp.gamma), K)  # [E, K]
            adv = ungroup(group_advantages(returns, config.advantage))  # [B]
            advantages[team] = jnp.broadcast_to(adv[None, :, None], traj[team].log_prob.shape)  # [H, B, N]
            group_metrics |= {f"grpo/{team}/return": returns.mean(), f"grpo/{team}/group_std": returns.std(-1).mean(),
                              f"grpo/{team}/tied_groups": (returns == returns[:, :1]).all(-1).mean()}

        tx = make_optimizer(hp)
        frac = 1.0 - runner.update / config.num_updates if config.anneal_lr else 1.0
        lr = hp.lr * frac

        def minibatch_step(carry, mb):
            params, opt_state = carry
            batch, h0 = mb
            new_params, new_opt, loss_stats = {}, {}, {}
            for team in learners:
                tr, adv = batch[team]
                grads, loss_stats[team] = jax.grad(team_loss, has_aux=True)(params[team], team, h0[team], tr, adv, hp)
                new_params[team], new_opt[team] = descend(tx, lr, params[team], opt_state[team], grads)
            return (new_params, new_opt), loss_stats

        def epoch(carry, key):
            batch = {t: (traj[t], advantages[t]) for t in learners}
            split = minibatches(key, batch, start.hidden, config.num_minibatches, config.recurrent)
            return jax.lax.scan(minibatch_step, carry, split)

        (params, opt_state), loss_stats = jax.lax.scan(
            epoch, (runner.params, runner.opt_state), jax.random.split(k_epochs, config.num_epochs))
        runner = runner._replace(params=params, opt_state=opt_state, key=key, update=runner.update + 1)
        if config.branch_at == "running":  # the spine carries on from branch 0 of its group
            spine = pick((end.env_state, end.timestep, end.starts, end.hidden), K, jnp.zeros(E, jnp.int32))
            runner = runner._replace(env_state=spine[0], timestep=spine[1], starts=spine[2], hidden=spine[3])
        alive = traj[learners[0]].alive[..., 0]
        return runner, {**episode_metrics(stats, env), **group_metrics, "grpo/alive_frac": alive.mean(),
                        **{f"loss/{t}/{k}": v.mean() for t, s in loss_stats.items() for k, v in s.items()}}

    # --- evaluation -----------------------------------------------------------------------------------
    def evaluate(params, key, num_episodes: int = config.eval_episodes) -> dict:
        """One episode in each of ``num_episodes`` envs (static) with ``params``: see ``evaluate_episodes``."""
        act_fn = lambda p, h, ts, starts, k: policy(p, h, ts, starts, k, greedy=config.eval_greedy)[:2]
        return evaluate_episodes(env, act_fn, params, zeros_hidden(num_episodes), key, num_episodes)

    # --- chunks and the whole run: updates_per_chunk updates + an evaluation, num_chunks times ----------
    run_chunk, train = chunked_run(init, update, evaluate, config)

    return Trainer(config, env, init, run_chunk, train, evaluate, policy)


def hparams_as_arrays(hp: GRPOHparams) -> GRPOHparams:
    """``hp`` with every leaf an f32 array (f32[] for one run, f32[P] for a population), as the program traces it."""
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), hp)


# Names the algorithm registry (jmarl/train/algorithms.py) looks for.
Config, Hparams = GRPOConfig, GRPOHparams

# Per-environment defaults, applied before command-line overrides.
PRESETS: dict[str, dict[str, Any]] = {
    # mpe_spread: short groups from running episodes. At 1e6 env steps x 2 seeds: whole episodes from their
    # starts (K=8, H=25) -49.8; from running roots, K=8: H=10 -39.0, H=5 -29.5, H=2 -27.6; H=5: K=4 -26.3,
    # K=16 -35.0. At 2e6, K=4 and K=8 (H=5) both -25 (docs/benchmarks.md, GRPO).
    "mpe_spread": dict(num_envs=16, group_size=4, horizon=5, branch_at="running", total_timesteps=10_000_000,
                       num_minibatches=4),
    # Not swept: whole episodes from their starts.
    "mpe_tag": dict(num_envs=16, group_size=8, horizon=25, total_timesteps=10_000_000, num_minibatches=4),
    "mpe_adversary": dict(num_envs=16, group_size=8, horizon=25, total_timesteps=10_000_000, num_minibatches=4),
    # SMAX battles run up to 100 steps: roots along running episodes, a GRU as in PPO's SMAX preset.
    "smax": dict(num_envs=16, group_size=8, horizon=32, branch_at="running", recurrent=True, num_minibatches=4,
                 total_timesteps=10_000_000, lr=5e-4, gamma=0.99, ent_coef=0.01),
    "continuous": dict(ent_coef=0.0),
    "probe_matrix": dict(num_envs=16, group_size=4, horizon=1, total_timesteps=16 * 4 * 40, num_minibatches=2,
                         num_evals=4),
    "probe_two_step": dict(num_envs=16, group_size=4, horizon=2, total_timesteps=16 * 4 * 2 * 40, num_minibatches=2,
                           num_evals=4),
}


if __name__ == "__main__":  # `python grpo.py --env mpe_spread KEY=VALUE ...` is `jmarl train grpo.py ...`
    from jmarl.tools.cli import main_for_file

    raise SystemExit(main_for_file(__file__))
