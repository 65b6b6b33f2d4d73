"""Tiny configs of the default ones, for end-to-end tests that train in seconds (imported by
the tests and by the multi-process tests' child scripts)."""

from jaxgan.configs import cyclegan as cyclegan_cfg
from jaxgan.configs import dcgan as dcgan_cfg
from jaxgan.configs import pggan as pggan_cfg
from jaxgan.configs import pix2pix as pix2pix_cfg


def tiny_dcgan():
    """DCGAN on 16x16 digits, widths 4, batch 8: 6 steps, logs at 2, checkpoints at 3."""
    c = dcgan_cfg.get_config()
    c.image_size, c.channels, c.batch_size = 16, 1, 8
    c.model.ngf = c.model.ndf = 4
    c.data.source = "digits:16"
    c.num_steps, c.log_every, c.sample_every, c.checkpoint_every = 6, 2, 3, 3
    c.num_samples = 4
    return c


def tiny_pggan():
    """PGGAN 4 -> 8 on digits, batch 8: stage 1 from step 2, fading in to step 4; 9 steps."""
    c = pggan_cfg.get_config()
    c.resolution, c.channels = 8, 1
    c.model.latent_dim, c.model.fmap_base, c.model.fmap_max = 8, 32, 8
    c.schedule.stable_kimg = c.schedule.fade_kimg = 0.016  # 16 images: 2 steps of 8
    c.schedule.batch_size_per_stage = (8, 8)
    c.data.source = "digits:8"
    c.num_steps, c.log_every, c.sample_every, c.checkpoint_every = 9, 1, 3, 3
    c.num_samples = 4
    return c


def tiny_pix2pix():
    """pix2pix on 32x32 gray2photos crops, U-Net with 5 downs, widths 4, batch 4: 4 steps."""
    c = pix2pix_cfg.get_config()
    c.image_size, c.batch_size = 32, 4
    c.model.num_downs, c.model.ngf, c.model.ndf = 5, 4, 4
    c.data.load_size = 36
    c.num_steps, c.log_every, c.sample_every, c.checkpoint_every = 4, 1, 2, 2
    c.num_samples = 4
    return c


def tiny_cyclegan():
    """CycleGAN on 32x32 photos2ihc crops, one ResNet block, widths 4, batch 4, pool 2: 4 steps."""
    c = cyclegan_cfg.get_config()
    c.image_size, c.batch_size, c.pool_size = 32, 4, 2
    c.model.n_blocks, c.model.ngf, c.model.ndf = 1, 4, 4
    c.data.load_size = 36
    c.num_steps, c.log_every, c.sample_every, c.checkpoint_every = 4, 1, 2, 2
    c.num_samples = 4
    return c
