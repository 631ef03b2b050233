"""The adapter contract: what every backend (local, SageMaker, Vertex, Databricks, Kubernetes)
implements, and the plain-data types that cross it.

The life of a job::

    adapter = registry.get("sagemaker")          # imports the adapter, not its SDK
    plan = adapter.plan(spec, submission_id)     # pure: the exact native request(s), no network
    handle = adapter.submit(plan)                # sends the plan; idempotent for one submission_id
    adapter.status(handle); adapter.logs(handle, follow=True); adapter.cancel(handle)

and of an endpoint::

    eplan = adapter.plan_endpoint(spec)          # pure
    ehandle = adapter.deploy(eplan)
    adapter.set_traffic(ehandle, {"blue": 90, "green": 10})
    adapter.undeploy(ehandle)                    # leaves nothing behind

Rules every adapter keeps (checked by :mod:`unijob.testing.conformance`):

- Importing the adapter module imports no cloud SDK; the SDK is imported inside methods, and a
  missing SDK raises :class:`~unijob.errors.NotReady` with the exact ``pip install`` line.
- ``plan()`` touches no network and no credentials. It may build the request with the vendor's own
  types to validate it (Vertex protos, Databricks dataclasses), but returns plain JSON data.
- ``plan()`` raises :class:`~unijob.errors.SpecError` naming the field path for input the target
  cannot take; nothing has been sent then.
- ``submit()`` only sends what the plan holds (plus uploads the plan lists). Submitting the same
  plan twice (same ``submission_id``) never starts a second job.
- Secret *values* never appear in a plan, a handle, a status, a log line or an error.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Iterator, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field

from unijob.errors import Readiness
from unijob.models.types import ModelRegistry
from unijob.runtime_env import RuntimeEnv  # noqa: F401  (part of the contract; stdlib-only module)


class JobState(str, enum.Enum):
    """The states every target maps its native states onto.

    ``QUEUED``: accepted, waiting for capacity or gang admission. ``STARTING``: capacity granted,
    provisioning, pulling images, downloading data. ``RUNNING``: user code runs.
    ``RESTARTING``: preempted or failed, being relaunched (from the latest checkpoint).
    ``STOPPING``: a cancel is in progress. ``SUCCEEDED``/``FAILED``/``CANCELLED``: final.
    ``SUBMITTING``: only in local records, between "record written" and "platform answered".
    """

    SUBMITTING = "SUBMITTING"
    QUEUED = "QUEUED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    RESTARTING = "RESTARTING"
    STOPPING = "STOPPING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class NativeRequest(BaseModel):
    """One request exactly as the platform's API receives it.

    Attributes:
        api: what is called, e.g. ``"sagemaker:CreateTrainingJob"``,
            ``"POST /api/2.2/jobs/runs/submit"``, ``"batch/v1 Job"``.
        body: the request body (JSON-ready: str, int, float, bool, None, list, dict).
        when: ``"submit"`` (sent by submit), ``"fallback"`` (sent only if the spot attempt fails
            for capacity: the on-demand resubmission), ``"deploy"``, ``"after-deploy"``...
        note: one line for people reading ``unijob plan``.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)  # completed by modelcache at the end

    api: str
    body: dict[str, Any]
    when: str = "submit"
    note: Optional[str] = None


class Upload(BaseModel):
    """A local file or directory that ``submit`` uploads before sending the requests.

    Attributes:
        source: local path (a directory is packed as a gzip tarball, deterministic: sorted
            entries, zeroed mtimes, so the content hash is stable).
        destination: the remote URI, usually content-addressed (``.../<sha256>/sourcedir.tar.gz``).
        sha256: hex digest of what will be uploaded.
        kind: ``"file"``, ``"directory"``, ``"sourcedir"``, ``"runtime-wheel"``... (per target).
        exclude: for a directory, the POSIX paths relative to it that the upload leaves out: what a
            local run of the spec writes there (:func:`unijob.bundle.local_outputs`), so ``submit``
            packs the same bytes as the plan whether or not a local run happened in between.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)  # completed by modelcache at the end

    source: str
    destination: str
    sha256: Optional[str] = None
    kind: str = "file"
    exclude: list[str] = Field(default_factory=list)


class PlanResources(BaseModel):
    """What the cost estimator needs from a plan.

    Attributes:
        service: the catalog service priced (``"sagemaker-training"``, ``"vertex-training"``,
            ``"databricks-jobs"``, ``"ec2"``, ``"gce"``, ``"local"``...).
        region: cloud region (or ``None`` for local/unknown).
        instance_type: instance/machine/node type per node.
        instance_count: nodes.
        accelerator: canonical accelerator type or ``None``.
        accelerators_per_node: accelerators per node (0 for CPU).
        hours: expected wall-clock hours of one run (``expected_duration`` or ``max_run``).
        spot: the spot policy.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)  # completed by modelcache at the end

    service: str
    region: Optional[str] = None
    instance_type: Optional[str] = None
    instance_count: int = 1
    accelerator: Optional[str] = None
    accelerators_per_node: int = 0
    hours: float = 0.0
    spot: str = "on_demand"


class Plan(BaseModel):
    """The exact native requests for one submission (or one endpoint deployment), as data.

    A plan is pure data: printable (``unijob plan -o json|yaml``), diffable, snapshot-testable,
    priceable (:attr:`resources`) and checkable with the vendor's own types. ``submit()`` sends
    nothing that is not in it.

    Attributes:
        target: adapter name.
        kind: ``"job"`` or ``"endpoint"``.
        name: the native name (TrainingJobName, CustomJob display name, run_name, Job name).
        submission_id: the idempotency key this plan was built for.
        requests: the requests, in the order submit sends them.
        uploads: files submit uploads first.
        resources: for the cost estimator.
        notes: lines for the reader (fallback behaviour, defaults chosen).
        warnings: lines the CLI prints on stderr (e.g. spot without a checkpoint).
        extra: adapter data that submit needs and that is not a request (region, project...).
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)  # completed by modelcache at the end

    target: str
    kind: str = "job"
    name: str
    submission_id: str
    requests: list[NativeRequest]
    uploads: list[Upload] = []
    resources: PlanResources
    notes: list[str] = []
    warnings: list[str] = []
    extra: dict[str, Any] = {}

    def request(self, api_suffix: str, when: str | None = None) -> NativeRequest:
        """The first request whose ``api`` ends with ``api_suffix`` (and ``when`` matches, if given).

        Raises:
            KeyError: none matches.
        """
        for r in self.requests:
            if r.api.endswith(api_suffix) and (when is None or r.when == when):
                return r
        raise KeyError(api_suffix)


@dataclass
class JobHandle:
    """How to find a submitted job again, from any shell. JSON-serializable; stored in job records.

    Attributes:
        target: adapter name.
        native_id: the platform's id (TrainingJobName, CustomJob resource name, run_id, Job name,
            local job directory).
        name: the native name.
        submission_id: the idempotency key it was submitted with.
        extra: adapter data (region, namespace, fallback state...), never secrets.
    """

    target: str
    native_id: str
    name: str = ""
    submission_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "JobHandle":
        return cls(**{k: d[k] for k in ("target", "native_id", "name", "submission_id", "extra") if k in d})


@dataclass
class JobStatus:
    """A job's state now.

    Attributes:
        state: the common state.
        native_state: the platform's own words (e.g. ``"InProgress/Interrupted"``, ``"RUNNING"``).
        message: failure reason, preemption notice, progress (``"running 3/4 ranks"``).
        restarts: relaunches so far (preemptions and retries).
        exit_code: for a finished job whose platform reports one.
        started_at / ended_at: POSIX seconds, where known.
        handle_update: fields to merge into the handle's ``extra`` (e.g. the fallback job's name
            once an on-demand fallback was submitted).
    """

    state: JobState
    native_state: str = ""
    message: str = ""
    restarts: int = 0
    exit_code: Optional[int] = None
    started_at: Optional[float] = None
    ended_at: Optional[float] = None
    handle_update: dict[str, Any] = field(default_factory=dict)


@dataclass
class EndpointHandle:
    """How to find a deployed endpoint again. JSON-serializable; stored in records."""

    target: str
    name: str
    native_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EndpointHandle":
        return cls(**{k: d[k] for k in ("target", "name", "native_id", "extra") if k in d})


@dataclass
class EndpointStatus:
    """An endpoint's state: ``state`` in CREATING/UPDATING/IN_SERVICE/FAILED/DELETING,
    the traffic split in percent per variant, replicas per variant, and the invoke URL if any."""

    state: str
    traffic: dict[str, int] = field(default_factory=dict)
    replicas: dict[str, int] = field(default_factory=dict)
    url: Optional[str] = None
    message: str = ""


@dataclass
class InvokeResult:
    """One endpoint invocation's answer.

    Attributes:
        body: the response's JSON value (``{"predictions": [...]}`` for the envelope).
        variant: the variant that answered, where the target reports it (SageMaker's
            ``X-Amzn-Invoked-Production-Variant``, the local router's ``X-Unijob-Variant``,
            Vertex's ``deployedModelId`` mapped back to the variant name); else None.
        latency_seconds: wall time of the call as seen by the client, in seconds.
    """

    body: Any
    variant: Optional[str] = None
    latency_seconds: float = 0.0

    @property
    def predictions(self) -> Any:
        """``body["predictions"]`` for the envelope (Vertex's ``{"predictions": [...]}``), else the body."""
        if isinstance(self.body, dict) and "predictions" in self.body:
            return self.body["predictions"]
        return self.body


def encode_payload(payload: Any) -> bytes:
    """``payload`` as compact UTF-8 JSON, the body every target's ``invoke`` sends.

    Raises:
        UsageError: not a JSON value: NaN or Infinity (JSON has no such numbers), sets, bytes,
            other objects.
    """
    import json

    try:
        return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as e:
        from unijob.errors import UsageError

        raise UsageError(f"the payload is not JSON: it is not a JSON value ({e})") from None


class Adapter(ModelRegistry, abc.ABC):
    """One backend. Subclasses set the class attributes and implement the methods.

    Class attributes:
        name: the entry-point name and ``--target`` value.
        options_model: pydantic model of the ``targets.<name>`` block (``extra="forbid"``).
        unsupported: feature -> the reason this target does not offer it, e.g.
            ``{"endpoint.min_replicas=0": "SageMaker real-time endpoints cannot scale to zero ..."}``.
        install_hint: the exact command that installs the adapter and its SDK.
        runtime_env: the :class:`RuntimeEnv` for jobs on this platform, or ``None``.

    The optional model-registry methods (``register_model``, ``list_model_versions``,
    ``set_model_approval``, ``set_model_alias``...) come from
    :class:`unijob.models.types.ModelRegistry`; a target without a registry says why in
    ``unsupported["registry"]``.
    """

    name: ClassVar[str]
    options_model: ClassVar[type[BaseModel]]
    unsupported: ClassVar[Mapping[str, str]] = {}
    install_hint: ClassVar[str] = ""
    runtime_env: ClassVar[Optional[type[RuntimeEnv]]] = None

    # ---- readiness --------------------------------------------------------------------------

    @abc.abstractmethod
    def check(self, spec: Any = None) -> Readiness:
        """Can this target be used from here? Never raises; one line per problem; no secrets.

        Args:
            spec: the JobSpec about to be submitted, if any: its ``targets.<name>`` block may
                supply what the environment lacks (a host, a project, a role, a kube context).
        """

    # ---- training jobs ----------------------------------------------------------------------

    @abc.abstractmethod
    def plan(self, spec: Any, submission_id: str) -> Plan:
        """The exact native request(s) for ``spec``. Pure: no network, no credentials.

        Args:
            spec: a validated :class:`unijob.spec.JobSpec`.
            submission_id: the idempotency key; native names derive from it so that a retried
                submission maps to the same job.

        Raises:
            SpecError: the spec or its ``targets.<name>`` block asks what this target cannot do.
        """

    @abc.abstractmethod
    def submit(self, plan: Plan) -> JobHandle:
        """Upload what the plan lists and send its requests. Idempotent per ``submission_id``.

        Raises:
            NotReady: SDK or credentials missing. TargetError: the platform refused.
        """

    @abc.abstractmethod
    def status(self, handle: JobHandle) -> JobStatus:
        """The job's state now. Raises NotFound, TargetError."""

    @abc.abstractmethod
    def logs(self, handle: JobHandle, *, follow: bool = False) -> Iterator[str]:
        """Log lines of every rank/host, each prefixed with where it came from (``[rank 0] ...``,
        ``[algo-1] ...``); with ``follow`` keeps yielding until the job is final."""

    @abc.abstractmethod
    def cancel(self, handle: JobHandle) -> None:
        """Stop the job (the whole gang). Cancelling a finished job is not an error."""

    def job_metrics(self, handle: JobHandle) -> dict[str, Any]:
        """The metrics a finished job reported with ``unijob.runtime.log_metrics`` (name -> value),
        for pipeline conditions. Default: the ``[unijob.metrics]`` lines rank 0 printed, read back
        through :meth:`logs` (so every target whose logs can be read has them); ``{}`` when none."""
        from unijob.runtime.metrics import metrics_from_lines

        return metrics_from_lines(self.logs(handle))

    def output_location(self, handle: JobHandle) -> Optional[str]:
        """Where the job's outputs are (a URI or local directory), or None where unknown."""
        return None

    def model_artifact(self, handle: JobHandle) -> str:
        """Where the finished job ``handle`` wrote its model, as the endpoints of this target take it
        (a URI, or a local directory), for endpoint models that name a job (``job:<name-or-id>``).

        Called only for a job whose state is SUCCEEDED. Optional: the default says this target
        cannot locate models.

        Raises:
            UsageError: the job wrote no model (say where it was looked for), or this target cannot
                say where a job's model is.
        """
        from unijob.errors import UsageError

        raise UsageError(f"target '{self.name}' cannot say where a job's model is; give the endpoint's "
                         "model as a URI instead of job:<name-or-id>")

    # ---- batch prediction (optional) --------------------------------------------------------

    def plan_batch(self, spec: Any, submission_id: str) -> Plan:
        """The exact native request(s) that run ``spec.batch`` (kind ``"batch"``); pure. ``submit``,
        ``status``, ``logs`` and ``cancel`` then work on it as on a training job.

        Raises:
            SpecError: no batch section, or something this target cannot run.
        """
        from unijob.errors import SpecError

        raise SpecError.at(("batch",), f"target '{self.name}' does not run batch prediction"
                           + (f": {self.unsupported['batch']}" if "batch" in self.unsupported else ""))

    # ---- endpoints (optional) ---------------------------------------------------------------

    def plan_endpoint(self, spec: Any) -> Plan:
        """The exact native requests that deploy ``spec.endpoint``. Pure.

        Raises:
            SpecError: no endpoint section, or something this target cannot serve.
        """
        from unijob.errors import SpecError

        raise SpecError.at(("endpoint",), f"target '{self.name}' does not serve endpoints")

    def deploy(self, plan: Plan) -> EndpointHandle:
        raise NotImplementedError(f"target '{self.name}' does not serve endpoints")

    def endpoint_status(self, handle: EndpointHandle) -> EndpointStatus:
        raise NotImplementedError(f"target '{self.name}' does not serve endpoints")

    def set_traffic(self, handle: EndpointHandle, split: Mapping[str, int]) -> None:
        """Change the traffic split (percent per variant name, summing to 100)."""
        raise NotImplementedError(f"target '{self.name}' does not serve endpoints")

    def undeploy(self, handle: EndpointHandle) -> None:
        """Delete everything ``deploy`` created, in reverse order."""
        raise NotImplementedError(f"target '{self.name}' does not serve endpoints")

    def invoke(self, handle: EndpointHandle, payload: Any, *, variant: Optional[str] = None,
               timeout: float = 60.0) -> InvokeResult:
        """Send one JSON ``payload`` (normally ``{"instances": [...]}``) to the endpoint.

        ``variant`` pins the request to one variant (SageMaker's ``TargetVariant``); ``timeout``
        in seconds.

        Raises:
            TargetError: the endpoint answered an error (its status and message are in the error).
            NotFound: no such endpoint.
        """
        raise NotImplementedError(f"target '{self.name}' cannot invoke endpoints")

    # ---- helpers for subclasses -------------------------------------------------------------

    def options(self, spec: Any) -> BaseModel:
        """The validated ``targets.<name>`` block of ``spec`` (defaults when absent).

        Raises:
            SpecError: the block does not validate (field path under ``targets.<name>``).
        """
        from pydantic import ValidationError

        from unijob.errors import SpecError
        from unijob.loading import issues_from_validation

        try:
            return self.options_model.model_validate(spec.target_options(self.name))
        except ValidationError as e:
            raise SpecError(issues_from_validation(e, prefix=("targets", self.name), model=self.options_model)) from None


def validate_split(split: Mapping[str, int], variants: list[str]) -> dict[str, int]:
    """Check a traffic split: known variant names, integer weights 0-100, sum 100.

    Raises:
        UsageError: with the reason.
    """
    from unijob.errors import UsageError

    unknown = [k for k in split if k not in variants]
    if unknown:
        raise UsageError(f"unknown variant(s) {', '.join(unknown)}; the endpoint has {', '.join(variants)}")
    if any((not isinstance(v, int)) or v < 0 or v > 100 for v in split.values()):
        raise UsageError("traffic weights are whole percentages from 0 to 100")
    full = {v: int(split.get(v, 0)) for v in variants}
    if sum(full.values()) != 100:
        raise UsageError(f"traffic weights must sum to 100, got {sum(full.values())}")
    return full


# The plan models are completed from the validators an earlier process built (keyed by the
# installed versions and the source files), else built by pydantic now: see unijob.modelcache.
from unijob import modelcache  # noqa: E402

modelcache.install_module(__name__)
