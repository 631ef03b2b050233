"""The ``targets.kubernetes`` block of a spec: where the cluster is and how the gang is scheduled.

Every default below names its source. Example::

    targets:
      kubernetes:
        namespace: ml-team
        gang: kueue
        queue: team-a
        provider: gke
        quota: {gpus: 64, nodes: 8}
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

#: Canonical accelerator -> value of the ``nvidia.com/gpu.product`` node label.
#:
#: Source: NVIDIA GPU Feature Discovery (github.com/NVIDIA/gpu-feature-discovery, README "Generated
#: Labels", read 2026-11): ``nvidia.com/gpu.product`` is the NVML device name (what
#: ``nvidia-smi --query-gpu=name`` prints) with spaces replaced by ``-``. The names are the ones
#: NVML reports for the SXM/PCIe parts the clouds rent (AWS p4d/p4de/p5, g5, g6, g6e, g4dn; GCP a2,
#: a3, g2, n1+T4/V100; Azure NC/ND). P100 is deliberately absent: map it yourself with
#: ``gpu_product_labels`` (a GPU without a mapping is a SpecError, never a silent guess).
DEFAULT_GPU_PRODUCT_LABELS: dict[str, str] = {
    "H200": "NVIDIA-H200",
    "H100": "NVIDIA-H100-80GB-HBM3",
    "A100-80GB": "NVIDIA-A100-SXM4-80GB",
    "A100": "NVIDIA-A100-SXM4-40GB",
    "L40S": "NVIDIA-L40S",
    "L4": "NVIDIA-L4",
    "A10G": "NVIDIA-A10G",
    "A10": "NVIDIA-A10",
    "T4": "Tesla-T4",
    "V100": "Tesla-V100-SXM2-16GB",
    "V100-32GB": "Tesla-V100-SXM2-32GB",
}

#: provider -> (spot node label key, value, taint key or None).
#:
#: Sources (read 2026-11): GKE "Spot VMs" (cloud.google.com/kubernetes-engine/docs/concepts/spot-vms:
#: label ``cloud.google.com/gke-spot=true``; node pools may carry the same key as a NoSchedule taint);
#: EKS managed node groups "Capacity types" (docs.aws.amazon.com/eks/latest/userguide/managed-node-groups.html:
#: label ``eks.amazonaws.com/capacityType=SPOT``, no taint by default); AKS "Spot node pools"
#: (learn.microsoft.com/azure/aks/spot-node-pool: label and taint
#: ``kubernetes.azure.com/scalesetpriority=spot:NoSchedule`` added automatically).
SPOT_LABELS: dict[str, tuple[str, str, Optional[str]]] = {
    "gke": ("cloud.google.com/gke-spot", "true", "cloud.google.com/gke-spot"),
    "eks": ("eks.amazonaws.com/capacityType", "SPOT", None),
    "aks": ("kubernetes.azure.com/scalesetpriority", "spot", "kubernetes.azure.com/scalesetpriority"),
}

#: provider -> instance family of :func:`unijob.cost.catalog.instance_for` used to name (and price)
#: the node type a gang needs.
PROVIDER_FAMILY: dict[str, Optional[str]] = {"eks": "ec2", "gke": "gcp", "aks": "azure", "generic": None}

#: Framework version -> default PyTorch image for ``script`` jobs (Docker Hub ``pytorch/pytorch``
#: official tags, hub.docker.com/r/pytorch/pytorch/tags, read 2026-11).
PYTORCH_IMAGES: dict[str, str] = {
    "2.4": "pytorch/pytorch:2.4.1-cuda12.4-cudnn9-runtime",
    "2.5": "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
    "2.6": "pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime",
}


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)  # completed by modelcache below


class Quota(_M):
    """What the namespace may use at once; a gang larger than this can never be admitted, so
    ``plan()`` rejects it (SpecError at ``resources.nodes``) instead of letting it queue forever.

    Attributes:
        gpus: accelerators across the whole gang (nodes x per-node count).
        nodes: pods (nodes) in the gang.
    """

    gpus: Optional[int] = Field(default=None, ge=0)
    nodes: Optional[int] = Field(default=None, ge=1)


class PvcMount(_M):
    """An extra PersistentVolumeClaim mounted into every pod (e.g. a shared dataset cache)."""

    claim: str = Field(pattern=DNS_LABEL, max_length=253)
    mount_path: str = Field(pattern=r"^/")
    read_only: bool = False
    sub_path: Optional[str] = None


class Toleration(_M):
    """A pod toleration (``core/v1 Toleration``)."""

    key: str
    operator: Literal["Equal", "Exists"] = "Equal"
    value: Optional[str] = None
    effect: Optional[Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]] = None


class GatewayRef(_M):
    """The Gateway API ``Gateway`` an endpoint's HTTPRoute attaches to (``parentRefs[0]``)."""

    name: str = Field(min_length=1, max_length=253)
    namespace: Optional[str] = Field(default=None, pattern=DNS_LABEL, max_length=63)
    section_name: Optional[str] = None


class ProbePaths(_M):
    """HTTP paths on the container port that a serving *image* answers, for its probes.

    Attributes:
        readiness: GET path answering 200 once the model can serve (``readinessProbe``).
        liveness: GET path answering 200 while the server is alive (``livenessProbe``, and the
            ``startupProbe`` that holds liveness off while the server starts).
    """

    readiness: Optional[str] = Field(default=None, pattern=r"^/")
    liveness: Optional[str] = Field(default=None, pattern=r"^/")


class KubernetesOptions(_M):
    """Options of the ``kubernetes`` target (``targets.kubernetes`` in a spec).

    Attributes:
        namespace: where everything is created (a DNS-1123 label). Default: the kubeconfig
            context's namespace at submit time, else ``default``; manifests then carry none.
        context / kubeconfig: which cluster (default: ``$KUBECONFIG`` / ``~/.kube/config`` and its
            current context).
        api: ``job`` (a batch/v1 Indexed Job + headless Service; every cluster) or ``jobset``
            (jobset.x-k8s.io/v1alpha2; the JobSet controller makes the Service and restarts the whole
            gang on failure).
        gang: all-or-nothing admission: ``kueue`` (label ``kueue.x-k8s.io/queue-name`` and
            ``suspend: true``; Kueue admits the Job whole), ``volcano`` (``schedulerName: volcano``
            and a PodGroup with ``minMember = nodes``) or ``none``.
        queue: Kueue LocalQueue name (required with ``gang: kueue``) or Volcano queue (default
            ``default``).
        provider: where the nodes come from, for spot labels and for naming the node type in cost
            estimates: ``gke``, ``eks``, ``aks`` or ``generic`` (give ``spot_node_selector``).
        gpu_product_label_key / gpu_product_labels: node label and canonical accelerator -> value
            map (merged over :data:`DEFAULT_GPU_PRODUCT_LABELS`).
        spot_node_selector / spot_tolerations: override the provider's spot label and tolerations.
        image: container image for ``script`` jobs (default: the PyTorch image for
            ``framework.version``, :data:`PYTORCH_IMAGES`); the script's ``source_dir`` ships as a
            ConfigMap (1 MiB limit) mounted at ``/opt/unijob/src``.
        run_as_user: UID the containers run as (``runAsNonRoot`` needs a non-zero UID; the PyTorch
            images default to root).
        service_account, image_pull_secrets, priority_class: passed to the pod spec.
        ttl_seconds_after_finished: ``ttlSecondsAfterFinished`` (default 7 days, so logs stay
            readable for a week; the Service/ConfigMap/PodGroup are removed by ``cancel``).
        quota: declared namespace quota; a gang above it is a SpecError.
        volumes: extra PVC mounts.
        master_port: the rendezvous port (torchrun's default 29500).
        gateway: the Gateway an endpoint's HTTPRoute attaches to (required for endpoints).
        container_port: the port serving containers listen on (default 8080).
        serving_image: image for endpoints given a ``handler`` rather than an image.
        probe_paths: readiness/liveness paths of variants given an ``image`` (no probes when
            unset); ``handler`` variants always get ``/ready`` and ``/live`` (``unijob.serve``).
        endpoint_cpu / endpoint_memory_gib: per-replica requests (cpu requests are what the HPA's
            cpu_utilization is measured against).
        metric_names: autoscaling metric -> the custom/Pods metric name a metrics adapter
            (prometheus-adapter, KEDA) serves; see :mod:`unijob_adapters.kubernetes.endpoints`.
        registry_uri: the cluster's MLflow tracking server (``http(s)://...``) that holds the model
            registry (``unijob models ... -t kubernetes``); default ``$MLFLOW_TRACKING_URI``.
    """

    namespace: Optional[str] = Field(default=None, pattern=DNS_LABEL, max_length=63)
    context: Optional[str] = None
    kubeconfig: Optional[str] = None
    api: Literal["job", "jobset"] = "job"
    gang: Literal["none", "kueue", "volcano"] = "none"
    queue: Optional[str] = Field(default=None, pattern=DNS_LABEL, max_length=63)
    provider: Literal["gke", "eks", "aks", "generic"] = "generic"
    gpu_product_label_key: str = "nvidia.com/gpu.product"
    gpu_product_labels: dict[str, str] = Field(default_factory=dict)
    spot_node_selector: Optional[dict[str, str]] = None
    spot_tolerations: Optional[list[Toleration]] = None
    image: Optional[str] = None
    run_as_user: int = Field(default=1000, ge=1)
    service_account: Optional[str] = Field(default=None, pattern=DNS_LABEL, max_length=253)
    image_pull_secrets: list[str] = Field(default_factory=list)
    priority_class: Optional[str] = None
    ttl_seconds_after_finished: int = Field(default=7 * 86400, ge=0)
    quota: Optional[Quota] = None
    volumes: list[PvcMount] = Field(default_factory=list)
    master_port: int = Field(default=29500, ge=1, le=65535)
    gateway: Optional[GatewayRef] = None
    container_port: int = Field(default=8080, ge=1, le=65535)
    serving_image: Optional[str] = None
    probe_paths: Optional[ProbePaths] = None
    endpoint_cpu: float = Field(default=1.0, gt=0)
    endpoint_memory_gib: float = Field(default=2.0, gt=0)
    metric_names: dict[str, str] = Field(default_factory=dict)
    registry_uri: Optional[str] = Field(default=None, pattern=r"^https?://")

    def gpu_label_values(self) -> dict[str, str]:
        """The effective accelerator -> node label value map (defaults, then the spec's entries)."""
        return {**DEFAULT_GPU_PRODUCT_LABELS, **self.gpu_product_labels}


# Completed from the validators an earlier process built (keyed by the installed versions and the
# source files), else built by pydantic now: see unijob.modelcache.
from unijob import modelcache  # noqa: E402

modelcache.install_module(__name__)
