"""Compile time and speed of PPO's competitive schedules (docs/competitive.md) on mpe_tag at its preset sizes
(128 envs x 50 steps, 4 epochs x 4 minibatches, hidden 64 x 2), one seed, one chunk of 10 updates plus its
evaluation (32 episodes). The four programs are compiled first (CPU seconds of the compile), then their chunks
are timed in turn, 3 rounds, and the median is reported: on a shared machine, turns keep the comparison fair.

    python scripts/bench_schedules.py

Env steps per second count every env step of the chunk. In a pool each side learns from its own half of the
envs, and in an alternating run one side learns per update, so both do less gradient work per env step than a
simultaneous run (that is most of the difference in speed).
"""
from __future__ import annotations

import json
import time

import jax
import numpy as np

import jmarl
from jmarl.algos.ppo import PPOConfig, PPOHparams, hparams_as_arrays, make_train

CONFIGS = {"simultaneous": {}, "simultaneous + references": {"eval_opponents": ("random", "heuristic")},
           "alternating (+ references)": {"schedule": "alternating", "schedule_interval": 2},
           "pool, prioritised (+ references)": {"schedule": "pool", "schedule_interval": 2, "pool_size": 4,
                                                "pool_groups": 4, "pool_sampling": "prioritised"}}


def main() -> None:
    hp, key = hparams_as_arrays(PPOHparams()), jax.random.PRNGKey(0)
    programs = {}
    for name, extra in CONFIGS.items():
        cfg = PPOConfig(num_envs=128, num_steps=50, num_minibatches=4, total_timesteps=128 * 50 * 10, num_evals=1,
                        eval_episodes=32, **extra)
        trainer = make_train(cfg, jmarl.make("mpe_tag"))
        runner = jax.jit(trainer.init)(key, hp)
        start = time.process_time()
        chunk = jax.jit(trainer.run_chunk).lower(runner, hp).compile()
        programs[name] = (chunk, runner, time.process_time() - start, cfg.updates_per_chunk * cfg.batch_size)
        jax.block_until_ready(chunk(runner, hp))  # warm
    seconds = {name: [] for name in programs}
    for _ in range(3):
        for name, (chunk, runner, _, _) in programs.items():
            start = time.perf_counter()
            jax.block_until_ready(chunk(runner, hp))
            seconds[name].append(time.perf_counter() - start)
    for name, (_, _, compile_s, steps) in programs.items():
        median = float(np.median(seconds[name]))
        print(json.dumps({"schedule": name, "compile_cpu_s": round(compile_s, 1), "chunk_s": round(median, 2),
                          "env_steps_per_s": round(steps / median)}))


if __name__ == "__main__":
    main()
