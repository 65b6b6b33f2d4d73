"""PGGAN CPU default: handwritten digits grown 4 -> 8 -> 16 -> 32 with fades, narrow maps
(fmap_base 512, fmap_max 64), latent 64, batch 16; generator EMA 0.99 instead of 0.999, which
would not forget its random initialisation in so short a run.

    python -m jaxgan.experiments.pggan
"""

from jaxgan.configs import add_run_fields
from jaxgan.train import pggan


def get_config():
    c = pggan.default_config()
    c.resolution = 32
    c.channels = 1
    c.model.latent_dim = 64
    c.model.fmap_base = 512
    c.model.fmap_max = 64
    c.ema_decay = 0.99
    c.schedule.stable_kimg = 4.0
    c.schedule.fade_kimg = 4.0
    c.schedule.total_kimg = 40.0
    c.schedule.batch_size_per_stage = (16, 16, 16, 16)
    c.schedule.learning_rate_per_stage = ()
    add_run_fields(c, source="digits:32", num_steps=pggan.steps_to_kimg(c, c.schedule.total_kimg),
                   sample_every=200, checkpoint_every=500)
    return c

