"""Decoding image files into uint8 arrays, and listing image files in a folder tree.

Decoded images are uint8 ``(H, W, C)``, ``C`` in {1, 2, 3, 4} (gray, gray+alpha, RGB, RGBA).
16-bit gray maps to ``round(v / 257)`` (Pillow keeps the high byte of 16-bit RGB); palette
images become RGB, or RGBA with transparency; alpha is dropped later, by the pipeline. The
EXIF Orientation is applied, so camera photos come out upright (:func:`image_size` too).
"""
from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
from PIL import ExifTags, Image, ImageOps

from jaxgan.data.errors import CorruptImageError, NoImagesFoundError

#: File extensions (lower case) that folder sources pick up.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# Pillow's decompression-bomb limit (~179 Mpixel) is deliberately kept.

# EXIF orientations that turn the image by 90 degrees (width and height swap).
_SWAPS_AXES = (5, 6, 7, 8)


def _pil_to_array(im: Image.Image) -> np.ndarray:
    """Converts a loaded PIL image to uint8 (H, W, C), C in {1, 2, 3, 4}."""
    mode = im.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        arr = np.asarray(im)
    elif mode == "1":
        arr = np.asarray(im.convert("L"))
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        arr = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
    elif mode.startswith("I;16") or mode == "I":
        # Mode "I" is 32-bit: assume 16-bit content, clip above.
        wide = np.asarray(im).astype(np.float64)
        arr = np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)
    elif mode == "F":
        # Float TIFF: [0, 1] content is scaled to 255, anything else is clipped to [0, 255].
        wide = np.asarray(im).astype(np.float64)
        if np.nanmax(wide) <= 1.0:
            wide = wide * 255.0
        arr = np.clip(np.rint(np.nan_to_num(wide)), 0, 255).astype(np.uint8)
    else:  # CMYK, YCbCr, LAB, HSV, RGBX, ...
        arr = np.asarray(im.convert("RGB"))
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr, dtype=np.uint8)


def _orientation(im: Image.Image) -> int:
    """The EXIF Orientation (1 if none or broken); reads no pixels, except for a PNG whose
    EXIF follows its pixel data (:func:`image_size` skips those)."""
    try:
        return int(im.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # noqa: BLE001 (a malformed EXIF block: keep the pixels as stored)
        return 1


def decode_image(path: str | os.PathLike, min_size: tuple[int, int] | None = None
                 ) -> np.ndarray:
    """Reads one image file (PNG, JPEG, BMP, TIFF, WebP), upright, as uint8 ``(H, W, C)``.

    ``min_size``: optional (h, w) speed hint for JPEGs, decoded at 1/2, 1/4 or 1/8 scale
    (Pillow's ``draft``) while staying at least this large; other formats ignore it. Raises
    :class:`CorruptImageError`, naming the file, if it is missing, truncated or not an image.
    """
    try:
        with Image.open(path) as im:
            if min_size is not None and im.format == "JPEG":
                h, w = int(min_size[0]), int(min_size[1])  # upright; draft takes stored (w, h)
                im.draft(im.mode, (h, w) if _orientation(im) in _SWAPS_AXES else (w, h))
            im.load()
            if _orientation(im) != 1:
                ImageOps.exif_transpose(im, in_place=True)
            return _pil_to_array(im)
    except CorruptImageError:
        raise
    except Exception as e:
        raise CorruptImageError(str(path), f"{type(e).__name__}: {e}") from e


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of an image file, upright, from its header alone (no pixel decoding)."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            header_exif = im.format != "PNG" or "exif" in im.info
            if header_exif and _orientation(im) in _SWAPS_AXES:
                w, h = h, w
    except Exception as e:
        raise CorruptImageError(str(path), f"{type(e).__name__}: {e}") from e
    return h, w


def list_image_files(root: str | os.PathLike,
                     extensions: Iterable[str] = IMAGE_EXTENSIONS) -> list[str]:
    """Image files under ``root``, recursively (following folder symlinks, skipping hidden
    names such as macOS ``._x.jpg``), sorted by path relative to ``root``.

    Raises :class:`NoImagesFoundError` if ``root`` is missing, not a folder or has no images.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        what = "is not a folder" if os.path.exists(root) else "does not exist"
        raise NoImagesFoundError(f"image folder {root!r} {what}; check the path in the source spec.")
    exts = tuple(e.lower() for e in extensions)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(exts):
                found.append(os.path.join(dirpath, name))
    if not found:
        raise NoImagesFoundError(
            f"no image files ({', '.join(exts)}) found under {root!r}; put images there (any "
            "depth of subfolders) or point the source spec at the folder that holds them."
        )
    found.sort(key=lambda p: os.path.relpath(p, root))
    return found
