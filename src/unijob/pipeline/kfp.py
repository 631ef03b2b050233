"""A pipeline as a Vertex AI ``PipelineJob``: Kubeflow Pipelines' v2 intermediate representation
(``PipelineSpec``: components, ``deploymentSpec`` executors, a root DAG whose tasks carry
``dependentTasks`` and ``triggerPolicy`` conditions), sent to
``POST /v1/projects/P/locations/L/pipelineJobs``.

Steps (the IR's fields: https://github.com/kubeflow/pipelines/blob/master/api/v2alpha1/pipeline_spec.proto;
the executors are Google Cloud Pipeline Components' launchers, the containers Vertex's own
prebuilt pipeline steps run, image :data:`GCPC_IMAGE`):

- a **job** step is the CustomJob the Vertex adapter plans for that step's spec, run by GCPC's
  CustomJob launcher (``--payload`` = the CustomJob body);
- a **register** step uploads the model as a new version of its Vertex model (GCPC's model
  upload launcher, ``parentModel`` and ``versionAliases``);
- metrics a condition reads come from a small reader task that opens the job's
  ``metrics.json`` through Vertex's Cloud Storage FUSE mount (``/gcs/BUCKET/...``) and writes
  each one as an output parameter;
- ``when`` becomes the task's ``triggerPolicy.condition`` (CEL over ``inputs.parameter_values``),
  and conditions are inherited by the steps that depend on a conditioned step.

- a **register** step's launcher takes the Model as its payload and the registered model as
  ``--parent_model_name`` (``projects/P/locations/L/models/ID``, the id the Vertex registry gives
  that name): the model must have a first version (``unijob models register -t vertex``);
- **batch** and **deploy** steps are GCPC's batch prediction, endpoint-create and deploy-model
  launchers with the bodies the Vertex adapter plans (:mod:`.kfp_serving`): a deploy step is the
  tasks ``STEP-endpoint``, ``STEP-<variant>``... and ``STEP`` (the last variant, with the spec's
  traffic split); a batch step ``STEP-model`` (upload) and ``STEP``.

``steps.S.state`` and a register step's outputs are not compiled (a SpecError naming the step).
"""

from __future__ import annotations

import json
from typing import Any, Optional

from unijob.contract import NativeRequest, Plan, PlanResources, Upload
from unijob.errors import SpecError
from unijob.pipeline import expr, kfp_serving
from unijob.pipeline.spec import step_refs

#: Google Cloud Pipeline Components image whose launchers run CustomJobs and model uploads
#: (google-cloud-pipeline-components 2.17, read 2026-11-29).
GCPC_IMAGE = "gcr.io/ml-pipeline/google-cloud-pipeline-components:2.17.0"
READER_IMAGE = "python:3.11-slim"
SCHEMA_VERSION = "2.1.0"
_TYPES = {bool: "BOOLEAN", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE", str: "STRING"}
_READER = ("import json, os, sys\n"
           "src, out = sys.argv[1], json.loads(sys.argv[2])\n"
           "p = src.replace('gs://', '/gcs/', 1).rstrip('/')\n"
           "m = {}\n"
           "for c in (p + '/metrics.json', p + '/model/metrics.json'):\n"
           "    if os.path.exists(c):\n"
           "        m = json.load(open(c)); break\n"
           "for name, path in out.items():\n"
           "    os.makedirs(os.path.dirname(path), exist_ok=True)\n"
           "    open(path, 'w').write(json.dumps(m[name]))\n")


def _chan(ref: expr.Ref) -> str:
    p = ref.parts
    return f"pipelinechannel--{p[1]}" if p[0] == "params" else f"pipelinechannel--{p[1]}-{p[3]}"


def _cel(tree: Any) -> str:
    """Our condition as the CEL KFP puts in ``triggerPolicy.condition``."""
    if isinstance(tree, expr.Ref):
        return f"inputs.parameter_values['{_chan(tree)}']"
    if isinstance(tree, bool):
        return "true" if tree else "false"
    if tree is None:
        return "null"
    if isinstance(tree, str):
        return json.dumps(tree)
    if isinstance(tree, (int, float)):
        return repr(tree)
    op = tree[0]
    if op == "not":
        return f"!({_cel(tree[1])})"
    if op in ("and", "or"):
        return f"({_cel(tree[1])} {'&&' if op == 'and' else '||'} {_cel(tree[2])})"
    return f"{_cel(tree[1])} {op} {_cel(tree[2])}"


def plan_vertex(pipe: Any) -> Plan:
    """The PipelineJob of a checked pipeline.

    Raises:
        SpecError: a reference Vertex cannot pass (a register step's outputs, a ``state``); the
            Vertex adapter's own SpecErrors for a step's spec (e.g. an autoscaling metric Vertex lacks).
    """
    from unijob import registry
    from unijob.pipeline import steps as S

    adapter = registry.get("vertex")
    spec = pipe.spec
    tasks: dict[str, Any] = {}
    components: dict[str, Any] = {}
    executors: dict[str, Any] = {}
    uploads: list[Upload] = []
    job_outputs: dict[str, dict[str, str]] = {}
    metrics_needed: dict[str, set[str]] = {}
    conditions: dict[str, list[str]] = {}
    cond_inputs: dict[str, dict[str, tuple[Any, Any]]] = {}
    where: Optional[tuple[str, str]] = None
    notes: list[str] = []
    serving_image: Optional[str] = None
    for i, name in enumerate(pipe.order):
        s = pipe.step(name)
        idx = spec.steps.index(s)
        refs = [r for _, r in step_refs(s)]
        for r in refs:
            if r.parts[0] == "steps" and r.parts[2] == "state":
                raise SpecError.at(("steps", idx, "when"), f"step '{name}': {r} has no Vertex Pipelines equivalent")
            if r.parts[0] == "steps" and r.parts[2] == "outputs" and pipe.step(r.parts[1]).kind == "register":
                raise SpecError.at(("steps", idx, "with"), f"step '{name}': {r} is known only when the pipeline runs; "
                                                            "Vertex tasks here pass job, batch and deploy outputs and metrics only")
            if r.parts[0] == "steps" and r.parts[2] == "metrics":
                metrics_needed.setdefault(r.parts[1], set()).add(r.parts[3])
        inputs: dict[str, Any] = {}
        comp_inputs: dict[str, Any] = {}

        def channel(ref: expr.Ref) -> str:
            ch = _chan(ref)
            if ref.parts[0] == "params":
                inputs[ch] = {"componentInputParameter": ref.parts[1]}
                comp_inputs[ch] = {"parameterType": _TYPES[type(spec.parameters[ref.parts[1]])]}
            else:
                inputs[ch] = {"taskOutputParameter": {"producerTask": f"{ref.parts[1]}-metrics",
                                                      "outputParameterKey": ref.parts[3]}}
                comp_inputs[ch] = {"parameterType": "NUMBER_DOUBLE"}
            return ch

        def lookup(ref: expr.Ref) -> Any:
            if ref.parts[0] == "steps" and ref.parts[2] == "outputs":
                return job_outputs[ref.parts[1]][ref.parts[3]]
            return "{{$.inputs.parameters['" + channel(ref) + "']}}"

        deps = list(pipe.deps[name])
        cond = [f"({_cel(expr.parse(s.when))})"] if s.when else []
        used: dict[str, tuple[Any, Any]] = {}  # the channels this task's condition reads
        if s.when:
            for r in expr.refs(expr.parse(s.when)):
                ch = channel(r)
                used[ch] = (inputs[ch], comp_inputs[ch])
        for d in pipe.deps[name]:
            for c in conditions.get(d, []):
                if c not in cond:
                    cond.append(c)
            # a condition inherited from a step before: the task takes the values it reads as its own
            # inputs (KFP evaluates triggerPolicy.condition over the task's inputs.parameter_values)
            for ch, (task_in, comp_in) in cond_inputs.get(d, {}).items():
                inputs.setdefault(ch, task_in)
                comp_inputs.setdefault(ch, comp_in)
                used.setdefault(ch, (task_in, comp_in))
        cond_inputs[name] = used
        if s.kind == "job":
            try:
                job_spec = S.build_spec(s, pipe.base_dir, lookup, "kfp", spec.targets)
                p = adapter.plan(job_spec, f"pipeline-{spec.name}-{name}")
            except SpecError as e:
                first = e.issues[0]
                raise SpecError.at(("steps", idx, "job"), f"step '{name}' on vertex: "
                                   f"{'.'.join(map(str, first.loc)) or 'spec'}: {first.message}") from None
            uploads += p.uploads
            where = where or (p.extra.get("project"), p.extra.get("location"))
            serving_image = serving_image or adapter.options(job_spec).serving_image
            body = p.request("customJobs", when="submit").body
            out = (body.get("jobSpec") or {}).get("baseOutputDirectory", {}).get("outputUriPrefix")
            job_outputs[name] = {"job_id": "{{$.pipeline_job_uuid}}-" + name}
            if out:
                job_outputs[name].update(output=out, model=out.rstrip("/") + "/model")
            payload = json.dumps(body, sort_keys=True)
            executors[f"exec-{name}"] = {"container": {
                "image": GCPC_IMAGE,
                "command": ["python3", "-u", "-m", "google_cloud_pipeline_components.container.v1.custom_job.launcher"],
                "args": ["--type", "CustomJob", "--payload", payload, "--project", str(where[0]), "--location",
                         str(where[1]), "--gcp_resources", "{{$.outputs.parameters['gcp_resources'].output_file}}"]}}
        elif s.kind in ("batch", "deploy"):
            sub, outs, where = _serving(adapter, s, idx, pipe, lookup, where, notes)
            job_outputs[name] = outs
            by_suffix = {t.suffix: t for t in sub}
            for t in sub:
                tname = f"{name}-{t.suffix}" if t.suffix else name
                if tname in tasks or (tname != name and any(x.name == tname for x in spec.steps)):
                    raise SpecError.at(("steps", idx, "name"), f"step '{name}': its task '{tname}' clashes with a step "
                                                               "or task of that name; rename the step")
                comp_in: dict[str, Any] = {"parameters": dict(comp_inputs)} if comp_inputs else {}
                task_in: dict[str, Any] = {"parameters": dict(inputs)} if inputs else {}
                if t.importer:  # as the KFP SDK compiles dsl.importer: input 'uri', output 'artifact'
                    executors[f"exec-{tname}"] = {"importer": t.importer}
                    comp: dict[str, Any] = {"executorLabel": f"exec-{tname}", "outputDefinitions": {"artifacts": {
                        kfp_serving.IMPORTER_OUTPUT: {"artifactType": t.importer["typeSchema"]}}}}
                    comp_in.setdefault("parameters", {})["uri"] = {"parameterType": "STRING"}
                    task_in.setdefault("parameters", {})["uri"] = {"runtimeValue": {"constant": t.payload}}
                else:
                    args = ["--type", t.type, "--payload", json.dumps(t.payload, sort_keys=True), "--project",
                            str(where[0]), "--location", str(where[1]),
                            "--gcp_resources", "{{$.outputs.parameters['gcp_resources'].output_file}}"]
                    if t.executor_input:
                        args += ["--executor_input", "{{$}}"]
                    executors[f"exec-{tname}"] = {"container": {"image": GCPC_IMAGE, "command": [
                        "python3", "-u", "-m", kfp_serving.GCPC + t.module], "args": args}}
                    comp = {"executorLabel": f"exec-{tname}", "outputDefinitions": {
                        "parameters": {"gcp_resources": {"parameterType": "STRING"}}}}
                    if t.outputs:
                        comp["outputDefinitions"]["artifacts"] = {o: {"artifactType": {
                            "schemaTitle": kfp_serving.ARTIFACT_TYPES[o], "schemaVersion": "0.0.1"}} for o in t.outputs}
                for art, producer in t.reads.items():
                    src = f"{name}-{producer}"
                    comp_in.setdefault("artifacts", {})[art] = {"artifactType": {
                        "schemaTitle": kfp_serving.ARTIFACT_TYPES[art], "schemaVersion": "0.0.1"}}
                    key = kfp_serving.IMPORTER_OUTPUT if by_suffix[producer].importer else art
                    task_in.setdefault("artifacts", {})[art] = {"taskOutputArtifact": {
                        "producerTask": src, "outputArtifactKey": key}}
                if comp_in:
                    comp["inputDefinitions"] = comp_in
                components[f"comp-{tname}"] = comp
                sub_deps = [f"{name}-{a}" if a else name for a in [*t.after, *t.reads.values()]]
                task = {"taskInfo": {"name": tname}, "componentRef": {"name": f"comp-{tname}"}}
                all_deps = sorted(set(deps) | _producers(inputs) | set(sub_deps))
                if all_deps:
                    task["dependentTasks"] = all_deps
                if task_in:
                    task["inputs"] = task_in
                if cond:
                    task["triggerPolicy"] = {"condition": " && ".join(cond)}
                if s.retries:
                    task["retryPolicy"] = {"maxRetryCount": s.retries}
                tasks[tname] = task
            if cond:
                conditions[name] = cond
            continue
        else:  # register
            r = s.register_
            model = S.render(r.model, lookup)
            if not str(model).startswith("gs://"):
                raise SpecError.at(("steps", idx, "register", "model"),
                                   f"step '{name}': Vertex registers Cloud Storage artifacts (gs://); got {model!r}")
            proj, loc = where or (None, None)
            if not proj:
                raise SpecError.at(("steps", idx), f"step '{name}': a register step needs a job step before it on Vertex "
                                                   "(its project and location)")
            image = serving_image
            model_body: dict[str, Any] = {"displayName": r.name, "artifactUri": model,
                                          "labels": {"unijob-approval": "approved" if r.approve else "pending"},
                                          "versionAliases": [r.alias] if r.alias else []}
            if image:
                model_body["containerSpec"] = {"imageUri": image}
            # the launcher's payload is the Model; the parent comes as --parent_model_name
            # (model/upload_model/remote_runner.py), named as the Vertex registry names it
            from unijob_adapters.vertex.registry import model_id

            executors[f"exec-{name}"] = {"container": {
                "image": GCPC_IMAGE,
                "command": ["python3", "-u", "-m", "google_cloud_pipeline_components.container.v1.model.upload_model.launcher"],
                "args": ["--type", "UploadModel", "--payload", json.dumps(model_body, sort_keys=True), "--project",
                         str(proj), "--location", str(loc),
                         "--gcp_resources", "{{$.outputs.parameters['gcp_resources'].output_file}}",
                         "--executor_input", "{{$}}",
                         "--parent_model_name", f"projects/{proj}/locations/{loc}/models/{model_id(r.name)}"]}}
        components[f"comp-{name}"] = {"executorLabel": f"exec-{name}",
                                      "outputDefinitions": {"parameters": {"gcp_resources": {"parameterType": "STRING"}}}}
        if comp_inputs:
            components[f"comp-{name}"]["inputDefinitions"] = {"parameters": comp_inputs}
        task: dict[str, Any] = {"taskInfo": {"name": name}, "componentRef": {"name": f"comp-{name}"}}
        all_deps = sorted(set(deps) | _producers(inputs))
        if all_deps:
            task["dependentTasks"] = all_deps
        if inputs:
            task["inputs"] = {"parameters": inputs}
        if cond:
            task["triggerPolicy"] = {"condition": " && ".join(cond)}
            conditions[name] = cond
        if s.retries:
            task["retryPolicy"] = {"maxRetryCount": s.retries}
        tasks[name] = task
    for producer, names in metrics_needed.items():
        out_root = job_outputs.get(producer, {}).get("output")
        if not out_root:
            i = spec.steps.index(pipe.step(producer))
            raise SpecError.at(("steps", i, "job"), f"step '{producer}': its metrics are read from its output directory; "
                                                   "give its job spec an output (gs://...)")
        outs = {n: "{{$.outputs.parameters['" + n + "'].output_file}}" for n in sorted(names)}
        executors[f"exec-{producer}-metrics"] = {"container": {
            "image": READER_IMAGE, "command": ["python3", "-c", _READER], "args": [out_root, json.dumps(outs)]}}
        components[f"comp-{producer}-metrics"] = {
            "executorLabel": f"exec-{producer}-metrics",
            "outputDefinitions": {"parameters": {n: {"parameterType": "NUMBER_DOUBLE"} for n in sorted(names)}}}
        tasks[f"{producer}-metrics"] = {"taskInfo": {"name": f"{producer}-metrics"},
                                        "componentRef": {"name": f"comp-{producer}-metrics"}, "dependentTasks": [producer]}
        if producer in conditions:
            t = tasks[f"{producer}-metrics"]
            t["triggerPolicy"] = {"condition": " && ".join(conditions[producer])}
            used = cond_inputs.get(producer, {})
            if used:
                t["inputs"] = {"parameters": {ch: ti for ch, (ti, _) in used.items()}}
                components[f"comp-{producer}-metrics"]["inputDefinitions"] = {
                    "parameters": {ch: ci for ch, (_, ci) in used.items()}}
                t["dependentTasks"] = sorted({producer} | _producers(t["inputs"]["parameters"]))
    root: dict[str, Any] = {"dag": {"tasks": tasks}}
    if spec.parameters:
        root["inputDefinitions"] = {"parameters": {k: {"parameterType": _TYPES[type(v)]} for k, v in spec.parameters.items()}}
    ir = {"pipelineInfo": {"name": spec.name}, "schemaVersion": SCHEMA_VERSION, "sdkVersion": "unijob-0.1.0",
          "root": root, "components": components, "deploymentSpec": {"executors": executors}}
    proj, loc = where or ("", "")
    job = {"displayName": spec.name, "pipelineSpec": ir,
           "runtimeConfig": {"parameterValues": dict(spec.parameters)}, "labels": {"unijob-pipeline": spec.name}}
    if spec.schedule:
        notes.append(f"schedule {spec.schedule}: create a Vertex schedule (POST .../schedules with createPipelineJobRequest)")
    return Plan(target="vertex", kind="pipeline", name=spec.name, submission_id="pipeline",
                requests=[NativeRequest(api=f"POST /v1/projects/{proj}/locations/{loc}/pipelineJobs", body=job,
                                        note=f"{len(tasks)} tasks")],
                uploads=uploads, resources=PlanResources(service="vertex-pipelines", region=loc or None),
                notes=notes, extra={"project": proj, "location": loc})


def _producers(inputs: dict[str, Any]) -> set[str]:
    """The tasks whose output parameters ``inputs`` take (each must be a dependent task)."""
    return {v["taskOutputParameter"]["producerTask"] for v in inputs.values() if "taskOutputParameter" in v}


def _serving(adapter: Any, s: Any, idx: int, pipe: Any, lookup: Any, where: Optional[tuple[str, str]],
             notes: list[str]) -> tuple[list[Any], dict[str, str], tuple[str, str]]:
    """The launcher tasks of a batch or deploy step (:mod:`unijob.pipeline.kfp_serving`)."""
    from unijob.pipeline import steps as S

    try:
        job_spec = S.build_spec(s, pipe.base_dir, lookup, "kfp", pipe.spec.targets)
        if s.kind == "batch":
            sub, outs, here = kfp_serving.batch_tasks(adapter, job_spec, f"pipeline-{pipe.spec.name}-{s.name}")
        else:
            sub, outs, more = kfp_serving.deploy_tasks(adapter, job_spec)
            notes.extend(f"step {s.name}: {n}" for n in more)
            from unijob_adapters.vertex.plan import resolve_where

            here = resolve_where(adapter.options(job_spec))
    except SpecError as e:
        first = e.issues[0]
        raise SpecError.at(("steps", idx, s.kind), f"step '{s.name}' on vertex: "
                           f"{'.'.join(map(str, first.loc)) or 'spec'}: {first.message}") from None
    return sub, outs, tuple(where or here)  # type: ignore[return-value]


def check_ir(ir: dict[str, Any]) -> Any:
    """Parse ``ir`` into ``kfp-pipeline-spec``'s ``PipelineSpec`` proto (unknown fields refused).

    Raises:
        NotReady: kfp-pipeline-spec is not installed. google.protobuf's ParseError: not a PipelineSpec.
    """
    try:
        from google.protobuf import json_format
        from kfp.pipeline_spec import pipeline_spec_pb2
    except ImportError:
        from unijob.errors import NotReady

        raise NotReady("kfp-pipeline-spec is not installed", hint="pip install kfp-pipeline-spec") from None
    return json_format.ParseDict(ir, pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
