"""unijob's BatchPredictionJob held against what ``google.cloud.aiplatform.BatchPredictionJob.create``
itself sends for the same batch (the real SDK, REST transport, against the recording fake of
conftest.py). Both bodies are read back through ``aiplatform_v1.BatchPredictionJob`` and compared
field by field; every difference is listed with its reason, any other one fails."""

from __future__ import annotations

import json

from unijob.testing.vendor import assert_explained, compare

SERVE = "us-docker.pkg.dev/p/r/unijob-serve:0.1"
DIFFER = {"displayName": "unijob appends <sha256(submission)[:8]> so a retried submission is found, not sent twice"}
SDK_ONLY: dict[str, str] = {}
OURS_ONLY = {"labels.*": "unijob-batch / unijob_submission: how unijob finds its batch jobs again"}


def _message(req) -> dict:
    from google.cloud import aiplatform_v1

    msg = aiplatform_v1.BatchPredictionJob.from_json(req.text, ignore_unknown_fields=False)
    return json.loads(aiplatform_v1.BatchPredictionJob.to_json(msg, use_integers_for_enums=False,
                                                               always_print_fields_with_no_presence=False))


def test_aiplatform_batch_prediction_job_and_unijob_send_the_same_job(fake, adapter, make_spec):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer

    spec = make_spec(name="digits", batch={
        "handler": "serve.py:Digits", "model": "gs://bucket/model/", "input": "gs://bucket/in/digits.jsonl",
        "output": "gs://bucket/out/", "replicas": 2, "instances_per_request": 50, "accelerator": "L4",
        "parameters": {"k": 3}})
    spec.targets["vertex"]["serving_image"] = SERVE
    plan = adapter.plan_batch(spec, "k1")
    adapter.submit(plan)  # uploads the Model too
    job = plan.requests[1].body
    try:
        aiplatform.init(project="demo-project", location="us-central1", credentials=AnonymousCredentials(),
                        api_endpoint=fake.url, api_transport="rest")
        aiplatform.BatchPredictionJob.create(
            job_display_name="digits", model_name=job["model"], instances_format="jsonl",
            predictions_format="jsonl", gcs_source="gs://bucket/in/digits.jsonl",
            gcs_destination_prefix="gs://bucket/out/", machine_type=job["dedicatedResources"]["machineSpec"]["machineType"],
            accelerator_type="NVIDIA_L4", accelerator_count=1, starting_replica_count=2, max_replica_count=2,
            batch_size=50, model_parameters={"k": 3}, sync=False).wait_for_resource_creation()
    finally:
        initializer.global_config.__init__()
    ours_req, vendor_req = fake.calls("POST", r"/v1/projects/demo-project/locations/us-central1/batchPredictionJobs")
    assert fake.errors == []
    ours, vendor = _message(ours_req), _message(vendor_req)
    assert ours == job  # what went over the wire is the plan
    d = compare(vendor, ours)
    assert_explained(d, differ=DIFFER, vendor_only=SDK_ONLY, ours_only=OURS_ONLY)
    for path in ("model", "inputConfig.gcsSource.uris[0]", "outputConfig.gcsDestination.outputUriPrefix",
                 "dedicatedResources.startingReplicaCount", "manualBatchTuningParameters.batchSize",
                 "dedicatedResources.machineSpec.acceleratorType", "modelParameters.k"):
        assert path in d.same, (path, d)
