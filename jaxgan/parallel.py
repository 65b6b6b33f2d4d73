"""Data parallelism over a device mesh: one 'data' axis, batches sharded, state replicated.

The train steps are ordinary pure functions of a *global* batch; :func:`jit_step` compiles
them with the batch sharded along ``'data'`` (``P('data')``) and the state replicated
(``P()``), so XLA partitions the computation. Reductions over the batch (losses, BatchNorm
statistics, minibatch stddev) stay global, and the sharded step computes the same function
as the single-device step (up to float summation order).

The mesh uses ``AxisType.Auto``: with Explicit axes (the ``jax.make_mesh`` default) random
draws, which are unsharded, concatenated with a sharded batch raise ShardingTypeError.

Multi-host: call ``jax.distributed.initialize()`` in the entry point; every process loads
its own slice of the global batch and :func:`shard_batch` assembles the global array with
``jax.make_array_from_process_local_data``. Nothing here uses pmap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

__all__ = [
    "DATA_AXIS",
    "batch_sharding",
    "jit_step",
    "make_mesh",
    "replicate",
    "replicated_sharding",
    "shard_batch",
]

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``'data'`` (Auto axis type) over ``devices`` (default: all)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh: no devices given")
    return jax.make_mesh(
        (len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices
    )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over ``'data'``, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """Fully replicated on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every array leaf of ``tree`` (e.g. a train state or a key) replicated on ``mesh``."""
    return jax.device_put(tree, replicated_sharding(mesh))


def _data_size(mesh: Mesh) -> int:
    return int(mesh.shape[DATA_AXIS])


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Build global batch arrays sharded ``P('data')`` from this process's local data.

    Args:
      batch: a pytree of host arrays (numpy or jax), each ``[n_local, ...]``: this process's
        slice of the global batch (on one host, the whole batch). The global batch size is
        ``n_local * jax.process_count()`` and must be divisible by the mesh's data size.
      mesh: from :func:`make_mesh`.

    Returns:
      The same pytree of ``jax.Array`` with global shape ``[n_local * process_count, ...]``.
    """
    sharding = batch_sharding(mesh)
    n_data = _data_size(mesh)

    def put(x):
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
        if x.ndim == 0:
            raise ValueError("shard_batch: every batch leaf needs a leading batch dimension")
        global_n = x.shape[0] * jax.process_count()
        if global_n % n_data:
            raise ValueError(
                f"shard_batch: global batch size {global_n} is not divisible by the "
                f"{n_data} devices of the mesh's '{DATA_AXIS}' axis; use a batch size that "
                f"is a multiple of {n_data}"
            )
        global_shape = (global_n,) + tuple(x.shape[1:])
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

    With a mesh: state and key replicated, batch sharded ``P('data')``, outputs replicated.
    Without one: a plain ``jax.jit``. With ``donate`` the input state's buffers are reused
    for the output state (do not touch a state after passing it in). ``compiler_options``
    go to XLA (e.g. ``{"xla_backend_optimization_level": 0}`` halves CPU compile time for
    quick checks, at some run-time cost).
    """
    donate_argnums = (0,) if donate else ()
    kwargs: dict[str, Any] = {"donate_argnums": donate_argnums}
    if compiler_options:
        kwargs["compiler_options"] = dict(compiler_options)
    if mesh is None:
        return jax.jit(step, **kwargs)
    rep = replicated_sharding(mesh)
    return jax.jit(
        step,
        in_shardings=(rep, batch_sharding(mesh), rep),
        out_shardings=(rep, rep),
        **kwargs,
    )
