"""examples/sagemaker/job.yaml carries every setting of the seed's SageMaker snippet, and
unijob's CreateTrainingJob (captured as sent to moto's server) carries them all."""

from __future__ import annotations

import json
from pathlib import Path

from sagemaker_testkit import boto3_client, validate_against_model
from unijob.loading import load_spec
from unijob_adapters.sagemaker.adapter import SageMakerAdapter

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sagemaker" / "job.yaml"


def test_seed_snippet_settings_reach_create_training_job(aws, sent):
    spec = load_spec(EXAMPLE).spec
    adapter = SageMakerAdapter()
    boto3_client("s3").create_bucket(Bucket="my-bucket")
    adapter.submit(adapter.plan(spec, "seed-000"))
    bodies = [p for api, p in sent if api == "sagemaker:CreateTrainingJob"]
    assert len(bodies) == 1
    body = bodies[0]
    validate_against_model("sagemaker", "CreateTrainingJob", body)
    # entry_point="train.py", framework_version="2.3", py_version="py311"
    assert body["HyperParameters"]["sagemaker_program"] == '"train.py"'
    assert body["AlgorithmSpecification"]["TrainingImage"].endswith("/pytorch-training:2.3.0-gpu-py311-cu121-ubuntu20.04-sagemaker")
    # role
    assert body["RoleArn"] == "arn:aws:iam::123456789012:role/SageMakerRole"
    # instance_type="ml.p4d.24xlarge", instance_count=4
    assert body["ResourceConfig"]["InstanceType"] == "ml.p4d.24xlarge"
    assert body["ResourceConfig"]["InstanceCount"] == 4
    # distribution={"torch_distributed": {"enabled": True}}
    assert body["HyperParameters"]["sagemaker_torch_distributed_enabled"] == "true"
    # use_spot_instances=True, max_wait=36000, max_run=24000
    assert body["EnableManagedSpotTraining"] is True
    assert body["StoppingCondition"] == {"MaxRuntimeInSeconds": 24000, "MaxWaitTimeInSeconds": 36000}
    # checkpoint_s3_uri="s3://my-bucket/ckpts"
    assert body["CheckpointConfig"] == {"S3Uri": "s3://my-bucket/ckpts", "LocalPath": "/opt/ml/checkpoints"}
    # fit({"train": "s3://my-bucket/train", "val": "s3://my-bucket/val"})
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in body["InputDataConfig"]}
    assert channels == {"train": "s3://my-bucket/train", "val": "s3://my-bucket/val"}
    # the code went to S3 as sourcedir.tar.gz, as the estimator uploads it
    src = json.loads(body["HyperParameters"]["sagemaker_submit_directory"])
    assert src.startswith("s3://my-bucket/") and src.endswith("/sourcedir.tar.gz")
    # and moto holds the job as sent
    desc = boto3_client("sagemaker").describe_training_job(TrainingJobName=body["TrainingJobName"])
    assert desc["EnableManagedSpotTraining"] is True and desc["ResourceConfig"]["InstanceCount"] == 4


def test_cli_plan_prints_the_request_without_any_aws_sdk():
    import subprocess
    import sys

    code = ("import sys, json\nfrom unijob.cli.main import main\n"
            "try:\n    main(['plan', %r, '--target', 'sagemaker', '-o', 'json'])\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "print('HEAVY=' + ','.join(sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore', 'sagemaker'})),"
            " file=sys.stderr)\n") % str(EXAMPLE)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    assert r.returncode == 0, r.stderr
    assert "HEAVY=\n" in r.stderr or r.stderr.rstrip().endswith("HEAVY=")
    plan = json.loads(r.stdout)
    assert plan["requests"][0]["api"] == "sagemaker:CreateTrainingJob"
    assert plan["requests"][0]["body"]["ResourceConfig"]["InstanceCount"] == 4
