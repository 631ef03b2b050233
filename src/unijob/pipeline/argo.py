"""A pipeline as one Argo Workflow (``argoproj.io/v1alpha1``; a ``CronWorkflow`` when it has a
schedule) for the kubernetes target: ``kubectl create -f`` / ``argo submit`` it in the namespace.

Why Argo rather than KFP's IR on a self-managed Kubeflow Pipelines: the kubernetes target's users
run their own cluster with Kueue, Volcano or JobSet, where Argo Workflows is one controller to
install (and KFP 2.x's own backend runs on it, so a cluster with KFP has Argo too); and an Argo
``resource`` template creates the very objects the Kubernetes adapter plans, so a job step runs its
Indexed Job/JobSet gang exactly as ``unijob submit -t kubernetes`` runs it, where a KFP task is one
container. Fields: https://argo-workflows.readthedocs.io/en/latest/fields/ (v3.7/v4, read
2026-11-29); checked in the tests against the Workflow CRD's ``openAPIV3Schema``.

Steps (each step is one task of the DAG template ``main``, running a template ``step-<name>``):

- **job**: a DAG of ``resource`` templates that ``create`` the adapter's plan for the step's spec
  (ConfigMap with the source and runtime wheel, headless Service, Volcano PodGroup, the Job or
  JobSet), each owned by the Workflow (``setOwnerReference``), object names
  ``{{workflow.name}}-<step>``. The Job template succeeds at ``status.succeeded > nodes-1`` and fails
  as soon as the Job fails, for any reason (:func:`_job_conditions`); ``retries:`` raise the Job's
  ``backoffLimit`` (a JobSet's ``maxRestarts``): creating the same Job again is not possible.
- **batch**: likewise, the adapter's batch plan (an Indexed Job of shards over the input files); a
  batch over its error budget (``podFailurePolicy`` ``FailJob``) fails the step at once.
- **metrics** a later step reads (``steps.S.metrics.M``): a ``script`` task
  (:mod:`unijob.pipeline.argo_tasks`) reads the ``[unijob.metrics]`` lines that
  ``runtime.log_metrics`` prints in rank 0's pod log and outputs each as a parameter.
- **register**: a ``script`` task calling the MLflow REST API of ``targets.kubernetes.registry_uri``
  (the kubernetes target's model registry), as ``unijob models register -t kubernetes`` does.
- **deploy**: the adapter's endpoint plan (Deployments, Services, HPAs, the HTTPRoute carrying the
  traffic split) as ``apply`` resource templates, not owned by the Workflow (the endpoint outlives
  it); ``models:/NAME@ALIAS`` variants are resolved on the MLflow server first by a script task.
- ``when`` is Argo's govaluate expression over ``{{workflow.parameters.P}}`` and the metric tasks'
  outputs; ``depends: "X.Succeeded"`` makes a step whose dependency was skipped omitted.

``steps.S.state`` and ``null`` in conditions are refused (SpecError naming the step).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

from unijob.contract import NativeRequest, Plan, PlanResources, Upload
from unijob.errors import SpecError
from unijob.pipeline import expr
from unijob.pipeline.spec import step_refs

API = "argoproj.io/v1alpha1"
#: The image of the script tasks (standard library only).
TASK_IMAGE = "python:3.12-slim"
OUT_DIR = "/tmp/outputs"
#: Seconds the Job's resource template waits past the Job's own activeDeadlineSeconds.
DEADLINE_SLACK = 600
#: batch/v1 ``JobConditionType`` values (k8s.io/api/batch/v1/types.go); a Job has one condition per type.
JOB_CONDITION_TYPES = ("Suspended", "FailureTarget", "SuccessCriteriaMet", "Complete", "Failed")
#: ``JobSetConditionType`` values (kubernetes-sigs/jobset api/jobset/v1alpha2/jobset_types.go at 08dfbdf).
JOBSET_CONDITION_TYPES = ("Completed", "Failed", "Suspended", "StartupPolicyInProgress", "StartupPolicyCompleted",
                          "RestartingJobSet")
#: Above this the Workflow object nears etcd's 1.5 MiB request limit (--max-request-bytes).
SIZE_WARN = 1024 * 1024
#: A ``"<step>"`` object name is ``{{workflow.name}}-<short step>``: generateName's prefix is at most
#: 24 characters and Argo adds 5, so 30 + 1 + 17 = 48, the adapter's Job name limit.
PREFIX_MAX, STEP_MAX = 24, 17
RBAC_NOTE = ("run it as a service account that may create/get jobs, configmaps and services (podgroups, "
             "jobsets with those gangs), list pods and get pods/log, and apply deployments, services, "
             "horizontalpodautoscalers and httproutes: `argo submit --serviceaccount NAME`")


def _short(step: str) -> str:
    if len(step) <= STEP_MAX:
        return step
    return f"{step[:STEP_MAX - 5].rstrip('-')}-{hashlib.sha256(step.encode()).hexdigest()[:4]}"


def _arg_name(ref: expr.Ref) -> str:
    return f"{ref.parts[1]}-{ref.parts[3]}"


def plan_kubernetes(pipe: Any) -> Plan:
    """The Workflow (or CronWorkflow) of a checked pipeline.

    Raises:
        SpecError: a ``steps.S.state`` reference; a register step without
            ``targets.kubernetes.registry_uri`` or with a model that is not an object-store URI;
            ``null`` in a condition; the Kubernetes adapter's own SpecErrors for a step's spec.
    """
    from unijob import registry

    adapter = registry.get("kubernetes")
    spec = pipe.spec
    try:
        opts = adapter.options_model.model_validate(dict(spec.targets.get("kubernetes") or {}))
    except Exception as e:  # pydantic's ValidationError
        raise SpecError.at(("targets", "kubernetes"), f"targets.kubernetes: {str(e).splitlines()[-1].strip()}") from None
    c = _Compiler(pipe, adapter, opts)
    for name in pipe.order:
        c.step(name)
    prefix = spec.name[:PREFIX_MAX].rstrip("-")
    prefix = prefix if prefix[0].isalpha() else f"p{prefix}"[:PREFIX_MAX]
    labels = {"unijob.dev/pipeline": spec.name, "app.kubernetes.io/managed-by": "unijob"}
    wf_spec: dict[str, Any] = {"entrypoint": "main", "templates": [
        {"name": "main", "dag": {"tasks": c.tasks}}, *c.templates]}
    if spec.parameters:
        wf_spec["arguments"] = {"parameters": [{"name": k, "value": _text(v)} for k, v in spec.parameters.items()]}
    md: dict[str, Any] = {"generateName": f"{prefix}-", "labels": labels}
    if opts.namespace:
        md["namespace"] = opts.namespace
    notes = [RBAC_NOTE]
    if spec.schedule:
        # its Workflows are named <name>-<unix time> (10 digits): keep that within the prefix's 30
        cron_md = {"name": prefix[:PREFIX_MAX - 11].rstrip("-"), "labels": labels, **({"namespace": opts.namespace} if opts.namespace else {})}
        body = {"apiVersion": API, "kind": "CronWorkflow", "metadata": cron_md,
                "spec": {"schedules": [spec.schedule], "timezone": "UTC", "concurrencyPolicy": "Forbid",
                         "workflowMetadata": {"labels": labels}, "workflowSpec": wf_spec}}
        notes.append(f"schedule {spec.schedule} (UTC): a CronWorkflow starts one Workflow per tick, none while one runs")
    else:
        body = {"apiVersion": API, "kind": "Workflow", "metadata": md, "spec": wf_spec}
    warnings = []
    size = len(json.dumps(body, separators=(",", ":")))
    if size > SIZE_WARN:
        warnings.append(f"the {body['kind']} is {size / 1048576:.2f} MiB (each job step carries its source and the "
                        "runtime wheel); etcd refuses objects above 1.5 MiB: build images for large sources")
    return Plan(target="kubernetes", kind="pipeline", name=spec.name, submission_id="pipeline",
                requests=[NativeRequest(api=f"{API} {body['kind']}", body=body,
                                        note=f"{len(c.tasks)} steps, {len(c.templates) + 1} templates")],
                uploads=c.uploads, resources=PlanResources(service="argo-workflows"), notes=notes + c.notes,
                warnings=warnings, extra={"namespace": opts.namespace, "context": opts.context,
                                          "kubeconfig": opts.kubeconfig})


def _text(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def task_source() -> str:
    """The text of :mod:`unijob.pipeline.argo_tasks`, the scripts' ``source``."""
    return (Path(__file__).with_name("argo_tasks.py")).read_text()


class _Compiler:
    def __init__(self, pipe: Any, adapter: Any, opts: Any) -> None:
        self.pipe, self.adapter, self.opts = pipe, adapter, opts
        self.spec = pipe.spec
        self.tasks: list[dict[str, Any]] = []
        self.templates: list[dict[str, Any]] = []
        self.uploads: list[Upload] = []
        self.notes: list[str] = []
        self.job_outputs: dict[str, dict[str, str]] = {}
        self.endpoints: dict[str, str] = {}
        self.metrics: dict[str, set[str]] = {}
        for s in self.spec.steps:
            for _, r in step_refs(s):
                if r.parts[0] == "steps" and r.parts[2] == "metrics":
                    self.metrics.setdefault(r.parts[1], set()).add(r.parts[3])

    def idx(self, name: str) -> int:
        return self.spec.steps.index(self.pipe.step(name))

    # ---- one step ---------------------------------------------------------------------------

    def step(self, name: str) -> None:
        s = self.pipe.step(name)
        idx = self.idx(name)
        passed: dict[str, str] = {}

        def lookup(ref: expr.Ref) -> Any:
            p = ref.parts
            if p[0] == "params":
                return "{{workflow.parameters.%s}}" % p[1]
            if p[2] == "state":
                raise SpecError.at(("steps", idx, "when"), f"step '{name}': {ref} has no Argo equivalent here; "
                                                           "write the condition over metrics and parameters")
            kind = self.pipe.step(p[1]).kind
            if p[2] == "outputs" and kind in ("job", "batch"):
                if p[3] not in self.job_outputs[p[1]]:
                    raise SpecError.at(("steps", idx, "with"), f"step '{name}': {ref}: step '{p[1]}' has no output "
                                                                "directory; give its job spec an output (s3://, gs://)")
                return self.job_outputs[p[1]][p[3]]
            if p[2] == "outputs" and kind == "deploy":
                return self.endpoints[p[1]]
            if p[2] == "outputs" and kind != "register":
                raise SpecError.at(("steps", idx, "with"), f"step '{name}': {ref} has no Argo equivalent here")
            passed[_arg_name(ref)] = "{{tasks.%s.outputs.parameters.%s}}" % (p[1], p[3])
            return "{{inputs.parameters.%s}}" % _arg_name(ref)

        for _, r in step_refs(s):
            if r.parts[0] == "steps" and r.parts[2] == "state":
                lookup(r)
        when = _govaluate(expr.parse(s.when), self, idx, name) if s.when else None
        start = len(self.templates)
        if s.kind in ("job", "batch"):
            self.job(s, idx, lookup)
        elif s.kind == "register":
            self.register(s, idx, lookup)
        else:
            self.deploy(s, idx, lookup)
        if passed:  # every template of the step declares the values the step is passed, and passes them on
            params = [{"name": k} for k in sorted(passed)]
            args = [{"name": k, "value": "{{inputs.parameters.%s}}" % k} for k in sorted(passed)]
            for t in self.templates[start:]:
                t.setdefault("inputs", {}).setdefault("parameters", []).extend(params)
                for inner in t.get("dag", {}).get("tasks", []):
                    inner.setdefault("arguments", {}).setdefault("parameters", []).extend(args)
        task: dict[str, Any] = {"name": name, "template": f"step-{name}"}
        deps = list(self.pipe.deps[name])
        if deps:
            task["depends"] = " && ".join(f"{d}.Succeeded" for d in deps)
        if when:
            task["when"] = when
        if passed:
            task["arguments"] = {"parameters": [{"name": k, "value": v} for k, v in sorted(passed.items())]}
        self.tasks.append(task)

    def _build(self, s: Any, idx: int, lookup: Any) -> Any:
        from unijob.pipeline import steps as S

        return self._wrap(lambda: S.build_spec(s, self.pipe.base_dir, lookup, "argo", self.spec.targets), s, idx)

    def _wrap(self, fn: Any, s: Any, idx: int) -> Any:
        """``fn()``, its SpecError (about the step's own spec) re-raised at the step, naming it."""
        try:
            return fn()
        except SpecError as e:
            first = e.issues[0]
            raise SpecError.at(("steps", idx, s.kind), f"step '{s.name}' on kubernetes: "
                               f"{'.'.join(map(str, first.loc)) or 'spec'}: {first.message}") from None

    def job(self, s: Any, idx: int, lookup: Any) -> None:
        job_spec = self._build(s, idx, lookup)
        sid = f"pipeline-{self.spec.name}-{s.name}"
        plan = self.adapter.plan_batch if s.kind == "batch" else self.adapter.plan
        p = self._wrap(lambda: plan(job_spec, sid), s, idx)
        obj = "{{workflow.name}}-" + _short(s.name)
        inner: list[dict[str, Any]] = []
        for r in p.requests:
            body = json.loads(json.dumps(r.body).replace(p.name, obj))
            kind = body["kind"]
            leaf = {"ConfigMap": "configmap", "Service": "service", "PodGroup": "podgroup"}.get(kind, "job")
            if kind == "ConfigMap":
                _opaque(body, s, idx)
            res: dict[str, Any] = {"action": "create", "setOwnerReference": True}
            t: dict[str, Any] = {"name": f"{leaf}-{s.name}", "resource": res}
            if leaf == "job":
                res.update(_job_conditions(body, s.retries))
                t["activeDeadlineSeconds"] = int(job_spec.max_run) + DEADLINE_SLACK
            res["manifest"] = json.dumps(body, indent=1)
            self.templates.append(t)
            task = {"name": leaf, "template": t["name"]}
            if leaf == "job" and inner:
                task["depends"] = " && ".join(f"{x['name']}.Succeeded" for x in inner)
            inner.append(task)
        for u in p.uploads:
            self.uploads.append(Upload(source=u.source, kind=u.kind, sha256=u.sha256,
                                       destination=u.destination.replace(p.name, obj)))
        out: dict[str, str] = {"job_id": obj}
        if s.kind == "batch":
            out["output"] = job_spec.batch.output
        elif job_spec.output:
            out.update(output=job_spec.output, model=job_spec.output)
        self.job_outputs[s.name] = out
        step_t: dict[str, Any] = {"name": f"step-{s.name}", "dag": {"tasks": inner}}
        names = sorted(self.metrics.get(s.name, ()))
        if names:
            selector = p.extra["pod_selector"].replace(p.name, obj) + ",batch.kubernetes.io/job-completion-index=0"
            env = {"UNIJOB_TASK": "metrics", "UNIJOB_POD_SELECTOR": selector, "UNIJOB_METRICS": json.dumps(names),
                   "UNIJOB_CONTAINER": "trainer"}
            if self.opts.namespace:
                env["UNIJOB_NAMESPACE"] = self.opts.namespace
            self.templates.append(_script(f"metrics-{s.name}", env, names, s.retries))
            inner.append({"name": "metrics", "template": f"metrics-{s.name}", "depends": "job.Succeeded"})
            step_t["outputs"] = {"parameters": [{"name": m, "valueFrom": {
                "parameter": "{{tasks.metrics.outputs.parameters.%s}}" % m}} for m in names]}
        self.templates.append(step_t)

    def _registry_uri(self, s: Any, idx: int) -> str:
        uri = self.opts.registry_uri
        if not uri:
            raise SpecError.at(("steps", idx, s.kind), f"step '{s.name}': the kubernetes target's model registry is an "
                                                       "MLflow server; set targets.kubernetes.registry_uri in the "
                                                       "pipeline (its URL as the cluster's pods reach it)")
        return uri

    def register(self, s: Any, idx: int, lookup: Any) -> None:
        from unijob.pipeline import steps as S

        r = s.register_
        model = str(S.render(r.model, lookup))
        if "://" not in model or model.startswith(("pvc://", "file://")):
            raise SpecError.at(("steps", idx, "register", "model"),
                               f"step '{s.name}': the pods register what they can read; expected an object-store URI "
                               f"(s3://, gs://) and got {model!r} (give the job step an object-store output)")
        env = {"UNIJOB_TASK": "register", "MLFLOW_TRACKING_URI": self._registry_uri(s, idx),
               "UNIJOB_MODEL_NAME": str(S.render(r.name, lookup)), "UNIJOB_MODEL_SOURCE": model,
               "UNIJOB_APPROVE": "true" if r.approve else "false",
               "UNIJOB_METADATA": json.dumps({k: str(S.render(v, lookup)) for k, v in r.metadata.items()}, sort_keys=True)}
        if r.alias:
            env["UNIJOB_ALIAS"] = str(S.render(r.alias, lookup))
        self.templates.append(_script(f"step-{s.name}", env, ["version", "uri", "name"], s.retries))

    def deploy(self, s: Any, idx: int, lookup: Any) -> None:
        ep_spec = self._build(s, idx, lookup)
        variants = ep_spec.endpoint.resolved_variants() if ep_spec.endpoint else []
        for i, v in enumerate(variants):
            if str(v.model or "").startswith("job:"):
                raise SpecError.at(("steps", idx, "deploy"), f"step '{s.name}': variant '{v.name}' names a job "
                                   f"({v.model}); in a pipeline, pass {{{{ steps.STEP.outputs.model }}}} instead")
        p = self._wrap(lambda: self.adapter.plan_endpoint(ep_spec), s, idx)
        self.endpoints[s.name] = p.name
        # registered versions, and models known only at run time (a register step's uri), resolved in the cluster
        registered = {v.name: v.model for v in variants
                      if str(v.model or "").startswith("models:/") or "{{inputs.parameters." in str(v.model or "")}
        inner: list[dict[str, Any]] = []
        if registered:
            env = {"UNIJOB_TASK": "resolve", "MLFLOW_TRACKING_URI": self._registry_uri(s, idx),
                   "UNIJOB_MODELS": json.dumps({f"model-{k}": m for k, m in registered.items()}, sort_keys=True)}
            self.templates.append(_script(f"resolve-{s.name}", env, [f"model-{k}" for k in registered], s.retries))
            inner.append({"name": "resolve", "template": f"resolve-{s.name}"})
        for j, r in enumerate(p.requests):
            body = r.body
            if body["kind"] == "Deployment":
                variant = body["metadata"]["labels"]["unijob.dev/variant"]
                if variant in registered:
                    for c in body["spec"]["template"]["spec"]["containers"]:
                        for e in c.get("env", []):
                            if e["name"] == "UNIJOB_MODEL_URI":
                                e["value"] = "{{inputs.parameters.model-%s}}" % variant
            t: dict[str, Any] = {"name": f"apply-{j}-{s.name}", "resource": {"action": "apply",
                                                                            "manifest": json.dumps(body, indent=1)}}
            task: dict[str, Any] = {"name": f"{body['kind'].lower()}-{j}", "template": t["name"]}
            if registered:
                task["depends"] = "resolve.Succeeded"
                if body["kind"] == "Deployment" and variant in registered:
                    t["inputs"] = {"parameters": [{"name": f"model-{variant}"}]}
                    task["arguments"] = {"parameters": [{"name": f"model-{variant}", "value":
                                                         "{{tasks.resolve.outputs.parameters.model-%s}}" % variant}]}
            if s.retries:
                t["retryStrategy"] = {"limit": str(s.retries)}
            self.templates.append(t)
            inner.append(task)
        self.templates.append({"name": f"step-{s.name}", "dag": {"tasks": inner}})
        self.notes.append(f"step {s.name}: endpoint {p.name} ({'; '.join(p.notes)}); it stays after the Workflow")


def _opaque(cm: dict[str, Any], s: Any, idx: int) -> None:
    """Move a ConfigMap's text files to ``binaryData`` (base64; the mounted files are the same bytes),
    so Argo's ``{{...}}`` substitution cannot touch the user's source.

    Raises:
        SpecError: the ConfigMap no longer fits in 1 MiB.
    """
    import base64

    from unijob_adapters.kubernetes.plan import CONFIGMAP_LIMIT

    for k, v in (cm.pop("data", None) or {}).items():
        cm.setdefault("binaryData", {})[k] = base64.b64encode(v.encode()).decode()
    size = len(json.dumps(cm, separators=(",", ":")))
    if size > CONFIGMAP_LIMIT:
        raise SpecError.at(("steps", idx, "job"), f"step '{s.name}': its source ConfigMap is {size / 1048576:.2f} MiB "
                                                  "in a Workflow (text files base64-encoded, so Argo's {{...}} "
                                                  "substitution cannot change them); the limit is 1 MiB: build an image "
                                                  "with the code and set image + command")


def _failed_at(slots: int, types: str) -> list[str]:
    return [f"status.conditions.{i}.type in ({types})" for i in range(slots)]


def _job_conditions(body: dict[str, Any], retries: int) -> dict[str, str]:
    """The resource template's ``successCondition`` and ``failureCondition`` for the Job (JobSet)
    ``body``, after adding the step's ``retries`` to its ``backoffLimit`` (``maxRestarts``).

    How Argo reads them (``workflow/executor/resource.go``, ``WaitResource``/``matchConditions``,
    argoproj/argo-workflows at f016ad8): each is parsed by Kubernetes' label-selector parser
    (``labels.Parse``: comma-separated requirements, keys must be qualified names, so no GJSON
    queries such as ``#(type==Failed)``), every key is looked up in the object's JSON with GJSON (a
    number is an array index), and while polling the object the step **fails as soon as any one**
    failure requirement matches and succeeds when all success requirements match.

    So "some condition has type Failed" is one requirement per position in ``status.conditions``,
    a list that holds at most one condition per type (``metav1``/``JobCondition`` semantics):

    - Job (batch/v1, https://kubernetes.io/docs/concepts/workloads/controllers/job/#job-termination-and-cleanup):
      :data:`JOB_CONDITION_TYPES` bounds the positions; ``FailureTarget`` (Kubernetes >= 1.31,
      set the moment the Job controller decides the Job fails: backoff limit, ``activeDeadlineSeconds``,
      a ``podFailurePolicy`` ``FailJob`` rule, ``maxFailedIndexes``) precedes ``Failed`` (set once its
      pods have terminated); both are only ever ``status: "True"``. ``status.failed > backoffLimit``
      stays for clusters before 1.31 that count failures slower than they set conditions.
    - JobSet (jobset.x-k8s.io/v1alpha2, ``pkg/controllers/failure_policy.go``): ``status.terminalState
      == Failed`` (JobSet >= 0.6) or a ``Failed`` condition (older JobSets), over
      :data:`JOBSET_CONDITION_TYPES`.

    The template's ``activeDeadlineSeconds`` (``max_run`` + :data:`DEADLINE_SLACK`) remains the
    backstop for a Job that never starts (e.g. held by a queue).
    """
    if body["kind"] == "JobSet":
        fp = body["spec"].setdefault("failurePolicy", {})
        fp["maxRestarts"] = int(fp.get("maxRestarts", 0)) + retries
        return {"successCondition": "status.terminalState == Completed",
                "failureCondition": ", ".join(["status.terminalState == Failed",
                                               *_failed_at(len(JOBSET_CONDITION_TYPES), "Failed")])}
    js = body["spec"]
    js["backoffLimit"] = int(js.get("backoffLimit", 0)) + retries * int(js.get("completions", 1))
    return {"successCondition": f"status.succeeded > {int(js.get('completions', 1)) - 1}",
            "failureCondition": ", ".join([f"status.failed > {js['backoffLimit']}",
                                           *_failed_at(len(JOB_CONDITION_TYPES), "Failed,FailureTarget")])}


def _script(name: str, env: dict[str, str], outputs: list[str], retries: int) -> dict[str, Any]:
    t: dict[str, Any] = {"name": name, "script": {
        "image": TASK_IMAGE, "command": ["python"], "source": task_source(),
        "env": [{"name": k, "value": v} for k, v in env.items()] + [{"name": "UNIJOB_OUTPUTS", "value": OUT_DIR}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}}}
    if outputs:
        t["outputs"] = {"parameters": [{"name": o, "valueFrom": {"path": f"{OUT_DIR}/{o}"}} for o in outputs]}
    if retries:
        t["retryStrategy"] = {"limit": str(retries)}
    return t


def _govaluate(tree: Any, c: _Compiler, idx: int, step: str) -> str:
    """Our condition as Argo's ``when`` (govaluate, after Argo substitutes the ``{{...}}`` tags;
    a comparison with a string quotes its references)."""
    where = ("steps", idx, "when")

    def ref(r: expr.Ref, quote: bool) -> str:
        p = r.parts
        if p[0] == "params":
            text = "{{workflow.parameters.%s}}" % p[1]
        elif p[2] == "metrics":
            text = "{{tasks.%s.outputs.parameters.%s}}" % (p[1], p[3])
        elif p[2] == "outputs" and c.pipe.step(p[1]).kind == "register":
            text = "{{tasks.%s.outputs.parameters.%s}}" % (p[1], p[3])
        elif p[2] == "outputs" and p[1] in c.job_outputs:
            text = c.job_outputs[p[1]].get(p[3], "")
        else:
            raise SpecError.at(where, f"step '{step}': {r} has no Argo equivalent in a condition")
        return f"'{text}'" if quote else text

    def is_str(v: Any) -> bool:
        if isinstance(v, str):
            return True
        return isinstance(v, expr.Ref) and v.parts[0] == "params" and isinstance(c.spec.parameters[v.parts[1]], str)

    def go(t: Any, quote: bool = False) -> str:
        if isinstance(t, expr.Ref):
            return ref(t, quote)
        if t is None:
            raise SpecError.at(where, f"step '{step}': Argo's conditions have no null; compare with a value")
        if isinstance(t, bool):
            return "true" if t else "false"
        if isinstance(t, str):
            if "'" in t or "\\" in t:
                raise SpecError.at(where, f"step '{step}': a string in an Argo condition cannot hold quotes or backslashes")
            return f"'{t}'"
        if isinstance(t, (int, float)):
            return repr(t)
        op = t[0]
        if op == "not":
            return f"!({go(t[1])})"
        if op in ("and", "or"):
            return f"({go(t[1])} {'&&' if op == 'and' else '||'} {go(t[2])})"
        q = is_str(t[1]) or is_str(t[2])
        return f"{go(t[1], q)} {op} {go(t[2], q)}"

    return go(tree)
