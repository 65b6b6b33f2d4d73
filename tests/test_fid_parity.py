"""Parity of jaxgan's Inception-v3 FID features and FID with pytorch-fid's.

The reference is built here in torch (own code, ``torch.nn`` only, no torchvision) with the module
structure and parameter names of pytorch-fid's ``fid_inception_v3`` network (torchvision's
``Inception3`` with the FIDInceptionA/C/E_1/E_2 blocks: average pools that exclude the zero
padding, a 3x3 stride-1 max pool in Mixed_7c; ``fc`` of 1008 classes, no AuxLogits), so its
``state_dict`` has the keys of pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``. Its
forward follows pytorch-fid's ``InceptionV3`` wrapper: (N, 3, H, W) in [0, 1] ->
``F.interpolate(size=(299, 299), mode='bilinear', align_corners=False)`` -> ``2 x - 1`` ->
blocks -> 2048-D global average pool. Every parameter and BatchNorm running statistic is
random (not at init), the net is in eval mode, and the state_dict is converted to jaxgan's
``.npz`` exactly as ``jaxgan.metrics.inception``'s docstring tells users to, then loaded with
``load_inception``. jaxgan gets the same images as (N, H, W, 3) in [-1, 1].

Tolerances (float32; torch on CPU, jaxgan's convs at ``Precision.HIGHEST``):
max |jax - torch| <= 1e-5 * max |torch| for features, and FID equal to the pytorch-fid-style
FID (numpy mean, ``np.cov``, ``scipy.linalg.sqrtm`` of the torch features) within rel 1e-5.
Measured: features <= 4.1e-7 of max |feature| (max |diff| 1.1e-5 at max |feature| 35), FID
rel diff 2.1e-7 (9460.6716 vs 9460.6736; the full 2048-D sqrtm gives 9460.6736 too).
"""

import os
import time

import numpy as np
import pytest
import scipy.linalg

from jaxgan.metrics import fid as jfid
from jaxgan.metrics import inception as jinc

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:
    torch = None

# CI installs torch (.ci/run), so there these never skip: a missing torch fails them.
needs_torch = pytest.mark.skipif(torch is None and not os.environ.get("CI"),
                                 reason="needs torch (pip install torch==2.13.0)")

FEATURE_RTOL = 1e-5  # of the largest |feature|
FID_RTOL = 1e-5

# ----------------------------------------------------------------------------------------------
# pytorch-fid's FID Inception-v3, written for this test (module and parameter names as there)

if torch is not None:

    class Unit(nn.Module):  # torchvision's BasicConv2d: conv (no bias) -> BN(eps 1e-3) -> ReLU
        def __init__(self, cin, cout, kernel_size, stride=1, padding=0):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding,
                                  bias=False)
            self.bn = nn.BatchNorm2d(cout, eps=0.001)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)))

    def _avg_exclude_pad(x):
        return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)

    class FidA(nn.Module):
        def __init__(self, cin, pool_features):
            super().__init__()
            self.branch1x1 = Unit(cin, 64, 1)
            self.branch5x5_1 = Unit(cin, 48, 1)
            self.branch5x5_2 = Unit(48, 64, 5, padding=2)
            self.branch3x3dbl_1 = Unit(cin, 64, 1)
            self.branch3x3dbl_2 = Unit(64, 96, 3, padding=1)
            self.branch3x3dbl_3 = Unit(96, 96, 3, padding=1)
            self.branch_pool = Unit(cin, pool_features, 1)

        def forward(self, x):
            a = self.branch1x1(x)
            b = self.branch5x5_2(self.branch5x5_1(x))
            c = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            d = self.branch_pool(_avg_exclude_pad(x))
            return torch.cat([a, b, c, d], 1)

    class RefB(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.branch3x3 = Unit(cin, 384, 3, stride=2)
            self.branch3x3dbl_1 = Unit(cin, 64, 1)
            self.branch3x3dbl_2 = Unit(64, 96, 3, padding=1)
            self.branch3x3dbl_3 = Unit(96, 96, 3, stride=2)

        def forward(self, x):
            a = self.branch3x3(x)
            b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return torch.cat([a, b, F.max_pool2d(x, kernel_size=3, stride=2)], 1)

    class FidC(nn.Module):
        def __init__(self, cin, c7):
            super().__init__()
            self.branch1x1 = Unit(cin, 192, 1)
            self.branch7x7_1 = Unit(cin, c7, 1)
            self.branch7x7_2 = Unit(c7, c7, (1, 7), padding=(0, 3))
            self.branch7x7_3 = Unit(c7, 192, (7, 1), padding=(3, 0))
            self.branch7x7dbl_1 = Unit(cin, c7, 1)
            self.branch7x7dbl_2 = Unit(c7, c7, (7, 1), padding=(3, 0))
            self.branch7x7dbl_3 = Unit(c7, c7, (1, 7), padding=(0, 3))
            self.branch7x7dbl_4 = Unit(c7, c7, (7, 1), padding=(3, 0))
            self.branch7x7dbl_5 = Unit(c7, 192, (1, 7), padding=(0, 3))
            self.branch_pool = Unit(cin, 192, 1)

        def forward(self, x):
            a = self.branch1x1(x)
            b = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            c = self.branch7x7dbl_1(x)
            for i in range(2, 6):
                c = getattr(self, f"branch7x7dbl_{i}")(c)
            d = self.branch_pool(_avg_exclude_pad(x))
            return torch.cat([a, b, c, d], 1)

    class RefD(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.branch3x3_1 = Unit(cin, 192, 1)
            self.branch3x3_2 = Unit(192, 320, 3, stride=2)
            self.branch7x7x3_1 = Unit(cin, 192, 1)
            self.branch7x7x3_2 = Unit(192, 192, (1, 7), padding=(0, 3))
            self.branch7x7x3_3 = Unit(192, 192, (7, 1), padding=(3, 0))
            self.branch7x7x3_4 = Unit(192, 192, 3, stride=2)

        def forward(self, x):
            a = self.branch3x3_2(self.branch3x3_1(x))
            b = x
            for i in range(1, 5):
                b = getattr(self, f"branch7x7x3_{i}")(b)
            return torch.cat([a, b, F.max_pool2d(x, kernel_size=3, stride=2)], 1)

    class FidE(nn.Module):
        def __init__(self, cin, pool):  # pool: 'avg' (FIDInceptionE_1) or 'max' (E_2)
            super().__init__()
            self.pool = pool
            self.branch1x1 = Unit(cin, 320, 1)
            self.branch3x3_1 = Unit(cin, 384, 1)
            self.branch3x3_2a = Unit(384, 384, (1, 3), padding=(0, 1))
            self.branch3x3_2b = Unit(384, 384, (3, 1), padding=(1, 0))
            self.branch3x3dbl_1 = Unit(cin, 448, 1)
            self.branch3x3dbl_2 = Unit(448, 384, 3, padding=1)
            self.branch3x3dbl_3a = Unit(384, 384, (1, 3), padding=(0, 1))
            self.branch3x3dbl_3b = Unit(384, 384, (3, 1), padding=(1, 0))
            self.branch_pool = Unit(cin, 192, 1)

        def forward(self, x):
            a = self.branch1x1(x)
            b = self.branch3x3_1(x)
            b = torch.cat([self.branch3x3_2a(b), self.branch3x3_2b(b)], 1)
            c = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            c = torch.cat([self.branch3x3dbl_3a(c), self.branch3x3dbl_3b(c)], 1)
            if self.pool == "max":
                p = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
            else:
                p = _avg_exclude_pad(x)
            return torch.cat([a, b, c, self.branch_pool(p)], 1)

    class FidInception(nn.Module):
        """fid_inception_v3's module tree; forward = pytorch-fid's InceptionV3 (block 3 only)."""

        def __init__(self):
            super().__init__()
            self.Conv2d_1a_3x3 = Unit(3, 32, 3, stride=2)
            self.Conv2d_2a_3x3 = Unit(32, 32, 3)
            self.Conv2d_2b_3x3 = Unit(32, 64, 3, padding=1)
            self.Conv2d_3b_1x1 = Unit(64, 80, 1)
            self.Conv2d_4a_3x3 = Unit(80, 192, 3)
            self.Mixed_5b = FidA(192, 32)
            self.Mixed_5c = FidA(256, 64)
            self.Mixed_5d = FidA(288, 64)
            self.Mixed_6a = RefB(288)
            self.Mixed_6b = FidC(768, 128)
            self.Mixed_6c = FidC(768, 160)
            self.Mixed_6d = FidC(768, 160)
            self.Mixed_6e = FidC(768, 192)
            self.Mixed_7a = RefD(768)
            self.Mixed_7b = FidE(1280, "avg")
            self.Mixed_7c = FidE(2048, "max")
            self.fc = nn.Linear(2048, 1008)  # in the .pth, unused for FID

        def forward(self, x):  # (N, 3, H, W) in [0, 1]
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            x = 2 * x - 1
            for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"):
                x = getattr(self, name)(x)
            x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
            x = F.max_pool2d(x, kernel_size=3, stride=2)
            for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
                x = getattr(self, f"Mixed_{name}")(x)
            return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)


def _randomised_reference(seed=0):
    torch.manual_seed(seed)
    net = FidInception()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.8, 1.2)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(7)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0.0, 0.02)
                m.bias.normal_(0.0, 0.02)
    return net.eval()


def _pytorch_fid_style_fid(act_a, act_b, eps=1e-6):
    """FID as pytorch-fid computes it (calculate_activation_statistics + calculate_frechet_distance):
    mean, np.cov(rowvar=False), scipy sqrtm of sigma_a sigma_b (retried with eps I added to both
    if not finite), real part, ||dmu||^2 + tr sigma_a + tr sigma_b - 2 tr sqrtm."""
    mu_a, mu_b = np.mean(act_a, axis=0), np.mean(act_b, axis=0)
    s_a, s_b = np.cov(act_a, rowvar=False), np.cov(act_b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s_a.dot(s_b))
    if not np.isfinite(covmean).all():
        off = np.eye(s_a.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((s_a + off).dot(s_b + off))
    if np.iscomplexobj(covmean):
        assert np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3)
        covmean = covmean.real
    diff = mu_a - mu_b
    return float(diff.dot(diff) + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean))


@needs_torch
@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # few samples: singular
def test_features_and_fid_match_pytorch_fid(tmp_path):
    t0 = time.perf_counter()
    net = _randomised_reference()
    sd = net.state_dict()
    assert "fc.weight" in sd and "Mixed_7c.branch_pool.bn.num_batches_tracked" in sd
    # the conversion documented in jaxgan.metrics.inception (for pt_inception-...-6726825d.pth)
    np.savez(tmp_path / "pt_inception.npz", **{k: v.numpy() for k, v in sd.items()})
    rng = np.random.RandomState(0)
    cases = {  # name: (N, H, W, 3) images in [0, 1]
        "native 299x299": rng.uniform(0, 1, (3, 299, 299, 3)).astype(np.float32),
        "64x64 (upsampled)": rng.uniform(0, 1, (3, 64, 64, 3)).astype(np.float32),
        "48x80 (non-square)": rng.uniform(0, 1, (2, 48, 80, 3)).astype(np.float32),
    }
    feats = {}
    for name, x01 in cases.items():
        extractor = jinc.load_inception(str(tmp_path / "pt_inception.npz"),
                                        batch_size=x01.shape[0])
        got = extractor(2.0 * x01 - 1.0)
        with torch.no_grad():
            want = net(torch.from_numpy(x01).permute(0, 3, 1, 2).contiguous()).numpy()
        assert got.shape == want.shape == (x01.shape[0], 2048)
        scale = np.abs(want).max()
        err = np.abs(got - want).max()
        print(f"{name}: max |jax - torch| = {err:.3g} (max |torch| = {scale:.3g}, "
              f"rel {err / scale:.3g})")
        assert scale > 1e-2 and np.std(want) > 1e-3 * scale  # not a degenerate, all-zero net
        assert err <= FEATURE_RTOL * scale, (name, err, scale)
        feats[name] = (got, want)

    jax_a, pt_a = feats["native 299x299"]
    jax_b = np.concatenate([feats["64x64 (upsampled)"][0], feats["48x80 (non-square)"][0]])
    pt_b = np.concatenate([feats["64x64 (upsampled)"][1], feats["48x80 (non-square)"][1]])
    got_fid = jfid.fid_from_features(jax_a, jax_b)  # jaxgan on its own 2048-D features
    # pytorch-fid's computation on the torch features. scipy's sqrtm of a 2048x2048 matrix takes
    # ~50 s on 2 cores, so both sets are first written in an orthonormal basis Q (2048 x 8) of
    # the span of all their vectors: the centred vectors and the mean difference lie in it, so
    # ||dmu||^2, tr(sigma) and the eigenvalues of sigma_a sigma_b (hence FID) are unchanged.
    pt_a64, pt_b64 = pt_a.astype(np.float64), pt_b.astype(np.float64)
    q, _ = np.linalg.qr(np.concatenate([pt_a64, pt_b64]).T)
    want_fid = _pytorch_fid_style_fid(pt_a64 @ q, pt_b64 @ q)
    # jaxgan's D x D eigendecomposition route, on the same reduced torch features
    got_fid_eig = jfid.frechet_distance((pt_a64 @ q).mean(0), np.cov(pt_a64 @ q, rowvar=False),
                                        (pt_b64 @ q).mean(0), np.cov(pt_b64 @ q, rowvar=False))
    print(f"FID: jaxgan {got_fid!r}, pytorch-fid style {want_fid!r} (rel diff "
          f"{abs(got_fid - want_fid) / want_fid:.3g}); jaxgan eig route on the torch features "
          f"{got_fid_eig!r}; {time.perf_counter() - t0:.1f} s")
    assert want_fid > 0
    assert got_fid == pytest.approx(want_fid, rel=FID_RTOL)
    assert got_fid_eig == pytest.approx(want_fid, rel=1e-9)
