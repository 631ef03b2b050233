"""Build the Vertex ``CustomJob`` for a spec, validated by ``google.cloud.aiplatform_v1`` types.

The body in the plan is ``CustomJob.to_json(job, use_integers_for_enums=False)`` parsed back
into data (made by :func:`unijob_adapters.vertex.validate.rest_json` from the type's cached descriptors): exactly what ``POST /v1/projects/P/locations/L/customJobs`` receives (camelCase
keys, enum names, int64 fields such as ``replicaCount`` as strings).

Script jobs (decision): the source directory is packed into a deterministic gzip tarball,
uploaded on submit to ``<staging_bucket>/unijob/src/<sha256>/sourcedir.tar.gz``, and run in
Vertex's prebuilt PyTorch training container through a small launcher given as the container
command: it unpacks the tarball from the Cloud Storage FUSE mount (Vertex mounts every bucket
the job can read at ``/gcs/BUCKET``; https://cloud.google.com/vertex-ai/docs/training/cloud-storage-file-system,
2026-11-21), installs unijob's runtime wheel from the tarball (``--no-deps --no-index``), installs
``requirements`` if given, and starts the script: ``python3 <script>`` for one process per node (no
launcher needed; the runtime reads the node rank and master address Vertex sets in its PyTorch
containers, ``RANK``, ``WORLD_SIZE`` = nodes, ``MASTER_ADDR``, ``MASTER_PORT``, or ``CLUSTER_SPEC``),
``torchrun`` with those values for several processes per node. The source directory is limited to
:data:`unijob.bundle.SOURCE_DIR_LIMIT` (100 MiB; the tarball is read through the FUSE mount and
unpacked on every replica). ``python_package_spec`` was not used because it needs a
``setup.py`` source distribution, which a plain script directory is not.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shlex
from pathlib import Path
from typing import Any, Sequence

from unijob.contract import NativeRequest, Plan, PlanResources, Upload
from unijob.errors import SpecError

from unijob_adapters.vertex import machines
from unijob_adapters.vertex.options import VertexOptions, resolve_location, resolve_project
from unijob_adapters.vertex.tables import (DEFAULT_BOOT_DISK_GB, SKLEARN_TRAINING_VERSIONS, pytorch_training_image,
                                          sklearn_training_image)
from unijob_adapters.vertex.validate import rest_json

TARGET = "vertex"
SUBMISSION_LABEL = "unijob_submission"
ATTEMPT_LABEL = "unijob_attempt"
_MAX_DURATION = 315_576_000_000  # seconds: google.protobuf.Duration (duration.proto) allows +-10,000 years
#: Secret schemes a Vertex job can resolve at run time through unijob.runtime (its service account
#: reads Secret Manager; AWS refs need credentials the job brings itself).
ACCEPTED_SECRET_SCHEMES = ("gcp-secretmanager", "aws-secretsmanager")


def submission_key(submission_id: str) -> str:
    """A label-safe key for ``submission_id``: the first 16 hex digits of its sha256."""
    return hashlib.sha256(submission_id.encode()).hexdigest()[:16]


def display_name(spec_name: str, submission_id: str) -> str:
    """``<spec.name>-<10 hex digits of sha256(submission_id)>``: the same for a retried submission."""
    return f"{spec_name}-{hashlib.sha256(submission_id.encode()).hexdigest()[:10]}"


def gcs_fuse_path(uri: str) -> str:
    """``gs://bucket/path`` -> ``/gcs/bucket/path`` (where Vertex jobs see the bucket)."""
    return "/gcs/" + uri[len("gs://"):]


#: The targets whose runtime envs the wheel in a Vertex bundle carries.
WHEEL_TARGETS = ("vertex",)
#: Where the launcher unpacks the bundle inside the container.
SRC_DIR = "/tmp/unijob-src"


def pack_source(src: Path, wheel: Any = None, exclude: Sequence[str] = ()) -> bytes:
    """The bundle of a script job: ``src`` (less ``exclude``, :func:`unijob.bundle.local_outputs`)
    plus unijob's runtime wheel at its root, as a deterministic gzip tarball
    (:func:`unijob.bundle.pack_dir`): equal trees give equal bytes, so the sha256 names the content.

    Raises:
        FileNotFoundError: ``src`` is not a directory.
    """
    from unijob import bundle

    wheel = wheel or bundle.runtime_wheel(WHEEL_TARGETS)
    return bundle.pack_dir(src, {wheel.filename: wheel.data}, exclude=exclude)


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith(("file://", "pvc://")) or uri.startswith("dbfs:")


def _env_contract(spec: Any, name: str) -> tuple[dict[str, str], list[str]]:
    env: dict[str, str] = dict(spec.env)
    warnings: list[str] = []
    env["UNIJOB_JOB_NAME"] = name
    env["UNIJOB_TARGET"] = TARGET
    if spec.checkpoint:
        uri = spec.checkpoint.uri
        if not uri.startswith("gs://"):
            raise SpecError.at(("checkpoint", "uri"), f"a Vertex job cannot reach {uri!r}; expected a gs:// URI")
        env["UNIJOB_CHECKPOINT_URI"] = uri
        env["UNIJOB_CHECKPOINT_DIR"] = gcs_fuse_path(uri)
    elif spec.spot.is_spot:
        warnings.append("spot without a checkpoint: a preempted job restarts from the beginning")
    if spec.output:
        env["UNIJOB_OUTPUT_URI"] = spec.output
    channels: dict[str, str] = {}
    for ch, uri in spec.inputs.items():
        if _is_local(uri):
            raise SpecError.at(("inputs", ch), f"a Vertex job cannot read the local path {uri!r}; "
                                               "expected a gs:// URI (mounted at /gcs/BUCKET in the job)")
        channels[ch] = gcs_fuse_path(uri) if uri.startswith("gs://") else uri
    env["UNIJOB_CHANNELS"] = json.dumps(channels, sort_keys=True)
    env["UNIJOB_HYPERPARAMETERS"] = json.dumps(spec.hyperparameters, sort_keys=True)
    refs: dict[str, str] = {}
    for var, ref in spec.secrets.items():
        scheme = ref.split("://", 1)[0]
        if scheme not in ACCEPTED_SECRET_SCHEMES:
            why = ("env:// is resolved where the job is submitted and only the local target takes it"
                   if scheme == "env" else f"a Vertex job cannot read {scheme}:// references")
            raise SpecError.at(("secrets", var), f"{why}; store the secret in Secret Manager and use "
                                                 "gcp-secretmanager://projects/P/secrets/S[/versions/V]")
        refs[var] = ref
    env["UNIJOB_SECRET_REFS"] = json.dumps(refs, sort_keys=True)
    return env, warnings


def _launcher(spec: Any, tarball_uri: str, wheel_filename: str) -> list[str]:
    """The container command of a script job (``bash -c``; the job's args follow as ``"$@"``):
    unpack the bundle from the Cloud Storage FUSE mount, install the runtime wheel from it with no
    index (:func:`unijob.bundle.install_argv`), install ``requirements``, then start the script:
    ``python3 <script>`` for one process per node (every prebuilt container has Python, none is
    needed besides), or ``torchrun`` for several processes per node (PyTorch containers carry it;
    the launcher fails with a clear line if the image has none)."""
    from unijob import bundle

    ppn = int(spec.resources.processes_per_node or 1)
    lines = [
        "set -e",
        f"mkdir -p {SRC_DIR}",
        "python3 -c 'import sys,tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "
        f"{shlex.quote(gcs_fuse_path(tarball_uri))} {SRC_DIR}",
        f"cd {SRC_DIR}",
        shlex.join(bundle.install_argv("./" + wheel_filename, python="python3")),
    ]
    if spec.requirements:
        req = spec.resolve_path(spec.requirements)
        try:
            rel = req.relative_to(spec.source_path).as_posix()
        except ValueError:
            raise SpecError.at(("requirements",), f"{spec.requirements} must be inside the source directory "
                                                  f"{spec.source_path} to ship with a Vertex job") from None
        lines.append(f"python3 -m pip install --no-cache-dir --disable-pip-version-check -r {shlex.quote(rel)}")
    script = shlex.quote(spec.script_relpath)
    if ppn == 1:
        lines.append(f'exec python3 {script} "$@"')
    else:
        lines += [
            "command -v torchrun >/dev/null || { echo \"unijob: torchrun is not in this image; "
            f"{ppn} processes per node need a PyTorch training container\" >&2; exit 127; }}",
            f"exec torchrun --nnodes=${{WORLD_SIZE:-1}} --node-rank=${{RANK:-0}} --nproc-per-node={ppn} "
            f"--master-addr=${{MASTER_ADDR:-127.0.0.1}} --master-port=${{MASTER_PORT:-29500}} "
            f'{script} "$@"']
    return ["bash", "-c", "\n".join(lines), "unijob-launch"]


def _script_image(spec: Any, machine: Any) -> tuple[str, Any]:
    if spec.framework.name == "sklearn":
        if machine.accelerator is not None:
            raise SpecError.at(("resources", "accelerator"), "the Vertex scikit-learn training containers are CPU "
                                                             "only; drop the accelerator or use framework pytorch")
        if int(spec.resources.processes_per_node or 1) > 1:
            raise SpecError.at(("resources", "processes_per_node"),
                               "the Vertex scikit-learn containers have no torchrun to start several processes per "
                               "node; use 1 (one process per node) or framework pytorch")
        try:
            return sklearn_training_image(spec.framework.version), None
        except KeyError:
            raise SpecError.at(("framework", "version"), f"no Vertex prebuilt scikit-learn training container for "
                                                         f"{spec.framework.version}; available: "
                                                         f"{', '.join(SKLEARN_TRAINING_VERSIONS)}") from None
    try:
        return pytorch_training_image(spec.framework.version, gpu=machine.accelerator is not None)
    except KeyError:
        raise SpecError.at(("framework", "version"), f"no Vertex prebuilt PyTorch training container for "
                                                     f"{spec.framework.version}; expected 1.13 or newer") from None


def _staging(opts: VertexOptions, spec: Any) -> str:
    if opts.staging_bucket:
        return opts.staging_bucket
    if spec.output and spec.output.startswith("gs://"):
        return "gs://" + spec.output[len("gs://"):].split("/", 1)[0] + "/unijob-staging"
    raise SpecError.at(("targets", TARGET, "staging_bucket"),
                       "a script job needs a gs:// staging bucket for its source; set staging_bucket "
                       "or a gs:// output")


def resolve_where(opts: VertexOptions) -> tuple[str, str]:
    """(project, location) from options or environment.

    Raises:
        SpecError: at ``targets.vertex.project`` / ``targets.vertex.location`` when neither gives one.
    """
    project = resolve_project(opts)
    if not project:
        raise SpecError.at(("targets", TARGET, "project"),
                           "no Google Cloud project: set targets.vertex.project or GOOGLE_CLOUD_PROJECT")
    location = resolve_location(opts)
    if not location:
        raise SpecError.at(("targets", TARGET, "location"),
                           "no Vertex region: set targets.vertex.location or CLOUD_ML_REGION (e.g. us-central1)")
    return project, location


def build_job_plan(spec: Any, submission_id: str, opts: VertexOptions) -> Plan:
    """The plan of one CustomJob (and its on-demand fallback for ``spot_with_fallback``).

    Raises:
        SpecError: no project/location, non-gs:// output/checkpoint/staging, an accelerator or count
            Vertex does not offer, a secret reference a Vertex job cannot resolve.
    """
    project, location = resolve_where(opts)
    if spec.output and not spec.output.startswith("gs://"):
        raise SpecError.at(("output",), f"Vertex writes outputs to Cloud Storage; expected a gs:// URI, got {spec.output!r}")
    res = spec.resources
    machine = machines.choose(res.accelerator, res.instance_type, cpus=res.cpus, memory_gib=res.memory_gib)
    name = display_name(spec.name, submission_id)
    env, warnings = _env_contract(spec, name)
    notes: list[str] = []
    uploads: list[Upload] = []

    if spec.image:
        container: dict[str, Any] = {"image_uri": spec.image, "args": list(spec.args)}
        if spec.command:
            container["command"] = list(spec.command)
    else:
        from unijob import bundle

        skip = bundle.local_outputs(spec)
        try:
            bundle.check_source_size(spec.source_path, exclude=skip)
        except FileNotFoundError:
            raise SpecError.at(("source_dir",), f"no such directory: {spec.source_path}") from None
        wheel = bundle.runtime_wheel(WHEEL_TARGETS)
        data = pack_source(spec.source_path, wheel, skip)
        digest = hashlib.sha256(data).hexdigest()
        dest = f"{_staging(opts, spec)}/unijob/src/{digest}/sourcedir.tar.gz"
        uploads.append(Upload(source=str(spec.source_path), destination=dest, sha256=digest, kind="sourcedir",
                              exclude=list(skip)))
        uploads.append(Upload(source=wheel.filename, destination=f"{dest}#{wheel.filename}", sha256=wheel.sha256,
                              kind="runtime-wheel"))
        image, sub_note = _script_image(spec, machine)
        if sub_note:
            notes.append(sub_note)
        ppn = int(res.processes_per_node or 1)
        container = {"image_uri": image, "command": _launcher(spec, dest, wheel.filename),
                     "args": list(spec.args)}
        runner = "python3" if ppn == 1 else f"torchrun ({ppn} processes per node)"
        notes.append(f"script job: source and the runtime ({wheel.filename}) uploaded to {dest}, run by "
                     f"{runner} in {image}")
    container["env"] = [{"name": k, "value": v} for k, v in sorted(env.items())]

    pool = {"machine_spec": machine.spec(), "container_spec": container,
            "disk_spec": {"boot_disk_type": opts.boot_disk_type,
                          "boot_disk_size_gb": int(res.disk_gib or DEFAULT_BOOT_DISK_GB)}}
    pools = [dict(copy.deepcopy(pool), replica_count=1)]
    if res.nodes > 1:
        pools.append(dict(copy.deepcopy(pool), replica_count=res.nodes - 1))

    spot = spec.spot.is_spot
    restart = opts.restart_job_on_worker_restart
    for loc, seconds in ((("max_run",), spec.max_run), (("spot", "max_wait"), spec.spot.max_wait or 0)):
        if seconds > _MAX_DURATION:  # google.protobuf.Duration's range; the conversion raises past it
            raise SpecError.at(loc, f"{int(seconds):,} s is beyond the longest duration Vertex AI takes "
                                    f"(google.protobuf.Duration: {_MAX_DURATION:,} s, 10,000 years)")
    scheduling: dict[str, Any] = {
        "timeout": {"seconds": int(spec.max_run)},
        "strategy": "SPOT" if spot else "ON_DEMAND",
        "restart_job_on_worker_restart": res.nodes > 1 if restart is None else restart,
        "disable_retries": (spec.spot.max_restarts == 0) if opts.disable_retries is None else opts.disable_retries,
    }
    if spot and spec.spot.max_wait and spec.spot.max_wait > spec.max_run:
        # unijob's max_wait is wait + run (SageMaker semantics); Vertex's is the wait alone.
        scheduling["max_wait_duration"] = {"seconds": int(spec.spot.max_wait - spec.max_run)}

    job_spec: dict[str, Any] = {"worker_pool_specs": pools, "scheduling": scheduling}
    if spec.output:
        job_spec["base_output_directory"] = {"output_uri_prefix": spec.output}
    for key in ("service_account", "network", "tensorboard"):
        if getattr(opts, key):
            job_spec[key] = getattr(opts, key)
    if opts.reserved_ip_ranges:
        job_spec["reserved_ip_ranges"] = list(opts.reserved_ip_ranges)

    labels = dict(spec.labels)
    labels.update({"unijob_job": spec.name, SUBMISSION_LABEL: submission_key(submission_id),
                   ATTEMPT_LABEL: "spot" if spot else "primary"})
    job: dict[str, Any] = {"display_name": name, "job_spec": job_spec, "labels": labels}
    if opts.encryption_key:
        job["encryption_spec"] = {"kms_key_name": opts.encryption_key}

    parent = f"projects/{project}/locations/{location}"
    api = f"POST /v1/{parent}/customJobs"
    body = rest_json("CustomJob", job)
    requests = [NativeRequest(api=api, body=body, note=f"CustomJob {name}: {res.nodes} x {machine.machine_type}")]
    if spec.spot.policy == "spot_with_fallback":
        fb = copy.deepcopy(job)
        fb["display_name"] = name + "-od"
        fb["labels"][ATTEMPT_LABEL] = "fallback"
        fb["job_spec"]["scheduling"]["strategy"] = "ON_DEMAND"
        fb["job_spec"]["scheduling"].pop("max_wait_duration", None)
        requests.append(NativeRequest(
            api=api, body=rest_json("CustomJob", fb), when="fallback",
            note="sent only if the spot job fails for capacity/stockout/max-wait before training starts"))
        notes.append("spot_with_fallback: Vertex has no native fallback; if the SPOT job fails for capacity "
                     f"before training starts, unijob submits {name}-od ON_DEMAND, resuming from "
                     f"{spec.checkpoint.uri if spec.checkpoint else 'scratch (no checkpoint set)'}")

    return Plan(
        target=TARGET, kind="job", name=name, submission_id=submission_id, requests=requests, uploads=uploads,
        resources=PlanResources(service="vertex-training", region=location, instance_type=machine.machine_type,
                                instance_count=res.nodes, accelerator=machine.accelerator,
                                accelerators_per_node=machine.accelerator_count,
                                hours=spec.expected_seconds / 3600.0, spot=spec.spot.policy),
        notes=notes, warnings=warnings,
        extra={"project": project, "location": location, "parent": parent,
               "submission_key": submission_key(submission_id),
               "api_endpoint": opts.api_endpoint, "logging_endpoint": opts.logging_endpoint,
               "storage_endpoint": opts.storage_endpoint},
    )


def _to_json(message: Any) -> dict[str, Any]:
    """A proto-plus message as the REST API receives it (camelCase, enum names, int64 strings)."""
    return json.loads(type(message).to_json(message, use_integers_for_enums=False,
                                            always_print_fields_with_no_presence=False))


def proto_from_body(cls: Any, body: dict[str, Any]) -> Any:
    """The inverse of :func:`_to_json`; unknown fields raise."""
    return cls.from_json(json.dumps(body), ignore_unknown_fields=False)


def source_bytes(plan_upload: Upload) -> bytes:
    """Re-pack an upload's source at submit time.

    Raises:
        SpecError: the source changed since the plan (its sha256 differs).
    """
    data = pack_source(Path(plan_upload.source), exclude=plan_upload.exclude)
    digest = hashlib.sha256(data).hexdigest()
    if plan_upload.sha256 and digest != plan_upload.sha256:
        raise SpecError.at(("source_dir",), "the source directory changed after the plan was made; plan again")
    return data

