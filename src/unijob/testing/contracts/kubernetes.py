"""Kubernetes' start contract, run here: a plan's Indexed Job started as the Job controller and the
kubelet start it, one process per completion index, with no cluster, no Docker and no network.

Everything is derived from the manifests and the documented Kubernetes behaviour, never from the
adapter's own code:

- **Pods** (Job controller): one pod per completion index ``0..completions-1`` (all at once:
  ``parallelism = completions``), named ``<job>-<index>-<5 chars>``, labelled and annotated
  ``batch.kubernetes.io/job-completion-index``, with ``JOB_COMPLETION_INDEX`` added to the
  container's env, and hostname ``<job>-<index>`` (with the template's ``subdomain``)
  ("Indexed Job for Parallel Processing with Static Work Assignment",
  kubernetes.io/docs/tasks/job/indexed-parallel-processing-static/; "Job with Pod-to-Pod
  Communication", kubernetes.io/docs/tasks/job/job-with-pod-to-pod-communication/). A JobSet's one
  replicated job is its child Job ``<jobset>-<replicated job>-0``, subdomain ``spec.network.subdomain``.
- **Failures** (Job controller, kubernetes.io/docs/concepts/workloads/controllers/job/, "Pod
  failure policy" and "Pod backoff failure policy"): a failed pod is matched against
  ``podFailurePolicy.rules`` in order (``onExitCodes`` of the named container, ``onPodConditions``
  such as ``DisruptionTarget``); ``Ignore`` recreates the index without counting, ``Count`` counts
  towards ``backoffLimit``, ``FailJob`` fails the Job. More than ``backoffLimit`` counted failures
  fail the Job (``BackoffLimitExceeded``); ``activeDeadlineSeconds`` bounds it
  (``DeadlineExceeded``). The back-off delay before a recreation (10 s, doubling) is not waited.
- **Environment** (kubelet): service variables first (``KUBERNETES_SERVICE_HOST``/``_PORT``; a
  headless Service adds none), then ``envFrom``, then ``env`` in order: ``value`` with ``$(VAR)``
  expanded from the variables defined before it, ``$$`` an escaped ``$``, unknown references left
  as written ("Define Dependent Environment Variables",
  kubernetes.io/docs/tasks/inject-data-application/define-interdependent-environment-variables/);
  ``valueFrom.fieldRef`` from the pod (downward API: ``metadata.name``, ``metadata.namespace``,
  ``metadata.uid``, ``metadata.labels['k']``, ``metadata.annotations['k']``, ``spec.nodeName``,
  ``spec.serviceAccountName``, ``status.podIP``, ``status.hostIP``;
  kubernetes.io/docs/concepts/workloads/pods/downward-api/), ``secretKeyRef`` from the secrets a
  test passes, ``configMapKeyRef`` from the plan's ConfigMaps. ``command`` and ``args`` get the
  same ``$(VAR)`` expansion with the container's whole env ("Define a Command and Arguments for a
  Container", kubernetes.io/docs/tasks/inject-data-application/define-command-argument-container/).
  The runtime adds ``HOSTNAME`` (the pod's hostname) and the image's ``PATH``.
- **Volumes**: ``configMap`` volumes are written from the plan's ConfigMap (``items`` key -> path,
  ``binaryData`` base64-decoded), ``emptyDir`` is a fresh folder per pod, a
  ``persistentVolumeClaim`` is one folder per claim that outlives pods (``subPath`` honoured),
  ``secret`` volumes come from the test's secrets.
- **Termination message**: with ``terminationMessagePolicy: FallbackToLogsOnError`` a failed
  container's message is the tail of its log, at most 80 lines and 2048 bytes (kubelet,
  kubernetes.io/docs/tasks/debug/debug-application/determine-reason-pod-failure/).
- **Preemption** (:meth:`KubernetesContract.preempt`): the pod gets the ``DisruptionTarget``
  condition, its container SIGTERM, and SIGKILL after ``terminationGracePeriodSeconds`` (default
  30 s), as on a node drain or spot reclaim (kubernetes.io/docs/concepts/workloads/pods/disruptions/).

Two things differ from a node, by necessity, and are the runner's only liberties:

- **Paths.** Without a mount namespace a process cannot see a folder at ``/opt/unijob/src``. Every
  ``mountPath`` is therefore rewritten to the pod's local folder wherever it appears as a path
  (not inside a longer name or a URI) in ``command``, ``args``, ``workingDir`` and env values.
- **Names.** Every pod is this machine, so the headless Service's pod names
  (``<hostname>.<subdomain>``, ``...<namespace>.svc`` and ``...svc.cluster.local``) are added to
  ``/etc/hosts`` as 127.0.0.1 for the run (:func:`unijob.testing.contracts.hosts_entries`; the
  manifest's names stay as written, and the line is removed afterwards). Where ``/etc/hosts`` is
  not writable the names do not resolve and :attr:`KubernetesContract.names_resolve` is False.

The ``image`` is stood in for by ``python``: a Python like the image's (for example
:func:`unijob.testing.contracts.job_python`), first on ``PATH``; the container runs as this user.
A ``sink`` (for example the test suite's fake API server) receives every pod object, its log and
the Job's status as a kubelet and the Job controller would report them, so ``unijob status`` and
``unijob logs`` show what really ran.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import string
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Optional, Protocol, Sequence

from . import clean_env, hosts_entries, python_layer
from .kubelet import Kubelet, expand, path_rewriter

__all__ = ["JobResult", "KubernetesContract", "Pod", "Sink", "expand"]

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
#: Kubelet's FallbackToLogsOnError tail: 80 lines, 2048 bytes.
MESSAGE_LINES, MESSAGE_BYTES = 80, 2048
DEFAULT_GRACE_SECONDS = 30


class Sink(Protocol):
    """Where the runner reports, as the kubelet and the Job controller report to the API server."""

    def put_pod(self, namespace: str, pod: dict[str, Any], log: str) -> None: ...

    def put_job_status(self, namespace: str, kind: str, name: str, status: dict[str, Any]) -> None: ...


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Pod:
    """One pod of the Job: its object, its folder, its container process."""

    index: int
    obj: dict[str, Any]
    dir: Path
    log: Path
    proc: Optional[subprocess.Popen] = None
    disrupted: bool = False
    exit_code: Optional[int] = None
    message: str = ""
    kill_at: Optional[float] = None
    started: Optional[float] = None  # time.time() when the container process was spawned

    @property
    def name(self) -> str:
        return self.obj["metadata"]["name"]


@dataclass
class JobResult:
    """How the Job ended: ``Complete`` or ``Failed`` (with ``reason``), and every pod that ran."""

    condition: str
    reason: str
    message: str
    pods: list[Pod] = field(default_factory=list)

    def logs(self, index: Optional[int] = None) -> str:
        """The logs of every pod (of ``index`` only when given), oldest pod first."""
        return "".join(p.log.read_text(errors="replace") for p in self.pods
                       if (index is None or p.index == index) and p.log.exists())


class KubernetesContract:
    """Run one Job (or JobSet) of a plan here, as a cluster would.

    Args:
        objects: the manifests in creation order (ConfigMaps, Service, Job or JobSet).
        python: the Python standing for the image's (its folder goes first on ``PATH``).
        root: a folder for the pods' folders, logs and the claims' data.
        namespace: the namespace the objects were created in.
        secrets: ``{"secret-name/key": value}`` for ``secretKeyRef`` and secret volumes.
        sink: receives pods, logs and the Job's status (see :class:`Sink`).
        api_address: ``(host, port)`` of the API server, for ``KUBERNETES_SERVICE_HOST``/``_PORT``.

    Use as a context manager (names resolvable and processes stopped at exit), then :meth:`start`
    and :meth:`wait`; or :meth:`run` for both.
    """

    def __init__(self, objects: Sequence[Mapping[str, Any]], python: os.PathLike, root: os.PathLike, *,
                 namespace: str = "default", secrets: Optional[Mapping[str, str]] = None,
                 sink: Optional[Sink] = None, api_address: tuple[str, int] = ("10.96.0.1", 443)) -> None:
        self.objects = [dict(o) for o in objects]
        self.python = Path(python)
        self.root = Path(root)
        self.namespace = namespace
        self.secrets = dict(secrets or {})
        self.sink = sink
        self.api_address = api_address
        self.configmaps = {o["metadata"]["name"]: o for o in self.objects if o.get("kind") == "ConfigMap"}
        main = next((o for o in self.objects if o.get("kind") in ("Job", "JobSet")), None)
        if main is None:
            raise ValueError("the plan holds no batch/v1 Job or JobSet")
        self.kind, self.name = main["kind"], main["metadata"]["name"]
        if main["kind"] == "JobSet":
            rj = main["spec"]["replicatedJobs"][0]
            self.job_name = f"{self.name}-{rj['name']}-0"
            self.job_spec = rj["template"]["spec"]
            self.subdomain = (main["spec"].get("network") or {}).get("subdomain") or self.name
            self.extra_labels = {"jobset.sigs.k8s.io/jobset-name": self.name, "job-name": self.job_name}
        else:
            self.job_name = self.name
            self.job_spec = main["spec"]
            self.subdomain = self.job_spec["template"]["spec"].get("subdomain")
            self.extra_labels = {"batch.kubernetes.io/job-name": self.name, "job-name": self.name,
                                 "batch.kubernetes.io/controller-uid": f"uid-{self.name}",
                                 "controller-uid": f"uid-{self.name}"}
        if self.job_spec.get("completionMode") != "Indexed":
            raise ValueError("only Indexed Jobs are run here (completionMode: Indexed)")
        self.completions = int(self.job_spec["completions"])
        self.kubelet = Kubelet(self.configmaps, self.secrets, self.root / "claims", api_address)
        self.pods: list[Pod] = []
        self.failed = 0
        self.done: set[int] = set()
        self.result: Optional[JobResult] = None
        self.names_resolve = False
        self._lock = threading.RLock()
        self._thread: Optional[threading.Thread] = None
        self._hosts: Any = None
        self._started = 0.0
        self._start_time = ""

    @classmethod
    def from_plan(cls, plan: Any, python: os.PathLike, root: os.PathLike, **kw: Any) -> "KubernetesContract":
        """From a :class:`unijob.contract.Plan` of the kubernetes target (its ``submit`` requests)."""
        kw.setdefault("namespace", plan.extra.get("namespace") or "default")
        return cls([r.body for r in plan.requests if r.when == "submit"], python, root, **kw)

    # ---- names ----------------------------------------------------------------------------------

    def hostnames(self) -> list[str]:
        """Every name the headless Service gives the pods, as cluster DNS would resolve them."""
        out = []
        for i in range(self.completions):
            host = f"{self.job_name}-{i}"
            out.append(host)
            if self.subdomain:
                out += [f"{host}.{self.subdomain}", f"{host}.{self.subdomain}.{self.namespace}",
                        f"{host}.{self.subdomain}.{self.namespace}.svc",
                        f"{host}.{self.subdomain}.{self.namespace}.svc.cluster.local"]
        return out

    def __enter__(self) -> "KubernetesContract":
        self._hosts = hosts_entries(self.hostnames())
        self.names_resolve = self._hosts.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.stop()
        finally:
            if self._hosts is not None:
                self._hosts.__exit__(None, None, None)
                self._hosts = None

    # ---- running --------------------------------------------------------------------------------

    def run(self, timeout: float = 600) -> JobResult:
        """:meth:`start`, then :meth:`wait`."""
        self.start()
        return self.wait(timeout)

    def start(self) -> None:
        """Create one pod per completion index and start the controller loop."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._started = time.monotonic()
        self._start_time = _now()
        for i in range(self.completions):
            self._create_pod(i)
        self._report_job()
        self._thread = threading.Thread(target=self._control, name=f"k8s-{self.name}", daemon=True)
        self._thread.start()

    def wait(self, timeout: float = 600) -> JobResult:
        """Block until the Job is Complete or Failed.

        Raises:
            TimeoutError: it is neither after ``timeout`` seconds (the pods are stopped).
        """
        assert self._thread is not None, "start() first"
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.stop()
            raise TimeoutError(f"Job {self.name} did not finish within {timeout} s:\n" + self._tails())
        assert self.result is not None
        return self.result

    def running(self, index: int) -> Optional[Pod]:
        """The live pod of ``index`` (None when there is none)."""
        with self._lock:
            return next((p for p in reversed(self.pods) if p.index == index and p.exit_code is None), None)

    def preempt(self, index: int, grace_seconds: Optional[float] = None) -> Pod:
        """Disrupt the running pod of ``index`` as a spot reclaim or node drain does: condition
        ``DisruptionTarget``, SIGTERM to the container's process, SIGKILL after the grace period."""
        with self._lock:
            pod = self.running(index)
            if pod is None or pod.proc is None:
                raise RuntimeError(f"no running pod for index {index}")
            tmpl = self.job_spec["template"]["spec"]
            grace = tmpl.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS) if grace_seconds is None else grace_seconds
            pod.disrupted = True
            pod.obj["status"].setdefault("conditions", []).append(
                {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet",
                 "message": "spot reclaim simulated by unijob.testing", "lastTransitionTime": _now()})
            pod.kill_at = time.monotonic() + float(grace)
            try:
                os.kill(pod.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            return pod

    def stop(self) -> None:
        """Kill every pod's processes (by process group) and end the controller loop."""
        with self._lock:
            if self.result is None:
                self.result = JobResult("Failed", "Stopped", "stopped by the test", list(self.pods))
            for p in self.pods:
                self._kill(p)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)

    # ---- the controller -------------------------------------------------------------------------

    def _control(self) -> None:
        deadline = self.job_spec.get("activeDeadlineSeconds")
        while True:
            with self._lock:
                if self.result is not None:
                    break
                for pod in list(self.pods):
                    if pod.exit_code is None and pod.proc is not None:
                        if pod.kill_at is not None and time.monotonic() >= pod.kill_at:
                            self._kill(pod)
                        code = pod.proc.poll()
                        if code is not None:
                            self._terminated(pod, code)
                    self._report_pod(pod)
                if len(self.done) == self.completions:
                    self._finish("Complete", "CompletionsReached", "Reached expected number of succeeded pods")
                elif deadline and time.monotonic() - self._started > float(deadline):
                    self._finish("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
            time.sleep(0.05)
        self._report_job()

    def _terminated(self, pod: Pod, code: int) -> None:
        c = self.job_spec["template"]["spec"]["containers"][0]
        exit_code = 128 - code if code < 0 else code  # killed by signal N: the runtime reports 128+N
        pod.exit_code = exit_code
        # the container is gone: take down what it left (a container's whole cgroup goes with it)
        self._kill(pod)
        if exit_code != 0 and c.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            raw = pod.log.read_bytes() if pod.log.exists() else b""
            tail = b"\n".join(raw.rstrip(b"\n").split(b"\n")[-MESSAGE_LINES:])[-MESSAGE_BYTES:]
            pod.message = tail.decode("utf-8", "replace")
        st = pod.obj["status"]
        st["phase"] = "Succeeded" if exit_code == 0 else "Failed"
        term = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                "startedAt": st["startTime"], "finishedAt": _now()}
        if pod.message:
            term["message"] = pod.message
        st["containerStatuses"][0].update(state={"terminated": term}, ready=False)
        if exit_code == 0:
            self.done.add(pod.index)
            return
        action = self._policy_action(pod, c["name"], exit_code)
        if action == "Ignore":
            self._create_pod(pod.index)
        elif action == "FailJob":
            self._finish("Failed", "PodFailurePolicy", f"Container {c['name']} for pod {self.namespace}/{pod.name} "
                                                        f"failed with exit code {exit_code} matching FailJob rule")
        else:
            self.failed += 1
            if self.failed > int(self.job_spec.get("backoffLimit", 6)):
                self._finish("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
            else:
                self._create_pod(pod.index)

    def _policy_action(self, pod: Pod, container: str, exit_code: int) -> str:
        """The action of the first ``podFailurePolicy`` rule matching the failed pod ("Count" when none)."""
        conds = {c["type"] for c in pod.obj["status"].get("conditions", []) if c.get("status") == "True"}
        for rule in (self.job_spec.get("podFailurePolicy") or {}).get("rules", []):
            oc = rule.get("onExitCodes")
            if oc:
                if oc.get("containerName") not in (None, container):
                    continue
                inside = exit_code in oc.get("values", [])
                if inside == (oc.get("operator") == "In"):
                    return rule["action"]
            for pc in rule.get("onPodConditions") or []:
                if pc["type"] in conds and pc.get("status", "True") == "True":
                    return rule["action"]
        return "Count"

    def _finish(self, condition: str, reason: str, message: str) -> None:
        for p in self.pods:
            if p.exit_code is None:
                self._kill(p)
                p.exit_code = -1
                p.obj["status"]["phase"] = "Failed"
                self._report_pod(p)
        self.result = JobResult(condition, reason, message, list(self.pods))

    @staticmethod
    def _kill(pod: Pod) -> None:
        """SIGKILL the container's process group (a container's processes all go with it)."""
        if pod.proc is None:
            return
        try:
            os.killpg(pod.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if pod.proc.returncode is None:
            try:
                pod.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    # ---- reporting ------------------------------------------------------------------------------

    def _report_pod(self, pod: Pod) -> None:
        if self.sink is not None:
            log = pod.log.read_text(errors="replace") if pod.log.exists() else ""
            self.sink.put_pod(self.namespace, pod.obj, log)

    def _report_job(self) -> None:
        if self.sink is None:
            return
        with self._lock:
            active = sum(1 for p in self.pods if p.exit_code is None)
            st: dict[str, Any] = {"startTime": self._start_time, "active": active, "succeeded": len(self.done),
                                  "failed": self.failed, "ready": active}
            if self.done:
                st["completedIndexes"] = ",".join(str(i) for i in sorted(self.done))
            if self.result is not None:
                st["active"] = st["ready"] = 0
                cond = "Complete" if self.result.condition == "Complete" else "Failed"
                if self.kind == "JobSet":
                    cond = "Completed" if cond == "Complete" else "Failed"
                st["conditions"] = [{"type": cond, "status": "True", "reason": self.result.reason,
                                     "message": self.result.message, "lastTransitionTime": _now()}]
                if cond.startswith("Complete"):
                    st["completionTime"] = _now()
            self.sink.put_job_status(self.namespace, self.kind, self.name, st)

    def _tails(self) -> str:
        return "\n".join(f"--- {p.name}\n" + "\n".join(p.log.read_text(errors="replace").splitlines()[-20:])
                         for p in self.pods if p.log.exists())

    # ---- one pod --------------------------------------------------------------------------------

    def _create_pod(self, index: int) -> Pod:
        tmpl = self.job_spec["template"]
        suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        name = f"{self.job_name}-{index}-{suffix}"
        md = tmpl.get("metadata") or {}
        obj: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": self.namespace, "uid": f"uid-{name}", "creationTimestamp": _now(),
                         "labels": {**md.get("labels", {}), **self.extra_labels, COMPLETION_INDEX: str(index)},
                         "annotations": {**md.get("annotations", {}), COMPLETION_INDEX: str(index)}},
            "spec": {**{k: v for k, v in tmpl["spec"].items() if k != "containers"},
                     "containers": [dict(c) for c in tmpl["spec"]["containers"]],
                     "hostname": f"{self.job_name}-{index}", "nodeName": socket.gethostname()},
            "status": {"phase": "Pending", "podIP": "127.0.0.1", "hostIP": "127.0.0.1"},
        }
        if self.subdomain:
            obj["spec"]["subdomain"] = self.subdomain
        for c in obj["spec"]["containers"]:  # the Job controller's addition
            env = list(c.get("env", []))
            if not any(e["name"] == "JOB_COMPLETION_INDEX" for e in env):
                env.append({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                    "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}})
            c["env"] = env
        d = self.root / "pods" / name
        d.mkdir(parents=True)
        pod = Pod(index, obj, d, d / "container.log")
        self.pods.append(pod)
        self._start_container(pod)
        return pod

    def _start_container(self, pod: Pod) -> None:
        spec = pod.obj["spec"]
        c = spec["containers"][0]
        rewrite = path_rewriter(self.kubelet.mounts(pod.dir, spec, c))
        layer = python_layer(self.python, pod.dir / "rootfs")  # the container's writable layer
        path = os.pathsep.join([str(layer), str(self.python.parent), os.environ.get("PATH", "/usr/bin:/bin")])
        env = {**clean_env({"PATH": path, "HOSTNAME": spec["hostname"]}), **self.kubelet.env(pod.obj, c, rewrite)}
        if not c.get("command"):
            raise ValueError(f"container {c['name']}: no command; the image's ENTRYPOINT is not known here")
        argv = [rewrite(expand(a, env)) for a in [*c["command"], *c.get("args", [])]]
        cwd = rewrite(c["workingDir"]) if c.get("workingDir") else str(pod.dir)
        exe = shutil.which(argv[0], path=env.get("PATH")) or argv[0]
        now = _now()
        pod.started = time.time()
        with open(pod.log, "wb") as log:
            pod.proc = subprocess.Popen([exe, *argv[1:]], env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        pod.obj["status"].update(phase="Running", startTime=now, containerStatuses=[{
            "name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True, "restartCount": 0,
            "started": True, "state": {"running": {"startedAt": now}}}])
        self._report_pod(pod)
