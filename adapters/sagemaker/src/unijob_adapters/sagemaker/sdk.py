"""Interop with the SageMaker Python SDK: a spec as an SDK training object, and an SDK estimator as a spec.

- :func:`to_estimator` (SDK 2.x): a ``sagemaker.pytorch.PyTorch`` for a script job, a
  ``sagemaker.estimator.Estimator`` for an image job; ``estimator.fit(dict(spec.inputs))`` then sends
  the CreateTrainingJob that unijob's plan sends, apart from what the SDK adds or names itself
  (``tests/test_sagemaker_vendor_sdk.py`` lists each such field with the reason).
- :func:`to_model_trainer` (SDK 3.x): a ``sagemaker.train.ModelTrainer`` for the same job;
  ``trainer.train(input_data_config=...)`` runs it.
- :func:`from_estimator` (SDK 2.x): an existing ``PyTorch`` or ``Estimator`` (and the channels given
  to its ``fit``) as a :class:`unijob.spec.JobSpec` whose SageMaker plan sends the same
  CreateTrainingJob on every field both set. Settings unijob cannot express are a
  :class:`~unijob.errors.SpecError` naming the argument, never dropped.

Both directions go through :func:`unijob_adapters.sagemaker.plan.build`, so the SDK objects carry
exactly the plan's choices (the pinned Deep Learning Container image, the ``UNIJOB_*`` environment of
the runtime contract, the spot settings). The SDK is imported inside each function: this module
imports nothing heavy, and a missing SDK is :class:`~unijob.errors.NotReady` with the pip line.
SDK 2.x and 3.x cannot be installed together (3.x removed ``sagemaker.estimator`` and
``sagemaker.pytorch``; https://github.com/aws/sagemaker-python-sdk/blob/master/migration.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlparse

from unijob.errors import NotReady, SpecError

#: The pip lines for each SDK generation.
PIP_V2 = "pip install 'unijob-sagemaker[sdk]'   (the SageMaker Python SDK 2.x: sagemaker>=2.257,<3)"
PIP_V3 = "pip install 'sagemaker>=3,<4'   (the SageMaker Python SDK 3.x; it cannot share a venv with 2.x)"

#: The SDK 2.x defaults from_estimator accepts without a spec field (sagemaker/estimator.py, 2.257).
_SDK_VOLUME_GB = 30
_SDK_MAX_RUN = 24 * 60 * 60


def _sdk_version() -> Optional[str]:
    from importlib import metadata

    try:
        return metadata.version("sagemaker")
    except metadata.PackageNotFoundError:
        return None


def _v2() -> Any:
    """The ``sagemaker`` module, 2.x.

    Raises:
        NotReady: the SDK is missing, or it is 3.x (which has no Estimator).
    """
    version = _sdk_version()
    if version is None:
        raise NotReady("the SageMaker Python SDK is not installed", hint=PIP_V2)
    if not version.startswith("2."):
        raise NotReady(f"Estimators need the SageMaker Python SDK 2.x; sagemaker {version} is installed "
                       "(3.x has ModelTrainer: use to_model_trainer)", hint=PIP_V2)
    import sagemaker
    import sagemaker.estimator
    import sagemaker.pytorch

    return sagemaker


def _plan_body(spec: Any, submission_id: str) -> tuple[Any, dict[str, Any]]:
    from .adapter import SageMakerAdapter

    if spec.spot.policy == "spot_with_fallback":
        raise SpecError.at(("spot", "policy"), "an SDK estimator has no on-demand fallback (unijob resubmits it "
                                               "itself); use policy 'spot' here, or submit with unijob",
                           "spot")
    plan = SageMakerAdapter().plan(spec, submission_id)
    return plan, plan.requests[0].body


def _upload_code(plan: Any) -> Optional[str]:
    """Upload the plan's ``sourcedir.tar.gz`` (source dir, requirements.txt, unijob's runtime wheel) as
    ``unijob submit`` does, content-addressed (skipped when the key exists); its S3 URI, or ``None``."""
    from . import jobs

    uploads = [u for u in plan.uploads if u.kind == "sourcedir"]
    if not uploads:
        return None
    jobs.upload(plan)
    return uploads[0].destination


def _common_kwargs(body: dict[str, Any]) -> dict[str, Any]:
    """Estimator keyword arguments shared by SDK 2.x ``Estimator`` and ``PyTorch``, from a plan body."""
    res, stop = body["ResourceConfig"], body["StoppingCondition"]
    env = {k: v for k, v in body.get("Environment", {}).items() if k != "UNIJOB_JOB_NAME"}
    kw: dict[str, Any] = {
        "role": body["RoleArn"], "instance_type": res["InstanceType"], "instance_count": res["InstanceCount"],
        "volume_size": res["VolumeSizeInGB"], "max_run": stop["MaxRuntimeInSeconds"],
        "input_mode": body["AlgorithmSpecification"]["TrainingInputMode"],
        "output_path": body["OutputDataConfig"]["S3OutputPath"],
        "use_spot_instances": body["EnableManagedSpotTraining"], "environment": env,
        "image_uri": body["AlgorithmSpecification"]["TrainingImage"],
    }
    optional = {
        "keep_alive_period_in_seconds": res.get("KeepAlivePeriodInSeconds"),
        "max_wait": stop.get("MaxWaitTimeInSeconds"),
        "output_kms_key": body["OutputDataConfig"].get("KmsKeyId"),
        "checkpoint_s3_uri": body.get("CheckpointConfig", {}).get("S3Uri"),
        "checkpoint_local_path": body.get("CheckpointConfig", {}).get("LocalPath"),
        "max_retry_attempts": body.get("RetryStrategy", {}).get("MaximumRetryAttempts"),
        "tags": body.get("Tags"),
        "subnets": body.get("VpcConfig", {}).get("Subnets"),
        "security_group_ids": body.get("VpcConfig", {}).get("SecurityGroupIds"),
        "encrypt_inter_container_traffic": body.get("EnableInterContainerTrafficEncryption"),
        "enable_network_isolation": body.get("EnableNetworkIsolation"),
    }
    kw.update({k: v for k, v in optional.items() if v is not None})
    return kw


def to_estimator(spec: Any, *, sagemaker_session: Any = None, submission_id: str = "sdk") -> Any:
    """A SageMaker Python SDK 2.x estimator configured as unijob's plan for ``spec``.

    A script job gives ``sagemaker.pytorch.PyTorch`` (``entry_point``/``source_dir``, the DLC image the
    plan pins, ``distribution={"torch_distributed": {"enabled": True}}`` for a gang); an image job
    gives ``sagemaker.estimator.Estimator`` (``container_entry_point``/``container_arguments``).
    Train it with ``estimator.fit(dict(spec.inputs))``: the SDK names the job (``base_job_name`` =
    ``spec.name``); ``unijob.runtime`` then reads the job name from SageMaker's ``TRAINING_JOB_NAME``.
    A script job's code bundle (the source dir, its requirements and unijob's runtime wheel, as
    ``unijob submit`` packs it) is uploaded here, to the plan's content-addressed S3 key, and given to
    the SDK as ``source_dir="s3://.../sourcedir.tar.gz"``, which the SDK uses as it is.

    Args:
        spec: a :class:`unijob.spec.JobSpec` with a ``targets.sagemaker`` block (or the env defaults).
        sagemaker_session: a ``sagemaker.Session``; default the SDK's.
        submission_id: only names the plan built on the way (no effect on the estimator).

    Raises:
        NotReady: SageMaker Python SDK 2.x is not installed. SpecError: what ``unijob plan`` would
            reject, or ``spot_with_fallback``. TargetError: S3 refused the code upload.
    """
    sm = _v2()
    plan, body = _plan_body(spec, submission_id)
    kw = _common_kwargs(body)
    kw["base_job_name"] = spec.name
    if sagemaker_session is not None:
        kw["sagemaker_session"] = sagemaker_session
    if spec.image:
        if spec.command:
            kw["container_entry_point"] = list(spec.command)
        if spec.args:
            kw["container_arguments"] = list(spec.args)
        if body.get("HyperParameters"):
            kw["hyperparameters"] = dict(body["HyperParameters"])
        return sm.estimator.Estimator(**kw)
    from . import images

    rel = images.release(spec.framework.version, spec.framework.python)
    kw.update(entry_point=spec.script_relpath, source_dir=_upload_code(plan), framework_version=rel.version,
              py_version=rel.python, hyperparameters=dict(spec.hyperparameters))
    if "sagemaker_torch_distributed_enabled" in body.get("HyperParameters", {}):
        kw["distribution"] = {"torch_distributed": {"enabled": True}}
    from .plan import PROCESSES_PER_HOST

    if PROCESSES_PER_HOST in body.get("HyperParameters", {}):  # torch_distributed has no knob for it
        kw["hyperparameters"][PROCESSES_PER_HOST] = spec.resources.processes_per_node
    return sm.pytorch.PyTorch(**kw)


def to_model_trainer(spec: Any, *, sagemaker_session: Any = None, submission_id: str = "sdk") -> Any:
    """A SageMaker Python SDK 3.x ``sagemaker.train.ModelTrainer`` configured as unijob's plan for ``spec``.

    Script jobs get ``SourceCode(source_dir, entry_script)`` on the plan's DLC image and, for a gang,
    ``distributed=Torchrun()``; image jobs get ``training_image`` and their ``command + args`` as
    ``SourceCode(command=...)``. ModelTrainer runs the code through its own driver scripts (an extra
    ``sm_drivers`` channel), so its request is not the plan's field for field. Train with
    ``trainer.train(input_data_config=[InputData(channel_name=k, data_source=v) for k, v in spec.inputs.items()])``.
    ModelTrainer checks the role with iam:SimulatePrincipalPolicy unless
    ``SAGEMAKER_VALIDATE_ROLE=false`` (SDK 3.x behaviour).

    The code bundle is uploaded as in :func:`to_estimator` and given as ``SourceCode(source_dir=
    "s3://.../sourcedir.tar.gz", requirements="requirements.txt")``.

    Raises:
        NotReady: SageMaker Python SDK 3.x is not installed. SpecError, TargetError: as :func:`to_estimator`.
    """
    version = _sdk_version()
    if version is None or version.startswith("2."):
        raise NotReady("ModelTrainer needs the SageMaker Python SDK 3.x"
                       + (f"; sagemaker {version} is installed (2.x: use to_estimator)" if version else ""),
                       hint=PIP_V3)
    from sagemaker.core.training.configs import (CheckpointConfig, Compute, Networking, OutputDataConfig,
                                                 RetryStrategy, SourceCode, StoppingCondition, Tag)
    from sagemaker.train import ModelTrainer

    plan, body = _plan_body(spec, submission_id)
    kw = _common_kwargs(body)
    code = _upload_code(plan)
    compute = {"instance_type": kw["instance_type"], "instance_count": kw["instance_count"],
               "volume_size_in_gb": kw["volume_size"], "enable_managed_spot_training": kw["use_spot_instances"]}
    if "keep_alive_period_in_seconds" in kw:
        compute["keep_alive_period_in_seconds"] = kw["keep_alive_period_in_seconds"]
    stopping = {"max_runtime_in_seconds": kw["max_run"]}
    if "max_wait" in kw:
        stopping["max_wait_time_in_seconds"] = kw["max_wait"]
    out = {"s3_output_path": kw["output_path"]}
    if "output_kms_key" in kw:
        out["kms_key_id"] = kw["output_kms_key"]
    args: dict[str, Any] = {
        "training_image": kw["image_uri"], "role": kw["role"], "base_job_name": spec.name,
        "compute": Compute(**compute), "stopping_condition": StoppingCondition(**stopping),
        "output_data_config": OutputDataConfig(**out), "training_input_mode": kw["input_mode"],
        "environment": kw["environment"],
    }
    if "checkpoint_s3_uri" in kw:
        args["checkpoint_config"] = CheckpointConfig(s3_uri=kw["checkpoint_s3_uri"],
                                                     local_path=kw.get("checkpoint_local_path"))
    if "subnets" in kw:
        args["networking"] = Networking(subnets=kw["subnets"], security_group_ids=kw["security_group_ids"],
                                        enable_network_isolation=kw.get("enable_network_isolation"),
                                        enable_inter_container_traffic_encryption=kw.get("encrypt_inter_container_traffic"))
    if "tags" in kw:
        args["tags"] = [Tag(key=t["Key"], value=t["Value"]) for t in kw["tags"]]
    if sagemaker_session is not None:
        args["sagemaker_session"] = sagemaker_session
    if spec.image:
        if spec.command or spec.args:
            import shlex

            args["source_code"] = SourceCode(command=shlex.join([*(spec.command or []), *spec.args]))
        args["hyperparameters"] = dict(spec.hyperparameters)
    else:
        args["source_code"] = SourceCode(source_dir=code, entry_script=spec.script_relpath,
                                         requirements="requirements.txt")
        args["hyperparameters"] = dict(spec.hyperparameters)
        if "sagemaker_torch_distributed_enabled" in body.get("HyperParameters", {}):
            from sagemaker.train.distributed import Torchrun

            args["distributed"] = Torchrun(process_count_per_node=spec.resources.processes_per_node)
    trainer = ModelTrainer(**args)
    if "max_retry_attempts" in kw:
        trainer = trainer.with_retry_strategy(RetryStrategy(maximum_retry_attempts=kw["max_retry_attempts"]))
    return trainer


#: Estimator settings unijob's spec has no field for: (attribute, "is it set?", why unijob refuses it).
_UNSUPPORTED: tuple[tuple[str, Any, str], ...] = (
    ("metric_definitions", bool, "unijob defines no training metrics; read them from the logs"),
    ("rules", bool, "SageMaker Debugger rules are not part of a unijob spec"),
    ("tensorboard_output_config", bool, "unijob sends no TensorBoardOutputConfig; write TensorBoard logs to output"),
    ("git_config", bool, "unijob ships a local source_dir; clone the repository first"),
    ("dependencies", bool, "unijob ships one source_dir; move the dependencies into it"),
    ("instance_groups", bool, "heterogeneous clusters are not part of a unijob spec (one gang of one type)"),
    ("model_uri", bool, "model channels are not part of a unijob spec; give the model as an input channel"),
    ("volume_kms_key", bool, "unijob sets no ResourceConfig.VolumeKmsKeyId"),
    ("training_repository_access_mode", bool, "private-registry images (TrainingImageConfig) are not supported"),
    ("training_plan", bool, "SageMaker training plans (reserved capacity) are not supported"),
    ("disable_output_compression", bool, "unijob keeps SageMaker's default model.tar.gz compression"),
    ("instance_placement_config", bool, "unijob sends no InstancePlacementConfig"),
    ("_enable_remote_debug", bool, "unijob sends no RemoteDebugConfig"),
    ("_enable_session_tag_chaining", bool, "unijob sends no SessionChainingConfig"),
    ("enable_infra_check", bool, "unijob sends no InfraCheckConfig"),
    ("compiler_config", bool, "SageMaker Training Compiler is not supported"),
    ("debugger_hook_config", lambda v: v not in (None, False),
     "unijob sends no DebugHookConfig; leave debugger_hook_config unset (or False)"),
    ("profiler_config", bool, "unijob sends no ProfilerConfig; leave profiler_config unset"),
    ("container_log_level", lambda v: v not in (None, 20), "unijob runs the toolkit at its INFO level (20)"),
)


def _label(text: str) -> str:
    import re

    out = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    return out or "training"


def _channels(inputs: Any, cls: str) -> dict[str, str]:
    if inputs is None:
        return {}
    if isinstance(inputs, str):
        inputs = {"training": inputs}  # fit("s3://...") names the channel 'training' (SDK 2.x)
    out = {}
    for name, value in dict(inputs).items():
        if isinstance(value, str):
            out[name] = value
            continue
        config = getattr(value, "config", None)
        src = (config or {}).get("DataSource", {}).get("S3DataSource", {})
        plain = {"S3DataType": "S3Prefix", "S3Uri": src.get("S3Uri"), "S3DataDistributionType": "FullyReplicated"}
        if set(config or {}) != {"DataSource"} or set(config["DataSource"]) != {"S3DataSource"} or src != plain:
            raise SpecError.at((f"{cls}.fit", "inputs", name),
                               "unijob channels are S3 prefixes, fully replicated, in the job's input mode; "
                               f"this TrainingInput sets more ({config!r}): give the s3:// URI")
        out[name] = src["S3Uri"]
    return out


def _default_output(est: Any) -> str:
    """The SDK's own default ``output_path`` (``EstimatorBase._prepare_for_training``, 2.257):
    ``s3://<session.default_bucket()>/<default_bucket_prefix>/``; calls STS and S3 as fit() does."""
    from sagemaker import s3

    sess = est.sagemaker_session
    return s3.s3_path_join("s3://", sess.default_bucket(), sess.default_bucket_prefix, with_end_slash=True)


def from_estimator(estimator: Any, inputs: Any = None, *, name: Optional[str] = None) -> Any:
    """A :class:`unijob.spec.JobSpec` for an SDK 2.x ``PyTorch`` (script job) or ``Estimator`` (image job).

    Its SageMaker plan sends the CreateTrainingJob that ``estimator.fit(inputs)`` sends on every field
    both set (see ``tests/test_sagemaker_vendor_sdk.py`` for the fields either one adds). The spec
    keeps the exact instance type (``resources.instance_type.sagemaker``) and, when unijob's catalog
    knows it, its accelerators (``resources.accelerator``), so the spec also plans on other targets.

    Args:
        estimator: a ``sagemaker.pytorch.PyTorch`` or ``sagemaker.estimator.Estimator``.
        inputs: what you pass to ``fit``: ``{"train": "s3://..."}``, ``TrainingInput`` values with
            default settings, or one ``s3://`` URI (channel ``training``).
        name: the spec's name; default the estimator's ``base_job_name``, else its image's repository.

    Returns:
        A validated JobSpec whose ``base_dir`` is the estimator's ``source_dir`` (script jobs).

    Raises:
        NotReady: SDK 2.x is not installed. SpecError: a setting unijob cannot express (the argument is
            named, e.g. ``PyTorch.distribution``), or the resulting spec is invalid.
    """
    sm = _v2()
    from unijob.spec import JobSpec

    cls = type(estimator).__name__
    is_pytorch = isinstance(estimator, sm.pytorch.PyTorch)
    if not is_pytorch and (type(estimator) is not sm.estimator.Estimator):
        raise SpecError.at((cls,), "from_estimator takes sagemaker.pytorch.PyTorch or sagemaker.estimator.Estimator; "
                                   "other frameworks: use an Estimator with their image_uri")
    for attr, is_set, why in _UNSUPPORTED:
        if is_set(getattr(estimator, attr, None)):
            raise SpecError.at((cls, attr.lstrip("_")), why)

    est = estimator
    itype = est.instance_type
    resources: dict[str, Any] = {"nodes": est.instance_count, "instance_type": {"sagemaker": itype}}
    from unijob.cost import catalog

    shape = catalog.shape("sagemaker", itype) if itype else None
    if shape and shape.accelerator:
        resources["accelerator"] = f"{shape.accelerator}:{shape.accelerator_count}"
    if est.volume_size != _SDK_VOLUME_GB:
        resources["disk_gib"] = est.volume_size
    hps = {k: v for k, v in (est._hyperparameters or {}).items() if not str(k).startswith("sagemaker_")}
    data: dict[str, Any] = {"resources": resources, "max_run": est.max_run or _SDK_MAX_RUN,
                            "hyperparameters": hps, "env": dict(est.environment or {}),
                            "inputs": _channels(inputs, cls),
                            "output": est.output_path or _default_output(est)}
    if est.use_spot_instances:
        data["spot"] = {"policy": "spot", "max_wait": est.max_wait, "max_restarts": est.max_retry_attempts or 0}
    else:
        data["spot"] = {"max_restarts": est.max_retry_attempts or 0}
    if est.checkpoint_s3_uri:
        if est.checkpoint_local_path not in (None, "/opt/ml/checkpoints"):
            raise SpecError.at((cls, "checkpoint_local_path"), "unijob checkpoints to /opt/ml/checkpoints "
                               "(UNIJOB_CHECKPOINT_DIR); leave checkpoint_local_path unset")
        data["checkpoint"] = {"uri": est.checkpoint_s3_uri}
    if est.tags:
        data["labels"] = {t["Key"]: t["Value"] for t in est.tags}

    sess = est.sagemaker_session
    target: dict[str, Any] = {"role_arn": est.role, "region": sess.boto_region_name if sess else None,
                              "input_mode": est.input_mode}
    for key, value in (("subnets", est.subnets), ("security_group_ids", est.security_group_ids),
                       ("kms_key_id", est.output_kms_key),
                       ("keep_alive_period", est.keep_alive_period_in_seconds),
                       ("enable_network_isolation", est.enable_network_isolation() or None),
                       ("inter_container_encryption", est.encrypt_inter_container_traffic or None)):
        if value is not None:
            target[key] = value

    base: Path = Path.cwd()
    if is_pytorch:
        _pytorch_fields(est, cls, data, resources, target)
        base = Path(est.source_dir or Path(est.entry_point).parent or ".").resolve()
        data["script"] = est.entry_point if est.source_dir else Path(est.entry_point).name
        repo = "pytorch-training"
    else:
        if est.entry_point or est.source_dir:
            raise SpecError.at((cls, "entry_point"), "script mode on a custom image is not a unijob job kind: "
                                                     "bake the script into the image, or use PyTorch")
        data["image"] = est.image_uri
        if est.container_entry_point:
            data["command"] = list(est.container_entry_point)
        if est.container_arguments:
            data["args"] = list(est.container_arguments)
        repo = urlparse("//" + est.image_uri).path.rsplit("/", 1)[-1].split(":")[0]
    data["name"] = _label(name or est.base_job_name or repo)
    data["targets"] = {"sagemaker": target}

    from pydantic import ValidationError

    from unijob.loading import issues_from_validation

    try:
        return JobSpec.model_validate(data, context={"base_dir": base})
    except ValidationError as e:
        raise SpecError(issues_from_validation(e, model=JobSpec)) from None


def _pytorch_fields(est: Any, cls: str, data: dict[str, Any], resources: dict[str, Any],
                    target: dict[str, Any]) -> None:
    if est.image_uri:
        raise SpecError.at((cls, "image_uri"), "a unijob script job runs the AWS PyTorch training container of "
                                               "framework.version; drop image_uri, or use an Estimator (image job)")
    if str(est.source_dir or "").startswith("s3://"):
        raise SpecError.at((cls, "source_dir"), "unijob packs a local source_dir; download the tarball first")
    if est.code_location:
        parsed = urlparse(est.code_location)
        target["code_bucket"], target["code_prefix"] = parsed.netloc, parsed.path.strip("/")
    py = est.py_version or ""
    data["framework"] = {"name": "pytorch", "version": est.framework_version,
                         "python": f"{py[2]}.{py[3:]}" if py.startswith("py3") else py}
    dist = dict(est.distribution or {})
    torchrun = dist.pop("torch_distributed", {}).get("enabled", False)
    if dist:
        raise SpecError.at((cls, "distribution"), f"unijob runs gangs with torch_distributed (torchrun) only, "
                                                  f"not {sorted(dist)}", "{'torch_distributed': {'enabled': True}}")
    if not torchrun:
        resources["processes_per_node"] = 1  # the toolkit runs `python entry_point` once on each host
    else:
        from .plan import PROCESSES_PER_HOST

        per_host = (est._hyperparameters or {}).get(PROCESSES_PER_HOST)
        if per_host is not None:
            resources["processes_per_node"] = int(per_host)
