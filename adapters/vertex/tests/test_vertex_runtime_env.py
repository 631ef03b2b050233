"""runtime_env: Vertex's CLUSTER_SPEC, PyTorch variables and AIP_* dirs -> unijob context keys."""

from __future__ import annotations

import json
import subprocess
import sys

from unijob_adapters.vertex.runtime_env import VertexRuntimeEnv


def _cluster(task_type: str, index: int) -> str:
    return json.dumps({
        "cluster": {"workerpool0": ["cmle-training-workerpool0-ab-0:2222"],
                    "workerpool1": ["cmle-training-workerpool1-ab-0:2222", "cmle-training-workerpool1-ab-1:2222"]},
        "environment": "cloud", "task": {"type": task_type, "index": index},
        "job": json.dumps({"job_name": "projects/1/locations/us-central1/customJobs/42"})})


def test_worker_from_cluster_spec_alone():
    env = {"CLUSTER_SPEC": _cluster("workerpool1", 1)}
    rt = VertexRuntimeEnv()
    assert rt.detect(env) and not rt.detect({"HOME": "/root"})
    ctx = rt.read(env)
    assert ctx["nodes"] == 3 and ctx["node_rank"] == 2 and ctx["rank"] == 2 and ctx["world_size"] == 3
    assert ctx["master_addr"] == "cmle-training-workerpool0-ab-0" and ctx["master_port"] == 2222
    assert ctx["job_id"] == "projects/1/locations/us-central1/customJobs/42"


def test_pytorch_variables_and_aip_dirs():
    env = {"CLUSTER_SPEC": _cluster("workerpool0", 0), "MASTER_ADDR": "10.0.0.2", "MASTER_PORT": "23456",
           "WORLD_SIZE": "3", "RANK": "0", "CLOUD_ML_JOB_ID": "42",
           "AIP_MODEL_DIR": "gs://b/out/model/", "AIP_CHECKPOINT_DIR": "gs://b/out/checkpoints/",
           "AIP_TENSORBOARD_LOG_DIR": "gs://b/out/logs/"}
    ctx = VertexRuntimeEnv().read(env)
    assert (ctx["master_addr"], ctx["master_port"], ctx["world_size"], ctx["rank"], ctx["node_rank"]) == \
        ("10.0.0.2", 23456, 3, 0, 0)
    assert ctx["model_dir"] == "/gcs/b/out/model/" and ctx["checkpoint_dir"] == "/gcs/b/out/checkpoints/"
    assert ctx["checkpoint_uri"] == "gs://b/out/checkpoints/" and ctx["tensorboard_dir"] == "/gcs/b/out/logs/"
    assert ctx["job_id"] == "42"


def test_under_torchrun_process_ranks_are_left_alone():
    env = {"CLUSTER_SPEC": _cluster("workerpool1", 0), "LOCAL_RANK": "3", "RANK": "11", "WORLD_SIZE": "24",
           "MASTER_ADDR": "10.0.0.2", "MASTER_PORT": "29500"}
    ctx = VertexRuntimeEnv().read(env)
    assert "rank" not in ctx and "world_size" not in ctx and "local_rank" not in ctx
    assert ctx["node_rank"] == 1 and ctx["nodes"] == 3 and ctx["master_addr"] == "10.0.0.2"


def test_unijob_checkpoint_uri_wins_and_garbage_is_tolerated():
    ctx = VertexRuntimeEnv().read({"CLUSTER_SPEC": "not json", "AIP_CHECKPOINT_DIR": "gs://b/c/",
                                   "UNIJOB_CHECKPOINT_URI": "gs://b/mine"})
    # the spec's checkpoint location (UNIJOB_CHECKPOINT_URI/_DIR, read by the core) is left alone
    assert "checkpoint_uri" not in ctx and "checkpoint_dir" not in ctx


def test_gcs_fuse_root_can_be_elsewhere():
    ctx = VertexRuntimeEnv().read({"AIP_MODEL_DIR": "gs://b/out/model/", "UNIJOB_GCS_FUSE_ROOT": "/mnt/gcs/"})
    assert ctx["model_dir"] == "/mnt/gcs/b/out/model/"


def test_imports_no_cloud_sdk():
    """The module itself is stdlib-only; its base class (unijob.contract) brings pydantic, nothing else."""
    code = ("import sys; before=set(sys.modules); import unijob_adapters.vertex.runtime_env; "
            "print(' '.join(sorted(m for m in set(sys.modules)-before if m.split('.')[0] in "
            "('google','grpc','proto','requests','urllib3','yaml'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
