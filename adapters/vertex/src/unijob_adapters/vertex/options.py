"""The ``targets.vertex`` block of a spec: where and how a job runs on Vertex AI.

Example::

    targets:
      vertex:
        project: my-project
        location: us-central1
        staging_bucket: gs://my-bucket/unijob-staging
        service_account: trainer@my-project.iam.gserviceaccount.com

``project`` and ``location`` fall back to the environment (:data:`PROJECT_ENV`,
:data:`LOCATION_ENV`, in that order) when absent; ``plan()`` raises a SpecError naming
``targets.vertex.project`` / ``targets.vertex.location`` when neither gives one.
"""

from __future__ import annotations

import os
import re
from typing import Literal, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Environment variables that name the project, first match wins (google-cloud client libraries
#: and gcloud use the first two; GCLOUD_PROJECT is the older spelling).
PROJECT_ENV = ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "GCLOUD_PROJECT")
#: Environment variables that name the region (Vertex SDK and gcloud ai use CLOUD_ML_REGION;
#: GOOGLE_CLOUD_REGION and GOOGLE_CLOUD_LOCATION are common in CI).
LOCATION_ENV = ("CLOUD_ML_REGION", "GOOGLE_CLOUD_REGION", "GOOGLE_CLOUD_LOCATION")

_KMS_RE = re.compile(r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")
_NETWORK_RE = re.compile(r"^projects/[^/]+/global/networks/[^/]+$")
_LOCATION_RE = re.compile(r"^[a-z]+-[a-z]+\d+$")


class VertexOptions(BaseModel):
    """Options of the Vertex AI target (all optional).

    Attributes:
        project: Google Cloud project id; default from :data:`PROJECT_ENV`.
        location: region, e.g. ``us-central1``; default from :data:`LOCATION_ENV`.
        staging_bucket: ``gs://`` prefix where ``submit`` uploads a script job's source tarball;
            default ``<bucket of output>/unijob-staging``.
        service_account: email of the service account the job (and deployed models) run as.
        network: VPC peering network, ``projects/NUMBER/global/networks/NAME``.
        reserved_ip_ranges: names of reserved IP ranges under ``network``.
        encryption_key: Cloud KMS key, ``projects/P/locations/L/keyRings/R/cryptoKeys/K`` (CMEK).
        boot_disk_type: ``pd-ssd`` (Vertex default) or ``pd-standard``.
        restart_job_on_worker_restart: restart the whole gang when one worker restarts;
            default ``True`` for multi-node jobs (gang semantics), ``False`` otherwise.
        disable_retries: do not let Vertex retry a failed job; default ``True`` when
            ``spot.max_restarts`` is 0.
        tensorboard: a Vertex TensorBoard resource name to stream logs to.
        endpoint_spot: deploy endpoint replicas on Spot VMs (``dedicatedResources.spot``).
        existing_endpoint: an endpoint that exists already, ``ID`` or
            ``projects/P/locations/L/endpoints/ID`` (same project and location): deploys (``unijob
            deploy``, a pipeline's deploy step, a compiled Vertex pipeline) put the spec's variants
            there instead of creating ``<name>``, and ``unijob endpoints delete`` takes only them away.
        serving_image: container used for endpoints given as ``handler``: the unijob serving image
            (``unijob serve-image``), run with ``UNIJOB_HANDLER=<handler>`` on port 8080.
        api_endpoint: override of the Vertex API host (default ``https://LOCATION-aiplatform.googleapis.com``).
        logging_endpoint: override of the Cloud Logging API host (default ``https://logging.googleapis.com``).
        storage_endpoint: override of the Cloud Storage JSON API host (default ``https://storage.googleapis.com``).
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)  # completed by modelcache below

    project: Optional[str] = Field(default=None, pattern=r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
    location: Optional[str] = None
    staging_bucket: Optional[str] = None
    service_account: Optional[str] = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    network: Optional[str] = None
    reserved_ip_ranges: list[str] = Field(default_factory=list)
    encryption_key: Optional[str] = None
    boot_disk_type: Literal["pd-ssd", "pd-standard"] = "pd-ssd"
    restart_job_on_worker_restart: Optional[bool] = None
    disable_retries: Optional[bool] = None
    tensorboard: Optional[str] = None
    serving_image: Optional[str] = None
    endpoint_spot: bool = False
    existing_endpoint: Optional[str] = Field(
        default=None, pattern=r"^(projects/[-a-z0-9]+/locations/[-a-z0-9]+/endpoints/)?[a-z0-9][-a-z0-9]{0,62}$")
    api_endpoint: Optional[str] = None
    logging_endpoint: Optional[str] = None
    storage_endpoint: Optional[str] = None

    @field_validator("location")
    @classmethod
    def _location(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not _LOCATION_RE.match(v):
            raise ValueError(f"expected a Vertex region such as us-central1 or europe-west4, got {v!r}")
        return v

    @field_validator("staging_bucket")
    @classmethod
    def _staging(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not re.match(r"^gs://[a-z0-9][-_.a-z0-9]{1,220}(/.*)?$", v):
            raise ValueError(f"expected a gs://bucket[/prefix] URI, got {v!r}")
        return v.rstrip("/") if v else v

    @field_validator("network")
    @classmethod
    def _network(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not _NETWORK_RE.match(v):
            raise ValueError("expected projects/PROJECT_NUMBER/global/networks/NAME")
        return v

    @field_validator("encryption_key")
    @classmethod
    def _kms(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not _KMS_RE.match(v):
            raise ValueError("expected a Cloud KMS key projects/P/locations/L/keyRings/R/cryptoKeys/K")
        return v


def resolve_project(opts: VertexOptions, environ: Mapping[str, str] | None = None) -> Optional[str]:
    """The project from the options, else the first of :data:`PROJECT_ENV` set, else ``None``."""
    env = os.environ if environ is None else environ
    return opts.project or next((env[k] for k in PROJECT_ENV if env.get(k)), None)


def resolve_location(opts: VertexOptions, environ: Mapping[str, str] | None = None) -> Optional[str]:
    """The region from the options, else the first of :data:`LOCATION_ENV` set, else ``None``."""
    env = os.environ if environ is None else environ
    return opts.location or next((env[k] for k in LOCATION_ENV if env.get(k)), None)


def api_endpoint(opts_endpoint: Optional[str], location: str) -> str:
    """The Vertex API host: the override, else the regional ``LOCATION-aiplatform.googleapis.com``
    (https://cloud.google.com/vertex-ai/docs/reference/rest#service-endpoint, 2026-11)."""
    return opts_endpoint or f"https://{location}-aiplatform.googleapis.com"


# Completed from the validators an earlier process built (keyed by the installed versions and the
# source files), else built by pydantic now: see unijob.modelcache.
from unijob import modelcache  # noqa: E402

modelcache.install_module(__name__)
