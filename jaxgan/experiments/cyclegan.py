r"""``python -m jaxgan.experiments.cyclegan``: CycleGAN (two ResNet generators, two PatchGAN
Ds, LSGAN, cycle 10, identity 0.5, a 50-fake pool) on the embedded photos <-> micrographs
domains by default, or ``--config.data.source=tfds:cycle_gan/horse2zebra``.

Translate mode, from a workdir or a reference PyTorch generator (``latest_net_G_A.pth``, the
pretrained ``horse2zebra.pth`` ...)::

    python -m jaxgan.experiments.cyclegan --mode=translate --workdir=W --input=DIR --output=OUT
        [--direction=AtoB|BtoA] [--eval_mode]
    python -m jaxgan.experiments.cyclegan --mode=translate --torch_checkpoint=horse2zebra.pth \
        --input=DIR --output=OUT [--netG=resnet_9blocks] [--norm=instance] [--no_dropout]

Fine-tuning: ``--config.init.torch_G_A=latest_net_G_A.pth`` (and ``torch_G_B``, ``torch_D_A``,
``torch_D_B``) start a new run from the reference's networks (G_A: A -> B; D_A judges B).
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from jaxgan.experiments import _shared, cli, runner
from jaxgan.train import cyclegan as T


def _render(config, state, inputs):
    """Rows of [A | G_AB(A) | G_BA(G_AB(A)) | B | G_BA(B)]."""
    a, b = jnp.asarray(inputs["A"]), jnp.asarray(inputs["B"])
    fake_b = T.translate(config, state, a, "AtoB")
    rec_a = T.translate(config, state, fake_b, "BtoA")
    fake_a = T.translate(config, state, b, "BtoA")
    return jnp.concatenate([a, fake_b, rec_a, b, fake_a], axis=2)


def family() -> runner.Family:
    return _shared.paired_family("cyclegan", T, _render)


def evaluate(config: ml_collections.ConfigDict, state, step: int, **kw) -> dict[str, float]:
    """Metrics of G_AB(A) against real B images of the eval split."""
    return _shared.evaluate_translation(
        config, lambda a: T.translate(config, state, a, "AtoB"), step, **kw)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
    """Train (or resume) a CycleGAN run in ``workdir``; returns the final state. A new run
    starts from the ``config.init.torch_*`` files that are set (fine-tuning)."""
    return runner.run(_shared.with_torch_init(family(), T, config, workdir), config, workdir,
                      evaluate=evaluate)


def translate_mode(config: ml_collections.ConfigDict, workdir: str) -> int:
    """Apply the latest checkpoint's G_AB (or G_BA) to ``--input`` and write ``--output``."""
    from absl import flags

    direction = flags.FLAGS.direction

    def apply_factory(state, f):
        return lambda x, key: T.translate(config, state, x, direction, train=not f.eval_mode)

    channels = config.in_channels if direction == "AtoB" else config.out_channels
    return _shared.translate_mode(family(), config, workdir, apply_factory, channels, direction)


if __name__ == "__main__":
    cli.run_main("cyclegan", train_and_evaluate,
                 extra_flags=lambda: _shared.translate_flags(direction=True),
                 other_modes={"translate": translate_mode})
