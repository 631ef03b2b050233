"""unijob's CustomJob held against what ``google.cloud.aiplatform.CustomJob`` itself sends.

A Vertex user's ``aiplatform.CustomJob`` with two worker pools (chief + workers) for the job of
examples/vertex/job.yaml (2 x a2-ultragpu-8g, Spot, max wait, service account, output directory) is
submitted by the real SDK (REST transport) to the recording fake of conftest.py (127.0.0.1, no network);
unijob submits the example to the same fake. Both requests are read back through
``aiplatform_v1.CustomJob`` (the GAPIC REST transport encodes enums as integers, unijob's plan as names:
the same message) and compared field by field. Every difference is listed below with its reason; any
other difference fails (and is a bug in plan.py), as does a listed one that went away.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unijob.loading import load_spec
from unijob.testing.vendor import assert_explained, compare

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "vertex" / "job.yaml"

DIFFER = {
    "displayName": "unijob appends <sha256(submission)[:10]> so a retried submission is recognised, "
                   "not submitted twice",
}
SDK_ONLY: dict[str, str] = {}
OURS_ONLY = {
    "labels.*": "unijob_job / unijob_submission / unijob_attempt: how unijob finds its jobs (and the spot "
                "attempt's on-demand fallback) again",
    "jobSpec.workerPoolSpecs[*].containerSpec.env[*].*": "the unijob runtime contract (job name, channels, "
                                                       "checkpoint dir on the GCS FUSE mount, secret references) "
                                                       "that unijob.runtime.context() reads",
}


@pytest.fixture
def sdk_config():
    """``aiplatform.init`` sets process-wide defaults (project, endpoint, credentials): reset them after."""
    from google.cloud.aiplatform import initializer

    yield
    initializer.global_config.__init__()


def sdk_custom_job(fake):
    """What a Vertex user writes for the example's job with the Vertex AI SDK."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    from google.cloud.aiplatform_v1 import Scheduling

    aiplatform.init(project="acme-ml", location="us-central1", credentials=AnonymousCredentials(),
                    api_endpoint=fake.url, api_transport="rest", staging_bucket="gs://acme-ml-staging")
    pool = {
        "machine_spec": {"machine_type": "a2-ultragpu-8g", "accelerator_type": "NVIDIA_A100_80GB",
                         "accelerator_count": 8},
        "replica_count": 1,
        "disk_spec": {"boot_disk_type": "pd-ssd", "boot_disk_size_gb": 500},
        "container_spec": {"image_uri": "us-docker.pkg.dev/acme-ml/train/finetune:1.4",
                           "command": ["python", "train.py"], "args": ["--config", "configs/7b.yaml"]},
    }
    job = aiplatform.CustomJob(display_name="llm-finetune", worker_pool_specs=[pool, dict(pool)],  # chief, workers
                               base_output_dir="gs://acme-ml-models/llm-finetune")
    job.submit(service_account="trainer@acme-ml.iam.gserviceaccount.com", timeout=12 * 3600,
               restart_job_on_worker_restart=True, scheduling_strategy=Scheduling.Strategy.SPOT,
               max_wait_duration=2 * 3600)  # Vertex's max wait is the wait alone: 14h - 12h
    return job


def as_message(req) -> dict:
    """The request body parsed by ``aiplatform_v1.CustomJob`` (unknown fields raise), dumped with enum names."""
    from google.cloud import aiplatform_v1

    msg = aiplatform_v1.CustomJob.from_json(req.text, ignore_unknown_fields=False)
    return json.loads(aiplatform_v1.CustomJob.to_json(msg, use_integers_for_enums=False,
                                                      always_print_fields_with_no_presence=False))


def test_aiplatform_custom_job_and_unijob_send_the_same_job(fake, adapter, sdk_config):
    sdk_custom_job(fake)
    spec = load_spec(EXAMPLE).spec
    spec.targets["vertex"] = {**spec.targets["vertex"], "api_endpoint": fake.url, "logging_endpoint": fake.url,
                              "storage_endpoint": fake.url}
    plan = adapter.plan(spec, "finetune")
    adapter.submit(plan)
    vendor_req, ours_req = fake.calls("POST", r"/v1/projects/acme-ml/locations/us-central1/customJobs")
    assert fake.errors == []
    vendor, ours = as_message(vendor_req), as_message(ours_req)
    assert ours == plan.requests[0].body  # what went over the wire is the plan

    d = compare(vendor, ours)
    assert_explained(d, differ=DIFFER, vendor_only=SDK_ONLY, ours_only=OURS_ONLY)
    for path in ("jobSpec.workerPoolSpecs[1].machineSpec.acceleratorType", "jobSpec.workerPoolSpecs[1].replicaCount",
                 "jobSpec.scheduling.strategy", "jobSpec.scheduling.maxWaitDuration", "jobSpec.scheduling.timeout",
                 "jobSpec.scheduling.restartJobOnWorkerRestart", "jobSpec.baseOutputDirectory.outputUriPrefix",
                 "jobSpec.serviceAccount", "jobSpec.workerPoolSpecs[0].diskSpec.bootDiskSizeGb"):
        assert path in d.same, path
