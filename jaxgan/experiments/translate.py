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


def check_output(output_dir: str) -> Path:
    """``output_dir`` as a Path; FileExistsError when it names an existing file."""
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--output={output_dir} is a file, not a folder: pass a folder "
                              "(new or existing) for the translated images")
    return out


def translate_folder(
    apply_fn: Callable[[jax.Array, jax.Array], jax.Array],
    input_dir: str,
    output_dir: str,
    *,
    image_size: int,
    channels: int,
    seed: int = 0,
    skip_corrupt: bool = False,
) -> int:
    """Resize every image under ``input_dir`` to ``image_size``, run ``apply_fn(images, key)``
    and write PNGs to ``output_dir`` (same relative paths). Returns the number written.

    A file that does not decode stops the run with an error naming it (outputs already written
    stay), or with ``skip_corrupt`` is skipped and reported at the end.
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
        img = data.resize(data.center_crop_square(img), (image_size, image_size))
        x = jnp.asarray(data.to_float(img))[None]
        y = np.asarray(fn(x, jax.random.fold_in(jax.random.key(seed), i)))[0]
        y = np.clip(np.rint((y + 1) * 127.5), 0, 255).astype(np.uint8)
        target = out_root / Path(f).relative_to(input_dir).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(y[..., 0] if y.shape[-1] == 1 else y).save(target)
    if skipped:
        print(f"skip_corrupt: skipped {len(skipped)} unreadable image file(s) of {len(files)}: "
              f"{', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}", flush=True)
    return len(files) - len(skipped)
