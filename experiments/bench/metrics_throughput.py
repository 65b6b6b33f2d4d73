"""Throughput of jaxgan.metrics on this machine: SWD (descriptor extraction and the final distance
separately) at 32x32 and 128x128, and MS-SSIM; optionally the full 16,384-per-side SWD at 128x128
with its peak memory.

    python experiments/bench/metrics_throughput.py            # throughput table (~2-4 min)
    python experiments/bench/metrics_throughput.py --full     # + 16,384 vs 16,384 SWD at 128x128

Timings exclude compilation (one warm-up call per shape). Images are smooth random fields in
[-1, 1] (Gaussian-blurred noise), so sorting sees realistic, non-degenerate data.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.ndimage as ndi

from jaxgan import metrics


def smooth_images(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.RandomState(seed)
    x = rng.randn(n, size, size, 3).astype(np.float32)
    x = ndi.gaussian_filter(x, (0, size / 32, size / 32, 0))
    return np.tanh(x / (x.std() + 1e-8)).astype(np.float32)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def bench_extraction(size: int, batch: int, repeats: int) -> dict:
    imgs = smooth_images(batch, size, 0)
    acc = metrics.SWDAccumulator((size, size, 3), jax.random.key(0))
    acc.update(imgs)  # compile
    t, c = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        acc.update(imgs)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    return {"what": f"swd_descriptors_{size}", "batch": batch, "images": batch * repeats,
            "seconds": dt, "cpu_seconds": dc, "images_per_s": batch * repeats / dt}


def bench_distance(size: int, n: int, impl: str) -> dict:
    accs = []
    for seed in (1, 2):
        acc = metrics.SWDAccumulator((size, size, 3), jax.random.key(seed), capacity=n)
        imgs = smooth_images(min(n, 256), size, seed)
        for i in range(0, n, imgs.shape[0]):
            acc.update(imgs[: min(imgs.shape[0], n - i)])
        accs.append(acc)
    if impl == "jax":  # exclude compilation: warm up on the same shapes
        metrics.swd_from_accumulators(*accs, jax.random.key(9), impl=impl)
    t, c = time.perf_counter(), time.process_time()
    out = metrics.swd_from_accumulators(*accs, jax.random.key(9), impl=impl)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    return {"what": f"swd_distance_{size}_{impl}", "images_per_side": n, "seconds": dt,
            "cpu_seconds": dc, "images_per_s": n / dt, "swd_avg": out["swd_avg"]}


def bench_ms_ssim(size: int, pairs: int, repeats: int) -> dict:
    a = jnp.asarray(smooth_images(pairs, size, 3))
    b = jnp.asarray(smooth_images(pairs, size, 4))
    metrics.ms_ssim(a, b).block_until_ready()
    t, c = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        metrics.ms_ssim(a, b).block_until_ready()
    dt, dc = time.perf_counter() - t, time.process_time() - c
    return {"what": f"ms_ssim_{size}", "pairs": pairs * repeats, "seconds": dt, "cpu_seconds": dc,
            "pairs_per_s": pairs * repeats / dt, "images_per_s": 2 * pairs * repeats / dt}


def full_run(n: int = 16384, size: int = 128, batch: int = 256) -> dict:
    """n real vs n generated images at size x size, streamed through evaluate_generator."""
    real_src = smooth_images(batch, size, 5)
    fake_src = smooth_images(batch, size, 6)

    def sample_fn(key, k):
        return np.roll(fake_src[:k], int(jax.random.randint(key, (), 0, size)), axis=2)

    def reals():
        i = 0
        while True:
            yield np.roll(real_src, i % size, axis=1)
            i += 1

    t, c = time.perf_counter(), time.process_time()
    out = metrics.evaluate_generator(
        sample_fn, reals(), metrics=("swd",), num_images=n, key=jax.random.key(0),
        batch_size=batch,
    )
    dt, dc = time.perf_counter() - t, time.process_time() - c
    return {"what": f"swd_full_{n}_{size}", "seconds": dt, "cpu_seconds": dc,
            "peak_rss_gib": peak_rss_gib(), **out}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--full", action="store_true", help="also run 16,384 vs 16,384 at 128x128")
    p.add_argument("--full-only", action="store_true")
    args = p.parse_args()
    info = {"load_average": os.getloadavg(), "cpus": os.cpu_count(),
            "python": sys.version.split()[0], "jax": jax.__version__, "numpy": np.__version__,
            "backend": jax.default_backend(), "devices": str(jax.devices()),
            "machine": platform.machine(), "processor": platform.processor()}
    print(json.dumps(info), flush=True)
    rows = []
    if not args.full_only:
        rows += [bench_extraction(32, 256, 8), bench_extraction(128, 64, 4)]
        for row in rows[-2:]:
            print(json.dumps(row), flush=True)
        for size, n, impl in ((32, 2048, "numpy"), (128, 512, "numpy"), (32, 512, "numpy"),
                              (32, 512, "jax")):
            rows.append(bench_distance(size, n, impl))
            print(json.dumps(rows[-1]), flush=True)
        for size, pairs in ((32, 256), (128, 64), (256, 16)):
            rows.append(bench_ms_ssim(size, pairs, 4))
            print(json.dumps(rows[-1]), flush=True)
    if args.full or args.full_only:
        rows.append(full_run())
        print(json.dumps(rows[-1]), flush=True)
    print(f"peak RSS of this process: {peak_rss_gib():.2f} GiB", flush=True)


if __name__ == "__main__":
    main()
