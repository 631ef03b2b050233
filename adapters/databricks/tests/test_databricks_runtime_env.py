"""The Databricks runtime env (stdlib only) and the launcher's argument handling."""

from __future__ import annotations

import subprocess
import sys

import pytest

from unijob_adapters.databricks import launcher
from unijob_adapters.databricks.runtime_env import DatabricksRuntimeEnv, local_path


@pytest.mark.parametrize("uri,local", [
    ("dbfs:/unijob/ckpt", "/dbfs/unijob/ckpt"),
    ("dbfs:///unijob/ckpt", "/dbfs/unijob/ckpt"),
    ("dbfs:/Volumes/main/ml/v/ckpt", "/Volumes/main/ml/v/ckpt"),
    ("/Volumes/main/ml/v/ckpt", "/Volumes/main/ml/v/ckpt"),
    ("/dbfs/x", "/dbfs/x"),
    ("s3://bucket/x", None),
])
def test_storage_uris_map_to_cluster_paths(uri, local):
    assert local_path(uri) == local


def test_reads_torchdistributor_rank_env():
    env = {"DATABRICKS_RUNTIME_VERSION": "15.4", "RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1",
           "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "2", "MASTER_ADDR": "10.0.0.4", "MASTER_PORT": "29500",
           "UNIJOB_CHECKPOINT_URI": "dbfs:/ck", "UNIJOB_CHANNELS": '{"train": "dbfs:/data/train"}',
           "UNIJOB_HYPERPARAMETERS": '{"lr": 0.1}', "UNIJOB_JOB_NAME": "job-1", "UNIJOB_OUTPUT_URI": "/Volumes/a/b/c/out"}
    r = DatabricksRuntimeEnv()
    assert r.detect(env) and not r.detect({"RANK": "0"})
    ctx = r.read(env)
    assert ctx == {"rank": 5, "world_size": 8, "local_rank": 1, "local_world_size": 2, "node_rank": 2,
                   "master_port": 29500, "master_addr": "10.0.0.4", "nodes": 4, "checkpoint_uri": "dbfs:/ck",
                   "checkpoint_dir": "/dbfs/ck", "channels": {"train": "/dbfs/data/train"},
                   "hyperparameters": {"lr": 0.1}, "job_id": "job-1", "output_dir": "/Volumes/a/b/c/out"}


def test_single_process_run_has_no_rank_keys():
    assert DatabricksRuntimeEnv().read({"DATABRICKS_RUNTIME_VERSION": "15.4"}) == {}


def test_runtime_env_imports_only_the_stdlib_and_core():
    code = ("import sys; import unijob_adapters.databricks.runtime_env; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'databricks', 'pyspark', 'torch', 'pydantic_core'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert "databricks" not in out and "torch" not in out


def test_launcher_parses_and_runs_a_script_directly(tmp_path):
    script = tmp_path / "s.py"
    (tmp_path / "helper.py").write_text("VALUE = 41\n")
    script.write_text("import sys, helper\nprint(helper.VALUE + 1, sys.argv[1:])\n")
    from unijob_adapters.databricks.plan import launcher_path

    out = subprocess.run([sys.executable, str(launcher_path()), "--mode", "direct", "--num-processes", "1",
                          "--use-gpu", "false", "--", str(script), "--lr", "0.1"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "42 ['--lr', '0.1']"
    o = launcher.parse(["--mode", "distributed", "--num-processes", "8", "--use-gpu", "true", "--", "t.py", "-x"])
    assert (o["mode"], o["num_processes"], o["use_gpu"], o["program"]) == ("distributed", 8, True, ["t.py", "-x"])
    with pytest.raises(SystemExit):
        launcher.parse(["--mode", "weird", "--", "t.py"])


def test_launcher_exec_returns_the_command_exit_code():
    from unijob_adapters.databricks.plan import launcher_path

    out = subprocess.run([sys.executable, str(launcher_path()), "--exec", "--", sys.executable, "-c",
                          "import sys; sys.exit(3)"])
    assert out.returncode == 3
