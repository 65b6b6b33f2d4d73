"""Input-pipeline throughput (images/s) of jaxgan.data on this machine.

Cases (each for worker_count 0 and 2):
  * digits:   embedded scikit-learn digits, "digits:64" at 64x64x1, batch 64 (DCGAN on digits);
  * jpeg64:   a folder of N generated 256x256 JPEGs, resized to 64x64x3, batch 64 (DCGAN);
  * jpeg64-draft: the same with make_source(..., decode_size=64) (JPEG DCT-scaled decoding);
  * jpeg256:  the same folder, pix2pix/CycleGAN preprocessing (resize 286, random crop 256,
              flip), batch 1;
  * edges2photos: the embedded pix2pix pairs (Canny per record), 286 -> 256 + flip, batch 1.

The JPEGs are natural-image crops (scikit-image's bundled photos, random position, scale and
flip, quality 90) written to a temporary folder. Worker start-up (spawned processes) and the
first batches are excluded from timing. Finally a stand-in CPU train step (jitted matmul chain
of about --step-seconds) is timed alone and with one jpeg64 batch fetched per step, to show
whether the pipeline slows a CPU training loop.

    python experiments/bench/data_throughput.py [--num-images 512] [--seconds 8]
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
from absl import flags
from PIL import Image


def make_jpeg_folder(root: str, n: int, seed: int = 0) -> None:
    import skimage.data

    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(),
              skimage.data.rocket(), skimage.data.immunohistochemistry()]
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = photos[i % len(photos)]
        s = int(rng.integers(256, min(img.shape[:2]) + 1))
        top = int(rng.integers(0, img.shape[0] - s + 1))
        left = int(rng.integers(0, img.shape[1] - s + 1))
        crop = Image.fromarray(img[top:top + s, left:left + s]).resize((256, 256), Image.BICUBIC)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        sub = os.path.join(root, f"{i % 8}")
        os.makedirs(sub, exist_ok=True)
        crop.save(os.path.join(sub, f"{i:05d}.jpg"), quality=90)


def measure(loader, warmup: int, seconds: float, max_batches: int) -> tuple[float, float, int]:
    """Returns (images/s, ms/batch, batches timed) after `warmup` batches."""
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    count, images = 0, 0
    t0 = time.perf_counter()
    while count < max_batches and (time.perf_counter() - t0) < seconds:
        batch = next(it)
        images += next(iter(batch.values())).shape[0]
        count += 1
    dt = time.perf_counter() - t0
    return images / dt, 1e3 * dt / count, count


def simulated_step_overhead(loaders, steps: int, step_seconds: float
                            ) -> list[tuple[str, float]]:
    """Mean wall time of a stand-in CPU train step (a jitted matmul chain sized to take about
    `step_seconds`, dispatched asynchronously like a real step) alone, and with
    `next(iterator)` per step for each `(label, make_loader_thunk)` in `loaders`."""
    import jax
    import jax.numpy as jnp

    x = jnp.ones((1024, 1024), jnp.float32) * 1e-3

    @jax.jit
    def chain(x, n):
        return jax.lax.fori_loop(0, n, lambda i, y: jnp.tanh(y @ x), x)

    chain(x, 1).block_until_ready()
    t0 = time.perf_counter()
    chain(x, 8).block_until_ready()
    n = max(1, int(8 * step_seconds / (time.perf_counter() - t0)))

    def run(it):
        y = chain(x, n)  # warm-up step
        if it is not None:
            next(it)
        y.block_until_ready()
        t0 = time.perf_counter()
        for _ in range(steps):
            y = chain(x, n)  # async dispatch: the host fetches the next batch meanwhile
            if it is not None:
                next(it)
            y.block_until_ready()
        return (time.perf_counter() - t0) / steps

    out = [("step alone", run(None))]
    for label, make in loaders:
        it = iter(make())
        for _ in range(3):
            next(it)
        out.append((f"step + next(batch), {label}", run(it)))
    out.append(("step alone (again)", run(None)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=8.0, help="time budget per case")
    parser.add_argument("--max-batches", type=int, default=400)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--step-seconds", type=float, default=0.5,
                        help="stand-in train step length for the overlap check (0: skip)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--cases", nargs="+",
                        default=["digits", "jpeg64", "jpeg64-draft", "jpeg256",
                                 "edges2photos"])
    args = parser.parse_args()
    flags.FLAGS.mark_as_parsed()  # grain reads absl flags

    import grain
    import jax

    from jaxgan import data

    print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at start; python {platform.python_version()}, "
          f"jax {jax.__version__}, grain {getattr(grain, '__version__', '?')}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        if any(c.startswith("jpeg") for c in args.cases):
            make_jpeg_folder(tmp, args.num_images)
            print(f"# wrote {args.num_images} JPEGs of 256x256 in {time.perf_counter() - t0:.1f}s")
        cases = {
            "digits": (lambda: data.make_source("digits:64"),
                       {"global_batch_size": 64, "image_size": 64, "channels": 1}),
            "jpeg64": (lambda: data.make_source(f"folder:{tmp}"),
                       {"global_batch_size": 64, "image_size": 64, "channels": 3}),
            "jpeg64-draft": (lambda: data.make_source(f"folder:{tmp}", decode_size=64),
                             {"global_batch_size": 64, "image_size": 64, "channels": 3}),
            "jpeg256": (lambda: data.make_source(f"folder:{tmp}"),
                        {"global_batch_size": 1, "image_size": 256, "channels": 3,
                         "transforms": "resize_and_crop", "flip": True}),
            "edges2photos": (lambda: data.make_source("edges2photos"),
                             {"global_batch_size": 1, "image_size": 256, "channels": 3,
                              "transforms": "resize_and_crop", "flip": True}),
        }
        for name in args.cases:
            make_src, kw = cases[name]
            src = make_src()
            for workers in args.workers:
                loader = data.make_loader(src, seed=0, worker_count=workers, **kw)
                warmup = 3 if kw["global_batch_size"] > 1 else 20
                ips, ms, n = measure(loader, warmup, args.seconds, args.max_batches)
                rows.append((name, kw["global_batch_size"], workers, ips, ms, n,
                             os.getloadavg()[0]))
                print(f"{name:13s} batch {kw['global_batch_size']:3d} workers {workers}: "
                      f"{ips:8.1f} images/s, {ms:8.2f} ms/batch ({n} batches)", flush=True)
        overlap = []
        if args.step_seconds > 0 and "jpeg64" in args.cases:
            kw = {"seed": 0, "global_batch_size": 64, "image_size": 64, "channels": 3}
            full = data.make_source(f"folder:{tmp}")
            draft = data.make_source(f"folder:{tmp}", decode_size=64)
            overlap = simulated_step_overhead([
                ("worker_count=0", lambda: data.make_loader(full, worker_count=0, **kw)),
                ("worker_count=2", lambda: data.make_loader(full, worker_count=2, **kw)),
                ("decode_size=64, worker_count=0",
                 lambda: data.make_loader(draft, worker_count=0, **kw)),
            ], args.steps, args.step_seconds)
    print("\n| case | batch | worker_count | images/s | ms/batch | batches timed | load avg |")
    print("|---|---|---|---|---|---|---|")
    for name, b, w, ips, ms, n, load in rows:
        print(f"| {name} | {b} | {w} | {ips:.0f} | {ms:.1f} | {n} | {load:.1f} |")
    if overlap:
        print("\nStand-in CPU train step with jpeg64 batches (batch 64, 64x64x3):\n")
        print("| loop | s/step |")
        print("|---|---|")
        for name, sec in overlap:
            print(f"| {name} | {sec:.3f} |")


if __name__ == "__main__":
    main()
