"""IQL, VDN and QMIX in one file: recurrent value decomposition with episode replay, one XLA program.

The three algorithms differ only in how a team's per-agent action values are combined (``mixer``):

- ``"none"`` (IQL): every agent learns its own Q from its own reward; no mixing.
- ``"vdn"``: Q_tot = sum_i Q_i, learnt from the team reward.
- ``"qmix"``: Q_tot = f(Q_1..Q_N; s), a monotonic mixer (``jmarl.agents.networks.QMixer``) whose weights are
  made by hypernetworks of the global state s and pass through abs(), so dQ_tot/dQ_i >= 0.

Agents of a team share one recurrent Q-network (GRU; one-hot agent ids appended to observations) unless
``shared_params=False``. Every learning team has its own Q-network, target network, mixer and optimiser.
The **team reward** that VDN and QMIX learn is the sum over the team's agents (``team_reward="sum"``, as
JaxMARL's Q-learning baselines do for MPE) or their mean (``"mean"``; the same as any agent's reward when
the reward is shared, as in SMAX and the probe games).

TD targets are double-Q (the online network picks the next action among the *available* ones, the target
network values it) and respect the two ways an episode ends: at truncation they bootstrap from Q of the
final observation (``AutoReset`` keeps it in ``info["final_obs"]``; it is stored as ``next_obs``), after
termination from nothing.

Experience lives in a flashbax trajectory buffer inside the runner state (so it is checkpointed with it):
each update adds ``num_steps`` steps of every env, gradient steps sample ``sample_batch_size`` sequences
of ``sample_sequence_length`` steps, and the GRU restarts at the stored episode starts within a sequence
(and from zeros at a sequence's first step). With the MPE presets (25-step episodes, ``num_steps`` =
sequence length = period = 25) every sampled sequence is exactly one episode; the SMAX preset, whose
episodes vary in length, starts every rollout from a reset (``rollout_from_reset``) so that every sampled
sequence begins an episode.

``make_train(config, env)`` returns a ``Trainer`` of pure functions as ``algos/ppo.py`` does: collect,
store, sample, update and a greedy evaluation of the params just updated are fused in ``lax.scan``s;
``QLearningHparams`` are traced (learning rate, gamma, epsilon schedule, target update period and tau,
gradient clipping), so a population of seeds x hyperparameters is one ``jax.vmap``.

``algo_variant="pqn"`` is the buffer-free parallel variant (PQN, Gallici et al. 2024; JaxMARL's
pqn_vdn_rnn): no replay and no target network; each update computes Q(lambda) returns with the current
network on the fresh rollout of every env, then takes ``num_epochs`` x ``num_minibatches`` gradient steps
on it (minibatches of whole env sequences, from the hidden state they were collected with); the agent
network layer-normalises its features. The mixers are the same switch.

Shape legend: T rollout steps, E parallel envs, N agents in a team, O flat observation, D network input
(O + N with agent ids), A actions, G global state, H recurrent hidden size, C buffer time axis
(buffer_size // E), B sampled sequences, L sequence length, U updates in a chunk.
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
from jmarl.agents.networks import (QMixer, QNet, apply_per_agent, clipped_adam, descend, flatten_obs, sequential_under_vmap,
                                   td_target, with_agent_ids)
from jmarl.agents.opponents import with_fixed_teams
from jmarl.agents.rollout import chunked_run, episode_metrics, evaluate_episodes, random_actions, step_stats
from jmarl.core.spaces import Discrete
from jmarl.core.wrappers import AutoReset, EpisodeStats
from jmarl.train.contract import RunConfig


# ----------------------------------------------------------------------------------------------------
# Configuration: static values fix shapes; hyperparameters are traced pytree leaves.
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QLearningConfig(RunConfig):
    """Static configuration: changing any of these changes the compiled program. With ``RunConfig``'s shared
    fields (num_evals, eval_episodes, fixed_teams, fixed_policy; jmarl/train/contract.py)."""

    mixer: Literal["none", "vdn", "qmix"] = "qmix"  # set by the algorithm name: iql / vdn / qmix
    algo_variant: Literal["replay", "pqn"] = "replay"
    num_envs: int = 8  # E
    num_steps: int = 25  # T: steps of every env collected (and stored) per update
    total_timesteps: int = 1_000_000
    buffer_size: int = 125_000  # transitions kept; the buffer's time axis is C = buffer_size // num_envs
    sample_batch_size: int = 32  # B: sequences per gradient step (``batch_size`` is env steps per update)
    sample_sequence_length: int = 25  # L
    sample_period: int = 25  # spacing of the sampled sequences' starts in the buffer (L: no overlap)
    num_epochs: int = 1  # replay: gradient steps per update; pqn: passes over the rollout
    num_minibatches: int = 1  # pqn: minibatches (of whole env sequences) per pass
    learning_starts: int = 10_000  # replay: env steps collected before the first gradient step
    # replay: every update's rollout starts every env from a reset (as JaxMARL's Q-learning baselines do),
    # so a sampled sequence aligned with a rollout (sample_sequence_length = sample_period = num_steps)
    # starts at an episode start, where the GRU's zero state is right; the episodes a rollout cuts off
    # are stored but never counted as finished. False: envs run on across updates (the zero state is wrong
    # for a sequence that starts mid-episode); with episodes that fit a sequence exactly (MPE) the same.
    rollout_from_reset: bool = False
    # False: a truncated episode's last step is stored as terminated (no bootstrapping), for tasks whose
    # time limit is part of the game (JaxMARL's Q-learning does this everywhere).
    bootstrap_truncation: bool = True
    hidden_dim: int = 64
    num_layers: int = 2
    activation: Literal["tanh", "relu"] = "relu"
    recurrent: bool = True
    shared_params: bool = True
    agent_ids: bool = True  # append one-hot agent ids to observations, so shared networks can specialise
    double_q: bool = True
    team_reward: Literal["sum", "mean"] = "sum"  # VDN / QMIX: how a team's agent rewards become one
    mixer_embed_dim: int = 32
    mixer_hypernet_dim: int = 64
    anneal_lr: bool = True


    @property
    def buffer_time(self) -> int:
        """C: steps of every env the buffer holds."""
        return self.buffer_size // self.num_envs


@struct.dataclass
class QLearningHparams:
    """Traced hyperparameters: vmap over a batch of these to sweep them in one program."""

    lr: float = 5e-3
    gamma: float = 0.99
    eps_start: float = 1.0
    eps_finish: float = 0.05
    eps_anneal_frac: float = 0.1  # epsilon decays linearly over this fraction of total_timesteps
    target_update_period: float = 200.0  # updates between target updates (1 with a small tau: Polyak)
    tau: float = 1.0  # target <- tau * online + (1 - tau) * target (1: a hard copy)
    max_grad_norm: float = 25.0
    q_lambda: float = 0.5  # pqn: lambda of the Q(lambda) returns
    reward_scale: float = 1.0  # the targets see rewards times this (JaxMARL's SMAX baselines: 10)


def validate(config: QLearningConfig, env: Environment) -> None:
    """Raise ConfigError, before anything compiles, for sizes that don't fit or continuous learners
    (fixed teams: jmarl.agents.opponents)."""
    from jmarl.core.config import check_positive

    what = {"none": "iql", "vdn": "vdn", "qmix": "qmix"}[config.mixer]
    config.check_schedule(what)
    check_positive(config, ("buffer_size", "sample_batch_size", "sample_sequence_length", "sample_period",
                            "num_epochs", "num_minibatches", "hidden_dim", "num_layers", "mixer_embed_dim",
                            "mixer_hypernet_dim"), what)
    if config.algo_variant == "pqn" and config.num_envs % config.num_minibatches:
        valid = [d for d in range(1, config.num_envs + 1) if config.num_envs % d == 0]
        raise ConfigError(f"num_minibatches={config.num_minibatches} does not divide num_envs={config.num_envs}; "
                          f"valid num_minibatches: {valid}")
    longest = max(config.num_steps, config.sample_sequence_length)
    if config.algo_variant == "replay" and config.buffer_size % config.num_envs:
        raise ConfigError(f"buffer_size={config.buffer_size} is not a multiple of num_envs={config.num_envs} "
                          f"(every env gets buffer_size // num_envs steps); e.g. buffer_size="
                          f"{max(1, config.buffer_size // config.num_envs) * config.num_envs}")
    if config.algo_variant == "replay" and config.buffer_time < longest:
        raise ConfigError(f"buffer_size // num_envs = {config.buffer_time} steps per env cannot hold a rollout "
                          f"(num_steps={config.num_steps}) or a sampled sequence (sample_sequence_length="
                          f"{config.sample_sequence_length}); need buffer_size >= {longest * config.num_envs}")
    for key in ("sample_batch_size", "sample_sequence_length", "sample_period", "num_epochs", "num_minibatches",
                "eval_episodes"):
        if getattr(config, key) < 1:
            raise ConfigError(f"{key}={getattr(config, key)} must be at least 1")
    if config.algo_variant == "replay" and config.learning_starts >= config.total_timesteps:
        raise ConfigError(f"learning_starts={config.learning_starts} >= total_timesteps={config.total_timesteps}: "
                          f"nothing would be learnt")
    for name, team in env.teams.items():
        if name not in config.fixed_teams and not isinstance(team.action_space, Discrete):
            raise ConfigError(f"Q-learning needs discrete actions; team {name!r} of {env.name} has "
                              f"{team.action_space} (use ippo/mappo, or fixed_teams={name})")


# Valid ranges of the traced hyperparameters: jmarl.train.run checks every population member's on the host
# before anything compiles (a NaN, infinite or negative rate would otherwise train without a word).
HPARAM_RANGES = {"lr": "(0, inf)", "gamma": "(0, 1]", "eps_start": "[0, 1]", "eps_finish": "[0, 1]",
                 "eps_anneal_frac": "[0, 1]", "target_update_period": "(0, inf)", "tau": "(0, 1]",
                 "max_grad_norm": "(0, inf)", "q_lambda": "[0, 1]", "reward_scale": "(0, inf)"}



# ----------------------------------------------------------------------------------------------------
# Typed state
# ----------------------------------------------------------------------------------------------------
class Transition(NamedTuple):
    """One step of one env as stored (leaves [E, C, ...] in the buffer, [L, B, ...] once sampled)."""

    obs: dict  # {team: f32[N, O]} what the agents saw
    next_obs: dict  # {team: f32[N, O]} what the step ended in: the pre-reset final obs at an episode end
    avail: dict  # {team: bool[N, A]}
    next_avail: dict  # {team: bool[N, A]} what next_obs allows (the final step's mask after a done step)
    action: dict  # {team: i32[N]}
    reward: dict  # {team: f32[N]}
    state: jax.Array | None  # f32[G] global state (QMIX only; None otherwise)
    next_state: jax.Array | None  # f32[G] the final global state at an episode end
    terminated: jax.Array  # bool[]: no bootstrapping from next_obs
    starts: jax.Array  # bool[]: obs begins an episode (the GRU restarts before reading it)


class RunnerState(NamedTuple):
    params: dict  # {team: {"agent": ..., "mixer": ...}} online networks of the learning teams
    target_params: dict | None  # the same tree: target networks (None for pqn)
    opt_state: dict  # {team: optax state}
    buffer: Any  # flashbax TrajectoryBufferState, experience leaves [E, C, ...] (None for pqn)
    env_state: Any  # batched [E]
    timestep: TimeStep  # batched [E]: the latest one
    starts: jax.Array  # bool[E]: timestep.obs begins an episode
    hidden: dict  # {team: f32[E, N, H]} acting GRU state (H = 1 for feed-forward networks: unused)
    key: jax.Array
    update: jax.Array  # i32[]: updates done so far


class Trainer(NamedTuple):
    """Pure functions of one training run: the contract's Trainer (jmarl/train/contract.py) and the TD
    targets its tests check; vmap them over keys and hparams for a population."""

    config: QLearningConfig
    env: Environment
    init: Callable[[jax.Array, QLearningHparams], RunnerState]
    run_chunk: Callable[[RunnerState, QLearningHparams], tuple[RunnerState, dict]]
    train: Callable[[jax.Array, QLearningHparams], tuple[RunnerState, dict]]
    evaluate: Callable[..., dict]  # (params, key, num_episodes=config.eval_episodes) -> metrics
    policy: Callable  # (params, hidden, timestep, starts, key, greedy, epsilon=0) -> (hidden, actions, qs)
    td_targets: Callable  # (params, target_params, batch [L, B], hparams) -> {team: f32[L, B] or [L, B, N]}


# ----------------------------------------------------------------------------------------------------
# Pieces that need no closure (tested directly)
# ----------------------------------------------------------------------------------------------------
def masked_argmax(q: jax.Array, avail: jax.Array) -> jax.Array:
    """Greedy action among the available ones: q f32[..., A], avail bool[..., A] -> i32[...]."""
    return jnp.argmax(jnp.where(avail, q, -jnp.inf), axis=-1).astype(jnp.int32)


def next_action_value(q_online: jax.Array, q_target: jax.Array, avail: jax.Array, double_q: bool) -> jax.Array:
    """Value of the next observation f32[...] from Q f32[..., A]: double Q lets the online network pick the
    action (among the available ones) and the target network value it; otherwise the target's own max."""
    action = masked_argmax(q_online if double_q else q_target, avail)
    return jnp.take_along_axis(q_target, action[..., None], axis=-1)[..., 0]


def epsilon_at(hp: QLearningHparams, env_steps: jax.Array, total_timesteps: int) -> jax.Array:
    """Linear decay from eps_start to eps_finish over eps_anneal_frac of the run, then constant."""
    horizon = jnp.maximum(hp.eps_anneal_frac * total_timesteps, 1.0)
    frac = jnp.clip(1.0 - env_steps / horizon, 0.0, 1.0)
    return hp.eps_finish + (hp.eps_start - hp.eps_finish) * frac


def tree_bytes(tree: Any) -> int:
    """Bytes held by the arrays (or ShapeDtypeStructs) of a pytree."""
    return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def replay_memory_bytes(config: QLearningConfig, env: Environment) -> int:
    """Bytes of one run's replay buffer, computed from the buffer state's leaves (nothing is allocated)."""
    trainer = make_train(config, env)
    runner = jax.eval_shape(trainer.init, jax.random.PRNGKey(0), QLearningHparams())
    return tree_bytes(runner.buffer)


# ----------------------------------------------------------------------------------------------------
# The algorithm
# ----------------------------------------------------------------------------------------------------
def make_train(config: QLearningConfig, env: Environment) -> Trainer:
    """Build the training functions of IQL/VDN/QMIX for ``env``; checks the config first."""
    validate(config, env)
    # Fixed teams act inside the env (jmarl/agents/opponents.py): every team this env shows learns.
    env = AutoReset(EpisodeStats(with_fixed_teams(env, config.fixed_teams, config.fixed_policy)))
    teams = env.teams
    learners = list(teams)
    E, T = config.num_envs, config.num_steps
    H = config.hidden_dim if config.recurrent else 1
    pqn = config.algo_variant == "pqn"
    nets = {t: QNet(teams[t].num_actions, config.hidden_dim, config.num_layers, config.activation,
                    config.recurrent, layer_norm=pqn) for t in learners}
    mixer = QMixer(config.mixer_embed_dim, config.mixer_hypernet_dim)
    buffer = None if pqn else fbx.make_trajectory_buffer(
        add_batch_size=E, sample_batch_size=config.sample_batch_size,
        sample_sequence_length=config.sample_sequence_length, period=config.sample_period,
        min_length_time_axis=config.sample_sequence_length, max_length_time_axis=config.buffer_time)

    def flat(team: str, obs: jax.Array) -> jax.Array:
        return flatten_obs(obs, teams[team].obs_shape)

    def agent_input(team: str, obs: jax.Array) -> jax.Array:
        """Network input f32[..., N, D]: the flat observation, plus a one-hot agent id."""
        return with_agent_ids(obs) if config.agent_ids else obs

    def flat_state(gs: jax.Array) -> jax.Array | None:
        """The mixer's input f32[..., G]; None (nothing stored) when no mixer reads it."""
        if config.mixer != "qmix":
            return None
        return gs.reshape(gs.shape[:gs.ndim - len(env.global_state_shape)] + (-1,))

    # --- init ---------------------------------------------------------------------------------------
    def init_params(key) -> dict:
        """{team: {"agent": ..., "mixer": ...}}; independent agents get a leading agent axis N.
        (Initialisers run through ``sequential_under_vmap``: a vmapped GRU init can hang on 2-core CPUs.)"""
        params = {}
        for team, k in zip(learners, jax.random.split(key, len(learners))):
            n, obs_size = teams[team].num_agents, int(np.prod(teams[team].obs_shape))

            @sequential_under_vmap
            def init_agent(k, team=team, n=n, obs_size=obs_size):
                x = agent_input(team, jnp.zeros((1, 1, n, obs_size)))[:, :, 0]  # one agent's input f32[1, 1, D]
                return nets[team].init(k, jnp.zeros((1, H)), x, jnp.zeros((1, 1), bool))

            @sequential_under_vmap
            def init_mixer(k, n=n):
                return mixer.init(k, jnp.zeros((1, n)), jnp.zeros((1, int(np.prod(env.global_state_shape)))))

            k_agent, k_mixer = jax.random.split(k)
            params[team] = {"agent": init_agent(k_agent) if config.shared_params
                            else jax.lax.map(init_agent, jax.random.split(k_agent, n))}
            if config.mixer == "qmix":
                params[team]["mixer"] = init_mixer(k_mixer)
        return params

    def make_optimizer(hp: QLearningHparams):
        return clipped_adam(hp.max_grad_norm)  # the traced, annealed lr is applied in `update` (descend)

    def init(key: jax.Array, hp: QLearningHparams) -> RunnerState:
        k_params, k_env, k_run = jax.random.split(key, 3)
        params = init_params(k_params)
        tx = make_optimizer(hp)
        timestep, env_state = jax.vmap(env.reset)(jax.random.split(k_env, E))
        # The buffer's layout comes from one (unbatched) transition.
        one = jax.tree.map(lambda x: x[0], timestep)
        actions = {t: jnp.zeros(teams[t].num_agents, jnp.int32) for t in learners}
        buffer_state = None if pqn else buffer.init(make_transition(one, one, actions, jnp.ones((), bool)))
        hidden = {t: jnp.zeros((E, teams[t].num_agents, H)) for t in learners}
        return RunnerState(params, None if pqn else params, {t: tx.init(params[t]) for t in learners},
                           buffer_state, env_state, timestep, jnp.ones(E, bool), hidden, k_run,
                           jnp.zeros((), jnp.int32))

    # --- acting ---------------------------------------------------------------------------------------
    def policy(params, hidden, timestep: TimeStep, starts, key, greedy: bool = True, epsilon=0.0):
        """Epsilon-greedy actions among the available ones for a batch of envs [B], for every (learning) team.
        hidden {team: f32[B, N, H]}, starts bool[B]. Returns (hidden, {team: i32[B, N]}, {team: q f32[B, N, A]})."""
        actions, hidden, qs = {}, dict(hidden), {}
        for team, k in zip(teams, jax.random.split(key, len(teams))):
            avail = timestep.avail_actions[team]
            k_random, k_explore = jax.random.split(k)
            random = random_actions(teams[team].action_space, k_random, avail)
            agent_starts = jnp.broadcast_to(starts[:, None], avail.shape[:2])
            h, q = apply_per_agent(nets[team], params[team]["agent"], hidden[team],
                                   agent_input(team, flat(team, timestep.obs[team]))[None], agent_starts[None],
                                   config.shared_params)
            q = q[0]
            explore = jax.random.uniform(k_explore, random.shape) < (0.0 if greedy else epsilon)
            actions[team] = jnp.where(explore, random, masked_argmax(q, avail))
            hidden[team], qs[team] = h, q
        return hidden, actions, qs

    # --- collect ----------------------------------------------------------------------------------------
    def make_transition(ts: TimeStep, next_ts: TimeStep, actions: dict, starts: jax.Array) -> Transition:
        """What is stored for the step ts -> next_ts (any leading batch shape)."""
        return Transition(
            obs={t: flat(t, ts.obs[t]) for t in learners},
            next_obs={t: flat(t, next_ts.info["final_obs"][t]) for t in learners},
            avail={t: ts.avail_actions[t] for t in learners},
            next_avail={t: next_ts.info["final_avail_actions"][t] for t in learners},
            action={t: actions[t].astype(jnp.int32) for t in learners},
            reward={t: next_ts.reward[t].astype(jnp.float32) for t in learners},
            state=flat_state(ts.global_state), next_state=flat_state(next_ts.info["final_global_state"]),
            terminated=next_ts.terminated if config.bootstrap_truncation else next_ts.done, starts=starts)

    def env_step(runner: RunnerState, epsilon):
        key, k_act, k_env = jax.random.split(runner.key, 3)
        ts = runner.timestep
        hidden, actions, _ = policy(runner.params, runner.hidden, ts, runner.starts, k_act, False, epsilon)
        next_ts, env_state = jax.vmap(env.step)(jax.random.split(k_env, E), runner.env_state, actions)
        transition = make_transition(ts, next_ts, actions, runner.starts)
        runner = runner._replace(env_state=env_state, timestep=next_ts, starts=next_ts.done, hidden=hidden, key=key)
        return runner, (transition, step_stats(next_ts))

    def reset_envs(runner: RunnerState) -> RunnerState:
        key, k_reset = jax.random.split(runner.key)
        timestep, env_state = jax.vmap(env.reset)(jax.random.split(k_reset, E))
        return runner._replace(env_state=env_state, timestep=timestep, starts=jnp.ones(E, bool),
                               hidden=jax.tree.map(jnp.zeros_like, runner.hidden), key=key)

    # --- targets and loss -------------------------------------------------------------------------------
    def q_values(team: str, agent_params, batch: Transition, h0: jax.Array | None = None):
        """Unroll the agent network over sequences [L, B]: q = Q(obs_t | h_{t-1}) and q_next =
        Q(next_obs_t | h_t), the value of what step t ended in (the final obs at an episode end) from the
        hidden state that has just read obs_t. Both f32[L, B, N, A]; h0 f32[B, N, H] (default zeros)."""
        obs, next_obs = agent_input(team, batch.obs[team]), agent_input(team, batch.next_obs[team])
        starts = jnp.broadcast_to(batch.starts[..., None], obs.shape[:-1])  # bool[L, B, N]
        h0 = jnp.zeros(obs.shape[1:-1] + (H,)) if h0 is None else h0

        def step(h, x):
            o, o_next, s = x
            h, q = apply_per_agent(nets[team], agent_params, h, o[None], s[None], config.shared_params)
            _, q_next = apply_per_agent(nets[team], agent_params, h, o_next[None], jnp.zeros_like(s)[None],
                                        config.shared_params)
            return h, (q[0], q_next[0])

        _, (q, q_next) = jax.lax.scan(step, h0, (obs, next_obs, starts))
        return q, q_next

    def mix(mixer_params, qs: jax.Array, state: jax.Array) -> jax.Array:
        """Per-agent values f32[..., N] -> the team's f32[...] (VDN, QMIX); IQL keeps them per agent."""
        if config.mixer == "none":
            return qs
        if config.mixer == "vdn":
            return qs.sum(-1)
        return mixer.apply(mixer_params, qs, state)

    def team_reward(reward: jax.Array, hp: QLearningHparams) -> jax.Array:
        """f32[..., N] -> what the mixed value predicts: per agent (IQL), or the team's sum or mean (scaled)."""
        if config.mixer != "none":
            reward = reward.sum(-1) if config.team_reward == "sum" else reward.mean(-1)
        return hp.reward_scale * reward

    def per_value(flag: jax.Array) -> jax.Array:
        """An env's flag bool[...] shaped like the values: [..., 1] for IQL's per-agent values."""
        return flag[..., None] if config.mixer == "none" else flag

    def team_targets(team: str, q_next_online, target_params, batch: Transition, hp: QLearningHparams):
        """TD targets f32[L, B] (mixers) or f32[L, B, N] (IQL) from the target networks."""
        _, q_next_target = q_values(team, target_params["agent"], batch)
        value = next_action_value(q_next_online, q_next_target, batch.next_avail[team], config.double_q)
        value = mix(target_params.get("mixer"), value, batch.next_state)
        return td_target(team_reward(batch.reward[team], hp), per_value(batch.terminated), value, hp.gamma)

    def td_targets(params, target_params, batch: Transition, hp: QLearningHparams) -> dict:
        """{team: TD targets} for a time-major batch of sequences [L, B] (what the loss regresses onto)."""
        return {t: team_targets(t, q_values(t, params[t]["agent"], batch)[1], target_params[t], batch, hp)
                for t in learners}

    def team_loss(params, target_params, team: str, batch: Transition, hp: QLearningHparams):
        q, q_next = q_values(team, params["agent"], batch)
        q_taken = jnp.take_along_axis(q, batch.action[team][..., None], axis=-1)[..., 0]  # f32[L, B, N]
        prediction = mix(params.get("mixer"), q_taken, batch.state)
        target = jax.lax.stop_gradient(team_targets(team, q_next, target_params, batch, hp))
        loss = jnp.mean(jnp.square(prediction - target))
        return loss, {"td_loss": loss, "q_taken": q_taken.mean()}

    # --- update -----------------------------------------------------------------------------------------
    def learning_rate(runner: RunnerState, hp: QLearningHparams):
        return hp.lr * (1.0 - runner.update / config.num_updates if config.anneal_lr else 1.0)

    def update_replay(runner: RunnerState, hp: QLearningHparams):
        """Collect T steps of every env, store them, take num_epochs gradient steps, update the targets."""
        epsilon = epsilon_at(hp, runner.update * config.batch_size, config.total_timesteps)
        if config.rollout_from_reset:
            runner = reset_envs(runner)
        runner, (traj, stats) = jax.lax.scan(lambda r, _: env_step(r, epsilon), runner, None, T)

        # --- store: [T, E, ...] -> the buffer's [E, T, ...] (each env's row continues in time)
        buffer_state = buffer.add(runner.buffer, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), traj))

        # --- sample and learn (once enough is stored)
        tx, lr = make_optimizer(hp), learning_rate(runner, hp)

        def grad_step(carry, key):
            params, opt_state = carry
            batch = buffer.sample(buffer_state, key).experience  # [B, L, ...]
            batch = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), batch)  # time-major [L, B, ...]
            new_params, new_opt, loss_stats = {}, {}, {}
            for team in learners:
                grads, loss_stats[team] = jax.grad(team_loss, has_aux=True)(
                    params[team], runner.target_params[team], team, batch, hp)
                new_params[team], new_opt[team] = descend(tx, lr, params[team], opt_state[team], grads)
            return (new_params, new_opt), loss_stats

        def learn(params, opt_state, key):
            (params, opt_state), loss_stats = jax.lax.scan(
                grad_step, (params, opt_state), jax.random.split(key, config.num_epochs))
            return params, opt_state, jax.tree.map(jnp.mean, loss_stats)

        def skip(params, opt_state, key):
            return params, opt_state, {t: {"td_loss": jnp.zeros(()), "q_taken": jnp.zeros(())} for t in learners}

        env_steps = (runner.update + 1) * config.batch_size
        learning = (env_steps >= config.learning_starts) & buffer.can_sample(buffer_state)
        key, k_learn = jax.random.split(runner.key)
        params, opt_state, loss_stats = jax.lax.cond(learning, learn, skip, runner.params, runner.opt_state, k_learn)

        # --- target networks: every target_update_period updates (traced), move tau of the way
        u = (runner.update + 1).astype(jnp.float32)
        due = jnp.floor(u / hp.target_update_period) > jnp.floor((u - 1.0) / hp.target_update_period)
        tau = jnp.where(due, hp.tau, 0.0)
        target_params = optax.incremental_update(params, runner.target_params, tau)

        runner = runner._replace(params=params, target_params=target_params, opt_state=opt_state,
                                 buffer=buffer_state, key=key, update=runner.update + 1)
        metrics = {**episode_metrics(stats, env), "epsilon": epsilon, "learning": learning.astype(jnp.float32),
                   **{f"loss/{t}/{k}": v for t, s in loss_stats.items() for k, v in s.items()}}
        return runner, metrics

    # --- pqn: Q(lambda) on the fresh rollout, no buffer, no target network --------------------------------
    def lambda_returns(team: str, params, traj: Transition, h0: jax.Array, dones: jax.Array, hp: QLearningHparams):
        """Q(lambda) returns f32[T, E] (mixers) or f32[T, E, N] (IQL) from the current network: each step
        bootstraps from the greedy value of what it ended in, blended by lambda with the next step's return,
        except where the episode ended (all from the final obs: truncation) or terminated (nothing)."""
        _, q_next = q_values(team, params["agent"], traj, h0)
        value = next_action_value(q_next, q_next, traj.next_avail[team], double_q=False)  # masked max
        value = mix(params.get("mixer"), value, traj.next_state)

        def backward(next_return, x):
            reward, value, terminated, done = x
            bootstrap = jnp.where(done, value, (1.0 - hp.q_lambda) * value + hp.q_lambda * next_return)
            ret = td_target(reward, terminated, bootstrap, hp.gamma)
            return ret, ret

        xs = (team_reward(traj.reward[team], hp), value, per_value(traj.terminated), per_value(dones))
        _, returns = jax.lax.scan(backward, value[-1], xs, reverse=True)
        return returns

    def pqn_loss(params, team: str, batch: Transition, h0: jax.Array, returns: jax.Array):
        q, _ = q_values(team, params["agent"], batch, h0)  # (the unused q_next is removed by jit)
        q_taken = jnp.take_along_axis(q, batch.action[team][..., None], axis=-1)[..., 0]
        loss = jnp.mean(jnp.square(mix(params.get("mixer"), q_taken, batch.state) - returns))
        return loss, {"td_loss": loss, "q_taken": q_taken.mean()}

    def update_pqn(runner: RunnerState, hp: QLearningHparams):
        """Collect T steps of every env, compute Q(lambda) returns, then num_epochs passes of num_minibatches
        gradient steps on whole env sequences (each from the hidden state it was collected with)."""
        epsilon = epsilon_at(hp, runner.update * config.batch_size, config.total_timesteps)
        h0 = runner.hidden  # {team: f32[E, N, H]} before the rollout
        runner, (traj, stats) = jax.lax.scan(lambda r, _: env_step(r, epsilon), runner, None, T)
        dones = jnp.concatenate([traj.starts[1:], runner.starts[None]])  # bool[T, E]: step t ended an episode
        returns = {t: lambda_returns(t, runner.params[t], traj, h0[t], dones, hp) for t in learners}
        tx, lr, M = make_optimizer(hp), learning_rate(runner, hp), config.num_minibatches

        def minibatch_step(carry, minibatch):
            params, opt_state = carry
            batch, h, rets = minibatch
            new_params, new_opt, loss_stats = {}, {}, {}
            for team in learners:
                grads, loss_stats[team] = jax.grad(pqn_loss, has_aux=True)(params[team], team, batch, h[team], rets[team])
                new_params[team], new_opt[team] = descend(tx, lr, params[team], opt_state[team], grads)
            return (new_params, new_opt), loss_stats

        def epoch(carry, key):
            perm = jax.random.permutation(key, E)
            seqs = lambda x: jnp.swapaxes(x[:, perm].reshape((T, M, E // M) + x.shape[2:]), 0, 1)  # [M, T, E/M, ...]
            firsts = lambda h: h[perm].reshape((M, E // M) + h.shape[1:])  # [M, E/M, N, H]
            minibatches = (jax.tree.map(seqs, traj), jax.tree.map(firsts, h0), jax.tree.map(seqs, returns))
            return jax.lax.scan(minibatch_step, carry, minibatches)

        key, k_epochs = jax.random.split(runner.key)
        (params, opt_state), loss_stats = jax.lax.scan(
            epoch, (runner.params, runner.opt_state), jax.random.split(k_epochs, config.num_epochs))
        runner = runner._replace(params=params, opt_state=opt_state, key=key, update=runner.update + 1)
        metrics = {**episode_metrics(stats, env), "epsilon": epsilon, "learning": jnp.ones(()),
                   **{f"loss/{t}/{k}": v.mean() for t, s in loss_stats.items() for k, v in s.items()}}
        return runner, metrics

    update = update_pqn if pqn else update_replay

    # --- evaluate ---------------------------------------------------------------------------------------
    def evaluate(params, key, num_episodes: int = config.eval_episodes) -> dict:
        """One greedy episode in each of ``num_episodes`` envs (static): see ``evaluate_episodes``."""
        hidden = {t: jnp.zeros((num_episodes, teams[t].num_agents, H)) for t in learners}
        act = lambda p, h, ts, starts, k: policy(p, h, ts, starts, k, greedy=True)[:2]
        return evaluate_episodes(env, act, params, hidden, key, num_episodes)

    # --- chunks and the whole run: updates_per_chunk updates + an evaluation, num_chunks times ----------
    run_chunk, train = chunked_run(init, update, evaluate, config)

    return Trainer(config, env, init, run_chunk, train, evaluate, policy, td_targets)


# Names the algorithm registry (jmarl/train/algorithms.py) looks for.
Config, Hparams = QLearningConfig, QLearningHparams

# Per-environment defaults, applied before command-line overrides. MPE follows JaxMARL's ql_rnn_mpe (a
# 5000-episode buffer, 32 episodes per gradient step, gamma 0.9, hard target copy every 200 updates; every
# sampled sequence is one whole 25-step episode) but collects from 16 envs, not 8: one gradient step per 400
# env steps instead of 200 halves the update cost (what a CPU spends its time on) and VDN still reached -27
# and QMIX -35 after 1e7 steps, 4 seeds (docs/benchmarks.md).
_MPE = dict(num_envs=16, num_steps=25, buffer_size=120_000, sample_batch_size=32, sample_sequence_length=25,
            sample_period=25, learning_starts=10_000, total_timesteps=10_000_000, lr=5e-3, gamma=0.9,
            target_update_period=200.0, eps_anneal_frac=0.1)
_PROBE = dict(num_envs=16, num_steps=1, buffer_size=16 * 64, sample_batch_size=32, sample_sequence_length=1,
              sample_period=1, learning_starts=64, total_timesteps=16 * 320, num_evals=4, hidden_dim=32,
              team_reward="mean", eps_anneal_frac=0.5, target_update_period=10.0, lr=5e-3)
PRESETS: dict[str, dict[str, Any]] = {
    "mpe_spread": _MPE,
    "mpe_tag": _MPE,
    "mpe_adversary": _MPE,
    # SMAX: lr 5e-3 (MPE's) made QMIX's values climb while its 2s3z return fell to 0; JaxMARL's ql_rnn_smax
    # uses 5e-5 (512-wide networks, rewards x10), 8 gradient steps per 2048 env steps, a target copy every
    # 20k env steps. Here: 5e-4, 4 gradient steps per update (one per 200 env steps), a copy every 25 updates,
    # rewards x10: at x1 (a battle's damage sums to 1) QMIX on 2s3z learnt to flee (greedy return 1.2 -> 0.02
    # over 1e6 steps, episodes run to the time limit); at x10 it held 2.3-3.1 (docs/benchmarks.md).
    "smax": dict(num_envs=8, num_steps=100, rollout_from_reset=True, reward_scale=10.0, buffer_size=8 * 100 * 250, sample_batch_size=32,
                 sample_sequence_length=100, sample_period=100, learning_starts=10_000, num_epochs=4,
                 total_timesteps=10_000_000, team_reward="mean", lr=5e-4, gamma=0.99, target_update_period=25.0,
                 max_grad_norm=10.0),
    # PQN-VDN (``jmarl train pqn_vdn``): purejaxql's pqn_vdn_rnn_smax (128 envs x 128 steps, 4 epochs x 16
    # minibatches, Q(0.85), lr 2.5e-4 decayed, epsilon 1 -> 0.01 over a tenth, gradient norm 1, rewards x10)
    # at jmarl's width, 64 (its 512-wide GRU costs a CPU about 64x as much per step).
    "pqn_vdn/smax": dict(num_envs=128, num_steps=128, num_epochs=4, num_minibatches=16, rollout_from_reset=False,
                         hidden_dim=64, lr=2.5e-4, q_lambda=0.85, eps_finish=0.01, eps_anneal_frac=0.1,
                         max_grad_norm=1.0, reward_scale=10.0),
    "probe_matrix": _PROBE,
    "probe_two_step": dict(_PROBE, num_steps=2, sample_sequence_length=2, sample_period=2, buffer_size=16 * 64,
                           total_timesteps=16 * 2 * 320),
}


if __name__ == "__main__":  # `python qlearning.py --env mpe_spread KEY=VALUE ...` is `jmarl train qlearning.py ...`
    from jmarl.tools.cli import main_for_file

    raise SystemExit(main_for_file(__file__))
