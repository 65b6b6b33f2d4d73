"""Errors raised by :mod:`jaxgan.data` for bad user input, naming the file, folder or dataset
and the fix: content problems are ``ValueError``s, missing things ``FileNotFoundError``s."""
from __future__ import annotations


class DataError(ValueError):
    """Base class for bad data content or a bad data specification."""


class CorruptImageError(DataError):
    """An image file could not be decoded. ``path`` is the offending file."""

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        super().__init__(
            f"cannot read image file {self.path!r}: {reason}. Delete or replace the file, or "
            "set --config.data.skip_corrupt=True (skip_corrupt=True for make_source) to skip "
            "unreadable files (they are counted and reported)."
        )


class NoImagesFoundError(FileNotFoundError):
    """A folder (or its split subfolder) holds no image files, or does not exist."""


class PairMismatchError(DataError):
    """The A and B folders of a paired source do not hold the same file names."""


class OddWidthError(DataError):
    """A side-by-side (pix2pix ``aligned``) image has an odd width, so A|B cannot be split."""


class NotSideBySideError(DataError):
    """Files of a pix2pix ``aligned`` folder are not ``A|B`` side by side (width != 2 x height)."""


class ImageTooSmallError(DataError):
    """An image is smaller than the requested crop."""


class UnknownDatasetError(DataError):
    """A TFDS dataset or config name that TFDS does not know, or an unknown source spec."""


class DatasetNotPreparedError(FileNotFoundError):
    """A TFDS dataset is known but not prepared (no array_record files in ``data_dir``)."""


class DatasetDownloadError(DatasetNotPreparedError):
    """``download=True`` was given but TFDS failed to download or prepare the dataset."""
