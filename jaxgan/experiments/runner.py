"""The training loop shared by every family: workdir, data, sharded steps, logging, samples,
periodic evaluation, orbax checkpoints with exact resume, SIGTERM and non-finite handling.

A family supplies a :class:`Family` (how to build its state, step, loader and samples);
:func:`run` does the rest. Everything a run writes lives in ``workdir``; a run started on a
workdir holding a checkpoint resumes from it and ends bit-identical (on the same backend) to
an uninterrupted one: the step key is ``fold_in(key(seed), step)`` and the data position
(global batches, the same for any process count) is checkpointed with the state.

Several processes: the workdir must be shared by all (checked before training; ``gs://``
works), only process 0 writes logs, samples and the config, and SIGTERM to any process makes
all of them save the same step and stop. A checkpoint resumes on any number of processes.

A study (``config.seeds="0,1,2"``) trains one run per seed as one vmapped program on a
``('replica', 'data')`` mesh; replica k is exactly the run with ``seed=k``. One checkpoint
holds every replica; ``metrics.jsonl`` rows carry their ``seed``, and samples and TensorBoard
curves are per seed (``samples/seed_<k>/``, ``tensorboard/seed_<k>/``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from etils import epath
from PIL import Image

from jaxgan import parallel
from jaxgan.checkpoint import Checkpointer
from jaxgan.experiments import memory

PyTree = Any


class NonFiniteLossError(FloatingPointError):
    """Training produced a non-finite loss; the last good checkpoint is kept."""


class WorkdirError(RuntimeError):
    """The workdir cannot be used (unwritable, or it holds a different model's run)."""


@dataclasses.dataclass(frozen=True)
class Growth:
    """How a family that grows (PGGAN) changes stage; at step ``start(config, s)`` the runner
    grows every run (every replica of a study) to stage ``s``.

    Attributes:
      batch_sizes: (config) -> each stage's global batch size.
      start: (config, stage) -> the step at which ``stage`` (and its loader) begins.
      grow: (config, state, stage) -> one run's state grown to ``stage``.
      name: (stage) -> how errors name a stage ("stage 2 (16x16)").
    """

    batch_sizes: Callable[[ml_collections.ConfigDict], list[int]]
    start: Callable[[ml_collections.ConfigDict, int], int]
    grow: Callable[[ml_collections.ConfigDict, PyTree, int], PyTree]
    name: Callable[[int], str]


@dataclasses.dataclass
class Family:
    """What the loop needs to know about a GAN family.

    Attributes:
      name: "dcgan", "pix2pix", "cyclegan" or "pggan".
      create_state: (config, key, stage) -> state.
      make_step: (config, mesh, stage, **kw) -> jitted step(state, batch, key) ->
        (state, metrics) (``replicas=True``: the study's vmapped step).
      make_loader: (config, stage, split, training) -> jaxgan.data.Loader.
      sample_inputs: (config) -> host arrays fixed for the whole run (latents or
        validation inputs), a function of ``config.seed`` only.
      render_samples: (config, state, inputs) -> (N, H, W, C) float images in [-1, 1].
      growth: the stages of a family that grows (None: one stage, ``config.batch_size``).
      grid_columns: images per row of a sample grid (None: square).
      default_config: optional () -> the family's library defaults; a checkpoint written
        before a config field existed reads as having it at this default (its saved config
        and the model signature checked on resume).
    """

    name: str
    create_state: Callable[[ml_collections.ConfigDict, jax.Array, int], PyTree]
    make_step: Callable[..., Callable]
    make_loader: Callable[..., Any]
    sample_inputs: Callable[[ml_collections.ConfigDict], Any]
    render_samples: Callable[[ml_collections.ConfigDict, PyTree, Any], jax.Array]
    growth: Growth | None = None
    grid_columns: int | None = None
    default_config: Callable[[], ml_collections.ConfigDict] | None = None


def _multi() -> bool:
    return jax.process_count() > 1


def _say(*args: Any) -> None:
    """A status line, from process 0 only."""
    if jax.process_index() == 0:
        print(*args, flush=True)


def mesh_for(batch_sizes: list[int]) -> jax.sharding.Mesh:
    """A 'data' mesh over as many devices as divide every batch size (all of them on several
    processes, where :func:`check_batch_sizes` refuses sizes they do not divide), so on one
    process a batch of 1 (the pix2pix/CycleGAN reference) runs instead of failing."""
    devices = jax.devices()
    if _multi():
        return parallel.make_mesh(devices)
    return parallel.make_mesh(devices[:_dividing_all(len(devices), batch_sizes)])


def _dividing_all(limit: int, batch_sizes: list[int]) -> int:
    """The largest device count up to ``limit`` that divides every batch size."""
    return max(d for d in range(1, limit + 1) if all(b % d == 0 for b in batch_sizes))


def study_seeds(config: ml_collections.ConfigDict) -> tuple[int, ...] | None:
    """The seeds of a study (``config.seeds``: ``"0,1,2"``), or None for one run of
    ``config.seed``. Raises ValueError, naming the fix, for a list that is not distinct
    whole numbers."""
    value = config.get("seeds", "")
    text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value or "")
    if not text.strip():
        return None
    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise ValueError(f"config field seeds={value!r} must be comma-separated whole numbers "
                         "(one run per seed): pass e.g. --config.seeds=0,1,2") from None
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"config field seeds={value!r} must list distinct seeds >= 0: pass "
                         "e.g. --config.seeds=0,1,2")
    return seeds


def seed_config(config: ml_collections.ConfigDict, seed: int) -> ml_collections.ConfigDict:
    """``config`` as the single run of ``seed`` (``seed=seed``, ``seeds=""``): what one
    replica of a study is."""
    c = ml_collections.ConfigDict(config.to_dict())
    c.seed = int(seed)
    if "seeds" in c:
        c.seeds = ""
    return c


def study_mesh_for(replicas: int, batch_sizes: list[int]) -> jax.sharding.Mesh:
    """The ``('replica', 'data')`` mesh of a study: the replica axis as large as divides both
    the study and each process's devices, the data axis over the rest (as :func:`mesh_for`)."""
    local = len(jax.local_devices())
    r = max(d for d in range(1, replicas + 1) if replicas % d == 0 and local % d == 0)
    if _multi():
        return parallel.make_study_mesh(r, jax.device_count() // r)
    return parallel.make_study_mesh(r, _dividing_all(jax.device_count() // r, batch_sizes))


def stack_replicas(states: list[PyTree]) -> PyTree:
    """Per-seed trees (states, keys) stacked along a new leading replica axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *states)


@functools.lru_cache(maxsize=8)
def _take_replica(mesh: jax.sharding.Mesh) -> Callable:
    return jax.jit(lambda tree, k: jax.tree.map(lambda x: x[k], tree),
                   out_shardings=parallel.replicated_sharding(mesh))


def replica(tree: PyTree, k: int, mesh: jax.sharding.Mesh | None = None) -> PyTree:
    """Replica ``k`` of a study's tree (a state as one run of seed k has it): replicated on
    ``mesh`` when given (any number of processes), else sliced where it lies."""
    if mesh is None:
        return jax.tree.map(lambda x: x[k], tree)
    return _take_replica(mesh)(tree, k)


def check_batch_sizes(family: Family, config: ml_collections.ConfigDict) -> list[int]:
    """Every stage's global batch checked against the devices and processes before the
    workdir is touched (:class:`jaxgan.parallel.BatchSizeError`); returns the sizes. On one
    process, says which stages leave devices idle."""
    growth = family.growth
    sizes = [int(b) for b in growth.batch_sizes(config)] if growth else [int(config.batch_size)]
    name = growth.name if growth else (lambda stage: "batch_size")
    parallel.check_batch_sizes([(name(i), b) for i, b in enumerate(sizes)])
    n = jax.device_count()
    seeds = study_seeds(config)
    for i, b in enumerate(sizes):
        used = (study_mesh_for(len(seeds), [b]) if seeds else mesh_for([b])).devices.size
        if used < n:
            near = " or ".join(map(str, parallel.nearest_multiples(b, n)))
            _say(f"note: {name(i)}: global batch size {b} uses {used} of {n} devices (use a "
                 f"multiple of {n}, e.g. {near}, for all)")
    return sizes


# ----------------------------------------------------------------------------------------------
# Workdir, writers, samples


def default_workdir(family: str) -> epath.Path:
    """``./workdirs/<family>``: where a run goes when ``--workdir`` is not given."""
    return epath.Path("workdirs") / family


def workdir_path(workdir: str | os.PathLike) -> epath.Path:
    """``workdir`` as an ``etils.epath`` path: a URI (``gs://bucket/run``) kept as it is, a
    local path made absolute (``~`` expanded)."""
    if "://" in os.fspath(workdir):
        return epath.Path(workdir)
    return epath.Path(workdir).expanduser().absolute()


#: How a multi-process run is told that its workdir is not shared.
SHARED_WORKDIR_FIX = (
    "A multi-host run needs a workdir that every process reads and writes: a gs://bucket/path "
    "(on TPU VMs) or a shared filesystem mounted at the same path on every host (NFS, "
    "Filestore, a GCS FUSE mount); a disk local to each host cannot hold the checkpoints")


def prepare_workdir(workdir: str | os.PathLike) -> epath.Path:
    """Create ``workdir`` and prove it is writable, before any training starts (process 0
    writes; on several processes every process then proves it sees what process 0 wrote,
    else :class:`WorkdirError` on all of them, naming the fix)."""
    path = workdir_path(workdir)
    error = ""
    token = uuid.uuid4().hex
    if _multi():
        from jax.experimental import multihost_utils

        token = bytes(np.asarray(multihost_utils.broadcast_one_to_all(
            np.frombuffer(token.encode(), np.uint8)))).decode()
    probe = path / f".jaxgan_write_test_{token}"
    if jax.process_index() == 0:
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe.write_text(token)
        except OSError as e:
            error = f"workdir {path} is not writable ({e.strerror or e}); choose another " \
                    "--workdir or fix its permissions"
    if _multi():
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("jaxgan_workdir_written")
        try:
            seen = probe.exists() and probe.read_text() == token
        except OSError:
            seen = False
        flags = np.asarray(multihost_utils.process_allgather(
            np.array([not error, seen], np.int32)))
        if jax.process_index() != 0 and not flags[0, 0]:
            error = f"workdir {path} is not writable by process 0; choose another --workdir " \
                    "or fix its permissions"
        elif not error and not flags[:, 1].all():
            blind = [i for i in range(len(flags)) if not flags[i, 1]]
            error = (f"workdir {path} is not shared by the {len(flags)} processes of this run: "
                     f"process(es) {', '.join(map(str, blind))} do not see the file process 0 "
                     f"wrote there. {SHARED_WORKDIR_FIX}.")
    if jax.process_index() == 0:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
    if error:
        raise WorkdirError(error)
    return path


class MetricWriter:
    """Scalars to ``<workdir>/metrics.jsonl`` (one JSON object per logged step, with ``step``)
    and TensorBoard events under ``<workdir>/tensorboard``; a study's rows also carry ``seed``
    and each seed has its own TensorBoard run (``tensorboard/seed_<k>``)."""

    def __init__(self, workdir: epath.Path, resume_step: int, enabled: bool = True,
                 seeds: tuple[int, ...] | None = None):
        self.path = epath.Path(workdir) / "metrics.jsonl"
        self.enabled = enabled
        self._tb = {}
        if not enabled:
            return
        kept = self._truncate(resume_step)
        # Object stores (gs://) cannot append: there every write rewrites the file.
        self._lines = None if _is_local(self.path) else kept
        self._file = self.path.open("a") if self._lines is None else None
        from tensorboardX import SummaryWriter

        # purge_step drops events an interrupted run wrote past its checkpoint (as _truncate);
        # the suffix keeps a resumed run's file apart from one opened in the same second.
        root = epath.Path(workdir) / "tensorboard"
        for seed in seeds or (None,):
            self._tb[seed] = SummaryWriter(
                os.fspath(root if seed is None else root / f"seed_{seed}"),
                purge_step=resume_step + 1 if resume_step else None,
                filename_suffix=f".{os.getpid()}.{resume_step}")

    def _truncate(self, resume_step: int) -> list[str]:
        """Drop lines past the resumed step: an interrupted run may have logged beyond its
        last checkpoint, and the resumed run logs those steps again. Returns the lines kept."""
        if not self.path.exists():
            return []
        keep = []
        for line in self.path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                if json.loads(line).get("step", 0) <= resume_step:
                    keep.append(line)
        self.path.write_text("".join(k + "\n" for k in keep))
        return keep

    def write(self, step: int, scalars: dict[str, float], seed: int | None = None) -> None:
        if not self.enabled:
            return
        row = {"step": step, **scalars} if seed is None else {"step": step, "seed": seed,
                                                                **scalars}
        line = json.dumps(row, sort_keys=True)
        if self._lines is None:
            self._file.write(line + "\n")
            self._file.flush()
        else:
            self._lines.append(line)
            self.path.write_text("".join(k + "\n" for k in self._lines))
        for k, v in scalars.items():
            self._tb[seed].add_scalar(k, v, step)

    def close(self) -> None:
        if self.enabled:
            if self._file is not None:
                self._file.close()
            for tb in self._tb.values():
                tb.close()


def _is_local(path: epath.Path) -> bool:
    return "://" not in os.fspath(path)


def image_grid(images: np.ndarray, columns: int | None = None, min_side: int = 64) -> np.ndarray:
    """(N, H, W, C) floats in [-1, 1] -> one uint8 grid image (3 or 1 channels); images
    smaller than ``min_side`` are enlarged (nearest)."""
    images = np.asarray(images, np.float32)
    n, h, w, c = images.shape
    if h < min_side:
        f = -(-min_side // h)
        images = images.repeat(f, axis=1).repeat(f, axis=2)
        n, h, w, c = images.shape
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.ones((rows * (h + 2) + 2, cols * (w + 2) + 2, c), np.float32)
    for i in range(n):
        r, col = divmod(i, cols)
        grid[2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + col * (w + 2) : 2 + col * (w + 2) + w] = (
            images[i]
        )
    grid = np.clip(np.rint((grid + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return grid[..., 0] if c == 1 else grid[..., :3]


def save_png(path: epath.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as a PNG at ``path`` (any ``etils.epath`` path)."""
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        Image.fromarray(array).save(f, format="PNG")


# ----------------------------------------------------------------------------------------------
# Checkpoints

#: The config fields that fix a run's image geometry (each family has some of them).
SHAPE_FIELDS = ("image_size", "resolution", "channels", "in_channels", "out_channels")


def model_signature(config: ml_collections.ConfigDict) -> dict:
    """What a checkpoint is a checkpoint of: ``config.model`` and the image geometry,
    recorded with it and checked on resume (:func:`check_signature`)."""
    return {"model": config.model.to_dict(),
            **{k: config[k] for k in SHAPE_FIELDS if k in config}}


#: ``config.model`` fields that choose how a model is computed, not what it is: a run may
#: resume with other values, and checkpoints written before a field existed still resume.
COMPUTE_FIELDS = ("impl", "dtype")


def _model_identity(signature: Any) -> Any:
    if isinstance(signature, dict) and isinstance(signature.get("model"), dict):
        model = {k: v for k, v in signature["model"].items() if k not in COMPUTE_FIELDS}
        return {**signature, "model": model}
    return signature


def _merge(default: Any, saved: Any) -> Any:
    """``saved`` with the keys it lacks, at any depth, taken from ``default`` (JSON dicts)."""
    if not (isinstance(default, dict) and isinstance(saved, dict)):
        return saved
    return {**default, **{k: _merge(default.get(k), v) for k, v in saved.items()}}


def _defaults(family: Family) -> ml_collections.ConfigDict | None:
    if family.default_config is None:
        return None
    from jaxgan.configs import add_run_fields

    return add_run_fields(family.default_config(), source="", num_steps=0)


def check_signature(workdir: epath.PathLike, meta: dict, family: str, signature: dict,
                    defaults: dict | None = None) -> None:
    """Refuse to resume a checkpoint of another family or model (:data:`COMPUTE_FIELDS`
    aside). ``defaults``: the family's signature at its default config; the checkpoint's
    takes the fields it lacks from it (fields added since it was written)."""
    saved = meta.get("signature")
    if defaults is not None:
        saved = _merge(json.loads(json.dumps(defaults)), saved)
    theirs = (meta.get("family"), saved)
    ours = (family, json.loads(json.dumps(signature)))
    if (theirs[0], _model_identity(theirs[1])) != (ours[0], _model_identity(ours[1])):
        raise WorkdirError(
            f"workdir {workdir} holds a checkpoint of {theirs[0]} with model {theirs[1]}, "
            f"but this run is {family} with model {ours[1]}. Use another --workdir to start "
            "a new run, or the config that made this one to resume it."
        )


# ----------------------------------------------------------------------------------------------
# The loop


class _Preemption:
    """SIGTERM (a TPU preemption) or Ctrl-C: finish the current step, checkpoint, exit cleanly.

    On several processes SIGTERM is left to JAX's preemption notifier, which has them all
    agree on the step to save (Ctrl-C raises SIGTERM for it). A second Ctrl-C interrupts at
    once, without a checkpoint.
    """

    def __init__(self) -> None:
        self.requested: str | None = None  # the signal's name once one arrived
        self.multi = _multi() and parallel.preemption_service_active()
        self._previous: dict = {}

    def __enter__(self) -> _Preemption:  # noqa: PYI034
        signals = (signal.SIGINT,) if self.multi else (signal.SIGTERM, signal.SIGINT)
        with contextlib.suppress(ValueError):  # not in the main thread: leave signals alone
            for s in signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        if self.multi:  # JAX's notifier tells the other processes
            signal.raise_signal(signal.SIGTERM)

    def reached(self, ckpt: Checkpointer, step: int) -> str | None:
        """The signal's name when the run should save ``step`` and stop (called by every
        process after every step)."""
        if not self.multi:
            return self.requested
        if ckpt.reached_preemption(step):
            return self.requested or "SIGTERM"
        return None

    def __exit__(self, *exc) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)


def _host_scalars(metrics: dict, seeds: tuple[int, ...] | None
                  ) -> list[tuple[int | None, dict[str, float]]]:
    """(seed or None, scalars) of each run: a single run's scalar metrics, or a study's
    (each ``[K]``) one dict per replica."""
    host = jax.device_get(metrics)
    if not seeds:
        return [(None, {k: float(np.asarray(v)) for k, v in host.items() if np.ndim(v) == 0})]
    return [(seed, {k: float(np.asarray(v)[i]) for k, v in host.items() if np.ndim(v) == 1})
            for i, seed in enumerate(seeds)]


def check_loop_config(config: ml_collections.ConfigDict) -> None:
    """Raise ValueError for loop fields no run can use, naming the override that fixes them,
    before the workdir is touched."""
    study_seeds(config)
    least = {"num_steps": 0, "log_every": 1, "checkpoint_every": 1, "max_checkpoints": 1,
             "sample_every": 0, "eval_every": 0, "num_samples": 1, "eval_num_images": 2}
    for field, low in least.items():
        value = config.get(field)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            what = "a whole number" + (f" >= {low}" if low else " >= 0")
            off = " (0 turns it off)" if field in ("sample_every", "eval_every") else ""
            raise ValueError(f"config field {field}={value!r} must be {what}{off}: "
                             f"pass e.g. --config.{field}={max(low, 1) * 10}")
    if int(config.get("eval_every", 0) or 0):
        from jaxgan import metrics as M

        names = [m.strip() for m in config.eval_metrics.split(",") if m.strip()]
        unknown = [m for m in names if m not in M.KNOWN_METRICS]
        if unknown:
            raise ValueError(f"unknown eval_metrics {unknown}; known: {', '.join(M.KNOWN_METRICS)}"
                             f" (e.g. --config.eval_metrics=swd,ms_ssim)")
        if {"fid", "kid"} & set(names) and not config.get("eval_inception"):
            raise ValueError("eval_metrics fid/kid need Inception-v3 weights: pass "
                             "--config.eval_inception=path/to/weights.npz (file format: "
                             "jaxgan.metrics.inception), or drop fid/kid from "
                             "--config.eval_metrics")


def run(
    family: Family,
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    evaluate: Callable[[ml_collections.ConfigDict, PyTree, int], dict[str, float]] | None = None,
) -> PyTree:
    """Train ``family`` with ``config`` in ``workdir`` (resuming from its latest checkpoint).

    Returns the final state (a study's: every replica stacked). Raises
    :class:`NonFiniteLossError` on a non-finite loss (the last good checkpoint is kept); before
    training, :class:`WorkdirError` for an unusable (or, on several processes, unshared)
    workdir and :class:`jaxgan.parallel.BatchSizeError` for a batch the devices cannot split.
    """
    check_loop_config(config)
    sizes = check_batch_sizes(family, config)
    workdir = prepare_workdir(workdir)
    is_chief = jax.process_index() == 0
    signature = model_signature(config)
    ckpt = Checkpointer(workdir / "checkpoints", int(config.max_checkpoints))
    seeds = study_seeds(config)
    # one config per run: a study's replicas each as the run of its seed
    members = [seed_config(config, s) for s in seeds] if seeds else [config]

    def mesh_at(stage: int) -> jax.sharding.Mesh:
        size = [sizes[min(stage, len(sizes) - 1)]]
        return study_mesh_for(len(seeds), size) if seeds else mesh_for(size)

    def place(tree: PyTree, mesh: jax.sharding.Mesh) -> PyTree:
        """A state or key onto ``mesh``: replicated, or a study's split over 'replica'."""
        if not seeds:
            return parallel.replicate(tree, mesh)
        return parallel.replicate(tree, mesh, parallel.replica_sharding(mesh))

    def created(make: Callable[[ml_collections.ConfigDict], PyTree], mesh: jax.sharding.Mesh
                ) -> PyTree:
        """``make(config)`` of every run (stacked in a study), placed on ``mesh``: on one
        process made eagerly (loaded weights are not traced in as constants); on several,
        inside jit (no device_put onto devices a process cannot address)."""
        def build_all():
            return make(config) if not seeds else stack_replicas([make(c) for c in members])
        if not _multi():
            return place(build_all(), mesh)
        return parallel.replicated(build_all, mesh,
                                   parallel.replica_sharding(mesh) if seeds else None)()

    def create(stage: int) -> PyTree:
        """The initial state at ``stage``: from ``split(key(seed))[0]`` of each run."""
        return created(lambda c: family.create_state(
            c, jax.random.split(jax.random.key(int(c.seed)))[0], stage), mesh_at(stage))

    def make_step_key(mesh: jax.sharding.Mesh) -> jax.Array:
        return created(lambda c: jax.random.split(jax.random.key(int(c.seed)))[1], mesh)

    def make_loader(stage: int, position: int) -> Iterator:
        """The training batches from global batch ``position`` on (a study's: each run's
        batch, stacked on a leading replica axis)."""
        its = [_iterate_from(family.make_loader(c, stage, "train", True), position)
               for c in members]
        if not seeds:
            return its[0]
        return ({k: np.stack([b[k] for b in bs]) for k in bs[0]} for bs in zip(*its))

    def make_step(mesh: jax.sharding.Mesh, stage: int) -> Callable:
        if seeds:
            return family.make_step(config, mesh, stage, replicas=True)
        return family.make_step(config, mesh, stage)

    restored = {}

    def build(meta: dict) -> tuple[PyTree, Any]:
        """The fresh state at the stage ``meta`` records ({}: stage 0); the data position
        is in ``meta`` (no grain iterator is restored: its state is per process)."""
        if meta:
            check_signature(workdir, meta, family.name, signature, default_signature(family))
            check_study(workdir, meta, seeds)
        restored["stage"] = stage = int(meta.get("stage", 0))
        start = family.growth.start(config, stage) if family.growth else 0
        restored["position"] = int(meta.get("data_position", int(meta.get("step", 0)) - start))
        return create(stage), None

    found = ckpt.restore_newest(build)
    if found is None:
        state, _ = build({})
        position = 0
    else:
        start, state, _, _ = found
        position = restored["position"]
        _say(f"resumed {family.name} from {workdir}/checkpoints at step {start}")
    stage = restored["stage"]
    mesh = mesh_at(stage)
    iterator = make_loader(stage, position)
    if is_chief:
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
    step = int(jax.device_get(state.step if not seeds else replica(state.step, 0, mesh)))
    num_steps = int(config.num_steps)
    if step > num_steps:
        ckpt.close()
        raise WorkdirError(
            f"workdir {workdir} is already at step {step}, past num_steps={num_steps}: nothing "
            f"to train. Pass --config.num_steps above {step} to continue it, or another "
            "--workdir to start a new run.")
    if step == num_steps and found is not None:
        _say(f"{family.name}: {workdir} is already at num_steps={num_steps}; pass a larger "
             "--config.num_steps to continue it")
    step_fn = make_step(mesh, stage)
    sample_inputs = [family.sample_inputs(c) for c in members]
    writer = MetricWriter(workdir, step, enabled=is_chief, seeds=seeds)
    step_key = make_step_key(mesh)

    def runs(tree: PyTree) -> Iterator[tuple[int | None, ml_collections.ConfigDict, PyTree]]:
        """(seed or None, config, state) of each run, a study's replicas one by one."""
        if not seeds:
            yield None, config, tree
            return
        for k, c in enumerate(members):
            yield seeds[k], c, replica(tree, k, mesh)

    def next_growth() -> int | None:
        """The step at which the next stage begins (None at the last stage)."""
        return family.growth.start(config, stage + 1) if stage + 1 < len(sizes) else None

    def meta() -> dict:
        return {"family": family.name, "signature": signature, "stage": stage,
                "step": step, "data_position": position, "seeds": list(seeds or ()),
                "config": json.loads(config.to_json_best_effort())}

    def save(force: bool = False) -> None:
        ckpt.save(step, state, None, meta(), force=force)

    def write_samples() -> None:
        # every process renders (the state spans all of them); process 0 writes
        for (seed, c, s), inputs in zip(runs(state), sample_inputs, strict=True):
            images = jax.device_get(family.render_samples(c, s, inputs))
            if is_chief:
                where = workdir / "samples" / ("" if seed is None else f"seed_{seed}")
                save_png(where / f"step_{step:07d}.png",
                         image_grid(images, columns=family.grid_columns))

    def check_finite() -> None:
        """NonFiniteLossError if a step since the last check was not finite (naming a
        study's seeds that were not)."""
        ok = np.atleast_1d(np.asarray(jax.device_get(True if ok_flag is None else ok_flag)))
        if ok.all():
            return
        bad = [i for i in range(len(ok)) if not ok[i]]
        which = " of seed " + ", ".join(str(seeds[i]) for i in bad) if seeds else ""
        raise NonFiniteLossError(_nonfinite_message(
            step, _host_scalars(metrics, seeds)[bad[0]][1], ckpt, workdir, which))

    def say(line: str) -> None:
        if is_chief:
            bar.write(line)

    ok_flag = None  # the finite flags of the steps since the last check, on the device
    window_t, window_images = time.perf_counter(), 0
    bar = tqdm.tqdm(
        total=num_steps, initial=step, unit="step", dynamic_ncols=True, disable=not is_chief,
        mininterval=1.0 if sys.stderr.isatty() else 10.0, desc=family.name,
    )
    _say(f"{family.name}: training to step {num_steps} in {workdir} "
         + (f"({len(seeds)} seeds {','.join(map(str, seeds))} as one program) " if seeds else "")
         + f"({mesh.devices.size} {jax.default_backend()} device(s)"
         + (f" over {jax.process_count()} processes)" if _multi() else ")"))

    grow_at = next_growth()
    steps = memory.StepMemory(say)  # JAXGAN_CPU_MALLOC=1 on the CPU: freed memory held
    try:
        with _Preemption() as preemption:
            while step < num_steps:
                if grow_at is not None and step >= grow_at:
                    stage += 1  # every run of a study grows at the same step
                    grow = functools.partial(family.growth.grow, members[0], stage=stage)
                    grown = grow(state) if not seeds else jax.vmap(grow)(state)
                    if mesh_at(stage) != mesh:
                        mesh = mesh_at(stage)
                        step_key = place(step_key, mesh)
                        if ok_flag is not None:
                            ok_flag = parallel.replicate(ok_flag, mesh)
                    state = place(grown, mesh)
                    iterator = make_loader(stage, 0)
                    position = 0
                    step_fn = make_step(mesh, stage)
                    grow_at = next_growth()
                    say(f"step {step}: growing to stage {stage}")
                batch = parallel.shard_batch(next(iterator), mesh)
                position += 1
                state, metrics = steps.run_step(step_fn, state, batch, step_key)
                finite = metrics["finite"].astype(bool)
                ok_flag = finite if ok_flag is None else ok_flag & finite
                step += 1
                window_images += int(np.prod(next(iter(batch.values())).shape[:1 + bool(seeds)]))
                bar.update(1)
                last = step == num_steps
                if step % int(config.log_every) == 0 or last:
                    check_finite()
                    rows = _host_scalars(metrics, seeds)
                    dt = time.perf_counter() - window_t
                    for seed, scalars in rows:
                        scalars.pop("finite", None)
                        writer.write(step, scalars, seed)
                    mean = {k: float(np.mean([sc[k] for _, sc in rows])) for k in rows[0][1]}
                    shown = sorted((k for k in mean if k.endswith("loss")),
                                   key=lambda k: (k not in ("d_loss", "g_loss"), k))[:4]
                    bar.set_postfix({"img/s": f"{window_images / max(dt, 1e-9):.1f}",
                                     **{k: f"{mean[k]:.3f}" for k in shown}})
                    window_t, window_images = time.perf_counter(), 0
                if int(config.sample_every) and (step % int(config.sample_every) == 0 or last):
                    with steps.other_program():  # freed memory released, as at compiles
                        write_samples()
                if evaluate is not None and int(config.eval_every) and (
                        step % int(config.eval_every) == 0 or last):
                    for seed, c, s in runs(state):
                        with steps.other_program():
                            results = evaluate(c, s, step)
                        if results:
                            writer.write(step, {f"eval/{k}": v for k, v in results.items()},
                                         seed)
                            say(f"step {step}" + ("" if seed is None else f" seed {seed}")
                                + ": " + ", ".join(f"{k} {v:.4g}" for k, v in results.items()))
                stop = preemption.reached(ckpt, step)
                if stop:
                    check_finite()
                    save(force=True)
                    ckpt.wait()
                    say(f"{stop}: saved checkpoint at step {step} in {workdir}; run the same "
                        "command to resume")
                    break
                if step % int(config.checkpoint_every) == 0 or last:
                    check_finite()
                    save()
    finally:
        bar.close()
        ckpt.close()
        writer.close()
    return state


def check_study(workdir: epath.PathLike, meta: dict, seeds: tuple[int, ...] | None) -> None:
    """Refuse to resume a checkpoint of another set of seeds (a study of other seeds, or a
    single run as a study and the reverse), naming the override that resumes it."""
    saved = tuple(meta.get("seeds") or ())
    if saved != tuple(seeds or ()):
        what = (f"a study of seeds {','.join(map(str, saved))}" if saved else "a single run")
        fix = (f"--config.seeds={','.join(map(str, saved))}" if saved else "--config.seeds=''")
        ours = f"seeds {','.join(map(str, seeds))}" if seeds else "a single run"
        raise WorkdirError(f"workdir {workdir} holds {what}, but this run is {ours}. Pass {fix} "
                           "to resume it, or another --workdir to start a new one.")


def _iterate_from(loader: Any, position: int) -> Iterator:
    """An iterator over ``loader`` whose first batch is its global batch ``position``."""
    if hasattr(loader, "iter_from"):
        return loader.iter_from(position)
    iterator = iter(loader)
    for _ in range(position):  # a loader of another kind: read up to the position
        next(iterator)
    return iterator


def _nonfinite_message(step: int, scalars: dict, ckpt: Checkpointer, workdir: epath.Path,
                       which: str = "") -> str:
    kept = ckpt.latest_step()
    where = (f"the last good checkpoint (step {kept}) is kept in {workdir}/checkpoints"
             if kept is not None else "no checkpoint had been written yet")
    losses = ", ".join(f"{k}={v:.4g}" for k, v in scalars.items() if k != "finite")
    return (f"non-finite loss{which} by step {step} ({losses}); training stopped and the bad "
            f"update was not applied; {where}. Lower the learning rate or check the data for NaNs, then "
            "rerun (it resumes from that checkpoint).")


def _read_checkpoints(workdir: str | os.PathLike) -> tuple[epath.Path, Checkpointer]:
    """(path, a Checkpointer that reads) of ``workdir``'s checkpoints, creating nothing."""
    path = workdir_path(workdir)
    if not (path / "checkpoints").is_dir():
        what = "no checkpoints in" if path.is_dir() else "no such workdir:"
        raise WorkdirError(f"{what} {path}: train there first, or pass the --workdir of a run")
    return path, Checkpointer(path / "checkpoints", 1, read_only=True)


def restore_latest(family: Family, config: ml_collections.ConfigDict | None, workdir: str
                   ) -> tuple[PyTree, int, ml_collections.ConfigDict]:
    """(state, step, config) of the latest checkpoint in ``workdir``.

    ``config=None`` takes the config saved with the checkpoint; a given config must describe
    the same model (else :class:`WorkdirError`). A study's checkpoint gives every replica
    stacked (:func:`replica` takes one) and a config whose ``seeds`` are the study's.
    """
    path, ckpt = _read_checkpoints(workdir)

    chosen = {}

    def build(meta: dict) -> tuple[PyTree, None]:
        cfg = saved_config(family, meta["config"]) if config is None else config
        check_signature(path, meta, family.name, model_signature(cfg),
                        default_signature(family))
        seeds = tuple(meta.get("seeds") or ())
        if seeds:
            cfg = ml_collections.ConfigDict(cfg.to_dict())
            cfg.seeds = ",".join(map(str, seeds))
        chosen["config"] = cfg
        stage = int(meta.get("stage", 0))
        template = family.create_state(cfg, jax.random.key(0), stage)
        return (stack_replicas([template] * len(seeds)) if seeds else template), None

    try:
        found = ckpt.restore_newest(build)
    finally:
        ckpt.close()
    if found is None:
        raise WorkdirError(f"no checkpoint in {path}/checkpoints: train there first")
    step, state, _, _ = found
    return state, step, chosen["config"]


def saved_config(family: Family, saved: dict) -> ml_collections.ConfigDict:
    """A checkpoint's saved config (a JSON dict) as a ConfigDict, the fields it lacks (added
    since it was written) taken from :attr:`Family.default_config`; its own values win."""
    defaults = _defaults(family)
    if defaults is None:
        return ml_collections.ConfigDict(saved)
    return ml_collections.ConfigDict(_merge(defaults.to_dict(), saved))


def default_signature(family: Family) -> dict | None:
    """The family's model signature at its default config (None without defaults)."""
    defaults = _defaults(family)
    return None if defaults is None else model_signature(defaults)


def checkpoint_family(workdir: str) -> str:
    """The family name recorded with the latest checkpoint of ``workdir``."""
    path, ckpt = _read_checkpoints(workdir)
    try:
        found = ckpt.newest_meta()
    finally:
        ckpt.close()
    if found is None:
        raise WorkdirError(f"no checkpoint in {path}/checkpoints: train there first")
    return str(found[1]["family"])


