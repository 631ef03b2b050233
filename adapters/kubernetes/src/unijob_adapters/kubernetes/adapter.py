"""The ``kubernetes`` target: a training gang as an Indexed Job (or JobSet) on a cluster the team
runs itself, batch prediction as an Indexed Job sharding the input files, and endpoints as
Deployments behind a Gateway API HTTPRoute.

Importing this module imports no Kubernetes client; :mod:`.client` imports it on first use.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from datetime import datetime
from typing import Any, Iterator, Mapping, Optional

from unijob.contract import (Adapter, EndpointHandle, EndpointStatus, InvokeResult, JobHandle, JobState, JobStatus,
                             Plan)
from unijob.errors import NotFound, NotReady, Readiness, UsageError
from unijob.models.mlflow_rest import MlflowBackedRegistry

from . import endpoints as _ep
from . import plan as _plan
from .options import KubernetesOptions
from .runtime_env import KubernetesEnv


class KubernetesRegistry(MlflowBackedRegistry):
    """A self-managed cluster's model registry: the team's MLflow server (``targets.kubernetes.registry_uri``
    or ``$MLFLOW_TRACKING_URI``), as on the local target; approval is a tag, aliases are MLflow's."""

    def mlflow_url(self, options: Any) -> str:
        import os

        from unijob.errors import UsageError

        uri = getattr(options, "registry_uri", None) or os.environ.get("MLFLOW_TRACKING_URI", "")
        if not uri.startswith(("http://", "https://")):
            raise UsageError("the kubernetes target's model registry is your MLflow server: set "
                             "targets.kubernetes.registry_uri (pass --spec) or MLFLOW_TRACKING_URI to its http(s) URL")
        return uri


class KubernetesAdapter(KubernetesRegistry, Adapter):
    """Self-managed Kubernetes.

    Args:
        configuration: a ``kubernetes.client.Configuration`` to use instead of the kubeconfig
            (tests point ``host`` at a local fake API server).
        poll_interval: seconds between polls while following logs.
        rng: the random source ``invoke`` picks a variant with (default: a fresh ``random.Random``).
    """

    name = "kubernetes"
    options_model = KubernetesOptions
    install_hint = "pip install 'unijob[kubernetes]'"
    runtime_env = KubernetesEnv
    unsupported = {
        "endpoint.min_replicas=0": "a HorizontalPodAutoscaler cannot scale to zero replicas unless the cluster "
                                   "enables the alpha HPAScaleToZero feature gate; use min_replicas >= 1 "
                                   "(or KEDA/Knative, which this target does not generate)",
    }

    def __init__(self, configuration: Any = None, *, poll_interval: float = 2.0,
                 rng: Optional[random.Random] = None) -> None:
        self._configuration = configuration
        self.poll_interval = poll_interval
        self._rng = rng or random.Random()

    # ---- readiness --------------------------------------------------------------------------

    def check(self, spec: Any = None) -> Readiness:
        """One line per problem: client missing, no kubeconfig, no such/current context."""
        from . import client

        problems: list[str] = []
        details: dict[str, str] = {}
        try:
            k = client.sdk()
        except NotReady as e:
            return Readiness(False, [f"{e.message}: {e.hint}"])
        if self._configuration is not None:
            return Readiness(True, [], {"host": str(self._configuration.host)})
        opts = spec.target_options("kubernetes") if spec is not None else {}
        path = client.kubeconfig_path(opts.get("kubeconfig"))
        details["kubeconfig"] = path
        import os

        if not os.path.exists(path):
            problems.append(f"no kubeconfig at {path}: set KUBECONFIG or targets.kubernetes.kubeconfig")
        else:
            try:
                _, active = k.config.list_kube_config_contexts(config_file=path)
                if not active:
                    problems.append(f"kubeconfig {path} has no current context: kubectl config use-context NAME")
                else:
                    details["context"] = active["name"]
            except Exception as e:
                problems.append(f"kubeconfig {path} has no usable context: {str(e).splitlines()[0][:200]}")
        return Readiness(not problems, problems, details)

    # ---- plan -------------------------------------------------------------------------------

    def plan(self, spec: Any, submission_id: str) -> Plan:
        """See :mod:`unijob_adapters.kubernetes.plan` for the manifests and their rules."""
        return _plan.build(spec, submission_id, self.options(spec), self.name)  # type: ignore[arg-type]

    def plan_batch(self, spec: Any, submission_id: str) -> Plan:
        """An Indexed Job sharding the input files; see :mod:`unijob_adapters.kubernetes.batch`.
        ``submit``, ``status``, ``logs`` and ``cancel`` treat it as any other Job."""
        from . import batch

        return batch.build(spec, submission_id, self.options(spec), self.name)  # type: ignore[arg-type]

    def plan_endpoint(self, spec: Any) -> Plan:
        """See :mod:`unijob_adapters.kubernetes.endpoints`."""
        return _ep.build(spec, self.options(spec), self.name)  # type: ignore[arg-type]

    # ---- jobs -------------------------------------------------------------------------------

    def _cluster(self, extra: Mapping[str, Any]):
        from .client import Cluster

        return Cluster(self._configuration, kubeconfig=extra.get("kubeconfig"), context=extra.get("context"))

    def _namespace(self, extra: Mapping[str, Any]) -> str:
        if extra.get("namespace"):
            return str(extra["namespace"])
        if self._configuration is None:
            from .client import context_namespace

            return context_namespace(extra.get("kubeconfig"), extra.get("context")) or "default"
        return "default"

    def submit(self, plan: Plan) -> JobHandle:
        """Create the plan's objects in order (ConfigMap, Service, PodGroup, Job/JobSet).

        An object that already exists (HTTP 409, same name: the same submission) counts as
        created, so a retried submit starts no second job. ``plan.extra["dry_run"]`` sends every
        create with ``dryRun=All`` (server-side validation, nothing persisted).

        Raises:
            NotReady: client or kubeconfig missing. TargetError: the API refused an object.
        """
        cluster = self._cluster(plan.extra)
        ns = self._namespace(plan.extra)
        dry = bool(plan.extra.get("dry_run"))
        objects = []
        for r in plan.requests:
            if r.when != "submit":
                continue
            cluster.create(r.body, ns, dry_run=dry)
            objects.append([r.body["apiVersion"], r.body["kind"], r.body["metadata"]["name"]])
        main = objects[-1]
        extra = {"namespace": ns, "context": plan.extra.get("context"), "kubeconfig": plan.extra.get("kubeconfig"),
                 "api_version": main[0], "kind": main[1], "objects": objects,
                 "pod_selector": plan.extra.get("pod_selector"), "nodes": plan.extra.get("nodes", 1),
                 "processes_per_node": plan.extra.get("processes_per_node", 1)}
        if plan.extra.get("log_tag"):
            extra["log_tag"] = plan.extra["log_tag"]
        if dry:
            extra["dry_run"] = True
        output = _env_value(plan.requests[-1].body if plan.requests else {}, "UNIJOB_OUTPUT_URI")
        if output:
            extra["output_uri"] = output
        return JobHandle(target=self.name, native_id=f"{ns}/{plan.name}", name=plan.name,
                         submission_id=plan.submission_id, extra=extra)

    def status(self, handle: JobHandle) -> JobStatus:
        """From the Job's (JobSet's) conditions and its pods' phases.

        ``Complete``/``Completed`` -> SUCCEEDED; ``Failed`` -> FAILED (reason, first non-zero exit
        code); suspended (Kueue has not admitted it) -> QUEUED; all pods Running -> RUNNING;
        some -> STARTING (``running k/n``), or RESTARTING after failures; deletion in progress ->
        STOPPING.

        Raises:
            NotFound: the object is gone (cancelled, or removed by ttlSecondsAfterFinished).
        """
        x = handle.extra
        if x.get("dry_run"):
            return JobStatus(JobState.CANCELLED, "DryRun", "submitted with dryRun=All: nothing was created")
        cluster = self._cluster(x)
        ns = x["namespace"]
        try:
            obj = cluster.get(x["api_version"], x["kind"], handle.name, ns)
        except NotFound:
            raise NotFound(f"{x['kind']} {ns}/{handle.name} no longer exists (cancelled, or deleted "
                           "ttlSecondsAfterFinished after it finished)") from None
        st = obj.get("status") or {}
        conds = {c.get("type"): c for c in st.get("conditions") or [] if c.get("status") == "True"}
        nodes = int(x.get("nodes") or 1)
        restarts = int(st.get("restarts", 0) if x["kind"] == "JobSet" else st.get("failed", 0) or 0)
        started = _ts(st.get("startTime"))
        ended = _ts(st.get("completionTime"))
        pods = cluster.pods(ns, x["pod_selector"])
        running = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Running"
                      and not p["metadata"].get("deletionTimestamp"))
        restarts += sum(cs.get("restartCount", 0) for p in pods for cs in (p.get("status") or {}).get("containerStatuses") or [])
        # pods the Job controller recreated (preempted pods are not counted in status.failed)
        restarts = max(restarts, len(pods) - len({_index(p) for p in pods}))
        if obj["metadata"].get("deletionTimestamp"):
            return JobStatus(JobState.STOPPING, "Terminating", f"deleting; {running}/{nodes} pods still running",
                             restarts, started_at=started)
        for ok in ("Complete", "Completed"):
            if ok in conds:
                return JobStatus(JobState.SUCCEEDED, ok, "", restarts, 0, started, ended or _ts(conds[ok].get("lastTransitionTime")))
        if "Failed" in conds:
            c = conds["Failed"]
            msg = "\n".join(x for x in (c.get("message", ""), _failed_tail(pods)) if x)
            return JobStatus(JobState.FAILED, f"Failed/{c.get('reason', '')}", msg, restarts,
                             _exit_code(pods), started, _ts(c.get("lastTransitionTime")))
        if (obj.get("spec") or {}).get("suspend") or "Suspended" in conds:
            return JobStatus(JobState.QUEUED, "Suspended", "pending admission (suspended until Kueue admits the gang)",
                             restarts)
        msg = f"running {running}/{nodes}"
        if running >= nodes:
            return JobStatus(JobState.RUNNING, "Running", msg, restarts, started_at=started)
        if restarts:
            return JobStatus(JobState.RESTARTING, "Restarting", f"{msg}; {restarts} restart(s)", restarts, started_at=started)
        return JobStatus(JobState.STARTING if pods else JobState.QUEUED, "Pending", msg, restarts, started_at=started)

    def logs(self, handle: JobHandle, *, follow: bool = False) -> Iterator[str]:
        """Every node's log lines, prefixed ``[rank i]`` (one process per node), ``[node i]``
        (torchrun interleaves that node's ranks) or ``[shard i]`` (batch prediction); ``follow``
        streams until the job is final."""
        x = handle.extra
        if x.get("dry_run"):
            return iter(())
        cluster = self._cluster(x)
        tag = x.get("log_tag") or ("rank" if int(x.get("processes_per_node") or 1) == 1 else "node")
        if not follow:
            return iter(_static_logs(cluster, x, tag))
        return self._follow(cluster, handle, tag)

    def _follow(self, cluster: Any, handle: JobHandle, tag: str) -> Iterator[str]:
        x = handle.extra
        q: "queue.Queue[str]" = queue.Queue()
        seen: set[str] = set()
        threads: list[threading.Thread] = []

        def pump(pod: str, prefix: str) -> None:
            resp = cluster.pod_log(pod, x["namespace"], "trainer", follow=True)
            if resp is None:
                seen.discard(pod)  # not started yet: try again on the next round
                return
            buf = b""
            for chunk in resp.stream(4096):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    q.put(f"{prefix} {line.decode('utf-8', 'replace')}")
            if buf:
                q.put(f"{prefix} {buf.decode('utf-8', 'replace')}")

        while True:
            for p in _sorted_pods(cluster.pods(x["namespace"], x["pod_selector"])):
                name = p["metadata"]["name"]
                if name in seen or (p.get("status") or {}).get("phase") == "Pending":
                    continue
                seen.add(name)
                t = threading.Thread(target=pump, args=(name, f"[{tag} {_index(p)}]"), daemon=True)
                t.start()
                threads.append(t)
            deadline = time.monotonic() + self.poll_interval
            while time.monotonic() < deadline:
                try:
                    yield q.get(timeout=max(0.01, deadline - time.monotonic()))
                except queue.Empty:
                    break
            try:
                final = self.status(handle).state.is_final
            except NotFound:
                final = True
            if final and not any(t.is_alive() for t in threads):
                while not q.empty():
                    yield q.get()
                return

    def model_artifact(self, handle: JobHandle) -> str:
        """The job's output URI (the spec's ``output``, the pods' ``UNIJOB_OUTPUT_URI``), which the
        serving pods fetch as ``UNIJOB_MODEL_URI``. Whether files are there is not checked (the
        object store is not the cluster's API).

        Raises:
            UsageError: the job had no output, or its output is a PersistentVolumeClaim path, which
                serving pods do not mount.
        """
        output = handle.extra.get("output_uri")
        if not output:
            raise UsageError(f"Kubernetes job {handle.native_id} wrote no model: it had no output "
                             "(give the spec an output: s3:// or gs:// URI)")
        if "://" not in output:
            raise UsageError(f"Kubernetes job {handle.native_id} wrote its model to {output} on a "
                             "PersistentVolumeClaim, which serving pods do not mount; give the spec an "
                             "object-store output (s3://, gs://) to serve it")
        return output

    def cancel(self, handle: JobHandle) -> None:
        """Delete the Job/JobSet, then its Service, PodGroup and ConfigMap, with foreground
        propagation (pods go before their Job). Already gone is not an error."""
        x = handle.extra
        if x.get("dry_run"):
            return
        cluster = self._cluster(x)
        for api_version, kind, name in reversed(x.get("objects") or []):
            cluster.delete(api_version, kind, name, x["namespace"])

    # ---- endpoints --------------------------------------------------------------------------

    def deploy(self, plan: Plan) -> EndpointHandle:
        return _ep.deploy(self._cluster(plan.extra), plan, self._namespace(plan.extra), self.name)

    def endpoint_status(self, handle: EndpointHandle) -> EndpointStatus:
        return _ep.status(self._cluster(handle.extra), handle)

    def set_traffic(self, handle: EndpointHandle, split: Mapping[str, int]) -> None:
        _ep.set_traffic(self._cluster(handle.extra), handle, split)

    def undeploy(self, handle: EndpointHandle) -> None:
        _ep.undeploy(self._cluster(handle.extra), handle)

    def invoke(self, handle: EndpointHandle, payload: Any, *, variant: Optional[str] = None,
               timeout: float = 60.0) -> InvokeResult:
        """``POST /predict`` on one variant's Service through the API server's service proxy; the
        variant is ``variant`` or drawn with the HTTPRoute's weights. See
        :func:`unijob_adapters.kubernetes.endpoints.invoke` for the choice and the errors."""
        return _ep.invoke(self._cluster(handle.extra), handle, payload, variant=variant, timeout=timeout,
                          rng=self._rng)


# ---- helpers --------------------------------------------------------------------------------

def _ts(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _index(pod: dict[str, Any]) -> int:
    ann = pod["metadata"].get("annotations") or {}
    lbl = pod["metadata"].get("labels") or {}
    return int(ann.get(_plan.COMPLETION_INDEX_ANNOTATION) or lbl.get(_plan.COMPLETION_INDEX_ANNOTATION) or 0)


def _sorted_pods(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(pods, key=lambda p: (_index(p), p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]))


def _static_logs(cluster: Any, x: Mapping[str, Any], tag: str) -> list[str]:
    out = []
    for p in _sorted_pods(cluster.pods(x["namespace"], x["pod_selector"])):
        text = cluster.pod_log(p["metadata"]["name"], x["namespace"], "trainer") or ""
        out += [f"[{tag} {_index(p)}] {line}" for line in text.splitlines()]
    return out


def _failed_tail(pods: list[dict[str, Any]]) -> str:
    """The first failed container's termination message: with ``terminationMessagePolicy:
    FallbackToLogsOnError`` (the plan sets it) the kubelet puts the tail of its log there."""
    for p in _sorted_pods(pods):
        for cs in (p.get("status") or {}).get("containerStatuses") or []:
            t = (cs.get("state") or {}).get("terminated") or {}
            if t.get("exitCode") and t.get("message"):
                return (f"node {_index(p)} (pod {p['metadata']['name']}) exited with code {t['exitCode']}; "
                        f"last lines:\n{t['message'].rstrip()}")
    return ""


def _exit_code(pods: list[dict[str, Any]]) -> Optional[int]:
    for p in _sorted_pods(pods):
        for cs in (p.get("status") or {}).get("containerStatuses") or []:
            code = ((cs.get("state") or {}).get("terminated") or {}).get("exitCode")
            if code:
                return int(code)
    return None


def _env_value(obj: Any, name: str) -> Optional[str]:
    """The value of the first container env entry ``name`` anywhere in a manifest, or None."""
    if isinstance(obj, dict):
        if obj.get("name") == name and isinstance(obj.get("value"), str):
            return obj["value"]
        obj = list(obj.values())
    if isinstance(obj, list):
        for item in obj:
            found = _env_value(item, name)
            if found:
                return found
    return None
