"""DCGAN on CelebA at 64x64 (the reference pytorch/examples setup): ngf = ndf = 64, nz 100,
BatchNorm, BCE, Adam(2e-4, 0.5, 0.999), batch 64, centre crop then resize to 64, 25 epochs
of the 162,770 training images (63,600 steps).

Data: TFDS ``celeb_a`` (``tfds build celeb_a --file_format=array_record`` once).

    python -m jaxgan.experiments.dcgan --config=experiments/configs/dcgan_celeba_64.py

Cost (not measured here): a DCGAN-64 step is ~0.5 s on a 2-core CPU (RESULTS.md), so
about 9 hours on a CPU; minutes per epoch on one GPU.
"""

from jaxgan.configs import add_run_fields
from jaxgan.train import dcgan


def get_config():
    c = dcgan.default_config()  # 64x64x3, ngf = ndf = 64, batch 64
    add_run_fields(c, source="tfds:celeb_a", num_steps=63_600, log_every=100,
                   sample_every=1000, checkpoint_every=5000, eval_every=10_000)
    c.data.transforms = "center_crop"
    c.data.eval_split = "validation"
    return c
