"""Models by their reference names: ``create(name, part=None, **overrides)``.

| name | part | module (defaults) |
|---|---|---|
| ``dcgan`` | g (default) / d | DCGANGenerator / DCGANDiscriminator (64x64x3) |
| ``unet_128`` / ``unet_256`` | g | UNetGenerator(num_downs=7 / 8, norm batch, dropout) |
| ``resnet_6blocks`` / ``resnet_9blocks`` | g | ResnetGenerator(n_blocks=6 / 9, norm instance) |
| ``basic`` | d | PatchDiscriminator(n_layers=3, norm batch) |
| ``n_layers`` | d | PatchDiscriminator(n_layers=overrides['n_layers'], default 3) |
| ``pixel`` | d | PixelDiscriminator(norm batch) |
| ``pggan`` | g (default) / d | PGGANGenerator / PGGANDiscriminator (1024x1024x3) |
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from jaxgan.models.dcgan import DCGANDiscriminator, DCGANGenerator
from jaxgan.models.patchgan import PatchDiscriminator, PixelDiscriminator
from jaxgan.models.pggan import PGGANDiscriminator, PGGANGenerator
from jaxgan.models.resnet import ResnetGenerator
from jaxgan.models.unet import UNetGenerator

# name -> {part: (module class, fixed defaults)}
_REGISTRY: dict[str, dict[str, tuple[Callable[..., nn.Module], dict[str, Any]]]] = {
    "dcgan": {"g": (DCGANGenerator, {}), "d": (DCGANDiscriminator, {})},
    "unet_128": {"g": (UNetGenerator, {"num_downs": 7})},
    "unet_256": {"g": (UNetGenerator, {"num_downs": 8})},
    "resnet_6blocks": {"g": (ResnetGenerator, {"n_blocks": 6})},
    "resnet_9blocks": {"g": (ResnetGenerator, {"n_blocks": 9})},
    "basic": {"d": (PatchDiscriminator, {"n_layers": 3})},
    "n_layers": {"d": (PatchDiscriminator, {})},
    "pixel": {"d": (PixelDiscriminator, {})},
    "pggan": {"g": (PGGANGenerator, {}), "d": (PGGANDiscriminator, {})},
}


def names() -> list[str]:
    """The known model names."""
    return list(_REGISTRY)


def parts(name: str) -> list[str]:
    """The parts ('g', 'd') a name has."""
    return list(_lookup(name))


def _lookup(name: str) -> dict[str, tuple[Callable[..., nn.Module], dict[str, Any]]]:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}; known models: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def create(name: str, part: str | None = None, **overrides: Any) -> nn.Module:
    """Build a model by its reference name (:func:`names`); ``part`` "g" or "d" (default: G
    if the name has one, else D). ``overrides`` are constructor fields, e.g. ``in_channels=6``,
    ``norm="instance"``; an unknown field raises ``ValueError`` listing the valid ones."""
    entry = _lookup(name)
    if part is None:
        part = "g" if "g" in entry else "d"
    if part not in entry:
        raise ValueError(f"model {name!r} has no part {part!r}; it has: {', '.join(entry)}")
    cls, fixed = entry[part]
    fields = [f.name for f in dataclasses.fields(cls) if f.name not in ("parent", "name")]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(
            f"{cls.__name__} has no field(s) {', '.join(unknown)}; valid fields: {', '.join(fields)}"
        )
    return cls(**{**fixed, **overrides})
