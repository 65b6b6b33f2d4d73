"""Test-wide setup.

* XLA's lowest CPU backend optimisation level for every program the tests compile (here and
  in the processes they start): the suite is mostly compilation of programs that then run a
  few steps of tiny models, and level 0 compiles them about a third faster (the runs they
  compare are compiled alike; float32 semantics are unchanged).
* 8 simulated CPU devices, so the sharded train steps can be compared with single-device
  ones (set before any JAX backend is initialised; ordinary computations use device 0).
* absl flags marked parsed: grain's multiprocessing reads absl flags.
"""

import os

if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):  # unless set
    flags_ = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0"
    os.environ["XLA_FLAGS"] = flags_.strip()

import jax
from absl import flags

jax.config.update("jax_num_cpu_devices", 8)

if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
