"""The serving sections of a job spec: an endpoint (replicas, autoscaling, variants and their traffic
split) and a batch prediction (the same handler mapped over JSON Lines files). :class:`unijob.spec.JobSpec`
holds them as ``endpoint`` and ``batch``; defaults and their sources are in :mod:`unijob.spec`'s docstring."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from unijob.spec_fields import DNS_LABEL, ENV_NAME, AcceleratorStr, Duration, Uri, _Model

class Autoscaling(_Model):
    """Endpoint autoscaling target: keep ``metric`` per replica near ``target``.

    Metrics: ``invocations_per_replica_per_minute`` (SageMaker's
    ``SageMakerVariantInvocationsPerInstance``), ``concurrency`` (in-flight requests per replica;
    Databricks and Kubernetes), ``gpu_utilization`` (percent, 1-100; Vertex
    ``aiplatform.googleapis.com/prediction/online/accelerator/duty_cycle``).
    """

    metric: Literal["invocations_per_replica_per_minute", "concurrency", "gpu_utilization", "cpu_utilization"] = "concurrency"
    target: float = Field(default=4.0, gt=0)


class Variant(_Model):
    """One model version behind an endpoint and its share of traffic (percent, 0-100)."""

    name: str = Field(pattern=DNS_LABEL, max_length=63)
    model: Optional[str] = None
    image: Optional[str] = None
    handler: Optional[str] = None
    weight: int = Field(ge=0, le=100)
    accelerator: AcceleratorStr = None
    instance_type: dict[str, str] = Field(default_factory=dict)


class Endpoint(_Model):
    """A serving endpoint: replicas of a model behind one address, autoscaled, traffic-split.

    Attributes:
        name: endpoint name; default the spec's ``name``.
        model: model artifact URI (``s3://.../model.tar.gz``, ``gs://...``) or registry reference
            (``models:/name/3``, a Unity Catalog ``catalog.schema.model`` with a version).
        model_version: registry version where the reference does not carry one.
        image / handler: a serving container, or a ``module:callable`` handler that ``unijob.serve``
            runs in the unijob serving image.
        accelerator / instance_type: per replica; ``instance_type`` per target.
        min_replicas: 0 = scale to zero where the target allows it.
        max_replicas: upper bound; default ``max(1, min_replicas)``.
        autoscaling: the metric and its target value per replica.
        variants: traffic split across model versions; weights must sum to 100.
        scale_in_cooldown / scale_out_cooldown: seconds.
    """

    name: Optional[str] = Field(default=None, pattern=DNS_LABEL, max_length=63)
    model: Optional[str] = None
    model_version: Optional[str] = None
    image: Optional[str] = None
    handler: Optional[str] = None
    accelerator: AcceleratorStr = None
    instance_type: dict[str, str] = Field(default_factory=dict)
    min_replicas: int = Field(default=1, ge=0, le=1000)
    max_replicas: Optional[int] = Field(default=None, ge=1, le=1000)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    variants: list[Variant] = Field(default_factory=list)
    scale_in_cooldown: Duration = 300
    scale_out_cooldown: Duration = 60
    env: dict[Annotated[str, Field(pattern=ENV_NAME)], str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _rules(self) -> "Endpoint":
        if self.max_replicas is None:
            self.max_replicas = max(1, self.min_replicas)
        if self.max_replicas < self.min_replicas:
            raise PydanticCustomError(
                "replicas", "max_replicas ({mx}) must be at least min_replicas ({mn})",
                {"mx": self.max_replicas, "mn": self.min_replicas},
            )
        if self.variants:
            total = sum(v.weight for v in self.variants)
            if total != 100:
                raise PydanticCustomError(
                    "traffic_split", "variant weights are the traffic split and must sum to 100, got {total}",
                    {"total": total},
                )
            names = [v.name for v in self.variants]
            if len(set(names)) != len(names):
                raise PydanticCustomError("variants", "variant names must be unique")
            for v in self.variants:
                if not (v.model or self.model):
                    raise PydanticCustomError(
                        "model", "variant '{name}' has no model and the endpoint has no default model",
                        {"name": v.name},
                    )
        elif not self.model:
            raise PydanticCustomError("model", "an endpoint needs a model (or variants that each name one)")
        if self.image and self.handler:
            raise PydanticCustomError("entrypoint", "give either image or handler, not both")
        return self

    def resolved_variants(self) -> list[Variant]:
        """The variants with endpoint defaults filled in; one variant ``primary`` at 100 when none
        are declared."""
        if not self.variants:
            return [Variant(name="primary", model=self.model, image=self.image, handler=self.handler,
                            weight=100, accelerator=self.accelerator, instance_type=dict(self.instance_type))]
        out = []
        for v in self.variants:
            out.append(v.model_copy(update={
                "model": v.model or self.model,
                "image": v.image or (None if v.handler else self.image),
                "handler": v.handler or (None if v.image else self.handler),
                "accelerator": v.accelerator or self.accelerator,
                "instance_type": v.instance_type or dict(self.instance_type),
            }))
        return out


class Batch(_Model):
    """Batch prediction: the endpoint's handler (or a serving image) mapped over JSON Lines files
    (see :mod:`unijob.batch` for the line and output formats).

    Attributes:
        model: artifact path or URI, ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``.
        handler / image: a ``unijob.serve`` handler reference, or a serving container (cloud targets).
        input / output: JSON Lines file or directory, and the output directory (paths or URIs).
        accelerator / instance_type: per replica; ``instance_type`` per target.
        replicas: worker processes (local), instances (SageMaker ``InstanceCount``), replicas (Vertex),
            pods of the Indexed Job (Kubernetes), worker nodes (Databricks; 1 = a single-node cluster).
        instances_per_request: instances per ``predict`` call (SageMaker ``MultiRecord`` batches,
            Vertex ``batchSize``).
        max_error_fraction: fraction of lines allowed to fail before the job fails (0 = any error
            fails it; errors never stop the other lines).
        parameters: passed to ``predict(instances, parameters)``.
    """

    model: Optional[str] = None
    handler: Optional[str] = None
    image: Optional[str] = None
    input: Uri
    output: Uri
    accelerator: AcceleratorStr = None
    instance_type: dict[str, str] = Field(default_factory=dict)
    replicas: int = Field(default=1, ge=1, le=1000)
    instances_per_request: int = Field(default=64, ge=1, le=100_000)
    max_error_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    parameters: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _rules(self) -> "Batch":
        if bool(self.image) == bool(self.handler):
            raise PydanticCustomError("entrypoint", "a batch section needs a handler (module:attr) or an image, not both")
        return self
