"""pix2pix, the reference facades setup: unet_256, basic 70x70 PatchGAN on concat(A, B),
BatchNorm, vanilla GAN + 100 L1, dropout, Adam(2e-4, 0.5, 0.999), batch 1, load 286 ->
random crop 256 + flip, 100 epochs constant + 100 epochs linear decay (400 training pairs:
40,000 + 40,000 steps). Facades is trained B -> A (labels -> photo), as the reference does.

Data: the reference's ``facades`` folder of side-by-side A|B JPEGs with train/ val/ test/
subfolders (download it yourself; no network is used at run time). Set its path:

    python -m jaxgan.experiments.pix2pix --config=experiments/configs/pix2pix_facades.py \\
        --config.data.source=aligned:/data/facades --workdir=runs/facades

Cost (not measured here): 80,000 steps of a 256x256 U-Net at batch 1; on a GPU, about an
hour; on a 2-core CPU, about a day (see experiments/bench/RESULTS.md for per-step times).
"""

from jaxgan.configs import add_run_fields
from jaxgan.train import pix2pix


def get_config():
    c = pix2pix.default_config()  # unet_256, basic D, 256x256, batch 1, 40k + 40k steps
    c.data.transforms = "resize_and_crop"
    add_run_fields(c, source="aligned:/data/facades", num_steps=80_000, log_every=100,
                   sample_every=2000, checkpoint_every=5000)
    c.data.transforms = "resize_and_crop"
    c.data.options.direction = "BtoA"
    c.data.eval_split = "val"
    c.num_samples = 8
    return c
