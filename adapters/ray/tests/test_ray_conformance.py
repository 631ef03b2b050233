"""The shared adapter conformance suite, against the real test cluster."""

from __future__ import annotations

import textwrap

import pytest

from unijob.testing.conformance import SECRET_ENV, AdapterConformance
from unijob_adapters.ray.testing import spec_with


class TestRayConformance(AdapterConformance):
    @pytest.fixture
    def job_spec(self, ray_opts, tmp_path):
        d = tmp_path / "conf"
        d.mkdir()
        (d / "train.py").write_text(textwrap.dedent("""
            import time
            from unijob import runtime
            print("rank", runtime.context().rank, "starting", flush=True)
            time.sleep(20)
        """))
        (d / "job.yaml").write_text(f"name: conform\nscript: train.py\nsecrets: {{TOKEN: 'env://{SECRET_ENV}'}}\n")
        return spec_with(d / "job.yaml", ray_opts)

    @pytest.fixture
    def created_jobs(self, ray_cluster):
        from ray.job_submission import JobSubmissionClient

        client = JobSubmissionClient(ray_cluster.address)
        return lambda: len(client.list_jobs())

    @pytest.fixture(autouse=True)
    def _secret_set(self, monkeypatch):
        monkeypatch.setenv(SECRET_ENV, "s3cr3t-value-that-must-never-leak-7f1c")
