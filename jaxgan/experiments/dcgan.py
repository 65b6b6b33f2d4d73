"""``python -m jaxgan.experiments.dcgan``: DCGAN (BCE, Adam 2e-4/0.5/0.999) on the embedded
digits by default, or any unconditional source (``--config.data.source=tfds:celeb_a``).

Writes ``<workdir>/metrics.jsonl``, TensorBoard events, ``samples/step_*.png`` (a grid from a
fixed latent) and orbax checkpoints; rerunning on the same workdir resumes.
"""

from __future__ import annotations

import jax
import ml_collections

from jaxgan import parallel
from jaxgan.experiments import _shared, cli, runner
from jaxgan.train import dcgan as T


def _loader(config, stage, split, training):
    return _shared.make_loader(config, split=split, training=training,
                               batch_size=int(config.batch_size),
                               image_size=int(config.image_size), channels=int(config.channels))


def _sample_inputs(config):
    key = jax.random.key(int(config.seed) + 2)
    return jax.random.normal(key, (int(config.num_samples), int(config.model.latent_dim)))


def _sample_fn(config, state):
    def sample(key, n):
        z = jax.random.normal(key, (n, int(config.model.latent_dim)))
        return T.generate(config, state, z, train=False)
    return sample


def family() -> runner.Family:
    return runner.Family(
        name="dcgan",
        create_state=lambda config, key, stage: T.create_state(config, key),
        make_step=lambda config, mesh, stage, **kw: T.make_train_step(config, mesh, **kw),
        make_loader=_loader,
        sample_inputs=_sample_inputs,
        # Samples in train mode (batch statistics of the fixed latents), as the reference.
        render_samples=lambda config, state, z: T.generate(config, state, z, train=True),
        default_config=T.default_config,
    )


def evaluate(config: ml_collections.ConfigDict, state, step: int, **kw) -> dict[str, float]:
    """Metrics of the generator against the eval split (see jaxgan.metrics)."""
    real = map(parallel.gather_rows,  # every process scores all rows, as one process does
               _shared.cycle_images(_loader(config, 0, config.data.eval_split, False), "image"))
    return _shared.run_evaluation(config, _sample_fn(config, state), real, step, **kw)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
    """Train (or resume) a DCGAN run in ``workdir``; returns the final state. A new run
    starts from ``config.init.torch_G`` / ``torch_D`` when set (fine-tuning)."""
    return runner.run(_shared.with_torch_init(family(), T, config, workdir), config, workdir,
                      evaluate=evaluate)


if __name__ == "__main__":
    cli.run_main("dcgan", train_and_evaluate)
