"""The ``targets.local`` block of a spec."""

from __future__ import annotations

import sys
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from unijob.spec import Duration


def _this_python() -> str:
    """The interpreter running unijob (a named function, not a lambda: modelcache pickles the schema)."""
    return sys.executable


class LocalOptions(BaseModel):
    """Options of the local target (``targets: {local: {...}}``).

    Attributes:
        simulate_preemption: seconds after a (re)start of the gang at which it gets a simulated
            spot preemption (SIGTERM to every rank, ``preemption_grace``, SIGKILL, relaunch from the
            checkpoint); ``None`` = never. Only for ``spot.policy`` ``spot``/``spot_with_fallback``.
        simulate_preemptions: how many simulated preemptions in all (default 1: one reclaim
            mid-run, then the relaunched gang runs to the end); each comes ``simulate_preemption``
            seconds after the latest (re)start.
        preemption_grace: seconds between the SIGTERM notice and SIGKILL, for preemptions, gang
            stops after a rank failure, ``max_run`` and cancel. Default 10 s (Kubernetes uses 30 s,
            Vertex/GCE spot give 30 s, EC2 spot 120 s; 10 s keeps local runs snappy).
        master_addr: address ranks meet at (``MASTER_ADDR``).
        master_port: port of rank 0 (``MASTER_PORT``); ``None`` = a free port picked at each
            (re)launch.
        python: interpreter for ``script`` jobs; default the interpreter running unijob.
        run_image_command: ``image`` jobs need a container runtime this target does not use; with
            ``true`` their ``command`` + ``args`` run directly on the host instead.
        endpoint_host / endpoint_port: where a local endpoint's router listens; port ``None`` = a
            free port chosen at deploy (``unijob endpoints --refresh`` shows the URL).
        autoscaling_window: seconds over which the router averages the autoscaling metric
            (concurrency or invocations per replica per minute) before comparing it with the
            target. Default 10 s (an assumption: Knative's stable window is 60 s, its panic window
            6 s; local endpoints are for trying things out, so they react faster).
        deploy_timeout: seconds ``deploy`` waits for ``min_replicas`` of every variant to answer
            ``/ping`` (model loading included) before it gives up and stops them all.
        request_timeout: seconds the router waits for a replica's answer (SageMaker's real-time
            invocation limit is 60 s) before it answers 504.
        registry_uri: the MLflow tracking server that holds the local model registry
            (``http://host:port``); default ``$MLFLOW_TRACKING_URI`` when it is an http(s) URL, else
            a server unijob starts on 127.0.0.1 (:mod:`unijob.local.registry`).
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)  # completed by modelcache below

    simulate_preemption: Optional[Duration] = None
    simulate_preemptions: int = Field(default=1, ge=1, le=100)
    preemption_grace: Duration = 10
    master_addr: str = Field(default="127.0.0.1", min_length=1)
    master_port: Optional[int] = Field(default=None, ge=1, le=65535)
    python: str = Field(default_factory=_this_python, min_length=1)
    run_image_command: bool = False
    endpoint_host: str = Field(default="127.0.0.1", min_length=1)
    endpoint_port: Optional[int] = Field(default=None, ge=1, le=65535)
    autoscaling_window: Duration = 10
    deploy_timeout: Duration = 120
    request_timeout: Duration = 60
    registry_uri: Optional[str] = Field(default=None, pattern=r"^https?://")


# Completed from the validators an earlier process built (keyed by the installed versions and the
# source files), else built by pydantic now: see unijob.modelcache.
from unijob import modelcache  # noqa: E402

modelcache.install_module(__name__)
