"""Small helpers for adapter tests that run real jobs (the Slurm and Ray test clusters)."""

from __future__ import annotations

import os
import time
from typing import Any


def spec_with(path: os.PathLike, target: str, options: dict, **updates: Any) -> Any:
    """Load the spec file at ``path`` and give it ``targets.<target>`` = ``options`` (plus field ``updates``)."""
    from unijob.loading import load_spec

    spec = load_spec(path).spec
    return spec.model_copy(update={"targets": {**spec.targets, target: options}, **updates})


def wait_final(adapter: Any, handle: Any, timeout: float = 120.0) -> Any:
    """Poll ``adapter.status(handle)`` every 0.5 s until final; returns the final status.

    Raises:
        AssertionError: not final within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = adapter.status(handle)
        if st.state.is_final:
            return st
        time.sleep(0.5)
    raise AssertionError(f"job {handle.native_id} not final after {timeout} s: {adapter.status(handle)}")
