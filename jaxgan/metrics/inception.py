"""Inception-v3 pool3 (2048-D) feature extractor for FID and KID, with user-supplied weights.

jaxgan ships no weights. The network is torchvision's ``Inception3`` in pytorch-fid's FID variant
(``fid_variant=True``: the Mixed_5*, Mixed_6* and Mixed_7b average pools exclude the padding from
the count; Mixed_7c uses a 3x3 max pool) or torchvision's plain one (``fid_variant=False``). With
pytorch-fid's weight file the features are pytorch-fid's (``tests/test_fid_parity.py``).

Weight file format: an ``.npz`` of float arrays named and laid out as the network's PyTorch
``state_dict``; per conv+BN unit ``<path>`` (e.g. ``Mixed_5b.branch5x5_2``), ``<path>.conv.weight``
(out, in, kh, kw) and ``<path>.bn.{weight,bias,running_mean,running_var}`` (out,); BN epsilon 1e-3.
Other entries (``fc.*``, ``AuxLogits.*``, ``*.num_batches_tracked``) are ignored;
:func:`inception_weight_shapes` lists the expected names and shapes. To convert:

    # pytorch-fid's FID weights (pt_inception-2015-12-05-6726825d.pth, from its GitHub release):
    import numpy as np, torch
    sd = torch.load("pt_inception-2015-12-05-6726825d.pth", map_location="cpu")
    np.savez("pt_inception.npz", **{k: v.numpy() for k, v in sd.items()})
    # -> load_inception("pt_inception.npz")                     (fid_variant=True)

    # torchvision's ImageNet weights (not the FID-standard network):
    import torchvision
    sd = torchvision.models.inception_v3(weights="IMAGENET1K_V1").state_dict()
    np.savez("tv_inception.npz", **{k: v.numpy() for k, v in sd.items()})
    # -> load_inception("tv_inception.npz", fid_variant=False)

Input: (N, H, W, 3) in [-1, 1], resized to 299x299 bilinearly (half-pixel centres, no
antialiasing, as ``F.interpolate(..., mode='bilinear', align_corners=False)``). The features are
the global average pool of Mixed_7c.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

BN_EPSILON = 1e-3
FEATURE_DIM = 2048
INPUT_SIZE = 299
MIN_INPUT_SIZE = 75


class BasicConv(nn.Module):
    """Conv (no bias) -> BatchNorm (running statistics, eps 1e-3) -> ReLU."""

    features: int
    kernel: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: Any = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Conv(
            self.features, self.kernel, self.strides, padding=self.padding, use_bias=False,
            name="conv", precision=jax.lax.Precision.HIGHEST,
        )(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, name="bn")(x)
        return nn.relu(x)


def _avg3(x, count_include_pad):
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=count_include_pad)


def _max3s2(x):
    return nn.max_pool(x, (3, 3), (2, 2))


class InceptionA(nn.Module):
    pool_features: int
    count_include_pad: bool

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(64, (1, 1), name="branch1x1")(x)
        b5 = BasicConv(48, (1, 1), name="branch5x5_1")(x)
        b5 = BasicConv(64, (5, 5), padding=2, name="branch5x5_2")(b5)
        b3 = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        b3 = BasicConv(96, (3, 3), padding=1, name="branch3x3dbl_2")(b3)
        b3 = BasicConv(96, (3, 3), padding=1, name="branch3x3dbl_3")(b3)
        bp = BasicConv(self.pool_features, (1, 1), name="branch_pool")(
            _avg3(x, self.count_include_pad)
        )
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(384, (3, 3), (2, 2), name="branch3x3")(x)
        bd = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv(96, (3, 3), padding=1, name="branch3x3dbl_2")(bd)
        bd = BasicConv(96, (3, 3), (2, 2), name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max3s2(x)], axis=-1)


class InceptionC(nn.Module):
    channels_7x7: int
    count_include_pad: bool

    @nn.compact
    def __call__(self, x):
        c7 = self.channels_7x7
        b1 = BasicConv(192, (1, 1), name="branch1x1")(x)
        b7 = BasicConv(c7, (1, 1), name="branch7x7_1")(x)
        b7 = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = BasicConv(c7, (1, 1), name="branch7x7dbl_1")(x)
        bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = BasicConv(192, (1, 1), name="branch_pool")(_avg3(x, self.count_include_pad))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(192, (1, 1), name="branch3x3_1")(x)
        b3 = BasicConv(320, (3, 3), (2, 2), name="branch3x3_2")(b3)
        b7 = BasicConv(192, (1, 1), name="branch7x7x3_1")(x)
        b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv(192, (3, 3), (2, 2), name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max3s2(x)], axis=-1)


class InceptionE(nn.Module):
    pool: str  # 'avg_include_pad', 'avg_exclude_pad' or 'max'

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(320, (1, 1), name="branch1x1")(x)
        b3 = BasicConv(384, (1, 1), name="branch3x3_1")(x)
        b3 = jnp.concatenate([
            BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
            BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3),
        ], axis=-1)
        bd = BasicConv(448, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv(384, (3, 3), padding=1, name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([
            BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
            BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd),
        ], axis=-1)
        if self.pool == "max":
            pooled = nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)))
        else:
            pooled = _avg3(x, self.pool == "avg_include_pad")
        bp = BasicConv(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3Features(nn.Module):
    """Inception-v3 up to the global average pool: (N, H, W, 3) float32 in [-1, 1], already
    resized (299x299 normally; at least 75x75) -> (N, 2048) float32."""

    fid_variant: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        inc = not self.fid_variant  # torchvision counts the padding, pytorch-fid's blocks do not
        x = BasicConv(32, (3, 3), (2, 2), name="Conv2d_1a_3x3")(x)
        x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = BasicConv(64, (3, 3), padding=1, name="Conv2d_2b_3x3")(x)
        x = _max3s2(x)
        x = BasicConv(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max3s2(x)
        x = InceptionA(32, inc, name="Mixed_5b")(x)
        x = InceptionA(64, inc, name="Mixed_5c")(x)
        x = InceptionA(64, inc, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        x = InceptionC(128, inc, name="Mixed_6b")(x)
        x = InceptionC(160, inc, name="Mixed_6c")(x)
        x = InceptionC(160, inc, name="Mixed_6d")(x)
        x = InceptionC(192, inc, name="Mixed_6e")(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE("avg_include_pad" if inc else "avg_exclude_pad", name="Mixed_7b")(x)
        x = InceptionE("avg_include_pad" if inc else "max", name="Mixed_7c")(x)
        return jnp.mean(x, axis=(1, 2))


def _abstract_variables(fid_variant: bool = True):
    model = InceptionV3Features(fid_variant)
    return jax.eval_shape(
        model.init, jax.random.key(0), jnp.zeros((1, MIN_INPUT_SIZE, MIN_INPUT_SIZE, 3))
    )


def _unit_paths(tree: Mapping, prefix: tuple[str, ...] = ()):
    """Yield the module paths (tuples) of every conv+BN unit in a params tree."""
    for name, sub in tree.items():
        if name == "conv":
            yield prefix
        elif isinstance(sub, Mapping) and name != "bn":
            yield from _unit_paths(sub, prefix + (name,))


def inception_weight_shapes(fid_variant: bool = True) -> dict[str, tuple[int, ...]]:
    """Expected ``{torch-style name: shape}`` of a weight file (see the module docstring)."""
    return dict(_weight_shapes(fid_variant))


@functools.lru_cache(maxsize=2)
def _weight_shapes(fid_variant: bool) -> dict[str, tuple[int, ...]]:
    abstract = _abstract_variables(fid_variant)
    shapes = {}
    for path in _unit_paths(abstract["params"]):
        node = abstract["params"]
        for p in path:
            node = node[p]
        kh, kw, cin, cout = node["conv"]["kernel"].shape
        name = ".".join(path)
        shapes[f"{name}.conv.weight"] = (cout, cin, kh, kw)
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.bn.{leaf}"] = (cout,)
    return shapes


def variables_from_state_dict(
    arrays: Mapping[str, np.ndarray], fid_variant: bool = True
) -> dict[str, Any]:
    """Flax variables ``{'params', 'batch_stats'}`` from torch-named arrays (see module docstring)."""
    expected = inception_weight_shapes(fid_variant)
    missing = sorted(set(expected) - set(arrays))
    if missing:
        raise ValueError(
            f"Inception weight file lacks {len(missing)} of {len(expected)} expected arrays (first: "
            f"{missing[:3]}); it must be a PyTorch Inception-v3 state_dict saved as .npz, see "
            "jaxgan.metrics.inception's docstring"
        )
    bad = [
        f"{k}: {tuple(arrays[k].shape)} != {v}" for k, v in expected.items()
        if tuple(arrays[k].shape) != v
    ]
    if bad:
        raise ValueError(f"Inception weight shapes do not match the network: {bad[:3]}")
    params: dict = {}
    stats: dict = {}
    for key in expected:
        if not key.endswith(".conv.weight"):
            continue
        path = key[: -len(".conv.weight")].split(".")
        p, s = params, stats
        for part in path:
            p, s = p.setdefault(part, {}), s.setdefault(part, {})
        base = ".".join(path)
        f32 = functools.partial(np.asarray, dtype=np.float32)
        p["conv"] = {"kernel": f32(arrays[f"{base}.conv.weight"]).transpose(2, 3, 1, 0)}
        p["bn"] = {"scale": f32(arrays[f"{base}.bn.weight"]), "bias": f32(arrays[f"{base}.bn.bias"])}
        s["bn"] = {
            "mean": f32(arrays[f"{base}.bn.running_mean"]),
            "var": f32(arrays[f"{base}.bn.running_var"]),
        }
    return {"params": params, "batch_stats": stats}


def state_dict_from_variables(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Inverse of :func:`variables_from_state_dict` (torch names and layouts)."""
    out = {}
    for path in _unit_paths(variables["params"]):
        p, s = variables["params"], variables["batch_stats"]
        for part in path:
            p, s = p[part], s[part]
        base = ".".join(path)
        out[f"{base}.conv.weight"] = np.asarray(p["conv"]["kernel"]).transpose(3, 2, 0, 1)
        out[f"{base}.bn.weight"] = np.asarray(p["bn"]["scale"])
        out[f"{base}.bn.bias"] = np.asarray(p["bn"]["bias"])
        out[f"{base}.bn.running_mean"] = np.asarray(s["bn"]["mean"])
        out[f"{base}.bn.running_var"] = np.asarray(s["bn"]["var"])
    return out


def random_inception_state_dict(seed: int = 0, fid_variant: bool = True) -> dict[str, np.ndarray]:
    """Random torch-style weights of the right shapes, for tests (the features are meaningless)."""
    rng = np.random.RandomState(seed)
    out = {}
    for k, shape in inception_weight_shapes(fid_variant).items():
        if k.endswith("conv.weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            out[k] = (rng.randn(*shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        elif k.endswith("running_var"):
            out[k] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif k.endswith("bn.weight"):
            out[k] = rng.uniform(0.8, 1.2, shape).astype(np.float32)
        else:
            out[k] = (0.1 * rng.randn(*shape)).astype(np.float32)
    return out


@functools.partial(jax.jit, static_argnames=("fid_variant", "resize"))
def inception_features(
    variables: Mapping[str, Any], images: jax.Array, *, fid_variant: bool = True,
    resize: bool = True,
) -> jax.Array:
    """Jitted pool3 features: (N, H, W, 3) in [-1, 1] -> (N, 2048) float32; ``resize`` first
    resizes to 299x299 as the module docstring says."""
    x = jnp.asarray(images, jnp.float32)
    if resize:
        x = jax.image.resize(
            x, (x.shape[0], INPUT_SIZE, INPUT_SIZE, x.shape[3]), "bilinear", antialias=False
        )
    return InceptionV3Features(fid_variant).apply(variables, x)


class InceptionFeatureExtractor:
    """Callable ``(images (N, H, W, 3) in [-1, 1]) -> (N, 2048) float32 numpy`` pool3 features.

    ``variables`` come from :func:`load_inception` / :func:`variables_from_state_dict`;
    ``resize=False`` feeds the images as they are (at least 75x75); ``batch_size`` images go
    through each forward pass (a smaller last batch is zero-padded).
    """

    def __init__(
        self, variables: Mapping[str, Any], *, fid_variant: bool = True, resize: bool = True,
        batch_size: int = 64,
    ):
        self.fid_variant = fid_variant
        self.variables = jax.tree_util.tree_map(jnp.asarray, dict(variables))
        self.resize = resize
        self.batch_size = batch_size

    def __call__(self, images: jax.Array | np.ndarray) -> np.ndarray:
        chex.assert_rank(images, 4)
        if images.shape[-1] != 3:
            raise ValueError(
                f"Inception features need RGB images (N, H, W, 3), got {tuple(images.shape)}: "
                "repeat a grayscale channel 3 times first"
            )
        if not self.resize and min(images.shape[1:3]) < MIN_INPUT_SIZE:
            raise ValueError(
                f"without resizing, Inception-v3 needs at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} "
                f"inputs, got {images.shape[1]}x{images.shape[2]}"
            )
        outs = []
        for i in range(0, images.shape[0], self.batch_size):
            batch = np.asarray(images[i : i + self.batch_size], np.float32)
            n = batch.shape[0]
            if n < self.batch_size:  # pad the last batch: one compilation per input size
                pad = np.zeros((self.batch_size - n, *batch.shape[1:]), np.float32)
                batch = np.concatenate([batch, pad])
            outs.append(np.asarray(inception_features(
                self.variables, batch, fid_variant=self.fid_variant, resize=self.resize
            ))[:n])
        return np.concatenate(outs, axis=0)


def load_inception(path: str, *, fid_variant: bool = True, **kwargs) -> InceptionFeatureExtractor:
    """Feature extractor from an ``.npz`` weight file (format in the module docstring)."""
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"Inception weight file {path!r} not found: FID/KID need user-supplied weights, see "
            "jaxgan.metrics.inception for the format and how to convert pt_inception weights"
        ) from e
    return InceptionFeatureExtractor(
        variables_from_state_dict(arrays, fid_variant), fid_variant=fid_variant, **kwargs
    )
