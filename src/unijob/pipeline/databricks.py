"""A pipeline as one Databricks multi-task job: ``POST /api/2.2/jobs/create`` (then
``jobs/run-now``), checked by the SDK's ``jobs.JobSettings`` (the body of ``JobsAPI.create``).

Each job step is the task the Databricks adapter plans for that step's spec (its ``new_cluster``,
libraries, ``spark_python_task``), keyed by the step's name, with ``depends_on`` from the DAG. A
``when:`` becomes a ``condition_task`` (one comparison per condition task, so ``a and b`` is a
chain of two) on which the step depends with ``outcome: "true"``; metrics are the task values the
job's code set with ``runtime.log_metrics`` (``{{tasks.STEP.values.NAME}}``), parameters are job
parameters (``{{job.parameters.NAME}}``), ``retries:`` is ``max_retries``, ``schedule:`` a Quartz
cron schedule (Jobs API 2.2, https://docs.databricks.com/api/workspace/jobs/create, and "Add
branching logic with the If/else condition task", read 2026-11-29).

A **batch** step is the task of the one-off run the Databricks adapter plans for it
(:mod:`unijob_adapters.databricks.batch`: the handler mapped over the input files: a process pool
on a single-node cluster, Spark's ``mapInPandas`` across worker nodes).
Register and deploy steps (the reasons: :data:`_REFUSED`), ``or``/``not`` and step states are not
compiled (SpecError naming the step): run such pipelines with ``unijob pipelines run -t databricks``.
"""

from __future__ import annotations

from typing import Any

from unijob.contract import NativeRequest, Plan, PlanResources
from unijob.errors import SpecError
from unijob.pipeline import expr

#: step kind -> why a Databricks job does not run it (shown in the SpecError).
_REFUSED = {
    "register": "register steps are not compiled into a Databricks job: no job task type registers a model, and a "
                "task running registry calls is code the compiled job does not ship",
    "deploy": "deploy steps are not compiled into a Databricks job: no job task type creates a serving endpoint, and "
              "a task calling the serving-endpoints API would need the endpoint's registered model versions, which "
              "only the pipeline run knows (the register step before it)",
}
_OPS = {"==": "EQUAL_TO", "!=": "NOT_EQUAL", "<": "LESS_THAN", "<=": "LESS_THAN_OR_EQUAL",
        ">": "GREATER_THAN", ">=": "GREATER_THAN_OR_EQUAL"}


def _operand(v: Any, where: tuple, step: str) -> str:
    if isinstance(v, expr.Ref):
        p = v.parts
        if p[0] == "params":
            return "{{job.parameters.%s}}" % p[1]
        if p[2] == "metrics":
            return "{{tasks.%s.values.%s}}" % (p[1], p[3])
        raise SpecError.at(where, f"step '{step}': {v} has no Databricks equivalent in a condition")
    return "true" if v is True else "false" if v is False else str(v)


def _comparisons(tree: Any, where: tuple, step: str) -> list[tuple]:
    if isinstance(tree, tuple) and tree[0] == "and":
        return _comparisons(tree[1], where, step) + _comparisons(tree[2], where, step)
    if isinstance(tree, tuple) and tree[0] in _OPS:
        return [tree]
    raise SpecError.at(where, f"step '{step}': a Databricks condition task compares two values; 'or', 'not' and "
                              "bare values are not compiled (write the condition as comparisons joined by 'and')")


def plan_databricks(pipe: Any) -> Plan:
    """The ``jobs/create`` body of a checked pipeline.

    Raises:
        SpecError: a step or condition Databricks jobs cannot express here (naming the step and field).
    """
    from unijob import registry
    from unijob.pipeline import steps as S

    adapter = registry.get("databricks")
    spec = pipe.spec
    tasks: list[dict[str, Any]] = []
    uploads = []
    notes: list[str] = []
    extra: dict[str, Any] = {}
    outputs: dict[str, dict[str, str]] = {}
    for name in pipe.order:
        s = pipe.step(name)
        idx = spec.steps.index(s)
        if s.kind in _REFUSED:
            raise SpecError.at(("steps", idx, s.kind), f"step '{name}': {_REFUSED[s.kind]}; run the pipeline with "
                                                        "`unijob pipelines run -t databricks`")

        def lookup(ref: expr.Ref) -> Any:
            p = ref.parts
            if p[0] == "params":
                return "{{job.parameters.%s}}" % p[1]
            if p[2] == "metrics":
                return "{{tasks.%s.values.%s}}" % (p[1], p[3])
            if p[2] == "outputs" and p[3] in outputs.get(p[1], {}):
                return outputs[p[1]][p[3]]
            raise SpecError.at(("steps", idx, "with"), f"step '{name}': {ref} is known only when the pipeline runs; "
                                                        "a Databricks job passes parameters, task values and the "
                                                        "output locations of job and batch steps that set one")

        try:
            job_spec = S.build_spec(s, pipe.base_dir, lookup, "databricks", spec.targets)
            sid = f"pipeline-{spec.name}-{name}"
            p = adapter.plan_batch(job_spec, sid) if s.kind == "batch" else adapter.plan(job_spec, sid)
        except SpecError as e:
            first = e.issues[0]
            raise SpecError.at(("steps", idx, s.kind), f"step '{name}' on databricks: "
                               f"{'.'.join(map(str, first.loc)) or 'spec'}: {first.message}") from None
        uploads += p.uploads
        extra = extra or dict(p.extra)
        # the adapter's model_artifact of a run is its spec's output location, known here
        out = job_spec.batch.output if s.kind == "batch" else job_spec.output
        if out:
            outputs[name] = {"output": out} if s.kind == "batch" else {"output": out, "model": out}
        task = dict(p.requests[0].body["tasks"][0])
        task["task_key"] = name
        depends = [{"task_key": d} for d in pipe.deps[name]]
        if s.when:
            chain_prev = None
            for i, (op, left, right) in enumerate(_comparisons(expr.parse(s.when), ("steps", idx, "when"), name)):
                key = f"{name}-if" + (f"-{i + 1}" if i else "")
                cond = {"task_key": key, "condition_task": {"op": _OPS[op],
                                                             "left": _operand(left, ("steps", idx, "when"), name),
                                                             "right": _operand(right, ("steps", idx, "when"), name)}}
                cond["depends_on"] = [{"task_key": chain_prev, "outcome": "true"}] if chain_prev else list(depends)
                tasks.append(cond)
                chain_prev = key
            depends = [{"task_key": chain_prev, "outcome": "true"}]
        if depends:
            task["depends_on"] = depends
        if s.retries:
            task["max_retries"] = s.retries
        tasks.append(task)
    body: dict[str, Any] = {"name": spec.name, "tasks": tasks, "tags": {"unijob-pipeline": spec.name}}
    if spec.parameters:
        body["parameters"] = [{"name": k, "default": str(v).lower() if isinstance(v, bool) else str(v)}
                              for k, v in spec.parameters.items()]
    if spec.schedule:
        minute, hour, dom, month, dow = spec.schedule.split()
        # Quartz: seconds first; one of day-of-month / day-of-week is '?'; weekdays 1-7 from Sunday
        # (cron's 0-7 from Sunday, 7 = Sunday again)
        import re

        dow = re.sub(r"\d+", lambda m: str(int(m.group()) % 7 + 1), dow)
        dom, dow = (dom, "?") if dow == "*" else ("?", dow)
        body["schedule"] = {"quartz_cron_expression": f"0 {minute} {hour} {dom} {month} {dow}", "timezone_id": "UTC"}
    check_create_body(body)
    return Plan(target="databricks", kind="pipeline", name=spec.name, submission_id="pipeline",
                requests=[NativeRequest(api="POST /api/2.2/jobs/create", body=body, note=f"{len(tasks)} tasks"),
                          NativeRequest(api="POST /api/2.2/jobs/run-now", body={"job_id": "<from jobs/create>"},
                                        note="start a run")],
                uploads=uploads, resources=PlanResources(service="databricks-jobs"), notes=notes, extra=extra)


def check_create_body(body: dict[str, Any]) -> None:
    """Round-trip ``body`` through the SDK's ``jobs.JobSettings`` (where databricks-sdk is installed):
    what it drops or changes is a field the API does not take.

    Raises:
        ValueError: the round trip changes the body.
    """
    from unijob.errors import NotReady

    try:
        from unijob_adapters.databricks.plan import sdk

        jobs, _ = sdk()  # the SDK's types as cached stand-ins: importing databricks.sdk takes seconds
    except NotReady:
        return
    again = jobs.JobSettings.from_dict(body).as_dict()
    if again != body:
        lost = [t.get("task_key") for t, u in zip(body.get("tasks", []), again.get("tasks", [])) if t != u]
        raise ValueError(f"jobs/create body changed in the SDK's round trip (tasks {lost}; keys "
                         f"{sorted(set(body) ^ set(again))})")
