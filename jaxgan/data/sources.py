"""Random-access data sources (grain's protocol: ``__len__`` and ``__getitem__``).

Records are dicts of uint8 ``(H, W, C)`` arrays, ``{"image"}`` or ``{"A", "B"}`` (paired
pix2pix or unpaired CycleGAN data), with the files' own channels (the pipeline converts).
Decoding is lazy, so a corrupt file raises :class:`CorruptImageError` when first read, unless
built with ``skip_corrupt=True`` (decode every file once up front, drop and report the bad
ones). Folder sources take ``decode_size=s``, a JPEG speed hint (reduced DCT scale, still >=
``s`` pixels: the loader's ``image_size``, or ``load_size`` for resize_and_crop), and report
header sizes (``image_sizes()``) for the loader's upscaling warning.

Each source has a deterministic ``repr``: grain stores it in iterator checkpoints and
refuses to restore into a different source.
"""
from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from jaxgan.data.errors import (
    CorruptImageError,
    NoImagesFoundError,
    NotSideBySideError,
    OddWidthError,
    PairMismatchError,
)
from jaxgan.data.image_io import decode_image, image_size, list_image_files

Record = dict[str, np.ndarray]
_LOG = logging.getLogger(__name__)


def _check_index(i: int, n: int) -> int:
    i = int(i)
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(f"record index {i} out of range for a source of {n} records.")
    return i


def _min_size(decode_size: int | None, width_factor: int = 1) -> tuple[int, int] | None:
    return None if decode_size is None else (decode_size, decode_size * width_factor)


def _ds_repr(decode_size: int | None) -> str:
    return "" if decode_size is None else f", decode_size={decode_size}"


def _drop_corrupt(files: list[str], what: str) -> tuple[list[str], list[str]]:
    """Decodes every file once (threads); returns (readable, unreadable) and reports."""
    def ok(path: str) -> bool:
        try:
            decode_image(path)
            return True
        except CorruptImageError:
            return False

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        flags = list(pool.map(ok, files))
    good = [f for f, k in zip(files, flags) if k]
    bad = [f for f, k in zip(files, flags) if not k]
    if bad:
        msg = (f"skip_corrupt=True: skipped {len(bad)} unreadable image file(s) of {len(files)} "
               f"in {what}; first: {bad[:3]}")
        _LOG.warning(msg)
        warnings.warn(msg, stacklevel=3)
    if not good:
        raise NoImagesFoundError(f"all {len(files)} image files in {what} are unreadable.")
    return good, bad


def _header_sizes(files: Sequence[str]) -> list[tuple[int, int]]:
    """(height, width) of every file from its header (threads: the reads wait on the disk)."""
    with ThreadPoolExecutor(max_workers=max(2, min(32, 4 * (os.cpu_count() or 1)))) as pool:
        return list(pool.map(image_size, files))


class ArraySource:
    """In-memory images: ``{key: images[i]}`` for a uint8 ``(N, H, W, C)`` array."""

    def __init__(self, images: np.ndarray, *, name: str, key: str = "image"):
        images = np.asarray(images)
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"ArraySource needs uint8 (N, H, W, C), got {images.dtype} "
                             f"{images.shape}.")
        self.images = images
        self.name = name
        self.key = key

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Record:
        return {self.key: self.images[_check_index(i, len(self))]}

    def __repr__(self) -> str:
        return f"ArraySource(name={self.name!r}, shape={tuple(self.images.shape)})"


class ImageFolderSource:
    """All images under ``root`` (recursive, sorted): records ``{"image": uint8 (H, W, C)}``."""

    def __init__(self, root: str | os.PathLike, *, skip_corrupt: bool = False,
                 decode_size: int | None = None):
        self.root = os.path.abspath(os.fspath(root))
        self.decode_size = None if decode_size is None else int(decode_size)
        self.files = list_image_files(self.root)
        self.skipped_files: list[str] = []
        if skip_corrupt:
            self.files, self.skipped_files = _drop_corrupt(self.files, repr(self.root))
        self._sizes: list[tuple[int, int]] | None = None

    def image_sizes(self) -> list[tuple[int, int]]:
        """(height, width) of every image, from the file headers (read once, then kept)."""
        if self._sizes is None:
            self._sizes = _header_sizes(self.files)
        return self._sizes

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Record:
        return {"image": decode_image(self.files[_check_index(i, len(self))],
                                      _min_size(self.decode_size))}

    def __repr__(self) -> str:
        return f"ImageFolderSource({self.root!r}{_ds_repr(self.decode_size)})"


def split_aligned(image: np.ndarray, path: str = "<array>") -> tuple[np.ndarray, np.ndarray]:
    """Splits a side-by-side ``A|B`` image ``(H, 2W, C)`` into ``A`` (left) and ``B`` (right)."""
    w = image.shape[1]
    if w % 2:
        raise OddWidthError(
            f"side-by-side pair {path!r} is {w} pixels wide (odd): a pix2pix 'aligned' image "
            "must be A|B with two halves of equal width. Crop or pad it to an even width, or "
            "store the pairs as two folders and use 'pairs:<dirA>,<dirB>'."
        )
    return image[:, : w // 2], image[:, w // 2:]


def _check_side_by_side(files: list[str], sizes: list[tuple[int, int]], root: str,
                        check_aspect: bool) -> None:
    """Raises up front when ``aligned`` files cannot be ``A|B`` pairs (single images would
    otherwise train silently as their halves)."""
    n = len(files)
    if check_aspect:
        bad = [i for i, (h, w) in enumerate(sizes) if w != 2 * h]
        if bad:
            h, w = sizes[bad[0]]
            raise NotSideBySideError(
                f"'aligned:' needs A and B side by side in each file (width = 2 x height, as in "
                f"the pix2pix datasets, e.g. facades' 512x256), but {len(bad)} of {n} files in "
                f"{root!r} are not; the first, {files[bad[0]]!r}, is {w}x{h} (width x height). "
                "Point 'aligned:' at a folder of A|B files, or use 'folder:' for single images "
                "and 'pairs:<dirA>,<dirB>' for A and B in two folders; for A|B files whose "
                "halves are not square pass check_aspect=False."
            )
    odd = [i for i, (_, w) in enumerate(sizes) if w % 2]
    if odd:
        raise OddWidthError(
            f"{len(odd)} of {n} side-by-side pairs in {root!r} have an odd width; the first, "
            f"{files[odd[0]]!r}, is {sizes[odd[0]][1]} pixels wide: a pix2pix 'aligned' image "
            "must be A|B with two halves of equal width. Crop or pad them to an even width, or "
            "store the pairs as two folders and use 'pairs:<dirA>,<dirB>'."
        )


class AlignedSource:
    """pix2pix "aligned" folder of ``A|B`` files (``direction="BtoA"`` swaps), ``{"A", "B"}``.
    At construction every width must be 2 x the height (``check_aspect=False``: any even
    width), else :class:`NotSideBySideError`."""

    def __init__(self, root: str | os.PathLike, *, direction: str = "AtoB",
                 skip_corrupt: bool = False, decode_size: int | None = None,
                 check_aspect: bool = True):
        if direction not in ("AtoB", "BtoA"):
            raise ValueError(f"direction must be 'AtoB' or 'BtoA', got {direction!r}.")
        self.direction = direction
        self.decode_size = None if decode_size is None else int(decode_size)
        self.folder = ImageFolderSource(root, skip_corrupt=skip_corrupt)
        _check_side_by_side(self.folder.files, self.folder.image_sizes(), self.folder.root,
                            bool(check_aspect))

    @property
    def files(self) -> list[str]:
        return self.folder.files

    def image_sizes(self) -> list[tuple[int, int]]:
        """(height, width) of every A (and B) half, from the file headers."""
        return [(h, w // 2) for h, w in self.folder.image_sizes()]

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int) -> Record:
        path = self.folder.files[_check_index(i, len(self))]
        a, b = split_aligned(decode_image(path, _min_size(self.decode_size, 2)), path)
        if self.direction == "BtoA":
            a, b = b, a
        return {"A": a, "B": b}

    def __repr__(self) -> str:
        return (f"AlignedSource({self.folder.root!r}, direction={self.direction!r}"
                f"{_ds_repr(self.decode_size)})")


def _stem_map(root: str, files: list[str], side: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in files:
        stem = os.path.splitext(os.path.relpath(f, root))[0]
        if stem in out:
            raise PairMismatchError(
                f"folder {side} ({root!r}) has two files named {stem!r} with different "
                f"extensions ({os.path.basename(out[stem])}, {os.path.basename(f)}); pairs "
                "are matched by name without extension, keep one of them."
            )
        out[stem] = f
    return out


class PairedFolderSource:
    """Two folders whose files pair by relative path without extension (``a/x/001.png`` with
    ``b/x/001.jpg``); ``{"A", "B"}``. A name on one side only raises :class:`PairMismatchError`.
    """

    def __init__(self, dir_a: str | os.PathLike, dir_b: str | os.PathLike, *,
                 direction: str = "AtoB", skip_corrupt: bool = False,
                 decode_size: int | None = None):
        if direction not in ("AtoB", "BtoA"):
            raise ValueError(f"direction must be 'AtoB' or 'BtoA', got {direction!r}.")
        self.direction = direction
        self.decode_size = None if decode_size is None else int(decode_size)
        self.dir_a = os.path.abspath(os.fspath(dir_a))
        self.dir_b = os.path.abspath(os.fspath(dir_b))
        map_a = _stem_map(self.dir_a, list_image_files(self.dir_a), "A")
        map_b = _stem_map(self.dir_b, list_image_files(self.dir_b), "B")
        only_a = sorted(set(map_a) - set(map_b))
        only_b = sorted(set(map_b) - set(map_a))
        if only_a or only_b:
            raise PairMismatchError(
                f"A folder {self.dir_a!r} and B folder {self.dir_b!r} do not hold the same "
                f"names: {len(only_a)} only in A (e.g. {only_a[:5]}), {len(only_b)} only in B "
                f"(e.g. {only_b[:5]}). Pairs are matched by relative path without extension; "
                "rename or remove the unmatched files (for unpaired data use 'unaligned:')."
            )
        stems = sorted(map_a)
        self.pairs = [(map_a[s], map_b[s]) for s in stems]
        self.skipped_files: list[str] = []
        if skip_corrupt:
            flat = [p for pair in self.pairs for p in pair]
            _, bad = _drop_corrupt(flat, f"{self.dir_a!r} / {self.dir_b!r}")
            bad_set = set(bad)
            self.pairs = [p for p in self.pairs if p[0] not in bad_set and p[1] not in bad_set]
            self.skipped_files = bad
        self._sizes: list[tuple[int, int]] | None = None

    def image_sizes(self) -> list[tuple[int, int]]:
        """(height, width) of every A and every B image, from the file headers."""
        if self._sizes is None:
            self._sizes = _header_sizes([p for pair in self.pairs for p in pair])
        return self._sizes

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> Record:
        pa, pb = self.pairs[_check_index(i, len(self))]
        size = _min_size(self.decode_size)
        a, b = decode_image(pa, size), decode_image(pb, size)
        if self.direction == "BtoA":
            a, b = b, a
        return {"A": a, "B": b}

    def __repr__(self) -> str:
        return (f"PairedFolderSource({self.dir_a!r}, {self.dir_b!r}, "
                f"direction={self.direction!r}{_ds_repr(self.decode_size)})")


class UnalignedSource:
    """Unpaired CycleGAN domains: record ``i`` is ``{"A": a[i % nA], "B": b[perm[i] % nB]}``.

    ``len = max(nA, nB)`` (as the reference), so every image appears each epoch; ``perm`` is
    drawn once from ``seed``: B partners are random but fixed per source (the reference
    redraws them every step). ``a`` and ``b`` yield ``{"image": ...}``.
    """

    def __init__(self, a: Sequence[Record], b: Sequence[Record], *, seed: int = 0):
        if len(a) == 0 or len(b) == 0:
            raise NoImagesFoundError(f"unaligned source has an empty domain: "
                                     f"{len(a)} A and {len(b)} B records.")
        self.a, self.b, self.seed = a, b, int(seed)
        n = max(len(a), len(b))
        self.perm = np.random.default_rng(self.seed).permutation(n)

    def image_sizes(self) -> list[tuple[int, int]] | None:
        """(height, width) of every A and B image when both domains are folders, else None."""
        if not (hasattr(self.a, "image_sizes") and hasattr(self.b, "image_sizes")):
            return None
        a, b = self.a.image_sizes(), self.b.image_sizes()
        return None if a is None or b is None else a + b

    def __len__(self) -> int:
        return len(self.perm)

    def __getitem__(self, i: int) -> Record:
        i = _check_index(i, len(self))
        return {"A": self.a[i % len(self.a)]["image"],
                "B": self.b[int(self.perm[i]) % len(self.b)]["image"]}

    def __repr__(self) -> str:
        return f"UnalignedSource({self.a!r}, {self.b!r}, seed={self.seed})"


def resolve_split_dir(path: str, split: str | None) -> str:
    """``path/split`` when that folder exists, else ``path`` (for folder-based specs)."""
    if split and os.path.isdir(os.path.join(path, split)):
        return os.path.join(path, split)
    return path
