"""``plan()`` for Slurm: the exact batch script ``sbatch`` receives, its ``#SBATCH`` options, and
what ``submit`` stages beside it. Pure: reads the spec's own files, opens no connection.

Staging layout under ``targets.slurm.staging_dir`` (a filesystem every node sees)::

    src/<sha256 of the source tarball>/        the script's source_dir, unpacked once per content
    wheels/<runtime wheel file>                unijob's runtime wheel (unijob.bundle.runtime_wheel)
    site/<wheel sha256[:16]>/                  that wheel installed with pip --target, once per hash
    envs/<sha256[:16] of python + requirements>/   a venv for requirements (see below), once per hash
    jobs/<job name>/job.sbatch                 the batch script; sbatch runs here, so relative
    jobs/<job name>/slurm-<job id>.out         #SBATCH --output lands here (append: every attempt)
    jobs/<job name>/rank-<rank>.out            each rank's stdout+stderr (srun --output, append)
    jobs/<job name>/attempts                   one line per (re)start: time, SLURM_RESTART_COUNT, job id

The runtime reaches the job without touching the cluster's Python: the batch script installs the
wheel with ``pip install --no-deps --no-index --target site/<hash>`` once per wheel (measured on
this machine: 1.8 s once, then imports as fast as an installed package; importing the wheel
directly as a zip on ``PYTHONPATH`` cannot load the adapters' ``unijob_adapters`` namespace
package, which zipimport does not support) and puts that directory first on ``PYTHONPATH``.
``requirements`` go into a venv of the job's Python created once per (python, requirements)
hash, whose ``.pth`` file adds the job Python's own site directories, so what is already there is
reused and only what is missing is installed, into the venv.

The gang: the batch script starts ``srun --kill-on-bad-exit=1`` with one task per rank
(``--ntasks-per-node`` = processes per node); each task exports ``RANK``/``WORLD_SIZE``/
``LOCAL_RANK``/``NODE_RANK`` from ``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID``/
``SLURM_NODEID`` before it execs the user's command. ``MASTER_ADDR`` is the address
(``NodeAddr``) of the first host of ``SLURM_JOB_NODELIST``; ``MASTER_PORT`` is
``master_port_base + SLURM_JOB_ID mod 10000``.

Preemption (Slurm "Preemption" guide, slurm.schedmd.com/preempt.html; sbatch(1) ``--signal``,
``--requeue``): spot jobs run in the preemptible partition or QoS with ``--requeue`` and
``--signal=B:TERM@<grace>``. With ``SlurmctldParameters=preempt_send_user_signal`` the batch shell
gets SIGTERM when the job is picked for preemption; it forwards SIGTERM to every rank
(``scancel --signal=TERM <job id>``: the steps, not the batch shell), where
``unijob.runtime.preempted()`` turns true, waits for the ranks to checkpoint and exit, then waits to
be requeued (a job that exits by itself inside ``GraceTime`` ends FAILED instead of requeued on
Slurm 22.05, checked on this machine). Slurm requeues it; the next start sees
``SLURM_RESTART_COUNT``. A start beyond ``spot.max_restarts`` fails the job.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from pathlib import Path
from typing import Any, Optional

from unijob.contract import NativeRequest, Plan, PlanResources, Upload
from unijob.errors import SpecError
from unijob.local.plan import local_path, shared_fs_env  # one resolver for local paths (symlink loops, long names)

from .options import SlurmOptions

MAX_NAME = 63
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
REQUIREMENTS_NAME = ".unijob-requirements.txt"


def native_name(spec_name: str, submission_id: str) -> str:
    """The Slurm job name: ``<spec.name>-<8 hex of sha256(submission_id)>``. It carries the
    submission key, so ``submit`` finds an earlier job of the same submission by name."""
    digest = hashlib.sha256(submission_id.encode()).hexdigest()[:8]
    return f"{spec_name[: MAX_NAME - 9].rstrip('-')}-{digest}"


def slurm_time(seconds: int) -> str:
    """``--time`` in Slurm's ``days-hours:minutes:seconds`` form (sbatch(1) ``--time``)."""
    days, rest = divmod(int(seconds), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{days}-{h:02d}:{m:02d}:{s:02d}"


def build(spec: Any, submission_id: str, opts: SlurmOptions, target: str = "slurm") -> Plan:
    """The plan of one job: ``sbatch --parsable`` with the batch script on stdin, run in the job's
    staging directory, after the uploads.

    Raises:
        SpecError: an image job (Slurm runs no containers here), a spot policy without a
            preemptible partition or QoS, an ``env://`` secret over SSH, a variable unijob sets in
            ``env``, a source directory above the size limit.
    """
    from unijob import bundle

    res = spec.resources
    nodes, nproc = res.nodes, int(res.processes_per_node or 1)
    name = native_name(spec.name, submission_id)
    notes: list[str] = []
    warnings: list[str] = []
    if not spec.script:
        raise SpecError.at(("image",), "the slurm target runs script jobs (script + source_dir) with the job's "
                                       "Python (targets.slurm.python); it runs no container images")
    staging = opts.staging_dir.rstrip("/") or "/"
    job_dir = f"{staging}/jobs/{name}"

    # ---- what submit stages ---------------------------------------------------------------------
    skip = bundle.local_outputs(spec)
    bundle.check_source_size(spec.source_path, exclude=skip)
    extra: dict[str, Any] = {}
    req_rel = None
    if spec.requirements:
        req_path = spec.resolve_path(spec.requirements)
        extra[REQUIREMENTS_NAME] = req_path
        req_rel = REQUIREMENTS_NAME
    tarball = bundle.pack_dir(spec.source_path, extra, exclude=skip)
    src_sha = bundle.sha256(tarball)
    wheel = bundle.runtime_wheel([target])
    site_key = wheel.sha256[:16]
    env_key = None
    if req_rel:
        env_key = hashlib.sha256(opts.python.encode() + b"\0" + Path(extra[REQUIREMENTS_NAME]).read_bytes()).hexdigest()[:16]
    uploads = [
        Upload(source=str(spec.source_path), destination=f"{staging}/src/{src_sha}", sha256=src_sha, kind="directory",
               exclude=list(skip)),
        Upload(source=f"unijob runtime wheel {wheel.version}", destination=f"{staging}/wheels/{wheel.filename}",
               sha256=wheel.sha256, kind="file"),
    ]

    # ---- #SBATCH options ------------------------------------------------------------------------
    sb: list[str] = [f"--job-name={name}", f"--nodes={nodes}", f"--ntasks-per-node={nproc}"]
    if res.accelerator:
        sb.append(f"--gpus-per-node={opts.gres_name(res.accelerator_type)}:{res.accelerator_count}")
    cpt = opts.cpus_per_task or (max(int(res.cpus // nproc), 1) if res.cpus else None)
    if cpt:
        sb.append(f"--cpus-per-task={cpt}")
    if res.memory_gib:
        sb.append(f"--mem={int(res.memory_gib * 1024)}M")
    sb.append(f"--time={slurm_time(spec.max_run)}")
    partition, qos, spot_notes = _placement(spec, opts, target)
    notes += spot_notes
    if partition:
        sb.append(f"--partition={partition}")
    if qos:
        sb.append(f"--qos={qos}")
    if opts.account:
        sb.append(f"--account={opts.account}")
    if spec.spot.is_spot:
        sb += ["--requeue", f"--signal=B:TERM@{opts.grace_seconds}"]
        if not spec.checkpoint:
            warnings.append("spot without checkpoint: a preempted (requeued) job restarts from scratch")
    else:
        sb.append("--no-requeue")
    sb += ["--open-mode=append", "--output=slurm-%j.out"]
    if re.fullmatch(r"[A-Za-z0-9_.:+-]{1,128}", submission_id):
        sb.append(f"--comment=unijob-submission:{submission_id}")
    secret_env = _secret_env(spec, opts, target)
    if secret_env:
        sb.append("--export=ALL")
    sb += list(opts.sbatch_args)

    script = _script(spec, opts, name, sb, src_sha, wheel.filename, site_key, env_key, req_rel, nproc, target)
    if opts.login and any(not _SCHEME.match(u) and not u.startswith("/") for u in _paths(spec)):
        warnings.append(f"relative data paths are resolved on this machine, not on {opts.login}: give absolute paths "
                        "on the cluster's shared filesystem")

    request = NativeRequest(
        api="sbatch --parsable", body={"cwd": job_dir, "argv": ["sbatch", "--parsable"], "script": script},
        note=f"{nodes} node(s) x {nproc} task(s); batch script on stdin, run in {job_dir}")
    resources = PlanResources(
        service="slurm", instance_type=res.instance_type.get(target), instance_count=nodes,
        accelerator=res.accelerator_type, accelerators_per_node=res.accelerator_count,
        hours=spec.expected_seconds / 3600.0, spot=spec.spot.policy)
    plan_extra = {"login": opts.login, "ssh_port": opts.ssh_port, "ssh_identity": opts.ssh_identity,
                  "ssh_options": list(opts.ssh_options), "staging_dir": staging, "job_dir": job_dir,
                  "nodes": nodes, "processes_per_node": nproc, "wheel_sha256": wheel.sha256,
                  "secret_env": secret_env, "spot_partition_name": opts.spot_partition if spec.spot.is_spot else None, "requirements_path": extra.get(REQUIREMENTS_NAME) and str(extra[REQUIREMENTS_NAME]), "partition": partition, "qos": qos, "account": opts.account,
                  "gres": (opts.gres_name(res.accelerator_type) if res.accelerator else None)}
    if spec.secrets:
        notes.append("secret values never enter the script: env:// ones are exported by sbatch from the "
                     "submitting environment, others are resolved inside the job (UNIJOB_SECRET_REFS)")
    return Plan(target=target, kind="job", name=name, submission_id=submission_id, requests=[request],
                uploads=uploads, resources=resources, notes=notes, warnings=warnings, extra=plan_extra)


def _paths(spec: Any) -> list[str]:
    out = list(spec.inputs.values())
    if spec.output:
        out.append(spec.output)
    if spec.checkpoint:
        out.append(spec.checkpoint.uri)
    return out


def _placement(spec: Any, opts: SlurmOptions, target: str) -> tuple[Optional[str], Optional[str], list[str]]:
    """(partition, qos, notes) for the spot policy."""
    policy = spec.spot.policy
    if policy == "on_demand":
        return opts.partition, opts.qos, []
    has_spot = bool(opts.spot_partition or opts.spot_qos)
    if not has_spot:
        if policy == "spot":
            raise SpecError.at(("targets", target, "spot_partition"),
                               "spot.policy 'spot' needs a preemptible partition (spot_partition) or QoS (spot_qos) "
                               "of the cluster: on Slurm, spot capacity is a partition or QoS with PreemptMode=REQUEUE")
        return opts.partition, opts.qos, ["spot_with_fallback: no spot_partition or spot_qos given, so the job runs "
                                          "on-demand (the fallback) in the default placement"]
    partition = opts.spot_partition or opts.partition
    qos = opts.spot_qos or opts.qos
    notes = [f"spot: preemptible {'partition ' + opts.spot_partition if opts.spot_partition else 'QoS ' + str(opts.spot_qos)}"
             f"; a preempted job gets SIGTERM, {opts.grace_seconds} s, and is requeued by Slurm (--requeue), "
             f"at most {spec.spot.max_restarts} restart(s)"]
    if policy == "spot_with_fallback" and opts.spot_partition and opts.partition and opts.spot_partition != opts.partition:
        partition = f"{opts.spot_partition},{opts.partition}"
        notes.append(f"spot_with_fallback: --partition={partition}: Slurm starts the job in whichever partition can "
                     "start it first (sbatch(1) --partition: a list is tried by priority and availability)")
    return partition, qos, notes


def _secret_env(spec: Any, opts: SlurmOptions, target: str) -> dict[str, str]:
    """Secret name -> the submitting environment's variable (``env://VAR``) that sbatch exports."""
    out = {}
    for k, ref in sorted(spec.secrets.items()):
        if ref.startswith("env://"):
            if opts.login:
                raise SpecError.at(("secrets", k), f"env:// secrets cannot reach a cluster behind ssh ({opts.login}) "
                                                   "without being written there; use a secret store reference")
            out[k] = ref[len("env://"):]
    return out


def _export(name: str, value: str) -> str:
    return f"export {name}={shlex.quote(value)}"


def _script(spec: Any, opts: SlurmOptions, name: str, sb: list[str], src_sha: str, wheel_file: str,
            site_key: str, env_key: Optional[str], req_rel: Optional[str], nproc: int, target: str) -> str:
    """The batch script (bash)."""
    env: dict[str, str] = {}
    env["UNIJOB_TARGET"] = "slurm"
    env["UNIJOB_JOB_NAME"] = spec.name
    env["UNIJOB_JOB_ID"] = name
    env["UNIJOB_NODES"] = str(spec.resources.nodes)
    env["UNIJOB_HYPERPARAMETERS"] = json.dumps(spec.hyperparameters, sort_keys=True, separators=(",", ":"))
    data_env, out_dir = shared_fs_env(spec, output_dir=False)
    env.update(data_env)
    env["UNIJOB_MAX_RESTARTS"] = str(spec.spot.max_restarts)
    env["PYTHONUNBUFFERED"] = "1"
    reserved = set(env) | {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "MASTER_ADDR",
                           "MASTER_PORT", "PYTHONPATH", "UNIJOB_OUTPUT_DIR"}
    for k in sorted(spec.env):
        if k in reserved:
            raise SpecError.at(("env", k), f"{k} is set by the slurm target (gang wiring or the unijob contract)")

    q = shlex.quote
    lines = ["#!/bin/bash"] + [f"#SBATCH {o}" for o in sb] + [
        f"# unijob: {spec.name} on slurm; staged by unijob submit; see unijob_adapters.slurm.plan",
        "set -u",
        'JOB_DIR="$SLURM_SUBMIT_DIR"',
        'STAGING="$(cd "$JOB_DIR/../.." && pwd)"',
        f'SRC="$STAGING/src/{src_sha}"',
        f"PY={q(opts.python)}",
        'echo "$(date +%s) ${SLURM_RESTART_COUNT:-0} $SLURM_JOB_ID start" >> "$JOB_DIR/attempts"',
        'if [ "${SLURM_RESTART_COUNT:-0}" -gt "$UNIJOB_MAX_RESTARTS_" ]; then',
        '  echo "unijob: restart ${SLURM_RESTART_COUNT} is more than spot.max_restarts=$UNIJOB_MAX_RESTARTS_; failing" >&2',
        "  exit 3",
        "fi",
    ]
    lines = [line.replace("$UNIJOB_MAX_RESTARTS_", str(spec.spot.max_restarts)) for line in lines]
    lines += [f"module load {q(m)}" for m in opts.modules]
    lines += list(opts.setup)
    lines += [_export(k, v) for k, v in env.items()]
    lines += [_export(k, spec.env[k]) for k in sorted(spec.env)]
    lines.append(f'export UNIJOB_OUTPUT_DIR={q(out_dir)}' if out_dir else 'export UNIJOB_OUTPUT_DIR="$JOB_DIR/output"')
    # the runtime wheel, installed once per hash into the shared staging dir (atomic rename)
    lines += [
        f'SITE="$STAGING/site/{site_key}"',
        'if [ ! -d "$SITE" ]; then',
        '  tmp="$SITE.tmp.$SLURM_JOB_ID.$$"',
        f'  "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --no-index --no-compile '
        f'--target "$tmp" "$STAGING/wheels/{wheel_file}" >&2 || {{ echo "unijob: installing the runtime wheel with $PY failed" >&2; exit 2; }}',
        '  mv -T "$tmp" "$SITE" 2>/dev/null || rm -rf "$tmp"',
        "fi",
        'export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"',
    ]
    if env_key and req_rel:
        lines += [
            f'VENV="$STAGING/envs/{env_key}"',
            'if [ ! -x "$VENV/bin/python" ]; then',
            '  tmp="$VENV.tmp.$SLURM_JOB_ID.$$"',
            '  "$PY" -m venv --without-pip "$tmp" >&2 || exit 2',
            '  "$PY" -c "import site,sys; print(chr(10).join(site.getsitepackages()+[site.getusersitepackages()]))" '
            '> "$("$tmp/bin/python" -c "import sysconfig; print(sysconfig.get_paths()[\'purelib\'])")/unijob-base.pth"',
            f'  "$tmp/bin/python" -m pip install --quiet --disable-pip-version-check -r "$SRC/{req_rel}" >&2 '
            '|| { echo "unijob: pip install -r requirements failed" >&2; rm -rf "$tmp"; exit 2; }',
            '  mv -T "$tmp" "$VENV" 2>/dev/null || rm -rf "$tmp"',
            "fi",
            'PY="$VENV/bin/python"',
        ]
    lines += [
        'FIRST_HOST="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
        'MASTER_ADDR="$(scontrol show node -o "$FIRST_HOST" | tr " " "\\n" | sed -n "s/^NodeAddr=//p")"',
        'export MASTER_ADDR="${MASTER_ADDR:-$FIRST_HOST}"',
        f"export MASTER_PORT=$(( {opts.master_port_base} + SLURM_JOB_ID % 10000 ))",
        f"export LOCAL_WORLD_SIZE={nproc}",
        'cd "$SRC"',
        # preemption notice: forward SIGTERM to every rank, then wait for Slurm to requeue this job
        'NOTICE=0',
        'trap \'NOTICE=1; echo "unijob: SIGTERM (preemption notice) at $(date +%s); forwarding to the ranks" >&2; '
        'scancel --signal=TERM "$SLURM_JOB_ID"\' TERM',
        "srun --kill-on-bad-exit=1 --open-mode=append --output=\"$JOB_DIR/rank-%t.out\" --error=\"$JOB_DIR/rank-%t.out\" "
        "bash -c 'export RANK=$SLURM_PROCID WORLD_SIZE=$SLURM_NTASKS LOCAL_RANK=$SLURM_LOCALID "
        "NODE_RANK=$SLURM_NODEID; exec \"$@\"' unijob-rank \"$PY\" -u "
        + " ".join(q(a) for a in [spec.script_relpath, *spec.args]) + " &",
        "SRUN=$!",
        'while :; do wait "$SRUN"; RC=$?; kill -0 "$SRUN" 2>/dev/null || break; done',
        'if [ "$NOTICE" = 1 ] && [ "$RC" != 0 ]; then',
        '  echo "unijob: ranks stopped after the notice (exit $RC); waiting to be requeued" >&2',
        f"  for _ in $(seq 1 {(opts.grace_seconds + 60) // 5}); do sleep 5 & wait $!; done",
        "fi",
        'exit "$RC"',
    ]
    return "\n".join(lines) + "\n"
