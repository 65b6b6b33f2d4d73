"""Input validation shared by the models: errors that name the expected shape."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def check_images(
    x: jax.Array,
    model: str,
    *,
    channels: int | None = None,
    size: int | None = None,
    divisor: int | None = None,
) -> None:
    """Raise ``ValueError`` unless x is a float (N, H, W, C) batch the model can take.

    Args:
      x: the input batch.
      model: the model's name, for the message.
      channels: required C, if fixed.
      size: required H == W, if fixed.
      divisor: H and W must be positive multiples of it (e.g. 2**num_downs for a U-Net).
    """
    c = channels if channels is not None else "C"
    if x.ndim != 4:
        want = f"(N, {size or 'H'}, {size or 'W'}, {c})"
        raise ValueError(f"{model}: expected an NHWC batch of shape {want}, got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"{model}: expected floating-point images in [-1, 1], got dtype {x.dtype} "
            "(convert uint8 images with x / 127.5 - 1)"
        )
    _, h, w, cin = x.shape
    if channels is not None and cin != channels:
        raise ValueError(
            f"{model}: expected input of shape (N, H, W, {channels}) ({channels} channels), "
            f"got shape {tuple(x.shape)}"
        )
    if size is not None and (h, w) != (size, size):
        raise ValueError(
            f"{model}: expected input of shape (N, {size}, {size}, {c}), got shape {tuple(x.shape)}"
        )
    if divisor is not None and (h % divisor or w % divisor or h < divisor or w < divisor):
        raise ValueError(
            f"{model}: height and width must be multiples of {divisor}, e.g. input shape "
            f"(N, {divisor}, {divisor}, {c}); got shape {tuple(x.shape)}"
        )


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
