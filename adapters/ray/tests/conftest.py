"""Fixtures: one real two-node Ray cluster for the whole test run (``ray start --head`` and one
worker node on 127.0.0.1, each with its own temp dir and ports), run by a cluster Python without
unijob (ray[default] of the same version, and scikit-learn for the quickstart), stopped by PID.

The cluster Python is a venv cached across runs under the system temp dir (about 35 s to build
with a warm pip cache, 400 MB); the cluster costs about 8 s per node and 850 MB while it runs.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cluster_python():
    """A Python like a Ray cluster's: ray[default] (this venv's version) and scikit-learn, no unijob."""
    try:
        from importlib.metadata import version

        ray_version = version("ray")
    except Exception:  # noqa: BLE001
        pytest.skip("ray is not installed: pip install 'unijob[ray]'")
    from unijob.testing.contracts import job_python

    root = Path(tempfile.gettempdir()) / "unijob-test-pythons"
    root.mkdir(exist_ok=True)
    return job_python(root, [f"ray[default]=={ray_version}", "scikit-learn"])


@pytest.fixture(scope="session")
def ray_cluster(cluster_python):
    """The session's Ray cluster: a head (4 CPUs) and one worker node (2 CPUs), 1 logical GPU and
    ``accelerator_type:L4`` each."""
    from unijob_adapters.ray.testing import RayTestCluster

    root = Path(tempfile.mkdtemp(prefix="ujray-"))
    cluster = RayTestCluster(root, python=str(cluster_python))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def ray_opts(ray_cluster):
    """``targets.ray`` for the test cluster."""
    return {"address": ray_cluster.address}


@pytest.fixture
def adapter(ray_cluster):
    from unijob_adapters.ray.adapter import RayAdapter

    return RayAdapter(poll_interval=0.5)
