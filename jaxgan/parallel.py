"""Data parallelism over a device mesh: one 'data' axis, batches sharded, state replicated.

Train steps are pure functions of a *global* batch; :func:`jit_step` compiles them with the
batch sharded ``P('data')`` and the state replicated, so batch reductions (losses, BatchNorm
statistics, minibatch stddev) stay global and the step matches the single-device one up to
float summation order. Meshes use ``AxisType.Auto``: with Explicit axes (``jax.make_mesh``'s
default) unsharded random draws concatenated with a sharded batch raise ShardingTypeError.

Multi-host: call ``jax.distributed.initialize()`` in the entry point; each process loads its
rows of the global batch (process ``p``: rows ``[p * B / P, (p + 1) * B / P)``) and
:func:`shard_batch` assembles the global array. State and keys are created replicated
inside ``jit`` (:func:`replicated`), as a process cannot ``device_put`` onto devices it does
not address. Nothing here uses pmap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

__all__ = [
    "DATA_AXIS",
    "REPLICA_AXIS",
    "BatchSizeError",
    "batch_sharding",
    "check_batch_sizes",
    "describe_processes",
    "jit_step",
    "make_mesh",
    "make_study_mesh",
    "nearest_multiples",
    "replica_sharding",
    "replicate",
    "replicated",
    "replicated_sharding",
    "shard_batch",
]

DATA_AXIS = "data"
#: A study's leading axis: one independent run (seed) per index (:func:`make_study_mesh`).
REPLICA_AXIS = "replica"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``'data'`` (Auto axis type) over ``devices`` (default: all),
    ordered by process (stable), so each process's devices hold consecutive batch rows."""
    devices = sorted(jax.devices() if devices is None else devices,
                     key=lambda d: d.process_index)
    if not devices:
        raise ValueError("make_mesh: no devices given")
    return jax.make_mesh(
        (len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices
    )


def make_study_mesh(replicas: int, data: int) -> Mesh:
    """A ``('replica', 'data')`` mesh of ``replicas * data`` devices for a study of several
    runs: each process's devices are dealt evenly into the rows, in process order along
    ``'data'``, so a process holds its rows of every replica's batch. ValueError unless
    ``replicas`` divides each process's device count and ``replicas * data`` devices exist.
    """
    processes = jax.process_count()
    local = len(jax.local_devices())
    if replicas < 1 or data < 1 or local % replicas or data % processes or (
            data // processes) * replicas > local:
        raise ValueError(f"make_study_mesh: cannot lay {replicas} replica(s) x {data} data "
                         f"device(s) over {processes} process(es) of {local} device(s)")
    per = data // processes
    by_process = [sorted((d for d in jax.devices() if d.process_index == p),
                         key=lambda d: d.id) for p in range(processes)]
    grid = np.array([[d for devs in by_process for d in devs[r * per:(r + 1) * per]]
                     for r in range(replicas)])
    return Mesh(grid, (REPLICA_AXIS, DATA_AXIS), axis_types=(AxisType.Auto, AxisType.Auto))


def _is_study(mesh: Mesh) -> bool:
    return REPLICA_AXIS in mesh.axis_names


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over ``'data'``, the rest replicated; on a study mesh
    the leading dimension is the replica's and the next one is split over ``'data'``."""
    if _is_study(mesh):
        return NamedSharding(mesh, PartitionSpec(REPLICA_AXIS, DATA_AXIS))
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replica_sharding(mesh: Mesh) -> NamedSharding:
    """A study's state, keys and metrics: the leading (replica) dimension split over
    ``'replica'``, each replica's values on every device of its row."""
    return NamedSharding(mesh, PartitionSpec(REPLICA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """Fully replicated on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def replicate(tree: Any, mesh: Mesh, sharding: NamedSharding | None = None) -> Any:
    """Every array leaf of ``tree`` (a train state, a key) replicated on ``mesh`` (or laid
    out as ``sharding``). On several processes an identity ``jit`` (``device_put`` onto
    unaddressed devices is refused for keys); every process must pass the same values.
    """
    sharding = replicated_sharding(mesh) if sharding is None else sharding
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.jit(lambda t: t, out_shardings=sharding)(tree)


def replicated(fn: Callable[[], Any], mesh: Mesh, sharding: NamedSharding | None = None
               ) -> Callable[[], Any]:
    """``fn`` (no array arguments) jitted with every output replicated on ``mesh`` (or laid
    out as ``sharding``): creates a state or key on all processes without host copies."""
    return jax.jit(fn, out_shardings=replicated_sharding(mesh) if sharding is None else sharding)


class BatchSizeError(ValueError):
    """A global batch size the devices (or processes) of a run cannot split evenly."""


def nearest_multiples(size: int, divisor: int) -> tuple[int, ...]:
    """The multiples of ``divisor`` nearest ``size`` (one below, if positive, and one above)."""
    below = size // divisor * divisor
    return tuple(m for m in (below, below + divisor) if m > 0 and m != size)


def check_batch_sizes(sizes: Sequence[tuple[str, int]], num_devices: int | None = None,
                      num_processes: int | None = None) -> None:
    """Raise :class:`BatchSizeError`, naming each bad size and the nearest valid ones, for
    global batches ``num_devices`` devices over ``num_processes`` processes (default: this
    run's) cannot split. ``sizes``: (what, size) pairs, e.g. ``("stage 3 (32x32)", 12)``. On
    several processes each must be a multiple of the device count; one process may run a
    batch on fewer devices (see ``jaxgan.experiments.runner``).
    """
    num_devices = jax.device_count() if num_devices is None else int(num_devices)
    num_processes = jax.process_count() if num_processes is None else int(num_processes)
    divisor = num_devices if num_processes > 1 else 1
    bad = []
    for what, size in sizes:
        if size <= 0:
            bad.append(f"{what}: batch size {size} must be positive")
        elif size % divisor:
            near = " or ".join(map(str, nearest_multiples(int(size), divisor)))
            bad.append(f"{what}: global batch size {size} does not split over {num_devices} "
                       f"devices of {num_processes} processes; nearest valid: {near}")
    if bad:
        raise BatchSizeError(
            "; ".join(bad) + f". On several processes every global batch must be a multiple of "
            f"the device count ({num_devices}): set the batch size(s) in the config (e.g. "
            "--config.batch_size or --config.schedule.batch_size_per_stage).")


def describe_processes() -> str:
    """``process i of n: k local <platform> devices of m``, for a run's first line."""
    local = jax.local_devices()
    return (f"process {jax.process_index()} of {jax.process_count()}: {len(local)} local "
            f"{jax.default_backend()} device(s) of {jax.device_count()} "
            f"({', '.join(str(d.id) for d in local)})")


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Global batch arrays sharded ``P('data')`` from this process's local data.

    ``batch``: a pytree of numpy or jax arrays ``[n_local, ...]`` (``[K, n_local, ...]`` on a
    study mesh), this process's rows; the global ``n_local * process_count`` must be divisible
    by the mesh's data size. Returns the pytree of ``jax.Array`` of global shape
    ``[n_local * process_count, ...]`` (``[K, n_local * process_count, ...]``).
    """
    sharding = batch_sharding(mesh)
    n_data = int(mesh.shape[DATA_AXIS])
    axis = 1 if _is_study(mesh) else 0

    def put(x):
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
        if x.ndim <= axis:
            raise ValueError("shard_batch: every batch leaf needs a leading batch dimension")
        global_n = x.shape[axis] * jax.process_count()
        if global_n % n_data:
            raise ValueError(
                f"shard_batch: global batch size {global_n} is not divisible by the "
                f"{n_data} devices of the mesh's '{DATA_AXIS}' axis; use a batch size that "
                f"is a multiple of {n_data}"
            )
        global_shape = x.shape[:axis] + (global_n,) + tuple(x.shape[axis + 1:])
        return jax.make_array_from_process_local_data(sharding, x, global_shape)

    return jax.tree.map(put, batch)


def jit_step(
    step: Callable[..., tuple[Any, Any]],
    mesh: Mesh | None = None,
    *,
    donate: bool = True,
    compiler_options: dict[str, Any] | None = None,
) -> Callable[..., tuple[Any, Any]]:
    """jit a ``step(state, batch, key) -> (state, metrics)`` for the mesh.

    With a mesh: state and key replicated, batch ``P('data')``, outputs replicated; on a
    study mesh (a step vmapped over replicas) state and key split over ``'replica'``, batch
    ``P('replica', 'data')``, metrics (``[K]`` each) replicated. Without: a plain ``jax.jit``.
    ``donate`` reuses the input state's buffers (do not touch it afterwards).
    ``compiler_options`` go to XLA (``{"xla_backend_optimization_level": 0}``: faster compiles).
    """
    donate_argnums = (0,) if donate else ()
    kwargs: dict[str, Any] = {"donate_argnums": donate_argnums}
    if compiler_options:
        kwargs["compiler_options"] = dict(compiler_options)
    if mesh is None:
        return jax.jit(step, **kwargs)
    rep = replicated_sharding(mesh)
    state = replica_sharding(mesh) if _is_study(mesh) else rep
    # metrics replicated either way: every process can read them
    return jax.jit(
        step,
        in_shardings=(state, batch_sharding(mesh), state),
        out_shardings=(state, rep),
        **kwargs,
    )


def preemption_service_active() -> bool:
    """Whether JAX's preemption sync manager runs (``jax.distributed`` initialised with
    ``jax_enable_preemption_service``): it catches SIGTERM and lets every process agree on
    a step to checkpoint (``multihost_utils.reached_preemption_sync_point``)."""
    try:
        from jax._src import distributed
    except ImportError:  # pragma: no cover (a JAX without it)
        return False
    state = distributed.global_state
    return state.client is not None and state.preemption_sync_manager is not None


def gather_rows(x: np.ndarray) -> np.ndarray:
    """The whole global batch on every process, from each process's rows of it (process
    order, as the loaders deal them): for host-side work that needs every row, such as the
    real images of an evaluation. The identity on one process."""
    if jax.process_count() == 1:
        return x
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(np.asarray(x), tiled=True))
