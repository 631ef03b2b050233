"""examples/databricks/ranker.yaml carries every setting of the seed's Databricks snippet."""

from __future__ import annotations

from pathlib import Path

from unijob.loading import load_spec

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "databricks" / "ranker.yaml"


def test_seed_snippet_settings_reach_the_wire(dbx_adapter, fake):
    spec = load_spec(EXAMPLE).spec
    plan = dbx_adapter.plan(spec, "nightly")
    h = dbx_adapter.submit(plan)
    sent = fake.calls("POST", r"/api/2\.2/jobs/runs/submit")[0].json()
    assert sent == plan.requests[0].body and fake.errors == []
    task = sent["tasks"][0]
    nc = task["new_cluster"]
    assert nc["spark_version"] == "15.4.x-gpu-ml-scala2.12"
    assert nc["node_type_id"] == "g5.2xlarge"
    assert nc["autoscale"] == {"min_workers": 2, "max_workers": 16}
    assert "num_workers" not in nc
    assert nc["aws_attributes"]["availability"] == "SPOT_WITH_FALLBACK"
    assert nc["aws_attributes"]["first_on_demand"] == 1  # the driver stays on-demand
    # the notebook task became the uploaded script, run as a 2-process TorchDistributor gang
    params = task["spark_python_task"]["parameters"]
    assert params[:6] == ["--mode", "distributed", "--num-processes", "2", "--use-gpu", "true"]
    script = params[params.index("--") + 1]
    assert script.endswith("/train_ranker.py") and script in fake.files
    assert fake.files[script] == (EXAMPLE.parent / "train_ranker.py").read_bytes()
    assert sent["timeout_seconds"] == 4 * 3600
    assert nc["spark_env_vars"]["UNIJOB_CHECKPOINT_DIR"] == "/dbfs/unijob/nightly-ranker/checkpoints"
    assert dbx_adapter.status(h).state.value == "QUEUED"
