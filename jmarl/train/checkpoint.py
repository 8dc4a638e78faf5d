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
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import jax

from jmarl.train import distributed
from jmarl.train.files import write_json

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


_CHUNK_DIR = re.compile(r"chunk_(\d{6})")


def chunk_dirs(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """The checkpoint directories under ``root`` as (chunk, path), oldest first; orbax's temporary directories
    (``chunk_000002.orbax-checkpoint-tmp-...``, left by a process killed while saving) are not among them."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _CHUNK_DIR.fullmatch(p.name))]
    return sorted(found)


def remove_unfinished(root: str | os.PathLike) -> list[Path]:
    """Delete what saving left behind when it was killed (orbax's temporary directories); returns them.
    Call only while holding the run directory's lock: another writer's save in progress looks the same."""
    root = Path(root)
    stale = [p for p in root.iterdir() if ".orbax-checkpoint-tmp" in p.name] if root.is_dir() else []
    for p in stale:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return stale


def save(root: str | os.PathLike, chunk: int, state: Any, meta: dict, keep: int = 3) -> Path:
    """Save ``state`` as checkpoint ``chunk`` under ``root``, then keep only the newest ``keep`` (0: all).

    Checkpoints of later chunks than ``chunk`` are deleted first: after a resume from an earlier checkpoint
    they are damaged or partial ones being recomputed, and they must not count toward ``keep`` (which would
    delete the checkpoint just saved).

    In a cluster (``jmarl.train.distributed``) every process calls it: each writes its own shards of ``state``
    (orbax's multi-process save) into the same directory, on a filesystem they share; process 0 alone deletes,
    hashes and writes the manifest, after a barrier, so that every process can restore it. When ``save``
    returns on any process, the manifest is written."""
    root = Path(root)
    path = root / f"chunk_{chunk:06d}"
    if distributed.is_writer():
        later = [old for c, old in chunk_dirs(root) if c > chunk]
        if later:  # said, not done silently: the resume that skipped them reported why
            print(f"jmarl: deleting checkpoint(s) {', '.join(p.name for p in later)} of later chunks (skipped at "
                  f"resume as damaged or partial; recomputed now)", file=sys.stderr)
        for old in later:
            shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            shutil.rmtree(path)
    distributed.barrier(f"jmarl checkpoint {chunk}: cleared")
    import orbax.checkpoint as ocp  # here, not at the top: `import jmarl` stays light

    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path.absolute(), state)
    checkpointer.wait_until_finished()
    distributed.barrier(f"jmarl checkpoint {chunk}: written")  # every process's shards are on disk
    if distributed.is_writer():
        manifest = {"files": _files(path), "meta": {**meta, "chunk": chunk}}
        write_json(path / MANIFEST, manifest)  # atomic: a manifest exists only for a complete checkpoint
        for _, old in chunk_dirs(root)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    distributed.barrier(f"jmarl checkpoint {chunk}: manifest")
    return path


def verify(path: str | os.PathLike) -> dict:
    """Return the checkpoint's metadata, or raise CheckpointError if it is partial or damaged."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not path.is_dir():
        held = [p.name for _, p in chunk_dirs(path.parent)]
        raise CheckpointError(f"checkpoint {path}: no such directory"
                              + (f"; {path.parent} holds {held}" if held else ""))
    if not manifest_path.exists():
        raise CheckpointError(f"checkpoint {path} is partial: no {MANIFEST} (the run stopped while saving)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} is damaged: unreadable {MANIFEST} ({e})") from e
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise CheckpointError(f"checkpoint {path} is damaged: {MANIFEST} lists no files")
    found = _files(path)
    expected = manifest["files"]
    missing = sorted(set(expected) - set(found))
    changed = sorted(f for f in expected if f in found and found[f] != expected[f])
    if missing or changed:
        raise CheckpointError(f"checkpoint {path} is damaged: missing files {missing[:5]}, "
                              f"changed files {changed[:5]}")
    if not isinstance(manifest.get("meta"), dict) or not isinstance(manifest["meta"].get("chunk"), int):
        raise CheckpointError(f"checkpoint {path} is damaged: {MANIFEST} has no chunk number")
    return manifest["meta"]


def latest_intact(root: str | os.PathLike) -> tuple[Path, dict] | None:
    """The newest checkpoint under ``root`` that verifies; damaged ones are reported on stderr."""
    for _, path in reversed(chunk_dirs(root)):
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
        import orbax.checkpoint as ocp

        restored = ocp.StandardCheckpointer().restore(Path(path).absolute(), abstract)
    except Exception as e:  # orbax raises many types for unreadable data
        raise CheckpointError(f"checkpoint {path} could not be loaded: {type(e).__name__}: {e}") from e
    return jax.tree.map(_weak_like, restored, like)


def _weak_like(restored: Any, like: Any) -> Any:
    """``restored`` weakly typed where ``like`` is (e.g. flashbax's buffer index, made from a Python int): the
    files do not keep weak types, and without them a resumed run would trace, compile and run a different
    program than the uninterrupted one (weak and strong types promote differently)."""
    if not getattr(like, "weak_type", False) or getattr(restored, "weak_type", True):
        return restored
    try:
        from jax._src.lax.lax import _convert_element_type  # no public way to set weak_type
    except ImportError:  # a JAX without it: the program is retraced for the strong type (slower, still exact here)
        return restored
    return _convert_element_type(restored, restored.dtype, weak_type=True)
