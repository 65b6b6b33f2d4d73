"""TFDS datasets through ``tfds.data_source`` (array_record, random access; no TensorFlow).

Records are ``{"image": uint8 (H, W, C)}`` (other features dropped); ``cycle_gan/<config>``
with split ``train``/``test`` is an :class:`UnalignedSource` over ``trainA``/``trainB``
(``testA``/``testB``), with split ``trainA`` etc. a single domain.

Datasets must be prepared as array_record first (``tfds build <name>
--file_format=array_record``, which needs TensorFlow; some, like celeb_a_hq, need a manual
download), or ``download=True`` (``--config.data.download=True``) has TFDS prepare them on
the fly, raising :class:`DatasetDownloadError` with the cause when that fails.
"""
from __future__ import annotations

import difflib
import os
from collections.abc import Sequence

import numpy as np

from jaxgan.data.errors import (
    DataError,
    DatasetDownloadError,
    DatasetNotPreparedError,
    UnknownDatasetError,
)
from jaxgan.data.sources import Record, UnalignedSource, _check_index

#: The datasets the project documents and tests (any TFDS image dataset works).
KNOWN_DATASETS = ("mnist", "cifar10", "celeb_a", "celeb_a_hq/<resolution>", "cycle_gan/<config>",
                  "lsun/<category>")


def _builder_cls(name: str):
    import tensorflow_datasets as tfds

    base, _, config = name.partition("/")
    try:
        cls = tfds.builder_cls(base)
    except Exception as e:
        names = tfds.list_builders(with_community_datasets=False)
        close = difflib.get_close_matches(base, names, n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownDatasetError(
            f"TFDS has no dataset named {base!r} (from 'tfds:{name}').{hint} Datasets used "
            f"with jaxgan: {', '.join(KNOWN_DATASETS)}; all names: `tfds.list_builders()`."
        ) from e
    configs = [c.name for c in (getattr(cls, "BUILDER_CONFIGS", None) or [])]
    if config and configs and config not in configs:
        close = difflib.get_close_matches(config, configs, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownDatasetError(
            f"TFDS dataset {base!r} has no config {config!r}.{hint} Configs: {', '.join(configs)}."
        )
    if configs and not config:
        raise UnknownDatasetError(
            f"TFDS dataset {base!r} needs a config: 'tfds:{base}/<config>' with one of "
            f"{', '.join(configs)}."
        )
    if config and not configs:
        raise UnknownDatasetError(f"TFDS dataset {base!r} has no configs; use 'tfds:{base}'.")
    return cls


def _not_prepared_message(name: str, cls, data_dir: str | None, builder_dir: str) -> str:
    manual = (getattr(cls, "MANUAL_DOWNLOAD_INSTRUCTIONS", None) or "").strip()
    dd = f" --data_dir={data_dir}" if data_dir else ""
    msg = (f"TFDS dataset {name!r} is not prepared in array_record format (looked in "
           f"{builder_dir!r}). Prepare it once with `tfds build {name} "
           f"--file_format=array_record{dd}` (the build step needs TensorFlow installed; reading "
           "in jaxgan does not)")
    if not manual:
        msg += (", or set --config.data.download=True (download=True for make_source) to "
                "download and prepare it now")
    else:
        msg += (f". It needs a MANUAL download first: put the files in <manual_dir> and add "
                f"--manual_dir=<manual_dir> to `tfds build`. TFDS says: {' '.join(manual.split())}")
    return msg + "."


def _download_failed_message(name: str, cls, data_dir: str | None, builder_dir: str,
                             error: Exception) -> str:
    """The cause first (the not-prepared advice does not fix it), then other ways to prepare."""
    manual = (getattr(cls, "MANUAL_DOWNLOAD_INSTRUCTIONS", None) or "").strip()
    where = repr(data_dir) if data_dir else "TFDS's data_dir ($TFDS_DATA_DIR, ~/tensorflow_datasets)"
    msg = (f"downloading and preparing TFDS dataset {name!r} (download=True) failed: "
           f"{type(error).__name__}: {error}\nFix that (network access, free space under "
           f"{builder_dir!r}, the packages TFDS's build step needs, e.g. tensorflow), or prepare "
           f"the dataset where it works with `tfds build {name} --file_format=array_record` and "
           f"copy what it writes into {where}.")
    if manual:
        msg += f" It needs a MANUAL download first; TFDS says: {' '.join(manual.split())}"
    return msg


class TfdsSource:
    """One TFDS split as ``{"image": uint8 (H, W, C)}`` records."""

    def __init__(self, name: str, split: str, *, data_dir: str | None = None,
                 download: bool = False, image_key: str = "image"):
        import tensorflow_datasets as tfds

        self.name, self.split, self.image_key = name, split, image_key
        self.data_dir = os.fspath(data_dir) if data_dir is not None else None
        cls = _builder_cls(name)
        try:
            self.ds = tfds.data_source(name, split=split, data_dir=self.data_dir,
                                       download=download)
        except Exception as e:
            builder = tfds.builder(name, data_dir=self.data_dir)
            if download and not builder.is_prepared():
                raise DatasetDownloadError(_download_failed_message(
                    name, cls, self.data_dir, os.fspath(builder.data_dir), e)) from e
            if not builder.is_prepared():
                raise DatasetNotPreparedError(
                    _not_prepared_message(name, cls, self.data_dir, os.fspath(builder.data_dir))
                ) from e
            splits = list(builder.info.splits)
            if splits and split.split("[")[0] not in splits:
                raise DataError(f"TFDS dataset {name!r} has no split {split!r}; splits: "
                                f"{', '.join(splits)}.") from e
            raise
        features = getattr(getattr(self.ds, "dataset_info", None), "features", None)
        if features is not None and image_key not in features:
            raise DataError(f"TFDS dataset {name!r} has no {image_key!r} feature (has "
                            f"{list(features)}); pass image_key=... to make_source.")

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> Record:
        rec = self.ds[_check_index(i, len(self))]
        img = np.asarray(rec[self.image_key])
        if img.ndim == 2:
            img = img[:, :, None]
        if img.dtype != np.uint8:
            raise DataError(f"TFDS {self.name!r} feature {self.image_key!r} is {img.dtype}, "
                            "expected uint8 images.")
        return {"image": img}

    def __getitems__(self, indices: Sequence[int]) -> list[Record]:
        return [self[i] for i in indices]

    def __repr__(self) -> str:
        return f"TfdsSource({self.name!r}, split={self.split!r}, data_dir={self.data_dir!r})"


def make_tfds_source(name: str, split: str = "train", *, data_dir: str | None = None,
                     download: bool = False, image_key: str = "image", seed: int = 0):
    """Source for ``tfds:<name>[/<config>]``; cycle_gan train/test splits become A/B pairs."""
    if name.split("/")[0] == "cycle_gan" and split in ("train", "test"):
        _builder_cls(name)
        a = TfdsSource(name, split + "A", data_dir=data_dir, download=download,
                       image_key=image_key)
        b = TfdsSource(name, split + "B", data_dir=data_dir, download=download,
                       image_key=image_key)
        return UnalignedSource(a, b, seed=seed)
    return TfdsSource(name, split, data_dir=data_dir, download=download, image_key=image_key)
