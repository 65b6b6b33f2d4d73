"""DCGAN, CPU default: 32x32 scikit-learn digits (embedded), ngf = ndf = 32, 1,500 steps.

    python -m jaxgan.experiments.dcgan --config=experiments/configs/dcgan_digits.py

Cost: a few minutes on a 2-core CPU (see README "Results").
"""

from jaxgan.configs.dcgan import get_config  # noqa: F401
