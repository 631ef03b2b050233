"""SageMakerRuntimeEnv with a synthetic training-container environment."""

from __future__ import annotations

import json
import subprocess
import sys

from unijob_adapters.sagemaker.runtime_env import SageMakerRuntimeEnv

BASE = {
    "SM_HOSTS": json.dumps(["algo-1", "algo-2", "algo-3", "algo-4"]),
    "SM_CURRENT_HOST": "algo-3",
    "SM_NUM_GPUS": "8",
    "SM_CHANNELS": json.dumps(["train", "val"]),
    "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
    "SM_CHANNEL_VAL": "/opt/ml/input/data/val",
    "SM_MODEL_DIR": "/opt/ml/model",
    "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
    "SM_HPS": json.dumps({"epochs": 10, "lr": 0.001}),
    "TRAINING_JOB_NAME": "ddp-spot-4f2999055b",
}


def test_detect():
    env = SageMakerRuntimeEnv()
    assert env.detect(BASE)
    assert not env.detect({"RANK": "0", "WORLD_SIZE": "2"})


def test_under_torchrun():
    environ = {**BASE, "RANK": "21", "WORLD_SIZE": "32", "LOCAL_RANK": "5", "LOCAL_WORLD_SIZE": "8",
               "GROUP_RANK": "2", "MASTER_ADDR": "algo-1", "MASTER_PORT": "7777",
               "UNIJOB_CHECKPOINT_URI": "s3://my-bucket/ckpts", "UNIJOB_CHECKPOINT_DIR": "/opt/ml/checkpoints",
               "UNIJOB_HYPERPARAMETERS": json.dumps({"epochs": 10, "lr": 0.001, "amp": True}),
               "UNIJOB_JOB_NAME": "ddp-spot-4f2999055b"}
    ctx = SageMakerRuntimeEnv().read(environ)
    assert ctx == {
        "rank": 21, "world_size": 32, "local_rank": 5, "local_world_size": 8, "node_rank": 2, "nodes": 4,
        "master_addr": "algo-1", "master_port": 7777,
        "channels": {"train": "/opt/ml/input/data/train", "val": "/opt/ml/input/data/val"},
        "model_dir": "/opt/ml/model", "output_dir": "/opt/ml/output/data",
        "hyperparameters": {"epochs": 10, "lr": 0.001, "amp": True},
        "checkpoint_uri": "s3://my-bucket/ckpts", "checkpoint_dir": "/opt/ml/checkpoints",
        "job_id": "ddp-spot-4f2999055b",
    }


def test_one_process_per_host_without_torchrun():
    environ = {**BASE, "SM_HPS": json.dumps({"epochs": 3, "sagemaker_program": "train.py"})}
    environ.pop("SM_CHANNELS")
    ctx = SageMakerRuntimeEnv().read(environ)
    assert (ctx["rank"], ctx["world_size"], ctx["node_rank"], ctx["local_world_size"]) == (2, 4, 2, 1)
    assert ctx["master_addr"] == "algo-1" and ctx["master_port"] == 29500
    assert ctx["hyperparameters"] == {"epochs": 3}
    assert ctx["channels"] == {"train": "/opt/ml/input/data/train", "val": "/opt/ml/input/data/val"}
    assert "checkpoint_dir" not in ctx and ctx["job_id"] == "ddp-spot-4f2999055b"


def test_stdlib_only():
    code = ("import sys; before = set(sys.modules); import unijob_adapters.sagemaker.runtime_env; "
            "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
            "print(sorted(new & {'boto3', 'botocore', 'pydantic', 'yaml', 'sagemaker'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    # unijob.contract (the RuntimeEnv base) imports pydantic; nothing AWS
    assert "boto3" not in out and "botocore" not in out and "sagemaker" not in out, out
