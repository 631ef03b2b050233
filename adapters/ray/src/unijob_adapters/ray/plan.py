"""``plan()`` for Ray: the exact ``JobSubmissionClient.submit_job`` call, and the gang launcher it runs.

Pure: reads the spec's own files and the installed unijob, opens no connection, writes nothing.

The request (``ray.job_submission.JobSubmissionClient.submit_job`` keyword arguments; docs.ray.io,
"Ray Jobs Python SDK API reference")::

    entrypoint            python -m unijob_ray_gang --nodes N --procs-per-node P --bundle '{...}'
                          --strategy STRICT_SPREAD|PACK --max-wait S --max-restarts R --max-run S -- train.py ARGS
    submission_id         <spec name>-<8 hex of sha256(submission key)>: Ray refuses a second job with
                          the same submission_id, so a retried submit cannot start a second job
    runtime_env
      working_dir         the spec's source directory (uploaded by Ray; at most 500 MiB, docs.ray.io
                          "Environment Dependencies": "The specified directory ... must be less than 500 MiB")
      py_modules          [the gang launcher package (unijob_ray_gang), carrying unijob's runtime wheel: each
                          node agent installs it once per node and wheel (pip --no-deps --no-index --target)]
      excludes            what unijob's bundles leave out, as .gitignore patterns (unijob.bundle.ignore_patterns:
                          caches, virtual environments, and the spec's local output/checkpoint directories, so
                          what a local run left in the source directory is not uploaded)
      pip                 the lines of ``requirements`` (Ray installs them in a virtualenv per job)
      env_vars            unijob's env contract (UNIJOB_*), the spec's env
    entrypoint_num_cpus   targets.ray.entrypoint_num_cpus (0: the launcher stays on the head node)
    metadata              unijob's submission key, job name and labels

Local paths in ``inputs``, ``output`` and ``checkpoint.uri`` are made absolute on this machine and
passed unchanged: every node of the cluster must see them (a shared filesystem), or use remote URIs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shlex
from pathlib import Path
from typing import Any

from unijob.contract import NativeRequest, Plan, PlanResources
from unijob.errors import SpecError
from unijob.local.plan import local_path, shared_fs_env  # one resolver for local paths (symlink loops, long names)

from .options import RayOptions

MAX_NAME = 63
#: Ray's ``working_dir`` limit (docs.ray.io, "Environment Dependencies": 500 MiB). Ray itself refuses
#: a zipped package above ``GCS_STORAGE_MAX_SIZE`` (ray/_private/runtime_env/packaging.py: the gRPC
#: message limit, 512 MiB); unijob checks the unzipped size against 500 MiB before anything is sent.
WORKING_DIR_LIMIT = 500 * 1024 * 1024
#: The fraction of an ``accelerator_type:<TYPE>`` resource a bundle asks for: Ray gives every node
#: with that accelerator ``accelerator_type:<TYPE>: 1`` and its own ``accelerator_type=`` option
#: requests 0.001 of it (ray/_common/utils.py, ``resources_from_ray_options``: ``resources[
#: f"{RESOURCE_CONSTRAINT_PREFIX}{accelerator_type}"] = 0.001``; docs.ray.io "Accelerator types").
ACCELERATOR_FRACTION = 0.001
#: Variables the launcher sets per rank; the spec's ``env`` may not set them.
RESERVED_ENV = frozenset({"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "MASTER_ADDR",
                          "MASTER_PORT", "UNIJOB_RESTART_COUNT", "UNIJOB_TARGET", "UNIJOB_NODES",
                          "UNIJOB_RAY_NODE_ID", "PYTHONPATH"})


def native_name(spec_name: str, submission_id: str) -> str:
    """The Ray ``submission_id``: ``<spec.name>-<8 hex of sha256(submission key)>``."""
    digest = hashlib.sha256(submission_id.encode()).hexdigest()[:8]
    return f"{spec_name[: MAX_NAME - 9].rstrip('-')}-{digest}"


def launcher_source() -> Path:
    """The installed ``unijob_ray_gang`` package directory (found without importing it)."""
    spec = importlib.util.find_spec("unijob_ray_gang")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("unijob_ray_gang is not installed; reinstall unijob-ray")
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def launcher_files(wheel: Any) -> dict[str, bytes]:
    """The files of the launcher package the job gets: the launcher's modules and the runtime wheel."""
    src = launcher_source()
    files = {f.name: f.read_bytes() for f in sorted(src.glob("*.py"))}
    files[wheel.filename] = wheel.data
    return files


def launcher_dir(files: dict[str, bytes]) -> Path:
    """Where ``submit`` writes the launcher package: ``<unijob home>/ray/launchers/<sha256[:16] of its
    files>/unijob_ray_gang`` (content-addressed: equal files, one directory)."""
    from unijob import paths

    digest = hashlib.sha256(b"".join(n.encode() + b"\0" + hashlib.sha256(d).digest()
                                     for n, d in sorted(files.items()))).hexdigest()[:16]
    return paths.home(create=False) / "ray" / "launchers" / digest / "unijob_ray_gang"


def bundle_for(spec: Any, opts: RayOptions) -> dict[str, float]:
    """One node's bundle: CPU (``targets.ray.cpus_per_node``, else ``resources.cpus``, else one per
    rank), GPU (the accelerator count), ``accelerator_type:<TYPE>`` and ``bundle_resources``."""
    res = spec.resources
    nproc = int(res.processes_per_node or 1)
    b: dict[str, float] = {"CPU": float(opts.cpus_per_node or res.cpus or nproc)}
    if res.accelerator:
        b["GPU"] = float(res.accelerator_count)
        b[f"accelerator_type:{res.accelerator_type}"] = ACCELERATOR_FRACTION
    if res.memory_gib:
        b["memory"] = float(int(res.memory_gib * 1024 ** 3))
    b.update({k: float(v) for k, v in opts.bundle_resources.items()})
    return b


def build(spec: Any, submission_id: str, opts: RayOptions, target: str = "ray") -> Plan:
    """The plan of one job: one ``submit_job`` call.

    Raises:
        SpecError: an image job, an elastic gang, a variable the launcher sets in ``env``, a source
            directory above Ray's 500 MiB ``working_dir`` limit.
    """
    from unijob import bundle

    res = spec.resources
    if not spec.script:
        raise SpecError.at(("image",), "the ray target runs script jobs (script + source_dir) on the cluster's "
                                       "Python; container images per job need Ray's experimental image_uri plugin "
                                       "(podman on every node), which unijob does not drive")
    if res.max_nodes and res.max_nodes != res.nodes:
        raise SpecError.at(("resources", "max_nodes"), "the ray target reserves a fixed gang (one placement group "
                                                       "of resources.nodes bundles); elastic gangs are not offered")
    for k in sorted(spec.env):
        if k in RESERVED_ENV:
            raise SpecError.at(("env", k), f"{k} is set by the ray gang launcher for every rank")
    nodes, nproc = res.nodes, int(res.processes_per_node or 1)
    name = native_name(spec.name, submission_id)
    notes: list[str] = []
    warnings: list[str] = []
    skip = bundle.local_outputs(spec)
    bundle.check_source_size(spec.source_path, limit=WORKING_DIR_LIMIT, exclude=skip,
                             why="Ray uploads working_dir to the cluster and refuses more than 500 MiB")
    wheel = bundle.runtime_wheel([target])
    launcher = launcher_dir(launcher_files(wheel))

    b = bundle_for(spec, opts)
    strategy = "STRICT_SPREAD" if nodes > 1 else "PACK"
    gang = ["--nodes", str(nodes), "--procs-per-node", str(nproc),
            "--bundle", json.dumps(b, sort_keys=True, separators=(",", ":")), "--strategy", strategy]
    if spec.spot.max_wait:
        gang += ["--max-wait", str(int(spec.spot.max_wait))]
    gang += ["--max-restarts", str(spec.spot.max_restarts), "--max-run", str(int(spec.max_run)),
             "--runtime-wheel", wheel.filename]
    if opts.master_port:
        gang += ["--master-port", str(opts.master_port)]
    entrypoint = " ".join(shlex.quote(a) for a in [opts.python, "-m", "unijob_ray_gang", *gang, "--",
                                                    spec.script_relpath, *spec.args])

    env = _env(spec, name)
    # Ray packs working_dir itself: excludes are unijob's bundle rules (caches, what a local run left)
    runtime_env: dict[str, Any] = {"working_dir": str(spec.source_path), "py_modules": [str(launcher)],
                                   "excludes": bundle.ignore_patterns(skip), "env_vars": env}
    if spec.requirements:
        lines = [ln.strip() for ln in spec.resolve_path(spec.requirements).read_text().splitlines()]
        runtime_env["pip"] = [ln for ln in lines if ln and not ln.startswith("#")]
    metadata = {"unijob_submission": submission_id, "unijob_job": spec.name,
                **{f"label_{k}": v for k, v in sorted(spec.labels.items())}, **opts.metadata}
    body = {"entrypoint": entrypoint, "submission_id": name, "runtime_env": runtime_env,
            "entrypoint_num_cpus": opts.entrypoint_num_cpus, "metadata": metadata}

    notes.append(f"gang: placement group {strategy} of {nodes} bundle(s) {json.dumps(b, sort_keys=True)}, "
                 f"{nproc} rank(s) per bundle; one failing rank stops the gang")
    notes.append(f"a lost node relaunches the gang from the latest checkpoint on a new placement group, at most "
                 f"{spec.spot.max_restarts} time(s)")
    if spec.spot.is_spot:
        notes.append("spot on Ray is the cluster's nodes: Ray has no spot market of its own; run spot nodes "
                     "(KubeRay on spot node pools, the autoscaler's spot node types) and tag them with "
                     "bundle_resources")
        if not spec.checkpoint:
            warnings.append("spot without checkpoint: a gang relaunched after a lost node starts from scratch")
    if any(local_path(spec, u) for u in _paths(spec)):
        notes.append("local paths (inputs, output, checkpoint) are passed as absolute paths of this machine: "
                     "every Ray node must see them (a shared filesystem)")
    if spec.secrets:
        notes.append("env:// secrets are read from the submitting shell at submit and passed as runtime_env "
                     "env_vars (never in the plan); other references are resolved inside the job")
    resources = PlanResources(
        service="ray", instance_type=res.instance_type.get(target), instance_count=nodes,
        accelerator=res.accelerator_type, accelerators_per_node=res.accelerator_count,
        hours=spec.expected_seconds / 3600.0, spot=spec.spot.policy)
    extra = {"address": opts.address, "launcher_dir": str(launcher), "wheel": wheel.filename,
             "nodes": nodes, "bundle": b, "strategy": strategy,
             "secret_env": {k: v[len("env://"):] for k, v in sorted(spec.secrets.items()) if v.startswith("env://")}}
    request = NativeRequest(api="ray:JobSubmissionClient.submit_job", body=body,
                            note=f"{nodes} node(s) x {nproc} rank(s) through the gang launcher")
    return Plan(target=target, kind="job", name=name, submission_id=submission_id, requests=[request],
                resources=resources, notes=notes, warnings=warnings, extra=extra)


def _paths(spec: Any) -> list[str]:
    out = list(spec.inputs.values())
    if spec.output:
        out.append(spec.output)
    if spec.checkpoint:
        out.append(spec.checkpoint.uri)
    return out


def _env(spec: Any, name: str) -> dict[str, str]:
    """``runtime_env.env_vars``: unijob's env contract plus the spec's env (no secret values)."""
    env: dict[str, str] = {"UNIJOB_JOB_NAME": spec.name, "UNIJOB_JOB_ID": name,
                           "UNIJOB_HYPERPARAMETERS": json.dumps(spec.hyperparameters, sort_keys=True,
                                                                separators=(",", ":")),
                           "UNIJOB_MAX_RESTARTS": str(spec.spot.max_restarts)}
    env.update(shared_fs_env(spec, output_dir=True)[0])
    env.update({k: spec.env[k] for k in sorted(spec.env)})
    return env
