"""Model registry, the same calls on every target: register a trained model, approve or reject a
version, point an alias at it, and resolve ``models:/NAME@ALIAS`` when an endpoint deploys::

    import unijob.models as models

    v = models.register("output/model", name="digits", alias="champion", metadata={"accuracy": "0.98"})
    models.approve("digits", v.version)
    models.resolve("models:/digits@champion").source      # the artifact the endpoint will serve

Each call takes ``target`` (default ``local``: an MLflow server on this machine, see
:mod:`unijob.local.registry`) and optionally ``spec``, a JobSpec whose ``targets.<name>`` block
supplies the target's options (region, project, workspace, registry URI). The CLI's
``unijob models ...`` commands print these calls' results. Types: :mod:`unijob.models.types`.

Errors: :class:`~unijob.errors.UsageError` (bad name, alias or URI; a target without a
registry), :class:`~unijob.errors.NotFound` (no such model, version or alias),
:class:`~unijob.errors.NotReady`, :class:`~unijob.errors.TargetError`.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Optional

from unijob.models.types import (APPROVAL_STATUSES, APPROVED, PENDING, REJECTED, ModelVersion, RegisteredModel,
                                 check_alias, check_name, parse_model_uri)

__all__ = ["ModelVersion", "RegisteredModel", "APPROVAL_STATUSES", "APPROVED", "PENDING", "REJECTED",
           "register", "list_models", "versions", "show", "approve", "reject", "alias", "resolve",
           "resolve_endpoint_models"]


def _adapter(target: str, spec: Any) -> tuple[Any, Any]:
    from pydantic import ValidationError

    from unijob import registry

    adapter = registry.get(target)
    if spec is not None:
        return adapter, adapter.options(spec)
    try:
        return adapter, adapter.options_model.model_validate({})
    except ValidationError:
        return adapter, None


def _source_of(model: str) -> tuple[str, dict[str, str]]:
    """A model argument as an artifact URI, and metadata naming where it came from.
    ``job:<id>`` is the model artifact the finished job wrote (:func:`unijob.job`)."""
    if model.startswith("job:"):
        import unijob

        job = unijob.job(model[4:])
        return job.model_artifact(), {"job_id": job.id, "job_target": job.target}
    return model, {}


def register(model: str, name: str, *, target: str = "local", alias: Optional[str] = None,
             metadata: Optional[Mapping[str, str]] = None, spec: Any = None) -> ModelVersion:
    """Register ``model`` (an artifact URI or local path, or ``job:<id>``) as the next version of
    ``name``, pending approval; with ``alias``, point the alias at it.

    Returns: the new :class:`ModelVersion` (with the alias, if given).
    """
    check_name(name)
    if alias is not None:
        check_alias(alias)
    source, meta = _source_of(model)
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    adapter, opts = _adapter(target, spec)
    v = adapter.register_model(name, source, metadata=meta, options=opts)
    if alias:
        v = adapter.set_model_alias(name, v.version, alias, options=opts)
    return v


def list_models(*, target: str = "local", spec: Any = None) -> list[RegisteredModel]:
    """Every registered model on ``target``'s registry, by name."""
    adapter, opts = _adapter(target, spec)
    return adapter.list_models(options=opts)


def versions(name: str, *, target: str = "local", spec: Any = None) -> list[ModelVersion]:
    """The versions of ``name``, oldest first."""
    adapter, opts = _adapter(target, spec)
    return adapter.list_model_versions(check_name(name), options=opts)


def show(name: str, version: str, *, target: str = "local", spec: Any = None) -> ModelVersion:
    """One version of ``name``."""
    adapter, opts = _adapter(target, spec)
    return adapter.get_model_version(check_name(name), _version(version), options=opts)


def approve(name: str, version: str, *, target: str = "local", spec: Any = None) -> ModelVersion:
    """Mark a version ``Approved`` (SageMaker's ModelApprovalStatus; a tag or label elsewhere)."""
    adapter, opts = _adapter(target, spec)
    return adapter.set_model_approval(check_name(name), _version(version), APPROVED, options=opts)


def reject(name: str, version: str, *, target: str = "local", spec: Any = None) -> ModelVersion:
    """Mark a version ``Rejected``."""
    adapter, opts = _adapter(target, spec)
    return adapter.set_model_approval(check_name(name), _version(version), REJECTED, options=opts)


def alias(name: str, version: str, alias_name: str, *, target: str = "local", spec: Any = None) -> ModelVersion:
    """Point ``alias_name`` at ``version`` of ``name`` (moving it from any other version)."""
    adapter, opts = _adapter(target, spec)
    return adapter.set_model_alias(check_name(name), _version(version), check_alias(alias_name), options=opts)


def resolve(uri: str, *, target: str = "local", spec: Any = None) -> ModelVersion:
    """The version a ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` URI names.

    Raises:
        UsageError: ``uri`` is not a model URI.
    """
    parsed = parse_model_uri(uri)
    if parsed is None:
        from unijob.errors import UsageError

        raise UsageError(f"'{uri}' is not a model URI: expected models:/NAME/VERSION or models:/NAME@ALIAS")
    name, version, alias_name = parsed
    adapter, opts = _adapter(target, spec)
    if version is not None:
        return adapter.get_model_version(name, version, options=opts)
    return adapter.get_model_by_alias(name, alias_name, options=opts)


def resolve_endpoint_models(spec: Any, target: str) -> tuple[Any, dict[str, ModelVersion]]:
    """A copy of ``spec`` whose endpoint ``model`` fields no longer say ``models:/...``: each is
    replaced by the artifact the registered version points at, on ``target``'s registry.

    Returns: ``(spec copy, {models:/ URI: ModelVersion})``; the spec itself when nothing to resolve.

    Raises:
        SpecError: at ``endpoint.model`` / ``endpoint.variants.<i>.model`` when a URI names no
            version, or one the target cannot serve (with the registry's reason).
    """
    ep = getattr(spec, "endpoint", None)
    if ep is None:
        return spec, {}
    fields = [(("endpoint", "model"), ep, ep.model)]
    fields += [(("endpoint", "variants", i, "model"), v, v.model) for i, v in enumerate(ep.variants or [])]
    if not any(isinstance(u, str) and u.startswith("models:/") for _, _, u in fields):
        return spec, {}
    from unijob.errors import NotFound, SpecError, UsageError

    out = copy.deepcopy(spec)
    oep = out.endpoint
    targets = [(("endpoint", "model"), oep)] + [(("endpoint", "variants", i, "model"), v) for i, v in enumerate(oep.variants or [])]
    resolved: dict[str, ModelVersion] = {}
    for where, holder in targets:
        uri = holder.model
        if not (isinstance(uri, str) and uri.startswith("models:/")):
            continue
        adapter, opts = _adapter(target, spec)
        try:
            if uri not in resolved:
                resolved[uri] = resolve(uri, target=target, spec=spec)
            holder.model = adapter.model_location(resolved[uri], options=opts)
        except (NotFound, UsageError) as e:
            raise SpecError.at(where, f"{uri}: {e.message}") from None
    return out, resolved


def _version(version: Any) -> str:
    s = str(version)
    if not s.isdigit():
        from unijob.errors import UsageError

        raise UsageError(f"a model version is a number, got {version!r}")
    return s
