"""jaxgan train steps against PyTorch reference train steps, side by side on this machine.

    python experiments/bench/run.py [--quick] [--workloads dcgan64,pix2pix256_b1,...]
                                    [--repeats N] [--warmup N] [--malloc keep|default]
                                    [--rounds N] [--dtype float32|bfloat16]

For every workload, each timed in a fresh process of its own, on the same machine: the
jaxgan fused train step (``make_train_step``: jit, state donated) and a PyTorch step of the
same architecture, batch and precision written in experiments/bench/_torch_models.py
(parameter counts asserted against shared REFERENCE.md). Precision: float32, or with
``--dtype bfloat16`` mixed precision on both sides: jaxgan's ``model.dtype = "bfloat16"``
(:class:`jaxgan.train.common.MixedPrecision`) against the PyTorch step under
``torch.autocast(dtype=torch.bfloat16)`` (AMP; float32 parameters and optimizer in both).
Prints per workload the median step time after warm-up, images/s, jaxgan's compile time
(lower + compile of the first call), XLA's cost-analysis FLOPs of the step and the achieved
GFLOP/s against this machine's measured f32 matmul peak, and the line

    ratio <workload> <jaxgan img/s / torch img/s>

On a CPU-only run (jaxgan's backend and PyTorch's device both the CPU) the timing
processes run as CPU training is meant to: with ``JAXGAN_CPU_MALLOC=1`` in their
environment, glibc told to keep freed memory for reuse (``jaxgan.experiments.memory``), in
the PyTorch processes too, so both frameworks run with the same allocator settings;
``--malloc default``, or a GPU, leaves glibc's defaults for both. The header says which.
(In one shared process the heap that one framework kept would crowd the other: PGGAN 128
reached 24.3 GB and PyTorch's step slowed 2x.)

Needs PyTorch (``pip install -e ".[bench]"``). Results: experiments/bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.experiments import memory

WORKLOADS = ("dcgan64", "pix2pix256_b1", "pix2pix256_b8", "cyclegan256_b1", "pggan32_b16",
             "pggan128_b16")
# --quick: a subset that together with fewer repeats stays under 5 minutes on 2 cores.
QUICK_WORKLOADS = ("dcgan64", "pix2pix256_b1", "pggan32_b16")


@dataclasses.dataclass
class JaxWorkload:
    """A jaxgan train step ready to time: ``step(state, batch, key) -> (state, metrics)``."""

    name: str
    batch_size: int
    step: Callable[..., Any]
    state: Any
    batch: dict
    key: jax.Array
    g_params: int
    d_params: int


def _param_count(tree: Any) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def _images(rng: np.random.Generator, n: int, size: int, ch: int = 3) -> jax.Array:
    return jnp.asarray(rng.uniform(-1.0, 1.0, (n, size, size, ch)).astype(np.float32))


def parse_workload(name: str) -> tuple[str, int, int]:
    """``'pix2pix256_b8'`` -> ``('pix2pix', 256, 8)``; ``'dcgan64'`` -> ``('dcgan', 64, 64)``."""
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
    if name == "dcgan64":
        return "dcgan", 64, 64
    head, b = name.split("_b")
    family = head.rstrip("0123456789")
    return family, int(head[len(family):]), int(b)


def make_jax_workload(name: str, impl: str = "auto", seed: int = 0, dtype: str = "float32"
                      ) -> JaxWorkload:
    """Build the jaxgan state, jitted step and a random batch for a workload."""
    from jaxgan.train import cyclegan, dcgan, pggan, pix2pix

    family, size, n = parse_workload(name)
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    stage = None
    if family == "dcgan":
        mod, cfg = dcgan, dcgan.default_config()
        cfg.batch_size = n
        batch = {"image": _images(rng, n, size)}
    elif family in ("pix2pix", "cyclegan"):
        mod = pix2pix if family == "pix2pix" else cyclegan
        cfg = mod.default_config()
        cfg.batch_size, cfg.image_size = n, size
        batch = {"A": _images(rng, n, size), "B": _images(rng, n, size)}
    else:
        mod, cfg = pggan, pggan.default_config()
        cfg.resolution = size  # the network truncated at this stage (its last one)
        stage = pggan.num_stages(cfg) - 1
        batch = {"image": _images(rng, n, size)}
    cfg.model.impl = impl
    cfg.model.dtype = dtype
    if stage is None:
        state = mod.create_state(cfg, key)
    else:
        # halfway through the fade: alpha = 0.5, traced as in a real fade
        half = int(cfg.schedule.fade_kimg * 500)
        state = pggan.create_state(cfg, key, stage=stage).replace(
            stage_images=jnp.asarray(half, jnp.int32))
    step = mod.make_train_step(cfg)
    return JaxWorkload(name, n, step, state, batch, key, _param_count(state.g_params),
                       _param_count(state.d_params))


def cost_flops(compiled: Any) -> float | None:
    """FLOPs of one call from XLA's cost analysis (None when the backend gives none)."""
    try:
        ca = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else None
    if not ca or "flops" not in ca:
        return None
    return float(ca["flops"])


def time_jax(w: JaxWorkload, warmup: int, repeats: int) -> dict:
    """Compile (timed), one step, then ``warmup`` untimed and ``repeats`` timed steps
    (median)."""
    t0 = time.perf_counter()
    lowered = w.step.lower(w.state, w.batch, w.key)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    flops = cost_flops(compiled)
    state, metrics = compiled(w.state, w.batch, w.key)
    jax.block_until_ready(state)
    memory.hold_freed_memory(True)  # as the runner, once the program has run (as torch's)
    for _ in range(warmup):
        state, metrics = compiled(state, w.batch, w.key)
    jax.block_until_ready(state)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        state, metrics = compiled(state, w.batch, w.key)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - t)
    if not bool(metrics["finite"]):
        raise RuntimeError(f"{w.name}: jaxgan step produced non-finite values")
    return {"trace_s": t1 - t0, "compile_s": t2 - t0, "flops": flops,
            "step_s": statistics.median(times), "times": times}


def make_torch_step(name: str, dtype: str = "float32") -> Callable[[], Any]:
    """The PyTorch reference step; ``dtype="bfloat16"`` runs its forward passes under
    autocast (bfloat16 AMP: convolutions and matmuls in bfloat16, float32 parameters and
    optimizer). On a CUDA machine the step is built on the GPU, in channels_last (cuDNN's
    fast layout), with TF32 allowed as in XLA's default precision, as jaxgan runs on the GPU
    there (:func:`_torch_models.use_device`)."""
    T = torch_models()
    cuda = T.use_device() == "cuda"
    T.set_autocast(dtype)
    family, size, n = parse_workload(name)
    if family == "dcgan":
        step = T.DCGANStep(n)
    elif family == "pix2pix":
        step = T.Pix2PixStep(n, size)
    elif family == "cyclegan":
        step = T.CycleGANStep(n, size)
    else:
        step = T.PGGANStep(size, n)
    if cuda:
        T.to_channels_last(step)
    return step


def time_calls(call: Callable[[], Any], warmup: int, repeats: int) -> dict:
    """``warmup`` untimed and ``repeats`` timed calls of ``call``, which must wait for its
    results (the PyTorch steps return python floats; conv.py's jax calls block): the median
    and every time, in seconds."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return {"step_s": statistics.median(times), "times": times}


def matmul_peak(n: int = 2048, repeats: int = 5) -> dict:
    """Measured f32 matmul GFLOP/s (n x n @ n x n) in jax and (if given) torch."""
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n), dtype=np.float32))
    f = jax.jit(lambda x: x @ x)
    jax.block_until_ready(f(a))
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(a))
        ts.append(time.perf_counter() - t)
    out = {"jax": 2 * n**3 / min(ts) / 1e9}
    try:
        import torch

        device = torch_models().use_device()  # as make_torch_step: TF32 on CUDA
        ta = torch.randn(n, n, device=device)
        ta @ ta
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            ta @ ta
            if device == "cuda":
                torch.cuda.synchronize()
            ts.append(time.perf_counter() - t)
        out["torch"] = 2 * n**3 / min(ts) / 1e9
    except ImportError:
        pass
    return out


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"# {cpu}, {os.cpu_count()} cores, python {platform.python_version()}, "
            f"jax {jax.__version__} ({jax.default_backend()}: {jax.devices()[0].device_kind}), "
            f"load1 {load:.2f}")


def torch_models() -> Any:
    """The PyTorch reference models, ``experiments/bench/_torch_models.py`` (imports torch)."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import _torch_models

    return _torch_models


def require_torch() -> Any:
    try:
        import torch
    except ImportError:
        sys.exit("experiments/bench/run.py needs PyTorch for the reference steps: "
                 "pip install -e \".[bench]\" (on the 2-core CPU machines: "
                 "pip install torch==2.13.0 first, see DESIGN.md)")
    return torch


def _run_child(framework: str, name: str, args: argparse.Namespace) -> dict:
    """Time one framework on one workload in a fresh process; returns its result dict."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", framework, "--workloads", name,
           "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--impl", args.impl,
           "--malloc", args.malloc, "--dtype", args.dtype]
    if args.compile_cache:
        cmd += ["--compile-cache", args.compile_cache]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False,
                         env=getattr(args, "child_env", None))
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    sys.stderr.write(out.stdout[-2000:] + out.stderr[-4000:])
    raise RuntimeError(f"{framework} {name}: the timing process failed (exit {out.returncode})")


def _alternate_rounds(name: str, args: argparse.Namespace, with_torch: bool
                      ) -> tuple[dict, dict | None]:
    """``args.rounds`` fresh-process timings per framework, alternating (jaxgan first in
    even rounds, PyTorch in odd ones); each result's ``times`` pools every round's timed
    steps and ``step_s`` is their median. jaxgan's result also lists ``round_ratios``
    (PyTorch's median over jaxgan's, per round) and keeps the first round's compile time."""
    runs: dict[str, list[dict]] = {"jax": [], "torch": []}
    for r in range(args.rounds):
        order = ("jax", "torch") if r % 2 == 0 else ("torch", "jax")
        for framework in order:
            if framework == "jax" or with_torch:
                runs[framework].append(_run_child(framework, name, args))

    def pooled(results: list[dict]) -> dict:
        times = [x for res in results for x in res["times"]]
        return {**results[0], "times": times, "step_s": statistics.median(times)}

    j = pooled(runs["jax"])
    t = pooled(runs["torch"]) if with_torch else None
    if with_torch:
        j["round_ratios"] = [b["step_s"] / a["step_s"] for a, b in zip(runs["jax"], runs["torch"])]
    return j, t


def _child(framework: str, name: str, args: argparse.Namespace) -> dict:
    if framework == "jax":
        w = make_jax_workload(name, impl=args.impl, dtype=args.dtype)
        r = time_jax(w, args.warmup, args.repeats)
        return {**r, "batch_size": w.batch_size, "g_params": w.g_params, "d_params": w.d_params}
    torch = require_torch()
    torch.manual_seed(0)
    step = make_torch_step(name, args.dtype)
    step()  # one step, then hold freed memory, as for jaxgan (time_jax)
    memory.hold_freed_memory(True)
    return time_calls(step, args.warmup, args.repeats)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help=f"fewer repeats, workloads {','.join(QUICK_WORKLOADS)} (< 5 min)")
    ap.add_argument("--workloads", default="", help="comma-separated subset of "
                    + ",".join(WORKLOADS))
    ap.add_argument("--repeats", type=int, default=None, help="timed steps (default 5, quick 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps (default 2, quick 1)")
    ap.add_argument("--impl", default="auto", help="jaxgan conv formulation (model.impl)")
    ap.add_argument("--compile-cache", default="", metavar="DIR",
                    help="persistent XLA compilation cache directory: a second run reports "
                    "the warm-cache compile time")
    ap.add_argument("--malloc", choices=("keep", "default"), default="keep",
                    help="keep (JAXGAN_CPU_MALLOC=1, on a CPU-only run): glibc keeps freed "
                    "memory, in both frameworks' processes; default: glibc's defaults for both")
    ap.add_argument("--rounds", type=int, default=1,
                    help="fresh processes per framework and workload, alternating jaxgan and "
                    "PyTorch (each round's first framework swaps): the step time is the median "
                    "of all rounds' timed steps, so a slow spell of a shared machine falls on "
                    "both frameworks")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                    help="compute precision of both steps: bfloat16 = jaxgan's model.dtype "
                    "mixed precision against PyTorch autocast (AMP)")
    ap.add_argument("--no-torch", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child", choices=("jax", "torch"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child and args.malloc == "keep":  # the parent's JAXGAN_CPU_MALLOC=1, if set
        memory.enable_if_requested()  # before jax's and torch's threads
    if args.compile_cache:
        jax.config.update("jax_compilation_cache_dir", args.compile_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    names = [w for w in args.workloads.split(",") if w] or list(
        QUICK_WORKLOADS if args.quick else WORKLOADS)
    for w in names:
        parse_workload(w)
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if args.child:
        print("RESULT " + json.dumps(_child(args.child, names[0], args)), flush=True)
        return
    # This process only measures the matmul peak. On a GPU, XLA would take 75% of its
    # memory up front, which the timing processes need: it allocates on demand here, and
    # the timing processes run with the caller's environment (XLA's default).
    args.child_env = dict(os.environ)
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    torch = None if args.no_torch else require_torch()
    # the allocator tuning only where it helps: a CPU-only run (jaxgan.experiments.memory)
    kept = args.malloc == "keep" and jax.default_backend() == "cpu" and (
        torch is None or torch_models().device() == "cpu")
    if kept:
        args.child_env[memory.ENV] = "1"
    else:
        args.child_env.pop(memory.ENV, None)

    print(machine_line())
    print("# each framework times each workload in a fresh process; allocator: "
          + (f"jaxgan {memory.ENV}=1 (one malloc arena, freed memory held once a step ran), "
             "torch the same" if kept else "jaxgan and torch glibc defaults"))
    if torch is not None:
        amp = "bfloat16 autocast" if args.dtype == "bfloat16" else "float32"
        where = ("CUDA, channels_last, TF32" if torch_models().device() == "cuda"
                 else f"{torch.get_num_threads()} threads, NCHW")
        print(f"# torch {torch.__version__}, {where}, {amp}")
    print(f"# jaxgan model.dtype {args.dtype}")
    peak = matmul_peak()
    peak_f = max(peak.values())
    print("# f32 matmul peak (2048^3): " + ", ".join(f"{k} {v:.0f} GFLOP/s"
                                                    for k, v in peak.items())
          + ("; %peak below is against it" if args.dtype != "float32" else ""), flush=True)
    hdr = (f"{'workload':16s} {'jax s':>8s} {'jax img/s':>9s} {'torch s':>8s} "
           f"{'torch img/s':>11s} {'ratio':>6s} {'compile s':>9s} {'GFLOP':>8s} "
           f"{'GFLOP/s':>8s} {'%peak':>6s}")
    print(hdr, flush=True)
    failed = []
    for name in names:
        try:
            j, t = _alternate_rounds(name, args, with_torch=torch is not None)
        except RuntimeError as e:  # the others still run; the exit status says so
            failed.append(name)
            print(f"# {name}: {e}", flush=True)
            print(f"ratio {name} nan", flush=True)
            continue
        jax_ips = j["batch_size"] / j["step_s"]
        if t is not None:
            torch_s, torch_ips = t["step_s"], j["batch_size"] / t["step_s"]
            ratio = jax_ips / torch_ips
        else:
            torch_s = torch_ips = ratio = float("nan")
        gf = j["flops"] / 1e9 if j["flops"] else float("nan")
        gfs = gf / j["step_s"]
        print(f"{name:16s} {j['step_s']:8.3f} {jax_ips:9.2f} {torch_s:8.3f} {torch_ips:11.2f} "
              f"{ratio:6.2f} {j['compile_s']:9.1f} {gf:8.1f} {gfs:8.1f} "
              f"{100 * gfs / peak_f:5.0f}%", flush=True)
        print(f"#   {name}: params G {j['g_params']:,} D {j['d_params']:,}; jax times "
              + " ".join(f"{x:.3f}" for x in j["times"])
              + ("" if t is None else "; torch times " + " ".join(
                  f"{x:.3f}" for x in t["times"])
                 + f"; best-time ratio {min(t['times']) / min(j['times']):.3f}")
              + ("" if args.rounds == 1 else "; ratio per round " + " ".join(
                  f"{r:.3f}" for r in j.get("round_ratios", [])))
              + f"; load1 {os.getloadavg()[0]:.2f}", flush=True)
        print(f"ratio {name} {ratio:.3f}", flush=True)
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (their processes' output is above)")


if __name__ == "__main__":
    main()
