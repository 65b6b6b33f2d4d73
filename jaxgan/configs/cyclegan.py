"""CycleGAN CPU default: photos <-> immunohistochemistry micrographs on 64x64 crops
(``photos2ihc``, scikit-image's bundled images), ResNet generator with 3 blocks, ngf = ndf = 16.

    python -m jaxgan.experiments.cyclegan
"""

from jaxgan.configs import add_run_fields
from jaxgan.train import cyclegan


def get_config():
    c = cyclegan.default_config()
    c.image_size = 64
    c.model.generator = "resnet_6blocks"
    c.model.n_blocks = 3
    c.model.ngf = 16
    c.model.ndf = 16
    c.schedule.constant_steps = 1800
    c.schedule.decay_steps = 1200
    c.data.load_size = 72
    add_run_fields(c, source="photos2ihc", num_steps=3000, sample_every=500,
                   checkpoint_every=1000)
    c.data.transforms = "resize_and_crop"
    c.num_samples = 6
    return c
