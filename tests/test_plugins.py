"""The open kernel: a copied and edited algorithm file gets the whole machinery (CLI by path, ``python file.py``,
kill and bitwise resume, ``jmarl.load``, render, sweep) and is run only when the user asks for its code; the
contract is checked; a user metric reaches results.json; the kernel's imports flow one way."""
import ast
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

import jmarl
from jmarl.core.config import ConfigError
from jmarl.tools.cli import main as cli_main
from jmarl.train.algorithms import BUILTIN, algorithm_module, register_algorithm, resolve
from jmarl.train.contract import check_algorithm

ROOT = Path(__file__).resolve().parents[1]
TINY = ["num_envs=8", "num_steps=4", f"total_timesteps={8 * 4 * 3 * 2}", "num_minibatches=2", "num_evals=3",
        "eval_episodes=8"]
COMMON = ["--env", "probe_matrix", "--quiet", "--wandb", "disabled", "--keep-checkpoints", "5"]

METRIC = textwrap.dedent('''
    import jax.numpy as jnp

    def first_agent_action(state, actions, ts):
        """How often agent 0 took action 1: a per-step count, summed over the episode."""
        return {"picked_one": (actions["agents"][0] == 1).astype(jnp.float32)}
''')

KILLED = textwrap.dedent("""
    import os, signal, sys
    from jmarl.train.algorithms import resolve
    from jmarl.train.run import Population, train
    resolved = resolve({algo!r}, "probe_matrix", dict(kv.split("=") for kv in {tiny!r}))
    def die(chunk, rows):
        if chunk == 0:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: as a machine failure
    train(resolved, Population.grid([resolved.hparams], [0]), {run_dir!r}, quiet=True, wandb="disabled",
          keep_checkpoints=5, on_chunk=die, metrics=[{metric!r}])
""")


@pytest.fixture(scope="module")
def copied(tmp_path_factory):
    """algos/ppo.py copied and edited (another entropy bonus default), trained by path with a user metric."""
    tmp = tmp_path_factory.mktemp("plugin")
    source = (ROOT / "algos" / "ppo.py").read_text()
    edited = source.replace("ent_coef: float = 0.01", "ent_coef: float = 0.02")
    assert edited != source
    algo = tmp / "my_ppo.py"
    algo.write_text(edited)
    (tmp / "my_metrics.py").write_text(METRIC)
    metric = f"{tmp / 'my_metrics.py'}:first_agent_action"
    run_dir = tmp / "full"
    assert cli_main(["train", str(algo), *COMMON, "--out", str(run_dir), "--metric", metric, *TINY]) == 0
    return tmp, algo, metric, run_dir


def test_algorithm_file_trains_by_path_with_its_source_recorded(copied):
    tmp, algo, metric, run_dir = copied
    config = json.loads((run_dir / "config.json").read_text())
    source = config["algorithm_source"]
    assert source["kind"] == "file" and source["file"] == str(algo.resolve())
    assert config["hparams"]["ent_coef"] == pytest.approx(0.02)  # the edited default, not the built-in's
    import hashlib
    assert source["sha256"] == hashlib.sha256(algo.read_bytes()).hexdigest()


def test_user_metric_reaches_metrics_results_and_curves(copied):
    _, _, _, run_dir = copied
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all("eval/metric/picked_one" in r and "train/metric/picked_one" in r for r in rows)
    results = json.loads((run_dir / "results.json").read_text())
    m = results["configs"][0]["metrics"]["picked_one"]
    # Each probe_matrix episode is one step: the count is a fraction of episodes in [0, 1].
    assert 0.0 <= m["mean"] <= 1.0 and m["mean_lo"] <= m["mean"] <= m["mean_hi"] and len(m["values"]) == 1
    assert (run_dir / "curve_picked_one.png").stat().st_size > 0


def test_killed_file_run_resumes_bitwise_when_named_again(copied, capsys):
    tmp, algo, metric, full_dir = copied
    run_dir = tmp / "killed"
    script = KILLED.format(algo=str(algo), tiny=TINY, run_dir=str(run_dir), metric=metric)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    # Not named again: refused, with what to do; nothing of the file's code runs.
    assert cli_main(["train", "--resume", str(run_dir), "--metric", metric, "--quiet", "--wandb", "disabled"]) == 2
    err = capsys.readouterr().err
    assert "not built in" in err and str(algo.resolve()) in err and "--trust-algorithm" in err
    assert cli_main(["train", str(algo), "--resume", str(run_dir), "--metric", metric, "--quiet",
                     "--wandb", "disabled", "--keep-checkpoints", "5"]) == 0
    assert (full_dir / "metrics.jsonl").read_text() == (run_dir / "metrics.jsonl").read_text()
    a = jmarl.load(full_dir, algorithm=str(algo))
    b = jmarl.load(run_dir, trust=True)  # the recorded file, by explicit opt-in
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(x, y)


def test_python_file_runs_itself(copied):
    tmp, algo, _, _ = copied
    out = tmp / "by_python"
    proc = subprocess.run([sys.executable, str(algo), *COMMON, "--out", str(out), *TINY],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "final greedy return" in proc.stdout
    assert json.loads((out / "config.json").read_text())["algorithm_source"]["file"] == str(algo.resolve())


def test_load_render_and_changed_source(copied, tmp_path):
    tmp, algo, _, run_dir = copied
    with pytest.raises(ConfigError, match="not built in: name it again"):
        jmarl.load(run_dir)
    policy = jmarl.load(run_dir, algorithm=str(algo))
    ts, _ = jax.vmap(policy.env.reset)(jax.random.split(jax.random.PRNGKey(0), 4))
    _, actions = policy.act(jax.random.PRNGKey(1), ts, policy.init_hidden(4), np.ones(4, bool))
    assert actions["agents"].shape == (4, 2)
    # Render draws a run of the file on an env with a scene (the probe games have none).
    spread = tmp_path / "spread"
    assert cli_main(["train", str(algo), "--env", "mpe_spread", "--quiet", "--wandb", "disabled", "--out",
                     str(spread), *TINY]) == 0
    gif = tmp_path / "episode.gif"
    assert cli_main(["render", str(spread), "--algo", str(algo), "--out", str(gif)]) == 0
    assert gif.stat().st_size > 0
    # An edited copy (elsewhere) is not silently taken for the source the run was trained with.
    edited = tmp_path / "my_ppo.py"
    edited.write_text(algo.read_text() + "\n# edited\n")
    with pytest.raises(ConfigError, match="not the source the run was trained with"):
        jmarl.load(run_dir, algorithm=str(edited))
    assert jmarl.load(run_dir, algorithm=str(edited), allow_changed=True).params is not None
    # A moved file is named as gone.
    with pytest.raises(ConfigError, match="is gone"):
        jmarl.load(run_dir, algorithm=str(tmp_path / "moved_ppo.py"))
    # A built-in name given for a run of another algorithm is refused.
    with pytest.raises(ConfigError, match="was trained with algorithm"):
        jmarl.load(run_dir, algorithm="mappo")


def test_sweep_and_registered_name(copied, tmp_path):
    _, algo, _, _ = copied
    out = tmp_path / "sweep"
    assert cli_main(["sweep", str(algo), *COMMON, "--seeds", "1", "--out", str(out), "lr=1e-3,3e-3", *TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [c["hparams"]["lr"] for c in results["configs"]] == pytest.approx([1e-3, 3e-3])
    # A reproduce row from the file: labelled with it, its source recorded, beside (not as) the built-in's.
    results_file = tmp_path / "rows.jsonl"
    assert cli_main(["reproduce", "smoke", "--seeds", "1", "--algo", str(algo), "--out", str(tmp_path / "rep"),
                     "--results", str(results_file), "--quiet"]) == 0
    row = json.loads(results_file.read_text().splitlines()[0])
    assert row["algo"].startswith("my_ppo (") and row["config"]["algorithm_source"]["kind"] == "file"
    assert "--algo" in row["command"]
    register_algorithm("my_mappo_test", str(algo), overwrite=True, algo="mappo")
    resolved = resolve("my_mappo_test", "probe_matrix", {})
    assert resolved.config.algo == "mappo" and resolved.hparams.ent_coef == pytest.approx(0.02)
    assert "my_mappo_test" in jmarl.registered_algorithms()


def test_contract_checked_for_builtins_copies_and_broken_modules(copied, tmp_path):
    _, algo, _, _ = copied
    for name in BUILTIN:
        check_algorithm(algorithm_module(name), name)
    check_algorithm(algorithm_module(str(algo)), str(algo))
    broken = tmp_path / "broken.py"
    broken.write_text((ROOT / "algos" / "ppo.py").read_text().replace("def make_train(", "def make_training("))
    with pytest.raises(ConfigError, match=r"missing \['make_train'\]"):
        algorithm_module(str(broken))
    with pytest.raises(ConfigError, match="unknown algorithm 'ipo'.*Did you mean"):
        algorithm_module("ipo")


# ----------------------------------------------------------------------------------------------------
# The kernel by role: imports flow core <- agents <- train <- tools, with no cycle
# ----------------------------------------------------------------------------------------------------
LAYERS = {"core": 0, "agents": 1, "train": 2, "tools": 3, "adapters": 1}


def _imports(path: Path, modules) -> set[str]:
    """Every jmarl module a file imports, at module level or inside functions (static imports only);
    ``from jmarl.train import checkpoint`` counts as importing jmarl.train.checkpoint."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
            found.update(subs or {node.module})
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith("jmarl.")}


def _kernel_modules() -> dict[str, Path]:
    return {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
            for p in (ROOT / "jmarl").rglob("*.py")}


def test_kernel_imports_flow_one_way_without_cycles():
    modules = _kernel_modules()
    graph = {m: {i for i in _imports(p, modules) if i in modules} for m, p in modules.items()}
    upward = []
    for m, deps in graph.items():
        parts = m.split(".")
        if len(parts) < 3:
            continue
        for d in deps:
            dp = d.split(".")
            if len(dp) >= 3 and LAYERS[dp[1]] > LAYERS[parts[1]]:
                upward.append(f"{m} -> {d}")
    assert not upward, upward
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for d in graph[m]:
            if state.get(d) == 1:
                raise AssertionError(f"import cycle: {' -> '.join(stack + [m, d])}")
            if d not in state:
                visit(d, stack + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_import_jmarl_is_light():
    code = ("import sys, jmarl; env = jmarl.make('mpe_spread'); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'orbax', 'wandb', 'matplotlib', 'jaxmarl'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr[-1000:]


def test_old_import_paths_still_work():
    import jmarl.env, jmarl.run, jmarl.policy  # noqa: E401
    from jmarl.core.env import Environment
    from jmarl.train import run
    assert jmarl.env.Environment is Environment and jmarl.run is run and jmarl.policy.load is jmarl.load
