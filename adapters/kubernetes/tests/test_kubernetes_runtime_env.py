"""runtime_env: what the manifests set, read back with a synthetic environ (stdlib only)."""

from __future__ import annotations

import subprocess
import sys

from unijob_adapters.kubernetes.runtime_env import KubernetesEnv

POD = {"UNIJOB_TARGET": "kubernetes", "NODE_RANK": "2", "GROUP_RANK": "2", "NNODES": "4", "WORLD_SIZE": "16",
       "LOCAL_WORLD_SIZE": "4", "MASTER_ADDR": "gang-1-0.gang-1", "MASTER_PORT": "29500",
       "UNIJOB_JOB_NAME": "gang-1", "UNIJOB_CHANNELS": '{"train":"/opt/unijob/data/d/train"}',
       "UNIJOB_HYPERPARAMETERS": '{"lr":0.1,"epochs":3}', "UNIJOB_CHECKPOINT_URI": "pvc://ckpt/run",
       "UNIJOB_CHECKPOINT_DIR": "/opt/unijob/data/ckpt/run", "UNIJOB_OUTPUT_URI": "s3://b/out"}


def test_reads_the_pod_env():
    env = KubernetesEnv()
    assert env.detect(POD) and not env.detect({"HOME": "/root"})
    ctx = env.read({**POD, "LOCAL_RANK": "3"})
    assert ctx == {"rank": 11, "world_size": 16, "local_rank": 3, "local_world_size": 4, "node_rank": 2, "nodes": 4,
                   "master_port": 29500, "master_addr": "gang-1-0.gang-1", "channels": {"train": "/opt/unijob/data/d/train"},
                   "hyperparameters": {"lr": 0.1, "epochs": 3}, "output_dir": "s3://b/out",
                   "checkpoint_uri": "pvc://ckpt/run", "checkpoint_dir": "/opt/unijob/data/ckpt/run", "job_id": "gang-1"}


def test_torchrun_rank_wins_and_bare_indexed_job_works():
    assert KubernetesEnv().read({**POD, "RANK": "9", "LOCAL_RANK": "1"})["rank"] == 9
    bare = {"JOB_COMPLETION_INDEX": "3", "KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    assert KubernetesEnv().detect(bare)
    assert KubernetesEnv().read(bare) == {"rank": 3, "local_rank": 0, "local_world_size": 1, "node_rank": 3}


def test_imports_only_the_standard_library():
    code = ("import sys; base=set(sys.modules); import unijob_adapters.kubernetes.runtime_env; "
            "print(sorted({m.split('.')[0] for m in set(sys.modules)-base if not m.startswith('_')} - {'unijob','unijob_adapters','pydantic',"
            "'pydantic_core','typing_extensions','annotated_types','typing_inspection'} - set(sys.stdlib_module_names)))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"
