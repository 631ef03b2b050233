"""unijob's runs/submit held against what the real databricks-sdk sends for the seed's ``w.jobs.submit(...)``.

The seed's snippet (seed 000, section 2) runs unchanged with a real ``WorkspaceClient`` against the
recording fake workspace of conftest.py (127.0.0.1, no network) and blocks on ``.result()`` as in the
seed; its request body is compared field by field with unijob's plan for examples/databricks/ranker.yaml
(the same job as a unijob spec). Every difference is listed below with its reason; any other difference
fails (and is a bug in plan.py), as does a listed one that went away.
"""

from __future__ import annotations

from pathlib import Path

from unijob.loading import load_spec
from unijob.testing.vendor import assert_explained, compare

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "databricks" / "ranker.yaml"

DIFFER = {
    "run_name": "unijob appends <sha256(name, submission)[:8]> so every submission's run is told apart in the UI",
    "tasks[0].task_key": "unijob's one task is always 'main' (its status, logs and output look the task up by it)",
}
SDK_ONLY = {
    "tasks[0].notebook_task.notebook_path": "the seed runs a workspace notebook; the unijob spec runs the same "
                                            "training as a script (train_ranker.py), see OURS_ONLY",
}
OURS_ONLY = {
    "idempotency_token": "derived from the submission id, so a retried submit starts no second run",
    "timeout_seconds": "the spec's max_run (4h); the seed sets no timeout",
    "tasks[0].spark_python_task.*": "the script, uploaded with unijob's launcher, which runs the gang through "
                                    "TorchDistributor (the seed's notebook does its own distribution)",
    "tasks[0].new_cluster.spark_env_vars.*": "the unijob runtime contract (job name, checkpoint dir, "
                                             "hyperparameters) that unijob.runtime.context() reads",
    "tasks[0].new_cluster.custom_tags.*": "unijob-job / unijob-run tags, so runs and their costs are found by job",
    "tasks[0].new_cluster.aws_attributes.first_on_demand": "unijob states that the driver stays on-demand (1) "
                                                           "instead of leaving it to the workspace default",
    "tasks[0].libraries[0].whl": "unijob's runtime wheel, uploaded under upload_dir/_runtime and installed on "
                                 "every node: the launcher and unijob.runtime import it on the cluster",
    "tasks[0].max_retries": "spot.max_restarts (default 3): the task is retried after a spot loss",
}


def seed_submit(w):
    """Seed 000, section 2, verbatim but for the client (passed in) and the returned Wait."""
    from databricks.sdk.service import compute, jobs

    return w.jobs.submit(
        run_name="nightly-ranker-train",
        tasks=[jobs.SubmitTask(
            task_key="train",
            new_cluster=compute.ClusterSpec(
                spark_version="15.4.x-gpu-ml-scala2.12",  # GPU + MLflow preinstalled
                node_type_id="g5.2xlarge",
                autoscale=compute.AutoScale(min_workers=2, max_workers=16),  # 33.4
                aws_attributes=compute.AwsAttributes(  # spot with on-demand fallback
                    availability=compute.AwsAvailability.SPOT_WITH_FALLBACK),  # 33.8
            ),
            notebook_task=jobs.NotebookTask(notebook_path="/Repos/team/train_ranker"),
        )],
    )


def test_seed_jobs_submit_and_unijob_send_the_same_cluster(dbx_env, dbx_adapter):
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service import jobs

    fake = dbx_env
    wait = seed_submit(WorkspaceClient(host=fake.url, token="x"))
    fake.set_state(wait.run_id, "TERMINATED", "SUCCESS")
    run = wait.result()  # the seed blocks until the run finishes
    assert run.state.result_state == jobs.RunResultState.SUCCESS
    [sdk_req] = fake.calls("POST", r"/api/2\.2/jobs/runs/submit")
    vendor = sdk_req.json()
    assert fake.errors == []

    plan = dbx_adapter.plan(load_spec(EXAMPLE).spec, "nightly")
    dbx_adapter.submit(plan)
    ours = fake.calls("POST", r"/api/2\.2/jobs/runs/submit")[1].json()
    assert ours == plan.requests[0].body and fake.errors == []

    d = compare(vendor, ours)
    assert_explained(d, differ=DIFFER, vendor_only=SDK_ONLY, ours_only=OURS_ONLY)
    for path in ("tasks[0].new_cluster.spark_version", "tasks[0].new_cluster.node_type_id",
                 "tasks[0].new_cluster.autoscale.min_workers", "tasks[0].new_cluster.autoscale.max_workers",
                 "tasks[0].new_cluster.aws_attributes.availability"):
        assert path in d.same, path
