"""Translate mode (as the reference's test.py): apply a trained generator (a workdir's latest
checkpoint, or a PyTorch reference checkpoint) to a folder of images and write the outputs
under the same names, at each image's own size (non-square too) unless asked to resize."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxgan import data


def check_output(output_dir: str) -> Path:
    """``output_dir`` as a Path; FileExistsError when it names an existing file."""
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--output={output_dir} is a file, not a folder: pass a folder "
                              "(new or existing) for the translated images")
    return out


def size_divisor(generator) -> int:
    """What a generator's input height and width must be multiples of: ``2**num_downs`` for
    a U-Net, 4 for a ResNet generator (its two stride-2 convolutions), else 1."""
    from jaxgan import models

    if isinstance(generator, models.UNetGenerator):
        return 2 ** int(generator.num_downs)
    if isinstance(generator, models.ResnetGenerator):
        return 4
    return 1


def pad_to_multiple(image: np.ndarray, divisor: int) -> tuple[np.ndarray, tuple[int, int]]:
    """``(padded, (top, left))``: an ``(H, W, C)`` image mirror-padded around its centre to the
    next multiples of ``divisor`` (at least one); crop the output ``[top:top + H, left:left + W]``.
    """
    h, w = image.shape[:2]
    th, tw = (max(-(-n // divisor), 1) * divisor for n in (h, w))
    top, left = (th - h) // 2, (tw - w) // 2
    if (th, tw) == (h, w):
        return image, (0, 0)
    mode = "reflect" if min(h, w) > 1 else "edge"
    padded = np.pad(image, ((top, th - h - top), (left, tw - w - left), (0, 0)), mode=mode)
    return padded, (top, left)


def translate_folder(
    apply_fn: Callable[[jax.Array, jax.Array], jax.Array],
    input_dir: str,
    output_dir: str,
    *,
    image_size: int | None = None,
    channels: int,
    seed: int = 0,
    skip_corrupt: bool = False,
    divisor: int = 1,
) -> int:
    """Run ``apply_fn(images, key)`` on every image under ``input_dir`` and write PNGs to
    ``output_dir`` (same relative paths); returns the number written.

    ``image_size=None``: each image at its own size, mirror-padded to multiples of ``divisor``
    and the output cropped back (one compilation per padded size); ``image_size=S``: the
    centred square resized to S x S. An undecodable file stops the run with an error naming
    it (written outputs stay), or with ``skip_corrupt`` is skipped and reported at the end.
    """
    out_root = check_output(output_dir)
    files = data.list_image_files(input_dir)
    if not files:
        raise data.NoImagesFoundError(f"no images under {input_dir} (png, jpg, bmp, tif)")
    fn = jax.jit(apply_fn)
    skipped = []
    for i, f in enumerate(files):
        try:
            decoded = data.decode_image(f)
        except data.CorruptImageError:
            if not skip_corrupt:
                raise
            skipped.append(f)
            continue
        img = data.to_channels(decoded, channels)
        if image_size is not None:
            img = data.resize(data.center_crop_square(img), (image_size, image_size))
        h, w = img.shape[:2]
        img, (top, left) = pad_to_multiple(img, max(int(divisor), 1))
        x = jnp.asarray(data.to_float(img))[None]
        y = np.asarray(fn(x, jax.random.fold_in(jax.random.key(seed), i)))[0]
        y = y[top:top + h, left:left + w]
        y = np.clip(np.rint((y + 1) * 127.5), 0, 255).astype(np.uint8)
        target = out_root / Path(f).relative_to(input_dir).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(y[..., 0] if y.shape[-1] == 1 else y).save(target)
    if skipped:
        print(f"skip_corrupt: skipped {len(skipped)} unreadable image file(s) of {len(files)}: "
              f"{', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}", flush=True)
    return len(files) - len(skipped)


def torch_generator(path: str, net_g: str, *, norm: str, use_dropout: bool, eval_mode: bool,
                    **overrides: Any) -> tuple[Callable[[jax.Array, jax.Array], jax.Array], Any]:
    """``(apply(images, key), module)`` of a PyTorch reference generator checkpoint.

    ``net_g`` / ``norm`` / ``use_dropout`` are the reference's ``--netG`` / ``--norm`` /
    ``not --no_dropout``; channels and ngf are read off the file. ``eval_mode=False`` is the
    reference's test.py without ``--eval`` (batch statistics, dropout on).
    """
    from jaxgan.interop import torch as interop

    module, variables = interop.load_model(net_g, path, norm=norm, use_dropout=use_dropout,
                                           **overrides)
    train = not eval_mode

    def apply(x: jax.Array, key: jax.Array) -> jax.Array:
        rngs = {"dropout": key} if train and use_dropout else None
        return module.apply(variables, x, train=train, rngs=rngs)

    return apply, module
