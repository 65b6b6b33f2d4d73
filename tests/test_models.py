"""Models: every parameter count of REFERENCE.md exactly, receptive fields (formula and
measured through jax.grad), PGGAN fade-in properties, input errors, registry and summary CLI."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import models as M
from jaxgan.models import summary
from jaxgan.models.__main__ import main as summary_main
from jaxgan.nn import downsample_avg_2x, upsample_nearest_2x

RNGS = {"params": jax.random.key(0), "dropout": jax.random.key(1)}


def n_params(model, *args, **kwargs):
    variables = jax.eval_shape(lambda: model.init(RNGS, *args, **kwargs))
    return sum(x.size for x in jax.tree_util.tree_leaves(variables["params"]))


def images(size, channels, n=1):
    return jax.ShapeDtypeStruct((n, size, size, channels), jnp.float32)


# (registry name, part, overrides, input, expected count from REFERENCE.md)
COUNTS = [
    ("unet_256", "g", {}, images(256, 3), 54_413_955),
    ("unet_128", "g", {}, images(128, 3), 41_828_995),
    ("unet_256", "g", {"norm": "instance"}, images(256, 3), 54_409_603),
    ("resnet_9blocks", "g", {}, images(256, 3), 11_378_179),
    ("resnet_6blocks", "g", {}, images(256, 3), 7_837_699),
    ("basic", "d", {"in_channels": 6}, images(256, 6), 2_768_705),
    ("basic", "d", {"in_channels": 3, "norm": "instance"}, images(256, 3), 2_764_737),
    ("n_layers", "d", {"in_channels": 6, "n_layers": 1}, images(256, 6), 139_585),
    ("n_layers", "d", {"in_channels": 6, "n_layers": 2}, images(256, 6), 666_433),
    ("n_layers", "d", {"in_channels": 6, "n_layers": 4}, images(256, 6), 6_964_033),
    ("n_layers", "d", {"in_channels": 6, "n_layers": 5}, images(256, 6), 11_159_361),
    ("pixel", "d", {"in_channels": 6}, images(16, 6), 9_024),
    ("pixel", "d", {"in_channels": 3, "norm": "instance"}, images(16, 3), 8_705),
    ("dcgan", "g", {}, jax.ShapeDtypeStruct((2, 100), jnp.float32), 3_576_704),
    ("dcgan", "d", {}, images(64, 3), 2_765_568),
]


@pytest.mark.parametrize("name,part,overrides,x,expected", COUNTS,
                         ids=[f"{c[0]}-{c[1]}-{c[4]}" for c in COUNTS])
def test_parameter_counts(name, part, overrides, x, expected):
    model = M.create(name, part, **overrides)
    x = jnp.zeros(x.shape, x.dtype)
    assert n_params(model, x, train=False) == expected


@pytest.mark.parametrize("stage", [0, 4, 8])
def test_pggan_parameter_counts_1024_at_any_init_stage(stage):
    res = 4 * 2**stage
    assert n_params(M.PGGANGenerator(), jnp.zeros((4, 512)), stage, 1.0) == 23_079_115
    assert n_params(M.PGGANDiscriminator(), jnp.zeros((4, res, res, 3)), stage, 1.0) == 23_087_249


def test_pggan_feature_maps():
    v = jax.eval_shape(lambda: M.PGGANGenerator().init(RNGS, jnp.zeros((1, 512)), 8, 1.0))
    p = v["params"]
    widths = [p[f"to_rgb_{s}"]["kernel"].shape[2] for s in range(9)]
    assert widths == [512, 512, 512, 512, 256, 128, 64, 32, 16]


@pytest.mark.parametrize("spec,rf", [("pixel", 1), (1, 16), (2, 34), (3, 70), ("basic", 70),
                                     (4, 142), (5, 286), (0, 16)])
def test_receptive_field_formula(spec, rf):
    assert M.receptive_field(spec) == rf


def _support_width(grad):
    """Width (rows and columns) of the non-zero support of an (H, W) map."""
    rows = np.nonzero(np.any(grad != 0, axis=1))[0]
    cols = np.nonzero(np.any(grad != 0, axis=0))[0]
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


@pytest.mark.parametrize("n_layers", [None, 1, 2, 3, 4, 5])
def test_receptive_field_measured_with_grad(n_layers):
    """The gradient of one central logit w.r.t. the input is non-zero on exactly rf x rf."""
    if n_layers is None:
        model, size = M.PixelDiscriminator(in_channels=3, ndf=4), 9
    else:
        model = M.PatchDiscriminator(in_channels=3, n_layers=n_layers, ndf=4)
        size = 2 * M.receptive_field(model) + 32  # room so the central field is not clipped
    rf = M.receptive_field(model)
    x = jax.random.normal(jax.random.key(0), (1, size, size, 3))
    variables = jax.jit(lambda k, x: model.init(k, x, train=False))(jax.random.key(1), x)
    out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    cy, cx = out.shape[1] // 2, out.shape[2] // 2

    def logit(x):
        return model.apply(variables, x, train=False)[0, cy, cx, 0]

    g = np.abs(np.asarray(jax.grad(logit)(x))).sum(-1)[0]
    assert _support_width(g) == (rf, rf)


def test_basic_on_256_gives_30x30():
    model = M.create("basic", in_channels=6)
    out = jax.eval_shape(lambda: model.init_with_output(RNGS, jnp.zeros((1, 256, 256, 6)))[0])
    assert out.shape == (1, 30, 30, 1)
    assert M.output_size("basic", 256) == 30


def _tiny_pggan():
    kw = {"resolution": 16, "channels": 3, "fmap_base": 64, "fmap_max": 16}
    return M.PGGANGenerator(latent_dim=16, **kw), M.PGGANDiscriminator(**kw)


def test_pggan_generator_fade():
    g, _ = _tiny_pggan()
    z = jax.random.normal(jax.random.key(0), (4, 16))
    params = jax.jit(g.init, static_argnums=2)(jax.random.key(1), z, 0, 1.0)
    apply = jax.jit(g.apply, static_argnums=2)
    for stage in (1, 2):
        out1 = apply(params, z, stage, 1.0)
        assert out1.shape == (4, 4 * 2**stage, 4 * 2**stage, 3)
        no_fade = jax.jit(lambda p, z, s=stage: g.apply(
            p, z, method=lambda m, z: m.to_rgb[s](m.features(z, s)[1])))(params, z)
        np.testing.assert_array_equal(np.asarray(out1), np.asarray(no_fade))
        out0 = apply(params, z, stage, 0.0)
        prev = apply(params, z, stage - 1, 1.0)
        np.testing.assert_array_equal(np.asarray(out0), np.asarray(upsample_nearest_2x(prev)))
        mid = apply(params, z, stage, 0.25)
        np.testing.assert_allclose(np.asarray(mid), np.asarray(0.75 * out0 + 0.25 * out1),
                                   rtol=1e-5, atol=1e-6)


def test_pggan_discriminator_fade():
    _, d = _tiny_pggan()
    x = jax.random.normal(jax.random.key(2), (4, 16, 16, 3))
    params = jax.jit(d.init, static_argnums=2)(jax.random.key(3), x, 2, 1.0)
    apply = jax.jit(d.apply, static_argnums=2)
    out0 = apply(params, x, 2, 0.0)
    down = apply(params, downsample_avg_2x(x), 1, 1.0)
    np.testing.assert_array_equal(np.asarray(out0), np.asarray(down))

    def no_fade(m, x):
        h = nn.leaky_relu(m.from_rgb[2](x), 0.2)
        return m.head(m._block(m._block(h, 2), 1))

    np.testing.assert_array_equal(np.asarray(apply(params, x, 2, 1.0)),
                                  np.asarray(jax.jit(lambda p, x: d.apply(p, x, method=no_fade))(
                                      params, x)))


def test_pggan_alpha_never_retraces():
    g, d = _tiny_pggan()
    z = jnp.ones((4, 16))
    gp = g.init(jax.random.key(0), z, 1, 1.0)
    dp = d.init(jax.random.key(0), jnp.ones((4, 8, 8, 3)), 1, 1.0)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(gp, dp, z, alpha):
        return d.apply(dp, g.apply(gp, z, 1, alpha), 1, alpha)

    for alpha in (0.0, 0.3, 0.7, 1.0):
        step(gp, dp, z, jnp.float32(alpha))


def test_pggan_bad_stage_and_shape():
    g, d = _tiny_pggan()
    with pytest.raises(ValueError, match=r"stage must be a static Python int in \[0, 2\]"):
        g.init(jax.random.key(0), jnp.ones((4, 16)), 3, 1.0)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 8, 8, 3\)"):
        d.init(jax.random.key(0), jnp.ones((4, 16, 16, 3)), 1, 1.0)


def test_unet_wrong_size_names_expected_shape():
    with pytest.raises(ValueError, match=r"multiples of 256.*\(N, 256, 256, 3\)"):
        M.create("unet_256").init(RNGS, jnp.zeros((1, 100, 100, 3)))


def test_wrong_channels_for_loaded_params():
    model = M.PatchDiscriminator(in_channels=6, ndf=8)
    params = jax.jit(model.init)(RNGS, jnp.zeros((1, 64, 64, 6)))
    with pytest.raises(ValueError, match=r"\(N, H, W, 6\)"):
        model.apply(params, jnp.zeros((1, 64, 64, 3)))
    # Loaded parameters that disagree with the module's config are named too.
    other = M.PatchDiscriminator(in_channels=3, ndf=8)
    with pytest.raises(ValueError, match=r"loaded parameters expect 6.*\(N, H, W, 6\)"):
        other.apply(params, jnp.zeros((1, 64, 64, 3)))


def test_other_input_errors():
    with pytest.raises(ValueError, match=r"latents of shape \(N, 100\)"):
        M.DCGANGenerator().init(RNGS, jnp.zeros((2, 64)))
    with pytest.raises(ValueError, match="floating-point"):
        M.ResnetGenerator(ngf=4, n_blocks=1).init(RNGS, jnp.zeros((1, 16, 16, 3), jnp.uint8))
    with pytest.raises(ValueError, match="power of two"):
        M.DCGANGenerator(resolution=48).init(RNGS, jnp.zeros((2, 100)))


@pytest.mark.parametrize("res,channels", [(16, 1), (32, 3), (128, 4)])
def test_dcgan_any_resolution(res, channels):
    g = M.DCGANGenerator(resolution=res, channels=channels, ngf=4, latent_dim=8)
    d = M.DCGANDiscriminator(resolution=res, channels=channels, ndf=4)
    z = jnp.zeros((2, 8))
    img = jax.eval_shape(lambda: g.init_with_output(RNGS, z)[0])
    assert img.shape == (2, res, res, channels)
    logits = jax.eval_shape(lambda: d.init_with_output(RNGS, jnp.zeros(img.shape))[0])
    assert logits.shape == (2,)


def test_generators_run_and_are_bounded():
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    for model in (M.UNetGenerator(num_downs=5, ngf=4), M.ResnetGenerator(n_blocks=2, ngf=4)):
        variables = jax.jit(model.init)(RNGS, x)
        apply = jax.jit(lambda v, x, m=model: m.apply(v, x, rngs={"dropout": jax.random.key(2)},
                                                      mutable=["batch_stats"]))
        y, _ = apply(variables, x)
        assert y.shape == (2, 32, 32, 3)
        assert float(jnp.max(jnp.abs(y))) <= 1.0


def test_registry():
    assert set(M.names()) >= {"dcgan", "unet_128", "unet_256", "resnet_6blocks",
                              "resnet_9blocks", "basic", "n_layers", "pixel", "pggan"}
    assert M.parts("pggan") == ["g", "d"]
    assert isinstance(M.create("pggan", "d"), M.PGGANDiscriminator)
    assert M.create("n_layers", n_layers=5).n_layers == 5
    with pytest.raises(ValueError, match="did you mean unet_256"):
        M.create("unet256")
    with pytest.raises(ValueError, match="no part 'd'"):
        M.create("unet_256", "d")
    with pytest.raises(ValueError, match="valid fields: .*num_downs"):
        M.create("unet_256", ngf_typo=3)


def _cli(capsys, *argv):
    rc = summary_main(list(argv))
    out = capsys.readouterr()
    return rc, out.out.strip().splitlines(), out.err


def test_summary_cli_discriminator(capsys):
    rc, lines, _ = _cli(capsys, "basic", "--input-shape", "256,256,6")
    assert rc == 0
    assert lines[-3:] == ["parameters: 2768705", "receptive_field: 70", "output_shape: 30x30"]
    rc, lines, _ = _cli(capsys, "n_layers", "--n-layers", "5", "--input-shape", "256,256,6")
    assert lines[-3:] == ["parameters: 11159361", "receptive_field: 286", "output_shape: 6x6"]
    rc, lines, _ = _cli(capsys, "pixel", "--norm", "instance")
    assert lines[-3:] == ["parameters: 8705", "receptive_field: 1", "output_shape: 256x256"]


def test_summary_cli_generators(capsys):
    rc, lines, _ = _cli(capsys, "pggan", "--part", "g")
    assert rc == 0 and "parameters: 23079115" in lines
    rc, lines, _ = _cli(capsys, "pggan", "--part", "d", "--resolution", "1024")
    assert "parameters: 23087249" in lines
    rc, lines, _ = _cli(capsys, "resnet_9blocks")
    assert lines[-2] == "parameters: 11378179"
    assert any(line.startswith("Conv2d_0/kernel") for line in lines)  # the layer table


def test_summary_cli_unknown_name_lists_known(capsys):
    rc, _, err = _cli(capsys, "unet_512")
    assert rc == 2
    assert "known models: dcgan, unet_128, unet_256" in err


def test_summarize_api():
    s = summary.summarize(M.create("dcgan", "d"))
    assert s.parameters == 2_765_568 and s.output_shape == (1, 1, 1, 1)
