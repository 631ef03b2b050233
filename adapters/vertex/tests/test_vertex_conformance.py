"""The core conformance suite, run against the Vertex adapter wired to the local fake."""

from __future__ import annotations

import subprocess
import sys

import pytest

from unijob.testing.conformance import AdapterConformance, no_network  # noqa: F401  (fixture)

# Every module the interpreter already holds at start-up. google-cloud-aiplatform installs a
# namespace-package ``*-nspkg.pth`` that puts empty ``google`` and ``google.cloud`` modules into
# sys.modules of *every* interpreter in this venv, before any import: the core's check
# (``sys.modules & {"google", ...}``) would fail even for ``python -c pass``.
_BASELINE = "import sys; print(' '.join(sorted(sys.modules)))"
_AFTER = "import sys, importlib; importlib.import_module(%r); print(' '.join(sorted(sys.modules)))"


class TestVertexConformance(AdapterConformance):
    def test_importing_the_adapter_pulls_no_sdk(self, adapter) -> None:
        """Baseline-aware version of the core test (see _BASELINE): importing the adapter module
        adds no google/grpc/proto module beyond what the bare interpreter already holds."""
        run = lambda code: set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                              check=True).stdout.split())
        added = run(_AFTER % type(adapter).__module__) - run(_BASELINE)
        heavy = sorted(m for m in added if m.split(".")[0] in ("google", "grpc", "proto", "requests", "urllib3"))
        assert heavy == [], f"importing the adapter imported {heavy}"

    @pytest.fixture
    def job_spec(self, make_spec):
        return make_spec(resources={"accelerator": "A100:8", "nodes": 2},
                         spot={"policy": "spot_with_fallback", "max_wait": "26h"}, max_run="24h",
                         checkpoint={"uri": "gs://bucket/ckpt"},
                         secrets={"HF_TOKEN": "gcp-secretmanager://projects/demo-project/secrets/hf"})

    @pytest.fixture
    def created_jobs(self, fake):
        return lambda: fake.created_jobs

    @pytest.fixture
    def stored_objects(self, fake):
        return lambda: len(fake.objects)

    @pytest.fixture
    def endpoint_spec(self, make_spec):
        return make_spec(endpoint={
            "model": "gs://bucket/model", "image": "us-docker.pkg.dev/p/r/serve:1", "accelerator": "L4",
            "min_replicas": 1, "max_replicas": 4, "autoscaling": {"metric": "gpu_utilization", "target": 60},
            "variants": [{"name": "blue", "weight": 80}, {"name": "green", "weight": 20, "model": "gs://bucket/model2"}]})

    @pytest.fixture
    def leftover_endpoint_resources(self, fake):
        return lambda: len(fake.models) + len(fake.endpoints)

    @pytest.fixture(autouse=True)
    def _no_validation_errors(self, fake):
        yield
        assert fake.errors == [], f"the fake rejected requests: {fake.errors}"
