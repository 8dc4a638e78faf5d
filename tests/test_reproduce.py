"""`jmarl reproduce`: the smoke preset end to end (row fields, markdown regeneration), preset listing, and
errors that come before anything trains (unknown preset, a bad entry anywhere in a preset)."""
import json
from pathlib import Path

import pytest

from jmarl.tools import reproduce
from jmarl.tools.cli import main
from jmarl.core.config import ConfigError


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One run of the smoke preset through the command line: (tmp dir, return code, rows written)."""
    tmp = tmp_path_factory.mktemp("reproduce")
    results = tmp / "results.jsonl"
    code = main(["reproduce", "smoke", "--seeds", "2", "--out", str(tmp / "runs"), "--results", str(results),
                 "--quiet"])
    return tmp, code, reproduce.read_rows(results)


def test_smoke_row(smoke):
    tmp, code, rows = smoke
    assert code == 0
    (row,) = rows
    assert (row["preset"], row["algo"], row["env"], row["metric"]) == ("smoke", "ippo", "probe_matrix", "return")
    # probe_matrix pays each of its 2 agents between 0 and 10 in its one step.
    assert row["seeds"] == 2 and len(row["per_seed"]) == 2 and row["seed_list"] == [0, 1]
    assert all(0.0 <= v <= 20.0 for v in row["per_seed"])
    assert min(row["per_seed"]) <= row["mean"] <= max(row["per_seed"])
    assert row["ci"][0] <= row["mean"] <= row["ci"][1]
    assert row["iqm_ci"][0] <= row["iqm"] <= row["iqm_ci"][1]
    assert row["env_steps"] == row["budget"] == 16 * 8 * 40 and not row["scaled"]
    assert row["published"]["value"] == 20.0 and "probes.py" in row["published"]["source"]
    assert row["command"] == "jmarl reproduce smoke --seeds 2"
    assert row["wall_seconds"] > 0 and row["env_steps_per_second"] > 0
    assert row["hardware"]["backend"] and row["hardware"]["jax"] and row["date"]
    results_json = json.loads((tmp / "runs" / "ippo_probe_matrix" / "results.json").read_text())
    assert results_json["configs"][0]["returns"] == row["per_seed"]
    # The learning curve: every chunk's greedy evaluation, per seed, at increasing env steps.
    curve, chunks = row["curve"], row["config"]["config"]["num_evals"]
    assert len(curve["env_steps"]) == chunks and curve["env_steps"] == sorted(curve["env_steps"])
    assert curve["env_steps"][-1] == row["env_steps"]
    assert len(curve["per_seed"]) == 2 and all(len(c) == chunks and 0.0 <= min(c) <= max(c) <= 20.0
                                               for c in curve["per_seed"])


def test_markdown_regenerates_from_rows(smoke):
    tmp, _, rows = smoke
    md_path = tmp / "results.md"
    written = md_path.read_text()
    assert "## probe_matrix" in written and "`jmarl reproduce smoke --seeds 2`" in written
    assert f"{rows[0]['mean']:.1f} [{rows[0]['ci'][0]:.1f}, {rows[0]['ci'][1]:.1f}]" in written
    md_path.unlink()
    assert reproduce.write_markdown(tmp / "results.jsonl") == md_path and md_path.read_text() == written
    # A win-rate row of another environment gets its own table and percentages.
    smax_row = dict(rows[0], env_label="smax 3m", metric="win_rate", mean=0.5, ci=[0.25, 0.75], iqm=0.5,
                    published={"value": 0.9, "source": "a paper", "measures": ""})
    md = reproduce.render_markdown([rows[0], smax_row])
    assert "## smax 3m" in md and "50% [25%, 75%]" in md and "90% [" in md and "a paper" in md
    assert "(1 seed, no CI)" in reproduce.render_markdown([dict(smax_row, seeds=1)])
    # A row's note (e.g. an older version of the preset) is a numbered source after the preset's name.
    noted = reproduce.render_markdown([dict(smax_row, note="the preset before a change")])
    assert f"| {smax_row['preset']} [2] |" in noted and "2. the preset before a change" in noted


def test_scaled_budget_is_recorded():
    entry = reproduce.REPRODUCTION_PRESETS["smoke"].entries[0]
    assert reproduce.budget(entry, 2048, None) == 2048
    assert reproduce.budget(entry, None, 0.5) == entry.total_timesteps // 2
    with pytest.raises(ConfigError, match="not both"):
        reproduce.budget(entry, 2048, 0.5)
    command = reproduce.command_line("smoke", 3, None, 0.5, ["ippo"])
    assert command == "jmarl reproduce smoke --seeds 3 --scale 0.5 --only ippo"


def test_unknown_preset_lists_valid_ones(tmp_path, capsys):
    assert main(["reproduce", "no_such_preset", "--results", str(tmp_path / "r.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "no_such_preset" in err and all(name in err for name in reproduce.REPRODUCTION_PRESETS)
    assert not (tmp_path / "r.jsonl").exists()


@pytest.mark.parametrize("option, fragment", [
    (["--seeds", "0"], "--seeds 0: need at least 1"),
    (["--steps", "-5"], "--steps -5: need at least 1 env step per seed"),  # was blamed on total_timesteps
    (["--scale", "0"], "--scale 0.0: must be a positive factor"),
    (["--scale", "nan"], "--scale nan: must be a positive factor"),
    (["--steps", "100", "--scale", "2"], "give --steps or --scale, not both"),
])
def test_budget_options_are_checked_by_name(option, fragment, tmp_path, capsys):
    assert main(["reproduce", "smoke", "--results", str(tmp_path / "r.jsonl"), "--out", str(tmp_path / "o"),
                 *option]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err, err
    assert not (tmp_path / "r.jsonl").exists() and not (tmp_path / "o").exists()


def test_every_entry_is_validated_before_training(tmp_path, monkeypatch):
    good = reproduce.REPRODUCTION_PRESETS["smoke"].entries[0]
    bad = reproduce.Entry("ippo", "probe_matrix", 5120, good.published, overrides={"num_env": 4})
    monkeypatch.setitem(reproduce.REPRODUCTION_PRESETS, "broken", reproduce.Preset("broken", "a bad second entry", (good, bad)))
    with pytest.raises(ConfigError, match="num_env") as err:
        reproduce.reproduce("broken", out=tmp_path / "runs", results_file=tmp_path / "r.jsonl", quiet=True)
    assert "Did you mean ['num_envs'" in str(err.value)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "r.jsonl").exists()


def test_shipped_presets_resolve():
    for preset in reproduce.REPRODUCTION_PRESETS.values():
        assert preset.entries
        reproduce.validate(preset.entries, None, None)


def test_like_for_like_smax_changes_only_the_game():
    # jaxmarl_env_smax trains each algorithm at exactly its jmarl_smax settings for the map, in JaxMARL's SMAX.
    ours = {(e.algo, e.env_kwargs["scenario"]): e for e in reproduce.get_preset("jmarl_smax").entries
            if e.algo in ("ippo", "mappo") and set(e.env_kwargs) == {"scenario"}}
    entries = reproduce.get_preset("jaxmarl_env_smax").entries
    assert {(e.algo, e.env_kwargs["scenario"]) for e in entries} == {
        (a, s) for s in ("2s3z", "3s5z", "6h_vs_8z") for a in ("ippo", "mappo")}
    for e in entries:
        theirs, mine = e.resolved(10_000_000), ours[e.algo, e.env_kwargs["scenario"]].resolved(10_000_000)
        assert e.env == "jaxmarl:HeuristicEnemySMAX" and theirs.config == mine.config and theirs.hparams == mine.hparams
    assert entries[4].resolved(1).hparams.lr == 4e-3  # IPPO 6h_vs_8z's qualified preset came along


def test_list(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for preset in reproduce.REPRODUCTION_PRESETS.values():
        assert f"{preset.name}:" in out and all(e.name in out for e in preset.entries)
    assert "ippo_ff_mpe.yaml" in out
    assert main(["reproduce", "smoke", "--list"]) == 0  # one preset: it alone
    out = capsys.readouterr().out
    assert out.startswith("smoke:") and "jaxmarl_mpe" not in out
    assert main(["reproduce", "smok", "--list"]) == 2 and "unknown preset 'smok'" in capsys.readouterr().err


def test_budgets_are_written_in_scientific_notation():
    assert [reproduce.format_steps(n) for n in (2_000_000, 9_984_000, 490_000)] == ["2.0e6", "1.0e7", "4.9e5"]


def test_comparison_table_picks_headline_rows():
    """One line per entry of a preset: the full-budget row before newer shrunk or noted ones, 'not run'
    where nothing was run, 'reached' at the shown precision, the curve as means over seeds."""
    entries = reproduce.REPRODUCTION_PRESETS["jmarl_smax"].entries
    base = dict(preset="jmarl_smax", algo="mappo", env="smax", env_label="smax 2s3z", metric="win_rate", seeds=2,
                budget=10_000_000, published={"value": 1.0, "source": "p", "measures": ""}, note="")
    full = dict(base, env_steps=9_994_240, scaled=False, mean=0.995, ci=[0.99, 1.0], per_seed=[0.99, 1.0],
                date="2026-11-01", curve={"env_steps": [1, 2], "per_seed": [[0.1, 0.99], [0.3, 1.0]]})
    short = dict(full, env_steps=1_000_000, scaled=True, mean=0.5, per_seed=[0.5, 0.5], date="2026-12-01")
    noted = dict(full, note="an older preset", mean=0.2, date="2026-12-02")
    other = dict(short, preset="jaxmarl_smax", mean=0.1)
    table = reproduce.render_comparison([short, full, noted, other], "jmarl_smax", ("mappo",))
    lines = [ln for ln in table.splitlines()[2:] if ln.startswith("| ")]
    assert len(lines) == sum(e.algo == "mappo" for e in entries)
    (line,) = [ln for ln in lines if ln.startswith("| smax 2s3z | mappo |")]
    assert "| 1.0e7 | 2 | 100% [99%, 100%] | 99%, 100% | 100% | yes | 20% 100% |" in line
    assert "| smax 3s5z | mappo | not run |" in table and "| ippo |" not in table
    # A shrunk row alone speaks, and says at which budget; below the figure is "no".
    table = reproduce.render_comparison([short], "jmarl_smax", ("mappo",))
    assert "| 1.0e6 (of 1.0e7) | 2 | 50% [99%, 100%] | 50%, 50% | 100% | no (at 1.0e6) |" in table
    # A noted row (older settings) that speaks alone cites its note, listed below the table.
    table = reproduce.render_comparison([noted], "jmarl_smax", ("mappo",))
    assert "| smax 2s3z | mappo | 1.0e7 [1] | 2 | 20% [99%, 100%] |" in table
    assert "\n\n1. an older preset\n2. against JaxMARL's enemy rule" in table  # then the 6h_vs_8z figure's note


def test_published_figures_measured_against_another_enemy_rule_say_so():
    """On 6h_vs_8z JaxMARL's figure was measured against its (easier) enemy rule: the table cites that beside
    the figure of jmarl's-rule entries and names the like-for-like entry; other maps and the like-for-like
    entries (and JaxMARL's settings, which use its rule) cite nothing."""
    table = reproduce.render_comparison([], "jmarl_smax", ("ippo",))
    (line,) = [ln for ln in table.splitlines() if ln.startswith("| smax 6h_vs_8z | ippo |")]
    assert line.endswith("| 95% [1] | | |")
    assert "1. against JaxMARL's enemy rule" in table and "ippo/smax_6h_vs_8z_advance=random_visible" in table
    assert "| smax 6h_vs_8z (advance=random_visible) | ippo | not run | | | | 95% | | |" in table
    assert "| smax 2s3z | ippo | not run | | | | 90% | | |" in table
    assert "[1]" not in reproduce.render_comparison([], "jaxmarl_smax", ("ippo", "mappo"))


def test_rows_trained_before_a_preset_change_are_found():
    """A row records its config; a setting its entry has changed since is reported and cited, a key added
    since (nothing recorded to compare) is not, and a current row beats a newer stale one as headline."""
    entry = next(e for e in reproduce.REPRODUCTION_PRESETS["jmarl_smax"].entries if e.name == "ippo/smax_2s3z")
    config = json.loads(json.dumps(entry.resolved(entry.total_timesteps).to_dict()))
    row = dict(preset="jmarl_smax", algo="ippo", env="smax", env_label="smax 2s3z", metric="win_rate", seeds=2,
               budget=entry.total_timesteps, env_steps=9_994_240, scaled=False, mean=0.9, ci=[0.8, 1.0],
               per_seed=[0.8, 1.0], published={"value": 0.9, "source": "p", "measures": ""}, note="",
               date="2026-11-01", config=config)
    assert reproduce.settings_changed(row) == {} and reproduce.row_notes(row) == []
    assert reproduce.settings_changed(dict(row, config=None)) == {}
    # chunk_rows changes speed, not results (PPOConfig.speed_only): rows trained at 512 are not marked.
    sliced = dict(config, config=dict(config["config"], chunk_rows=512))
    assert config["config"]["chunk_rows"] is None and reproduce.settings_changed(dict(row, config=sliced)) == {}
    old_hparams = dict(config["hparams"], ent_coef=config["hparams"]["ent_coef"] + 0.5)
    old_config = {k: v for k, v in config["config"].items() if k != "fixed_policy"}  # a key added since
    stale = dict(row, config=dict(config, hparams=old_hparams, config=old_config), mean=0.1, date="2026-12-01")
    now = config["hparams"]["ent_coef"]
    assert reproduce.settings_changed(stale) == {"ent_coef": (now + 0.5, now)}
    assert reproduce.row_notes(dict(stale, note="n")) == ["n", f"trained before a preset change: "
                                                               f"ent_coef={now + 0.5} (now {now})"]
    table = reproduce.render_comparison([stale], "jmarl_smax", ("ippo",))
    assert "| smax 2s3z | ippo | 1.0e7 [1] | 2 | 10% [80%, 100%] |" in table
    assert f"\n1. trained before a preset change: ent_coef={now + 0.5} (now {now})\n" in table
    assert "| smax 2s3z | ippo | 1.0e7 | 2 | 90% [80%, 100%] |" in reproduce.render_comparison(
        [row, stale], "jmarl_smax", ("ippo",))


def test_resume_continues_a_killed_preset(tmp_path, monkeypatch):
    """A preset killed after its first chunk resumes from that checkpoint (chunk 0 is not trained again); run
    once more, the finished entry is skipped rather than trained or recorded twice."""
    import jmarl.train.run

    real_train = jmarl.train.run.train

    def killed_after_first_chunk(*args, **kwargs):
        def kill(chunk, rows):
            raise KeyboardInterrupt
        return real_train(*args, on_chunk=kill, **kwargs)

    runs, results = tmp_path / "runs", tmp_path / "r.jsonl"
    kw = dict(seeds=1, out=runs, results_file=results, quiet=True, resume=True)
    monkeypatch.setattr(jmarl.train.run, "train", killed_after_first_chunk)
    with pytest.raises(KeyboardInterrupt):
        reproduce.reproduce("smoke", **kw)
    assert not results.exists()
    monkeypatch.setattr(jmarl.train.run, "train", real_train)
    (row,) = reproduce.reproduce("smoke", **kw)
    chunks = [json.loads(line)["chunk"] for line in (runs / "ippo_probe_matrix" / "metrics.jsonl").open()]
    assert chunks == list(range(row["config"]["config"]["num_evals"]))  # each chunk trained and logged once
    # The wall time counts chunk 0 too: the killed command's training time travelled in its checkpoint.
    assert row["resumed_at_chunk"] == 1 and 0 < row["earlier_train_seconds"] < row["wall_seconds"]
    assert reproduce.row_notes(row) == []
    assert reproduce.row_notes(dict(row, earlier_train_seconds=None)) == [
        "wall time from chunk 1 on: resumed from a checkpoint that predates the run clock"]
    # Both commands ran here: one machine, no note. A row resumed elsewhere names where each chunk ran.
    assert [s["chunks"] for s in row["machines"]] == [[0, row["config"]["config"]["num_evals"]]]
    moved = [{"machine": "A", "chunks": [0, 1], "train_seconds": 1.2}, {"machine": "B", "chunks": [1, 3],
                                                                          "train_seconds": None}]
    assert reproduce.row_notes(dict(row, machines=moved)) == [
        "trained on more than one machine: chunk 1 on A (1 s of training); chunks 2-3 on B"]
    old = {k: v for k, v in row.items() if k != "machines"}  # a row from before rows recorded their machines
    assert reproduce.row_notes(old) == ["chunk 1 trained by an earlier command on a machine not recorded"]
    assert reproduce.reproduce("smoke", **kw) == []
    assert [(r["run_dir"], r["date"]) for r in reproduce.read_rows(results)] == [(row["run_dir"], row["date"])]
    with pytest.raises(ConfigError, match="--out"):
        reproduce.reproduce("smoke", seeds=1, results_file=results, quiet=True, resume=True)


def test_committed_results_table_is_current():
    """docs/results.md is exactly what the rows give with today's presets. A row is cited with its old value
    when a preset key changes under it (settings_changed), so changing a preset without redrawing the tables
    (`python -c "from jmarl.tools.reproduce import write_markdown; write_markdown('docs/results.jsonl')"`)
    fails here: no headline silently keeps a number trained at other settings."""
    docs = Path(__file__).resolve().parents[1] / "docs"
    rows = reproduce.read_rows(docs / "results.jsonl")
    assert (docs / "results.md").read_text() == reproduce.render_markdown(rows)
