"""Shared by the benchmark scripts: the machine's description and rewriting one section of docs/benchmarks.md."""
from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import jax

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def machine() -> str:
    """CPU model and cores (or the accelerator), jax version and backend."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1).strip()
    except (OSError, AttributeError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    dev = jax.devices()[0]
    return f"{cpu}, {cores} cores; jax {jax.__version__}, backend {jax.default_backend()} ({dev.device_kind})"


def write_section(heading: str, text: str, path: Path = DOC) -> None:
    """Replace the section that starts with ``heading`` (up to the next ``## `` heading) or append it."""
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(doc):
        doc = pattern.sub(lambda _: text.rstrip() + "\n\n", doc, count=1)
    else:
        doc = doc.rstrip() + "\n\n" + text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc.rstrip() + "\n")
