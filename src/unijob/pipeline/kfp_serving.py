"""Batch and deploy steps of a Vertex pipeline (:mod:`unijob.pipeline.kfp`) as tasks running Google
Cloud Pipeline Components' launchers, with the request bodies the Vertex adapter plans.

Launchers (google-cloud-pipeline-components, ``container/v1/...``, read 2026-11-29 at
kubeflow/pipelines ``7b70c7b9``); each takes ``--type``, ``--project``, ``--location``,
``--payload`` and ``--gcp_resources`` (``gcp_launcher/utils/parser_util.py``):

- ``model.upload_model.launcher`` (``--type UploadModel``, ``--executor_input``, optional
  ``--parent_model_name``): the payload is the ``Model`` body; it outputs the artifact ``model``
  (``google.VertexModel``, ``metadata.resourceName``).
- ``batch_prediction_job.launcher`` (``--type BatchPredictionJob``, ``--executor_input``): the payload
  is the ``BatchPredictionJob`` given to the GAPIC client as a dict, so its keys are snake_case.
- ``endpoint.create_endpoint.launcher`` (``--type CreateEndpoint``, ``--executor_input``): the payload
  is the ``Endpoint`` body, created under a server-chosen id (the launcher sends no ``endpointId``,
  so every run makes a new endpoint); it outputs the artifact ``endpoint`` (``google.VertexEndpoint``).
  With ``targets.vertex.existing_endpoint`` the step creates nothing: an importer task (what
  ``dsl.importer(artifact_uri, artifact_class=VertexEndpoint, metadata={"resourceName": ...})``
  compiles to, as in kubeflow/pipelines ``test_data/sdk_compiled_pipelines/valid/
  pipeline_with_importer_and_gcpc_types.yaml``) gives the deploy tasks that endpoint's artifact, its
  URI and ``resourceName`` as ``VertexEndpoint.create`` sets them (``types/artifact_types.py``).
- ``endpoint.deploy_model.launcher`` (``--type DeployModel``): the payload is the
  ``DeployModelRequest`` (``endpoint``, ``deployed_model``, ``traffic_split``), whose endpoint is
  read from the ``endpoint`` artifact's ``resourceName``, as GCPC's ``ModelDeployOp`` does.

Registered models (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``) are named as Vertex resources
``projects/P/locations/L/models/ID@ALIAS`` (``DeployedModel.model`` and ``BatchPredictionJob.model``
take a version id or alias after ``@``); Cloud Storage models are uploaded by a task first.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional


GCPC = "google_cloud_pipeline_components.container.v1."
ARTIFACT_TYPES = {"model": "google.VertexModel", "endpoint": "google.VertexEndpoint"}
#: Placeholder model URI the adapter plans with in place of a registered model (replaced after).
_STAND_IN = "gs://unijob-registered-model/"


@dataclass
class SubTask:
    """One task of a step: its name suffix ('' for the step's last task, which takes the step's
    name), launcher module, ``--type``, payload, the artifacts it outputs and reads
    (input name -> producer suffix), and the suffixes it depends on."""

    suffix: str
    module: str
    type: str
    payload: Any
    outputs: list[str] = field(default_factory=list)
    reads: dict[str, str] = field(default_factory=dict)
    after: list[str] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)
    executor_input: bool = True
    #: an importer task instead of a launcher: its ``ImporterSpec`` (``artifactUri``, ``typeSchema``, ``metadata``)
    importer: Optional[dict[str, Any]] = None


#: The output key of an importer task (KFP SDK ``dsl/importer_node.py``: ``OUTPUT_KEY``).
IMPORTER_OUTPUT = "artifact"


def endpoint_importer(resource_name: str, location: str) -> SubTask:
    """The ``endpoint`` task that imports an existing endpoint as a ``google.VertexEndpoint`` artifact."""
    uri = f"https://{location}-aiplatform.googleapis.com/v1/{resource_name}"
    spec = {"artifactUri": {"constant": uri}, "metadata": {"resourceName": resource_name},
            "typeSchema": {"schemaTitle": ARTIFACT_TYPES["endpoint"], "schemaVersion": "0.0.1"}}
    return SubTask("endpoint", "", "", uri, outputs=["endpoint"], importer=spec)


def registered(uri: str, parent: str) -> Optional[str]:
    """``models:/NAME@ALIAS`` / ``models:/NAME/VERSION`` as the Vertex model resource name, else None."""
    if not uri.startswith("models:/"):
        return None
    from unijob_adapters.vertex.registry import model_id

    rest = uri[len("models:/"):]
    name, _, version = rest.partition("@") if "@" in rest else rest.rpartition("/")
    return f"{parent}/models/{model_id(name)}@{version}"


def snake(body: Any, _key: str = "") -> Any:
    """camelCase keys as snake_case (map fields such as ``labels`` keep their keys)."""
    if isinstance(body, dict):
        if _key in ("labels", "trafficSplit", "traffic_split"):
            return dict(body)
        return {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): snake(v, k) for k, v in body.items()}
    if isinstance(body, list):
        return [snake(v) for v in body]
    return body


def artifact(name: str) -> str:
    return "{{$.inputs.artifacts['%s'].metadata['resourceName']}}" % name


def _upload(suffix: str, model_body: dict[str, Any]) -> SubTask:
    return SubTask(suffix, "model.upload_model.launcher", "UploadModel", model_body, outputs=["model"])


def batch_tasks(adapter: Any, job_spec: Any, sid: str) -> tuple[list[SubTask], dict[str, str], tuple[str, str]]:
    """The tasks of a batch step, its outputs (``output``, ``job_id``) and (project, location).

    Raises:
        SpecError: the Vertex adapter's own (model, input or output not in Cloud Storage, no
            serving container).
    """
    from unijob_adapters.vertex.plan import resolve_where

    b = job_spec.batch
    where = resolve_where(adapter.options(job_spec))
    parent = f"projects/{where[0]}/locations/{where[1]}"
    ref = registered(str(b.model or ""), parent)
    spec = job_spec.model_copy(update={"batch": b.model_copy(update={"model": _STAND_IN})}) if ref else job_spec
    p = adapter.plan_batch(spec, sid)
    job = dict(p.request("batchPredictionJobs").body)
    tasks: list[SubTask] = []
    if ref:
        job["model"] = ref
    else:
        tasks.append(_upload("model", p.request("models:upload").body["model"]))
        job["model"] = artifact("model")
    tasks.append(SubTask("", "batch_prediction_job.launcher", "BatchPredictionJob", snake(job),
                         reads={"model": "model"} if not ref else {}, after=["model"] if not ref else []))
    return tasks, {"output": b.output, "job_id": job["displayName"]}, where


def deploy_tasks(adapter: Any, ep_spec: Any) -> tuple[list[SubTask], dict[str, str], list[str]]:
    """The tasks of a deploy step: create the endpoint, upload the Cloud Storage variants, then one
    deployModel per variant in the adapter's order (each carries the adapter's traffic split; the
    last gives the spec's). Returns ``(tasks, outputs, notes)``.

    Raises:
        SpecError: the Vertex adapter's own (no serving container, scale to zero, ...).
    """
    from unijob_adapters.vertex.plan import resolve_where

    ep = ep_spec.endpoint
    opts = adapter.options(ep_spec)
    project, location = resolve_where(opts)
    parent = f"projects/{project}/locations/{location}"
    refs: dict[str, str] = {}
    variants = []
    for v in ep.resolved_variants():
        ref = registered(str(v.model or ""), parent)
        if ref:
            refs[v.name] = ref
        variants.append(v)
    if refs:  # plan with stand-in Cloud Storage URIs, then name the registered versions instead
        if ep.variants:
            new = [v.model_copy(update={"model": _STAND_IN + v.name}) if v.name in refs else v for v in ep.variants]
            ep_spec = ep_spec.model_copy(update={"endpoint": ep.model_copy(update={"variants": new})})
        else:
            ep_spec = ep_spec.model_copy(update={"endpoint": ep.model_copy(update={"model": _STAND_IN + variants[0].name})})
    p = adapter.plan_endpoint(ep_spec)
    existing = bool(p.extra.get("existing"))
    if existing:
        tasks = [endpoint_importer(p.extra["endpoint"], location)]
    else:
        tasks = [SubTask("endpoint", "endpoint.create_endpoint.launcher", "CreateEndpoint",
                         next(r.body for r in p.requests if "/endpoints?endpointId=" in r.api), outputs=["endpoint"])]
    uploads = {r.note.split("variant ")[-1]: r.body["model"] for r in p.requests if r.api.endswith("models:upload")}
    deploys = [r for r in p.requests if r.api.endswith(":deployModel")]
    prev = "endpoint"
    for i, r in enumerate(deploys):
        dm = json.loads(json.dumps(r.body))
        variant = dm["deployedModel"]["displayName"]
        reads = {"endpoint": "endpoint"}
        after = [prev]
        if variant in refs:
            dm["deployedModel"]["model"] = refs[variant]
        else:
            tasks.append(_upload(f"{variant}-model", uploads[variant]))
            dm["deployedModel"]["model"] = artifact("model")
            reads["model"] = f"{variant}-model"
            after.append(f"{variant}-model")
        dm = {"endpoint": artifact("endpoint"), **dm}
        suffix = "" if i == len(deploys) - 1 else variant
        tasks.append(SubTask(suffix, "endpoint.deploy_model.launcher", "DeployModel", dm, reads=reads, after=after,
                             executor_input=False))
        prev = suffix
    if existing:
        notes = [f"endpoint {p.extra['endpoint']}: {'; '.join(p.notes)}; every run deploys there (an importer task)"]
    else:
        notes = [f"endpoint {p.name}: {'; '.join(p.notes)}; each run creates a new endpoint (GCPC's create_endpoint "
                 "launcher takes no endpoint id; set targets.vertex.existing_endpoint to deploy to one endpoint)"]
    return tasks, {"endpoint": p.extra["endpoint"] if existing else p.name}, notes
