"""Pieces the family modules share: data loaders from config, evaluation wiring."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxgan import data


def make_loader(
    config: ml_collections.ConfigDict,
    *,
    split: str,
    training: bool,
    batch_size: int,
    image_size: int,
    channels: int | dict[str, int],
    seed_offset: int = 0,
    resolution: int | None = None,
    flip: bool | None = None,
) -> data.Loader:
    """A grain loader from ``config.data`` (training: shuffled, random transforms; otherwise
    in order, resized only, flips off)."""
    d = config.data
    options = {k: True for k in ("skip_corrupt", "download") if d.get(k)}
    source = data.make_source(d.source, split=split, **options, **dict(d.options))
    transforms = d.transforms if training else "resize"
    load_size = d.get("load_size") if transforms == "resize_and_crop" else None
    if flip is None:
        flip = bool(d.get("random_flip", False)) and training
    return data.make_loader(
        source,
        global_batch_size=batch_size,
        seed=int(config.seed) + 7919 * seed_offset,
        image_size=image_size,
        channels=channels,
        transforms=transforms,
        load_size=load_size,
        flip=flip,
        resolution=resolution,
        shuffle=training,
        worker_count=int(d.worker_count) if training else 0,
    )


def first_batch(loader: Iterable[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The first batch of a loader (for fixed sample inputs)."""
    return next(iter(loader))


def cycle_images(loader: Iterable[dict], key: str) -> Iterator[np.ndarray]:
    """Endless iterator over the ``key`` images of a loader's batches."""
    while True:
        for batch in loader:
            yield batch[key]


def run_evaluation(
    config: ml_collections.ConfigDict,
    sample_fn: Callable[[jax.Array, int], Any],
    real_batches: Iterable[np.ndarray] | None,
    step: int,
    *,
    num_images: int | None = None,
    metrics: str | None = None,
) -> dict[str, float]:
    """``jaxgan.metrics.evaluate_generator`` with the config's metric settings."""
    from jaxgan import metrics as M

    names = [m.strip() for m in (metrics or config.eval_metrics).split(",") if m.strip()]
    if {"fid", "kid"} & set(names) and not config.eval_inception:
        raise ValueError("FID/KID need Inception-v3 weights: pass --inception=weights.npz to "
                         "python -m jaxgan.evaluate, or --config.eval_inception=weights.npz to "
                         "a training run (file format: jaxgan.metrics.inception)")
    n = int(config.eval_num_images if num_images is None else num_images)
    return M.evaluate_generator(
        sample_fn,
        real_batches,
        metrics=names,
        num_images=n,
        key=jax.random.fold_in(jax.random.key(int(config.seed) + 1), step),
        batch_size=min(64, n - n % 2) or 2,
        inception=config.eval_inception or None,
    )


# Conditional families (pix2pix, CycleGAN): batches {"A", "B"}.


def paired_channels(config: ml_collections.ConfigDict) -> dict[str, int]:
    return {"A": int(config.in_channels), "B": int(config.out_channels)}


def paired_loader(config: ml_collections.ConfigDict, stage: int, split: str, training: bool,
                  batch_size: int | None = None) -> data.Loader:
    """Loader of {"A", "B"} batches (``stage`` is unused: these families do not grow)."""
    return make_loader(config, split=split, training=training,
                       batch_size=int(batch_size or config.batch_size),
                       image_size=int(config.image_size), channels=paired_channels(config))


def fixed_pairs(config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
    """The sample-grid inputs: the first ``num_samples // 2`` pairs of the training split
    (how well the model fits) then as many of the eval split (how it generalises), in order
    and without augmentation."""
    n = max(int(config.num_samples) // 2, 1)
    parts = [first_batch(paired_loader(config, 0, split, False, batch_size=n))
             for split in (config.data.split, config.data.eval_split)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def paired_signature(config: ml_collections.ConfigDict) -> dict:
    return {"model": config.model.to_dict(), "image_size": config.image_size,
            "in_channels": config.in_channels, "out_channels": config.out_channels}


def paired_family(name: str, train_module: Any, render: Callable) -> Any:
    """The runner.Family of a conditional family (no stages, {"A", "B"} batches)."""
    from jaxgan.experiments import runner

    return runner.Family(
        name=name,
        create_state=lambda config, key, stage: train_module.create_state(config, key),
        make_step=lambda config, mesh, stage: train_module.make_train_step(config, mesh),
        make_loader=paired_loader,
        sample_inputs=fixed_pairs,
        render_samples=render,
        signature=paired_signature,
        grid_columns=1,
        default_config=train_module.default_config,
    )


def evaluate_translation(config: ml_collections.ConfigDict, translate: Callable, step: int,
                         **kw: Any) -> dict[str, float]:
    """Metrics of ``translate(A)`` on successive eval-split inputs against its B images."""
    import jax.numpy as jnp

    inputs = cycle_images(paired_loader(config, 0, config.data.eval_split, False), "A")
    real = cycle_images(paired_loader(config, 0, config.data.eval_split, False), "B")
    pending: list[jax.Array] = []

    def sample(key: jax.Array, n: int) -> jax.Array:
        while sum(len(p) for p in pending) < n:
            pending.append(translate(jnp.asarray(next(inputs))))
        out = jnp.concatenate(pending)
        pending[:] = [out[n:]]
        return out[:n]

    return run_evaluation(config, sample, real, step, **kw)


def translate_flags(direction: bool = False) -> None:
    """The translate mode's flags (``--input``, ``--output``, ``--eval_mode``[, ``--direction``])."""
    from absl import flags

    flags.DEFINE_string("input", None, "translate: folder of input images")
    flags.DEFINE_string("output", None, "translate: folder for the outputs")
    flags.DEFINE_bool("eval_mode", False,
                      "translate: BatchNorm running averages and no dropout (reference --eval)")
    if direction:
        flags.DEFINE_enum("direction", "AtoB", ["AtoB", "BtoA"], "translate: which generator")


def translate_mode(family: Any, config: ml_collections.ConfigDict, workdir: str,
                   apply_factory: Callable, channels: int, what: str) -> int:
    """``--mode=translate``: restore ``workdir``'s latest checkpoint, apply
    ``apply_factory(state, flags)`` (-> ``apply(images, key)``) to every image under
    ``--input`` and write ``--output``."""
    from absl import flags

    from jaxgan.experiments import translate

    f = flags.FLAGS
    if not f.input or not f.output:
        raise ValueError("--mode=translate needs --input=DIR and --output=DIR")
    translate.check_output(f.output)
    state, step = translate.restore_latest(family, config, workdir)
    n = translate.translate_folder(apply_factory(state, f), f.input, f.output,
                                   image_size=int(config.image_size), channels=int(channels),
                                   seed=int(config.seed),
                                   skip_corrupt=bool(config.data.get("skip_corrupt")))
    print(f"translated {n} images ({what}) with the step-{step} checkpoint into {f.output}")
    return n
