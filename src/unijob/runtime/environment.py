"""Where a rank finds out who it is: :class:`Context` and :func:`context`.

Resolution order, per field:

1. the first platform :class:`~unijob.contract.RuntimeEnv` whose ``detect(environ)`` is true
   (registered under the ``unijob.runtime_envs`` entry-point group by the SageMaker, Vertex,
   Databricks and Kubernetes adapters); a RuntimeEnv that fails to load or raises is skipped with
   a warning;
2. unijob's own env contract and torchrun's variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
   ``LOCAL_WORLD_SIZE``, ``NODE_RANK``/``GROUP_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``; see
   https://pytorch.org/docs/stable/elastic/run.html, "Environment Variables", read 2026-11);
3. single-process defaults: rank 0 of 1, so a script also runs with plain ``python train.py``.

Standard library only: this runs inside training containers.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

#: torch.distributed's own defaults when MASTER_ADDR/MASTER_PORT are unset (torchrun
#: ``--master-addr 127.0.0.1 --master-port 29500``; pytorch.org/docs/stable/elastic/run.html).
DEFAULT_MASTER_ADDR = "127.0.0.1"
DEFAULT_MASTER_PORT = 29500


@dataclass(frozen=True)
class Context:
    """What one rank of a job knows about itself and the job.

    Attributes:
        rank: global rank, 0 .. world_size-1.
        world_size: ranks in the gang (nodes x processes per node).
        local_rank: rank on this node, 0 .. local_world_size-1.
        local_world_size: ranks on this node.
        node_rank: this node's index, 0 .. nodes-1.
        nodes: nodes in the gang.
        master_addr / master_port: where rank 0 listens for the rendezvous (``init_process_group``).
        channels: input channel name -> local path (or URI, where the platform does not mount it).
        output_dir: local directory for outputs (may not exist yet).
        output_uri: where outputs end up (``UNIJOB_OUTPUT_URI``), or ``None``.
        model_dir: local directory for the trained model (SageMaker ``SM_MODEL_DIR``; else
            ``output_dir``).
        checkpoint_uri: the spec's ``checkpoint.uri`` as the job sees it, or ``None``.
        checkpoint_dir: a local directory the platform syncs to ``checkpoint_uri`` (SageMaker
            ``/opt/ml/checkpoints``; the local target's per-job directory), or ``None``.
        hyperparameters: name -> typed value (int, float, bool, str, lists/dicts from JSON).
        job_id: the unijob job id (``UNIJOB_JOB_ID``), or ``None`` outside a unijob job.
        job_name: the spec's name (``UNIJOB_JOB_NAME``), or ``None``.
        target: the target running the job (``local``, ``sagemaker``...), or ``None``.
        restart_count: how many times this job was relaunched (preemptions, retries); 0 at first.
        tensorboard_dir: where to write TensorBoard logs, where the platform provides one
            (Vertex ``AIP_TENSORBOARD_LOG_DIR``), or ``None``.
        source: where the fields came from: a RuntimeEnv name, ``"env"`` or ``"default"``.
        unijob_version: the version of the unijob runtime this rank imported: inside a job, the
            submitting unijob's version, carried there by the runtime wheel
            (:func:`unijob.bundle.runtime_wheel`); ``+runtime.<hash>`` names the wheel's build.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    node_rank: int = 0
    nodes: int = 1
    master_addr: str = DEFAULT_MASTER_ADDR
    master_port: int = DEFAULT_MASTER_PORT
    channels: dict[str, str] = field(default_factory=dict)
    output_dir: Path = field(default_factory=lambda: Path.cwd() / "output")
    output_uri: Optional[str] = None
    model_dir: Optional[Path] = None
    checkpoint_uri: Optional[str] = None
    checkpoint_dir: Optional[Path] = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    job_id: Optional[str] = None
    job_name: Optional[str] = None
    target: Optional[str] = None
    restart_count: int = 0
    tensorboard_dir: Optional[str] = None
    source: str = "default"
    unijob_version: str = field(default_factory=lambda: _unijob_version())

    @property
    def is_main(self) -> bool:
        """True on global rank 0 (the rank that logs, saves checkpoints and writes the model)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when the gang has more than one rank."""
        return self.world_size > 1


_KEYS = frozenset(f.name for f in fields(Context)) - {"source", "unijob_version"}


def _unijob_version() -> str:
    """The installed unijob distribution's version (the runtime wheel's carries ``+runtime.<hash>``),
    else the package's ``__version__``."""
    from importlib import metadata

    import unijob

    try:
        return metadata.version("unijob")
    except metadata.PackageNotFoundError:
        return unijob.__version__


def parse_hyperparameters(values: Mapping[str, Any], *, strings_as_json: bool) -> dict[str, Any]:
    """Typed hyperparameters.

    Args:
        values: name -> value.
        strings_as_json: parse string values as JSON where they parse (SageMaker passes every
            hyperparameter as a string: ``"0.01"`` -> 0.01, ``"true"`` -> True, ``'"adam"'`` ->
            ``"adam"``); strings that are not JSON (``"adam"``) stay strings.

    Returns:
        A new dict.
    """
    out: dict[str, Any] = {}
    for k, v in values.items():
        if strings_as_json and isinstance(v, str):
            try:
                v = json.loads(v)
            except ValueError:
                pass
        out[str(k)] = v
    return out


def _int(environ: Mapping[str, str], *names: str) -> Optional[int]:
    for n in names:
        raw = environ.get(n)
        if raw is None or raw.strip() == "":
            continue
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"environment variable {n}={raw!r} is not an integer") from None
    return None


def _json_obj(environ: Mapping[str, str], name: str) -> Optional[dict[str, Any]]:
    raw = environ.get(name)
    if not raw:
        return None
    try:
        obj = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"environment variable {name} is not valid JSON: {e.msg} at char {e.pos}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"environment variable {name} must be a JSON object, got {type(obj).__name__}")
    return obj


def _local_path(uri: Optional[str]) -> Optional[Path]:
    """The local path of a plain path or ``file://`` URI; ``None`` for remote URIs."""
    if not uri:
        return None
    if uri.startswith("file://"):
        return Path(uri[len("file://"):])
    if "://" in uri:
        return None
    return Path(uri)


def from_env_contract(environ: Mapping[str, str]) -> dict[str, Any]:
    """The context fields set by unijob's env contract and torchrun's variables (only those set).

    Raises:
        ValueError: a variable is set but malformed (not an integer, not a JSON object).
    """
    out: dict[str, Any] = {}
    for key, names in (
        ("rank", ("RANK",)),
        ("world_size", ("WORLD_SIZE",)),
        ("local_rank", ("LOCAL_RANK",)),
        ("local_world_size", ("LOCAL_WORLD_SIZE",)),
        ("node_rank", ("NODE_RANK", "GROUP_RANK")),
        ("nodes", ("UNIJOB_NODES", "NNODES")),
        ("master_port", ("MASTER_PORT",)),
        ("restart_count", ("UNIJOB_RESTART_COUNT", "TORCHELASTIC_RESTART_COUNT")),
    ):
        v = _int(environ, *names)
        if v is not None:
            out[key] = v
    for key, name in (("master_addr", "MASTER_ADDR"), ("job_id", "UNIJOB_JOB_ID"),
                      ("job_name", "UNIJOB_JOB_NAME"), ("target", "UNIJOB_TARGET"),
                      ("checkpoint_uri", "UNIJOB_CHECKPOINT_URI"), ("output_uri", "UNIJOB_OUTPUT_URI")):
        if environ.get(name):
            out[key] = environ[name]
    if environ.get("UNIJOB_CHECKPOINT_DIR"):
        out["checkpoint_dir"] = Path(environ["UNIJOB_CHECKPOINT_DIR"])
    if environ.get("UNIJOB_OUTPUT_DIR"):
        out["output_dir"] = Path(environ["UNIJOB_OUTPUT_DIR"])
    elif _local_path(environ.get("UNIJOB_OUTPUT_URI")) is not None:
        out["output_dir"] = _local_path(environ["UNIJOB_OUTPUT_URI"])
    if environ.get("UNIJOB_MODEL_DIR"):
        out["model_dir"] = Path(environ["UNIJOB_MODEL_DIR"])
    channels = _json_obj(environ, "UNIJOB_CHANNELS")
    if channels is not None:
        out["channels"] = {str(k): str(v) for k, v in channels.items()}
    hp = _json_obj(environ, "UNIJOB_HYPERPARAMETERS")
    if hp is not None:
        out["hyperparameters"] = parse_hyperparameters(hp, strings_as_json=False)
    return out


@functools.lru_cache(maxsize=1)
def _registered_envs() -> tuple[Any, ...]:
    """Instances of every RuntimeEnv registered under ``unijob.runtime_envs`` (loaded once)."""
    import importlib

    from unijob import registry

    found = []
    for spec in registry.runtime_envs():
        module, _, attr = spec.partition(":")
        try:
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            found.append(obj())
        except Exception as e:  # noqa: BLE001 - a broken plugin must not stop training code
            warnings.warn(f"unijob.runtime: runtime env {spec} failed to load ({e.__class__.__name__}: {e}); "
                          "skipped", RuntimeWarning, stacklevel=3)
    return tuple(found)


def _from_platform(environ: Mapping[str, str], envs: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    for env in envs:
        name = getattr(env, "name", type(env).__name__)
        try:
            if not env.detect(environ):
                continue
            data = dict(env.read(environ))
        except Exception as e:  # noqa: BLE001
            warnings.warn(f"unijob.runtime: runtime env '{name}' raised {e.__class__.__name__}: {e}; skipped",
                          RuntimeWarning, stacklevel=3)
            continue
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            warnings.warn(f"unijob.runtime: runtime env '{name}' returned unknown keys {unknown}; ignored",
                          RuntimeWarning, stacklevel=3)
        data = {k: v for k, v in data.items() if k in _KEYS and v is not None}
        for k in ("output_dir", "model_dir", "checkpoint_dir"):
            if k in data:
                data[k] = Path(data[k])
        if "channels" in data:
            data["channels"] = {str(k): str(v) for k, v in dict(data["channels"]).items()}
        if "hyperparameters" in data:
            data["hyperparameters"] = parse_hyperparameters(data["hyperparameters"], strings_as_json=True)
        return str(name), data
    return "", {}


def context(environ: Optional[Mapping[str, str]] = None, *, runtime_envs: Optional[Sequence[Any]] = None) -> Context:
    """This rank's :class:`Context`.

    Also installs the preemption (SIGTERM) handler when called from the main thread with the
    process environment (see :mod:`unijob.runtime.preemption`).

    Args:
        environ: the environment to read; default ``os.environ``.
        runtime_envs: RuntimeEnv instances to try first; default those registered under the
            ``unijob.runtime_envs`` entry-point group.

    Raises:
        ValueError: a variable is malformed (``RANK=x``, ``UNIJOB_CHANNELS`` not a JSON object) or
            the ranks are inconsistent (``RANK >= WORLD_SIZE``).
    """
    if environ is None:
        environ = os.environ
        from unijob.runtime import preemption

        preemption.install()
    envs = _registered_envs() if runtime_envs is None else tuple(runtime_envs)
    platform_name, values = _from_platform(environ, envs)
    contract = from_env_contract(environ)
    merged = {**contract, **values}
    source = platform_name or ("env" if contract else "default")

    world = int(merged.get("world_size", 1))
    rank = int(merged.get("rank", 0))
    if "local_world_size" in merged:
        lws = int(merged["local_world_size"])
    elif "nodes" in merged and int(merged["nodes"]) > 0 and world % int(merged["nodes"]) == 0:
        lws = world // int(merged["nodes"])
    else:
        lws = world
    lws = max(lws, 1)
    nodes = int(merged.get("nodes", max(world // lws, 1)))
    local_rank = int(merged.get("local_rank", rank % lws))
    node_rank = int(merged.get("node_rank", rank // lws))
    if not (world >= 1 and 0 <= rank < world):
        raise ValueError(f"inconsistent ranks: RANK={rank} WORLD_SIZE={world} (need 0 <= RANK < WORLD_SIZE)")
    if not (0 <= local_rank < lws):
        raise ValueError(f"inconsistent ranks: LOCAL_RANK={local_rank} LOCAL_WORLD_SIZE={lws}")
    if not (0 <= node_rank < max(nodes, 1)):
        raise ValueError(f"inconsistent ranks: NODE_RANK={node_rank} with {nodes} node(s)")
    merged.update(world_size=world, rank=rank, local_world_size=lws, nodes=nodes,
                  local_rank=local_rank, node_rank=node_rank)
    if "master_port" in merged:
        merged["master_port"] = int(merged["master_port"])
    ctx = Context(**merged, source=source)
    if ctx.model_dir is None:
        ctx = _replace(ctx, model_dir=ctx.output_dir)
    return ctx


def _replace(ctx: Context, **changes: Any) -> Context:
    import dataclasses

    return dataclasses.replace(ctx, **changes)
