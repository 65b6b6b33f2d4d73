"""Pieces shared by the per-family train steps: input checks, optimizers, the finite guard.

Nothing here knows about a family; see ``jaxgan.train.{dcgan,pix2pix,cyclegan,pggan}``.
The small tree utilities are jitted on their own: inside a jitted step they are inlined;
run op by op (debugging, the eager-vs-jit tests) each is one compiled program instead of
several per leaf shape.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

__all__ = [
    "COMPUTE_DTYPES",
    "MixedPrecision",
    "adam",
    "apply_model",
    "apply_optimizer",
    "bind_config",
    "check_image_batch",
    "check_key",
    "commit_step",
    "ema_update",
    "freeze",
    "guard_finite",
    "in_compute_dtype",
    "init_variables",
    "jit_bound",
    "jit_init",
    "linear_decay_schedule",
    "load_torch_variables",
    "mixed_precision",
    "optimizer_count",
    "scale_by_adam",
    "tree_all_finite",
]

PyTree = Any


def freeze(config: ml_collections.ConfigDict) -> ml_collections.FrozenConfigDict:
    """An immutable, hashable copy of ``config`` (equal configs hash equal)."""
    if isinstance(config, ml_collections.FrozenConfigDict):
        return config
    return ml_collections.FrozenConfigDict(config)


@functools.lru_cache(maxsize=64)
def _bind(fn: Callable, config: ml_collections.FrozenConfigDict, *args: Any) -> Callable:
    return functools.partial(fn, config, *args)


def bind_config(fn: Callable, config: ml_collections.ConfigDict, *args: Any) -> Callable:
    """``functools.partial(fn, freeze(config), *args)``, the *same object* for equal configs.

    jax caches traces and compilations per function object, so binding through here lets
    every ``make_train_step`` call with an equal config reuse one compilation.
    """
    return _bind(fn, freeze(config), *args)


@functools.lru_cache(maxsize=64)
def _jit_bound(fn: Callable, config: ml_collections.FrozenConfigDict, *args: Any) -> Callable:
    return jax.jit(functools.partial(fn, config, *args))


def jit_bound(fn: Callable, config: ml_collections.ConfigDict, *args: Any) -> Callable:
    """``jax.jit(partial(fn, freeze(config), *args))``, one cached object per (fn, config,
    args): for sampling helpers called repeatedly with the same config."""
    return _jit_bound(fn, freeze(config), *args)


@functools.lru_cache(maxsize=64)
def _jit_init(fn: Callable, config: ml_collections.FrozenConfigDict, *args: Any) -> Callable:
    jitted = jax.jit(functools.partial(fn, config, *args))

    def init(key: jax.Array) -> Any:
        with jax.threefry_partitionable(False):
            return jitted(key)

    return init


def jit_init(fn: Callable, config: ml_collections.ConfigDict, *args: Any) -> Callable:
    """``key -> fn(freeze(config), *args, key)``, jitted and cached per (fn, config, args).

    Initialisation runs as one compiled program instead of op by op (on CPU the eager
    path compiles every primitive separately, which is far slower for a model init), and
    with the non-partitionable threefry, which XLA:CPU compiles much faster for 4-D kernel
    shapes; the state is replicated, so partitioned random bits would buy nothing. The
    initial state is a pure function of the key either way.
    """
    return _jit_init(fn, freeze(config), *args)


def scale_by_adam(b1: float, b2: float, eps: float) -> optax.GradientTransformationExtraArgs:
    """``optax.scale_by_adam`` (the same state, the same operations in the same order) whose
    ``update`` also takes ``finite``, a bool scalar: where it is False the moments and count
    come back unchanged and the updates are zeros.

    Why: a step's state is donated, so each new moment is written over the old one. Guarded
    afterwards (``where(finite, new, old)`` over optax's result), the parameter update
    recomputes the new moment from the old one inside its own fusion, so the old moments are
    read by two fusions, one of which overwrites them, and XLA copies every moment buffer
    first. Guarded here, the direction ``mu_hat / (sqrt(nu_hat) + eps)`` reads the selected
    moments, each old buffer is read only by the fusion that overwrites it, and nothing is
    copied (as long as the result is not selected a second time: :func:`commit_step`'s
    ``guarded``), so the donated moments are updated in place. Op by op the
    results equal optax's bit for bit; compiled, XLA may fuse the two forms differently (a
    last-place difference in one of DCGAN's 13 kernels after a step).
    """
    base = optax.scale_by_adam(b1=b1, b2=b2, eps=eps)
    tu = optax.tree_utils

    def update(updates, state, params=None, *, finite=None, **extra_args):
        del params, extra_args
        mu = tu.tree_update_moment(updates, state.mu, b1, 1)
        nu = tu.tree_update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        if finite is not None:
            mu, nu, count = guard_finite(finite, (mu, nu, count),
                                         (state.mu, state.nu, state.count))
        mu_hat = tu.tree_bias_correction(mu, b1, count)
        nu_hat = tu.tree_bias_correction(nu, b2, count)
        out = jax.tree.map(lambda m, v: m / (jnp.sqrt(v + 0.0) + eps), mu_hat, nu_hat)
        if finite is not None:
            out = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), out)
        return out, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformationExtraArgs(base.init, update)


def _state_guarded(inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """``inner`` whose update also takes ``finite``: where False its state comes back
    unchanged (the schedule's count in :func:`adam`; its updates are Adam's zeros times the
    rate then)."""
    inner = optax.with_extra_args_support(inner)

    def update(updates, state, params=None, *, finite=None, **extra_args):
        updates, new_state = inner.update(updates, state, params, **extra_args)
        if finite is not None:
            new_state = guard_finite(finite, new_state, state)
        return updates, new_state

    return optax.GradientTransformationExtraArgs(inner.init, update)


def adam(opt: ml_collections.ConfigDict, learning_rate: float | optax.Schedule | None = None
         ) -> optax.GradientTransformationExtraArgs:
    """Adam from an optimizer config (fields ``learning_rate, b1, b2, eps``).

    ``optax.adam``'s chain and state, with :func:`scale_by_adam` in it, so that
    :func:`apply_optimizer` can take the step's ``finite`` flag. ``learning_rate`` overrides
    ``opt.learning_rate`` (e.g. with a schedule).
    """
    lr = opt.learning_rate if learning_rate is None else learning_rate
    return optax.chain(scale_by_adam(opt.b1, opt.b2, opt.eps),
                       _state_guarded(optax.scale_by_learning_rate(lr)))


def linear_decay_schedule(learning_rate: float, constant_steps: int, decay_steps: int
                          ) -> optax.Schedule:
    """``learning_rate`` for ``constant_steps`` steps, then linearly down to 0 over ``decay_steps``.

    The step form of the pix2pix/CycleGAN reference's ``n_epochs`` constant +
    ``n_epochs_decay`` linear epochs (the reference steps its rate once per epoch; this
    decays every step). After the decay the rate stays 0.
    """
    if constant_steps < 0 or decay_steps < 0:
        raise ValueError(
            f"schedule lengths must be >= 0 steps; got constant_steps={constant_steps}, "
            f"decay_steps={decay_steps}"
        )
    if decay_steps == 0:
        return optax.constant_schedule(learning_rate)
    return optax.join_schedules(
        [optax.constant_schedule(learning_rate),
         optax.linear_schedule(learning_rate, 0.0, decay_steps)],
        [constant_steps],
    )


@functools.partial(jax.jit, static_argnums=0)
def _apply_optimizer(tx, grads, opt_state, params, finite):
    extra = {} if finite is None else {"finite": finite}
    updates, opt_state = tx.update(grads, opt_state, params, **extra)
    return optax.apply_updates(params, updates), opt_state


def apply_optimizer(tx: optax.GradientTransformation, grads: PyTree, opt_state: PyTree,
                    params: PyTree, finite: jax.Array | None = None) -> tuple[PyTree, PyTree]:
    """One optimizer step: ``(new params, new opt_state)``.

    ``finite`` (bool scalar; ``tx`` from :func:`adam`): where False, params and optimizer
    state come back unchanged (bit for bit: the update is ``-0.0``). Pass it when it is
    known before the update and name the fields in :func:`commit_step`'s ``guarded``: with
    the state donated, each buffer is then updated in place (see :func:`scale_by_adam`).

    Wrapped in its own ``jit`` (``tx`` static, so pass the same object each time, e.g. from
    a per-config cache): inlined when the step is jitted, and a single compiled program
    instead of a dozen per parameter shape when the step runs op by op.
    """
    return _apply_optimizer(tx, grads, opt_state, params, finite)


def optimizer_count(opt_state: PyTree) -> jax.Array:
    """The update count (int32 scalar) of an optax state: the step its schedule is at."""
    found = optax.tree_utils.tree_get_all_with_path(opt_state, "count")
    if not found:
        raise ValueError("optimizer state has no 'count' (not an optax adam state?)")
    return found[0][1]


#: ``config.model.dtype`` values: the dtype convolutions and activations are computed in.
COMPUTE_DTYPES = ("float32", "bfloat16")


def _cast_floating(tree: PyTree, src: Any, dst: Any) -> PyTree:
    """Every array leaf of dtype ``src`` cast to ``dst``; other leaves (ints, keys, bools,
    Python scalars) as they are."""
    return jax.tree.map(
        lambda x: x.astype(dst) if getattr(x, "dtype", None) == src else x, tree)


class MixedPrecision:
    """A flax module computed in ``dtype`` (bfloat16) with float32 parameters: mixed precision
    in the manner of PyTorch AMP and jmp's policies, at the ``apply`` boundary.

    ``init`` is the module's own (float32 parameters). ``apply`` casts the float32
    parameters and float32 array arguments (images, latents, PGGAN's ``alpha``) to ``dtype``,
    runs the module, and casts its ``dtype`` outputs back to float32: losses, the optimizer
    and the parameters stay float32, and gradients reach the parameters in float32 through
    the casts. BatchNorm statistics are reduced in float32 by flax and its running averages
    (the ``batch_stats`` collection) are never cast; instance norm and PixelNorm compute in
    float32 (:mod:`jaxgan.nn.layers`). bfloat16 has float32's exponent range, so no loss
    scaling is needed (nor used by PyTorch's bfloat16 autocast). Other attributes are the
    module's.
    """

    def __init__(self, module: nn.Module, dtype: Any):
        self.module = module
        self.dtype = jnp.dtype(dtype)

    def init(self, *args: Any, **kwargs: Any) -> PyTree:
        return self.module.init(*args, **kwargs)

    def apply(self, variables: Mapping[str, PyTree], *args: Any, **kwargs: Any) -> Any:
        f32, low = jnp.dtype(jnp.float32), self.dtype
        variables = dict(variables)
        variables["params"] = _cast_floating(variables["params"], f32, low)
        apply_kw = {k: kwargs.pop(k) for k in ("rngs", "mutable", "method") if k in kwargs}
        out = self.module.apply(variables, *_cast_floating(args, f32, low),
                                **_cast_floating(kwargs, f32, low), **apply_kw)
        return _cast_floating(out, low, f32)

    def __getattr__(self, name: str) -> Any:
        if name == "module":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.module, name)

    def __repr__(self) -> str:
        return f"MixedPrecision({self.module!r}, dtype={self.dtype.name})"


def mixed_precision(module: nn.Module, dtype: str) -> nn.Module | MixedPrecision:
    """``module`` itself for ``"float32"``, else :class:`MixedPrecision` in ``dtype``.

    Raises:
      ValueError: for a dtype not in :data:`COMPUTE_DTYPES` (``config.model.dtype``).
    """
    if dtype not in COMPUTE_DTYPES:
        raise ValueError(f"config.model.dtype={dtype!r} is not a compute dtype; choose one of "
                         f"{', '.join(COMPUTE_DTYPES)} (bfloat16: mixed precision, parameters "
                         "and optimizer float32)")
    if dtype == "float32":
        return module
    if jax.default_backend() == "cpu":
        warnings.warn(
            f"config.model.dtype={dtype!r} on XLA:CPU computes correctly but slowly: XLA:CPU "
            "converts to float32 around most bfloat16 operations (DCGAN 64 at batch 64: 1.58 s "
            "per step against 0.83 s in float32); it is meant for GPUs and TPUs",
            stacklevel=2)
    return MixedPrecision(module, dtype)


def in_compute_dtype(config: ml_collections.ConfigDict, nets: tuple | dict) -> tuple | dict:
    """A family's networks (a tuple or dict of modules) through :func:`mixed_precision` in
    ``config.model.dtype``; the same container back."""
    dtype = config.model.dtype
    if isinstance(nets, dict):
        return {k: mixed_precision(v, dtype) for k, v in nets.items()}
    return tuple(mixed_precision(v, dtype) for v in nets)


def init_variables(model: nn.Module, key: jax.Array, *args: Any, **kwargs: Any
                   ) -> tuple[PyTree, PyTree]:
    """``model.init`` -> ``(params, batch_stats)``; ``batch_stats`` is ``{}`` without BatchNorm."""
    pkey, dkey = jax.random.split(key)
    variables = model.init({"params": pkey, "dropout": dkey}, *args, **kwargs)
    return variables["params"], variables.get("batch_stats", {})


def apply_model(
    model: nn.Module,
    params: PyTree,
    batch_stats: PyTree,
    *args: Any,
    train: bool = True,
    dropout_key: jax.Array | None = None,
    **kwargs: Any,
) -> tuple[jax.Array, PyTree]:
    """Apply a flax module, threading BatchNorm statistics: returns ``(output, batch_stats)``.

    With ``train`` and a non-empty ``batch_stats``, BatchNorm uses the batch statistics and
    the running averages are updated (``mutable=['batch_stats']``); otherwise they are
    returned unchanged. ``dropout_key`` feeds the ``'dropout'`` rng stream.
    """
    variables = {"params": params}
    if batch_stats:
        variables["batch_stats"] = batch_stats
    rngs = {"dropout": dropout_key} if dropout_key is not None else None
    if train and batch_stats:
        out, updates = model.apply(variables, *args, train=train, rngs=rngs,
                                   mutable=["batch_stats"], **kwargs)
        return out, updates["batch_stats"]
    return model.apply(variables, *args, train=train, rngs=rngs, **kwargs), batch_stats


def _describe(x: Any) -> str:
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is None:
        return f"a {type(x).__name__}"
    return f"{dtype}[{', '.join(str(d) for d in shape)}]"


def check_image_batch(
    family: str,
    batch: Any,
    expected: Mapping[str, Sequence[int | None]],
    *,
    same_batch_size: bool = True,
) -> int:
    """Validate a batch of images at the step's boundary (trace time); returns N.

    Args:
      family: name used in the messages ('pix2pix', ...).
      batch: the step's batch; must be a mapping holding at least ``expected``'s keys.
      expected: key -> expected shape ``(N, H, W, C)`` with ``None`` for any N.
      same_batch_size: all entries must share N.

    Raises:
      TypeError: if the batch is not a mapping.
      ValueError: naming the key, the expected float32 shape and what was given.
    """
    if not isinstance(batch, Mapping):
        raise TypeError(
            f"{family} train_step: batch must be a dict with keys {sorted(expected)}; "
            f"got {type(batch).__name__}"
        )
    sizes = {}
    for name, shape in expected.items():
        want = "float32[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"
        if name not in batch:
            raise ValueError(
                f"{family} train_step: batch is missing {name!r}: expected {want} images "
                f"in [-1, 1]; got keys {sorted(batch)}"
            )
        x = batch[name]
        got = _describe(x)
        msg = (f"{family} train_step: batch[{name!r}] must be {want} images (NHWC) in "
               f"[-1, 1]; got {got}")
        if getattr(x, "shape", None) is None or len(x.shape) != len(shape):
            raise ValueError(msg)
        if x.dtype != jnp.float32:
            raise ValueError(msg + " (convert with .astype(float32), scaled to [-1, 1])")
        for d, w in zip(x.shape, shape, strict=True):
            if w is not None and d != w:
                raise ValueError(msg)
        if x.shape[0] < 1:
            raise ValueError(msg + " (empty batch)")
        sizes[name] = int(x.shape[0])
    if same_batch_size and len(set(sizes.values())) > 1:
        raise ValueError(f"{family} train_step: batch entries differ in batch size: {sizes}")
    return next(iter(sizes.values()))


def check_key(family: str, key: Any) -> None:
    """A PRNG key: a typed key array of shape () or a raw uint32[2] key."""
    dtype = getattr(key, "dtype", None)
    shape = getattr(key, "shape", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and shape == ():
        return
    if dtype == jnp.uint32 and shape == (2,):
        return
    raise ValueError(
        f"{family} train_step: key must be one PRNG key (jax.random.key(seed)); got "
        f"{_describe(key)}"
    )


@jax.jit
def tree_all_finite(tree: PyTree) -> jax.Array:
    """bool scalar: every floating-point leaf of ``tree`` is finite (True for an empty tree)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    if not leaves:
        return jnp.bool_(True)
    return jnp.all(jnp.stack(leaves))


@jax.jit
def guard_finite(finite: jax.Array, new: PyTree, old: PyTree) -> PyTree:
    """``new`` where ``finite`` else ``old``, leaf by leaf (trees of the same structure)."""
    return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)


def commit_step(old: PyTree, new: PyTree, metrics: dict[str, jax.Array], finite: jax.Array,
                guarded: Sequence[str] = (), **advance: Any) -> tuple[PyTree, dict[str, jax.Array]]:
    """The steps' non-finite policy, in one place.

    ``finite`` = every loss and every gradient of the step is finite
    (``tree_all_finite((losses, grads))``). The returned state is ``new`` when finite, else
    ``old``; either way ``step`` advances by one and the fields in ``advance`` (e.g. PGGAN's
    ``stage_images``) take their given values. The fields named in ``guarded`` are taken
    from ``new`` as they are: :func:`apply_optimizer` already kept them (selecting them a
    second time would make XLA copy the donated moments again). Returns
    ``(state, {**metrics, "finite": finite})``.
    """
    kept = {name: getattr(new, name) for name in guarded}
    state = guard_finite(finite, new, old).replace(step=old.step + 1, **kept, **advance)
    return state, {**metrics, "finite": finite}


@jax.jit
def ema_update(ema: PyTree, params: PyTree, decay: float | jax.Array) -> PyTree:
    """``decay * ema + (1 - decay) * params`` leaf by leaf."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


def load_torch_variables(what: str, source: Any, model_name: str, params: PyTree,
                         batch_stats: PyTree, *, part: str | None = None, **fields: Any
                         ) -> tuple[PyTree, PyTree]:
    """``(params, batch_stats)`` of a network from a PyTorch reference state_dict (a ``.pth``
    path or a mapping; :func:`jaxgan.interop.torch.load_state_dict`), for fine-tuning.

    ``fields`` are the jaxgan model's (what the config builds), so the file must be that
    architecture; ``params`` / ``batch_stats`` are the network's freshly initialised ones:
    the loaded trees must have their structure, shapes and dtypes. ``what`` names the
    network in errors (``"init.torch_G"``).

    Raises:
      ValueError: the file is another architecture (naming the first differing key and the
        reference options it fits), or does not fit the config's model.
    """
    from jaxgan.interop import torch as interop

    try:
        v = interop.load_state_dict(model_name, source, part=part, **fields)
    except interop.StateDictMismatchError as e:
        raise ValueError(f"{what}: {e} (set config.model to the checkpoint's architecture)"
                         ) from e
    new_params, new_stats = v["params"], v.get("batch_stats", {})
    for name, got, want in (("params", new_params, params),
                            ("batch_stats", new_stats, batch_stats)):
        shapes = jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), got)
        expected = jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), want)
        if shapes != expected:
            raise ValueError(f"{what}: the loaded {name} do not fit the config's {model_name}: "
                             f"{shapes} != {expected}")
    return new_params, new_stats
