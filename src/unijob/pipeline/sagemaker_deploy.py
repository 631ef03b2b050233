"""Deploy steps of a SageMaker pipeline (:mod:`unijob.pipeline.sagemaker`): a ``Model`` step per
variant, an ``EndpointConfig`` step and an ``Endpoint`` step, made from the SageMaker adapter's
endpoint plan (CreateModel, CreateEndpointConfig, CreateEndpoint). The step types and their
Arguments are those of the SageMaker Python SDK 2.x's ``ModelStep``, ``EndpointConfigStep`` and
``EndpointStep`` (sagemaker/workflow/model_step.py, endpoint_step.py, SDK 2.257), whose Endpoint
step creates the endpoint or updates it when it exists.
"""

from __future__ import annotations

from typing import Any

from unijob.contract import Plan
from unijob.errors import SpecError
from unijob.pipeline.sagemaker import _TOKEN, _prop, _Refs


def endpoint_name(pipe: Any, step: str) -> str:
    """The endpoint a deploy step deploys (its spec's endpoint.name, else the spec's name)."""
    from unijob.pipeline import steps as S

    spec = S.build_spec(pipe.step(step), pipe.base_dir, lambda ref: "s3://unijob-ref-9999", "sagemaker-pipeline",
                        pipe.spec.targets)
    return spec.endpoint.name or spec.name


def _ancestors(pipe: Any, name: str) -> set[str]:
    out: set[str] = set()
    todo = list(pipe.deps[name])
    while todo:
        d = todo.pop()
        if d not in out:
            out.add(d)
            todo += pipe.deps[d]
    return out


def packaged(pipe: Any, s: Any, idx: int, job_spec: Any, refs: _Refs, role: str, region: str) -> Any:
    """``job_spec`` with each variant model given as a registry URI replaced by a token standing
    for a model package: ``models:/NAME@ALIAS`` registered with that alias by a step this one
    depends on -> that step's ``ModelPackageArn``; ``models:/NAME/VERSION`` -> the package's ARN
    (``arn:PARTITION:sagemaker:REGION:ACCOUNT:model-package/NAME/VERSION``, the account of the
    execution role).

    Raises:
        SpecError: an alias no earlier step of this pipeline registers (SageMaker has no aliases:
            unijob keeps them as tags, which a pipeline cannot read).
    """
    ep = job_spec.endpoint
    before = _ancestors(pipe, s.name)
    variants = []
    for v in ep.resolved_variants():
        model = v.model or ""
        if model.startswith("models:/"):
            ref = model[len("models:/"):]
            if "@" in ref:
                mname, alias = ref.split("@", 1)
                regs = [st.name for st in pipe.spec.steps if st.register_ is not None and st.name in before
                        and st.register_.name == mname and st.register_.alias == alias]
                if not regs:
                    raise SpecError.at(("steps", idx, "deploy"),
                                       f"step '{s.name}': variant '{v.name}': {model} is a registry alias, which a "
                                       f"SageMaker pipeline cannot resolve (unijob keeps aliases as tags); give "
                                       f"models:/{mname}/VERSION, or register it with alias '{alias}' in a step this "
                                       "one depends on")
                package: Any = _prop(regs[-1], "ModelPackageArn")
            else:
                mname, _, version = ref.partition("/")
                arn = role.split(":")
                package = f"arn:{arn[1]}:sagemaker:{region}:{arn[4]}:model-package/{mname.lower()}/{version}"
            v = v.model_copy(update={"model": refs.token([package], "package")})
        variants.append(v)
    return job_spec.model_copy(update={"endpoint": ep.model_copy(update={"variants": variants})})


def deploy_steps(name: str, p: Plan, refs: _Refs) -> list[dict[str, Any]]:
    """Model steps (one per variant), an EndpointConfig step and an Endpoint step (which creates
    the endpoint, or updates it when it exists) from the adapter's endpoint plan."""
    out: list[dict[str, Any]] = []
    variants = p.extra["variants"]
    for v, r in zip(variants, [r for r in p.requests if r.api.endswith(":CreateModel")]):
        body = {k: val for k, val in r.body.items() if k != "ModelName"}
        c = dict(body["PrimaryContainer"])
        m = _TOKEN.fullmatch(str(c.get("ModelDataUrl", "")))
        if m and refs.values[int(m.group(1))][1] == "package":  # a registered model: the package names its image
            c = {"ModelPackageName": c["ModelDataUrl"], **({"Environment": c["Environment"]} if "Environment" in c else {})}
        body["PrimaryContainer"] = c
        out.append({"Name": f"{name}-model-{v}", "Type": "Model", "Arguments": refs.sub(body)})
    cfg = dict(p.request("CreateEndpointConfig").body)
    cfg.pop("EndpointConfigName")
    cfg["ProductionVariants"] = [{**pv, "ModelName": _prop(f"{name}-model-{v}", "ModelName")}
                                 for v, pv in zip(variants, cfg["ProductionVariants"])]
    out.append({"Name": f"{name}-config", "Type": "EndpointConfig", "Arguments": cfg})
    ep = dict(p.request("CreateEndpoint").body)
    ep["EndpointConfigName"] = _prop(f"{name}-config", "EndpointConfigName")
    out.append({"Name": name, "Type": "Endpoint", "Arguments": ep})
    return out
