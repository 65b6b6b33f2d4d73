r"""``python -m jaxgan.experiments.pix2pix``: pix2pix (U-Net G, PatchGAN D, GAN + 100 * L1) on
the embedded gray -> photo pairs (colourisation) by default, or
``--config.data.source=aligned:/data/facades``.

Translate mode applies a workdir's latest checkpoint, or a reference PyTorch generator
(``latest_net_G.pth``, the pretrained ``facades_label2photo`` ...), to a folder::

    python -m jaxgan.experiments.pix2pix --mode=translate --workdir=W --input=DIR --output=OUT
        [--eval_mode]   # BatchNorm running stats and no dropout (the reference's --eval)
    python -m jaxgan.experiments.pix2pix --mode=translate --torch_checkpoint=latest_net_G.pth \
        --input=DIR --output=OUT [--netG=unet_256] [--norm=batch] [--no_dropout]

Fine-tuning: ``--config.init.torch_G=latest_net_G.pth`` (and ``torch_D``) start a new run
from the reference's weights; the config's model must be theirs (``--config.model.norm``, ...).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxgan.experiments import _shared, cli, runner
from jaxgan.train import pix2pix as T


def _as_rgb(x: jax.Array, c: int) -> jax.Array:
    return jnp.repeat(x, c, axis=-1) if x.shape[-1] == 1 and c == 3 else x


def _render(config, state, pairs):
    """Rows of [A | G(A) | B] (G in eval mode)."""
    a, b = jnp.asarray(pairs["A"]), jnp.asarray(pairs["B"])
    fake = T.translate(config, state, a, train=False)
    c = fake.shape[-1]
    row = jnp.concatenate([_as_rgb(a, c)[..., :c], fake, b], axis=2)
    return row


def family() -> runner.Family:
    return _shared.paired_family("pix2pix", T, _render)


def evaluate(config: ml_collections.ConfigDict, state, step: int, **kw) -> dict[str, float]:
    """Metrics of G(A) against B on the eval split (translations of successive test inputs)."""
    return _shared.evaluate_translation(config, lambda a: T.translate(config, state, a), step,
                                        **kw)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
    """Train (or resume) a pix2pix run in ``workdir``; returns the final state. A new run
    starts from ``config.init.torch_G`` / ``torch_D`` when set (fine-tuning)."""
    return runner.run(_shared.with_torch_init(family(), T, config, workdir), config, workdir,
                      evaluate=evaluate)


def translate_mode(config: ml_collections.ConfigDict, workdir: str) -> int:
    """Apply the latest checkpoint's generator to ``--input`` and write ``--output``."""

    def apply_factory(state, f):
        train = not f.eval_mode
        return lambda x, key: T.translate(config, state, x, train=train,
                                          key=key if train else None)

    return _shared.translate_mode(family(), config, workdir, apply_factory,
                                  config.in_channels, "A to B")


if __name__ == "__main__":
    cli.run_main("pix2pix", train_and_evaluate, extra_flags=_shared.translate_flags,
                 other_modes={"translate": translate_mode})
