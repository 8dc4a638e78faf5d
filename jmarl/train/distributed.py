"""Many hosts: ``jax.distributed`` from the command line, the population over every device of every host, and the
few collectives the run loop needs between chunks.

Every process (one per host, or one per accelerator) runs the same command. ``initialize`` joins them into one JAX
runtime before anything touches a device; ``jax.devices()`` then lists the devices of every process. The run loop
(``jmarl.train.run``) places the population on all of them (``PopulationLayout``: padded with copies where the
device count does not divide it, the copies dropped from every result), and between chunks:

- every process gets the chunk's metrics of every member (``gather``), so they all take the same decisions
  (divergence, the end of the run);
- process 0 alone opens the run directory (lock, checks, ``config.json``), writes metrics, results and curves and
  shows progress; what it decided reaches the others with ``from_writer``;
- checkpoints are orbax's multi-process ones: every process writes its own members' shards into the same
  directory, process 0 writes the manifest after a barrier, so any process can restore (``jmarl.train.checkpoint``).

The run directory must be on a filesystem that every host sees (``check_shared`` refuses otherwise). With one
process every function here is the single-host behaviour: no barrier, no collective.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jmarl.core.config import ConfigError

# Environment variables read where the command line leaves a setting out: the same command can then be started
# on every host with only the process id differing (``JMARL_PROCESS_ID=$i jmarl sweep ...``).
ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID = "JMARL_COORDINATOR", "JMARL_NUM_PROCESSES", "JMARL_PROCESS_ID"
ENV_AUTO, ENV_TIMEOUT = "JMARL_AUTO_DISTRIBUTED", "JMARL_DISTRIBUTED_TIMEOUT"


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Where a process stands in a cluster: the coordinator's ``HOST:PORT`` (process 0 listens there), the number
    of processes and this one's id (0 .. num_processes - 1); or ``auto``: JAX finds them itself (SLURM, Open MPI,
    Cloud TPU, ...), with any of the three given overriding what it finds. All unset: one process, no cluster."""

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    auto: bool = False
    timeout_s: int = 300  # how long to wait for every process to join (jax.distributed's initialization_timeout;
    #                       $JMARL_DISTRIBUTED_TIMEOUT)

    @property
    def enabled(self) -> bool:
        return self.auto or any(v is not None for v in (self.coordinator, self.num_processes, self.process_id))

    @classmethod
    def from_settings(cls, coordinator: str | None = None, num_processes: str | int | None = None,
                      process_id: str | int | None = None, auto: bool = False,
                      environ: dict | None = None) -> "Cluster":
        """The command line's settings, each falling back to its ``JMARL_*`` environment variable; raises
        ConfigError for a value that is not a whole number (naming the option or variable)."""
        environ = os.environ if environ is None else environ

        def whole(value, option: str, variable: str) -> int | None:
            where = option
            if value is None and environ.get(variable, "").strip():
                value, where = environ[variable].strip(), f"{variable}={environ[variable]!r}"
            if value is None or isinstance(value, int):
                return value
            try:
                return int(value)
            except ValueError:
                raise ConfigError(f"{where}: {value!r} is not a whole number") from None

        auto_env = environ.get(ENV_AUTO, "").strip().lower()
        if auto_env not in ("", "0", "1", "true", "false", "yes", "no"):
            raise ConfigError(f"{ENV_AUTO}={environ[ENV_AUTO]!r}: use 1 (let JAX find the cluster) or 0")
        timeout = whole(None, "", ENV_TIMEOUT)
        if timeout is not None and timeout < 1:
            raise ConfigError(f"{ENV_TIMEOUT}={timeout}: give the seconds to wait for every process, at least 1")
        return cls(coordinator=coordinator or environ.get(ENV_COORDINATOR, "").strip() or None,
                   num_processes=whole(num_processes, "--num-processes", ENV_NUM_PROCESSES),
                   process_id=whole(process_id, "--process-id", ENV_PROCESS_ID),
                   auto=auto or auto_env in ("1", "true", "yes"), timeout_s=300 if timeout is None else timeout)

    def check(self) -> None:
        """Raise ConfigError (one line: what is wrong, what is valid) for settings no cluster can start with."""
        if self.coordinator is not None:
            host, sep, port = self.coordinator.rpartition(":")
            if not sep or not host.strip("[]") or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ConfigError(f"--coordinator {self.coordinator!r}: give HOST:PORT, the address of process 0 and "
                                  f"a free port on it (e.g. 10.0.0.1:12345 or 127.0.0.1:12345)")
        if self.num_processes is not None and self.num_processes < 1:
            raise ConfigError(f"--num-processes {self.num_processes}: must be at least 1")
        if self.process_id is not None:
            if self.process_id < 0:
                raise ConfigError(f"--process-id {self.process_id}: must be 0 .. num_processes - 1")
            if self.num_processes is not None and self.process_id >= self.num_processes:
                raise ConfigError(f"--process-id {self.process_id}: must be 0 .. {self.num_processes - 1} "
                                  f"(--num-processes {self.num_processes}); process 0 is the coordinator")
        missing = [o for o, v in (("--coordinator", self.coordinator), ("--num-processes", self.num_processes),
                                  ("--process-id", self.process_id)) if v is None]
        if self.enabled and not self.auto and missing:
            raise ConfigError(f"a cluster needs --coordinator HOST:PORT, --num-processes N and --process-id I on "
                              f"every process ({', '.join(missing)} missing; or {ENV_COORDINATOR}, "
                              f"{ENV_NUM_PROCESSES}, {ENV_PROCESS_ID}), or --auto-distributed where JAX finds the "
                              f"cluster itself (SLURM, Open MPI, Cloud TPU)")


def initialize(cluster: Cluster) -> bool:
    """Join the cluster (``jax.distributed.initialize``) when ``cluster`` asks for one; returns whether it did.
    Must run before anything touches a device. CPU processes talk through gloo. Raises ConfigError, one line,
    for bad settings, a cluster JAX cannot find, or one that does not come together within ``timeout_s``."""
    if not cluster.enabled:
        return False
    cluster.check()
    if jax.distributed.is_initialized():
        return True
    if cluster.coordinator is not None and cluster.process_id is not None:
        _check_coordinator(cluster)  # JAX itself would abort the process, with no message of ours, on these
    from jax._src import xla_bridge  # no public way to ask whether a backend has started

    if xla_bridge.backends_are_initialized():
        raise ConfigError("cannot join a cluster: JAX already started its devices in this process; "
                          "jax.distributed must be initialised before anything touches a device")
    if "jax_cpu_collectives_implementation" in jax.config.values:  # CPU processes need collectives (the default
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # in recent JAX; named for older ones)
    where = (f"as process {cluster.process_id} of {cluster.num_processes} at {cluster.coordinator}"
             if not cluster.auto else "with JAX's auto-detection")
    try:
        jax.distributed.initialize(coordinator_address=cluster.coordinator, num_processes=cluster.num_processes,
                                   process_id=cluster.process_id, initialization_timeout=cluster.timeout_s)
    except (ValueError, RuntimeError) as e:  # JAX raises these (and XlaRuntimeError, a RuntimeError) for both
        first = (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(".")
        hint = ("; --auto-distributed works under SLURM, Open MPI and on Cloud TPU: elsewhere give --coordinator, "
                "--num-processes and --process-id" if cluster.auto else
                f"; is process 0 running with --coordinator {cluster.coordinator}, do all {cluster.num_processes} "
                f"processes give the same --num-processes and each its own --process-id?")
        waited = f" within {cluster.timeout_s} s" if "DEADLINE" in str(e).upper() else ""
        raise ConfigError(f"could not join the cluster {where}{waited}: {first}{hint}") from None
    return True


def _check_coordinator(cluster: Cluster) -> None:
    """Process 0: that it can listen on the coordinator's port. The others: that something listens there, retried
    for ``timeout_s`` (process 0 may start later). Raises ConfigError naming the address and what to check."""
    host, _, port = cluster.coordinator.rpartition(":")
    host, port = host.strip("[]"), int(port)
    if cluster.process_id == 0:
        try:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
                # As gRPC binds: a port a finished run's coordinator left in TIME_WAIT is free; a listening one not.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("", port))
        except OSError as e:
            raise ConfigError(f"--coordinator {cluster.coordinator}: process 0 cannot listen on port {port} ({e}); "
                              f"choose a free port") from None
        return
    deadline = time.monotonic() + cluster.timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=2):
                return
        except socket.gaierror as e:
            raise ConfigError(f"--coordinator {cluster.coordinator}: unknown host {host!r} ({e})") from None
        except OSError as e:
            if time.monotonic() >= deadline:
                raise ConfigError(f"process {cluster.process_id}: nothing answered at --coordinator "
                                  f"{cluster.coordinator} within {cluster.timeout_s} s ({e.strerror or e}); start "
                                  f"process 0 with the same --coordinator, on that host, with the port open "
                                  f"between the hosts") from None
            time.sleep(0.25)


# ----------------------------------------------------------------------------------------------------------
# Who does what
# ----------------------------------------------------------------------------------------------------------
def is_writer() -> bool:
    """Whether this process writes the run directory, logs and shows progress (process 0; the only one alone)."""
    return jax.process_index() == 0


def multi_process() -> bool:
    """True in a cluster of several processes (``jax.distributed`` initialised with more than one)."""
    return jax.process_count() > 1


def process_tag() -> str:
    """`` (process I of N)`` in a cluster, else empty: appended to what every process prints (errors)."""
    return f" (process {jax.process_index()} of {jax.process_count()})" if multi_process() else ""


def barrier(name: str) -> None:
    """Wait until every process gets here (``name`` must be the same on all of them); nothing with one."""
    if multi_process():
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def gather(tree: Any) -> Any:
    """Every process gets the whole of a (population-sharded) pytree as numpy arrays: the between-chunk metrics
    and the final evaluation. Small: never the runner state."""
    if multi_process():
        from jax.experimental import multihost_utils

        return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
    return jax.tree.map(np.asarray, jax.device_get(tree))


def _broadcast_bytes(data: bytes | None) -> bytes:
    from jax.experimental import multihost_utils

    size = int(multihost_utils.broadcast_one_to_all(np.int64(len(data) if data is not None else 0)))
    buffer = np.frombuffer(data, np.uint8) if data is not None else np.zeros(size, np.uint8)
    return np.asarray(multihost_utils.broadcast_one_to_all(buffer), np.uint8).tobytes()


def from_writer(fn: Callable[[], Any], what: str) -> Any:
    """``fn()`` run on process 0 alone, its (JSON-able) result handed to every process. When it raises, process 0
    re-raises it and every other process raises ConfigError with its message, so no process waits forever for
    one that failed. ``what``: the step, for the others' message (e.g. "opening runs/x")."""
    if not multi_process():
        return fn()
    outcome, error = None, None
    if is_writer():
        try:
            outcome = {"value": fn()}
        except Exception as e:  # noqa: BLE001: every failure must reach the other processes
            error, outcome = e, {"error": f"{type(e).__name__}: {e}".splitlines()[0]}
    shared = json.loads(_broadcast_bytes(json.dumps(outcome).encode() if is_writer() else None))
    if error is not None:
        raise error
    if "error" in shared:
        raise ConfigError(f"process 0 failed {what}: {shared['error']}")
    return shared["value"]


def check_shared(path: str | os.PathLike) -> None:
    """Raise ConfigError on every process unless all of them read the file ``path`` as process 0 wrote it: the
    run directory must be on a filesystem every host shares (checkpoints are written there by every process)."""
    if not multi_process():
        return
    from jax.experimental import multihost_utils

    path = Path(path)
    digest = np.frombuffer(hashlib.sha256(path.read_bytes()).digest() if path.is_file() else bytes(32), np.uint8)
    every = np.asarray(multihost_utils.process_allgather(digest[None]))  # u8[processes, 32]
    blind = [i for i in range(len(every)) if not np.array_equal(every[i], every[0])]
    if blind:
        raise ConfigError(f"process(es) {blind} do not see {path} as process 0 wrote it: in a cluster the run "
                          f"directory must be on a filesystem every host shares (NFS, Lustre, ...)")


# ----------------------------------------------------------------------------------------------------------
# The population over every device of every host
# ----------------------------------------------------------------------------------------------------------
class PopulationLayout(NamedTuple):
    """P members on D devices (every device of every process): ``padded`` = ceil(P / D) * D slots, each device
    training padded / D of them. Slot j < P is member j; the slots from P on are copies of members 0, 1, ... that
    keep every device busy and are dropped from every result. Never slower than leaving devices idle: ceil(P / D)
    members per device is at most P / d for any divisor d <= D of P.

    Shapes: ``slots`` i32[padded], the member each slot trains.
    """

    size: int
    padded: int
    slots: np.ndarray
    sharding: NamedSharding

    def pad(self, tree: Any) -> Any:
        """Host arrays with a leading member axis [P, ...] -> [padded, ...]."""
        return jax.tree.map(lambda x: np.asarray(x)[self.slots], tree)

    def place(self, tree: Any) -> Any:
        """Host arrays [P, ...] -> padded global arrays [padded, ...], each process holding its own slots."""
        return jax.tree.map(lambda x: jax.make_array_from_callback(x.shape, self.sharding, lambda index: x[index]),
                            self.pad(tree))

    def members(self, tree: Any) -> Any:
        """Gathered host arrays [padded, ...] -> the real members' [P, ...] (the copies dropped)."""
        return jax.tree.map(lambda x: x[: self.size], tree)

    def saved_like(self, like: Any, saved_padded: int) -> Any:
        """What to restore a checkpoint of ``saved_padded`` slots into, for a runner laid out like ``like``
        ([padded, ...] global arrays): ``like`` itself when the padding is this one's (each process reads its own
        members' shards); else [saved_padded, ...] on every device (every process reads every saved slot), for
        ``repad``. So a run resumes on any number of devices and hosts."""
        if saved_padded == self.padded:
            return like
        whole = NamedSharding(self.sharding.mesh, PartitionSpec())
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct((saved_padded, *x.shape[1:]), x.dtype, sharding=whole,
                                                           weak_type=x.weak_type), like)

    def repad(self, tree: Any) -> Any:
        """A restored runner (``saved_like``) laid out as this layout: the first P saved slots are the members,
        taken into this layout's slots; a runner already of this padding is returned as it is."""
        if all(x.shape[0] == self.padded for x in jax.tree.leaves(tree)):
            return tree
        slots = self.slots
        return jax.jit(lambda t: jax.tree.map(lambda x: x[slots], t), out_shardings=self.sharding)(tree)

    def describe(self) -> str:
        devices = len(self.sharding.mesh.devices.ravel())
        copies = f", {self.padded - self.size} padding cop{'y' if self.padded - self.size == 1 else 'ies'} " \
                 f"(dropped from the results)" if self.padded > self.size else ""
        procs = f" on {jax.process_count()} processes" if multi_process() else ""
        return (f"{self.size} member(s) on {devices} device(s){procs}: {self.padded // devices} per device"
                f"{copies}")


def population_layout(size: int, devices: list | None = None) -> PopulationLayout:
    """The population of ``size`` members padded and sharded over ``devices`` (default every device of every
    process); see ``PopulationLayout``."""
    if size < 1:
        raise ConfigError(f"a population needs at least one member, not {size}")
    devices = list(jax.devices() if devices is None else devices)
    padded = -(-size // len(devices)) * len(devices)
    sharding = NamedSharding(Mesh(np.array(devices), ("pop",)), PartitionSpec("pop"))
    return PopulationLayout(size, padded, np.arange(padded, dtype=np.int32) % size, sharding)
