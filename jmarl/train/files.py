"""The files of a run directory that every part of a run reads: their names, ``config.json`` (``read_config``),
``metrics.jsonl`` (``read_metrics``) and ``results.json`` (``read_results``), each checked and reported by name
when damaged (``read_json`` for any other JSON file a tool keeps). Kept apart from
``jmarl.train.run`` (which writes them) so that ``jmarl.train.load`` and the tools read runs without importing
the training loop."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Literal

from jmarl.core.config import ConfigError


class RunDirectoryError(ConfigError):
    """A run directory that cannot be used as asked (in use, not empty, damaged, nothing to resume);
    the message names the directory or file and says what to do."""


CONFIG_FILE, METRICS_FILE, RESULTS_FILE, LOCK_FILE = "config.json", "metrics.jsonl", "results.json", ".jmarl.lock"
# What a run's config.json must hold (with the types ``--resume`` and ``jmarl.load`` rely on).
_CONFIG_KEYS = {"algo": str, "env": str, "env_kwargs": dict, "config": dict, "hparams": dict, "seeds": list,
                "config_ids": list, "member_hparams": list}


# The keys every metrics.jsonl row carries (jmarl.train.run._chunk_rows), all ints.
_ROW_KEYS = ("chunk", "member", "config_id", "env_steps")
# Per member: seeds and config_ids are ints, member_hparams one mapping of hyperparameters each.
_MEMBER_TYPES = {"seeds": int, "config_ids": int, "member_hparams": dict}


def read_json(path: str | Path, what: str) -> Any:
    """The JSON value in ``path``; raises RunDirectoryError naming the file where it is missing (``what`` says
    what it holds) or not JSON (cut off, empty, not UTF-8)."""
    path = Path(path)
    if not path.is_file():
        raise RunDirectoryError(f"{path.parent}: no {path.name} ({what})")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirectoryError(f"{path} is damaged: not valid JSON ({e})") from None


def write_json(path: str | Path, value: Any) -> None:
    """Write ``value`` to ``path`` as JSON atomically: a kill leaves the old file or the new, never half."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


def _is(value: Any, kind: type) -> bool:
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def read_results(run_dir: str | Path) -> dict:
    """The ``results.json`` of a finished run; raises RunDirectoryError naming the file where it is missing,
    not JSON, or not a run's results (an object whose ``configs`` lists configurations with their config_id)."""
    path = Path(run_dir) / RESULTS_FILE
    results = read_json(path, "written when a run finishes; has it finished?")
    configs = results.get("configs") if isinstance(results, dict) else None
    if not isinstance(configs, list) or not all(isinstance(c, dict) and _is(c.get("config_id"), int)
                                                for c in configs):
        raise RunDirectoryError(f"{path} is damaged or not a run's results: it needs `configs`, a list of "
                                f"configurations each with its config_id")
    return results


def read_config(run_dir: str | Path) -> dict:
    """The ``config.json`` of the run in ``run_dir``; raises RunDirectoryError naming the directory (missing,
    not a run) or the file and what is wrong with it (not JSON, keys missing or of the wrong type)."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not run_dir.is_dir():
        raise RunDirectoryError(f"{run_dir}: no such run directory")
    if not path.is_file():
        raise RunDirectoryError(f"{run_dir} is not a jmarl run directory: it has no {CONFIG_FILE}")
    saved = read_json(path, "the run's settings")
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
    for key, kind in _MEMBER_TYPES.items():
        bad = [x for x in saved[key] if not _is(x, kind)]
        if bad:
            raise RunDirectoryError(f"{path} is damaged: {key} must hold one {kind.__name__} per member, not "
                                    f"{json.dumps(bad[0])}")
    return saved


def read_metrics(path: str | Path, warn: bool = True) -> list[dict]:
    """The rows of a metrics.jsonl (objects with integer ``chunk``, ``member``, ``config_id`` and
    ``env_steps``). A cut-off last line (what a kill while writing leaves) is dropped with a warning
    (``warn=False``: without a word, for a second read of the file); any other bad line raises
    RunDirectoryError naming the file and line (``read_jsonl``)."""
    return read_jsonl(path, {k: int for k in _ROW_KEYS}, "metrics row", "drop" if warn else "drop quietly")


_TYPE_NAMES = {int: "integer", str: "string"}


def read_jsonl(path: str | Path, required: dict[str, type], what: str,
               cut_off: Literal["drop", "drop quietly", "error"] = "error", hint: str = "") -> list[dict]:
    """The rows of a JSON-lines file (none where it does not exist): JSON objects with the ``required`` keys of
    their types. A line that is not one raises RunDirectoryError naming the file, the line and ``what`` a
    line should be, as does a file that is not UTF-8. The last line without its newline, cut off by a kill
    while appending, is dropped with a warning (``cut_off="drop"``), dropped quietly, or an error like any
    other (``"error"``, followed by ``hint``)."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        lines = path.read_bytes().decode("utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise RunDirectoryError(f"{path} is damaged: not UTF-8 text ({e})") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
            missing = [f"{_TYPE_NAMES.get(t, t.__name__)} {k}" for k, t in required.items() if not _is(row.get(k), t)]
            if missing:
                raise ValueError(f"no {', '.join(missing)}")
        except ValueError as e:
            last = number == len(lines)  # the last line, without its newline: cut off by a kill
            if last and cut_off != "error":
                if cut_off == "drop":
                    print(f"jmarl: warning: {path}: dropped the cut-off last line {number} (what a kill while "
                          f"writing leaves)", file=sys.stderr)
                continue
            raise RunDirectoryError(f"{path} is damaged: line {number} is not a {what} ({e})"
                                    + (f"; {hint}" if last and hint else "")) from None
        rows.append(row)
    return rows
