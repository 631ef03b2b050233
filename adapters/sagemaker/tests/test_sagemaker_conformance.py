"""The core's adapter conformance suite, run against moto's server."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sagemaker_testkit import ROLE, REGION, boto3_client, make_spec
from unijob.spec import JobSpec
from unijob.testing.conformance import HEAVY_ROOTS, AdapterConformance, no_network  # noqa: F401 (fixture)
from unijob_adapters.sagemaker.adapter import SageMakerAdapter


class TestSageMakerConformance(AdapterConformance):
    def test_importing_the_adapter_pulls_no_sdk(self, adapter) -> None:
        """The core's check, measured against the interpreter's start-up modules: this venv's
        google_cloud_aiplatform ``*-nspkg.pth`` creates an empty ``google`` namespace module in
        every process before any import, which the core's version counts as an SDK import."""
        module = type(adapter).__module__
        code = ("import sys, importlib; before = set(sys.modules); importlib.import_module(%r); "
                "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
                "print(' '.join(sorted(new & set(%r))))") % (module, HEAVY_ROOTS)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        assert out == "", f"importing {module} imported {out}"
        code = "import sys, importlib; importlib.import_module(%r); print(sorted(m for m in sys.modules if m.startswith(('boto', 'sagemaker', 'google.cloud.aiplatform'))))" % module
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        assert out == "[]", out

    @pytest.fixture
    def adapter(self, aws):
        boto3_client("s3").create_bucket(Bucket="bucket")
        return SageMakerAdapter()

    @pytest.fixture
    def job_spec(self, tmp_path):
        return make_spec(tmp_path)

    @pytest.fixture
    def created_jobs(self):
        sm = boto3_client("sagemaker")
        return lambda: len(sm.list_training_jobs(MaxResults=100)["TrainingJobSummaries"])

    @pytest.fixture
    def stored_objects(self):
        s3 = boto3_client("s3")
        return lambda: s3.list_objects_v2(Bucket="bucket").get("KeyCount", 0)

    @pytest.fixture
    def endpoint_spec(self):
        # moto's CreateEndpointConfig checks instance types against an old list that lacks ml.g5.*
        # (see SDK-FACTS): the test serves on ml.m5.xlarge, which moto accepts.
        return JobSpec.model_validate({
            "name": "ranker", "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1",
            "labels": {"team": "search"},
            "endpoint": {
                "image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6.0-cpu-py312-ubuntu22.04-sagemaker",
                "instance_type": {"sagemaker": "ml.m5.xlarge"}, "min_replicas": 1, "max_replicas": 3,
                "autoscaling": {"metric": "invocations_per_replica_per_minute", "target": 70},
                "variants": [{"name": "blue", "model": "s3://bucket/models/v1/model.tar.gz", "weight": 90},
                             {"name": "green", "model": "s3://bucket/models/v2/model.tar.gz", "weight": 10}],
            },
            "targets": {"sagemaker": {"role_arn": ROLE, "region": REGION, "poll_interval": 0.05}},
        })

    @pytest.fixture
    def leftover_endpoint_resources(self):
        sm, aas = boto3_client("sagemaker"), boto3_client("application-autoscaling")

        def count() -> int:
            return (len(sm.list_endpoints()["Endpoints"]) + len(sm.list_endpoint_configs()["EndpointConfigs"])
                    + len(sm.list_models()["Models"])
                    + len(aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"])
                    + len(aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]))
        return count
