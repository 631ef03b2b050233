"""SageMaker's training start contract, run on this machine: a CreateTrainingJob body started by the
real SageMaker training toolkit (``sagemaker-training``, the code inside AWS's training containers)
against moto's server, with no Docker and no network.

What SageMaker does with a training job, and what this runner does in its place:

=====================================================  ==============================================
SageMaker (documented contract)                        here
=====================================================  ==============================================
one instance per ``ResourceConfig.InstanceCount``,     one process tree per host; host ``i`` is the
hosts named ``algo-1..N``                              loopback address ``127.0.0.<i>`` (resolves here
                                                       without /etc/hosts; the toolkit waits forever
                                                       on a name that does not resolve)
``/opt/ml`` laid out from the request [1]:             a base dir per host, given to the toolkit as
``input/config/hyperparameters.json`` (the             ``SAGEMAKER_BASE_DIR``; ``/opt/ml`` in the
``HyperParameters`` map), ``resourceconfig.json``,     job's ``Environment`` values is rewritten to it
``inputdataconfig.json``, ``input/data/<channel>``
copied from S3 (File mode)
``checkpoints/`` (``CheckpointConfig.LocalPath``)      downloaded from ``CheckpointConfig.S3Uri``
filled from ``S3Uri`` at start, synced back [2]        before each attempt, uploaded after it
the job's ``Environment``; the image's entry point     ``clean_env`` + ``Environment``; the toolkit's
``train`` [3]; each instance its own container         ``train`` (``sagemaker_training.cli.train``) in
                                                       each host's own writable layer over ``python``
                                                       (:func:`.python_layer`)
a framework image's ``SAGEMAKER_TRAINING_MODULE``      the same variable for a PyTorch training image
(the PyTorch DLC: ``sagemaker_pytorch_container.       when ``python`` has that package
training:main`` [6]), which picks the launcher         (``sagemaker-pytorch-training``): its torchrun
(torchrun for ``sagemaker_torch_distributed_enabled``) path, as on SageMaker; else plain script mode
code from ``sagemaker_submit_directory`` (S3)          fetched from moto (``S3_ENDPOINT_URL``)
spot interruption: SIGTERM to the containers, the      :func:`run` ``preempt_when``: SIGTERM to every
job restarts with the synced checkpoints [2]           host's process group, checkpoints synced, the
                                                       job started again
``model/`` -> ``<S3OutputPath>/<job>/output/           the same keys in moto's S3
model.tar.gz``, ``output/data/`` -> ``output.tar.gz``
[1]
``/opt/ml/output/failure`` -> ``FailureReason``        read, and recorded with the final status in
(first 1024 characters) [4]; container output ->       moto's SageMaker backend (its API cannot be
CloudWatch Logs ``/aws/sagemaker/TrainingJobs``,       driven: DescribeTrainingJob is Completed at
stream ``<job>/algo-<n>-<epoch>`` [5]                  once) and each line put to moto's CloudWatch
                                                       Logs, so the adapter's ``status`` and ``logs``
                                                       read them as on SageMaker
=====================================================  ==============================================

[1] "How Amazon SageMaker Provides Training Information",
https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-running-container.html
[2] "Use checkpoints in Amazon SageMaker", https://docs.aws.amazon.com/sagemaker/latest/dg/model-checkpoints.html
[3] sagemaker-training-toolkit 5.1.4, ``sagemaker_training/cli/train.py`` and ``environment.py``
(``SAGEMAKER_BASE_DIR`` replaces ``/opt/ml``; ``S3_ENDPOINT_URL`` for the code download).
[4] "How Amazon SageMaker Processes Training Output",
https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-output.html
[5] "Log Amazon SageMaker Events with Amazon CloudWatch",
https://docs.aws.amazon.com/sagemaker/latest/dg/logging-cloudwatch.html (all read 2026-11-29).
[6] aws/deep-learning-containers, ``pytorch/training/docker/*/py3/Dockerfile.cpu``
(``ENV SAGEMAKER_TRAINING_MODULE=sagemaker_pytorch_container.training:main``); the package is
``sagemaker-pytorch-training`` 3.0.0 on PyPI (aws/sagemaker-pytorch-training-toolkit), read 2026-11-30.

Nothing here calls the adapter: the runner reads only the request body and the platform's contract.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

from . import clean_env, python_layer

OPT_ML = "/opt/ml"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
#: What SageMaker keeps of ``/opt/ml/output/failure`` as ``FailureReason`` (characters) [4].
FAILURE_REASON_MAX = 1024
#: Seconds between SIGTERM and SIGKILL of a preempted host (``docker stop``'s default is 10 s;
#: SageMaker gives spot jobs a two-minute notice, far more than these tests need).
STOP_GRACE = 30.0
#: ``SAGEMAKER_TRAINING_MODULE`` of AWS's framework training images, by ECR repository, and the
#: PyPI package that holds the module [6].
FRAMEWORK_MODULES: dict[str, tuple[str, str]] = {
    "pytorch-training": ("sagemaker_pytorch_container.training:main", "sagemaker-pytorch-training"),
}


def host_address(index: int) -> str:
    """The address standing for host ``algo-<index+1>``: ``127.0.0.<index+1>``."""
    return f"127.0.0.{index + 1}"


@dataclass
class Attempt:
    """One start of the job: every host's exit code and output lines (stdout and stderr, in order);
    ``started`` is the wall-clock time (``time.time()``) the hosts' processes were spawned."""

    exit_codes: list[Optional[int]]
    lines: list[list[str]]
    failure: Optional[str] = None
    preempted: bool = False
    started: float = 0.0
    first_line_at: list[Optional[float]] = field(default_factory=list)


@dataclass
class Outcome:
    """A job run under the contract.

    Attributes:
        name: ``TrainingJobName``.
        status: ``"Completed"`` or ``"Failed"`` (SageMaker's ``TrainingJobStatus``).
        failure_reason: the first 1024 characters of the failing host's ``output/failure``.
        attempts: every start (more than one after a preemption).
        base_dirs: each host's ``/opt/ml`` of the last attempt.
        framework_module: the image's ``SAGEMAKER_TRAINING_MODULE`` the toolkit ran, or None
            (plain script mode).
    """

    name: str
    status: str
    failure_reason: Optional[str]
    attempts: list[Attempt]
    base_dirs: list[Path]
    framework_module: Optional[str] = None

    @property
    def lines(self) -> list[list[str]]:
        """Every host's lines over all attempts."""
        hosts = len(self.base_dirs)
        return [[ln for a in self.attempts for ln in a.lines[h]] for h in range(hosts)]

    def output(self, host: int = 0) -> str:
        return "\n".join(self.lines[host])


def _s3(endpoint_url: str, region: str):
    import boto3

    return boto3.session.Session(region_name=region, aws_access_key_id="testing",
                                 aws_secret_access_key="testing").client("s3", endpoint_url=endpoint_url)


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def _download_prefix(s3: Any, uri: str, dest: Path) -> int:
    """Copy every object under ``uri`` into ``dest`` (relative keys); returns the count."""
    bucket, prefix = _split(uri.rstrip("/"))
    prefix = prefix + "/" if prefix else ""
    n = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix):]
            if not rel or rel.endswith("/"):
                continue
            path = dest / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
            n += 1
    return n


def _upload_dir(s3: Any, src: Path, uri: str) -> int:
    bucket, prefix = _split(uri.rstrip("/"))
    n = 0
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        key = "/".join(x for x in (prefix, path.relative_to(src).as_posix()) if x)
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        n += 1
    return n


def _tar_gz(src: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(src.rglob("*")):
            tar.add(path, arcname=path.relative_to(src).as_posix(), recursive=False)
    return buf.getvalue()


def _rewrite(value: str, base: Path) -> str:
    """``/opt/ml`` -> ``base`` wherever it appears (paths, and paths inside JSON values)."""
    return value.replace(OPT_ML + "/", str(base) + "/") if value != OPT_ML else str(base)


def layout(body: dict[str, Any], base: Path, host: int, hosts: list[str], s3: Any) -> None:
    """Lay out ``base`` as SageMaker lays out ``/opt/ml`` for ``hosts[host]`` from ``body`` [1]."""
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    for d in ("model", "output/data", "code"):
        (base / d).mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(body.get("HyperParameters", {})))
    itype = body["ResourceConfig"]["InstanceType"]
    (config / "resourceconfig.json").write_text(json.dumps({
        "current_host": hosts[host], "current_instance_type": itype, "current_group_name": "homogeneousCluster",
        "hosts": hosts, "instance_groups": [{"instance_group_name": "homogeneousCluster", "instance_type": itype,
                                             "hosts": hosts}],
        "network_interface_name": "lo"}))
    mode = body["AlgorithmSpecification"].get("TrainingInputMode", "File")
    channels = {}
    for ch in body.get("InputDataConfig", []):
        src = ch["DataSource"]["S3DataSource"]
        channels[ch["ChannelName"]] = {"TrainingInputMode": ch.get("InputMode", mode),
                                       "S3DistributionType": src.get("S3DataDistributionType", "FullyReplicated"),
                                       "RecordWrapperType": ch.get("RecordWrapperType", "None")}
        _download_prefix(s3, src["S3Uri"], base / "input" / "data" / ch["ChannelName"])
    (config / "inputdataconfig.json").write_text(json.dumps(channels))
    ck = body.get("CheckpointConfig")
    if ck:
        local = Path(_rewrite(ck.get("LocalPath", f"{OPT_ML}/checkpoints"), base))
        local.mkdir(parents=True, exist_ok=True)
        _download_prefix(s3, ck["S3Uri"], local)


def container_env(body: dict[str, Any], base: Path, endpoint_url: str, region: str,
                  network: Optional[bool] = None) -> dict[str, str]:
    """The container's environment: the job's ``Environment`` (``/opt/ml`` rewritten to ``base``),
    ``TRAINING_JOB_NAME``/``TRAINING_JOB_ARN`` as SageMaker sets them, fake credentials and every
    AWS endpoint at moto (``S3_ENDPOINT_URL`` for the toolkit, ``AWS_ENDPOINT_URL`` for boto3).

    ``network`` (default: ``not EnableNetworkIsolation``): without it the container reaches no
    package index, which ``PIP_NO_INDEX=1`` stands for here (pip fails at once instead of trying
    the network)."""
    name = body["TrainingJobName"]
    env = {k: _rewrite(v, base) for k, v in (body.get("Environment") or {}).items()}
    env.update({
        "SAGEMAKER_BASE_DIR": str(base), "TRAINING_JOB_NAME": name,
        "TRAINING_JOB_ARN": f"arn:aws:sagemaker:{region}:123456789012:training-job/{name.lower()}",
        "AWS_REGION": region, "AWS_DEFAULT_REGION": region, "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true",
        "S3_ENDPOINT_URL": endpoint_url, "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "PYTHONUNBUFFERED": "1",
    })
    if network is None:
        network = not body.get("EnableNetworkIsolation", False)
    if not network:
        env["PIP_NO_INDEX"] = "1"
    return env


def framework_module(body: dict[str, Any], python: Path, require: Optional[bool] = None) -> Optional[str]:
    """The ``SAGEMAKER_TRAINING_MODULE`` the body's ``TrainingImage`` sets (:data:`FRAMEWORK_MODULES`)
    when ``python`` can import it; None for other images, or when ``python`` lacks it and ``require``
    is not True (``require=False``: always None).

    Raises:
        RuntimeError: ``require`` is True and the image sets none, or ``python`` lacks the package.
    """
    if require is False:
        return None
    image = body["AlgorithmSpecification"].get("TrainingImage", "")
    repo = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    found = FRAMEWORK_MODULES.get(repo)
    if found is None:
        if require:
            raise RuntimeError(f"{image} is not a framework image with a training module ({sorted(FRAMEWORK_MODULES)})")
        return None
    module, package = found
    probe = subprocess.run([str(python), "-c", f"import {module.split(':')[0]}"], env=clean_env(), capture_output=True)
    if probe.returncode != 0:
        if require:
            raise RuntimeError(f"{python} cannot import {module.split(':')[0]}: pip install {package}")
        return None
    return module


def _pump(proc: subprocess.Popen, out: list[str], first: list[Optional[float]], i: int,
          watch: Optional[Callable[[int, str], None]]) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip("\n")
        if first[i] is None:
            first[i] = time.monotonic()
        out.append(line)
        if watch:
            watch(i, line)


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _start_attempt(body: dict[str, Any], python: Path, bases: list[Path], hosts: list[str], s3: Any,
                   endpoint_url: str, region: str, timeout: float,
                   preempt_when: Optional[Callable[[int, str], bool]], network: Optional[bool],
                   module: Optional[str] = None) -> Attempt:
    procs: list[subprocess.Popen] = []
    lines: list[list[str]] = [[] for _ in hosts]
    first: list[Optional[float]] = [None] * len(hosts)
    stop = threading.Event()
    preempted = threading.Event()

    def watch(i: int, line: str) -> None:
        if preempt_when is not None and not preempted.is_set() and preempt_when(i, line):
            preempted.set()
            stop.set()

    prepared = []
    for i, base in enumerate(bases):
        if base.exists():
            shutil.rmtree(base)
        layout(body, base, i, hosts, s3)
        py = python_layer(python, base.parent / "containers" / base.name) / "python"
        env = clean_env(container_env(body, base, endpoint_url, region, network))
        if module:
            env["SAGEMAKER_TRAINING_MODULE"] = module  # the image's ENV [6]
        env["PATH"] = f"{py.parent}{os.pathsep}{env.get('PATH', '')}"  # the image's python first
        prepared.append((py, base, env))
    started = time.time()  # the containers start
    for py, base, env in prepared:
        # the image's entry point `train` (console script of sagemaker_training.cli.train:main)
        procs.append(subprocess.Popen([str(py), "-m", "sagemaker_training.cli.train"], cwd=str(base / "code"), env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True))
    pumps = [threading.Thread(target=_pump, args=(p, lines[i], first, i, watch), daemon=True)
             for i, p in enumerate(procs)]
    for t in pumps:
        t.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            codes = [p.poll() for p in procs]
            if all(c is not None for c in codes) or stop.is_set():
                break
            if any(c not in (None, 0) for c in codes):  # a gang: one failed host stops the others
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{body['TrainingJobName']} still running after {timeout} s")
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                _kill_group(p, signal.SIGTERM)
        end = time.monotonic() + STOP_GRACE
        for p in procs:
            try:
                p.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_group(p, signal.SIGKILL)
                p.wait()
            _kill_group(p, signal.SIGKILL)  # anything the host left behind in its group
        for t in pumps:
            t.join(timeout=5)
    failure = None
    for base in bases:
        f = base / "output" / "failure"
        if f.is_file():
            failure = f.read_text(errors="replace")[:FAILURE_REASON_MAX]
            break
    return Attempt(exit_codes=[p.returncode for p in procs], lines=lines, failure=failure,
                   preempted=preempted.is_set(), started=started, first_line_at=first)


def _finish(body: dict[str, Any], bases: list[Path], s3: Any) -> None:
    """Upload ``model/`` and ``output/data/`` as SageMaker does [1] (from the first host, algo-1)."""
    out = body["OutputDataConfig"]["S3OutputPath"].rstrip("/")
    bucket, prefix = _split(f"{out}/{body['TrainingJobName']}/output")
    for sub, name in (("model", "model.tar.gz"), ("output/data", "output.tar.gz")):
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=_tar_gz(bases[0] / sub))


def _sync_checkpoints(body: dict[str, Any], bases: list[Path], s3: Any) -> None:
    ck = body.get("CheckpointConfig")
    if not ck:
        return
    for base in bases:
        local = Path(_rewrite(ck.get("LocalPath", f"{OPT_ML}/checkpoints"), base))
        if local.is_dir():
            _upload_dir(s3, local, ck["S3Uri"])


def record(region: str, outcome: Outcome, endpoint_url: str) -> bool:
    """Report ``outcome`` where the adapter reads it: each host's lines to CloudWatch Logs
    (``/aws/sagemaker/TrainingJobs``, stream ``<job>/algo-<n>-<epoch>`` per attempt), and the final
    ``TrainingJobStatus``, ``FailureReason`` and ``SecondaryStatusTransitions`` (an ``Interrupted``
    and a ``Restarting`` per preemption) in moto's SageMaker backend, which must run in this process
    (moto's ``ThreadedMotoServer``).

    Returns:
        True when the job was found in moto's backend and updated.
    """
    import boto3

    logs = boto3.session.Session(region_name=region, aws_access_key_id="testing",
                                 aws_secret_access_key="testing").client("logs", endpoint_url=endpoint_url)
    try:
        logs.create_log_group(logGroupName=LOG_GROUP)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    now_ms = int(time.time() * 1000)
    for n, attempt in enumerate(outcome.attempts):
        for h, host_lines in enumerate(attempt.lines):
            stream = f"{outcome.name}/algo-{h + 1}-{int(time.time()) + n}"
            logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
            events = [{"timestamp": now_ms + n, "message": ln or " "} for ln in host_lines]
            for i in range(0, len(events), 5000):
                logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events[i:i + 5000])
    try:
        from moto.sagemaker.models import sagemaker_backends
    except ImportError:
        return False
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    for account in list(sagemaker_backends):
        backend = sagemaker_backends[account].get(region)
        job = getattr(backend, "training_jobs", {}).get(outcome.name) if backend else None
        if job is None:
            continue
        trans = [{"Status": "Starting", "StartTime": now, "EndTime": now, "StatusMessage": "Preparing the instances for training"},
                 {"Status": "Training", "StartTime": now, "EndTime": now, "StatusMessage": "Training image download completed. Training in progress."}]
        for a in outcome.attempts[:-1]:
            if a.preempted:
                trans += [{"Status": "Interrupted", "StartTime": now, "EndTime": now,
                           "StatusMessage": "Spot interruption: the job was interrupted"},
                          {"Status": "Restarting", "StartTime": now, "EndTime": now,
                           "StatusMessage": "Restarting the job from the last checkpoint"},
                          {"Status": "Training", "StartTime": now, "EndTime": now,
                           "StatusMessage": "Training in progress."}]
        final = "Completed" if outcome.status == "Completed" else "Failed"
        trans.append({"Status": final, "StartTime": now, "EndTime": now,
                      "StatusMessage": "Training job completed" if final == "Completed" else "Training job failed"})
        job.training_job_status = final
        job.secondary_status = final
        job.secondary_status_transitions = trans
        job.training_end_time = now
        job.failure_reason = outcome.failure_reason if final == "Failed" else None
        return True
    return False


def run(body_or_plan: Any, *, python: Union[str, Path], workdir: Union[str, Path], endpoint_url: str,
        region: str = "us-east-1", preempt_when: Optional[Callable[[int, str], bool]] = None,
        max_preemptions: int = 1, timeout: float = 600.0, report: bool = True,
        network: Optional[bool] = None, framework_toolkit: Optional[bool] = None) -> Outcome:
    """Start a planned SageMaker training job here, as SageMaker would (see the module docstring).

    Args:
        body_or_plan: a unijob ``Plan`` (its ``CreateTrainingJob`` request sent at submit) or the body.
        python: the job image's Python (:func:`unijob.testing.contracts.job_python` with
            ``sagemaker-training`` installed); its venv's ``train`` is the container entry point.
        workdir: where each host's ``/opt/ml`` is laid out (``<workdir>/algo-<n>``).
        endpoint_url: moto's server (S3 for code, channels, checkpoints and outputs).
        preempt_when: ``(host index, line) -> bool``; when True, every host gets SIGTERM (a spot
            reclaim), checkpoints are synced to S3 and the job starts again, at most
            ``max_preemptions`` times.
        timeout: seconds per attempt.
        report: record the outcome through :func:`record` for the adapter's ``status``/``logs``.
        network: whether the container reaches a package index (see :func:`container_env`).
        framework_toolkit: run the image's framework toolkit (``SAGEMAKER_TRAINING_MODULE``, see
            :func:`framework_module`): None = when ``python`` has it, True = required, False = never.

    Returns:
        the :class:`Outcome`.

    Raises:
        TimeoutError: an attempt ran longer than ``timeout`` (its hosts are stopped first).
        RuntimeError: ``framework_toolkit=True`` and ``python`` lacks the image's toolkit.
    """
    body = body_or_plan
    if hasattr(body_or_plan, "request"):
        body = body_or_plan.request("CreateTrainingJob", when="submit").body
    module = framework_module(body, Path(python), framework_toolkit)
    s3 = _s3(endpoint_url, region)
    count = int(body["ResourceConfig"].get("InstanceCount", 1))
    hosts = [host_address(i) for i in range(count)]
    bases = [Path(workdir) / f"algo-{i + 1}" for i in range(count)]
    attempts: list[Attempt] = []
    preemptions = 0
    while True:
        watch = preempt_when if preemptions < max_preemptions else None
        attempt = _start_attempt(body, Path(python), bases, hosts, s3, endpoint_url, region, timeout, watch,
                                 network, module)
        attempts.append(attempt)
        _sync_checkpoints(body, bases, s3)
        if attempt.preempted:
            preemptions += 1
            continue
        break
    ok = all(c == 0 for c in attempt.exit_codes)
    failure = None
    if not ok:
        failure = attempt.failure or (f"AlgorithmError: exit codes {attempt.exit_codes}; last lines:\n"
                                      + "\n".join(ln for h in attempt.lines for ln in h[-10:]))[:FAILURE_REASON_MAX]
    else:
        _finish(body, bases, s3)
    outcome = Outcome(name=body["TrainingJobName"], status="Completed" if ok else "Failed", failure_reason=failure,
                      attempts=attempts, base_dirs=bases, framework_module=module)
    if report:
        record(region, outcome, endpoint_url)
    return outcome


def line_matches(pattern: str) -> Callable[[int, str], bool]:
    """A ``preempt_when`` that fires on the first line of any host matching ``pattern`` (a regex)."""
    rx = re.compile(pattern)
    return lambda _host, line: rx.search(line) is not None
