"""The ``targets.local`` block of a spec."""

from __future__ import annotations

import sys
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from unijob.spec import Duration


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
    """

    model_config = ConfigDict(extra="forbid")

    simulate_preemption: Optional[Duration] = None
    simulate_preemptions: int = Field(default=1, ge=1, le=100)
    preemption_grace: Duration = 10
    master_addr: str = Field(default="127.0.0.1", min_length=1)
    master_port: Optional[int] = Field(default=None, ge=1, le=65535)
    python: str = Field(default_factory=lambda: sys.executable, min_length=1)
    run_image_command: bool = False
