"""The local target's batch prediction: a ``local:launch`` request whose one process is
:mod:`unijob.batch.runner`, under the same supervisor as training jobs (so ``status``, ``logs``,
``cancel`` and ``list`` work on it alike)."""

from __future__ import annotations

import json
from typing import Any

from unijob.contract import NativeRequest, Plan, PlanResources
from unijob.errors import SpecError
from unijob.local.options import LocalOptions
from unijob.local.plan import build_body, local_path, native_name

API = "local:launch"


def plan_batch(spec: Any, submission_id: str, opts: LocalOptions) -> Plan:
    """The plan of ``spec.batch`` on this machine.

    Raises:
        SpecError: no batch section; an image batch (the local target runs no containers); a
            ``models:/`` model not yet resolved (``unijob batch`` resolves it before planning).
    """
    from unijob.spec import JobSpec

    b = spec.batch
    if b is None:
        raise SpecError.at(("batch",), "this spec has no batch section")
    if b.image:
        raise SpecError.at(("batch", "image"), "the local target runs no containers: give batch.handler "
                                               "(a unijob.serve handler, module:attr or file.py:attr) instead")
    if b.model and b.model.startswith(("models:/", "job:")):
        raise SpecError.at(("batch", "model"), f"{b.model} is resolved by `unijob batch` (or unijob.batch_predict) "
                                               "before planning; plan with the artifact it names")
    runner = JobSpec.model_validate(
        {"name": spec.name, "image": "unijob-batch-runner", "command": ["python"], "max_run": spec.max_run,
         "env": dict(spec.env), "secrets": dict(spec.secrets), "output": b.output},
        context={"base_dir": str(spec.base_dir), "check_paths": False})
    body, notes, warnings = build_body(runner, submission_id, opts.model_copy(update={"run_image_command": True}))
    config = {
        "handler": b.handler, "base_dir": str(spec.base_dir),
        "model": (local_path(spec, b.model) or b.model) if b.model else None,
        "input": local_path(spec, b.input) or b.input, "output": local_path(spec, b.output) or b.output,
        "replicas": b.replicas, "instances_per_request": b.instances_per_request,
        "max_error_fraction": b.max_error_fraction, "parameters": b.parameters,
    }
    body["argv"] = [opts.python, "-u", "-m", "unijob.batch.runner", json.dumps(config, sort_keys=True)]
    body["cwd"] = str(spec.base_dir)
    name = native_name(spec.name, submission_id)
    return Plan(
        target="local", kind="batch", name=name, submission_id=submission_id,
        requests=[NativeRequest(api=API, body=body,
                                note=f"unijob.batch.runner: {b.replicas} worker process(es), "
                                     f"{b.instances_per_request} instances per predict call")],
        resources=PlanResources(service="local", instance_type="localhost", instance_count=1,
                                hours=spec.expected_seconds / 3600.0),
        notes=[n for n in notes if "run_image_command" not in n], warnings=warnings,
        extra={"job_dir": body["job_dir"]},
    )
