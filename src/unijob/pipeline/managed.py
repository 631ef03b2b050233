"""Managed pipeline runs: the pipeline compiled for a target (:mod:`unijob.pipeline.compile`) and
handed to that platform's own pipeline service, which runs the steps (``unijob pipelines run
--managed``). Unlike :mod:`unijob.pipeline.runs` nothing runs on this machine after submission.

Targets offer it through adapter methods ``submit_pipeline(plan, params) -> dict`` (SageMaker:
CreatePipeline or UpdatePipeline, then StartPipelineExecution) and ``pipeline_execution(id) ->
dict`` (SageMaker: DescribePipelineExecution, DescribePipelineDefinitionForExecution,
ListPipelineExecutionSteps), which :func:`execution` wraps as a :class:`ManagedRun`::

    import unijob
    out = unijob.start_managed_pipeline("pipeline.yaml", "sagemaker", {"epochs": 5})
    r = unijob.pipeline_execution(out["execution"])
    r.wait(timeout=3600); r.state, r.steps["train"]["job_id"]
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from unijob.errors import UsageError

#: The run states in which a managed execution has ended (those of :mod:`unijob.pipeline.runs`).
FINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


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


def target_of(execution_id: str) -> str:
    """The target whose pipeline service owns ``execution_id``: ``sagemaker`` for
    ``arn:aws:sagemaker:REGION:ACCOUNT:pipeline/NAME/execution/ID``.

    Raises:
        UsageError: not a pipeline execution id unijob knows.
    """
    parts = execution_id.split(":")
    if len(parts) >= 6 and parts[0] == "arn" and parts[2] == "sagemaker" and "/execution/" in parts[5]:
        return "sagemaker"
    raise UsageError(f"{execution_id!r} is not a managed pipeline execution (expected a SageMaker pipeline "
                     "execution ARN, arn:aws:sagemaker:REGION:ACCOUNT:pipeline/NAME/execution/ID)")


class ManagedRun:
    """One execution on a platform's pipeline service; attributes are those of the last :meth:`status`.

    Attributes:
        id: the execution id (SageMaker: its ARN). target. name: the pipeline's name.
        state: RUNNING, SUCCEEDED, FAILED or CANCELLED. native_status: the platform's own status
        (SageMaker ``PipelineExecutionStatus``). message: the platform's failure reason.
        steps: platform step name -> {state, status, type, job_id, attempts, message, started_at,
        ended_at}; the same keys as :attr:`unijob.pipeline.runs.PipelineRun.steps` where they apply.
        warnings: what could not be read (e.g. the step list, for lack of permission).
    """

    def __init__(self, execution_id: str, target: str) -> None:
        self.id, self.target = execution_id, target
        self.status()

    def __repr__(self) -> str:
        return f"ManagedRun(id={self.id!r}, state={self.state!r})"

    def status(self) -> "ManagedRun":
        """Ask the platform again.

        Raises:
            NotFound: no such execution. TargetError / NotReady: from the platform.
        """
        from unijob import registry

        d = registry.get(self.target).pipeline_execution(self.id)
        self._data = d
        self.name, self.state, self.native_status = d["name"], d["state"], d["status"]
        self.message, self.steps, self.warnings = d.get("message", ""), d["steps"], d.get("warnings", [])
        return self

    def wait(self, timeout: Optional[float] = None, interval: float = 30.0, on_change: Any = None) -> str:
        """Poll until the execution ends; returns its state. ``on_change(run)`` is called whenever a
        step's state changes (the CLI prints a line).

        Raises:
            TimeoutError: still running after ``timeout`` seconds.
        """
        start, last = time.monotonic(), None
        while True:
            seen = (self.state, tuple((n, s["state"]) for n, s in self.steps.items()))
            if on_change is not None and seen != last:
                on_change(self)
            last = seen
            if self.state in FINAL:
                return self.state
            if timeout is not None and time.monotonic() - start > timeout:
                raise TimeoutError(f"pipeline execution {self.id} still {self.state} after {timeout} s")
            time.sleep(interval)
            self.status()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "target": self.target, "name": self.name, "state": self.state,
                "status": self.native_status, "message": self.message, "steps": self.steps,
                "warnings": self.warnings, "pipeline": self._data.get("pipeline")}


def execution(execution_id: str, target: Optional[str] = None) -> ManagedRun:
    """The managed execution ``execution_id`` (e.g. the ``execution`` :func:`start` returned).

    Raises:
        UsageError: not an execution id, or the target has no managed runs here.
        NotFound: no such execution. TargetError / NotReady: from the platform.
    """
    from unijob import registry

    target = target or target_of(execution_id)
    if getattr(registry.get(target), "pipeline_execution", None) is None:
        raise UsageError(f"target '{target}' has no managed pipeline runs in unijob")
    return ManagedRun(execution_id, target)
