"""Pod-level building blocks shared by training gangs and endpoints: names, accelerators, spot
placement, security context, storage and secrets. Plain dicts, no Kubernetes client.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from typing import Any, Optional

from unijob.errors import SpecError

from .options import SPOT_LABELS, KubernetesOptions

CONTAINER = "trainer"
MANAGED_BY = "unijob"
DATA_ROOT = "/opt/unijob/data"
SRC_DIR = "/opt/unijob/src"
GPU_RESOURCE = "nvidia.com/gpu"


def native_name(spec_name: str, submission_id: str, max_len: int = 48) -> str:
    """``<spec.name>-<8 hex of sha256(submission_id)>``: a DNS-1035 label (starts with a letter,
    as Service names must) short enough that ``<name>-<index>`` pod hostnames stay <= 63 chars."""
    h = hashlib.sha256(submission_id.encode()).hexdigest()[:8]
    base = spec_name if spec_name[0].isalpha() else f"j{spec_name}"
    base = base[: max_len - 9].rstrip("-")
    return f"{base}-{h}"


def labels(spec: Any, name: str) -> dict[str, str]:
    """The labels on every object of one job: the spec's own plus unijob's."""
    out = {k: v for k, v in spec.labels.items()}
    out.update({"app.kubernetes.io/managed-by": MANAGED_BY, "unijob.dev/name": name})
    return out


def metadata(name: str, namespace: Optional[str], lbls: dict[str, str], **extra: Any) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name}
    if namespace:
        md["namespace"] = namespace
    md["labels"] = dict(lbls)
    md.update({k: v for k, v in extra.items() if v})
    return md


def gpu_placement(accel_type: Optional[str], count: int, opts: KubernetesOptions,
                  loc: tuple) -> tuple[dict[str, str], dict[str, Any], list[dict[str, Any]]]:
    """(nodeSelector, resource limits, tolerations) for ``count`` x ``accel_type`` per pod.

    Raises:
        SpecError: at ``loc`` when the accelerator has no node-label mapping.
    """
    if not accel_type:
        return {}, {}, []
    values = opts.gpu_label_values()
    if accel_type not in values:
        close = difflib.get_close_matches(accel_type, list(values), n=1)
        raise SpecError.at(
            loc,
            f"no node label value for accelerator '{accel_type}': the kubernetes target selects GPU nodes by "
            f"'{opts.gpu_product_label_key}' and knows {', '.join(sorted(values))}; add "
            f"targets.kubernetes.gpu_product_labels: {{{accel_type}: <label value on your nodes>}}",
            close[0] if close else None)
    selector = {opts.gpu_product_label_key: values[accel_type]}
    # GKE and AKS taint GPU nodes nvidia.com/gpu=present:NoSchedule; tolerating it is harmless elsewhere.
    tol = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    return selector, {GPU_RESOURCE: str(count)}, tol


def spot_placement(policy: str, opts: KubernetesOptions) -> tuple[dict[str, str], Optional[dict[str, Any]],
                                                                list[dict[str, Any]], list[str]]:
    """(nodeSelector, affinity, tolerations, notes) for a spot policy.

    ``spot``: a required node selector on the provider's spot label. ``spot_with_fallback``: a
    *preferred* node affinity (weight 100), so the scheduler places pods on spot nodes when there are
    some and on on-demand nodes otherwise: the fallback is native, no second request is needed.

    Raises:
        SpecError: at ``targets.kubernetes.provider`` for ``generic`` without ``spot_node_selector``.
    """
    if policy == "on_demand":
        return {}, None, [], []
    if opts.spot_node_selector:
        sel = dict(opts.spot_node_selector)
        taint_keys: list[str] = []
    elif opts.provider in SPOT_LABELS:
        key, value, taint = SPOT_LABELS[opts.provider]
        sel = {key: value}
        taint_keys = [taint] if taint else []
    else:
        raise SpecError.at(("targets", "kubernetes", "provider"),
                           "spot capacity needs a provider (gke, eks, aks) or targets.kubernetes.spot_node_selector "
                           "naming the label your spot nodes carry")
    if opts.spot_tolerations is not None:
        tols = [t.model_dump(exclude_none=True) for t in opts.spot_tolerations]
    else:
        tols = [{"key": k, "operator": "Equal", "value": sel.get(k, "true"), "effect": "NoSchedule"} for k in taint_keys]
    if policy == "spot":
        return sel, None, tols, [f"spot: pods require nodes labelled {_fmt(sel)}"]
    terms = [{"key": k, "operator": "In", "values": [v]} for k, v in sorted(sel.items())]
    affinity = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "preference": {"matchExpressions": terms}}]}}
    return {}, affinity, tols, [
        f"spot_with_fallback: pods prefer nodes labelled {_fmt(sel)} and fall back to on-demand nodes when "
        "none can take them (preferred node affinity; no second request)"]


def _fmt(sel: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(sel.items()))


def pod_security(opts: KubernetesOptions) -> dict[str, Any]:
    """Pod securityContext: non-root UID, RuntimeDefault seccomp (Pod Security "restricted")."""
    return {"runAsNonRoot": True, "runAsUser": opts.run_as_user, "runAsGroup": opts.run_as_user,
            "fsGroup": opts.run_as_user, "seccompProfile": {"type": "RuntimeDefault"}}


def pod_identity(opts: KubernetesOptions) -> dict[str, Any]:
    """The pod spec fields every unijob pod takes from the target's options: ``serviceAccountName``,
    ``imagePullSecrets`` and ``priorityClassName``, each only when set."""
    out: dict[str, Any] = {}
    if opts.service_account:
        out["serviceAccountName"] = opts.service_account
    if opts.image_pull_secrets:
        out["imagePullSecrets"] = [{"name": s} for s in opts.image_pull_secrets]
    if opts.priority_class:
        out["priorityClassName"] = opts.priority_class
    return out


def container_security() -> dict[str, Any]:
    """Container securityContext: no privilege escalation, every capability dropped."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def requests_for(cpus: Optional[float], memory_gib: Optional[float], disk_gib: Optional[int]) -> dict[str, str]:
    out: dict[str, str] = {}
    if cpus:
        out["cpu"] = f"{int(cpus * 1000)}m" if cpus != int(cpus) else str(int(cpus))
    if memory_gib:
        out["memory"] = f"{int(round(memory_gib * 1024))}Mi"
    if disk_gib:
        out["ephemeral-storage"] = f"{disk_gib}Gi"
    return out


_PVC_RE = re.compile(r"^pvc://(?P<claim>[a-z0-9]([-a-z0-9.]*[a-z0-9])?)(?P<path>/.*)?$")


class Storage:
    """Collects PVC volumes and mounts (one volume per claim) while URIs are translated."""

    def __init__(self) -> None:
        self.volumes: list[dict[str, Any]] = []
        self.mounts: list[dict[str, Any]] = []
        self._claims: dict[str, bool] = {}

    def pvc_path(self, uri: str, loc: tuple, *, read_only: bool) -> str:
        """The in-pod path of ``pvc://claim/path`` (mounting the claim at ``/opt/unijob/data/<claim>``).

        Raises:
            SpecError: at ``loc`` for a malformed pvc URI.
        """
        m = _PVC_RE.match(uri)
        if not m:
            raise SpecError.at(loc, f"expected pvc://CLAIM/PATH with a DNS-1123 claim name, got {uri!r}")
        claim = m["claim"]
        vol = f"pvc-{hashlib.sha256(claim.encode()).hexdigest()[:10]}"
        root = f"{DATA_ROOT}/{claim}"
        if claim not in self._claims:
            self._claims[claim] = read_only
            self.volumes.append({"name": vol, "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}})
            self.mounts.append({"name": vol, "mountPath": root, "readOnly": read_only})
        elif self._claims[claim] and not read_only:  # a writer shares the claim: mount it read-write
            self._claims[claim] = False
            for v in self.volumes:
                if v["name"] == vol:
                    v["persistentVolumeClaim"]["readOnly"] = False
            for mt in self.mounts:
                if mt["name"] == vol:
                    mt["readOnly"] = False
        return root + (m["path"] or "").rstrip("/")


def data_location(uri: str, loc: tuple, storage: Storage, *, read_only: bool) -> str:
    """A spec URI as the pod sees it: ``pvc://`` becomes a mounted path; object-store URIs
    (s3://, gs://, http(s)://, hf://...) pass through for the job to read.

    Raises:
        SpecError: local paths and ``file://`` (the cluster cannot see this machine's files).
    """
    if uri.startswith("pvc://"):
        return storage.pvc_path(uri, loc, read_only=read_only)
    if "://" not in uri or uri.startswith("file://") or uri.startswith("/"):
        raise SpecError.at(loc, f"'{uri}' is a path on this machine, which pods cannot read; use pvc://CLAIM/PATH "
                                "or an object-store URI (s3://, gs://)")
    return uri


def secret_env(secrets: dict[str, str]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """(env entries with secretKeyRef, refs for UNIJOB_SECRET_REFS) for ``spec.secrets``.

    ``k8s-secret://NAME/KEY`` becomes a ``secretKeyRef`` (the kubelet injects the value);
    cloud secret stores go to ``UNIJOB_SECRET_REFS`` for :mod:`unijob.runtime` to resolve in the pod.

    Raises:
        SpecError: at ``("secrets", NAME)`` for ``env://`` refs or a malformed k8s-secret ref.
    """
    env: list[dict[str, Any]] = []
    refs: dict[str, str] = {}
    for var, ref in sorted(secrets.items()):
        scheme, rest = ref.split("://", 1)
        if scheme == "env":
            raise SpecError.at(("secrets", var),
                               "env:// references are resolved on the submitting machine and only the local target "
                               "takes them; store the value in a Kubernetes Secret and use k8s-secret://NAME/KEY")
        if scheme == "k8s-secret":
            parts = rest.split("/")
            if len(parts) != 2 or not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", parts[0]) or not parts[1]:
                raise SpecError.at(("secrets", var), "expected k8s-secret://NAME/KEY (Secret name, then data key)")
            env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": parts[0], "key": parts[1]}}})
        else:
            refs[var] = ref
    return env, refs


def dumps(value: Any) -> str:
    """Canonical JSON for env values (sorted keys, so plans are deterministic)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
