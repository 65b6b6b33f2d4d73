"""CycleGAN, CPU default: photos <-> IHC micrographs, 64x64 crops (embedded), ResNet G with
3 blocks, ngf = ndf = 16, batch 1, 3,000 steps.

    python -m jaxgan.experiments.cyclegan --config=experiments/configs/cyclegan_photos2ihc.py

Cost: minutes on a 2-core CPU (see README "Results").
"""

from jaxgan.configs.cyclegan import get_config  # noqa: F401
