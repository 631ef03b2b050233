"""`unijob plan pipeline.yaml -t TARGET`: the local DAG, and the Vertex PipelineJob whose KFP IR
loads into kfp-pipeline-spec's protos (unknown fields refused) and whose body parses as
aiplatform_v1.PipelineJob."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import unijob
from unijob.cli import main
from unijob.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]
VERTEX = ROOT / "tests" / "data" / "vertex_pipeline.yaml"


def test_local_plan_is_the_dag(capsys):
    assert main(["plan", str(ROOT / "examples" / "pipeline" / "pipeline.yaml"), "-o", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    body = plan["requests"][0]["body"]
    assert plan["kind"] == "pipeline" and body["order"] == ["train", "evaluate", "register", "deploy"]
    assert body["steps"]["register"]["when"] == "steps.evaluate.metrics.accuracy >= params.min_accuracy"
    assert body["steps"]["register"]["depends_on"] == ["evaluate", "train"]


def test_vertex_pipeline_job_is_kfp_ir():
    pytest.importorskip("unijob_adapters.vertex")
    pb = pytest.importorskip("kfp.pipeline_spec.pipeline_spec_pb2")
    from google.cloud import aiplatform_v1

    from unijob.pipeline.kfp import check_ir

    plan = unijob.plan(str(VERTEX), "vertex")
    req = plan.requests[0]
    assert req.api == "POST /v1/projects/demo-project/locations/us-central1/pipelineJobs"
    ir = check_ir(req.body["pipelineSpec"])
    assert isinstance(ir, pb.PipelineSpec)
    tasks = ir.root.dag.tasks
    assert set(tasks) == {"train", "evaluate", "evaluate-metrics", "register"}
    assert list(tasks["evaluate"].dependent_tasks) == ["train"]
    assert set(tasks["register"].dependent_tasks) == {"train", "evaluate", "evaluate-metrics"}
    assert tasks["register"].trigger_policy.condition == (
        "(inputs.parameter_values['pipelinechannel--evaluate-accuracy'] >= "
        "inputs.parameter_values['pipelinechannel--min_accuracy'])")
    # every task's inputs are declared by its component, every component has its executor
    for name, task in tasks.items():
        comp = ir.components[task.component_ref.name]
        assert set(task.inputs.parameters) <= set(comp.input_definitions.parameters), name
        assert comp.executor_label in req.body["pipelineSpec"]["deploymentSpec"]["executors"]
    # the train task runs the very CustomJob the Vertex adapter plans for that step
    train_args = req.body["pipelineSpec"]["deploymentSpec"]["executors"]["exec-train"]["container"]["args"]
    payload = json.loads(train_args[train_args.index("--payload") + 1])
    job = aiplatform_v1.CustomJob.from_json(json.dumps(payload), ignore_unknown_fields=False)
    assert job.job_spec.base_output_directory.output_uri_prefix == "gs://demo-out/train"
    assert "{{$.inputs.parameters['pipelinechannel--epochs']}}" in json.dumps(payload), "the runtime parameter"
    # the evaluate job reads the model the train job writes
    ev_args = req.body["pipelineSpec"]["deploymentSpec"]["executors"]["exec-evaluate"]["container"]["args"]
    assert "/gcs/demo-out/train/model" in ev_args[ev_args.index("--payload") + 1]  # its Cloud Storage FUSE path
    aiplatform_v1.PipelineJob.from_json(json.dumps(req.body), ignore_unknown_fields=False)
    # each job's source tarball, and the runtime wheel listed as travelling inside it
    assert {u.kind for u in plan.uploads} == {"sourcedir", "runtime-wheel"}


def test_steps_a_target_cannot_compile_are_spec_errors(tmp_path, capsys):
    pytest.importorskip("unijob_adapters.vertex")
    data = yaml.safe_load(VERTEX.read_text())
    for step in data["steps"]:
        if isinstance(step.get("job"), str):
            step["job"] = str((VERTEX.parent / step["job"]).resolve())
    data["steps"].append({"name": "ship", "deploy": str(ROOT / "examples" / "pipeline" / "endpoint.yaml"),
                          "depends_on": ["register"]})
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(SpecError) as e:
        unijob.plan(str(path), "vertex")
    # deploy steps compile, but Vertex has no concurrency autoscaling: the adapter's reason, at the step
    assert "step 'ship'" in str(e.value) and e.value.issues[0].loc == ("steps", 3, "deploy")
    assert "concurrency" in str(e.value)
    # SageMaker: adapters/sagemaker/tests/test_sagemaker_pipeline.py


def test_pipeline_schema_file_is_current():
    from unijob.pipeline.spec import json_schema

    on_disk = json.loads((ROOT / "specs" / "pipeline.schema.json").read_text())
    assert on_disk == json_schema(), "specs/pipeline.schema.json is stale: run `unijob schema --pipeline > specs/pipeline.schema.json`"
    import jsonschema

    jsonschema.validate(yaml.safe_load((ROOT / "examples" / "pipeline" / "pipeline.yaml").read_text()), on_disk)


def test_databricks_multi_task_job_round_trips_through_the_sdk():
    pytest.importorskip("unijob_adapters.databricks")
    from databricks.sdk.service import jobs

    plan = unijob.plan(str(ROOT / "tests" / "data" / "databricks_pipeline.yaml"), "databricks")
    body = plan.request("jobs/create").body
    assert jobs.JobSettings.from_dict(body).as_dict() == body
    by_key = {t["task_key"]: t for t in body["tasks"]}
    assert list(by_key) == ["train", "evaluate", "retrain-if", "retrain"]
    assert by_key["retrain-if"]["condition_task"] == {"op": "LESS_THAN", "left": "{{tasks.evaluate.values.accuracy}}",
                                                      "right": "{{job.parameters.min_accuracy}}"}
    assert by_key["retrain"]["depends_on"] == [{"task_key": "retrain-if", "outcome": "true"}]
    assert by_key["retrain"]["max_retries"] == 1 and "spark_python_task" in by_key["retrain"]
    assert "{{job.parameters.epochs}}" in json.dumps(by_key["train"])
    assert body["schedule"]["quartz_cron_expression"] == "0 0 3 ? * 2"  # cron Monday (1) is Quartz 2
    assert any(u.destination.endswith(".whl") for u in plan.uploads), "the runtime wheel travels with the tasks"


def test_databricks_conditions_it_cannot_express(tmp_path):
    pytest.importorskip("unijob_adapters.databricks")
    data = yaml.safe_load((ROOT / "tests" / "data" / "databricks_pipeline.yaml").read_text())
    for step in data["steps"]:
        step["job"] = str((ROOT / "tests" / "data" / step["job"]).resolve())
    data["steps"][2]["when"] = "steps.evaluate.metrics.accuracy < 0.5 or params.epochs > 10"
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(SpecError) as e:
        unijob.plan(str(path), "databricks")
    assert e.value.issues[0].loc == ("steps", 2, "when") and "'or'" in str(e.value)


VERTEX_FULL = ROOT / "tests" / "data" / "vertex_pipeline_full.yaml"


def _compiled_vertex(path):
    """The Vertex plan of pipeline ``path``, its IR checked (kfp-pipeline-spec) and its body parsed
    as aiplatform_v1's PipelineJob: ``(plan, ir, tasks, components, executors)``."""
    from google.cloud import aiplatform_v1

    from unijob.pipeline.kfp import check_ir

    plan = unijob.plan(str(path), "vertex")
    body = plan.requests[0].body
    ir = body["pipelineSpec"]
    check_ir(ir)
    aiplatform_v1.PipelineJob.from_json(json.dumps(body), ignore_unknown_fields=False)
    return plan, ir, ir["root"]["dag"]["tasks"], ir["components"], ir["deploymentSpec"]["executors"]


def test_vertex_batch_and_deploy_steps_run_gcpc_launchers_with_the_adapters_bodies():
    """Deploy: create_endpoint, then deploy_model per variant with the Vertex adapter's DeployedModel
    bodies and traffic split, the registered versions named by alias; batch: upload_model, then
    batch_prediction_job with the adapter's BatchPredictionJob. Every payload parses as its
    aiplatform_v1 type the way its launcher sends it; artifacts flow between declared ends."""
    pytest.importorskip("unijob_adapters.vertex")
    pytest.importorskip("kfp.pipeline_spec.pipeline_spec_pb2")
    from google.cloud import aiplatform_v1

    from unijob import registry
    from unijob.pipeline import steps as S
    from unijob.pipeline.loading import load_pipeline

    plan, ir, tasks, comps, execs = _compiled_vertex(VERTEX_FULL)
    assert {"deploy-endpoint", "deploy-champion", "deploy", "score-model", "score"} <= set(tasks)
    cond = tasks["register"]["triggerPolicy"]["condition"]
    assert all(tasks[t]["triggerPolicy"]["condition"] == cond for t in ("deploy-endpoint", "deploy", "score")), \
        "the register step's condition holds for the steps after it"
    for name, task in tasks.items():  # every artifact read is one its producer declares
        comp = comps[task["componentRef"]["name"]]
        for art, src in task.get("inputs", {}).get("artifacts", {}).items():
            producer = src["taskOutputArtifact"]["producerTask"]
            assert producer in task["dependentTasks"]
            out = comps[tasks[producer]["componentRef"]["name"]]["outputDefinitions"]["artifacts"][art]
            assert out == comp["inputDefinitions"]["artifacts"][art], (name, art)

    def args(task):
        a = execs[f"exec-{task}"]["container"]["args"]
        return a[1], json.loads(a[a.index("--payload") + 1]), a

    endpoint_name = "projects/demo-project/locations/us-central1/endpoints/123"
    kind, ep, a = args("deploy-endpoint")
    assert kind == "CreateEndpoint" and "--executor_input" in a
    aiplatform_v1.Endpoint.from_json(json.dumps(ep), ignore_unknown_fields=False)
    pipe = load_pipeline(VERTEX_FULL)
    spec = S.build_spec(pipe.step("deploy"), pipe.base_dir, lambda r: None, "kfp", pipe.spec.targets)
    stand_in = spec.model_copy(update={"endpoint": spec.endpoint.model_copy(update={"variants": [
        v.model_copy(update={"model": "gs://unijob-registered-model/" + v.name}) for v in spec.endpoint.variants]})})
    direct = [r.body for r in registry.get("vertex").plan_endpoint(stand_in).requests if r.api.endswith(":deployModel")]
    for task, variant, want in (("deploy-champion", "champion", direct[0]), ("deploy", "candidate", direct[1])):
        kind, dm, a = args(task)
        assert kind == "DeployModel" and "--executor_input" not in a
        assert dm.pop("endpoint") == "{{$.inputs.artifacts['endpoint'].metadata['resourceName']}}"
        assert dm["deployedModel"].pop("model") == f"projects/demo-project/locations/us-central1/models/digits@{variant}"
        want = json.loads(json.dumps(want))
        want["deployedModel"].pop("model")
        assert dm == want, "the adapter's DeployedModel and traffic split"
        aiplatform_v1.DeployModelRequest.from_json(json.dumps({**dm, "endpoint": endpoint_name}), ignore_unknown_fields=False)
    assert sorted(args("deploy")[1]["trafficSplit"].values()) == [10, 90]
    kind, model, a = args("score-model")
    assert kind == "UploadModel" and model["artifactUri"] == "gs://demo-out/train/model"
    aiplatform_v1.Model.from_json(json.dumps(model), ignore_unknown_fields=False)
    kind, job, a = args("score")
    assert kind == "BatchPredictionJob" and job["model"] == "{{$.inputs.artifacts['model'].metadata['resourceName']}}"
    # the launcher hands the payload to the GAPIC client as a dict: proto-plus field names
    parsed = aiplatform_v1.BatchPredictionJob({**job, "model": "projects/p/locations/l/models/m"})
    assert parsed.output_config.gcs_destination.output_uri_prefix == "gs://demo-out/scores"
    assert parsed.input_config.instances_format == "jsonl"
    # the register step's launcher takes the Model as payload and the parent as --parent_model_name
    kind, model, a = args("register")
    assert kind == "UploadModel" and model["versionAliases"] == ["candidate"]
    assert a[a.index("--parent_model_name") + 1] == "projects/demo-project/locations/us-central1/models/digits"
    aiplatform_v1.Model.from_json(json.dumps(model), ignore_unknown_fields=False)


@pytest.mark.parametrize("path", ["vertex_pipeline.yaml", "vertex_pipeline_full.yaml"])
def test_vertex_conditions_read_only_the_tasks_own_inputs(path):
    """KFP evaluates a task's triggerPolicy.condition over that task's inputs.parameter_values, so a
    step below a conditioned step (deploy-*, score-* after register) takes the values the inherited
    condition reads as its own inputs, with the tasks producing them as dependencies."""
    pytest.importorskip("unijob_adapters.vertex")
    import re

    ir = unijob.plan(str(ROOT / "tests" / "data" / path), "vertex").requests[0].body["pipelineSpec"]
    tasks, comps = ir["root"]["dag"]["tasks"], ir["components"]
    conditioned = 0
    for name, task in tasks.items():
        cond = task.get("triggerPolicy", {}).get("condition", "")
        read = set(re.findall(r"inputs\.parameter_values\['([^']+)'\]", cond))
        params = task.get("inputs", {}).get("parameters", {})
        assert read <= set(params), (name, read - set(params))
        assert read <= set(comps[task["componentRef"]["name"]].get("inputDefinitions", {}).get("parameters", {})), name
        for src in params.values():
            if "taskOutputParameter" in src:
                assert src["taskOutputParameter"]["producerTask"] in task["dependentTasks"], name
        conditioned += bool(read)
    assert conditioned == (6 if "full" in path else 1)


def test_vertex_deploy_onto_an_existing_endpoint_imports_it(tmp_path):
    """targets.vertex.existing_endpoint: the step's endpoint task is an importer of that endpoint's
    google.VertexEndpoint artifact (no create_endpoint launcher), shaped as the KFP SDK compiles
    dsl.importer (tests/schemas/SOURCES.md), and the deploy tasks read it unchanged."""
    pytest.importorskip("unijob_adapters.vertex")
    pytest.importorskip("kfp.pipeline_spec.pipeline_spec_pb2")

    data = yaml.safe_load(VERTEX_FULL.read_text())
    for step in data["steps"]:
        for k in ("job", "deploy"):
            if isinstance(step.get(k), str):
                step[k] = str((VERTEX_FULL.parent / step[k]).resolve())
    data["targets"]["vertex"]["existing_endpoint"] = "4521"
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    plan, ir, tasks, comps, execs = _compiled_vertex(path)
    name = "projects/demo-project/locations/us-central1/endpoints/4521"
    uri = f"https://us-central1-aiplatform.googleapis.com/v1/{name}"
    assert not any("create_endpoint" in json.dumps(e) for e in execs.values()), "nothing creates an endpoint"
    assert execs["exec-deploy-endpoint"] == {"importer": {
        "artifactUri": {"constant": uri}, "metadata": {"resourceName": name},
        "typeSchema": {"schemaTitle": "google.VertexEndpoint", "schemaVersion": "0.0.1"}}}
    # the KFP SDK's own compilation of dsl.importer of a google type feeding a consumer
    sdk = yaml.safe_load((ROOT / "tests" / "schemas" / "kfp_sdk_pipeline_with_importer_and_gcpc_types.yaml").read_text())
    sdk_uri = sdk["deploymentSpec"]["executors"]["exec-importer"]["importer"]["artifactUri"]["constant"]
    swap = lambda x: json.loads(json.dumps(x).replace(sdk_uri, uri).replace("google.VertexDataset",  # noqa: E731
                                                                               "google.VertexEndpoint"))
    # beside the SDK's 'uri', the task takes the values of the register step's condition it inherits
    # (as an importer's metadata placeholders add inputs in the SDK)
    ours = tasks["deploy-endpoint"]
    cond = {k: v for k, v in ours["inputs"]["parameters"].items() if k.startswith("pipelinechannel--")}
    assert set(cond) == {"pipelinechannel--evaluate-accuracy", "pipelinechannel--min_accuracy"}
    comp = json.loads(json.dumps(comps["comp-deploy-endpoint"]))
    for k in cond:
        del comp["inputDefinitions"]["parameters"][k]
        del ours["inputs"]["parameters"][k]
    assert comp == {**swap(sdk["components"]["comp-importer"]), "executorLabel": "exec-deploy-endpoint"}
    assert ours["inputs"] == swap(sdk["root"]["dag"]["tasks"]["importer"]["inputs"])
    assert set(execs["exec-deploy-endpoint"]["importer"]) == set(sdk["deploymentSpec"]["executors"]["exec-importer"]["importer"])
    consumer = swap(sdk["root"]["dag"]["tasks"]["consumer-op"]["inputs"]["artifacts"]["dataset"])
    for t in ("deploy-champion", "deploy"):
        read = tasks[t]["inputs"]["artifacts"]["endpoint"]
        assert read == {"taskOutputArtifact": {**consumer["taskOutputArtifact"], "producerTask": "deploy-endpoint"}}
        assert comps[tasks[t]["componentRef"]["name"]]["inputDefinitions"]["artifacts"]["endpoint"] == \
            comps["comp-deploy-endpoint"]["outputDefinitions"]["artifacts"]["artifact"]
        a = execs[f"exec-{t}"]["container"]["args"]
        assert json.loads(a[a.index("--payload") + 1])["endpoint"] == "{{$.inputs.artifacts['endpoint'].metadata['resourceName']}}"
    assert ours["triggerPolicy"] == tasks["deploy"]["triggerPolicy"], "skipped with the step"
    assert any("4521" in n and "importer" in n for n in plan.notes)


def test_databricks_batch_step_is_the_adapters_batch_task_and_deploy_is_refused(tmp_path):
    pytest.importorskip("unijob_adapters.databricks")
    from databricks.sdk.service import jobs

    from unijob import registry
    from unijob.spec import JobSpec

    data = yaml.safe_load((ROOT / "tests" / "data" / "databricks_pipeline.yaml").read_text())
    for step in data["steps"]:
        step["job"] = str((ROOT / "tests" / "data" / step["job"]).resolve())
    batch = {"name": "score", "batch": {"model": "{{ steps.train.outputs.model }}", "handler": "serve.py:Digits",
                                        "input": "dbfs:/unijob/rows", "output": "dbfs:/unijob/scores"}}
    (tmp_path / "serve.py").write_text((ROOT / "examples" / "quickstart" / "serve.py").read_text())
    data["steps"].append({"name": "score", "depends_on": ["evaluate"], "batch": batch, "retries": 2})
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    plan = unijob.plan(str(path), "databricks")
    body = plan.request("jobs/create").body
    assert jobs.JobSettings.from_dict(body).as_dict() == body
    task = next(t for t in body["tasks"] if t["task_key"] == "score")
    resolved = {**batch, "batch": {**batch["batch"], "model": "dbfs:/unijob/train"}}  # train's output location
    spec = JobSpec.model_validate({**resolved, "targets": data["targets"]}, context={"base_dir": tmp_path})
    direct = registry.get("databricks").plan_batch(spec, "pipeline-digits-pipeline-score").requests[0].body["tasks"][0]
    assert {k: v for k, v in task.items() if k not in ("task_key", "depends_on", "max_retries")} == \
        {k: v for k, v in direct.items() if k != "task_key"}, "the adapter's batch task"
    assert task["depends_on"] == [{"task_key": "evaluate"}, {"task_key": "train"}] and task["max_retries"] == 2
    data["steps"].append({"name": "ship", "deploy": str(ROOT / "examples" / "pipeline" / "endpoint.yaml")})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(SpecError) as e:
        unijob.plan(str(path), "databricks")
    assert e.value.issues[0].loc == ("steps", 4, "deploy") and "serving endpoint" in str(e.value)
