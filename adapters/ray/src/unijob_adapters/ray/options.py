"""The ``targets.ray`` block of a spec: which Ray cluster, and how a gang's bundles are shaped.

Example::

    targets:
      ray:
        address: http://ray-head.internal:8265     # the Ray dashboard (Jobs API) address
        bundle_resources: {spot: 1}                # extra custom resources per node bundle
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

#: The Ray dashboard's default port (``ray start --head --dashboard-port``, default 8265; docs.ray.io
#: "Ray Jobs CLI/SDK": ``JobSubmissionClient("http://127.0.0.1:8265")``).
DEFAULT_ADDRESS = "http://127.0.0.1:8265"


class RayOptions(BaseModel):
    """Options of the ``ray`` target (``targets.ray`` in a spec).

    Attributes:
        address: the Ray Jobs API address (the head node's dashboard, ``http://host:8265``). When
            unset: ``RAY_ADDRESS`` from the submitting environment if it is an ``http(s)://``
            address, else :data:`DEFAULT_ADDRESS`.
        python: the interpreter that starts the gang launcher on the cluster (a name on the
            cluster's ``PATH`` or a path). Ranks run with the launcher's own interpreter
            (``sys.executable`` of the Ray worker, the ``pip`` virtualenv when requirements are set).
        bundle_resources: extra Ray resources each node bundle of the placement group asks for
            (custom node labels such as ``{"spot": 1}``), added to CPU, GPU and
            ``accelerator_type:<TYPE>``.
        cpus_per_node: CPUs each node bundle reserves (default ``resources.cpus``, else one per rank).
        entrypoint_num_cpus: CPUs reserved for the launcher itself (``submit_job(entrypoint_num_cpus=)``).
            0 keeps the launcher on the head node (Ray runs an entrypoint without resources there),
            so losing a worker node never takes the launcher with it.
        master_port: rank 0's rendezvous port; ``None`` picks a free port on rank 0's node.
        metadata: extra ``submit_job(metadata=)`` entries (strings).
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)  # completed by modelcache below

    address: Optional[str] = Field(default=None, pattern=r"^(https?|ray)://[^\s]+$")
    python: str = Field(default="python", pattern=r"^[^\s'\"$`\\]+$")
    bundle_resources: dict[str, float] = Field(default_factory=dict)
    cpus_per_node: Optional[float] = Field(default=None, gt=0)
    entrypoint_num_cpus: float = Field(default=0, ge=0)
    master_port: Optional[int] = Field(default=None, ge=1024, le=65535)
    metadata: dict[str, str] = Field(default_factory=dict)


# Completed from the validators an earlier process built (keyed by the installed versions and the
# source files), else built by pydantic now: see unijob.modelcache.
from unijob import modelcache  # noqa: E402

modelcache.install_module(__name__)
