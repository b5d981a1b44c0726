"""Parallel training on JAX's own engine: device meshes, sharded batches and parameters, many hosts.

One process with several devices (GPUs, or simulated CPU devices)::

    history = fnn.fit(model, x, y, ..., mesh=fnn.parallel.data_mesh())

Each batch is split along a ``"data"`` mesh axis; params, state and optimiser
state are replicated; XLA's SPMD partitioner inserts the all-reduce that
averages the gradients, and batch statistics (BatchNorm) are reduced over the
whole global batch, so N devices train the same model as one (synchronised
batch norm, with no extra code). Nothing here is home-made: ``jax.sharding``
places the arrays, XLA runs the collectives.

Several processes (hosts): run the same script in each, call
:func:`initialize` before anything else touches JAX, and pass each process its
own shard of the data; ``fit(..., mesh=data_mesh())`` assembles global batches
with ``jax.make_array_from_process_local_data``. Every process ends with the
same parameters; only process 0 writes logs, progress bars and checkpoints
(of params split over the processes, each process writes its parts).

Models bigger than one device: a mesh with more axes (:func:`make_mesh`,
e.g. ``data=4, model=2``) and sharding policies by parameter path
(:func:`fsdp`, :func:`tensor_parallel`, :func:`by_path`) give each parameter a
``PartitionSpec`` (:func:`partition_specs`, :func:`optimizer_specs`);
:func:`shard` places them and ``jax.jit`` does the rest.

A simulated multi-device CPU, for testing, must be set before JAX starts::

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python train.py

Example:
    >>> import jax, fnn
    >>> mesh = fnn.parallel.data_mesh()
    >>> mesh.axis_names, mesh.size == len(jax.devices())
    (('data',), True)
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from fnn._checks import check_int
from fnn._sharding import (
    MODEL_AXIS,
    by_path,
    device_bytes,
    fsdp,
    make_mesh,
    named_shardings,
    optimizer_specs,
    partition_specs,
    shard,
    tensor_parallel,
)

__all__ = [
    "DATA_AXIS",
    "MODEL_AXIS",
    "barrier",
    "by_path",
    "data_mesh",
    "device_bytes",
    "fsdp",
    "gathered",
    "initialize",
    "is_primary",
    "make_mesh",
    "optimizer_specs",
    "partition_specs",
    "shard",
    "tensor_parallel",
]

DATA_AXIS = "data"

_ADDRESS_RE = re.compile(r"^\[?[A-Za-z0-9_.:\-]+\]?:\d{1,5}$")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"initialize: environment variable {name} must be an int, got {value!r}") from None


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: int | Sequence[int] | None = None,
    heartbeat_timeout_s: int = 100,
    initialization_timeout_s: int = 300,
    shutdown_timeout_s: int = 300,
) -> None:
    """Joins this process to a multi-process run: a checked ``jax.distributed.initialize``.

    Call it first, before any other JAX call. Arguments left out come from the
    environment variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID``, and where those are unset from JAX's cluster detection
    (SLURM, Open MPI, TPU pods).

    Failure handling is JAX's: every process sends heartbeats to the coordinator;
    when one stops (it crashed, was killed, or its host died) for
    ``heartbeat_timeout_s``, the coordinator tells the others, which abort with
    "The following tasks are unhealthy (stopped sending heartbeats)"; one that
    was waiting in a collective with the dead peer usually fails sooner. A peer
    that is alive but stuck keeps sending heartbeats: give each process an
    :class:`fnn.Watchdog` for that case. See docs/parallel.md.

    Args:
        coordinator_address: ``"host:port"`` of process 0, which runs the
            coordinator; all processes pass the same one.
        num_processes: how many processes take part.
        process_id: this process's index in ``[0, num_processes)``.
        local_device_ids: restrict this process to these local devices.
        heartbeat_timeout_s: seconds without heartbeats before a peer counts as dead.
        initialization_timeout_s: seconds to wait for every process to join.
        shutdown_timeout_s: seconds a finishing process waits for the others.

    Raises:
        ValueError: for an address, count or id that cannot work, naming it.
    """
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    num_processes = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
    if coordinator_address is not None and not (
        isinstance(coordinator_address, str) and _ADDRESS_RE.match(coordinator_address)
    ):
        raise ValueError(
            f"initialize: coordinator_address must be 'host:port' (e.g. '10.0.0.1:1234'), "
            f"got {coordinator_address!r}"
        )
    if num_processes is not None:
        num_processes = check_int("initialize", "num_processes", num_processes)
    if process_id is not None:
        last = None if num_processes is None else num_processes - 1
        process_id = check_int(
            "initialize", "process_id", process_id, low=0, high=last, what=f"num_processes-1={last}"
        )
    heartbeat_timeout_s = check_int("initialize", "heartbeat_timeout_s", heartbeat_timeout_s)
    initialization_timeout_s = check_int("initialize", "initialization_timeout_s", initialization_timeout_s)
    shutdown_timeout_s = check_int("initialize", "shutdown_timeout_s", shutdown_timeout_s)
    jax.distributed.initialize(
        coordinator_address,
        num_processes,
        process_id,
        local_device_ids=local_device_ids,
        heartbeat_timeout_seconds=heartbeat_timeout_s,
        initialization_timeout=initialization_timeout_s,
        shutdown_timeout_seconds=shutdown_timeout_s,
    )


def data_mesh(devices: Sequence[jax.Device] | None = None, axis: str = DATA_AXIS) -> Mesh:
    """A one-axis mesh over ``devices`` (all devices of all processes by default).

    Examples:
        >>> import jax, fnn
        >>> dict(fnn.parallel.data_mesh(jax.devices()[:1]).shape)
        {'data': 1}
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("data_mesh: devices is empty; pass at least one device")
    return Mesh(np.asarray(devices), (axis,))


def is_primary() -> bool:
    """Whether this is process 0, the one that writes files, logs and progress bars.

    Examples:
        >>> import fnn
        >>> fnn.parallel.is_primary()
        True
    """
    # Outside a multi-process run this must not start JAX's backends: initialize()
    # could no longer be called.
    return not jax.distributed.is_initialized() or jax.process_index() == 0


def barrier(name: str) -> None:
    """Waits until every process reaches ``barrier(name)``; a no-op in a single process.

    Every process must pass the same ``name`` (a mismatch is an error, not a hang).
    """
    if jax.distributed.is_initialized() and jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def gathered(tree: Any) -> Any:
    """``tree``'s arrays as whole NumPy arrays (keys as keys), gathered from every process that holds a part.

    For the results of a run whose params are split over several processes
    (``fit(..., sharding=[fsdp()])`` on many hosts), where ``jax.device_get``
    refuses arrays this process cannot address. Every process must call it.
    """

    def whole(a: Any) -> Any:
        if not isinstance(a, jax.Array):
            return a
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):  # keys: their data, wrapped again
            return jax.random.wrap_key_data(whole(jax.random.key_data(a)), impl=jax.random.key_impl(a))
        if a.sharding.is_fully_replicated:
            return np.asarray(a.addressable_shards[0].data)
        if a.is_fully_addressable:
            return np.asarray(jax.device_get(a))
        return np.asarray(multihost_utils.process_allgather(a, tiled=True))

    return jax.tree.map(whole, tree)


class DataParallel:
    """How ``fit`` places data and state on a mesh (internal to fnn).

    Batches are split along the ``"data"`` axis. The train state is replicated,
    or with ``policies`` (``fit(..., sharding=[fsdp()])``) its params and their
    optimiser state are split as :func:`partition_specs` and
    :func:`optimizer_specs` say (``tx`` is the optimiser); the rest is replicated.
    """

    def __init__(self, mesh: Any, owner: str = "fit", policies: Sequence[Any] = (), tx: Any = None):
        if not isinstance(mesh, Mesh):
            raise TypeError(
                f"{owner}: mesh must be a jax.sharding.Mesh (see fnn.parallel.data_mesh), got {mesh!r}"
            )
        if DATA_AXIS not in mesh.axis_names:
            raise ValueError(
                f"{owner}: mesh must have a {DATA_AXIS!r} axis to split batches along, got axes {mesh.axis_names}"
            )
        self.mesh, self.owner = mesh, owner
        self.devices = mesh.shape[DATA_AXIS]
        self.replicated = NamedSharding(mesh, PartitionSpec())
        self.batch_sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
        self.rows_sharding = NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))
        self.processes = len({d.process_index for d in mesh.devices.flat})
        self.multi_process = self.processes > 1
        self.policies, self.tx = tuple(policies), tx

    def shardings(self, tree: Any) -> Any:
        """Where each leaf of a carry, a train state or any other tree goes."""
        from fnn.train._run import Carry  # the training core imports this module
        from fnn.train._state import TrainState

        everywhere = jax.tree.map(lambda _: self.replicated, tree)
        if isinstance(tree, Carry):
            return everywhere._replace(train_state=self.shardings(tree.train_state))
        if not self.policies or not isinstance(tree, TrainState):
            return everywhere
        params = partition_specs(tree.params, self.mesh, *self.policies)
        opt_state = optimizer_specs(self.tx, tree.opt_state, params)
        return everywhere._replace(
            params=named_shardings(self.mesh, params), opt_state=named_shardings(self.mesh, opt_state)
        )

    def place(self, tree: Any) -> Any:
        """``tree`` on the mesh where :meth:`shardings` says (every process passes the same tree)."""
        if not self.policies:
            return self.replicate(tree)
        if not self.multi_process:
            return jax.device_put(tree, self.shardings(tree))

        def put(value: Any, sharding: NamedSharding) -> jax.Array:
            if sharding == self.replicated:
                return self.replicate(value)
            whole = np.asarray(jax.device_get(value))  # every process holds the whole value: cut its parts
            return jax.make_array_from_callback(whole.shape, sharding, lambda index: whole[index])

        return jax.tree.map(put, tree, self.shardings(tree))

    def one_at_a_time(self, fn: Any) -> Any:
        """``fn``, waiting for each call to finish when the mesh holds several local CPU devices.

        XLA:CPU runs every device's part of a call on one shared thread pool. With
        many calls in flight (async dispatch), parts waiting in an all-reduce can
        hold every thread while their partners wait for one, and XLA aborts after
        40 s ("Termination timeout for all reduce"). Simulated devices gain
        nothing from running ahead anyway.
        """
        local = [d for d in self.mesh.devices.flat if d.process_index == jax.process_index()]
        if len(local) < 2 or local[0].platform != "cpu":
            return fn

        def call(*args: Any) -> Any:
            return jax.block_until_ready(fn(*args))

        return call

    def check_last_batch(self, what: str, size: int) -> None:
        """Like :meth:`check_batch_size`, for an epoch's last, smaller batch."""
        self.check_batch_size(
            f"the last batch ({what})",
            size,
            f"pick a batch_size that leaves a multiple of {self.devices}, or trim the data",
        )

    def check_batch_size(self, what: str, size: int, fix: str = "") -> None:
        """Raises unless a global batch of ``size`` examples splits evenly over the devices."""
        if size % self.devices:
            raise ValueError(
                f"{self.owner}: {what} has {size} examples, which do not split evenly over the mesh's "
                f"{self.devices} devices along {DATA_AXIS!r}; {fix or f'use a multiple of {self.devices}'} "
                "(nothing is padded or dropped silently)"
            )

    def replicate(self, tree: Any) -> Any:
        """The same values on every device of the mesh (every process passes the same tree)."""
        if self.multi_process:
            return multihost_utils.host_local_array_to_global_array(tree, self.mesh, PartitionSpec())
        return jax.device_put(tree, self.replicated)

    def conform(self, tree: Any) -> Any:
        """``tree`` placed as :meth:`shardings` says: callbacks may put new single-device values in it."""
        wanted = jax.tree.leaves(self.shardings(tree))
        if all(getattr(a, "sharding", None) == w for a, w in zip(jax.tree.leaves(tree), wanted)):
            return tree
        return self.place(self.local(tree))

    def shard_rows(self, rows: Any) -> Any:
        """Batch indices ``(steps, batch)`` split along the batch axis, for a gather on the devices."""
        return jax.device_put(rows, self.rows_sharding)

    def global_batch(self, local: Any) -> Any:
        """A global batch from this process's part of it (the whole batch in one process)."""
        rows = int(np.shape(jax.tree.leaves(local)[0])[0])
        self.check_batch_size("a batch", rows * self.processes)
        if self.multi_process:
            return jax.tree.map(
                lambda a: jax.make_array_from_process_local_data(self.batch_sharding, np.asarray(a)), local
            )
        return jax.device_put(local, self.batch_sharding)

    def constrain(self, batch: Any) -> Any:
        """Inside a compiled step: the batch stays split along the data axis."""
        return jax.lax.with_sharding_constraint(batch, self.batch_sharding)

    def local(self, tree: Any) -> Any:
        """A placed tree as whole single-device arrays on this process's first device (sharded ones gathered)."""
        device = next(d for d in self.mesh.devices.flat if d.process_index == jax.process_index())

        def whole(a: Any) -> Any:
            if not isinstance(a, jax.Array):
                return a
            if a.sharding.is_fully_replicated:
                return a.addressable_shards[0].data
            if a.is_fully_addressable:
                return jax.device_put(a, jax.sharding.SingleDeviceSharding(device))
            return jax.device_put(gathered(a), device)

        return jax.tree.map(whole, tree)

    def gather_ints(self, value: int) -> list[int]:
        """``value`` from every process, in process order."""
        if not self.multi_process:
            return [value]
        return [int(v) for v in multihost_utils.process_allgather(np.int32(value))]

    def sum_over_processes(self, tree: Any) -> Any:
        """A pytree of host arrays summed leaf by leaf over the processes (so all agree)."""
        if not self.multi_process:
            return tree
        leaves, structure = jax.tree.flatten(tree)
        flat = np.concatenate([np.ravel(a) for a in leaves]).astype(np.float64)
        # float64's bits as uint32 pairs: JAX (without x64) would gather float64 as float32.
        gathered = np.asarray(multihost_utils.process_allgather(flat.view(np.uint32)), np.uint32)
        total = gathered.reshape(gathered.shape[0], -1).view(np.float64).sum(axis=0)
        parts = np.split(total, np.cumsum([np.size(a) for a in leaves])[:-1])
        return jax.tree.unflatten(structure, [p.reshape(np.shape(a)) for a, p in zip(leaves, parts)])
