"""Communication and more agents (docs/communication.md): the cost of mpe_spread as agents grow, IPPO and MAPPO on
spread with 3, 5 and 10 agents, the native channels of speaker_listener and reference, and a learned 1-bit
channel on spread against training progress.

Each command keeps its measurements as JSON under ``--out`` (default runs/bench_comm) and trains into run
directories there, which a killed command resumes (``jmarl.train.run.train(resume=True)``; a finished run is
read, not retrained). ``write`` composes the sections of docs/benchmarks.md from whichever JSON files exist.

    python scripts/bench_comm.py scale                                   # speed and memory, N = 3, 5, 10
    python scripts/bench_comm.py spread --steps 10000000 --seeds 2       # IPPO, MAPPO vs random, heuristic
    python scripts/bench_comm.py comm --runs runs/comm/ippo_mpe_speaker_listener runs/comm/mappo_mpe_reference
    python scripts/bench_comm.py comm --steps 10000000 --seeds 2         # or train them here
    python scripts/bench_comm.py bit --steps 10000000 --seeds 2          # a checkpoint per chunk, measured
    python scripts/bench_comm.py trace --steps 10000000 --seeds 2        # speaker_listener, every checkpoint
    python scripts/bench_comm.py write                                   # docs/benchmarks.md (+ docs/img/)

``comm`` reads run directories in place and writes nothing into them (a run still training is measured at its
newest intact checkpoint, and says so).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import DOC, machine, write_section  # noqa: E402

SCALE_HEADING = "## mpe_spread as agents grow: speed and memory"
SPREAD_HEADING = "## mpe_spread with 3, 5 and 10 agents: IPPO and MAPPO against random and the heuristic"
COMM_HEADING = "## Communication: speaker_listener and reference (MPE's own channels)"
BIT_HEADING = "## mpe_spread with a learned 1-bit channel: messages against training progress"
BIT_PNG = "spread_1bit.png"
COMM_SET = ["num_envs=128", "num_steps=50", "num_minibatches=4", "lr=0.0025"]  # spread's PPO preset sizes
TRACE_HEADING = "## speaker_listener: the channel over training (when a protocol forms)"
TRACE_PNG = "speaker_listener_trace.png"


# ----------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------
def _save(out: Path, name: str, data: Any) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float))
    os.replace(tmp, out / name)


def _load(out: Path, name: str) -> Any:
    path = out / name
    return json.loads(path.read_text()) if path.exists() else None


def _cmd() -> str:
    return "python scripts/bench_comm.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _kv(pairs: list[str]) -> dict:
    return dict(kv.split("=", 1) for kv in pairs)


def _stamp() -> dict:
    return {"date": datetime.date.today().isoformat(), "machine": machine(), "load": os.getloadavg()[0],
            "command": _cmd()}


def _ci(s: dict | None, digits: int = 1) -> str:
    if not s or s.get("mean") is None:
        return "-"
    return f"{s['mean']:.{digits}f} [{s['mean_lo']:.{digits}f}, {s['mean_hi']:.{digits}f}]"


def _header(heading: str, data: dict, commands: list[str], *extra: str) -> list[str]:
    """A section's first lines: heading, machine, date, ``extra`` lines, then each distinct command."""
    return [heading, "", f"- Machine: {data['machine']}", f"- Date: {data['date']}", *extra,
            *[f"- Command: `{c}`" for c in dict.fromkeys(commands)], ""]


def _train(algo: str, env: str, overrides: dict, seeds: int, run_dir: Path, keep_checkpoints: int = 3) -> dict:
    """Train (or resume, or read when finished) ``seeds`` seeds of ``algo`` in ``run_dir``; the results."""
    from jmarl.train.algorithms import resolve
    from jmarl.train.run import Population, train

    resolved = resolve(algo, env, overrides)
    pop = Population.grid([resolved.hparams], list(range(seeds)))
    load0 = os.getloadavg()[0]
    results = train(resolved, pop, run_dir, resume=True, quiet=True, wandb="disabled",
                    keep_checkpoints=keep_checkpoints)
    results["load"] = [load0, os.getloadavg()[0]]
    return results


# ----------------------------------------------------------------------------------------------------
# scale: env steps/s and compiled memory of env stepping and of one PPO update, N = 3, 5, 10
# ----------------------------------------------------------------------------------------------------
def _best_seconds(fn, *args, repeats: int = 3, rounds: int = 3) -> tuple[float, float]:
    """(wall, CPU) seconds per call, each the best of ``rounds`` rounds of ``repeats`` calls. On a shared machine
    the CPU seconds (this process, every thread) move less with other jobs' load than the wall-clock."""
    jax.block_until_ready(fn(*args))  # warm
    wall = cpu = np.inf
    for _ in range(rounds):
        t, c = time.perf_counter(), time.process_time()
        for _ in range(repeats):
            jax.block_until_ready(fn(*args))
        wall = min(wall, (time.perf_counter() - t) / repeats)
        cpu = min(cpu, (time.process_time() - c) / repeats)
    return wall, cpu


def _env_stepping(num_agents: int, num_envs: int, num_steps: int) -> dict:
    """A jitted scan of ``num_steps`` vmapped steps of ``num_envs`` auto-resetting envs with random actions;
    observations and rewards feed a checksum, else XLA would drop the physics."""
    import jmarl
    from jmarl.core.wrappers import AutoReset

    env = AutoReset(jmarl.make("mpe_spread", num_agents=num_agents))

    def run(key):
        k_reset, key = jax.random.split(key)
        _, state = jax.vmap(env.reset)(jax.random.split(k_reset, num_envs))

        def body(carry, key):
            state, checksum = carry
            k_act, k_env = jax.random.split(key)
            actions = {"agents": jax.random.randint(k_act, (num_envs, num_agents), 0, 5, jnp.int32)}
            ts, state = jax.vmap(env.step)(jax.random.split(k_env, num_envs), state, actions)
            return (state, checksum + ts.obs["agents"].sum() + ts.reward["agents"].sum()), None

        (_, checksum), _ = jax.lax.scan(body, (state, jnp.zeros(())), jax.random.split(key, num_steps))
        return checksum

    key = jax.random.PRNGKey(0)
    compiled = jax.jit(run).lower(key).compile()
    seconds, cpu = _best_seconds(compiled, key)
    return {"num_envs": num_envs, "num_steps": num_steps, "seconds": seconds, "cpu_seconds": cpu,
            "steps_per_second": num_envs * num_steps / seconds, "steps_per_cpu_second": num_envs * num_steps / cpu,
            "temp_bytes": compiled.memory_analysis().temp_size_in_bytes,
            "obs_size": env.teams["agents"].obs_shape[0]}


def _ppo_update(algo: str, num_agents: int, updates: int) -> dict:
    """``updates`` PPO updates at the preset sizes of ``algo`` on spread with ``num_agents`` (one chunk, plus
    its 8-episode greedy evaluation), compiled once; seconds per update and the chunk's temporary memory."""
    import dataclasses

    import jmarl
    from jmarl.algos.ppo import hparams_as_arrays, make_train
    from jmarl.train.algorithms import resolve

    resolved = resolve(algo, "mpe_spread", {"env.num_agents": num_agents})
    cfg = resolved.config
    cfg = dataclasses.replace(cfg, total_timesteps=updates * cfg.num_envs * cfg.num_steps, num_evals=1,
                              eval_episodes=8)
    trainer = make_train(cfg, jmarl.make("mpe_spread", num_agents=num_agents))
    hp = hparams_as_arrays(resolved.hparams)
    runner = jax.jit(trainer.init)(jax.random.PRNGKey(0), hp)
    t = time.process_time()
    compiled = jax.jit(trainer.run_chunk).lower(runner, hp).compile()
    compile_cpu = time.process_time() - t
    seconds, cpu = _best_seconds(compiled, runner, hp, repeats=1, rounds=3)
    seconds, cpu = seconds / updates, cpu / updates
    mem = compiled.memory_analysis()
    return {"algo": algo, "num_envs": cfg.num_envs, "num_steps": cfg.num_steps, "hidden_dim": cfg.hidden_dim,
            "num_layers": cfg.num_layers, "epochs": cfg.num_epochs, "minibatches": cfg.num_minibatches,
            "seconds_per_update": seconds, "cpu_seconds_per_update": cpu,
            "steps_per_second": cfg.num_envs * cfg.num_steps / seconds,
            "temp_bytes": mem.temp_size_in_bytes, "argument_bytes": mem.argument_size_in_bytes,
            "compile_cpu_seconds": compile_cpu}


def scale(args) -> None:
    rows = []
    for n in args.agents:
        row = {"num_agents": n, "env": _env_stepping(n, args.num_envs, args.num_steps)}
        for algo in args.algos:
            row[algo] = _ppo_update(algo, n, args.updates)
        rows.append(row)
        print(json.dumps(row, default=float), flush=True)
    _save(Path(args.out), "scale.json", {"rows": rows, **_stamp()})


def compose_scale(data: dict) -> str:
    algos = [a for a in ("ippo", "mappo") if a in data["rows"][0]]
    first, env0 = (data["rows"][0][algos[0]] if algos else None), data["rows"][0]["env"]
    lines = [SCALE_HEADING, "", f"- Machine: {data['machine']}; load average {data['load']:.1f} at the end (shared "
             "with other jobs: wall-clock speeds carry that noise, CPU seconds less, memory none)",
             f"- Date: {data['date']}", f"- Command: `{data['command']}`", "",
             f"Env stepping: {env0['num_envs']} auto-resetting envs x {env0['num_steps']} steps with random actions "
             "in one jitted scan (observations and rewards consumed), best of 3 rounds. "
             + (f"PPO: one chunk of updates at the `mpe_spread` preset sizes ({first['num_envs']} envs x "
                f"{first['num_steps']} steps, {first['epochs']} epochs, hidden {first['hidden_dim']} x "
                f"{first['num_layers']}, minibatches as the `mpe_spread[num_agents=N]` presets set them: column mb) "
                "plus an 8-episode greedy evaluation, best of 3 rounds, per update; env steps/s of "
                "training is the update's env steps over its wall-clock. " if first else "")
             + "Memory: XLA's compiled temporary buffers (`memory_analysis().temp_size_in_bytes`).", "",
             "| N agents | obs size | env steps/s | env steps per CPU s | env temp memory | mb | "
             + " | ".join(f"{a}: s/update (CPU s) | {a}: env steps/s | {a}: temp memory" for a in algos) + " |",
             "|---:|---:|---:|---:|---:|---:|" + "---:|---:|---:|" * len(algos)]
    for r in data["rows"]:
        e = r["env"]
        cells = [f"{r[a]['seconds_per_update']:.2f} ({r[a]['cpu_seconds_per_update']:.2f}) | "
                 f"{r[a]['steps_per_second']:.3g} | {r[a]['temp_bytes'] / 2**20:.1f} MiB" for a in algos]
        mb = "/".join(dict.fromkeys(str(r[a]["minibatches"]) for a in algos)) or "-"
        lines.append(f"| {r['num_agents']} | {e['obs_size']} | {e['steps_per_second']:.3g} | "
                     f"{e['steps_per_cpu_second']:.3g} | {e['temp_bytes'] / 2**20:.1f} MiB | {mb} | "
                     + " | ".join(cells) + " |")
    lo, hi = data["rows"][0], data["rows"][-1]
    if hi["num_agents"] > lo["num_agents"]:  # how the costs grow, in the measured rows' own numbers
        ratio = hi["num_agents"] / lo["num_agents"]
        grow = lambda a, b: np.log(b / a) / np.log(ratio)  # noqa: E731  the exponent k of N^k
        env_cost = lo["env"]["steps_per_cpu_second"] / hi["env"]["steps_per_cpu_second"]
        parts = [f"From N = {lo['num_agents']} to {hi['num_agents']} ({ratio:.1f}x the agents) an env step costs "
                 f"{env_cost:.1f}x the CPU (about N^{grow(1, env_cost):.1f}: the contact forces and observations are "
                 "pairwise)"]
        for a in algos:
            cpu = hi[a]["cpu_seconds_per_update"] / lo[a]["cpu_seconds_per_update"]
            memory = hi[a]["temp_bytes"] / lo[a]["temp_bytes"]
            parts.append(f"{a.upper()}'s update {cpu:.1f}x the CPU and {memory:.1f}x the memory")
        lines += ["", "; ".join(parts) + "."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------
# spread: IPPO, MAPPO on N = 3, 5, 10 against random actions and the assignment heuristic
# ----------------------------------------------------------------------------------------------------
METRICS = ("covered", "collisions", "final_distance")


def scripted_episodes(num_agents: int, who: str, episodes: int, seed: int = 0) -> dict:
    """Team return and spread's episode metrics of ``episodes`` whole episodes played by ``who`` ("random": uniform
    moves; "heuristic": the env's assignment, agent i to landmark i), as the greedy evaluation measures them
    (``EpisodeStats`` at the episode's last step): {"return": f32[E], name: f32[E]}."""
    import jmarl
    from jmarl.core.wrappers import EpisodeStats

    env = EpisodeStats(jmarl.make("mpe_spread", num_agents=num_agents))
    base = env.unwrapped

    def run(key):
        k_reset, k_run = jax.random.split(key)
        ts, state = jax.vmap(env.reset)(jax.random.split(k_reset, episodes))

        def step(carry, key):
            ts, state = carry
            k_act, k_env = jax.random.split(key)
            if who == "heuristic":
                actions = {"agents": jax.vmap(lambda s: base.heuristic_actions(k_act, s.env_state))(state)}
            else:
                actions = jax.vmap(env.sample_actions)(jax.random.split(k_act, episodes), ts.avail_actions)
            return jax.vmap(env.step)(jax.random.split(k_env, episodes), state, actions), None

        (ts, _), _ = jax.lax.scan(step, (ts, state), jax.random.split(k_run, env.max_steps))
        return {"return": ts.info["episode_return"]["agents"].sum(-1), **ts.info["episode_metrics"]}

    return jax.device_get(jax.jit(run)(jax.random.PRNGKey(seed)))


def _episode_summary(values: np.ndarray) -> dict:
    """Mean with a 95% bootstrap CI over episodes (``jmarl.train.stats.aggregate``)."""
    from jmarl.train.stats import aggregate

    return aggregate(np.asarray(values, np.float64))


def spread(args) -> None:
    out = Path(args.out)
    done = _load(out, "spread.json") or {"runs": [], "baselines": []}
    for n in args.agents:
        for algo in args.algos:
            label = f"{algo} N={n}"
            overrides = {"env.num_agents": n, "total_timesteps": args.steps, **_kv(args.set)}
            t0 = time.perf_counter()
            run_dir = out / "spread" / f"{algo}_n{n}"
            results = _train(algo, "mpe_spread", overrides, args.seeds, run_dir)
            config = results["configs"][0]
            steps, _ = _checkpoint_steps(run_dir, None)
            run = {"label": label, "algo": algo, "num_agents": n, "overrides": overrides, "seeds": args.seeds,
                   "env_steps": steps,
                   "return": results["aggregate"], "per_seed": config.get("returns", config["scores"]),
                   "metrics": {k: config["metrics"][k] for k in METRICS},
                   "final_episodes": results["final_episodes"],
                   "steps_per_second": results["env_steps_per_second"], "wall_seconds": time.perf_counter() - t0,
                   "load": results.get("load"), "command": _cmd()}
            done["runs"] = [r for r in done["runs"] if r["label"] != label] + [run]
            print(f"{label:12s} return {_ci(run['return'])}  covered {_ci(run['metrics']['covered'], 2)}", flush=True)
            _save(out, "spread.json", {**done, **_stamp()})
        # As many episodes as a learned row's final evaluation (per seed x seeds), unless told.
        finals = [r["final_episodes"] * r["seeds"] for r in done["runs"] if r["num_agents"] == n]
        episodes = args.baseline_episodes or (max(finals) if finals else 640)
        for who in ("random", "heuristic"):
            got = scripted_episodes(n, who, episodes)
            row = {"label": f"{who} N={n}", "who": who, "num_agents": n, "episodes": episodes,
                   "return": _episode_summary(got["return"]),
                   "metrics": {k: _episode_summary(got[k]) for k in METRICS}}
            done["baselines"] = [r for r in done["baselines"] if r["label"] != row["label"]] + [row]
            print(f"{row['label']:12s} return {_ci(row['return'])}  covered {_ci(row['metrics']['covered'], 2)}",
                  flush=True)
        _save(out, "spread.json", {**done, **_stamp()})


def compose_spread(data: dict) -> str:
    runs = sorted(data["runs"], key=lambda r: (r["num_agents"], r["algo"]))
    lines = [*_header(SPREAD_HEADING, data, [r["command"] for r in runs]),
             "Greedy evaluation after the budget (the final evaluation: "
             f"{runs[0]['final_episodes'] if runs else '-'} episodes per seed); learned rows: mean with 95% bootstrap "
             "CI over seeds. Random actions and the env's heuristic (a greedy assignment of agents to landmarks, each "
             "steering with a brake; envs/mpe/spread.py) are played on as many episodes, CI over episodes. Return: "
             "the team's (summed over agents, 25 steps); "
             "covered: landmarks with an agent within 0.1 at the end (of N); collisions: touching pairs summed over "
             "the steps; final distance: mean over landmarks of the nearest agent's distance at the end. Settings: "
             "the `mpe_spread` presets of algos/ppo.py (with their `mpe_spread[num_agents=N]` refinements).", "",
             "| N | who | env steps | seeds | return (95% CI) | covered | collisions | final distance | "
             "env steps/s |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    by_n = sorted({r["num_agents"] for r in runs} | {b["num_agents"] for b in data["baselines"]})
    for n in by_n:
        for r in [r for r in runs if r["num_agents"] == n]:
            m = r["metrics"]
            lines.append(f"| {n} | {r['algo']} | {r['env_steps']:.2e} | {r['seeds']} | "
                         f"{_ci(r['return'])} | {_ci(m['covered'], 2)} | {_ci(m['collisions'], 1)} | "
                         f"{_ci(m['final_distance'], 3)} | {r['steps_per_second']:.3g} |")
        for b in [b for b in data["baselines"] if b["num_agents"] == n]:
            m = b["metrics"]
            lines.append(f"| {n} | {b['who']} | - | ({b['episodes']} episodes) | {_ci(b['return'])} | "
                         f"{_ci(m['covered'], 2)} | {_ci(m['collisions'], 1)} | {_ci(m['final_distance'], 3)} | - |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------
# comm: speaker_listener and reference runs, measured by jmarl rollout's analysis (read-only)
# ----------------------------------------------------------------------------------------------------
def _checkpoint_steps(run_dir: Path, checkpoint: Path | None) -> tuple[int | None, bool]:
    """(env steps of ``checkpoint``, or of the newest intact one; whether the run is finished)."""
    from jmarl.train import checkpoint as ckpt

    found = (checkpoint, None) if checkpoint is not None else ckpt.latest_intact(run_dir / "checkpoints")
    if found is None or found[0] is None:
        return None, False
    chunk = int(Path(found[0]).name.rsplit("_", 1)[-1])
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = next((r["env_steps"] for r in rows if r.get("chunk") == chunk), None)
    return steps, (run_dir / "results.json").exists()


def measure_run(run_dir: Path, episodes: int, checkpoint: Path | None = None) -> dict:
    """``jmarl rollout``'s analysis (``emergent_report``) of every member of the run in ``run_dir`` at its newest
    intact checkpoint (or ``checkpoint``); nothing is written into the run directory."""
    from jmarl.tools.rollout import emergent_report, load_members
    from jmarl.train.files import read_config

    meta = read_config(run_dir)
    kwargs = {"checkpoint_dir": checkpoint} if checkpoint is not None else {}
    policy, params = load_members(run_dir, **kwargs)
    steps, finished = _checkpoint_steps(run_dir, checkpoint)
    report = emergent_report(policy, params, episodes)
    results = json.loads((run_dir / "results.json").read_text()) if finished and checkpoint is None else None
    return {"run_dir": str(run_dir), "algo": meta["algo"], "env": meta["env"], "env_kwargs": meta["env_kwargs"],
            "seeds": meta["seeds"], "env_steps": steps, "finished": finished, "episodes": episodes,
            "report": report, "results": None if results is None else
            {"aggregate": results["aggregate"], "teams": results.get("teams"),
             "final_episodes": results["final_episodes"]}}


def comm(args) -> None:
    out = Path(args.out)
    done = _load(out, "comm.json") or {"runs": []}
    dirs = [Path(d) for d in args.runs]
    if not dirs:  # train them here (resumable), at the settings of the benchmark
        for env in args.envs:
            for algo in args.algos:
                run_dir = out / "comm" / f"{algo}_{env}"
                _train(algo, env, {"total_timesteps": args.steps, **_kv(args.set)}, args.seeds, run_dir)
                dirs.append(run_dir)
    for run_dir in dirs:
        row = measure_run(run_dir, args.episodes)
        row["command"] = _cmd()
        done["runs"] = [r for r in done["runs"] if r["run_dir"] != str(run_dir)] + [row]
        c = row["report"].get("communication", {})
        print(f"{row['algo']:6s} {row['env']:22s} steps {row['env_steps']} causal value {_ci(c.get('causal_value'))} "
              f"MI {[_ci(v, 3) for v in c.get('message_mi', {}).values()]}", flush=True)
        _save(out, "comm.json", {**done, **_stamp()})


def compose_comm(data: dict) -> str:
    runs = sorted(data["runs"], key=lambda r: (r["env"], r["algo"]))
    training = ("- Training (per env E and algorithm A, 2 seeds in one program, 1e7 env steps, spread's PPO preset "
                f"sizes): `jmarl sweep A --env E --seeds 2 {' '.join(COMM_SET)} total_timesteps=10000000 --out "
                "runs/comm/A_E`")
    lines = [*_header(COMM_HEADING, data, [r["command"] for r in runs], training),
             f"`jmarl rollout`'s analysis ({runs[0]['episodes'] if runs else '-'} greedy episodes per seed, the same "
             "starts with and without the channel): the receivers' return (speaker_listener: the listener; "
             "reference: both agents), the same with every heard word replaced by a uniformly random one "
             "(`env.comm_randomised=true`), their difference (the causal value of the channel), and the mutual "
             "information between a speaker's word and the goal it knows (speaker_listener: the listener's goal; "
             "reference: its partner's), log2(3) = 1.585 bits at most. Mean with 95% bootstrap CI over seeds. A "
             "run still training is measured at its newest checkpoint (env steps column).", "",
             "| env | algo | env steps | seeds | team return (final eval) | receivers' return | with random words | "
             "causal value | MI word-goal (bits) | word entropy (bits) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in runs:
        c = r["report"].get("communication", {})
        mi = "; ".join(f"{a} {_ci(v, 3)}" for a, v in c.get("message_mi", {}).items()) or "-"
        ent = "; ".join(f"{a} {_ci(v, 3)}" for a, v in c.get("message_entropy", {}).items()) or "-"
        final = _ci(r["results"]["aggregate"]) if r.get("results") else "(training)"
        lines.append(f"| {r['env']} | {r['algo']} | {r['env_steps'] or 0:.2e} | {len(r['seeds'])} | {final} | "
                     f"{_ci(c.get('return'))} | {_ci(c.get('return_randomised'))} | {_ci(c.get('causal_value'))} | "
                     f"{mi} | {ent} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------
# bit: spread with a learned 1-bit channel, message statistics at every checkpoint
# ----------------------------------------------------------------------------------------------------
def private_proxies(env, normal: dict) -> dict[str, np.ndarray]:
    """What a spread agent knows that its teammates may not, per step (i32[P, T, E, A]): the index of its nearest
    landmark, and the quadrant of its own position (sign of x, sign of y), in the state it chose step t's token
    in (frame t, before the step); spread has no hidden goal."""
    inner = normal["states"]
    while hasattr(inner, "env_state"):  # the MPE state inside the wrappers' states
        inner = inner.env_state
    pos, marks = np.asarray(inner.agent_pos)[:, :-1], np.asarray(inner.landmark_pos)[:, :-1]  # [P, T, E, A|L, 2]
    dist = np.linalg.norm(pos[..., :, None, :] - marks[..., None, :, :], axis=-1)  # [P, T, E, A, L]
    quadrant = (pos[..., 0] > 0).astype(np.int32) * 2 + (pos[..., 1] > 0)
    return {"nearest_landmark": dist.argmin(-1).astype(np.int32), "quadrant": quadrant.astype(np.int32)}


def bit_measure(run_dir: Path, checkpoint: Path, episodes: int) -> dict:
    """One checkpoint of the 1-bit run: emergent_report (entropy, causal value) and the MI of each agent's token
    with each private proxy, per member."""
    from jmarl.tools.rollout import emergent_report, load_members, member_rollouts, messages_said, \
        mutual_information_bits

    policy, params = load_members(run_dir, checkpoint_dir=checkpoint)
    normal = member_rollouts(policy, params, episodes)
    report = emergent_report(policy, params, episodes, normal=normal)
    _, tokens, _ = messages_said(policy.env, normal["states"])  # i32[P, T, E, A]
    steps = np.asarray(normal["valid"])[:, 1:]  # bool[P, T, E]
    mi = {}
    for name, proxy in private_proxies(policy.env, normal).items():
        mi[name] = [[mutual_information_bits(tokens[m, ..., a][steps[m]], proxy[m, ..., a][steps[m]])
                     for a in range(tokens.shape[-1])] for m in range(tokens.shape[0])]  # [P][A]
    env_steps, _ = _checkpoint_steps(run_dir, checkpoint)
    return {"checkpoint": checkpoint.name, "env_steps": env_steps, "report": report, "mi_proxies": mi}


def bit(args) -> None:
    from jmarl.train import checkpoint as ckpt

    out = Path(args.out)
    run_dir = out / "bit" / f"{args.algo}_spread_1bit"
    overrides = {"env.messages": 2, "total_timesteps": args.steps, "num_evals": args.checkpoints, **_kv(args.set)}
    results = _train(args.algo, "mpe_spread", overrides, args.seeds, run_dir, keep_checkpoints=args.checkpoints + 1)
    done = _load(out, "bit.json")
    measured = {p["checkpoint"]: p for p in (done or {}).get("points", [])}
    for chunk, path in ckpt.chunk_dirs(run_dir / "checkpoints"):
        if path.name not in measured:
            measured[path.name] = bit_measure(run_dir, path, args.episodes)
            p = measured[path.name]
            c = p["report"]["communication"]
            print(f"{path.name} steps {p['env_steps']} entropy {[_ci(v, 2) for v in c['message_entropy'].values()]} "
                  f"causal value {_ci(c['causal_value'], 2)}", flush=True)
            _save(out, "bit.json", {"run_dir": str(run_dir), "algo": args.algo, "seeds": args.seeds,
                                    "overrides": overrides, "episodes": args.episodes,
                                    "points": sorted(measured.values(), key=lambda p: p["checkpoint"]),
                                    "return": results.get("aggregate"), **_stamp()})
    plot_bit(_load(out, "bit.json"), out / BIT_PNG)


def _bit_series(data: dict) -> dict[str, np.ndarray]:
    """Per checkpoint (rows) and member (columns): env steps, return, mean token entropy and MI over agents,
    causal value."""
    points = data["points"]
    mean_over_agents = lambda d: np.mean([v["values"] for v in d.values()], axis=0)  # noqa: E731  [P]
    return {"steps": np.array([p["env_steps"] or 0 for p in points], float),
            "return": np.array([p["report"]["communication"]["return"]["values"] for p in points]),
            "entropy": np.array([mean_over_agents(p["report"]["communication"]["message_entropy"]) for p in points]),
            "mi_nearest_landmark": np.array([np.mean(p["mi_proxies"]["nearest_landmark"], -1) for p in points]),
            "mi_quadrant": np.array([np.mean(p["mi_proxies"]["quadrant"], -1) for p in points]),
            "causal_value": np.array([p["report"]["communication"]["causal_value"]["values"] for p in points])}


def plot_bit(data: dict, path: Path) -> Path:
    """Four panels against env steps (one line per seed): return, token entropy, MI with the private proxies,
    causal value."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    s = _bit_series(data)
    fig = Figure(figsize=(13, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    panels = [("return", "team return (greedy)"), ("entropy", "token entropy (bits, mean over agents)"),
              ("mi", "MI token vs private proxy (bits)"), ("causal_value", "causal value of the channel")]
    for i, (key, title) in enumerate(panels):
        ax = fig.add_subplot(1, 4, i + 1)
        for m in range(s["return"].shape[1]):
            if key == "mi":
                ax.plot(s["steps"], s["mi_nearest_landmark"][:, m], "-o", ms=3, color=f"C{m}",
                        label=f"seed {m}: nearest landmark")
                ax.plot(s["steps"], s["mi_quadrant"][:, m], "--s", ms=3, color=f"C{m}", label=f"seed {m}: quadrant")
            else:
                ax.plot(s["steps"], s[key][:, m], "-o", ms=3, color=f"C{m}", label=f"seed {m}")
        if key == "causal_value":
            ax.axhline(0.0, color="k", lw=0.5)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("env steps", fontsize=8)
        ax.tick_params(labelsize=7)
        if key == "mi":
            ax.legend(fontsize=6)
    fig.suptitle(f"{data['algo']} on mpe_spread with a learned 1-bit channel (env.messages=2)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def compose_bit(data: dict, image: str) -> str:
    s = _bit_series(data)
    lines = [*_header(BIT_HEADING, data, [data["command"]]),
             f"{data['algo']} on mpe_spread with a learned 1-bit channel (`env.messages=2`: each agent says a "
             "token every step, heard by its teammates on the next), a checkpoint per chunk; every checkpoint is "
             f"measured by `jmarl rollout`'s analysis on {data['episodes']} greedy episodes per seed (the same starts "
             "at every checkpoint). Spread has no hidden goal, so the token's mutual information is measured against "
             "what an agent knows best: the index of its nearest landmark, and the quadrant of its own position. "
             "The causal value is the team return minus the return with every heard token random. Means over seeds "
             "(and agents); per seed in the plot.", "", f"![1-bit channel on mpe_spread]({image})", "",
             "| env steps | return | token entropy (bits) | MI nearest landmark | MI quadrant | causal value |",
             "|---:|---:|---:|---:|---:|---:|"]
    for i in range(len(s["steps"])):
        lines.append(f"| {s['steps'][i]:.2e} | {s['return'][i].mean():.1f} | {s['entropy'][i].mean():.3f} | "
                     f"{s['mi_nearest_landmark'][i].mean():.3f} | {s['mi_quadrant'][i].mean():.3f} | "
                     f"{s['causal_value'][i].mean():.2f} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------
# trace: speaker_listener's channel at every checkpoint, IPPO and MAPPO, and IPPO beside a scripted speaker
# ----------------------------------------------------------------------------------------------------
# label: (algorithm, overrides beyond the shared ones). The scripted speaker (the env's heuristic: it says the
# goal) makes the listener's problem single-agent; whether IPPO's listener then learns to listen separates "the
# listener cannot learn to listen" from "the two cannot agree on a protocol".
TRACE_VARIANTS = {"ippo": ("ippo", {}), "mappo": ("mappo", {}),
                  "ippo_scripted_speaker": ("ippo", {"fixed_teams": "speaker", "fixed_policy": "heuristic"})}


def trace(args) -> None:
    from jmarl.train import checkpoint as ckpt

    out = Path(args.out)
    data = _load(out, "trace.json") or {"variants": {}}
    for label in args.variants:
        algo, extra = TRACE_VARIANTS[label]
        steps = args.scripted_steps if "fixed_teams" in extra else args.steps
        overrides = {**_kv(args.set), **extra, "total_timesteps": steps, "num_evals": args.checkpoints}
        run_dir = out / "trace" / label
        results = _train(algo, args.env, overrides, args.seeds, run_dir, keep_checkpoints=args.checkpoints + 1)
        entry = data["variants"].get(label) or {"points": []}
        measured = {p["checkpoint"]: p for p in entry["points"]}
        for _, path in ckpt.chunk_dirs(run_dir / "checkpoints"):
            if path.name in measured:
                continue
            row = measure_run(run_dir, args.episodes, checkpoint=path)
            c = row["report"]["communication"]
            measured[path.name] = {"checkpoint": path.name, "env_steps": row["env_steps"],
                                   "communication": c, "teams": row["report"].get("teams")}
            print(f"{label:22s} {path.name} steps {row['env_steps']} receivers {_ci(c['return'])} "
                  f"causal value {_ci(c['causal_value'], 2)} "
                  f"MI {[_ci(v, 3) for v in c['message_mi'].values()]}", flush=True)
            data["variants"][label] = {"algo": algo, "env": args.env, "overrides": overrides, "seeds": args.seeds,
                                       "run_dir": str(run_dir), "episodes": args.episodes,
                                       "final": results.get("aggregate"),
                                       "points": sorted(measured.values(), key=lambda p: p["checkpoint"])}
            _save(out, "trace.json", {**data, **_stamp()})
    if data["variants"]:
        plot_trace(_load(out, "trace.json"), out / TRACE_PNG)


def _trace_series(points: list) -> dict[str, np.ndarray]:
    """Per checkpoint (rows) and seed (columns): env steps, receivers' return, the same with random words, causal
    value, and the speaker's word-goal MI (mean over speakers)."""
    c = [p["communication"] for p in points]
    return {"steps": np.array([p["env_steps"] or 0 for p in points], float),
            "return": np.array([x["return"]["values"] for x in c]),
            "return_randomised": np.array([x["return_randomised"]["values"] for x in c]),
            "causal_value": np.array([x["causal_value"]["values"] for x in c]),
            "mi": np.array([np.mean([v["values"] for v in x["message_mi"].values()], 0) for x in c])}


def plot_trace(data: dict, path: Path) -> Path:
    """Three panels against env steps, a colour per variant and a line per seed: the listener's return (solid)
    and with random words (dotted), the word-goal MI, the causal value of the channel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, 3, i + 1) for i in range(3)]
    for i, (label, v) in enumerate(sorted(data["variants"].items())):
        s = _trace_series(v["points"])
        for m in range(s["return"].shape[1]):
            name = label if m == 0 else None
            axes[0].plot(s["steps"], s["return"][:, m], "-o", ms=3, color=f"C{i}", label=name)
            axes[0].plot(s["steps"], s["return_randomised"][:, m], ":", color=f"C{i}")
            axes[1].plot(s["steps"], s["mi"][:, m], "-o", ms=3, color=f"C{i}", label=name)
            axes[2].plot(s["steps"], s["causal_value"][:, m], "-o", ms=3, color=f"C{i}", label=name)
    titles = ["listener's return (dotted: random words)", "MI word vs goal (bits; max 1.585)",
              "causal value of the channel"]
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("env steps", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[2].axhline(0.0, color="k", lw=0.5)
    axes[0].legend(fontsize=7)
    fig.suptitle("mpe_speaker_listener: the channel at every checkpoint (one line per seed)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def compose_trace(data: dict, image: str) -> str:
    variants = data["variants"]
    any_v = next(iter(variants.values()))
    shared = {k: v for k, v in any_v["overrides"].items() if k not in ("fixed_teams", "fixed_policy",
                                                                          "total_timesteps")}
    lines = [*_header(TRACE_HEADING, data, [data["command"]]),
             f"Each variant trains {any_v['seeds']} seeds in one program ({', '.join(f'{k}={v}' for k, v in shared.items())}"
             "; the settings of the section above), keeping a checkpoint per chunk; every checkpoint is measured by "
             f"`jmarl rollout`'s analysis on {any_v['episodes']} greedy episodes per seed (the same starts at every "
             "checkpoint and with random words). `ippo_scripted_speaker`: IPPO's listener beside the env's scripted "
             "speaker (`fixed_teams=speaker fixed_policy=heuristic`: it always says the goal). Each seed's value, "
             "seeds in order (a greedy speaker that gives one goal a word of its own and the other two a shared "
             "word carries 0.918 bits; one word per goal, 1.585).", "",
             f"![speaker_listener over training]({image})", "",
             "| variant | env steps | listener's return | with random words | causal value | MI word-goal (bits) |",
             "|---|---:|---:|---:|---:|---:|"]
    per_seed = lambda x, d: ", ".join(f"{v:.{d}f}" for v in x)  # noqa: E731
    for label, v in sorted(variants.items()):
        s = _trace_series(v["points"])
        for i in range(len(s["steps"])):
            lines.append(f"| {label} | {s['steps'][i]:.2e} | {per_seed(s['return'][i], 1)} | "
                         f"{per_seed(s['return_randomised'][i], 1)} | {per_seed(s['causal_value'][i], 2)} | "
                         f"{per_seed(s['mi'][i], 2)} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------
def write(args) -> None:
    out, doc = Path(args.out), Path(args.doc)
    sections = []
    if (data := _load(out, "scale.json")):
        sections.append((SCALE_HEADING, compose_scale(data)))
    if (data := _load(out, "spread.json")) and (data["runs"] or data["baselines"]):
        sections.append((SPREAD_HEADING, compose_spread(data)))
    if (data := _load(out, "comm.json")) and data["runs"]:
        sections.append((COMM_HEADING, compose_comm(data)))
    if (data := _load(out, "bit.json")) and data["points"]:
        image = doc.parent / "img" / BIT_PNG
        if not args.print:
            plot_bit(data, image)
        sections.append((BIT_HEADING, compose_bit(data, f"img/{BIT_PNG}")))
    if (data := _load(out, "trace.json")) and data["variants"]:
        image = doc.parent / "img" / TRACE_PNG
        if not args.print:
            plot_trace(data, image)
        sections.append((TRACE_HEADING, compose_trace(data, f"img/{TRACE_PNG}")))
    for heading, text in sections:
        print(text) if args.print else write_section(heading, text, doc)
    if not sections:
        print(f"nothing measured under {out} yet")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench_comm", help="JSON and run directories")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("scale", help="env steps/s and compiled memory of stepping and of a PPO update, N agents")
    s.add_argument("--agents", type=int, nargs="+", default=[3, 5, 10])
    s.add_argument("--algos", nargs="+", default=["ippo", "mappo"])
    s.add_argument("--num-envs", type=int, default=1024)
    s.add_argument("--num-steps", type=int, default=100)
    s.add_argument("--updates", type=int, default=4, help="PPO updates in the timed chunk")
    s.set_defaults(func=scale)
    p = sub.add_parser("spread", help="IPPO and MAPPO on spread with N agents, random and heuristic beside them")
    p.add_argument("--agents", type=int, nargs="+", default=[3, 5, 10])
    p.add_argument("--algos", nargs="+", default=["ippo", "mappo"])
    p.add_argument("--steps", type=int, default=10_000_000)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--baseline-episodes", type=int, default=None,
                   help="episodes of random and heuristic play (default: as many as a learned row's final evaluation)")
    p.add_argument("--set", nargs="*", default=[], help="KEY=VALUE overrides for every run")
    p.set_defaults(func=spread)
    c = sub.add_parser("comm", help="speaker_listener and reference: return, MI, causal value")
    c.add_argument("--runs", nargs="*", default=[], help="existing run directories to measure (read only)")
    c.add_argument("--envs", nargs="+", default=["mpe_speaker_listener", "mpe_reference"])
    c.add_argument("--algos", nargs="+", default=["ippo", "mappo"])
    c.add_argument("--steps", type=int, default=10_000_000)
    c.add_argument("--seeds", type=int, default=2)
    c.add_argument("--set", nargs="*", default=COMM_SET, help="KEY=VALUE overrides for the runs trained here")
    c.add_argument("--episodes", type=int, default=256)
    c.set_defaults(func=comm)
    b = sub.add_parser("bit", help="spread with a learned 1-bit channel: message statistics per checkpoint")
    b.add_argument("--algo", default="ippo")
    b.add_argument("--steps", type=int, default=10_000_000)
    b.add_argument("--seeds", type=int, default=2)
    b.add_argument("--checkpoints", type=int, default=10, help="chunks, each ending in a measured checkpoint")
    b.add_argument("--episodes", type=int, default=128)
    b.add_argument("--set", nargs="*", default=[], help="KEY=VALUE overrides")
    b.set_defaults(func=bit)
    t = sub.add_parser("trace", help="speaker_listener: the channel at every checkpoint, per variant")
    t.add_argument("--env", default="mpe_speaker_listener")
    t.add_argument("--variants", nargs="+", default=list(TRACE_VARIANTS), choices=list(TRACE_VARIANTS))
    t.add_argument("--steps", type=int, default=10_000_000)
    t.add_argument("--scripted-steps", type=int, default=3_000_000, help="budget beside the scripted speaker")
    t.add_argument("--seeds", type=int, default=2)
    t.add_argument("--checkpoints", type=int, default=10, help="chunks, each ending in a measured checkpoint")
    t.add_argument("--episodes", type=int, default=200)
    t.add_argument("--set", nargs="*", default=COMM_SET, help="KEY=VALUE overrides for every variant")
    t.set_defaults(func=trace)
    w = sub.add_parser("write", help="compose the sections of docs/benchmarks.md from the saved JSON")
    w.add_argument("--doc", default=str(DOC), help="the markdown file (its img/ gets the plot)")
    w.add_argument("--print", action="store_true", help="print instead of writing")
    w.set_defaults(func=write)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
