"""PGGAN, the paper's CelebA-HQ 1024x1024 setup on a TPU VM (or a GPU host).

Every model and loss setting is the reference's (REFERENCE.md): 512 latents, fmap_base 8192 /
fmap_max 512, WGAN-GP (10, target 1), drift 0.001, Adam(1e-3, 0, 0.99, 1e-8), EMA 0.999,
mirror augment, 600 kimg stable + 600 kimg fade per resolution, 12,000 kimg in all, the
reference's per-resolution minibatch {4..16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4,
1024: 4} (raise it for many devices: batch sizes must divide by the device count).

Data: TFDS ``celeb_a_hq/1024`` needs the manual download described by TFDS, then
``tfds build celeb_a_hq/1024 --file_format=array_record`` (jaxgan reads array_record
without TensorFlow at train time).

    python -m jaxgan.experiments.pggan --config=experiments/configs/pggan_celeba_hq_1024.py \\
        --workdir=gs://bucket/pggan_celeba_hq   # or a local path

Cost (not measured here): the paper reports ~4 days on 8 Tesla V100s; expect days on a
TPU v3-8. Every stage compiles once; checkpoints every 5,000 steps; SIGTERM-safe.
"""

from jaxgan.configs import add_run_fields
from jaxgan.train import pggan
from jaxgan.train.pggan import steps_to_kimg


def get_config():
    c = pggan.default_config()  # resolution 1024, reference schedule and optimizer
    c.mirror_augment = True
    c.schedule.learning_rate_per_stage = ()
    add_run_fields(c, source="tfds:celeb_a_hq/1024", num_steps=0, log_every=100,
                   sample_every=2000, checkpoint_every=5000, eval_every=50_000)
    c.num_steps = steps_to_kimg(c, c.schedule.total_kimg)
    c.data.worker_count = 8
    c.data.eval_split = "train"  # celeb_a_hq has one split; SWD compares against it
    c.eval_num_images = 16_384   # the paper's SWD protocol
    c.num_samples = 16
    return c
