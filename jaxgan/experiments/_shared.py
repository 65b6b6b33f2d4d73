"""Pieces the family modules share: data loaders from config, evaluation wiring."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxgan import data, parallel


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
    """The sample-grid inputs: the first ``num_samples // 2`` training pairs (fit), then as
    many eval pairs (generalisation), in order and without augmentation."""
    n = max(int(config.num_samples) // 2, 1)
    parts = [{k: parallel.gather_rows(v)  # every process's rows: the same pairs on any count
              for k, v in first_batch(paired_loader(config, 0, split, False, batch_size=n)).items()}
             for split in (config.data.split, config.data.eval_split)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def paired_family(name: str, train_module: Any, render: Callable) -> Any:
    """The runner.Family of a conditional family (no stages, {"A", "B"} batches)."""
    from jaxgan.experiments import runner

    return runner.Family(
        name=name,
        create_state=lambda config, key, stage: train_module.create_state(config, key),
        make_step=lambda config, mesh, stage, **kw: train_module.make_train_step(config, mesh,
                                                                               **kw),
        make_loader=paired_loader,
        sample_inputs=fixed_pairs,
        render_samples=render,
        grid_columns=1,
        default_config=train_module.default_config,
    )


def evaluate_translation(config: ml_collections.ConfigDict, translate: Callable, step: int,
                         *, source: str = "A", target: str = "B", **kw: Any) -> dict[str, float]:
    """Metrics of ``translate(source)`` on successive eval-split inputs against its ``target``
    images (``source="B", target="A"`` scores the B -> A direction)."""
    import jax.numpy as jnp

    def images(key: str) -> Iterator[np.ndarray]:  # every process scores all rows, as one does
        return map(parallel.gather_rows, cycle_images(
            paired_loader(config, 0, config.data.eval_split, False), key))

    inputs, real = images(source), images(target)
    pending: list[jax.Array] = []

    def sample(key: jax.Array, n: int) -> jax.Array:
        while sum(len(p) for p in pending) < n:
            pending.append(translate(jnp.asarray(next(inputs))))
        out = jnp.concatenate(pending)
        pending[:] = [out[n:]]
        return out[:n]

    return run_evaluation(config, sample, real, step, **kw)


#: The reference's ``--netG`` / ``--norm`` / dropout defaults, for ``--torch_checkpoint``.
TORCH_DEFAULTS = {"pix2pix": ("unet_256", "batch", True),
                  "cyclegan": ("resnet_9blocks", "instance", False)}

GENERATORS = ("unet_128", "unet_256", "resnet_6blocks", "resnet_9blocks")


def translate_flags(direction: bool = False) -> None:
    """Define the translate mode's flags (``--direction`` only when ``direction``)."""
    from absl import flags

    flags.DEFINE_string("input", None, "translate: folder of input images")
    flags.DEFINE_string("output", None, "translate: folder for the outputs")
    flags.DEFINE_bool("eval_mode", False,
                      "translate: BatchNorm running averages and no dropout (reference --eval)")
    flags.DEFINE_enum("preprocess", "none", ["none", "square"],
                      "translate: 'none' = each image at its own size (non-square too; padded "
                      "to a size the generator takes, the output cropped back); 'square' = the "
                      "centred square resized to --config.image_size")
    flags.DEFINE_string("torch_checkpoint", None,
                        "translate: a PyTorch generator state_dict of the reference "
                        "(latest_net_G.pth, horse2zebra.pth, ...) to run instead of a workdir's "
                        "checkpoint; read without torch")
    flags.DEFINE_enum("netG", None, list(GENERATORS),
                      "translate --torch_checkpoint: the reference's --netG (default: "
                      "unet_256 for pix2pix, resnet_9blocks for CycleGAN)")
    flags.DEFINE_enum("norm", None, ["batch", "instance", "none"],
                      "translate --torch_checkpoint: the reference's --norm (default: batch "
                      "for pix2pix, instance for CycleGAN)")
    flags.DEFINE_bool("no_dropout", None,
                      "translate --torch_checkpoint: the reference's --no_dropout (default: "
                      "dropout for pix2pix, none for CycleGAN; a ResNet's keys depend on it)")
    if direction:
        flags.DEFINE_enum("direction", "AtoB", ["AtoB", "BtoA"],
                          "translate: which generator (not with --torch_checkpoint: the file "
                          "is one generator)")


def generator_divisor(config: ml_collections.ConfigDict) -> int:
    """What the config's generator needs its input sides to be multiples of."""
    from jaxgan import models
    from jaxgan.experiments import translate
    from jaxgan.train.image_to_image import generator_kwargs

    mc = config.model
    g = models.create(mc.generator,
                      **generator_kwargs(mc, config.in_channels, config.out_channels))
    return translate.size_divisor(g)


def translate_torch(family_name: str, path: str, input_dir: str, output_dir: str, *,
                    net_g: str | None = None, norm: str | None = None,
                    use_dropout: bool | None = None, eval_mode: bool = False,
                    preprocess: str = "none", image_size: int = 256, seed: int = 0,
                    skip_corrupt: bool = False, **overrides: Any) -> int:
    """Run a PyTorch reference generator checkpoint over ``input_dir``; returns images written.

    ``net_g`` / ``norm`` / ``use_dropout`` default to :data:`TORCH_DEFAULTS`; a file of another
    architecture gets an error naming the options it fits.
    """
    from jaxgan.experiments import translate

    d_net, d_norm, d_dropout = TORCH_DEFAULTS[family_name]
    net_g, norm = net_g or d_net, norm or d_norm
    use_dropout = d_dropout if use_dropout is None else bool(use_dropout)
    translate.check_output(output_dir)
    apply, module = translate.torch_generator(path, net_g, norm=norm, use_dropout=use_dropout,
                                              eval_mode=eval_mode, **overrides)
    return translate.translate_folder(
        apply, input_dir, output_dir, image_size=image_size if preprocess == "square" else None,
        channels=int(module.in_channels), seed=seed, skip_corrupt=skip_corrupt,
        divisor=translate.size_divisor(module))


def translate_mode(family: Any, config: ml_collections.ConfigDict, workdir: str,
                   apply_factory: Callable, channels: int, what: str) -> int:
    """``--mode=translate``: apply ``workdir``'s latest checkpoint (or ``--torch_checkpoint``)
    to every image under ``--input`` into ``--output``; ``apply_factory(state, flags)`` makes
    ``apply(images, key)`` of a restored state."""
    from absl import flags

    from jaxgan.experiments import runner, translate

    f = flags.FLAGS
    if not f.input or not f.output:
        raise ValueError("--mode=translate needs --input=DIR and --output=DIR")
    translate.check_output(f.output)
    skip = bool(config.data.get("skip_corrupt"))
    if f.torch_checkpoint:
        n = translate_torch(family.name, f.torch_checkpoint, f.input, f.output, net_g=f.netG,
                            norm=f.norm,
                            use_dropout=None if f.no_dropout is None else not f.no_dropout,
                            eval_mode=f.eval_mode, preprocess=f.preprocess,
                            image_size=int(config.image_size), seed=int(config.seed),
                            skip_corrupt=skip)
        print(f"translated {n} images with the PyTorch checkpoint {f.torch_checkpoint} into "
              f"{f.output}")
        return n
    if f.netG or f.norm or f.no_dropout is not None:
        raise ValueError("--netG / --norm / --no_dropout describe a --torch_checkpoint; a "
                         "workdir's checkpoint knows its model (see --show_config)")
    state, step, saved = runner.restore_latest(family, config, workdir)
    seeds = runner.study_seeds(saved)
    if seeds:  # a study: the replica of --config.seed
        if int(config.seed) not in seeds:
            raise ValueError(f"{workdir} is a study of seeds {saved.seeds}: pass "
                             f"--config.seed=<one of them> to translate with that run")
        state = runner.replica(state, seeds.index(int(config.seed)))
    n = translate.translate_folder(
        apply_factory(state, f), f.input, f.output,
        image_size=int(config.image_size) if f.preprocess == "square" else None,
        channels=int(channels), seed=int(config.seed), skip_corrupt=skip,
        divisor=generator_divisor(config))
    print(f"translated {n} images ({what}) with the step-{step} checkpoint into {f.output}")
    return n


def has_checkpoint(workdir: str) -> bool:
    """Whether ``workdir`` holds a checkpoint (a run there resumes)."""
    from jaxgan.experiments import runner

    try:
        runner.checkpoint_family(workdir)
    except runner.WorkdirError:
        return False
    return True


def with_torch_init(family: Any, train_module: Any, config: ml_collections.ConfigDict,
                    workdir: str) -> Any:
    """``family`` whose fresh state starts from the PyTorch checkpoints named in
    ``config.init`` (``train_module.init_from_torch``): fine-tuning. A run resuming from a
    checkpoint in ``workdir`` keeps its own weights (and says so)."""
    import dataclasses

    files = {k: v for k, v in config.get("init", {}).items() if v}
    if not files:
        return family
    if has_checkpoint(workdir):
        print(f"note: {workdir} has a checkpoint: resuming it, not loading "
              f"{', '.join(f'init.{k}' for k in files)}", flush=True)
        return family
    print("initialising from PyTorch checkpoints: "
          + ", ".join(f"{k[len('torch_'):]} <- {v}" for k, v in files.items()), flush=True)

    def create_state(config, key, stage):
        return train_module.init_from_torch(config, train_module.create_state(config, key))

    return dataclasses.replace(family, create_state=create_state)
