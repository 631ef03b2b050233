"""plan(): the batch script and its #SBATCH options, built without a cluster."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from unijob.errors import SpecError
from unijob_adapters.slurm.adapter import SlurmAdapter
from unijob_adapters.slurm.plan import native_name, slurm_time
from unijob_adapters.slurm.runtime_env import SlurmEnv
from unijob_adapters.slurm.testing import spec_with

REPO = Path(__file__).resolve().parents[3]
PORTABLE = REPO / "examples" / "portable" / "job.yaml"
QUICKSTART = REPO / "examples" / "quickstart" / "job.yaml"


def sbatch_options(plan) -> list[str]:
    return [line[len("#SBATCH "):] for line in plan.requests[0].body["script"].splitlines() if line.startswith("#SBATCH ")]


def test_gang_gpu_time_memory_and_placement():
    spec = spec_with(PORTABLE, {"partition": "gpu", "qos": "normal", "account": "ml", "gres": {"L4": "nvidia_l4"},
                                "spot_partition": "preempt", "grace_seconds": 90, "staging_dir": "/shared/u/unijob"})
    spec = spec.model_copy(update={"resources": spec.resources.model_copy(update={"cpus": 8, "memory_gib": 16,
                                                                                  "processes_per_node": 2})})
    p = SlurmAdapter().plan(spec, "key-1")
    opts = sbatch_options(p)
    assert opts[:3] == [f"--job-name={native_name('portable', 'key-1')}", "--nodes=2", "--ntasks-per-node=2"]
    assert "--gpus-per-node=nvidia_l4:1" in opts
    assert "--cpus-per-task=4" in opts and "--mem=16384M" in opts and "--time=0-02:00:00" in opts
    # spot_with_fallback: the preemptible partition first, the on-demand one as the fallback
    assert "--partition=preempt,gpu" in opts and "--qos=normal" in opts and "--account=ml" in opts
    assert "--requeue" in opts and "--signal=B:TERM@90" in opts
    assert p.requests[0].body["cwd"] == f"/shared/u/unijob/jobs/{p.name}"
    assert p.resources.service == "slurm" and p.resources.accelerator == "L4" and p.resources.instance_count == 2
    script = p.requests[0].body["script"]
    assert "srun --kill-on-bad-exit=1" in script and "RANK=$SLURM_PROCID WORLD_SIZE=$SLURM_NTASKS" in script
    assert "LOCAL_RANK=$SLURM_LOCALID NODE_RANK=$SLURM_NODEID" in script
    assert [u.destination.rsplit("/", 2)[-2] for u in p.uploads] == ["src", "wheels"]


def test_on_demand_is_not_requeued_and_uses_the_default_placement():
    spec = spec_with(PORTABLE, {})
    spec = spec.model_copy(update={"spot": spec.spot.model_copy(update={"policy": "on_demand"}), "max_run": 90061})
    opts = sbatch_options(SlurmAdapter().plan(spec, "k"))
    assert "--no-requeue" in opts and not any(o.startswith(("--signal", "--partition")) for o in opts)
    assert "--time=1-01:01:01" in opts and "--gpus-per-node=l4:1" in opts


def test_spot_needs_a_preemptible_partition_or_qos():
    spec = spec_with(QUICKSTART, {})
    with pytest.raises(SpecError) as ei:
        SlurmAdapter().plan(spec, "k")
    assert ei.value.issues[0].loc == ("targets", "slurm", "spot_partition")
    opts = sbatch_options(SlurmAdapter().plan(spec_with(QUICKSTART, {"spot_qos": "scavenger"}), "k"))
    assert "--qos=scavenger" in opts and "--requeue" in opts


def test_image_jobs_and_reserved_env_are_spec_errors(tmp_path):
    spec = spec_with(PORTABLE, {})
    with pytest.raises(SpecError) as ei:
        SlurmAdapter().plan(spec.model_copy(update={"script": None, "image": "pytorch/pytorch", "command": ["python"]}), "k")
    assert ei.value.issues[0].loc == ("image",)
    with pytest.raises(SpecError) as ei:
        SlurmAdapter().plan(spec.model_copy(update={"env": {"MASTER_PORT": "1"}}), "k")
    assert ei.value.issues[0].loc == ("env", "MASTER_PORT")


def test_env_secrets_cannot_cross_ssh_and_never_enter_the_script(monkeypatch):
    monkeypatch.setenv("MY_TOKEN", "very-secret-value")
    spec = spec_with(PORTABLE, {}).model_copy(update={"secrets": {"HF_TOKEN": "env://MY_TOKEN",
                                                                  "DB": "aws-secretsmanager://prod/db"}})
    p = SlurmAdapter().plan(spec, "k")
    text = json.dumps(p.model_dump(mode="json"))
    assert "very-secret-value" not in text and p.extra["secret_env"] == {"HF_TOKEN": "MY_TOKEN"}
    assert "--export=ALL" in sbatch_options(p) and "UNIJOB_SECRET_REFS" in p.requests[0].body["script"]
    with pytest.raises(SpecError) as ei:
        SlurmAdapter().plan(spec_with(PORTABLE, {"login": "me@login"}).model_copy(
            update={"secrets": {"HF_TOKEN": "env://MY_TOKEN"}}), "k")
    assert ei.value.issues[0].loc == ("secrets", "HF_TOKEN")


def test_script_is_valid_bash():
    p = SlurmAdapter().plan(spec_with(QUICKSTART, {"spot_partition": "spot", "modules": ["cuda/12.4"]}), "k")
    r = subprocess.run(["bash", "-n"], input=p.requests[0].body["script"], text=True, capture_output=True)
    assert r.returncode == 0, r.stderr
    assert "module load cuda/12.4" in p.requests[0].body["script"]
    assert "envs/" in p.requests[0].body["script"]  # requirements go into a venv, not the cluster's Python


def test_slurm_time():
    assert slurm_time(600) == "0-00:10:00" and slurm_time(86400 * 2 + 5) == "2-00:00:05"


def test_runtime_env_reads_the_task_environment():
    env = {"UNIJOB_TARGET": "slurm", "SLURM_JOB_ID": "42", "SLURM_PROCID": "3", "SLURM_NTASKS": "4",
           "SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_NNODES": "2", "SLURM_NTASKS_PER_NODE": "2",
           "MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "20042", "SLURM_RESTART_COUNT": "1",
           "UNIJOB_JOB_ID": "qs-1234abcd", "UNIJOB_HYPERPARAMETERS": '{"lr":0.1}', "UNIJOB_CHECKPOINT_DIR": "/ck"}
    got = SlurmEnv().read(env)
    assert SlurmEnv().detect(env) and not SlurmEnv().detect({"HOME": "/root"})
    assert got["rank"] == 3 and got["world_size"] == 4 and got["local_rank"] == 1 and got["node_rank"] == 1
    assert got["local_world_size"] == 2 and got["nodes"] == 2 and got["master_addr"] == "10.0.0.5"
    assert got["master_port"] == 20042 and got["restart_count"] == 1 and got["job_id"] == "qs-1234abcd"
    from unijob.runtime.environment import context

    ctx = context(env, runtime_envs=[SlurmEnv()])
    assert (ctx.rank, ctx.world_size, ctx.restart_count, ctx.source) == (3, 4, 1, "slurm")



def test_endpoints_are_unsupported_with_the_reason():
    spec = spec_with(REPO / "examples" / "quickstart" / "endpoint.yaml", {})
    with pytest.raises(SpecError) as ei:
        SlurmAdapter().plan_endpoint(spec)
    assert ei.value.issues[0].loc == ("endpoint",) and "time limit" in str(ei.value)


def test_unijob_settings_of_the_submitting_process_do_not_reach_the_job(monkeypatch):
    from unijob_adapters.slurm.client import Runner

    monkeypatch.setenv("UNIJOB_HOME", "/somewhere")
    monkeypatch.setenv("PYTHONPATH", "/my/checkout/src")
    out = Runner(env={"SLURM_CONF": "/c/slurm.conf"}).run("env").stdout.decode()
    assert "UNIJOB_HOME" not in out and "PYTHONPATH" not in out and "SLURM_CONF=/c/slurm.conf" in out
