"""Test-wide setup.

* 8 simulated CPU devices, so the sharded train steps can be compared with single-device
  ones (set before any JAX backend is initialised; ordinary computations use device 0).
* absl flags marked parsed: grain's multiprocessing reads absl flags.
"""
import os

os.environ.setdefault("XLA_FLAGS", "")
import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)

from absl import flags  # noqa: E402

if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
