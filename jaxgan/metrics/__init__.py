"""Image-set metrics: PGGAN's sliced Wasserstein distance, MS-SSIM (and its diversity measure),
FID and KID with user-supplied Inception-v3 weights, and :func:`evaluate_generator`.
"""
from jaxgan.metrics.ms_ssim import (
    MS_SSIM_WEIGHTS,
    MSSSIMDiversity,
    ms_ssim,
    ms_ssim_diversity,
    ms_ssim_plan,
    ssim_and_cs,
)
from jaxgan.metrics.pyramid import (
    binomial_filter_2d,
    laplacian_pyramid,
    max_pyramid_levels,
    pyr_down,
    pyr_up,
    reconstruct_laplacian_pyramid,
)
from jaxgan.metrics.swd import (
    SWDAccumulator,
    batch_descriptors,
    extract_descriptors,
    sample_centres,
    sample_directions,
    sliced_wasserstein,
    sliced_wasserstein_distance,
    swd_from_accumulators,
    to_pixel_range,
)

__all__ = [
    "MS_SSIM_WEIGHTS",
    "MSSSIMDiversity",
    "SWDAccumulator",
    "batch_descriptors",
    "binomial_filter_2d",
    "extract_descriptors",
    "laplacian_pyramid",
    "max_pyramid_levels",
    "ms_ssim",
    "ms_ssim_diversity",
    "ms_ssim_plan",
    "pyr_down",
    "pyr_up",
    "reconstruct_laplacian_pyramid",
    "sample_centres",
    "sample_directions",
    "sliced_wasserstein",
    "sliced_wasserstein_distance",
    "ssim_and_cs",
    "swd_from_accumulators",
    "to_pixel_range",
]
