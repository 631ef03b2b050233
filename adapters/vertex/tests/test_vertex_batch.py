"""Vertex batch prediction plans: models:upload + batchPredictionJobs, each body parsed by the
aiplatform_v1 types with unknown fields refused."""

from __future__ import annotations

import pytest

from unijob.errors import SpecError, UsageError

SERVE = "us-docker.pkg.dev/p/r/unijob-serve:0.1"


def _spec(make_spec, **batch):
    b = {"handler": "serve:Digits", "model": "gs://bucket/models/digits/2", "input": "gs://bucket/in/digits.jsonl",
         "output": "gs://bucket/out/", "replicas": 3, "instances_per_request": 50, "accelerator": "L4"}
    b.update(batch)
    spec = make_spec(batch=b)
    spec.targets["vertex"]["serving_image"] = SERVE
    return spec


def test_plan_bodies_parse_as_vertex_types(adapter, make_spec):
    from google.cloud import aiplatform_v1 as aip

    plan = adapter.plan_batch(_spec(make_spec), "k1")
    upload, job = plan.requests
    assert upload.api.endswith("/models:upload") and job.api.endswith("/batchPredictionJobs")
    aip.UploadModelRequest.from_json(__import__("json").dumps({"parent": "p", **upload.body}), ignore_unknown_fields=False)
    parsed = aip.BatchPredictionJob.from_json(__import__("json").dumps(job.body), ignore_unknown_fields=False)
    assert parsed.input_config.instances_format == "jsonl"
    assert list(parsed.input_config.gcs_source.uris) == ["gs://bucket/in/digits.jsonl"]
    assert parsed.output_config.gcs_destination.output_uri_prefix == "gs://bucket/out/"
    assert parsed.dedicated_resources.starting_replica_count == 3 == parsed.dedicated_resources.max_replica_count
    assert parsed.dedicated_resources.machine_spec.accelerator_type.name == "NVIDIA_L4"
    assert parsed.manual_batch_tuning_parameters.batch_size == 50
    assert parsed.model.endswith("/models/" + upload.body["modelId"])
    env = {e["name"]: e["value"] for e in upload.body["model"]["containerSpec"]["env"]}
    assert env["UNIJOB_HANDLER"] == "serve:Digits" and upload.body["model"]["artifactUri"] == "gs://bucket/models/digits/2"


def test_plan_errors(adapter, make_spec):
    with pytest.raises(SpecError) as e:
        adapter.plan_batch(_spec(make_spec, output="s3://b/out"), "k")
    assert e.value.issues[0].loc == ("batch", "output")
    spec = _spec(make_spec)
    spec.targets["vertex"].pop("serving_image")
    with pytest.raises(SpecError, match="serving_image"):
        adapter.plan_batch(spec, "k")


def test_submit_says_what_is_not_built(adapter, make_spec):
    with pytest.raises(UsageError, match="not built yet"):
        adapter.submit(adapter.plan_batch(_spec(make_spec), "k"))
