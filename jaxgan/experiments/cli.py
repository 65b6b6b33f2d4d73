"""The thin ``main`` shared by the entry points: absl flags, ``--config`` files with checked
``--config.<field>=<value>`` overrides, ``--workdir``, multi-host initialisation, the
persistent compilation cache and ``JAXGAN_CPU_MALLOC=1`` (:mod:`jaxgan.experiments.memory`)."""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ml_collections

from jaxgan.checkpoint import CheckpointError
from jaxgan.experiments import memory, runner


def config_file(family: str) -> str:
    """Path of the family's default config file inside the package."""
    import jaxgan.configs

    return str(Path(jaxgan.configs.__file__).parent / f"{family}.py")


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Load ``path[:arg]`` as ml_collections' config_flags does: ``get_config([arg])``. Errors
    name the file: FileNotFoundError, ValueError (it does not run), TypeError (no
    ``get_config()`` returning a ConfigDict)."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path} does not exist")
    module_spec = importlib.util.spec_from_file_location("_jaxgan_config", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ValueError(f"config file {path} has a syntax error at line {e.lineno}: "
                         f"{e.msg}") from e
    except Exception as e:  # the user's file: any error it raises is theirs to see
        raise ValueError(f"config file {path} failed to run: {type(e).__name__}: {e}") from e
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise TypeError(f"config file {path} has no get_config() function: a config file "
                         "defines get_config() returning an ml_collections.ConfigDict")
    config = get_config(arg) if arg else get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise TypeError(f"get_config() of {path} returned {type(config).__name__}, not an "
                         "ml_collections.ConfigDict")
    return config


FAMILIES = ("dcgan", "pix2pix", "cyclegan", "pggan")


def check_family(config: ml_collections.ConfigDict, family: str, path: str) -> None:
    """Raise ValueError when ``config`` lacks fields of ``family``'s default config (another
    family's config file, say), naming them and the family the file looks like."""
    def missing(name: str) -> list[str]:
        return sorted(set(_fields(load_config_file(config_file(name)))) - set(_fields(config)))

    lacks = missing(family)
    if not lacks:
        return
    fits = [name for name in FAMILIES if name != family and not missing(name)]
    hint = (f"; it is a {fits[0]} config: python -m jaxgan.experiments.{fits[0]} "
            f"--config={path}") if fits else ""
    raise ValueError(f"config file {path} is not a {family} config: it lacks "
                     f"{', '.join(lacks[:6])}{' ...' if len(lacks) > 6 else ''}{hint}")


#: Depths meant for the config file's generator: dropped when only ``model.generator`` changes.
DEPTH_FIELDS = ("model.num_downs", "model.n_blocks")


def reset_generator_depth(config: ml_collections.ConfigDict, argv: Sequence[str]) -> list[str]:
    """Set :data:`DEPTH_FIELDS` to None (the generator name's own) when ``argv`` overrides
    ``model.generator`` but not them; returns the notes to print."""
    given = {a[len("--config."):].split("=", 1)[0] for a in argv if a.startswith("--config.")}
    if "model.generator" not in given or "model" not in config:
        return []
    notes = []
    for field in DEPTH_FIELDS:
        name = field.split(".", 1)[1]
        if field not in given and config.model.get(name) is not None:
            notes.append(f"note: --config.model.generator={config.model.generator} uses that "
                         f"generator's own {name}, not the config file's {name}="
                         f"{config.model[name]} (pass --config.{field}=N to set it)")
            config.model[name] = None
    return notes


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


#: Environment variables that describe a cluster JAX cannot detect (with the flags
#: --coordinator_address, --num_processes, --process_id); JAX reads the first itself.
DISTRIBUTED_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def detect_cluster() -> tuple[str, int | None] | None:
    """(name, process count or None) of the cluster JAX's own detection finds (TPU VM slices,
    SLURM, Open MPI, ...), or None on a plain host."""
    try:
        from jax._src import clusters
    except ImportError:  # pragma: no cover (a JAX without cluster detection)
        return None
    def present(env: Any) -> bool:
        try:
            return bool(env.is_env_present())
        except Exception:  # noqa: BLE001 (a detector that cannot run here: not this cluster)
            return False

    for env in clusters.ClusterEnv._cluster_types:
        if getattr(env, "opt_in_only_method", False) or not present(env):
            continue
        try:
            count = int(env.get_process_count())
        except Exception:  # noqa: BLE001 (known only once initialised)
            count = None
        return env.__name__, count
    return None


def maybe_initialize_distributed(mode: str, coordinator_address: str | None = None,
                                 num_processes: int | None = None,
                                 process_id: int | None = None) -> bool:
    """``jax.distributed.initialize()`` wherever there is a cluster to join; returns whether it
    ran. mode "auto": when a coordinator, process count or id is given (arguments, else
    :data:`DISTRIBUTED_ENV`) or JAX detects a multi-process cluster; "true": always; "false":
    never. ValueError naming the flags for a partly described cluster."""
    if mode == "false":
        return False
    import jax

    env = os.environ
    address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS") or None
    try:
        count = num_processes if num_processes is not None else (
            int(env["JAX_NUM_PROCESSES"]) if env.get("JAX_NUM_PROCESSES") else None)
        index = process_id if process_id is not None else (
            int(env["JAX_PROCESS_ID"]) if env.get("JAX_PROCESS_ID") else None)
    except ValueError as e:
        raise ValueError(f"JAX_NUM_PROCESSES / JAX_PROCESS_ID must be whole numbers ({e})") from e
    given = (address, count, index) != (None, None, None)
    cluster = None if given else detect_cluster()
    if mode == "auto" and not given and (cluster is None or cluster[1] == 1):
        return False
    try:
        jax.distributed.initialize(coordinator_address=address, num_processes=count,
                                   process_id=index)
    except ValueError as e:
        where = f" (found {cluster[0]})" if cluster else ""
        raise ValueError(
            f"jax.distributed.initialize() failed: {e}{where}. For a cluster JAX cannot "
            "detect, give every process --coordinator_address=HOST:PORT (process 0's host), "
            "--num_processes=N and --process_id=I (0 on the coordinator), or the environment "
            "variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID; "
            "--distributed=false runs on this host alone") from e
    return True


def define_distributed_flags(flag_values=None) -> None:
    """``--distributed``, ``--coordinator_address``, ``--num_processes``, ``--process_id``
    (for :func:`maybe_initialize_distributed`) in ``flag_values`` (default: absl's FLAGS)."""
    from absl import flags

    fv = {} if flag_values is None else {"flag_values": flag_values}
    flags.DEFINE_enum("distributed", "auto", ["auto", "true", "false"],
                      "Call jax.distributed.initialize(): auto = on a multi-process cluster "
                      "that JAX detects (TPU VM slice, SLURM, Open MPI) or that the flags below "
                      "or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID "
                      "describe; true = always; false = never.", **fv)
    flags.DEFINE_string("coordinator_address", None,
                        "Multi-process runs JAX cannot detect: process 0's HOST:PORT, the same "
                        "on every process (default: $JAX_COORDINATOR_ADDRESS).", **fv)
    flags.DEFINE_integer("num_processes", None,
                         "Multi-process runs JAX cannot detect: the number of processes "
                         "(default: $JAX_NUM_PROCESSES).", **fv)
    flags.DEFINE_integer("process_id", None,
                         "Multi-process runs JAX cannot detect: this process's index, 0 on "
                         "the coordinator (default: $JAX_PROCESS_ID).", **fv)


def start_distributed(flag_values) -> None:
    """:func:`maybe_initialize_distributed` from parsed :func:`define_distributed_flags`,
    printing the process layout where it ran."""
    fv = flag_values
    if maybe_initialize_distributed(fv.distributed, fv.coordinator_address, fv.num_processes,
                                    fv.process_id):
        from jaxgan import parallel

        print(parallel.describe_processes(), flush=True)


def run_main(
    family: str,
    train_and_evaluate: Callable[[ml_collections.ConfigDict, str], object],
    *,
    extra_flags: Callable[[], None] | None = None,
    other_modes: dict[str, Callable[[ml_collections.ConfigDict, str], object]] | None = None,
) -> None:
    """Define the flags, check the config overrides, and run ``train_and_evaluate``;
    ``other_modes`` maps extra ``--mode`` values to functions of (config, workdir)."""
    memory.enable_if_requested()  # JAXGAN_CPU_MALLOC=1: before jax starts its threads
    from absl import app, flags
    from ml_collections import config_flags

    # Check --config.<field> overrides before absl parses them, for a clear error.
    argv = sys.argv[1:]
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    try:
        base = load_config_file(spec or config_file(family))
        if spec:
            check_family(base, family, spec.partition(":")[0])
        check_overrides(base, argv)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

    before = set(flags.FLAGS)
    config_flags.DEFINE_config_file(
        "config", config_file(family),
        f"{family} config file (default: the CPU default). Override any of its fields with "
        "--config.<field>=<value>; --show_config prints them all.",
        lock_config=True,
    )
    flags.DEFINE_string("workdir", None,
                        f"Where the run writes everything (default: {runner.default_workdir(family)}).")
    define_distributed_flags()
    modes = ["train", *(other_modes or {})]
    flags.DEFINE_enum("mode", "train", modes, "What to do.")
    flags.DEFINE_bool("show_config", False,
                      "Print the config with every override applied (all --config.<field> "
                      "names and values) and exit.")
    if extra_flags:
        extra_flags()
    # --help lists the flags defined here and by extra_flags, not only the entry point's own.
    for name in ("config", "workdir", "distributed", "coordinator_address", "num_processes",
                 "process_id", "mode", "show_config",
                 *sorted(set(flags.FLAGS) - before)):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])
    if any(a in ("-h", "-?", "--help", "--helpshort") for a in argv):  # absl's exits 1
        print((sys.modules["__main__"].__doc__ or "").strip() + "\n")
        print(flags.FLAGS.main_module_help())
        print("\n" + memory.HELP)
        sys.exit(0)

    def main(_argv):
        from absl import logging

        logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
        try:
            start_distributed(flags.FLAGS)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        enable_compilation_cache()
        config = flags.FLAGS.config
        with config.unlocked():
            for note in reset_generator_depth(config, argv):
                print(note, flush=True)
        if flags.FLAGS.show_config:
            print(config)
            return
        workdir = flags.FLAGS.workdir or str(runner.default_workdir(family))
        fn = train_and_evaluate if flags.FLAGS.mode == "train" else other_modes[flags.FLAGS.mode]
        import jax

        if jax.process_index() == 0:
            print(f"workdir: {runner.workdir_path(workdir)}", flush=True)
        try:
            fn(config, workdir)
        except (runner.NonFiniteLossError, runner.WorkdirError, CheckpointError,
                ValueError, FileNotFoundError, FileExistsError) as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)

    app.run(main)
