"""The SageMaker Model Registry: a registered model is a Model Package Group, a model version a
versioned model package.

Calls (SageMaker API reference, https://docs.aws.amazon.com/sagemaker/latest/APIReference/, read
2026-11-29): ``CreateModelPackageGroup``; ``CreateModelPackage`` with ``InferenceSpecification``
(the serving image, ``targets.sagemaker.serving_image``, and ``ModelDataUrl`` = the artifact) and
``ModelApprovalStatus=PendingManualApproval``; ``UpdateModelPackage`` to approve or reject;
``ListModelPackages`` / ``DescribeModelPackage``; ``ListModelPackageGroups``.

SageMaker has no aliases: unijob keeps them as tags on the group (``unijob:alias:<alias>`` =
version), through ``AddTags`` / ``ListTags`` / ``DeleteTags``, so one alias names one version.
Metadata goes to ``CustomerMetadataProperties``.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional

from unijob.errors import NotFound, NotReady, UsageError
from unijob.models.types import APPROVAL_STATUSES, PENDING, ModelRegistry, ModelVersion, RegisteredModel

from . import client as aws

_ALIAS_TAG = "unijob:alias:"
#: What the package says it takes and answers: the envelope of unijob.serve handlers.
_CONTENT_TYPES = ["application/json"]


def _region(options: Any) -> str:
    region = (getattr(options, "region", None) or os.environ.get("AWS_REGION")
              or os.environ.get("AWS_DEFAULT_REGION"))
    if not region:
        raise NotReady("no AWS region for the SageMaker Model Registry: set AWS_REGION (or targets.sagemaker.region)")
    return region


class SageMakerRegistry(ModelRegistry):
    """The registry methods of the SageMaker adapter."""

    def _sm(self, options: Any) -> Any:
        return aws.client("sagemaker", _region(options))

    def _group_arn(self, sm: Any, name: str) -> str:
        try:
            return sm.describe_model_package_group(ModelPackageGroupName=name)["ModelPackageGroupArn"]
        except Exception as e:  # noqa: BLE001 - botocore ClientError
            if aws.not_found(e):
                raise NotFound(f"no registered model '{name}' (SageMaker Model Package Group)") from None
            raise aws.wrap(e, f"DescribeModelPackageGroup {name}") from None

    def _aliases(self, sm: Any, name: str) -> dict[str, str]:
        """alias -> version, from the group's tags."""
        arn = self._group_arn(sm, name)
        try:
            tags = sm.list_tags(ResourceArn=arn).get("Tags", [])
        except Exception as e:  # noqa: BLE001
            raise aws.wrap(e, f"ListTags {name}") from None
        return {t["Key"][len(_ALIAS_TAG):]: t["Value"] for t in tags if t["Key"].startswith(_ALIAS_TAG)}

    def _version(self, sm: Any, name: str, pkg: Mapping[str, Any], aliases: Mapping[str, str]) -> ModelVersion:
        version = str(pkg["ModelPackageVersion"])
        arn = pkg["ModelPackageArn"]
        source = ""
        detail: Mapping[str, Any] = pkg
        if "InferenceSpecification" not in pkg:
            try:
                detail = sm.describe_model_package(ModelPackageName=arn)
            except Exception as e:  # noqa: BLE001
                raise aws.wrap(e, f"DescribeModelPackage {arn}") from None
        containers = (detail.get("InferenceSpecification") or {}).get("Containers") or [{}]
        source = containers[0].get("ModelDataUrl", "")
        created = detail.get("CreationTime")
        return ModelVersion(
            name=name, version=version, source=source, status=detail.get("ModelApprovalStatus", PENDING),
            aliases=sorted(a for a, v in aliases.items() if v == version),
            metadata=dict(detail.get("CustomerMetadataProperties") or {}),
            created_at=created.timestamp() if hasattr(created, "timestamp") else None,
            target="sagemaker", native_id=arn)

    def _packages(self, sm: Any, name: str) -> list[Mapping[str, Any]]:
        self._group_arn(sm, name)
        out: list[Mapping[str, Any]] = []
        kwargs: dict[str, Any] = {"ModelPackageGroupName": name, "SortBy": "CreationTime", "SortOrder": "Ascending"}
        while True:
            try:
                page = sm.list_model_packages(**kwargs)
            except Exception as e:  # noqa: BLE001
                raise aws.wrap(e, f"ListModelPackages {name}") from None
            out += page.get("ModelPackageSummaryList", [])
            if not page.get("NextToken"):
                return sorted(out, key=lambda p: int(p["ModelPackageVersion"]))
            kwargs["NextToken"] = page["NextToken"]

    def _package(self, sm: Any, name: str, version: str) -> Mapping[str, Any]:
        for p in self._packages(sm, name):
            if str(p["ModelPackageVersion"]) == str(version):
                return p
        raise NotFound(f"no version {version} of registered model '{name}'")

    # ---- the contract -----------------------------------------------------------------------

    def register_model(self, name: str, source: str, *, metadata: Mapping[str, str] = {},
                       options: Any = None) -> ModelVersion:
        if not source.startswith("s3://"):
            raise UsageError(f"SageMaker model packages point at an S3 artifact (s3://.../model.tar.gz); got {source}")
        image = getattr(options, "serving_image", None)
        if not image:
            raise UsageError("a SageMaker model package names its serving image: set targets.sagemaker.serving_image "
                             "(`unijob serve-image` writes one that serves unijob handlers), and pass --spec")
        sm = self._sm(options)
        try:
            sm.create_model_package_group(ModelPackageGroupName=name,
                                          ModelPackageGroupDescription="registered by unijob")
        except Exception as e:  # noqa: BLE001
            if not aws.already_exists(e):
                raise aws.wrap(e, f"CreateModelPackageGroup {name}") from None
        req: dict[str, Any] = {
            "ModelPackageGroupName": name, "ModelApprovalStatus": PENDING,
            "InferenceSpecification": {"Containers": [{"Image": image, "ModelDataUrl": source}],
                                       "SupportedContentTypes": _CONTENT_TYPES,
                                       "SupportedResponseMIMETypes": _CONTENT_TYPES},
        }
        if metadata:
            req["CustomerMetadataProperties"] = {str(k)[:128]: str(v)[:256] for k, v in metadata.items()}
        try:
            arn = sm.create_model_package(**req)["ModelPackageArn"]
        except Exception as e:  # noqa: BLE001
            raise aws.wrap(e, f"CreateModelPackage in {name}") from None
        version = arn.rsplit("/", 1)[-1]
        return ModelVersion(name=name, version=version, source=source, status=PENDING, metadata=dict(metadata),
                            target="sagemaker", native_id=arn)

    def list_models(self, *, options: Any = None) -> list[RegisteredModel]:
        sm = self._sm(options)
        groups: list[str] = []
        kwargs: dict[str, Any] = {}
        while True:
            try:
                page = sm.list_model_package_groups(**kwargs)
            except Exception as e:  # noqa: BLE001
                raise aws.wrap(e, "ListModelPackageGroups") from None
            groups += [g["ModelPackageGroupName"] for g in page.get("ModelPackageGroupSummaryList", [])]
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        out = []
        for g in sorted(groups):
            pkgs = self._packages(sm, g)
            out.append(RegisteredModel(g, str(pkgs[-1]["ModelPackageVersion"]) if pkgs else None,
                                       self._aliases(sm, g), "sagemaker"))
        return out

    def list_model_versions(self, name: str, *, options: Any = None) -> list[ModelVersion]:
        sm = self._sm(options)
        aliases = self._aliases(sm, name)
        return [self._version(sm, name, p, aliases) for p in self._packages(sm, name)]

    def get_model_version(self, name: str, version: str, *, options: Any = None) -> ModelVersion:
        sm = self._sm(options)
        return self._version(sm, name, self._package(sm, name, version), self._aliases(sm, name))

    def set_model_approval(self, name: str, version: str, status: str, *, options: Any = None) -> ModelVersion:
        if status not in APPROVAL_STATUSES:
            raise UsageError(f"approval status must be one of {', '.join(APPROVAL_STATUSES)}")
        sm = self._sm(options)
        arn = self._package(sm, name, version)["ModelPackageArn"]
        try:
            sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus=status)
        except Exception as e:  # noqa: BLE001
            raise aws.wrap(e, f"UpdateModelPackage {arn}") from None
        return self.get_model_version(name, version, options=options)

    def set_model_alias(self, name: str, version: str, alias: str, *, options: Any = None) -> ModelVersion:
        sm = self._sm(options)
        self._package(sm, name, version)
        arn = self._group_arn(sm, name)
        try:
            sm.add_tags(ResourceArn=arn, Tags=[{"Key": _ALIAS_TAG + alias, "Value": str(version)}])
        except Exception as e:  # noqa: BLE001
            raise aws.wrap(e, f"AddTags {name}") from None
        return self.get_model_version(name, version, options=options)

    def get_model_by_alias(self, name: str, alias: str, *, options: Any = None) -> ModelVersion:
        sm = self._sm(options)
        version: Optional[str] = self._aliases(sm, name).get(alias)
        if version is None:
            raise NotFound(f"registered model '{name}' has no alias '{alias}'")
        return self.get_model_version(name, version, options=options)
