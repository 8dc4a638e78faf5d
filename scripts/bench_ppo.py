"""PPO benchmarks on mpe_spread: learning (greedy team return after a budget, seeds in one program) and
training speed beside JaxMARL's ``ippo_ff_mpe`` baseline at its own configuration, in the same process; and
IPPO on mpe_tag (captures per episode with both teams learning, and predators against the scripted prey).

    python scripts/bench_ppo.py learn --algos ippo mappo --seeds 4 --steps 10000000 --write
    python scripts/bench_ppo.py speed --jaxmarl-script PATH/TO/ippo_ff_mpe.py --write
    python scripts/bench_ppo.py tag --seeds 2 --steps 2000000 --write

JaxMARL's baseline scripts are not part of its pip package: pass the path of a copy of
``baselines/IPPO/ippo_ff_mpe.py`` (module-level ``make_train(config)``; hydra's ``main`` is not used).
Team return = sum over agents of the episode return, 25-step episodes, greedy actions.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np

import jmarl
from jmarl.train.algorithms import resolve
from jmarl.algos.ppo import PPOConfig, PPOHparams, hparams_as_arrays, make_train
from benchlib import learning_rows, learning_section, machine, write_section
from jmarl.envs.mpe.tag import CAPTURE_REWARD
from jmarl.train.run import Population, train

JAXMARL_CONFIG = dict(num_envs=16, num_steps=128, num_epochs=4, num_minibatches=4, hidden_dim=64, num_layers=2,
                      activation="tanh")
FAST_CONFIG = dict(num_envs=1024, num_steps=25, num_epochs=4, num_minibatches=4, hidden_dim=64, num_layers=2,
                   activation="tanh")


def learn(args) -> str:
    rows, resolved, command = learning_rows("bench_ppo.py", args)
    keys = ("num_envs", "num_steps", "num_epochs", "num_minibatches", "hidden_dim", "activation", "agent_ids")
    return learning_section("PPO on mpe_spread (learning)", rows, resolved, keys, command,
                            f"preset `{resolved.algo}/mpe_spread` in algos/ppo.py", SCALE_NOTE)


SCALE_NOTE = """For scale (same machine kind, `../shared/ANCHORS.md`): random about -80; JaxMARL `ippo_ff_mpe` about -62
after 1e7 steps (stochastic 26-step training episodes); a hand-written assignment controller -22.9."""


TAG_SETTINGS = {  # label -> overrides
    "both teams learn": {},
    "predators learn, prey scripted": {"fixed_teams": "prey", "fixed_policy": "heuristic"},
}


def tag_reference(episodes: int = 1000) -> dict[str, float]:
    """Captures per episode of scripted (s) or uniformly random (r) predators vs prey: a scale."""
    env = jmarl.make("mpe_tag")
    na = env.teams["adversaries"].num_agents

    def episode(key, scripted: dict):  # scripted: {team: bool}
        def step(carry, key):
            ts, state = carry
            k_env, *keys = jax.random.split(key, len(env.teams) + 1)
            actions = {t: env.heuristic_actions(k, state, t) if scripted[t] else
                       team.action_space.sample(k, (team.num_agents,)) for (t, team), k in zip(env.teams.items(), keys)}
            ts, state = env.step(k_env, state, actions)
            return (ts, state), ts.reward["adversaries"].sum()

        k_reset, k_run = jax.random.split(key)
        _, reward = jax.lax.scan(step, env.reset(k_reset), jax.random.split(k_run, env.max_steps))
        return reward.sum() / (CAPTURE_REWARD * na)

    out = {}
    for pred, prey in ((False, False), (True, False), (False, True), (True, True)):
        run = jax.jit(jax.vmap(lambda k: episode(k, {"adversaries": pred, "prey": prey})))
        captures = run(jax.random.split(jax.random.PRNGKey(0), episodes)).mean()
        out[f"{'s' if pred else 'r'} vs {'s' if prey else 'r'}"] = float(captures)
    return out


def tag(args) -> str:
    """IPPO on mpe_tag. Captures per episode = predator team return / (10 x predators), since every predator
    is paid 10 per (prey, predator) contact: from metrics.jsonl's per-chunk ``train/return/adversaries``
    (stochastic training episodes) and ``eval/return/adversaries`` (greedy, ``eval_episodes`` per seed)."""
    na = jmarl.make("mpe_tag").teams["adversaries"].num_agents
    rows, curves, load_before = [], {}, os.getloadavg()
    for label, extra in TAG_SETTINGS.items():
        overrides = {"total_timesteps": args.steps, "eval_episodes": 128, **extra, **dict(kv.split("=") for kv in args.set)}
        resolved = resolve("ippo", "mpe_tag", overrides)
        pop = Population.grid([resolved.hparams], list(range(args.seeds)))
        out = Path(args.out) / ("tag_" + ("_".join(f"{k}-{v}" for k, v in extra.items()) if extra else "both"))
        t0 = time.perf_counter()
        results = train(resolved, pop, out, quiet=True, wandb="disabled")
        wall = time.perf_counter() - t0
        metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]
        last = max(r["chunk"] for r in metrics)
        at = lambda key, chunk: [r[key] for r in metrics if r["chunk"] == chunk]  # noqa: E731  one per seed
        captures = lambda key, chunk: np.array(at(key, chunk)) / (CAPTURE_REWARD * na)  # noqa: E731
        curves[label] = [(at("env_steps", c)[0], captures("train/return/adversaries", c).mean()) for c in range(last + 1)]
        train_c, eval_c = captures("train/return/adversaries", last), captures("eval/return/adversaries", last)
        rows.append(f"| {label} | {resolved.config.num_updates * resolved.config.batch_size:.2e} | {args.seeds} | "
                    f"{train_c.mean():.2f} ({', '.join(f'{c:.2f}' for c in train_c)}) | {eval_c.mean():.2f} | "
                    f"{np.mean(at('train/return/adversaries', last)):.1f} | {np.mean(at('train/return/prey', last)):.1f} | "
                    f"{results['env_steps_per_second']:.3g} | {wall:.0f} s |")
        print(rows[-1], flush=True)
    cfg = resolved.to_dict()["config"]
    steps_col = [s for s, _ in curves[next(iter(curves))]]
    curve_rows = [f"| {s:.2e} | " + " | ".join(f"{curves[k][i][1]:.2f}" for k in curves) + " |" for i, s in enumerate(steps_col)]
    ref = tag_reference()
    return f"""## PPO on mpe_tag

IPPO on simple_tag (3 predators, 1 faster prey, 2 obstacles, 25-step episodes). Captures per episode =
predator team return / (10 x 3): each predator is paid 10 per (prey, predator) contact in a step, so a
prey pinned by two predators for a step counts 2. "Training" is the stochastic policy in the last chunk's
rollouts (per seed in brackets); "greedy eval" is the last chunk's evaluation, 128 episodes per seed.
Returns are team sums over the last chunk's training episodes; the prey's includes its penalty for
leaving the arena. Both teams learning is an arms race, so its captures need not rise monotonically. The
scripted prey (`fixed_policy=heuristic`, `envs/mpe/tag.py`) flees the nearest predator and turns back
before the arena's edge.

- Machine: {machine()}; load average {load_before[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end
- Date: {datetime.date.today().isoformat()}
- Command: `nice -n 10 python scripts/bench_ppo.py tag --seeds {args.seeds} --steps {args.steps}{''.join(' --set ' + s for s in args.set)} --write`
- Config (preset `mpe_tag` in algos/ppo.py, eval_episodes=128): {json.dumps({k: cfg[k] for k in ('num_envs', 'num_steps', 'num_epochs', 'num_minibatches', 'hidden_dim', 'activation')})}
- Scale, captures per episode of scripted (s) or uniformly random (r) predators vs prey, 1000 episodes:
  {', '.join(f'{k} {v:.2f}' for k, v in ref.items())}

| setting | env steps | seeds | captures, training (per seed) | captures, greedy eval | predator return | prey return | env steps/s | wall |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

Captures per episode during training (mean over seeds, per chunk):

| env steps | {' | '.join(curves)} |
|---:|{'---:|' * len(curves)}
{chr(10).join(curve_rows)}
"""


def _load_peer(path: str):
    spec = importlib.util.spec_from_file_location("jaxmarl_ippo_ff_mpe", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("hydra", type(sys)("hydra"))  # the script imports these for its main() only
    spec.loader.exec_module(module)
    module.wandb = type("NoLog", (), {"log": staticmethod(lambda *a, **k: None)})  # its per-update callback
    return module


def _peer_runner(module, cfg: dict, steps: int):
    config = {"LR": 2.5e-4, "NUM_ENVS": cfg["num_envs"], "NUM_STEPS": cfg["num_steps"], "TOTAL_TIMESTEPS": steps,
              "UPDATE_EPOCHS": cfg["num_epochs"], "NUM_MINIBATCHES": cfg["num_minibatches"], "GAMMA": 0.99,
              "GAE_LAMBDA": 0.95, "CLIP_EPS": 0.2, "ENT_COEF": 0.01, "VF_COEF": 0.5, "MAX_GRAD_NORM": 0.5,
              "ACTIVATION": cfg["activation"], "ENV_NAME": "MPE_simple_spread_v3", "ENV_KWARGS": {}, "ANNEAL_LR": True}
    fn = jax.jit(module.make_train(config)).lower(jax.random.PRNGKey(0)).compile()
    return lambda key: fn(key)["metrics"]["returned_episode_returns"]


def _jmarl_runner(cfg: dict, steps: int):
    config = PPOConfig(**cfg, total_timesteps=steps, num_evals=1, eval_episodes=16)
    trainer = make_train(config, jmarl.make("mpe_spread"))
    hp = hparams_as_arrays(PPOHparams(lr=2.5e-4))
    fn = jax.jit(trainer.train).lower(jax.random.PRNGKey(0), hp).compile()
    return lambda key: fn(key, hp)[1]["train/return"]


def speed(args) -> str:
    peer = _load_peer(args.jaxmarl_script)
    rows = []
    for label, cfg in (("JaxMARL ippo_ff_mpe config", JAXMARL_CONFIG), ("high throughput", FAST_CONFIG)):
        batch = cfg["num_envs"] * cfg["num_steps"]
        steps = max(1, args.steps // batch) * batch
        runners = {"jmarl": _jmarl_runner(cfg, steps), "jaxmarl": _peer_runner(peer, cfg, steps)}
        times = {k: [] for k in runners}
        for rep in range(args.repeats):  # alternate, so both see the same machine load
            for name, run in runners.items():
                t0 = time.perf_counter()
                jax.block_until_ready(run(jax.random.PRNGKey(rep)))
                times[name].append(time.perf_counter() - t0)
        rate = {k: steps / float(np.median(v)) for k, v in times.items()}
        rows.append(f"| {label} | {cfg['num_envs']} x {cfg['num_steps']} | {steps:.2e} | {rate['jmarl']:.3g} | "
                    f"{rate['jaxmarl']:.3g} | {rate['jmarl'] / rate['jaxmarl']:.2f}x |")
        print(rows[-1], flush=True)
    return f"""## PPO training speed (jmarl vs JaxMARL's ippo_ff_mpe, same process)

Env steps per second of a whole training run (rollouts, GAE, 4 epochs x 4 minibatches of updates),
compile excluded, median of {args.repeats} alternating repeats, 2x64 tanh MLPs, mpe_spread (JaxMARL:
MPE_simple_spread_v3). jmarl additionally evaluates V(final observation) every step for correct
bootstrapping at truncation, keeps actor and critic separate per team, and runs one greedy evaluation.
JaxMARL's script is run as published (including its per-update host callback, with a no-op logger).

- Machine: {machine()}
- Date: {datetime.date.today().isoformat()}
- Command: `python scripts/bench_ppo.py speed --jaxmarl-script ippo_ff_mpe.py --steps {args.steps} --write`

| configuration | envs x steps | env steps | jmarl steps/s | JaxMARL steps/s | jmarl / JaxMARL |
|---|---|---:|---:|---:|---:|
{chr(10).join(rows)}
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("learn")
    p.add_argument("--algos", nargs="+", default=["ippo", "mappo"])
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--steps", type=int, default=10_000_000)
    p.add_argument("--set", nargs="*", default=[], help="extra KEY=VALUE overrides")
    p.add_argument("--out", default="runs/bench_ppo")
    p.add_argument("--write", action="store_true")
    s = sub.add_parser("speed")
    s.add_argument("--jaxmarl-script", required=True)
    s.add_argument("--steps", type=int, default=1_000_000)
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--write", action="store_true")
    t = sub.add_parser("tag")
    t.add_argument("--seeds", type=int, default=2)
    t.add_argument("--steps", type=int, default=2_000_000)
    t.add_argument("--set", nargs="*", default=[], help="extra KEY=VALUE overrides")
    t.add_argument("--out", default="runs/bench_ppo")
    t.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    text = {"learn": learn, "speed": speed, "tag": tag}[args.mode](args)
    print(text)
    if args.write:
        heading = text.splitlines()[0]
        write_section(heading, text)


if __name__ == "__main__":
    main()
