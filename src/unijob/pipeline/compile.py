"""A pipeline as each platform's own pipeline request, built without network (``unijob plan
pipeline.yaml -t TARGET``).

- ``local``: the DAG the local runner walks (order, dependencies, conditions), as data.
- ``vertex``: a Vertex AI ``PipelineJob`` carrying Kubeflow Pipelines' v2 IR (:mod:`.kfp`).
- ``databricks``: one multi-task job with condition tasks and task values (:mod:`.databricks`).
- ``kubernetes``: an Argo Workflow whose steps create the Kubernetes adapter's objects (:mod:`.argo`).
- ``sagemaker``: a SageMaker Pipelines definition in CreatePipeline (:mod:`.sagemaker`).
- Other targets refuse with the reason (:data:`UNSUPPORTED`).
"""

from __future__ import annotations

from typing import Any

from unijob.contract import NativeRequest, Plan, PlanResources
from unijob.errors import SpecError

#: target -> why its pipelines are not compiled (shown as the error).
UNSUPPORTED: dict[str, str] = {}


def plan_pipeline(pipe: Any, target: str = "local") -> Plan:
    """The plan of a checked pipeline (:func:`unijob.pipeline.loading.load_pipeline`) on ``target``.

    Raises:
        SpecError: a step type or condition the target cannot express (naming the step and field),
            or a target whose pipelines are not compiled.
    """
    if target == "local":
        return _local(pipe)
    if target == "vertex":
        from unijob.pipeline.kfp import plan_vertex

        return plan_vertex(pipe)
    if target == "databricks":
        from unijob.pipeline.databricks import plan_databricks

        return plan_databricks(pipe)
    if target == "kubernetes":
        from unijob.pipeline.argo import plan_kubernetes

        return plan_kubernetes(pipe)
    if target == "sagemaker":
        from unijob.pipeline.sagemaker import plan_sagemaker

        return plan_sagemaker(pipe)
    reason = UNSUPPORTED.get(target, f"target '{target}' has no pipeline compiler")
    raise SpecError.at(("steps",), reason)


def _local(pipe: Any) -> Plan:
    steps = {}
    for name in pipe.order:
        s = pipe.step(name)
        body: dict[str, Any] = {"kind": s.kind, "depends_on": pipe.deps[name]}
        if s.when:
            body["when"] = s.when
        if s.retries:
            body["retries"] = s.retries
        value = s.section(s.kind)
        body["spec"] = value if isinstance(value, (str, dict)) else value.model_dump(exclude_defaults=True)
        if s.with_:
            body["with"] = s.with_
        steps[name] = body
    return Plan(target="local", kind="pipeline", name=pipe.spec.name, submission_id="pipeline",
                requests=[NativeRequest(api="local:pipeline", body={"name": pipe.spec.name, "order": pipe.order,
                                                                   "parameters": pipe.spec.parameters, "steps": steps},
                                        note="run by `unijob pipelines run` (the DAG runner on this machine)")],
                resources=PlanResources(service="local"),
                notes=[f"schedule {pipe.spec.schedule}: run `unijob pipelines run` from cron with it on this machine"]
                if pipe.spec.schedule else [])
