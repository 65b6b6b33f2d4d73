"""The thin ``main`` shared by the entry points: absl flags, ``--config`` files with
``--config.<field>=<value>`` overrides (checked against the config, listing valid fields),
``--workdir``, multi-host initialisation, the persistent compilation cache, and glibc told to
keep the train step's freed memory for reuse (:mod:`jaxgan.experiments.memory`)."""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import ml_collections

from jaxgan.experiments import memory, runner


def config_file(family: str) -> str:
    """Path of the family's default config file inside the package."""
    import jaxgan.configs

    return str(Path(jaxgan.configs.__file__).parent / f"{family}.py")


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Load ``path[:arg]`` as ml_collections' config_flags does: ``get_config([arg])``."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path} does not exist")
    module_spec = importlib.util.spec_from_file_location("_jaxgan_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def _fields(c: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    out = []
    for k, v in c.items():
        out.append(prefix + k)
        if isinstance(v, ml_collections.ConfigDict):
            out += _fields(v, prefix + k + ".")
    return out


def check_overrides(config: ml_collections.ConfigDict, argv: Sequence[str]) -> None:
    """Raise ValueError for a ``--config.<field>`` that the config does not have."""
    valid = _fields(config)
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        field = arg[len("--config."):].split("=", 1)[0]
        if field in valid:
            continue
        close = difflib.get_close_matches(field, valid, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        parent = field.rsplit(".", 1)[0] if "." in field else ""
        level = [f for f in valid if f.rsplit(".", 1)[0] == parent and "." in f] if parent else [
            f for f in valid if "." not in f]
        raise ValueError(
            f"unknown config field {field!r}.{hint} Valid fields"
            f"{' of ' + parent if parent else ''}: {', '.join(sorted(level) or sorted(valid))}"
        )


def enable_compilation_cache() -> None:
    """Persistent XLA compilation cache (default ``~/.cache/jaxgan/xla``; ``JAXGAN_CACHE_DIR``
    moves it, ``JAXGAN_CACHE_DIR=`` empty turns it off)."""
    import jax

    path = os.environ.get("JAXGAN_CACHE_DIR", str(Path.home() / ".cache" / "jaxgan" / "xla"))
    if not path:
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def maybe_initialize_distributed(mode: str) -> None:
    """``jax.distributed.initialize()`` on several processes (TPU pods, multi-node GPU).

    mode "auto": when the environment names a coordinator or several TPU workers; "true":
    always; "false": never.
    """
    import jax

    if mode == "false":
        return
    env = os.environ
    several = (
        "JAX_COORDINATOR_ADDRESS" in env
        or "," in env.get("TPU_WORKER_HOSTNAMES", "")
        or int(env.get("SLURM_NTASKS", "1")) > 1
        or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
    )
    if mode == "true" or several:
        jax.distributed.initialize()


def run_main(
    family: str,
    train_and_evaluate: Callable[[ml_collections.ConfigDict, str], object],
    *,
    extra_flags: Callable[[], None] | None = None,
    other_modes: dict[str, Callable[[ml_collections.ConfigDict, str], object]] | None = None,
) -> None:
    """Define the flags, check the config overrides, and run ``train_and_evaluate``.

    ``other_modes`` maps extra ``--mode`` values (e.g. "translate") to functions of
    (config, workdir).
    """
    memory.keep_freed_memory()  # before jax starts its threads
    from absl import app, flags
    from ml_collections import config_flags

    # Check --config.<field> overrides before absl parses them, for a clear error.
    argv = sys.argv[1:]
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    try:
        base = load_config_file(spec or config_file(family))
        check_overrides(base, argv)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

    config_flags.DEFINE_config_file(
        "config", config_file(family), f"{family} config file (default: the CPU default).",
        lock_config=True,
    )
    flags.DEFINE_string("workdir", None,
                        f"Where the run writes everything (default: {runner.default_workdir(family)}).")
    flags.DEFINE_enum("distributed", "auto", ["auto", "true", "false"],
                      "Call jax.distributed.initialize() (auto: on multi-process launches).")
    modes = ["train", *(other_modes or {})]
    flags.DEFINE_enum("mode", "train", modes, "What to do.")
    if extra_flags:
        extra_flags()

    def main(_argv):
        from absl import logging

        logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
        maybe_initialize_distributed(flags.FLAGS.distributed)
        enable_compilation_cache()
        config = flags.FLAGS.config
        workdir = flags.FLAGS.workdir or str(runner.default_workdir(family))
        fn = train_and_evaluate if flags.FLAGS.mode == "train" else other_modes[flags.FLAGS.mode]
        print(f"workdir: {Path(workdir).absolute()}", flush=True)
        try:
            fn(config, workdir)
        except (runner.NonFiniteLossError, runner.WorkdirError, ValueError,
                FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)

    app.run(main)
