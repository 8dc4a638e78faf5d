"""`jmarl compare`: the table's statistics against hand-computed values, sweeps as several methods, refusal
of runs on different environments, and the curves PNG."""
import json

import numpy as np
import pytest

from jmarl.core.config import ConfigError
from jmarl.tools import compare
from jmarl.tools.cli import main


def fake_run(path, env="mpe_spread", configs=((0, [1.0, 2.0, 3.0]),), env_kwargs=None, metric_values=None):
    """A finished run directory as `jmarl train` leaves it (only what compare reads)."""
    path.mkdir(parents=True)
    members = [(c, i) for c, r in configs for i in range(len(r))]
    (path / "config.json").write_text(json.dumps({
        "algo": "ippo", "env": env, "env_kwargs": env_kwargs or {}, "config": {}, "hparams": {},
        "seeds": [i for _, i in members], "config_ids": [c for c, _ in members], "member_hparams": [{}] * len(members)}))
    results = {"configs": [{"config_id": c, "returns": r, "seeds": list(range(len(r))),
                            **({"metrics": {"covered": {"values": metric_values}}} if metric_values else {})}
                           for c, r in configs]}
    (path / "results.json").write_text(json.dumps(results))
    rows = [{"chunk": k, "member": i, "config_id": c, "env_steps": 100 * (k + 1),
             "eval/return": float("nan") if v is None else v - 1 + k}
            for c, r in configs for i, v in enumerate(r) for k in range(2)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_probability_of_improvement_by_hand():
    assert compare.probability_of_improvement([3, 4], [1, 2]) == 1.0
    assert compare.probability_of_improvement([1, 2], [3, 4]) == 0.0
    # pairs (1,1) tie: 0.5; (1,2) loses; (3,1) and (3,2) win -> (0.5 + 0 + 1 + 1) / 4
    assert compare.probability_of_improvement([1, 3], [1, 2]) == pytest.approx(0.625)


def test_table_curves_and_sweeps(tmp_path, capsys):
    a = fake_run(tmp_path / "a", configs=((0, [1.0, 2.0, 3.0]),))
    b = fake_run(tmp_path / "b", configs=((0, [4.0, 5.0, 6.0]), (1, [0.0, 0.5, 1.0])))
    out = tmp_path / "cmp.png"
    assert main(["compare", str(a), str(b), "--out", str(out), "--json", str(tmp_path / "cmp.json")]) == 0
    printed = capsys.readouterr().out
    assert "b [config 1]" in printed and "P(X > Y)" in printed
    result = json.loads((tmp_path / "cmp.json").read_text())
    assert [m["label"] for m in result["methods"]] == ["a", "b [config 0]", "b [config 1]"]
    assert result["methods"][0]["mean"] == pytest.approx(2.0) and result["methods"][0]["runs"] == 3
    ab = next(p for p in result["improvement"] if p["x"] == "a" and p["y"] == "b [config 0]")
    assert ab["p"] == 0.0 and ab["p_lo"] <= ab["p"] <= ab["p_hi"]
    assert out.stat().st_size > 0


def test_named_metric_and_refusals(tmp_path, capsys):
    a = fake_run(tmp_path / "a", metric_values=[1.0, 2.0, 3.0])
    other = fake_run(tmp_path / "tag", env="mpe_tag")
    methods = compare.load_methods([a], "covered")
    np.testing.assert_array_equal(methods[0].scores, [1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match="has no metric 'missing'"):
        compare.load_methods([a], "missing")
    with pytest.raises(ConfigError, match="different environments"):
        compare.load_methods([a, other])
    assert len(compare.load_methods([a, other], allow_mixed=True)) == 2
    assert main(["compare", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such run directory" in capsys.readouterr().err


def test_compile_cache_spares_the_second_compile(tmp_path):
    """The CLI's persistent compilation cache: a second identical command reads its programs instead of
    compiling them (programs that compile in under a second are not stored)."""
    import os
    import subprocess
    import sys

    # XLA's default fusion emitters here (tests/conftest.py turns them off): with the faster older ones this tiny
    # program compiles in under the cache's 1-second threshold and would not be stored.
    flags = os.environ.get("XLA_FLAGS", "").replace("--xla_cpu_use_fusion_emitters=false", "").strip()
    env = dict(os.environ, JMARL_COMPILE_CACHE=str(tmp_path / "cache"), XLA_FLAGS=flags)
    seconds = []
    for i in range(2):
        out = tmp_path / f"run{i}"
        proc = subprocess.run([sys.executable, "-m", "jmarl.tools.cli", "train", "ippo", "--env", "probe_matrix",
                               "--out", str(out), "--quiet", "--wandb", "disabled", "num_envs=8", "num_steps=8",
                               "total_timesteps=128", "num_evals=2", "num_minibatches=2", "eval_episodes=4"],
                              capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        seconds.append(json.loads((out / "results.json").read_text())["compile_seconds"])
    assert any(p.name.startswith("jit_run_chunk") for p in (tmp_path / "cache").iterdir())
    assert seconds[1] < 0.6 * seconds[0], seconds


@pytest.mark.parametrize("name, data, fragment", [
    ("config.json", b"{}", "config.json is damaged or not a jmarl run config: missing keys"),
    ("results.json", b"[]", "results.json is damaged or not a run's results"),
    ("results.json", b"\xff\xfe{}", "results.json is damaged: not valid JSON"),
    ("results.json", b'{"configs": [{"config_id": 0, "returns": "abc"}]}',
     "results.json is damaged: configuration 0's return values are unreadable"),
    ("metrics.jsonl", b'{"chunk": 0, "member": 0, "env_steps": 100}\n', "line 1 is not a metrics row (no integer "
                                                                         "config_id)"),
    ("metrics.jsonl", b'{"chunk": 0, "mem\n{"chunk": 1}\n', "metrics.jsonl is damaged: line 1 is not a metrics row"),
])
def test_damaged_run_files_are_named(name, data, fragment, tmp_path, capsys):
    a = fake_run(tmp_path / "a")
    (a / name).write_bytes(data)
    assert main(["compare", str(a)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(a / name) in err and fragment in err, err


def test_a_metric_that_does_not_apply_is_not_called_damage(tmp_path, capsys):
    a = fake_run(tmp_path / "a")
    assert main(["compare", str(a), "--metric", "return/wolves"]) == 2
    err = capsys.readouterr().err
    assert "has no team 'wolves'" in err and "damaged" not in err, err


def test_diverged_seeds_are_left_out_and_said(tmp_path, capsys):
    """A diverged seed (None in results.json) has no score: it used to turn its method's statistics into nan and
    P(X > Y) into a confident 0.00."""
    a = fake_run(tmp_path / "a", configs=((0, [1.0, None, 3.0]), (1, [None, None])))
    b = fake_run(tmp_path / "b", configs=((0, [2.0, 2.0]),))
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "c.png"),
                 "--json", str(tmp_path / "cmp.json")]) == 0
    out, err = capsys.readouterr()
    assert "a [config 0]: 1 of 3 seed(s) diverged" in err and "a [config 1]: 2 of 2 seed(s) diverged" in err
    assert "| a [config 0] | 2 (+1 diverged) | 2 [1, 3] |" in out
    assert "| a [config 1] | 0 (+2 diverged) | no score: every seed diverged | - |" in out and "nan" not in out
    result = json.loads((tmp_path / "cmp.json").read_text())
    first, dead, _ = result["methods"]
    assert first["scores"] == [1.0, 3.0] and first["mean"] == pytest.approx(2.0) and first["no_score"] == 1
    assert dead["runs"] == 0 and dead["mean"] is None
    assert [(p["x"], p["y"]) for p in result["improvement"]] == [("a [config 0]", "b")]  # none with the dead one
    assert result["improvement"][0]["p"] == pytest.approx(0.5)  # 1 < 2 and 3 > 2: the diverged seed not a loss
