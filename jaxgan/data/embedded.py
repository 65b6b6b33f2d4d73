"""Embedded real data that ships with PyPI packages (no network at run time).

* ``digits``: scikit-learn's 1,797 8x8 handwritten digits (17 gray levels) as uint8
  ``round(v * 255 / 16)``, bicubic-upsampled once to ``size``: ``{"image": (s, s, 1)}``.
  Splits: ``train`` = the first 1,500, ``test`` = the last 297, ``all``.
* ``gray2photos`` (pix2pix default, colourisation) and ``edges2photos``: ``B`` = 256x256
  crops (64-pixel grid, 171 crops) of scikit-image's colour photos (astronaut, coffee,
  rocket, both stereo_motorcycle views); ``A`` = their BT.601 luma, or their black-on-white
  Canny edges (sigma 2, of the luma), uint8 (256, 256, 1). ``test`` = the 10 crops of
  ``chelsea``, a photo unseen in ``train``.
* ``photos2ihc`` (CycleGAN default): unpaired ``A`` = the same photo crops, ``B`` = 81
  256x256 crops (32-pixel grid) of scikit-image's immunohistochemistry micrograph. ``test``:
  A = ``chelsea``, B = the IHC image rescaled by 0.75 (overlapping B train: it is the only one).

Photos are read lazily and cached per process, so sources pickle cheaply into grain workers.
"""
from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from jaxgan.data.errors import DataError
from jaxgan.data.sources import ArraySource, Record, UnalignedSource, _check_index
from jaxgan.data.transforms import to_channels

DIGITS_TRAIN = 1500
CROP = 256
TRAIN_PHOTOS = ("astronaut", "coffee", "rocket", "motorcycle_left", "motorcycle_right")
TEST_PHOTOS = ("chelsea",)


def _check_split(split: str, name: str) -> None:
    if split not in ("train", "test", "all"):
        raise DataError(f"{name} has splits 'train', 'test' and 'all', not {split!r}.")


def load_digits_array(size: int = 8, split: str = "train") -> np.ndarray:
    """scikit-learn digits as uint8 ``(N, size, size, 1)`` in [0, 255] (see module doc)."""
    from sklearn.datasets import load_digits

    _check_split(split, "digits")
    if int(size) < 8:
        raise DataError(f"digits size must be >= 8 (native 8x8), got {size}.")
    raw = load_digits().images  # (1797, 8, 8) float64, integers 0..16
    u8 = np.rint(raw * (255.0 / 16.0)).astype(np.uint8)
    if split == "train":
        u8 = u8[:DIGITS_TRAIN]
    elif split == "test":
        u8 = u8[DIGITS_TRAIN:]
    if size != 8:
        u8 = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC))
                       for im in u8])
    return u8[..., None]


class DigitsSource(ArraySource):
    """``{"image": uint8 (size, size, 1)}`` records of scikit-learn's digits."""

    def __init__(self, size: int = 8, split: str = "train"):
        self.size, self.split = int(size), split
        super().__init__(load_digits_array(self.size, split), name=f"digits/{split}/{self.size}")

    def __repr__(self) -> str:
        return f"DigitsSource(size={self.size}, split={self.split!r})"


@functools.cache
def _photo(name: str, scale: float = 1.0) -> np.ndarray:
    """A bundled scikit-image photo as uint8 (H, W, 3), optionally rescaled (bicubic)."""
    import skimage.data

    if name == "motorcycle_left":
        img = skimage.data.stereo_motorcycle()[0]
    elif name == "motorcycle_right":
        img = skimage.data.stereo_motorcycle()[1]
    elif name == "ihc":
        img = skimage.data.immunohistochemistry()
    else:
        img = getattr(skimage.data, name)()
    img = np.ascontiguousarray(img[..., :3], dtype=np.uint8)
    if scale != 1.0:
        h, w = img.shape[:2]
        size = (round(w * scale), round(h * scale))
        img = np.asarray(Image.fromarray(img).resize(size, Image.BICUBIC))
    return img


_SHAPES = {  # (H, W) of the bundled photos, so crop tables need no decoding
    "astronaut": (512, 512), "chelsea": (300, 451), "coffee": (400, 600),
    "rocket": (427, 640), "motorcycle_left": (500, 741), "motorcycle_right": (500, 741),
    "ihc": (512, 512),
}


def _grid(n: int, crop: int, stride: int) -> list[int]:
    starts = list(range(0, n - crop + 1, stride))
    if starts[-1] != n - crop:
        starts.append(n - crop)
    return starts


def _crop_table(names: tuple[str, ...], scale: float, stride: int
                ) -> list[tuple[str, float, int, int]]:
    table = []
    for name in names:
        h, w = (round(s * scale) for s in _SHAPES[name])
        for top in _grid(h, CROP, stride):
            for left in _grid(w, CROP, stride):
                table.append((name, scale, top, left))
    return table


class PhotoCropSource:
    """256x256 crops of bundled photos: ``{"image": uint8 (256, 256, 3)}``."""

    def __init__(self, names: tuple[str, ...], *, scale: float = 1.0, stride: int = 64,
                 label: str = "photos"):
        self.names, self.scale, self.stride, self.label = tuple(names), scale, stride, label
        self.table = _crop_table(self.names, scale, stride)

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> Record:
        name, scale, top, left = self.table[_check_index(i, len(self))]
        return {"image": _photo(name, scale)[top:top + CROP, left:left + CROP].copy()}

    def __repr__(self) -> str:
        return (f"PhotoCropSource({self.label!r}, names={self.names}, scale={self.scale}, "
                f"stride={self.stride})")


def edge_map(image: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Black-on-white Canny edges of a uint8 (H, W, C) image -> uint8 (H, W, 1), {0, 255}."""
    from skimage.feature import canny

    gray = to_channels(image, 1)[:, :, 0].astype(np.float32) / 255.0
    edges = canny(gray, sigma=sigma)
    return np.where(edges, 0, 255).astype(np.uint8)[:, :, None]


def _photo_names(split: str) -> tuple[str, ...]:
    return {"train": TRAIN_PHOTOS, "test": TEST_PHOTOS, "all": TRAIN_PHOTOS + TEST_PHOTOS}[split]


class Edges2PhotosSource:
    """``{"A": edges uint8 (256, 256, 1), "B": photo uint8 (256, 256, 3)}``."""

    name = "edges2photos"

    def __init__(self, split: str = "train"):
        _check_split(split, self.name)
        self.split = split
        self.photos = PhotoCropSource(_photo_names(split), label=f"photos/{split}")

    def __len__(self) -> int:
        return len(self.photos)

    def condition(self, photo: np.ndarray) -> np.ndarray:
        return edge_map(photo)

    def __getitem__(self, i: int) -> Record:
        photo = self.photos[i]["image"]
        return {"A": self.condition(photo), "B": photo}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(split={self.split!r})"


class Gray2PhotosSource(Edges2PhotosSource):
    """pix2pix default (colourisation): ``{"A": luma uint8 (256, 256, 1), "B": photo}``."""

    name = "gray2photos"

    def condition(self, photo: np.ndarray) -> np.ndarray:
        return to_channels(photo, 1)


def photos2ihc(split: str = "train", seed: int = 0) -> UnalignedSource:
    """CycleGAN default: A = photo crops, B = IHC micrograph crops (see module doc)."""
    _check_split(split, "photos2ihc")
    a = PhotoCropSource(_photo_names(split), label=f"photos/{split}")
    if split == "test":
        b = PhotoCropSource(("ihc",), scale=0.75, stride=32, label="ihc/test")
    else:
        b = PhotoCropSource(("ihc",), scale=1.0, stride=32, label=f"ihc/{split}")
        if split == "all":
            b.table += _crop_table(("ihc",), 0.75, 32)
    return UnalignedSource(a, b, seed=seed)
