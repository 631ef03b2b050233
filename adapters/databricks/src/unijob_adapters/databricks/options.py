"""The ``targets.databricks`` block of a spec, and the defaults it falls back on.

Sources of the defaults (checked 2026-11-21):

- Runtimes: "Databricks Runtime release notes versions and compatibility"
  (https://docs.databricks.com/aws/en/release-notes/runtime/): 15.4 LTS and 15.4 LTS for Machine
  Learning, released 2024-08-19, supported until 2027-08-19. Its ML variants are spelled
  ``15.4.x-gpu-ml-scala2.12`` (GPU) and ``15.4.x-cpu-ml-scala2.12`` (CPU) in the Clusters API.
- Databricks Container Services (https://docs.databricks.com/aws/en/compute/custom-containers):
  "Databricks Runtime for Machine Learning does not support Databricks Container Services"; not on
  standard (shared) access mode; not on AWS Graviton instance types. Container jobs therefore default
  to the plain ``15.4.x-scala2.12`` runtime.
- ``first_on_demand`` (Clusters API, ``aws_attributes.first_on_demand``): the first N nodes of the
  cluster, the driver first, are on-demand; 1 keeps the driver on-demand so a spot reclaim never
  takes the Spark driver (and with it the run).
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Default runtimes (see the module docstring for the source).
GPU_ML_RUNTIME = "15.4.x-gpu-ml-scala2.12"
CPU_ML_RUNTIME = "15.4.x-cpu-ml-scala2.12"
CONTAINER_RUNTIME = "15.4.x-scala2.12"

SPARK_VERSION_RE = r"^\d+\.\d+\.x(-[a-z0-9]+)*-scala\d+\.\d+$"


class ServingOptions(BaseModel):
    """Model Serving settings (``targets.databricks.serving``).

    Attributes:
        workload_type: override the compute type chosen from the accelerator (``CPU``,
            ``GPU_SMALL``, ``GPU_MEDIUM``, ``MULTIGPU_MEDIUM``, ``GPU_LARGE``, ...).
        workload_size: override the size chosen from ``max_replicas`` (``Small``, ``Medium``,
            ``Large``).
        route_optimized: create a route-optimized endpoint.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)  # completed by modelcache below

    workload_type: Optional[str] = None
    workload_size: Optional[Literal["Small", "Medium", "Large"]] = None
    route_optimized: Optional[bool] = None


class DatabricksOptions(BaseModel):
    """Options of the Databricks target (``targets: {databricks: {...}}``).

    Attributes:
        host: workspace URL (``https://dbc-....cloud.databricks.com``); default: whatever the
            SDK's auth chain finds at submit time (``DATABRICKS_HOST``, a ``~/.databrickscfg``
            profile). ``plan`` needs no host.
        profile: a ``~/.databrickscfg`` profile name for the SDK's auth chain.
        cloud: the workspace's cloud, which decides node types (the shared catalog's ``ec2``,
            ``azure`` or ``gcp`` family) and how spot is spelled. Default ``aws``.
        spark_version: the Databricks Runtime; default a GPU ML runtime when an accelerator is
            asked for, the CPU ML runtime otherwise, the standard runtime for container jobs.
        node_type_id: override the worker node type (else ``resources.instance_type.databricks``,
            else the catalog's pick for the accelerator).
        driver_node_type_id: driver node type; default the worker type.
        first_on_demand: nodes (driver first) kept on-demand under a spot policy; default 1 on
            multi-node clusters, 0 on a single-node cluster (its only node is the driver).
        upload_dir: where submit puts the source dir: a workspace folder (``/Workspace/...``,
            workspace import API) or a Unity Catalog volume (``/Volumes/cat/schema/vol/...``,
            Files API). Content-addressed below it: ``<upload_dir>/<name>/<sha256[:16]>/``.
        instance_pool_id / driver_instance_pool_id / policy_id: cluster settings passed through.
        cluster_log_dir: ``dbfs:/...`` or ``/Volumes/...``: the cluster delivers driver and
            executor logs there (``cluster_log_conf``); ``logs`` reads the driver's from a volume.
        docker_username / docker_password: basic auth for a private image registry; the password
            is a ``databricks-secret://scope/key`` reference, sent as ``{{secrets/scope/key}}``.
        container_services: whether the workspace has Databricks Container Services enabled (an
            admin setting); container jobs are rejected at plan time when it is ``false``.
        runtime_package: a PyPI requirement installed on the cluster *instead of* the runtime
            wheel unijob uploads with every script job (default: none; the wheel needs no package
            index, and the name ``unijob`` on a public index is not one to trust).
        serving: Model Serving settings.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)  # completed by modelcache below

    host: Optional[str] = Field(default=None, pattern=r"^https?://[^\s/]+/?$")
    profile: Optional[str] = None
    cloud: Literal["aws", "azure", "gcp"] = "aws"
    spark_version: Optional[str] = Field(default=None, pattern=SPARK_VERSION_RE)
    node_type_id: Optional[str] = None
    driver_node_type_id: Optional[str] = None
    first_on_demand: Optional[int] = Field(default=None, ge=0)
    upload_dir: str = "/Workspace/Shared/unijob"
    instance_pool_id: Optional[str] = None
    driver_instance_pool_id: Optional[str] = None
    policy_id: Optional[str] = None
    cluster_log_dir: Optional[str] = None
    docker_username: Optional[str] = None
    docker_password: Optional[str] = Field(default=None, pattern=r"^databricks-secret://[^/]+/.+$")
    container_services: bool = True
    runtime_package: Optional[str] = None
    serving: ServingOptions = Field(default_factory=ServingOptions)

    @field_validator("upload_dir")
    @classmethod
    def _upload_dir(cls, v: str) -> str:
        v = v.rstrip("/")
        if v.startswith("/Workspace/") or (v.startswith("/Volumes/") and len(v.split("/")) >= 5):
            return v
        raise ValueError("expected a workspace folder /Workspace/... or a Unity Catalog volume path "
                         "/Volumes/<catalog>/<schema>/<volume>/...")

    @field_validator("cluster_log_dir")
    @classmethod
    def _log_dir(cls, v: Optional[str]) -> Optional[str]:
        if v is None or v.startswith("dbfs:/") or v.startswith("/Volumes/"):
            return v
        raise ValueError("expected dbfs:/... or /Volumes/<catalog>/<schema>/<volume>/...")

    @property
    def catalog_family(self) -> str:
        """The shared instance catalog's family for this cloud (``ec2``, ``azure``, ``gcp``)."""
        return {"aws": "ec2", "azure": "azure", "gcp": "gcp"}[self.cloud]


# Completed from the validators an earlier process built (keyed by the installed versions and the
# source files), else built by pydantic now: see unijob.modelcache.
from unijob import modelcache  # noqa: E402

modelcache.install_module(__name__)
