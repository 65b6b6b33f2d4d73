"""Sample quality of the default (embedded-data) configs, mean +- std over seeds: jaxgan, the
PyTorch reference trained with the same config, data and steps, and the held-out real images.

    python experiments/bench/quality.py --family dcgan --seeds 0,1,2 [--steps N] [--out DIR]
    python experiments/bench/quality.py --family pggan --seeds 0,1,2 --separate
    python experiments/bench/quality.py --family pix2pix --seeds 0,1,2 --separate
    python experiments/bench/quality.py --family cyclegan --seeds 0,1,2 --separate

Rows:
* ``jaxgan``: the family's CPU default (``jaxgan/configs/<family>.py``) trained as one study
  (``config.seeds``, ``train_and_evaluate``, as ``python -m jaxgan.experiments.<family>
  --config.seeds=...``) in ``DIR/<family>_study``; its final generator per seed (DCGAN: the
  running BatchNorm averages; PGGAN: the EMA generator, clipped to [-1, 1]). ``--separate``
  trains the seeds as single runs one after another instead (``DIR/<family>_seed<k>``; the
  same result to float32 round-off, and faster for PGGAN on a CPU: STUDY_RESULTS.md).
  pix2pix and CycleGAN translate the test inputs with their generators in eval mode.
* ``pytorch``: the reference step of experiments/bench/_torch_models.py at the config's
  size, widths, batch and learning-rate schedule (parameter counts asserted equal to
  jaxgan's), trained on the same batches (jaxgan's loader for that seed) for the same steps,
  ``torch.manual_seed`` (and, for the fake pool, ``random.seed``) per seed; generators in
  ``eval()`` mode. PGGAN grows on jaxgan's schedule (stage, alpha, Adam reset) and samples
  from its EMA generator, clipped.
* ``real``: the train split's images in place of samples: the ceiling.

Measures of pix2pix (gray2photos) and CycleGAN (photos2ihc), against the ``test`` split
(each pair's eval crop, cycled; SWD as below):
* pix2pix: SWD of G(test inputs) against the test photos (as ``python -m jaxgan.evaluate``),
  and the mean absolute error |G(A) - B| over the test pairs (in [-1, 1] units; the
  reference's L1 term; lower is better).
* CycleGAN: SWD of G_AB(test photos) against the test micrographs (as ``python -m
  jaxgan.evaluate``) and of G_BA(test micrographs) against the test photos.

Measures of the digits (DCGAN, PGGAN), each against the held-out ``test`` split (297 digits,
cycled):
* SWD: PGGAN's sliced Wasserstein distance (x1e3, average over pyramid levels), 512 images per
  side (``jaxgan.metrics``, as ``python -m jaxgan.evaluate --num_images=512``); lower is better.
* digit score: ``exp(E_x KL(p(y|x) || p(y)))`` of 512 images under a classifier fitted on the
  train split (an MLP, its test accuracy printed): the Inception Score with a digit
  classifier, 10 at best (every image one confident digit, the ten equally often).

Needs PyTorch for the ``pytorch`` row (``pip install torch==2.13.0``). Results:
experiments/bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

NUM_IMAGES = 512


def classifier(size: int):
    """``images (N, size, size, 1) in [-1, 1] -> log-probabilities (N, 10)``: an MLP fitted
    on the digits' train split (fixed key), and its test-split accuracy."""
    from sklearn.datasets import load_digits

    from jaxgan.data.embedded import DIGITS_TRAIN, load_digits_array

    labels = load_digits().target
    def prep(split):
        return load_digits_array(size, split).reshape(-1, size * size) / 127.5 - 1.0
    x, y = jnp.asarray(prep("train"), jnp.float32), jnp.asarray(labels[:DIGITS_TRAIN])
    xt, yt = jnp.asarray(prep("test"), jnp.float32), labels[DIGITS_TRAIN:]
    keys = jax.random.split(jax.random.key(0), 3)
    dims = (size * size, 256, 256, 10)
    params = [(jax.random.normal(k, (a, b)) * np.sqrt(2.0 / a), jnp.zeros(b))
              for k, a, b in zip(keys, dims[:-1], dims[1:], strict=True)]

    def logits(params, x):
        for w, b in params[:-1]:
            x = jax.nn.relu(x @ w + b)
        w, b = params[-1]
        return x @ w + b

    tx = optax.adamw(1e-3, weight_decay=1e-4)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, key):
        noisy = x + 0.1 * jax.random.normal(key, x.shape)  # a little robustness to GAN noise
        loss, g = jax.value_and_grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
            logits(p, noisy), y).mean())(params)
        updates, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, updates), opt, loss

    for i in range(600):
        params, opt, _ = step(params, opt, jax.random.fold_in(jax.random.key(1), i))
    accuracy = float(np.mean(np.argmax(logits(params, xt), -1) == yt))
    fn = jax.jit(lambda im: jax.nn.log_softmax(logits(params, im.reshape(len(im), -1))))
    return fn, accuracy


def digit_score(log_probs: np.ndarray) -> float:
    """``exp(E_x KL(p(y|x) || p(y)))`` of (N, 10) log-probabilities."""
    p = np.exp(log_probs)
    log_py = np.log(p.mean(0))
    return float(np.exp(np.mean(np.sum(p * (log_probs - log_py), -1))))


def loader(config, split: str, training: bool):
    """The family's loader of ``split`` at the final resolution (PGGAN: its last stage)."""
    from jaxgan.experiments import _shared
    from jaxgan.experiments import dcgan as dcgan_exp
    from jaxgan.experiments import pggan as pggan_exp
    from jaxgan.train import pggan as pggan_train

    if "resolution" in config:
        return pggan_exp._loader(config, pggan_train.num_stages(config) - 1, split, training)
    if "in_channels" in config:
        return _shared.paired_loader(config, 0, split, training)
    return dcgan_exp._loader(config, 0, split, training)


def images_of(config, split: str, key: str):
    """Endless iterator over the ``key`` images of the ``split`` eval crops, every host's rows."""
    from jaxgan import parallel
    from jaxgan.experiments import _shared

    return map(parallel.gather_rows, _shared.cycle_images(loader(config, split, False), key))


def translated_swd(config, translate, source: str, target: str, step: int) -> float:
    """SWD of ``translate(test source images)`` against the test ``target`` images: the
    families' evaluation, for either direction and any translate function."""
    from jaxgan.experiments import _shared

    return float(_shared.evaluate_translation(
        config, translate, step, source=source, target=target, metrics="swd",
        num_images=NUM_IMAGES)["swd_avg"])


def translation_scores(config, ab, ba, step: int) -> dict[str, float]:
    """pix2pix (``ba`` None): SWD of ``ab`` and its mean |ab(A) - B| over the test pairs;
    CycleGAN: SWD of ``ab`` (A -> B) and of ``ba`` (B -> A)."""
    out = {"swd": translated_swd(config, ab, "A", "B", step)}
    if ba is not None:
        out["swd_ba"] = translated_swd(config, ba, "B", "A", step)
        return out
    from jaxgan import data

    n = len(data.make_source(config.data.source, split=config.data.eval_split))
    test = loader(config, config.data.eval_split, False)  # in order, endless: the first n rows
    batches = itertools.islice(test, -(-n // int(config.batch_size)))
    errors = np.concatenate([np.abs(np.asarray(ab(b["A"])) - b["B"]).mean(axis=(1, 2, 3))
                             for b in batches])[:n]
    out["l1"] = float(errors.mean())
    return out


def score(config, sample_fn, step: int, classify) -> dict[str, float]:
    """SWD (vs the test split, as jaxgan's evaluation) and the digit score of ``sample_fn``."""
    from jaxgan.experiments import _shared

    real = images_of(config, config.data.eval_split, "image")
    swd = _shared.run_evaluation(config, sample_fn, real, step, metrics="swd",
                                 num_images=NUM_IMAGES)["swd_avg"]
    images = np.asarray(sample_fn(jax.random.key(int(config.seed) + 5), NUM_IMAGES))
    return {"swd": float(swd), "digit_score": digit_score(np.asarray(classify(images)))}


def torch_models():
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    import _torch_models

    return _torch_models


def nchw(x):
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def torch_translator(net):
    """NHWC numpy in [-1, 1] -> ``net`` in eval mode -> NHWC numpy."""
    import torch

    net.eval()

    def apply(x):
        with torch.no_grad():
            return net(nchw(x)).numpy().transpose(0, 2, 3, 1)
    return apply


def train_torch_translation(family: str, config, seed: int, num_steps: int,
                            counts: tuple[int, int]):
    """The PyTorch reference pix2pix / CycleGAN trained on jaxgan's batches of ``seed``:
    ``(A -> B translate, B -> A translate or None)``."""
    import random

    import torch

    from jaxgan import models
    from jaxgan.train import image_to_image

    tm = torch_models()
    torch.manual_seed(seed)
    random.seed(seed)  # the fake pool's draws
    c = config.model
    in_ch, out_ch = int(config.get("in_channels", 3)), int(config.get("out_channels", 3))
    generator = models.create(c.generator, **image_to_image.generator_kwargs(c, in_ch, out_ch))
    if family == "cyclegan" and c.use_dropout:
        raise SystemExit("the PyTorch row's ResNet generator has no dropout: use_dropout=False")
    if c.discriminator != "basic":
        raise SystemExit(f"the PyTorch row needs model.discriminator='basic'; got {c.discriminator}")
    kw = {"counts": counts, "schedule": (int(config.schedule.constant_steps),
                                         int(config.schedule.decay_steps))}
    if family == "pix2pix":
        g_kw = {"num_downs": int(generator.num_downs), "in_ch": in_ch, "out_ch": out_ch,
                "ngf": int(c.ngf), "norm": c.norm, "dropout": bool(c.use_dropout)}
        step = tm.Pix2PixStep(int(config.batch_size), int(config.image_size), g_kw=g_kw,
                              d_kw={"in_ch": in_ch + out_ch, "ndf": int(c.ndf), "norm": c.norm},
                              **kw)
    else:
        g_kw = {"n_blocks": int(generator.n_blocks), "ngf": int(c.ngf), "norm": c.norm}
        step = tm.CycleGANStep(int(config.batch_size), int(config.image_size), g_kw=g_kw,
                               d_kw={"ndf": int(c.ndf), "norm": c.norm}, **kw)
    batches = iter(loader(config, "train", True))
    for _ in range(num_steps):
        batch = next(batches)
        step(nchw(batch["A"]), nchw(batch["B"]))
    if family == "pix2pix":
        return torch_translator(step.g), None
    return torch_translator(step.g_ab), torch_translator(step.g_ba)


def train_torch_dcgan(config, seed: int, num_steps: int, counts: tuple[int, int]):
    """The PyTorch reference DCGAN trained on jaxgan's batches of ``seed``; a sample_fn."""
    import torch

    tm = torch_models()
    torch.manual_seed(seed)
    c = config.model
    step = tm.DCGANStep(int(config.batch_size), res=int(config.image_size),
                        nc=int(config.channels), ngf=int(c.ngf), ndf=int(c.ndf), counts=counts)
    batches = iter(loader(config, "train", True))
    for _ in range(num_steps):
        step(nchw(next(batches)["image"]))
    step.g.eval()

    def sample(key, n):
        z = np.array(jax.random.normal(key, (n, int(c.latent_dim))))  # writable, for torch
        with torch.no_grad():
            return step.g(torch.from_numpy(z)).numpy().transpose(0, 2, 3, 1)
    return sample


def train_torch_pggan(config, seed: int, num_steps: int, counts: tuple[int, int]):
    """The PyTorch reference PGGAN grown on jaxgan's batches of ``seed`` (each stage's
    loader from its start, alpha from the images seen in the stage, Adam reset at each
    growth, the stage's learning rate); a sample_fn of its EMA generator, clipped."""
    import torch

    from jaxgan.experiments import pggan as pggan_exp
    from jaxgan.train import pggan as T

    if not config.schedule.reset_optimizer or config.mirror_augment:
        raise SystemExit("the PyTorch PGGAN row needs schedule.reset_optimizer=True and "
                         "mirror_augment=False")
    tm = torch_models()
    torch.manual_seed(seed)
    c, ch = config.model, int(config.channels)
    widths = {"fmap_base": int(c.fmap_base), "fmap_max": int(c.fmap_max)}
    step = tm.PGGANStep(int(config.resolution), T.stage_batch_size(config, 0), counts=counts,
                        g_kw={"latent": int(c.latent_dim), "ch": ch, **widths},
                        d_kw={"ch": ch, "mbstd_group": int(c.mbstd_group_size), **widths},
                        ema_decay=float(config.ema_decay))
    done, stage, seen = 0, 0, 0
    for stage in range(T.num_stages(config)):
        step.grow(stage, float(pggan_exp.stage_config(config, stage).optimizer.learning_rate))
        length = T.stage_steps(config, stage)
        length = num_steps - done if length is None else min(length, num_steps - done)
        batches = iter(pggan_exp._loader(config, stage, "train", True))
        seen = 0
        for _ in range(length):
            real = next(batches)["image"]
            step(nchw(real), stage, float(T.alpha(config, stage, seen)))
            seen += len(real)
        done += length
        if done >= num_steps:
            break
    step.g_ema.eval()
    a = float(T.alpha(config, stage, seen))

    def sample(key, n):
        z = np.array(jax.random.normal(key, (n, int(c.latent_dim))))  # writable, for torch
        with torch.no_grad():
            out = step.g_ema(torch.from_numpy(z), stage, a).clamp(-1.0, 1.0)
        return out.numpy().transpose(0, 2, 3, 1)
    return sample


def real_sampler(config, key: str = "image"):
    """Train-split ``key`` images in place of samples (the ceiling)."""
    batches = iter(loader(config, "train", True))
    images = []
    while sum(map(len, images)) < NUM_IMAGES:
        images.append(next(batches)[key])
    images, cursor = np.concatenate(images)[:NUM_IMAGES], [0]

    def sample(key, n):  # the next n of them (each call: other images)
        out = np.take(images, np.arange(cursor[0], cursor[0] + n), axis=0, mode="wrap")
        cursor[0] += n
        return out
    return sample


def real_translation_scores(config, step: int) -> dict[str, float]:
    """:func:`translation_scores` of the train split's target images in place of
    translations (the ceiling; pix2pix's L1 is not defined for them: nan)."""
    from jaxgan.experiments import _shared

    def swd(key):
        return float(_shared.run_evaluation(
            config, real_sampler(config, key), images_of(config, config.data.eval_split, key),
            step, metrics="swd", num_images=NUM_IMAGES)["swd_avg"])
    if "pool_size" in config:
        return {"swd": swd("B"), "swd_ba": swd("A")}
    return {"swd": swd("B"), "l1": float("nan")}


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=("dcgan", "pggan", "pix2pix", "cyclegan"),
                   default="dcgan")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, help="default: the config's num_steps")
    p.add_argument("--out", default="workdirs/quality")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--separate", action="store_true", help="train the seeds one by one")
    p.add_argument("--set", action="append", default=[],
                   help="a config override FIELD=VALUE (python literal), e.g. ema_decay=0.99")
    a = p.parse_args()
    import ast
    import importlib

    from jaxgan.experiments import runner

    cfg = importlib.import_module(f"jaxgan.configs.{a.family}").get_config()
    exp = importlib.import_module(f"jaxgan.experiments.{a.family}")
    train = importlib.import_module(f"jaxgan.train.{a.family}")
    for item in a.set:
        field, value = item.split("=", 1)
        target = cfg
        *path, last = field.split(".")
        for part in path:
            target = target[part]
        target[last] = ast.literal_eval(value)
    if a.steps:
        cfg.num_steps = a.steps
    cfg.seeds = a.seeds
    seeds = runner.study_seeds(cfg)
    digits = a.family in ("dcgan", "pggan")
    if digits:
        size = int(cfg.get("image_size", cfg.get("resolution")))
        classify, accuracy = classifier(size)
        print(f"{a.family}: {cfg.num_steps} steps, seeds {a.seeds}; digit classifier test "
              f"accuracy {accuracy:.4f}", flush=True)
    else:
        print(f"{a.family}: {cfg.num_steps} steps, seeds {a.seeds}", flush=True)
    step = int(cfg.num_steps)

    def measure(c, sampler):
        """``sampler``: digits, a sample_fn; pix2pix / CycleGAN, ``(ab, ba)`` translates."""
        return score(c, sampler, step, classify) if digits else \
            translation_scores(c, *sampler, step)

    rows: dict[str, list[dict]] = {}
    t0 = time.perf_counter()
    if a.separate:
        states = []
        for s in seeds:
            t1 = time.perf_counter()
            states.append(exp.train_and_evaluate(runner.seed_config(cfg, s), str(
                pathlib.Path(a.out) / f"{a.family}_seed{s}")))
            print(f"jaxgan seed {s} trained in {time.perf_counter() - t1:.0f} s", flush=True)
        state = runner.stack_replicas(states)
    else:
        state = exp.train_and_evaluate(cfg, str(pathlib.Path(a.out) / f"{a.family}_study"))
    print(f"jaxgan trained in {time.perf_counter() - t0:.0f} s", flush=True)

    def jaxgan_sampler(c, st):
        if digits:
            return exp._sample_fn(c, st)
        if a.family == "pix2pix":
            return (lambda x: train.translate(c, st, jnp.asarray(x))), None
        return (lambda x: train.translate(c, st, jnp.asarray(x), "AtoB"),
                lambda x: train.translate(c, st, jnp.asarray(x), "BtoA"))

    rows["jaxgan"] = [measure(runner.seed_config(cfg, s), jaxgan_sampler(
        runner.seed_config(cfg, s), runner.replica(state, k))) for k, s in enumerate(seeds)]
    if not a.no_torch:
        one = runner.replica(state, 0)
        g, d = one.g_params, one.d_params
        if a.family == "cyclegan":
            g, d = g["g_ab"], d["d_a"]
        counts = (count(g), count(d))
        rows["pytorch"] = []
        for s in seeds:
            t0 = time.perf_counter()
            c = runner.seed_config(cfg, s)
            sampler = (train_torch_dcgan(c, s, step, counts) if a.family == "dcgan" else
                       train_torch_pggan(c, s, step, counts) if a.family == "pggan" else
                       train_torch_translation(a.family, c, s, step, counts))
            rows["pytorch"].append(measure(c, sampler))
            print(f"pytorch seed {s} trained and scored in {time.perf_counter() - t0:.0f} s",
                  flush=True)
    rows["real (train split)"] = [
        score(c, real_sampler(c), step, classify) if digits else real_translation_scores(c, step)
        for c in map(functools.partial(runner.seed_config, cfg), seeds)]
    names = {"swd": "SWD x1e3", "digit_score": "digit score (max 10)",
             "l1": "L1 to the target", "swd_ba": "SWD x1e3 B -> A"}
    keys = list(rows["jaxgan"][0])
    print(f"\n| {a.family} | " + " | ".join(names[k] for k in keys) + " | per seed SWD |")
    print("|---|" + "---|" * (len(keys) + 1))
    for name, rs in rows.items():
        def ms(key, rs=rs):
            v = np.array([r[key] for r in rs])
            if np.isnan(v).all():
                return "-"
            digits_ = 1 if key.startswith("swd") else (3 if key == "l1" else 2)
            return f"{v.mean():.{digits_}f} +- {v.std(ddof=1):.{digits_}f}"
        per = ", ".join(f"{r['swd']:.1f}" for r in rs)
        print(f"| {name} | " + " | ".join(ms(k) for k in keys) + f" | {per} |", flush=True)


if __name__ == "__main__":
    main()
