"""Competitive training schedules and the league, as pure functions any algorithm can reuse.

The learning teams of a competitive env (mpe_tag's "adversaries" and "prey", mpe_adversary's two teams, SMAX with
``enemy="learning"``) are its *sides*. Three schedules decide who learns against whom:

- ``"simultaneous"``: every side learns at once, each against the others' current policies.
- ``"alternating"``: one side learns for ``interval`` updates while the others are frozen (no gradient step, no
  optimiser-state change), then the next side; ``alternating_learners`` says who learns in an update.
- ``"pool"``: self-play against past snapshots. Each side keeps a ``Pool``: a fixed-size ring buffer of snapshots
  of its (actor) parameters, a stacked pytree [P, ...] in the run state on the device, one snapshot added every
  ``interval`` updates (the first at update 0). The envs are split by ``SideLayout``: side s learns in its own
  slice of E/S envs, where every other side is played by snapshots from that side's pool; a slice is cut into
  G groups of E/(S*G) envs, and each group's opponents act with one snapshot (the algorithm vmaps its network over
  the group axis), drawn per group at every update by ``draw``: ``"latest"`` (the newest snapshot), ``"uniform"``
  over the snapshots kept (fictitious self-play) or ``"prioritised"`` by how often each snapshot beat the learner
  (``beat_rate``; prioritised fictitious self-play with weight 1 - the learner's win rate). Draws happen before
  each rollout: an episode that runs across two rollouts meets the second draw for its remaining steps (MPE's
  fixed-length episodes never do when ``num_steps`` is a multiple of ``max_steps``), and a recurrent opponent
  whose group got another snapshot starts from a fresh state (``redraw`` says which groups changed).

In a symmetric game (SMAX's mirror mode) several sides can share one policy (``param_owner``, ``check_shared``): one
parameter set and one optimiser state, trained on every sharing side's data, and, in a pool, one pool of its
snapshots, which play the opponents in every sharing side's slice (the pool's groups are those of every such side).

What "beat the learner" means, for any env (returns of opposing teams are never compared or summed): an episode
a snapshot played, in a slice, is a win for the snapshot when the learning side's episode return there is below
that side's mean return over all the episodes that finished in its slice during the same rollout
(``side_outcomes``, summed per group by ``pool_outcomes``). The counts decay by ``BEAT_RATE_DECAY`` per update, so the estimate follows the learner
as it improves; a slot's counts restart when a new snapshot overwrites it.

Everything here is jittable and vmappable (a population of seeds x hyperparameters is one vmap), and holds no
Python loop over envs or time steps. Evaluation against fixed references (random, the env's scripted policy, a
saved run) for every side in one vmapped program: ``evaluate_vs_references``.

Shape legend: S sides, P pool slots, G opponent groups of one pool (every group of every slice the pool's side
does not learn in: (S - 1) x groups per slice), b envs in a group, E envs, T rollout steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jmarl.core.config import ConfigError
from jmarl.core.env import Environment, TimeStep
from jmarl.core.wrappers import AutoReset, EpisodeStats
from jmarl.agents.opponents import FixedTeams, Opponent
from jmarl.agents.rollout import ActFn, evaluate_episodes

SCHEDULES = ("simultaneous", "alternating", "pool")
POOL_SAMPLING = ("latest", "uniform", "prioritised")
# Per-update decay of the win counts behind ``beat_rate``: about the last 1 / (1 - 0.95) = 20 updates count.
BEAT_RATE_DECAY = 0.95


# ----------------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------------
def check_schedule(what: str, schedule: str, interval: int, pool_size: int, pool_groups: int, pool_sampling: str,
                   sides: Sequence[str], env_name: str, num_envs: int, num_updates: int) -> None:
    """Raise a one-line ConfigError, before anything compiles, for settings of a schedule that cannot work:
    an unknown schedule or sampling, a competitive schedule with fewer than two learning teams, an interval or a
    pool that does not fit the run's ``num_updates``, or envs that do not split into sides x groups."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"{what}: schedule={schedule!r} is not one of {list(SCHEDULES)}")
    if pool_sampling not in POOL_SAMPLING:
        raise ConfigError(f"{what}: pool_sampling={pool_sampling!r} is not one of {list(POOL_SAMPLING)}")
    if schedule == "simultaneous":
        return
    if len(sides) < 2:
        raise ConfigError(f"{what}: schedule={schedule!r} needs two or more learning teams, but {env_name} has "
                          f"{list(sides)} learning (fixed_teams play the others); valid here: schedule='simultaneous'")
    S = len(sides)
    sizes = {"schedule_interval": interval} if schedule == "alternating" else {
        "schedule_interval": interval, "pool_size": pool_size, "pool_groups": pool_groups}
    for key, value in sizes.items():
        if value < 1:
            raise ConfigError(f"{what}: {key}={value} must be at least 1 (valid {key} >= 1)")
    if schedule == "alternating":
        most = num_updates // S  # every side must get its turn
        if most < 1:
            raise ConfigError(f"{what}: schedule='alternating' needs at least {S} updates (a turn per side), but the "
                              f"run has {num_updates}; valid: a larger total_timesteps")
        if interval > most:
            raise ConfigError(f"{what}: schedule_interval={interval} does not fit the run: {num_updates} updates "
                              f"for {S} alternating sides; valid schedule_interval: 1..{most}")
        return
    if interval > num_updates:
        raise ConfigError(f"{what}: schedule_interval={interval} does not fit the run: a snapshot every {interval} "
                          f"updates, but the run has {num_updates}; valid schedule_interval: 1..{num_updates}")
    snapshots = 1 + num_updates // interval  # the initial one, then one every ``interval`` updates
    if pool_size > snapshots:
        raise ConfigError(f"{what}: pool_size={pool_size} does not fit the run: it takes only {snapshots} snapshots "
                          f"({num_updates} updates, one every {interval}); valid pool_size: 1..{snapshots}")
    if num_envs % (S * pool_groups):
        per_side = num_envs // S if num_envs % S == 0 else None
        valid = [g for g in range(1, per_side + 1) if per_side % g == 0] if per_side else []
        raise ConfigError(f"{what}: num_envs={num_envs} does not split into {S} sides x pool_groups={pool_groups} "
                          f"groups; " + (f"valid pool_groups: {valid}" if valid else
                                         f"valid num_envs: multiples of {S * pool_groups}"))


# ----------------------------------------------------------------------------------------------------
# Alternating
# ----------------------------------------------------------------------------------------------------
def alternating_learners(update: jax.Array, interval: int, num_sides: int) -> jax.Array:
    """bool[S]: which side learns in update ``update`` (0-based): side 0 for the first ``interval`` updates, then
    side 1, ..., then side 0 again."""
    return jnp.arange(num_sides) == (update // interval) % num_sides


# ----------------------------------------------------------------------------------------------------
# One policy for several sides (symmetric games: SMAX's mirror mode)
# ----------------------------------------------------------------------------------------------------
def param_owner(team: str, share_teams: Sequence[str]) -> str:
    """The team under whose name ``team``'s parameters are kept: the first of ``share_teams`` when ``team`` is one
    of them (they act with one parameter set and one optimiser state), else ``team`` itself."""
    return share_teams[0] if team in share_teams else team


def check_shared(what: str, share_teams: Sequence[str], teams: Mapping[str, Any], sides: Sequence[str],
                 schedule: str) -> None:
    """Raise a one-line ConfigError, before anything compiles, unless ``share_teams`` (empty: no sharing) names two
    or more distinct learning teams (``sides``, among the env's ``teams`` {name: Team}) with equal spaces (agents,
    observations, actions), under a schedule that can train one policy for them ("simultaneous" or "pool")."""
    if not share_teams:
        return
    for team in share_teams:
        if team not in sides:
            kind = "a fixed team (fixed_teams)" if team in teams else f"not a team of the env {list(teams)}"
            raise ConfigError(f"{what}: share_teams entry {team!r} is {kind}; valid: two or more of the learning "
                              f"teams {list(sides)}")
    if len(set(share_teams)) != len(share_teams) or len(share_teams) < 2:
        raise ConfigError(f"{what}: share_teams={list(share_teams)} must name two or more distinct learning teams "
                          f"(of {list(sides)}), e.g. share_teams={','.join(sides)}")
    first = teams[share_teams[0]]
    for team in share_teams[1:]:
        for field in ("num_agents", "obs_shape", "action_space"):
            if getattr(teams[team], field) != getattr(first, field):
                raise ConfigError(f"{what}: share_teams={list(share_teams)}: one policy needs equal spaces, but "
                                  f"{share_teams[0]!r} has {field} {getattr(first, field)} and {team!r} "
                                  f"{getattr(teams[team], field)} (smax: a scenario with alike sides, mirror=True)")
    if schedule == "alternating":
        raise ConfigError(f"{what}: share_teams={list(share_teams)} trains one policy for those teams, so no side "
                          f"can be frozen while another learns; valid schedules: 'simultaneous' or 'pool'")


# ----------------------------------------------------------------------------------------------------
# Where each side learns and each pool plays (static)
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SideLayout:
    """Static env indices of the pool schedule. Side s learns in envs ``learn[s]`` (the slice s*E/S..(s+1)*E/S);
    its snapshots play in ``opponent[s]``: every other slice, in env order, cut into groups ``opponent[s]
    .reshape(G, b)`` (one drawn snapshot each). ``order[s]`` puts ``concat(learn[s], opponent[s])`` back in env
    order (None where it already is)."""

    num_envs: int
    num_sides: int
    groups_per_slice: int
    learn: tuple[np.ndarray, ...]  # [S] of i32[E/S]
    opponent: tuple[np.ndarray, ...]  # [S] of i32[(S-1) E/S]
    order: tuple[np.ndarray | None, ...]  # [S] of i32[E] or None

    @property
    def num_groups(self) -> int:
        """G: opponent groups of one side's pool."""
        return (self.num_sides - 1) * self.groups_per_slice

    @property
    def group_size(self) -> int:
        """b: envs in a group."""
        return self.num_envs // (self.num_sides * self.groups_per_slice)


def side_layout(num_envs: int, num_sides: int, groups_per_slice: int) -> SideLayout:
    """The layout of ``num_envs`` envs (divisible by ``num_sides * groups_per_slice``; see ``check_schedule``)."""
    per = num_envs // num_sides
    envs = np.arange(num_envs)
    learn = tuple(envs[s * per:(s + 1) * per] for s in range(num_sides))
    opponent = tuple(np.concatenate([learn[o] for o in range(num_sides) if o != s]) for s in range(num_sides))
    order = []
    for s in range(num_sides):
        inverse = np.argsort(np.concatenate([learn[s], opponent[s]]))
        order.append(None if (inverse == envs).all() else inverse)
    return SideLayout(num_envs, num_sides, groups_per_slice, learn, opponent, tuple(order))


# ----------------------------------------------------------------------------------------------------
# The pool: a ring buffer of snapshots per side
# ----------------------------------------------------------------------------------------------------
class Pool(NamedTuple):
    """One side's snapshots, in the run state (hence in every checkpoint)."""

    params: Any  # leaves [P, ...]: snapshots; a slot never written holds the first snapshot (and is never drawn)
    stamp: jax.Array  # i32[P]: the update at which each slot's snapshot was taken (-1: empty)
    count: jax.Array  # i32[]: snapshots added so far; the next one goes to slot count % P
    beaten: jax.Array  # f32[P]: decayed count of episodes in which the snapshot beat the learner
    played: jax.Array  # f32[P]: decayed count of episodes the snapshot played
    slots: jax.Array  # i32[G]: the slot each opponent group plays in the current rollout
    playing: jax.Array  # i32[G]: the stamp of the snapshot each group plays (a slot may be overwritten meanwhile)


def init_pool(params: Any, size: int, num_groups: int) -> Pool:
    """A pool of ``size`` slots holding ``params`` (leaves [...]) as its first snapshot, taken at update 0; every
    group plays it."""
    stacked = jax.tree.map(lambda x: jnp.broadcast_to(x, (size,) + x.shape), params)
    stamp = jnp.full((size,), -1, jnp.int32).at[0].set(0)
    zeros = jnp.zeros((size,), jnp.float32)
    groups = jnp.zeros((num_groups,), jnp.int32)
    return Pool(stacked, stamp, jnp.ones((), jnp.int32), zeros, zeros, groups, groups)


def add_snapshot(pool: Pool, params: Any, update: jax.Array, add: jax.Array | bool = True) -> Pool:
    """Write ``params`` over the oldest slot, stamped ``update``, where ``add`` (bool[], traced) holds; the slot's
    win counts restart."""
    size = pool.stamp.shape[0]
    slot = pool.count % size
    write = add & (jnp.arange(size) == slot)  # bool[P]

    def put(stack, x):
        return jnp.where(write.reshape((size,) + (1,) * x.ndim), x[None], stack)

    return pool._replace(params=jax.tree.map(put, pool.params, params),
                         stamp=jnp.where(write, update, pool.stamp), count=pool.count + jnp.asarray(add, jnp.int32),
                         beaten=jnp.where(write, 0.0, pool.beaten), played=jnp.where(write, 0.0, pool.played))


def kept(pool: Pool) -> jax.Array:
    """bool[P]: slots that hold a snapshot."""
    return pool.stamp >= 0


def latest_slot(pool: Pool) -> jax.Array:
    """i32[]: the slot of the newest snapshot."""
    return (pool.count - 1) % pool.stamp.shape[0]


def beat_rate(pool: Pool) -> jax.Array:
    """f32[P]: how often each snapshot beat the learner, (beaten + 1) / (played + 2): 1/2 for a snapshot that has
    not played yet, so a new snapshot is drawn as often as an even one."""
    return (pool.beaten + 1.0) / (pool.played + 2.0)


def draw(key: jax.Array, pool: Pool, num_groups: int, sampling: str) -> jax.Array:
    """i32[G]: a slot for each opponent group, by ``sampling`` (static): "latest", "uniform" over the kept
    snapshots, or "prioritised" in proportion to ``beat_rate``."""
    if sampling == "latest":
        return jnp.full((num_groups,), latest_slot(pool), jnp.int32)
    weights = jnp.ones_like(pool.beaten) if sampling == "uniform" else beat_rate(pool)
    logits = jnp.where(kept(pool), jnp.log(weights), -jnp.inf)
    return jax.random.categorical(key, logits, shape=(num_groups,)).astype(jnp.int32)


def gather(pool: Pool, slots: jax.Array) -> Any:
    """The snapshots of ``slots`` i32[G]: leaves [G, ...] (one-hot products, not a gather: cheap on any device)."""
    pick = jax.nn.one_hot(slots, pool.stamp.shape[0], dtype=jnp.float32)  # f32[G, P]
    return jax.tree.map(lambda x: jnp.tensordot(pick, x, axes=1).astype(x.dtype), pool.params)


def redraw(key: jax.Array, pool: Pool, sampling: str) -> tuple[Pool, jax.Array]:
    """Draw the opponents of the next rollout: (pool with the new ``slots``, bool[G] groups whose snapshot changed
    (a recurrent opponent's state restarts there))."""
    slots = draw(key, pool, pool.slots.shape[0], sampling)
    playing = pool.stamp[slots]
    return pool._replace(slots=slots, playing=playing), playing != pool.playing


def record(pool: Pool, beaten: jax.Array, played: jax.Array) -> Pool:
    """Decay the win counts by ``BEAT_RATE_DECAY``, then add each group's ``beaten`` and ``played`` f32[G] (its
    episodes this rollout) to the slot it played."""
    pick = jax.nn.one_hot(pool.slots, pool.stamp.shape[0], dtype=jnp.float32)  # f32[G, P]
    return pool._replace(beaten=BEAT_RATE_DECAY * pool.beaten + beaten @ pick,
                         played=BEAT_RATE_DECAY * pool.played + played @ pick)


def side_outcomes(learner_return: jax.Array, done: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per env of one side's slice, over a rollout: (beaten f32[E/S]: episodes whose learner return was below the
    slice's mean over finished episodes, i.e. the opponent won; played f32[E/S]: episodes finished).
    ``learner_return`` f32[T, E/S] (the side's episode return, read where ``done`` bool[T, E/S])."""
    done = done.astype(jnp.float32)
    mean = (learner_return * done).sum() / jnp.maximum(done.sum(), 1.0)
    return (done * (learner_return < mean)).sum(0), done.sum(0)


def pool_outcomes(layout: SideLayout, side: int, beaten: Sequence[jax.Array], played: Sequence[jax.Array]
                  ) -> tuple[jax.Array, jax.Array]:
    """(beaten f32[G], played f32[G]) of side ``side``'s snapshots, from every side's ``side_outcomes`` (lists
    over sides of f32[E/S]): the envs of the other slices, in env order, summed per group."""
    G, b = layout.num_groups, layout.group_size
    others = lambda per_side: jnp.concatenate([per_side[o] for o in range(layout.num_sides) if o != side])
    return others(beaten).reshape(G, b).sum(1), others(played).reshape(G, b).sum(1)


def pool_metrics(team: str, pool: Pool, update: jax.Array) -> dict:
    """Per-update scalars of one side's pool: how many snapshots it keeps, how old (in updates) the snapshots
    its groups play are, and their mean beat rate against the learner."""
    return {f"league/{team}/pool_size": kept(pool).sum().astype(jnp.float32),
            f"league/{team}/opponent_age": (update - pool.playing).astype(jnp.float32).mean(),
            f"league/{team}/beat_rate": beat_rate(pool)[pool.slots].mean()}


# ----------------------------------------------------------------------------------------------------
# Fixed references: every side against random, scripted or saved policies, in one vmapped program
# ----------------------------------------------------------------------------------------------------
def mixed_opponent(opponents: Sequence[Opponent], index: jax.Array) -> Opponent:
    """An Opponent that acts as ``opponents[index]`` (``index`` i32[], traced: vmap over it to play each in one
    program). Every option acts each step and one answer is kept: cheap for scripted or small policies."""

    def init_hidden():
        return tuple(o.init_hidden() for o in opponents)

    def act(key, env_state, ts: TimeStep, hidden, starts):
        # One key for every option (one of them is kept): a split per option would cost compile time, not randomness.
        out = [o.act(key, env_state, ts, h, starts) for o, h in zip(opponents, hidden)]
        actions = jnp.stack([a.astype(out[0][1].dtype) for _, a in out])
        return tuple(h for h, _ in out), actions[index]

    return Opponent(init_hidden, act)


class Matchup(FixedTeams):
    """``env`` with every team visible, where a team whose ``plays`` flag (bool[], traced) is False has its actions
    replaced by its opponent's: one program evaluates any team against any reference, chosen by traced flags."""

    def __init__(self, env: Environment, opponents: dict[str, Opponent], plays: Mapping[str, jax.Array]):
        super().__init__(env, opponents)
        self.plays = plays

    @property
    def teams(self):
        return self.env.teams

    def _step(self, key, state, actions):
        k_env, *keys = jax.random.split(key, len(self.opponents) + 1)
        hidden, played = {}, {}
        for (team, opp), k in zip(self.opponents.items(), keys):
            hidden[team], action = opp.act(k, state.env_state, state.timestep, state.hidden[team], state.starts)
            played[team] = jnp.where(self.plays[team], actions[team], action.astype(actions[team].dtype))
        ts, env_state = self.env.step(k_env, state.env_state, played)
        return self._learners(ts, {}), state.replace(env_state=env_state, timestep=ts.replace(info={}), hidden=hidden,
                                                     starts=jnp.zeros((), bool))

    def _learners(self, ts: TimeStep, fixed: dict) -> TimeStep:
        return ts


def evaluate_vs_references(env: Environment, act: ActFn, params: Any, hidden: Any, key: jax.Array,
                           num_episodes: int, references: Mapping[str, Mapping[str, Opponent]],
                           self_play: bool = False) -> dict:
    """Each learning team of ``env`` (unwrapped by AutoReset/EpisodeStats: those are added here) acting by ``act``
    with ``params``, against each reference playing every other team: ``references`` {name: {team: Opponent}}.
    All S x R matchups (and, with ``self_play``, first the one where every team acts by ``act``) are one vmapped
    evaluation, one compiled episode loop, ``num_episodes`` episodes each with ``jax.random.split(key, M)[m]``
    for matchup m; ``hidden`` is the initial recurrent state of ``num_episodes`` envs.

    Returns, for reference ``r`` and evaluated team ``t``: ``eval/vs_{r}/return/{t}`` (t's mean episode return)
    and ``eval/vs_{r}/{t}/{key}`` for the scalars among the rest of ``evaluate_episodes``' results (the
    reference's return, length, episode metrics, win rate; never a sum over opposing teams). With ``self_play``,
    also ``evaluate_episodes``' own results (``eval/...``, per-episode arrays included) for the self-play matchup:
    one loop instead of two keeps the references' compile cost to their own policies."""
    teams, names = list(env.teams), list(references)
    S, R = len(teams), len(names)
    team_of, ref_of = np.repeat(np.arange(S), R), np.tile(np.arange(R), S)
    if self_play:  # team -1: every team acts by ``act`` (the reference index is then unused)
        team_of, ref_of = np.concatenate([[-1], team_of]), np.concatenate([[0], ref_of])

    def matchup(team_index, ref_index, key):
        opponents = {t: mixed_opponent([references[r][t] for r in names], ref_index) for t in teams}
        plays = {t: (team_index == i) | (team_index < 0) for i, t in enumerate(teams)}
        return evaluate_episodes(AutoReset(EpisodeStats(Matchup(env, opponents, plays))), act, params, hidden, key,
                                 num_episodes)

    out = jax.vmap(matchup)(jnp.asarray(team_of), jnp.asarray(ref_of), jax.random.split(key, len(team_of)))
    metrics = {k: v[0] for k, v in out.items()} if self_play else {}
    for m, (s, r) in enumerate(zip(team_of, ref_of)):
        if s < 0:
            continue
        team, name = teams[s], names[r]
        for k, v in out.items():
            rest = k.removeprefix("eval/")
            if rest == "return" or v.ndim > 1:  # a sum over opposing teams; per-episode arrays
                continue
            metrics[f"eval/vs_{name}/return/{team}" if rest == f"return/{team}" else
                    f"eval/vs_{name}/{team}/{rest}"] = v[m]
    return metrics


def reference_name(spec: str) -> str:
    """The name a reference's metrics carry: the policy name, or a run directory's base name."""
    return spec if "/" not in spec and "\\" not in spec else Path(spec).name
