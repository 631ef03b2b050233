"""Following a SageMaker Pipelines execution: ``unijob pipelines status ARN``,
``unijob pipelines run P -t sagemaker --managed --wait`` and ``unijob.pipeline_execution(ARN)``.

What moto's server (5.2.x, moto/sagemaker/models.py) does with these calls, and so what is tested
where:

- ``DescribePipelineExecution``, ``DescribePipelineDefinitionForExecution``: implemented; an
  execution is ``Succeeded`` the moment it starts (moto runs no step). Tested on moto's server,
  every request checked against botocore's service model.
- ``ListPipelineExecutionSteps``: not implemented (moto answers 500, NotImplementedError). On moto
  the status says so (steps UNKNOWN, a warning naming the call); how SageMaker's answer is read
  (states, failure reasons, job ARNs, paging) is tested with botocore's Stubber, which checks each
  canned answer against the service model's output shape and runs nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from sagemaker_testkit import REGION, boto3_client, validate_against_model
from unijob.cli import main

ROOT = Path(__file__).resolve().parents[3]
PIPELINE = ROOT / "tests" / "data" / "sagemaker_pipeline.yaml"
STEPS = ["train", "evaluate", "register-if", "register"]


def _start(capsys) -> str:
    boto3_client("s3").create_bucket(Bucket="demo-out")
    assert main(["pipelines", "run", str(PIPELINE), "-t", "sagemaker", "--managed", "-o", "json"]) == 0
    return json.loads(capsys.readouterr().out)["execution"]


def test_status_of_an_execution_on_moto(aws, sent, capsys):
    arn = _start(capsys)
    sent.clear()
    assert main(["pipelines", "status", arn, "-o", "json"]) == 0
    io = capsys.readouterr()
    out = json.loads(io.out)
    assert (out["id"], out["target"], out["name"]) == (arn, "sagemaker", "digits-pipeline")
    assert (out["state"], out["status"]) == ("SUCCEEDED", "Succeeded")  # moto: Succeeded at once
    assert list(out["steps"]) == STEPS, "every step of the definition, Condition branches included"
    assert [s["type"] for s in out["steps"].values()] == ["Training", "Training", "Condition", "RegisterModel"]
    # moto has no ListPipelineExecutionSteps: the status says what it could not read
    assert {s["state"] for s in out["steps"].values()} == {"UNKNOWN"}
    assert len(out["warnings"]) == 1 and "ListPipelineExecutionSteps" in out["warnings"][0]
    assert "warning: step states unknown" in io.err
    ops = [op for op, _ in sent]
    assert ops[:3] == ["sagemaker:DescribePipelineExecution", "sagemaker:DescribePipelineDefinitionForExecution",
                       "sagemaker:ListPipelineExecutionSteps"]
    for op, params in sent:
        validate_against_model("sagemaker", op.split(":")[1], params)
    # the text form
    assert main(["pipelines", "status", arn]) == 0
    text = capsys.readouterr().out
    assert f"execution: {arn}  (digits-pipeline on sagemaker)" in text and "state:     SUCCEEDED (Succeeded)" in text


def test_run_managed_wait_follows_the_execution(aws, sent, capsys):
    boto3_client("s3").create_bucket(Bucket="demo-out")
    assert main(["pipelines", "run", str(PIPELINE), "-t", "sagemaker", "--managed", "--wait", "--interval", "0.1",
                 "-o", "json"]) == 0
    io = capsys.readouterr()
    out = json.loads(io.out)
    assert out["state"] == "SUCCEEDED" and "/execution/" in out["id"]
    assert f"started pipeline execution {out['id']}" in io.err and "SUCCEEDED: train:UNKNOWN" in io.err
    assert [op for op, _ in sent].count("sagemaker:StartPipelineExecution") == 1


def test_the_library_api(aws, capsys):
    import unijob

    arn = _start(capsys)
    r = unijob.pipeline_execution(arn)
    assert (r.state, r.target, r.wait(timeout=5, interval=0.1)) == ("SUCCEEDED", "sagemaker", "SUCCEEDED")
    assert list(r.steps) == STEPS


def test_unknown_and_malformed_executions(aws, capsys):
    arn = _start(capsys)
    missing = arn.replace(":pipeline/digits-pipeline/", ":pipeline/nope/")
    assert main(["pipelines", "status", missing]) == 5
    assert f"no SageMaker pipeline execution {missing}" in capsys.readouterr().err
    assert main(["pipelines", "status", "arn:aws:s3:::demo-out"]) == 2
    assert "not a managed pipeline execution" in capsys.readouterr().err


def _t(minute: int) -> dt.datetime:
    return dt.datetime(2026, 11, 30, 2, minute, tzinfo=dt.timezone.utc)


def test_step_states_from_sagemakers_answers(monkeypatch):
    """A failed execution as ListPipelineExecutionSteps reports it (two pages): the failed step's
    reason and training job, a retried step's last attempt, a step never started."""
    import botocore.session
    from botocore.stub import Stubber

    from unijob_adapters.sagemaker import pipelines

    arn = f"arn:aws:sagemaker:{REGION}:123456789012:pipeline/digits-pipeline/execution/abc123def456"
    job = f"arn:aws:sagemaker:{REGION}:123456789012:training-job/"
    definition = json.loads(json.dumps({"Version": "2020-12-01", "Steps": [
        {"Name": "train", "Type": "Training", "Arguments": {}},
        {"Name": "evaluate", "Type": "Training", "Arguments": {}},
        {"Name": "register-if", "Type": "Condition", "Arguments": {"Conditions": [], "ElseSteps": [], "IfSteps": [
            {"Name": "register", "Type": "RegisterModel", "Arguments": {}}]}}]}))
    sm = botocore.session.get_session().create_client("sagemaker", region_name=REGION, aws_access_key_id="x",
                                                      aws_secret_access_key="x")
    stub = Stubber(sm)
    stub.add_response("describe_pipeline_execution", {
        "PipelineArn": arn.split("/execution/")[0], "PipelineExecutionArn": arn, "PipelineExecutionStatus": "Failed",
        "FailureReason": "Step failure: One or multiple steps failed."}, {"PipelineExecutionArn": arn})
    stub.add_response("describe_pipeline_definition_for_execution", {"PipelineDefinition": json.dumps(definition)},
                      {"PipelineExecutionArn": arn})
    stub.add_response("list_pipeline_execution_steps", {"NextToken": "page2", "PipelineExecutionSteps": [
        {"StepName": "train", "StepStatus": "Succeeded", "StartTime": _t(0), "EndTime": _t(9), "AttemptCount": 1,
         "Metadata": {"TrainingJob": {"Arn": job + "pipelines-train-1"}}},
        {"StepName": "evaluate", "StepStatus": "Failed", "StartTime": _t(10), "EndTime": _t(11), "AttemptCount": 1,
         "FailureReason": "ClientError: capacity", "Metadata": {"TrainingJob": {"Arn": job + "pipelines-evaluate-1"}}}]},
        {"PipelineExecutionArn": arn, "SortOrder": "Ascending"})
    stub.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": [
        {"StepName": "evaluate", "StepStatus": "Failed", "StartTime": _t(12), "EndTime": _t(14), "AttemptCount": 2,
         "FailureReason": "AlgorithmError: ExecuteUserScriptError: exit code 1",
         "Metadata": {"TrainingJob": {"Arn": job + "pipelines-evaluate-2"}}}]},
        {"PipelineExecutionArn": arn, "SortOrder": "Ascending", "NextToken": "page2"})
    monkeypatch.setattr(pipelines, "client", lambda *a, **k: sm)
    with stub:
        out = pipelines.pipeline_execution(arn)
        stub.assert_no_pending_responses()
    assert (out["state"], out["status"], out["message"]) == ("FAILED", "Failed", "Step failure: One or multiple steps failed.")
    st = out["steps"]
    assert {n: s["state"] for n, s in st.items()} == {"train": "SUCCEEDED", "evaluate": "FAILED",
                                                      "register-if": "NOT_RUN", "register": "NOT_RUN"}
    assert st["train"]["job_id"] == job + "pipelines-train-1"
    assert (st["evaluate"]["job_id"], st["evaluate"]["attempts"]) == (job + "pipelines-evaluate-2", 2)
    assert st["evaluate"]["message"].startswith("AlgorithmError") and st["evaluate"]["ended_at"] == _t(14).timestamp()
    assert out["warnings"] == []
