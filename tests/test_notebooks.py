"""The notebooks run end to end (on tiny budgets: JMARL_NOTEBOOK_FAST=1) and are committed without outputs."""
import json
import os
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ["quickstart", "sweeps", "custom_env", "arms_race"]


def _read(name: str):
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def _run(name: str, cwd: Path, monkeypatch):
    """Execute the notebook in ``cwd`` on tiny budgets; returns {cell index: text output}."""
    monkeypatch.setenv("JMARL_NOTEBOOK_FAST", "1")
    # Compiling dominates runs this short: XLA's cheapest CPU code generation compiles ~40% faster.
    flags = os.environ.get("XLA_FLAGS", "")
    monkeypatch.setenv("XLA_FLAGS", f"{flags} --xla_backend_optimization_level=0".strip())
    book = _read(name)
    NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    texts = {}
    for i, cell in enumerate(book.cells):
        if cell.cell_type == "code":
            texts[i] = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                               for o in cell.outputs)
    return book, texts


def _images(book) -> int:
    """Inline plots the notebook showed."""
    return sum("image/png" in o.get("data", {}) for c in book.cells for o in c.get("outputs", []))


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name):
    book = _read(name)
    nbformat.validate(book)
    assert book.cells[0].cell_type == "markdown"
    assert any("JMARL_NOTEBOOK_FAST" in c.source for c in book.cells)  # tests can shrink its budgets
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: clear the outputs"


def test_quickstart(tmp_path, monkeypatch):
    book, texts = _run("quickstart", tmp_path, monkeypatch)
    run_dir = tmp_path / "runs" / "quickstart_ippo"
    for f in ("config.json", "metrics.jsonl", "results.json", "checkpoints"):
        assert (run_dir / f).exists(), f
    gif = tmp_path / "quickstart_episode.gif"
    import imageio.v3 as iio
    assert len(iio.imread(gif, index=None)) == 26  # a 25-step episode and its reset frame
    out = "\n".join(texts.values())
    assert "random policy: team return" in out and "26 frames" in out
    assert _images(book) >= 1  # the learning curve
    assert not (run_dir / "curve_references.png").exists()  # a run without fixed references draws no such curve


def test_sweeps(tmp_path, monkeypatch):
    book, texts = _run("sweeps", tmp_path, monkeypatch)
    out = "\n".join(texts.values())
    assert _images(book) == 1
    assert "9 members" in out and "(9, 2)" in out  # 3 learning rates x 3 seeds, 2 evaluations each
    assert out.count("final return") == 3


def test_custom_env(tmp_path, monkeypatch):
    book, texts = _run("custom_env", tmp_path, monkeypatch)
    out = "\n".join(texts.values())
    assert _images(book) == 1
    assert "MeetUp(meet_up; agents: 3x(8,) -> Discrete(n=5))" in out
    assert "ValueError: meet_up: team 'agents' actions have shape (2,), expected (3,)" in out
    assert "greedy return per evaluation:" in out


def test_arms_race(tmp_path, monkeypatch):
    """simple_tag start to end: a pool league and a simultaneous baseline (2 seeds each), their reference curves,
    cross-play of every policy with the references and ratings (the exploitability probe, a training run of
    its own, is skipped at the test's budget; tests/test_crossplay.py tests it)."""
    import imageio.v3 as iio

    from jmarl.train.plots import reference_keys

    book, texts = _run("arms_race", tmp_path, monkeypatch)
    root = tmp_path / "runs" / "arms_race_fast"
    sides, refs = ["adversaries", "prey"], ["random", "heuristic"]
    for name in ("pool", "simultaneous"):
        rows = [json.loads(line) for line in (root / name / "metrics.jsonl").read_text().splitlines()]
        assert len(rows) == 2 * 2  # 2 seeds x 2 evaluations
        # Both runs evaluated each side against both references (the simultaneous one because it was asked to),
        # so the run drew their curves: a panel per side.
        assert reference_keys(rows) == {s: {r: f"eval/vs_{r}/return/{s}" for r in refs} for s in sides}
        assert iio.imread(root / name / "curve_references.png").shape[:2] == (400, 1200)
    assert iio.imread(root / "reference_curves.png").shape[:2] == (400, 1200)  # both runs on one figure

    labels = ["pool#0", "pool#1", "simultaneous#0", "simultaneous#1", "heuristic", "random"]
    matrix = json.loads((root / "crossplay" / "crossplay.json").read_text())
    assert matrix["rows"] == matrix["cols"] == labels
    assert len(matrix["programs"]) == 1  # every learned policy stacked, the references as branches
    with np.load(root / "crossplay" / "crossplay_episodes.npz") as f:
        captures = f["metric__captures"]
    assert captures.shape == (6, 6, 4)  # 6 predator policies x 6 prey policies x 4 episodes
    np.testing.assert_allclose(matrix["mean"]["metric/captures"], captures.mean(-1), rtol=1e-6)
    ratings = json.loads((root / "crossplay" / "ratings.json").read_text())
    for side in ("rows", "cols"):
        players = ratings[side]["players"]
        assert [p["label"] for p in players] == labels
        for p in players:
            assert p["lo"] - 1e-9 <= p["rating"] <= p["hi"] + 1e-9

    out = "\n".join(texts.values())
    assert "programs compiled: 1" in out
    assert _images(book) == 3  # the reference curves, the cross-play heat maps, the ratings
