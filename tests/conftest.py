"""Test-wide setup.

* 8 simulated CPU devices, so the sharded train steps can be compared with single-device
  ones (set before any JAX backend is initialised; ordinary computations use device 0).
* absl flags marked parsed: grain's multiprocessing reads absl flags.
"""

import jax
from absl import flags

jax.config.update("jax_num_cpu_devices", 8)

if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
