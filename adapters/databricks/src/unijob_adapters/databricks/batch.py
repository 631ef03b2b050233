"""Batch prediction on Databricks: one ``POST /api/2.2/jobs/runs/submit`` whose task maps the
``unijob.serve`` handler (``predict(instances)``) over the input files.

The run is the adapter's usual one-off run (:mod:`.plan`): the same ``new_cluster`` rules, the same
uploads (the spec's directory, holding the handler, content-addressed under ``upload_dir``), the
runtime wheel as a task library, here built with ``batch=True`` so that it also carries
:mod:`unijob.batch.runner` and the handler loader (:func:`unijob.bundle.runtime_wheel`). Its
``spark_python_task`` is :mod:`.batch_task` (uploaded as ``_unijob_batch.py``): on a cluster with
worker nodes it reads the input on the driver and predicts with Spark's ``mapInPandas`` on the
executors; on a single-node cluster it runs the local runner's process pool on the driver, which
measured faster there (why: :mod:`.batch_task`). Output and errors are the local runner's
(:mod:`unijob.batch`): ``<file>.out`` per input file, ``errors.jsonl`` with file and line,
``_SUMMARY.json``; the run ends FAILED with the reason when the errors exceed
``batch.max_error_fraction``. Submit, status, logs and cancel are the jobs' (:mod:`.client`).

Sizing: ``batch.replicas`` is the number of worker nodes (1: a single-node cluster, Spark running
on the driver's cores, as for a one-node job); each node is ``batch.instance_type.databricks``
(or ``targets.databricks.node_type_id``), else the catalog's pick for ``batch.accelerator``.

Storage: ``batch.input`` and ``batch.output`` are read and written by the cluster, so they are a
Unity Catalog volume (``/Volumes/<catalog>/<schema>/<volume>/...``, ``dbfs:/Volumes/...``) or DBFS
(``dbfs:/...``), which every node mounts as files (https://docs.databricks.com/aws/en/files/);
``batch.model`` is one of those, a cloud URI the cluster can read, or a local path (inside the
spec's directory it travels with the upload; elsewhere it is uploaded beside it).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from unijob.bundle import iter_source_files, local_outputs, runtime_wheel
from unijob.contract import NativeRequest, Plan, PlanResources, Upload
from unijob.errors import SpecError

from .options import DatabricksOptions
from .plan import (RUNTIME_DIR, SUBMIT_API, TARGET, TASK_KEY, _requirements, check_submit_body,
                   job_cluster, names, sdk, source_digest)
from .runtime_env import local_path

TASK_NAME = "_unijob_batch.py"
#: Model URIs a cluster reads with fsspec (its filesystem package must be on the cluster).
CLOUD_SCHEMES = ("s3://", "s3a://", "gs://", "abfss://", "az://", "wasbs://")
_RESOURCE_FIELDS = {"accelerator": "accelerator", "cpus": "instance_type", "memory_gib": "instance_type",
                    "instance_type": "instance_type"}


def task_path() -> Path:
    """The cluster-side batch task unijob uploads (:mod:`.batch_task`)."""
    return Path(__file__).with_name("batch_task.py")


def _storage(value: str, field: str) -> str:
    """The cluster's file path of a volume or DBFS location, or a SpecError at ``batch.<field>``."""
    path = local_path(value)
    if path is None or (path.startswith("/Volumes/") and len(path.rstrip("/").split("/")) < 5):
        raise SpecError.at(("batch", field),
                           f"Databricks reads and writes batch files in a Unity Catalog volume "
                           f"(/Volumes/<catalog>/<schema>/<volume>/...) or DBFS (dbfs:/...); got '{value}'"
                           + ("; copy local files there first (databricks fs cp -r ...)" if "://" not in value else ""))
    return path.rstrip("/") or "/"


def _check_handler(ref: str, base: Path) -> None:
    module = ref.partition(":")[0]
    if module.endswith(".py") and not (base / module).is_file():
        found = sorted(p.relative_to(base).as_posix() for p in base.rglob("*.py") if "__pycache__" not in p.parts)
        close = difflib.get_close_matches(module, found, n=1)
        raise SpecError.at(("batch", "handler"), f"'{module}' is not a file in {base} (the spec's directory, "
                                                 "which is uploaded for the cluster)",
                           suggestion=(close[0] + ":" + ref.partition(":")[2]) if close else None)


def _runner_spec(spec: Any) -> Any:
    """A JobSpec standing for the batch run, so that the job plan's cluster rules size it."""
    from unijob.spec import JobSpec

    b = spec.batch
    doc = {"name": spec.name, "script": TASK_NAME, "max_run": spec.max_run, "env": dict(spec.env),
           "secrets": dict(spec.secrets), "labels": dict(spec.labels), "output": b.output,
           "spot": spec.spot.model_dump(exclude_none=True), "targets": spec.targets,
           "resources": {"nodes": b.replicas, "accelerator": b.accelerator, "instance_type": dict(b.instance_type)}}
    if spec.expected_duration:
        doc["expected_duration"] = spec.expected_duration
    if spec.requirements:
        doc["requirements"] = spec.requirements
    return JobSpec.model_validate(doc, context={"base_dir": str(spec.base_dir), "check_paths": False})


def _at_batch(e: SpecError) -> SpecError:
    """Point the job rules' ``resources.*`` errors at the batch fields they came from."""
    for issue in e.issues:
        if issue.loc[:1] == ("resources",) and len(issue.loc) > 1:
            issue.loc = ("batch", _RESOURCE_FIELDS.get(str(issue.loc[1]), str(issue.loc[1])))
        for field, batch_field in _RESOURCE_FIELDS.items():
            issue.message = issue.message.replace(f"resources.{field}", f"batch.{batch_field}")
    e.message = e._render()
    e.args = (e.message,)
    return e


def plan_batch(spec: Any, submission_id: str, opts: DatabricksOptions) -> Plan:
    """The ``runs/submit`` plan of ``spec.batch`` (pure: reads local files, sends nothing).

    Returns:
        A :class:`Plan` of kind ``"batch"``: one ``runs/submit`` request validated with the SDK's
        ``SubmitTask`` (its cached stand-in), the uploads (spec directory, batch task, runtime
        wheel, a local model outside the directory) and the cost inputs (nodes x hours).

    Raises:
        SpecError: at the field: no batch section; ``batch.image`` (Databricks runs the handler
            on the cluster's Python); input/output outside a volume or DBFS; a ``models:/`` or
            ``job:`` model not yet resolved; a handler file that is not there; a node type or
            runtime the job rules refuse. NotReady: databricks-sdk is missing.
    """
    jobs, compute = sdk()
    b = spec.batch
    if b is None:
        raise SpecError.at(("batch",), "this spec has no batch section")
    if b.image:
        raise SpecError.at(("batch", "image"), "Databricks runs batch.handler (a unijob.serve handler) on the "
                                               "cluster's Python with Spark; a serving image is not run there")
    if b.model and b.model.startswith("models:/") and re.fullmatch(r"models:/[^/@]+\.[^/@]+\.[^/@]+/\d+", b.model):
        # what `unijob batch` resolves a Unity Catalog alias or version to (registry.model_location)
        raise SpecError.at(("batch", "model"), f"{b.model} is a Unity Catalog model version, which Model Serving "
                                               "serves; the batch task reads its model from a volume or DBFS path: "
                                               "give batch.model as that path (`unijob models show NAME VERSION -t "
                                               "databricks` prints the source the version was registered from)")
    if b.model and b.model.startswith(("models:/", "job:")):
        raise SpecError.at(("batch", "model"), f"{b.model} is resolved by `unijob batch` (or unijob.batch_predict) "
                                               "before planning; plan with the artifact it names")
    input_path, output_path = _storage(b.input, "input"), _storage(b.output, "output")
    if output_path == input_path or output_path.startswith(input_path.rstrip("/") + "/"):
        raise SpecError.at(("batch", "output"), f"'{b.output}' is inside the input '{b.input}': a second run "
                                                "would read the first one's predictions as input")
    base = spec.base_dir
    _check_handler(b.handler, base)
    try:
        runner_spec = _runner_spec(spec)
        run_name, token = names(spec.name, submission_id)
        notes: list[str] = []
        warnings: list[str] = []
        cluster, node_type, single_node = job_cluster(runner_spec, opts, run_name, notes, warnings)
    except SpecError as e:
        raise _at_batch(e) from None
    warnings = [w for w in warnings if "checkpoint.uri" not in w]  # a batch has no checkpoint: Spark retries lost tasks

    task_hash = hashlib.sha256(task_path().read_bytes()).hexdigest()
    skip = local_outputs(spec, base)
    digest = hashlib.sha256(f"{source_digest(base, skip)}\n{task_hash}".encode()).hexdigest()
    dest = f"{opts.upload_dir}/{spec.name}/{digest[:16]}"
    uploads = [Upload(source=str(base), destination=dest, sha256=digest, kind="directory", exclude=list(skip)),
               Upload(source=str(task_path()), destination=f"{dest}/{TASK_NAME}", sha256=task_hash)]
    model = _model(spec, base, dest, opts, uploads, warnings)
    libraries = [compute.Library(pypi=compute.PythonPyPiLibrary(package=p)) for p in _requirements(runner_spec)]
    if opts.runtime_package:
        libraries.append(compute.Library(pypi=compute.PythonPyPiLibrary(package=opts.runtime_package)))
        notes.append(f"the runtime comes from {opts.runtime_package}, which must carry unijob.batch.runner")
    else:
        wheel = runtime_wheel([TARGET], batch=True)
        wheel_path = f"{opts.upload_dir}/{RUNTIME_DIR}/{wheel.filename}"
        uploads.append(Upload(source=wheel.filename, destination=wheel_path, sha256=wheel.sha256, kind="runtime-wheel"))
        libraries.append(compute.Library(whl=wheel_path))
    config = {"engine": "pool" if single_node else "spark", "handler": b.handler, "base_dir": dest, "model": model, "input": input_path, "output": output_path,
              "replicas": b.replicas, "instances_per_request": b.instances_per_request,
              "max_error_fraction": b.max_error_fraction, "parameters": b.parameters}
    task = jobs.SubmitTask(task_key=TASK_KEY, new_cluster=cluster, libraries=libraries or None,
                           spark_python_task=jobs.SparkPythonTask(python_file=f"{dest}/{TASK_NAME}",
                                                                  parameters=[json.dumps(config, sort_keys=True)]))
    body = {"run_name": run_name, "idempotency_token": token, "timeout_seconds": int(spec.max_run),
            "tasks": [task.as_dict()]}
    check_submit_body(body)
    if single_node:
        notes.append(f"a single-node cluster: a pool of one process per core on the driver, each loading the handler "
                     f"and model once, {b.instances_per_request} instances per predict call")
    else:
        notes.append(f"mapInPandas over {b.replicas} worker nodes: each Spark Python worker loads the handler and model "
                     f"once and predicts {b.instances_per_request} instances per call; the driver writes the files "
                     "in input order")
    return Plan(
        target=TARGET, kind="batch", name=run_name, submission_id=submission_id,
        requests=[NativeRequest(api=SUBMIT_API, body=body,
                                note=f"one-off batch run on a new {opts.cloud} cluster of {node_type}")],
        uploads=uploads,
        resources=PlanResources(service="databricks-jobs", instance_type=node_type,
                                instance_count=1 if single_node else b.replicas + 1,
                                accelerator=runner_spec.resources.accelerator_type,
                                accelerators_per_node=runner_spec.resources.accelerator_count,
                                hours=spec.expected_seconds / 3600.0, spot=spec.spot.policy),
        notes=notes, warnings=warnings,
        extra={"host": opts.host, "profile": opts.profile, "cloud": opts.cloud, "kind": "batch",
               "upload_dir": opts.upload_dir, "cluster_log_dir": opts.cluster_log_dir},
    )


def _model(spec: Any, base: Path, dest: str, opts: DatabricksOptions, uploads: list[Upload],
           warnings: list[str]) -> Any:
    """The model location the cluster reads (see the module docstring); appends its upload."""
    m = spec.batch.model
    if not m:
        return None
    if local_path(m):
        return local_path(m)
    if m.startswith(CLOUD_SCHEMES):
        warnings.append(f"batch.model {m} is read with fsspec on the cluster: its filesystem package "
                        "(s3fs, gcsfs, adlfs) must be installed (requirements)")
        return m
    if "://" in m:
        raise SpecError.at(("batch", "model"), f"a Databricks cluster cannot read '{m}'; give a volume path, "
                                               "dbfs:/..., a cloud URI or a local path")
    path = spec.resolve_path(m[len("file://"):] if m.startswith("file://") else m)
    if not path.exists():
        raise SpecError.at(("batch", "model"), f"'{m}' does not exist ({path})")
    try:
        rel = path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        rel = None
    if rel is not None:  # it travels with the spec's directory
        return dest if rel == "." else f"{dest}/{rel}"
    if path.is_dir():
        h = hashlib.sha256()
        for rel_name, p in iter_source_files(path):
            h.update(rel_name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
        digest = h.hexdigest()
        target = f"{opts.upload_dir}/{spec.name}/model-{digest[:16]}"
        uploads.append(Upload(source=str(path), destination=target, sha256=digest, kind="directory"))
        return target
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    target = f"{opts.upload_dir}/{spec.name}/model-{digest[:16]}/{path.name}"
    uploads.append(Upload(source=str(path), destination=target, sha256=digest))
    return target
