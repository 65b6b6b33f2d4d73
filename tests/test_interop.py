"""PyTorch interop: reference state_dicts <-> jaxgan variables, the torch-free .pth reader /
writer, mismatch errors, translate with --torch_checkpoint, fine-tuning from imported weights.

The parity tests build the reference networks in torch here (own code reproducing the module
nesting of pytorch-CycleGAN-and-pix2pix ``models/networks.py`` and pytorch/examples
``dcgan/main.py``, so the state_dict keys are the real ones), randomise every parameter and
BatchNorm running statistic, ``torch.save`` the state_dict, load it with torch blocked from
import, and compare outputs in float32: eval mode (running statistics) and, where no dropout
acts, train mode (batch statistics) with the running statistics after the step (the large
nets with ``impl="xla"``, the small ones with the CPU's automatic choice). Tolerance:
max |jax - torch| <= 1e-5 * max(1, max |torch|) for outputs (measured: <= 5e-6, the
ResNet-9 with instance norm; most <= 1e-6), rtol 1e-5 / atol 1e-6 for the updated running
statistics (measured: max |diff| <= 2.1e-7 of each tensor's largest value).
``to_state_dict`` gives back the saved state_dict bit for bit, keys in the reference's order.
Tests that need torch skip without it; the rest use state_dicts written by ``jaxgan.interop.pth.write_pth``.
"""

import collections
import functools
import os
import pickle
import subprocess
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxgan import models
from jaxgan.interop import PthFormatError, read_pth, write_pth
from jaxgan.interop import torch as interop

try:
    import torch
    from torch import nn
except ImportError:  # the torch-free tests still run
    torch = None

# CI installs torch (.ci/run), so there these never skip: a missing torch fails them.
needs_torch = pytest.mark.skipif(torch is None and not os.environ.get("CI"),
                                 reason="needs torch (pip install torch==2.13.0)")


# ----------------------------------------------------------------------------------------------
# The reference networks' module nesting, in torch (written for these tests)

if torch is not None:

    def ref_norm(norm, c):
        if norm == "batch":
            return nn.BatchNorm2d(c)
        if norm == "instance":
            return nn.InstanceNorm2d(c, affine=False, track_running_stats=False)
        return nn.Identity()  # the reference's norm 'none'

    class RefUnetBlock(nn.Module):
        def __init__(self, outer, inner, input_nc=None, sub=None, outermost=False,
                     innermost=False, norm="batch", use_dropout=False):
            super().__init__()
            self.outermost = outermost
            bias = norm == "instance"
            down = nn.Conv2d(outer if input_nc is None else input_nc, inner, 4, 2, 1, bias=bias)
            if outermost:
                layers = [down, sub, nn.ReLU(True),
                          nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1), nn.Tanh()]
            elif innermost:
                layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True),
                          nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias),
                          ref_norm(norm, outer)]
            else:
                layers = [nn.LeakyReLU(0.2, True), down, ref_norm(norm, inner), sub,
                          nn.ReLU(True), nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1, bias=bias),
                          ref_norm(norm, outer)] + ([nn.Dropout(0.5)] if use_dropout else [])
            self.model = nn.Sequential(*layers)

        def forward(self, x):  # the in-place LeakyReLU makes the skip carry the activated x
            return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)

    class RefUnet(nn.Module):
        def __init__(self, in_nc, out_nc, num_downs, ngf, norm="batch", use_dropout=False):
            super().__init__()
            b = RefUnetBlock(8 * ngf, 8 * ngf, norm=norm, innermost=True)
            for _ in range(num_downs - 5):
                b = RefUnetBlock(8 * ngf, 8 * ngf, sub=b, norm=norm, use_dropout=use_dropout)
            for outer, inner in ((4, 8), (2, 4), (1, 2)):
                b = RefUnetBlock(outer * ngf, inner * ngf, sub=b, norm=norm)
            self.model = RefUnetBlock(out_nc, ngf, input_nc=in_nc, sub=b, outermost=True,
                                      norm=norm)

        def forward(self, x):
            return self.model(x)

    class RefResnetBlock(nn.Module):
        def __init__(self, dim, norm, use_dropout, bias):
            super().__init__()
            layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias),
                      ref_norm(norm, dim), nn.ReLU(True)]
            layers += [nn.Dropout(0.5)] if use_dropout else []
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias),
                       ref_norm(norm, dim)]
            self.conv_block = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv_block(x)

    class RefResnet(nn.Module):
        def __init__(self, in_nc, out_nc, ngf, norm="instance", use_dropout=False, n_blocks=6):
            super().__init__()
            bias = norm == "instance"
            layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_nc, ngf, 7, bias=bias),
                      ref_norm(norm, ngf), nn.ReLU(True)]
            for m in (1, 2):
                layers += [nn.Conv2d(ngf * m, ngf * m * 2, 3, 2, 1, bias=bias),
                           ref_norm(norm, ngf * m * 2), nn.ReLU(True)]
            layers += [RefResnetBlock(4 * ngf, norm, use_dropout, bias) for _ in range(n_blocks)]
            for m in (4, 2):
                layers += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, 2, 1, output_padding=1,
                                              bias=bias),
                           ref_norm(norm, ngf * m // 2), nn.ReLU(True)]
            layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_nc, 7), nn.Tanh()]
            self.model = nn.Sequential(*layers)

        def forward(self, x):
            return self.model(x)

    class RefNLayerD(nn.Module):
        def __init__(self, in_nc, ndf, n_layers=3, norm="batch"):
            super().__init__()
            bias = norm == "instance"
            seq = [nn.Conv2d(in_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
            mult = 1
            for n in range(1, n_layers):
                prev, mult = mult, min(2**n, 8)
                seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=bias),
                        ref_norm(norm, ndf * mult), nn.LeakyReLU(0.2, True)]
            prev, mult = mult, min(2**n_layers, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=bias),
                    ref_norm(norm, ndf * mult), nn.LeakyReLU(0.2, True),
                    nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
            self.model = nn.Sequential(*seq)

        def forward(self, x):
            return self.model(x)

    class RefPixelD(nn.Module):
        def __init__(self, in_nc, ndf, norm="batch"):
            super().__init__()
            bias = norm == "instance"
            self.net = nn.Sequential(
                nn.Conv2d(in_nc, ndf, 1), nn.LeakyReLU(0.2, True),
                nn.Conv2d(ndf, 2 * ndf, 1, bias=bias), ref_norm(norm, 2 * ndf),
                nn.LeakyReLU(0.2, True), nn.Conv2d(2 * ndf, 1, 1, bias=bias))

        def forward(self, x):
            return self.net(x)

    class RefDCGANG(nn.Module):
        def __init__(self, nz, ngf, nc):
            super().__init__()
            layers = [nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
                      nn.BatchNorm2d(ngf * 8), nn.ReLU(True)]
            for m in (8, 4, 2):
                layers += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 4, 2, 1, bias=False),
                           nn.BatchNorm2d(ngf * m // 2), nn.ReLU(True)]
            layers += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
            self.main = nn.Sequential(*layers)

        def forward(self, z):
            return self.main(z)

    class RefDCGAND(nn.Module):
        def __init__(self, nc, ndf):
            super().__init__()
            layers = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
            for m in (1, 2, 4):
                layers += [nn.Conv2d(ndf * m, ndf * m * 2, 4, 2, 1, bias=False),
                           nn.BatchNorm2d(ndf * m * 2), nn.LeakyReLU(0.2, True)]
            layers += [nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid()]
            self.main = nn.Sequential(*layers)

        def forward(self, x):
            return self.main(x).view(-1, 1).squeeze(1)


def randomize(net, seed=0):
    """Every parameter and running statistic random (so eval mode is not the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith("running_mean"):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif name.endswith("weight") and t.ndim == 1:
                t.copy_(1 + 0.1 * torch.randn(t.shape, generator=g))
            else:
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
    return net


# (id, reference net builder, registry name, load overrides, input (C, size), how it is saved,
#  whether train mode is compared (no dropout acting))
CASES = [
    ("unet_128-batch", lambda: RefUnet(3, 2, 7, 4, "batch"), "unet_128",
     {"use_dropout": False, "impl": "xla"}, (3, 128), "zip", True),
    ("unet_256-instance-dropout", lambda: RefUnet(3, 3, 8, 2, "instance", use_dropout=True),
     "unet_256", {"norm": "instance", "use_dropout": True, "impl": "xla"}, (3, 256), "zip",
     False),
    ("unet_128-none", lambda: RefUnet(2, 3, 7, 2, "none"), "unet_128",
     {"norm": "none", "use_dropout": False, "impl": "xla"}, (2, 128), "zip", False),
    ("resnet_9blocks-instance-legacy", lambda: RefResnet(3, 3, 4, "instance", n_blocks=9),
     "resnet_9blocks", {"impl": "xla"}, (3, 20), "legacy+old_instance_stats", True),
    ("resnet_6blocks-batch-dropout",
     lambda: RefResnet(3, 3, 4, "batch", use_dropout=True, n_blocks=6),
     "resnet_6blocks", {"norm": "batch", "use_dropout": True, "impl": "xla"}, (3, 16), "zip",
     False),
    ("resnet_6blocks-none", lambda: RefResnet(3, 1, 4, "none", n_blocks=6), "resnet_6blocks",
     {"norm": "none"}, (3, 16), "zip", True),
    ("basic-batch-dataparallel", lambda: RefNLayerD(6, 4, 3, "batch"), "basic", {}, (6, 32),
     "dataparallel", True),
    ("n_layers4-instance-compiled", lambda: RefNLayerD(3, 4, 4, "instance"), "n_layers",
     {"norm": "instance"}, (3, 64), "orig_mod", True),
    ("pixel-batch", lambda: RefPixelD(6, 4, "batch"), "pixel", {}, (6, 8), "zip", True),
    ("dcgan-g", lambda: RefDCGANG(16, 4, 3), "dcgan", {"part": "g"}, (16, 1), "zip", True),
    ("dcgan-d", lambda: RefDCGAND(3, 4), "dcgan", {"part": "d"}, (3, 64), "zip", True),
]


def save(net, path, how):
    """torch.save the state_dict as the case says; returns the state_dict as saved (cloned)."""
    sd = collections.OrderedDict((k, t.clone()) for k, t in net.state_dict().items())
    if how == "dataparallel":
        torch.save(nn.DataParallel(net).state_dict(), path)  # keys 'module.<name>'
    elif how == "orig_mod":  # what torch.compile(net).state_dict() names them
        torch.save(collections.OrderedDict(("_orig_mod." + k, t) for k, t in sd.items()), path)
    elif how.startswith("legacy"):
        saved = collections.OrderedDict(sd)
        # a PyTorch 0.3-era CycleGAN file: InstanceNorm statistics the reference deletes
        saved["model.2.running_mean"] = torch.zeros(4)
        saved["model.2.running_var"] = torch.ones(4)
        torch.save(saved, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(sd, path)
    return sd


def load_without_torch(monkeypatch, *args, **kw):
    """interop.load_model with every torch module unimportable (proves no torch at run time)."""
    with monkeypatch.context() as m:
        for name in [n for n in sys.modules if n == "torch" or n.startswith("torch.")]:
            m.setitem(sys.modules, name, None)
        with pytest.raises(ImportError):
            import torch as _  # noqa: F401
        return interop.load_model(*args, **kw)


def fast_jit(fn, *args):
    """``fn`` compiled for ``args`` at XLA's lowest backend optimisation (the tests' usual
    trade: a fraction of the compile time, the same float32 semantics), with full float32
    convolutions (no TF32 on GPUs)."""
    with jax.default_matmul_precision("highest"):
        return jax.jit(fn).lower(*args).compile({"xla_backend_optimization_level": 0})


def to_nchw(y):
    y = np.asarray(y)
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y


@needs_torch
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_reference_state_dict_loads_without_torch_with_the_same_outputs(case, tmp_path,
                                                                        monkeypatch):
    _, build, name, kw, (cin, size), how, compare_train = case
    torch.manual_seed(0)
    net = randomize(build())
    path = tmp_path / "net.pth"
    sd = save(net, path, how)
    module, variables = load_without_torch(monkeypatch, name, path, **kw)
    structure = {k: v for k, v in kw.items() if k in ("part", "use_dropout")}

    # the inverse, bit for bit and in the reference's key order
    back = interop.to_state_dict(name, variables, **structure)
    assert list(back) == list(sd)
    for k, t in sd.items():
        assert back[k].dtype == t.numpy().dtype and np.array_equal(back[k], t.numpy()), k

    dcgan_g = name == "dcgan" and kw["part"] == "g"
    xt = torch.randn(2, cin, size, size)
    xj = jnp.asarray(xt.numpy()[:, :, 0, 0] if dcgan_g else xt.numpy().transpose(0, 2, 3, 1))
    post = (lambda y: 1 / (1 + np.exp(-y))) if name == "dcgan" and kw["part"] == "d" else None
    for train in (False, True) if compare_train else (False,):
        net.train(train)
        with torch.no_grad():
            want = net(xt).numpy()
        mutable = ["batch_stats"] if train and "batch_stats" in variables else False
        out = fast_jit(functools.partial(module.apply, train=train, mutable=mutable),
                       variables, xj)(variables, xj)
        got, updates = out if mutable else (out, None)
        got = to_nchw(got)
        got = post(got) if post else got
        assert got.shape == want.shape
        err = np.abs(got - want).max()
        assert err <= 1e-5 * max(1.0, np.abs(want).max()), (train, err)
        if updates is not None:  # BatchNorm running statistics after one train-mode batch
            stepped = interop.to_state_dict(
                name, {"params": variables["params"], **updates}, **structure)
            for k, t in net.state_dict().items():
                if "running" in k:
                    np.testing.assert_allclose(stepped[k], t.numpy(), rtol=1e-5, atol=1e-6,
                                               err_msg=k)


@needs_torch
def test_write_pth_is_read_by_torch_load_and_torch_files_by_read_pth(tmp_path):
    arrays = collections.OrderedDict(
        w=np.arange(24, dtype=np.float32).reshape(2, 3, 4), t=np.asarray(5, np.int64),
        h=np.linspace(0, 1, 5).astype(np.float16), b=np.array([True, False]))
    write_pth(tmp_path / "a.pth", arrays)
    loaded = torch.load(tmp_path / "a.pth", weights_only=True)
    assert list(loaded) == list(arrays)
    for k, a in arrays.items():
        assert np.array_equal(loaded[k].numpy(), a) and loaded[k].numpy().dtype == a.dtype
    tensors = collections.OrderedDict(
        strided=torch.arange(24.0).reshape(2, 3, 4).permute(2, 0, 1), view=torch.arange(9.0)[3:7],
        bf16=torch.tensor([1.5, -2.25, 3e38]).bfloat16(), scalar=torch.tensor(3))
    for legacy in (False, True):
        torch.save(tensors, tmp_path / "t.pth", _use_new_zipfile_serialization=not legacy)
        got = read_pth(tmp_path / "t.pth")
        for k, t in tensors.items():
            want = t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()
            assert got[k].dtype == want.dtype and np.array_equal(got[k], want), (legacy, k)
    torch.save(nn.Linear(2, 2), tmp_path / "module.pth")  # a whole module, not a state_dict
    with pytest.raises(PthFormatError, match="refusing to load torch.nn"):
        read_pth(tmp_path / "module.pth")


# ----------------------------------------------------------------------------------------------
# Without torch


def jaxgan_state_dict(name, part=None, x_shape=(1, 16, 16, 3), seed=0, **fields):
    """(reference-named state_dict, variables) of a jaxgan model with random numpy variables
    (shapes from ``jax.eval_shape``: nothing compiles; no torch)."""
    m = models.create(name, part, **fields)
    keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    shapes = jax.eval_shape(lambda x: m.init(keys, x, train=False),
                            jax.ShapeDtypeStruct(x_shape, jnp.float32))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        what = path[-1].key
        if what == "var":
            return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
        return ((what == "scale") + 0.1 * rng.standard_normal(leaf.shape)).astype(np.float32)

    v = jax.tree_util.tree_map_with_path(fill, shapes)
    return interop.to_state_dict(name, v, part=part,
                                 **{k: f for k, f in fields.items() if k == "use_dropout"}), v


def trees_equal(a, b):
    return jax.tree.structure(a) == jax.tree.structure(b) and jax.tree.all(
        jax.tree.map(lambda x, y: bool(np.array_equal(np.asarray(x), np.asarray(y))), a, b))


def test_pth_round_trip_and_refusals_without_torch(tmp_path):
    sd, v = jaxgan_state_dict("resnet_6blocks", ngf=4)
    write_pth(tmp_path / "g.pth", sd)
    got = read_pth(tmp_path / "g.pth")
    assert list(got) == list(sd) and all(np.array_equal(got[k], sd[k]) for k in sd)
    assert trees_equal(interop.load_state_dict("resnet_6blocks", tmp_path / "g.pth"), v)
    # a pickle that would call os.system is refused, not run
    evil = pickle.PROTO + b"\x02" + pickle.GLOBAL + b"os\nsystem\n" + pickle.STOP
    with zipfile.ZipFile(tmp_path / "evil.pth", "w") as z:
        z.writestr("evil/data.pkl", evil)
    with pytest.raises(PthFormatError, match=r"refusing to load os\.system"):
        read_pth(tmp_path / "evil.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(PthFormatError, match="not a torch.save file|neither a zip"):
        read_pth(tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError, match="no such PyTorch checkpoint"):
        read_pth(tmp_path / "missing.pth")


def test_prefixes_and_bookkeeping_keys_are_accepted():
    sd, v = jaxgan_state_dict("basic", x_shape=(1, 32, 32, 6), in_channels=6, ndf=4)
    wrapped = {f"module._orig_mod.{k}": a for k, a in sd.items()
               if not k.endswith("num_batches_tracked")}
    assert trees_equal(interop.load_state_dict("basic", wrapped), v)
    assert [k for k, _ in interop.reference_keys("basic", ndf=4)][:4] == [
        "model.0.weight", "model.0.bias", "model.2.weight", "model.3.weight"]


def test_a_state_dict_of_another_architecture_names_the_key_shape_and_what_it_fits():
    sd, _ = jaxgan_state_dict("resnet_6blocks", ngf=4)  # CycleGAN's: instance, no dropout
    fits = "It fits --netG=resnet_6blocks --norm=instance --no_dropout"
    assert interop.guess_architecture(sd) == ["--netG=resnet_6blocks --norm=instance --no_dropout"]
    cases = [
        (("unet_256",), {},
         r"key 'model\.model\.0\.weight' \(expected shape \(64, 3, 4, 4\)\) is missing"),
        (("resnet_9blocks",), {},
         r"key 'model\.16\.conv_block\.1\.weight' \(expected shape \(16, 16, 3, 3\)\) is missing"),
        (("resnet_6blocks",), {"norm": "batch"},
         r"key 'model\.2\.weight' \(expected shape \(4,\)\) is missing"),
        (("resnet_6blocks",), {"use_dropout": True}, r"key 'model\.10\.conv_block\.6\.weight'"),
        (("resnet_6blocks",), {"ngf": 8},
         r"key 'model\.1\.weight' has shape \(4, 3, 7, 7\), expected \(8, 3, 7, 7\)"),
    ]
    for args, kw, message in cases:
        with pytest.raises(interop.StateDictMismatchError, match=message) as e:
            interop.load_state_dict(*args, sd, **kw)
        assert fits in str(e.value), str(e.value)
    missing = {k: a for k, a in sd.items() if k != "model.4.weight"}
    with pytest.raises(interop.StateDictMismatchError,
                       match=r"'model\.4\.weight' \(expected shape \(8, 4, 3, 3\)\) is missing.*"
                             "fits none of the reference architectures"):
        interop.load_state_dict("resnet_6blocks", missing)
    extra = {**sd, "model.99.weight": np.zeros((2, 2), np.float32)}
    with pytest.raises(interop.StateDictMismatchError,
                       match=r"'model\.99\.weight' \(shape \(2, 2\)\) is not in the architecture"):
        interop.load_state_dict("resnet_6blocks", extra)
    # the other side: variables that are not the named model
    _, unet_vars = jaxgan_state_dict("unet_128", x_shape=(1, 128, 128, 3), ngf=2)
    with pytest.raises(interop.StateDictMismatchError, match="are not resnet_6blocks"):
        interop.to_state_dict("resnet_6blocks", unet_vars)
    with pytest.raises(ValueError, match="no PyTorch layout for model 'pggan'"):
        interop.load_state_dict("pggan", sd)


def test_guess_architecture_tells_the_reference_networks_apart():
    unet, _ = jaxgan_state_dict("unet_256", x_shape=(1, 256, 256, 3), ngf=2)
    assert interop.guess_architecture(unet) == ["--netG=unet_256 --norm=batch"]
    d4, _ = jaxgan_state_dict("n_layers", x_shape=(1, 64, 64, 3), n_layers=4, ndf=2,
                              norm="instance")
    assert interop.guess_architecture(d4) == ["--netD=n_layers --n_layers_D=4 --norm=instance"]
    pixel, _ = jaxgan_state_dict("pixel", in_channels=6, x_shape=(1, 4, 4, 6), ndf=2,
                                 norm="none")
    assert interop.guess_architecture(pixel) == ["--netD=pixel --norm=none"]
    g, _ = jaxgan_state_dict("dcgan", "g", x_shape=(1, 100), ngf=2)
    assert interop.guess_architecture(g) == [
        "the DCGAN generator (pytorch/examples netG; part='g')"]
    variables = interop.load_state_dict("dcgan", g, part="g")
    assert variables["params"]["ConvTranspose2d_0"]["kernel"].shape == (4, 4, 100, 16)


# ----------------------------------------------------------------------------------------------
# Command line and fine-tuning


def write_images(folder, sizes):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def translate_cli(tmp_path):
    """``cyclegan --mode=translate`` of tmp_path/latest_net_G.pth (a resnet_6blocks) on
    tmp_path/in into tmp_path/out, in a subprocess; its completed process (exit 0 asserted)."""
    run = [sys.executable, "-m", "jaxgan.experiments.cyclegan", "--mode=translate",
           f"--torch_checkpoint={tmp_path / 'latest_net_G.pth'}", "--netG=resnet_6blocks",
           f"--input={tmp_path / 'in'}", f"--output={tmp_path / 'out'}",
           f"--workdir={tmp_path / 'unused'}"]
    out = subprocess.run(run, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    return out


def test_translate_cli_runs_a_torch_checkpoint_at_each_images_size(tmp_path):
    sd, variables = jaxgan_state_dict("resnet_6blocks", ngf=4)
    write_pth(tmp_path / "latest_net_G.pth", sd)
    sizes = [(20, 28), (17, 26)]  # non-square; 17x26 is padded to 20x28 and cropped back
    write_images(tmp_path / "in", sizes)
    out = translate_cli(tmp_path)
    assert "translated 2 images with the PyTorch checkpoint" in out.stdout
    for i, (h, w) in enumerate(sizes):
        img = np.asarray(Image.open(tmp_path / "out" / f"{i}.png"))
        assert img.shape == (h, w, 3)
    # the same generator in process: identical pixels for the size it takes as it is
    x = np.asarray(Image.open(tmp_path / "in" / "0.png"), np.float32) / 127.5 - 1
    x = jnp.asarray(x)[None]
    apply = functools.partial(models.create("resnet_6blocks", ngf=4).apply, train=True)
    y = fast_jit(apply, variables, x)(variables, x)[0]
    want = np.clip(np.rint((np.asarray(y) + 1) * 127.5), 0, 255)
    got = np.asarray(Image.open(tmp_path / "out" / "0.png"), np.float32)
    assert np.abs(got - want).max() <= 1


def test_pix2pix_translate_with_a_torch_unet_pads_to_the_sizes_it_takes(tmp_path):
    from jaxgan.experiments import _shared

    sd, _ = jaxgan_state_dict("unet_128", x_shape=(1, 128, 128, 3), ngf=2)
    write_pth(tmp_path / "g.pth", sd)
    write_images(tmp_path / "in", [(40, 90)])  # padded to 128x128 (mirrored), cropped back
    n = _shared.translate_torch("pix2pix", str(tmp_path / "g.pth"), str(tmp_path / "in"),
                                str(tmp_path / "out"), net_g="unet_128", eval_mode=True,
                                impl="xla")
    assert n == 1
    assert np.asarray(Image.open(tmp_path / "out" / "0.png")).shape == (40, 90, 3)
    with pytest.raises(interop.StateDictMismatchError,
                       match=r"is not unet_256 .*It fits --netG=unet_128 --norm=batch\."):
        _shared.translate_torch("pix2pix", str(tmp_path / "g.pth"), str(tmp_path / "in"),
                                str(tmp_path / "out2"))  # the default netG is unet_256


def test_a_new_run_starts_from_imported_weights_and_a_resumed_one_keeps_its_own(tmp_path,
                                                                                monkeypatch,
                                                                                capsys):
    """The experiments' wiring of config.init (pix2pix and CycleGAN train_and_evaluate):
    a fresh run's state is ``init_from_torch(create_state(...))``; a workdir with a
    checkpoint resumes it untouched. (init_from_torch itself: tests/test_train_*.py.)"""
    import types

    from jaxgan.configs import pix2pix as pix2pix_cfg
    from jaxgan.experiments import _shared
    from jaxgan.experiments import pix2pix as pix2pix_exp

    c = pix2pix_cfg.get_config()
    c.init.torch_G = str(tmp_path / "latest_net_G.pth")
    train = types.SimpleNamespace(create_state=lambda config, key: "fresh",
                                  init_from_torch=lambda config, state: ("loaded", state))
    plain = pix2pix_exp.family()
    family = _shared.with_torch_init(plain, train, c, str(tmp_path / "w"))
    assert family.create_state(c, jax.random.key(0), 0) == ("loaded", "fresh")
    assert "G <- " in capsys.readouterr().out
    monkeypatch.setattr(_shared, "has_checkpoint", lambda workdir: True)
    assert _shared.with_torch_init(plain, train, c, "w") is plain
    assert "resuming it, not loading init.torch_G" in capsys.readouterr().out
    c.init.torch_G = ""
    assert _shared.with_torch_init(plain, train, c, "w") is plain


@needs_torch
def test_translate_cli_gives_the_references_images_for_a_torch_saved_generator(tmp_path):
    """A generator saved by torch (the reference's nesting and names), run by the CLI, writes
    what the reference's test.py writes for it (eval mode; --preprocess none on sizes that are
    multiples of 4, where it resizes nothing; ToTensor + Normalize(0.5, 0.5) in, tensor2im's
    truncation out): within 1/255 per pixel, at the input's non-square size."""
    net = randomize(RefResnet(3, 3, 4, "instance", n_blocks=6), seed=3).eval()
    torch.save(net.state_dict(), tmp_path / "latest_net_G.pth")
    write_images(tmp_path / "in", [(20, 28)])
    translate_cli(tmp_path)
    x = np.asarray(Image.open(tmp_path / "in" / "0.png"), np.float32) / 255.0
    with torch.no_grad():
        y = net(torch.from_numpy((x - 0.5) / 0.5).permute(2, 0, 1)[None])[0]
    want = ((y.permute(1, 2, 0).numpy() + 1) / 2.0 * 255.0).astype(np.uint8).astype(int)
    got = np.asarray(Image.open(tmp_path / "out" / "0.png")).astype(int)
    assert got.shape == want.shape == (20, 28, 3)
    assert np.abs(got - want).max() <= 1
