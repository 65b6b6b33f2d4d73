"""Measure the convolution formulations of jaxgan.nn.conv, forward + backward, side by side.

    python experiments/bench/conv.py [--repeats 5]

For each layer shape the models use, times value_and_grad (w.r.t. input and kernel) of every
formulation and, when PyTorch is installed (`pip install -e ".[bench]"`), the same layer in
PyTorch on the same machine. Prints one line per (layer, formulation): median seconds.
Results are recorded in experiments/bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform

import jax
import jax.numpy as jnp
import numpy as np
from run import time_calls  # experiments/bench/run.py, beside this script

from jaxgan.experiments import memory
from jaxgan.nn import conv as C

# name, kind, batch, H, C_in, C_out, kernel, stride, padding, output_padding
LAYERS = [
    ("dcgan_up_1to4", "t", 64, 1, 100, 512, 4, 1, 0, 0),
    ("dcgan_up_4to8", "t", 64, 4, 512, 256, 4, 2, 1, 0),
    ("dcgan_up_8to16", "t", 64, 8, 256, 128, 4, 2, 1, 0),
    ("dcgan_up_16to32", "t", 64, 16, 128, 64, 4, 2, 1, 0),
    ("dcgan_up_32to64", "t", 64, 32, 64, 3, 4, 2, 1, 0),
    ("dcgan_down_64to32", "c", 64, 64, 3, 64, 4, 2, 1, 0),
    ("dcgan_down_32to16", "c", 64, 32, 64, 128, 4, 2, 1, 0),
    ("dcgan_down_16to8", "c", 64, 16, 128, 256, 4, 2, 1, 0),
    ("dcgan_down_8to4", "c", 64, 8, 256, 512, 4, 2, 1, 0),
    ("dcgan_out_4to1", "c", 64, 4, 512, 1, 4, 1, 0, 0),
    ("unet_up_128to256", "t", 1, 128, 128, 3, 4, 2, 1, 0),
    ("unet_down_256to128", "c", 1, 256, 3, 64, 4, 2, 1, 0),
    ("unet_down_128to64", "c", 1, 128, 64, 128, 4, 2, 1, 0),
    ("unet_up_64to128", "t", 1, 64, 256, 64, 4, 2, 1, 0),
    ("unet_up_128to256_b8", "t", 8, 128, 128, 3, 4, 2, 1, 0),
    ("unet_down_256to128_b8", "c", 8, 256, 3, 64, 4, 2, 1, 0),
    ("unet_up_64to128_b8", "t", 8, 64, 256, 64, 4, 2, 1, 0),
    ("unet_down_128to64_b8", "c", 8, 128, 64, 128, 4, 2, 1, 0),
    ("unet_down_64to32_b8", "c", 8, 64, 128, 256, 4, 2, 1, 0),
    ("unet_down_32to16_b8", "c", 8, 32, 256, 512, 4, 2, 1, 0),
    ("unet_down_16to8_b8", "c", 8, 16, 512, 512, 4, 2, 1, 0),
    ("unet_up_8to16_b8", "t", 8, 8, 1024, 512, 4, 2, 1, 0),
    ("unet_up_16to32_b8", "t", 8, 16, 1024, 256, 4, 2, 1, 0),
    ("unet_up_32to64_b8", "t", 8, 32, 512, 128, 4, 2, 1, 0),
    ("patch_down_256to128_6ch_b8", "c", 8, 256, 6, 64, 4, 2, 1, 0),
    ("patch_s1_32to31_b8", "c", 8, 32, 256, 512, 4, 1, 1, 0),
    ("patch_out_31to30_b8", "c", 8, 31, 512, 1, 4, 1, 1, 0),
    ("patch_down_256to128_6ch", "c", 1, 256, 6, 64, 4, 2, 1, 0),
    ("patch_s1_32to31", "c", 1, 32, 256, 512, 4, 1, 1, 0),
    ("patch_out_31to30", "c", 1, 31, 512, 1, 4, 1, 1, 0),
    ("resnet_in_7x7_256", "c", 1, 262, 3, 64, 7, 1, 0, 0),
    ("resnet_down_256to128", "c", 1, 256, 64, 128, 3, 2, 1, 0),
    ("resnet_down_128to64", "c", 1, 128, 128, 256, 3, 2, 1, 0),
    ("resnet_block_3x3_64", "c", 1, 64, 256, 256, 3, 1, 1, 0),
    ("resnet_up_64to128", "t", 1, 64, 256, 128, 3, 2, 1, 1),
    ("resnet_up_128to256", "t", 1, 128, 128, 64, 3, 2, 1, 1),
    ("resnet_out_7x7_256", "c", 1, 262, 64, 3, 7, 1, 0, 0),
    ("pggan_3x3_8", "c", 16, 8, 512, 512, 3, 1, 1, 0),
    ("pggan_3x3_16", "c", 16, 16, 512, 512, 3, 1, 1, 0),
    ("pggan_3x3_32", "c", 16, 32, 512, 512, 3, 1, 1, 0),
    ("pggan_3x3_64", "c", 16, 64, 256, 256, 3, 1, 1, 0),
    ("pggan_3x3_128", "c", 16, 128, 128, 128, 3, 1, 1, 0),
    ("pggan_torgb_128", "c", 16, 128, 128, 3, 1, 1, 0, 0),
    ("pggan_digits_3x3_16", "c", 16, 16, 64, 64, 3, 1, 1, 0),
    ("pggan_digits_3x3_32_in64", "c", 16, 32, 64, 32, 3, 1, 1, 0),
    ("pggan_digits_3x3_32", "c", 16, 32, 32, 32, 3, 1, 1, 0),
    ("pggan_digits_3x3_32_out64", "c", 16, 32, 32, 64, 3, 1, 1, 0),
]


def auto_choice(layer) -> str:
    """The formulation ``impl="auto"`` resolves to for this layer on this backend."""
    _, kind, n, h, ci, co, k, s, p, _ = layer
    if kind == "t":
        t = C.default_transpose_impl(kernel=k, stride=s, out_channels=co, in_pixels=h * h,
                                     in_channels=ci, batch=n)
        if t is not None:
            return t
        kk = -(-k // s)
        pixels = (h + kk) * (h + kk)
        sub = C.default_impl(out_features=s * s * co, patch_features=kk * kk * ci,
                             rows=n * pixels, pixels=pixels)
        return {"xla": "subpixel", "col2im": "col2im"}.get(sub, f"{sub} (sub-pixel form)")
    ho = (h + 2 * p - k) // s + 1
    rows = n * ho * ho
    return C.default_impl(out_features=co, patch_features=k * k * ci, rows=rows,
                          pixels=ho * ho, kernel=k, stride=s)


def _timed(call, repeats):
    """Median seconds of ``call()`` (which waits for its results), timed as run.py times a
    step: one untimed call, then freed memory held as the entry points hold it
    (``--malloc keep``), one more untimed call and ``repeats`` timed ones
    (:func:`run.time_calls`). The memory is released again afterwards, before the next
    layer's compile."""
    call()
    memory.hold_freed_memory(True)
    try:
        return time_calls(call, 1, repeats)["step_s"]
    finally:
        memory.hold_freed_memory(False)


def bench_jax(layer, impl, repeats):
    _, kind, n, h, ci, co, k, s, p, op = layer
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((n, h, h, ci), dtype=np.float32))
    w = jnp.asarray(0.02 * rng.standard_normal((k, k, ci, co), dtype=np.float32))

    def loss(x, w):
        if kind == "t":
            y = C.conv_transpose2d(x, w, stride=s, padding=p, output_padding=op, impl=impl)
        else:
            y = C.conv2d(x, w, stride=s, padding=p, impl=impl)
        return jnp.sum(y * y)

    f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    return _timed(lambda: jax.block_until_ready(f(x, w)), repeats)


def bench_torch(layer, repeats):
    import torch

    _, kind, n, h, ci, co, k, s, p, op = layer
    torch.manual_seed(0)
    x = torch.randn(n, ci, h, h, requires_grad=True)
    if kind == "t":
        m = torch.nn.ConvTranspose2d(ci, co, k, s, p, op, bias=False)
    else:
        m = torch.nn.Conv2d(ci, co, k, s, p, bias=False)

    def step():
        m.zero_grad()
        x.grad = None
        y = m(x)
        (y * y).sum().backward()

    return _timed(step, repeats)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--layers", default="", help="comma-separated subset of layer names")
    ap.add_argument("--impls", default="xla,subpixel,im2col,col2im,winograd,winograd2,winograd4",
                    help="comma-separated formulations to time (subpixel: transposed layers "
                         "only)")
    ap.add_argument("--dilated", action="store_true",
                    help="also time XLA's own (lhs-dilated) transposed conv, impl 'xla' on "
                         "transposed layers (pathological on XLA:CPU: up to ~1 min)")
    ap.add_argument("--malloc", choices=("keep", "default"), default="keep",
                    help="keep (as the entry points and run.py): glibc keeps freed memory for "
                         "reuse while a layer is timed, in both frameworks; default: glibc's "
                         "defaults (every call page-faults its big blocks afresh)")
    args = ap.parse_args()
    kept = args.malloc == "keep" and memory.keep_freed_memory()  # before jax's threads
    print(f"# malloc: {'freed memory kept while timing' if kept else 'glibc defaults'}")
    print(f"# {platform.processor() or platform.machine()}, {jax.devices()[0].platform}, "
          f"jax {jax.__version__}, load1 {os.getloadavg()[0]:.2f}")
    try:
        import torch

        torch_ok = True
        print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}")
    except ImportError:
        torch_ok = False
    wanted = set(filter(None, args.layers.split(",")))
    for layer in LAYERS:
        if wanted and layer[0] not in wanted:
            continue
        impls = tuple(filter(None, args.impls.split(",")))
        if layer[1] == "t":  # "xla" is XLA's lhs-dilated transposed conv: only with --dilated
            impls = ("xla",) * args.dilated + tuple(i for i in impls if i != "xla")
        else:
            impls = tuple(i for i in impls if i != "subpixel")
        print(f"{layer[0]:22s} auto picks   {auto_choice(layer)}")
        ref = bench_torch(layer, args.repeats) if torch_ok else None
        if ref is not None:
            print(f"{layer[0]:22s} torch        {ref:8.4f} s")
        for impl in impls:
            t = bench_jax(layer, impl, args.repeats)
            ratio = f"  torch/jax {ref / t:5.2f}x" if ref else ""
            print(f"{layer[0]:22s} {impl:12s} {t:8.4f} s{ratio}", flush=True)


if __name__ == "__main__":
    main()
