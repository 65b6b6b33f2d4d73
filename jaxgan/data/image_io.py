"""Decoding image files into uint8 arrays, and listing image files in a folder tree.

All decoded images are ``np.uint8`` arrays of shape ``(H, W, C)`` with ``C`` in
``{1, 2, 3, 4}`` (gray, gray+alpha, RGB, RGBA), values in ``[0, 255]``. 16-bit files are
mapped to 8 bits (``round(v / 257)`` for 16-bit gray; Pillow itself keeps the high byte of
16-bit RGB); palette images become RGB, or RGBA when they carry transparency. Alpha is kept
here and dropped by the pipeline's channel conversion. The EXIF Orientation tag is applied
(``ImageOps.exif_transpose``), so photos from cameras and phones come out upright, and
:func:`image_size` reports that upright size.
"""
from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
from PIL import ExifTags, Image, ImageOps

from jaxgan.data.errors import CorruptImageError, NoImagesFoundError

#: File extensions (lower case) that folder sources pick up.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# Pillow refuses images above ~179 Mpixel by default ("decompression bomb"); real
# datasets stay far below, keep the protection.

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
        # 16-bit gray (PNG/TIFF). Mode "I" is 32-bit; assume 16-bit content, clip above.
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
    """The EXIF Orientation of an opened image, 1 (upright) when it has none or it is broken.

    Reads no pixels, except for a PNG whose EXIF comes after its pixel data (Pillow decodes
    the image to find it); :func:`image_size` skips those.
    """
    try:
        return int(im.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # noqa: BLE001 (a malformed EXIF block: keep the pixels as stored)
        return 1


def decode_image(path: str | os.PathLike, min_size: tuple[int, int] | None = None
                 ) -> np.ndarray:
    """Reads one image file, upright: its EXIF Orientation is applied.

    Args:
      path: a PNG, JPEG, BMP, TIFF or WebP file, 8 or 16 bits per channel, gray/RGB/RGBA.
      min_size: optional (h, w) speed hint for JPEGs: libjpeg decodes directly at 1/2, 1/4
        or 1/8 scale (DCT scaling, Pillow's ``draft``) as long as the result stays at least
        this large. Other formats ignore it. The pipeline's resize then does the rest.

    Returns:
      ``np.uint8`` array of shape ``(H, W, C)``, ``C`` in ``{1, 2, 3, 4}``, values 0..255.

    Raises:
      CorruptImageError: the file is missing, truncated or not an image; names the file.
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
    """(height, width) of an image file, upright (EXIF orientation applied), from its header
    alone: the pixels are not decoded."""
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
    """Image files under ``root``, recursively, sorted by path relative to ``root``.

    Hidden files and folders (names starting with ``.``, e.g. macOS ``._x.jpg``) are skipped.
    Symbolic links to folders are followed.

    Raises:
      NoImagesFoundError: ``root`` does not exist, is not a folder, or holds no image files.
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
