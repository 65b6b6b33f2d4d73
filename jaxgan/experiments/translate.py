"""Translate mode (as the reference's test.py): apply a trained generator from a workdir's
latest checkpoint to a folder of images and write the outputs under the same names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from jaxgan import data
from jaxgan.experiments import runner


def restore_latest(family: runner.Family, config: ml_collections.ConfigDict, workdir: str):
    """(state, step) of the latest checkpoint in ``workdir`` (refusing another model's run)."""
    state, step, _ = runner.restore_latest(family, config, workdir)
    return state, step


def translate_folder(
    apply_fn: Callable[[jax.Array, jax.Array], jax.Array],
    input_dir: str,
    output_dir: str,
    *,
    image_size: int,
    channels: int,
    seed: int = 0,
) -> int:
    """Resize every image under ``input_dir`` to ``image_size``, run ``apply_fn(images, key)``
    and write PNGs to ``output_dir`` (same relative paths). Returns the number written."""
    files = data.list_image_files(input_dir)
    if not files:
        raise data.NoImagesFoundError(f"no images under {input_dir} (png, jpg, bmp, tif)")
    out_root = Path(output_dir)
    fn = jax.jit(apply_fn)
    for i, f in enumerate(files):
        img = data.to_channels(data.decode_image(f), channels)
        img = data.resize(data.center_crop_square(img), (image_size, image_size))
        x = jnp.asarray(data.to_float(img))[None]
        y = np.asarray(fn(x, jax.random.fold_in(jax.random.key(seed), i)))[0]
        y = np.clip(np.rint((y + 1) * 127.5), 0, 255).astype(np.uint8)
        target = out_root / Path(f).relative_to(input_dir).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(y[..., 0] if y.shape[-1] == 1 else y).save(target)
    return len(files)
