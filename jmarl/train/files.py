"""The files of a run directory that every part of a run reads: their names, ``config.json`` (``read_config``)
and ``metrics.jsonl`` (``read_metrics``), each checked and reported by name when damaged. Kept apart from
``jmarl.train.run`` (which writes them) so that ``jmarl.train.load`` and the tools read runs without importing
the training loop."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from jmarl.core.config import ConfigError


class RunDirectoryError(ConfigError):
    """A run directory that cannot be used as asked (in use, not empty, damaged, nothing to resume);
    the message names the directory or file and says what to do."""


CONFIG_FILE, METRICS_FILE, RESULTS_FILE, LOCK_FILE = "config.json", "metrics.jsonl", "results.json", ".jmarl.lock"
# What a run's config.json must hold (with the types ``--resume`` and ``jmarl.load`` rely on).
_CONFIG_KEYS = {"algo": str, "env": str, "env_kwargs": dict, "config": dict, "hparams": dict, "seeds": list,
                "config_ids": list, "member_hparams": list}


def read_config(run_dir: str | Path) -> dict:
    """The ``config.json`` of the run in ``run_dir``; raises RunDirectoryError naming the directory (missing,
    not a run) or the file and what is wrong with it (not JSON, keys missing or of the wrong type)."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not run_dir.is_dir():
        raise RunDirectoryError(f"{run_dir}: no such run directory")
    if not path.is_file():
        raise RunDirectoryError(f"{run_dir} is not a jmarl run directory: it has no {CONFIG_FILE}")
    try:
        saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirectoryError(f"{path} is damaged: not valid JSON ({e})") from None
    if not isinstance(saved, dict):
        raise RunDirectoryError(f"{path} is damaged: a JSON {type(saved).__name__}, not a run's settings")
    missing = [k for k in _CONFIG_KEYS if k not in saved]
    wrong = [f"{k} (a {type(saved[k]).__name__}, not a {t.__name__})" for k, t in _CONFIG_KEYS.items()
             if k in saved and not isinstance(saved[k], t)]
    if missing or wrong:
        raise RunDirectoryError(f"{path} is damaged or not a jmarl run config: "
                                + "; ".join(([f"missing keys {missing}"] if missing else [])
                                            + ([f"wrong types: {', '.join(wrong)}"] if wrong else [])))
    if not len(saved["seeds"]) == len(saved["config_ids"]) == len(saved["member_hparams"]) > 0:
        raise RunDirectoryError(f"{path} is damaged: seeds, config_ids and member_hparams must have one entry "
                                f"per member (lengths {len(saved['seeds'])}, {len(saved['config_ids'])}, "
                                f"{len(saved['member_hparams'])})")
    return saved


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a metrics.jsonl. A cut-off last line (what a kill while writing leaves) is dropped with a
    warning; any other line that is not a JSON row raises RunDirectoryError naming the file and line."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text().split("\n")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("chunk"), int):
                raise ValueError("not a row with a chunk number")
        except ValueError as e:
            if number == len(lines):  # the last line, without its newline: cut off by a kill
                print(f"jmarl: warning: {path}: dropped the cut-off last line {number} (the run was stopped while "
                      f"writing it)", file=sys.stderr)
                continue
            raise RunDirectoryError(f"{path} is damaged: line {number} is not a metrics row ({e})") from None
        rows.append(row)
    return rows
