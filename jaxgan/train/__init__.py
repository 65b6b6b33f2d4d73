"""Pure, jit-compiled train steps, one module per family.

Each family module provides ``default_config()``, a state pytree, ``create_state(config,
key)``, ``train_step(config, state, batch, key)`` and ``make_train_step(config, mesh=None)``
returning ``step(state, batch, key) -> (state, metrics)``. :mod:`~jaxgan.train.common` holds
the shared pieces; :mod:`~jaxgan.train.testing` compares two executions of a step.
"""

from jaxgan.train import common, cyclegan, dcgan, pggan, pix2pix

__all__ = ["common", "cyclegan", "dcgan", "pggan", "pix2pix"]
