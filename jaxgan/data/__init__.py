"""jaxgan data: sources (TFDS, image folders, pix2pix pairs, CycleGAN domains, embedded
defaults) and grain pipelines.

Typical use in a training loop::

    import grain, orbax.checkpoint as ocp
    from jaxgan import data

    source = data.make_source(config.data.source, split="train")   # e.g. "digits:32"
    loader = data.make_loader(source, global_batch_size=64, seed=0, image_size=32, channels=1)
    it = iter(loader)           # grain DataLoaderIterator
    batch = next(it)            # {"image": float32 (64 // nproc, 32, 32, 1)}
    # Iterator state next to the train state; restore into iter() of the same loader:
    mngr = ocp.CheckpointManager(workdir / "ckpt")
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                            data=grain.checkpoint.CheckpointSave(it)))
    mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(state),
                                               data=grain.checkpoint.CheckpointRestore(it)))

The grain checkpoint classes (``grain.python.PyGrainCheckpoint*`` in older grain) restore
``it`` in place and write one JSON file per process; without orbax: ``it.get_state()`` ->
bytes, ``it.set_state(bytes)``. Records are dicts of uint8 ``(H, W, C)`` arrays,
``{"image"}`` or ``{"A", "B"}``; batches are float32 NHWC in [-1, 1], this process's slice of
the global batch. Source strings: :mod:`jaxgan.data.spec`; pipeline: :mod:`jaxgan.data.pipeline`.
"""
from jaxgan.data.embedded import (
    DigitsSource,
    Edges2PhotosSource,
    Gray2PhotosSource,
    edge_map,
    photos2ihc,
)
from jaxgan.data.errors import (
                                CorruptImageError,
                                DataError,
                                DatasetDownloadError,
                                DatasetNotPreparedError,
                                ImageTooSmallError,
                                NoImagesFoundError,
                                NotSideBySideError,
                                OddWidthError,
                                PairMismatchError,
                                UnknownDatasetError,
)
from jaxgan.data.image_io import decode_image, list_image_files
from jaxgan.data.pipeline import Loader, make_loader
from jaxgan.data.sources import (
                                AlignedSource,
                                ArraySource,
                                ImageFolderSource,
                                PairedFolderSource,
                                UnalignedSource,
                                split_aligned,
)
from jaxgan.data.spec import make_source
from jaxgan.data.transforms import (
                                ImageTransform,
                                box_downsample,
                                center_crop_square,
                                hflip,
                                resize,
                                to_channels,
                                to_float,
                                upsample_nearest,
)

__all__ = [
    "AlignedSource", "ArraySource", "CorruptImageError", "DataError", "DatasetDownloadError",
    "DatasetNotPreparedError", "DigitsSource", "Edges2PhotosSource", "Gray2PhotosSource",
    "ImageFolderSource",
    "ImageTooSmallError", "ImageTransform", "Loader", "NoImagesFoundError",
    "NotSideBySideError", "OddWidthError", "PairMismatchError",
    "PairedFolderSource", "UnalignedSource", "UnknownDatasetError", "box_downsample",
    "center_crop_square", "decode_image", "edge_map", "hflip", "list_image_files",
    "make_loader", "make_source", "photos2ihc", "resize", "split_aligned", "to_channels",
    "to_float", "upsample_nearest",
]
