"""Trajectories out, and what emerged: ``jmarl rollout RUN_DIR --episodes N --out FILE.npz``.

Plays greedy episodes of every member (seed x configuration) of a trained run in one vmapped program
(``jmarl.tools.render.rollout_arrays`` over the members' parameters, ``Policy.apply``), then, on the host:

- **exports** one member's episodes (``--member``, default 0) to an ``.npz``: positions (what the env's render
  scene draws: MPE's agents then landmarks, SMAX's allies then enemies), actions, messages and rewards per step
  (keys below), and draws each agent's trajectories to a PNG (to look for role specialisation);
- **measures** what emerged, per member, and writes it to ``RUN_DIR/results.json`` with 95% bootstrap CIs over
  the members (``jmarl.train.stats.aggregate``), under ``"communication"`` and ``"roles"``:

  - ``message_entropy`` (bits) of each speaking agent's tokens, over every step of every episode;
  - ``message_mi`` (bits): the mutual information between an agent's token and its private information (the
    env's ``info["goals"]`` per agent, else ``info["goal"]``: the listener's goal in mpe_speaker_listener, the
    goal in probe_comm), a plug-in estimate from the joint histogram of tokens and goals;
  - ``causal_value``: the receivers' return (the teams that hear messages) minus their return with every heard
    message replaced by a random one (the same episodes: paired starts), for a learned channel
    (``messages_randomised=True``, ``jmarl.core.messages``) or, without one, MPE's own (``comm_randomised=True``:
    speaker_listener, reference, crypto, world_comm; ``envs/mpe/core.py``); ``return`` and ``return_randomised``
    beside it, and ``causal_value_by_team``, every team's own (opposing teams are never summed);
  - ``roles``: how often each agent ends an episode nearest each landmark (scene entities without trails),
    a matrix per member, and ``role_consistency``, the mean over agents of its most frequent landmark's share
    (1: each agent always takes the same landmark; 1 / L: no preference).

  Messages are those of the learned channel (``env.messages=V``) where the run has one, else the env's own
  utterances (MPE's ``comm``: speaker_listener's speaker, reference's agents), as tokens (argmax of a vector).

npz keys (E episodes, F = max_steps + 1 frames, T = F - 1 steps, K scene entities, A agents of all teams,
W message width): ``valid`` bool[E, F], ``length`` i32[E], ``positions`` f32[E, F, K, 2] (NaN after an
episode's end), ``entity_is_agent`` bool[K], ``entity_color`` str[K], ``actions_TEAM`` [E, T, N, ...],
``rewards_TEAM`` f32[E, T, N], ``returns_TEAM`` f32[E], ``messages`` f32[E, T, A, W] and ``message_tokens``
i32[E, T, A] (said on step t; -1 where nothing is said), ``private`` i32[E, T, A] where the env has a goal.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jmarl.agents.opponents import with_fixed_teams
from jmarl.core.config import ConfigError
from jmarl.core.messages import MessageState, message_channel
from jmarl.core.registry import make
from jmarl.tools.render import cut_episodes, drawable, rollout_arrays, scene
from jmarl.train.load import Policy, load
from jmarl.train.files import RESULTS_FILE, read_config, read_results, write_json
from jmarl.train.stats import aggregate


# ----------------------------------------------------------------------------------------------------
# Rollouts of every member in one program
# ----------------------------------------------------------------------------------------------------
def load_members(run_dir: str | Path, **load_kwargs: Any) -> tuple[Policy, Any]:
    """Member 0's policy and every member's parameters stacked (leaves [P, ...])."""
    members = len(read_config(run_dir)["seeds"])
    policies = [load(run_dir, member=m, **load_kwargs) for m in range(members)]
    return policies[0], jax.tree.map(lambda *x: jnp.stack(x), *[p.params for p in policies])


def causal_channel(env) -> tuple[list[str], str] | None:
    """The channel whose causal value ``emergent_report`` measures: (the teams that hear it, the env key that
    randomises it). The learned channel (``messages_randomised``) where ``env`` has one, else the env's own
    utterances where it can randomise them (MPE's ``comm_randomised``, heard by ``comm_receivers``); else None."""
    channel = message_channel(env)
    if channel is not None:
        return list(channel.hears), "messages_randomised"
    base = _unwrapped(env)
    if getattr(base, "comm_receivers", ()) and hasattr(getattr(base, "config", None), "comm_randomised"):
        return list(base.comm_receivers), "comm_randomised"
    return None


def member_rollouts(policy: Policy, params: Any, episodes: int, seed: int = 0, randomised: bool = False) -> dict:
    """``rollout_arrays`` of every member (leaves [P, F, E, ...], on the host) with the same key: the same starts
    for every member and for ``randomised`` (the run's env with its heard messages randomised: ``causal_channel``)."""
    env = policy.env
    if randomised:
        resolved, cfg = policy.resolved, policy.resolved.config
        found = causal_channel(env)
        if found is None:
            raise ConfigError(f"{resolved.env}: no channel to randomise (no learned channel, and the env's own "
                              f"utterances, if any, cannot be randomised)")
        env = with_fixed_teams(make(resolved.env, **{**resolved.env_kwargs, found[1]: True}),
                               getattr(cfg, "fixed_teams", ()), getattr(cfg, "fixed_policy", "random"))
    key = jax.random.PRNGKey(seed)

    def one(p):
        return rollout_arrays(env, key, functools.partial(policy.apply, p), policy.init_hidden, episodes)

    return jax.device_get(jax.jit(jax.vmap(one))(params))


# ----------------------------------------------------------------------------------------------------
# Messages, private information, returns (host, numpy)
# ----------------------------------------------------------------------------------------------------
def _find_state(state: Any, cls: type) -> Any:
    """The state of type ``cls`` among ``state`` and the states it wraps (``env_state``), or None."""
    while state is not None:
        if isinstance(state, cls):
            return state
        state = getattr(state, "env_state", None)
    return None


def _unwrapped(env):
    """The base env under any wrappers (a base env is its own)."""
    return getattr(env, "unwrapped", env)


def _base_state(state: Any) -> Any:
    while hasattr(state, "env_state"):
        state = state.env_state
    return state


def messages_said(env, states: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(messages f32[..., T, B, A, W] said on each step, tokens i32[..., T, B, A] (-1: nothing said), speaking
    bool[A]) from a rollout's states (leaves [..., F, B, ...]); None for an env without messages.

    The learned channel (``MessageChannel``) where the env has one: what was heard after step t is what was said
    on it (in a rollout without randomised messages). Else MPE's own utterances (``comm`` of non-silent agents)."""
    channel = message_channel(env)
    if channel is not None:
        said = np.asarray(_find_state(states, MessageState).heard)[..., 1:, :, :, :]
        speaking = np.asarray(channel.speaking)
        if channel.vocab:
            tokens = np.where(said.any(-1), said.argmax(-1), -1)
        else:
            tokens = np.full(said.shape[:-1], -1)  # continuous vectors: no tokens
        return said, np.where(speaking, tokens, -1).astype(np.int32), speaking
    base, inner = _unwrapped(env), _base_state(states)
    world = getattr(base, "world", None)
    if world is None or not getattr(world, "dim_c", 0) or not hasattr(inner, "comm"):
        return None
    said = np.asarray(inner.comm)[..., 1:, :, :, :]
    speaking = ~np.asarray(world.silent)
    tokens = np.where(said.any(-1), said.argmax(-1), -1)
    return said, np.where(speaking, tokens, -1).astype(np.int32), speaking


def private_info(info: dict, num_agents: int) -> np.ndarray | None:
    """i32[..., A]: each agent's private information on each step: ``info["goals"]`` (one per agent), else
    ``info["goal"]`` (one per episode, shared by every agent that knows it); None where the env has neither."""
    if "goals" in info and np.shape(info["goals"])[-1] == num_agents:
        return np.asarray(info["goals"], np.int32)
    if "goal" in info:
        goal = np.asarray(info["goal"], np.int32)
        return np.broadcast_to(goal[..., None], goal.shape + (num_agents,))
    return None


def entropy_bits(counts: np.ndarray) -> float:
    """Entropy (bits) of the distribution with these counts."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0 if p.size else 0.0  # + 0.0: no "-0.0" in results.json


def mutual_information_bits(x: np.ndarray, y: np.ndarray) -> float:
    """Plug-in estimate (bits) of I(X; Y) from paired samples of two discrete variables x, y i32[S]."""
    if x.size == 0:
        return 0.0
    _, xi = np.unique(x, return_inverse=True)
    _, yi = np.unique(y, return_inverse=True)
    joint = np.zeros((xi.max() + 1, yi.max() + 1))
    np.add.at(joint, (xi, yi), 1.0)
    return entropy_bits(joint.sum(1)) + entropy_bits(joint.sum(0)) - entropy_bits(joint.ravel())


def agent_names(env) -> list[str]:
    """``team_i`` for every agent of every team, in team order (the agent axis of messages)."""
    return [f"{t}_{i}" for t, team in env.teams.items() for i in range(team.num_agents)]


def _returns(rewards: dict, valid: np.ndarray) -> dict[str, np.ndarray]:
    """{team: f32[..., B]} episode returns (summed over the team's agents) from rewards [..., F, B, N]."""
    return {t: (np.asarray(r).sum(-1) * valid).sum(-2) for t, r in rewards.items()}


# ----------------------------------------------------------------------------------------------------
# What emerged
# ----------------------------------------------------------------------------------------------------
def roles(env, episodes: list) -> np.ndarray | None:
    """f32[N, L]: how often each agent (a scene entity with a trail) ends an episode nearest each landmark (a
    scene entity without one), over ``episodes`` (``render.Episode``); None where the scene has no such split."""
    try:
        drawable(env)
    except ValueError:
        return None
    counts = None
    for episode in episodes:
        sc = scene(env, episode)
        agents, marks = np.flatnonzero(sc.trail), np.flatnonzero(~sc.trail)
        if not len(agents) or not len(marks):
            return None
        last = sc.pos[-1]
        dist = np.linalg.norm(last[agents, None, :] - last[None, marks, :], axis=-1)  # [N, L]
        onehot = np.eye(len(marks))[dist.argmin(-1)]
        counts = onehot if counts is None else counts + onehot
    return None if counts is None else counts / len(episodes)


def _summary(values: np.ndarray) -> dict:
    """Per-member values and their aggregate (mean, median, IQM with 95% bootstrap CIs over members)."""
    values = np.asarray(values, np.float64)
    return {"values": values.tolist(), **aggregate(values)}


def emergent_report(policy: Policy, params: Any, episodes: int = 64, seed: int = 0,
                    normal: dict | None = None) -> dict:
    """{"communication": ..., "roles": ...} of every member (see the module doc); ``normal``: the members'
    rollouts when already played (``member_rollouts``)."""
    env = policy.env
    normal = member_rollouts(policy, params, episodes, seed) if normal is None else normal
    members = np.asarray(normal["valid"]).shape[0]
    valid = np.asarray(normal["valid"])  # bool[P, F, E]
    returns = _returns(normal["rewards"], valid)  # {team: [P, E]}
    names = agent_names(_unwrapped(env))  # every team, fixed ones too: the agent axis of messages
    report: dict[str, Any] = {"episodes": episodes, "members": members}
    comm: dict[str, Any] = {}
    said = messages_said(env, normal["states"])
    if said is not None:
        _, tokens, speaking = said  # tokens i32[P, T, E, A]
        steps = valid[:, 1:]  # bool[P, T, E]
        private = private_info(normal["info"], len(speaking))  # i32[P, T, E, A] or None
        entropy, mi = {}, {}
        for a in np.flatnonzero(speaking):
            if (tokens[..., a] < 0).all():
                continue  # continuous messages: no tokens
            entropy[names[a]] = _summary([entropy_bits(np.bincount(tokens[m, ..., a][steps[m]] + 1))
                                          for m in range(members)])
            if private is not None:
                mi[names[a]] = _summary([mutual_information_bits(tokens[m, ..., a][steps[m]],
                                                                 private[m, ..., a][steps[m]])
                                         for m in range(members)])
        if entropy:
            comm["message_entropy"] = entropy
        if mi:
            comm["message_mi"] = mi
    found = causal_channel(env)
    if found is not None:
        receivers = [t for t in found[0] if t in returns]  # the teams whose rewards the rollout holds
        random = member_rollouts(policy, params, episodes, seed, randomised=True)
        random_returns = _returns(random["rewards"], np.asarray(random["valid"]))
        heard = {t: returns[t].mean(-1) for t in receivers}
        heard_random = {t: random_returns[t].mean(-1) for t in receivers}
        comm["receivers"] = receivers
        comm["return"] = _summary(sum(heard.values()))
        comm["return_randomised"] = _summary(sum(heard_random.values()))
        comm["causal_value"] = _summary(sum(heard.values()) - sum(heard_random.values()))
        comm["causal_value_by_team"] = {t: _summary(returns[t].mean(-1) - random_returns[t].mean(-1))
                                        for t in returns}
    if comm:
        report["communication"] = comm
    per_member = []
    for m in range(members):
        arrays = jax.tree.map(lambda x: x[m], normal)
        matrix = roles(env, cut_episodes(arrays))
        if matrix is None:
            break
        per_member.append(matrix)
    if per_member:
        matrices = np.stack(per_member)  # [P, N, L]
        report["roles"] = {"frequency": matrices.tolist(), "mean": matrices.mean(0).tolist(),
                           "role_consistency": _summary(matrices.max(-1).mean(-1))}
    return report


def write_report(run_dir: str | Path, report: dict) -> Path:
    """Add ``report``'s "communication" and "roles" (and "emergent_episodes") to ``RUN_DIR/results.json``."""
    results = read_results(run_dir)  # a damaged one is named, never overwritten
    path = Path(run_dir) / RESULTS_FILE
    for key in ("communication", "roles"):
        results.pop(key, None)
        if key in report:
            results[key] = report[key]
    results["emergent_episodes"] = report["episodes"]
    results["emergent_checkpoint"] = report.get("checkpoint")  # which parameters: the final ones, or a fallback
    write_json(path, results)
    return path


def format_report(report: dict) -> str:
    """A few lines a person reads: means with 95% CIs over members."""
    def fmt(s):
        return f"{s['mean']:.3f} [{s['mean_lo']:.3f}, {s['mean_hi']:.3f}]"

    lines = [f"{report['episodes']} greedy episodes x {report['members']} member(s):"]
    comm = report.get("communication", {})
    for name, s in comm.get("message_entropy", {}).items():
        mi = comm.get("message_mi", {}).get(name)
        lines.append(f"  {name}: message entropy {fmt(s)} bits" + (f", MI with its goal {fmt(mi)} bits" if mi else ""))
    if "causal_value" in comm:
        lines.append(f"  receivers {comm['receivers']}: return {fmt(comm['return'])}, with random messages "
                     f"{fmt(comm['return_randomised'])}")
        lines.append(f"  causal value of the channel {fmt(comm['causal_value'])}")
        if len(comm.get("causal_value_by_team", {})) > 1:
            lines.append("  by team: " + ", ".join(f"{t} {fmt(s)}" for t, s in comm["causal_value_by_team"].items()))
    if "roles" in report:
        mean = np.asarray(report["roles"]["mean"])
        lines.append("  roles (share of episodes each agent ends nearest each landmark, mean over members):")
        lines += [f"    agent {i}: " + " ".join(f"{v:.2f}" for v in row) for i, row in enumerate(mean)]
        lines.append(f"  role consistency {fmt(report['roles']['role_consistency'])} (1: fixed roles, "
                     f"{1 / mean.shape[1]:.2f}: none)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# Export: npz and PNG
# ----------------------------------------------------------------------------------------------------
def trajectories(env, arrays: dict) -> dict[str, np.ndarray]:
    """The npz contents (module doc) of a rollout of ``env`` (``rollout_arrays`` output on the host, one
    member's: leaves [F, E, ...])."""
    valid = np.asarray(arrays["valid"])  # [F, E]
    F, E = valid.shape
    out: dict[str, np.ndarray] = {"valid": valid.T, "length": valid.sum(0).astype(np.int32) - 1}
    try:
        drawable(env)
        scenes = [scene(env, ep) for ep in cut_episodes(arrays)]
    except ValueError:
        scenes = []
    if scenes:
        k = scenes[0].pos.shape[1]
        pos = np.full((E, F, k, 2), np.nan, np.float32)
        for e, sc in enumerate(scenes):
            pos[e, :sc.num_frames] = sc.pos
        out.update(positions=pos, entity_is_agent=np.asarray(scenes[0].trail),
                   entity_color=np.asarray(scenes[0].color))
    steps = valid[1:].T  # [E, T]
    mask = lambda x: np.where(steps.reshape(steps.shape + (1,) * (x.ndim - 2)), x, 0)  # noqa: E731
    for t, a in arrays["actions"].items():
        out[f"actions_{t}"] = mask(np.swapaxes(np.asarray(a), 0, 1))
    for t, r in arrays["rewards"].items():
        out[f"rewards_{t}"] = mask(np.swapaxes(np.asarray(r)[1:], 0, 1))
        out[f"returns_{t}"] = out[f"rewards_{t}"].sum((1, 2))
    said = messages_said(env, arrays["states"])
    if said is not None:
        messages, tokens, _ = said
        out["messages"] = mask(np.swapaxes(messages, 0, 1))
        out["message_tokens"] = np.where(steps[..., None], np.swapaxes(tokens, 0, 1), -1).astype(np.int32)
    private = private_info(arrays["info"], len(agent_names(_unwrapped(env))))
    if private is not None:
        out["private"] = np.swapaxes(private, 0, 1).astype(np.int32)
    return out


def plot_trajectories(data: dict[str, np.ndarray], path: str | Path, title: str = "", max_episodes: int = 4) -> Path:
    """Each agent's path (its own colour, a dot at the start, a cross at the end) over the landmarks, one panel
    per episode (the first ``max_episodes``), from ``trajectories``' output; a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if "positions" not in data:
        raise ValueError("this environment has no render scene, so no positions to plot")
    pos, agent, length = data["positions"], data["entity_is_agent"], data["length"]
    n = min(max_episodes, len(pos))
    fig = Figure(figsize=(3.2 * n, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf"]
    for e in range(n):
        ax = fig.add_subplot(1, n, e + 1)
        frames = pos[e, :length[e] + 1]
        for i, k in enumerate(np.flatnonzero(agent)):
            c = palette[i % len(palette)]
            ax.plot(frames[:, k, 0], frames[:, k, 1], color=c, lw=1.5, label=f"agent {i}" if e == 0 else None)
            ax.plot(*frames[0, k], "o", color=c, ms=4)
            ax.plot(*frames[-1, k], "x", color=c, ms=6)
        for k in np.flatnonzero(~agent):
            ax.plot(*frames[-1, k], "s", color=str(data["entity_color"][k]), ms=6, mec="k", mew=0.5)
        centre = (np.nanmax(frames, (0, 1)) + np.nanmin(frames, (0, 1))) / 2
        half = np.nanmax(np.nanmax(frames, (0, 1)) - np.nanmin(frames, (0, 1))) / 2 * 1.1 + 1e-3
        ax.set_xlim(centre[0] - half, centre[0] + half), ax.set_ylim(centre[1] - half, centre[1] + half)
        ax.set_aspect("equal")
        ax.set_xticks([]), ax.set_yticks([])
        ret = sum(v[e] for k, v in data.items() if k.startswith("returns_"))
        ax.set_title(f"episode {e}: return {ret:.1f}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    if n:
        fig.legend(loc="lower center", ncol=min(int(agent.sum()), 10), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path)
    return Path(path)


def rollout_run(run_dir: str | Path, episodes: int = 64, out: str | Path | None = None, png: str | Path | None = None,
                member: int = 0, seed: int = 0, write_results: bool = True, **load_kwargs: Any) -> dict:
    """``jmarl rollout``: play ``episodes`` greedy episodes of every member of the run; write member ``member``'s
    trajectories to ``out`` (.npz) and its trajectory plot to ``png`` (default: ``out`` with .png); measure what
    emerged (``emergent_report``) and add it to ``RUN_DIR/results.json`` (unless ``write_results`` is False).
    Returns the report."""
    if episodes < 1:
        raise ConfigError(f"--episodes {episodes}: must be at least 1")
    if out is not None and Path(out).suffix != ".npz":
        raise ConfigError(f"--out {out}: trajectories are written as an .npz file")
    if write_results:
        read_results(run_dir)  # checked before anything is loaded or played: a damaged one is named
    policy, params = load_members(run_dir, **load_kwargs)
    members = jax.tree.leaves(params)[0].shape[0]
    if not 0 <= member < members:
        raise ConfigError(f"--member {member}: the run in {run_dir} has members 0..{members - 1}")
    normal = member_rollouts(policy, params, episodes, seed)
    report = emergent_report(policy, params, episodes, seed, normal=normal)
    report["checkpoint"] = None if policy.checkpoint is None else policy.checkpoint.name
    if out is not None:
        data = trajectories(policy.env, jax.tree.map(lambda x: x[member], normal))
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out, **data)
        report["npz"] = str(out)
        if "positions" in data:
            png = Path(out).with_suffix(".png") if png is None else png
            report["png"] = str(plot_trajectories(data, png, f"{policy.resolved.algo} on {policy.resolved.env} "
                                                               f"(member {member})"))
    if write_results:
        write_report(run_dir, report)
    return report
