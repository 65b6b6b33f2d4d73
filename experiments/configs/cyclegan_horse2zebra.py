"""CycleGAN, the reference horse2zebra setup: two resnet_9blocks generators, two basic
PatchGANs, InstanceNorm, LSGAN, cycle 10, identity 0.5, a 50-fake pool, Adam(2e-4, 0.5,
0.999), batch 1, load 286 -> random crop 256 + flip, 100 + 100 epochs (1,334 steps each).

Data: TFDS ``cycle_gan/horse2zebra`` (``tfds build cycle_gan/horse2zebra
--file_format=array_record`` once; no TensorFlow needed at train time).

    python -m jaxgan.experiments.cyclegan --config=experiments/configs/cyclegan_horse2zebra.py

Cost (not measured here): 266,800 steps of two 256x256 ResNet generators at batch 1; a day
or more on one GPU.
"""

from jaxgan.configs import add_run_fields
from jaxgan.train import cyclegan


def get_config():
    c = cyclegan.default_config()  # resnet_9blocks, basic D, 256x256, 133,400 + 133,400 steps
    add_run_fields(c, source="tfds:cycle_gan/horse2zebra", num_steps=266_800, log_every=100,
                   sample_every=2000, checkpoint_every=5000)
    c.data.transforms = "resize_and_crop"
    c.num_samples = 4
    return c
