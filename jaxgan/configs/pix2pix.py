"""pix2pix CPU default: colourisation, gray -> photo (the paper's BW -> colour task) on 64x64
crops of scikit-image's bundled photos (``gray2photos``, embedded), U-Net with 6 downs,
ngf = ndf = 32, batch 4.

    python -m jaxgan.experiments.pix2pix
"""

from jaxgan.configs import add_run_fields
from jaxgan.train import pix2pix


def get_config():
    c = pix2pix.default_config()
    c.image_size = 64
    c.batch_size = 4
    c.model.generator = "unet_128"
    c.model.num_downs = 6
    c.model.ngf = 32
    c.model.ndf = 32
    c.schedule.constant_steps = 800
    c.schedule.decay_steps = 400
    c.data.load_size = 72
    add_run_fields(c, source="gray2photos", num_steps=1200, sample_every=200,
                   checkpoint_every=400)
    c.data.transforms = "resize_and_crop"
    c.num_samples = 8
    return c
