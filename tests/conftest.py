"""Test-wide settings, set before anything imports jax (subprocesses of tests inherit them):

- The CLI's persistent compilation cache stays off (tests must not write into the user's cache directory;
  tests/test_compare.py's cache test turns it on in a temporary directory).
- XLA compiles with LLVM's optimisation level 0: the test programs are tiny and run for milliseconds, so
  compiling is most of the suite's time, and level 0 compiles them in less CPU time. Results are the same
  computation (no fast-math), so assertions hold unchanged; benchmarks and users keep XLA's default level.
- XLA:CPU's MLIR fusion emitters are off (the older emitters compile the same fusions in about half the time:
  tests/test_ppo.py 104.5 -> 61.2 CPU seconds, every test passing unchanged).
"""
import os

os.environ.setdefault("JMARL_COMPILE_CACHE", "0")
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
if "xla_cpu_use_fusion_emitters" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_cpu_use_fusion_emitters=false"
