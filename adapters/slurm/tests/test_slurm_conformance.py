"""The shared adapter conformance suite, against the real test cluster."""

from __future__ import annotations

import textwrap

import pytest

from unijob.testing.conformance import SECRET_ENV, AdapterConformance
from unijob_adapters.slurm.testing import spec_with


class TestSlurmConformance(AdapterConformance):
    @pytest.fixture
    def job_spec(self, slurm_opts, tmp_path):
        d = tmp_path / "conf"
        d.mkdir()
        (d / "train.py").write_text(textwrap.dedent("""
            import time
            from unijob import runtime
            print("rank", runtime.context().rank, "starting", flush=True)
            time.sleep(20)
        """))
        (d / "job.yaml").write_text(f"name: conform\nscript: train.py\nsecrets: {{TOKEN: 'env://{SECRET_ENV}'}}\n")
        return spec_with(d / "job.yaml", slurm_opts)

    @pytest.fixture
    def created_jobs(self, slurm_cluster):
        def count() -> int:
            return len(slurm_cluster.run(["squeue", "-h", "-t", "all", "-o", "%i"]).stdout.split())
        return count

    @pytest.fixture(autouse=True)
    def _secret_set(self, monkeypatch):
        monkeypatch.setenv(SECRET_ENV, "s3cr3t-value-that-must-never-leak-7f1c")

    def test_dry_run_sends_and_starts_nothing(self, adapter, job_spec, created_jobs, slurm_opts):
        """Overrides the suite's version, which forbids starting any process: on Slurm every question
        to the cluster is a command (``sbatch --test-only`` here), so the dry run runs that one command
        and must create no job and stage nothing."""
        from pathlib import Path

        plan = adapter.plan(job_spec, "sub-dry")
        plan.extra["dry_run"] = True
        before = created_jobs()
        handle = adapter.submit(plan)
        assert handle.extra.get("dry_run") is True and "to start at" in handle.extra["answer"]
        assert created_jobs() == before
        assert not Path(plan.requests[0].body["cwd"]).exists()
        assert adapter.status(handle).state.value == "CANCELLED"
        real = adapter.submit(adapter.plan(job_spec, "sub-dry"))
        assert created_jobs() - before == 1
        adapter.cancel(real)
