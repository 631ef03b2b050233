"""Unity Catalog models in the Databricks fake: MLflow's Unity Catalog registry REST API
(``/api/2.0/mlflow/unity-catalog/...``, the paths of ``UcModelRegistryService`` in mlflow's
``databricks_uc_registry_service.proto``) and the Files API paths a version's files go to
(``/api/2.0/fs/files/Models/<catalog>/<schema>/<model>/<version>/...``), plus volume directory
listings (``GET /api/2.0/fs/directories/Volumes/...``).

Every request is parsed into mlflow's own Unity Catalog protobuf request message with
``google.protobuf.json_format.ParseDict(..., ignore_unknown_fields=False)`` (query parameters for
GET, the JSON body otherwise): an unknown or mistyped field fails the request (400, recorded in
``fake.errors``). Answers are built as the response messages and sent with ``MessageToDict``.

What the fake holds to, as Unity Catalog does: three-level names in an existing schema
(``uc_schemas``); a version is ``PENDING_REGISTRATION`` until ``finalize``, which needs its files
under ``/Models/...`` (``uc_fail_finalize`` makes the next finalize end ``FAILED_REGISTRATION``
with a ``status_message``, the state mlflow's ``ModelVersionStatus`` names for a registration that
did not complete); files are written only to a pending version; an alias names one version
(setting it moves it); search answers carry no tags or aliases (mlflow's
``model_version_search_from_uc_proto`` and ``registered_model_search_from_uc_proto`` drop them);
there are no stage APIs (any stage call is answered 404 by the router).
"""

from __future__ import annotations

import itertools
import re
from typing import Any
from urllib.parse import unquote

from unijob.testing.httpfake import Request, Response

UC = r"/api/2\.0/mlflow/unity-catalog"


def _err(status: int, code: str, message: str) -> Response:
    return Response(status, {"error_code": code, "message": message})


def _parse(req: Request, cls_name: str) -> Any:
    """The request as mlflow's ``cls_name`` message (unknown fields refused)."""
    from google.protobuf.json_format import ParseDict
    from mlflow.protos import databricks_uc_registry_messages_pb2 as uc

    if req.method == "GET":
        d: Any = {k: v[0] if len(v) == 1 else v for k, v in req.query.items()}
    else:
        d = req.json()
    return ParseDict(d, getattr(uc, cls_name)(), ignore_unknown_fields=False)


def _answer(cls_name: str, d: dict) -> Response:
    """``d`` checked as mlflow's response message ``cls_name`` and sent as JSON."""
    from google.protobuf.json_format import MessageToDict, ParseDict
    from mlflow.protos import databricks_uc_registry_messages_pb2 as uc

    msg = ParseDict(d, getattr(uc, cls_name)(), ignore_unknown_fields=False)
    return Response(200, MessageToDict(msg, preserving_proto_field_name=True))


class UnityCatalogModelsFake:
    """Mix into the Databricks fake (before ``FakeServer``) so its routes come first.

    Attributes:
        uc_models: name -> {"name", "creation_timestamp", "aliases": {alias: version}, "versions": {version: dict}}.
        uc_schemas: ``catalog.schema`` that exist.
        uc_files_api: the workspace's answer to is-databricks-sdk-models-artifact-repository-enabled.
        uc_refused_writes: how many of the next /Models/ file writes to answer 403 PERMISSION_DENIED.
        uc_fail_finalize: the status_message with which the next finalize leaves its version
            FAILED_REGISTRATION (answered 400), or "".
    """

    def __init__(self) -> None:
        super().__init__()
        self.uc_models: dict[str, dict] = {}
        self.uc_schemas: set[str] = {"main.ml"}
        self.uc_files_api = True
        self.uc_refused_writes = 0
        self.uc_fail_finalize = ""
        self._uc_clock = itertools.count(1764460800000, 1000)
        r = self.route  # type: ignore[attr-defined]
        r("GET", UC + r"/registered-models:is-databricks-sdk-models-artifact-repository-enabled", self.uc_files_enabled)
        r("POST", UC + r"/registered-models/create", self.uc_create_model)
        r("GET", UC + r"/registered-models/get", self.uc_get_model)
        r("GET", UC + r"/registered-models/search", self.uc_search_models)
        r("POST", UC + r"/registered-models/alias", self.uc_set_alias)
        r("GET", UC + r"/registered-models/alias", self.uc_get_by_alias)
        r("POST", UC + r"/model-versions/create", self.uc_create_version)
        r("POST", UC + r"/model-versions/finalize", self.uc_finalize)
        r("DELETE", UC + r"/model-versions/delete", self.uc_delete_version)
        r("GET", UC + r"/model-versions/get", self.uc_get_version)
        r("GET", UC + r"/model-versions/search", self.uc_search_versions)
        r("POST", UC + r"/model-versions/set-tag", self.uc_set_tag)
        r("PUT", r"/api/2\.0/fs/files(?P<path>/Models/.+)", self.uc_put_file)
        r("GET", r"/api/2\.0/fs/directories(?P<path>/Volumes/.+)", self.fs_list)

    # ---- helpers ------------------------------------------------------------------------------

    def _model(self, name: str) -> dict | None:
        return self.uc_models.get(name)

    def _missing_model(self, name: str) -> Response:
        return _err(404, "RESOURCE_DOES_NOT_EXIST", f"Routine or Model '{name}' does not exist.")

    def _mv(self, m: dict, v: dict, *, search: bool = False) -> dict:
        out = {k: v[k] for k in ("name", "version", "creation_timestamp", "last_updated_timestamp", "source",
                                 "status", "storage_location")}
        if v.get("status_message"):
            out["status_message"] = v["status_message"]
        if not search:
            out["tags"] = [{"key": k, "value": val} for k, val in sorted(v["tags"].items())]
            out["aliases"] = [{"alias": a, "version": ver} for a, ver in sorted(m["aliases"].items()) if ver == v["version"]]
        return out

    def _rm(self, m: dict, *, search: bool = False) -> dict:
        out = {"name": m["name"], "creation_timestamp": m["creation_timestamp"]}
        if not search:
            out["aliases"] = [{"alias": a, "version": ver} for a, ver in sorted(m["aliases"].items())]
        return out

    def _version_of(self, name: str, version: str) -> tuple[dict | None, dict | None]:
        m = self._model(name)
        return m, (m["versions"].get(version) if m else None)

    # ---- registered models --------------------------------------------------------------------

    def uc_files_enabled(self, req: Request) -> Response:
        _parse(req, "IsDatabricksSdkModelsArtifactRepositoryEnabledRequest")
        return _answer("IsDatabricksSdkModelsArtifactRepositoryEnabledResponse",
                       {"is_databricks_sdk_models_artifact_repository_enabled": self.uc_files_api})

    def uc_create_model(self, req: Request) -> Response:
        msg = _parse(req, "CreateRegisteredModelRequest")
        parts = msg.name.split(".")
        if len(parts) != 3 or not all(parts):
            return _err(400, "INVALID_PARAMETER_VALUE", f"Model name '{msg.name}' is invalid: specify all three levels "
                                                        "(catalog.schema.model).")
        if ".".join(parts[:2]) not in self.uc_schemas:
            return _err(404, "RESOURCE_DOES_NOT_EXIST", f"Schema '{parts[0]}.{parts[1]}' does not exist.")
        if msg.name in self.uc_models:
            return _err(400, "RESOURCE_ALREADY_EXISTS", f"Registered model '{msg.name}' already exists.")
        self.uc_models[msg.name] = {"name": msg.name, "creation_timestamp": next(self._uc_clock), "aliases": {},
                                    "versions": {}}
        return _answer("CreateRegisteredModelResponse", {"registered_model": self._rm(self.uc_models[msg.name])})

    def uc_get_model(self, req: Request) -> Response:
        msg = _parse(req, "GetRegisteredModelRequest")
        m = self._model(msg.name)
        return _answer("GetRegisteredModelResponse", {"registered_model": self._rm(m)}) if m else self._missing_model(msg.name)

    def uc_search_models(self, req: Request) -> Response:
        msg = _parse(req, "SearchRegisteredModelsRequest")
        names = sorted(self.uc_models)
        start = int(msg.page_token or 0)
        size = msg.max_results or 100
        page = names[start:start + size]
        out: dict = {"registered_models": [self._rm(self.uc_models[n], search=True) for n in page]}
        if start + size < len(names):
            out["next_page_token"] = str(start + size)
        return _answer("SearchRegisteredModelsResponse", out)

    def uc_set_alias(self, req: Request) -> Response:
        msg = _parse(req, "SetRegisteredModelAliasRequest")
        m, v = self._version_of(msg.name, msg.version)
        if m is None:
            return self._missing_model(msg.name)
        if v is None:
            return _err(404, "RESOURCE_DOES_NOT_EXIST", f"Model version {msg.name}/{msg.version} does not exist.")
        assert re.fullmatch(r"[A-Za-z0-9_-]+", msg.alias), f"alias {msg.alias!r}"
        m["aliases"][msg.alias] = msg.version  # one version per alias: this moves it
        return _answer("SetRegisteredModelAliasResponse", {})

    def uc_get_by_alias(self, req: Request) -> Response:
        msg = _parse(req, "GetModelVersionByAliasRequest")
        m = self._model(msg.name)
        if m is None:
            return self._missing_model(msg.name)
        if msg.alias not in m["aliases"]:
            return _err(404, "RESOURCE_DOES_NOT_EXIST", f"Alias '{msg.alias}' does not exist on model '{msg.name}'.")
        return _answer("GetModelVersionByAliasResponse",
                       {"model_version": self._mv(m, m["versions"][m["aliases"][msg.alias]])})

    # ---- model versions -----------------------------------------------------------------------

    def uc_create_version(self, req: Request) -> Response:
        msg = _parse(req, "CreateModelVersionRequest")
        m = self._model(msg.name)
        if m is None:
            return self._missing_model(msg.name)
        assert msg.source, "a model version needs a source"
        version = str(len(m["versions"]) + 1 if not m["versions"] else max(map(int, m["versions"])) + 1)
        now = next(self._uc_clock)
        m["versions"][version] = {
            "name": msg.name, "version": version, "creation_timestamp": now, "last_updated_timestamp": now,
            "source": msg.source, "status": "PENDING_REGISTRATION",
            "storage_location": f"s3://uc-metastore-fake/models/{abs(hash(msg.name)) % 10**8}/versions/{version}",
            "tags": {t.key: t.value for t in msg.tags}}
        return _answer("CreateModelVersionResponse", {"model_version": self._mv(m, m["versions"][version])})

    def _prefix(self, name: str, version: str) -> str:
        return "/Models/" + name.replace(".", "/") + f"/{version}/"

    def uc_put_file(self, req: Request) -> Response:
        p = unquote(req.params["path"])
        parts = p.split("/")  # "", Models, catalog, schema, model, version, file...
        if len(parts) < 7 or not all(parts[2:]):
            return _err(400, "INVALID_PARAMETER_VALUE", f"{p} is not a model version file path")
        m, v = self._version_of(".".join(parts[2:5]), parts[5])
        if v is None:
            return _err(404, "RESOURCE_DOES_NOT_EXIST", f"Model version {'.'.join(parts[2:5])}/{parts[5]} does not exist.")
        if v["status"] != "PENDING_REGISTRATION":
            return _err(403, "PERMISSION_DENIED", f"Model version {v['name']}/{v['version']} is {v['status']}: "
                                                  "its files can no longer be written.")
        if self.uc_refused_writes:
            self.uc_refused_writes -= 1
            return _err(403, "PERMISSION_DENIED", f"User does not have WRITE FILES on {p}.")
        self.files[p] = req.body  # type: ignore[attr-defined]
        return Response(204, b"")

    def uc_finalize(self, req: Request) -> Response:
        msg = _parse(req, "FinalizeModelVersionRequest")
        m, v = self._version_of(msg.name, msg.version)
        if v is None:
            return _err(404, "RESOURCE_DOES_NOT_EXIST", f"Model version {msg.name}/{msg.version} does not exist.")
        if v["status"] != "PENDING_REGISTRATION":
            return _err(400, "INVALID_PARAMETER_VALUE", f"Model version {msg.name}/{msg.version} is {v['status']}.")
        prefix = self._prefix(msg.name, msg.version)
        if not any(k.startswith(prefix) for k in self.files):  # type: ignore[attr-defined]
            return _err(400, "INVALID_PARAMETER_VALUE", f"Model version {msg.name}/{msg.version} has no files.")
        v["last_updated_timestamp"] = next(self._uc_clock)
        if self.uc_fail_finalize:
            v["status"], v["status_message"], self.uc_fail_finalize = "FAILED_REGISTRATION", self.uc_fail_finalize, ""
            return _err(400, "INVALID_STATE", f"Model version {msg.name}/{msg.version} failed registration: "
                                              f"{v['status_message']}")
        v["status"] = "READY"
        return _answer("FinalizeModelVersionResponse", {"model_version": self._mv(m, v)})

    def uc_delete_version(self, req: Request) -> Response:
        msg = _parse(req, "DeleteModelVersionRequest")
        m, v = self._version_of(msg.name, msg.version)
        if v is None:
            return _err(404, "RESOURCE_DOES_NOT_EXIST", f"Model version {msg.name}/{msg.version} does not exist.")
        del m["versions"][msg.version]
        m["aliases"] = {a: ver for a, ver in m["aliases"].items() if ver != msg.version}
        prefix = self._prefix(msg.name, msg.version)
        for k in [k for k in self.files if k.startswith(prefix)]:  # type: ignore[attr-defined]
            del self.files[k]  # type: ignore[attr-defined]
        return _answer("DeleteModelVersionResponse", {})

    def uc_get_version(self, req: Request) -> Response:
        msg = _parse(req, "GetModelVersionRequest")
        m, v = self._version_of(msg.name, msg.version)
        if v is None:
            return _err(404, "RESOURCE_DOES_NOT_EXIST", f"Model version {msg.name}/{msg.version} does not exist.")
        return _answer("GetModelVersionResponse", {"model_version": self._mv(m, v)})

    def uc_search_versions(self, req: Request) -> Response:
        msg = _parse(req, "SearchModelVersionsRequest")
        f = re.fullmatch(r"name\s*=\s*'([^']+)'", msg.filter or "")
        if not f:
            return _err(400, "INVALID_PARAMETER_VALUE", f"Unsupported filter {msg.filter!r}: use name='catalog.schema.model'.")
        m = self._model(f.group(1))
        vs = sorted(m["versions"].values(), key=lambda v: -int(v["version"])) if m else []
        start = int(msg.page_token or 0)
        size = msg.max_results or 100
        out: dict = {"model_versions": [self._mv(m, v, search=True) for v in vs[start:start + size]]}
        if start + size < len(vs):
            out["next_page_token"] = str(start + size)
        return _answer("SearchModelVersionsResponse", out)

    def uc_set_tag(self, req: Request) -> Response:
        msg = _parse(req, "SetModelVersionTagRequest")
        m, v = self._version_of(msg.name, msg.version)
        if v is None:
            return _err(404, "RESOURCE_DOES_NOT_EXIST", f"Model version {msg.name}/{msg.version} does not exist.")
        assert msg.key, "a tag needs a key"
        v["tags"][msg.key] = msg.value
        return _answer("SetModelVersionTagResponse", {})

    # ---- volume listings (Files API) ----------------------------------------------------------

    def fs_list(self, req: Request) -> Response:
        from databricks.sdk.service import files as sdk_files

        d = unquote(req.params["path"]).rstrip("/")
        assert set(req.query) <= {"page_size", "page_token"}, req.query
        under = {k: b for k, b in self.files.items() if k.startswith(d + "/")}  # type: ignore[attr-defined]
        if not under:
            return _err(404, "NOT_FOUND", f"The directory {d} does not exist.")
        entries: dict[str, dict] = {}
        for k, b in sorted(under.items()):
            child = k[len(d) + 1:].split("/", 1)
            path = f"{d}/{child[0]}"
            if len(child) == 2:
                entries[path] = {"path": path + "/", "is_directory": True, "name": child[0]}
            else:
                entries[path] = {"path": path, "is_directory": False, "file_size": len(b), "name": child[0]}
        contents = [sdk_files.DirectoryEntry.from_dict(e).as_dict() for e in entries.values()]
        return Response(200, {"contents": contents})
