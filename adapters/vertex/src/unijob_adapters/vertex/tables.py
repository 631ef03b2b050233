"""Vertex AI facts the adapter maps onto: accelerator enums, prebuilt training containers,
autoscaling metrics, job states. Each table names its source and the date it was checked.
"""

from __future__ import annotations

#: unijob canonical accelerator -> ``MachineSpec.accelerator_type`` enum name.
#: Source: the ``AcceleratorType`` enum of the installed ``google.cloud.aiplatform_v1`` proto
#: (google-cloud-aiplatform 2.7, checked 2026-11-21) and
#: https://cloud.google.com/vertex-ai/docs/reference/rest/v1/MachineSpec#AcceleratorType.
#: A10G (AWS only), A10, L40S and V100-32GB have no Vertex enum and are rejected.
ACCELERATOR_TYPES: dict[str, str] = {
    "T4": "NVIDIA_TESLA_T4",
    "V100": "NVIDIA_TESLA_V100",
    "P100": "NVIDIA_TESLA_P100",
    "A100": "NVIDIA_TESLA_A100",
    "A100-80GB": "NVIDIA_A100_80GB",
    "H100": "NVIDIA_H100_80GB",
    "H200": "NVIDIA_H200_141GB",
    "L4": "NVIDIA_L4",
}

#: Prebuilt PyTorch training containers (``us-docker.pkg.dev/vertex-ai/training/...``) by
#: framework version -> Python tag. Source: "Prebuilt containers for custom training",
#: https://cloud.google.com/vertex-ai/docs/training/pre-built-containers (checked 2026-11-21).
#: The image tag is ``pytorch-{gpu|cpu}.{major}-{minor}.{pyXY}:latest``.
PYTORCH_TRAINING_IMAGES: dict[str, str] = {
    "2.4": "py310",
    "2.3": "py310",
    "2.2": "py310",
    "2.1": "py310",
    "2.0": "py310",
    "1.13": "py310",
}
#: Framework versions newer than the newest prebuilt container map to the newest one, with a note.
NEWEST_PYTORCH = "2.4"


def pytorch_training_image(version: str, gpu: bool) -> tuple[str, str | None]:
    """The prebuilt PyTorch training image for ``version`` (``"2.4"``, ``"2.5.1"``...).

    Returns:
        (image URI, a note when the version was substituted, else ``None``).

    Raises:
        KeyError: a version older than every prebuilt container.
    """
    mm = ".".join(version.split(".")[:2])
    note = None
    if mm not in PYTORCH_TRAINING_IMAGES:
        major, minor = (int(x) for x in mm.split("."))
        newest = tuple(int(x) for x in NEWEST_PYTORCH.split("."))
        if (major, minor) > newest:
            note = (f"framework.version {version} has no Vertex prebuilt training container yet; "
                    f"using PyTorch {NEWEST_PYTORCH}")
            mm = NEWEST_PYTORCH
        else:
            raise KeyError(mm)
    py = PYTORCH_TRAINING_IMAGES[mm]
    kind = "gpu" if gpu else "cpu"
    return f"us-docker.pkg.dev/vertex-ai/training/pytorch-{kind}.{mm.replace('.', '-')}.{py}:latest", note


#: Prebuilt scikit-learn training containers (CPU only): scikit-learn version -> image. Source:
#: "Prebuilt containers for custom training", scikit-learn table,
#: https://cloud.google.com/vertex-ai/docs/training/pre-built-containers (read 2026-11-29; the
#: ``us-docker.pkg.dev/vertex-ai/training/sklearn-cpu.<major>-<minor>:latest`` URIs).
SKLEARN_TRAINING_VERSIONS = ("1.0", "1.2", "1.3", "1.6")


def sklearn_training_image(version: str) -> str:
    """The prebuilt scikit-learn training image for ``version`` (``"1.2"``, ``"1.2.2"``).

    Raises:
        KeyError: no prebuilt container for that version.
    """
    mm = ".".join(version.split(".")[:2])
    if mm not in SKLEARN_TRAINING_VERSIONS:
        raise KeyError(mm)
    return f"us-docker.pkg.dev/vertex-ai/training/sklearn-cpu.{mm.replace('.', '-')}:latest"


#: unijob autoscaling metric -> Vertex ``AutoscalingMetricSpec.metric_name``; the target is a
#: percentage (1-100). Source: ``AutoscalingMetricSpec`` docstring in aiplatform_v1 (2.7) and
#: https://cloud.google.com/vertex-ai/docs/predictions/configure-compute#autoscaling (2026-11-21).
AUTOSCALING_METRICS: dict[str, str] = {
    "gpu_utilization": "aiplatform.googleapis.com/prediction/online/accelerator/duty_cycle",
    "cpu_utilization": "aiplatform.googleapis.com/prediction/online/cpu/utilization",
}

#: Why the other unijob metrics are rejected.
#: Why Vertex endpoints cannot scale to zero (see :mod:`unijob_adapters.vertex.endpoints`).
SCALE_TO_ZERO_REASON = (
    "Vertex AI dedicated endpoints need minReplicaCount >= 1 (API v1 DedicatedResources); "
    "scale-to-zero is a v1beta1 preview only")

UNSUPPORTED_METRIC_REASON = (
    "Vertex dedicated endpoints autoscale on a utilization percentage (accelerator duty cycle or "
    "CPU utilization); per-replica invocations and concurrency targets have no documented v1 "
    "equivalent. Use gpu_utilization or cpu_utilization with a target of 1-100")

#: Vertex ``JobState`` name -> unijob state name. Source: ``google.cloud.aiplatform_v1.JobState``.
JOB_STATES: dict[str, str] = {
    "JOB_STATE_UNSPECIFIED": "QUEUED",
    "JOB_STATE_QUEUED": "QUEUED",
    "JOB_STATE_PENDING": "STARTING",
    "JOB_STATE_RUNNING": "RUNNING",
    "JOB_STATE_UPDATING": "RUNNING",
    "JOB_STATE_PAUSED": "QUEUED",
    "JOB_STATE_SUCCEEDED": "SUCCEEDED",
    "JOB_STATE_PARTIALLY_SUCCEEDED": "FAILED",
    "JOB_STATE_FAILED": "FAILED",
    "JOB_STATE_EXPIRED": "FAILED",
    "JOB_STATE_CANCELLING": "STOPPING",
    "JOB_STATE_CANCELLED": "CANCELLED",
}

#: Words in a failed job's error that mean "no capacity" (spot stockout, resource exhaustion,
#: max_wait_duration passed): these trigger the on-demand fallback. Error code 8 is
#: google.rpc.Code RESOURCE_EXHAUSTED.
CAPACITY_WORDS = ("stockout", "resource_exhausted", "resources are insufficient", "capacity",
                  "not enough resources", "max_wait_duration")

#: Boot disk size Vertex uses when none is given (GB). Source: DiskSpec,
#: https://cloud.google.com/vertex-ai/docs/reference/rest/v1/DiskSpec (2026-11-21).
DEFAULT_BOOT_DISK_GB = 100
