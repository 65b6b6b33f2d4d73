"""``python -m jaxgan.experiments.cyclegan``: CycleGAN (two ResNet generators, two PatchGAN
Ds, LSGAN, cycle 10, identity 0.5, a 50-fake pool) on the embedded photos <-> micrographs
domains by default, or ``--config.data.source=tfds:cycle_gan/horse2zebra``.

Translate mode::

    python -m jaxgan.experiments.cyclegan --mode=translate --workdir=W --input=DIR --output=OUT
        [--direction=AtoB|BtoA] [--eval_mode]
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from jaxgan.experiments import _shared, cli, runner, translate
from jaxgan.train import cyclegan as T


def _channels(config):
    return {"A": int(config.in_channels), "B": int(config.out_channels)}


def _loader(config, stage, split, training):
    return _shared.make_loader(config, split=split, training=training,
                               batch_size=int(config.batch_size),
                               image_size=int(config.image_size), channels=_channels(config))


def _fixed_inputs(config):
    loader = _shared.make_loader(config, split=config.data.eval_split, training=False,
                                 batch_size=int(config.num_samples),
                                 image_size=int(config.image_size), channels=_channels(config))
    return _shared.first_batch(loader)


def _render(config, state, inputs):
    """Rows of [A | G_AB(A) | G_BA(G_AB(A)) | B | G_BA(B)]."""
    a, b = jnp.asarray(inputs["A"]), jnp.asarray(inputs["B"])
    fake_b = T.translate(config, state, a, "AtoB")
    rec_a = T.translate(config, state, fake_b, "BtoA")
    fake_a = T.translate(config, state, b, "BtoA")
    return jnp.concatenate([a, fake_b, rec_a, b, fake_a], axis=2)


def family() -> runner.Family:
    return runner.Family(
        name="cyclegan",
        create_state=lambda config, key, stage: T.create_state(config, key),
        make_step=lambda config, mesh, stage: T.make_train_step(config, mesh),
        make_loader=_loader,
        sample_inputs=_fixed_inputs,
        render_samples=_render,
        signature=lambda config: {"model": config.model.to_dict(),
                                  "image_size": config.image_size,
                                  "in_channels": config.in_channels,
                                  "out_channels": config.out_channels},
    )


def evaluate(config: ml_collections.ConfigDict, state, step: int, **kw) -> dict[str, float]:
    """Metrics of G_AB(A) against real B images of the eval split."""
    inputs = _shared.cycle_images(_loader(config, 0, config.data.eval_split, False), "A")
    real = _shared.cycle_images(_loader(config, 0, config.data.eval_split, False), "B")
    pending = []

    def sample(key, n):
        while sum(len(p) for p in pending) < n:
            pending.append(T.translate(config, state, jnp.asarray(next(inputs)), "AtoB"))
        out = jnp.concatenate(pending)
        pending[:] = [out[n:]]
        return out[:n]

    return _shared.run_evaluation(config, sample, real, step, **kw)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
    """Train (or resume) a CycleGAN run in ``workdir``; returns the final state."""
    return runner.run(family(), config, workdir, evaluate=evaluate)


def translate_mode(config: ml_collections.ConfigDict, workdir: str) -> int:
    """Apply the latest checkpoint's G_AB (or G_BA) to ``--input`` and write ``--output``."""
    from absl import flags

    f = flags.FLAGS
    if not f.input or not f.output:
        raise ValueError("--mode=translate needs --input=DIR and --output=DIR")
    state, step = translate.restore_latest(family(), config, workdir)
    channels = config.in_channels if f.direction == "AtoB" else config.out_channels

    def apply(x, key):
        return T.translate(config, state, x, f.direction, train=not f.eval_mode)

    n = translate.translate_folder(apply, f.input, f.output, image_size=int(config.image_size),
                                   channels=int(channels), seed=int(config.seed))
    print(f"translated {n} images ({f.direction}) with the step-{step} generators into "
          f"{f.output}")
    return n


def _flags():
    from absl import flags

    flags.DEFINE_string("input", None, "translate: folder of input images")
    flags.DEFINE_string("output", None, "translate: folder for the outputs")
    flags.DEFINE_enum("direction", "AtoB", ["AtoB", "BtoA"], "translate: which generator")
    flags.DEFINE_bool("eval_mode", False, "translate: eval-mode norms (reference --eval)")


if __name__ == "__main__":
    cli.run_main("cyclegan", train_and_evaluate, extra_flags=_flags,
                 other_modes={"translate": translate_mode})
