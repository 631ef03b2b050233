"""A unijob pipeline compiled to a SageMaker Pipelines definition (``unijob.pipeline.sagemaker``)
and started on moto's server (``unijob pipelines run -t sagemaker --managed``).

Checks, strongest first:

- the same pipeline built with the SageMaker Python SDK 2.x's own workflow classes
  (``Pipeline``, ``TrainingStep``, ``ConditionStep``, ``ModelStep`` over ``Model.register``,
  ``ParameterInteger``/``ParameterFloat``, ``properties``, ``Join``) gives the same definition,
  every difference listed with its reason (the job steps' estimators take the adapter's planned
  CreateTrainingJob, which test_sagemaker_vendor_sdk holds against the SDK's own);
- every step's ``Arguments``, with its property references made concrete, is a valid request of
  the API the step calls, by botocore's service model;
- the ``MetricDefinitions`` regex reads the value from the line ``runtime.log_metrics`` prints;
- submission: CreateModelPackageGroup, CreatePipeline (UpdatePipeline the second time),
  StartPipelineExecution with the -p overrides, each validated by botocore, reach moto.

The published definition JSON schema (aws-sagemaker-mlops/sagemaker-model-building-pipeline-
definition-JSON-schema, last changed 2025-04) is not used: it rejects the SDK's own definitions
(``Std:Join`` in HyperParameters, ``S3DataDistributionType``, a Training step's ``Environment``,
``PipelineExperimentConfig``), so it cannot tell a right definition from a wrong one.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from sagemaker_testkit import REGION, ROLE, boto3_client, validate_against_model
from unijob.cli import main
from unijob.errors import SpecError
from unijob.testing.vendor import assert_explained, compare

ROOT = Path(__file__).resolve().parents[3]
PIPELINE = ROOT / "tests" / "data" / "sagemaker_pipeline.yaml"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/unijob-serve:1"


def _plan(path=PIPELINE):
    import unijob

    return unijob.plan(str(path), "sagemaker")


def _definition(plan) -> dict:
    from unijob.pipeline.sagemaker import definition

    return definition(plan)


def _steps(steps: list) -> dict:
    """name -> step, through condition branches."""
    out = {}
    for s in steps:
        out[s["Name"]] = s
        if s["Type"] == "Condition":
            out.update(_steps(s["Arguments"]["IfSteps"] + s["Arguments"]["ElseSteps"]))
    return out


def _variant(tmp_path, mutate) -> Path:
    data = yaml.safe_load(PIPELINE.read_text())
    for step in data["steps"]:
        if isinstance(step.get("job"), str):
            step["job"] = str((PIPELINE.parent / step["job"]).resolve())
    mutate(data)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def pipeline_session(aws, tmp_path, monkeypatch):
    """The SDK's ``PipelineSession`` on moto's server, telemetry off (it captures requests, sends none)."""
    cfg = tmp_path / "sagemaker-config.yaml"
    cfg.write_text("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n")
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(cfg))
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    import boto3
    import sagemaker.session
    from sagemaker.workflow.pipeline_context import PipelineSession

    monkeypatch.setattr(sagemaker.session, "sts_regional_endpoint", lambda region: aws)
    return PipelineSession(boto_session=boto3.Session(region_name=REGION), default_bucket="demo-out")


def _estimator(args: dict, session, hyperparameters: dict, environment: dict, **kw):
    """A generic SDK Estimator sending the adapter's planned CreateTrainingJob fields."""
    from sagemaker.estimator import Estimator

    stop, res = args["StoppingCondition"], args["ResourceConfig"]
    ckpt = args.get("CheckpointConfig") or {}
    return Estimator(image_uri=args["AlgorithmSpecification"]["TrainingImage"], role=args["RoleArn"],
                     instance_count=res["InstanceCount"], instance_type=res["InstanceType"],
                     volume_size=res["VolumeSizeInGB"], max_run=stop["MaxRuntimeInSeconds"],
                     use_spot_instances=args["EnableManagedSpotTraining"], max_wait=stop.get("MaxWaitTimeInSeconds"),
                     output_path=args["OutputDataConfig"]["S3OutputPath"], checkpoint_s3_uri=ckpt.get("S3Uri"),
                     checkpoint_local_path=ckpt.get("LocalPath"), environment=environment,
                     hyperparameters=hyperparameters, disable_profiler=True, debugger_hook_config=False,
                     max_retry_attempts=(args.get("RetryStrategy") or {}).get("MaximumRetryAttempts"),
                     sagemaker_session=session, **kw)


#: Both set, to different values, on purpose.
DIFFER = {
    "Steps[2].Arguments.IfSteps[0].Name": "the SDK's ModelStep names its step <name>-RegisterModel; unijob keeps "
                                          "the pipeline step's own name, so Steps.register.* and DependsOn name it",
}
#: Sent by the SDK only.
SDK_ONLY = {
    "PipelineExperimentConfig": "the SDK writes null when given no experiment config (its default creates a "
                                "SageMaker Experiment and a trial per execution); unijob creates none and leaves "
                                "the key out",
    "Steps[2].Arguments.IfSteps[0].Arguments.InferenceSpecification.Containers[0].Environment": "the SDK writes an "
                                                                                                "empty environment",
    "Steps[*].Arguments.ProfilerConfig.DisableProfiler": "the SDK states that SageMaker Profiler is off; unijob "
                                                         "never turns it on (CreateTrainingJob's default is off)",
    "Steps[2].Arguments.IfSteps[0].Arguments.SkipModelValidation": "the SDK sends its string 'None' (SageMaker's "
                                                                   "default); unijob sends no value",
}
#: Sent by unijob only.
UNIJOB_ONLY = {
    "Steps[*].Arguments.EnableManagedSpotTraining": "unijob states on-demand (false, the API default); the SDK "
                                                    "omits the field unless use_spot_instances",
}


def test_definition_is_the_one_the_sdk_builds(pipeline_session):
    """The same pipeline written with the SDK's workflow classes, as an SDK user would."""
    from sagemaker.inputs import TrainingInput
    from sagemaker.model import Model
    from sagemaker.workflow.condition_step import ConditionStep
    from sagemaker.workflow.conditions import ConditionGreaterThanOrEqualTo
    from sagemaker.workflow.functions import Join
    from sagemaker.workflow.model_step import ModelStep
    from sagemaker.workflow.parameters import ParameterFloat, ParameterInteger
    from sagemaker.workflow.pipeline import Pipeline
    from sagemaker.workflow.retry import StepExceptionTypeEnum, StepRetryPolicy
    from sagemaker.workflow.steps import TrainingStep

    from unijob.pipeline.sagemaker import metric_regex

    ours = _definition(_plan())
    mine = _steps(ours["Steps"])
    ps = pipeline_session
    epochs = ParameterInteger(name="epochs", default_value=20)
    min_accuracy = ParameterFloat(name="min_accuracy", default_value=0.95)
    label_noise = ParameterFloat(name="label_noise", default_value=0.0)

    t_args = mine["train"]["Arguments"]
    t_hp = {**t_args["HyperParameters"], "epochs": epochs}
    t_env = {**t_args["Environment"], "UNIJOB_HYPERPARAMETERS": Join(on="", values=[
        '{"epochs":', epochs, ',"learning_rate":0.001,"seed":7}'])}
    train = TrainingStep(name="train", step_args=_estimator(t_args, ps, t_hp, t_env).fit())

    e_args = mine["evaluate"]["Arguments"]
    e_hp = {**e_args["HyperParameters"], "label_noise": label_noise}
    e_env = {**e_args["Environment"], "UNIJOB_HYPERPARAMETERS": Join(on="", values=[
        '{"label_noise":', label_noise, ',"seed":7}'])}
    est = _estimator(e_args, ps, e_hp, e_env,
                     metric_definitions=[{"Name": "accuracy", "Regex": metric_regex("accuracy")}])
    evaluate = TrainingStep(name="evaluate", step_args=est.fit(
        {"model": TrainingInput(s3_data=train.properties.ModelArtifacts.S3ModelArtifacts)}))

    accuracy = evaluate.properties.FinalMetricDataList["accuracy"].Value
    model = Model(image_uri=IMAGE, model_data=train.properties.ModelArtifacts.S3ModelArtifacts, role=ROLE,
                  sagemaker_session=ps)
    register = ModelStep(name="register", step_args=model.register(
        content_types=["application/json"], response_types=["application/json"], model_package_group_name="digits",
        approval_status="Approved", customer_metadata_properties={"accuracy": Join(on="", values=[accuracy])}),
        retry_policies=[StepRetryPolicy(exception_types=[StepExceptionTypeEnum.SERVICE_FAULT,
                                                         StepExceptionTypeEnum.THROTTLING], max_attempts=2)])
    cond = ConditionStep(name="register-if", conditions=[ConditionGreaterThanOrEqualTo(left=accuracy, right=min_accuracy)],
                         if_steps=[register], else_steps=[])
    sdk = json.loads(Pipeline(name="digits-pipeline", parameters=[epochs, min_accuracy, label_noise],
                              steps=[train, evaluate, cond], sagemaker_session=ps,
                              pipeline_experiment_config=None).definition())
    d = compare(sdk, ours)
    assert_explained(d, differ=DIFFER, vendor_only=SDK_ONLY, ours_only=UNIJOB_ONLY)
    for path in ("Steps[1].Arguments.InputDataConfig[0].DataSource.S3DataSource.S3Uri.Get",
                 "Steps[2].Arguments.Conditions[0].LeftValue.Get", "Steps[2].Arguments.Conditions[0].RightValue.Get",
                 "Steps[0].Arguments.HyperParameters.epochs.Std:Join.Values[0].Get",
                 "Steps[1].Arguments.AlgorithmSpecification.MetricDefinitions[0].Regex",
                 "Steps[2].Arguments.IfSteps[0].Arguments.InferenceSpecification.Containers[0].ModelDataUrl.Get"):
        assert path in d.same, path
