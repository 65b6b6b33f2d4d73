"""grain pipelines: ``make_loader(source, ...)`` -> an iterable of per-process batches.

Per record: read -> channel conversion -> geometric transform -> random horizontal flip (the
same for A and B) -> float32 in [-1, 1] -> PGGAN box downsampling (``resolution``) -> batch.

Determinism: the global batches depend on ``seed`` and ``global_batch_size`` alone, not on
``worker_count`` or the process count (grain reshuffles from ``seed`` each epoch; a record's
``np.random.Generator`` derives from ``seed`` and its global position; with finite
``num_epochs`` the last ``worker_count`` batches may differ). Epochs run back to back: with
``num_epochs=None`` a batch may straddle two. Workers exit when the trainer dies, even by SIGKILL.

Multi-host: process ``p`` of ``P`` yields rows ``[p * B / P, (p + 1) * B / P)`` of each global
batch of ``B``, for ``jax.make_array_from_process_local_data`` on a process-ordered mesh
(:func:`jaxgan.parallel.make_mesh`). ``it.get_state()`` / ``set_state`` (on a fresh iterator of
the same loader; orbax: the package docstring) resume right after the last batch returned,
on the same process count only; :meth:`Loader.iter_from` resumes at a global batch on any.

PGGAN: ``resolution=r`` box-downsamples reals to the stage resolution (2x2 average repeated,
in float, as the reference's lower levels of detail); one loader per stage. The train step
does the fade-in cross-fade with ``upsample_nearest(box_downsample(x))`` on device.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import sys
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grain
import jax
import numpy as np

from jaxgan.data.errors import DataError, ImageTooSmallError
from jaxgan.data.transforms import MODES, ImageTransform, _hw

_parent_watch: threading.Thread | None = None


def _exit_with_parent() -> None:
    """In a grain worker process: exit as soon as the parent (training) process is gone.

    grain's workers (and so multiprocessing's resource tracker) outlive a killed parent; a
    daemon thread waits on ``multiprocessing.parent_process()``'s sentinel instead.
    (``prctl(PR_SET_PDEATHSIG)`` fires when the spawning *thread* ends, and grain spawns from
    its prefetch threads.) No-op in a process that multiprocessing did not start.
    """
    global _parent_watch
    parent = multiprocessing.parent_process()
    if parent is None or _parent_watch is not None:
        return

    def wait_then_exit() -> None:
        parent.join()
        os._exit(1)

    _parent_watch = threading.Thread(target=wait_then_exit, name="jaxgan-exit-with-parent",
                                     daemon=True)
    _parent_watch.start()


class _WorkerOrderSampler:
    """grain's ``IndexSampler`` reordered so ``worker_count`` processes yield the in-process
    pipeline's batches. Worker ``w`` of ``W`` batches positions ``w, w + W, ...`` and batch
    ``k`` is worker ``k % W``'s batch ``k // W``, so within each block of ``W * batch_size``
    positions a worker's map to in-process batch ``k``'s (metadata kept); the rest keep
    grain's order. ``shard_count``: the interleaved process count. Unpickling in a worker
    starts :func:`_exit_with_parent` (``grain.DataLoader`` has no ``worker_init_fn``).
    """

    def __init__(self, inner: grain.samplers.IndexSampler, *, worker_count: int,
                 batch_size: int, shard_count: int):
        self.inner = inner
        self.worker_count, self.batch_size, self.shard_count = (
            int(worker_count), int(batch_size), int(shard_count))
        block = self.worker_count * self.batch_size
        self._full = (len(inner) // self.shard_count) // block * block

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> Any:
        local, shard = divmod(int(index), self.shard_count)
        if 0 <= local < self._full:
            block, r = divmod(local, self.worker_count * self.batch_size)
            i, w = divmod(r, self.worker_count)  # worker w's i-th record of this block
            local = (block * self.worker_count + w) * self.batch_size + i
        return self.inner[local * self.shard_count + shard]

    def __repr__(self) -> str:
        return (f"_WorkerOrderSampler({self.inner!r}, worker_count={self.worker_count}, "
                f"batch_size={self.batch_size})")

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        _exit_with_parent()


class _ProcessRowsSampler:
    """This process's rows of the global stream of ``global_batch_size`` batches, from global
    batch ``start_batch`` on: local position ``i`` is row ``process_index * b + i % b`` of
    global batch ``start_batch + i // b`` (``b`` per process), with the inner metadata of that
    global position. Several processes read only whole global batches of a finite stream."""

    def __init__(self, inner: grain.samplers.IndexSampler, *, global_batch_size: int,
                 process_index: int, process_count: int, start_batch: int = 0):
        self.inner = inner
        self.global_batch_size, self.process_index, self.process_count, self.start_batch = (
            int(global_batch_size), int(process_index), int(process_count), int(start_batch))
        self.per_process = self.global_batch_size // self.process_count
        n = len(inner)
        if n >= sys.maxsize:  # endless
            self._len = sys.maxsize
        else:
            full, rest = divmod(n, self.global_batch_size)
            self._len = max(full - self.start_batch, 0) * self.per_process + (
                rest if self.process_count == 1 and full >= self.start_batch else 0)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> Any:
        index = int(index)
        if not 0 <= index < self._len:
            raise IndexError(index)
        batch, row = divmod(index, self.per_process)
        return self.inner[(self.start_batch + batch) * self.global_batch_size
                          + self.process_index * self.per_process + row]

    def __repr__(self) -> str:
        return (f"_ProcessRowsSampler({self.inner!r}, global_batch_size="
                f"{self.global_batch_size}, process={self.process_index}/{self.process_count}, "
                f"start_batch={self.start_batch})")


def _warn_if_upscaled(source: Any, mode: str, size: tuple[int, int],
                      load_size: tuple[int, int] | None) -> None:
    """Warns when folder images (``source.image_sizes()``) are smaller than ``mode``'s target."""
    sizes = source.image_sizes() if hasattr(source, "image_sizes") else None
    if not sizes or mode not in ("resize", "center_crop", "resize_and_crop"):
        return
    th, tw = load_size if mode == "resize_and_crop" else size
    if mode == "center_crop":  # the centred square of side min(h, w) is resized
        small = [(h, w) for h, w in sizes if min(h, w) < max(th, tw)]
    else:
        small = [(h, w) for h, w in sizes if h < th or w < tw]
    if small:
        h, w = min(small, key=lambda hw: (hw[0] * hw[1], hw))
        warnings.warn(
            f"{len(small)} of {len(sizes)} images of {source!r} are smaller than the {th}x{tw} "
            f"(HxW) that transforms={mode!r} resizes them to (the smallest is {h}x{w}): they "
            "will be upscaled, i.e. blurry. Use larger images or a smaller image_size.",
            stacklevel=3)


@dataclasses.dataclass
class Loader:
    """What ``make_loader`` returns; ``iter(loader)`` is a ``grain.DataLoaderIterator`` of
    ``{key: np.float32 (per_process_batch_size, h, w, c)}`` batches in [-1, 1]."""

    data_loader: grain.DataLoader
    source: Any
    global_batch_size: int
    per_process_batch_size: int
    image_shapes: dict[str, tuple[int, int, int]]
    seed: int
    transform: ImageTransform | None
    #: start_batch -> the grain.DataLoader whose stream starts at that global batch
    build: Callable[[int], grain.DataLoader] | None = dataclasses.field(default=None,
                                                                         repr=False)

    def __iter__(self) -> grain.DataLoaderIterator:
        return iter(self.data_loader)

    def iter_from(self, batch: int) -> grain.DataLoaderIterator:
        """An iterator starting at global batch ``batch``: resumes a run on any process count."""
        if int(batch) == 0 or self.build is None:
            if int(batch):
                raise ValueError("this loader cannot start at a later batch")
            return iter(self.data_loader)
        return iter(self.build(int(batch)))


def _infer_channels(record: Mapping[str, np.ndarray],
                    channels: int | Mapping[str, int] | None) -> tuple[tuple[str, int], ...]:
    keys = sorted(record)
    if isinstance(channels, Mapping):
        missing = set(channels) - set(keys)
        if missing:
            raise DataError(f"channels names keys {sorted(missing)} that the source's records "
                            f"do not have (they have {keys}).")
        return tuple((k, int(channels[k])) for k in sorted(channels))
    out = []
    for k in keys:
        if channels is not None:
            out.append((k, int(channels)))
        else:  # the first record's channel count with alpha dropped
            c = np.asarray(record[k]).shape[-1] if np.asarray(record[k]).ndim == 3 else 1
            out.append((k, {1: 1, 2: 1, 3: 3, 4: 3}.get(c, 3)))
    for k, c in out:
        if c not in (1, 3):
            raise DataError(f"channels for {k!r} must be 1 or 3, got {c}.")
    return tuple(out)


def make_loader(
    source: Any,
    *,
    global_batch_size: int,
    seed: int,
    image_size: int | tuple[int, int],
    channels: int | Mapping[str, int] | None = None,
    transforms: str | Sequence[Any] = "resize",
    load_size: int | tuple[int, int] | None = None,
    flip: bool = False,
    resolution: int | None = None,
    shuffle: bool = True,
    num_epochs: int | None = None,
    worker_count: int = 0,
    worker_buffer_size: int = 2,
    read_threads: int = 4,
    prefetch: int = 256,
    drop_remainder: bool = True,
) -> Loader:
    """Builds the grain pipeline over ``source`` (semantics: the module docstring).

    Args:
      source: a random-access source of uint8 ``(H, W, C)`` records (``make_source``).
      global_batch_size: summed over all JAX processes; divisible by ``jax.process_count()``.
      image_size: output ``s`` or ``(h, w)`` before ``resolution`` downsampling; folder images
        smaller than their resize target give one warning (they get upscaled).
      channels: 1 or 3 (all keys), a dict (``{"A": 1, "B": 3}``), or None: the first record's.
      transforms: a mode of :mod:`jaxgan.data.transforms`, or grain transforms replacing the
        built-in one (they must produce float32 images).
      load_size: resize target of ``"resize_and_crop"``; default ``round(image_size*286/256)``.
      flip: random horizontal flip (p = 0.5), the same for all images of a record.
      resolution: PGGAN stage resolution; ``image_size / resolution`` must be a power of 2.
      num_epochs: None for an endless stream; ``shuffle`` reshuffles every epoch (seeded).
      worker_count: grain worker processes (0: in the calling thread), each buffering
        ``worker_buffer_size`` batches; the batches are the same for every count.
      read_threads: threads decoding records; prefetch: records read ahead.
      drop_remainder: drop the last partial batch (only with finite ``num_epochs``).
    """
    n = len(source)
    worker_count = int(worker_count)
    if n == 0:
        raise DataError(f"data source {source!r} is empty.")
    nproc = jax.process_count()
    if global_batch_size <= 0 or global_batch_size % nproc:
        raise DataError(f"global_batch_size={global_batch_size} must be a positive multiple of "
                        f"the number of JAX processes ({nproc}).")
    per_process = global_batch_size // nproc
    if n < global_batch_size and num_epochs is not None and drop_remainder:
        raise DataError(f"source has {n} records, fewer than one global batch of "
                        f"{global_batch_size} with num_epochs={num_epochs}; lower the batch size.")
    size = _hw(image_size)
    first = source[0]
    transform = None
    if isinstance(transforms, str):
        if transforms not in MODES:
            raise DataError(f"unknown transforms {transforms!r}; choose one of {MODES}.")
        lsize = None
        if transforms == "resize_and_crop":
            lsize = _hw(load_size) if load_size is not None else (
                round(size[0] * 286 / 256), round(size[1] * 286 / 256))
            if lsize[0] < size[0] or lsize[1] < size[1]:
                raise ImageTooSmallError(f"load_size {lsize} is smaller than the crop "
                                         f"image_size {size}; load_size must be >= image_size.")
        if resolution is not None:
            factor = size[0] // int(resolution)
            if (size[0] != size[1] or factor * int(resolution) != size[0]
                    or factor & (factor - 1)):
                raise DataError(f"resolution={resolution} must be image_size / 2**k for a "
                                f"square image_size, got image_size {size}.")
        _warn_if_upscaled(source, transforms, size, lsize)
        chans = _infer_channels(first, channels)
        transform = ImageTransform(image_size=size, channels=chans, mode=transforms,
                                   load_size=lsize, flip=bool(flip),
                                   resolution=None if resolution is None else int(resolution))
        # Fail at construction, not in the first train step.
        sample = transform.random_map(first, np.random.default_rng(0))
        shapes = {k: tuple(v.shape) for k, v in sample.items()}
        operations = [transform]
    else:
        operations = list(transforms)
        shapes = {}
    process_index = jax.process_index()
    base = grain.samplers.IndexSampler(
        num_records=n,
        shard_options=grain.sharding.NoSharding(),
        shuffle=shuffle,
        num_epochs=num_epochs,
        seed=int(seed),
    )
    read_options = grain.ReadOptions(num_threads=int(read_threads),
                                     prefetch_buffer_size=int(prefetch))
    operations.append(grain.transforms.Batch(batch_size=per_process,
                                             drop_remainder=drop_remainder or nproc > 1))

    def build(start_batch: int) -> grain.DataLoader:
        sampler: Any = _ProcessRowsSampler(base, global_batch_size=global_batch_size,
                                           process_index=process_index, process_count=nproc,
                                           start_batch=start_batch)
        if worker_count > 0:
            sampler = _WorkerOrderSampler(sampler, worker_count=worker_count,
                                          batch_size=per_process, shard_count=1)
        return grain.DataLoader(
            data_source=source,
            sampler=sampler,
            shard_options=grain.sharding.NoSharding(),
            operations=operations,
            worker_count=worker_count,
            worker_buffer_size=int(worker_buffer_size),
            read_options=read_options,
        )

    loader = build(0)
    return Loader(data_loader=loader, source=source, global_batch_size=global_batch_size,
                  per_process_batch_size=per_process, image_shapes=shapes, seed=int(seed),
                  transform=transform, build=build)
