"""IPPO and MAPPO in one file: a whole training run is one XLA program.

IPPO and MAPPO differ only in what the critic sees: the agent's own observation (IPPO), or the global
state plus a one-hot agent id (MAPPO). Each team has its own policy and critic; agents of a team share
parameters unless ``shared_params=False`` (then every parameter gets a leading agent axis).

Competitive envs (two or more learning teams, "sides") train by ``schedule`` (jmarl/agents/league.py):
"simultaneous" (every side learns at once), "alternating" (one side learns for ``schedule_interval`` updates
while the others are frozen) or "pool" (each side learns in its own slice of the envs against snapshots of the
others kept on the device in the runner state, drawn per group of envs; see ``draw_opponents``/``update_league``).
In a symmetric game (SMAX with ``mirror=True``) ``share_teams`` makes sides with equal spaces play with ONE policy
(one parameter set and optimiser state, kept under the first team's name, trained on every sharing side's data; in a
pool, one pool of its snapshots: fictitious self-play against itself).

``make_train(config, env)`` returns a ``Trainer`` of pure functions. ``trainer.train(key, hparams)``
runs everything (rollouts over vmapped envs, GAE, epochs x minibatches, periodic greedy evaluation) as
nested ``lax.scan``s; ``trainer.run_chunk`` is the same program cut into the chunks between which the
host logs and checkpoints. ``PPOHparams`` is a pytree of traced scalars, so a population of
seeds x hyperparameters is ``jax.vmap(trainer.train)``: one compile, one program.

Shape legend: T rollout steps, E parallel envs, N agents in a team, O observation, D critic input,
A actions, H recurrent hidden size, U updates in a chunk, S sides, G opponent groups of a side's pool.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Literal, NamedTuple, Optional

import distrax
import jax
import jax.numpy as jnp
from flax import struct

from jmarl.core.config import ConfigError
from jmarl.core.env import Environment, TimeStep
from jmarl.agents.networks import (PolicyNet, ValueNet, apply_per_agent, chunked_grad, clipped_adam, descend,
                                   flatten_obs, grad_chunks, sequential_under_vmap, with_agent_ids)
from jmarl.agents import league
from jmarl.agents.opponents import FIXED_POLICIES, make_opponent, with_fixed_teams
from jmarl.agents.rollout import chunked_run, episode_metrics, evaluate_episodes, minibatches, step_stats
from jmarl.core.spaces import Box
from jmarl.core.wrappers import AutoReset, EpisodeStats
from jmarl.train.contract import RunConfig, Trainer


# ----------------------------------------------------------------------------------------------------
# Configuration: static values fix shapes; hyperparameters are traced pytree leaves.
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PPOConfig(RunConfig):
    """Static configuration: changing any of these changes the compiled program. With ``RunConfig``'s shared
    fields (num_evals, eval_episodes, fixed_teams, fixed_policy; jmarl/train/contract.py)."""

    algo: Literal["ippo", "mappo"] = "ippo"
    num_envs: int = 64
    num_steps: int = 128
    total_timesteps: int = 1_000_000
    num_epochs: int = 4
    num_minibatches: int = 4
    # Feed-forward: rows (samples x agents) per network pass over a large batch: a minibatch's gradient is the
    # mean over equal slices of it (``chunked_grad``, the same gradient) and the critic values a rollout in slices
    # (``rollout_values``); 0: each in one pass; None: the backend's (``rows_per_pass``: slices that fit a CPU's
    # caches, one pass on an accelerator, where slices run one after another and leave it idle). Recurrent
    # minibatches (whole sequences through a scanned GRU) are never sliced.
    chunk_rows: Optional[int] = None
    hidden_dim: int = 64
    num_layers: int = 2
    activation: Literal["tanh", "relu"] = "tanh"
    recurrent: bool = False
    shared_params: bool = True
    agent_ids: bool = True  # one-hot agent ids in the actor's (and IPPO critic's) input
    anneal_lr: bool = True
    normalize_advantages: bool = True
    eval_greedy: bool = True
    # Competitive schedules of the learning teams ("sides"; jmarl/agents/league.py): "simultaneous" (all learn at
    # once), "alternating" (one side learns for schedule_interval updates, the others frozen, then the next) or
    # "pool" (each side learns against snapshots of the others, one snapshot every schedule_interval updates,
    # pool_size kept per side, drawn per group of envs by pool_sampling: "latest", "uniform", "prioritised").
    schedule: Literal["simultaneous", "alternating", "pool"] = "simultaneous"
    schedule_interval: int = 10
    pool_size: int = 8
    pool_groups: int = 4  # env groups per side's slice, each playing one drawn snapshot (pool)
    pool_sampling: Literal["latest", "uniform", "prioritised"] = "uniform"
    # Learning teams (sides) with equal spaces that play with one policy: one parameter set and optimiser state
    # (kept as params[share_teams[0]]) trained on all their data; with schedule="pool" one pool of its snapshots
    # plays every sharing side's opponents (self-play). MAPPO's critic then also sees which side it values.
    share_teams: tuple[str, ...] = ()
    # Fixed references each side's greedy policy also meets at every evaluation (eval/vs_{name}/...): fixed_policy
    # names or run directories. None: "random", and "heuristic" where the env has one, with schedule alternating
    # or pool; none with simultaneous (set them to compare).
    eval_opponents: Optional[tuple[str, ...]] = None

    speed_only: ClassVar[tuple[str, ...]] = ("chunk_rows",)


CPU_CHUNK_ROWS = 512  # rows per pass on a CPU backend when chunk_rows is None


def rows_per_pass(config: PPOConfig, backend: str | None = None) -> int:
    """``config.chunk_rows``, or where it is None the default of ``backend`` (jax's default backend): slices of
    ``CPU_CHUNK_ROWS`` on a CPU, 0 (one pass) on a GPU or TPU."""
    if config.chunk_rows is not None:
        return config.chunk_rows
    return CPU_CHUNK_ROWS if (backend or jax.default_backend()) == "cpu" else 0


@struct.dataclass
class PPOHparams:
    """Traced hyperparameters: vmap over a batch of these to sweep them in one program."""

    lr: float = 2.5e-3
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5


def validate(config: PPOConfig, env: Environment) -> None:
    """Raise ConfigError, before anything compiles, for sizes below 1 or that don't divide (fixed teams:
    jmarl.agents.opponents)."""
    from jmarl.core.config import check_positive

    config.check_schedule(config.algo)
    check_positive(config, ("num_epochs", "num_minibatches", "hidden_dim", "num_layers"), config.algo)
    if config.chunk_rows is not None and config.chunk_rows < 0:
        raise ConfigError(f"chunk_rows={config.chunk_rows}: rows per network pass must be >= 0 (0: a whole "
                          "batch in one pass; None: the backend's default)")
    sides = [t for t in env.teams if t not in config.fixed_teams]
    league.check_schedule(config.algo, config.schedule, config.schedule_interval, config.pool_size,
                          config.pool_groups, config.pool_sampling, sides, env.name, config.num_envs,
                          config.num_updates)
    league.check_shared(config.algo, config.share_teams, env.teams, sides, config.schedule)
    # Feed-forward minibatches split envs x steps; recurrent ones split envs (whole sequences). A side learns
    # from its own slice of the envs in a pool (jmarl/agents/league.py: SideLayout).
    envs = config.num_envs // len(sides) if config.schedule == "pool" else config.num_envs
    split, what = ((envs, "num_envs" if envs == config.num_envs else f"the {envs} envs a side learns in")
                   if config.recurrent else
                   (envs * config.num_steps, f"num_envs x num_steps = {config.batch_size}" if envs == config.num_envs
                    else f"a side's {envs} envs x num_steps = {envs * config.num_steps}"))
    if split % config.num_minibatches:
        valid = [d for d in range(1, split + 1) if split % d == 0]
        raise ConfigError(f"num_minibatches={config.num_minibatches} does not divide {what}; "
                          f"valid num_minibatches: {valid}")
    if config.eval_opponents is not None and config.eval_opponents:
        if len(sides) < 2:
            raise ConfigError(f"{config.algo}: eval_opponents={list(config.eval_opponents)} needs two or more "
                              f"learning teams, but {env.name} has {sides} learning; valid: eval_opponents=()")
        names = [league.reference_name(spec) for spec in config.eval_opponents]
        if len(set(names)) < len(names):
            raise ConfigError(f"{config.algo}: eval_opponents={list(config.eval_opponents)} names a reference twice "
                              f"(by name {names}); valid: distinct fixed_policy names ({list(FIXED_POLICIES)}) or run "
                              f"directories")


# Valid ranges of the traced hyperparameters: jmarl.train.run checks every population member's on the host
# before anything compiles (a NaN, infinite or negative rate would otherwise train without a word).
HPARAM_RANGES = {"lr": "(0, inf)", "gamma": "(0, 1]", "gae_lambda": "[0, 1]", "clip_eps": "[0, inf)",
                 "ent_coef": "[0, inf)", "vf_coef": "[0, inf)", "max_grad_norm": "(0, inf)"}


# ----------------------------------------------------------------------------------------------------
# Typed state
# ----------------------------------------------------------------------------------------------------
class TeamHidden(NamedTuple):
    actor: jax.Array  # f32[E, N, H] (H = 1 for feed-forward networks: unused)
    critic: jax.Array  # f32[E, N, H]


class RunnerState(NamedTuple):
    params: dict  # {team: {"actor": ..., "critic": ...}} for learning teams
    opt_state: dict  # {team: optax state}
    env_state: Any  # batched [E]
    timestep: TimeStep  # batched [E]: the latest one
    starts: jax.Array  # bool[E]: timestep.obs begins an episode
    hidden: dict  # {team: TeamHidden}; with schedule="pool" a team's actor state in the envs where its snapshots
    #               play is theirs
    key: jax.Array
    update: jax.Array  # i32[]: updates done so far
    league: dict  # {team: league.Pool} of actor snapshots with schedule="pool"; {} otherwise


class Transition(NamedTuple):
    """One rollout step of one team (leading axes [T, E] once stacked)."""

    obs: jax.Array  # f32[E, N, O]
    critic_in: jax.Array  # f32[E, N, D] (IPPO: None, the critic sees ``obs``)
    starts: jax.Array  # bool[E, N]
    avail: jax.Array  # bool[E, N, A]
    action: jax.Array  # i32[E, N] or f32[E, N, A]
    log_prob: jax.Array  # f32[E, N]
    value: jax.Array  # f32[E, N] (feed-forward: None in the step, filled after the rollout)
    next_value: jax.Array  # f32[E, N]: V(final observation of this step), for bootstrapping (the same)
    reward: jax.Array  # f32[E, N]
    terminated: jax.Array  # bool[E, 1]
    done: jax.Array  # bool[E, 1]


# ----------------------------------------------------------------------------------------------------
# The algorithm
# ----------------------------------------------------------------------------------------------------
def make_train(config: PPOConfig, env: Environment) -> Trainer:
    """Build the training functions of IPPO/MAPPO for ``env``; checks the config first."""
    validate(config, env)
    # Fixed teams act inside the env (jmarl/agents/opponents.py): every team this env shows learns.
    played = with_fixed_teams(env, config.fixed_teams, config.fixed_policy)
    env = AutoReset(EpisodeStats(played))
    teams = env.teams
    learners = list(teams)
    E, T = config.num_envs, config.num_steps
    chunk_rows = rows_per_pass(config)  # the backend's when None: fixed when the program is built
    # Competitive schedules (jmarl/agents/league.py). Pool: side s learns in the envs layout.learn[s] and its
    # snapshots play the other sides' envs; learn_envs[team] indexes a team's learning data (None: every env).
    pool = config.schedule == "pool"
    layout = league.side_layout(E, len(learners), config.pool_groups) if pool else None
    learn_envs = {t: layout.learn[s] if pool else None for s, t in enumerate(learners)}
    # share_teams: owner[team] names the parameters (and optimiser state, and pool) team acts with; members[o] are
    # the teams whose data trains owner o's (one team each without sharing).
    owner = {t: league.param_owner(t, config.share_teams) for t in learners}
    members = {o: [t for t in learners if owner[t] == o] for o in dict.fromkeys(owner.values())}
    owners = list(members)
    hidden_dim = config.hidden_dim if config.recurrent else 1
    net_kw = dict(hidden_dim=config.hidden_dim, num_layers=config.num_layers,
                  activation=config.activation, recurrent=config.recurrent)
    actors = {t: PolicyNet(teams[t].num_actions,
                           "gaussian" if isinstance(teams[t].action_space, Box) else "discrete", **net_kw)
              for t in learners}
    critic = ValueNet(**net_kw)

    def actor_input(team: str, obs: jax.Array) -> jax.Array:
        """The agent's flat observation f32[..., N, O] (+ a one-hot agent id with ``agent_ids``: without it,
        agents that share parameters and see alike tend to pick alike, e.g. all the same landmark)."""
        flat = flatten_obs(obs, teams[team].obs_shape)
        return with_agent_ids(flat) if config.agent_ids else flat

    def critic_input(team: str, obs: jax.Array, global_state: jax.Array) -> jax.Array:
        """IPPO: what the actor sees. MAPPO: global state + one-hot agent id f32[..., N, G+N] (+ a one-hot of the
        team among those sharing its critic: every side sees one global state, but each has its own value)."""
        if config.algo == "ippo":
            return actor_input(team, obs)
        n = teams[team].num_agents
        state = jnp.broadcast_to(global_state[..., None, :], global_state.shape[:-1] + (n, global_state.shape[-1]))
        group = members[owner[team]]
        if len(group) > 1:
            side = jax.nn.one_hot(group.index(team), len(group), dtype=state.dtype)
            state = jnp.concatenate([state, jnp.broadcast_to(side, state.shape[:-1] + side.shape)], -1)
        return with_agent_ids(state)

    def distribution(team: str, out, avail):
        if isinstance(teams[team].action_space, Box):
            mean, log_std = out
            return distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))
        return distrax.Categorical(logits=jnp.where(avail, out, -1e9))

    def log_prob_entropy(team: str, out, avail, action) -> tuple[jax.Array, jax.Array]:
        """log pi(action) and the policy's entropy, f32[...] each, of ``distribution(team, out, avail)``. A
        categorical one is written out: one log-softmax for both (distrax's Categorical normalises its logits again
        for each; about a tenth of a minibatch step of 2x64 MLPs on a CPU)."""
        if isinstance(teams[team].action_space, Box):
            dist = distribution(team, out, avail)
            return dist.log_prob(action), dist.entropy()
        log_p = jax.nn.log_softmax(jnp.where(avail, out, -1e9))  # f32[..., A]; masked actions: p = 0
        return jnp.take_along_axis(log_p, action[..., None], -1)[..., 0], -(jnp.exp(log_p) * log_p).sum(-1)

    def to_env_action(team, action):
        space = teams[team].action_space
        return jnp.clip(action, space.low, space.high) if isinstance(space, Box) else action

    def zeros_hidden(batch: int) -> dict:
        return {t: TeamHidden(*(jnp.zeros((batch, teams[t].num_agents, hidden_dim)),) * 2) for t in learners}

    # --- init ---------------------------------------------------------------------------------------
    def init_params(key):
        params = {}
        for team, k in zip(learners, jax.random.split(key, len(learners))):
            if owner[team] != team:  # it acts with another team's parameters (share_teams)
                continue
            n = teams[team].num_agents
            obs = actor_input(team, jnp.zeros((1, 1, n) + teams[team].obs_shape))[:, :, 0]
            cin = critic_input(team, jnp.zeros((1, 1, n) + teams[team].obs_shape),
                               jnp.zeros((1, 1) + tuple(env.global_state_shape)))[:, :, 0]
            h, starts = jnp.zeros((1, hidden_dim)), jnp.zeros((1, 1), bool)

            # sequential_under_vmap: a vmapped (population) GRU initialiser can deadlock XLA:CPU.
            @sequential_under_vmap
            def init_one(k, team=team, obs=obs, cin=cin, h=h, starts=starts):
                ka, kc = jax.random.split(k)
                return {"actor": actors[team].init(ka, h, obs, starts), "critic": critic.init(kc, h, cin, starts)}

            params[team] = init_one(k) if config.shared_params else jax.lax.map(init_one, jax.random.split(k, n))
        return params

    def make_optimizer(hp: PPOHparams):
        return clipped_adam(hp.max_grad_norm)  # the traced, annealed lr is applied in `update` (descend)

    def init(key: jax.Array, hp: PPOHparams) -> RunnerState:
        k_params, k_env, k_run = jax.random.split(key, 3)
        params = init_params(k_params)
        tx = make_optimizer(hp)
        timestep, env_state = jax.vmap(env.reset)(jax.random.split(k_env, E))
        pools = ({o: league.init_pool(params[o]["actor"], config.pool_size, layout.num_groups * len(members[o]))
                  for o in owners} if pool else {})
        return RunnerState(params, {o: tx.init(params[o]) for o in owners}, env_state, timestep,
                           jnp.ones(E, bool), zeros_hidden(E), k_run, jnp.zeros((), jnp.int32), pools)

    # --- acting ---------------------------------------------------------------------------------------
    def actor_out(team, actor_params, h, obs, starts):
        """One step of ``team``'s actor for a batch [B]: h f32[B, N, H], obs [B, N, *O], starts bool[B] ->
        (h, outputs [B, N, ...])."""
        n = teams[team].num_agents
        agent_starts = jnp.broadcast_to(starts[:, None], starts.shape + (n,))[None]
        h, out = apply_per_agent(actors[team], actor_params, h, actor_input(team, obs)[None], agent_starts,
                                 config.shared_params)
        return h, jax.tree.map(lambda x: x[0], out)

    def league_out(team, actor_params, snapshots, h, obs, starts):
        """Pool schedule: ``team``'s actor outputs over all E envs, by its current params where it learns
        (layout.learn) and by its drawn snapshots (``snapshots``: leaves [G, ...], one per group, vmapped over
        the groups) where it is the opponent."""
        s = learners.index(team)
        mine, theirs = layout.learn[s], layout.opponent[s]
        h_mine, out_mine = actor_out(team, actor_params, h[mine], obs[mine], starts[mine])
        grouped = lambda x: x[theirs].reshape((layout.num_groups, layout.group_size) + x.shape[1:])
        h_theirs, out_theirs = jax.vmap(lambda p, h, o, st: actor_out(team, p, h, o, st))(
            snapshots, grouped(h), grouped(obs), grouped(starts))
        flat = lambda x: x.reshape((-1,) + x.shape[2:])
        order = layout.order[s]
        join = lambda a, b: (lambda x: x if order is None else x[order])(jnp.concatenate([a, flat(b)]))
        return join(h_mine, h_theirs), jax.tree.map(join, out_mine, out_theirs)

    def policy(params, hidden, timestep: TimeStep, starts, key, greedy: bool, snapshots: dict | None = None,
               noise: dict | None = None):
        """Actions of every (learning) team for a batch of envs [B] from its policy; with
        ``snapshots`` ({team: actor params [G, ...]}; schedule="pool", B = E), a team's snapshots act in the envs
        where it is the opponent. Sampling uses ``noise`` ({team: f32[B, N, A]}, ``sampling_noise``; a rollout draws
        all of its steps' before its loop), else noise drawn from ``key``; ``greedy`` takes the mode (zero noise).
        Returns (hidden, {team: actions [B, N, ...] as the env takes them (Box actions clipped)},
        {team: (action as sampled, its log-probability f32[B, N])})."""
        if greedy or noise is None:
            noise = sampling_noise(key, starts.shape[:1])
            noise = jax.tree.map(jnp.zeros_like, noise) if greedy else noise
        actions, hidden, extras = {}, dict(hidden), {}
        for team in teams:
            avail = timestep.avail_actions[team]
            if snapshots is None:
                h, out = actor_out(team, params[owner[team]]["actor"], hidden[team].actor, timestep.obs[team], starts)
            else:
                h, out = league_out(team, params[owner[team]]["actor"], snapshots[team], hidden[team].actor,
                                    timestep.obs[team], starts)
            hidden[team] = hidden[team]._replace(actor=h)
            action = noisy_sample(team, out, avail, noise[team])
            extras[team] = (action, log_prob_entropy(team, out, avail, action)[0])
            actions[team] = to_env_action(team, action)
        return hidden, actions, extras

    def sampling_noise(key: jax.Array, shape: tuple[int, ...]) -> dict:
        """Noise for sampling every team's actions at ``shape`` leading axes (e.g. [T, E], a whole rollout) in one
        draw: {team: f32[*shape, N, A]}, Gumbel for a categorical policy, standard normal for a Gaussian one. A
        rollout draws it before its step loop: on a CPU a threefry call inside the loop is a loop of 5 rounds per
        step, and distrax's sampler adds a softmax per step."""
        draw = {True: jax.random.normal, False: jax.random.gumbel}
        return {t: draw[isinstance(teams[t].action_space, Box)](k, shape + (teams[t].num_agents, teams[t].num_actions))
                for t, k in zip(teams, jax.random.split(key, len(teams)))}

    def noisy_sample(team: str, out, avail, noise: jax.Array) -> jax.Array:
        """A sample of ``distribution(team, out, avail)`` made with ``noise`` (``sampling_noise``): the Gumbel-max
        argmax over the available actions' logits (jax.random.categorical's method), or mean + std x noise."""
        if isinstance(teams[team].action_space, Box):
            mean, log_std = out
            return mean + jnp.exp(log_std) * noise
        return gumbel_max(out, avail, noise)

    def values(params, team, hidden, cin, starts):
        """V for one step: critic hidden [B, N, H], cin [B, N, D], starts bool[B, N] -> (hidden, f32[B, N])."""
        h, v = apply_per_agent(critic, params[owner[team]]["critic"], hidden, cin[None], starts[None],
                               config.shared_params)
        return h, v[0]

    def learning(team: str, tree):
        """``tree`` (leaves [E, ...]) at the envs ``team`` learns in: all of them, or its slice in a pool."""
        idx = learn_envs[team]
        return tree if idx is None else jax.tree.map(lambda x: x[idx], tree)

    # --- collect trajectories --------------------------------------------------------------------------
    def env_step(runner: RunnerState, keys, snapshots=None):
        """One step of every env; ``keys`` = (action noise, k_envs [E]), drawn for all the rollout's steps before it
        (on a CPU a threefry call is a loop of 5 rounds, costly inside the per-step loop)."""
        params, ts, starts = runner.params, runner.timestep, runner.starts
        noise, k_envs = keys
        hidden, actions, extras = policy(params, runner.hidden, ts, starts, None, greedy=False, snapshots=snapshots,
                                         noise=noise)
        next_ts, env_state = jax.vmap(env.step)(k_envs, runner.env_state, actions)
        done = next_ts.done
        transitions, finals = {}, {}
        for team in learners:  # a team's learning data: every env, or its own slice in a pool (B envs)
            mine = lambda x, team=team: learning(team, x)
            n, B = teams[team].num_agents, E if learn_envs[team] is None else len(learn_envs[team])
            agent_starts = jnp.broadcast_to(mine(starts)[:, None], (B, n))
            cin = critic_input(team, mine(ts.obs[team]), mine(ts.global_state))
            # Bootstrap value of the observation this step ended in (the pre-reset one at episode end).
            final_in = critic_input(team, mine(next_ts.info["final_obs"][team]),
                                    mine(next_ts.info["final_global_state"]))
            value = next_value = None  # feed-forward: both computed after the rollout (rollout_values)
            if config.recurrent:  # the critic's state runs through the rollout, so it steps along with it
                h_critic, value = values(params, team, mine(runner.hidden[team].critic), cin, agent_starts)
                _, next_value = values(params, team, h_critic, final_in, jnp.zeros((B, n), bool))
                if learn_envs[team] is not None:
                    h_critic = runner.hidden[team].critic.at[learn_envs[team]].set(h_critic)
                hidden[team] = hidden[team]._replace(critic=h_critic)
                final_in = None
            action, log_prob = mine(extras[team])
            transitions[team] = Transition(
                actor_input(team, mine(ts.obs[team])), None if config.algo == "ippo" else cin, agent_starts,
                mine(ts.avail_actions[team]), action, log_prob, value, next_value, mine(next_ts.reward[team]),
                mine(next_ts.terminated)[:, None], mine(done)[:, None])
            finals[team] = final_in
        runner = runner._replace(env_state=env_state, timestep=next_ts, starts=done, hidden=hidden)
        return runner, (transitions, finals, step_stats(next_ts))

    def critic_data(tr: Transition) -> jax.Array:
        """The critic's input of a rollout f32[..., N, D]: IPPO's is the actor's (``tr.obs``, not stored twice)."""
        return tr.obs if tr.critic_in is None else tr.critic_in

    # --- update network -------------------------------------------------------------------------------
    def team_loss(params, team, h0: TeamHidden, data: tuple[Transition, jax.Array, jax.Array], hp: PPOHparams):
        """The clipped-PPO loss of one team's minibatch ``data = (tr, adv, targets)`` (leaves [T, B, N, ...];
        advantages already normalised over the whole minibatch): every term a mean over samples."""
        tr, adv, targets = data
        _, out = apply_per_agent(actors[team], params["actor"], h0.actor, tr.obs, tr.starts, config.shared_params)
        log_prob, entropy = log_prob_entropy(team, out, tr.avail, tr.action)
        _, value = apply_per_agent(critic, params["critic"], h0.critic, critic_data(tr), tr.starts,
                                   config.shared_params)
        # Clipped value loss.
        value_clipped = tr.value + jnp.clip(value - tr.value, -hp.clip_eps, hp.clip_eps)
        value_loss = 0.5 * jnp.maximum(jnp.square(value - targets), jnp.square(value_clipped - targets)).mean()
        # Clipped surrogate objective.
        ratio = jnp.exp(log_prob - tr.log_prob)
        policy_loss = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - hp.clip_eps, 1 + hp.clip_eps) * adv).mean()
        entropy = entropy.mean()
        loss = policy_loss + hp.vf_coef * value_loss - hp.ent_coef * entropy
        stats = {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy,
                 "approx_kl": ((ratio - 1) - jnp.log(ratio)).mean(),
                 "clip_frac": (jnp.abs(ratio - 1) > hp.clip_eps).mean()}
        return loss, stats

    # --- the league (schedule="pool"): opponents drawn before a rollout, outcomes and snapshots after -------
    def draw_opponents(runner: RunnerState) -> tuple[RunnerState, dict]:
        """Draw every group's snapshot for this rollout; returns the runner and {team: actor params [G, ...]}. The
        draw's key is folded from the run's, not split off it, so the rest of the random stream is unchanged. A
        pool (one per parameter set) draws for the groups of each of its members in turn (share_teams: several)."""
        pools, snapshots, hidden = {}, {}, dict(runner.hidden)
        G = layout.num_groups
        for o, group in members.items():
            # The snapshot of update 0 is the parameters the run starts from, also where a warm start (init_from)
            # set them after ``init``.
            start = league.init_pool(runner.params[o]["actor"], config.pool_size, G * len(group))
            current = jax.tree.map(lambda a, b: jnp.where(runner.update == 0, a, b), start, runner.league[o])
            key = jax.random.fold_in(runner.key, DRAW_STREAM + learners.index(o))
            pools[o], changed = league.redraw(key, current, config.pool_sampling)
            drawn = league.gather(pools[o], pools[o].slots)  # leaves [G * len(group), ...]: member k's are block k
            for k, team in enumerate(group):
                snapshots[team] = jax.tree.map(lambda x: x[k * G:(k + 1) * G], drawn)
                if config.recurrent:  # a group that meets another snapshot starts it from a fresh recurrent state
                    theirs, h = layout.opponent[learners.index(team)], hidden[team].actor
                    fresh = jnp.repeat(changed[k * G:(k + 1) * G], layout.group_size)[:, None, None]
                    hidden[team] = hidden[team]._replace(actor=h.at[theirs].set(jnp.where(fresh, 0.0, h[theirs])))
        return runner._replace(league=pools, hidden=hidden), snapshots

    def update_league(runner: RunnerState, stats: dict, update: jax.Array) -> tuple[RunnerState, dict]:
        """After update ``update`` (0-based): credit each played snapshot with its wins over the learner, then
        snapshot every side when ``schedule_interval`` updates have passed."""
        beaten, played, metrics = [], [], {}
        for team, mine in zip(learners, layout.learn):
            ret, done = stats["episode_return"][team].sum(-1)[:, mine], stats["episode_done"][:, mine]  # [T, E/S]
            b, p = league.side_outcomes(ret, done)
            beaten.append(b), played.append(p)
            metrics[f"league/{team}/return"] = (ret * done).sum() / jnp.maximum(done.sum(), 1)
        pools, due = {}, (update + 1) % config.schedule_interval == 0
        for o, group in members.items():  # a pool's groups: those of each of its members in turn (as drawn)
            outcomes = [league.pool_outcomes(layout, learners.index(t), beaten, played) for t in group]
            pools[o] = league.record(runner.league[o], *(jnp.concatenate(x) for x in zip(*outcomes)))
            metrics.update(league.pool_metrics(o, pools[o], update))
            pools[o] = league.add_snapshot(pools[o], runner.params[o]["actor"], update + 1, due)
        return runner._replace(league=pools), metrics

    def update(runner: RunnerState, hp: PPOHparams):
        snapshots, update_index = None, runner.update
        if pool:
            runner, snapshots = draw_opponents(runner)
        h0 = {t: learning(t, runner.hidden[t]) for t in learners}
        key, k_act, k_env = jax.random.split(runner.key, 3)
        step_keys = (sampling_noise(k_act, (T, E)), jax.random.split(k_env, (T, E)))
        runner, (traj, finals, stats) = jax.lax.scan(lambda r, x: env_step(r, x, snapshots), runner._replace(key=key),
                                                     step_keys)
        if not config.recurrent:  # a feed-forward critic values the whole rollout after it
            for t in learners:
                value, next_value = rollout_values(critic, runner.params[owner[t]]["critic"], critic_data(traj[t]),
                                                   finals[t], traj[t].done[..., 0], config.shared_params, chunk_rows)
                traj[t] = traj[t]._replace(value=value, next_value=next_value)
        # One batch per parameter set: with share_teams its members' envs side by side (traj [T, B, ...], h0 [B, ...]).
        traj, h0 = ({o: join_envs([tree[t] for t in group], axis) for o, group in members.items()}
                    for tree, axis in ((traj, 1), (h0, 0)))
        adv_targets = {o: gae(traj[o], hp.gamma, hp.gae_lambda) for o in owners}
        tx = make_optimizer(hp)
        frac = 1.0 - runner.update / config.num_updates if config.anneal_lr else 1.0
        lr = hp.lr * frac
        # Alternating: bool[S], the side that learns in this update; the others take no step at all.
        learns = (league.alternating_learners(update_index, config.schedule_interval, len(learners))
                  if config.schedule == "alternating" else None)

        def minibatch_step(carry, mb):
            params, opt_state = carry
            batch, h0 = mb
            new_params, new_opt, stats = {}, {}, {}
            for s, team in enumerate(owners):  # the learners, one per parameter set (alternating: no sharing)
                tr, (adv, targets) = batch[team]

                if config.normalize_advantages:  # over the whole minibatch, before any slicing
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                T_mb, B_mb = adv.shape[:2]
                chunks = 1 if config.recurrent else grad_chunks(B_mb, T_mb * adv.shape[2], chunk_rows)

                def step(p, o, team=team, data=(tr, adv, targets)):
                    grads, st = chunked_grad(lambda p, h, d: team_loss(p, team, h, d, hp), p, h0[team], data, chunks)
                    return (*descend(tx, lr, p, o, grads), st)

                if learns is None:
                    new_params[team], new_opt[team], stats[team] = step(params[team], opt_state[team])
                else:  # frozen: parameters and optimiser state unchanged; its loss statistics read 0
                    zero = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype),
                                        jax.eval_shape(step, params[team], opt_state[team])[2])
                    new_params[team], new_opt[team], stats[team] = jax.lax.cond(
                        learns[s], step, lambda p, o: (p, o, zero), params[team], opt_state[team])
            return (new_params, new_opt), stats

        def epoch(carry, key):
            batch = {o: (traj[o], adv_targets[o]) for o in owners}
            split = minibatches(key, batch, h0, config.num_minibatches, config.recurrent)
            return jax.lax.scan(minibatch_step, carry, split)

        key, k_epochs = jax.random.split(runner.key)
        (params, opt_state), loss_stats = jax.lax.scan(
            epoch, (runner.params, runner.opt_state), jax.random.split(k_epochs, config.num_epochs))
        runner = runner._replace(params=params, opt_state=opt_state, key=key, update=runner.update + 1)
        metrics = {**episode_metrics(stats, env), **{f"loss/{t}/{k}": v.mean() for t, s in loss_stats.items()
                                                for k, v in s.items()}}
        if learns is not None:
            metrics.update({f"league/{t}/learning": learns[s].astype(jnp.float32) for s, t in enumerate(learners)})
        if pool:
            runner, league_metrics = update_league(runner, stats, update_index)
            metrics.update(league_metrics)
        return runner, metrics

    # --- evaluation -----------------------------------------------------------------------------------
    def act(p, h, ts, starts, k):
        return policy(p, h, ts, starts, k, greedy=config.eval_greedy)[:2]

    def evaluate(params, key, num_episodes: int = config.eval_episodes) -> dict:
        """One episode in each of ``num_episodes`` envs (static) with ``params``: see ``evaluate_episodes``."""
        return evaluate_episodes(env, act, params, zeros_hidden(num_episodes), key, num_episodes)

    # Fixed references (eval_opponents): each side meets each of them at every chunk's evaluation, so a curve
    # shows whether a league makes progress against something that does not move. Self-play and every matchup are
    # one vmapped episode loop (league.evaluate_vs_references). The final evaluation (``evaluate``) leaves them out.
    specs = config.eval_opponents
    if specs is None:  # by default with a competitive schedule (simultaneous runs keep their program as it was)
        scripted = callable(getattr(type(played), "heuristic_actions", None))
        specs = ("random", "heuristic") if scripted else ("random",)
        specs = specs if config.schedule != "simultaneous" and len(learners) >= 2 else ()
    references = {league.reference_name(spec): {t: make_opponent(played, t, spec) for t in learners}
                  for spec in specs}

    def evaluate_chunk(params, key) -> dict:
        if not references:
            return evaluate(params, key)
        n = config.eval_episodes
        return league.evaluate_vs_references(played, act, params, zeros_hidden(n), key, n, references, self_play=True)

    # --- chunks and the whole run: updates_per_chunk updates + an evaluation, num_chunks times ----------
    run_chunk, train = chunked_run(init, update, evaluate_chunk, config)

    return Trainer(config, env, init, run_chunk, train, evaluate, policy)


def gumbel_max(logits: jax.Array, avail: jax.Array, gumbel: jax.Array) -> jax.Array:
    """A categorical sample over the available actions from pre-drawn Gumbel noise: logits f32[..., A], avail
    bool[..., A], gumbel f32[..., A] -> i32[...]; argmax(logits + gumbel) is distributed as softmax(logits)."""
    return jnp.argmax(jnp.where(avail, logits, -1e9) + gumbel, axis=-1)


def gae(tr: Transition, gamma: jax.Array, gae_lambda: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimates and value targets, f32[T, E, N] each.

    Bootstraps from V(final observation) where an episode was truncated (``next_value`` is computed on
    the pre-reset observation) and from nothing where it terminated; the recursion stops at every done.
    """

    def backward(next_adv, t):
        reward, value, next_value, terminated, done = t
        delta = reward + gamma * next_value * (1.0 - terminated) - value
        adv = delta + gamma * gae_lambda * (1.0 - done) * next_adv
        return adv, adv

    xs = (tr.reward, tr.value, tr.next_value, tr.terminated, tr.done)
    _, adv = jax.lax.scan(backward, jnp.zeros_like(tr.value[0]), xs, reverse=True)
    return adv, adv + tr.value


def rollout_values(critic: ValueNet, params: Any, critic_in: jax.Array, final_in: jax.Array, done: jax.Array,
                   shared: bool, chunk_rows: int = CPU_CHUNK_ROWS) -> tuple[jax.Array, jax.Array]:
    """A feed-forward critic's V(observation) and V(final observation) over a whole rollout: ``critic_in`` and
    ``final_in`` f32[T, B, N, D], ``done`` bool[T, B] -> f32[T, B, N] each. Computed after the rollout in slices of
    about ``chunk_rows`` rows (0: one pass) rather than two small passes inside every step of it: on a CPU the
    per-step loop pays per operation, and one pass over all T x B x N rows (7.7e4 at 1024 envs x 25 steps) spills
    the caches.

    A step's final observation is the next step's observation except where an episode ended (the pre-reset one)
    and at the rollout's last step, so V(final observation) is that of the next step elsewhere; the critic values
    final observations only in the slices of steps that hold such a step (e.g. 1 step in 25 for 25-step episodes).
    Under a vmap over runs a slice's test becomes a select and every slice is valued: the same values."""
    T, B, N = critic_in.shape[:3]
    k = max(1, min(T, chunk_rows // (B * N))) if chunk_rows else T  # steps per slice

    def values(x):  # f32[k', B, N, D] -> f32[k', B, N]: a slice's steps as one batch
        return apply_per_agent(critic, params, jnp.zeros((B, N, 1)), x, jnp.zeros(x.shape[:3], bool), shared)[1]

    def sliced(fn, *xs):  # fn over slices of k steps in a loop (lax.map), then over the remaining T mod k
        n = T // k * k
        out = jax.lax.map(lambda a: fn(*a), tuple(x[:n].reshape((T // k, k) + x.shape[1:]) for x in xs))
        out = out.reshape((n,) + out.shape[2:])
        return out if n == T else jnp.concatenate([out, fn(*(x[n:] for x in xs))])

    value = sliced(values, critic_in)
    ended = done.at[-1].set(True)  # bool[T, B]: the steps whose final observation is not the next one
    final = sliced(lambda x, e: jax.lax.cond(e.any(), values, lambda x: jnp.zeros(x.shape[:3]), x), final_in, ended)
    next_value = jnp.where(ended[..., None], final, jnp.concatenate([value[1:], value[-1:]]))
    return value, next_value


def join_envs(trees: list, axis: int) -> Any:
    """Teams' data side by side along the env ``axis`` (one team's as it is): the batch of a shared policy."""
    return trees[0] if len(trees) == 1 else jax.tree.map(lambda *x: jnp.concatenate(x, axis), *trees)


# The pool's draws fold this (plus the side's index) into the run's key: a stream of their own.
DRAW_STREAM = 1 << 20


def hparams_as_arrays(hp: PPOHparams) -> PPOHparams:
    """``hp`` with every leaf an f32 array (f32[] for one run, f32[P] for a population), as the program traces it."""
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), hp)


# Names the algorithm registry (jmarl/train/algorithms.py) looks for.
Config, Hparams = PPOConfig, PPOHparams

# JaxMARL's IPPO optimiser settings (its ippo_rnn_smax.yaml), which jmarl's hard SMAX maps take; the one home
# of these numbers (jmarl reproduce's jaxmarl_smax preset reads them here).
JAXMARL_IPPO_OPTIMISER = dict(lr=4e-3, clip_eps=0.05, max_grad_norm=0.25)

# Per-environment defaults, applied before command-line overrides.
PRESETS: dict[str, dict[str, Any]] = {
    "mpe_spread": dict(num_envs=128, num_steps=50, total_timesteps=10_000_000, num_minibatches=4, lr=2.5e-3),
    # IPPO with tanh units: 1 seed in 3 collapsed to a deterministic policy (two agents fly off the map
    # for good, about -75); with ReLU no seed of 4 did (docs/benchmarks.md).
    "ippo/mpe_spread": dict(activation="relu"),
    # MAPPO's actor without agent ids: -24.6 [-25.0, -24.2] at 1e7 steps x 4 seeds, against -29.7 [-31.6, -26.8]
    # with them; at 2e6, -37.3 against -47.2 (docs/benchmarks.md, PPO on mpe_spread). Its critic still sees ids.
    "mappo/mpe_spread": dict(agent_ids=False),
    # More agents: an update's agent samples grow with N (128 envs x 50 steps x N); minibatches of about 4000
    # agent samples, as at N = 3 (4800), cost less CPU and memory per update (IPPO, N = 10: 0.87 s against 1.40 s;
    # N = 5: 0.29 s against 0.41 s) at the same return in short runs (IPPO, 2 seeds: N = 5 at 1e6 steps -134 against
    # -137, lr 1e-3 -144; N = 10 at 3.2e5 steps -513 against -506, random -550). MAPPO's cost is about the same
    # either way (at N = 10 its global-state critic dominates it). docs/communication.md.
    "mpe_spread[num_agents=5]": dict(num_minibatches=8),
    "mpe_spread[num_agents=10]": dict(num_minibatches=16),
    "mpe_tag": dict(num_envs=128, num_steps=50, total_timesteps=10_000_000, num_minibatches=4, lr=2.5e-3),
    "mpe_adversary": dict(num_envs=128, num_steps=50, total_timesteps=10_000_000, num_minibatches=4, lr=2.5e-3),
    # Without an entropy bonus the SMAX policies turned deterministic early on the hard maps and froze there:
    # IPPO on 5m_vs_6m (entropy 0.3 -> 0.02 by 3e6 steps, 7% won at 1e7; JaxMARL 12%) and 6h_vs_8z (0-3% at
    # 2e6), MAPPO on 6h_vs_8z (0.49 -> 0.05, 1% at 1e7; JaxMARL 20%; 100% with the bonus). 0.01 is JaxMARL's
    # IPPO value (docs/benchmarks.md, SMAX).
    "smax": dict(num_envs=64, num_steps=128, total_timesteps=10_000_000, recurrent=True, num_minibatches=4,
                 lr=5e-4, ent_coef=0.01, gamma=0.99),
    # The two hard maps take JaxMARL's IPPO optimiser settings. 5m_vs_6m (one marine short; a 13-step rush at the
    # base preset), both algorithms: IPPO 21% [19%, 23%], MAPPO 17% [12%, 22%] at 1e7 x 2 seeds (8% and 1% at
    # lr 5e-4, clip 0.2, max_grad_norm 0.5; JaxMARL 12% / 5%). 6h_vs_8z, IPPO only (MAPPO wins 100% at the base
    # preset): one of two seeds never won at the base preset (50% [1%, 100%]; JaxMARL 95%), neither got stuck
    # with these. The other maps win 99-100% at the base preset and keep it (docs/benchmarks.md, SMAX).
    "smax[scenario=5m_vs_6m]": JAXMARL_IPPO_OPTIMISER,
    "ippo/smax[scenario=6h_vs_8z]": JAXMARL_IPPO_OPTIMISER,
    # MAPPO on 10m_vs_11m at the base preset: 26% [20%, 33%] at 1e7 x 2 seeds, flat from the first 1e6 steps, as
    # 5m_vs_6m was before these settings; with them 48% [41%, 54%] (Mava's MAPPO about 67%; IPPO 44% at the base
    # preset).
    "mappo/smax[scenario=10m_vs_11m]": JAXMARL_IPPO_OPTIMISER,
    # Box actions (any env): a Gaussian with a state-independent log-std needs no entropy bonus; with 0.01
    # its std grew from 0.6 to about 1.7 on mpe_spread's unit box (docs/benchmarks.md, continuous actions).
    "continuous": dict(ent_coef=0.0),
    "probe_matrix": dict(num_envs=16, num_steps=8, total_timesteps=16 * 8 * 40, num_minibatches=2, num_evals=4),
    "probe_two_step": dict(num_envs=16, num_steps=8, total_timesteps=16 * 8 * 40, num_minibatches=2, num_evals=4),
}


if __name__ == "__main__":  # `python ppo.py --env mpe_spread KEY=VALUE ...` is `jmarl train ppo.py ...`
    from jmarl.tools.cli import main_for_file

    raise SystemExit(main_for_file(__file__))
