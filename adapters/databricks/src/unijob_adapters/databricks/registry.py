"""Unity Catalog models: the Databricks model registry. A registered model is ``catalog.schema.model``;
its versions hold their own copy of the model files; aliases name versions (Unity Catalog has no
stages, so no stage API is ever called).

Calls: MLflow's Unity Catalog registry REST API, the one ``mlflow`` itself sends with
``registry_uri="databricks-uc"`` (``UcModelRegistryService`` in
``mlflow/protos/databricks_uc_registry_service.proto`` and its client
``mlflow/store/_unity_catalog/registry/rest_store.py``, mlflow 3.x, read 2026-11-29), all under
``/api/2.0/mlflow/unity-catalog``:

- ``registered-models/create`` / ``get`` / ``search``;
- ``model-versions/create`` (the version starts ``PENDING_REGISTRATION``), then the files, then
  ``model-versions/finalize`` (``READY``); ``model-versions/delete`` when the files could not be
  copied, so no half-made version stays;
- ``model-versions/get`` / ``search`` (search answers carry no tags or aliases, so each version is
  read with ``get``), ``model-versions/set-tag`` (approval is the tag :data:`APPROVAL_TAG`, as on
  the local and Kubernetes MLflow registries; metadata are ``unijob.meta.<key>`` tags);
- ``registered-models/alias`` (POST sets, GET resolves; setting moves the alias off any other version).

The files go through the Files API to ``/Models/<catalog>/<schema>/<model>/<version>/...``, what
MLflow's ``DatabricksSDKModelsArtifactRepository`` does when the workspace answers ``true`` to
``GET registered-models:is-databricks-sdk-models-artifact-repository-enabled`` (or
``MLFLOW_USE_DATABRICKS_SDK_MODEL_ARTIFACTS_REPO_FOR_UC`` says so, as MLflow reads it). A workspace
that answers ``false`` takes files only with temporary cloud credentials into the version's
``storage_location``; unijob does not do that (no cloud SDK on the submitting machine) and says so
before creating anything. Sources copied: a Unity Catalog volume path (``/Volumes/...``, what a
Databricks job's ``output`` is, so ``job:<id>`` works) or a local file or directory. Cloud URIs and
other DBFS paths are refused: copy them into a volume first.

Not chosen: ``/api/2.1/unity-catalog/models`` (databricks-sdk 0.156 ``RegisteredModelsAPI`` /
``ModelVersionsAPI``) cannot create a model version or tag one, so approval could not be kept.

Model Serving serves a version only if its files are an MLflow model (an ``MLmodel`` file); the
registry itself stores any files, and unijob does not check.

A version's registration state is Unity Catalog's ``ModelVersionStatus`` (mlflow's
``databricks_uc_registry_messages.proto``: ``PENDING_REGISTRATION`` while its files are being
written, ``FAILED_REGISTRATION``, ``READY``), kept as :attr:`ModelVersion.registry_status`. Only a
``READY`` version is served or run (:meth:`UnityCatalogRegistry.model_location` refuses the others,
so ``plan``/``deploy``/``batch`` stop at the model field with nothing sent, as mlflow's own
``_await_model_version_creation`` refuses a version that did not become ``READY``); a
``FAILED_REGISTRATION`` version is never approved or aliased (its files may be partial or absent).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from unijob.errors import NotFound, TargetError, UsageError
from unijob.models.mlflow_rest import APPROVAL_TAG
from unijob.models.types import (APPROVAL_STATUSES, APPROVED, PENDING, ModelRegistry, ModelVersion, RegisteredModel,
                                 check_alias)

API = "/api/2.0/mlflow/unity-catalog"
#: MLflow's switch for copying model files through the Files API (mlflow/environment_variables.py).
FILES_API_ENV = "MLFLOW_USE_DATABRICKS_SDK_MODEL_ARTIFACTS_REPO_FOR_UC"
_META = "unijob.meta."
#: Unity Catalog's ModelVersionStatus values (mlflow/protos/databricks_uc_registry_messages.proto).
READY, PENDING_REGISTRATION, FAILED_REGISTRATION = "READY", "PENDING_REGISTRATION", "FAILED_REGISTRATION"
_PART = r"[A-Za-z0-9_-]+"
_UC_NAME = re.compile(rf"^{_PART}\.{_PART}\.{_PART}$")


def uc_name(name: str) -> tuple[str, str, str]:
    """``(catalog, schema, model)`` of a three-level Unity Catalog model name.

    Raises:
        UsageError: not ``catalog.schema.model``.
    """
    if not _UC_NAME.match(name or ""):
        raise UsageError(f"'{name}' is not a Unity Catalog model name: Databricks registers models as "
                         "catalog.schema.model (e.g. main.ml.digits), three parts of letters, digits, '_' or '-'")
    c, s, m = name.split(".")
    return c, s, m


def files_path(name: str, version: str) -> str:
    """Where a version's files go through the Files API: ``/Models/<catalog>/<schema>/<model>/<version>``
    (``DatabricksSDKModelsArtifactRepository.model_base_path`` in mlflow)."""
    return f"/Models/{'/'.join(uc_name(name))}/{version}"


def _volume_path(source: str) -> Optional[str]:
    """``/Volumes/c/s/v/...`` for a volume source (``dbfs:/Volumes/...`` too); None for others."""
    p = source[len("dbfs:"):] if source.startswith("dbfs:/Volumes/") else source
    return p.rstrip("/") if p.startswith("/Volumes/") else None


def _spooled(w: Any, path: str) -> Any:
    """A workspace file's bytes in a spooled temporary file (memory up to 64 MiB, then disk),
    positioned at 0, for ``files.upload``."""
    src = w.files.download(path).contents
    buf = tempfile.SpooledTemporaryFile(max_size=64 << 20)
    shutil.copyfileobj(src, buf, 1 << 20)
    try:
        src.close()
    except AttributeError:  # databricks-sdk 0.156: _ResilientResponse.close reads a missing attribute
        pass
    buf.seek(0)
    return buf


class UnityCatalogRegistry(ModelRegistry):
    """The registry methods of the Databricks adapter. Needs the adapter's ``_client(extra)``."""

    # ---- transport --------------------------------------------------------------------------

    def _w(self, options: Any) -> Any:
        return self._client({"host": getattr(options, "host", None), "profile": getattr(options, "profile", None)})

    def _call(self, w: Any, method: str, path: str, *, query: Optional[dict] = None, body: Optional[dict] = None,
              not_found: str = "", exists_ok: bool = False) -> dict:
        from databricks.sdk.errors import BadRequest, DatabricksError, ResourceAlreadyExists
        from databricks.sdk.errors import NotFound as SdkNotFound

        try:
            return w.api_client.do(method, f"{API}/{path}", query=query, body=body) or {}
        except ResourceAlreadyExists:
            if exists_ok:
                return {}
            raise TargetError(f"Unity Catalog {path}: already exists") from None
        except SdkNotFound as e:
            raise NotFound(not_found or str(e)) from None
        except BadRequest as e:
            if getattr(e, "error_code", "") == "RESOURCE_DOES_NOT_EXIST" and not_found:
                raise NotFound(not_found) from None
            raise UsageError(f"Unity Catalog refused {path}: {e}") from None
        except DatabricksError as e:
            raise TargetError(f"Unity Catalog {path} failed: {getattr(e, 'error_code', '') or type(e).__name__}: {e}") from None

    # ---- mapping ----------------------------------------------------------------------------

    @staticmethod
    def _version(mv: Mapping[str, Any]) -> ModelVersion:
        tags = {t["key"]: t.get("value", "") for t in mv.get("tags", [])}
        created = mv.get("creation_timestamp")
        return ModelVersion(
            name=mv["name"], version=str(mv["version"]), source=mv.get("source", ""),
            status=tags.get(APPROVAL_TAG, PENDING), aliases=sorted(a["alias"] for a in mv.get("aliases", [])),
            metadata={k[len(_META):]: v for k, v in tags.items() if k.startswith(_META)},
            created_at=float(created) / 1000 if created else None, target="databricks",
            native_id=f"{mv['name']}/{mv['version']}", registry_status=mv.get("status") or None)

    @staticmethod
    def _not_ready(v: ModelVersion, doing: str, message: str = "") -> str:
        why = {PENDING_REGISTRATION: "its files are still being written (or a registration was abandoned "
                                     "half-way); wait for READY, or register the model again",
               FAILED_REGISTRATION: "its registration failed, so its files may be partial or absent; register "
                                    "the model again and use the new version"}.get(
            v.registry_status or "", "Unity Catalog reports no READY state for it")
        detail = f" ({message})" if message else ""
        return (f"version {v.version} of {v.name} is {v.registry_status or 'in no known state'}{detail}, not READY: "
                f"cannot {doing}; {why}")

    def _refuse_failed(self, w: Any, name: str, version: str, doing: str) -> None:
        """UsageError when ``version`` is FAILED_REGISTRATION (NotFound when there is none)."""
        out = self._call(w, "GET", "model-versions/get", query={"name": name, "version": str(version)},
                         not_found=f"no version {version} of registered model '{name}'")["model_version"]
        v = self._version(out)
        if v.registry_status == FAILED_REGISTRATION:
            raise UsageError(self._not_ready(v, doing, out.get("status_message", "")))

    def _get(self, w: Any, name: str, version: str) -> ModelVersion:
        out = self._call(w, "GET", "model-versions/get", query={"name": name, "version": str(version)},
                         not_found=f"no version {version} of registered model '{name}'")
        return self._version(out["model_version"])

    def _version_numbers(self, w: Any, name: str) -> list[str]:
        numbers: list[str] = []
        token = None
        while True:
            q: dict[str, Any] = {"filter": f"name='{name}'", "max_results": 1000}
            if token:
                q["page_token"] = token
            page = self._call(w, "GET", "model-versions/search", query=q)
            numbers += [str(v["version"]) for v in page.get("model_versions", [])]
            token = page.get("next_page_token")
            if not token:
                return sorted(set(numbers), key=int)

    # ---- the model files --------------------------------------------------------------------

    def _sources(self, w: Any, source: str) -> list[tuple[str, Callable[[], Any]]]:
        """``(relative path, opener)`` of every file under ``source``; reads nothing yet.

        Raises:
            UsageError: a cloud URI or non-volume DBFS path; nothing there.
        """
        vol = _volume_path(source)
        if vol is not None:
            return self._volume_files(w, vol, source)
        if "://" in source or source.startswith("dbfs:"):
            raise UsageError(f"cannot copy {source} into a Unity Catalog model version: unijob copies the files of a "
                             "Unity Catalog volume (/Volumes/catalog/schema/volume/...) or a local path; copy them "
                             "into a volume first (or give the job a /Volumes/... output)")
        local = Path(source).expanduser()
        if not local.exists():
            raise UsageError(f"model artifact {source} does not exist")
        local = local.resolve()
        files = [p for p in sorted(local.rglob("*")) if p.is_file()] if local.is_dir() else [local]
        if not files:
            raise UsageError(f"model artifact {source} is an empty directory")
        base = local if local.is_dir() else local.parent
        return [(p.relative_to(base).as_posix(), (lambda p=p: open(p, "rb"))) for p in files]

    def _volume_files(self, w: Any, vol: str, source: str) -> list[tuple[str, Callable[[], Any]]]:
        """Every file under the volume directory ``vol`` (Files API directory listings), or ``vol``
        itself when it is a file (its listing fails: it is then downloaded once, here)."""
        from databricks.sdk.errors import DatabricksError
        from databricks.sdk.errors import NotFound as SdkNotFound

        def listing(d: str) -> list[Any]:
            return list(w.files.list_directory_contents(d))

        try:
            top = listing(vol)
        except DatabricksError:  # not a directory: one file, or nothing
            try:
                only = _spooled(w, vol)
            except SdkNotFound:
                raise UsageError(f"model artifact {source} does not exist in the workspace") from None
            except DatabricksError as e:
                raise TargetError(f"reading {source} failed: {e}") from None
            return [(vol.rsplit("/", 1)[-1], lambda: only)]
        out: list[tuple[str, Callable[[], Any]]] = []
        pending = [top]
        try:
            while pending:
                for e in pending.pop():
                    if e.is_directory:
                        pending.append(listing(e.path.rstrip("/")))
                    else:
                        out.append((e.path[len(vol) + 1:], lambda p=e.path: _spooled(w, p)))
        except DatabricksError as e:
            raise TargetError(f"listing {source} failed: {e}") from None
        if not out:
            raise UsageError(f"model artifact {source} is an empty directory")
        return sorted(out, key=lambda f: f[0])

    def _files_api_enabled(self, w: Any) -> bool:
        forced = os.environ.get(FILES_API_ENV)
        if forced is not None and forced.strip():
            return forced.strip().lower() in ("1", "true", "yes", "on")
        try:
            out = w.api_client.do("GET", f"{API}/registered-models:is-databricks-sdk-models-artifact-repository-enabled")
        except Exception:  # noqa: BLE001 - MLflow treats any failure as "not enabled" too
            return False
        return bool((out or {}).get("is_databricks_sdk_models_artifact_repository_enabled"))

    # ---- the contract -----------------------------------------------------------------------

    def register_model(self, name: str, source: str, *, metadata: Mapping[str, str] = {},
                       options: Any = None) -> ModelVersion:
        """Create ``name`` if new, then a version whose files are copied from ``source`` (a
        ``/Volumes/...`` path or a local path) and finalized; tagged pending approval.

        Raises:
            UsageError: not a three-level name; a source unijob cannot copy; nothing there.
            TargetError: the workspace takes model files only with cloud credentials; a copy failed
                (the new version is deleted again); another refusal.
        """
        uc_name(name)
        w = self._w(options)
        files = self._sources(w, source)
        local = _volume_path(source) is None
        recorded = str(Path(source).expanduser().resolve()) if local else _volume_path(source)
        if not self._files_api_enabled(w):
            raise TargetError(f"this workspace takes Unity Catalog model files only through temporary cloud "
                              f"credentials (is-databricks-sdk-models-artifact-repository-enabled is false), and "
                              f"unijob copies them with the Files API; set {FILES_API_ENV}=true if the workspace "
                              "accepts /Models/ paths, or register with mlflow.register_model(..., "
                              "registry_uri='databricks-uc')")
        self._call(w, "POST", "registered-models/create", body={"name": name}, exists_ok=True)
        meta = {"registered_from": recorded, **metadata} if local else dict(metadata)
        tags = [{"key": APPROVAL_TAG, "value": PENDING}]
        tags += [{"key": _META + str(k), "value": str(v)} for k, v in sorted(meta.items())]
        mv = self._call(w, "POST", "model-versions/create",
                        body={"name": name, "source": recorded, "tags": tags})["model_version"]
        version = str(mv["version"])
        base = files_path(name, version)
        try:
            for rel, open_ in files:
                f = open_()
                try:
                    w.files.upload(f"{base}/{rel}", f, overwrite=True)
                finally:
                    f.close()
            out = self._call(w, "POST", "model-versions/finalize", body={"name": name, "version": version})
        except Exception as e:  # noqa: BLE001 - whatever failed, no half-made version stays
            try:
                self._call(w, "DELETE", "model-versions/delete", body={"name": name, "version": version})
            except (TargetError, UsageError, NotFound):
                pass
            msg = getattr(e, "message", None) or str(e)
            raise TargetError(f"copying {source} into version {version} of {name} failed, so the version was "
                              f"deleted again: {msg}") from None
        return self._version(out["model_version"])

    def list_models(self, *, options: Any = None) -> list[RegisteredModel]:
        w = self._w(options)
        out: list[RegisteredModel] = []
        token = None
        while True:
            q: dict[str, Any] = {"max_results": 1000}
            if token:
                q["page_token"] = token
            page = self._call(w, "GET", "registered-models/search", query=q)
            for found in page.get("registered_models", []):  # search answers carry no aliases: get each
                m = self._call(w, "GET", "registered-models/get", query={"name": found["name"]})["registered_model"]
                numbers = self._version_numbers(w, m["name"])
                out.append(RegisteredModel(m["name"], numbers[-1] if numbers else None,
                                           {a["alias"]: str(a["version"]) for a in m.get("aliases", [])}, "databricks"))
            token = page.get("next_page_token")
            if not token:
                return sorted(out, key=lambda m: m.name)

    def list_model_versions(self, name: str, *, options: Any = None) -> list[ModelVersion]:
        uc_name(name)
        w = self._w(options)
        self._call(w, "GET", "registered-models/get", query={"name": name},
                   not_found=f"no registered model '{name}' in Unity Catalog")
        return [self._get(w, name, n) for n in self._version_numbers(w, name)]

    def get_model_version(self, name: str, version: str, *, options: Any = None) -> ModelVersion:
        uc_name(name)
        return self._get(self._w(options), name, version)

    def set_model_approval(self, name: str, version: str, status: str, *, options: Any = None) -> ModelVersion:
        if status not in APPROVAL_STATUSES:
            raise UsageError(f"approval status must be one of {', '.join(APPROVAL_STATUSES)}")
        uc_name(name)
        w = self._w(options)
        if status == APPROVED:
            self._refuse_failed(w, name, version, "approve it")
        else:
            self._get(w, name, version)
        self._call(w, "POST", "model-versions/set-tag",
                   body={"name": name, "version": str(version), "key": APPROVAL_TAG, "value": status})
        return self._get(w, name, version)

    def set_model_alias(self, name: str, version: str, alias: str, *, options: Any = None) -> ModelVersion:
        uc_name(name)
        check_alias(alias)
        w = self._w(options)
        self._refuse_failed(w, name, version, f"point alias '{alias}' at it")
        self._call(w, "POST", "registered-models/alias", body={"name": name, "alias": alias, "version": str(version)})
        return self._get(w, name, version)

    def get_model_by_alias(self, name: str, alias: str, *, options: Any = None) -> ModelVersion:
        uc_name(name)
        check_alias(alias)
        missing = f"registered model '{name}' has no alias '{alias}'"
        try:
            out = self._call(self._w(options), "GET", "registered-models/alias", query={"name": name, "alias": alias},
                             not_found=missing)
        except UsageError as e:
            if "not found" in e.message.lower() or "does not exist" in e.message.lower():
                raise NotFound(missing) from None
            raise
        return self._version(out["model_version"])

    def model_location(self, version: ModelVersion, *, options: Any = None) -> str:
        """``models:/catalog.schema.model/VERSION``: Model Serving serves the registered version
        itself (``entity_name`` + ``entity_version``), never a path.

        Raises:
            UsageError: the version is not ``READY`` (pending or failed registration), with its
                state and what to do; the caller sends nothing.
        """
        if version.registry_status != READY:
            raise UsageError(self._not_ready(version, "serve or run it"))
        return f"models:/{version.name}/{version.version}"
