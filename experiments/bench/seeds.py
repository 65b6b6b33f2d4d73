"""Throughput of a study (``--config.seeds``): K replicas trained as one vmapped step against
one run of one seed, on the default digits configs.

    python experiments/bench/seeds.py [--replicas 1,2,4,8] [--configs dcgan,pggan]
                                      [--steps 10] [--warmup 3]

For each config and K, in a fresh process of its own: the jitted study step
(``make_train_step(..., replicas=True)``, state donated) on K stacked states and batches,
against the plain single-run step (K = "1 run"); median seconds per step after warm-up,
images/s in all and per replica, and the line

    ratio <config> K=<k> <per-replica img/s of the study / img/s of one run>

(above 1.0: a replica of the study trains faster than a run alone, so K seeds take less
than K runs' time). DCGAN: its CPU default (32x32 digits, batch 64, widths 32). PGGAN: its
CPU default at the last stage (32x32, batch 16), where it spends most of its steps. The
process sees the devices a default entry point does (one on the CPU) and runs with
``JAXGAN_CPU_MALLOC=1`` on a CPU. Results: experiments/bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def measure(name: str, replicas: int, steps: int, warmup: int) -> dict:
    """Time ``replicas`` replicas of ``name``'s default config (0: one plain run)."""
    import jax
    import numpy as np

    from jaxgan.experiments import memory, runner

    if jax.default_backend() == "cpu":
        memory.keep_freed_memory()
    if name == "dcgan":
        from jaxgan.configs import dcgan as cfg
        from jaxgan.train import dcgan as T

        config = cfg.get_config()
        stage, batch_size = 0, int(config.batch_size)
        shape = (batch_size, config.image_size, config.image_size, config.channels)

        def create(seed):
            return T.create_state(config, jax.random.key(seed))
    else:
        from jaxgan.configs import pggan as cfg
        from jaxgan.train import pggan as T

        config = cfg.get_config()
        stage = T.num_stages(config) - 1
        batch_size = T.stage_batch_size(config, stage)
        res = T.stage_resolution(stage)
        shape = (batch_size, res, res, config.channels)

        def create(seed):
            return T.create_state(config, jax.random.key(seed), stage)
    k = max(replicas, 1)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (k, *shape)).astype(np.float32)
    if replicas == 0:
        step = T.make_train_step(config)
        state, batch, key = create(0), {"image": images[0]}, jax.random.key(1)
    else:
        step = T.make_train_step(config, replicas=True)
        state = runner.stack_replicas([create(s) for s in range(k)])
        batch = {"image": images}
        key = runner.stack_replicas([jax.random.key(100 + s) for s in range(k)])
    t0 = time.perf_counter()
    state, metrics = step(state, batch, key)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t0
    for _ in range(warmup):
        state, metrics = step(state, batch, key)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = step(state, batch, key)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    return {"config": name, "replicas": replicas, "stage": stage, "batch": batch_size,
            "first_call_s": compile_s, "step_s": sec, "img_s": k * batch_size / sec,
            "img_s_per_replica": batch_size / sec, "backend": jax.default_backend(),
            "devices": jax.device_count()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicas", default="1,2,4,8")
    p.add_argument("--configs", default="dcgan,pggan")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--one", help=argparse.SUPPRESS)  # "name,replicas": time in this process
    a = p.parse_args()
    if a.one:
        name, replicas = a.one.split(",")
        print(json.dumps(measure(name, int(replicas), a.steps, a.warmup)))
        return
    env = dict(os.environ, JAXGAN_CPU_MALLOC="1")
    print(f"study throughput: {a.steps} timed steps after {a.warmup} warm-up, one process "
          "per row, JAXGAN_CPU_MALLOC=1")
    print(f"{'config':<7} {'K':>6} {'stage':>5} {'batch':>5} {'first call s':>12} "
          f"{'s/step':>8} {'img/s':>8} {'img/s/replica':>13} {'vs 1 run':>8}")
    for name in a.configs.split(","):
        base = None
        for replicas in [0, *map(int, a.replicas.split(","))]:
            out = subprocess.run(
                [sys.executable, __file__, "--one", f"{name},{replicas}", "--steps",
                 str(a.steps), "--warmup", str(a.warmup)],
                env=env, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            base = r["img_s"] if replicas == 0 else base
            ratio = r["img_s_per_replica"] / base
            k = "1 run" if replicas == 0 else str(replicas)
            print(f"{name:<7} {k:>6} {r['stage']:>5} {r['batch']:>5} "
                  f"{r['first_call_s']:>12.1f} {r['step_s']:>8.3f} {r['img_s']:>8.1f} "
                  f"{r['img_s_per_replica']:>13.1f} {ratio:>7.2f}x", flush=True)
            if replicas:
                print(f"ratio {name} K={replicas} {ratio:.3f}", flush=True)


if __name__ == "__main__":
    main()
