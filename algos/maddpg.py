"""MADDPG in one file (Lowe et al. 2017): decentralised deterministic actors, centralised critics.

Every agent acts with a deterministic actor mu(o_i) of its own observation: a tanh-squashed action in the
Box's bounds plus Gaussian exploration noise, or, for Discrete actions (``gumbel=True``), logits turned into
a one-hot action by the straight-through Gumbel-softmax relaxation, as in the paper. Every agent is scored by
a **centralised critic** Q_i(x, a_1..a_K) that sees the observations x and actions of *every* agent of every
team, plus a one-hot id of the agent it scores. Each team has its own actor and critic (shared by its agents
unless ``shared_params=False``, then every parameter gets a leading agent axis), its own optimisers and
Polyak-averaged target networks. In a competitive env (``mpe_tag``) both teams learn, each team's critic
seeing everyone; or a team plays a fixed policy inside the env (``fixed_teams``, ``jmarl/agents/opponents.py``).

One gradient step, on a batch sampled from a flashbax item buffer of single env steps:

- critic: regress Q_i(x, a) onto y_i = r_i + gamma * (1 - terminated) * Q'_i(x', mu'_1(o'_1)..mu'_K(o'_K)),
  with the *target* actors and critics (Q', mu'). x' is the observation the step ended in: the pre-reset
  final observation at an episode end (``info["final_obs"]``), so a truncated episode bootstraps and a
  terminated one does not;
- actor: maximise Q_i(x, a_1..mu(o_i)..a_K): agent i's own action comes from its actor, every other agent's
  from the buffer, so agent i's loss has no path into any other agent's actor;
- targets: theta' <- tau * theta + (1 - tau) * theta'.

``make_train(config, env)`` returns a ``Trainer`` of pure functions as ``algos/ppo.py`` does: collect, store,
sample, learn and a greedy evaluation of the params just updated are fused in ``lax.scan``s; ``MADDPGHparams``
are traced, so a population of seeds x hyperparameters is one ``jax.vmap``.

Shape legend: T rollout steps, E parallel envs, N agents in a team, O flat observation, A action size (the
one-hot size for Discrete), K agents of all teams, X = all teams' observations (sum of N*O), Y = all teams'
actions (sum of N*A), B sampled transitions, U updates in a chunk.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, NamedTuple

import flashbax as fbx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jmarl.core.config import ConfigError
from jmarl.core.env import Environment, TimeStep
from jmarl.agents.networks import (DeterministicActor, ValueNet, apply_per_agent, clipped_adam, descend, flatten_obs,
                                   sequential_under_vmap, td_target)
from jmarl.agents.opponents import with_fixed_teams
from jmarl.agents.rollout import chunked_run, episode_metrics, evaluate_episodes, random_actions, step_stats
from jmarl.core.spaces import Box, Discrete
from jmarl.core.wrappers import AutoReset, EpisodeStats
from jmarl.train.contract import RunConfig


# ----------------------------------------------------------------------------------------------------
# Configuration: static values fix shapes; hyperparameters are traced pytree leaves.
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MADDPGConfig(RunConfig):
    """Static configuration: changing any of these changes the compiled program. With ``RunConfig``'s shared
    fields (num_evals, eval_episodes, fixed_teams, fixed_policy; jmarl/train/contract.py)."""

    num_envs: int = 64  # E
    num_steps: int = 25  # T: steps of every env collected (and stored) per update
    total_timesteps: int = 2_000_000
    buffer_size: int = 100_000  # env steps kept (each with every agent's obs, action, reward)
    sample_batch_size: int = 1024  # B: env steps per gradient step (``batch_size`` is env steps per update)
    grad_steps: int = 1  # gradient steps (critic, actor, targets) per update
    learning_starts: int = 25_000  # env steps of uniformly random actions before the first gradient step
    hidden_dim: int = 64
    num_layers: int = 2
    activation: Literal["tanh", "relu"] = "relu"
    shared_params: bool = True
    gumbel: bool = False  # Discrete actions: learn through the Gumbel-softmax relaxation (else an error)



@struct.dataclass
class MADDPGHparams:
    """Traced hyperparameters: vmap over a batch of these to sweep them in one program."""

    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    gamma: float = 0.95
    tau: float = 0.01  # Polyak step of the target networks, after every gradient step
    exploration_noise: float = 0.1  # Box: std of the Gaussian action noise, as a fraction of the box's width
    gumbel_temperature: float = 1.0  # Discrete: temperature of the relaxed (backward) Gumbel-softmax
    max_grad_norm: float = 0.5


def validate(config: MADDPGConfig, env: Environment) -> None:
    """Raise ConfigError, before anything compiles, for action spaces or sizes that don't fit (``env``: the
    learning teams only; fixed teams are checked by jmarl.agents.opponents)."""
    from jmarl.core.config import check_positive

    config.check_schedule("maddpg")
    check_positive(config, ("buffer_size", "sample_batch_size", "grad_steps", "hidden_dim", "num_layers"), "maddpg")
    need = max(config.batch_size, config.sample_batch_size)
    if config.buffer_size < need:
        raise ConfigError(f"buffer_size={config.buffer_size} cannot hold one update's env steps (num_envs x "
                          f"num_steps = {config.batch_size}) and one sampled batch (sample_batch_size="
                          f"{config.sample_batch_size}); need buffer_size >= {need}")
    if config.learning_starts >= config.total_timesteps:
        raise ConfigError(f"learning_starts={config.learning_starts} >= total_timesteps={config.total_timesteps}: "
                          f"nothing would be learnt")
    for name, team in env.teams.items():
        space = team.action_space
        if isinstance(space, Discrete) and not config.gumbel:
            raise ConfigError(f"MADDPG needs Box actions, or gumbel=True for discrete ones: team {name!r} of "
                              f"{env.name} has {space} (for MPE use env.continuous_actions=True, or set gumbel=True)")
        if not isinstance(space, (Box, Discrete)):
            raise ConfigError(f"team {name!r} of {env.name}: unsupported action space {space}")


# Valid ranges of the traced hyperparameters: jmarl.train.run checks every population member's on the host
# before anything compiles (a NaN, infinite or negative rate would otherwise train without a word).
HPARAM_RANGES = {"actor_lr": "(0, inf)", "critic_lr": "(0, inf)", "gamma": "(0, 1]", "tau": "(0, 1]",
                 "exploration_noise": "[0, inf)", "gumbel_temperature": "(0, inf)", "max_grad_norm": "(0, inf)"}


# ----------------------------------------------------------------------------------------------------
# Typed state
# ----------------------------------------------------------------------------------------------------
class Transition(NamedTuple):
    """One step of one env as stored (leaves [...] per item, [B, ...] once sampled)."""

    obs: dict  # {team: f32[N, O]} what the agents saw
    action: dict  # {team: f32[N, A]} the Box actions taken, or one-hot discrete ones
    reward: dict  # {team: f32[N]}
    next_obs: dict  # {team: f32[N, O]} what the step ended in: the pre-reset final obs at an episode end
    avail: dict  # {team: bool[N, A]} (bool[N, 1] for a Box: unused)
    next_avail: dict  # {team: bool[N, A]} (all True after an episode end: the final ones are not kept)
    terminated: jax.Array  # bool[]: no bootstrapping from next_obs


class RunnerState(NamedTuple):
    params: dict  # {team: {"actor": ..., "critic": ...}}
    target_params: dict  # the same tree: Polyak-averaged copies
    opt_state: dict  # {team: {"actor": optax state, "critic": optax state}}
    buffer: Any  # flashbax item buffer state, experience leaves [1, buffer_size, ...]
    env_state: Any  # batched [E]
    timestep: TimeStep  # batched [E]: the latest one
    key: jax.Array
    update: jax.Array  # i32[]: updates done so far


class Trainer(NamedTuple):
    """Pure functions of one training run: the contract's Trainer (jmarl/train/contract.py) and the TD
    targets its tests check; vmap them over keys and hparams for a population."""

    config: MADDPGConfig
    env: Environment
    init: Callable[[jax.Array, MADDPGHparams], RunnerState]
    run_chunk: Callable[[RunnerState, MADDPGHparams], tuple[RunnerState, dict]]
    train: Callable[[jax.Array, MADDPGHparams], tuple[RunnerState, dict]]
    evaluate: Callable[..., dict]  # (params, key, num_episodes=config.eval_episodes) -> metrics
    policy: Callable  # (params, hidden, timestep, starts, key, greedy, noise=0) -> (hidden, actions, {})
    td_targets: Callable  # (params, target_params, batch [B], key, hparams) -> {team: f32[B, N]}
    actor_loss: Callable  # (params, team, batch [B], key, hparams) -> f32[N]: each agent's loss


# ----------------------------------------------------------------------------------------------------
# Pieces that need no closure (tested directly)
# ----------------------------------------------------------------------------------------------------
def gumbel_softmax(key: jax.Array, logits: jax.Array, temperature: jax.Array) -> jax.Array:
    """A one-hot sample f32[..., A] of Categorical(logits) whose gradient is that of the relaxed sample
    softmax((logits + g) / temperature) (straight-through): what an env can execute, and what a critic can
    differentiate."""
    soft = jax.nn.softmax((logits + jax.random.gumbel(key, logits.shape)) / temperature)
    hard = jax.nn.one_hot(jnp.argmax(soft, axis=-1), logits.shape[-1])
    return soft + jax.lax.stop_gradient(hard - soft)


# ----------------------------------------------------------------------------------------------------
# The algorithm
# ----------------------------------------------------------------------------------------------------
def make_train(config: MADDPGConfig, env: Environment) -> Trainer:
    """Build the training functions of MADDPG for ``env``; checks the config first."""
    # Fixed teams act inside the env (jmarl/agents/opponents.py): every team this env shows learns, and the
    # critics see the learning teams' observations and actions.
    env = with_fixed_teams(env, config.fixed_teams, config.fixed_policy)
    validate(config, env)
    env = AutoReset(EpisodeStats(env))
    teams = env.teams
    E, T = config.num_envs, config.num_steps
    net_kw = dict(hidden_dim=config.hidden_dim, num_layers=config.num_layers, activation=config.activation)
    boxes = {t: isinstance(teams[t].action_space, Box) for t in teams}
    bounds = {t: (teams[t].action_space.low, teams[t].action_space.high) if boxes[t] else (None, None) for t in teams}
    actors = {t: DeterministicActor(teams[t].num_actions, *bounds[t], **net_kw) for t in teams}
    critic = ValueNet(**net_kw)  # Q(x, a): a value network on the concatenated observations and actions
    buffer = fbx.make_item_buffer(max_length=config.buffer_size, min_length=config.sample_batch_size,
                                  sample_batch_size=config.sample_batch_size, add_sequences=True, add_batches=True)

    def flat(team: str, obs: jax.Array) -> jax.Array:
        return flatten_obs(obs, teams[team].obs_shape)

    def joint(per_team: dict) -> jax.Array:
        """Every team's per-agent arrays {team: f32[..., N, D]} -> one f32[..., sum N*D] (teams in env order)."""
        return jnp.concatenate([per_team[t].reshape(per_team[t].shape[:-2] + (-1,)) for t in teams], axis=-1)

    def apply(net, params, team: str, inputs: jax.Array) -> jax.Array:
        """A feed-forward team network on f32[B, N, D] -> f32[B, N, ...] (independent params: vmapped over N)."""
        n = teams[team].num_agents
        hidden, starts = jnp.zeros(inputs.shape[:-2] + (n, 1)), jnp.zeros((1,) + inputs.shape[:-1], bool)
        return jax.tree.map(lambda x: x[0], apply_per_agent(net, params, hidden, inputs[None], starts,
                                                            config.shared_params)[1])

    def q_value(team: str, critic_params, obs_all: jax.Array, actions_all: jax.Array) -> jax.Array:
        """Q_i for every agent i of ``team``: everyone's observations f32[B, X] and the actions each agent's
        critic is shown f32[B, N, Y] (with a one-hot id of the agent scored) -> f32[B, N]."""
        n = teams[team].num_agents
        ids = jnp.broadcast_to(jnp.eye(n), actions_all.shape[:-2] + (n, n))
        obs = jnp.broadcast_to(obs_all[..., None, :], actions_all.shape[:-1] + obs_all.shape[-1:])
        return apply(critic, critic_params, team, jnp.concatenate([obs, actions_all, ids], axis=-1))

    def masked(team: str, logits: jax.Array, avail: jax.Array) -> jax.Array:
        return jnp.where(avail, logits, -1e9) if not boxes[team] else logits

    def learner_action(team: str, actor_params, obs, avail, key, hp: MADDPGHparams) -> tuple[jax.Array, jax.Array]:
        """The action the critic differentiates, f32[B, N, A] (Box: mu(o); Discrete: a straight-through
        Gumbel-softmax one-hot), and the actor's raw output."""
        out = apply(actors[team], actor_params, team, obs)
        if boxes[team]:
            return out, out
        return gumbel_softmax(key, masked(team, out, avail), hp.gumbel_temperature), out

    def stored(team: str, action: jax.Array) -> jax.Array:
        """An env action [..., N] or [..., N, A] -> what the critic reads, f32[..., N, A] (one-hot if Discrete)."""
        return action if boxes[team] else jax.nn.one_hot(action, teams[team].num_actions)

    # --- init ---------------------------------------------------------------------------------------
    def init_params(key) -> dict:
        """{team: {"actor", "critic"}}; independent agents get a leading agent axis N. (Initialisers run
        through ``sequential_under_vmap``: a vmapped orthogonal init can hang on 2-core CPUs.)"""
        obs_size = sum(teams[t].num_agents * int(np.prod(teams[t].obs_shape)) for t in teams)
        act_size = sum(teams[t].num_agents * teams[t].num_actions for t in teams)
        params = {}
        for team, k in zip(teams, jax.random.split(key, len(teams))):
            n, o = teams[team].num_agents, int(np.prod(teams[team].obs_shape))

            @sequential_under_vmap
            def init_one(k, team=team, n=n, o=o):
                ka, kc = jax.random.split(k)
                h, starts = jnp.zeros((1, 1)), jnp.zeros((1, 1), bool)
                return {"actor": actors[team].init(ka, h, jnp.zeros((1, 1, o)), starts),
                        "critic": critic.init(kc, h, jnp.zeros((1, 1, obs_size + act_size + n)), starts)}

            params[team] = init_one(k) if config.shared_params else jax.lax.map(init_one, jax.random.split(k, n))
        return params

    def make_optimizer(hp: MADDPGHparams):
        # Global-norm clipping; the (traced) learning rates are applied by hand in `descend`.
        return clipped_adam(hp.max_grad_norm, eps=1e-8)

    def init(key: jax.Array, hp: MADDPGHparams) -> RunnerState:
        k_params, k_env, k_run = jax.random.split(key, 3)
        params = init_params(k_params)
        tx = make_optimizer(hp)
        timestep, env_state = jax.vmap(env.reset)(jax.random.split(k_env, E))
        one = jax.tree.map(lambda x: x[0], timestep)  # the buffer's layout comes from one transition
        actions = env.sample_actions(jax.random.fold_in(k_env, 1))
        buffer_state = buffer.init(make_transition(one, one, actions))
        opt_state = {t: {"actor": tx.init(params[t]["actor"]), "critic": tx.init(params[t]["critic"])} for t in teams}
        return RunnerState(params, params, opt_state, buffer_state, env_state, timestep, k_run,
                           jnp.zeros((), jnp.int32))

    # --- acting ---------------------------------------------------------------------------------------
    def policy(params, hidden, timestep: TimeStep, starts, key, greedy: bool = True, noise=0.0):
        """Actions of every team for a batch of envs [B]: mu(o) plus Gaussian noise of std ``noise`` x the
        box's width, clipped to the box (Box), or a Gumbel-max sample among the available actions (Discrete;
        the argmax when ``greedy``). Feed-forward: ``hidden`` and ``starts`` pass through unused.
        Returns (hidden, {team: f32[B, N, A] or i32[B, N]}, {})."""
        actions = {}
        for team, k in zip(teams, jax.random.split(key, len(teams))):
            out = apply(actors[team], params[team]["actor"], team, flat(team, timestep.obs[team]))
            space = teams[team].action_space
            if boxes[team]:
                scale = 0.0 if greedy else noise * (space.high - space.low)
                actions[team] = jnp.clip(out + scale * jax.random.normal(k, out.shape), space.low, space.high)
            else:
                logits = masked(team, out, timestep.avail_actions[team])
                onehot = logits if greedy else gumbel_softmax(k, logits, 1.0)
                actions[team] = jnp.argmax(onehot, axis=-1).astype(jnp.int32)
        return hidden, actions, {}

    # --- collect ----------------------------------------------------------------------------------------
    def make_transition(ts: TimeStep, next_ts: TimeStep, actions: dict) -> Transition:
        """What is stored for the step ts -> next_ts (any leading batch shape)."""
        done = next_ts.done.reshape(next_ts.done.shape + (1, 1))
        return Transition(
            obs={t: flat(t, ts.obs[t]) for t in teams},
            action={t: stored(t, actions[t]) for t in teams},
            reward={t: next_ts.reward[t].astype(jnp.float32) for t in teams},
            next_obs={t: flat(t, next_ts.info["final_obs"][t]) for t in teams},
            avail={t: ts.avail_actions[t] for t in teams},
            next_avail={t: next_ts.avail_actions[t] | done for t in teams},
            terminated=next_ts.terminated)

    def env_step(runner: RunnerState, warmup: jax.Array, hp: MADDPGHparams):
        """One step of every env: uniformly random actions while ``warmup``, then the noisy policy."""
        key, k_act, k_random, k_env = jax.random.split(runner.key, 4)
        ts = runner.timestep
        _, actions, _ = policy(runner.params, {}, ts, None, k_act, greedy=False, noise=hp.exploration_noise)
        random = {t: random_actions(teams[t].action_space, k, ts.avail_actions[t])
                  for t, k in zip(teams, jax.random.split(k_random, len(teams)))}
        actions = jax.tree.map(lambda r, a: jnp.where(warmup, r, a), random, actions)
        next_ts, env_state = jax.vmap(env.step)(jax.random.split(k_env, E), runner.env_state, actions)
        runner = runner._replace(env_state=env_state, timestep=next_ts, key=key)
        return runner, (make_transition(ts, next_ts, actions), step_stats(next_ts))

    # --- targets and losses -----------------------------------------------------------------------------
    def td_targets(params, target_params, batch: Transition, key, hp: MADDPGHparams) -> dict:
        """{team: y f32[B, N]}: every agent's next action from the *target* actors, scored by the target
        critics. (``params``, the online networks, are taken for the losses' signature and must not matter.)"""
        next_actions = {t: learner_action(t, target_params[t]["actor"], batch.next_obs[t], batch.next_avail[t], k,
                                          hp)[0] for t, k in zip(teams, jax.random.split(key, len(teams)))}
        obs_all, actions_all = joint(batch.next_obs), joint(next_actions)  # f32[B, X], f32[B, Y]
        targets = {}
        for team in teams:
            shown = jnp.broadcast_to(actions_all[:, None], (actions_all.shape[0], teams[team].num_agents,
                                                            actions_all.shape[-1]))
            q_next = q_value(team, target_params[team]["critic"], obs_all, shown)
            targets[team] = td_target(batch.reward[team], batch.terminated[:, None], q_next, hp.gamma)
        return targets

    def critic_loss(critic_params, team: str, batch: Transition, targets: jax.Array):
        actions_all = joint(batch.action)
        shown = jnp.broadcast_to(actions_all[:, None], (actions_all.shape[0], teams[team].num_agents,
                                                        actions_all.shape[-1]))
        q = q_value(team, critic_params, joint(batch.obs), shown)
        loss = jnp.mean(jnp.square(q - jax.lax.stop_gradient(targets)))
        return loss, {"critic_loss": loss, "q": q.mean()}

    def actor_loss(params, team: str, batch: Transition, key, hp: MADDPGHparams) -> tuple[jax.Array, jax.Array]:
        """Each agent's actor loss f32[N] (-Q_i, plus the paper's small logit penalty for Discrete) and the
        mean Q. Agent i's critic is shown its own action from the actor and every other action from the
        buffer: the ``where`` below is the only path from an actor into a critic."""
        mine, out = learner_action(team, params[team]["actor"], batch.obs[team], batch.avail[team], key, hp)
        n = teams[team].num_agents
        shown = {t: jnp.broadcast_to(batch.action[t][:, None], (mine.shape[0], n) + batch.action[t].shape[1:])
                 for t in teams}  # {t: f32[B, N (critic of agent i), N_t, A_t]}
        own = jnp.eye(n, dtype=bool)[None, :, :, None]  # agent i's slot in its own critic's input
        shown[team] = jnp.where(own, mine[:, None], shown[team])
        q = q_value(team, params[team]["critic"], joint(batch.obs), joint(shown))  # f32[B, N]
        penalty = 0.0 if boxes[team] else 1e-3 * jnp.mean(jnp.square(out), axis=(0, 2))
        return -q.mean(0) + penalty, q.mean()

    # --- update -----------------------------------------------------------------------------------------
    def grad_step(carry, key, buffer_state, hp: MADDPGHparams):
        """Sample B env steps; update every team's critic, then its actor (on the new critic), then the targets."""
        params, target_params, opt_state = carry
        k_sample, k_target, k_actor = jax.random.split(key, 3)
        batch = buffer.sample(buffer_state, k_sample).experience  # leaves [B, ...]
        targets = td_targets(params, target_params, batch, k_target, hp)
        tx, params, opt_state, stats = make_optimizer(hp), dict(params), dict(opt_state), {}
        for team, k in zip(teams, jax.random.split(k_actor, len(teams))):
            p, o = dict(params[team]), dict(opt_state[team])
            grads, stats[team] = jax.grad(critic_loss, has_aux=True)(p["critic"], team, batch, targets[team])
            p["critic"], o["critic"] = descend(tx, hp.critic_lr, p["critic"], o["critic"], grads)

            def team_actor_loss(actor_params, team=team, p=p, k=k):
                loss, q = actor_loss({**params, team: {**p, "actor": actor_params}}, team, batch, k, hp)
                return loss.mean(), q

            (loss, _), grads = jax.value_and_grad(team_actor_loss, has_aux=True)(p["actor"])
            p["actor"], o["actor"] = descend(tx, hp.actor_lr, p["actor"], o["actor"], grads)
            params[team], opt_state[team] = p, o
            stats[team]["actor_loss"] = loss
        target_params = optax.incremental_update(params, target_params, hp.tau)
        return (params, target_params, opt_state), stats

    def update(runner: RunnerState, hp: MADDPGHparams):
        """Collect T steps of every env, store them, then ``grad_steps`` gradient steps once learning has started."""
        warmup = runner.update * config.batch_size < config.learning_starts
        runner, (traj, stats) = jax.lax.scan(lambda r, _: env_step(r, warmup, hp), runner, None, T)
        buffer_state = buffer.add(runner.buffer, traj)  # [T, E] -> T*E items

        def learn(carry, key):
            carry, loss_stats = jax.lax.scan(lambda c, k: grad_step(c, k, buffer_state, hp), carry,
                                             jax.random.split(key, config.grad_steps))
            return carry, jax.tree.map(jnp.mean, loss_stats)

        def skip(carry, key):
            zero = jnp.zeros(())
            return carry, {t: {"critic_loss": zero, "q": zero, "actor_loss": zero} for t in teams}

        env_steps = (runner.update + 1) * config.batch_size
        learning = (env_steps >= config.learning_starts) & buffer.can_sample(buffer_state)
        key, k_learn = jax.random.split(runner.key)
        (params, target_params, opt_state), loss_stats = jax.lax.cond(
            learning, learn, skip, (runner.params, runner.target_params, runner.opt_state), k_learn)
        runner = runner._replace(params=params, target_params=target_params, opt_state=opt_state,
                                 buffer=buffer_state, key=key, update=runner.update + 1)
        metrics = {**episode_metrics(stats, env), "learning": learning.astype(jnp.float32),
                   **{f"loss/{t}/{k}": v for t, s in loss_stats.items() for k, v in s.items()}}
        return runner, metrics

    # --- evaluate ---------------------------------------------------------------------------------------
    def evaluate(params, key, num_episodes: int = config.eval_episodes) -> dict:
        """One noise-free episode in each of ``num_episodes`` envs (static): see ``evaluate_episodes``."""
        act = lambda p, h, ts, starts, k: policy(p, h, ts, starts, k, greedy=True)[:2]
        return evaluate_episodes(env, act, params, {}, key, num_episodes)

    # --- chunks and the whole run: updates_per_chunk updates + an evaluation, num_chunks times ----------
    run_chunk, train = chunked_run(init, update, evaluate, config)

    return Trainer(config, env, init, run_chunk, train, evaluate, policy, td_targets,
                   lambda params, team, batch, key, hp: actor_loss(params, team, batch, key, hp)[0])


# Names the algorithm registry (jmarl/train/algorithms.py) looks for.
Config, Hparams = MADDPGConfig, MADDPGHparams

# Per-environment defaults, applied before command-line overrides. MPE: continuous actions (the preset turns
# them on), the paper's gamma 0.95 and tau 0.01; 8 gradient steps of 256 env steps per 1600 env steps
# collected (one every 200 env steps; the paper took one of 1024 every 100).
_MPE = dict(num_envs=64, num_steps=25, buffer_size=200_000, sample_batch_size=256, grad_steps=8,
            learning_starts=25_000, total_timesteps=2_000_000, actor_lr=1e-3, critic_lr=1e-3, gamma=0.95, tau=0.01,
            exploration_noise=0.1, **{"env.continuous_actions": True})
PRESETS: dict[str, dict[str, Any]] = {
    "mpe_spread": _MPE,
    "mpe_tag": _MPE,
    "probe_continuous": dict(num_envs=16, num_steps=1, buffer_size=2048, sample_batch_size=128, grad_steps=2,
                             learning_starts=256, total_timesteps=16 * 250, num_evals=5, eval_episodes=64,
                             hidden_dim=32, actor_lr=3e-3, critic_lr=3e-3, exploration_noise=0.2),
}


if __name__ == "__main__":  # `python maddpg.py --env mpe_spread KEY=VALUE ...` is `jmarl train maddpg.py ...`
    from jmarl.tools.cli import main_for_file

    raise SystemExit(main_for_file(__file__))
