"""Managed pipeline runs: the pipeline compiled for a target (:mod:`unijob.pipeline.compile`) and
handed to that platform's own pipeline service, which runs the steps (``unijob pipelines run
--managed``). Unlike :mod:`unijob.pipeline.runs` nothing runs on this machine after submission.

Targets offer it through an adapter method ``submit_pipeline(plan, params) -> dict`` (SageMaker:
CreatePipeline or UpdatePipeline, then StartPipelineExecution).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from unijob.errors import UsageError


def check_params(pipe: Any, params: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """``params`` checked against the pipeline's declared parameters, each of its declared type
    (``"5"`` for an int parameter is 5).

    Raises:
        UsageError: an undeclared parameter, or a value that is not of the declared type.
    """
    out = dict(params or {})
    unknown = sorted(set(out) - set(pipe.spec.parameters))
    if unknown:
        raise UsageError(f"unknown parameter(s) {', '.join(unknown)}; the pipeline declares "
                         f"{', '.join(sorted(pipe.spec.parameters)) or 'none'}")
    for k, v in out.items():
        declared = pipe.spec.parameters[k]
        if isinstance(v, str) and not isinstance(declared, str):
            try:
                v = json.loads(v)
            except ValueError:
                v = None
        ok = isinstance(v, type(declared)) or (isinstance(declared, float) and isinstance(v, int))
        if not ok or (isinstance(v, bool) and not isinstance(declared, bool)):
            raise UsageError(f"parameter {k}: expected a {type(declared).__name__}, got {params[k]!r}")  # type: ignore[index]
        out[k] = v
    return out


def start(pipeline: Union[str, Path, Any], target: str, params: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Compile ``pipeline`` for ``target`` and start it on the platform's pipeline service.

    Returns:
        what the target reports, e.g. ``{"pipeline": ARN, "execution": ARN}`` on SageMaker.

    Raises:
        SpecError: the pipeline does not load, or the target cannot express it (nothing is sent).
        UsageError: bad parameters, or a target without a managed pipeline service here.
        NotReady / TargetError: from the platform.
    """
    from unijob import registry
    from unijob.errors import SpecError
    from unijob.pipeline.compile import plan_pipeline
    from unijob.pipeline.loading import Pipeline, load_pipeline

    pipe = pipeline if isinstance(pipeline, Pipeline) else load_pipeline(pipeline)
    values = check_params(pipe, params)
    adapter = registry.get(target)
    submit = getattr(adapter, "submit_pipeline", None)
    if submit is None:
        raise UsageError(f"target '{target}' has no managed pipeline runs in unijob; run the pipeline without "
                         "--managed (the DAG runner on this machine sends each step to the target)")
    try:
        plan = plan_pipeline(pipe, target)
    except SpecError as e:
        raise (e.locate(pipe.locate) if pipe.locate else e) from None
    return submit(plan, values)
