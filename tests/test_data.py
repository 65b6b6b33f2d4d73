"""Tests for jaxgan.data: sources, transforms, grain loaders, iterator state, errors."""
from __future__ import annotations

import os
import struct
import warnings
import zlib

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxgan import data
from jaxgan.data import (
    ArraySource,
    CorruptImageError,
    DatasetNotPreparedError,
    ImageTooSmallError,
    NoImagesFoundError,
    NotSideBySideError,
    OddWidthError,
    PairMismatchError,
    UnknownDatasetError,
)


# --------------------------------------------------------------------------- helpers
def write_png16(path, a: np.ndarray) -> None:
    """Minimal 16-bit PNG writer (gray (H, W) or RGB (H, W, 3)); Pillow cannot write 16-bit RGB."""
    h, w = a.shape[:2]
    color_type = 2 if a.ndim == 3 else 0
    raw = b"".join(b"\x00" + a[i].astype(">u2").tobytes() for i in range(h))

    def chunk(tag, body):
        return (struct.pack(">I", len(body)) + tag + body
                + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                + chunk(b"IEND", b""))


def rgb(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def smooth(h, w):
    """A gradient image (JPEG keeps it within a few levels)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1),
                     np.full_like(x, 128)], -1).astype(np.uint8)


def id_source(n, size=4):
    """Records whose pixels all equal their index: batches reveal which records they hold."""
    imgs = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, size, size, 1))
    return ArraySource(np.ascontiguousarray(imgs), name=f"ids{n}")


def ids(batch):
    return np.rint((batch["image"][:, 0, 0, 0] + 1.0) * 127.5).astype(int)


def take(it, k):
    return [next(it) for _ in range(k)]


def assert_batches_equal(xs, ys):
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory):
    """A folder tree with every supported format, depth and channel layout."""
    root = tmp_path_factory.mktemp("mixed")
    (root / "sub" / "deeper").mkdir(parents=True)
    a16 = (np.arange(12 * 10).reshape(12, 10) * 547 % 65536).astype(np.uint16)
    a16[0, 0], a16[0, 1] = 65535, 257 * 7
    write_png16(root / "a_gray16.png", a16)
    write_png16(root / "b_rgb16.png", np.stack([a16, a16 // 2, 65535 - a16], -1))
    Image.fromarray(rgb(12, 10, 1)[..., 0]).save(root / "c_gray.png")
    rgba = np.concatenate([rgb(12, 10, 2), np.full((12, 10, 1), 7, np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(root / "d_rgba.png")
    Image.fromarray(smooth(12, 10)).save(root / "sub" / "e.jpg", quality=95)
    Image.fromarray(rgb(12, 10, 4)).save(root / "sub" / "f.BMP")
    Image.fromarray(rgb(12, 10, 5)).save(root / "sub" / "deeper" / "g.tiff")
    (root / "sub" / "._g.jpg").write_bytes(b"macOS resource fork, not an image")
    (root / "notes.txt").write_text("not an image")
    return root, a16, rgba


# --------------------------------------------------------------------------- decoding
def test_folder_source_decodes_all_formats(mixed_dir):
    root, a16, rgba = mixed_dir
    src = data.make_source(f"folder:{root}")
    names = [os.path.relpath(f, root) for f in src.files]
    assert names == ["a_gray16.png", "b_rgb16.png", "c_gray.png", "d_rgba.png",
                     os.path.join("sub", "deeper", "g.tiff"), os.path.join("sub", "e.jpg"),
                     os.path.join("sub", "f.BMP")]
    recs = [src[i]["image"] for i in range(len(src))]
    assert all(r.dtype == np.uint8 and r.shape[:2] == (12, 10) for r in recs)
    assert [r.shape[-1] for r in recs] == [1, 3, 1, 4, 3, 3, 3]
    # 16-bit gray: round(v / 257), so 65535 -> 255 and 257 * 7 -> 7.
    np.testing.assert_array_equal(recs[0][..., 0], np.rint(a16 / 257).astype(np.uint8))
    assert recs[0][0, 0, 0] == 255 and recs[0][0, 1, 0] == 7
    # 16-bit RGB: Pillow keeps the high byte.
    np.testing.assert_array_equal(recs[1][..., 2], ((65535 - a16) >> 8).astype(np.uint8))
    np.testing.assert_array_equal(recs[3], rgba)
    np.testing.assert_array_equal(recs[4], rgb(12, 10, 5))  # TIFF, lossless
    np.testing.assert_array_equal(recs[6], rgb(12, 10, 4))  # BMP, lossless
    assert np.abs(recs[5].astype(int) - smooth(12, 10)).mean() < 6  # JPEG, lossy
    assert "ImageFolderSource" in repr(src) and str(root) in repr(src)


def test_channel_conversion():
    img = rgb(5, 6, 0)
    gray = data.to_channels(img, 1)
    expect = np.rint(img.astype(np.float64) @ [0.299, 0.587, 0.114])
    assert gray.shape == (5, 6, 1)
    np.testing.assert_allclose(gray[..., 0], expect, atol=1)
    np.testing.assert_array_equal(data.to_channels(gray, 3), np.repeat(gray, 3, -1))
    rgba = np.concatenate([img, np.zeros((5, 6, 1), np.uint8)], -1)
    np.testing.assert_array_equal(data.to_channels(rgba, 3), img)  # alpha dropped
    la = np.concatenate([gray, np.zeros_like(gray)], -1)
    np.testing.assert_array_equal(data.to_channels(la, 1), gray)
    with pytest.raises(ValueError, match="channels must be 1"):
        data.to_channels(img, 2)


def test_loader_over_mixed_folder(mixed_dir):
    root, _, _ = mixed_dir
    src = data.make_source(f"folder:{root}")
    for channels in (1, 3):
        loader = data.make_loader(src, global_batch_size=7, seed=0, image_size=8,
                                  channels=channels, num_epochs=1)
        (batch,) = list(loader)
        assert batch["image"].shape == (7, 8, 8, channels)
        assert batch["image"].dtype == np.float32
        assert -1.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    # channels=None: the first record's channel count (16-bit gray -> 1).
    loader = data.make_loader(src, global_batch_size=7, seed=0, image_size=8, num_epochs=1)
    assert loader.image_shapes == {"image": (8, 8, 1)}
    # transforms="none" keeps pixel values: [0, 255] -> [-1, 1] exactly.
    loader = data.make_loader(src, global_batch_size=1, seed=0, image_size=(12, 10), channels=3,
                              transforms="none", shuffle=False, num_epochs=1)
    first = next(iter(loader))["image"][0]
    np.testing.assert_allclose(first, np.repeat(src[0]["image"], 3, -1) / 127.5 - 1, atol=1e-6)


# --------------------------------------------------------------------------- determinism
def test_same_seed_same_batches_and_epoch_shuffle():
    src = id_source(20)
    kw = {"global_batch_size": 10, "image_size": 4, "channels": 1, "num_epochs": 3, "transforms": "none"}
    run1 = list(data.make_loader(src, seed=7, **kw))
    run2 = list(data.make_loader(src, seed=7, **kw))
    other = list(data.make_loader(src, seed=8, **kw))
    assert_batches_equal(run1, run2)
    assert len(run1) == 6
    epochs = [np.concatenate([ids(b) for b in run1[2 * e:2 * e + 2]]) for e in range(3)]
    for e in epochs:  # every epoch is a permutation of all records ...
        assert sorted(e) == list(range(20))
    assert not np.array_equal(epochs[0], epochs[1])  # ... reshuffled each epoch
    assert not np.array_equal(epochs[0], np.concatenate([ids(b) for b in other[:2]]))
    unshuffled = list(data.make_loader(src, seed=7, shuffle=False, **kw))
    np.testing.assert_array_equal(ids(unshuffled[0]), np.arange(10))


def test_random_transforms_seeded(tmp_path):
    img = rgb(40, 40, 9)
    Image.fromarray(img).save(tmp_path / "x.png")
    src = data.make_source(f"folder:{tmp_path}")
    kw = {"global_batch_size": 1, "image_size": 16, "transforms": "random_crop", "flip": True}
    a = take(iter(data.make_loader(src, seed=1, **kw)), 12)
    b = take(iter(data.make_loader(src, seed=1, **kw)), 12)
    assert_batches_equal(a, b)
    crops = {np.asarray(x["image"]).tobytes() for x in a}
    assert len(crops) > 6  # the crop position (and flip) changes from step to step


def test_iterator_state_restore(tmp_path):
    """get_state after k batches; a fresh iterator with set_state yields the same next batches."""
    for i in range(6):  # aligned pairs with random crop + flip: the rng state must restore too
        Image.fromarray(rgb(20, 40, i)).save(tmp_path / f"{i}.png")
    src = data.make_source(f"aligned:{tmp_path}")
    kw = {"global_batch_size": 4, "seed": 3, "image_size": 16, "transforms": "resize_and_crop", "flip": True}
    it = iter(data.make_loader(src, **kw))
    take(it, 5)
    state = it.get_state()
    expected = take(it, 4)
    it2 = iter(data.make_loader(src, **kw))
    it2.set_state(state)
    assert_batches_equal(take(it2, 4), expected)
    # A different source must not silently accept the state (grain compares reprs).
    with pytest.raises(ValueError, match="does not match"):
        iter(data.make_loader(id_source(8), global_batch_size=4, seed=3, image_size=4)
             ).set_state(state)


def test_iterator_state_with_orbax(tmp_path):
    import orbax.checkpoint as ocp

    src = data.make_source("digits")
    kw = {"global_batch_size": 8, "seed": 0, "image_size": 8, "channels": 1}
    it = iter(data.make_loader(src, **kw))
    take(it, 3)
    with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
        mngr.save(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        mngr.wait_until_finished()
        expected = take(it, 2)
        it2 = iter(data.make_loader(src, **kw))
        mngr.restore(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(it2)))
    assert_batches_equal(take(it2, 2), expected)


def test_worker_processes():
    """worker_count=2: the in-process batches, and the state restores."""
    src = id_source(16)
    kw = {"global_batch_size": 4, "seed": 5, "image_size": 4, "channels": 1, "transforms": "none"}
    base = take(iter(data.make_loader(src, **kw)), 4)
    it = iter(data.make_loader(src, worker_count=2, **kw))
    multi = take(it, 4)
    assert [ids(b).tolist() for b in multi] == [ids(b).tolist() for b in base]
    state = it.get_state()
    expected = take(it, 2)
    it2 = iter(data.make_loader(src, worker_count=2, **kw))
    it2.set_state(state)
    assert_batches_equal(take(it2, 2), expected)


def test_per_process_shard(monkeypatch):
    """ShardByJaxProcess: each of 2 processes gets half of every global batch, disjoint records."""
    src = id_source(16)
    seen = []
    monkeypatch.setattr(jax, "process_count", lambda *a, **k: 2)
    for index in (0, 1):
        monkeypatch.setattr(jax, "process_index", lambda *a, _i=index, **k: _i)
        loader = data.make_loader(src, global_batch_size=8, seed=0, image_size=4, channels=1,
                                  transforms="none", num_epochs=1)
        assert loader.per_process_batch_size == 4
        batches = list(loader)
        assert [b["image"].shape[0] for b in batches] == [4, 4]
        seen.append(set(np.concatenate([ids(b) for b in batches]).tolist()))
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(16))
    with pytest.raises(ValueError, match="multiple of the number of JAX processes"):
        data.make_loader(src, global_batch_size=7, seed=0, image_size=4)


# --------------------------------------------------------------------------- transforms
def test_pair_transforms_identical_for_a_and_b(tmp_path):
    img = rgb(30, 26, 0)
    Image.fromarray(np.concatenate([img, img], 1)).save(tmp_path / "p.png")  # A == B
    src = data.make_source(f"aligned:{tmp_path}", check_aspect=False)  # halves not square
    assert src[0]["A"].shape == (30, 26, 3)
    np.testing.assert_array_equal(src[0]["A"], src[0]["B"])
    loader = data.make_loader(src, global_batch_size=1, seed=0, image_size=16,
                              transforms="resize_and_crop", flip=True)
    assert loader.transform.load_size == (18, 18)  # round(16 * 286 / 256)
    for batch in take(iter(loader), 10):
        assert batch["A"].shape == (1, 16, 16, 3)
        np.testing.assert_array_equal(batch["A"], batch["B"])
    # Both flip outcomes happen, applied to A and B together.
    t = data.ImageTransform(image_size=(30, 26), channels=(("A", 3), ("B", 3)), mode="none",
                            flip=True)
    outs = [t.random_map(src[0], np.random.default_rng(s)) for s in range(16)]
    flipped = [np.array_equal(o["A"], data.to_float(img)[:, ::-1]) for o in outs]
    same = [np.array_equal(o["A"], data.to_float(img)) for o in outs]
    assert any(flipped) and any(same) and all(f or s for f, s in zip(flipped, same))
    assert all(np.array_equal(o["A"], o["B"]) for o in outs)


def test_resize_and_center_crop_shapes():
    img = rgb(218, 178, 0)  # CelebA's aspect
    t = data.ImageTransform(image_size=(64, 64), channels=(("image", 3),), mode="center_crop")
    out = t.random_map({"image": img}, np.random.default_rng(0))["image"]
    assert out.shape == (64, 64, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, data.to_float(data.resize(img[20:198], 64)))
    t = data.ImageTransform(image_size=(256, 256), channels=(("image", 3),),
                            mode="resize_and_crop", load_size=(286, 286))
    assert t.random_map({"image": img}, np.random.default_rng(0))["image"].shape == (256, 256, 3)


def test_box_downsample_numpy_jax_and_pipeline():
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype(np.float32)
    twice = data.box_downsample(data.box_downsample(x, 2), 2)
    manual = x.reshape(2, 8, 2, 8, 2, 3).mean((2, 4))
    np.testing.assert_allclose(data.box_downsample(x, 2), manual, rtol=1e-6)
    np.testing.assert_allclose(data.box_downsample(x, 4), twice, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(data.box_downsample(jnp.asarray(x), 4)), twice,
                               rtol=1e-5, atol=1e-6)
    up = data.upsample_nearest(data.box_downsample(x[0], 2), 2)
    assert up.shape == x[0].shape and up[0, 0, 0] == up[1, 1, 0]
    src = data.make_source("digits:32")
    kw = {"global_batch_size": 8, "seed": 0, "image_size": 32, "channels": 1}
    full = next(iter(data.make_loader(src, **kw)))["image"]
    stage = next(iter(data.make_loader(src, resolution=8, **kw)))["image"]
    assert stage.shape == (8, 8, 8, 1)
    np.testing.assert_allclose(stage, data.box_downsample(full, 4), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="image_size / 2\\*\\*k"):
        data.make_loader(src, resolution=12, **kw)


# --------------------------------------------------------------------------- paired / unpaired
def test_paired_folders_match_by_name(tmp_path):
    for side in "AB":
        (tmp_path / side / "x").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(rgb(8, 8, i)).save(tmp_path / "A" / "x" / f"{i}.png")
        Image.fromarray(rgb(8, 8, 10 + i)).save(tmp_path / "B" / "x" / f"{i}.bmp")
    src = data.make_source(f"pairs:{tmp_path / 'A'},{tmp_path / 'B'}")
    assert len(src) == 3
    np.testing.assert_array_equal(src[2]["A"], rgb(8, 8, 2))
    np.testing.assert_array_equal(src[2]["B"], rgb(8, 8, 12))
    swapped = data.make_source(f"pairs:{tmp_path / 'A'},{tmp_path / 'B'}", direction="BtoA")
    np.testing.assert_array_equal(swapped[2]["A"], rgb(8, 8, 12))
    Image.fromarray(rgb(8, 8, 5)).save(tmp_path / "B" / "x" / "extra.png")
    with pytest.raises(PairMismatchError, match="only in B .*extra"):
        data.make_source(f"pairs:{tmp_path / 'A'},{tmp_path / 'B'}")


def test_unaligned_folders(tmp_path):
    for side, n in (("trainA", 3), ("trainB", 5)):
        (tmp_path / side).mkdir()
        for i in range(n):
            Image.fromarray(np.full((6, 6, 3), 10 * i + (side == "trainB"), np.uint8)).save(
                tmp_path / side / f"{i}.png")
    src = data.make_source(f"unaligned:{tmp_path}")
    explicit = data.make_source(f"unaligned:{tmp_path / 'trainA'},{tmp_path / 'trainB'}")
    assert len(src) == 5 and repr(src) == repr(explicit)
    a_vals = {int(src[i]["A"][0, 0, 0]) for i in range(5)}
    b_vals = {int(src[i]["B"][0, 0, 0]) for i in range(5)}
    assert a_vals == {0, 10, 20} and b_vals == {1, 11, 21, 31, 41}  # every image appears
    batch = next(iter(data.make_loader(src, global_batch_size=2, seed=0, image_size=4)))
    assert batch["A"].shape == batch["B"].shape == (2, 4, 4, 3)
    with pytest.raises(NoImagesFoundError, match="testA"):
        data.make_source(f"unaligned:{tmp_path}", split="test")


# --------------------------------------------------------------------------- embedded defaults
def test_embedded_digits():
    train, test = data.make_source("digits"), data.make_source("digits", split="test")
    assert (len(train), len(test)) == (1500, 297)
    x = train.images
    assert x.shape == (1500, 8, 8, 1) and x.dtype == np.uint8 and x.max() == 255 and x.min() == 0
    assert len(np.unique(x)) == 17  # 0..16 gray levels scaled to 0..255
    for size in (16, 32, 64):
        assert data.make_source(f"digits:{size}")[3]["image"].shape == (size, size, 1)
    batch = next(iter(data.make_loader(train, global_batch_size=64, seed=0, image_size=32)))
    assert batch["image"].shape == (64, 32, 32, 1)


def test_embedded_pix2pix_and_cyclegan_defaults():
    e2p = data.make_source("edges2photos")
    rec = e2p[0]
    assert rec["A"].shape == (256, 256, 1) and rec["B"].shape == (256, 256, 3)
    assert set(np.unique(rec["A"])) == {0, 255} and (rec["A"] == 0).mean() < 0.3
    test = data.make_source("edges2photos", split="test")
    assert set(test.photos.names).isdisjoint(e2p.photos.names)
    g2p = data.make_source("gray2photos", split="test")
    gray, photo = g2p[3]["A"], g2p[3]["B"]
    np.testing.assert_array_equal(photo, test[3]["B"])
    luma = photo.astype(np.float64) @ [0.299, 0.587, 0.114]
    assert gray.shape == (256, 256, 1) and np.abs(gray[:, :, 0] - luma).max() <= 0.5 + 1e-6
    assert repr(g2p) == "Gray2PhotosSource(split='test')"
    p2i = data.make_source("photos2ihc")
    assert len(p2i) == max(len(p2i.a), len(p2i.b))
    a = np.stack([p2i.a[i]["image"] for i in range(0, len(p2i.a), 20)]).reshape(-1, 3)
    b = np.stack([p2i.b[i]["image"] for i in range(0, len(p2i.b), 20)]).reshape(-1, 3)
    # Visually distinct domains: the stained tissue is bright and brown/blue on average.
    assert np.abs(a.mean(0) - b.mean(0)).max() > 30
    batch = next(iter(data.make_loader(e2p, global_batch_size=1, seed=0, image_size=32,
                                       channels=3, transforms="resize_and_crop", flip=True)))
    assert batch["A"].shape == batch["B"].shape == (1, 32, 32, 3)


# --------------------------------------------------------------------------- TFDS (mocked)
@pytest.mark.parametrize("name,split,keys,channels", [
    ("mnist", "train", ("image",), 1),
    ("cifar10", "test", ("image",), 3),
    ("celeb_a", "train", ("image",), 3),
    ("celeb_a_hq/128", "train", ("image",), 3),
    ("lsun/bedroom", "train", ("image",), 3),
    ("cycle_gan/horse2zebra", "train", ("A", "B"), 3),
    ("cycle_gan/horse2zebra", "testB", ("image",), 3),
])
def test_tfds_sources_mocked(name, split, keys, channels):
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        src = data.make_source(f"tfds:{name}", split=split)
        assert len(src) == 6
        rec = src[0]
        assert set(rec) == set(keys)
        assert all(v.dtype == np.uint8 and v.ndim == 3 and v.shape[-1] == channels
                   for v in rec.values())
        loader = data.make_loader(src, global_batch_size=4, seed=0, image_size=16,
                                  transforms="center_crop", flip=True)
        batch = next(iter(loader))
    assert set(batch) == set(keys)
    for v in batch.values():
        assert v.shape == (4, 16, 16, channels) and v.dtype == np.float32
        assert -1.0 <= v.min() <= v.max() <= 1.0
    if name.startswith("cycle_gan") and split == "train":
        assert "trainA" in repr(src) and "trainB" in repr(src)


def test_tfds_errors(tmp_path):
    with pytest.raises(UnknownDatasetError, match="Did you mean: mnist"):
        data.make_source("tfds:mnistt")
    with pytest.raises(UnknownDatasetError, match="horse2zebra"):
        data.make_source("tfds:cycle_gan/horse2zebraa")
    with pytest.raises(UnknownDatasetError, match="needs a config.*bedroom"):
        data.make_source("tfds:lsun")
    with pytest.raises(DatasetNotPreparedError, match="tfds build mnist --file_format=array_record"):
        data.make_source("tfds:mnist", data_dir=str(tmp_path))
    with pytest.raises(DatasetNotPreparedError, match="MANUAL download.*manual_dir"):
        data.make_source("tfds:celeb_a_hq/256", data_dir=str(tmp_path))
    assert issubclass(DatasetNotPreparedError, FileNotFoundError)


# --------------------------------------------------------------------------- bad input
def test_corrupt_file_named_and_skippable(tmp_path):
    for i in range(3):
        Image.fromarray(rgb(8, 8, i)).save(tmp_path / f"ok{i}.png")
    good = (tmp_path / "ok0.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
    src = data.make_source(f"folder:{tmp_path}")
    bad_index = [os.path.basename(f) for f in src.files].index("truncated.png")
    with pytest.raises(CorruptImageError, match="truncated.png.*skip_corrupt=True"):
        src[bad_index]
    loader = data.make_loader(src, global_batch_size=2, seed=0, image_size=8, num_epochs=1)
    with pytest.raises(CorruptImageError, match="truncated.png"):
        list(loader)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        skipping = data.make_source(f"folder:{tmp_path}", skip_corrupt=True)
    assert len(skipping) == 3 and [os.path.basename(f) for f in skipping.skipped_files] == [
        "truncated.png"]
    assert any("skipped 1 unreadable image file(s) of 4" in str(w.message) for w in caught)


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.txt").write_text("x")
    with pytest.raises(NoImagesFoundError, match="no image files .*empty"):
        data.make_source(f"folder:{tmp_path / 'empty'}")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.make_source(f"folder:{tmp_path / 'nope'}")


def test_odd_width_pair(tmp_path):
    Image.fromarray(rgb(8, 15, 0)).save(tmp_path / "odd.png")
    with pytest.raises(NotSideBySideError, match="odd.png.*15x8"):  # not 2 x height
        data.make_source(f"aligned:{tmp_path}")
    # Any even width is allowed with check_aspect=False; an odd one still fails up front.
    with pytest.raises(OddWidthError, match="1 of 1 .*odd.png.*15 pixels wide"):
        data.make_source(f"aligned:{tmp_path}", check_aspect=False)
    with pytest.raises(OddWidthError, match="15 pixels wide"):
        data.split_aligned(rgb(8, 15, 0))


def test_image_smaller_than_crop(tmp_path):
    Image.fromarray(rgb(20, 30, 0)).save(tmp_path / "small.png")
    src = data.make_source(f"folder:{tmp_path}")
    with pytest.raises(ImageTooSmallError, match="20x30 .*smaller than the 24x24 crop"):
        data.make_loader(src, global_batch_size=1, seed=0, image_size=24,
                         transforms="random_crop")
    with pytest.raises(ImageTooSmallError, match="load_size"):
        data.make_loader(src, global_batch_size=1, seed=0, image_size=24,
                         transforms="resize_and_crop", load_size=20)


def test_bad_specs():
    with pytest.raises(UnknownDatasetError, match="unknown data source spec 'mnist'"):
        data.make_source("mnist")
    with pytest.raises(UnknownDatasetError, match="integer size"):
        data.make_source("digits:big")
    with pytest.raises(UnknownDatasetError, match="two folders"):
        data.make_source("pairs:/only/one")
    with pytest.raises(ValueError, match="unknown transforms"):
        data.make_loader(data.make_source("digits"), global_batch_size=2, seed=0, image_size=8,
                         transforms="zoom")


class _Invert(grain.transforms.Map):
    def map(self, element):
        return {"image": 1.0 - element["image"].astype(np.float32) / 127.5}


def test_custom_transform_sequence():
    src = id_source(8)
    loader = data.make_loader(src, global_batch_size=4, seed=0, image_size=4, shuffle=False,
                              transforms=[_Invert()], num_epochs=1)
    assert loader.transform is None
    batch = next(iter(loader))
    np.testing.assert_allclose(batch["image"][:, 0, 0, 0], 1.0 - np.arange(4) / 127.5, rtol=1e-6)


def test_jpeg_decode_size_hint(tmp_path):
    img = np.repeat(np.repeat(smooth(32, 32), 8, 0), 8, 1)  # 256x256, smooth
    Image.fromarray(img).save(tmp_path / "big.jpg", quality=95)
    Image.fromarray(img).save(tmp_path / "big.png")
    full = data.make_source(f"folder:{tmp_path}")
    fast = data.make_source(f"folder:{tmp_path}", decode_size=64)
    assert "decode_size=64" in repr(fast) and repr(full) != repr(fast)
    assert fast[0]["image"].shape == (64, 64, 3)  # JPEG decoded at 1/4 scale
    assert fast[1]["image"].shape == (256, 256, 3)  # PNG: the hint does not apply
    diff = data.resize(fast[0]["image"], 64).astype(int) - data.resize(full[0]["image"], 64)
    assert np.abs(diff).mean() < 3
