"""PyTorch state_dicts of the reference networks <-> jaxgan variables.

:func:`load_state_dict` converts a state_dict of the pix2pix / CycleGAN reference networks
([CG] ``models/networks.py``: ``unet_128``, ``unet_256``, ``resnet_6blocks``, ``resnet_9blocks``,
the ``basic`` / ``n_layers`` PatchGAN and the ``pixel`` D, with batch, instance or no norm and
dropout) or of the pytorch/examples DCGAN ([DC] ``netG`` / ``netD``) into the
``{"params", "batch_stats"}`` of the jaxgan model of the same registry name;
:func:`to_state_dict` is its inverse. ``.pth`` files are read without torch.

Keys are the reference's module paths: the U-Net's nested ``UnetSkipConnectionBlock``
Sequentials (``model.model.0`` the outermost down-conv, ``model.model.1.model.1`` the next,
``...model.3`` the inner block, ``model.5`` / ``model.6`` a block's up-conv / up-norm), the
ResNet's ``model`` with its blocks' ``conv_block`` (``model.10.conv_block.1.weight``), the NLayer
D's ``model``, the pixel D's ``net``, DCGAN's ``main``. Prefixes ``module.`` (DataParallel / DDP)
and ``_orig_mod.`` (``torch.compile``) are dropped; ``num_batches_tracked`` and the
``running_mean`` / ``running_var`` of old InstanceNorm checkpoints are ignored.

Layouts: conv weights (out, in, kH, kW) and ``ConvTranspose2d`` weights (in, out, kH, kW) both
become (kH, kW, in, out) kernels (both scatter form, so no flip). BatchNorm ``weight`` / ``bias``
are ``params`` ``scale`` / ``bias``; ``running_mean`` / ``running_var`` (unbiased, as PyTorch, so
eval mode matches) are ``batch_stats`` ``mean`` / ``var``. jaxgan's networks take NHWC images, its
DCGAN G (N, nz) latents (the reference: (N, nz, 1, 1)); its DCGAN D returns logits (no sigmoid).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.interop.pth import read_pth

__all__ = [
    "MODELS",
    "StateDictMismatchError",
    "guess_architecture",
    "load_model",
    "load_state_dict",
    "reference_keys",
    "to_state_dict",
]

#: The registry names (and parts) this module converts.
MODELS = {
    "unet_128": ("g",), "unet_256": ("g",), "resnet_6blocks": ("g",),
    "resnet_9blocks": ("g",), "basic": ("d",), "n_layers": ("d",), "pixel": ("d",),
    "dcgan": ("g", "d"),
}


class StateDictMismatchError(ValueError):
    """A state_dict that is not the requested architecture (names the first difference)."""


@dataclasses.dataclass(frozen=True)
class _Layer:
    """One parametrised layer: its torch module path, kind, jaxgan module path and size.

    kind: "conv" / "convT" (shape (c_in, c_out, k)), "bn" ((C,)) or "inorm" (no parameters)."""

    prefix: str
    kind: str
    path: tuple[str, ...]
    shape: tuple[int, ...]
    bias: bool = False

    def entries(self) -> Iterator[tuple[str, tuple[int, ...], bool]]:
        """(torch key, torch shape, required) in the reference module's state_dict order."""
        p = self.prefix
        if self.kind in ("conv", "convT"):
            cin, cout, k = self.shape
            yield f"{p}.weight", ((cout, cin, k, k) if self.kind == "conv" else (cin, cout, k, k)), True
            if self.bias:
                yield f"{p}.bias", (cout,), True
        elif self.kind == "bn":
            (c,) = self.shape
            for name in ("weight", "bias", "running_mean", "running_var"):
                yield f"{p}.{name}", (c,), True
            yield f"{p}.num_batches_tracked", (), False
        else:  # inorm
            (c,) = self.shape
            yield f"{p}.running_mean", (c,), False
            yield f"{p}.running_var", (c,), False
            yield f"{p}.num_batches_tracked", (), False

    def arrays(self) -> Iterator[tuple[str, str, tuple[str, ...], tuple | None, tuple | None]]:
        """(torch key, collection, jaxgan path, torch->jaxgan and back transposes) per array."""
        p = self.prefix
        if self.kind in ("conv", "convT"):
            conv = self.kind == "conv"
            perm, back = ((2, 3, 1, 0), (3, 2, 0, 1)) if conv else ((2, 3, 0, 1),) * 2
            yield f"{p}.weight", "params", (*self.path, "kernel"), perm, back
            if self.bias:
                yield f"{p}.bias", "params", (*self.path, "bias"), None, None
        elif self.kind == "bn":
            for t, coll, j in (("weight", "params", "scale"), ("bias", "params", "bias"),
                               ("running_mean", "batch_stats", "mean"),
                               ("running_var", "batch_stats", "var")):
                yield f"{p}.{t}", coll, (*self.path, "bn", j), None, None


# ----------------------------------------------------------------------------------------------
# The reference layouts


def _kind(name: str, part: str | None) -> tuple[str, str]:
    """(layout kind, part) of a registry name."""
    if name not in MODELS:
        raise ValueError(f"no PyTorch layout for model {name!r}; convertible models: "
                         f"{', '.join(MODELS)} (dcgan with part='g' or 'd')")
    part = part or MODELS[name][0]
    if part not in MODELS[name]:
        raise ValueError(f"model {name!r} has no part {part!r}; it has: {', '.join(MODELS[name])}")
    if name == "dcgan":
        return f"dcgan_{part}", part
    return {"unet_128": "unet", "unet_256": "unet", "resnet_6blocks": "resnet",
            "resnet_9blocks": "resnet", "basic": "nlayer", "n_layers": "nlayer",
            "pixel": "pixel"}[name], part


def _norm_layer(norm: str, prefix: str, c: int, path: tuple[str, ...]) -> list[_Layer]:
    if norm == "batch":
        return [_Layer(prefix, "bn", path, (c,))]
    if norm == "instance":
        return [_Layer(prefix, "inorm", path, (c,))]
    return []  # "none": the reference's Identity


def _unet_layers(f: dict) -> list[_Layer]:
    g, nd, norm = f["ngf"], f["num_downs"], f["norm"]
    ub = norm == "instance"
    chans = [(f["out_channels"], g), (g, 2 * g), (2 * g, 4 * g), (4 * g, 8 * g)]
    chans += [(8 * g, 8 * g)] * (nd - 4)
    last = nd - 1

    def level(i: int, prefix: str) -> list[_Layer]:
        outer, inner = chans[i]
        seq = f"{prefix}.model"
        if i == 0:
            return [_Layer(f"{seq}.0", "conv", ("down0",), (f["in_channels"], inner, 4), ub),
                    *level(1, f"{seq}.1"),
                    _Layer(f"{seq}.3", "convT", ("up0",), (2 * inner, outer, 4), True)]
        down = _Layer(f"{seq}.1", "conv", (f"down{i}",), (outer, inner, 4), ub)
        if i == last:
            return [down, _Layer(f"{seq}.3", "convT", (f"up{i}",), (inner, outer, 4), ub),
                    *_norm_layer(norm, f"{seq}.4", outer, (f"up_norm{i}",))]
        return [down, *_norm_layer(norm, f"{seq}.2", inner, (f"down_norm{i}",)),
                *level(i + 1, f"{seq}.3"),
                _Layer(f"{seq}.5", "convT", (f"up{i}",), (2 * inner, outer, 4), ub),
                *_norm_layer(norm, f"{seq}.6", outer, (f"up_norm{i}",))]

    return level(0, "model")


def _resnet_layers(f: dict) -> list[_Layer]:
    g, n, norm = f["ngf"], f["n_blocks"], f["norm"]
    ub = norm == "instance"
    out = [_Layer("model.1", "conv", ("Conv2d_0",), (f["in_channels"], g, 7), ub),
           *_norm_layer(norm, "model.2", g, ("Norm_0",)),
           _Layer("model.4", "conv", ("Conv2d_1",), (g, 2 * g, 3), ub),
           *_norm_layer(norm, "model.5", 2 * g, ("Norm_1",)),
           _Layer("model.7", "conv", ("Conv2d_2",), (2 * g, 4 * g, 3), ub),
           *_norm_layer(norm, "model.8", 4 * g, ("Norm_2",))]
    second = 6 if f["use_dropout"] else 5  # the Dropout shifts the second conv's index
    for b in range(n):
        p, blk = f"model.{10 + b}.conv_block", f"ResnetBlock_{b}"
        out += [_Layer(f"{p}.1", "conv", (blk, "Conv2d_0"), (4 * g, 4 * g, 3), ub),
                *_norm_layer(norm, f"{p}.2", 4 * g, (blk, "Norm_0")),
                _Layer(f"{p}.{second}", "conv", (blk, "Conv2d_1"), (4 * g, 4 * g, 3), ub),
                *_norm_layer(norm, f"{p}.{second + 1}", 4 * g, (blk, "Norm_1"))]
    j = 10 + n
    out += [_Layer(f"model.{j}", "convT", ("ConvTranspose2d_0",), (4 * g, 2 * g, 3), ub),
            *_norm_layer(norm, f"model.{j + 1}", 2 * g, ("Norm_3",)),
            _Layer(f"model.{j + 3}", "convT", ("ConvTranspose2d_1",), (2 * g, g, 3), ub),
            *_norm_layer(norm, f"model.{j + 4}", g, ("Norm_4",)),
            _Layer(f"model.{j + 7}", "conv", ("Conv2d_3",), (g, f["out_channels"], 7), True)]
    return out


def _nlayer_layers(f: dict) -> list[_Layer]:
    ndf, n_layers, norm = f["ndf"], f["n_layers"], f["norm"]
    ub = norm == "instance"
    out = [_Layer("model.0", "conv", ("Conv2d_0",), (f["in_channels"], ndf, 4), True)]
    idx, conv, mult = 2, 1, 1
    for n in range(1, n_layers + 1):  # the last of these is the stride-1 conv
        prev, mult = mult, min(2**n, 8)
        out += [_Layer(f"model.{idx}", "conv", (f"Conv2d_{conv}",), (ndf * prev, ndf * mult, 4),
                       ub),
                *_norm_layer(norm, f"model.{idx + 1}", ndf * mult, (f"Norm_{conv - 1}",))]
        idx, conv = idx + 3, conv + 1
    if n_layers == 0:  # the reference's stride-1 conv keeps ndf channels
        out += [_Layer("model.2", "conv", ("Conv2d_1",), (ndf, ndf, 4), ub),
                *_norm_layer(norm, "model.3", ndf, ("Norm_0",))]
        idx, conv = 5, 2
    out.append(_Layer(f"model.{idx}", "conv", (f"Conv2d_{conv}",), (ndf * mult, 1, 4), True))
    return out


def _pixel_layers(f: dict) -> list[_Layer]:
    ndf, norm = f["ndf"], f["norm"]
    ub = norm == "instance"
    return [_Layer("net.0", "conv", ("Conv2d_0",), (f["in_channels"], ndf, 1), True),
            _Layer("net.2", "conv", ("Conv2d_1",), (ndf, 2 * ndf, 1), ub),
            *_norm_layer(norm, "net.3", 2 * ndf, ("Norm_0",)),
            _Layer("net.5", "conv", ("Conv2d_2",), (2 * ndf, 1, 1), ub)]


def _log2(r: int) -> int:
    return max(int(r).bit_length() - 1, 0)


def _dcgan_g_layers(f: dict) -> list[_Layer]:
    n_up, ngf = _log2(f["resolution"]) - 2, f["ngf"]
    mult = 2 ** (n_up - 1)
    out = [_Layer("main.0", "convT", ("ConvTranspose2d_0",), (f["latent_dim"], ngf * mult, 4)),
           _Layer("main.1", "bn", ("Norm_0",), (ngf * mult,))]
    idx = 3
    for k in range(1, n_up):
        prev, mult = mult, mult // 2
        out += [_Layer(f"main.{idx}", "convT", (f"ConvTranspose2d_{k}",), (ngf * prev, ngf * mult, 4)),
                _Layer(f"main.{idx + 1}", "bn", (f"Norm_{k}",), (ngf * mult,))]
        idx += 3
    out.append(_Layer(f"main.{idx}", "convT", (f"ConvTranspose2d_{n_up}",),
                      (ngf, f["channels"], 4)))
    return out


def _dcgan_d_layers(f: dict) -> list[_Layer]:
    n_down, ndf = _log2(f["resolution"]) - 2, f["ndf"]
    out = [_Layer("main.0", "conv", ("Conv2d_0",), (f["channels"], ndf, 4))]
    idx, mult = 2, 1
    for k in range(1, n_down):
        prev, mult = mult, mult * 2
        out += [_Layer(f"main.{idx}", "conv", (f"Conv2d_{k}",), (ndf * prev, ndf * mult, 4)),
                _Layer(f"main.{idx + 1}", "bn", (f"Norm_{k - 1}",), (ndf * mult,))]
        idx += 3
    out.append(_Layer(f"main.{idx}", "conv", (f"Conv2d_{n_down}",), (ndf * mult, 1, 4)))
    return out


_LAYOUTS = {"unet": _unet_layers, "resnet": _resnet_layers, "nlayer": _nlayer_layers,
            "pixel": _pixel_layers, "dcgan_g": _dcgan_g_layers, "dcgan_d": _dcgan_d_layers}


# ----------------------------------------------------------------------------------------------
# Sizes read off a state_dict (torch layout) or off jaxgan variables


def _shape(sd: Mapping[str, np.ndarray], key: str) -> tuple[int, ...] | None:
    v = sd.get(key)
    return None if v is None else tuple(v.shape)


def _indexed(sd: Mapping[str, np.ndarray], head: str, ndim: int = 4) -> list[int]:
    """Sorted indices i of the ``{head}.{i}.weight`` keys whose tensors have ``ndim`` dims."""
    out = []
    for k, v in sd.items():
        parts = k.split(".")
        if (len(parts) == 3 and parts[0] == head and parts[2] == "weight" and parts[1].isdigit()
                and v.ndim == ndim):
            out.append(int(parts[1]))
    return sorted(out)


def _infer_torch(kind: str, name: str, sd: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The sizes a state_dict shows (channels, widths, DCGAN depth); absent keys: nothing."""
    f: dict[str, Any] = {}
    if kind == "unet":
        if (s := _shape(sd, "model.model.0.weight")) and len(s) == 4:
            f["ngf"], f["in_channels"] = s[0], s[1]
        if (s := _shape(sd, "model.model.3.weight")) and len(s) == 4:
            f["out_channels"] = s[1]
    elif kind == "resnet":
        if (s := _shape(sd, "model.1.weight")) and len(s) == 4:
            f["ngf"], f["in_channels"] = s[0], s[1]
        idx = _indexed(sd, "model")
        if idx and (s := _shape(sd, f"model.{idx[-1]}.weight"))[2] == 7 and idx[-1] > 1:
            f["out_channels"] = s[0]
    elif kind == "nlayer":
        if (s := _shape(sd, "model.0.weight")) and len(s) == 4:
            f["ndf"], f["in_channels"] = s[0], s[1]
        if name == "n_layers":
            idx = _indexed(sd, "model")
            if len(idx) >= 3:
                n = len(idx) - 2
                s = _shape(sd, f"model.{idx[1]}.weight")
                f["n_layers"] = 0 if n == 1 and s[0] == s[1] else n
    elif kind == "pixel":
        if (s := _shape(sd, "net.0.weight")) and len(s) == 4:
            f["ndf"], f["in_channels"] = s[0], s[1]
    elif kind == "dcgan_g":
        idx = _indexed(sd, "main")
        if idx and idx[0] == 0 and len(idx) >= 3:
            f["resolution"] = 2 ** (len(idx) + 1)
            f["latent_dim"] = _shape(sd, "main.0.weight")[0]
            last = _shape(sd, f"main.{idx[-1]}.weight")
            f["ngf"], f["channels"] = last[0], last[1]
    elif kind == "dcgan_d":
        idx = _indexed(sd, "main")
        if idx and idx[0] == 0 and len(idx) >= 3:
            f["resolution"] = 2 ** (len(idx) + 1)
            s = _shape(sd, "main.0.weight")
            f["ndf"], f["channels"] = s[0], s[1]
    return f


def _count(tree: Mapping, head: str) -> int:
    return sum(1 for k in tree if k.startswith(head) and k[len(head):].isdigit())


def _kernel(params: Mapping, name: str) -> tuple[int, ...] | None:
    entry = params.get(name)
    if not isinstance(entry, Mapping) or "kernel" not in entry:
        return None
    return tuple(np.shape(entry["kernel"]))


def _infer_flax(kind: str, name: str, variables: Mapping) -> dict[str, Any]:
    """The fields jaxgan variables show (sizes, depth, norm); where absent: nothing."""
    params = variables.get("params", {})
    stats = variables.get("batch_stats", {})
    f: dict[str, Any] = {}

    def norm_from(conv: str) -> str:
        if stats:
            return "batch"
        return "instance" if "bias" in params.get(conv, {}) else "none"

    if kind == "unet":
        nd = _count(params, "down")
        if nd:
            f["num_downs"] = nd
        if s := _kernel(params, "down0"):
            f["in_channels"], f["ngf"] = s[2], s[3]
        if s := _kernel(params, "up0"):
            f["out_channels"] = s[3]
        f["norm"] = norm_from("down1")
    elif kind == "resnet":
        f["n_blocks"] = _count(params, "ResnetBlock_")
        if s := _kernel(params, "Conv2d_0"):
            f["in_channels"], f["ngf"] = s[2], s[3]
        if s := _kernel(params, "Conv2d_3"):
            f["out_channels"] = s[3]
        f["norm"] = norm_from("Conv2d_0")
    elif kind == "nlayer":
        if s := _kernel(params, "Conv2d_0"):
            f["in_channels"], f["ndf"] = s[2], s[3]
        if name == "n_layers":
            n = _count(params, "Conv2d_") - 2
            s = _kernel(params, "Conv2d_1")
            f["n_layers"] = 0 if n == 1 and s and s[2] == s[3] else n
        f["norm"] = norm_from("Conv2d_1")
    elif kind == "pixel":
        if s := _kernel(params, "Conv2d_0"):
            f["in_channels"], f["ndf"] = s[2], s[3]
        f["norm"] = norm_from("Conv2d_1")
    elif kind == "dcgan_g":
        n = _count(params, "ConvTranspose2d_")
        if n >= 3:
            f["resolution"] = 2 ** (n + 1)
            f["latent_dim"] = _kernel(params, "ConvTranspose2d_0")[2]
            last = _kernel(params, f"ConvTranspose2d_{n - 1}")
            f["ngf"], f["channels"] = last[2], last[3]
    elif kind == "dcgan_d":
        n = _count(params, "Conv2d_")
        if n >= 3:
            f["resolution"] = 2 ** (n + 1)
            s = _kernel(params, "Conv2d_0")
            f["channels"], f["ndf"] = s[2], s[3]
    return f


# ----------------------------------------------------------------------------------------------
# Building the jaxgan module and its expected layout


def _module(name: str, part: str, fields: dict[str, Any]):
    from jaxgan import models

    return models.create(name, part, **fields)


def _fields(module: Any) -> dict[str, Any]:
    return {f.name: getattr(module, f.name) for f in dataclasses.fields(module)
            if f.name not in ("parent", "name")}


def _layers(kind: str, module: Any) -> list[_Layer]:
    return _LAYOUTS[kind](_fields(module))


def _describe(name: str, part: str, module: Any) -> str:
    f = _fields(module)
    keep = [k for k in ("num_downs", "n_blocks", "n_layers", "resolution", "latent_dim",
                        "in_channels", "out_channels", "channels", "ngf", "ndf", "norm",
                        "use_dropout") if k in f]
    what = f"{name} (part {part!r})" if name == "dcgan" else name
    return f"{what} with " + ", ".join(f"{k}={f[k]}" for k in keep)


def _to_numpy(v: Any) -> np.ndarray:
    if hasattr(v, "detach"):  # a torch tensor handed over in memory
        v = v.detach().cpu()
        if str(v.dtype) == "torch.bfloat16":
            v = v.float()
        return v.numpy()
    return np.asarray(v)


def _normalize(state_dict: Mapping[str, Any] | str | os.PathLike) -> tuple[dict, str]:
    """(state_dict with prefixes stripped, as numpy arrays; its description for errors)."""
    if isinstance(state_dict, (str, os.PathLike)):
        where = os.fspath(state_dict)
        raw = read_pth(where)
    elif isinstance(state_dict, Mapping):
        where, raw = "the state_dict", state_dict
    else:
        raise TypeError(f"expected a state_dict (a mapping of names to tensors) or a path to a "
                        f".pth file; got {type(state_dict).__name__}")
    out: dict[str, np.ndarray] = {}
    for k, v in raw.items():
        key = re.sub(r"^(?:module\.|_orig_mod\.)+", "", str(k))
        if key in out:
            raise StateDictMismatchError(f"{where}: key {k!r} repeats {key!r} once the "
                                         "module. / _orig_mod. prefixes are dropped")
        out[key] = _to_numpy(v)
    return out, where


def _problems(layers: list[_Layer], sd: Mapping[str, np.ndarray]) -> list[str]:
    """Every difference between the layout and the state_dict: missing and wrongly shaped
    keys in the layout's order, then unexpected keys in the state_dict's order."""
    out, known = [], set()
    for layer in layers:
        for key, shape, required in layer.entries():
            known.add(key)
            if key not in sd:
                if required:
                    out.append(f"key {key!r} (expected shape {shape}) is missing")
            elif tuple(sd[key].shape) != shape:
                out.append(f"key {key!r} has shape {tuple(sd[key].shape)}, expected {shape}")
    out += [f"key {key!r} (shape {tuple(sd[key].shape)}) is not in the architecture"
            for key in sd if key not in known]
    return out


def _candidates(sd: Mapping[str, np.ndarray]) -> Iterator[tuple[str, str, dict, str]]:
    """(name, part, overrides, how the CLI / config says it) of every reference layout."""
    depth = 0
    prefix = "model.model.1"
    while any(k.startswith(prefix + ".model.") for k in sd):  # a block: its own Sequential
        depth += 1
        prefix += ".model.3"
    blocks = len({k.split(".")[1] for k in sd if ".conv_block." in k})
    for norm in ("batch", "instance", "none"):
        if depth >= 4:
            nd = depth + 1
            name = {7: "unet_128", 8: "unet_256"}.get(nd, "unet_256")
            extra = {} if nd in (7, 8) else {"num_downs": nd}
            how = f"--netG={name} --norm={norm}" + (f" (num_downs={nd})" if extra else "")
            yield name, "g", {"norm": norm, **extra}, how
        if blocks:
            name = {6: "resnet_6blocks", 9: "resnet_9blocks"}.get(blocks, "resnet_9blocks")
            for dropout in (False, True):
                extra = {} if blocks in (6, 9) else {"n_blocks": blocks}
                how = (f"--netG={name} --norm={norm}{'' if dropout else ' --no_dropout'}"
                       + (f" (n_blocks={blocks})" if extra else ""))
                yield name, "g", {"norm": norm, "use_dropout": dropout, **extra}, how
        yield "basic", "d", {"norm": norm}, f"--netD=basic --norm={norm}"
        n = _infer_torch("nlayer", "n_layers", sd).get("n_layers")
        if n is not None and n != 3:
            yield "n_layers", "d", {"norm": norm}, (f"--netD=n_layers --n_layers_D={n} "
                                                    f"--norm={norm}")
        yield "pixel", "d", {"norm": norm}, f"--netD=pixel --norm={norm}"
    yield "dcgan", "g", {}, "the DCGAN generator (pytorch/examples netG; part='g')"
    yield "dcgan", "d", {}, "the DCGAN discriminator (pytorch/examples netD; part='d')"


def guess_architecture(state_dict: Mapping[str, Any] | str | os.PathLike) -> list[str]:
    """The reference architectures a state_dict fits exactly (keys and shapes), each as the
    reference's options (``"--netG=resnet_9blocks --norm=instance --no_dropout"``); empty
    when none fits. The U-Net's dropout has no parameters, so it is not told apart."""
    sd, _ = _normalize(state_dict)
    return [how for name, part, kw, how in _candidates(sd) if _fits(name, part, kw, sd)]


def _fits(name: str, part: str, overrides: dict, sd: Mapping[str, np.ndarray]) -> bool:
    kind, part = _kind(name, part)
    try:
        module = _module(name, part, {**_infer_torch(kind, name, sd), **overrides})
        return not _problems(_layers(kind, module), sd)
    except (ValueError, TypeError, KeyError, IndexError):
        return False


def _example_input(kind: str, module: Any) -> jax.ShapeDtypeStruct:
    f = _fields(module)
    if kind == "dcgan_g":
        return jax.ShapeDtypeStruct((1, f["latent_dim"]), jnp.float32)
    if kind == "dcgan_d":
        r = f["resolution"]
        return jax.ShapeDtypeStruct((1, r, r, f["channels"]), jnp.float32)
    size = {"unet": 2 ** f.get("num_downs", 0), "resnet": 8, "nlayer": 2 ** (f.get("n_layers", 0) + 3),
            "pixel": 4}[kind]
    return jax.ShapeDtypeStruct((1, size, size, f["in_channels"]), jnp.float32)


def _expected_shapes(kind: str, module: Any) -> dict:
    """The shapes of ``module.init``'s params / batch_stats (abstract: nothing is computed)."""
    keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    want = jax.eval_shape(lambda x: module.init(keys, x, train=False), _example_input(kind, module))
    return {k: jax.tree.map(lambda s: tuple(s.shape), v) for k, v in want.items()
            if k in ("params", "batch_stats")}


def _set(tree: dict, path: tuple[str, ...], value: Any) -> None:
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


def _get(tree: Mapping, path: tuple[str, ...]) -> Any:
    for p in path:
        tree = tree[p]
    return tree


# ----------------------------------------------------------------------------------------------
# The API


def load_model(model_name: str, state_dict_or_path: Mapping[str, Any] | str | os.PathLike, *,
               part: str | None = None, **overrides: Any) -> tuple[Any, dict]:
    """``(module, variables)``: the jaxgan model and its variables from a PyTorch state_dict.

    ``model_name`` is one of :data:`MODELS` (``part`` ``"g"`` (default) or ``"d"`` for
    ``dcgan``); ``state_dict_or_path`` a ``{name: tensor or array}`` mapping or a ``.pth`` file.
    Sizes the state_dict shows (channels, ngf / ndf, the ``n_layers`` D's depth, DCGAN's
    resolution and nz) are read off it; other fields (``norm``, ``use_dropout``, depth, ...) are
    the registry's defaults unless given in ``overrides``, e.g. ``norm="instance"`` for a
    CycleGAN D, ``use_dropout=True`` for a ResNet G trained without ``--no_dropout``.

    Returns the flax module and float32 ``{"params": ..., "batch_stats": ...}`` (``batch_stats``
    only with BatchNorm), ready for ``module.apply(variables, x, train=False)``.

    Raises:
      StateDictMismatchError: another architecture; the message names the first differing key
        and its expected shape, and the reference options it does fit, if any.
      jaxgan.interop.pth.PthFormatError / FileNotFoundError: for an unreadable file.
    """
    kind, part = _kind(model_name, part)
    sd, where = _normalize(state_dict_or_path)
    module = _module(model_name, part, {**_infer_torch(kind, model_name, sd), **overrides})
    layers = _layers(kind, module)
    problems = _problems(layers, sd)
    if problems:
        fits = [how for name, p, kw, how in _candidates(sd) if _fits(name, p, kw, sd)]
        more = f" (and {len(problems) - 1} more difference(s))" if len(problems) > 1 else ""
        hint = (f" It fits {' or '.join(fits)}." if fits else
                " It fits none of the reference architectures (" + ", ".join(MODELS) +
                ") with any norm.")
        raise StateDictMismatchError(
            f"{where} is not {_describe(model_name, part, module)}: {problems[0]}{more}.{hint}")
    variables: dict[str, dict] = {"params": {}}
    for layer in layers:
        for key, coll, path, perm, _ in layer.arrays():
            a = sd[key].astype(np.float32)
            _set(variables.setdefault(coll, {}), path, a if perm is None else a.transpose(perm))
    if (got := jax.tree.map(np.shape, variables)) != (want := _expected_shapes(kind, module)):
        raise AssertionError(f"jaxgan.interop.torch: the {model_name} ({part}) layout no longer "
                             f"matches the jaxgan module: {got} != {want}")  # a bug here
    return module, jax.tree.map(jnp.asarray, variables)


def load_state_dict(model_name: str, state_dict_or_path: Mapping[str, Any] | str | os.PathLike,
                    *, part: str | None = None, **overrides: Any) -> dict:
    """The jaxgan variables of a PyTorch state_dict (:func:`load_model` without the module:
    ``jaxgan.models.create(model_name, part, ...)`` with the state_dict's sizes)."""
    return load_model(model_name, state_dict_or_path, part=part, **overrides)[1]


def to_state_dict(model_name: str, variables: Mapping, *, part: str | None = None,
                  num_batches_tracked: int = 0, **overrides: Any
                  ) -> collections.OrderedDict[str, np.ndarray]:
    """The PyTorch state_dict (reference names, layouts and order) of jaxgan variables: the
    inverse of :func:`load_state_dict`, bit for bit.

    ``variables`` is ``{"params": ..., "batch_stats": ...}`` of that model (e.g. a train state's
    ``g_params`` / ``g_batch_stats``). ``num_batches_tracked`` is written for each BatchNorm
    (jaxgan does not count batches; PyTorch uses it only with ``momentum=None``). ``overrides``
    give fields the variables do not show: ``use_dropout=True`` for a ResNet G with dropout (it
    moves the reference's key indices). Returns an ``OrderedDict`` of float32 numpy arrays
    (``num_batches_tracked``: int64 scalars) for ``torch.save`` (via ``torch.from_numpy``) or
    :func:`jaxgan.interop.pth.write_pth`; StateDictMismatchError for another model's variables.
    """
    kind, part = _kind(model_name, part)
    variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats") and v}
    inferred = _infer_flax(kind, model_name, variables)
    module = _module(model_name, part, {**inferred, **overrides})
    want_shapes = _expected_shapes(kind, module)
    if (got_shapes := jax.tree.map(np.shape, variables)) != want_shapes:
        raise StateDictMismatchError(
            f"the variables are not {_describe(model_name, part, module)}: "
            f"{_first_tree_difference(want_shapes, got_shapes)}")
    out: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
    for layer in _layers(kind, module):
        for key, coll, path, _, back in layer.arrays():
            a = np.asarray(_get(variables[coll], path), np.float32)
            out[key] = a if back is None else np.ascontiguousarray(a.transpose(back))
        if layer.kind == "bn":
            out[f"{layer.prefix}.num_batches_tracked"] = np.asarray(num_batches_tracked, np.int64)
    return out


def _first_tree_difference(want: Any, got: Any, path: str = "") -> str:
    if isinstance(want, Mapping) and isinstance(got, Mapping):
        for k in want:
            if k not in got:
                return f"{path}/{k} (expected {_leaf_desc(want[k])}) is missing"
            d = _first_tree_difference(want[k], got[k], f"{path}/{k}")
            if d:
                return d
        for k in got:
            if k not in want:
                return f"{path}/{k} is not in the model"
        return ""
    if want != got:
        return f"{path} has shape {got}, expected {want}"
    return ""


def _leaf_desc(t: Any) -> str:
    return f"shape {t}" if isinstance(t, tuple) else "a module"


def reference_keys(model_name: str, *, part: str | None = None, **fields: Any
                   ) -> list[tuple[str, tuple[int, ...]]]:
    """The reference state_dict's (key, shape) pairs for the jaxgan model ``model_name`` with
    ``fields`` (registry defaults otherwise), in the reference module's order; BatchNorm's
    ``num_batches_tracked`` included, InstanceNorm's optional statistics not."""
    kind, part = _kind(model_name, part)
    module = _module(model_name, part, fields)
    return [(k, s) for layer in _layers(kind, module) for k, s, req in layer.entries()
            if req or layer.kind == "bn"]
