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


#: step type -> (the API whose request its Arguments are, the name fields Pipelines fills in)
CALLS = {"Training": ("CreateTrainingJob", {"TrainingJobName": "pipelines-x-train"}),
         "RegisterModel": ("CreateModelPackage", {}),
         "Model": ("CreateModel", {"ModelName": "pipelines-x-model"}),
         "Transform": ("CreateTransformJob", {"TransformJobName": "pipelines-x-transform"})}


def _concrete(shape, value):
    """``value`` with each Get / Std:Join made a value of the botocore shape's type."""
    if isinstance(value, dict) and ("Get" in value or "Std:Join" in value):
        if shape.type_name != "string":
            return {"integer": 3, "long": 3, "float": 0.5, "double": 0.5, "boolean": True}[shape.type_name]
        uri = "s3://resolved-at-run-time/model.tar.gz"
        return uri if "s3" in shape.metadata.get("pattern", "s3") else "resolved-at-run-time"
    if shape.type_name == "structure" and isinstance(value, dict):
        return {k: _concrete(shape.members[k], v) if k in shape.members else v for k, v in value.items()}
    if shape.type_name == "list" and isinstance(value, list):
        return [_concrete(shape.member, v) for v in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: _concrete(shape.value, v) for k, v in value.items()}
    return value


def _with_batch(data):
    data["steps"].append({"name": "score", "depends_on": ["register"], "retries": 1, "batch": {
        "name": "score", "batch": {"model": "{{ steps.train.outputs.model }}", "input": "s3://demo-in/digits.jsonl",
                                   "output": "s3://demo-out/scores", "instance_type": {"sagemaker": "ml.m5.large"},
                                   "handler": str(ROOT / "examples" / "quickstart" / "serve.py") + ":Digits"}}})


def test_every_step_is_a_valid_request_of_its_api(tmp_path):
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    plan = _plan(_variant(tmp_path, _with_batch))
    validate_against_model("sagemaker", "CreatePipeline", {**plan.request("CreatePipeline").body,
                                                           "ClientRequestToken": "x" * 32})
    steps = _steps(_definition(plan)["Steps"])
    assert {s["Type"] for s in steps.values()} == {"Training", "Condition", "RegisterModel", "Model", "Transform"}
    for name, step in steps.items():
        if step["Type"] == "Condition":
            continue
        op, names = CALLS[step["Type"]]
        args = _concrete(model.operation_model(op).input_shape, {**step["Arguments"], **names})
        validate_against_model("sagemaker", op, args)
    score = steps["score-transform"]
    assert score["Arguments"]["ModelName"] == {"Get": "Steps.score-model.ModelName"}
    assert steps["score-model"]["Arguments"]["PrimaryContainer"]["ModelDataUrl"] == {
        "Get": "Steps.train.ModelArtifacts.S3ModelArtifacts"}
    # below the condition: a false condition skips the batch step too; it waits for the register step
    assert [s["Name"] for s in _definition(plan)["Steps"][2]["Arguments"]["IfSteps"]] == [
        "register", "score-model", "score-transform"]
    assert steps["score-model"]["DependsOn"] == ["register"]
    assert {p["ExceptionType"][0] for p in score["RetryPolicies"]} == {"Step.SERVICE_FAULT", "SageMaker.JOB_INTERNAL_ERROR"}


def test_the_metric_definition_reads_what_log_metrics_prints(tmp_path, capsys, monkeypatch):
    import re

    from unijob import runtime

    regex = _steps(_definition(_plan())["Steps"])["evaluate"]["Arguments"]["AlgorithmSpecification"][
        "MetricDefinitions"][0]["Regex"]
    monkeypatch.setenv("UNIJOB_OUTPUT_DIR", str(tmp_path))
    runtime.log_metrics({"val_accuracy": 0.5, "accuracy": 0.9731, "test_images": 450}, output_dir=tmp_path)
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[unijob.metrics]")][0]
    assert float(re.search(regex, line).group(1)) == 0.9731  # not val_accuracy's 0.5
    runtime.log_metrics({"accuracy": 1e-05}, output_dir=tmp_path)
    assert float(re.search(regex, capsys.readouterr().out).group(1)) == 1e-05


def test_pipelines_run_managed_creates_and_starts_the_pipeline(aws, sent, capsys):
    s3 = boto3_client("s3")
    s3.create_bucket(Bucket="demo-out")
    assert main(["pipelines", "run", str(PIPELINE), "-t", "sagemaker", "--managed", "-p", "epochs=5",
                 "-o", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pipeline"].endswith(":pipeline/digits-pipeline") and "/execution/" in out["execution"]
    ops = [op for op, _ in sent]
    assert ops == ["s3:HeadObject", "s3:PutObject", "s3:HeadObject", "s3:PutObject",
                   "sagemaker:CreateModelPackageGroup", "sagemaker:CreatePipeline",
                   "sagemaker:StartPipelineExecution"]
    for op, params in sent:
        if op.startswith("sagemaker:"):
            validate_against_model("sagemaker", op.split(":")[1], params)
    sm = boto3_client("sagemaker")
    stored = json.loads(sm.describe_pipeline(PipelineName="digits-pipeline")["PipelineDefinition"])
    assert stored == _definition(_plan())
    assert sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=out["execution"])["PipelineParameters"] == [
        {"Name": "epochs", "Value": "5"}]
    assert sm.describe_model_package_group(ModelPackageGroupName="digits")["ModelPackageGroupName"] == "digits"
    # the training steps' code is where their HyperParameters say
    submit_dir = json.loads(stored["Steps"][0]["Arguments"]["HyperParameters"]["sagemaker_submit_directory"])
    bucket, _, key = submit_dir[len("s3://"):].partition("/")
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0

    # again: the pipeline exists, so its definition is replaced and a second execution starts
    sent.clear()
    assert main(["pipelines", "run", str(PIPELINE), "-t", "sagemaker", "--managed"]) == 0
    assert [op for op, _ in sent if op.startswith("sagemaker:")] == [
        "sagemaker:CreateModelPackageGroup", "sagemaker:CreatePipeline", "sagemaker:UpdatePipeline",
        "sagemaker:StartPipelineExecution"]
    assert len(sm.list_pipeline_executions(PipelineName="digits-pipeline")["PipelineExecutionSummaries"]) == 2


@pytest.mark.parametrize("mutate, loc, words", [
    (lambda d: d["steps"].append({"name": "ship", "depends_on": ["register"],
                                  "deploy": str(ROOT / "examples" / "pipeline" / "endpoint.yaml")}),
     ("steps", 3, "deploy"), "step 'ship': variant 'champion': models:/digits@champion is a registry alias"),
    (lambda d: d["steps"][2].update(when="steps.train.state == 'SUCCEEDED'"), ("steps", 2, "when"),
     "steps.train.state has no SageMaker Pipelines equivalent"),
    (lambda d: d["steps"][2].update(when="not (steps.evaluate.metrics.accuracy > 0.9 and params.epochs > 3)"),
     ("steps", 2, "when"), "'and' inside 'or' or 'not'"),
    (lambda d: d["steps"][2].update(when="params.min_accuracy"), ("steps", 2, "when"), "is not a comparison"),
    (lambda d: d["steps"].extend([
        {"name": "other", "when": "params.epochs > 3", "job": d["steps"][0]["job"], "with": d["steps"][0]["with"]},
        {"name": "both", "depends_on": ["register", "other"], "register": {
            "model": "{{ steps.train.outputs.model }}", "name": "digits"}}]),
     ("steps", 4, "depends_on"), "two unrelated conditions"),
])
def test_what_sagemaker_cannot_express_is_a_spec_error_and_nothing_is_sent(tmp_path, aws, sent, capsys,
                                                                            mutate, loc, words):
    path = _variant(tmp_path, mutate)
    with pytest.raises(SpecError) as e:
        _plan(path)
    assert e.value.issues[0].loc == loc and words in str(e.value), str(e.value)
    assert main(["pipelines", "run", str(path), "-t", "sagemaker", "--managed"]) == 2
    err = capsys.readouterr().err
    assert words in err and f"{path}:" in err, err  # file:line of the step
    assert sent == []


def test_a_register_step_needs_a_serving_image(tmp_path):
    path = _variant(tmp_path, lambda d: d["targets"]["sagemaker"].pop("serving_image"))
    with pytest.raises(SpecError) as e:
        _plan(path)
    assert e.value.issues[0].loc == ("steps", 2, "register") and "serving_image" in str(e.value)


def test_conditions_or_not_and_not_equal(tmp_path):
    path = _variant(tmp_path, lambda d: d["steps"][2].update(
        when="steps.evaluate.metrics.accuracy >= params.min_accuracy and "
             "(params.epochs != 3 or not steps.evaluate.metrics.accuracy < 0.5)"))
    conds = _definition(_plan(path))["Steps"][2]["Arguments"]["Conditions"]
    acc = {"Get": "Steps.evaluate.FinalMetricDataList['accuracy'].Value"}
    assert conds == [
        {"Type": "GreaterThanOrEqualTo", "LeftValue": acc, "RightValue": {"Get": "Parameters.min_accuracy"}},
        {"Type": "Or", "Conditions": [
            {"Type": "Not", "Condition": {"Type": "Equals", "LeftValue": {"Get": "Parameters.epochs"}, "RightValue": 3}},
            {"Type": "Not", "Condition": {"Type": "LessThan", "LeftValue": acc, "RightValue": 0.5}}]}]


def test_plan_imports_no_aws_sdk():
    """`unijob plan pipeline.yaml -t sagemaker` stays pure and light (as tests/test_cli_imports.py asks of plan)."""
    import subprocess
    import sys

    code = ("import sys\nbase = set(sys.modules)\nfrom unijob.cli import main\ncode = main(sys.argv[1:])\n"
            "print('MODULES', ' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - base})), file=sys.stderr)\n"
            "sys.exit(code)\n")
    r = subprocess.run([sys.executable, "-c", code, "plan", str(PIPELINE), "-t", "sagemaker", "-o", "json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    loaded = set(r.stderr.split("MODULES", 1)[1].split())
    assert not loaded & {"boto3", "botocore", "sagemaker"}, loaded
    assert json.loads(r.stdout)["requests"][1]["api"] == "sagemaker:CreatePipeline"


HANDLER = str(ROOT / "examples" / "quickstart" / "serve.py") + ":Digits"


def _with_deploy(champion: str):
    def mutate(data):
        data["steps"][2]["register"]["alias"] = "candidate"
        data["steps"].append({"name": "deploy", "depends_on": ["register"], "deploy": {
            "name": "digits", "endpoint": {"handler": HANDLER, "min_replicas": 1, "max_replicas": 1, "variants": [
                {"name": "champion", "weight": 90, "model": champion},
                {"name": "candidate", "weight": 10, "model": "models:/digits@candidate"}]}}})
    return mutate


def test_a_deploy_step_is_model_endpoint_config_and_endpoint_steps(tmp_path):
    """A canary of a pinned champion and the version this run registers; the EndpointConfig and
    Endpoint steps are held against the SDK's (EndpointConfigStep, EndpointStep) below."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    plan = _plan(_variant(tmp_path, _with_deploy("models:/digits/3")))
    branch = _definition(plan)["Steps"][2]["Arguments"]["IfSteps"]
    assert [s["Name"] for s in branch] == ["register", "deploy-model-champion", "deploy-model-candidate",
                                           "deploy-config", "deploy"]
    steps = {s["Name"]: s for s in branch}
    assert steps["deploy-model-champion"]["Arguments"]["PrimaryContainer"] == {
        "ModelPackageName": "arn:aws:sagemaker:us-east-1:123456789012:model-package/digits/3",
        "Environment": {"UNIJOB_HANDLER": HANDLER}}
    assert steps["deploy-model-candidate"]["Arguments"]["PrimaryContainer"]["ModelPackageName"] == {
        "Get": "Steps.register.ModelPackageArn"}
    assert steps["deploy-model-champion"]["DependsOn"] == steps["deploy-model-candidate"]["DependsOn"] == ["register"]
    for name, op, names in (("deploy-model-champion", "CreateModel", {"ModelName": "m"}),
                            ("deploy-model-candidate", "CreateModel", {"ModelName": "m"}),
                            ("deploy-config", "CreateEndpointConfig", {"EndpointConfigName": "c"}),
                            ("deploy", "CreateEndpoint", {})):
        args = _concrete(model.operation_model(op).input_shape, {**steps[name]["Arguments"], **names})
        validate_against_model("sagemaker", op, args)
    assert not plan.warnings[1:], plan.warnings  # only the alias warning: min == max replicas, no autoscaling


def test_a_deploy_alias_no_step_registers_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError) as e:
        _plan(_variant(tmp_path, _with_deploy("models:/digits@champion")))
    assert e.value.issues[0].loc == ("steps", 3, "deploy")
    assert "variant 'champion': models:/digits@champion is a registry alias" in str(e.value)


def test_deploy_steps_are_the_ones_the_sdk_builds(tmp_path, pipeline_session):
    from sagemaker.model import Model
    from sagemaker.workflow.endpoint_step import EndpointConfigStep, EndpointStep
    from sagemaker.workflow.model_step import ModelStep
    from sagemaker.workflow.pipeline import Pipeline
    from sagemaker.workflow.steps import TrainingStep

    def mutate(data):
        _with_deploy("s3://demo-out/champion/model.tar.gz")(data)
        del data["steps"][2]  # no condition: the deploy step's parts at the top level
        data["steps"][2]["depends_on"] = ["train"]
        data["steps"][2]["deploy"]["endpoint"]["variants"][1]["model"] = "{{ steps.train.outputs.model }}"

    ours = _definition(_plan(_variant(tmp_path, mutate)))
    ps = pipeline_session
    mine = _steps(ours["Steps"])
    # the training steps as they are (held against the SDK above): only their properties are used here
    train = TrainingStep(name="train", step_args=_estimator(mine["train"]["Arguments"], ps, {}, {}).fit())
    models = {}
    for v, data in (("champion", "s3://demo-out/champion/model.tar.gz"),
                    ("candidate", train.properties.ModelArtifacts.S3ModelArtifacts)):
        m = Model(image_uri=IMAGE, model_data=data, role=ROLE, env={"UNIJOB_HANDLER": HANDLER}, sagemaker_session=ps)
        models[v] = ModelStep(name=f"deploy-model-{v}", step_args=m.create(), depends_on=["train"])
    variants = [{"VariantName": v, "ModelName": models[v].properties.ModelName, "InitialInstanceCount": 1,
                 "InstanceType": "ml.c5.xlarge", "InitialVariantWeight": w} for v, w in (("champion", 90.0),
                                                                                         ("candidate", 10.0))]
    config = EndpointConfigStep(name="deploy-config", step_args=ps.create_endpoint_config(
        name="digits-config", production_variants=variants))
    endpoint = EndpointStep(name="deploy", step_args=ps.create_endpoint(
        endpoint_name="digits", config_name=config.properties.EndpointConfigName))
    sdk = json.loads(Pipeline(name="p", steps=[train, models["champion"], models["candidate"], config, endpoint],
                              sagemaker_session=ps, pipeline_experiment_config=None).definition())
    sdk_steps = {s["Name"].replace("-CreateModel", ""): s for s in sdk["Steps"]}
    renamed = {"Name": "the SDK's ModelStep names its step <name>-CreateModel; unijob keeps the name"}
    expected = {  # step -> (both set, different; only the SDK sends)
        "deploy-model-champion": (renamed, {}),
        "deploy-model-candidate": (renamed, {}),
        "deploy-config": ({"Arguments.ProductionVariants[*].ModelName.Get": "the Model steps, named as above"},
                          {"Arguments.EndpointConfigName": "the SDK names the endpoint config; unijob lets Pipelines "
                                                           "name it (one per execution, as it names training jobs)",
                           "Arguments.Tags": "the SDK writes an empty tag list"}),
        "deploy": ({}, {"Arguments.Tags": "the SDK writes an empty tag list"})}
    for name, (differ, sdk_only) in expected.items():
        assert_explained(compare(sdk_steps[name], mine[name]), differ=differ, vendor_only=sdk_only, ours_only={})
