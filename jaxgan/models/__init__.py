"""The models, exact to the references (parameter counts in shared REFERENCE.md)."""

from jaxgan.models.dcgan import DCGANDiscriminator, DCGANGenerator
from jaxgan.models.patchgan import (
    PatchDiscriminator,
    PixelDiscriminator,
    output_size,
    receptive_field,
)
from jaxgan.models.pggan import PGGANDiscriminator, PGGANGenerator, num_stages, stage_resolution
from jaxgan.models.registry import create, names, parts
from jaxgan.models.resnet import ResnetGenerator
from jaxgan.models.unet import UNetGenerator

__all__ = [
    "DCGANDiscriminator",
    "DCGANGenerator",
    "PGGANDiscriminator",
    "PGGANGenerator",
    "PatchDiscriminator",
    "PixelDiscriminator",
    "ResnetGenerator",
    "UNetGenerator",
    "create",
    "names",
    "num_stages",
    "output_size",
    "parts",
    "receptive_field",
    "stage_resolution",
]
