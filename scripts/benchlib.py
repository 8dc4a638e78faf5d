"""Shared by the benchmark scripts (not installed): rewriting one section of docs/benchmarks.md, learning rows.
The machine's description is ``jmarl.tools.reproduce.machine``."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import jax

from jmarl.tools.reproduce import machine  # noqa: F401  (re-exported for the scripts)

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"  # the repository's docs




READING = "<!-- reading: kept when the tables above are rewritten -->"


def write_section(heading: str, text: str, path: Path = DOC) -> None:
    """Replace the section that starts with ``heading`` (up to the next ``## `` heading) or append it. The
    written reading of a section, from a line ``READING`` to its end, is kept when the measurements are
    rewritten (unless ``text`` brings its own)."""
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if (old := pattern.search(doc)):
        kept = old.group(0)[old.group(0).index(READING):] if READING in old.group(0) and READING not in text else ""
        doc = pattern.sub(lambda _: text.rstrip() + "\n\n" + (kept.rstrip() + "\n\n" if kept else ""), doc,
                          count=1)
    else:
        doc = doc.rstrip() + "\n\n" + text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc.rstrip() + "\n")


def learning_row(algo: str, env: str, overrides: dict, seeds: int, out: Path) -> tuple[str, Any]:
    """Train ``seeds`` seeds of ``algo`` on ``env`` in one program (``jmarl.train.run.train``) and return a markdown
    row ``| algo | env steps | seeds | return (95% CI) | IQM | per seed | env steps/s | wall |`` and the
    resolved config."""
    from jmarl.train.algorithms import resolve
    from jmarl.train.run import Population, train

    resolved = resolve(algo, env, overrides)
    pop = Population.grid([resolved.hparams], list(range(seeds)))
    t0 = time.perf_counter()
    results = train(resolved, pop, out, quiet=True, wandb="disabled")
    wall = time.perf_counter() - t0
    agg, cfg = results["aggregate"], resolved.config
    row = (f"| {algo} | {cfg.num_updates * cfg.batch_size:.2e} | {seeds} | "
           f"{agg['mean']:.1f} [{agg['mean_lo']:.1f}, {agg['mean_hi']:.1f}] | {agg['iqm']:.1f} | "
           f"{', '.join(f'{r:.1f}' for r in results['configs'][0]['returns'])} | "
           f"{results['env_steps_per_second']:.3g} | {wall:.0f} s |")
    return row, resolved


def learning_section(title: str, rows: list[str], resolved: Any, config_keys: tuple[str, ...], command: str,
                     preset_note: str, scale_note: str) -> str:
    """A docs/benchmarks.md section for ``learning_row`` rows (greedy team return on mpe_spread)."""
    import datetime
    import json

    d = resolved.to_dict()
    cfg = d["config"]
    return f"""## {title}

Greedy team return (sum over the agents of the 25-step episode return) after the budget, evaluated on
{cfg['eval_episodes'] * 10} episodes per seed; all seeds of an algorithm train in one program. Mean with
95% bootstrap CI over seeds, IQM, per-seed values. Steps/s counts every seed (population throughput),
compile excluded; wall-clock includes compile and evaluation.

- Machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end
- Date: {datetime.date.today().isoformat()}
- Command: `{command}`
- Config ({preset_note}): {json.dumps({k: cfg[k] for k in config_keys})}, hparams {json.dumps(d['hparams'])}

| algo | env steps | seeds | return (95% CI) | IQM | per seed | env steps/s | wall |
|---|---:|---:|---:|---:|---|---:|---:|
{chr(10).join(rows)}

{scale_note}
"""


def learning_rows(script: str, args) -> tuple[list[str], Any, str]:
    """``learning_row`` for each of ``args.algos`` on mpe_spread (``args``: algos, steps, seeds, set, out of a
    benchmark script's ``learn`` command); returns the rows, the last resolved config and the command."""
    rows = []
    for algo in args.algos:
        overrides = {"total_timesteps": args.steps, **dict(kv.split("=", 1) for kv in args.set)}
        row, resolved = learning_row(algo, "mpe_spread", overrides, args.seeds, Path(args.out) / algo)
        rows.append(row)
        print(row, flush=True)
    command = (f"python scripts/{script} learn --algos {' '.join(args.algos)} --seeds {args.seeds} "
               f"--steps {args.steps}{''.join(' --set ' + s for s in args.set)} --write")
    return rows, resolved, command
