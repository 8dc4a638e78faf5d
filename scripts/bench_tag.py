"""mpe_tag: PPO's three competitive schedules (simultaneous, alternating, pool self-play) at one budget, every
learned predator against every learned prey (and the scripted references) in one cross-play program.

``run`` trains each schedule's seeds as one ``jmarl sweep`` run directory per schedule (resumable: a finished run
is kept, a cut one resumes from its checkpoint; earlier seed groups in other directories are named with
``--more``), then plays every run's every seed on both sides with ``heuristic`` and ``random`` (``jmarl
crossplay``). ``write`` composes the section of docs/benchmarks.md from the cross-play matrix, its ratings and the
runs' results: per schedule, means over seeds with 95% bootstrap CIs over seeds (``jmarl.train.stats``).

    python scripts/bench_tag.py run --seed 2 --seeds 2 --out runs/tag4 --more runs/bench1e7
    python scripts/bench_tag.py write --crossplay runs/tag4/crossplay

What is measured for each policy (a seed of a schedule): its predators' captures per 25-step episode against
the learned prey of every other run (prey they never trained with) and against the scripted prey; its prey's
captures suffered against the learned predators of every other run and against the scripted predators; the
Bradley-Terry ratings of its predators and of its prey (the predators win an episode with a capture).
"""
from __future__ import annotations

import argparse
import datetime
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import DOC, machine, write_section  # noqa: E402

HEADING = "## PPO's competitive schedules on mpe_tag: learning and cross-play"
SCHEDULES = ("simultaneous", "alternating", "pool")
REFERENCES = ("heuristic", "random")


def _runs(dirs: list[Path]) -> dict[str, list[Path]]:
    """{schedule: its run directories}, from ``DIR/tag_SCHEDULE`` under each of ``dirs`` that has one."""
    return {s: [d / f"tag_{s}" for d in dirs if (d / f"tag_{s}" / "config.json").exists()] for s in SCHEDULES}


def run(args) -> None:
    out = Path(args.out)
    for s in SCHEDULES:
        run_dir = out / f"tag_{s}"
        if (run_dir / "results.json").exists():
            continue
        cmd = (["jmarl", "sweep", "--resume", str(run_dir), "--quiet"] if (run_dir / "config.json").exists() else
               ["jmarl", "sweep", "ippo", "--env", "mpe_tag", "--seed", str(args.seed), "--seeds", str(args.seeds),
                f"total_timesteps={args.steps}", f"schedule={s}", "--out", str(run_dir), "--quiet"])
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    entries = []
    for s, dirs in _runs([Path(d) for d in args.more] + [out]).items():
        for d in dirs:
            seeds = json.loads((d / "config.json").read_text())["seeds"]
            entries += [f"{d}#{m}" for m in range(len(seeds))]
    cmd = ["jmarl", "crossplay", *entries, *REFERENCES, "--episodes", str(args.episodes), "--out",
           str(out / "crossplay")]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def _schedule(label: str) -> str | None:
    return next((s for s in SCHEDULES if f"tag_{s}#" in label), None)


def measure(crossplay: Path) -> dict:
    """Per schedule, per policy (seed): the measures of the module docstring, from ``crossplay``'s matrix and
    ratings and each run's results.json."""
    matrix = json.loads((crossplay / "crossplay.json").read_text())
    ratings = json.loads((crossplay / "ratings.json").read_text())
    captures = np.asarray(matrix["mean"]["metric/captures"])  # f64[rows: predators, cols: prey]
    rows, cols, entries = matrix["rows"], matrix["cols"], {e["label"]: e for e in matrix["entries"]}
    learned_r = [i for i, r in enumerate(rows) if _schedule(r)]
    learned_c = [j for j, c in enumerate(cols) if _schedule(c)]
    rating = {side: {p["label"]: p["rating"] for p in ratings[side]["players"]} for side in ("rows", "cols")}
    out: dict[str, list[dict]] = {s: [] for s in SCHEDULES}
    for i, label in enumerate(rows):
        if not (s := _schedule(label)):
            continue
        e = entries[label]
        j = cols.index(label)
        # Opponents from other runs only: a run's own prey (every seed of it) trained with its predators.
        others_c = [c for c in learned_c if entries[cols[c]]["run_dir"] != e["run_dir"]]
        others_r = [r for r in learned_r if entries[rows[r]]["run_dir"] != e["run_dir"]]
        results = json.loads((Path(e["run_dir"]) / "results.json").read_text())
        own = results["configs"][0]["teams"]["adversaries"]["values"][e["member"]]
        out[s].append({"label": label, "own_return_adversaries": own,
                       "pred_captures_vs_learned": float(captures[i, others_c].mean()),
                       "pred_captures_vs_heuristic": float(captures[i, cols.index("heuristic")]),
                       "prey_captured_by_learned": float(captures[others_r, j].mean()),
                       "prey_captured_by_heuristic": float(captures[rows.index("heuristic"), j]),
                       "pred_rating": rating["rows"][label], "prey_rating": rating["cols"][label]})
    refs = {r: {"pred_captures_vs_learned": float(captures[rows.index(r), learned_c].mean()),
                "prey_captured_by_learned": float(captures[learned_r, cols.index(r)].mean()),
                "pred_rating": rating["rows"][r], "prey_rating": rating["cols"][r]} for r in REFERENCES}
    return {"schedules": out, "references": refs, "episodes_per_cell": matrix["episodes_per_cell"],
            "win_rule": matrix["win_rule"], "learned": len(learned_r)}


def _ci(values: list[float], digits: int = 2) -> str:
    from jmarl.train.stats import aggregate

    values = [v for v in values if v is not None]
    if not values:
        return "-"
    a = aggregate(np.asarray(values))
    return f"{a['mean']:.{digits}f} [{a['mean_lo']:.{digits}f}, {a['mean_hi']:.{digits}f}]"


KEYS = [("own_return_adversaries", "own greedy return/adversaries", 1),
        ("pred_captures_vs_learned", "its predators: captures / episode vs other runs' learned prey", 2),
        ("pred_captures_vs_heuristic", "vs heuristic prey", 2),
        ("prey_captured_by_learned", "its prey: captures suffered vs other runs' learned predators", 2),
        ("prey_captured_by_heuristic", "vs heuristic predators", 2),
        ("pred_rating", "predator rating (Elo)", 0), ("prey_rating", "prey rating (Elo)", 0)]


def compose(data: dict, steps: str, commands: list[str]) -> str:
    per = data["schedules"]
    seeds = {s: len(v) for s, v in per.items()}
    lines = [HEADING, "",
             "IPPO on mpe_tag at its preset (128 envs x 50 steps, hidden 64 x 2), trained with each schedule of "
             "docs/competitive.md at its defaults (`schedule_interval=10`; pool: 8 snapshots per side, 4 env groups, "
             "uniform sampling), then every seed's predators played against every seed's prey (`jmarl crossplay`, "
             f"{data['episodes_per_cell']} episodes per pairing, the same starts for all, one program), with the "
             "scripted `heuristic` and `random` as references. Captures are per 25-step episode, averaged over the "
             "learned policies of the other side from every other run (policies they never trained with). Ratings: "
             f"Bradley-Terry over the whole matrix, win rule `{data['win_rule']}` (a capture). Each schedule's "
             "values: mean over its seeds with a 95% bootstrap CI over seeds.", "",
             f"- Machine: {machine()}",
             f"- Date: {datetime.date.today().isoformat()}",
             *[f"- Command: `{c}`" for c in commands], "",
             "| budget | schedule | seeds | " + " | ".join(k[1] for k in KEYS) + " |",
             "|---|---|---:|" + "---:|" * len(KEYS)]
    for s in SCHEDULES:
        if per[s]:
            lines.append(f"| {steps} | {s} | {seeds[s]} | "
                         + " | ".join(_ci([p[k] for p in per[s]], d) for k, _, d in KEYS) + " |")
    for r, v in data["references"].items():
        lines.append(f"| - | {r} (scripted) | - | - | {v['pred_captures_vs_learned']:.2f} | - | "
                     f"{v['prey_captured_by_learned']:.2f} | - | {v['pred_rating']:.0f} | {v['prey_rating']:.0f} |")
    return "\n".join(lines) + "\n"


def write(args) -> None:
    crossplay = Path(args.crossplay)
    data = measure(crossplay)
    (crossplay / "bench_tag.json").write_text(json.dumps(data, indent=1))
    cmd = f"python scripts/bench_tag.py write --crossplay {shlex.quote(str(crossplay))}"  # (--command: the lines above)
    text = compose(data, args.budget, [*args.command, cmd])
    if args.print:
        print(text)
    else:
        write_section(HEADING, text, Path(args.doc))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command_name", required=True)
    r = sub.add_parser("run", help="train the schedules (resumable), then cross-play every seed")
    r.add_argument("--out", default="runs/bench_tag")
    r.add_argument("--seed", type=int, default=0, help="first seed of this group")
    r.add_argument("--seeds", type=int, default=2)
    r.add_argument("--steps", type=int, default=10_000_000)
    r.add_argument("--more", nargs="*", default=[], help="directories of earlier seed groups (tag_SCHEDULE in each)")
    r.add_argument("--episodes", type=int, default=200)
    r.set_defaults(func=run)
    w = sub.add_parser("write", help="compose the docs section from a cross-play directory")
    w.add_argument("--crossplay", default="runs/bench_tag/crossplay")
    w.add_argument("--budget", default="1e7")
    w.add_argument("--command", nargs="*", default=[], help="the commands that trained and played the runs")
    w.add_argument("--doc", default=str(DOC))
    w.add_argument("--print", action="store_true")
    w.set_defaults(func=write)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
