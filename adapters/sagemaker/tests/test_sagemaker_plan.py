"""plan(): the CreateTrainingJob body, field by field, validated with botocore's service model."""

from __future__ import annotations

import json

import pytest

from sagemaker_testkit import REGION, ROLE, make_spec, validate_against_model
from unijob.errors import SpecError
from unijob_adapters.sagemaker import images, sourcedir
from unijob_adapters.sagemaker.adapter import SageMakerAdapter


@pytest.fixture
def adapter():
    return SageMakerAdapter()


def test_script_gang_body(adapter, tmp_path):
    spec = make_spec(tmp_path)
    plan = adapter.plan(spec, "sub-1")
    body = plan.request("CreateTrainingJob").body
    validate_against_model("sagemaker", "CreateTrainingJob", body)
    assert body["TrainingJobName"] == plan.name and plan.name.startswith("ranker-") and len(plan.name) <= 63
    algo = body["AlgorithmSpecification"]
    assert algo["TrainingImage"] == ("763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:"
                                     "2.5.1-gpu-py311-cu124-ubuntu22.04-sagemaker")
    assert algo["TrainingInputMode"] == "File"
    assert body["RoleArn"] == ROLE
    assert body["ResourceConfig"] == {"InstanceType": "ml.p4d.24xlarge", "InstanceCount": 2, "VolumeSizeInGB": 30}
    assert body["EnableManagedSpotTraining"] is True
    assert body["StoppingCondition"] == {"MaxRuntimeInSeconds": 21600, "MaxWaitTimeInSeconds": 36000}
    assert body["CheckpointConfig"] == {"S3Uri": "s3://bucket/ckpts/ranker", "LocalPath": "/opt/ml/checkpoints"}
    assert body["RetryStrategy"] == {"MaximumRetryAttempts": 2}
    assert [c["ChannelName"] for c in body["InputDataConfig"]] == ["train", "val"]
    assert body["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://bucket/data/train"
    assert body["OutputDataConfig"] == {"S3OutputPath": "s3://bucket/out"}
    assert body["Tags"] == [{"Key": "team", "Value": "search"}]
    hp = body["HyperParameters"]
    assert all(isinstance(v, str) for v in hp.values())
    up = plan.uploads[0]
    assert hp["sagemaker_program"] == '"train.py"'
    assert hp["sagemaker_submit_directory"] == json.dumps(up.destination)
    assert hp["sagemaker_region"] == json.dumps(REGION)
    assert hp["sagemaker_torch_distributed_enabled"] == "true"
    assert hp["lr"] == "0.001" and hp["amp"] == "true" and hp["opt"] == '"adamw"'
    assert up.destination == f"s3://bucket/unijob/code/{up.sha256}/sourcedir.tar.gz"
    env = body["Environment"]
    assert env["LOG_LEVEL"] == "info" and env["UNIJOB_TARGET"] == "sagemaker"
    assert env["UNIJOB_JOB_NAME"] == plan.name
    assert env["UNIJOB_CHECKPOINT_URI"] == "s3://bucket/ckpts/ranker"
    assert env["UNIJOB_CHECKPOINT_DIR"] == "/opt/ml/checkpoints"
    assert json.loads(env["UNIJOB_CHANNELS"]) == {"train": "/opt/ml/input/data/train", "val": "/opt/ml/input/data/val"}
    assert json.loads(env["UNIJOB_HYPERPARAMETERS"]) == {"lr": 0.001, "epochs": 3, "amp": True, "opt": "adamw"}
    assert json.loads(env["UNIJOB_SECRET_REFS"]) == {"HF_TOKEN": "aws-secretsmanager://prod/hf-token"}
    assert plan.resources.instance_count == 2 and plan.resources.accelerators_per_node == 8
    assert plan.resources.hours == 6.0
    assert not plan.warnings


def test_tarball_is_deterministic_and_content_addressed(adapter, tmp_path):
    spec = make_spec(tmp_path)
    a = adapter.plan(spec, "s").uploads[0].sha256
    b = sourcedir.sha256(sourcedir.pack(tmp_path / "code"))
    assert a == b
    (tmp_path / "code" / "__pycache__").mkdir()
    (tmp_path / "code" / "__pycache__" / "x.pyc").write_bytes(b"junk")
    assert adapter.plan(spec, "s").uploads[0].sha256 == a
    (tmp_path / "code" / "util.py").write_text("X = 2\n")
    assert adapter.plan(spec, "s").uploads[0].sha256 != a


def test_image_job_on_demand_cpu(adapter, tmp_path):
    spec = make_spec(tmp_path, script=None, image="123.dkr.ecr.us-east-1.amazonaws.com/me:1",
                     command=["python", "-m", "me"], args=["--fast"], spot={"policy": "on_demand", "max_restarts": 0},
                     resources={"cpus": 8}, checkpoint=None,
                     targets={"sagemaker": {"role_arn": ROLE, "region": "eu-west-1", "subnets": ["subnet-1"],
                                            "security_group_ids": ["sg-1"], "kms_key_id": "alias/k",
                                            "enable_network_isolation": True, "keep_alive_period": "30m",
                                            "volume_size_gb": 200}})
    plan = adapter.plan(spec, "s")
    body = plan.request("CreateTrainingJob").body
    validate_against_model("sagemaker", "CreateTrainingJob", body)
    assert body["AlgorithmSpecification"]["ContainerEntrypoint"] == ["python", "-m", "me"]
    assert body["AlgorithmSpecification"]["ContainerArguments"] == ["--fast"]
    assert body["HyperParameters"] == {"lr": "0.001", "epochs": "3", "amp": "true", "opt": "adamw"}
    assert body["ResourceConfig"] == {"InstanceType": "ml.c5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 200,
                                      "KeepAlivePeriodInSeconds": 1800}
    assert body["EnableManagedSpotTraining"] is False and "MaxWaitTimeInSeconds" not in body["StoppingCondition"]
    assert "RetryStrategy" not in body and "CheckpointConfig" not in body and not plan.uploads
    assert body["VpcConfig"] == {"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}
    assert body["OutputDataConfig"]["KmsKeyId"] == "alias/k"
    assert body["EnableNetworkIsolation"] is True
    assert any("Secrets Manager" in w for w in plan.warnings)  # isolation + secrets


def test_spot_with_fallback_second_request(adapter, tmp_path):
    spec = make_spec(tmp_path, spot={"policy": "spot_with_fallback"})
    plan = adapter.plan(spec, "s")
    main, fb = plan.request("CreateTrainingJob", "submit").body, plan.request("CreateTrainingJob", "fallback").body
    validate_against_model("sagemaker", "CreateTrainingJob", fb)
    assert fb["TrainingJobName"] == main["TrainingJobName"] + "-od" and len(fb["TrainingJobName"]) <= 63
    assert fb["EnableManagedSpotTraining"] is False
    assert fb["StoppingCondition"] == {"MaxRuntimeInSeconds": 21600}
    assert fb["CheckpointConfig"] == main["CheckpointConfig"]
    assert main["StoppingCondition"]["MaxWaitTimeInSeconds"] == 2 * 21600  # documented default
    assert any("spot_with_fallback" in n and fb["TrainingJobName"] in n for n in plan.notes)


def test_spot_without_checkpoint_warns_cost(adapter, tmp_path):
    plan = adapter.plan(make_spec(tmp_path, checkpoint=None), "s")
    assert any("preemption" in w and "21600" in w and "ml.p4d.24xlarge" in w for w in plan.warnings)


def test_long_name_fits(adapter, tmp_path):
    spec = make_spec(tmp_path, name="a" * 63, spot={"policy": "spot_with_fallback"})
    plan = adapter.plan(spec, "s")
    for r in plan.requests:
        validate_against_model("sagemaker", "CreateTrainingJob", r.body)


def test_max_restarts_clamped(adapter, tmp_path):
    body = adapter.plan(make_spec(tmp_path, spot={"policy": "spot", "max_restarts": 50}), "s").requests[0].body
    assert body["RetryStrategy"] == {"MaximumRetryAttempts": 30}


# ---- bad input ------------------------------------------------------------------------------

def _err(adapter, spec):
    with pytest.raises(SpecError) as ei:
        adapter.plan(spec, "s")
    return ei.value.issues[0]


def test_no_role(adapter, tmp_path, monkeypatch):
    monkeypatch.delenv("UNIJOB_SAGEMAKER_ROLE_ARN", raising=False)
    issue = _err(adapter, make_spec(tmp_path, targets={"sagemaker": {"region": REGION}}))
    assert issue.loc == ("targets", "sagemaker", "role_arn") and "IAM" in issue.message


def test_no_region(adapter, tmp_path, monkeypatch):
    for k in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(k, raising=False)
    issue = _err(adapter, make_spec(tmp_path, targets={"sagemaker": {"role_arn": ROLE}}))
    assert issue.loc == ("targets", "sagemaker", "region")


def test_region_from_env(adapter, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_REGION", "ap-east-1")
    plan = adapter.plan(make_spec(tmp_path, targets={"sagemaker": {"role_arn": ROLE}}), "s")
    assert plan.requests[0].body["AlgorithmSpecification"]["TrainingImage"].startswith(
        "871362719292.dkr.ecr.ap-east-1.amazonaws.com/")


def test_non_s3_input(adapter, tmp_path):
    issue = _err(adapter, make_spec(tmp_path, inputs={"train": "gs://b/train"}))
    assert issue.loc == ("inputs", "train") and "s3://" in issue.message


def test_accelerator_count_not_offered(adapter, tmp_path):
    issue = _err(adapter, make_spec(tmp_path, resources={"accelerator": "A100:2"}))
    assert issue.loc == ("resources", "accelerator")
    assert "8" in issue.message and issue.suggestion == "A100:8"


def test_accelerator_type_not_offered(adapter, tmp_path):
    issue = _err(adapter, make_spec(tmp_path, resources={"accelerator": "P100"}))
    assert issue.loc == ("resources", "accelerator") and "H100" in issue.message


def test_env_secret_rejected(adapter, tmp_path):
    issue = _err(adapter, make_spec(tmp_path, secrets={"TOKEN": "env://TOKEN"}))
    assert issue.loc == ("secrets", "TOKEN") and "aws-secretsmanager" in issue.message


def test_unknown_framework_version(adapter, tmp_path):
    issue = _err(adapter, make_spec(tmp_path, framework={"version": "1.9"}))
    assert issue.loc == ("framework", "version") and "2.5.1" in issue.message


def test_wrong_python_for_version(adapter, tmp_path):
    issue = _err(adapter, make_spec(tmp_path, framework={"version": "2.7", "python": "3.11"}))
    assert issue.loc == ("framework", "python") and issue.suggestion == "3.12"


def test_max_wait_below_max_run_is_core_error(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="max_wait"):
        make_spec(tmp_path, spot={"policy": "spot", "max_wait": "1h"}, max_run="2h")


def test_vpc_needs_both(adapter, tmp_path):
    issue = _err(adapter, make_spec(tmp_path, targets={"sagemaker": {"role_arn": ROLE, "region": REGION,
                                                                     "subnets": ["subnet-1"]}}))
    assert issue.loc == ("targets", "sagemaker", "security_group_ids")


def test_dlc_table():
    assert images.pytorch_training_image("2.3", "3.11", "us-west-2", gpu=False) == (
        "763104351884.dkr.ecr.us-west-2.amazonaws.com/pytorch-training:2.3.0-cpu-py311-ubuntu20.04-sagemaker")
    assert images.pytorch_training_image("2.7.1", "3.12", "cn-north-1", gpu=True) == (
        "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/pytorch-training:2.7.1-gpu-py312-cu128-ubuntu22.04-sagemaker")


def test_sklearn_framework_runs_in_the_scikit_learn_container(adapter, tmp_path):
    from unijob.errors import SpecError

    spec = make_spec(tmp_path, resources={"nodes": 1}, spot=None, framework={"name": "sklearn", "version": "1.2"})
    body = adapter.plan(spec, "s").request("CreateTrainingJob").body
    assert body["AlgorithmSpecification"]["TrainingImage"] == \
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
    assert "sagemaker_torch_distributed_enabled" not in body["HyperParameters"]
    for over, field in (({"resources": {"accelerator": "T4"}}, "resources.accelerator"),
                        ({"resources": {"processes_per_node": 2}}, "resources.processes_per_node"),
                        ({"framework": {"name": "sklearn", "version": "0.9"}}, "framework.version")):
        bad = make_spec(tmp_path, **{"framework": {"name": "sklearn", "version": "1.2"}, "spot": None,
                                     "resources": {"nodes": 1}, **over})
        with pytest.raises(SpecError) as e:
            adapter.plan(bad, "s")
        assert field in str(e.value)


@pytest.mark.parametrize("resources, per_host", [
    ({"nodes": 2, "processes_per_node": 2}, "2"),  # CPU: the toolkit would start 1 per host
    ({"accelerator": "A100:8", "nodes": 2, "processes_per_node": 4}, "4"),  # not the GPU count (8)
    ({"accelerator": "A100:8", "nodes": 2}, None),  # one per GPU: the toolkit's default
])
def test_torchrun_processes_per_host_are_explicit_unless_one_per_gpu(adapter, tmp_path, resources, per_host):
    body = adapter.plan(make_spec(tmp_path, resources=resources, spot=None), "s").request("CreateTrainingJob").body
    validate_against_model("sagemaker", "CreateTrainingJob", body)
    hp = body["HyperParameters"]
    assert hp["sagemaker_torch_distributed_enabled"] == "true"
    assert hp.get("sagemaker_mpi_num_of_processes_per_host") == per_host
