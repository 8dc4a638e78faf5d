"""SMAX throughput: jmarl's SMAX against JaxMARL's HeuristicEnemySMAX, same process, interleaved.

Both run random *valid* actions (sampled from the availability masks: jmarl's TimeStep carries them,
JaxMARL computes them with ``get_avail_actions``), auto-reset on, and consume the observations, global
state and rewards (summed into a checksum in the scan carry, so XLA cannot drop the physics). One env
step = every ally acting once (the heuristic enemies act inside the step). Each row times jmarl and
JaxMARL alternately ``--repeats`` times and reports medians and the ratio of medians.

    python scripts/bench_smax.py                       # 3m and 2s3z at 1, 64, 1024, 8192 envs
    python scripts/bench_smax.py --scenarios 3m --envs 1024 --repeats 5
    python scripts/bench_smax.py --write               # also rewrite docs/benchmarks.md's SMAX section
    python scripts/bench_smax.py --learning            # only rewrite its PPO win-rate table (docs/results.jsonl)
    python scripts/bench_smax.py --enemy-rules RUN_DIR  # a trained run against both enemy advance rules
    python scripts/bench_smax.py --scripted 5m_vs_6m    # scripted allies vs each env's scripted enemy

(scripts/bench_envs.py holds the generic pairs; SMAX has its own script because its protocol samples
valid actions from masks and compares several scenarios of one env.)
"""
from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jmarl
from benchlib import write_section
from bench_envs import load, machine  # scripts/ is on sys.path when run as a script

SECTION = "## SMAX throughput"
LEARNING_SECTION = "## Recurrent PPO on SMAX (win rate)"
ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
STEP_BUDGET = {1: 2000, 64: 30_000, 1024: 150_000, 8192: 400_000}  # env steps per timed call


def jmarl_runner(scenario: str, num_envs: int, num_steps: int, **config):
    """A jitted ``run(key) -> checksum`` of ``num_steps`` vmapped AutoReset(SMAX) steps."""
    env = jmarl.AutoReset(jmarl.make("smax", scenario=scenario, **config))

    def run(key):
        k_reset, key = jax.random.split(key)
        ts, state = jax.vmap(env.reset)(jax.random.split(k_reset, num_envs))

        def body(carry, _):
            ts, state, key, acc = carry
            key, k_act, k_step = jax.random.split(key, 3)
            avail = ts.avail_actions["allies"]  # [E, N, A]
            actions = jax.random.categorical(k_act, jnp.where(avail, 0.0, -jnp.inf)).astype(jnp.int32)
            ts, state = jax.vmap(env.step)(jax.random.split(k_step, num_envs), state, {"allies": actions})
            acc = acc + jnp.sum(ts.obs["allies"]) + jnp.sum(ts.global_state) + jnp.sum(ts.reward["allies"])
            return (ts, state, key, acc), None

        (_, _, _, acc), _ = jax.lax.scan(body, (ts, state, key, jnp.zeros(())), length=num_steps)
        return acc

    return jax.jit(run)


def jaxmarl_runner(scenario: str, num_envs: int, num_steps: int):
    """The same loop for JaxMARL's HeuristicEnemySMAX (its ``step`` auto-resets)."""
    from jaxmarl.environments.smax import HeuristicEnemySMAX, map_name_to_scenario

    env = HeuristicEnemySMAX(scenario=map_name_to_scenario(scenario))
    agents = env.agents

    def run(key):
        k_reset, key = jax.random.split(key)
        obs, state = jax.vmap(env.reset)(jax.random.split(k_reset, num_envs))

        def body(carry, _):
            obs, state, key, acc = carry
            key, k_act, k_step = jax.random.split(key, 3)
            avail = jax.vmap(env.get_avail_actions)(state)
            avail = jnp.stack([avail[a] for a in agents], 1)  # [E, N, A]
            actions = jax.random.categorical(k_act, jnp.where(avail, 0.0, -jnp.inf)).astype(jnp.int32)
            actions = {a: actions[:, i] for i, a in enumerate(agents)}
            obs, state, reward, _, _ = jax.vmap(env.step)(jax.random.split(k_step, num_envs), state, actions)
            acc = acc + sum(jnp.sum(obs[a]) + jnp.sum(reward[a]) for a in agents) + jnp.sum(obs["world_state"])
            return (obs, state, key, acc), None

        (_, _, _, acc), _ = jax.lax.scan(body, (obs, state, key, jnp.zeros(())), length=num_steps)
        return acc

    return jax.jit(run)


def time_call(fn, key) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(key))
    return time.perf_counter() - start


def bench(scenario: str, num_envs: int, repeats: int, runners: dict) -> dict[str, float]:
    """Median env steps/s per runner; the runners are timed in turn, alternating the order."""
    num_steps = max(STEP_BUDGET.get(num_envs, 100_000) // num_envs, 10)
    fns = {name: make(scenario, num_envs, num_steps) for name, make in runners.items()}
    key = jax.random.key(0)
    for fn in fns.values():
        time_call(fn, key)  # compile and warm up
    times = {name: [] for name in fns}
    for r in range(repeats):
        for name in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            times[name].append(time_call(fns[name], jax.random.fold_in(key, r)))
    return {name: num_envs * num_steps / float(np.median(t)) for name, t in times.items()}


def learning_section() -> str:
    """The win-rate table of recurrent IPPO/MAPPO on SMAX, from the rows `jmarl reproduce jmarl_smax` wrote
    to docs/results.jsonl (this trains nothing)."""
    from jmarl.train.algorithms import resolve
    from jmarl.tools.reproduce import read_rows, render_comparison

    rows = [r for r in read_rows(ROOT / "docs" / "results.jsonl") if r["env"] in ("smax", "jaxmarl:HeuristicEnemySMAX")]
    ippo, mappo = ({**d["config"], **d["hparams"]} for d in (resolve(a, "smax").to_dict() for a in ("ippo", "mappo")))
    text = lambda v: f"{v:g}" if isinstance(v, float) else str(v)

    def setting(key: str) -> str:  # one value where the algorithms agree, both where they differ
        i, m = text(ippo[key]), text(mappo[key])
        return f"{key}={i}" if i == m else f"{key}={i} (IPPO) / {m} (MAPPO)"

    preset = ", ".join(setting(k) for k in ("num_envs", "num_steps", "num_epochs", "num_minibatches", "hidden_dim",
                                            "activation", "lr", "ent_coef", "clip_eps"))
    from jmarl.algos.ppo import PRESETS
    # Keys qualified by a map ("smax[scenario=5m_vs_6m]", "ippo/smax[...]"): "; scenario=5m_vs_6m takes lr=..."
    per_map = "".join(f"; {key[key.index('[') + 1:-1]}{' (' + key.split('/')[0].upper() + ')' if '/' in key else ''} "
                      "takes " + ", ".join(f"{k}={text(v)}" for k, v in over.items())
                      for key, over in PRESETS.items() if key.split("[")[0].endswith("smax") and "[" in key)
    machines = "; ".join(sorted({r["hardware"]["machine"] for r in rows}))
    table = render_comparison(rows, "jmarl_smax", ("ippo", "mappo"))
    jaxmarl_table = render_comparison(rows, "jaxmarl_smax", ("ippo", "mappo"))
    adapted_table = render_comparison(rows, "jaxmarl_env_smax", ("ippo", "mappo"))
    pqn_table = render_comparison(rows, "jmarl_smax", ("pqn_vdn",))
    pqn = {**(d := resolve("pqn_vdn", "smax").to_dict())["config"], **d["hparams"]}
    pqn_preset = (f"{pqn['num_envs']} envs x {pqn['num_steps']} steps, {pqn['num_epochs']} epochs x "
                  f"{pqn['num_minibatches']} minibatches, Q(lambda={pqn['q_lambda']:g}), lr {pqn['lr']:g}, rewards x"
                  f"{pqn['reward_scale']:g}, epsilon {pqn['eps_start']:g} -> {pqn['eps_finish']:g} over the first "
                  f"{pqn['eps_anneal_frac']:.0%} of the run, GRU width {pqn['hidden_dim']} ({pqn['activation']})")
    return f"""{LEARNING_SECTION}

Greedy win rate against the scripted enemy after the budget (final evaluation: 320 episodes per seed; jmarl's
enemy advances on the closest foe, "advance=random_visible" is JaxMARL's rule: see below), all
seeds of a row in one program, with jmarl's SMAX preset of `algos/ppo.py` ({preset}{per_map}; GRU actor and critic, lr
annealed to 0 over the run; IPPO's critic sees the agent's observation, MAPPO's the global state). Published:
JaxMARL's recurrent IPPO / MAPPO after 1e7 steps, read off its paper's plot. The issue's bar: 2s3z >= 95% and
at least JaxMARL's figure everywhere. Rows are the headline row per scenario and algorithm in
[docs/results.md](results.md) (machine, wall time and command there); "(of 1.0e7)" marks a budget cut short.

- Command (per row): `jmarl reproduce jmarl_smax --seeds 2 --only ALGO/smax_SCENARIO`; this table:
  `python scripts/bench_smax.py --learning`
- Hardware: {machines}

{table}

PQN-VDN (`jmarl train pqn_vdn`, `algos/qlearning.py` with `algo_variant=pqn`) at its `smax` preset
({pqn_preset}). Published: the PQN paper reports PQN-VDN's win-rate IQM over its SMAX maps (about 0.95 after
1e7 steps), not a figure per map.
Command (per row): `jmarl reproduce jmarl_smax --seeds 2 --only pqn_vdn/smax_SCENARIO`.

{pqn_table}

JaxMARL's own hyperparameters (its `ippo_rnn_smax.yaml` / `mappo_homogenous_rnn_smax.yaml`: 128 envs, width 128,
relu, IPPO lr 4e-3 and clip 0.05, MAPPO lr 2e-3) in jmarl's SMAX, with its enemy rule and last-action
observations: JaxMARL's settings, in jmarl's game, against its figures.
Command (per row): `jmarl reproduce jaxmarl_smax --seeds 2 --only ALGO/smax_SCENARIO`.

{jaxmarl_table}

The game, not the algorithm: jmarl's IPPO and MAPPO at exactly the settings of the first table, trained on
JaxMARL's own `HeuristicEnemySMAX` through the adapter (`--env jaxmarl:HeuristicEnemySMAX`; its defaults are its
baselines' environment settings). A row here beside the same algorithm and map in the first table measures how
much of jmarl's figure is jmarl's SMAX.
Command (per row): `jmarl reproduce jaxmarl_env_smax --seeds 2 --only ALGO/jaxmarl:HeuristicEnemySMAX_SCENARIO`.

{adapted_table}
"""


def enemy_rules(run_dirs: list[str], episodes: int = 512) -> str:
    """Greedy win rate of every member of each trained SMAX run against the scripted enemy's two advance rules
    (jmarl's "closest", JaxMARL's "random_visible"), no retraining: does the rule change the outcome?"""
    from jmarl.train.load import load
    from jmarl.agents.rollout import evaluate_episodes

    lines = ["| run | member | advance=closest | advance=random_visible |", "|---|---:|---:|---:|"]
    for run_dir in run_dirs:
        for member in range(len(json.loads((Path(run_dir) / "config.json").read_text())["seeds"])):
            policy = load(run_dir, member)
            act = lambda params, hidden, ts, starts, key: policy.act(key, ts, hidden, starts)  # noqa: E731
            rates = []
            for advance in ("closest", "random_visible"):
                env = jmarl.AutoReset(jmarl.EpisodeStats(jmarl.make(
                    "smax", **{**policy.resolved.env_kwargs, "advance": advance})))
                run = jax.jit(lambda k: evaluate_episodes(env, act, None, policy.init_hidden(episodes), k, episodes))
                out = run(jax.random.key(0))
                rates.append(f"{float(out['eval/win_rate']):.0%} ({float(out['eval/length']):.0f} steps)")
            lines.append(f"| {run_dir} | {member} | {' | '.join(rates)} |")
            print(lines[-1], flush=True)
    return "\n".join(lines)


def scripted_matches(scenarios: list[str], episodes: int = 512) -> str:
    """Scripted allies against each env's scripted enemy, one episode per env from a fixed key: jmarl
    (both advance rules; allies choosing targets "closest", "random", "lowest_health") and JaxMARL
    (``HeuristicEnemySMAX``, allies driven by its own heuristic, "closest" and "random"). Same policies on
    both sides, so equal win rates and battle lengths say the two games are equally hard for them."""
    from jaxmarl.environments.smax import HeuristicEnemySMAX, map_name_to_scenario
    from jaxmarl.environments.smax.heuristic_enemy import create_heuristic_policy, get_heuristic_policy_initial_state

    def first_episode(step_fn, carry, hp0, max_steps: int) -> tuple[float, float, float, float]:
        """Win rate, mean length and damage dealt per step by the allies and by the enemies (health removed,
        summed over the other side's units, over the episode's steps; mean over episodes) of the first episode of
        each of ``episodes`` envs (no auto-reset). step_fn(key, carry) -> (carry, ended: bool[E], won: bool[E],
        (allies' health f32[E], enemies' health f32[E]) after the step); hp0: the same at the start."""
        def body(c, key):
            carry, done, won, length, hp = c
            carry, ended, won_now, hp_now = step_fn(key, carry)
            hp = jax.tree.map(lambda old, new: jnp.where(done, old, new), hp, hp_now)
            return (carry, done | ended, jnp.where(done, won, won_now), length + ~done, hp), None
        def run(carry, hp0):
            keys = jax.random.split(jax.random.key(1), max_steps + 1)  # every episode has ended by then
            zeros = jnp.zeros(episodes, bool)
            (_, _, won, length, hp), _ = jax.lax.scan(
                body, (carry, zeros, zeros, jnp.zeros(episodes, jnp.int32), hp0), keys)
            per_step = lambda before, after: ((before - after) / jnp.maximum(length, 1)).mean()  # noqa: E731
            return won.mean(), length.mean(), per_step(hp0[1], hp[1]), per_step(hp0[0], hp[0])
        return tuple(float(x) for x in jax.jit(run)(carry, hp0))

    def sides(health, alive, n):
        """(allies', enemies') health summed over living units, f32[E]: units 0..n-1 are the allies."""
        hp = jnp.where(alive, jnp.maximum(health, 0.0), 0.0)
        return hp[..., :n].sum(-1), hp[..., n:].sum(-1)

    def jmarl_match(scenario, mode, advance):
        env = jmarl.make("smax", scenario=scenario, advance=advance)

        def step(key, state):
            k_act, k_step = jax.random.split(key)
            act = jax.vmap(lambda k, s: env.heuristic_actions(k, s, "allies", mode))(
                jax.random.split(k_act, episodes), state)
            ts, state = jax.vmap(env.step)(jax.random.split(k_step, episodes), state, {"allies": act})
            return state, ts.terminated | ts.truncated, ts.info["won"], sides(state.health, state.health > 0, n)

        n = env.num_allies
        _, state = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), episodes))
        return first_episode(step, state, sides(state.health, state.health > 0, n), env.config.max_steps)

    def jaxmarl_match(scenario, mode):
        env = HeuristicEnemySMAX(scenario=map_name_to_scenario(scenario))
        policy, n = jax.vmap(create_heuristic_policy(env._env, 0, attack_mode=mode)), env.num_allies

        def step_one(key, carry):
            state, policy_state = carry
            k_act, k_step = jax.random.split(key)
            unit_obs = env._env.get_obs_unit_list(state.state)
            act, policy_state = policy(jax.random.split(k_act, n), policy_state,
                                       jnp.stack([unit_obs[a] for a in env.agents]))
            _, state, _, dones, _ = env.step_env(k_step, state, {a: act[i] for i, a in enumerate(env.agents)})
            alive = state.state.unit_alive
            return ((state, policy_state), dones["__all__"], jnp.any(alive[:n]) & ~jnp.any(alive[n:]),
                    sides(state.state.unit_health, alive, n))

        def step(key, carry):
            return jax.vmap(step_one)(jax.random.split(key, episodes), carry)

        _, state = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), episodes))
        policy_state = jax.tree.map(lambda *x: jnp.stack(x), *[get_heuristic_policy_initial_state()] * n)
        policy_state = jax.tree.map(lambda x: jnp.broadcast_to(x, (episodes, *x.shape)), policy_state)
        hp0 = sides(state.state.unit_health, state.state.unit_alive, n)
        return first_episode(step, (state, policy_state), hp0, env.max_steps)

    for scenario in scenarios:  # an unknown name fails here, with the valid ones, before any compiling
        jmarl.make("smax", scenario=scenario)
    lines = ["| scenario | game (advance rule, both teams) | allies' targets | win rate | battle length | "
             "damage per step: allies | enemies |", "|---|---|---|---:|---:|---:|---:|"]
    for scenario in scenarios:
        rows = [("JaxMARL (random_visible)", mode, lambda m=mode: jaxmarl_match(scenario, m))
                for mode in ("closest", "random")]
        rows += [(f"jmarl ({advance})", mode, lambda m=mode, a=advance: jmarl_match(scenario, m, a))
                 for advance in ("random_visible", "closest") for mode in ("closest", "random", "lowest_health")]
        for game, mode, match in rows:
            win, length, dealt, taken = match()
            lines.append(f"| {scenario} | {game} | {mode} | {win:.1%} | {length:.1f} | {dealt:.1f} | {taken:.1f} |")
            print(lines[-1], flush=True)
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="+", default=["3m", "2s3z"])
    parser.add_argument("--envs", nargs="+", type=int, default=[1, 64, 1024, 8192])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--micro-ticks", type=int, default=None, help="jmarl SMAX micro_ticks (default: its Config's)")
    parser.add_argument("--write", action="store_true", help=f"rewrite '{SECTION}' in {DOC}")
    parser.add_argument("--learning", action="store_true",
                        help=f"only rewrite '{LEARNING_SECTION}' in {DOC} from docs/results.jsonl (no timing)")
    parser.add_argument("--enemy-rules", nargs="+", metavar="RUN_DIR",
                        help="evaluate trained SMAX runs against both enemy advance rules (prints a table)")
    parser.add_argument("--scripted", nargs="+", metavar="SCENARIO",
                        help="scripted allies vs the scripted enemy in jmarl and JaxMARL (prints a table)")
    args = parser.parse_args()
    if args.scripted:
        print("\n" + scripted_matches(args.scripted))
        return
    if args.enemy_rules:
        print("\n" + enemy_rules(args.enemy_rules))
        return
    if args.learning:
        write_section(LEARNING_SECTION, learning_section())
        print(f"wrote '{LEARNING_SECTION}' in {DOC}")
        return
    config = {} if args.micro_ticks is None else {"micro_ticks": args.micro_ticks}
    runners = {"jmarl": lambda s, e, t: jmarl_runner(s, e, t, **config), "jaxmarl": jaxmarl_runner}
    load_before = load()
    lines = ["| scenario | num envs | jmarl steps/s | JaxMARL steps/s | jmarl / JaxMARL |", "|---|---:|---:|---:|---:|"]
    print(machine())
    for scenario in args.scenarios:
        for num_envs in args.envs:
            sps = bench(scenario, num_envs, args.repeats, runners)
            lines.append(f"| {scenario} | {num_envs} | {sps['jmarl']:.3g} | {sps['jaxmarl']:.3g} | "
                         f"{sps['jmarl'] / sps['jaxmarl']:.2f}x |")
            print(lines[-1], flush=True)
    table = "\n".join(lines)
    print("\n" + table)
    if args.write:
        flags = " ".join(f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                         for k, v in vars(args).items() if k != "write" and v != parser.get_default(k))
        write_section(SECTION, f"""{SECTION}

jmarl's SMAX (`envs/smax/`) against JaxMARL's `HeuristicEnemySMAX` on the same scenario: env steps per
second (one step of one env = every ally acts once; the scripted enemies act inside the step), random
valid actions (sampled from the availability masks), auto-reset on, observations, global state and
rewards consumed (a checksum in the scan carry). Same process, alternating, {args.repeats} repeats each;
medians and the ratio of medians. The machine is shared: read the ratio, not the absolute numbers.

- Machine: {machine()}; {load_before} at the start, {load()} at the end
- Date: {datetime.date.today().isoformat()}
- Command: `python scripts/bench_smax.py --write{(' ' + flags) if flags else ''}`
- jmarl SMAX config: {config or 'defaults'} (8 micro-ticks per step, as JaxMARL's 8 world steps)

{table}

What makes it fast on a CPU (each measured while building it, 3m at 1024 envs): pairwise geometry as
separate x and y arrays of [U, U] computed once per micro-tick (a trailing size-2 axis was ~1.8x slower
overall); who-attacks-whom as a [U, U] mask fixed for the step, so range checks and damage are
mask-multiplies and row sums (no gathers or scatter-adds, unlike JaxMARL's per-unit `vmap` + `cond` +
`scatter_add`); per-unit stats as XLA constants for fixed scenarios (a one-hot @ table product for
SMACv2's random types); the 8 micro-ticks as a rolled `lax.scan` (unrolled, XLA:CPU was 1.3x slower at
1024 envs and 3.5x slower at 1 env, and compiled slower); a reset that makes one RNG call (AutoReset
computes a reset every step); the scripted enemy reading the state's distances instead of decoding
observations. `micro_ticks=4` (ticks of 1/8 s) is a further ~1.3x with the same statistics within noise
(3m heuristic mirror win rate 0.51 vs 0.48, 2s3z 0.47 vs 0.48, episodes ~3% longer as cooldowns round up
to the coarser tick), but the default stays at 8 to match SC2's game loop and JaxMARL.

Same game, not bit-identical: unit stats, map, 8 ticks of 1/16 s per step, cooldown noise, centre-to-centre
ranges and the reward scale are JaxMARL's; jmarl clamps units at the map edge instead of killing them, its
scripted enemy advances on the closest living foe (JaxMARL's follows a random visible one), draws the
cooldown noise once per step rather than per tick, and resolves collisions from each tick's starting
positions (see the `envs/smax/env.py` docstring).
""")
        print(f"\nwrote '{SECTION}' in {DOC}")


if __name__ == "__main__":
    main()
