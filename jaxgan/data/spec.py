"""``make_source``: one string (``config.data.source``) -> a random-access data source.

Spec syntax (``split`` is a keyword argument, default ``"train"``):

================================  ===========================================================
``digits`` / ``digits:<size>``    scikit-learn digits, gray, ``{"image"}``; size 8 (native),
                                  16, 32, 64, ... (bicubic upsampling, done once)
``edges2photos``                  embedded pix2pix pairs ``{"A": edges, "B": photo}``
``gray2photos``                   the same photos as ``{"A": luma, "B": photo}`` (default)
``photos2ihc``                    embedded CycleGAN domains ``{"A": photo, "B": micrograph}``
``tfds:<name>[/<config>]``        TFDS via ``tfds.data_source`` (mnist, cifar10, celeb_a,
                                  celeb_a_hq/256, lsun/bedroom, ...); ``cycle_gan/<config>``
                                  with split train/test gives ``{"A", "B"}`` from trainA/trainB;
                                  options ``data_dir=``, ``download=``, ``image_key=``
``folder:<path>``                 images under ``path`` (recursive), ``{"image"}``
``aligned:<path>``                pix2pix ``A|B`` side-by-side files (width = 2 x height,
                                  checked from the headers), ``{"A", "B"}``; options
                                  ``direction="BtoA"``, ``check_aspect=False`` (any even
                                  width)
``pairs:<dirA>,<dirB>``           two folders with matching names, ``{"A", "B"}``
``unaligned:<dirA>,<dirB>``       CycleGAN unpaired folders, ``{"A", "B"}``; also
``unaligned:<root>``              ``<root>/<split>A`` and ``<root>/<split>B`` (CycleGAN layout)
================================  ===========================================================

Folder specs use ``<path>/<split>`` (e.g. ``facades/train``) when it exists and take
``skip_corrupt=True`` (skip and report unreadable files) and ``decode_size=<pixels>`` (JPEG
reduced-scale decoding); ``pairs`` also ``direction``; ``unaligned``, ``photos2ihc`` and
``tfds`` take ``seed`` (the random B partners). Paths must not contain commas. An option the
kind does not take raises :class:`DataError`.
"""
from __future__ import annotations

import os

from jaxgan.data import embedded
from jaxgan.data.errors import DataError, NoImagesFoundError, UnknownDatasetError
from jaxgan.data.sources import (
    AlignedSource,
    ImageFolderSource,
    PairedFolderSource,
    UnalignedSource,
    resolve_split_dir,
)

SPEC_FORMS = ("digits", "digits:<size>", "edges2photos", "gray2photos", "photos2ihc",
              "tfds:<name>[/<config>]", "folder:<path>", "aligned:<path>", "pairs:<dirA>,<dirB>",
              "unaligned:<dirA>,<dirB>", "unaligned:<root>")

#: The keyword options of each kind (any other raises, rather than being silently ignored).
_OPTIONS = {
    "digits": ("size",),
    "edges2photos": (),
    "gray2photos": (),
    "photos2ihc": ("seed",),
    "tfds": ("data_dir", "download", "image_key", "seed"),
    "folder": ("skip_corrupt", "decode_size"),
    "aligned": ("direction", "skip_corrupt", "decode_size", "check_aspect"),
    "pairs": ("direction", "skip_corrupt", "decode_size"),
    "unaligned": ("seed", "skip_corrupt", "decode_size"),
}


def _two_dirs(kind: str, rest: str) -> tuple[str, str]:
    parts = [p.strip() for p in rest.split(",")]
    if len(parts) != 2 or not all(parts):
        raise UnknownDatasetError(f"'{kind}:' takes two folders separated by one comma, "
                                  f"'{kind}:<dirA>,<dirB>'; got {rest!r}.")
    return parts[0], parts[1]


def make_source(spec: str, *, split: str = "train", **options):
    """The data source named by ``spec`` (syntax and ``options``: the module docstring), e.g.
    ``"digits:32"``; ``split`` is ``"train"``, ``"test"`` or any TFDS split / subfolder name."""
    if not isinstance(spec, str) or not spec.strip():
        raise UnknownDatasetError(f"data source spec must be a non-empty string, got {spec!r}; "
                                  f"forms: {', '.join(SPEC_FORMS)}.")
    kind, sep, rest = spec.strip().partition(":")
    kind = kind.lower()
    extra = sorted(set(options) - set(_OPTIONS.get(kind, options)))
    if extra:
        takes = ", ".join(_OPTIONS[kind]) or "none"
        raise DataError(f"'{kind}' sources take no option {', '.join(extra)} (their options: "
                        f"{takes}); unset it in config.data (e.g. --config.data.download="
                        "False) or config.data.options, or drop it from the make_source call.")
    if kind == "digits":
        size = 8
        if sep:
            try:
                size = int(rest)
            except ValueError:
                raise UnknownDatasetError(f"'digits:<size>' needs an integer size, got {rest!r}."
                                          ) from None
        return embedded.DigitsSource(size=options.pop("size", size), split=split, **options)
    if kind == "edges2photos" and not sep:
        return embedded.Edges2PhotosSource(split=split, **options)
    if kind == "gray2photos" and not sep:
        return embedded.Gray2PhotosSource(split=split, **options)
    if kind == "photos2ihc" and not sep:
        return embedded.photos2ihc(split=split, **options)
    if kind == "tfds" and rest:
        from jaxgan.data.tfds_source import make_tfds_source

        return make_tfds_source(rest, split, **options)
    if kind == "folder" and rest:
        return ImageFolderSource(resolve_split_dir(rest, split), **options)
    if kind == "aligned" and rest:
        return AlignedSource(resolve_split_dir(rest, split), **options)
    if kind == "pairs" and rest:
        dir_a, dir_b = _two_dirs(kind, rest)
        return PairedFolderSource(resolve_split_dir(dir_a, split), resolve_split_dir(dir_b, split),
                                  **options)
    if kind == "unaligned" and rest:
        seed = options.pop("seed", 0)
        if "," in rest:
            dir_a, dir_b = _two_dirs(kind, rest)
            dir_a, dir_b = resolve_split_dir(dir_a, split), resolve_split_dir(dir_b, split)
        else:
            dir_a, dir_b = (os.path.join(rest, split + s) for s in ("A", "B"))
            if not (os.path.isdir(dir_a) and os.path.isdir(dir_b)):
                raise NoImagesFoundError(
                    f"'unaligned:{rest}' expects the CycleGAN layout {dir_a!r} and {dir_b!r}; "
                    "they are missing. Give the two folders explicitly: "
                    "'unaligned:<dirA>,<dirB>'."
                )
        return UnalignedSource(ImageFolderSource(dir_a, **options),
                               ImageFolderSource(dir_b, **options), seed=seed)
    if sep and not rest:
        raise DataError(f"data source spec {spec!r} is missing its argument after ':'.")
    raise UnknownDatasetError(f"unknown data source spec {spec!r}; forms: {', '.join(SPEC_FORMS)}.")
