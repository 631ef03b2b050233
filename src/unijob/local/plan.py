"""Build the ``local:launch`` request: everything the supervisor needs to run a gang, as data.

The body (what ``plan.json`` holds and the supervisor reads)::

    {"job_dir", "argv", "cwd", "nodes", "processes_per_node", "world_size",
     "env": {non-secret env shared by every rank: spec.env + the UNIJOB_* contract},
     "secret_refs": {NAME: reference}   # references only; env:// resolved by the supervisor
     "master_addr", "master_port" (None = pick a free port at each launch),
     "max_run", "max_restarts", "simulate_preemption", "grace",
     "checkpoint": {"uri", "dir", "keep"} | None, "channels": {name: path or URI},
     "output_dir", "output_uri"}

Local paths (relative ones resolve against the spec's directory; ``file://`` is stripped) become
absolute paths; other URIs (``s3://``, ``gs://``, ``dbfs:/``...) pass through for
:mod:`unijob.runtime` (fsspec) to open.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Optional

from unijob.errors import SpecError
from unijob.local.options import LocalOptions
from unijob.paths import local_jobs_dir

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
MAX_NAME = 63
RANKS_PER_CPU = 8
MIN_RANKS = 64
"""The local target runs at most ``max(MIN_RANKS, RANKS_PER_CPU x usable CPUs)`` ranks. Past
that a CPU gang only time-slices (torchrun's CPU default is one process per core) and what fails
is the machine (processes, memory, open logs); a 1,048,576-rank gang used to be planned and
started silently. The floor keeps small test gangs (a 32-rank rehearsal of a 4 x 8 GPU job)
runnable on a 2-CPU laptop or CI runner: 64 idle Python processes need ~2 GiB."""


def max_ranks() -> tuple[int, str]:
    """``(limit, reason)``: the largest gang this machine starts (see :data:`MIN_RANKS`; CPUs are
    those this process may use, ``os.sched_getaffinity``), and below the soft process limit
    (``ulimit -u``)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    limit = max(MIN_RANKS, RANKS_PER_CPU * cpus)
    reason = f"{RANKS_PER_CPU} x the {cpus} CPU(s) of this machine, at least {MIN_RANKS}"
    try:
        import resource

        nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    except (ImportError, AttributeError, OSError, ValueError):
        nproc = -1
    if 0 <= nproc - 1 < limit:  # one process is the supervisor
        limit, reason = max(nproc - 1, 0), f"the process limit (ulimit -u {nproc}) less the supervisor"
    return limit, reason


def check_gang_size(spec: Any) -> None:
    """Refuse a gang this machine cannot start (see :func:`max_ranks`).

    Raises:
        SpecError: at ``resources``, with the world size and the limit.
    """
    res = spec.resources
    limit, reason = max_ranks()
    if res.world_size > limit:
        raise SpecError.at(("resources",), f"{res.nodes:,} nodes x {res.processes_per_node:,} processes = "
                           f"{res.world_size:,} ranks; the local target starts at most {limit:,} ranks here "
                           f"({reason}); lower nodes or processes_per_node, or pick a cloud target")


def native_name(spec_name: str, submission_id: str) -> str:
    """``<spec.name>-<8 hex of sha256(submission_id)>``, a DNS-1123 label of at most 63 chars."""
    digest = hashlib.sha256(submission_id.encode()).hexdigest()[:8]
    return f"{spec_name[: MAX_NAME - 9].rstrip('-')}-{digest}"


def local_path(spec: Any, uri: str) -> Optional[str]:
    """The absolute local path ``uri`` names, or ``None`` when it is a remote URI."""
    m = _SCHEME.match(uri)
    if m:
        if m.group(1).lower() != "file":
            return None
        uri = uri[len("file://"):] if uri.lower().startswith("file://") else uri[len("file:"):]
    try:
        p = Path(uri).expanduser()
        return str(p if p.is_absolute() else (spec.base_dir / p).resolve())
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a name too long: the job reports it
        return os.path.normpath(spec.base_dir / uri)


def shared_fs_env(spec: Any, *, output_dir: bool) -> tuple[dict[str, str], Optional[str]]:
    """unijob's env contract for the data locations of a job whose nodes see this machine's file
    system (Slurm, Ray): ``UNIJOB_CHANNELS``, ``UNIJOB_OUTPUT_URI`` (and ``UNIJOB_OUTPUT_DIR`` with
    ``output_dir``), ``UNIJOB_CHECKPOINT_URI``/``_DIR`` and ``UNIJOB_SECRET_REFS`` (references only;
    ``env://`` ones are resolved at submit). Local paths become absolute (:func:`local_path`).

    Returns:
        ``(env, local output path or None)``, in that key order.
    """
    env: dict[str, str] = {}
    channels = {ch: (local_path(spec, uri) or uri) for ch, uri in sorted(spec.inputs.items())}
    env["UNIJOB_CHANNELS"] = json.dumps(channels, sort_keys=True, separators=(",", ":"))
    out = None
    if spec.output:
        out = local_path(spec, spec.output)
        env["UNIJOB_OUTPUT_URI"] = out or spec.output
        if out and output_dir:
            env["UNIJOB_OUTPUT_DIR"] = out
    if spec.checkpoint:
        ck = local_path(spec, spec.checkpoint.uri)
        env["UNIJOB_CHECKPOINT_URI"] = ck or spec.checkpoint.uri
        if ck:
            env["UNIJOB_CHECKPOINT_DIR"] = ck
    refs = {k: v for k, v in sorted(spec.secrets.items()) if not v.startswith("env://")}
    if refs:
        env["UNIJOB_SECRET_REFS"] = json.dumps(refs, sort_keys=True, separators=(",", ":"))
    return env, out


def argv_for(spec: Any, opts: LocalOptions) -> tuple[list[str], str, list[str]]:
    """``(argv, cwd, notes)`` of the rank processes.

    Raises:
        SpecError: an ``image`` job without ``run_image_command``, or without ``command``.
    """
    if spec.script:
        return [opts.python, "-u", spec.script_relpath, *spec.args], str(spec.source_path), []
    if not opts.run_image_command:
        raise SpecError.at(
            ("image",),
            "the local target runs no containers (no container runtime on this machine); use a "
            "script job, or set targets.local.run_image_command: true to run command + args on the host")
    if not spec.command:
        raise SpecError.at(("command",), "with targets.local.run_image_command the local target runs "
                           "command + args on the host, and the image's own entrypoint is unknown: give command")
    note = (f"image {spec.image} is not run: command + args run directly on this host in {spec.base_dir} "
            "(targets.local.run_image_command)")
    return [*spec.command, *spec.args], str(spec.base_dir), [note]


def build_body(spec: Any, submission_id: str, opts: LocalOptions) -> tuple[dict[str, Any], list[str], list[str]]:
    """The ``local:launch`` body, plus plan notes and warnings. Pure (reads no network, writes nothing).

    Raises:
        SpecError: see :func:`argv_for`; ``simulate_preemption`` without a spot policy; a gang
            larger than :func:`max_ranks`.
    """
    check_gang_size(spec)
    notes: list[str] = []
    warnings: list[str] = []
    if opts.simulate_preemption is not None and not spec.spot.is_spot:
        raise SpecError.at(("targets", "local", "simulate_preemption"),
                           "a simulated preemption needs spot.policy 'spot' or 'spot_with_fallback' "
                           f"(got '{spec.spot.policy}'): on-demand capacity is not reclaimed")
    argv, cwd, more = argv_for(spec, opts)
    notes += more
    name = native_name(spec.name, submission_id)
    job_dir = local_jobs_dir(create=False) / name

    channels: dict[str, str] = {}
    for ch, uri in sorted(spec.inputs.items()):
        channels[ch] = local_path(spec, uri) or uri
    if spec.output:
        out_local = local_path(spec, spec.output)
        output_uri, output_dir = (out_local, out_local) if out_local else (spec.output, None)
    else:
        output_uri = output_dir = str(job_dir / "output")
    checkpoint = None
    if spec.checkpoint:
        ck_local = local_path(spec, spec.checkpoint.uri)
        checkpoint = {"uri": ck_local or spec.checkpoint.uri, "dir": ck_local, "keep": spec.checkpoint.keep}
    elif spec.spot.is_spot:
        warnings.append("spot policy without a checkpoint: a preempted gang restarts from scratch")

    refs = dict(sorted(spec.secrets.items()))
    env: dict[str, str] = dict(sorted(spec.env.items()))
    env.update({
        "PYTHONUNBUFFERED": "1",
        "UNIJOB_JOB_NAME": spec.name,
        "UNIJOB_JOB_ID": name,
        "UNIJOB_TARGET": "local",
        "UNIJOB_OUTPUT_URI": output_uri,
        "UNIJOB_NODES": str(spec.resources.nodes),
        "UNIJOB_CHANNELS": json.dumps(channels, sort_keys=True),
        "UNIJOB_HYPERPARAMETERS": json.dumps(spec.hyperparameters, sort_keys=True),
    })
    if output_dir:
        env["UNIJOB_OUTPUT_DIR"] = output_dir
    if checkpoint:
        env["UNIJOB_CHECKPOINT_URI"] = checkpoint["uri"]
        if checkpoint["dir"]:
            env["UNIJOB_CHECKPOINT_DIR"] = checkpoint["dir"]
    passthrough = {k: v for k, v in refs.items() if not v.startswith("env://")}
    if passthrough:
        env["UNIJOB_SECRET_REFS"] = json.dumps(passthrough, sort_keys=True)
        notes.append(f"secrets {', '.join(passthrough)} are resolved inside the job by unijob.runtime "
                     "(UNIJOB_SECRET_REFS)")
    if any(v.startswith("env://") for v in refs.values()):
        notes.append("env:// secrets are read from the submitting shell's environment when the gang "
                     "launches; their values are never written to the job directory")
    if spec.resources.processes_per_node > 1 and "OMP_NUM_THREADS" not in spec.env:
        env["OMP_NUM_THREADS"] = "1"  # torchrun's default for nproc_per_node > 1
        notes.append("OMP_NUM_THREADS=1 per rank (torchrun's default with several processes per node)")

    if spec.resources.accelerator:
        warnings.append(f"resources.accelerator {spec.resources.accelerator}: the local target assigns no "
                        "accelerators; the gang runs on CPU")
    if spec.requirements:
        warnings.append(f"requirements {spec.requirements} are not installed by the local target; install them "
                        f"into {opts.python} yourself")
    if spec.spot.policy == "spot_with_fallback":
        notes.append("spot_with_fallback: this machine is its own fallback; preemptions (simulated) relaunch "
                     "the gang here, bounded by spot.max_restarts")
    if opts.simulate_preemption is not None:
        notes.append(f"simulated preemption {opts.simulate_preemption} s after (re)start, "
                     f"{opts.simulate_preemptions} time(s); SIGTERM, "
                     f"{opts.preemption_grace} s grace, SIGKILL, relaunch (at most {spec.spot.max_restarts} times)")

    body = {
        "job_dir": str(job_dir),
        "argv": argv,
        "cwd": cwd,
        "nodes": spec.resources.nodes,
        "processes_per_node": int(spec.resources.processes_per_node),
        "world_size": spec.resources.world_size,
        "env": env,
        "secret_refs": refs,
        "master_addr": opts.master_addr,
        "master_port": opts.master_port,
        "max_run": spec.max_run,
        "max_restarts": spec.spot.max_restarts,
        "simulate_preemption": opts.simulate_preemption,
        "simulate_preemptions": opts.simulate_preemptions,
        "grace": opts.preemption_grace,
        "checkpoint": checkpoint,
        "channels": channels,
        "output_uri": output_uri,
        "output_dir": output_dir,
    }
    return body, notes, warnings
