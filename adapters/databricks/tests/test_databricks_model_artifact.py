"""Where a finished run's model is (``job:<name-or-id>`` endpoint models): the spec's output location,
which the run's tasks got as UNIJOB_OUTPUT_URI; kept in the handle and, for older handles, read back
with runs/get from the fake (which answers with the submitted tasks' new_cluster, as Databricks does)."""

import pytest

from unijob.contract import JobHandle
from unijob.errors import UsageError

JOB = """
name: life
script: src/train.py
output: /Volumes/main/ml/models/life
"""
FILES = {"src/train.py": "print('loss 0.1')\n"}


@pytest.fixture(autouse=True)
def _no_bad_bodies(fake):
    yield
    assert fake.errors == [], fake.errors


def test_the_output_location_is_the_model(dbx_adapter, fake, spec_factory):
    h = dbx_adapter.submit(dbx_adapter.plan(spec_factory(JOB, FILES), "m-1"))
    fake.set_state(int(h.native_id), "TERMINATED", "SUCCESS")
    assert h.extra["output_uri"] == "/Volumes/main/ml/models/life"
    assert dbx_adapter.model_artifact(h) == "/Volumes/main/ml/models/life"
    old = JobHandle.from_dict({**h.to_dict(), "extra": {k: v for k, v in h.extra.items() if k != "output_uri"}})
    n = len(fake.calls("GET", r"/api/2\.2/jobs/runs/get"))
    assert dbx_adapter.model_artifact(old) == "/Volumes/main/ml/models/life"
    assert len(fake.calls("GET", r"/api/2\.2/jobs/runs/get")) == n + 1


def test_a_run_without_output_wrote_no_model(dbx_adapter, fake, spec_factory):
    h = dbx_adapter.submit(dbx_adapter.plan(spec_factory(JOB.replace("output: /Volumes/main/ml/models/life\n", ""),
                                                         FILES), "m-2"))
    with pytest.raises(UsageError, match=f"Databricks run {h.native_id} wrote no model: it had no output location"):
        dbx_adapter.model_artifact(h)
