"""The model-registry part of the adapter contract: registered models, model versions, approval
and aliases, the same on every target.

Vocabulary: a **registered model** (SageMaker: a Model Package Group; Vertex: a Model with
versions; Databricks: a Unity Catalog registered model; MLflow: a registered model) holds numbered
**model versions**, each pointing at an artifact (``source``). A version has an **approval
status**, SageMaker's three (``PendingManualApproval``, ``Approved``, ``Rejected``: the values of
``ModelApprovalStatus``, https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateModelPackage.html,
read 2026-11-29), stored natively on SageMaker and as a tag or label elsewhere, and any number of
**aliases** (``champion``), each naming one version of its model at a time (MLflow and Unity
Catalog aliases, Vertex ``versionAliases``).

An endpoint names a registered version as ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``
(MLflow's model URI syntax, https://mlflow.org/docs/latest/model-registry.html, read 2026-11-29),
resolved at deploy time.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional

PENDING = "PendingManualApproval"
APPROVED = "Approved"
REJECTED = "Rejected"
#: Every approval status, in SageMaker's spelling.
APPROVAL_STATUSES = (PENDING, APPROVED, REJECTED)

#: A registered model's name: letters, digits, ``-``, ``_`` and ``.`` (for Unity Catalog's
#: ``catalog.schema.model``), 1-63 characters, starting with a letter or digit. The strictest of
#: SageMaker's ModelPackageGroupName pattern (``^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``), Vertex display
#: names and Unity Catalog names is narrower per target; adapters check their own rule.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
#: An alias: a lowercase letter first, then lowercase letters, digits, ``-`` and ``_`` (Vertex's
#: ``versionAliases`` rule ``[a-z][a-zA-Z0-9-]{0,126}`` and MLflow's both accept it); not ``latest``
#: and not ``v<digits>`` (reserved by MLflow and Vertex).
ALIAS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_URI_RE = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[^/@]+))$")


@dataclass
class ModelVersion:
    """One version of a registered model.

    Attributes:
        name: the registered model's name.
        version: its version, as a string of digits (``"3"``).
        source: the artifact it points at (``s3://.../model.tar.gz``, ``gs://...``, a local path).
        status: approval status, one of :data:`APPROVAL_STATUSES`.
        aliases: the aliases naming this version now.
        metadata: free-form string metadata given at registration (metrics, the job that trained it).
        created_at: POSIX seconds, where the registry reports it.
        target: the target whose registry holds it.
        native_id: the registry's own id (model package ARN, Vertex model resource name@version,
            MLflow ``name/version``).
        registry_status: the registry's own state of the version's files, where it reports one
            (MLflow and Unity Catalog ``ModelVersionStatus``: ``PENDING_REGISTRATION``,
            ``FAILED_REGISTRATION``, ``READY``); None where it reports none. Not the approval
            ``status``: a version is served only once ``READY``.
    """

    name: str
    version: str
    source: str
    status: str = PENDING
    aliases: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: Optional[float] = None
    target: str = ""
    native_id: str = ""
    registry_status: Optional[str] = None

    @property
    def uri(self) -> str:
        """``models:/NAME/VERSION``."""
        return f"models:/{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RegisteredModel:
    """A registered model: its name, its latest version number, and its aliases (alias -> version)."""

    name: str
    latest_version: Optional[str] = None
    aliases: dict[str, str] = field(default_factory=dict)
    target: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_model_uri(uri: str) -> Optional[tuple[str, Optional[str], Optional[str]]]:
    """``models:/NAME/VERSION`` -> ``(NAME, VERSION, None)``; ``models:/NAME@ALIAS`` ->
    ``(NAME, None, ALIAS)``; anything else that starts with ``models:/`` raises; other strings -> None.

    Raises:
        UsageError: a ``models:/`` URI of another shape.
    """
    if not uri.startswith("models:/"):
        return None
    m = _URI_RE.match(uri)
    if not m:
        from unijob.errors import UsageError

        raise UsageError(f"'{uri}' is not a model URI: expected models:/NAME/VERSION or models:/NAME@ALIAS")
    return m["name"], m["version"], m["alias"]


def check_name(name: str) -> str:
    """Raises UsageError unless ``name`` matches :data:`NAME_RE`."""
    if not NAME_RE.match(name or ""):
        from unijob.errors import UsageError

        raise UsageError(f"model name {name!r} is not valid: 1-63 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    return name


def check_alias(alias: str) -> str:
    """Raises UsageError unless ``alias`` matches :data:`ALIAS_RE` and is not reserved."""
    if not ALIAS_RE.match(alias or "") or alias == "latest" or re.fullmatch(r"v\d+", alias):
        from unijob.errors import UsageError

        raise UsageError(f"alias {alias!r} is not valid: a lowercase letter, then up to 62 lowercase letters, "
                         "digits, '-' or '_'; 'latest' and 'v<number>' are reserved")
    return alias


class ModelRegistry:
    """The optional model-registry methods of :class:`unijob.contract.Adapter`.

    Every method takes ``options``: the target's options (its ``targets.<name>`` block, validated by
    the adapter's options model), for the region, project, workspace or server. A target without a
    registry keeps these defaults, which raise :class:`~unijob.errors.UsageError` with the reason in
    ``unsupported["registry"]``.
    """

    def _no_registry(self) -> Any:
        from unijob.errors import UsageError

        name = getattr(self, "name", "?")
        reason = getattr(self, "unsupported", {}).get("registry", "this adapter does not implement a model registry")
        raise UsageError(f"target '{name}' has no model registry: {reason}")

    def register_model(self, name: str, source: str, *, metadata: Mapping[str, str] = {},
                       options: Any = None) -> ModelVersion:
        """Register ``source`` as the next version of ``name`` (created if new), status
        :data:`PENDING`. Raises TargetError (the registry refused), NotReady."""
        return self._no_registry()

    def list_models(self, *, options: Any = None) -> list[RegisteredModel]:
        """Every registered model this registry holds, by name."""
        return self._no_registry()

    def list_model_versions(self, name: str, *, options: Any = None) -> list[ModelVersion]:
        """The versions of ``name``, oldest first. Raises NotFound."""
        return self._no_registry()

    def get_model_version(self, name: str, version: str, *, options: Any = None) -> ModelVersion:
        """One version. Raises NotFound."""
        return self._no_registry()

    def set_model_approval(self, name: str, version: str, status: str, *, options: Any = None) -> ModelVersion:
        """Set the approval status (one of :data:`APPROVAL_STATUSES`). Raises NotFound."""
        return self._no_registry()

    def set_model_alias(self, name: str, version: str, alias: str, *, options: Any = None) -> ModelVersion:
        """Point ``alias`` at ``version`` (moving it from any other version). Raises NotFound."""
        return self._no_registry()

    def get_model_by_alias(self, name: str, alias: str, *, options: Any = None) -> ModelVersion:
        """The version ``alias`` names. Raises NotFound."""
        return self._no_registry()

    def model_location(self, version: ModelVersion, *, options: Any = None) -> str:
        """Where this target's endpoints read ``version``'s artifacts from; default its ``source``
        (the local target downloads registry-held artifacts to a directory).

        Raises:
            UsageError: the version cannot be served (an adapter's refusal, e.g. not ``READY``).
        """
        return version.source
