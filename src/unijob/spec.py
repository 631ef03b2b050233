"""The vendor-neutral job spec: one model for a training gang and its serving endpoint.

A spec is written as YAML (see ``examples/``) and validated by :class:`JobSpec` (pydantic v2,
``extra="forbid"`` at every level). Load files with :func:`unijob.loading.load_spec`, which adds
file:line:column to every error; ``JobSpec.model_validate`` works on plain dicts too.

Units: durations are stored in seconds (YAML may say ``90m``, ``4h``, ``1d`` or a number of
seconds); memory and disk in GiB; accelerators as ``TYPE[:COUNT]`` *per node*.

Defaults and where they come from:

- ``max_run`` 1 day: SageMaker's default ``MaxRuntimeInSeconds`` (86,400 s).
- ``spot.max_restarts`` 3: enough to ride out a few reclaims without looping on a broken job.
- ``checkpoint.keep`` 3: the last three good checkpoints, so a torn or corrupt one falls back.
- ``processes_per_node``: the accelerator count per node, else 1 (torchrun's ``--nproc-per-node
  gpu`` convention).
- endpoint ``scale_in_cooldown`` 300 s and ``scale_out_cooldown`` 60 s: the values AWS Application
  Auto Scaling documents for SageMaker target tracking.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from unijob import accelerators as _acc
from unijob.spec_fields import (  # noqa: F401  (re-exported: the public names of the spec)
    CHANNEL_NAME, DNS_LABEL, ENV_NAME, LABEL_RE, SECRET_SCHEMES, URI_SCHEMES, AcceleratorStr, Duration,
    SecretRef, Uri, _Model, parse_duration,
)
from unijob.spec_serving import Autoscaling, Batch, Endpoint, Variant  # noqa: F401  (re-exported)

# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


class Resources(_Model):
    """What each node of the gang needs, and how many nodes.

    Attributes:
        accelerator: ``TYPE[:COUNT]`` per node (``H100:8``, ``A100-80GB:8``, ``L4``); ``None`` for CPU.
            Stored in canonical form (``a100-80g:8`` becomes ``A100-80GB:8``).
        cpus: vCPUs per node, minimum; ``None`` lets the target pick.
        memory_gib: memory per node in GiB, minimum.
        disk_gib: local disk per node in GiB (SageMaker ``VolumeSizeInGB``, Vertex ``boot_disk_size_gb``).
        nodes: gang size: how many nodes start together (all-or-nothing), >= 1.
        max_nodes: upper bound for an elastic gang (Databricks autoscale); ``None`` = fixed size.
        processes_per_node: ranks per node; default the accelerator count, else 1.
        instance_type: an explicit instance type per target (``{sagemaker: ml.p4d.24xlarge}``),
            overriding the catalog's choice.
    """

    accelerator: AcceleratorStr = Field(default=None, examples=["H100:8", "A100-80GB:8", "L4", "A10G:4"])
    cpus: Optional[float] = Field(default=None, gt=0)
    memory_gib: Optional[float] = Field(default=None, gt=0)
    disk_gib: Optional[int] = Field(default=None, ge=1, le=16384)
    nodes: int = Field(default=1, ge=1, le=4096)
    max_nodes: Optional[int] = Field(default=None, ge=1, le=4096)
    processes_per_node: Optional[int] = Field(default=None, ge=1, le=256)
    instance_type: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _defaults(self) -> "Resources":
        if self.processes_per_node is None:
            self.processes_per_node = self.accelerator_count or 1
        if self.max_nodes is not None and self.max_nodes < self.nodes:
            raise PydanticCustomError(
                "max_nodes", "max_nodes ({max_nodes}) must be at least nodes ({nodes})",
                {"max_nodes": self.max_nodes, "nodes": self.nodes},
            )
        return self

    @property
    def parsed_accelerator(self) -> Optional[_acc.Accelerator]:
        return _acc.parse(self.accelerator) if self.accelerator else None

    @property
    def accelerator_type(self) -> Optional[str]:
        return self.accelerator.split(":")[0] if self.accelerator else None

    @property
    def accelerator_count(self) -> int:
        """Accelerators per node (0 for CPU)."""
        return int(self.accelerator.split(":")[1]) if self.accelerator else 0

    @property
    def world_size(self) -> int:
        """nodes x processes_per_node."""
        return self.nodes * int(self.processes_per_node or 1)


class Spot(_Model):
    """Spot (preemptible) capacity.

    Attributes:
        policy: ``on_demand``; ``spot``; or ``spot_with_fallback`` (spot first, on-demand when spot
            capacity is not there; the target's native fallback where it has one, else unijob
            resubmits on-demand from the same checkpoint).
        max_wait: total seconds to wait for spot capacity *and* run (SageMaker
            ``MaxWaitTimeInSeconds`` semantics); must be >= ``max_run``.
        max_restarts: relaunches after preemption or failure before the job is FAILED.
    """

    policy: Literal["on_demand", "spot", "spot_with_fallback"] = "on_demand"
    max_wait: Optional[Duration] = None
    max_restarts: int = Field(default=3, ge=0, le=100)

    @property
    def is_spot(self) -> bool:
        return self.policy != "on_demand"


class Checkpoint(_Model):
    """Where the job checkpoints, so a restart resumes instead of starting over.

    Attributes:
        uri: local path (relative to the spec file), ``file://``, ``s3://``, ``gs://``, ``dbfs:/`` or
            ``/Volumes/...``.
        interval: seconds between checkpoints the job intends to take (used by the cost model);
            ``None`` = let ``unijob cost`` choose by Young/Daly.
        keep: how many good checkpoints to keep.
    """

    uri: Uri
    interval: Optional[Duration] = None
    keep: int = Field(default=3, ge=1, le=1000)


class Framework(_Model):
    """The framework a ``script`` job runs on, used to pick a prebuilt training container
    (AWS Deep Learning Containers, Vertex prebuilt containers, Databricks ML runtimes).

    ``name``: ``pytorch`` (``version`` is PyTorch's, e.g. ``"2.5"``) or ``sklearn`` (the CPU-only
    scikit-learn training containers, ``version`` is scikit-learn's, e.g. ``"1.2"``; one process
    per node, no accelerator). Targets without prebuilt containers of a framework say so at plan time.
    """

    name: Literal["pytorch", "sklearn"] = "pytorch"
    version: str = Field(default="2.5", pattern=r"^\d+\.\d+(\.\d+)?$")
    python: str = Field(default="3.11", pattern=r"^3\.\d+$")


HyperValue = Union[bool, int, float, str]


class JobSpec(_Model):
    """A vendor-neutral job: a gang of ranks running one entrypoint, and optionally an endpoint.

    Exactly one entrypoint: ``image`` (+ ``command``/``args``) or ``script`` (+ ``source_dir``,
    ``requirements``). Paths are relative to the spec file and may not leave its directory.

    Cross-field rules (errors name the field): ``spot.max_wait >= max_run`` when spot is used;
    endpoint variant weights sum to 100; secrets are references, never values.

    Raises (through ``model_validate``): ``pydantic.ValidationError``; use
    :func:`unijob.loading.load_spec` to get a :class:`unijob.errors.SpecError` with file:line.
    """

    model_config = ConfigDict(
        extra="forbid",
        validate_default=True,
        defer_build=True,  # see the end of this module
        json_schema_extra={"$id": "https://unijob.dev/schemas/jobspec.schema.json",
                           "title": "unijob JobSpec"},
    )

    name: str = Field(pattern=DNS_LABEL, max_length=63, description="DNS-1123 label, <= 63 chars")
    description: Optional[str] = None
    labels: dict[Annotated[str, Field(pattern=LABEL_RE, max_length=63)],
                 Annotated[str, Field(pattern=r"^([-_a-z0-9]*)$", max_length=63)]] = Field(default_factory=dict)

    image: Optional[str] = None
    command: Optional[list[str]] = None
    args: list[str] = Field(default_factory=list)
    script: Optional[str] = None
    source_dir: Optional[str] = None
    requirements: Optional[str] = None
    framework: Framework = Field(default_factory=Framework)

    resources: Resources = Field(default_factory=Resources)
    spot: Spot = Field(default_factory=Spot)
    max_run: Duration = 86400
    expected_duration: Optional[Duration] = Field(
        default=None, description="expected wall-clock seconds of a run, for cost estimates; default max_run")
    checkpoint: Optional[Checkpoint] = None

    inputs: dict[Annotated[str, Field(pattern=CHANNEL_NAME, max_length=64)], Uri] = Field(default_factory=dict)
    output: Optional[Uri] = None
    hyperparameters: dict[str, HyperValue] = Field(default_factory=dict)
    env: dict[Annotated[str, Field(pattern=ENV_NAME)], str] = Field(default_factory=dict)
    secrets: dict[Annotated[str, Field(pattern=ENV_NAME)], SecretRef] = Field(default_factory=dict)

    endpoint: Optional[Endpoint] = None
    batch: Optional[Batch] = None
    targets: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-target options, validated by each adapter's options model")

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source_file: Optional[Path] = PrivateAttr(default=None)
    # output / checkpoint.uri / batch.output of the spec's file as written, where a pipeline step's
    # ``with`` replaced them (set by unijob.pipeline.steps.build_spec): a local run of that file wrote
    # there, so bundles leave them out too (unijob.bundle.local_outputs).
    _file_writes: tuple[str, ...] = PrivateAttr(default=())

    # ---- validators -------------------------------------------------------------------------

    @field_validator("script", "source_dir", "requirements")
    @classmethod
    def _inside_spec_dir(cls, v: Optional[str], info: ValidationInfo) -> Optional[str]:
        if v is None:
            return v
        try:
            return cls._check_path(v, info)
        except (OSError, RuntimeError) as e:  # a name too long, a symlink loop (RuntimeError before 3.13)...
            raise PydanticCustomError("path_invalid", "cannot use the path {path}: {error}",
                                      {"path": v[:200], "error": getattr(e, "strerror", None) or str(e)[:200]}) from None

    @staticmethod
    def _check_path(v: str, info: ValidationInfo) -> str:
        base = Path((info.context or {}).get("base_dir") or Path.cwd()).resolve()
        p = Path(v)
        resolved = (p if p.is_absolute() else base / p).resolve()
        if not resolved.is_relative_to(base):
            raise PydanticCustomError(
                "path_escape", "path '{path}' leaves the spec's directory {base}; keep code beside the spec",
                {"path": v, "base": str(base)},
            )
        if (info.context or {}).get("check_paths", True):
            if not resolved.exists():
                raise PydanticCustomError("path_missing", "no such file or directory: {path}", {"path": str(resolved)})
            want_dir = info.field_name == "source_dir"
            if not (resolved.is_dir() if want_dir else resolved.is_file()):
                # a named pipe or device would block or never end when the file is read or packed
                raise PydanticCustomError("path_type", "{path} is not a {kind}",
                                          {"path": str(resolved), "kind": "directory" if want_dir else "regular file"})
        return v

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> "JobSpec":
        if self.image and self.script:
            raise PydanticCustomError("entrypoint", "give either image (+ command/args) or script, not both")
        if not self.image and not self.script and self.endpoint is None and self.batch is None:
            raise PydanticCustomError(
                "entrypoint", "no entrypoint: give image (+ command/args) or script (a Python file), "
                              "an endpoint section to serve, or a batch section")
        if self.script and self.command:
            raise PydanticCustomError("entrypoint", "command goes with image; a script job uses args")
        if self.spot.is_spot and self.spot.max_wait is not None and self.spot.max_wait < self.max_run:
            raise PydanticCustomError(
                "max_wait",
                "spot.max_wait ({max_wait} s) must be at least max_run ({max_run} s): it is the time "
                "to wait for spot capacity plus the run itself",
                {"max_wait": self.spot.max_wait, "max_run": self.max_run},
            )
        base = (info.context or {}).get("base_dir")
        if base:
            self._base_dir = Path(base).resolve()
        if self.script and self.source_dir:
            try:
                self.resolve_path(self.script).relative_to(self.resolve_path(self.source_dir))
            except (ValueError, OSError, RuntimeError):
                raise PydanticCustomError(
                    "source_dir", "script {script} is not inside source_dir {source_dir}: the source directory is "
                                  "what is shipped, so the script must be in it", {"script": self.script,
                                                                                   "source_dir": self.source_dir})
        return self

    # ---- helpers ----------------------------------------------------------------------------

    @property
    def base_dir(self) -> Path:
        """The directory of the spec file; relative paths resolve against it."""
        return self._base_dir

    @property
    def source_file(self) -> Optional[Path]:
        return self._source_file

    def resolve_path(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else (self._base_dir / p).resolve()

    @property
    def script_path(self) -> Optional[Path]:
        return self.resolve_path(self.script) if self.script else None

    @property
    def source_path(self) -> Optional[Path]:
        """The directory shipped with a script job: ``source_dir``, else the script's directory."""
        if self.source_dir:
            return self.resolve_path(self.source_dir)
        return self.script_path.parent if self.script_path else None

    @property
    def script_relpath(self) -> Optional[str]:
        """The script's path relative to :attr:`source_path` (what the platform runs)."""
        if not self.script_path or not self.source_path:
            return None
        return self.script_path.relative_to(self.source_path).as_posix()

    @property
    def expected_seconds(self) -> int:
        return int(self.expected_duration or self.max_run)

    def target_options(self, target: str) -> dict[str, Any]:
        return dict(self.targets.get(target) or {})

    def spec_hash(self) -> str:
        """sha256 (hex) of the canonical JSON of the spec: equal specs hash equal."""
        data = self.model_dump(mode="json", exclude_none=True)
        return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def json_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`JobSpec` (draft 2020-12), as written to ``specs/jobspec.schema.json``."""
    schema = JobSpec.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def _spec_models() -> list[type[_Model]]:
    """Every model of the spec modules (JobSpec and its sections), subclasses included."""
    found, todo = [], [_Model]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__ in ("unijob.spec", "unijob.spec_fields", "unijob.spec_serving"):
                found.append(sub)
    return found


# The spec models are declared with defer_build and completed here, all at once: from the validators
# an earlier process built (a cache keyed by the installed versions and the source files), else
# built by pydantic now. See unijob.modelcache.
from unijob import modelcache  # noqa: E402

modelcache.install("spec", _spec_models())
