"""Jobs on a real Slurm cluster started by the tests (see conftest.py): a gang on two nodes, the
runtime from the wheel only, a failing rank, idempotent submits, the cluster's refusals."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from unijob.contract import JobState
from unijob.errors import SpecError, TargetError
from unijob_adapters.slurm.testing import spec_with, wait_final

REPO = Path(__file__).resolve().parents[3]
PORTABLE = REPO / "examples" / "portable" / "job.yaml"


def write_job(d: Path, script: str, **spec_fields) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "train.py").write_text(textwrap.dedent(script))
    lines = ["name: probe", "script: train.py"]
    for k, v in spec_fields.items():
        lines.append(f"{k}: {v}")
    (d / "job.yaml").write_text("\n".join(lines) + "\n")
    return d / "job.yaml"


def test_portable_example_on_two_nodes(adapter, slurm_opts):
    spec = spec_with(PORTABLE, slurm_opts)
    h = adapter.submit(adapter.plan(spec, "portable-1"))
    st = wait_final(adapter, h)
    lines = list(adapter.logs(h))
    assert st.state is JobState.SUCCEEDED, (st, lines)
    ranks = {}
    for line in lines:
        m = re.match(r"\[rank (\d)\] rank (\d)/(\d) on node (\d); master (\S+):(\d+)", line)
        if m:
            ranks[int(m.group(1))] = m.groups()
    assert sorted(ranks) == [0, 1], lines
    assert {r[2] for r in ranks.values()} == {"2"}                     # world size 2 on every rank
    assert len({(r[4], r[5]) for r in ranks.values()}) == 1            # the same master address:port
    assert {r[1] for r in ranks.values()} == {"0", "1"} and {r[3] for r in ranks.values()} == {"0", "1"}


def test_ranks_come_from_srun_and_the_runtime_only_from_the_wheel(adapter, slurm_opts, tmp_path):
    spec_file = write_job(tmp_path / "probe", """
        import json, os, unijob
        from unijob import runtime
        ctx = runtime.context()
        print(json.dumps({"rank": ctx.rank, "world": ctx.world_size, "local": ctx.local_rank, "node": ctx.node_rank,
                          "source": ctx.source, "file": unijob.__file__, "version": ctx.unijob_version,
                          "master": [ctx.master_addr, ctx.master_port], "job": ctx.job_id}), flush=True)
    """, resources="{nodes: 2, processes_per_node: 2}")
    spec = spec_with(spec_file, slurm_opts)
    plan = adapter.plan(spec, "probe-1")
    h = adapter.submit(plan)
    st = wait_final(adapter, h)
    import json

    seen = [json.loads(line.split("] ", 1)[1]) for line in adapter.logs(h) if line.startswith("[rank")]
    assert st.state is JobState.SUCCEEDED, (st, seen)
    assert sorted(s["rank"] for s in seen) == [0, 1, 2, 3] and {s["world"] for s in seen} == {4}
    assert sorted((s["node"], s["local"]) for s in seen) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert {s["source"] for s in seen} == {"slurm"} and len({tuple(s["master"]) for s in seen}) == 1
    site = Path(slurm_opts["staging_dir"]) / "site"
    assert all(Path(s["file"]).is_relative_to(site) for s in seen), seen   # no unijob but the wheel's
    assert {s["version"] for s in seen} == {plan.uploads[1].destination.rsplit("/", 1)[1].split("-")[1]}
    assert {s["job"] for s in seen} == {plan.name}


def test_a_failing_rank_fails_the_job_and_shows_its_last_lines(adapter, slurm_opts, tmp_path):
    spec_file = write_job(tmp_path / "fail", """
        import sys, time
        from unijob import runtime
        ctx = runtime.context()
        if ctx.rank == 1:
            print("loading shard 1", flush=True)
            print("ValueError: shard 1 is corrupt", flush=True)
            sys.exit(3)
        time.sleep(60)
    """, resources="{nodes: 2}")
    h = adapter.submit(adapter.plan(spec_with(spec_file, slurm_opts), "fail-1"))
    st = wait_final(adapter, h, timeout=60)
    assert st.state is JobState.FAILED
    assert "rank 1 exited with code 3" in st.message and "ValueError: shard 1 is corrupt" in st.message, st.message


def test_resubmitting_finds_the_job_by_its_name(adapter, slurm_opts, slurm_cluster):
    spec = spec_with(PORTABLE, slurm_opts)
    plan = adapter.plan(spec, "idem-1")
    h1 = adapter.submit(plan)
    # the answer of sbatch lost before the job directory recorded it: squeue --name still finds it
    (Path(plan.requests[0].body["cwd"]) / "submitted").unlink()
    h2 = adapter.submit(plan)
    assert h1.native_id == h2.native_id
    ids = slurm_cluster.run(["squeue", "-h", "-t", "all", f"--name={plan.name}", "-o", "%i"]).stdout.split()
    assert ids == [h1.native_id]
    wait_final(adapter, h1)


def test_a_killed_cli_retried_does_not_start_a_second_job(slurm_cluster, slurm_opts, tmp_path):
    """The CLI is SIGKILLed right after sbatch answered; running the same command again finds the job."""
    import yaml

    work = tmp_path / "cli"
    work.mkdir()
    for f in ("train.py",):
        (work / f).write_text((PORTABLE.parent / f).read_text())
    spec = yaml.safe_load(PORTABLE.read_text())
    spec["targets"] = {"slurm": slurm_opts}
    (work / "job.yaml").write_text(yaml.safe_dump(spec))
    shim = tmp_path / "bin"
    shim.mkdir()
    real = subprocess.run(["sh", "-c", "command -v sbatch"], capture_output=True, text=True).stdout.strip()
    (shim / "sbatch").write_text(f"#!/bin/sh\n{real} \"$@\" || exit $?\n"
                                 "cli=$(ps -o ppid= -p $PPID | tr -d ' '); kill -9 \"$cli\"\n")
    (shim / "sbatch").chmod(0o755)
    env = {**os.environ, **slurm_cluster.env, "UNIJOB_HOME": str(tmp_path / "home"),
           "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}"}
    cli = [str(Path(sys.executable).parent / "unijob"), "submit", str(work / "job.yaml"), "-t", "slurm"]
    first = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == -9, first.stderr              # killed right after sbatch answered
    env["PATH"] = os.environ["PATH"]
    second = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "resuming unfinished submission" in second.stderr
    native = re.search(r" as (\d+)", second.stdout).group(1)
    names = slurm_cluster.run(["squeue", "-h", "-t", "all", "-o", "%j %i"]).stdout.splitlines()
    mine = [n for n in names if n.split()[0].startswith("portable-") and n.split()[1] == native]
    same_name = [n for n in names if n.split()[0] == mine[0].split()[0]]
    assert len(same_name) == 1, names


def test_unknown_partition_and_gres_name_what_the_cluster_has(adapter, slurm_opts):
    spec = spec_with(PORTABLE, {**slurm_opts, "partition": "gpu-big"})
    spec = spec.model_copy(update={"spot": spec.spot.model_copy(update={"policy": "on_demand"})})
    with pytest.raises(SpecError) as ei:
        adapter.submit(adapter.plan(spec, "bad-part"))
    msg = str(ei.value)
    assert "gpu-big" in msg and "main, spot" in msg and "Invalid partition" in msg
    assert ei.value.issues[0].loc == ("targets", "slurm", "partition")
    spec = spec_with(PORTABLE, slurm_opts).model_copy(update={"resources": spec.resources.model_copy(
        update={"accelerator": "H100:8", "processes_per_node": 1})})
    with pytest.raises(SpecError) as ei:
        adapter.submit(adapter.plan(spec, "bad-gres"))
    assert ei.value.issues[0].loc == ("targets", "slurm", "gres") and "'h100'" in str(ei.value)
    assert "has: l4" in str(ei.value)


def test_sbatch_refusal_is_shown_verbatim(adapter, slurm_opts):
    spec = spec_with(PORTABLE, {**slurm_opts, "sbatch_args": ["--mem=900000M"]})
    with pytest.raises(TargetError) as ei:
        adapter.submit(adapter.plan(spec, "too-big"))
    assert ei.value.message.startswith("sbatch: error: ") and ei.value.exit_code == 4


def test_cli_exit_codes_for_refusals_and_an_unreachable_login(slurm_cluster, slurm_opts, tmp_path):
    import yaml

    from unijob_adapters.slurm.testing import free_port

    work = tmp_path / "cli"
    work.mkdir()
    (work / "train.py").write_text((PORTABLE.parent / "train.py").read_text())
    env = {**os.environ, **slurm_cluster.env, "UNIJOB_HOME": str(tmp_path / "home")}

    def submit(opts):
        spec = yaml.safe_load(PORTABLE.read_text())
        spec["targets"] = {"slurm": opts}
        (work / "job.yaml").write_text(yaml.safe_dump(spec))
        return subprocess.run([str(Path(sys.executable).parent / "unijob"), "submit", str(work / "job.yaml"), "-t", "slurm"],
                              env=env, capture_output=True, text=True, timeout=120)

    r = submit({**slurm_opts, "sbatch_args": ["--mem=900000M"]})
    assert r.returncode == 4 and "sbatch: error:" in r.stderr, r.stderr
    r = submit({**slurm_opts, "login": "nobody@127.0.0.1", "ssh_port": free_port(),
                "ssh_options": ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"]})
    assert r.returncode == 3 and "Traceback" not in r.stderr and "127.0.0.1" in r.stderr, r.stderr


@pytest.mark.slow
def test_time_limit_is_timeout_and_finished_jobs_are_read_from_the_completion_log(adapter, slurm_opts, tmp_path):
    spec_file = write_job(tmp_path / "slow", """
        import time
        print("working", flush=True)
        time.sleep(120)
    """, max_run="2")
    h = adapter.submit(adapter.plan(spec_with(spec_file, slurm_opts), "timeout-1"))
    st = wait_final(adapter, h, timeout=120)   # Slurm enforces time limits on a periodic check (~30 s)
    assert st.state is JobState.FAILED and st.native_state == "TIMEOUT", st
    # once scontrol has forgotten a job (MinJobAge), status reads sacct; accounting storage is off
    # here, so plain sacct fails and the completion log (sacct -c) answers
    row = adapter._accounting(adapter._runner(h.extra), h.native_id)
    assert row is not None and row["State"].startswith("TIMEOUT"), row


def test_qos_and_account_refusals_list_what_sacctmgr_has():
    """Without slurmdbd (the test cluster) Slurm does not check QoS or accounts, so sacctmgr's answer
    is canned here; the refusal's wording is sbatch's (src/common/slurm_errno.c)."""
    from unijob_adapters.slurm.adapter import SlurmAdapter

    class Canned:
        def text(self, command, **kw):
            assert command.startswith("sacctmgr -nP show qos"), command
            return 0, "normal\nscavenger\n", ""

    with pytest.raises(SpecError) as ei:
        SlurmAdapter()._refused(Canned(), {"qos": "gold"},
                                "sbatch: error: Batch job submission failed: Invalid qos specification")
    assert ei.value.issues[0].loc == ("targets", "slurm", "qos")
    assert "QoS 'gold' is not on the cluster; the cluster has: normal, scavenger" in str(ei.value)
