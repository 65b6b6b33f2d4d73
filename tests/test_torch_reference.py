"""The quality bench's PyTorch PGGAN (experiments/bench/_torch_models.py) is jaxgan's PGGAN:
with jaxgan's parameters copied in, its generator and discriminator give jaxgan's outputs
at every stage, during a fade and after it (float32, max |jax - torch| <= 1e-5 *
max(1, max |torch|)), and it has jaxgan's parameter counts. So the bench's jaxgan-versus-
PyTorch quality rows compare two implementations of one model, not two models."""

import os
import pathlib
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import models

try:
    import torch
except ImportError:
    torch = None

# CI installs torch (.ci/run), so there these never skip: a missing torch fails them.
pytestmark = pytest.mark.skipif(torch is None and not os.environ.get("CI"),
                                reason="needs torch (pip install torch==2.13.0)")

WIDTHS = {"fmap_base": 64, "fmap_max": 16}  # 4, 8: 16 maps; 16: 8 maps
RES, CH, LATENT = 16, 1, 8


@pytest.fixture(scope="module")
def tm():
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments" / "bench"))
    import _torch_models

    return _torch_models


def _copy_into(module, params) -> None:
    """jaxgan's equalized-LR parameters into the torch module of the same name (``convs_1_0``
    -> ``module.convs[1][0]``): conv kernels HWIO -> OIHW, dense kernels transposed."""
    for name, value in params.items():
        if name == "dense_bias":
            module.dense_bias.data = torch.from_numpy(np.array(value))
            continue
        head, *index = re.fullmatch(r"(.*?)((?:_\d+)*)", name).group(1, 2)
        layer = getattr(module, head)
        for i in index[0].split("_")[1:]:
            layer = layer[int(i)]
        kernel = np.asarray(value["kernel"])
        kernel = kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T
        assert layer.weight.shape == kernel.shape, (name, layer.weight.shape, kernel.shape)
        layer.weight.data = torch.from_numpy(np.ascontiguousarray(kernel))
        if "bias" in value:
            layer.bias.data = torch.from_numpy(np.array(value["bias"]))


def _randomised(params, key):
    """Every parameter N(0, 1) (biases too: zero biases would hide a misplaced one)."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])


def _close(jax_out, torch_out) -> None:
    t = torch_out.detach().numpy()
    np.testing.assert_array_less(np.abs(np.asarray(jax_out) - t).max(),
                                 1e-5 * max(1.0, np.abs(t).max()))


@pytest.mark.parametrize("stage,alpha", [(0, 1.0), (1, 1.0), (2, 0.3)])
def test_pggan_reference_computes_jaxgan_pggan(tm, stage, alpha):
    g = models.PGGANGenerator(resolution=RES, channels=CH, latent_dim=LATENT, **WIDTHS)
    d = models.PGGANDiscriminator(resolution=RES, channels=CH, mbstd_group_size=4, **WIDTHS)
    r = 4 * 2**stage
    z = jax.random.normal(jax.random.key(1), (8, LATENT))
    x = jax.random.uniform(jax.random.key(2), (8, r, r, CH), minval=-1.0, maxval=1.0)
    gp = _randomised(g.init(jax.random.key(3), z, stage, alpha)["params"], jax.random.key(4))
    dp = _randomised(d.init(jax.random.key(5), x, stage, alpha)["params"], jax.random.key(6))
    tg = tm.PGG(RES, latent=LATENT, ch=CH, **WIDTHS)
    td = tm.PGD(RES, ch=CH, mbstd_group=4, **WIDTHS)
    assert tm.count_params(tg) == sum(v.size for v in jax.tree.leaves(gp))
    assert tm.count_params(td) == sum(v.size for v in jax.tree.leaves(dp))
    _copy_into(tg, gp)
    _copy_into(td, dp)
    a = jnp.float32(alpha)
    with torch.no_grad():
        _close(g.apply({"params": gp}, z, stage, a),
               tg(torch.from_numpy(np.array(z)), stage, torch.tensor(alpha)).permute(0, 2, 3, 1))
        _close(d.apply({"params": dp}, x, stage, a),
               td(torch.from_numpy(np.array(x)).permute(0, 3, 1, 2), stage, torch.tensor(alpha)))


def test_pggan_reference_step_checks_counts_and_grows(tm):
    # the bench's step at the config's widths: a wrong count is an error, growth resets Adam
    step = tm.PGGANStep(RES, 4, g_kw={"latent": LATENT, "ch": CH, **WIDTHS},
                        d_kw={"ch": CH, **WIDTHS}, ema_decay=0.5)
    counts = (tm.count_params(step.g), tm.count_params(step.d))
    with pytest.raises(AssertionError):
        tm.PGGANStep(RES, 4, g_kw={"latent": LATENT, "ch": CH, **WIDTHS},
                     d_kw={"ch": CH, **WIDTHS}, counts=(counts[0] + 1, counts[1]))
    step.grow(0, lr=1e-3)
    before = [p.clone() for p in step.g_ema.parameters()]
    d_loss, g_loss = step(torch.rand(4, CH, 4, 4) * 2 - 1, 0, 1.0)
    assert np.isfinite(d_loss) and np.isfinite(g_loss)
    assert step.od.state and step.og.state
    moved = [not torch.equal(b, p) for b, p in zip(before, step.g_ema.parameters(), strict=True)]
    assert any(moved)
    step.grow(1, lr=5e-4)
    assert step.stage == 1 and not step.od.state and step.od.param_groups[0]["lr"] == 5e-4
    step(torch.rand(4, CH, 8, 8) * 2 - 1, 1, 0.25)
