"""unijob's CreateTrainingJob held against what the SageMaker Python SDK 2.x itself sends.

The SDK runs for real against moto's server (no network; telemetry opted out through the SDK's own
user config), its CreateTrainingJob is captured with botocore's ``before-parameter-build`` event and
compared field by field with unijob's plan. Every difference is listed below with its reason;
any other difference fails (and is a bug in plan.py), as does a listed one that went away.

SDK 2.x and 3.x cannot share a venv: the test environment has 2.x (the adapter's ``test`` extra);
``to_model_trainer`` is checked where 3.x is installed and skipped with the reason otherwise.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from sagemaker_testkit import REGION, boto3_client, validate_against_model
from unijob.errors import NotReady, SpecError
from unijob.loading import load_spec
from unijob.spec import JobSpec
from unijob.testing.vendor import assert_explained, compare
from unijob_adapters.sagemaker import sdk
from unijob_adapters.sagemaker.adapter import SageMakerAdapter

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sagemaker" / "job.yaml"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
SEED_INPUTS = {"train": "s3://my-bucket/train", "val": "s3://my-bucket/val"}

sdk_version = sdk._sdk_version() or ""
needs_v2 = pytest.mark.skipif(not sdk_version.startswith("2."),
                              reason=f"needs the SageMaker Python SDK 2.x ({sdk.PIP_V2}); found {sdk_version or 'none'}")

#: Both set, different values, on purpose.
NAMING = {
    "TrainingJobName": "the SDK names the job <base_job_name>-<timestamp>; unijob <name>-<sha256(submission)[:10]> "
                       "so a retried submission reuses the name",
    "HyperParameters.sagemaker_job_name": "the job name again, as the SageMaker training toolkit reads it",
    "HyperParameters.sagemaker_submit_directory": "the SDK uploads to s3://<bucket>/<job name>/source/; unijob "
                                                  "content-addresses the tarball (<prefix>/<sha256>/), so an "
                                                  "unchanged source dir is uploaded once",
}
#: Sent by the SDK only: its client-side defaults, none asked for by the seed.
SDK_DEFAULTS = {
    "AlgorithmSpecification.EnableSageMakerMetricsTimeSeries": "the SDK turns on time-series metrics for "
                                                               "metric_definitions; a unijob spec defines none",
    "DebugHookConfig.*": "SageMaker Debugger's hook, on by default in SDK 2.x; unijob does not turn Debugger on",
    "ProfilerConfig.*": "SageMaker Profiler's config, on by default in SDK 2.x; unijob does not turn it on",
}
#: Sent by unijob only.
UNIJOB_ONLY = {
    "Environment.UNIJOB_*": "the unijob runtime contract (channels, checkpoint dir, output, hyperparameters) "
                            "that unijob.runtime.context() reads inside the job",
    "CheckpointConfig.LocalPath": "unijob states SageMaker's default /opt/ml/checkpoints, which it also "
                                  "exports as UNIJOB_CHECKPOINT_DIR",
}


@pytest.fixture
def session(aws, tmp_path, monkeypatch):
    """A ``sagemaker.Session`` on moto's server, telemetry off, recording CreateTrainingJob requests."""
    cfg = tmp_path / "sagemaker-config.yaml"
    cfg.write_text("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n")
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(cfg))
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    import boto3
    import sagemaker
    import sagemaker.session

    # The SDK passes STS an explicit regional endpoint (sagemaker/utils.py sts_regional_endpoint), which
    # AWS_ENDPOINT_URL does not override: point it at moto too.
    monkeypatch.setattr(sagemaker.session, "sts_regional_endpoint", lambda region: aws)
    sess = sagemaker.Session(boto3.Session(region_name=REGION))
    sess.sent = []
    sess.sagemaker_client.meta.events.register(
        "before-parameter-build.sagemaker.CreateTrainingJob",
        lambda params, **_: sess.sent.append(copy.deepcopy(params)))
    boto3_client("s3").create_bucket(Bucket="my-bucket")
    return sess


def seed_estimator(session, **over):
    """The seed's PyTorch estimator (seed 000, section 3); 2.3.0: SDK 2.257 refuses "2.3" for torch_distributed."""
    from sagemaker.pytorch import PyTorch

    kw = dict(entry_point="train.py", source_dir=str(EXAMPLE.parent), role=ROLE,
              framework_version="2.3.0", py_version="py311",
              instance_type="ml.p4d.24xlarge", instance_count=4,
              distribution={"torch_distributed": {"enabled": True}},
              use_spot_instances=True, max_wait=36000, max_run=24000,
              checkpoint_s3_uri="s3://my-bucket/ckpts", sagemaker_session=session)
    kw.update(over)
    return PyTorch(**kw)


def sdk_sends(estimator, inputs) -> dict:
    sent = estimator.sagemaker_session.sent
    sent.clear()
    estimator.fit(inputs, wait=False, logs=False)
    assert len(sent) == 1
    return sent[0]


@needs_v2
def test_seed_estimator_becomes_a_spec_whose_plan_sends_the_same_request(session):
    spec = sdk.from_estimator(seed_estimator(session), SEED_INPUTS)
    assert spec.resources.nodes == 4 and spec.resources.accelerator == "A100:8"
    assert spec.resources.instance_type == {"sagemaker": "ml.p4d.24xlarge"}
    assert (spec.spot.policy, spec.spot.max_wait, spec.max_run) == ("spot", 36000, 24000)
    assert spec.checkpoint.uri == "s3://my-bucket/ckpts" and dict(spec.inputs) == SEED_INPUTS
    assert spec.output == "s3://sagemaker-us-east-1-123456789012/"  # the SDK's default bucket, as fit() uses

    ours = SageMakerAdapter().plan(spec, "seed-000").requests[0].body
    validate_against_model("sagemaker", "CreateTrainingJob", ours)
    vendor = sdk_sends(seed_estimator(session), SEED_INPUTS)
    d = compare(vendor, ours)
    assert_explained(d, differ={
        **NAMING,
        "AlgorithmSpecification.TrainingImage": "the SDK's floating tag 2.3.0-gpu-py311; unijob pins the full tag "
                                                "(…-cu121-ubuntu20.04-sagemaker) from AWS's available_images.md",
    }, vendor_only=SDK_DEFAULTS, ours_only=UNIJOB_ONLY)
    # the seed's settings are among the fields both send, equal
    for path in ("RoleArn", "ResourceConfig.InstanceType", "ResourceConfig.InstanceCount", "EnableManagedSpotTraining",
                 "StoppingCondition.MaxWaitTimeInSeconds", "StoppingCondition.MaxRuntimeInSeconds",
                 "CheckpointConfig.S3Uri", "InputDataConfig[1].DataSource.S3DataSource.S3Uri",
                 "HyperParameters.sagemaker_torch_distributed_enabled", "HyperParameters.sagemaker_instance_type",
                 "HyperParameters.sagemaker_program", "OutputDataConfig.S3OutputPath"):
        assert path in d.same, path


@needs_v2
def test_to_estimator_sends_what_the_plan_sends(session):
    spec = load_spec(EXAMPLE).spec
    est = sdk.to_estimator(spec, sagemaker_session=session)
    assert type(est).__name__ == "PyTorch" and est.distribution == {"torch_distributed": {"enabled": True}}
    vendor = sdk_sends(est, dict(spec.inputs))
    ours = SageMakerAdapter().plan(spec, "seed-000").requests[0].body
    d = compare(vendor, ours)
    # The SDK drops its Debugger hook when a multi-node job checkpoints to a checkpoint_local_path
    # (sagemaker/estimator.py, "Disable debugger if checkpointing is enabled"), which to_estimator passes.
    no_hook = {k: v for k, v in SDK_DEFAULTS.items() if not k.startswith("DebugHookConfig")}
    same_code = {k: v for k, v in NAMING.items() if "submit_directory" not in k}
    assert_explained(d, differ=same_code, vendor_only=no_hook, ours_only={
        "Environment.UNIJOB_JOB_NAME": "the SDK names the job at fit(); unijob.runtime then reads TRAINING_JOB_NAME"})
    assert vendor["RetryStrategy"] == {"MaximumRetryAttempts": 3}
    assert vendor["Environment"]["UNIJOB_CHANNELS"] == ours["Environment"]["UNIJOB_CHANNELS"]
    # to_estimator uploaded unijob's own bundle (with the runtime wheel) to the plan's key; the SDK ran it as is
    key = ours["HyperParameters"]["sagemaker_submit_directory"].strip('"')
    assert "HyperParameters.sagemaker_submit_directory" in d.same
    bucket, _, name = key[len("s3://"):].partition("/")
    import gzip
    import io
    import tarfile

    blob = boto3_client("s3").get_object(Bucket=bucket, Key=name)["Body"].read()
    members = tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))).getnames()
    assert "train.py" in members and "requirements.txt" in members and any(m.endswith(".whl") for m in members)


@needs_v2
def test_image_job_round_trips_through_an_estimator(session, tmp_path):
    from sagemaker.estimator import Estimator

    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ranker:2.0"
    est = Estimator(image_uri=image, role=ROLE, instance_type="ml.g5.2xlarge", instance_count=1,
                    container_entry_point=["python", "train.py"], container_arguments=["--fast"],
                    hyperparameters={"epochs": "3"}, output_path="s3://my-bucket/out", max_run=3600,
                    environment={"MODE": "prod"}, tags=[{"Key": "team", "Value": "search"}],
                    sagemaker_session=session)
    spec = sdk.from_estimator(est, {"train": "s3://my-bucket/train"})
    assert (spec.image, spec.command, spec.args, spec.name) == (image, ["python", "train.py"], ["--fast"], "ranker")
    ours = SageMakerAdapter().plan(spec, "img").requests[0].body
    vendor = sdk_sends(est, {"train": "s3://my-bucket/train"})
    on_demand = {"EnableManagedSpotTraining": "unijob states on-demand (false, the API default); "
                                              "the SDK omits the field unless use_spot_instances"}
    plain = {k: v for k, v in SDK_DEFAULTS.items() if "MetricsTimeSeries" not in k}  # a framework-only default
    assert_explained(compare(vendor, ours), differ={"TrainingJobName": NAMING["TrainingJobName"]},
                     vendor_only=plain, ours_only={"Environment.UNIJOB_*": UNIJOB_ONLY["Environment.UNIJOB_*"],
                                                   **on_demand})
    again = sdk.to_estimator(spec, sagemaker_session=session)
    assert type(again).__name__ == "Estimator"
    vendor2 = sdk_sends(again, dict(spec.inputs))
    d = compare(vendor2, ours)
    assert d.differ.keys() == {"TrainingJobName"} and "Environment.UNIJOB_JOB_NAME" in d.ours_only


@needs_v2
@pytest.mark.parametrize("over, loc", [
    (dict(distribution={"mpi": {"enabled": True}}), "PyTorch.distribution"),
    (dict(metric_definitions=[{"Name": "loss", "Regex": "loss=(.*)"}]), "PyTorch.metric_definitions"),
    (dict(checkpoint_local_path="/tmp/ck"), "PyTorch.checkpoint_local_path"),
])
def test_from_estimator_refuses_what_a_spec_cannot_say(session, over, loc):
    with pytest.raises(SpecError) as e:
        sdk.from_estimator(seed_estimator(session, **over), SEED_INPUTS)
    assert e.value.issues[0].path == loc


@needs_v2
def test_an_estimator_without_distribution_runs_one_process_per_host_as_in_the_sdk(session):
    spec = sdk.from_estimator(seed_estimator(session, distribution=None), SEED_INPUTS)
    assert spec.resources.processes_per_node == 1 and spec.resources.nodes == 4
    ours = SageMakerAdapter().plan(spec, "seed-000").requests[0].body
    vendor = sdk_sends(seed_estimator(session, distribution=None), SEED_INPUTS)
    assert "sagemaker_torch_distributed_enabled" not in vendor["HyperParameters"]
    assert_explained(compare(vendor, ours), differ={
        **NAMING, "AlgorithmSpecification.TrainingImage": "the pinned DLC tag, as in the seed's comparison"},
        vendor_only=SDK_DEFAULTS, ours_only=UNIJOB_ONLY)


@needs_v2
def test_from_estimator_refuses_a_tuned_channel(session):
    from sagemaker.inputs import TrainingInput

    with pytest.raises(SpecError, match="fully replicated"):
        sdk.from_estimator(seed_estimator(session), {"train": TrainingInput("s3://my-bucket/train",
                                                                            distribution="ShardedByS3Key")})
    spec = sdk.from_estimator(seed_estimator(session), {"train": TrainingInput("s3://my-bucket/train")})
    assert dict(spec.inputs) == {"train": "s3://my-bucket/train"}


@needs_v2
def test_to_estimator_refuses_spot_with_fallback():
    spec = load_spec(EXAMPLE).spec.model_copy(deep=True)
    spec.spot.policy = "spot_with_fallback"
    with pytest.raises(SpecError) as e:
        sdk.to_estimator(spec)
    assert e.value.issues[0].path == "spot.policy"


def test_each_sdk_generation_names_the_other_function():
    spec = load_spec(EXAMPLE).spec
    wrong, fn = (sdk.to_model_trainer, "to_estimator") if sdk_version.startswith("2.") else (sdk.to_estimator, "to_model_trainer")
    with pytest.raises(NotReady) as e:
        wrong(spec)
    assert "pip install" in str(e.value)
    if sdk_version:
        assert fn in str(e.value)


SM3_PY = Path(__file__).resolve().parents[3] / ".venv-sagemaker3" / "bin" / "python"

#: Run in .venv-sagemaker3 (SDK 3.x): to_model_trainer(spec).train() against moto's server; prints the
#: CreateTrainingJob it sent. ModelTrainer builds its own clients, so the capture is at botocore's
#: BaseClient._make_api_call. (moto lacks iam:SimulatePrincipalPolicy, which ModelTrainer uses to check
#: the role can write the default bucket; on that error it keeps the default bucket, as it does in AWS.)
TRAIN_WITH_MODEL_TRAINER = """
import copy, json, sys
import boto3, botocore.client
import sagemaker.core.helper.session_helper as helper
from sagemaker.core.training.configs import InputData
from unijob.loading import load_spec
from unijob.spec import JobSpec
from unijob_adapters.sagemaker import sdk

helper.sts_regional_endpoint = lambda region: sys.argv[2]
sent, real = [], botocore.client.BaseClient._make_api_call
def record(self, op, params):
    if op == "CreateTrainingJob":
        sent.append(copy.deepcopy(params))
    return real(self, op, params)
botocore.client.BaseClient._make_api_call = record
spec = load_spec(sys.argv[1]).spec
trainer = sdk.to_model_trainer(spec, sagemaker_session=helper.Session(boto3.Session(region_name="us-east-1")))
trainer.train(input_data_config=[InputData(channel_name=k, data_source=v) for k, v in spec.inputs.items()],
              wait=False, logs=False)
print(json.dumps(sent))
"""


@pytest.mark.skipif(not SM3_PY.exists(), reason="to_model_trainer needs the SageMaker Python SDK 3.x, which cannot "
                    "share a venv with the 2.x the other tests use; `CI=1 python3 dev.py test` (or "
                    "UNIJOB_SAGEMAKER3=1) builds .venv-sagemaker3 for it")
def test_to_model_trainer_sends_what_the_plan_sends(aws):
    import json
    import os
    import subprocess

    boto3_client("s3").create_bucket(Bucket="my-bucket")
    env = {**os.environ, "SAGEMAKER_VALIDATE_ROLE": "false"}
    r = subprocess.run([str(SM3_PY), "-c", TRAIN_WITH_MODEL_TRAINER, str(EXAMPLE), aws], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    [vendor] = json.loads(r.stdout.strip().splitlines()[-1])
    spec = load_spec(EXAMPLE).spec
    ours = SageMakerAdapter().plan(spec, "seed-000").requests[0].body
    driver = "ModelTrainer runs the code through its own driver scripts (sm_train.sh, torchrun for Torchrun())"
    assert_explained(compare(vendor, ours), differ={
        "TrainingJobName": "ModelTrainer names the job <base_job_name>-<timestamp>; unijob hashes the submission",
    }, vendor_only={
        "AlgorithmSpecification.Container*": driver,
        "InputDataConfig[2].*": "the 'code' channel: " + driver,
        "InputDataConfig[3].*": "the 'sm_drivers' channel: " + driver,
        "InputDataConfig[*].InputMode": "ModelTrainer repeats the job's File input mode on each channel",
        "OutputDataConfig.CompressionType": "ModelTrainer states the default GZIP",
    }, ours_only={
        "Environment.UNIJOB_JOB_NAME": "ModelTrainer names the job; unijob.runtime then reads TRAINING_JOB_NAME",
        "HyperParameters.sagemaker_*": "script-mode settings for the SageMaker training toolkit; "
                                       "ModelTrainer's drivers replace them",
    })
    for path in ("AlgorithmSpecification.TrainingImage", "ResourceConfig.InstanceCount", "EnableManagedSpotTraining",
                 "StoppingCondition.MaxWaitTimeInSeconds", "CheckpointConfig.S3Uri", "RetryStrategy.MaximumRetryAttempts",
                 "Environment.UNIJOB_CHANNELS", "InputDataConfig[1].DataSource.S3DataSource.S3Uri"):
        assert path in compare(vendor, ours).same, path


def test_a_missing_sdk_is_not_ready_with_the_pip_line(monkeypatch):
    monkeypatch.setattr(sdk, "_sdk_version", lambda: None)
    spec = load_spec(EXAMPLE).spec
    for fn, pip in ((sdk.to_estimator, sdk.PIP_V2), (sdk.from_estimator, sdk.PIP_V2), (sdk.to_model_trainer, sdk.PIP_V3)):
        with pytest.raises(NotReady) as e:
            fn(spec)
        assert e.value.hint == pip and e.value.exit_code == 3


@needs_v2
def test_a_cpu_torchrun_gang_keeps_its_processes_per_host_through_the_sdk(session):
    """torch_distributed has no processes-per-host knob in the SDK: to_estimator passes the toolkit's
    hyperparameter, the SDK sends it as unijob does, and from_estimator reads it back (8 GPUs, 4 per host)."""
    spec = load_spec(EXAMPLE).spec
    data = spec.model_dump(mode="json", exclude_unset=True)
    data["resources"] = {"nodes": 2, "processes_per_node": 2}
    spec = JobSpec.model_validate(data, context={"base_dir": str(EXAMPLE.parent)})
    ours = SageMakerAdapter().plan(spec, "cpu-gang").requests[0].body
    assert ours["HyperParameters"]["sagemaker_mpi_num_of_processes_per_host"] == "2"
    est = sdk.to_estimator(spec, sagemaker_session=session)
    vendor = sdk_sends(est, dict(spec.inputs))
    assert "HyperParameters.sagemaker_mpi_num_of_processes_per_host" in compare(vendor, ours).same
    seed = seed_estimator(session, hyperparameters={"sagemaker_mpi_num_of_processes_per_host": 4})
    back = sdk.from_estimator(seed, SEED_INPUTS)
    assert (back.resources.nodes, back.resources.processes_per_node) == (4, 4)
    assert "sagemaker_mpi_num_of_processes_per_host" not in back.hyperparameters
