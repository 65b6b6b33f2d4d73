"""pix2pix, edges -> photo: the CPU default (jaxgan/configs/pix2pix.py) on the Canny edges of
the same photo crops in place of their luma (the default before colourisation; its samples
stay blotchy colour fields after 1,200 steps: experiments/bench/STUDY_RESULTS.md).

    python -m jaxgan.experiments.pix2pix --config=experiments/configs/pix2pix_edges2photos.py

Cost: about 2.5 minutes on a 2-core CPU.
"""

from jaxgan.configs import pix2pix


def get_config():
    c = pix2pix.get_config()
    c.data.source = "edges2photos"
    return c
