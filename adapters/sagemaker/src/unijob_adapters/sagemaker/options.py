"""The ``targets.sagemaker`` block of a spec.

Example::

    targets:
      sagemaker:
        role_arn: arn:aws:iam::123456789012:role/SageMakerRole
        region: us-east-1
        subnets: [subnet-0abc]
        security_group_ids: [sg-0abc]
        keep_alive_period: 30m        # warm pool

Defaults and where they come from:

- ``volume_size_gb`` 30: the SageMaker Python SDK's ``volume_size`` default (``Estimator``, v2.x).
- ``input_mode`` ``File``: the CreateTrainingJob default ``TrainingInputMode``.
- ``retry_mode`` ``standard``: botocore's documented retry mode for new code
  (https://boto3.amazonaws.com/v1/documentation/api/latest/guide/retries.html, 2026-11).
- ``region``: this block, else ``AWS_REGION``, else ``AWS_DEFAULT_REGION`` (boto3's order).
- ``role_arn``: this block, else ``UNIJOB_SAGEMAKER_ROLE_ARN``.
"""

from __future__ import annotations

import os
from typing import Literal, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field

from unijob.errors import SpecError
from unijob.spec import Duration

ROLE_ENV = "UNIJOB_SAGEMAKER_ROLE_ARN"
ROLE_PATTERN = r"^arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$"


class SageMakerOptions(BaseModel):
    """Options of the SageMaker target (all optional except the role, which may come from the env).

    Attributes:
        role_arn: the IAM execution role SageMaker assumes (``arn:aws:iam::ACCOUNT:role/NAME``).
        region: AWS region (``us-east-1``).
        code_bucket / code_prefix: where ``sourcedir.tar.gz`` of script jobs is uploaded
            (``s3://BUCKET/PREFIX/<sha256>/sourcedir.tar.gz``); default bucket: the bucket of ``output``.
        subnets / security_group_ids: VPC placement (``VpcConfig``); give both or neither.
        kms_key_id: KMS key for the output artifacts (``OutputDataConfig.KmsKeyId``).
        enable_network_isolation: no outbound network from the training container.
        inter_container_encryption: encrypt traffic between the gang's nodes.
        keep_alive_period: warm-pool keep-alive, seconds (0-21600; ``KeepAlivePeriodInSeconds``).
        volume_size_gb: EBS volume per node in GB; overrides ``resources.disk_gib``.
        input_mode: ``File``, ``FastFile`` or ``Pipe`` (``TrainingInputMode``).
        retry_mode: botocore retry mode, ``standard`` or ``adaptive``.
        max_attempts: botocore total attempts per API call.
        poll_interval: seconds between polls while following logs or waiting for an endpoint.
        endpoint_timeout: seconds ``deploy`` waits for the endpoint to be InService.
        serving_image: the container image (in ECR, as SageMaker hosting requires) that endpoints
            given as a unijob ``handler`` run: an image built from ``unijob serve-image``, whose
            entrypoint is ``python -m unijob.serve``; the handler reaches it as ``UNIJOB_HANDLER``
            (the image limit of 255 characters is CreateModel's ``ContainerDefinition.Image``).
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)  # completed by modelcache below

    role_arn: Optional[str] = Field(default=None, pattern=ROLE_PATTERN)
    region: Optional[str] = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    code_bucket: Optional[str] = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
    code_prefix: str = Field(default="unijob/code", pattern=r"^[A-Za-z0-9!_.*'()/\-]*$")
    subnets: list[str] = Field(default_factory=list, max_length=16)
    security_group_ids: list[str] = Field(default_factory=list, max_length=5)
    kms_key_id: Optional[str] = None
    enable_network_isolation: bool = False
    inter_container_encryption: bool = False
    keep_alive_period: Optional[Duration] = Field(default=None, le=21600)
    volume_size_gb: Optional[int] = Field(default=None, ge=1, le=16384)
    input_mode: Literal["File", "FastFile", "Pipe"] = "File"
    retry_mode: Literal["standard", "adaptive"] = "standard"
    max_attempts: int = Field(default=8, ge=1, le=20)
    poll_interval: float = Field(default=10.0, gt=0, le=600)
    endpoint_timeout: float = Field(default=1800.0, gt=0)
    serving_image: Optional[str] = Field(default=None, pattern=r"^\S+$", max_length=255)


def resolve_region(opts: SageMakerOptions, environ: Mapping[str, str] | None = None) -> str:
    """The region for a plan: the option, else ``AWS_REGION``, else ``AWS_DEFAULT_REGION``.

    Raises:
        SpecError: at ``targets.sagemaker.region`` when none is set.
    """
    env = os.environ if environ is None else environ
    region = opts.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not region:
        raise SpecError.at(("targets", "sagemaker", "region"),
                           "no AWS region: set targets.sagemaker.region (e.g. us-east-1) or AWS_REGION")
    return region


def resolve_role(opts: SageMakerOptions, environ: Mapping[str, str] | None = None) -> str:
    """The execution role ARN: the option, else ``UNIJOB_SAGEMAKER_ROLE_ARN``.

    Raises:
        SpecError: at ``targets.sagemaker.role_arn`` when none is set or the env value is malformed.
    """
    import re

    env = os.environ if environ is None else environ
    role = opts.role_arn or env.get(ROLE_ENV)
    if not role:
        raise SpecError.at(
            ("targets", "sagemaker", "role_arn"),
            "required: the IAM execution role SageMaker assumes, e.g. "
            f"arn:aws:iam::123456789012:role/SageMakerRole (or set {ROLE_ENV})")
    if not re.match(ROLE_PATTERN, role):
        raise SpecError.at(("targets", "sagemaker", "role_arn"),
                           f"{ROLE_ENV} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
    return role


# Completed from the validators an earlier process built (keyed by the installed versions and the
# source files), else built by pydantic now: see unijob.modelcache.
from unijob import modelcache  # noqa: E402

modelcache.install_module(__name__)
