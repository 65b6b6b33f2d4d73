"""bfloat16 mixed precision (``config.model.dtype``): float32 parameters, optimizer, losses
and BatchNorm statistics; convolutions and activations in bfloat16; close to float32.

Each family's tiny test config, one step from the same state and key in both precisions.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train_cyclegan import small_config as cyclegan_config
from test_train_dcgan import small_config as dcgan_config
from test_train_pggan import small_config as pggan_config
from test_train_pix2pix import small_config as _pix2pix_test_config

from jaxgan.nn import conv2d, conv_transpose2d, instance_norm, pixel_norm
from jaxgan.nn.conv import default_impl, default_transpose_impl, use_winograd
from jaxgan.train import common, cyclegan, dcgan, pggan, pix2pix

F32, BF16 = jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)
# the CPU's slowness warning is tested once, below
pytestmark = pytest.mark.filterwarnings("ignore:config.model.dtype='bfloat16' on XLA")
N = 8  # the families' test configs' batch


def pix2pix_config():
    """test_train_pix2pix's config at 32x32 (one level fewer): half the compile time."""
    c = _pix2pix_test_config()
    c.image_size, c.model.num_downs = 32, 5
    return c


def images(seed, size, ch=3):
    return jax.random.uniform(jax.random.key(seed), (N, size, size, ch), minval=-1, maxval=1)


def _floats(tree):
    return [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]


def test_unknown_dtype_names_the_choices():
    c = dcgan_config()
    c.model.dtype = "float16"
    with pytest.raises(ValueError, match="model.dtype='float16'.*float32, bfloat16"):
        dcgan.build_models(c)


def test_bfloat16_on_cpu_says_it_is_slow_there():
    c = dcgan_config()
    c.model.dtype = "bfloat16"
    with pytest.warns(UserWarning, match="XLA:CPU .* meant for GPUs and TPUs"):
        dcgan.build_models(c)


def test_float32_is_the_plain_module():
    g, d = dcgan.build_models(dcgan_config())
    assert not isinstance(g, common.MixedPrecision) and not isinstance(d, common.MixedPrecision)


def test_mixed_precision_model_computes_in_bfloat16_with_float32_params():
    c = dcgan_config()
    g32, _d32 = dcgan.build_models(c)
    c.model.dtype = "bfloat16"
    g16, _d16 = dcgan.build_models(c)
    assert isinstance(g16, common.MixedPrecision) and g16.latent_dim == g32.latent_dim
    variables = g16.init(jax.random.key(0), jnp.zeros((2, c.model.latent_dim)), train=False)
    assert {x.dtype for x in _floats(variables)} == {F32}
    z = jax.random.normal(jax.random.key(1), (8, c.model.latent_dim))
    (a, bs32), (b, bs16) = (m.apply(variables, z, train=True, mutable=["batch_stats"])
                            for m in (g32, g16))
    assert a.dtype == b.dtype == F32
    assert {x.dtype for x in _floats(bs16)} == {F32}
    err = float(jnp.max(jnp.abs(a - b)))
    assert 0 < err < 3e-2, err  # bfloat16 arithmetic (8-bit mantissa), not float32
    chex.assert_trees_all_close(bs32, bs16, atol=2e-2, rtol=2e-2)
    # the first layer's activations were bfloat16 (apply hands every output back as float32)
    _, inter = g16.apply(variables, z, train=False, capture_intermediates=True)
    h = inter["intermediates"]["ConvTranspose2d_0"]["__call__"][0]
    assert h.dtype == F32 and bool(jnp.all(h == h.astype(BF16).astype(F32)))
    _, inter = g32.apply(variables, z, train=False, capture_intermediates=True)
    h = inter["intermediates"]["ConvTranspose2d_0"]["__call__"][0]
    assert not bool(jnp.all(h == h.astype(BF16).astype(F32)))


def _step_both(module, small_config, state_fn, batch, lr):
    """One jitted step per precision from the same state and key; returns the results."""
    out = {}
    for dtype in ("float32", "bfloat16"):
        c = small_config()
        c.model.dtype = dtype
        step = module.make_train_step(c, donate=False)
        out[dtype] = step(state_fn(c), batch, jax.random.key(3))
    (s32, m32), (s16, m16) = out["float32"], out["bfloat16"]
    assert bool(m16["finite"])
    # everything in the state stays float32 (params, Adam moments, BatchNorm statistics, EMA)
    chex.assert_trees_all_equal_dtypes(s32, s16)
    for k in m32:
        if k != "finite":
            np.testing.assert_allclose(float(m16[k]), float(m32[k]), rtol=5e-2, atol=5e-2,
                                       err_msg=k)
    # Adam's first step moves each parameter by -lr * g / (|g| + eps): by -lr * sign(g)
    # wherever |g| >> eps. So the two steps' moves compare the gradients' signs: in each
    # network, >= 85% of the parameters that float32 moves by more than lr / 2 move the same
    # way in bfloat16 (gradients unrelated to float32's would agree on half; CycleGAN's
    # generators, whose L1 cycle and identity gradients are signs of small differences,
    # agree on 88.6%, the others on more).
    s0 = state_fn(small_config())
    params = [k for k in vars(s32) if k.endswith("params") and "ema" not in k]
    assert params
    for k in params:
        same = moved = 0
        for p0, a, b in zip(_floats(getattr(s0, k)), _floats(getattr(s32, k)),
                            _floats(getattr(s16, k)), strict=True):
            d32, d16 = np.asarray(a - p0), np.asarray(b - p0)
            assert np.max(np.abs(d16)) <= lr * 1.001, k
            big = np.abs(d32) > lr / 2
            moved += int(big.sum())
            same += int((np.sign(d16[big]) == np.sign(d32[big])).sum())
        assert moved > 0 and same >= 0.85 * moved, (k, same, moved)
    return s16, m16


def test_dcgan_step_in_bfloat16():
    c = dcgan_config()
    _step_both(dcgan, dcgan_config, lambda c: dcgan.create_state(c, jax.random.key(0)),
               {"image": images(0, 16, 1)}, c.optimizer.learning_rate)


def test_pix2pix_step_in_bfloat16():
    c = pix2pix_config()
    _step_both(pix2pix, pix2pix_config, lambda c: pix2pix.create_state(c, jax.random.key(0)),
               {"A": images(0, 32), "B": images(1, 32)}, c.optimizer.learning_rate)


def test_cyclegan_step_in_bfloat16():
    c = cyclegan_config()
    _step_both(cyclegan, cyclegan_config,
               lambda c: cyclegan.create_state(c, jax.random.key(0)),
               {"A": images(0, 32), "B": images(1, 32)}, c.optimizer.learning_rate)


def test_pggan_step_in_bfloat16_mid_fade():
    """WGAN-GP's gradient penalty (a gradient of D through bfloat16) and the fade's alpha."""
    c = pggan_config()

    def state(c):
        return pggan.create_state(c, jax.random.key(0), stage=1).replace(
            stage_images=jnp.asarray(16, jnp.int32))

    _step_both(pggan, pggan_config, state, {"image": images(5, 8)}, c.optimizer.learning_rate)


def test_norms_compute_in_float32_and_keep_the_dtype():
    # a large mean over a small spread: bfloat16 statistics would be off by ~0.35 std
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 16)) * 3 + 1000
    for f in (instance_norm, pixel_norm):
        y16 = f(x.astype(BF16))
        assert y16.dtype == BF16
        ref = f(x.astype(BF16).astype(F32))  # the same inputs in float32
        np.testing.assert_allclose(np.asarray(y16, np.float32), np.asarray(ref),
                                   atol=2e-2, rtol=1e-2)


def _close_to_rounding(y, ref, tol):
    assert y.dtype == BF16
    np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(ref),
                               atol=tol * float(jnp.std(ref)), rtol=tol)


@pytest.mark.parametrize("impl", ["xla", "im2col", "col2im", "winograd"])
def test_bfloat16_convolutions_accumulate_in_float32(impl):
    """bfloat16 in and out, within one bfloat16 rounding (2**-8 relative) of the float32
    result on the same inputs: sums of 1152 (2048) products, and col2im's 9 (16) tap
    outputs, are accumulated in float32. Winograd's tile transforms round to bfloat16 too:
    4x the tolerance (``auto`` never picks it below 32 bits)."""
    kx, kw, kt = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (4, 12, 12, 128)).astype(BF16)
    w = (jax.random.normal(kw, (3, 3, 128, 32)) * 0.05).astype(BF16)
    tol = 0.04 if impl == "winograd" else 0.01
    _close_to_rounding(conv2d(x, w, padding=1, impl=impl),
                       conv2d(x.astype(F32), w.astype(F32), padding=1, impl="xla"), tol)
    wt = (jax.random.normal(kt, (4, 4, 128, 16)) * 0.05).astype(BF16)  # k4 s2 p1: 12 -> 24
    _close_to_rounding(conv_transpose2d(x, wt, stride=2, padding=1, impl=impl),
                       conv_transpose2d(x.astype(F32), wt.astype(F32), stride=2, padding=1,
                                        impl="xla"), tol)


def test_auto_never_picks_winograd_below_32_bits():
    # PGGAN's 32x32 512-channel conv at batch 16: Winograd in float32, im2col in bfloat16
    shape = {"backend": "cpu", "kernel": 3, "out_features": 512, "patch_features": 9 * 512,
             "rows": 16 * 32 * 32}
    assert use_winograd(**shape) and use_winograd(**shape, dtype=F32)
    assert not use_winograd(**shape, dtype=BF16)
    assert default_impl(**shape, dtype=BF16) == "im2col"
    t = {"backend": "cpu", "kernel": 4, "stride": 2, "out_channels": 128, "in_pixels": 64,
         "in_channels": 256, "batch": 64}  # DCGAN's 8 -> 16 transposed conv
    assert default_transpose_impl(**t) == "winograd"
    assert default_transpose_impl(**t, dtype=BF16) != "winograd"


def test_mixed_precision_wrapper_copies_and_delegates():
    import copy
    import pickle

    c = dcgan_config()
    c.model.dtype = "bfloat16"
    g, _ = dcgan.build_models(c)
    for clone in (copy.deepcopy(g), pickle.loads(pickle.dumps(g))):
        assert clone.dtype == BF16 and clone.resolution == g.resolution == 16
    assert "bfloat16" in repr(g)
