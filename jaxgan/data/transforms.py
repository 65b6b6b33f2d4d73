"""Image transforms: numpy functions on one uint8 ``(H, W, C)`` image, and the grain transform
that applies them to every image of a record with **the same** random crop and flip, so a
pix2pix pair stays aligned.

Geometric modes (``mode`` of :class:`ImageTransform`, ``transforms=`` of ``make_loader``):

* ``"resize"`` (DCGAN/PGGAN): bicubic to ``image_size``, antialiased, aspect ratio not kept.
* ``"center_crop"``: the largest centred square, resized (e.g. CelebA's 218x178 faces).
* ``"resize_and_crop"``: resize to ``load_size`` (default ``round(image_size * 286 / 256)``),
  then a random ``image_size`` crop: the pix2pix/CycleGAN reference preprocessing.
* ``"random_crop"``: a random ``image_size`` crop, no resize (smaller: ImageTooSmallError).
* ``"none"``: images must already be ``image_size``.

Then: optional random horizontal flip (p = 0.5), float32 ``x / 127.5 - 1`` in [-1, 1], and
optional PGGAN box downsampling to ``resolution``.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import grain
import numpy as np
from PIL import Image

from jaxgan.data.errors import DataError, ImageTooSmallError

MODES = ("resize", "center_crop", "resize_and_crop", "random_crop", "none")

# ITU-R BT.601 luma weights, the ones Pillow's "L" conversion uses.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """uint8 ``(H, W, C)``, C in {1, 2, 3, 4}, -> uint8 ``(H, W, channels)``, channels 1 or 3.

    Alpha is dropped; gray -> RGB replicates, RGB -> gray is the BT.601 luma, rounded.
    """
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 (gray) or 3 (RGB), got {channels!r}.")
    if image.ndim == 2:
        image = image[:, :, None]
    c = image.shape[-1]
    if c == 2:
        image = image[:, :, :1]
    elif c == 4:
        image = image[:, :, :3]
    elif c not in (1, 3):
        raise DataError(f"image has {c} channels; expected 1 (gray), 2, 3 (RGB) or 4 (RGBA).")
    c = image.shape[-1]
    if c == channels:
        return image
    if channels == 3:
        return np.repeat(image, 3, axis=-1)
    gray = image.astype(np.float32) @ _LUMA
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)[:, :, None]


def resize(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bicubic resize of a uint8 ``(H, W, C)`` image (C = 1 or 3) to ``size`` = (h, w) or s,
    antialiased when shrinking as the reference PyTorch loaders; a no-op at the same size."""
    h, w = _hw(size)
    if image.shape[0] == h and image.shape[1] == w:
        return image
    if image.shape[-1] == 1:
        out = np.asarray(Image.fromarray(image[:, :, 0]).resize((w, h), Image.BICUBIC))
        return out[:, :, None]
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BICUBIC))


def center_crop_square(image: np.ndarray) -> np.ndarray:
    """The largest centred square of an ``(H, W, C)`` image."""
    h, w = image.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return image[top:top + s, left:left + s]


def random_crop_offsets(shape: tuple[int, ...], size: int | tuple[int, int],
                        rng: np.random.Generator) -> tuple[int, int]:
    """Uniform random (top, left) for a ``size`` crop of an image of ``shape`` (H, W, ...)."""
    h, w = _hw(size)
    if shape[0] < h or shape[1] < w:
        raise ImageTooSmallError(
            f"image of {shape[0]}x{shape[1]} (HxW) is smaller than the {h}x{w} crop; use "
            "transforms='resize_and_crop' (resize first, then crop) or 'resize', or a smaller "
            "image_size."
        )
    return int(rng.integers(0, shape[0] - h + 1)), int(rng.integers(0, shape[1] - w + 1))


def hflip(image: np.ndarray) -> np.ndarray:
    """Mirror an ``(H, W, C)`` image left-right."""
    return image[:, ::-1]


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 ``[0, 255]`` -> float32 ``[-1, 1]`` (``x / 127.5 - 1``), same shape."""
    out = np.multiply(image, np.float32(1.0 / 127.5), dtype=np.float32)
    out -= np.float32(1.0)
    return out


def box_downsample(x: Any, factor: int = 2) -> Any:
    """PGGAN box downsampling: the mean over ``factor x factor`` blocks (numpy or jax, float).

    Equals the 2x2 average repeated log2(factor) times, as the reference builds its lower
    resolutions. ``(..., H, W, C)`` -> ``(..., H // factor, W // factor, C)`` in the input's
    dtype; H and W must be divisible by the integer ``factor`` >= 1.
    """
    if factor == 1:
        return x
    *lead, h, w, c = x.shape
    if h % factor or w % factor:
        raise DataError(f"box_downsample: {h}x{w} is not divisible by factor {factor}.")
    x = x.reshape(*lead, h // factor, factor, w // factor, factor, c)
    n = len(lead)
    return x.mean(axis=(n + 1, n + 3))


def upsample_nearest(x: Any, factor: int = 2) -> Any:
    """Nearest-neighbour upsampling of ``(..., H, W, C)`` by an integer factor (numpy or jax);
    ``upsample_nearest(box_downsample(x))`` is the blurred image PGGAN cross-fades reals with."""
    if factor == 1:
        return x
    return x.repeat(factor, axis=-3).repeat(factor, axis=-2)


@dataclasses.dataclass(frozen=True)
class ImageTransform(grain.transforms.RandomMap):
    """``make_loader``'s per-record transform: channel conversion (``channels``: ``(key, 1 or
    3)`` pairs, the keys kept), then the module docstring's steps. ``{key: uint8 (H, W, C)}``
    -> ``{key: float32 (h, w, c)}``, ``(h, w) = image_size`` or ``(resolution, resolution)``."""

    image_size: tuple[int, int]
    channels: tuple[tuple[str, int], ...]
    mode: str = "resize"
    load_size: tuple[int, int] | None = None
    flip: bool = False
    resolution: int | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise DataError(f"unknown transforms mode {self.mode!r}; choose one of {MODES}.")

    @property
    def downsample_factor(self) -> int:
        if self.resolution is None:
            return 1
        return self.image_size[0] // self.resolution

    def geometric(self, images: dict[str, np.ndarray], rng: np.random.Generator
                  ) -> dict[str, np.ndarray]:
        """The geometric step on uint8 images (all keys share the crop offsets)."""
        size = self.image_size
        mode = self.mode
        if mode == "resize":
            return {k: resize(v, size) for k, v in images.items()}
        if mode == "center_crop":
            return {k: resize(center_crop_square(v), size) for k, v in images.items()}
        if mode == "resize_and_crop":
            images = {k: resize(v, self.load_size) for k, v in images.items()}
        elif mode == "none":
            for k, v in images.items():
                if v.shape[:2] != tuple(size):
                    raise DataError(
                        f"record image {k!r} is {v.shape[0]}x{v.shape[1]} but image_size is "
                        f"{size[0]}x{size[1]} and transforms='none'; use transforms='resize'."
                    )
            return images
        shapes = {v.shape[:2] for v in images.values()}
        if len(shapes) > 1:
            raise DataError(
                f"the images of one record have different sizes {sorted(shapes)}; a shared "
                "random crop needs equal sizes; use transforms='resize_and_crop'."
            )
        top, left = random_crop_offsets(next(iter(images.values())).shape, size, rng)
        return {k: v[top:top + size[0], left:left + size[1]] for k, v in images.items()}

    def random_map(self, element: dict[str, np.ndarray], rng: np.random.Generator
                   ) -> dict[str, np.ndarray]:
        images = {k: to_channels(np.asarray(element[k]), c) for k, c in self.channels}
        images = self.geometric(images, rng)
        if self.flip and rng.random() < 0.5:
            images = {k: hflip(v) for k, v in images.items()}
        out = {}
        for k, v in images.items():
            v = to_float(v)
            if self.resolution is not None:
                v = box_downsample(v, self.downsample_factor)
            out[k] = np.ascontiguousarray(v)
        return out
