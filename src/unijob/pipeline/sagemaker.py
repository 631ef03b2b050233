"""A pipeline as a SageMaker Pipelines definition: ``CreatePipeline`` (then
``StartPipelineExecution``), built without network or any AWS SDK.

The definition (JSON schema version ``2020-12-01``: ``Parameters``, ``Steps``; each step's
``Arguments`` is the request of the SageMaker API it calls; references between steps are
``{"Get": "Steps.NAME.PROPERTY"}`` over the step's Describe* response, strings built at run time
are ``{"Std:Join": {"On": "", "Values": [...]}}``) is what the SageMaker Python SDK 2.x's
``sagemaker.workflow.pipeline.Pipeline.definition()`` writes (sagemaker/workflow/steps.py,
condition_step.py, properties.py, SDK 2.257; the published schema:
https://github.com/aws-sagemaker-mlops/sagemaker-model-building-pipeline-definition-JSON-schema).

- a **job** step is a ``Training`` step whose Arguments are the CreateTrainingJob the SageMaker
  adapter plans for that step's spec, without ``TrainingJobName`` (Pipelines names the job),
  ``UNIJOB_JOB_NAME`` (the runtime then reads SageMaker's ``TRAINING_JOB_NAME``) and the
  ``sagemaker_job_name`` hyperparameter (as the SDK's ``TrainingStep`` leaves it out);
- a **register** step is a ``RegisterModel`` step: the adapter's CreateModelPackage (the serving
  image, ``ModelDataUrl`` = the model, content types of ``unijob.serve``); ``approve: true`` is
  ``ModelApprovalStatus: Approved``. Submitting creates the Model Package Group first (Pipelines
  does not);
- a **batch** step is a ``Model`` step (the adapter's CreateModel) and a ``Transform`` step (its
  CreateTransformJob, ``ModelName`` = the Model step's);
- a **deploy** step is a ``Model`` step per variant, an ``EndpointConfig`` step (the variants'
  traffic weights) and an ``Endpoint`` step (Pipelines creates the endpoint, or updates it when it
  exists; sagemaker/workflow/endpoint_step.py, SDK 2.257): the adapter's endpoint plan. A variant
  model ``models:/NAME@ALIAS`` must be registered with that alias by a step it depends on (its
  ``ModelPackageArn``: SageMaker has no aliases, so none other can be resolved in a pipeline);
  ``models:/NAME/VERSION`` is that model package's ARN. Autoscaling is not part of a pipeline (a
  warning);
- a ``when:`` is a ``Condition`` step named ``STEP-if`` whose ``IfSteps`` hold the step and every
  step that depends on it (a false condition skips them all, as the local runner does); ``and``
  at the top is the ``Conditions`` list, ``or``/``not`` are ``Or``/``Not``, ``!=`` is
  ``Not(Equals)``;
- **metrics** (``steps.X.metrics.NAME``) are ``FinalMetricDataList['NAME'].Value`` of the
  training job: the compiler adds a ``MetricDefinitions`` regex matching the
  ``[unijob.metrics] {...}`` line that ``unijob.runtime.log_metrics`` prints, which SageMaker
  reads from the job's log (DescribeTrainingJob ``FinalMetricDataList``). Chosen over a
  ``PropertyFile``: Pipelines reads property files only from Processing steps, and
  ``metrics.json`` lies inside the job's ``output.tar.gz``, so that route costs an extra
  Processing job (minutes of start-up) per condition; the metric route needs no extra step. Only
  numbers reach a condition this way (``log_metrics`` strings and booleans do not);
- ``retries: N`` is a retry policy of N attempts on what Pipelines retries (a job's internal,
  capacity and resource-limit errors; the service's faults and throttling): a job whose own code
  fails is not rerun, unlike on the local runner (said in the plan's notes);
- ``schedule:`` is a note (Pipelines are scheduled by EventBridge, outside the definition).

``steps.X.state`` and ``null`` in conditions, a registry alias no step of the pipeline registers,
and a step below conditions of two unrelated branches are SpecErrors naming the step and field.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Optional

from unijob.contract import NativeRequest, Plan, PlanResources, Upload
from unijob.errors import SpecError
from unijob.pipeline import expr
from unijob.pipeline.spec import step_refs

VERSION = "2020-12-01"
_TYPES = {bool: "Boolean", int: "Integer", float: "Float", str: "String"}
_OPS = {"==": "Equals", ">": "GreaterThan", ">=": "GreaterThanOrEqualTo", "<": "LessThan", "<=": "LessThanOrEqualTo"}
#: What Pipelines retries for job steps, and for any step (sagemaker/workflow/retry.py).
JOB_ERRORS = ["SageMaker.JOB_INTERNAL_ERROR", "SageMaker.CAPACITY_ERROR", "SageMaker.RESOURCE_LIMIT"]
STEP_ERRORS = ["Step.SERVICE_FAULT", "Step.THROTTLING"]
#: The content types of a model package that unijob.serve answers (as the adapter's registry says).
CONTENT_TYPES = ["application/json"]
#: Placeholder a reference stands for while a step's spec is planned: shaped like an S3 URI so
#: that the adapter's checks of inputs and models pass; replaced by the property it stands for.
_TOKEN = re.compile(r"s3://unijob-ref-(\d{4})")
#: Regex of one metric in the ``[unijob.metrics] {json}`` line (a number, as json.dumps writes it).
METRIC_REGEX = r'\[unijob\.metrics\] \{{.*"{name}": (-?[0-9.]+(?:[eE][-+]?[0-9]+)?)'
#: Pipeline step names: StepName of the definition schema.
_STEP_NAME = re.compile(r"^[A-Za-z0-9\-_]{1,64}$")


def metric_regex(name: str) -> str:
    """The ``MetricDefinitions`` regex that finds metric ``name`` in the runtime's metrics line."""
    return METRIC_REGEX.format(name=re.escape(name))


def join(parts: list[Any]) -> Any:
    """``parts`` (strings and ``{"Get": ...}``) as one value: a lone Get stays one, else ``Std:Join``."""
    merged: list[Any] = []
    for p in parts:
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] += p
        elif p != "":
            merged.append(p)
    if len(merged) == 1 and isinstance(merged[0], str):
        return merged[0]
    return {"Std:Join": {"On": "", "Values": merged}}


class _Refs:
    """References seen while planning steps: each is a token string in the planned request,
    replaced afterwards by its value parts (strings and Gets)."""

    def __init__(self) -> None:
        self.values: list[tuple[list[Any], str]] = []

    def token(self, parts: list[Any], kind: str) -> str:
        self.values.append((parts, kind))
        return f"s3://unijob-ref-{len(self.values) - 1:04d}"

    def sub(self, value: Any) -> Any:
        """``value`` with every token replaced (a number JSON-quoted around a token loses its quotes,
        so ``"\\"{{ params.epochs }}\\""`` in a JSON-encoded hyperparameter becomes ``20``)."""
        if isinstance(value, dict):
            return {k: self.sub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.sub(v) for v in value]
        if not isinstance(value, str) or not _TOKEN.search(value):
            return value
        whole = _TOKEN.fullmatch(value)
        if whole:
            parts, _ = self.values[int(whole.group(1))]
            return parts[0] if len(parts) == 1 else join(parts)
        out: list[Any] = []
        pos, skip_quote = 0, False
        for m in _TOKEN.finditer(value):
            parts, kind = self.values[int(m.group(1))]
            lit = value[pos:m.start()]
            if skip_quote and lit.startswith('"'):
                lit = lit[1:]
            after = value[m.end():]
            skip_quote = kind != "string" and lit.endswith('"') and after.startswith('"')
            out.append(lit[:-1] if skip_quote else lit)
            out += parts
            pos = m.end()
        tail = value[pos:]
        out.append(tail[1:] if skip_quote and tail.startswith('"') else tail)
        return join(out)

    def string(self, value: Any) -> Any:
        """``sub(value)`` as a string at run time (a lone Get of a number is joined into one)."""
        v = self.sub(value)
        return {"Std:Join": {"On": "", "Values": [v]}} if isinstance(v, dict) and "Get" in v else v


def _prop(step: str, path: str) -> dict[str, str]:
    return {"Get": f"Steps.{step}.{path}"}


def _output_parts(pipe: Any, ref: expr.Ref) -> tuple[list[Any], str]:
    """The value of ``steps.S.outputs.NAME`` in the definition, and its kind."""
    step, name = ref.parts[1], ref.parts[3]
    other = pipe.step(step)
    if other.kind == "job":
        return ([_prop(step, "TrainingJobName")] if name == "job_id"
                else [_prop(step, "ModelArtifacts.S3ModelArtifacts")]), "string"
    if other.kind == "batch":
        return ([_prop(f"{step}-transform", "TransformJobName")] if name == "job_id"
                else [_prop(f"{step}-transform", "TransformOutput.S3OutputPath")]), "string"
    if other.kind == "register":
        version = _prop(step, "ModelPackageVersion")
        if name == "version":
            return [version], "number"
        if name == "uri":
            return [f"models:/{other.register_.name}/", version], "string"
        return [other.register_.name], "string"
    from unijob.pipeline.sagemaker_deploy import endpoint_name

    return [endpoint_name(pipe, step)], "string"  # deploy: its endpoint


def _condition(tree: Any, operand: Callable[[Any], Any], top: bool = True) -> list[dict[str, Any]]:
    """Our condition tree as the definition's ``Conditions`` (raises ExprError for what Pipelines
    cannot express)."""
    if isinstance(tree, tuple) and tree[0] == "and":
        if not top:
            raise expr.ExprError("'and' inside 'or' or 'not' has no SageMaker Pipelines form (Or and Not take "
                                 "comparisons); write the condition as comparisons joined by a top-level 'and'")
        return _condition(tree[1], operand) + _condition(tree[2], operand)
    if isinstance(tree, tuple) and tree[0] == "or":
        return [{"Type": "Or", "Conditions": _condition(tree[1], operand, False) + _condition(tree[2], operand, False)}]
    if isinstance(tree, tuple) and tree[0] == "not":
        inner = _condition(tree[1], operand, False)
        return [{"Type": "Not", "Condition": inner[0]}]
    if isinstance(tree, tuple) and tree[0] == "!=":
        return [{"Type": "Not", "Condition": {"Type": "Equals", "LeftValue": operand(tree[1]),
                                              "RightValue": operand(tree[2])}}]
    if isinstance(tree, tuple) and tree[0] in _OPS:
        return [{"Type": _OPS[tree[0]], "LeftValue": operand(tree[1]), "RightValue": operand(tree[2])}]
    raise expr.ExprError(f"a SageMaker condition compares two values; {tree!s} alone is not a comparison "
                         "(write e.g. 'params.flag == true')")


def _retry(retries: int, job: bool) -> list[dict[str, Any]]:
    policies = [{"ExceptionType": STEP_ERRORS, "MaxAttempts": retries, "IntervalSeconds": 1, "BackoffRate": 2.0}]
    if job:
        policies.append({"ExceptionType": JOB_ERRORS, "MaxAttempts": retries, "IntervalSeconds": 1,
                         "BackoffRate": 2.0})
    return policies


def plan_sagemaker(pipe: Any) -> Plan:
    """The CreatePipeline (after a CreateModelPackageGroup per registered model) and
    StartPipelineExecution requests of a checked pipeline.

    Raises:
        SpecError: naming the step and field: a deploy variant's alias no earlier step registers; a
            condition Pipelines cannot express
            (``steps.X.state``, ``null``, a bare value, ``and`` inside ``or``/``not``); a step
            under two unrelated conditions; a register step without a serving image; the
            SageMaker adapter's own SpecErrors for a step's spec.
    """
    from unijob import registry
    from unijob.pipeline import steps as S
    from unijob.pipeline.sagemaker_deploy import deploy_steps, packaged
    from unijob_adapters.sagemaker.options import resolve_region, resolve_role

    adapter = registry.get("sagemaker")
    spec = pipe.spec
    try:
        opts = adapter.options_model.model_validate(spec.targets.get("sagemaker") or {})
    except Exception as e:  # pydantic ValidationError
        raise SpecError.at(("targets", "sagemaker"), f"{e}".splitlines()[-1]) from None
    refs = _Refs()
    metrics: dict[str, set[str]] = {}
    trainings: dict[str, dict[str, Any]] = {}
    top: list[dict[str, Any]] = []
    branch: dict[Optional[str], list[dict[str, Any]]] = {None: top}
    parent: dict[str, Optional[str]] = {}  # condition step -> the condition step whose branch holds it
    home: dict[str, Optional[str]] = {}  # unijob step -> the condition step whose branch holds it
    last: dict[str, str] = {}  # unijob step -> its last pipeline step (what DependsOn names)
    names: set[str] = set()
    uploads: list[Upload] = []
    requirements: dict[str, str] = {}
    notes: list[str] = []
    warnings: list[str] = []
    groups: list[str] = []
    role: Optional[str] = opts.role_arn
    serving_image: Optional[str] = opts.serving_image
    region: Optional[str] = opts.region

    def chain(c: Optional[str]) -> list[Optional[str]]:
        out: list[Optional[str]] = []
        while c is not None:
            out.append(c)
            c = parent[c]
        return out + [None]

    for name in pipe.order:
        s = pipe.step(name)
        idx = spec.steps.index(s)
        for where, r in step_refs(s):
            if r.parts[0] == "steps" and r.parts[2] == "state":
                raise SpecError.at(("steps", idx, where), f"step '{name}': {r} has no SageMaker Pipelines equivalent "
                                                          "(a step in a pipeline runs only when the steps before it "
                                                          "succeeded)")

        def lookup(ref: expr.Ref) -> Any:
            p = ref.parts
            if p[0] == "params":
                v = spec.parameters[p[1]]
                return refs.token([{"Get": f"Parameters.{p[1]}"}], "string" if isinstance(v, str) else "number")
            if p[2] == "metrics":
                metrics.setdefault(p[1], set()).add(p[3])
                return refs.token([_prop(p[1], f"FinalMetricDataList['{p[3]}'].Value")], "number")
            parts, kind = _output_parts(pipe, ref)
            return refs.token(parts, kind)

        # where the step goes: the deepest condition branch among its dependencies'
        homes = {home[d] for d in pipe.deps[name]}
        deepest = max(homes, key=lambda c: len(chain(c)), default=None)
        for c in homes:
            if c not in chain(deepest):
                raise SpecError.at(("steps", idx, "depends_on"),
                                   f"step '{name}' depends on steps under two unrelated conditions ('{c}' and "
                                   f"'{deepest}'); a SageMaker pipeline step sits in one condition's branch")
        container = deepest
        if s.when:
            cname = f"{name}-if"

            def operand(v: Any) -> Any:
                if isinstance(v, expr.Ref):
                    if v.parts[0] == "params":
                        return {"Get": f"Parameters.{v.parts[1]}"}
                    if v.parts[2] == "metrics":
                        metrics.setdefault(v.parts[1], set()).add(v.parts[3])
                        return _prop(v.parts[1], f"FinalMetricDataList['{v.parts[3]}'].Value")
                    parts, _ = _output_parts(pipe, v)
                    return join(parts) if len(parts) > 1 else parts[0]
                if v is None:
                    raise expr.ExprError("null has no SageMaker Pipelines condition value")
                return v

            try:
                conditions = _condition(expr.parse(s.when), operand)
            except expr.ExprError as e:
                raise SpecError.at(("steps", idx, "when"), f"step '{name}': {e}") from None
            cond = {"Name": cname, "Type": "Condition",
                    "Arguments": {"Conditions": conditions, "IfSteps": [], "ElseSteps": []}}
            _add(branch[container], cond, names, idx)
            parent[cname] = container
            branch[cname] = cond["Arguments"]["IfSteps"]
            container = cname
        home[name] = container
        depends = [last[d] for d in s.depends_on]
        made: list[dict[str, Any]] = []
        sid = f"pipeline-{spec.name}-{name}"
        if s.kind == "deploy":
            try:
                job_spec = S.build_spec(s, pipe.base_dir, lookup, "sagemaker-pipeline", spec.targets)
                job_spec = packaged(pipe, s, idx, job_spec, refs, role or resolve_role(adapter.options(job_spec)),
                                     region or resolve_region(adapter.options(job_spec)))
                p = adapter.plan_endpoint(job_spec)
            except SpecError as e:
                first = e.issues[0]
                if first.loc[:2] == ("steps", idx):
                    raise
                raise SpecError.at(("steps", idx, "deploy"), f"step '{name}' on sagemaker: "
                                   f"{'.'.join(map(str, first.loc)) or 'spec'}: {first.message}") from None
            made += deploy_steps(name, p, refs)
            if any(r.when == "after-deploy" for r in p.requests):
                warnings.append(f"step '{name}': the endpoint's autoscaling (Application Auto Scaling) is not part of "
                                "a SageMaker pipeline; the variants keep min_replicas instances until `unijob deploy` "
                                "registers it")
        elif s.kind in ("job", "batch"):
            try:
                job_spec = S.build_spec(s, pipe.base_dir, lookup, "sagemaker-pipeline", spec.targets)
                p = adapter.plan(job_spec, sid) if s.kind == "job" else adapter.plan_batch(job_spec, sid)
                step_opts = adapter.options(job_spec)
            except SpecError as e:
                first = e.issues[0]
                raise SpecError.at(("steps", idx, s.kind), f"step '{name}' on sagemaker: "
                                   f"{'.'.join(map(str, first.loc)) or 'spec'}: {first.message}") from None
            region = region or p.extra.get("region")
            serving_image = serving_image or step_opts.serving_image
            warnings += [f"step '{name}': {w}" for w in p.warnings]
            if s.kind == "job":
                body = dict(p.requests[0].body)
                role = role or body["RoleArn"]
                body.pop("TrainingJobName")
                body["Environment"] = {k: v for k, v in body["Environment"].items() if k != "UNIJOB_JOB_NAME"}
                if "HyperParameters" in body:  # the job's name at plan time; the SDK drops it in pipelines too
                    body["HyperParameters"] = {k: v for k, v in body["HyperParameters"].items()
                                               if k != "sagemaker_job_name"}
                if any(r.when == "fallback" for r in p.requests):
                    warnings.append(f"step '{name}': spot_with_fallback: a SageMaker pipeline runs the spot attempt "
                                    "only (Pipelines has no fallback); use policy on_demand or spot for this step")
                for up in p.uploads:
                    uploads.append(up)
                    if p.extra.get("requirements") and up.kind == "sourcedir":
                        requirements[up.destination] = p.extra["requirements"]
                step = {"Name": name, "Type": "Training", "Arguments": refs.sub(body)}
                trainings[name] = step
                made.append(step)
            else:
                model_body = dict(p.requests[0].body)
                model_body.pop("ModelName")
                transform = dict(p.requests[1].body)
                transform.pop("TransformJobName")
                transform["ModelName"] = _prop(f"{name}-model", "ModelName")
                made.append({"Name": f"{name}-model", "Type": "Model", "Arguments": refs.sub(model_body)})
                made.append({"Name": f"{name}-transform", "Type": "Transform", "Arguments": refs.sub(transform)})
        else:  # register
            r = s.register_
            model = refs.sub(S.render(r.model, lookup))
            if isinstance(model, str) and not model.startswith("s3://"):
                raise SpecError.at(("steps", idx, "register", "model"),
                                   f"step '{name}': a SageMaker model package points at an S3 artifact "
                                   f"(s3://.../model.tar.gz); got {model!r}")
            if not serving_image:
                raise SpecError.at(("steps", idx, "register"),
                                   f"step '{name}': a SageMaker model package names its serving image: set "
                                   "targets.sagemaker.serving_image in the pipeline (`unijob serve-image` builds one)")
            if r.alias:
                warnings.append(f"step '{name}': alias '{r.alias}' is not moved by the SageMaker pipeline (SageMaker "
                                f"has no aliases; unijob keeps them as tags on the group): after the run, `unijob "
                                f"models alias {r.name} VERSION {r.alias} -t sagemaker`")
            args: dict[str, Any] = {
                "ModelPackageGroupName": r.name,
                "ModelApprovalStatus": "Approved" if r.approve else "PendingManualApproval",
                "InferenceSpecification": {"Containers": [{"Image": serving_image, "ModelDataUrl": model}],
                                           "SupportedContentTypes": CONTENT_TYPES,
                                           "SupportedResponseMIMETypes": CONTENT_TYPES}}
            if r.metadata:
                args["CustomerMetadataProperties"] = {k: refs.string(S.render(v, lookup)) for k, v in r.metadata.items()}
            if r.name not in groups:
                groups.append(r.name)
            made.append({"Name": name, "Type": "RegisterModel", "Arguments": args})
        if depends:  # on the first step, and on every Model step of a deploy (each stands alone)
            for st in made:
                if st is made[0] or (s.kind == "deploy" and st["Type"] == "Model"):
                    st["DependsOn"] = depends
        if s.retries:
            for st in made:
                if st["Type"] != "Endpoint":  # Pipelines does not retry Endpoint steps (sagemaker/workflow/endpoint_step.py)
                    st["RetryPolicies"] = _retry(s.retries, st["Type"] in ("Training", "Transform"))
        for st in made:
            _add(branch[container], st, names, idx)
        last[name] = made[-1]["Name"]
    for producer, wanted in metrics.items():
        training = trainings.get(producer)
        if training is None:
            i = spec.steps.index(pipe.step(producer))
            raise SpecError.at(("steps", i), f"step '{producer}': only job steps report metrics")
        algo = training["Arguments"]["AlgorithmSpecification"]
        algo["MetricDefinitions"] = [{"Name": m, "Regex": metric_regex(m)} for m in sorted(wanted)]
    if any(s.retries for s in spec.steps):
        notes.append("retries: SageMaker Pipelines retries a step on its job's internal, capacity and resource-limit "
                     "errors and on service faults, not when the job's own code fails")
    if spec.schedule:
        notes.append(f"schedule {spec.schedule}: create an EventBridge schedule whose target is this pipeline "
                     "(SageMaker Pipelines are scheduled outside their definition)")
    if not role:
        role = resolve_role(opts)
    region = region or resolve_region(opts)
    definition = {"Version": VERSION, "Metadata": {},
                  "Parameters": [{"Name": k, "Type": _TYPES[type(v)], "DefaultValue": v}
                                 for k, v in spec.parameters.items()],
                  "Steps": top}
    body: dict[str, Any] = {"PipelineName": spec.name, "PipelineDisplayName": spec.name,
                            "PipelineDefinition": json.dumps(definition, separators=(",", ":")), "RoleArn": role,
                            "Tags": [{"Key": "unijob-pipeline", "Value": spec.name}]}
    if spec.description:
        body["PipelineDescription"] = spec.description[:3072]
    requests = [NativeRequest(api="sagemaker:CreateModelPackageGroup",
                              body={"ModelPackageGroupName": g, "ModelPackageGroupDescription": "registered by unijob"},
                              note="an existing group is kept") for g in groups]
    requests.append(NativeRequest(api="sagemaker:CreatePipeline", body=body,
                                  note=f"{len(names)} steps; UpdatePipeline when it exists"))
    requests.append(NativeRequest(api="sagemaker:StartPipelineExecution", body={"PipelineName": spec.name},
                                  when="start", note="PipelineParameters: the run's -p overrides"))
    return Plan(target="sagemaker", kind="pipeline", name=spec.name, submission_id="pipeline", requests=requests,
                uploads=uploads, resources=PlanResources(service="sagemaker-pipelines", region=region),
                notes=notes, warnings=warnings,
                extra={"region": region, "requirements": requirements, "retry_mode": opts.retry_mode,
                       "max_attempts": opts.max_attempts})


def _add(into: list[dict[str, Any]], step: dict[str, Any], names: set[str], idx: int) -> None:
    name = step["Name"]
    if not _STEP_NAME.match(name):
        raise SpecError.at(("steps", idx, "name"), f"pipeline step name '{name}' is longer than SageMaker's 64 "
                                                   "characters; shorten the step's name")
    if name in names:
        raise SpecError.at(("steps", idx, "name"), f"pipeline step name '{name}' is used twice (unijob names a "
                                                   "condition STEP-if and a batch step's parts STEP-model, "
                                                   "STEP-transform); rename the step")
    names.add(name)
    into.append(step)


def definition(plan: Plan) -> dict[str, Any]:
    """The pipeline definition inside a plan's CreatePipeline request."""
    return json.loads(plan.request("CreatePipeline").body["PipelineDefinition"])
