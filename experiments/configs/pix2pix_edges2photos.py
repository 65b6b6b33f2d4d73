"""pix2pix, CPU default: edges -> photo on 64x64 crops of scikit-image's sample photos
(embedded), U-Net 6 downs, ngf = ndf = 32, batch 4, 1,200 steps.

    python -m jaxgan.experiments.pix2pix --config=experiments/configs/pix2pix_edges2photos.py

Cost: minutes on a 2-core CPU (see README "Results").
"""

from jaxgan.configs.pix2pix import get_config  # noqa: F401
