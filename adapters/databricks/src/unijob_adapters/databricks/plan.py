"""The exact ``POST /api/2.2/jobs/runs/submit`` body for a spec, built with the SDK's dataclasses.

One task (``task_key`` ``main``) on a ``new_cluster`` that exists for the run only:

- ``spark_version``: see :mod:`.options` for the defaults and their source.
- ``node_type_id``: ``targets.databricks.node_type_id``, else ``resources.instance_type.databricks``,
  else :func:`unijob.cost.catalog.instance_for` in the cloud's family (``ec2``/``azure``/``gcp``).
- Workers: a gang of one node with no ``max_nodes`` runs on a single-node cluster (``num_workers``
  0, the ``singleNode`` profile: Databricks' documented single-node setup); larger gangs get
  ``num_workers = nodes`` (the driver coordinates, the workers train), or ``autoscale``
  ``{min_workers: nodes, max_workers: max_nodes}`` when ``resources.max_nodes`` is set.
- Spot, as each cloud spells it (Clusters API ``aws_attributes`` / ``azure_attributes`` /
  ``gcp_attributes``): ``spot`` -> SPOT / SPOT_AZURE / PREEMPTIBLE_GCP, ``spot_with_fallback`` ->
  SPOT_WITH_FALLBACK / SPOT_WITH_FALLBACK_AZURE / PREEMPTIBLE_WITH_FALLBACK_GCP, with
  ``first_on_demand`` keeping the driver on-demand. The fallback is native, so a plan never holds a
  second (``when="fallback"``) request.
- ``spark_env_vars``: the spec's ``env``, the unijob env contract (``UNIJOB_*``) and secrets as
  ``{{secrets/scope/key}}`` references (``databricks-secret://scope/key``). ``aws-secretsmanager://``
  and ``gcp-secretmanager://`` refs travel in ``UNIJOB_SECRET_REFS`` and are resolved inside the job
  by ``unijob.runtime`` (with the cluster's instance profile / service account); ``env://`` and
  ``k8s-secret://`` refs are rejected: the cluster cannot reach them.

Script jobs carry unijob's runtime as a wheel (:func:`unijob.bundle.runtime_wheel`), uploaded to
``<upload_dir>/_runtime/<wheel file>`` and declared as a task library (``libraries: [{whl: ...}]``):
Databricks installs wheel libraries from workspace files or volumes with pip on the driver and every
worker before the task runs ("Install libraries", https://docs.databricks.com/aws/en/libraries/ and
the Asset Bundles "library dependencies" page, read 2026-11-29); the wheel declares no dependencies,
so no package index is asked. ``targets.databricks.runtime_package`` (a PyPI requirement) replaces
it for teams that publish their own build.

Script jobs run unijob's launcher (:mod:`.launcher`, uploaded beside the source dir) as a
``spark_python_task``. It runs the script directly for one process, or through PyTorch's
``TorchDistributor`` (``pyspark.ml.torch.distributor``; Databricks' documented way to run
distributed PyTorch, https://docs.databricks.com/aws/en/machine-learning/train-model/distributed-training/spark-pytorch-distributor)
with ``num_processes = nodes x processes_per_node``: ``local_mode=True`` on a single-node cluster,
``local_mode=False`` across the workers otherwise. TorchDistributor starts each rank under torchrun,
which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT... Container jobs run on
Databricks Container Services (``new_cluster.docker_image``); the launcher execs ``command + args``
on the driver.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

from unijob.bundle import iter_source_files, local_outputs, runtime_wheel
from unijob.contract import NativeRequest, Plan, PlanResources, Upload
from unijob.errors import NotReady, SpecError

from .options import CONTAINER_RUNTIME, CPU_ML_RUNTIME, GPU_ML_RUNTIME, DatabricksOptions
from .runtime_env import local_path

SUBMIT_API = "POST /api/2.2/jobs/runs/submit"
TARGET = "databricks"
#: Folder under ``upload_dir`` holding runtime wheels (content-addressed by their file names).
RUNTIME_DIR = "_runtime"
LAUNCHER_NAME = "_unijob_launcher.py"
TASK_KEY = "main"
#: Workspace API import limit per file (Databricks "Workspace files" docs: 10 MB via import; 2026-11).
WORKSPACE_FILE_LIMIT = 10 * 1024 * 1024

#: How each cloud spells the spot policies (Clusters API availability enums).
AVAILABILITY = {
    "aws": {"on_demand": "ON_DEMAND", "spot": "SPOT", "spot_with_fallback": "SPOT_WITH_FALLBACK"},
    "azure": {"on_demand": "ON_DEMAND_AZURE", "spot": "SPOT_AZURE", "spot_with_fallback": "SPOT_WITH_FALLBACK_AZURE"},
    "gcp": {"on_demand": "ON_DEMAND_GCP", "spot": "PREEMPTIBLE_GCP", "spot_with_fallback": "PREEMPTIBLE_WITH_FALLBACK_GCP"},
}


def sdk(*, real: bool = False):
    """``(jobs, compute)``: the types of those ``databricks.sdk`` service modules, as stand-ins
    made from the SDK's cached schema (:mod:`.validate`: importing the SDK takes seconds) or, with
    ``real`` or without a cache, the modules themselves.

    Raises:
        NotReady: databricks-sdk is not installed.
    """
    if not real:
        from . import validate

        validate.sdk_location()  # NotReady without the SDK
        jobs = validate.service("jobs")
        if jobs is not None:
            return jobs, validate.service("compute")
    try:
        from databricks.sdk.service import compute, jobs
    except ImportError:
        raise NotReady("databricks-sdk is not installed", hint="pip install 'unijob[databricks]'") from None
    return jobs, compute


def names(spec_name: str, submission_id: str) -> tuple[str, str]:
    """``(run_name, idempotency_token)`` for a submission: both derive from ``submission_id`` only,
    so a retried submission sends the same token and Databricks starts no second run. The token is
    47 characters (the API allows 64)."""
    digest = hashlib.sha256(f"{spec_name}\n{submission_id}".encode()).hexdigest()
    return f"{spec_name}-{digest[:8]}", "unijob-" + digest[:40]


def check_submit_body(body: dict[str, Any], *, real: bool = False) -> None:
    """Validate a ``runs/submit`` body with the SDK's types (their cached stand-ins unless
    ``real``): every top-level key is a ``JobsAPI.submit`` parameter and every task round-trips
    ``SubmitTask.from_dict(t).as_dict()`` unchanged (nothing unknown, nothing mistyped).

    Raises:
        ValueError: with the first difference.
    """
    from . import validate

    jobs, _ = sdk(real=real)
    allowed = validate.api_params("jobs.JobsAPI.submit", real=real)
    unknown = set(body) - allowed
    if unknown:
        raise ValueError(f"runs/submit takes no {sorted(unknown)}")
    for t in body.get("tasks", []):
        back = jobs.SubmitTask.from_dict(t).as_dict()
        if back != t:
            raise ValueError(f"task does not round-trip through jobs.SubmitTask: sent {t!r}, kept {back!r}")


def secret_ref_to_databricks(ref: str) -> str:
    """``databricks-secret://scope/key`` -> ``{{secrets/scope/key}}``."""
    scope, _, key = ref.split("://", 1)[1].partition("/")
    return "{{secrets/%s/%s}}" % (scope, key)


def _node_type(spec, opts: DatabricksOptions) -> tuple[str, Any]:
    from unijob.cost import catalog

    res = spec.resources
    family = opts.catalog_family
    explicit = opts.node_type_id or res.instance_type.get("databricks")
    if explicit:
        return explicit, catalog.shape(family, explicit)
    try:
        s = catalog.instance_for(family, res.accelerator_type, res.accelerator_count,
                                 cpus=res.cpus, memory_gib=res.memory_gib)
    except catalog.NoOffering as e:
        loc = ("resources", "accelerator") if res.accelerator else ("resources", "cpus")
        raise SpecError.at(loc, f"{e} (Databricks on {opts.cloud}); pick one it offers, set "
                                f"targets.databricks.cloud, or give resources.instance_type.databricks") from None
    return s.instance_type, s


def _spark_version(spec, opts: DatabricksOptions) -> str:
    loc = ("targets", "databricks", "spark_version")
    v = opts.spark_version
    if spec.image:
        v = v or CONTAINER_RUNTIME
        if "-ml-" in v:
            raise SpecError.at(loc, f"'{v}' is a Databricks Runtime for Machine Learning, which does not support "
                                    "Databricks Container Services; use a standard runtime such as "
                                    f"'{CONTAINER_RUNTIME}' (GPU images: databricksruntime/gpu-*)")
        return v
    if spec.resources.accelerator:
        v = v or GPU_ML_RUNTIME
        if "gpu" not in v:
            raise SpecError.at(loc, f"'{v}' is not a GPU runtime but resources.accelerator asks for "
                                    f"{spec.resources.accelerator}; use a GPU ML runtime such as '{GPU_ML_RUNTIME}'",
                               suggestion=GPU_ML_RUNTIME)
        return v
    v = v or CPU_ML_RUNTIME
    if "gpu" in v:
        raise SpecError.at(loc, f"'{v}' is a GPU runtime but resources.accelerator is empty (CPU nodes); "
                                f"use '{CPU_ML_RUNTIME}' or ask for an accelerator", suggestion=CPU_ML_RUNTIME)
    return v


def _env(spec, run_name: str, opts: DatabricksOptions) -> dict[str, str]:
    env: dict[str, str] = dict(spec.env)
    env.update({"UNIJOB_JOB_NAME": run_name, "UNIJOB_TARGET": "databricks"})
    if spec.checkpoint:
        env["UNIJOB_CHECKPOINT_URI"] = spec.checkpoint.uri
        local = local_path(spec.checkpoint.uri)
        if local:
            env["UNIJOB_CHECKPOINT_DIR"] = local
    if spec.output:
        env["UNIJOB_OUTPUT_URI"] = spec.output
    if spec.inputs:
        env["UNIJOB_CHANNELS"] = json.dumps({k: local_path(v) or v for k, v in sorted(spec.inputs.items())},
                                            sort_keys=True)
    if spec.hyperparameters:
        env["UNIJOB_HYPERPARAMETERS"] = json.dumps(spec.hyperparameters, sort_keys=True)
    other: dict[str, str] = {}
    for name, ref in sorted(spec.secrets.items()):
        scheme = ref.split("://", 1)[0]
        if scheme == "databricks-secret":
            if "/" not in ref.split("://", 1)[1]:
                raise SpecError.at(("secrets", name), "expected databricks-secret://SCOPE/KEY")
            env[name] = secret_ref_to_databricks(ref)
        elif scheme in ("aws-secretsmanager", "gcp-secretmanager"):
            other[name] = ref
        else:
            raise SpecError.at(("secrets", name), f"a {scheme}:// reference cannot be read from a Databricks "
                                                  "cluster; store it in a Databricks secret scope and use "
                                                  "databricks-secret://SCOPE/KEY")
    if other:
        env["UNIJOB_SECRET_REFS"] = json.dumps(other, sort_keys=True)
    return env


def launcher_path() -> Path:
    """The launcher file unijob ships to the cluster."""
    return Path(__file__).with_name("launcher.py")


def source_digest(root: Path, exclude: Sequence[str] = ()) -> str:
    """sha256 (hex) over the source dir's files (sorted relative paths and contents; what
    :func:`unijob.bundle.iter_source_files` with ``exclude`` carries) and the launcher."""
    h = hashlib.sha256()
    for rel, p in iter_source_files(root, exclude):
        h.update(rel.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    h.update(b"launcher\0" + hashlib.sha256(launcher_path().read_bytes()).digest())
    return h.hexdigest()


def _requirements(spec) -> list[str]:
    if not spec.requirements:
        return []
    out = []
    for i, raw in enumerate(spec.resolve_path(spec.requirements).read_text().splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise SpecError.at(("requirements",), f"line {i}: '{line}': only package requirements are installed "
                                                  "as Databricks task libraries, not pip options")
        out.append(line)
    return out


def _hyper_args(hp: dict[str, Any]) -> list[str]:
    out = []
    for k, v in sorted(hp.items()):
        out += [f"--{k}", ("true" if v else "false") if isinstance(v, bool) else str(v)]
    return out


def job_cluster(spec, opts: DatabricksOptions, run_name: str, notes: list[str], warnings: list[str]):
    """The ``new_cluster`` of a run of ``spec`` (see the module docstring): node type, runtime,
    workers, spot, pools, policy and log delivery. Appends its notes and warnings.

    Returns:
        ``(compute.ClusterSpec, node_type_id, single_node)``.

    Raises:
        SpecError: a node type, runtime or secret Databricks cannot take (field path named).
    """
    _, compute = sdk()
    res = spec.resources
    node_type, shape = _node_type(spec, opts)
    spark_version = _spark_version(spec, opts)
    single_node = res.nodes == 1 and res.max_nodes is None
    policy = spec.spot.policy
    if spec.image and opts.cloud == "aws" and _is_graviton(node_type):
        raise SpecError.at(("targets", "databricks", "node_type_id"),
                           f"'{node_type}' is an AWS Graviton type; Databricks Container Services does not run on Graviton")

    env = _env(spec, run_name, opts)
    tags = {**spec.labels, "unijob-job": spec.name, "unijob-run": run_name}
    cluster = compute.ClusterSpec(spark_version=spark_version, node_type_id=node_type,
                                  spark_env_vars=env, custom_tags=tags)
    if opts.driver_node_type_id:
        cluster.driver_node_type_id = opts.driver_node_type_id
    if single_node:
        cluster.num_workers = 0
        cluster.spark_conf = {"spark.databricks.cluster.profile": "singleNode", "spark.master": "local[*, 4]"}
        cluster.custom_tags["ResourceClass"] = "SingleNode"
    elif res.max_nodes is not None:
        cluster.autoscale = compute.AutoScale(min_workers=res.nodes, max_workers=res.max_nodes)
        notes.append(f"autoscale {res.nodes}..{res.max_nodes} workers; the training gang is {res.nodes} x "
                     f"{res.processes_per_node} processes, extra workers serve Spark stages")
    else:
        cluster.num_workers = res.nodes

    fod = opts.first_on_demand if opts.first_on_demand is not None else (0 if single_node and policy != "on_demand" else 1)
    avail = AVAILABILITY[opts.cloud][policy]
    if opts.cloud == "aws":
        cluster.aws_attributes = compute.AwsAttributes(availability=compute.AwsAvailability(avail), first_on_demand=fod)
        if res.disk_gib:
            cluster.aws_attributes.ebs_volume_type = compute.EbsVolumeType.GENERAL_PURPOSE_SSD
            cluster.aws_attributes.ebs_volume_count, cluster.aws_attributes.ebs_volume_size = 1, res.disk_gib
    elif opts.cloud == "azure":
        cluster.azure_attributes = compute.AzureAttributes(availability=compute.AzureAvailability(avail), first_on_demand=fod)
    else:
        cluster.gcp_attributes = compute.GcpAttributes(availability=compute.GcpAvailability(avail), first_on_demand=fod)
        if res.disk_gib:
            cluster.gcp_attributes.boot_disk_size = res.disk_gib
    if policy != "on_demand":
        notes.append(f"spot: {avail} on {opts.cloud}, first {fod} node(s) on-demand"
                     + (" (the driver)" if fod else "") + "; the fallback to on-demand is Databricks' own")
        if not spec.checkpoint:
            warnings.append("spot capacity without checkpoint.uri: a reclaimed node restarts the run from scratch")
    for attr in ("instance_pool_id", "driver_instance_pool_id", "policy_id"):
        if getattr(opts, attr):
            setattr(cluster, attr, getattr(opts, attr))
    if opts.cluster_log_dir:
        d = opts.cluster_log_dir
        cluster.cluster_log_conf = (compute.ClusterLogConf(volumes=compute.VolumesStorageInfo(destination=d))
                                    if d.startswith("/Volumes/") else
                                    compute.ClusterLogConf(dbfs=compute.DbfsStorageInfo(destination=d)))

    return cluster, node_type, single_node


def build_job_plan(spec, submission_id: str, opts: DatabricksOptions) -> Plan:
    """The plan for ``spec`` on Databricks. Pure: reads local files, sends nothing.

    Returns:
        A :class:`Plan` with one ``runs/submit`` request, the uploads submit performs first (the
        source dir and the launcher, content-addressed under ``upload_dir``) and the cost inputs.

    Raises:
        SpecError: input Databricks cannot take (field path named). NotReady: no databricks-sdk.
    """
    jobs, compute = sdk()
    res = spec.resources
    run_name, token = names(spec.name, submission_id)
    notes: list[str] = []
    warnings: list[str] = []
    policy = spec.spot.policy

    if spec.image and res.nodes > 1:
        raise SpecError.at(("resources", "nodes"), "container jobs run their command on the cluster's driver; "
                                                   "multi-node gangs need a script job (TorchDistributor)")
    if spec.image and not opts.container_services:
        raise SpecError.at(("image",), "this workspace has Databricks Container Services disabled "
                                       "(targets.databricks.container_services: false); use a script job")
    cluster, node_type, single_node = job_cluster(spec, opts, run_name, notes, warnings)
    spark_version = cluster.spark_version

    uploads: list[Upload] = []
    libraries = [compute.Library(pypi=compute.PythonPyPiLibrary(package=p)) for p in _requirements(spec)]
    if opts.runtime_package:  # opt-in only: the runtime wheel below needs no package index
        libraries.append(compute.Library(pypi=compute.PythonPyPiLibrary(package=opts.runtime_package)))
    if spec.image:
        auth = None
        if opts.docker_username or opts.docker_password:
            auth = compute.DockerBasicAuth(username=opts.docker_username,
                                           password=secret_ref_to_databricks(opts.docker_password) if opts.docker_password else None)
        cluster.docker_image = compute.DockerImage(url=spec.image, basic_auth=auth)
        digest = hashlib.sha256(launcher_path().read_bytes()).hexdigest()
        dest = f"{opts.upload_dir}/{spec.name}/{digest[:16]}"
        uploads.append(Upload(source=str(launcher_path()), destination=f"{dest}/{LAUNCHER_NAME}", sha256=digest))
        params = ["--exec", "--", *(spec.command or []), *spec.args]
        notes.append("container job on Databricks Container Services: the launcher execs command + args on the driver")
    else:
        src = spec.source_path
        skip = local_outputs(spec, src)
        digest = source_digest(src, skip)
        dest = f"{opts.upload_dir}/{spec.name}/{digest[:16]}"
        uploads.append(Upload(source=str(src), destination=dest, sha256=digest, kind="directory", exclude=list(skip)))
        big = [rel for rel, p in iter_source_files(src, skip) if p.stat().st_size > WORKSPACE_FILE_LIMIT]
        if big and not opts.upload_dir.startswith("/Volumes/"):
            warnings.append(f"{', '.join(big)} exceed the workspace import limit of 10 MB per file; "
                            "set targets.databricks.upload_dir to a /Volumes/... path")
        uploads.append(Upload(source=str(launcher_path()), destination=f"{dest}/{LAUNCHER_NAME}",
                              sha256=hashlib.sha256(launcher_path().read_bytes()).hexdigest()))
        if not opts.runtime_package:
            wheel = runtime_wheel([TARGET])
            wheel_path = f"{opts.upload_dir}/{RUNTIME_DIR}/{wheel.filename}"
            uploads.append(Upload(source=wheel.filename, destination=wheel_path, sha256=wheel.sha256,
                                  kind="runtime-wheel"))
            libraries.append(compute.Library(whl=wheel_path))
            notes.append(f"the runtime wheel {wheel.filename} is a task library: the cluster installs it on the "
                         "driver and every worker before the task starts; it has no dependencies, so no package "
                         "index is asked")
        world = res.nodes * int(res.processes_per_node or 1)
        mode = "direct" if world == 1 else ("local" if single_node else "distributed")
        params = ["--mode", mode, "--num-processes", str(world),
                  "--use-gpu", "true" if res.accelerator else "false",
                  "--", f"{dest}/{spec.script_relpath}", *spec.args, *_hyper_args(spec.hyperparameters)]
        if mode != "direct" and "-ml-" not in spark_version:
            warnings.append(f"a gang of {world} processes runs through TorchDistributor, which needs PyTorch; "
                            f"'{spark_version}' is not a Databricks Runtime for Machine Learning (the ML runtimes "
                            "carry PyTorch); use one, e.g. the default, or run one process")
        if mode != "direct":
            notes.append(f"gang of {world} processes through TorchDistributor(num_processes={world}, "
                         f"local_mode={mode == 'local'}, use_gpu={bool(res.accelerator)})")

    task = jobs.SubmitTask(task_key=TASK_KEY, new_cluster=cluster, libraries=libraries or None,
                           spark_python_task=jobs.SparkPythonTask(python_file=f"{dest}/{LAUNCHER_NAME}", parameters=params))
    if spec.spot.is_spot and spec.spot.max_restarts:
        task.max_retries = spec.spot.max_restarts
    body = {"run_name": run_name, "idempotency_token": token, "timeout_seconds": int(spec.max_run),
            "tasks": [task.as_dict()]}
    check_submit_body(body)
    if spec.spot.max_wait:
        notes.append("spot.max_wait has no Databricks equivalent; timeout_seconds bounds the whole run")

    count = 1 if single_node else res.nodes + 1
    return Plan(
        target="databricks", kind="job", name=run_name, submission_id=submission_id,
        requests=[NativeRequest(api=SUBMIT_API, body=body,
                                note=f"one-off run on a new {opts.cloud} cluster of {node_type}")],
        uploads=uploads,
        resources=PlanResources(service="databricks-jobs", instance_type=node_type, instance_count=count,
                                accelerator=res.accelerator_type, accelerators_per_node=res.accelerator_count,
                                hours=spec.expected_seconds / 3600.0, spot=policy),
        notes=notes, warnings=warnings,
        extra={"host": opts.host, "profile": opts.profile, "cloud": opts.cloud,
               "upload_dir": opts.upload_dir, "cluster_log_dir": opts.cluster_log_dir},
    )


def _is_graviton(node_type: str) -> bool:
    import re

    return bool(re.match(r"^[a-z]+\d+g[a-z]*\.", node_type))
