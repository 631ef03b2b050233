"""`unijob plan PIPELINE -t kubernetes`: an Argo Workflow, checked against the Workflow CRD's
openAPIV3Schema (strict; tests/schemas/SOURCES.md), Argo's own graph rules (validate.go), and the
manifests it creates with kubernetes-validate (strict) and the Gateway API CRD. Its script tasks run
here: register/resolve against a real MLflow server, the metrics reader against a fake API server
speaking the pod list and pod log REST paths."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import unijob
from unijob.errors import SpecError

pytest.importorskip("unijob_adapters.kubernetes")
ROOT = Path(__file__).resolve().parents[1]
ORIG_PIPE = ROOT / "tests" / "data" / "kubernetes_pipeline.yaml"
PIPE = ORIG_PIPE  # the copy _examples_after_a_local_run makes, while this module's tests run
SCHEMAS = ROOT / "tests" / "schemas"
K8S_SCHEMAS = ROOT / "adapters" / "kubernetes" / "tests" / "schemas"
TASKS = ROOT / "src" / "unijob" / "pipeline" / "argo_tasks.py"
WF_NAME = "digits-pipeline-x7k2p"
#: an inline batch step spec (the quickstart's handler over JSON Lines in an object store)
BATCH = {"name": "score", "batch": {"model": "s3://demo-out/train", "handler": str(ROOT / "examples" / "quickstart" / "serve.py") + ":Digits",
                                    "input": "s3://demo-in/rows.jsonl", "output": "s3://demo-out/scores"}}
#: Argo's name rules (workflow/validate/validate.go: workflowFieldNameFmt, paramOrArtifactNameRegex)
FIELD_NAME = re.compile(r"^[a-zA-Z0-9][-a-zA-Z0-9]*$")
PARAM_NAME = re.compile(r"^[-a-zA-Z0-9_]+$")


from unijob.testing.vendor import strict_crd_schema as _strict  # noqa: E402


def _crd(path: Path) -> dict[str, Any]:
    return _strict(yaml.safe_load(path.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def _validate_crd(doc: dict[str, Any], path: Path) -> None:
    import jsonschema

    jsonschema.validate(doc, _crd(path))


@pytest.fixture(scope="module", autouse=True)
def _examples_after_a_local_run(tmp_path_factory):
    """The pipeline and the examples it names, with what a local run of the quickstart leaves in it
    (a newcomer's `dev.py quickstart`: output/ and checkpoints/, 6 MiB here, whatever the checkout
    holds). The train step's `with` moves output and checkpoint.uri off this machine, yet job.yaml's
    own ./output and ./checkpoints stay out of the 1 MiB ConfigMap its code travels in
    (unijob.bundle.local_outputs); were they packed, every plan here would fail."""
    from unijob.testing.jobs import local_run_leftovers

    global PIPE
    root = tmp_path_factory.mktemp("repo")
    for example in ("quickstart", "pipeline"):
        shutil.copytree(ROOT / "examples" / example, root / "examples" / example,
                        ignore=shutil.ignore_patterns("output", "checkpoints", "__pycache__"))
    local_run_leftovers(root / "examples" / "quickstart")
    (root / "tests" / "data").mkdir(parents=True)
    PIPE = Path(shutil.copy(ORIG_PIPE, root / "tests" / "data" / ORIG_PIPE.name))
    yield
    PIPE = ORIG_PIPE


def _plan(path: Path | None = None):
    return unijob.plan(str(path or PIPE), "kubernetes")


def _argo_lint(wf_spec: dict[str, Any]) -> None:
    """The graph rules Argo's validator checks and the CRD schema cannot: names, template references,
    ``depends`` over sibling tasks, declared inputs, outputs read from the tasks that produce them."""
    templates = {t["name"]: t for t in wf_spec["templates"]}
    assert len(templates) == len(wf_spec["templates"]), "template names are unique"
    assert wf_spec["entrypoint"] in templates
    for t in templates.values():
        assert FIELD_NAME.match(t["name"]) and len(t["name"]) <= 128, t["name"]
        declared = {p["name"] for p in t.get("inputs", {}).get("parameters", [])}
        assert all(PARAM_NAME.match(p) for p in declared)
        used = set(re.findall(r"\{\{inputs\.parameters\.([-a-zA-Z0-9_]+)\}\}", json.dumps(t)))
        assert used <= declared, (t["name"], used - declared)
        if "dag" not in t:
            continue
        tasks = {x["name"]: x for x in t["dag"]["tasks"]}
        for x in tasks.values():
            assert FIELD_NAME.match(x["name"]) and x["template"] in templates, x
            for dep in re.findall(r"([-a-zA-Z0-9]+)\.Succeeded", x.get("depends", "")):
                assert dep in tasks, (x["name"], dep)
            callee = templates[x["template"]]
            need = {p["name"] for p in callee.get("inputs", {}).get("parameters", []) if "value" not in p}
            given = {p["name"] for p in x.get("arguments", {}).get("parameters", [])}
            assert need == given, (x["name"], need, given)
        for producer, out in re.findall(r"\{\{tasks\.([-a-zA-Z0-9]+)\.outputs\.parameters\.([-a-zA-Z0-9_]+)\}\}", json.dumps(t)):
            assert producer in tasks, (t["name"], producer)
            outs = {p["name"] for p in templates[tasks[producer]["template"]].get("outputs", {}).get("parameters", [])}
            assert out in outs, (t["name"], producer, out)


def _substitute(text: str, values: dict[str, str]) -> str:
    def one(m: re.Match) -> str:
        assert m.group(1) in values, f"unexpected tag {{{{{m.group(1)}}}}}"
        return values[m.group(1)]

    return re.sub(r"\{\{([^{}]+)\}\}", one, text)


def test_kubernetes_pipeline_is_an_argo_workflow_the_crd_and_argo_accept():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    plan = _plan()
    req = plan.requests[0]
    assert req.api == "argoproj.io/v1alpha1 Workflow"
    wf = req.body
    _validate_crd(wf, SCHEMAS / "argoproj.io_workflows.excerpt.yaml")
    _argo_lint(wf["spec"])
    assert wf["metadata"] == {"generateName": "digits-pipeline-", "namespace": "ml",
                              "labels": {"unijob.dev/pipeline": "digits-pipeline", "app.kubernetes.io/managed-by": "unijob"}}
    main = {t["name"]: t for t in next(t for t in wf["spec"]["templates"] if t["name"] == "main")["dag"]["tasks"]}
    assert list(main) == ["train", "evaluate", "register", "deploy"]
    assert main["register"]["when"] == ("{{tasks.evaluate.outputs.parameters.accuracy}} >= "
                                        "{{workflow.parameters.min_accuracy}}")
    assert main["deploy"]["depends"] == "register.Succeeded"  # a skipped register leaves deploy omitted
    # every manifest the Workflow creates or applies is a valid object once Argo fills in the tags
    values = {"workflow.name": WF_NAME, **{f"workflow.parameters.{k}": str(v) for k, v in
                                          {"epochs": 20, "min_accuracy": 0.95, "label_noise": 0.0}.items()},
              "inputs.parameters.model-champion": "s3://demo-out/v1", "inputs.parameters.model-candidate": "s3://demo-out/train"}
    kinds = []
    for t in wf["spec"]["templates"]:
        if "resource" not in t:
            continue
        doc = json.loads(_substitute(t["resource"]["manifest"], values))
        kinds.append(doc["kind"])
        if doc["kind"] == "HTTPRoute":
            _validate_crd(doc, K8S_SCHEMAS / "gateway.networking.k8s.io_httproutes.excerpt.yaml")
            assert [b["weight"] for b in doc["spec"]["rules"][0]["backendRefs"]] == [90, 10], "the traffic split"
        else:
            kubernetes_validate.validate(doc, "1.33.0", strict=True)
    assert kinds == ["ConfigMap", "Service", "Job"] * 2 + ["Deployment", "Service", "HorizontalPodAutoscaler"] * 2 + [
        "HTTPRoute"], kinds


def test_a_job_step_creates_exactly_what_unijob_submit_creates():
    """The train step's Job is the Kubernetes adapter's plan of the same spec, names aside (and the
    step's retries added to backoffLimit)."""
    from unijob import registry
    from unijob.pipeline import steps as S
    from unijob.pipeline.loading import load_pipeline

    wf = _plan().requests[0].body
    templates = {t["name"]: t for t in wf["spec"]["templates"]}
    pipe = load_pipeline(PIPE)
    lookup = lambda ref: "{{workflow.parameters.%s}}" % ref.parts[1]  # noqa: E731
    spec = S.build_spec(pipe.step("train"), pipe.base_dir, lookup, "argo", pipe.spec.targets)
    direct = registry.get("kubernetes").plan(spec, "pipeline-digits-pipeline-train")
    for leaf, api in (("configmap", "v1 ConfigMap"), ("service", "v1 Service"), ("job", "batch/v1 Job")):
        compiled = json.loads(templates[f"{leaf}-train"]["resource"]["manifest"].replace("{{workflow.name}}-train", direct.name))
        expected = direct.request(api).body
        if leaf == "configmap":  # text files travel base64-encoded, out of reach of Argo's {{...}} substitution
            text = {k: base64.b64encode(v.encode()).decode() for k, v in expected.pop("data").items()}
            expected["binaryData"] = {**text, **expected["binaryData"]}
        assert compiled == expected, leaf
    job = json.loads(templates["job-train"]["resource"]["manifest"])
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["command"][:2] == ["sh", "-c"] and "pip" in c["command"][2], "the runtime wheel is installed first"
    assert {"name": "UNIJOB_OUTPUT_URI", "value": "s3://demo-out/train"} in c["env"]
    assert '"epochs":"{{workflow.parameters.epochs}}"' in next(e["value"] for e in c["env"] if e["name"] == "UNIJOB_HYPERPARAMETERS")
    assert templates["job-train"]["resource"]["successCondition"] == "status.succeeded > 0"
    assert templates["job-train"]["resource"]["failureCondition"].startswith(f"status.failed > {job['spec']['backoffLimit']}, ")
    ev = {t["name"]: t for t in templates["step-evaluate"]["dag"]["tasks"]}
    assert ev["metrics"]["depends"] == "job.Succeeded"
    ev_job = json.loads(templates["job-evaluate"]["resource"]["manifest"])
    channels = next(e["value"] for e in ev_job["spec"]["template"]["spec"]["containers"][0]["env"]
                    if e["name"] == "UNIJOB_CHANNELS")
    assert json.loads(channels) == {"model": "s3://demo-out/train"}, "evaluate reads what train writes"


#: k8s.io/apimachinery/pkg/util/validation: IsQualifiedName (a label key without prefix) and IsValidLabelValue
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
REQUIREMENT = re.compile(r"^\s*(?P<key>[^\s=!<>(),]+)\s*(?:(?P<op>==|=|!=|>|<)\s*(?P<value>[^\s=!<>(),]+)|"
                         r"\s(?P<set>in|notin)\s*\((?P<values>[^()]*)\))\s*$")


def _requirements(selector: str) -> list[tuple[str, str, list[str]]]:
    """``labels.Parse`` (k8s.io/apimachinery/pkg/labels/selector.go) for the operators the compiler
    writes, with the checks NewRequirement makes: a qualified-name key, label values, an integer
    after ``>``/``<``. Anything else is an AssertionError, as the real parser's error would fail the step."""
    out = []
    for part in re.split(r",(?![^(]*\))", selector):
        m = REQUIREMENT.match(part)
        assert m, f"labels.Parse cannot read {part!r}"
        key, op = m["key"], m["op"] or m["set"]
        values = [v.strip() for v in m["values"].split(",")] if m["set"] else [m["value"]]
        assert len(key) <= 63 and QUALIFIED_NAME.match(key), f"{key!r} is not a qualified name"
        assert all(len(v) <= 63 and LABEL_VALUE.match(v) for v in values), values
        if op in (">", "<"):
            assert re.fullmatch(r"-?\d+", values[0]), f"{op} needs an integer: {values[0]!r}"
        out.append((key, op, values))
    return out


def _gjson(obj: Any, path: str) -> str | None:
    """GJSON's lookup of a plain dotted path (a number indexes an array); None where it does not exist."""
    for part in path.split("."):
        if isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        elif isinstance(obj, dict) and part in obj:
            obj = obj[part]
        else:
            return None
    return json.dumps(obj) if isinstance(obj, (dict, list)) else str(obj)


def _matches(req: tuple[str, str, list[str]], obj: dict[str, Any]) -> bool:
    """labels.Requirement.Matches over argoexec's gjsonLabels."""
    key, op, values = req
    got = _gjson(obj, key)
    if op in ("!=", "notin"):
        return got is None or got not in values
    if got is None:
        return False
    if op in (">", "<"):
        if not re.fullmatch(r"-?\d+", got):
            return False
        return int(got) > int(values[0]) if op == ">" else int(got) < int(values[0])
    return got in values


def _argo_outcome(resource: dict[str, str], obj: dict[str, Any]) -> str:
    """What argoexec's WaitResource concludes from one poll of ``obj`` (workflow/executor/resource.go,
    matchConditions): failed when ANY failure requirement matches, succeeded when ALL success ones do."""
    if any(_matches(r, obj) for r in _requirements(resource.get("failureCondition", ""))):
        return "failed"
    if all(_matches(r, obj) for r in _requirements(resource["successCondition"])):
        return "succeeded"
    return "waiting"


def _cond(type_: str, status: str = "True", reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastProbeTime": "2026-11-30T00:05:00Z", "lastTransitionTime": "2026-11-30T00:05:00Z"}


FAILJOB = ("Container trainer for pod ml/x-0-abcde failed with exit code 3 matching FailJob rule at index 1")


@pytest.mark.parametrize("status, outcome", [
    # a batch over its error budget: podFailurePolicy FailJob with one failed pod, far below backoffLimit.
    # Kubernetes >= 1.31 sets FailureTarget at once and Failed when the other pods have terminated
    ({"failed": 1, "active": 1, "conditions": [_cond("FailureTarget", reason="PodFailurePolicy", message=FAILJOB)]}, "failed"),
    ({"failed": 2, "conditions": [_cond("FailureTarget", reason="PodFailurePolicy", message=FAILJOB),
                                  _cond("Failed", reason="PodFailurePolicy", message=FAILJOB)]}, "failed"),
    # admitted by Kueue (Suspended False stays first), then the Job's activeDeadlineSeconds ran out
    ({"failed": 0, "conditions": [_cond("Suspended", "False", "JobResumed"),
                                  _cond("FailureTarget", reason="DeadlineExceeded"), _cond("Failed", reason="DeadlineExceeded")]},
     "failed"),
    ({"failed": 1, "conditions": [_cond("Failed", reason="PodFailurePolicy")]}, "failed"),  # before 1.31: Failed only
    ({"failed": 99}, "failed"),  # past backoffLimit, conditions not yet written
    ({"failed": 1, "active": 2}, "waiting"),  # one pod failed and is being replaced
    ({"active": 2, "conditions": [_cond("Suspended", "False", "JobResumed")]}, "waiting"),
    ({}, "waiting"),  # just created
    ({"succeeded": "COMPLETIONS", "conditions": [_cond("SuccessCriteriaMet", reason="CompletionsReached"),
                                                 _cond("Complete", reason="CompletionsReached")]}, "succeeded"),
])
def test_a_failed_job_fails_its_step_at_once(tmp_path, status, outcome):
    """The Job template's conditions as argoexec evaluates them while it polls the Job: a Job that
    fails by any route (podFailurePolicy, deadline, backoff) fails the step on the next poll instead
    of at the template's activeDeadlineSeconds (max_run + 10 min)."""
    from unijob.pipeline.argo import JOB_CONDITION_TYPES

    batch = {**BATCH, "batch": {**BATCH["batch"], "replicas": 3, "max_error_fraction": 0.1}}
    wf = _plan(_variant(tmp_path, lambda d: d["steps"].append({"name": "score", "depends_on": ["register"], "batch": batch}))).requests[0].body
    _validate_crd(wf, SCHEMAS / "argoproj.io_workflows.excerpt.yaml")
    t = next(x for x in wf["spec"]["templates"] if x["name"] == "job-score")
    job = json.loads(t["resource"]["manifest"])
    assert job["spec"]["podFailurePolicy"]["rules"] and job["spec"]["backoffLimit"] < 99
    if status.get("succeeded") == "COMPLETIONS":
        status = {**status, "succeeded": job["spec"]["completions"]}
    assert _argo_outcome(t["resource"], {**job, "status": status}) == outcome
    if outcome == "failed" and status.get("failed", 0) <= job["spec"]["backoffLimit"]:
        old = {"successCondition": t["resource"]["successCondition"],
               "failureCondition": f"status.failed > {job['spec']['backoffLimit']}"}
        assert _argo_outcome(old, {**job, "status": status}) == "waiting", "what the step did before"
    # every position a condition can hold is covered: one condition per type
    assert len(_requirements(t["resource"]["failureCondition"])) == 1 + len(JOB_CONDITION_TYPES)


def test_a_failed_jobset_fails_its_step_at_once(tmp_path):
    path = _variant(tmp_path, lambda d: d["targets"]["kubernetes"].update(api="jobset"))
    wf = _plan(path).requests[0].body
    _validate_crd(wf, SCHEMAS / "argoproj.io_workflows.excerpt.yaml")
    _argo_lint(wf["spec"])
    t = next(x for x in wf["spec"]["templates"] if x["name"] == "job-train")
    js = json.loads(t["resource"]["manifest"])
    assert js["kind"] == "JobSet"
    _validate_crd(json.loads(_substitute(t["resource"]["manifest"], {"workflow.name": WF_NAME, "workflow.parameters.epochs": "20"})),
                  K8S_SCHEMAS / "jobset.x-k8s.io_jobsets.excerpt.yaml")
    restarting = _cond("RestartingJobSet", "False", "JobSetFailed")
    failed = _cond("Failed", reason="FailedJobs", message="jobset failed due to one or more job failures")
    for status, outcome in [
        ({"terminalState": "Failed", "conditions": [restarting, failed]}, "failed"),  # JobSet >= 0.6
        ({"conditions": [_cond("StartupPolicyCompleted"), failed]}, "failed"),  # older: the condition only
        ({"restarts": 1, "conditions": [_cond("Suspended", "False", "ResumeJobs")]}, "waiting"),
        ({"terminalState": "Completed", "conditions": [_cond("Completed", reason="AllJobsCompleted")]}, "succeeded"),
    ]:
        assert _argo_outcome(t["resource"], {**js, "status": status}) == outcome, status


def _env(template: dict[str, Any], values: dict[str, str]) -> dict[str, str]:
    return {e["name"]: _substitute(e["value"], values) for e in template["script"]["env"]}


def _run_task(template: dict[str, Any], values: dict[str, str], tmp_path: Path, **extra: str) -> subprocess.CompletedProcess:
    assert template["script"]["source"] == TASKS.read_text()
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = tmp_path / "task.py"
    src.write_text(template["script"]["source"])
    env = {"PATH": os.environ["PATH"], **_env(template, values), "UNIJOB_OUTPUTS": str(tmp_path / "out"), **extra}
    return subprocess.run([sys.executable, "-I", str(src)], env=env, capture_output=True, text=True, timeout=120)


def test_register_and_resolve_tasks_against_a_real_mlflow_server(mlflow_server, tmp_path):
    from unijob.models.mlflow_rest import MlflowRegistry

    wf = _plan().requests[0].body
    templates = {t["name"]: t for t in wf["spec"]["templates"]}
    reg = templates["step-register"]
    # the champion first (what `unijob models register ... --alias champion` did once)
    champ = _run_task(reg, {"inputs.parameters.evaluate-accuracy": "0.91"}, tmp_path / "c",
                      MLFLOW_TRACKING_URI=mlflow_server, UNIJOB_ALIAS="champion", UNIJOB_MODEL_SOURCE="s3://demo-out/v1")
    assert champ.returncode == 0, champ.stderr
    out = _run_task(reg, {"inputs.parameters.evaluate-accuracy": "0.97"}, tmp_path / "r", MLFLOW_TRACKING_URI=mlflow_server)
    assert out.returncode == 0, out.stderr
    version = (tmp_path / "r" / "out" / "version").read_text()
    assert (tmp_path / "r" / "out" / "uri").read_text() == f"models:/digits/{version}"
    mv = MlflowRegistry(mlflow_server, target="kubernetes").by_alias("digits", "candidate")
    assert (mv.version, mv.source, mv.status, mv.metadata) == (version, "s3://demo-out/train", "Approved", {"accuracy": "0.97"})
    res = _run_task(templates["resolve-deploy"], {}, tmp_path / "d", MLFLOW_TRACKING_URI=mlflow_server)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "d" / "out" / "model-candidate").read_text() == "s3://demo-out/train"
    assert (tmp_path / "d" / "out" / "model-champion").read_text() == "s3://demo-out/v1"
    by_version = _run_task(templates["resolve-deploy"], {}, tmp_path / "v", MLFLOW_TRACKING_URI=mlflow_server,
                           UNIJOB_MODELS=json.dumps({"model-x": f"models:/digits/{version}"}))
    assert by_version.returncode == 0 and (tmp_path / "v" / "out" / "model-x").read_text() == "s3://demo-out/train"
    # a registry without the alias fails the task with MLflow's own message
    bad = _run_task(templates["resolve-deploy"], {}, tmp_path / "e", MLFLOW_TRACKING_URI=mlflow_server,
                    UNIJOB_MODELS=json.dumps({"model-x": "models:/digits@nope"}))
    assert bad.returncode != 0 and "registered-models/alias" in bad.stderr


def test_metrics_task_reads_rank_0_log_through_the_api(tmp_path):
    from unijob.testing.httpfake import FakeServer, Response

    wf = _plan().requests[0].body
    t = next(x for x in wf["spec"]["templates"] if x["name"] == "metrics-evaluate")
    env = _env(t, {"workflow.name": WF_NAME})
    seen: list[str] = []

    def pods(req):
        seen.append(req.arg("labelSelector"))
        return Response(body={"items": [
            {"metadata": {"name": "p-retried", "creationTimestamp": "2026-11-30T00:01:00Z"}, "status": {"phase": "Failed"}},
            {"metadata": {"name": "p-ok", "creationTimestamp": "2026-11-30T00:00:00Z"}, "status": {"phase": "Succeeded"}}]})

    logs = {"p-ok": "epoch 1\n[unijob.metrics] {\"accuracy\": 0.972}\n[unijob.metrics] {\"loss\": 0.1}\n",
            "p-retried": "[unijob.metrics] {\"accuracy\": 0.1}\n"}
    with FakeServer() as fake:
        fake.route("GET", r"/api/v1/namespaces/ml/pods", pods)
        fake.route("GET", r"/api/v1/namespaces/ml/pods/(?P<pod>[^/]+)/log",
                   lambda req: Response(body=logs[req.params["pod"]]) if req.arg("container") == "trainer" else Response(404))
        out = _run_task(t, {"workflow.name": WF_NAME}, tmp_path, UNIJOB_K8S_API=fake.url)
    assert out.returncode == 0, out.stderr
    assert seen == [f"batch.kubernetes.io/job-name={WF_NAME}-evaluate,batch.kubernetes.io/job-completion-index=0"]
    assert env["UNIJOB_METRICS"] == '["accuracy"]'
    assert (tmp_path / "out" / "accuracy").read_text() == "0.972", "the succeeded pod's value"


def _variant(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(PIPE.read_text())
    for step in data["steps"]:
        for k in ("job", "deploy"):
            if isinstance(step.get(k), str):
                step[k] = str((PIPE.parent / step[k]).resolve())
    edit(data)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_batch_step_creates_the_adapters_batch_job(tmp_path):
    from unijob import registry
    from unijob.spec import JobSpec

    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    path = _variant(tmp_path, lambda d: d["steps"].append({"name": "score", "depends_on": ["register"], "batch": BATCH}))
    wf = _plan(path).requests[0].body
    _validate_crd(wf, SCHEMAS / "argoproj.io_workflows.excerpt.yaml")
    _argo_lint(wf["spec"])
    templates = {t["name"]: t for t in wf["spec"]["templates"]}
    assert [x["name"] for x in templates["step-score"]["dag"]["tasks"]] == ["configmap", "job"]
    job = json.loads(templates["job-score"]["resource"]["manifest"])
    kubernetes_validate.validate(json.loads(_substitute(json.dumps(job), {"workflow.name": WF_NAME})), "1.33.0", strict=True)
    spec = JobSpec.model_validate({**BATCH, "targets": yaml.safe_load(PIPE.read_text())["targets"]}, context={"base_dir": tmp_path})
    direct = registry.get("kubernetes").plan_batch(spec, "pipeline-digits-pipeline-score")
    assert job == json.loads(json.dumps(direct.request("batch/v1 Job").body).replace(direct.name, "{{workflow.name}}-score"))
    assert templates["job-score"]["resource"]["successCondition"] == f"status.succeeded > {job['spec']['completions'] - 1}"


def test_a_variant_serving_the_version_registered_in_the_run(tmp_path):
    variants = [{"name": "champion", "weight": 90, "model": "models:/digits@champion"},
                {"name": "candidate", "weight": 10, "model": "{{ steps.register.outputs.uri }}"}]
    path = _variant(tmp_path, lambda d: d["steps"][3].update({"with": {"endpoint": {"variants": variants}}}))
    wf = _plan(path).requests[0].body
    _argo_lint(wf["spec"])
    templates = {t["name"]: t for t in wf["spec"]["templates"]}
    main = {t["name"]: t for t in templates["main"]["dag"]["tasks"]}
    assert main["deploy"]["arguments"]["parameters"] == [{"name": "register-uri",
                                                         "value": "{{tasks.register.outputs.parameters.uri}}"}]
    models = json.loads(next(e["value"] for e in templates["resolve-deploy"]["script"]["env"] if e["name"] == "UNIJOB_MODELS"))
    assert models == {"model-champion": "models:/digits@champion", "model-candidate": "{{inputs.parameters.register-uri}}"}


def test_conditions_translate_to_govaluate(tmp_path):
    def edit(d):
        d["parameters"]["mode"] = "fast"
        d["steps"][2]["when"] = ("not (steps.evaluate.metrics.accuracy < params.min_accuracy) and "
                                 "(params.mode == 'fast' or params.epochs > 10)")
        d["schedule"] = "0 3 * * 1"

    body = _plan(_variant(tmp_path, edit)).requests[0].body
    assert body["kind"] == "CronWorkflow" and body["spec"]["schedules"] == ["0 3 * * 1"]
    assert len(body["metadata"]["name"]) + len("-1764460800") <= 24, "room for Argo's -<unix time> and the step name"
    _validate_crd(body, SCHEMAS / "argoproj.io_cronworkflows.excerpt.yaml")
    _validate_crd({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "x"},
                   "spec": body["spec"]["workflowSpec"]}, SCHEMAS / "argoproj.io_workflows.excerpt.yaml")
    main = body["spec"]["workflowSpec"]["templates"][0]["dag"]["tasks"]
    assert main[2]["when"] == ("(!({{tasks.evaluate.outputs.parameters.accuracy}} < {{workflow.parameters.min_accuracy}}) && "
                               "('{{workflow.parameters.mode}}' == 'fast' || {{workflow.parameters.epochs}} > 10))")


@pytest.mark.parametrize("edit, loc, words", [
    (lambda d: d["steps"][2].update(when="steps.evaluate.state == 'SUCCEEDED'"), ("steps", 2, "when"), "state"),
    (lambda d: d["steps"][2].update(when="steps.evaluate.metrics.accuracy != null"), ("steps", 2, "when"), "null"),
    (lambda d: d["targets"]["kubernetes"].pop("registry_uri"), ("steps", 2, "register"), "registry_uri"),
    (lambda d: d["steps"][0]["with"].update(output="pvc://models/train"), ("steps", 2, "register", "model"), "object-store"),
])
def test_what_argo_cannot_run_is_a_spec_error_naming_the_step(tmp_path, edit, loc, words):
    path = _variant(tmp_path, edit)
    with pytest.raises(SpecError) as e:
        _plan(path)
    assert e.value.issues[0].loc == loc and words in str(e.value), str(e.value)
