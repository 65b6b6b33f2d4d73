"""Sample quality of the default digits configs, mean +- std over seeds: a jaxgan study, the
PyTorch reference trained with the same config, data and steps, and the held-out real images.

    python experiments/bench/quality.py --family dcgan --seeds 0,1,2 [--steps N] [--out DIR]
    python experiments/bench/quality.py --family pggan --seeds 0,1,2 --no-torch --separate

Rows:
* ``jaxgan``: the family's CPU default (``jaxgan/configs/<family>.py``) trained as one study
  (``config.seeds``, ``train_and_evaluate``, as ``python -m jaxgan.experiments.<family>
  --config.seeds=...``) in ``DIR/<family>_study``; its final generator per seed (DCGAN: the
  running BatchNorm averages; PGGAN: the EMA generator, clipped to [-1, 1]). ``--separate``
  trains the seeds as single runs one after another instead (``DIR/<family>_seed<k>``; the
  same result to float32 round-off, and faster for PGGAN on a CPU: STUDY_RESULTS.md).
* ``pytorch``: (DCGAN) the reference step of experiments/bench/_torch_models.py at the
  config's size, widths and batch (parameter counts asserted equal to jaxgan's), trained on
  the same batches (jaxgan's loader for that seed) for the same steps, ``torch.manual_seed``
  per seed; sampled with ``netG.eval()``.
* ``real``: the train split's images in place of samples: the ceiling.

Measures, each against the held-out ``test`` split (297 digits, cycled):
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
    from jaxgan.experiments import dcgan as dcgan_exp
    from jaxgan.experiments import pggan as pggan_exp
    from jaxgan.train import pggan as pggan_train

    if "resolution" in config:
        return pggan_exp._loader(config, pggan_train.num_stages(config) - 1, split, training)
    return dcgan_exp._loader(config, 0, split, training)


def score(config, sample_fn, step: int, classify) -> dict[str, float]:
    """SWD (vs the test split, as jaxgan's evaluation) and the digit score of ``sample_fn``."""
    from jaxgan import parallel
    from jaxgan.experiments import _shared

    real = map(parallel.gather_rows, _shared.cycle_images(
        loader(config, config.data.eval_split, False), "image"))
    swd = _shared.run_evaluation(config, sample_fn, real, step, metrics="swd",
                                 num_images=NUM_IMAGES)["swd_avg"]
    images = np.asarray(sample_fn(jax.random.key(int(config.seed) + 5), NUM_IMAGES))
    return {"swd": float(swd), "digit_score": digit_score(np.asarray(classify(images)))}


def train_torch_dcgan(config, seed: int, num_steps: int, counts: tuple[int, int]):
    """The PyTorch reference DCGAN trained on jaxgan's batches of ``seed``; a sample_fn."""
    import torch

    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    import _torch_models as tm

    torch.manual_seed(seed)
    c = config.model
    step = tm.DCGANStep(int(config.batch_size), res=int(config.image_size),
                        nc=int(config.channels), ngf=int(c.ngf), ndf=int(c.ndf), counts=counts)
    batches = iter(loader(config, "train", True))
    for _ in range(num_steps):
        step(torch.from_numpy(np.ascontiguousarray(next(batches)["image"].transpose(0, 3, 1, 2))))
    step.g.eval()

    def sample(key, n):
        z = np.asarray(jax.random.normal(key, (n, int(c.latent_dim))))
        with torch.no_grad():
            return step.g(torch.from_numpy(z)).numpy().transpose(0, 2, 3, 1)
    return sample


def real_sampler(config):
    """Train-split images in place of samples (the ceiling)."""
    batches = iter(loader(config, "train", True))
    images = []
    while sum(map(len, images)) < NUM_IMAGES:
        images.append(next(batches)["image"])
    images, cursor = np.concatenate(images)[:NUM_IMAGES], [0]

    def sample(key, n):  # the next n of them (each call: other images)
        out = np.take(images, np.arange(cursor[0], cursor[0] + n), axis=0, mode="wrap")
        cursor[0] += n
        return out
    return sample


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=("dcgan", "pggan"), default="dcgan")
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
    size = int(cfg.get("image_size", cfg.get("resolution")))
    classify, accuracy = classifier(size)
    print(f"{a.family}: {cfg.num_steps} steps, seeds {a.seeds}; digit classifier test accuracy "
          f"{accuracy:.4f}", flush=True)
    rows: dict[str, list[dict]] = {}
    t0 = time.perf_counter()
    if a.separate:
        states = [exp.train_and_evaluate(runner.seed_config(cfg, s),
                                         str(pathlib.Path(a.out) / f"{a.family}_seed{s}"))
                  for s in seeds]
        state = runner.stack_replicas(states)
    else:
        state = exp.train_and_evaluate(cfg, str(pathlib.Path(a.out) / f"{a.family}_study"))
    print(f"jaxgan trained in {time.perf_counter() - t0:.0f} s", flush=True)
    step = int(cfg.num_steps)
    rows["jaxgan"] = [score(runner.seed_config(cfg, s), exp._sample_fn(
        runner.seed_config(cfg, s), runner.replica(state, k)), step, classify)
        for k, s in enumerate(seeds)]
    if a.family == "dcgan" and not a.no_torch:
        one = runner.replica(state, 0)
        counts = (count(one.g_params), count(one.d_params))
        rows["pytorch"] = []
        for s in seeds:
            t0 = time.perf_counter()
            c = runner.seed_config(cfg, s)
            rows["pytorch"].append(score(c, train_torch_dcgan(c, s, step, counts), step, classify))
            print(f"pytorch seed {s} trained and scored in {time.perf_counter() - t0:.0f} s",
                  flush=True)
    rows["real (train split)"] = [score(runner.seed_config(cfg, s),
                                        real_sampler(runner.seed_config(cfg, s)), step, classify)
                                  for s in seeds]
    print(f"\n| {a.family} | SWD x1e3 (lower is better) | digit score (max 10) | per seed SWD |")
    print("|---|---|---|---|")
    for name, rs in rows.items():
        def ms(key, rs=rs):
            v = np.array([r[key] for r in rs])
            return f"{v.mean():.1f} +- {v.std(ddof=1):.1f}" if key == "swd" else \
                f"{v.mean():.2f} +- {v.std(ddof=1):.2f}"
        per = ", ".join(f"{r['swd']:.1f}" for r in rs)
        print(f"| {name} | {ms('swd')} | {ms('digit_score')} | {per} |", flush=True)


if __name__ == "__main__":
    main()
