"""Default configs of the entry points: each ``<family>.py`` has ``get_config()`` returning the
CPU default (embedded data, narrow networks); named configs, including the papers' setups,
are in the repository's ``experiments/configs/``. A config is the family's
``default_config()`` (every reference value) plus :func:`add_run_fields`.
"""

from __future__ import annotations

import ml_collections


def add_run_fields(
    c: ml_collections.ConfigDict,
    *,
    source: str,
    num_steps: int,
    log_every: int = 50,
    sample_every: int = 500,
    checkpoint_every: int = 1000,
    eval_every: int = 0,
) -> ml_collections.ConfigDict:
    """Add the data and loop fields every entry point reads.

    Fields:
      data.source: a ``jaxgan.data.make_source`` spec ("digits:32", "tfds:celeb_a",
        "aligned:/data/facades", ...). data.split / data.eval_split: for training and for
        sample inputs / evaluation.
      data.transforms: "resize", "center_crop", "resize_and_crop" (load_size then random
        crop), "random_crop" or "none". data.worker_count: grain workers (0: main process).
      data.skip_corrupt: skip (and count) undecodable image files rather than stop.
      data.download: let TFDS prepare a missing dataset. data.options: make_source options.
      num_steps: the run's total steps (a resumed run continues to it).
      seeds: comma-separated seeds ("0,1,2") trained together as one study, replica k
        exactly the run with ``seed=k``; '' = the single run of ``seed``.
      *_every: intervals in steps (0 turns samples or evaluation off).
      eval_metrics: comma-separated jaxgan.metrics names (swd, ms_ssim, fid, kid).
        eval_num_images: images per side. eval_inception: Inception weights for fid/kid.
    """
    if "data" not in c:
        c.data = ml_collections.ConfigDict()
    d = c.data
    d.source = source
    d.split = "train"
    d.eval_split = "test"
    if "transforms" not in d:
        d.transforms = "resize"
    d.worker_count = 0
    d.skip_corrupt = False
    d.download = False
    d.options = ml_collections.ConfigDict()
    c.num_steps = num_steps
    c.seeds = ""
    c.log_every = log_every
    c.sample_every = sample_every
    c.checkpoint_every = checkpoint_every
    c.max_checkpoints = 3
    c.num_samples = 64
    c.eval_every = eval_every
    c.eval_metrics = "swd,ms_ssim"
    c.eval_num_images = 512
    c.eval_inception = ""
    return c
