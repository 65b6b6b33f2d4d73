"""Regression tests for jaxgan.data's up-front checks, error messages and worker processes:
CLI-level fixes in messages, TFDS download failures, aligned-folder shapes, EXIF
orientation, upscale warnings, worker_count-independent batches, no orphaned workers."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxgan import data
from jaxgan.data import (
    CorruptImageError,
    DataError,
    DatasetDownloadError,
    DatasetNotPreparedError,
    NotSideBySideError,
)
from jaxgan.data.pipeline import _WorkerOrderSampler

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rgb(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def gradient(h, w):
    """Smooth and asymmetric (x in red, y in green): JPEG keeps it, rotations tell apart."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 128)],
                    -1).astype(np.uint8)


# --------------------------------------------------------------------------- 1: corrupt files
def test_corrupt_image_error_names_the_cli_flag(tmp_path):
    Image.fromarray(rgb(8, 8, 0)).save(tmp_path / "ok.png")
    good = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "broken.png").write_bytes(good[: len(good) // 2])
    src = data.make_source(f"folder:{tmp_path}")
    bad = [os.path.basename(f) for f in src.files].index("broken.png")
    with pytest.raises(CorruptImageError) as info:
        src[bad]
    assert "broken.png" in str(info.value)
    assert "--config.data.skip_corrupt=True" in str(info.value)


# --------------------------------------------------------------------------- 2: TFDS download
def test_tfds_not_prepared_names_the_cli_flag(tmp_path):
    with pytest.raises(DatasetNotPreparedError) as info:
        data.make_source("tfds:mnist", data_dir=str(tmp_path))
    assert "--config.data.download=True" in str(info.value)


def test_tfds_failed_download_reports_the_cause(tmp_path, monkeypatch):
    def offline(self, *args, **kwargs):
        raise ConnectionError("no route to host (offline test)")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    with pytest.raises(DatasetDownloadError) as info:
        data.make_source("tfds:mnist", data_dir=str(tmp_path), download=True)
    first_line = str(info.value).splitlines()[0]
    assert "mnist" in first_line and "failed" in first_line
    assert "ConnectionError: no route to host (offline test)" in first_line
    assert "not prepared" not in str(info.value)
    assert isinstance(info.value.__cause__, ConnectionError)
    assert isinstance(info.value, DatasetNotPreparedError)  # still caught as "not prepared"


# --------------------------------------------------------------------------- 3: aligned shapes
def test_aligned_folder_of_non_pairs_fails_up_front(tmp_path, monkeypatch):
    Image.fromarray(rgb(16, 32, 0)).save(tmp_path / "a_pair.png")  # A|B: 2 x 16 wide
    Image.fromarray(rgb(16, 16, 1)).save(tmp_path / "b_single.png")
    Image.fromarray(rgb(16, 48, 2)).save(tmp_path / "c_triple.jpg")
    # The check reads headers only: building the source decodes no image.
    monkeypatch.setattr("jaxgan.data.sources.decode_image",
                        lambda *a, **k: pytest.fail("decoded a file to check its size"))
    with pytest.raises(NotSideBySideError) as info:
        data.make_source(f"aligned:{tmp_path}")
    msg = str(info.value)
    assert isinstance(info.value, DataError)
    assert "b_single.png" in msg and "16x16" in msg  # the first offending file and its size
    assert "2 of 3 files" in msg
    assert "width = 2 x height" in msg and "pix2pix" in msg
    # Halves that are not square are allowed on request (any even width).
    assert len(data.make_source(f"aligned:{tmp_path}", check_aspect=False)) == 3


def test_aligned_pairs_pass_the_check(tmp_path):
    for i in range(2):
        Image.fromarray(rgb(12, 24, i)).save(tmp_path / f"{i}.png")
    src = data.make_source(f"aligned:{tmp_path}")
    assert src[0]["A"].shape == src[0]["B"].shape == (12, 12, 3)
    assert src.image_sizes() == [(12, 12), (12, 12)]


def test_source_options_a_kind_does_not_take_raise():
    with pytest.raises(DataError, match="'digits' sources take no option skip_corrupt"):
        data.make_source("digits", skip_corrupt=True)
    with pytest.raises(DataError, match="'folder' sources take no option download"):
        data.make_source("folder:/nowhere", download=True)


# --------------------------------------------------------------------------- 4: EXIF, upscaling
@pytest.mark.parametrize("orientation,turns", [(6, -1), (8, 1)])  # 6: 90 deg clockwise
def test_exif_orientation_applied(tmp_path, orientation, turns):
    img = gradient(8, 16)
    exif = Image.Exif()
    exif[0x0112] = orientation  # EXIF Orientation
    Image.fromarray(img).save(tmp_path / "phone.jpg", quality=95, exif=exif.tobytes())
    src = data.make_source(f"folder:{tmp_path}")
    out = src[0]["image"]
    assert out.shape == (16, 8, 3)
    upright = np.rot90(img, turns)
    assert np.abs(out.astype(int) - upright).mean() < 4
    assert np.abs(out.astype(int) - np.rot90(img, -turns)).mean() > 40
    assert src.image_sizes() == [(16, 8)]  # header size, upright too
    assert data.make_source(f"folder:{tmp_path}", decode_size=8)[0]["image"].shape == (16, 8, 3)


def _upscale_warnings(caught):
    return [str(w.message) for w in caught if "upscaled" in str(w.message)]


def test_small_folder_images_warn_once_up_front(tmp_path):
    Image.fromarray(rgb(8, 8, 0)).save(tmp_path / "tiny.png")
    Image.fromarray(rgb(10, 12, 1)).save(tmp_path / "small.png")
    Image.fromarray(rgb(40, 40, 2)).save(tmp_path / "big.png")
    src = data.make_source(f"folder:{tmp_path}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = data.make_loader(src, global_batch_size=3, seed=0, image_size=32)
        for _, _ in zip(range(3), loader):
            pass
    (msg,) = _upscale_warnings(caught)  # once, for the loader, not per record
    assert "2 of 3 images" in msg and "8x8" in msg and "32x32" in msg
    with pytest.warns(UserWarning, match=r"2 of 3 images .*12x12.*smallest is 8x8"):
        data.make_loader(src, global_batch_size=1, seed=0, image_size=8,
                         transforms="resize_and_crop", load_size=12)
    with pytest.warns(UserWarning, match=r"1 of 3 images .*10x10.*'center_crop'"):
        data.make_loader(src, global_batch_size=1, seed=0, image_size=10,
                         transforms="center_crop")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data.make_loader(src, global_batch_size=1, seed=0, image_size=8)
    assert _upscale_warnings(caught) == []


def test_small_aligned_halves_warn(tmp_path):
    Image.fromarray(rgb(16, 32, 0)).save(tmp_path / "pair.png")  # halves 16x16
    src = data.make_source(f"aligned:{tmp_path}")
    with pytest.warns(UserWarning, match=r"1 of 1 images .*smallest is 16x16.*upscaled"):
        data.make_loader(src, global_batch_size=1, seed=0, image_size=32)


# --------------------------------------------------------------------------- 5: worker_count
def _worker_stream(sampler_len, workers, batch, shards, shard):
    """Local positions of the batches grain's DataLoader emits: worker w reads the local
    positions w, w + W, ..., batches them, and the workers take turns."""
    local = sampler_len // shards
    per_worker = [list(range(w, local, workers)) for w in range(workers)]
    batches = [[p[j:j + batch] for j in range(0, len(p) - batch + 1, batch)]
               for p in per_worker]
    out = []
    for j in range(max(len(b) for b in batches)):
        out += [b[j] for b in batches if j < len(b)]
    return out


@pytest.mark.parametrize("workers,batch,shards", [(2, 4, 1), (3, 2, 2), (1, 3, 1)])
def test_worker_order_sampler_maps_worker_batches_to_in_process_batches(workers, batch,
                                                                         shards):
    class Positions:  # an IndexSampler stand-in whose records are their positions
        def __len__(self):
            return 10 * workers * batch * shards

        def __getitem__(self, i):
            return i

    sampler = _WorkerOrderSampler(Positions(), worker_count=workers, batch_size=batch,
                                  shard_count=shards)
    for shard in range(shards):
        stream = _worker_stream(len(sampler), workers, batch, shards, shard)
        got = [[sampler[q * shards + shard] for q in b] for b in stream]
        want = [[(k * batch + i) * shards + shard for i in range(batch)]
                for k in range(len(stream))]
        assert got == want


def test_worker_count_does_not_change_batches():
    images = np.random.default_rng(0).integers(0, 256, (24, 12, 12, 3), dtype=np.uint8)
    src = data.ArraySource(images, name="random24")
    kw = {"global_batch_size": 4, "seed": 3, "image_size": 8, "transforms": "random_crop",
          "flip": True, "shuffle": True}
    in_process = iter(data.make_loader(src, worker_count=0, **kw))
    workers = iter(data.make_loader(src, worker_count=2, **kw))
    base = [next(in_process) for _ in range(8)]
    multi = [next(workers) for _ in range(8)]
    for b, m in zip(base, multi):
        np.testing.assert_array_equal(b["image"], m["image"])
    assert len({b["image"].tobytes() for b in base}) == 8


# --------------------------------------------------------------------------- 6: orphans
_CHILD = """
import multiprocessing, sys
import numpy as np
from absl import flags
flags.FLAGS.mark_as_parsed()
from jaxgan import data

if __name__ == "__main__":
    src = data.ArraySource(np.zeros((16, 8, 8, 3), np.uint8), name="zeros")
    it = iter(data.make_loader(src, global_batch_size=2, seed=0, image_size=8,
                               worker_count=2))
    next(it), next(it)  # one batch from each worker: both are up
    print("WORKERS", *(p.pid for p in multiprocessing.active_children()), flush=True)
    sys.stdin.readline()  # wait to be killed
"""


def _proc_stat(pid):
    """(state, ppid, start time) of a process from /proc, None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), int(fields[19])


def _descendants(root):
    """{pid: start time} of every live descendant of ``root``."""
    stats = {int(p): s for p in os.listdir("/proc") if p.isdigit()
             if (s := _proc_stat(p)) is not None}
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (_, ppid, start) in stats.items():
            if ppid == parent and pid not in found:
                found[pid] = start
                frontier.append(pid)
    return found


def _alive(pid, start):
    stat = _proc_stat(pid)
    return stat is not None and stat[2] == start and stat[0] not in "ZX"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_exit_when_the_training_process_is_killed(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(_CHILD))
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    procs = {}
    try:
        line, deadline = "", time.monotonic() + 120
        while not line.startswith("WORKERS"):
            remaining = deadline - time.monotonic()
            assert remaining > 0 and child.poll() is None, "the child did not start its workers"
            if select.select([child.stdout], [], [], remaining)[0]:
                line = child.stdout.readline()
        workers = {int(p) for p in line.split()[1:]}
        procs = _descendants(child.pid)
        assert len(workers) == 2 and workers <= set(procs)
        assert len(procs) >= 3  # the two workers and multiprocessing's resource tracker
        child.kill()  # SIGKILL: no atexit, no finalizers
        child.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(_alive(p, s) for p, s in procs.items()) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = [p for p, s in procs.items() if _alive(p, s)]
        assert not survivors, f"processes outlived the SIGKILLed parent: {survivors}"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for pid, start in procs.items():
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)
