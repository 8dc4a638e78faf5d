"""Environment throughput: jmarl vs JaxMARL, same env, same process, interleaved.

One "env step" = one step of one environment (every agent acts once). Both sides run a jitted
``lax.scan`` over ``vmap``-ed steps with uniformly random actions and auto-reset on (jmarl:
``AutoReset``; JaxMARL: its built-in reset in ``step``); observations and rewards are summed into a
checksum carried by the scan, otherwise XLA would delete the physics. Each (env, size) is timed
``--repeats`` times alternating jmarl and JaxMARL, and the median is reported with the ratio of medians.

    python scripts/bench_envs.py                      # spread and tag at 1, 64, 1024, 8192 envs
    python scripts/bench_envs.py --envs mpe_spread --sizes 1024 --repeats 9
    python scripts/bench_envs.py --write              # also rewrite docs/benchmarks.md's section
    python scripts/bench_envs.py --envs mpe_simple mpe_push --sizes 1 64 1024 --write \
        --section "Environment throughput: more MPE"  # a section of its own; the others stay as they are

Add an environment pair with one line in ``PAIRS``.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp

import jmarl
from benchlib import machine, write_section as _write_section
from jmarl.core.spaces import Discrete
from jmarl.core.wrappers import AutoReset


@dataclass(frozen=True)
class Pair:
    """The same environment in jmarl (``jmarl.make(name, **kwargs)``) and JaxMARL (``jaxmarl.make``)."""

    jmarl_name: str
    jaxmarl_name: str
    jmarl_kwargs: dict = field(default_factory=dict)
    jaxmarl_kwargs: dict = field(default_factory=dict)


PAIRS = [
    Pair("mpe_spread", "MPE_simple_spread_v3"),
    Pair("mpe_tag", "MPE_simple_tag_v3"),
    Pair("mpe_adversary", "MPE_simple_adversary_v3"),
    Pair("mpe_simple", "MPE_simple_v3"),
    Pair("mpe_push", "MPE_simple_push_v3"),
    Pair("mpe_speaker_listener", "MPE_simple_speaker_listener_v4"),
    Pair("mpe_reference", "MPE_simple_reference_v3"),
    Pair("mpe_crypto", "MPE_simple_crypto_v3"),
    # JaxMARL's world_comm defaults to continuous actions; both sides play discrete ones here.
    Pair("mpe_world_comm", "MPE_simple_world_comm_v3", jaxmarl_kwargs={"action_type": "Discrete"}),
    # SMAX samples valid actions from its masks: scripts/bench_smax.py measures it ("SMAX throughput").
]
DEFAULT_ENVS = ["mpe_spread", "mpe_tag"]
SECTION = "## Environment throughput"
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def default_steps(num_envs: int) -> int:
    """Scan length giving ~2^20 env steps per timed call (bounded for tiny and huge batches)."""
    return int(min(8192, max(64, 2 ** 20 // num_envs)))


def scan_runner(reset: Callable, step: Callable, random_actions: Callable, num_envs: int, num_steps: int
                ) -> Callable[[jax.Array], jax.Array]:
    """The timed program of either side: ``reset(key) -> (_, state)`` vmapped over E envs, then a scan of
    ``num_steps`` of ``step(keys [E], state, actions) -> (obs, reward, state)`` (dicts of [E, ...] arrays) under
    ``random_actions(key)``, summing observations and rewards into the checksum it returns."""

    def run(key):
        key_reset, key = jax.random.split(key)
        _, state = jax.vmap(reset)(jax.random.split(key_reset, num_envs))

        def body(carry, _):
            key, state, checksum = carry
            key, key_act, key_step = jax.random.split(key, 3)
            obs, reward, state = step(jax.random.split(key_step, num_envs), state, random_actions(key_act))
            checksum = checksum + sum(jnp.sum(o) for o in obs.values()) + sum(jnp.sum(r) for r in reward.values())
            return (key, state, checksum), None

        (_, _, checksum), _ = jax.lax.scan(body, (key, state, jnp.zeros(())), None, num_steps)
        return checksum

    return jax.jit(run)


def jmarl_runner(pair: Pair, num_envs: int, num_steps: int) -> Callable[[jax.Array], jax.Array]:
    env = AutoReset(jmarl.make(pair.jmarl_name, **pair.jmarl_kwargs))
    teams = env.teams

    def random_actions(key):  # one batched draw per team
        out = {}
        for k, (name, team) in zip(jax.random.split(key, len(teams)), teams.items()):
            space = team.action_space
            if isinstance(space, Discrete):
                out[name] = jax.random.randint(k, (num_envs, team.num_agents), 0, space.n, jnp.int32)
            else:
                out[name] = jax.random.uniform(k, (num_envs, team.num_agents) + space.shape)
        return out

    def step(keys, state, actions):
        ts, state = jax.vmap(env.step)(keys, state, actions)
        return ts.obs, ts.reward, state

    return scan_runner(env.reset, step, random_actions, num_envs, num_steps)


def jaxmarl_runner(pair: Pair, num_envs: int, num_steps: int) -> Callable[[jax.Array], jax.Array]:
    import jaxmarl

    env = jaxmarl.make(pair.jaxmarl_name, **pair.jaxmarl_kwargs)
    agents = list(env.agents)

    def random_actions(key):  # the same random bits as jmarl's: one batched draw per agent
        out = {}
        for a, k in zip(agents, jax.random.split(key, len(agents))):
            space = env.action_space(a)
            if hasattr(space, "n"):
                out[a] = jax.random.randint(k, (num_envs,), 0, space.n, jnp.int32)
            else:
                out[a] = jax.random.uniform(k, (num_envs,) + tuple(space.shape), minval=space.low, maxval=space.high)
        return out

    def step(keys, state, actions):
        obs, state, reward, _, _ = jax.vmap(env.step)(keys, state, actions)
        return obs, reward, state

    return scan_runner(env.reset, step, random_actions, num_envs, num_steps)


def _time(fn, key) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(key))
    return time.perf_counter() - start


def bench(pair: Pair, num_envs: int, num_steps: int, repeats: int) -> dict:
    """Median env steps/s of jmarl and JaxMARL, timed alternately after one compile-and-warm-up call each."""
    fns = {"jmarl": jmarl_runner(pair, num_envs, num_steps), "jaxmarl": jaxmarl_runner(pair, num_envs, num_steps)}
    key = jax.random.key(0)
    for fn in fns.values():
        jax.block_until_ready(fn(key))
    times = {name: [] for name in fns}
    for r in range(repeats):
        order = list(fns) if r % 2 == 0 else list(fns)[::-1]
        for name in order:
            times[name].append(_time(fns[name], jax.random.fold_in(key, r)))
    rate = {name: num_envs * num_steps / statistics.median(t) for name, t in times.items()}
    return dict(env=pair.jmarl_name, num_envs=num_envs, num_steps=num_steps, **rate,
                ratio=rate["jmarl"] / rate["jaxmarl"])


def table(rows: list[dict]) -> str:
    lines = ["| env | num envs | jmarl steps/s | JaxMARL steps/s | jmarl / JaxMARL |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['env']} | {r['num_envs']} | {r['jmarl']:.3g} | {r['jaxmarl']:.3g} | {r['ratio']:.2f}x |")
    return "\n".join(lines)


def load() -> str:
    try:
        return "load average %.1f" % os.getloadavg()[0]
    except OSError:
        return "load average unknown"


# Notes for a section of other scenarios than the default ones (``--section``).
MORE_NOTES = """Method as in "Environment throughput" above (same script, same checksum, same alternation). The
communication scenarios keep each agent's latest utterance in the state and decode mpe2's composed
actions (`move + 5 x word`); JaxMARL's world_comm is played with discrete actions
(`action_type="Discrete"`; its default is continuous) so both sides run the same action space.
"""


def section(rows: list[dict], args: argparse.Namespace, load_before: str) -> str:
    date = datetime.date.today().isoformat()
    heading = SECTION if args.section is None else f"## {args.section}"
    command = ("python scripts/bench_envs.py --write"
               + ("" if args.envs == DEFAULT_ENVS else " --envs " + " ".join(args.envs))
               + ("" if args.sizes is None else " --sizes " + " ".join(map(str, args.sizes)))
               + ("" if args.repeats == 5 else f" --repeats {args.repeats}")
               + ("" if args.section is None else f' --section "{args.section}"'))
    if args.section is not None:
        return f"""{heading}

Environment steps per second of the scenarios below, jmarl and JaxMARL in the same process, alternately,
{args.repeats} times each; medians and the ratio of medians. Timings on a shared machine are noisy: read
the ratio, not the absolute numbers.

- Machine: {machine()}; {load_before} at the start, {load()} at the end
- Date: {date}
- Command: `{command}`

{table(rows)}

{MORE_NOTES}"""
    return f"""{heading}

Environment steps per second (one step of one environment = every agent acts once), random actions,
auto-reset on, observations and rewards consumed (summed into a checksum carried by the scan, so XLA
cannot delete the physics). jmarl and JaxMARL run the same environment in the same process,
alternately, {args.repeats} times each; the table shows medians and the ratio of medians. Timings on
a shared machine are noisy: read the ratio, not the absolute numbers.

- Machine: {machine()}; {load_before} at the start, {load()} at the end
- Date: {date}
- Command: `{command}`

{table(rows)}

Notes: JaxMARL's MPE episodes are 26 transitions (its `done` tests the step count before
incrementing) where PettingZoo's and jmarl's are 25, so JaxMARL resets slightly less often; this
does not favour jmarl. JaxMARL draws (zero-scaled) action and communication noise every step; jmarl
follows mpe2, which draws none. What else makes jmarl's MPE fast on a CPU (measured, see
`envs/mpe/core.py`): pairwise geometry computed once per state as separate x and y arrays of
[agents, other entities] (a trailing size-2 axis made XLA's CPU loops ~2x slower), norms written out
rather than reduced over that axis, no per-agent dicts or gathers, and a reset that draws all its
random numbers in one flat threefry call (AutoReset computes a reset every step). SMAX, whose
random actions are drawn from the availability masks, is measured by `scripts/bench_smax.py` (next
section).
"""


def write_section(text: str, heading: str = SECTION) -> None:
    _write_section(heading, text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [p.jmarl_name for p in PAIRS]
    parser.add_argument("--envs", nargs="+", default=DEFAULT_ENVS, choices=names)
    parser.add_argument("--sizes", nargs="+", type=int, default=None,
                        help="numbers of parallel envs (default 1 64 1024 8192, plus 65536 on a GPU)")
    parser.add_argument("--steps", type=int, default=None, help="scan length per timed call (default: ~2^20 env steps)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gpu", action="store_true", help="include 65536 envs even without a GPU backend")
    parser.add_argument("--write", action="store_true", help=f"rewrite '{SECTION}' in {DOC}")
    parser.add_argument("--section", default=None,
                        help="with --write: the title of the section to (re)write instead, e.g. 'Environment "
                             "throughput: more MPE' (for other scenarios than the default ones)")
    args = parser.parse_args(argv)
    sizes = args.sizes or [1, 64, 1024, 8192] + ([65536] if args.gpu or jax.default_backend() == "gpu" else [])

    print(machine())
    load_before = load()
    rows = []
    for name in args.envs:
        pair = next(p for p in PAIRS if p.jmarl_name == name)
        for n in sizes:
            row = bench(pair, n, args.steps or default_steps(n), args.repeats)
            rows.append(row)
            print(f"{row['env']:>14} {n:>6} envs x {row['num_steps']:>5} steps: jmarl {row['jmarl']:.3g}/s  "
                  f"jaxmarl {row['jaxmarl']:.3g}/s  ratio {row['ratio']:.2f}x", flush=True)
    print("\n" + table(rows))
    if args.write:
        heading = SECTION if args.section is None else f"## {args.section}"
        write_section(section(rows, args, load_before), heading)
        print(f"\nwrote '{heading}' in {DOC}")


if __name__ == "__main__":
    main()
