"""``python -m jaxgan.experiments.pix2pix``: pix2pix (U-Net G, PatchGAN D on concat(A, B),
GAN + 100 * L1, constant then linear-decay learning rate) on the embedded edges -> photo
pairs by default, or ``--config.data.source=aligned:/data/facades``.

Translate mode applies the latest checkpoint of a workdir to a folder::

    python -m jaxgan.experiments.pix2pix --mode=translate --workdir=W --input=DIR --output=OUT
        [--eval_mode]   # BatchNorm running stats and no dropout (the reference's --eval)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxgan.experiments import _shared, cli, runner, translate
from jaxgan.train import pix2pix as T


def _as_rgb(x: jax.Array, c: int) -> jax.Array:
    return jnp.repeat(x, c, axis=-1) if x.shape[-1] == 1 and c == 3 else x


def _render(config, state, pairs):
    """Rows of [A | G(A) | B] (G in eval mode): training inputs first, then held-out ones."""
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
    """Train (or resume) a pix2pix run in ``workdir``; returns the final state."""
    return runner.run(family(), config, workdir, evaluate=evaluate)


def translate_mode(config: ml_collections.ConfigDict, workdir: str) -> int:
    """Apply the latest checkpoint's generator to ``--input`` and write ``--output``."""
    from absl import flags

    f = flags.FLAGS
    if not f.input or not f.output:
        raise ValueError("--mode=translate needs --input=DIR and --output=DIR")
    state, step = translate.restore_latest(family(), config, workdir)
    train = not f.eval_mode

    def apply(x, key):
        return T.translate(config, state, x, train=train, key=key if train else None)

    n = translate.translate_folder(apply, f.input, f.output, image_size=int(config.image_size),
                                   channels=int(config.in_channels), seed=int(config.seed))
    print(f"translated {n} images with the step-{step} generator into {f.output}")
    return n


if __name__ == "__main__":
    cli.run_main("pix2pix", train_and_evaluate, extra_flags=_shared.translate_flags,
                 other_modes={"translate": translate_mode})
