"""DCGAN CPU default: 32x32 handwritten digits (scikit-learn's, embedded), ngf = ndf = 32.

    python -m jaxgan.experiments.dcgan
"""

from jaxgan.configs import add_run_fields
from jaxgan.train import dcgan


def get_config():
    c = dcgan.default_config()
    c.image_size = 32
    c.channels = 1
    c.model.ngf = 32
    c.model.ndf = 32
    return add_run_fields(c, source="digits:32", num_steps=1500, sample_every=250,
                          checkpoint_every=500)
