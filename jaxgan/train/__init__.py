"""Pure, jit-compiled train steps, one module per family.

Each of :mod:`~jaxgan.train.dcgan`, :mod:`~jaxgan.train.pix2pix`,
:mod:`~jaxgan.train.cyclegan` and :mod:`~jaxgan.train.pggan` provides
``default_config()``, a state pytree, ``create_state(config, key)``,
``train_step(config, state, batch, key)`` and
``make_train_step(config, mesh=None) -> step(state, batch, key) -> (state, metrics)``.
:mod:`~jaxgan.train.common` holds the shared pieces (input checks, optimizers, the finite
guard) and :mod:`~jaxgan.train.testing` compares two executions of a step.
"""

from jaxgan.train import common, cyclegan, dcgan, pggan, pix2pix

__all__ = ["common", "cyclegan", "dcgan", "pggan", "pix2pix"]
