"""``impl="auto"`` is XLA's own convolution on GPU and TPU, the CPU formulations on CPU only.

The backend the policy sees is forced by monkeypatching ``jax.default_backend`` (all that
jaxgan.nn consults); the train steps of the four families are only lowered (abstract state
and batch, no compile), and the StableHLO checked: on GPU/TPU every conv layer is a
``stablehlo.convolution`` and nothing of the CPU formulations is left (their ops trace in
``jaxgan_cpu_*`` named scopes, visible in the debug locations; Winograd's jitted bodies are
functions ``@_winograd_*``). On CPU the same check finds the CPU formulations.
"""

import re

import jax
import jax.numpy as jnp
import pytest
from tiny_configs import tiny_cyclegan, tiny_dcgan, tiny_pggan, tiny_pix2pix

from jaxgan.nn import conv as C
from jaxgan.train import cyclegan, dcgan, pggan, pix2pix

FAMILIES = {
    "dcgan": (dcgan, tiny_dcgan),
    "pix2pix": (pix2pix, tiny_pix2pix),
    "cyclegan": (cyclegan, tiny_cyclegan),
    "pggan": (pggan, tiny_pggan),
}
HAS_TRANSPOSED = {"dcgan", "pix2pix", "cyclegan"}
CPU_MARKER = re.compile(r"jaxgan_cpu_\w+|func\.func private @_winograd\w*")


def _abstract(family, config):
    """Abstract (state, batch, key) for one step: PGGAN at stage 1, fading in."""
    key = jax.random.key(0)
    f32 = jnp.float32
    if family == "pggan":
        state = jax.eval_shape(lambda k: pggan.create_state(config, k, 1), key)
        r = pggan.stage_resolution(1)
        batch = {"image": jax.ShapeDtypeStruct((8, r, r, config.channels), f32)}
    else:
        mod = FAMILIES[family][0]
        state = jax.eval_shape(lambda k: mod.create_state(config, k), key)
        s, n = config.image_size, config.batch_size
        if family == "dcgan":
            batch = {"image": jax.ShapeDtypeStruct((n, s, s, config.channels), f32)}
        else:
            batch = {"A": jax.ShapeDtypeStruct((n, s, s, config.in_channels), f32),
                     "B": jax.ShapeDtypeStruct((n, s, s, config.out_channels), f32)}
    return state, batch, key


def _lowered(monkeypatch, family, backend):
    """The StableHLO text (with debug locations) of the family's tiny train step, lowered as
    ``backend`` would choose its formulations; and the number of conv kernels in the state."""
    mod, tiny = FAMILIES[family]
    config = tiny()
    state, batch, key = _abstract(family, config)
    kernels = sum(1 for leaf in jax.tree.leaves((state.g_params, state.d_params))
                  if leaf.ndim == 4)
    step = mod.make_train_step(config, jit=False)
    with monkeypatch.context() as m:
        m.setattr(jax, "default_backend", lambda: backend)
        # a fresh function: no trace cached from another backend's lowering
        text = jax.jit(lambda s, b, k: step(s, b, k)).lower(state, batch, key).as_text(
            debug_info=True)
    return text, kernels


@pytest.mark.parametrize("backend", ["gpu", "tpu"])
def test_policy_functions_pick_xla_off_cpu(backend):
    shapes = [  # (out, patch, rows, pixels, kernel, stride): thin, narrow, Winograd-sized, wide
        (1, 16 * 512, 900, 900, 4, 1), (64, 48, 131072, 16384, 4, 2),
        (512, 9 * 512, 16 * 1024, 1024, 3, 1), (256, 2048, 16384, 64, 4, 2)]
    for out, patch, rows, pixels, k, s in shapes:
        assert C.default_impl(backend, out, patch, rows, pixels, kernel=k, stride=s) == "xla"
        assert not C.use_winograd(backend, k, s, out, patch, rows, pixels)
    for k, s, out, pix, cin, n in [(4, 2, 3, 4096, 64, 8), (3, 2, 128, 4096, 256, 1),
                                   (4, 1, 512, 1, 100, 64), (4, 2, 128, 64, 256, 64)]:
        assert C.default_transpose_impl(backend, k, s, out, pix, cin, n) == "xla"


@pytest.mark.parametrize("backend", ["gpu", "tpu"])
def test_auto_train_steps_are_xla_convolutions_off_cpu(monkeypatch, backend):
    for family in FAMILIES:
        text, kernels = _lowered(monkeypatch, family, backend)
        assert not CPU_MARKER.findall(text), (family, sorted(set(CPU_MARKER.findall(text))))
        assert "custom_call" not in text, family
        convs = len(re.findall(r"stablehlo\.convolution\(", text))
        # every conv layer at least twice (forward, kernel gradient), each an XLA convolution
        assert convs >= 2 * kernels > 0, (family, convs, kernels)
        if family in HAS_TRANSPOSED:  # transposed convs: XLA's own, lhs-dilated
            assert re.search(r"lhs_dilate = \[2, 2\]", text), family


def test_auto_train_steps_use_the_cpu_formulations_on_cpu(monkeypatch):
    # The check above can fail: on CPU it finds the CPU formulations, and fewer XLA
    # convolutions than off it.
    found = {}
    for family in ("dcgan", "pix2pix"):
        text, _ = _lowered(monkeypatch, family, "cpu")
        gpu_text, _ = _lowered(monkeypatch, family, "gpu")
        found[family] = set(CPU_MARKER.findall(text))
        assert (len(re.findall(r"stablehlo\.convolution\(", text))
                < len(re.findall(r"stablehlo\.convolution\(", gpu_text))), family
    assert all(found.values()), found
    assert {"jaxgan_cpu_im2col", "jaxgan_cpu_col2im"} <= set().union(*found.values())
