"""The core's conformance suite against the local Databricks fake."""

from __future__ import annotations

import pytest

from unijob.testing.conformance import AdapterConformance

JOB = """
name: conf-job
script: src/train.py
resources: {accelerator: T4, nodes: 2}
spot: {policy: spot_with_fallback}
checkpoint: {uri: "dbfs:/unijob/conf"}
secrets: {API_KEY: "databricks-secret://ml/api-key"}
"""

ENDPOINT = """
name: conf-ep
script: src/train.py
endpoint:
  model: models:/main.ml.ranker/1
  min_replicas: 0
  max_replicas: 4
  variants:
    - {name: blue, model: "models:/main.ml.ranker/1", weight: 90}
    - {name: green, model: "models:/main.ml.ranker/2", weight: 10}
"""


class TestDatabricksConformance(AdapterConformance):
    @pytest.fixture
    def adapter(self, dbx_adapter):
        return dbx_adapter

    @pytest.fixture
    def job_spec(self, spec_factory):
        return spec_factory(JOB)

    @pytest.fixture
    def created_jobs(self, fake):
        return lambda: len(fake.runs)

    @pytest.fixture
    def stored_objects(self, fake):
        return lambda: len(fake.files)

    @pytest.fixture
    def endpoint_spec(self, spec_factory):
        return spec_factory(ENDPOINT)

    @pytest.fixture
    def leftover_endpoint_resources(self, fake):
        return lambda: len(fake.endpoints)

    @pytest.fixture(autouse=True)
    def _no_bad_bodies(self, fake):
        yield
        assert fake.errors == []
