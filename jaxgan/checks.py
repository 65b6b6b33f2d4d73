"""Checks of what reaches jaxgan's API boundaries (model inputs, train-step batches, metric
images), with errors that name the expected shape and the fix."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def describe(x: Any) -> str:
    """``float32[2, 64, 64, 3]``, or the type of something that is not an array."""
    shape, dtype = getattr(x, "shape", None), getattr(x, "dtype", None)
    if shape is None:
        return f"a {type(x).__name__}"
    return f"{dtype}[{', '.join(str(d) for d in shape)}]"


def check_images(
    x: Any,
    what: str,
    *,
    channels: int | None = None,
    size: int | None = None,
    divisor: int | None = None,
    num: int | None = None,
    dtype: Any = None,
) -> None:
    """Raise ``ValueError`` unless ``x`` (traced or host) is a non-empty float (N, H, W, C) batch.

    ``what`` names the caller in the message ("pix2pix train_step: batch['A']"). When given,
    ``channels`` (C), ``size`` (H == W), ``num`` (N) and ``dtype`` (else any float) are
    required; H and W must be positive multiples of ``divisor`` (2**num_downs for a U-Net).
    """
    c = channels if channels is not None else "C"
    dims = f"N, {size or 'H'}, {size or 'W'}, {c}"
    want = f"{jnp.dtype(dtype)}[{dims}]" if dtype is not None else f"({dims})"
    got = describe(x)
    if getattr(x, "ndim", None) != 4:
        raise ValueError(f"{what}: expected an NHWC batch of shape {want}, got {got}")
    if dtype is not None and x.dtype != dtype:
        raise ValueError(f"{what}: expected {want} images in [-1, 1], got {got} (convert with "
                         f".astype({jnp.dtype(dtype)}); uint8 images as x / 127.5 - 1)")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{what}: expected floating-point images in [-1, 1], got {got} "
                         "(convert uint8 images with x / 127.5 - 1)")
    n, h, w, cin = x.shape
    if (channels is not None and cin != channels) or (
            size is not None and (h, w) != (size, size)):
        raise ValueError(f"{what}: expected input of shape {want}, got {got}")
    if divisor is not None and (h % divisor or w % divisor or h < divisor or w < divisor):
        raise ValueError(
            f"{what}: height and width must be multiples of {divisor}, e.g. input shape "
            f"(N, {divisor}, {divisor}, {c}); got {got}")
    if num is not None and n != num:
        raise ValueError(f"{what}: expected {num} images, got {got}")
    if n < 1:
        raise ValueError(f"{what}: expected at least one image, got {got} (empty batch)")


def check_latents(z: jax.Array, model: str, latent_dim: int) -> None:
    """Raise ``ValueError`` unless z is a float (N, latent_dim) batch."""
    if z.ndim != 2 or z.shape[1] != latent_dim:
        raise ValueError(
            f"{model}: expected latents of shape (N, {latent_dim}), got shape {tuple(z.shape)}"
        )
    if not jnp.issubdtype(z.dtype, jnp.floating):
        raise ValueError(f"{model}: expected floating-point latents, got dtype {z.dtype}")


def log2_int(value: int, what: str, minimum: int) -> int:
    """log2 of a power of two >= minimum, or a ValueError naming the constraint."""
    if value < minimum or value & (value - 1):
        raise ValueError(f"{what} must be a power of two >= {minimum}, got {value}")
    return value.bit_length() - 1
