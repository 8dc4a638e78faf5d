"""PPO benchmarks on mpe_spread: learning (greedy team return after a budget, seeds in one program) and
training speed beside JaxMARL's ``ippo_ff_mpe`` baseline at its own configuration, in the same process.

    python scripts/bench_ppo.py learn --algos ippo mappo --seeds 4 --steps 10000000 --write
    python scripts/bench_ppo.py speed --jaxmarl-script PATH/TO/ippo_ff_mpe.py --write

JaxMARL's baseline scripts are not part of its pip package: pass the path of a copy of
``baselines/IPPO/ippo_ff_mpe.py`` (module-level ``make_train(config)``; hydra's ``main`` is not used).
Team return = sum over agents of the episode return, 25-step episodes, greedy actions.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

import jmarl
from jmarl.algorithms import resolve
from jmarl.algos.ppo import PPOConfig, PPOHparams, hparams_as_arrays, make_train
from jmarl.bench import machine, write_section
from jmarl.run import Population, train

JAXMARL_CONFIG = dict(num_envs=16, num_steps=128, num_epochs=4, num_minibatches=4, hidden_dim=64, num_layers=2,
                      activation="tanh")
FAST_CONFIG = dict(num_envs=1024, num_steps=25, num_epochs=4, num_minibatches=4, hidden_dim=64, num_layers=2,
                   activation="tanh")


def learn(args) -> str:
    rows = []
    for algo in args.algos:
        resolved = resolve(algo, "mpe_spread", {"total_timesteps": args.steps, **dict(kv.split("=") for kv in args.set)})
        pop = Population.grid([resolved.hparams], list(range(args.seeds)))
        t0 = time.perf_counter()
        out = Path(args.out) / algo
        results = train(resolved, pop, out, quiet=True, wandb="disabled")
        wall = time.perf_counter() - t0
        agg = results["aggregate"]
        rows.append(f"| {algo} | {resolved.config.num_updates * resolved.config.batch_size:.2e} | {args.seeds} | "
                    f"{agg['mean']:.1f} [{agg['mean_lo']:.1f}, {agg['mean_hi']:.1f}] | {agg['iqm']:.1f} | "
                    f"{', '.join(f'{r:.1f}' for r in results['configs'][0]['returns'])} | "
                    f"{results['env_steps_per_second'] * 1:.3g} | {wall:.0f} s |")
        print(rows[-1], flush=True)
        hp = resolved.to_dict()
    cfg = hp["config"]
    return f"""## PPO on mpe_spread (learning)

Greedy team return (sum over the 3 agents of the 25-step episode return) after the budget, evaluated on
{cfg['eval_episodes'] * 10} episodes per seed; all seeds of an algorithm train in one program. Mean with
95% bootstrap CI over seeds, IQM, per-seed values. Steps/s counts every seed (population throughput),
compile excluded; wall-clock includes compile and evaluation.

- Machine: {machine()}
- Date: {datetime.date.today().isoformat()}
- Command: `python scripts/bench_ppo.py learn --algos {' '.join(args.algos)} --seeds {args.seeds} --steps {args.steps}{''.join(' --set ' + s for s in args.set)} --write`
- Config (preset `mpe_spread` in algos/ppo.py): {json.dumps({k: cfg[k] for k in ('num_envs', 'num_steps', 'num_epochs', 'num_minibatches', 'hidden_dim', 'activation')})}, hparams {json.dumps(hp['hparams'])}

| algo | env steps | seeds | return (95% CI) | IQM | per seed | env steps/s | wall |
|---|---:|---:|---:|---:|---|---:|---:|
{chr(10).join(rows)}

For scale (same machine kind, `../shared/ANCHORS.md`): random about -80; JaxMARL `ippo_ff_mpe` about -62
after 1e7 steps (stochastic 26-step training episodes); a hand-written assignment controller -22.9.
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
    args = parser.parse_args(argv)
    text = learn(args) if args.mode == "learn" else speed(args)
    print(text)
    if args.write:
        heading = text.splitlines()[0]
        write_section(heading, text)


if __name__ == "__main__":
    main()
