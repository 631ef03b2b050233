"""A model registry behind MLflow's REST API: a self-hosted MLflow tracking server (the local and
Kubernetes targets). Databricks' Unity Catalog registry speaks MLflow's Unity Catalog variant of
this API (``/api/2.0/mlflow/unity-catalog/...``, create-then-finalize versions, no stages): see
``unijob_adapters.databricks.registry``.

Calls (MLflow REST API 2.0, https://mlflow.org/docs/latest/rest-api.html, read 2026-11-29):
``registered-models/create|get|search``, ``model-versions/create|get|search|set-tag``,
``registered-models/alias`` (POST sets, GET resolves). Approval is the model-version tag
:data:`APPROVAL_TAG`; metadata are tags too (``unijob.meta.<key>``). Only ``httpx`` (a core
dependency) is used, so no MLflow client is needed on the submitting machine.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from unijob.errors import NotFound, TargetError, UsageError
from unijob.models.types import APPROVAL_STATUSES, PENDING, ModelRegistry, ModelVersion, RegisteredModel

#: The MLflow experiment whose runs hold the artifacts of models registered from local paths.
EXPERIMENT = "unijob-registered-models"
#: The model-version tag that holds the approval status.
APPROVAL_TAG = "unijob.approval"
_META = "unijob.meta."


class MlflowRegistry:
    """A client of one MLflow-compatible registry.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:5000`` or ``https://<workspace>``.
        target: the target name reported in :class:`ModelVersion`.
        headers: extra headers (``Authorization: Bearer ...`` for Databricks); never logged.
        timeout: seconds per request.
    """

    def __init__(self, base_url: str, *, target: str, headers: Optional[Mapping[str, str]] = None,
                 timeout: float = 30.0, api_prefix: str = "/api/2.0/mlflow") -> None:
        self.base_url = base_url.rstrip("/")
        self.target = target
        self._headers = dict(headers or {})
        self._timeout = timeout
        self._prefix = api_prefix

    # ---- transport --------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, params: Optional[dict[str, Any]] = None,
              body: Optional[dict[str, Any]] = None, not_found: str = "") -> dict[str, Any]:
        import httpx

        url = f"{self.base_url}{self._prefix}/{path}"
        try:
            r = httpx.request(method, url, params=params, json=body, headers=self._headers, timeout=self._timeout)
        except httpx.HTTPError as e:
            raise TargetError(f"the model registry at {self.base_url} did not answer: {e.__class__.__name__}: {e}") from None
        if r.status_code == 200:
            return r.json() if r.content else {}
        try:
            err = r.json()
        except ValueError:
            err = {"message": r.text[:300]}
        code, message = err.get("error_code", ""), err.get("message", "")
        if r.status_code == 404 or code == "RESOURCE_DOES_NOT_EXIST":
            raise NotFound(not_found or message or f"not found: {path}")
        if code == "INVALID_PARAMETER_VALUE":
            raise UsageError(f"the model registry refused: {message}")
        raise TargetError(f"the model registry at {self.base_url} answered {r.status_code} {code}: {message}")

    # ---- mapping ----------------------------------------------------------------------------

    def _version(self, mv: Mapping[str, Any]) -> ModelVersion:
        tags = {t["key"]: t.get("value", "") for t in mv.get("tags", [])}
        created = mv.get("creation_timestamp")
        return ModelVersion(
            name=mv["name"], version=str(mv["version"]), source=mv.get("source", ""),
            status=tags.get(APPROVAL_TAG, PENDING), aliases=sorted(mv.get("aliases", [])),
            metadata={k[len(_META):]: v for k, v in tags.items() if k.startswith(_META)},
            created_at=float(created) / 1000 if created else None, target=self.target,
            native_id=f"{mv['name']}/{mv['version']}")

    # ---- artifacts (the server's artifact proxy, ``mlflow server --artifacts-destination``) ---

    def upload(self, local: Path, name: str) -> tuple[str, str]:
        """Copy a local model file or directory into the server's artifact store, as the artifacts
        of a finished run in the experiment :data:`EXPERIMENT` (MLflow accepts a local path as a
        version's source only inside a run's artifacts).

        Returns: ``(source URI, run id)``; the source is ``mlflow-artifacts:/<exp>/<run>/artifacts/model``.
        """
        import httpx

        exp_id = self._experiment_id()
        run = self._call("POST", "runs/create", body={"experiment_id": exp_id, "run_name": f"register-{name}",
                                                      "start_time": int(time.time() * 1000)})["run"]["info"]
        run_id, root = run["run_id"], run["artifact_uri"]
        if not root.startswith("mlflow-artifacts:/"):
            raise TargetError(f"the MLflow server at {self.base_url} does not proxy artifacts (run artifact URI {root}); "
                              "start it with --artifacts-destination, or register a remote URI instead")
        rel_root = root[len("mlflow-artifacts:/"):].lstrip("/") + "/model"
        files = [(p.relative_to(local).as_posix(), p) for p in sorted(local.rglob("*")) if p.is_file()] \
            if local.is_dir() else [(local.name, local)]
        for rel, p in files:
            url = f"{self.base_url}/api/2.0/mlflow-artifacts/artifacts/{rel_root}/{rel}"
            with open(p, "rb") as f:
                r = httpx.put(url, content=f.read(), headers=self._headers, timeout=max(self._timeout, 300))
            if r.status_code != 200:
                raise TargetError(f"uploading {p} to the model registry failed: {r.status_code} {r.text[:200]}")
        self._call("POST", "runs/update", body={"run_id": run_id, "status": "FINISHED", "end_time": int(time.time() * 1000)})
        return f"{root}/model", run_id

    def download(self, source: str, dest: Path) -> Path:
        """Copy the artifacts under an ``mlflow-artifacts:/`` ``source`` into ``dest`` (made afresh).

        Returns: ``dest``.
        """
        import httpx

        if not source.startswith("mlflow-artifacts:/"):
            raise UsageError(f"cannot download {source}: not in this server's artifact store")
        base = source[len("mlflow-artifacts:/"):].lstrip("/")
        tmp = dest.with_name(dest.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        pending = [""]
        while pending:
            sub = pending.pop()
            listing = httpx.get(f"{self.base_url}/api/2.0/mlflow-artifacts/artifacts",
                                params={"path": f"{base}/{sub}".rstrip("/")}, headers=self._headers, timeout=self._timeout)
            if listing.status_code != 200:
                raise TargetError(f"listing {source} failed: {listing.status_code} {listing.text[:200]}")
            for f in listing.json().get("files", []):
                # The proxy lists basenames relative to the listed directory (mlflow/server/handlers.py,
                # _list_artifacts_mlflow_artifacts).
                rel = f"{sub}/{f['path'].rsplit('/', 1)[-1]}".lstrip("/")
                if f.get("is_dir"):
                    pending.append(rel)
                    continue
                r = httpx.get(f"{self.base_url}/api/2.0/mlflow-artifacts/artifacts/{base}/{rel}", headers=self._headers,
                              timeout=max(self._timeout, 300))
                if r.status_code != 200:
                    raise TargetError(f"downloading {source}/{rel} failed: {r.status_code}")
                out = tmp / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(r.content)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
        return dest

    def _experiment_id(self) -> str:
        try:
            return self._call("GET", "experiments/get-by-name", params={"experiment_name": EXPERIMENT})["experiment"]["experiment_id"]
        except NotFound:
            pass
        try:
            return self._call("POST", "experiments/create", body={"name": EXPERIMENT})["experiment_id"]
        except TargetError as e:  # created meanwhile by another client
            if "RESOURCE_ALREADY_EXISTS" not in e.message:
                raise
            return self._call("GET", "experiments/get-by-name", params={"experiment_name": EXPERIMENT})["experiment"]["experiment_id"]

    # ---- the registry -----------------------------------------------------------------------

    def register(self, name: str, source: str, metadata: Mapping[str, str], run_id: Optional[str] = None) -> ModelVersion:
        """Create ``name`` if new, then a version pointing at ``source``, tagged pending approval."""
        try:
            self._call("POST", "registered-models/create", body={"name": name})
        except TargetError as e:
            if "RESOURCE_ALREADY_EXISTS" not in e.message:
                raise
        tags = [{"key": APPROVAL_TAG, "value": PENDING}]
        tags += [{"key": _META + str(k), "value": str(v)} for k, v in sorted(metadata.items())]
        body: dict[str, Any] = {"name": name, "source": source, "tags": tags}
        if run_id:
            body["run_id"] = run_id
        out = self._call("POST", "model-versions/create", body=body)
        return self._version(out["model_version"])

    def models(self) -> list[RegisteredModel]:
        """Every registered model (all pages of ``registered-models/search``)."""
        out: list[RegisteredModel] = []
        token = None
        while True:
            params: dict[str, Any] = {"max_results": 1000}
            if token:
                params["page_token"] = token
            page = self._call("GET", "registered-models/search", params=params)
            for m in page.get("registered_models", []):
                latest = max((int(v["version"]) for v in m.get("latest_versions", [])), default=None)
                aliases = {a["alias"]: str(a["version"]) for a in m.get("aliases", [])}
                out.append(RegisteredModel(m["name"], None if latest is None else str(latest), aliases, self.target))
            token = page.get("next_page_token")
            if not token:
                return sorted(out, key=lambda m: m.name)

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first."""
        model = self._call("GET", "registered-models/get", params={"name": name},
                           not_found=f"no registered model '{name}'")["registered_model"]
        page = self._call("GET", "model-versions/search", params={"filter": f"name='{_quote(name)}'", "max_results": 1000})
        out = sorted((self._version(v) for v in page.get("model_versions", [])), key=lambda v: int(v.version))
        # search results carry no aliases (MLflow 2.x/3.x); the registered model lists them.
        by_version: dict[str, list[str]] = {}
        for a in model.get("aliases", []):
            by_version.setdefault(str(a["version"]), []).append(a["alias"])
        for v in out:
            v.aliases = sorted(by_version.get(v.version, v.aliases))
        return out

    def get(self, name: str, version: str) -> ModelVersion:
        out = self._call("GET", "model-versions/get", params={"name": name, "version": version},
                         not_found=f"no version {version} of registered model '{name}'")
        return self._version(out["model_version"])

    def set_approval(self, name: str, version: str, status: str) -> ModelVersion:
        if status not in APPROVAL_STATUSES:
            raise UsageError(f"approval status must be one of {', '.join(APPROVAL_STATUSES)}")
        self.get(name, version)
        self._call("POST", "model-versions/set-tag", body={"name": name, "version": version, "key": APPROVAL_TAG, "value": status})
        return self.get(name, version)

    def set_alias(self, name: str, version: str, alias: str) -> ModelVersion:
        self.get(name, version)
        self._call("POST", "registered-models/alias", body={"name": name, "alias": alias, "version": version})
        return self.get(name, version)

    def by_alias(self, name: str, alias: str) -> ModelVersion:
        missing = f"registered model '{name}' has no alias '{alias}'"
        try:
            out = self._call("GET", "registered-models/alias", params={"name": name, "alias": alias}, not_found=missing)
        except UsageError as e:  # MLflow answers INVALID_PARAMETER_VALUE "alias ... not found"
            if "not found" in e.message:
                raise NotFound(missing) from None
            raise
        return self._version(out["model_version"])


class MlflowBackedRegistry(ModelRegistry):
    """The registry methods of a target whose registry is an MLflow server (local, Kubernetes):
    subclasses say where it is (:meth:`mlflow_url`). A local path is copied into the server's
    artifact store first (MLflow keeps its own copy, so retraining into the same directory never
    changes a registered version); a URI (``s3://``, ``gs://``...) is registered as it is."""

    def mlflow_url(self, options: Any) -> str:
        """The MLflow server's URL for these options. Raises UsageError/NotReady when unknown."""
        raise NotImplementedError

    def _client(self, options: Any) -> MlflowRegistry:
        return MlflowRegistry(self.mlflow_url(options), target=getattr(self, "name", "mlflow"))

    def register_model(self, name: str, source: str, *, metadata: Mapping[str, str] = {},
                       options: Any = None) -> ModelVersion:
        client = self._client(options)
        if "://" in source:
            return client.register(name, source, metadata)
        local = Path(source).expanduser()
        if not local.exists():
            raise UsageError(f"model artifact {source} does not exist")
        local = local.resolve()
        uri, run_id = client.upload(local, name)
        return client.register(name, uri, {"registered_from": str(local), **metadata}, run_id=run_id)

    def list_models(self, *, options: Any = None) -> list[RegisteredModel]:
        return self._client(options).models()

    def list_model_versions(self, name: str, *, options: Any = None) -> list[ModelVersion]:
        return self._client(options).versions(name)

    def get_model_version(self, name: str, version: str, *, options: Any = None) -> ModelVersion:
        return self._client(options).get(name, version)

    def set_model_approval(self, name: str, version: str, status: str, *, options: Any = None) -> ModelVersion:
        return self._client(options).set_approval(name, version, status)

    def set_model_alias(self, name: str, version: str, alias: str, *, options: Any = None) -> ModelVersion:
        return self._client(options).set_alias(name, version, alias)

    def get_model_by_alias(self, name: str, alias: str, *, options: Any = None) -> ModelVersion:
        return self._client(options).by_alias(name, alias)


def _quote(name: str) -> str:
    return name.replace("'", "\\'")
