"""``python -m jaxgan.experiments.pggan``: Progressive GAN (WGAN-GP, drift, equalized LR,
PixelNorm, minibatch stddev, generator EMA) growing 4 -> 8 -> ... -> ``config.resolution``.

``config.schedule``: stage 0 trains ``stable_kimg`` thousand images; each later stage fades
its new blocks in over ``fade_kimg``, then trains ``stable_kimg``; the last runs until
``total_kimg`` (or ``num_steps``). Global batch per stage from ``batch_size_per_stage``,
learning rates from ``learning_rate_per_stage`` when given; ``reset_optimizer`` resets Adam
at each growth. Samples come from the EMA generator on a fixed latent.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxgan import parallel
from jaxgan.experiments import _shared, cli, runner
from jaxgan.train import pggan as T


def stage_config(config: ml_collections.ConfigDict, stage: int) -> ml_collections.ConfigDict:
    """``config`` with the stage's learning rate from ``schedule.learning_rate_per_stage``."""
    table = tuple(config.schedule.get("learning_rate_per_stage", ()) or ())
    if not table:
        return config
    c = config.copy_and_resolve_references()
    with c.unlocked():
        c.optimizer.learning_rate = float(table[min(stage, len(table) - 1)])
    return c


def _loader(config, stage, split, training):
    res = T.stage_resolution(stage)
    return _shared.make_loader(
        config, split=split, training=training, batch_size=T.stage_batch_size(config, stage),
        image_size=int(config.resolution), channels=int(config.channels), seed_offset=stage,
        resolution=res if res != int(config.resolution) else None, flip=False,
    )


def _sample_inputs(config):
    key = jax.random.key(int(config.seed) + 2)
    return jax.random.normal(key, (int(config.num_samples), int(config.model.latent_dim)))


def _sample_fn(config, state):
    """EMA samples clipped to [-1, 1]: the generator's output is linear (as the reference's),
    and the reference clips it the same way when it converts images for its metrics."""
    def sample(key, n):
        z = jax.random.normal(key, (n, config.model.latent_dim))
        return jnp.clip(T.generate(config, state, z), -1.0, 1.0)
    return sample


def family() -> runner.Family:
    return runner.Family(
        name="pggan",
        create_state=lambda config, key, stage: T.create_state(config, key, stage),
        make_step=lambda config, mesh, stage, **kw: T.make_train_step(
            stage_config(config, stage), mesh, **kw),
        make_loader=_loader,
        sample_inputs=_sample_inputs,
        render_samples=lambda config, state, z: T.generate(config, state, z),
        growth=runner.Growth(
            batch_sizes=lambda config: [T.stage_batch_size(config, s)
                                        for s in range(T.num_stages(config))],
            start=T.stage_start_step,
            grow=lambda config, state, stage: T.grow(stage_config(config, stage), state),
            name=lambda stage: (f"stage {stage} ({T.stage_resolution(stage)}x"
                                f"{T.stage_resolution(stage)}, schedule.batch_size_per_stage)")),
        default_config=T.default_config,
    )


#: Metrics that need images of 16x16 or larger (SWD, MS-SSIM): skipped at smaller stages.
MIN_SIZE_METRICS = ("swd", "ms_ssim")


def evaluate(config: ml_collections.ConfigDict, state, step: int, **kw) -> dict[str, float]:
    """Metrics of the EMA generator at its current stage against the eval split (SWD and
    MS-SSIM from the 16x16 stage on)."""
    from jaxgan.metrics.swd import MIN_LEVEL_SIZE

    names = [m.strip() for m in (kw.pop("metrics", None) or config.eval_metrics).split(",")]
    res = T.stage_resolution(int(state.stage))
    if res < MIN_LEVEL_SIZE:
        skipped = [m for m in names if m in MIN_SIZE_METRICS]
        names = [m for m in names if m and m not in MIN_SIZE_METRICS]
        if skipped and jax.process_index() == 0:
            print(f"step {step}: {', '.join(skipped)} skipped at the {res}x{res} stage (they "
                  f"need {MIN_LEVEL_SIZE}x{MIN_LEVEL_SIZE} images or larger)", flush=True)
    if not any(names):
        return {}
    real = map(parallel.gather_rows,  # every process scores all rows, as one process does
               _shared.cycle_images(_loader(config, int(state.stage), config.data.eval_split,
                                            False), "image"))
    return _shared.run_evaluation(config, _sample_fn(config, state), real, step,
                                  metrics=",".join(names), **kw)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
    """Train (or resume) a PGGAN run in ``workdir``; returns the final state."""
    T.num_stages(config)
    return runner.run(family(), config, workdir, evaluate=evaluate)


if __name__ == "__main__":
    cli.run_main("pggan", train_and_evaluate)
