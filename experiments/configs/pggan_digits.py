"""PGGAN, CPU default: digits grown 4 -> 8 -> 16 -> 32 with fades (4 kimg stable + 4 kimg
fade per stage, 32 kimg in all, batch 16), fmap_max 64, latent 64, EMA 0.99.

    python -m jaxgan.experiments.pggan --config=experiments/configs/pggan_digits.py

Cost: about seven minutes on an idle 2-core CPU (see README "Results").
"""

from jaxgan.configs.pggan import get_config  # noqa: F401
