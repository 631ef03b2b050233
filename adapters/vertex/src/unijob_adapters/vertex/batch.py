"""Batch prediction on Vertex AI: ``models:upload`` (the serving container and the artifact) then a
``BatchPredictionJob`` reading JSON Lines from Cloud Storage.

Body (``google.cloud.aiplatform.v1.BatchPredictionJob``, checked by the ``aiplatform_v1`` types;
https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.batchPredictionJobs,
read 2026-11-29): ``inputConfig`` (``instancesFormat: jsonl``, ``gcsSource.uris``),
``outputConfig`` (``predictionsFormat: jsonl``, ``gcsDestination.outputUriPrefix``),
``dedicatedResources`` (machine spec, ``startingReplicaCount`` = ``maxReplicaCount`` =
``batch.replicas``) and ``manualBatchTuningParameters.batchSize`` = ``batch.instances_per_request``.
Vertex sends ``{"instances": [...]}`` to the container's predict route, which ``unijob.serve``
answers; its output lines are Vertex's own ``{"instance", "prediction"}`` objects.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from unijob.contract import NativeRequest, Plan, PlanResources
from unijob.errors import SpecError

from unijob_adapters.vertex import machines
from unijob_adapters.vertex.options import VertexOptions
from unijob_adapters.vertex.plan import TARGET, resolve_where
from unijob_adapters.vertex.validate import rest_json


def _ident(text: str, limit: int = 63) -> str:
    return "".join(c if c.isalnum() or c == "-" else "-" for c in text.lower())[:limit].strip("-")


def plan_batch(spec: Any, submission_id: str, opts: VertexOptions) -> Plan:
    """models:upload + batchPredictionJobs.create for ``spec.batch`` (pure).

    Raises:
        SpecError: model, input or output not in Cloud Storage; a handler batch without
            ``targets.vertex.serving_image``; an accelerator Vertex lacks.
    """
    from unijob.serve.config import DEFAULT_PORT

    b = spec.batch
    if b is None:
        raise SpecError.at(("batch",), "this spec has no batch section")
    for field in ("model", "input", "output"):
        value = getattr(b, field) or ""
        if not value.startswith("gs://"):
            raise SpecError.at(("batch", field), f"Vertex batch prediction reads and writes Cloud Storage (gs://...); got '{value}'")
    project, location = resolve_where(opts)
    parent = f"projects/{project}/locations/{location}"
    env = dict(spec.env)
    container: dict[str, Any] = {}
    if b.image:
        container["image_uri"] = b.image
    elif opts.serving_image:
        env["UNIJOB_HANDLER"] = b.handler
        container.update(image_uri=opts.serving_image, ports=[{"container_port": DEFAULT_PORT}])
    else:
        raise SpecError.at(("batch", "handler"), "a Vertex model needs a serving container: set targets.vertex.serving_image "
                                                 "(the unijob serving image, `unijob serve-image`) or give batch.image")
    container["env"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    digest = hashlib.sha256(json.dumps([b.model, container], sort_keys=True).encode()).hexdigest()[:8]
    model_id = _ident(f"{spec.name}-batch-{digest}")
    model_name = f"{parent}/models/{model_id}"
    labels = {"unijob-batch": _ident(spec.name), **dict(spec.labels)}
    upload = rest_json("UploadModelRequest", {"parent": parent, "model_id": model_id, "model": {
        "display_name": model_id, "artifact_uri": b.model, "container_spec": container, "labels": labels}})
    upload.pop("parent", None)
    machine = machines.choose(b.accelerator, b.instance_type, loc=("batch",))
    name = _ident(f"{spec.name}-{hashlib.sha256(submission_id.encode()).hexdigest()[:8]}")
    job = {
        "display_name": name, "model": model_name, "labels": {**labels, "unijob-submission": name},
        "input_config": {"instances_format": "jsonl", "gcs_source": {"uris": [b.input]}},
        "output_config": {"predictions_format": "jsonl", "gcs_destination": {"output_uri_prefix": b.output}},
        "dedicated_resources": {"machine_spec": machine.spec(), "starting_replica_count": b.replicas,
                                "max_replica_count": b.replicas},
        "manual_batch_tuning_parameters": {"batch_size": b.instances_per_request},
    }
    if opts.service_account:
        job["service_account"] = opts.service_account
    return Plan(
        target=TARGET, kind="batch", name=name, submission_id=submission_id,
        requests=[NativeRequest(api=f"POST /v1/{parent}/models:upload", body=upload, note=f"model {model_id}"),
                  NativeRequest(api=f"POST /v1/{parent}/batchPredictionJobs", body=rest_json("BatchPredictionJob", job),
                                note=f"{b.replicas} x {machine.machine_type}, JSON Lines, batch size {b.instances_per_request}")],
        resources=PlanResources(service="vertex-prediction", region=location, instance_type=machine.machine_type,
                                instance_count=b.replicas, accelerator=machine.accelerator,
                                accelerators_per_node=machine.accelerator_count, hours=spec.expected_seconds / 3600.0),
        notes=["the error budget (batch.max_error_fraction) is unijob's; Vertex reports failed instances in its "
               "errors_*.jsonl files and does not fail the job for them"],
        extra={"project": project, "location": location, "kind": "batch"},
    )
