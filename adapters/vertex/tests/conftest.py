"""A local fake of the Vertex AI, Cloud Logging and Cloud Storage REST APIs, and fixtures.

The fake answers the REST paths the ``google.cloud.aiplatform_v1`` GAPIC clients (REST transport)
really call, and parses every request body with the ``aiplatform_v1`` types with
``ignore_unknown_fields=False``: a malformed request is answered 400 and recorded in
``fake.errors``. It keeps state: custom jobs move QUEUED -> RUNNING -> SUCCEEDED/FAILED when a
test says so (:meth:`FakeVertex.set_state`); models, endpoints and deployed models live until
deleted; long-running operations answer ``done: false`` once, then ``done: true``. ``:predict`` on
an endpoint picks a deployed model by the endpoint's ``trafficSplit`` (seeded, so reproducible)
and answers with :attr:`FakeVertex.predictor`'s predictions in a ``PredictResponse``.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import sys
from datetime import datetime, timezone
from typing import Any, Optional

import pytest

from unijob.testing.httpfake import FakeServer, Request, Response

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))  # pytest runs with --import-mode=importlib
from vertex_fake_batch import FakeBatchPrediction  # noqa: E402

P = r"/v1/projects/(?P<p>[^/]+)/locations/(?P<l>[^/]+)"
JOB_FINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
LOG_REQUEST_KEYS = {"resourceNames", "filter", "orderBy", "pageSize", "pageToken", "projectIds"}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _err(code: int, status: str, message: str) -> Response:
    return Response(code, {"error": {"code": code, "status": status, "message": message}})


class FakeVertex(FakeBatchPrediction, FakeServer):
    """State: ``jobs`` (name -> CustomJob JSON), ``batch_jobs`` (see :mod:`vertex_fake_batch`),
    ``models``, ``endpoints``, ``operations``, ``logs`` (job id -> entries), ``objects``
    (gs://bucket/name -> bytes)."""

    def __init__(self) -> None:
        super().__init__()
        from google.cloud import aiplatform_v1 as aip

        self.aip = aip
        self.reset()
        r = self.route
        r("POST", P + r"/customJobs", self.create_job)
        r("GET", P + r"/customJobs", self.list_jobs)
        r("GET", P + r"/customJobs/(?P<id>\d+)", self.get_job)
        r("POST", P + r"/customJobs/(?P<id>\d+):cancel", self.cancel_job)
        r("POST", P + r"/models:upload", self.upload_model)
        r("GET", P + r"/models", self.list_models)
        r("GET", P + r"/models/(?P<id>[^/:]+)", self.get_model)
        r("GET", P + r"/models/(?P<id>[^/:@]+):listVersions", self.list_versions)
        r("POST", P + r"/models/(?P<id>[^/:]+):mergeVersionAliases", self.merge_aliases)
        r("PATCH", P + r"/models/(?P<id>[^/:]+)", self.patch_model)
        r("DELETE", P + r"/models/(?P<id>[^/:]+)", self.delete_model)
        r("POST", P + r"/endpoints", self.create_endpoint)
        r("GET", P + r"/endpoints/(?P<id>[^/:]+)", self.get_endpoint)
        r("PATCH", P + r"/endpoints/(?P<id>[^/:]+)", self.update_endpoint)
        r("DELETE", P + r"/endpoints/(?P<id>[^/:]+)", self.delete_endpoint)
        r("POST", P + r"/endpoints/(?P<id>[^/:]+):deployModel", self.deploy_model)
        r("POST", P + r"/endpoints/(?P<id>[^/:]+):undeployModel", self.undeploy_model)
        r("POST", P + r"/endpoints/(?P<id>[^/:]+):predict", self.predict)
        r("GET", r"/(?:v1|ui)/(?P<name>projects/[^/]+/locations/[^/]+/operations/\d+)", self.get_operation)
        self.batch_routes()
        r("POST", r"/v2/entries:list", self.list_entries)
        r("GET", r"/storage/v1/b/(?P<b>[^/]+)/o", self.list_objects)
        r("GET", r"/storage/v1/b/(?P<b>[^/]+)/o/(?P<o>.+)", self.get_object)
        r("POST", r"/upload/storage/v1/b/(?P<b>[^/]+)/o", self.put_object)

    def reset(self) -> None:
        """Forget all state, recorded requests, errors and pending injected failures (running
        batch prediction jobs are cancelled and waited for first)."""
        self.batch_reset()
        with self.lock:
            self.requests, self.errors, self._failures = [], [], []
            self.jobs: dict[str, dict] = {}
            self.models: dict[str, dict] = {}
            self.versions: dict[str, list[dict]] = {}
            self.merge_moves_aliases = True
            self.endpoints: dict[str, dict] = {}
            self.operations: dict[str, dict] = {}
            self.logs: dict[str, list[dict]] = {}
            self.objects: dict[str, bytes] = {}
            self.created_jobs = 0
            self._ids = itertools.count(1000)
            self._traffic = random.Random(0)
            self.predictor = echo_predictor

    # ---- helpers ------------------------------------------------------------------------------

    def parse(self, cls: Any, req: Request, **path_fields: Any) -> Any:
        """The body as ``cls`` (unknown fields raise -> 400 + fake.errors)."""
        msg = cls.from_json(req.text or "{}", ignore_unknown_fields=False)
        for k, v in path_fields.items():
            setattr(msg, k, v)
        return msg

    def dump(self, msg: Any) -> dict:
        return json.loads(type(msg).to_json(msg, use_integers_for_enums=False,
                                            always_print_fields_with_no_presence=False))

    def _operation(self, parent: str, response_type: str, response: dict) -> Response:
        name = f"{parent}/operations/{next(self._ids)}"
        self.operations[name] = {"polls": 0, "response": {"@type": f"type.googleapis.com/{response_type}", **response}}
        return Response(200, {"name": name, "done": False})

    # ---- custom jobs --------------------------------------------------------------------------

    def create_job(self, req: Request) -> Response:
        job = self.parse(self.aip.CustomJob, req)
        if not job.display_name or not job.job_spec.worker_pool_specs:
            return _err(400, "INVALID_ARGUMENT", "display_name and worker_pool_specs are required")
        if job.job_spec.worker_pool_specs[0].replica_count != 1:
            return _err(400, "INVALID_ARGUMENT", "workerPoolSpecs[0] (the chief) must have replicaCount 1")
        for pool in job.job_spec.worker_pool_specs:
            ms = pool.machine_spec
            if ms.accelerator_count and ms.accelerator_type.name == "ACCELERATOR_TYPE_UNSPECIFIED":
                return _err(400, "INVALID_ARGUMENT", "acceleratorCount without acceleratorType")
        job.name = f"projects/{req.params['p']}/locations/{req.params['l']}/customJobs/{next(self._ids)}"
        job.state = self.aip.JobState.JOB_STATE_QUEUED
        body = self.dump(job)
        body["createTime"] = _now()
        self.jobs[job.name] = body
        self.created_jobs += 1
        return Response(200, body)

    def list_jobs(self, req: Request) -> Response:
        flt = req.arg("filter") or ""
        conds = dict(re.findall(r'([\w.]+)="([^"]*)"', flt))
        leftover = re.sub(r'([\w.]+)="([^"]*)"|\bAND\b|\s', "", flt)
        if leftover:
            return _err(400, "INVALID_ARGUMENT", f"unsupported filter {flt!r}")
        prefix = f"projects/{req.params['p']}/locations/{req.params['l']}/"
        out = []
        for name, job in self.jobs.items():
            if not name.startswith(prefix):
                continue
            ok = all((job.get("displayName") == v) if k == "display_name" else
                     (job.get("labels", {}).get(k[len("labels."):]) == v) if k.startswith("labels.") else False
                     for k, v in conds.items())
            if ok:
                out.append(job)
        return Response(200, {"customJobs": out} if out else {})

    def get_job(self, req: Request) -> Response:
        name = req.path[len("/v1/"):]
        return Response(200, self.jobs[name]) if name in self.jobs else _err(404, "NOT_FOUND", f"{name} not found")

    def cancel_job(self, req: Request) -> Response:
        name = req.path[len("/v1/"):-len(":cancel")]
        if name not in self.jobs:
            return _err(404, "NOT_FOUND", f"{name} not found")
        if self.jobs[name]["state"] in JOB_FINAL:
            return _err(400, "FAILED_PRECONDITION", "the job is already finished")
        self.set_state(name, "JOB_STATE_CANCELLED")
        return Response(200, {})

    def set_state(self, name: str, state: str, *, error: Optional[tuple[int, str]] = None, started: bool = False) -> None:
        """Move a job (as a test directs): e.g. ``set_state(n, "JOB_STATE_FAILED", error=(8, "stockout"))``."""
        self.aip.JobState[state]  # a real state name or KeyError
        with self.lock:
            job = self.jobs[name]
            job["state"] = state
            if state == "JOB_STATE_RUNNING" or started:
                job.setdefault("startTime", _now())
            if state in JOB_FINAL:
                job["endTime"] = _now()
            if error:
                job["error"] = {"code": error[0], "message": error[1]}

    # ---- models -------------------------------------------------------------------------------

    def upload_model(self, req: Request) -> Response:
        """``models:upload``: a new model (version 1, alias ``default``), or with ``parentModel`` the
        next version of that model (``UploadModelRequest``: "Only specify this field when uploading
        a new version"); ``versionAliases`` move from the other versions."""
        parent = f"projects/{req.params['p']}/locations/{req.params['l']}"
        up = self.parse(self.aip.UploadModelRequest, req, parent=parent)
        if not up.model.container_spec.image_uri or not up.model.display_name:
            return _err(400, "INVALID_ARGUMENT", "model.containerSpec.imageUri and displayName are required")
        problem = self._check_labels(dict(up.model.labels)) or self._check_aliases(list(up.model.version_aliases))
        if problem:
            return _err(400, "INVALID_ARGUMENT", problem)
        model = self.dump(up.model)
        if up.parent_model:
            if up.model_id:
                return _err(400, "INVALID_ARGUMENT", "model_id cannot be set with parent_model")
            if up.parent_model not in self.models:
                return _err(404, "NOT_FOUND", f"parent model {up.parent_model} not found")
            name, versions = up.parent_model, self.versions.setdefault(up.parent_model, [self.models[up.parent_model]])
            for a in up.model.version_aliases:
                for v in versions:
                    v["versionAliases"] = [x for x in v.get("versionAliases", []) if x != a]
        else:
            if up.model_id and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,62}", up.model_id):
                return _err(400, "INVALID_ARGUMENT", f"invalid model_id {up.model_id!r}")
            name = f"{parent}/models/{up.model_id or next(self._ids)}"
            if name in self.models:
                return _err(409, "ALREADY_EXISTS", f"{name} exists")
            versions = self.versions.setdefault(name, [])
            model["versionAliases"] = ["default", *model.get("versionAliases", [])]
        model.update(name=name, versionId=str(len(versions) + 1), versionCreateTime=_now())
        versions.append(model)
        self.models.setdefault(name, model)
        return self._operation(parent, "google.cloud.aiplatform.v1.UploadModelResponse",
                               {"model": name, "modelVersionId": model["versionId"]})

    @staticmethod
    def _check_labels(labels: dict) -> Optional[str]:
        """Vertex label rules: keys start with a lowercase letter; keys and values up to 63 of
        ``[a-z0-9_-]`` (https://cloud.google.com/vertex-ai/docs/general/labels)."""
        bad = [k for k, v in labels.items()
               if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", k) or not re.fullmatch(r"[a-z0-9_-]{0,63}", v)]
        return f"invalid labels {bad}" if bad else None

    @staticmethod
    def _check_aliases(aliases: list) -> Optional[str]:
        """``versionAliases``: ``[a-z][a-zA-Z0-9-]{0,126}[a-z-0-9]`` (a ``-`` prefix removes)."""
        bad = [a for a in aliases if not re.fullmatch(r"-?[a-z][a-zA-Z0-9-]{0,126}[a-z0-9-]", a)]
        return f"invalid version aliases {bad}" if bad else None

    def _model_version(self, req: Request) -> tuple[str, Optional[dict]]:
        """``models/{id}`` (the default version) or ``models/{id}@{version id or alias}``."""
        from urllib.parse import unquote

        ref = unquote(req.params["id"])
        base, _, at = ref.partition("@")
        name = f"projects/{req.params['p']}/locations/{req.params['l']}/models/{base}"
        versions = self.versions.get(name) or ([self.models[name]] if name in self.models else [])
        at = at or "default"
        found = next((v for v in versions if at in (v.get("versionId"), *v.get("versionAliases", []))), None)
        return name, found

    def get_model(self, req: Request) -> Response:
        name, model = self._model_version(req)
        if model is None and name in self.models and "@" not in req.params["id"].replace("%40", "@"):
            model = self.models[name]  # a model uploaded before versions were tracked
        return Response(200, model) if model else _err(404, "NOT_FOUND", f"{name}@{req.params['id']} not found")

    def list_models(self, req: Request) -> Response:
        """``models.list``: one entry (the default version) per model; only the
        ``labels.KEY:*`` (key existence) filter is understood."""
        flt = req.arg("filter") or ""
        m = re.fullmatch(r"labels\.([a-z][a-z0-9_-]*):\*", flt)
        if flt and not m:
            return _err(400, "INVALID_ARGUMENT", f"unsupported filter {flt!r}")
        prefix = f"projects/{req.params['p']}/locations/{req.params['l']}/models/"
        out = []
        for name, model in self.models.items():
            versions = self.versions.get(name) or [model]
            default = next((v for v in versions if "default" in v.get("versionAliases", [])), model)
            if name.startswith(prefix) and (not m or any(m.group(1) in v.get("labels", {}) for v in versions)):
                out.append(default)
        return Response(200, {"models": out} if out else {})

    def list_versions(self, req: Request) -> Response:
        """``GET models/{id}:listVersions``: every query parameter must be a ``ListModelVersionsRequest``
        field (camelCase) or the transport's ``$alt``."""
        fields = {self._camel(f) for f in self.aip.ListModelVersionsRequest.meta.fields} - {"name"}
        unknown = set(req.query) - fields - {"$alt"}
        if unknown:
            return _err(400, "INVALID_ARGUMENT", f"unknown query parameters {sorted(unknown)}")
        name = f"projects/{req.params['p']}/locations/{req.params['l']}/models/{req.params['id']}"
        if name not in self.models:
            return _err(404, "NOT_FOUND", f"{name} not found")
        return Response(200, {"models": self.versions.get(name) or [self.models[name]]})

    @staticmethod
    def _camel(field: str) -> str:
        head, *rest = field.split("_")
        return head + "".join(w.title() for w in rest)

    def merge_aliases(self, req: Request) -> Response:
        """``mergeVersionAliases`` on ``models/{id}@{version id}``: ``alias`` adds (and, as the
        model-alias guide says, takes it off the version that had it, unless
        :attr:`merge_moves_aliases` is False), ``-alias`` removes; ``default`` cannot be removed."""
        name, version = self._model_version(req)
        mv = self.parse(self.aip.MergeVersionAliasesRequest, req, name=f"{name}@{req.params['id']}")
        if not re.fullmatch(r"[^@]+@\d+", req.params["id"].replace("%40", "@")):
            return _err(400, "INVALID_ARGUMENT", "the name must include a version id (models/{model}@1234)")
        if version is None:
            return _err(404, "NOT_FOUND", f"{name}@{req.params['id']} not found")
        problem = self._check_aliases(list(mv.version_aliases))
        if problem or "-default" in mv.version_aliases:
            return _err(400, "INVALID_ARGUMENT", problem or "one version must carry the default alias")
        aliases = list(version.get("versionAliases", []))
        for a in mv.version_aliases:
            if a.startswith("-"):
                aliases = [x for x in aliases if x != a[1:]]
            elif a not in aliases:
                if self.merge_moves_aliases:
                    for v in self.versions.get(name, []):
                        v["versionAliases"] = [x for x in v.get("versionAliases", []) if x != a]
                aliases.append(a)
        version["versionAliases"] = aliases
        return Response(200, version)

    def patch_model(self, req: Request) -> Response:
        """``models.patch`` of one version's ``labels`` (``updateMask=labels``; the path names
        ``models/{id}@{version}``)."""
        name, version = self._model_version(req)
        if version is None:
            return _err(404, "NOT_FOUND", f"{name}@{req.params['id']} not found")
        body = self.parse(self.aip.Model, req)
        mask = req.arg("updateMask") or req.arg("update_mask") or ""
        if mask != "labels":
            return _err(400, "INVALID_ARGUMENT", f"unsupported update mask {mask!r}")
        from urllib.parse import unquote

        if "@" not in unquote(req.params["id"]):
            return _err(400, "INVALID_ARGUMENT", "labels of a version: the name must include @version")
        if body.name and body.name != f"{name}@{unquote(req.params['id']).partition('@')[2]}":  # the transport moves
            return _err(400, "FAILED_PRECONDITION", f"model.name {body.name!r} does not match the path")  # it to the path
        problem = self._check_labels(dict(body.labels))
        if problem:
            return _err(400, "INVALID_ARGUMENT", problem)
        version["labels"] = dict(body.labels)
        return Response(200, version)

    def delete_model(self, req: Request) -> Response:
        name = req.path[len("/v1/"):]
        if name not in self.models:
            return _err(404, "NOT_FOUND", name)
        if any(d["model"] == name for ep in self.endpoints.values() for d in ep.get("deployedModels", [])):
            return _err(400, "FAILED_PRECONDITION", "the model is deployed to an endpoint")
        del self.models[name]
        self.versions.pop(name, None)
        return self._operation(name.rsplit("/models/", 1)[0], "google.protobuf.Empty", {})

    # ---- endpoints ----------------------------------------------------------------------------

    def create_endpoint(self, req: Request) -> Response:
        parent = f"projects/{req.params['p']}/locations/{req.params['l']}"
        ep = self.parse(self.aip.Endpoint, req)
        eid = req.arg("endpointId") or str(next(self._ids))
        name = f"{parent}/endpoints/{eid}"
        if name in self.endpoints:
            return _err(409, "ALREADY_EXISTS", name)
        ep.name = name
        self.endpoints[name] = self.dump(ep)
        return self._operation(parent, "google.cloud.aiplatform.v1.Endpoint", self.endpoints[name])

    def _endpoint(self, req: Request) -> tuple[str, Optional[dict]]:
        name = f"projects/{req.params['p']}/locations/{req.params['l']}/endpoints/{req.params['id']}"
        return name, self.endpoints.get(name)

    def get_endpoint(self, req: Request) -> Response:
        name, ep = self._endpoint(req)
        return Response(200, ep) if ep else _err(404, "NOT_FOUND", name)

    @staticmethod
    def _check_split(split: dict, ids: set[str]) -> Optional[str]:
        if split and sum(int(v) for v in split.values()) != 100:
            return f"traffic split must sum to 100, got {split}"
        unknown = set(split) - ids
        return f"traffic split names unknown deployed models {sorted(unknown)}" if unknown else None

    def update_endpoint(self, req: Request) -> Response:
        name, ep = self._endpoint(req)
        if not ep:
            return _err(404, "NOT_FOUND", name)
        mask = req.arg("updateMask") or req.arg("update_mask") or ""
        new = self.parse(self.aip.Endpoint, req)
        if mask not in ("trafficSplit", "traffic_split"):
            return _err(400, "INVALID_ARGUMENT", f"unsupported update mask {mask!r}")
        split = dict(new.traffic_split)
        problem = self._check_split(split, {d["id"] for d in ep.get("deployedModels", [])})
        if problem:
            return _err(400, "INVALID_ARGUMENT", problem)
        ep["trafficSplit"] = split
        return Response(200, ep)

    def delete_endpoint(self, req: Request) -> Response:
        name, ep = self._endpoint(req)
        if not ep:
            return _err(404, "NOT_FOUND", name)
        if ep.get("deployedModels"):
            return _err(400, "FAILED_PRECONDITION", "undeploy the deployed models first")
        del self.endpoints[name]
        return self._operation(name.rsplit("/endpoints/", 1)[0], "google.protobuf.Empty", {})

    def deploy_model(self, req: Request) -> Response:
        name, ep = self._endpoint(req)
        if not ep:
            return _err(404, "NOT_FOUND", name)
        dm = self.parse(self.aip.DeployModelRequest, req, endpoint=name)
        d = dm.deployed_model
        if d.model not in self.models:
            return _err(400, "INVALID_ARGUMENT", f"model {d.model} does not exist")
        res = d.dedicated_resources
        if res.min_replica_count < 1 or res.max_replica_count < res.min_replica_count:
            return _err(400, "INVALID_ARGUMENT", "dedicatedResources.minReplicaCount must be >= 1 and <= maxReplicaCount")
        if not res.machine_spec.machine_type:
            return _err(400, "INVALID_ARGUMENT", "dedicatedResources.machineSpec.machineType is required")
        deployed = self.dump(d)
        deployed["id"] = deployed.get("id") or str(next(self._ids))
        if any(x["id"] == deployed["id"] for x in ep.get("deployedModels", [])):
            return _err(409, "ALREADY_EXISTS", f"deployed model {deployed['id']} exists")
        split = {(deployed["id"] if k == "0" else k): v for k, v in dict(dm.traffic_split).items()}
        ids = {x["id"] for x in ep.get("deployedModels", [])} | {deployed["id"]}
        problem = self._check_split(split, ids)
        if problem:
            return _err(400, "INVALID_ARGUMENT", problem)
        ep.setdefault("deployedModels", []).append(deployed)
        if split:
            ep["trafficSplit"] = split
        return self._operation(name.rsplit("/endpoints/", 1)[0], "google.cloud.aiplatform.v1.DeployModelResponse",
                               {"deployedModel": deployed})

    def undeploy_model(self, req: Request) -> Response:
        name, ep = self._endpoint(req)
        if not ep:
            return _err(404, "NOT_FOUND", name)
        um = self.parse(self.aip.UndeployModelRequest, req, endpoint=name)
        remaining = [d for d in ep.get("deployedModels", []) if d["id"] != um.deployed_model_id]
        if len(remaining) == len(ep.get("deployedModels", [])):
            return _err(404, "NOT_FOUND", f"deployed model {um.deployed_model_id}")
        split = dict(um.traffic_split)
        if not split and ep.get("trafficSplit", {}).get(um.deployed_model_id) and remaining:
            return _err(400, "FAILED_PRECONDITION", "the deployed model has traffic: give a new traffic split")
        problem = self._check_split(split, {d["id"] for d in remaining})
        if problem:
            return _err(400, "INVALID_ARGUMENT", problem)
        ep["deployedModels"] = remaining
        # UndeployModelRequest.traffic_split: "If this field is provided, then the Endpoint's
        # traffic_split will be overwritten with it. If last DeployedModel is being undeployed ...
        # [it] will always end up empty" (aiplatform_v1 field docs)
        if split or not remaining:
            ep["trafficSplit"] = split
        else:
            ep["trafficSplit"] = {k: v for k, v in ep.get("trafficSplit", {}).items() if k != um.deployed_model_id}
        return self._operation(name.rsplit("/endpoints/", 1)[0], "google.cloud.aiplatform.v1.UndeployModelResponse", {})

    def predict(self, req: Request) -> Response:
        """``PredictionService.Predict``: the request parsed as ``PredictRequest``; one deployed
        model chosen by ``trafficSplit``; ``self.predictor(deployed_model, instances, parameters)``
        gives the predictions (or a whole :class:`Response`, e.g. an error the model causes).
        The 400 for an endpoint without deployed models is worded by this fake."""
        name, ep = self._endpoint(req)
        if not ep:
            return _err(404, "NOT_FOUND", f"Endpoint {name} not found.")
        pr = self.parse(self.aip.PredictRequest, req, endpoint=name)
        data = json.loads(self.aip.PredictRequest.to_json(pr))
        split = {k: int(v) for k, v in ep.get("trafficSplit", {}).items() if int(v) > 0}
        deployed = {d["id"]: d for d in ep.get("deployedModels", [])}
        if not split or not deployed:
            return _err(400, "FAILED_PRECONDITION", f"endpoint {name} has no deployed model with traffic")
        chosen = self._traffic.choices(sorted(split), weights=[split[k] for k in sorted(split)])[0]
        d = deployed[chosen]
        out = self.predictor(d, data.get("instances", []), data.get("parameters"))
        if isinstance(out, Response):
            return out
        model = self.models.get(d["model"], {})
        resp = self.aip.PredictResponse.from_json(json.dumps({
            "predictions": out, "deployedModelId": d["id"], "model": d["model"],
            "modelDisplayName": model.get("displayName", "")}), ignore_unknown_fields=False)
        return Response(200, self.dump(resp))

    def get_operation(self, req: Request) -> Response:
        op = self.operations.get(req.params["name"])
        if op is None:
            return _err(404, "NOT_FOUND", req.params["name"])
        op["polls"] += 1
        return Response(200, {"name": req.params["name"], "done": True, "response": op["response"]})

    # ---- Cloud Logging and Cloud Storage --------------------------------------------------------

    def add_log(self, job_name: str, task: str, text: str, *, ts: Optional[str] = None) -> None:
        """Seed one log line of replica ``task`` (e.g. ``workerpool1-0``) of a custom job."""
        job_id = job_name.rsplit("/", 1)[-1]
        with self.lock:
            entries = self.logs.setdefault(job_id, [])
            entries.append({"insertId": f"{job_id}-{len(entries)}", "timestamp": ts or _now(), "textPayload": text,
                            "resource": {"type": "ml_job", "labels": {"job_id": job_id, "task_name": task}},
                            "labels": {"ml.googleapis.com/task_name": task}})

    def list_entries(self, req: Request) -> Response:
        body = req.json()
        unknown = set(body) - LOG_REQUEST_KEYS
        if unknown or not body.get("resourceNames"):
            raise ValueError(f"bad entries:list request: unknown {sorted(unknown)} or no resourceNames")
        m = re.fullmatch(r'resource\.type="(ml_job|aiplatform\.googleapis\.com/BatchPredictionJob)" AND '
                         r'resource\.labels\.job_id="(\d+)"(?: AND timestamp>"([^"]+)")?', body.get("filter", ""))
        if not m:
            raise ValueError(f"unexpected filter {body.get('filter')!r}")
        entries = [e for e in self.logs.get(m.group(2), [])
                   if e["resource"]["type"] == m.group(1) and (not m.group(3) or e["timestamp"] > m.group(3))]
        start = int(body.get("pageToken") or 0)
        size = int(body.get("pageSize") or 50)
        page = entries[start:start + size]
        out: dict[str, Any] = {"entries": page} if page else {}
        if start + size < len(entries):
            out["nextPageToken"] = str(start + size)
        return Response(200, out)

    def get_object(self, req: Request) -> Response:
        from urllib.parse import unquote

        uri = f"gs://{req.params['b']}/{unquote(req.params['o'])}"
        if uri not in self.objects:
            return _err(404, "NOT_FOUND", uri)
        return Response(200, {"bucket": req.params["b"], "name": unquote(req.params["o"]),
                              "size": str(len(self.objects[uri]))})

    def list_objects(self, req: Request) -> Response:
        """Cloud Storage JSON API ``objects.list`` (prefix, maxResults): ``{"items": [...]}``, the key
        left out when nothing matches, as the API does."""
        prefix, limit = req.arg("prefix") or "", int(req.arg("maxResults") or 1000)
        base = f"gs://{req.params['b']}/"
        names = sorted(u[len(base):] for u in self.objects if u.startswith(base + prefix))[:limit]
        items = [{"bucket": req.params["b"], "name": n, "size": str(len(self.objects[base + n]))} for n in names]
        return Response(200, {"kind": "storage#objects", **({"items": items} if items else {})})

    def put_object(self, req: Request) -> Response:
        if req.arg("uploadType") != "media" or not req.arg("name"):
            raise ValueError("expected uploadType=media and a name")
        uri = f"gs://{req.params['b']}/{req.arg('name')}"
        self.objects[uri] = req.body
        return Response(200, {"bucket": req.params["b"], "name": req.arg("name"), "size": str(len(req.body))})


def echo_predictor(deployed: dict, instances: list, parameters: Any) -> list:
    """The fake's default model: one prediction per instance naming the deployed model that
    answered, the instance and the parameters, so a test sees what crossed the wire."""
    return [{"variant": deployed["displayName"], "instance": inst, "parameters": parameters} for inst in instances]


# ---- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _offline_google(monkeypatch):
    """No metadata-server probing, no ambient project/region."""
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    for k in ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "GCLOUD_PROJECT", "CLOUD_ML_REGION",
              "GOOGLE_CLOUD_REGION", "GOOGLE_CLOUD_LOCATION", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(k, raising=False)


@pytest.fixture(scope="session")
def _fake_server():
    f = FakeVertex().start()
    yield f
    f.stop()


@pytest.fixture
def fake(_fake_server):
    """The fake, with empty state for this test (its running batch jobs cancelled after it)."""
    _fake_server.reset()
    yield _fake_server
    _fake_server.batch_reset()


@pytest.fixture
def adapter(fake):
    from google.auth.credentials import AnonymousCredentials

    from unijob_adapters.vertex.adapter import VertexAdapter
    from unijob_adapters.vertex.client import RetryPolicy

    return VertexAdapter(credentials=AnonymousCredentials(), poll_interval=0.01,
                         retry_policy=RetryPolicy(initial=0.01, maximum=0.05, deadline=10.0))


def target_block(fake: FakeVertex, **extra: Any) -> dict:
    return {"project": "demo-project", "location": "us-central1", "api_endpoint": fake.url,
            "logging_endpoint": fake.url, "storage_endpoint": fake.url, **extra}


@pytest.fixture
def block(fake):
    """``block(**options)``: a targets.vertex block pointing at the fake."""
    return lambda **extra: target_block(fake, **extra)


@pytest.fixture
def make_spec(fake, tmp_path):
    """``make_spec(**fields)``: a JobSpec with a vertex target block pointing at the fake."""
    from unijob.spec import JobSpec

    def make(**fields: Any) -> JobSpec:
        data: dict[str, Any] = {"name": "train", "image": "us-docker.pkg.dev/p/r/train:1",
                                "command": ["python", "train.py"], "output": "gs://bucket/out",
                                "targets": {"vertex": target_block(fake)}}
        data.update(fields)
        return JobSpec.model_validate(data, context={"base_dir": str(tmp_path)})

    return make


@pytest.fixture(scope="session")
def job_image_python(tmp_path_factory):
    """The Python of a Vertex prebuilt training image for the start-contract tests: scikit-learn,
    no unijob (one venv per session, shared by every test that asks for the same packages, or
    reused from ``$UNIJOB_TEST_JOB_PYTHONS``)."""
    import os

    from unijob.testing.contracts import job_python

    root = os.environ.get("UNIJOB_TEST_JOB_PYTHONS") or tmp_path_factory.getbasetemp() / "job-pythons"
    return job_python(root, ["scikit-learn"])
