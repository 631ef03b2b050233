"""Build the exact CreateTrainingJob request for a JobSpec (pure: no network, no credentials).

API reference: "CreateTrainingJob", Amazon SageMaker API Reference
(https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTrainingJob.html, read
2026-11-21); the body is checked against botocore's own ``sagemaker`` service model in the tests.

Choices where the spec is silent (each also appears in ``plan.notes`` when it applies):

- ``TrainingJobName`` = ``spec.name`` (cut to 49 chars) + ``-`` + the first 10 hex digits of
  sha256(submission_id): unique per submission, the same for a retried one; the on-demand fallback
  adds ``-od`` (<= 63 chars, the API's limit).
- Spot with no ``spot.max_wait``: ``MaxWaitTimeInSeconds`` = 2 x ``max_run`` (as much time to wait
  for capacity and ride out interruptions as to run); SageMaker requires it to be >= ``MaxRuntimeInSeconds``.
- ``RetryStrategy.MaximumRetryAttempts`` = ``spot.max_restarts`` clamped to the API's 1..30 (omitted for 0).
- Script mode follows the SageMaker Python SDK v2 ``Framework`` conventions that the SageMaker
  training toolkit reads: hyperparameters JSON-encoded (``"train.py"`` with quotes, ``true``),
  ``sagemaker_program``, ``sagemaker_submit_directory``, ``sagemaker_region``,
  ``sagemaker_container_log_level`` (20), ``sagemaker_job_name``, and
  ``sagemaker_torch_distributed_enabled: "true"`` (and ``sagemaker_instance_type``) for several
  processes per node, as ``PyTorch(distribution={"torch_distributed": {"enabled": True}})`` sets
  them (torchrun, which the PyTorch training containers carry; sagemaker/pytorch/estimator.py
  ``_pytorch_distribution_configuration``, SDK 2.257), and ``sagemaker_mpi_num_of_processes_per_host``
  when ``processes_per_node`` is not the instance's GPU count: the PyTorch container's torchrun
  (sagemaker-training 5.1.4 ``TorchDistributedRunner``) starts that many processes per host, by
  default the GPU or Neuron core count, else 1 (a CPU instance). One process per node needs no launcher: the toolkit's
  script mode runs ``python <script>`` on every host, and the runtime takes the rank from the
  host's place in ``SM_HOSTS``.
- The runtime wheel travels in ``sourcedir.tar.gz`` (see :mod:`.sourcedir`); the source directory
  is limited to :data:`unijob.bundle.SOURCE_DIR_LIMIT` (100 MiB; SageMaker documents no limit of
  its own, but the bundle is downloaded and unpacked on every host).
- ``OutputDataConfig.S3OutputPath`` is ``output`` as written (the SDK sends ``output_path`` verbatim).
- Image jobs: hyperparameters as plain strings (``true``/``false`` for booleans).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional
from urllib.parse import urlparse

from unijob import bundle
from unijob.contract import NativeRequest, Plan, PlanResources, Upload
from unijob.errors import SpecError

from . import images, sourcedir
from .options import SageMakerOptions, resolve_region, resolve_role

API = "sagemaker:CreateTrainingJob"
CHECKPOINT_DIR = "/opt/ml/checkpoints"
CHANNEL_DIR = "/opt/ml/input/data"
MODEL_DIR = "/opt/ml/model"
DEFAULT_VOLUME_GB = 30
FALLBACK_SUFFIX = "-od"
#: The toolkit's processes per host for its runners, torch_distributed's torchrun included
#: (sagemaker-training 5.1.4 ``params.MPI_PROCESSES_PER_HOST``, read in ``runner._get_by_runner_type``).
PROCESSES_PER_HOST = "sagemaker_mpi_num_of_processes_per_host"


def job_name(spec_name: str, submission_id: str) -> str:
    """``<spec.name[:49]>-<sha256(submission_id)[:10]>`` (<= 60 chars, API pattern-safe)."""
    digest = hashlib.sha256(submission_id.encode()).hexdigest()[:10]
    return f"{spec_name[:49].rstrip('-')}-{digest}"


def _s3(uri: str, loc: tuple, what: str) -> str:
    if not uri.startswith("s3://") or not urlparse(uri).netloc:
        raise SpecError.at(loc, f"{what} must be an s3:// URI for SageMaker, got '{uri}'; copy the data to S3 "
                                "(aws s3 sync) and give s3://BUCKET/PREFIX")
    return uri


def instance(spec: Any) -> tuple[str, Optional[str], int]:
    """(instance type, canonical accelerator, accelerators per node) for the training gang.

    Raises:
        SpecError: at ``resources.accelerator`` when SageMaker has no such instance (lists the
            per-instance counts offered), or ``resources.instance_type.sagemaker`` when not ``ml.*``.
    """
    from unijob.cost import catalog

    res = spec.resources
    explicit = res.instance_type.get("sagemaker")
    if explicit:
        if not explicit.startswith("ml."):
            raise SpecError.at(("resources", "instance_type", "sagemaker"),
                               f"SageMaker instance types start with 'ml.', got '{explicit}'", "ml." + explicit)
        shape = catalog.shape("sagemaker", explicit)
        if shape:
            return explicit, shape.accelerator, shape.accelerator_count
        return explicit, res.accelerator_type, res.accelerator_count
    try:
        shape = catalog.instance_for("sagemaker", res.accelerator_type, res.accelerator_count,
                                     cpus=res.cpus, memory_gib=res.memory_gib)
    except catalog.NoOffering as e:
        suggestion = None
        if e.offered and res.accelerator_type:
            best = min(e.offered, key=lambda c: (abs(c - res.accelerator_count), -c))
            suggestion = f"{res.accelerator_type}:{best}"
        raise SpecError.at(("resources", "accelerator"), f"{e.message} (or set resources.instance_type.sagemaker)",
                           suggestion) from None
    return shape.instance_type, shape.accelerator, shape.accelerator_count


def _secret_refs(spec: Any, opts: SageMakerOptions) -> tuple[dict[str, str], list[str]]:
    refs, warnings = {}, []
    for name, ref in sorted(spec.secrets.items()):
        scheme = ref.split("://", 1)[0]
        if scheme == "env":
            raise SpecError.at(("secrets", name),
                               "env:// references resolve on the submitting machine and only the local target "
                               "takes them; store the secret in AWS Secrets Manager and use "
                               "aws-secretsmanager://NAME")
        if scheme != "aws-secretsmanager":
            raise SpecError.at(("secrets", name),
                               f"a SageMaker job cannot read {scheme}:// secrets; use aws-secretsmanager://NAME "
                               "(the execution role needs secretsmanager:GetSecretValue)")
        refs[name] = ref
    if refs and opts.enable_network_isolation:
        warnings.append("secrets with enable_network_isolation: the container cannot reach Secrets Manager, "
                        "so unijob.runtime will fail to resolve " + ", ".join(refs))
    return refs, warnings


def _hp_plain(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _sklearn_fits(spec: Any, acc_count: int) -> None:
    """The scikit-learn containers are CPU only and carry no torchrun: one process per node."""
    if acc_count:
        raise SpecError.at(("resources", "accelerator"), "the SageMaker scikit-learn training containers are CPU "
                                                         "only; drop the accelerator or use framework pytorch")
    if spec.resources.processes_per_node > 1:
        raise SpecError.at(("resources", "processes_per_node"),
                           "the SageMaker scikit-learn containers have no torchrun to start several processes per "
                           "node; use 1 (one process per node) or framework pytorch")


def build(spec: Any, submission_id: str, opts: SageMakerOptions) -> Plan:
    """The :class:`Plan` for ``spec`` on SageMaker: one CreateTrainingJob (+ a fallback one for
    ``spot_with_fallback``) and the ``sourcedir.tar.gz`` upload of a script job.

    Raises:
        SpecError: no role, no region, a non-S3 input/output/checkpoint, an accelerator SageMaker
            does not offer, a secret SageMaker cannot read, args with a script job.
    """
    role = resolve_role(opts)
    region = resolve_region(opts)
    name = job_name(spec.name, submission_id)
    notes: list[str] = []
    warnings: list[str] = []

    if spec.output is None and not opts.code_bucket:
        raise SpecError.at(("output",), "required for SageMaker (or targets.sagemaker.code_bucket): an s3:// URI "
                           "for the model artifacts (OutputDataConfig.S3OutputPath)")
    # Without an output, artifacts go beside the code: s3://<code_bucket>/unijob/output (noted in the plan).
    output = (_s3(spec.output, ("output",), "output") if spec.output
              else f"s3://{opts.code_bucket}/unijob/output").rstrip("/")
    if spec.output is None:
        notes.append(f"no output in the spec: model artifacts go to {output}")
    itype, acc, acc_count = instance(spec)
    nodes = spec.resources.nodes

    channels = {}
    input_cfg = []
    for ch, uri in sorted(spec.inputs.items()):
        _s3(uri, ("inputs", ch), f"input channel '{ch}'")
        input_cfg.append({
            "ChannelName": ch,
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                            "S3DataDistributionType": "FullyReplicated"}},
        })
        channels[ch] = f"{CHANNEL_DIR}/{ch}"

    checkpoint_uri = None
    if spec.checkpoint is not None:
        checkpoint_uri = _s3(spec.checkpoint.uri, ("checkpoint", "uri"), "checkpoint.uri").rstrip("/")

    refs, sw = _secret_refs(spec, opts)
    warnings += sw
    env: dict[str, str] = dict(spec.env)
    env.update({
        "UNIJOB_JOB_NAME": name,
        "UNIJOB_TARGET": "sagemaker",
        "UNIJOB_OUTPUT_URI": output,
        "UNIJOB_CHANNELS": json.dumps(channels, sort_keys=True, separators=(",", ":")),
        "UNIJOB_HYPERPARAMETERS": json.dumps(spec.hyperparameters, sort_keys=True, separators=(",", ":")),
    })
    if checkpoint_uri:
        env["UNIJOB_CHECKPOINT_URI"] = checkpoint_uri
        env["UNIJOB_CHECKPOINT_DIR"] = CHECKPOINT_DIR
    if refs:
        env["UNIJOB_SECRET_REFS"] = json.dumps(refs, sort_keys=True, separators=(",", ":"))
    for k, v in env.items():
        if len(v) > 512:
            loc = ("env", k) if k in spec.env else ("hyperparameters",) if k == "UNIJOB_HYPERPARAMETERS" else ("inputs",)
            raise SpecError.at(loc, f"environment value {k} is {len(v)} characters; SageMaker allows 512")

    algo: dict[str, Any] = {"TrainingInputMode": opts.input_mode}
    uploads: list[Upload] = []
    requirements: Optional[str] = None
    gang = spec.resources.world_size > 1
    if spec.image:
        algo["TrainingImage"] = spec.image
        if spec.command:
            algo["ContainerEntrypoint"] = list(spec.command)
        if spec.args:
            algo["ContainerArguments"] = list(spec.args)
        hps = {k: _hp_plain(v) for k, v in spec.hyperparameters.items()}
    else:
        if spec.args:
            raise SpecError.at(("args",), "SageMaker script mode passes hyperparameters to the script as "
                                          "--name value arguments; move args into hyperparameters")
        if spec.framework.name == "sklearn":
            _sklearn_fits(spec, acc_count)
            algo["TrainingImage"] = images.sklearn_training_image(spec.framework.version, region)
        else:
            algo["TrainingImage"] = images.pytorch_training_image(spec.framework.version, spec.framework.python,
                                                                  region, gpu=bool(acc_count))
        code_bucket = opts.code_bucket or urlparse(output).netloc
        src = spec.source_path
        req = spec.resolve_path(spec.requirements) if spec.requirements else None
        skip = bundle.local_outputs(spec, src)
        try:
            bundle.check_source_size(src, exclude=skip)
            wheel = bundle.runtime_wheel(sourcedir.WHEEL_TARGETS)
            blob = sourcedir.pack(src, req, wheel, exclude=skip)
        except FileNotFoundError:
            raise SpecError.at(("source_dir",), f"no such directory: {src}") from None
        digest = sourcedir.sha256(blob)
        prefix = opts.code_prefix.strip("/")
        dest = f"s3://{code_bucket}/{prefix + '/' if prefix else ''}{digest}/sourcedir.tar.gz"
        uploads.append(Upload(source=str(src), destination=dest, sha256=digest, kind="sourcedir", exclude=list(skip)))
        # Listed for review; it travels inside sourcedir.tar.gz (not uploaded on its own).
        uploads.append(Upload(source=wheel.filename, destination=f"{dest}#{wheel.filename}", sha256=wheel.sha256,
                              kind="runtime-wheel"))
        notes.append(f"the runtime ({wheel.filename}) is packed in sourcedir.tar.gz and listed last in its "
                     "requirements.txt: the SageMaker training toolkit installs it from the file, with no index")
        if req is not None:
            requirements = str(req)
        extra_hp: dict[str, Any] = {
            "sagemaker_program": spec.script_relpath,
            "sagemaker_submit_directory": dest,
            "sagemaker_region": region,
            "sagemaker_container_log_level": 20,
            "sagemaker_job_name": name,
        }
        ppn = spec.resources.processes_per_node
        if ppn > 1:
            extra_hp["sagemaker_torch_distributed_enabled"] = True
            extra_hp["sagemaker_instance_type"] = itype
            if ppn != acc_count:
                # torchrun's --nproc_per_node is the toolkit's processes per host: this hyperparameter,
                # else the instance's GPU (or Neuron core) count, else 1, so a CPU gang ran 1 per node
                extra_hp[PROCESSES_PER_HOST] = ppn
            notes.append(f"torch_distributed: the SageMaker PyTorch toolkit runs torchrun on {nodes} node(s) x "
                         f"{ppn} process(es)")
        elif nodes > 1:
            notes.append(f"one process per node: the SageMaker training toolkit runs `python {spec.script_relpath}` "
                         f"on each of the {nodes} hosts (rank = the host's place in SM_HOSTS)")
        hps = {k: json.dumps(v) for k, v in {**spec.hyperparameters, **extra_hp}.items()}
    if spec.requirements and spec.image:
        notes.append("requirements is ignored for image jobs: bake the packages into the image")

    volume = opts.volume_size_gb or spec.resources.disk_gib or DEFAULT_VOLUME_GB
    resource_cfg: dict[str, Any] = {"InstanceType": itype, "InstanceCount": nodes, "VolumeSizeInGB": volume}
    if opts.keep_alive_period is not None:
        resource_cfg["KeepAlivePeriodInSeconds"] = opts.keep_alive_period
        notes.append(f"warm pool: instances are kept {opts.keep_alive_period} s after the job for reuse")

    stopping: dict[str, int] = {"MaxRuntimeInSeconds": spec.max_run}
    spot = spec.spot.is_spot
    if spot:
        if spec.spot.max_wait is None:
            stopping["MaxWaitTimeInSeconds"] = 2 * spec.max_run
            notes.append(f"spot.max_wait not set: MaxWaitTimeInSeconds = 2 x max_run = {2 * spec.max_run} s")
        else:
            stopping["MaxWaitTimeInSeconds"] = spec.spot.max_wait
        if checkpoint_uri is None:
            warnings.append(
                f"spot without checkpoint.uri: each spot interruption restarts training from the beginning, "
                f"losing up to max_run ({spec.max_run} s) x {nodes} x {itype} of paid work per preemption; "
                "set checkpoint.uri to an s3:// prefix")

    body: dict[str, Any] = {
        "TrainingJobName": name,
        "AlgorithmSpecification": algo,
        "RoleArn": role,
        "HyperParameters": hps,
        "OutputDataConfig": {"S3OutputPath": spec.output or output},
        "ResourceConfig": resource_cfg,
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": spot,
        "Environment": env,
    }
    if not hps:
        del body["HyperParameters"]
    if input_cfg:
        body["InputDataConfig"] = input_cfg
    if opts.kms_key_id:
        body["OutputDataConfig"]["KmsKeyId"] = opts.kms_key_id
    if checkpoint_uri:
        body["CheckpointConfig"] = {"S3Uri": checkpoint_uri, "LocalPath": CHECKPOINT_DIR}
    if spec.spot.max_restarts > 0:
        attempts = min(spec.spot.max_restarts, 30)
        body["RetryStrategy"] = {"MaximumRetryAttempts": attempts}
        if attempts != spec.spot.max_restarts:
            notes.append(f"spot.max_restarts {spec.spot.max_restarts} clamped to SageMaker's maximum of 30 retries")
    if spec.labels:
        body["Tags"] = [{"Key": k, "Value": v} for k, v in sorted(spec.labels.items())]
    if bool(opts.subnets) != bool(opts.security_group_ids):
        missing = "security_group_ids" if opts.subnets else "subnets"
        raise SpecError.at(("targets", "sagemaker", missing), "VpcConfig needs both subnets and security_group_ids")
    if opts.subnets:
        body["VpcConfig"] = {"Subnets": list(opts.subnets), "SecurityGroupIds": list(opts.security_group_ids)}
    if opts.enable_network_isolation:
        body["EnableNetworkIsolation"] = True
    if opts.inter_container_encryption:
        body["EnableInterContainerTrafficEncryption"] = True

    requests = [NativeRequest(api=API, body=body, when="submit",
                              note=f"{nodes} x {itype}, {'managed spot' if spot else 'on-demand'}")]
    extra: dict[str, Any] = {"region": region, "retry_mode": opts.retry_mode, "max_attempts": opts.max_attempts,
                             "poll_interval": opts.poll_interval}
    if requirements:
        extra["requirements"] = requirements
    if spec.spot.policy == "spot_with_fallback":
        fb = json.loads(json.dumps(body))
        fb_name = name + FALLBACK_SUFFIX
        fb["TrainingJobName"] = fb_name
        fb["EnableManagedSpotTraining"] = False
        fb["StoppingCondition"] = {"MaxRuntimeInSeconds": spec.max_run}
        fb["Environment"]["UNIJOB_JOB_NAME"] = fb_name
        if "sagemaker_job_name" in fb.get("HyperParameters", {}):
            fb["HyperParameters"]["sagemaker_job_name"] = json.dumps(fb_name)
        requests.append(NativeRequest(api=API, body=fb, when="fallback",
                                      note="on-demand resubmission if the spot attempt fails for capacity or "
                                           "MaxWaitTime before training starts"))
        notes.append(
            "spot_with_fallback: SageMaker has no native fallback; if the spot job fails for capacity or runs out "
            f"of MaxWaitTime before training starts, `unijob status` submits {fb_name} on-demand"
            + (f", resuming from {checkpoint_uri}" if checkpoint_uri else " (no checkpoint: it starts over)"))
        extra["fallback_name"] = fb_name

    hours = spec.expected_seconds / 3600.0
    return Plan(
        target="sagemaker", kind="job", name=name, submission_id=submission_id, requests=requests,
        uploads=uploads,
        resources=PlanResources(service="sagemaker-training", region=region, instance_type=itype,
                                instance_count=nodes, accelerator=acc, accelerators_per_node=acc_count,
                                hours=hours, spot=spec.spot.policy),
        notes=notes, warnings=warnings, extra=extra,
    )
