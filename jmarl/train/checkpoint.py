"""Full-state checkpoints with orbax-checkpoint, verified before they are loaded.

A checkpoint is ``<root>/chunk_<NNNNNN>/``: orbax's files for the whole runner state (parameters,
optimiser states, environment states, RNG keys, update counter, buffers) plus ``jmarl_manifest.json``,
written last and atomically, holding a SHA-256 of every file and the run's metadata. A checkpoint
without a manifest (the run died while saving) or whose files do not match it (damaged) is reported
with its path and skipped; resume falls back to the newest intact one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

MANIFEST = "jmarl_manifest.json"


class CheckpointError(RuntimeError):
    """A checkpoint that is partial or damaged; the message names its path."""


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): _digest(p) for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def save(root: str | os.PathLike, chunk: int, state: Any, meta: dict, keep: int = 3) -> Path:
    """Save ``state`` as checkpoint ``chunk`` under ``root``, then keep only the newest ``keep``."""
    root = Path(root)
    path = root / f"chunk_{chunk:06d}"
    if path.exists():
        shutil.rmtree(path)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path.absolute(), state)
    checkpointer.wait_until_finished()
    manifest = {"files": _files(path), "meta": {**meta, "chunk": chunk}}
    tmp = path / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path / MANIFEST)  # atomic: a manifest exists only for a complete checkpoint
    for old in sorted(root.glob("chunk_*"))[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return path


def verify(path: str | os.PathLike) -> dict:
    """Return the checkpoint's metadata, or raise CheckpointError if it is partial or damaged."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise CheckpointError(f"checkpoint {path} is partial: no {MANIFEST} (the run stopped while saving)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} is damaged: unreadable {MANIFEST} ({e})") from e
    found = _files(path)
    expected = manifest.get("files", {})
    missing = sorted(set(expected) - set(found))
    changed = sorted(f for f in expected if f in found and found[f] != expected[f])
    if missing or changed:
        raise CheckpointError(f"checkpoint {path} is damaged: missing files {missing[:5]}, "
                              f"changed files {changed[:5]}")
    return manifest["meta"]


def latest_intact(root: str | os.PathLike) -> tuple[Path, dict] | None:
    """The newest checkpoint under ``root`` that verifies; damaged ones are reported on stderr."""
    for path in sorted(Path(root).glob("chunk_*"), reverse=True):
        try:
            return path, verify(path)
        except CheckpointError as e:
            print(f"jmarl: skipping {e}", file=sys.stderr)
    return None


def restore(path: str | os.PathLike, like: Any) -> Any:
    """Load a verified checkpoint into the structure of ``like`` (arrays or ShapeDtypeStructs)."""
    verify(path)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), like)
    try:
        return ocp.StandardCheckpointer().restore(Path(path).absolute(), abstract)
    except Exception as e:  # orbax raises many types for unreadable data
        raise CheckpointError(f"checkpoint {path} could not be loaded: {type(e).__name__}: {e}") from e
