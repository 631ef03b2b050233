"""The Vertex AI Model Registry: a registered model is a Vertex Model, a model version one of its
versions.

Calls (Vertex AI REST reference, https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.models,
read 2026-11-29), through the ``aiplatform_v1`` ModelServiceClient (REST transport):

- register: ``models:upload`` (``UploadModelRequest``): the first version with ``modelId`` derived
  from the name (:func:`model_id`), later ones with ``parentModel`` = the model's resource name;
  ``model.artifactUri`` = the ``gs://`` artifact, ``model.containerSpec.imageUri`` =
  ``targets.vertex.serving_image``. The answer (``UploadModelResponse.modelVersionId``) is the version.
- versions: ``GET models/{id}:listVersions``; one version: ``GET models/{id}@{version}``; by alias:
  ``GET models/{id}@{alias}`` (``GetModelRequest.name``: "provide the version ID or version alias").
- aliases: ``POST models/{id}@{version}:mergeVersionAliases`` (``versionAliases``; a ``-`` prefix
  removes an alias, https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.models/mergeVersionAliases).
  An alias names one version per model: "if you apply an existing alias that's used on another
  model version, the alias is removed from that version"
  (https://cloud.google.com/vertex-ai/docs/model-registry/model-alias); unijob checks afterwards and
  sends ``-alias`` to any other version still carrying it. Vertex's own ``default`` alias (the
  version used when none is named; on the first version at first) is not reported as a unijob alias.
- approval: the version label ``unijob_approval`` = ``pending`` | ``approved`` | ``rejected``, set with
  ``PATCH models/{id}@{version}?updateMask=labels`` (``UpdateModelRequest``: a name with ``@version``
  updates that version's labels).
- list: ``GET models?filter=labels.unijob_approval:*`` (``ListModelsRequest.filter``: "labels.key:*
  - key existence"), one entry per model.

Label keys use ``_`` like the adapter's job labels (``unijob_submission``). Metadata (free-form
strings, e.g. ``accuracy=0.98``, whose values labels could not hold) is kept as a JSON object in
the version's ``versionDescription``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

from unijob.errors import NotFound, NotReady, UsageError
from unijob.models.types import APPROVAL_STATUSES, APPROVED, PENDING, REJECTED, ModelRegistry, ModelVersion, \
    RegisteredModel

APPROVAL_LABEL = "unijob_approval"
_LABEL_OF = {PENDING: "pending", APPROVED: "approved", REJECTED: "rejected"}
_STATUS_OF = {v: k for k, v in _LABEL_OF.items()}
_VERTEX_DEFAULT_ALIAS = "default"
#: ``versionAliases`` (MergeVersionAliasesRequest): ``[a-z][a-zA-Z0-9-]{0,126}[a-z-0-9]``.
_VERTEX_ALIAS_RE = re.compile(r"[a-z][a-zA-Z0-9-]{0,126}[a-z0-9-]")


def model_id(name: str) -> str:
    """The Vertex model id of registered model ``name``: lowercase, characters outside
    ``[a-z0-9_-]`` as ``-``, a leading digit or ``-`` prefixed with ``m-``, at most 63 characters
    (``UploadModelRequest.modelId``: "up to 63 characters, and valid characters are [a-z0-9_-].
    The first character cannot be a number or hyphen")."""
    mid = re.sub(r"[^a-z0-9_-]", "-", name.lower())
    if not mid[:1].isalpha() and mid[:1] != "_":
        mid = "m-" + mid
    return mid[:63]


class VertexRegistry(ModelRegistry):
    """The registry methods of the Vertex adapter (mixed into ``VertexAdapter``, whose ``_conn``
    and ``credentials`` it uses)."""

    def _rconn(self, options: Any) -> Any:
        from unijob_adapters.vertex.options import VertexOptions, resolve_location, resolve_project

        opts = options if options is not None else VertexOptions()
        project, location = resolve_project(opts), resolve_location(opts)
        if not project or not location:
            raise NotReady("the Vertex AI Model Registry needs a project and a location: set GOOGLE_CLOUD_PROJECT "
                           "and CLOUD_ML_REGION (or targets.vertex.project / location, and pass --spec)")
        return self._conn({"project": project, "location": location,  # type: ignore[attr-defined]
                           "api_endpoint": getattr(opts, "api_endpoint", None)})

    @staticmethod
    def _model_name(conn: Any, name: str) -> str:
        return f"{conn.parent}/models/{model_id(name)}"

    def _get_model(self, conn: Any, resource: str, missing: str) -> Any:
        from google.api_core import exceptions as gexc

        try:
            return conn.call(lambda: conn.models.get_model(name=resource, retry=conn.retry))
        except gexc.NotFound:
            raise NotFound(missing) from None

    def _model(self, conn: Any, name: str) -> Any:
        """The model's default version; NotFound unless it is ``name``'s (display name checked,
        since model ids fold case and punctuation)."""
        m = self._get_model(conn, self._model_name(conn, name), f"no registered model '{name}' (Vertex model "
                                                            f"{model_id(name)})")
        if m.display_name != name:
            raise NotFound(f"no registered model '{name}': Vertex model {model_id(name)} is '{m.display_name}'")
        return m

    @staticmethod
    def _version(name: str, m: Any) -> ModelVersion:
        try:
            meta = json.loads(m.version_description) if m.version_description else {}
        except ValueError:
            meta = {}
        created = m.version_create_time or m.create_time
        return ModelVersion(
            name=name, version=m.version_id, source=m.artifact_uri,
            status=_STATUS_OF.get(m.labels.get(APPROVAL_LABEL, ""), PENDING),
            aliases=sorted(a for a in m.version_aliases if a != _VERTEX_DEFAULT_ALIAS),
            metadata={str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {},
            created_at=created.timestamp() if created else None,
            target="vertex", native_id=f"{m.name.split('@')[0]}@{m.version_id}")

    def _versions(self, conn: Any, name: str, resource: str = "") -> list[Any]:
        """The versions of ``name`` (or of the model ``resource`` names), by version id."""
        resource = resource or self._model(conn, name).name.split("@")[0]
        pager = conn.call(lambda: conn.models.list_model_versions(request={"name": resource}, retry=conn.retry))
        return sorted(pager, key=lambda m: int(m.version_id))

    def _get_version(self, conn: Any, name: str, version: str) -> Any:
        self._model(conn, name)
        return self._get_model(conn, f"{self._model_name(conn, name)}@{version}",
                         f"no version {version} of registered model '{name}'")

    # ---- the contract -----------------------------------------------------------------------

    def register_model(self, name: str, source: str, *, metadata: Mapping[str, str] = {},
                       options: Any = None) -> ModelVersion:
        """``models:upload``: the next version of ``name``, labelled ``unijob_approval=pending``.

        Raises:
            UsageError: ``source`` is not ``gs://``; no ``targets.vertex.serving_image``; the model
                id is held by another model. NotReady: no project/location. TargetError: refused.
        """
        from google.api_core import exceptions as gexc
        from google.cloud import aiplatform_v1 as aip

        if not source.startswith("gs://"):
            raise UsageError(f"Vertex AI model versions point at a Cloud Storage artifact (gs://.../model/); got {source}")
        image = getattr(options, "serving_image", None)
        if not image:
            raise UsageError("a Vertex AI model names its serving container: set targets.vertex.serving_image "
                             "(`unijob serve-image` writes one that serves unijob handlers), and pass --spec")
        conn = self._rconn(options)
        resource = self._model_name(conn, name)
        try:
            existing = conn.call(lambda: conn.models.get_model(name=resource, retry=conn.retry))
        except gexc.NotFound:
            existing = None
        if existing is not None and existing.display_name != name:
            raise UsageError(f"model name {name!r} maps to Vertex model id {model_id(name)}, which registered model "
                             f"'{existing.display_name}' already holds: choose another name")
        model = aip.Model(display_name=name, artifact_uri=source, labels={APPROVAL_LABEL: _LABEL_OF[PENDING]},
                          container_spec=aip.ModelContainerSpec(image_uri=image),
                          version_description=json.dumps({str(k): str(v) for k, v in metadata.items()},
                                                         sort_keys=True) if metadata else "")
        req = aip.UploadModelRequest(parent=conn.parent, model=model)
        if existing is None:
            req.model_id = model_id(name)
        else:
            req.parent_model = resource
        polling = conn.polling()
        res = conn.call(lambda: conn.models.upload_model(request=req, retry=conn.retry).result(polling=polling))
        return self.get_model_version(name, res.model_version_id, options=options)

    def list_models(self, *, options: Any = None) -> list[RegisteredModel]:
        conn = self._rconn(options)
        pager = conn.call(lambda: conn.models.list_models(
            request={"parent": conn.parent, "filter": f"labels.{APPROVAL_LABEL}:*"}, retry=conn.retry))
        out = []
        for m in sorted(pager, key=lambda m: m.display_name):
            versions = [self._version(m.display_name, v) for v in self._versions(conn, m.display_name, m.name.split("@")[0])]
            out.append(RegisteredModel(m.display_name, versions[-1].version if versions else None,
                                       {a: v.version for v in versions for a in v.aliases}, "vertex"))
        return out

    def list_model_versions(self, name: str, *, options: Any = None) -> list[ModelVersion]:
        conn = self._rconn(options)
        return [self._version(name, m) for m in self._versions(conn, name)]

    def get_model_version(self, name: str, version: str, *, options: Any = None) -> ModelVersion:
        conn = self._rconn(options)
        return self._version(name, self._get_version(conn, name, version))

    def set_model_approval(self, name: str, version: str, status: str, *, options: Any = None) -> ModelVersion:
        """``PATCH models/{id}@{version}?updateMask=labels`` with the version's labels and
        ``unijob_approval`` changed (the mask replaces the whole labels map)."""
        from google.cloud import aiplatform_v1 as aip
        from google.protobuf import field_mask_pb2

        if status not in APPROVAL_STATUSES:
            raise UsageError(f"approval status must be one of {', '.join(APPROVAL_STATUSES)}")
        conn = self._rconn(options)
        m = self._get_version(conn, name, version)
        labels = {**dict(m.labels), APPROVAL_LABEL: _LABEL_OF[status]}
        body = aip.Model(name=f"{self._model_name(conn, name)}@{m.version_id}", labels=labels)
        updated = conn.call(lambda: conn.models.update_model(
            model=body, update_mask=field_mask_pb2.FieldMask(paths=["labels"]), retry=conn.retry))
        return self._version(name, updated)

    def set_model_alias(self, name: str, version: str, alias: str, *, options: Any = None) -> ModelVersion:
        """``mergeVersionAliases`` ``[alias]`` on the version, then ``[-alias]`` on any other
        version that still carries it."""
        if not _VERTEX_ALIAS_RE.fullmatch(alias):
            raise UsageError(f"alias {alias!r} does not fit Vertex version aliases: a lowercase letter, then letters, "
                             "digits or '-' (no '_'), at least 2 characters")
        conn = self._rconn(options)
        m = self._get_version(conn, name, version)
        base = self._model_name(conn, name)
        conn.call(lambda: conn.models.merge_version_aliases(
            name=f"{base}@{m.version_id}", version_aliases=[alias], retry=conn.retry))
        for other in self._versions(conn, name):
            if other.version_id != m.version_id and alias in other.version_aliases:
                conn.call(lambda o=other: conn.models.merge_version_aliases(
                    name=f"{base}@{o.version_id}", version_aliases=[f"-{alias}"], retry=conn.retry))
        return self.get_model_version(name, m.version_id, options=options)

    def get_model_by_alias(self, name: str, alias: str, *, options: Any = None) -> ModelVersion:
        conn = self._rconn(options)
        self._model(conn, name)
        m = self._get_model(conn, f"{self._model_name(conn, name)}@{alias}",
                      f"registered model '{name}' has no alias '{alias}'")
        return self._version(name, m)
