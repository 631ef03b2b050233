"""Jobs on a real two-node Ray cluster started by the tests (see conftest.py): the portable gang on
both raylets, the runtime from the wheel only, a failing rank, idempotent submits, refusals."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from unijob.contract import JobState
from unijob.errors import NotReady, SpecError
from unijob_adapters.ray.testing import free_port, spec_with, wait_final

REPO = Path(__file__).resolve().parents[3]
PORTABLE = REPO / "examples" / "portable" / "job.yaml"


def write_job(d: Path, script: str, **spec_fields) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "train.py").write_text(textwrap.dedent(script))
    lines = ["name: probe", "script: train.py"] + [f"{k}: {v}" for k, v in spec_fields.items()]
    (d / "job.yaml").write_text("\n".join(lines) + "\n")
    return d / "job.yaml"


def raylets(lines: list[str]) -> dict[int, str]:
    """node index -> raylet node id, from the launcher's placement lines."""
    out = {}
    for line in lines:
        m = re.match(r"\[unijob\] node (\d+): rank\(s\) \S+ on raylet (\w+) ", line)
        if m:
            out[int(m.group(1))] = m.group(2)
    return out


def test_portable_example_on_two_raylets(adapter, ray_opts):
    spec = spec_with(PORTABLE, ray_opts)
    plan = adapter.plan(spec, "portable-1")
    assert json.loads(plan.requests[0].body["entrypoint"].split("--bundle ")[1].split(" ")[0].strip("'")) == \
        {"CPU": 1.0, "GPU": 1.0, "accelerator_type:L4": 0.001}
    h = adapter.submit(plan)
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
    nodes = raylets(lines)
    assert sorted(nodes) == [0, 1] and nodes[0] != nodes[1], lines    # STRICT_SPREAD: one rank per raylet


def test_ranks_see_the_launcher_env_and_only_the_wheels_unijob(adapter, ray_opts, tmp_path):
    spec_file = write_job(tmp_path / "probe", """
        import json, os, unijob
        from unijob import runtime
        ctx = runtime.context()
        print(json.dumps({"rank": ctx.rank, "world": ctx.world_size, "local": ctx.local_rank, "node": ctx.node_rank,
                          "source": ctx.source, "file": unijob.__file__, "version": ctx.unijob_version,
                          "master": [ctx.master_addr, ctx.master_port], "job": ctx.job_id,
                          "raylet": os.environ["UNIJOB_RAY_NODE_ID"]}), flush=True)
    """, resources="{nodes: 2, processes_per_node: 2, cpus: 2}")
    plan = adapter.plan(spec_with(spec_file, ray_opts), "probe-1")
    h = adapter.submit(plan)
    st = wait_final(adapter, h)
    lines = list(adapter.logs(h))
    seen = [json.loads(line.split("] ", 1)[1]) for line in lines if line.startswith("[rank")]
    assert st.state is JobState.SUCCEEDED, (st, lines)
    assert sorted(s["rank"] for s in seen) == [0, 1, 2, 3] and {s["world"] for s in seen} == {4}
    assert sorted((s["node"], s["local"]) for s in seen) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert {s["source"] for s in seen} == {"ray"} and len({tuple(s["master"]) for s in seen}) == 1
    by_node = {s["node"]: s["raylet"] for s in seen}
    assert len(set(by_node.values())) == 2                                 # node ranks 0 and 1 on two raylets
    wheel = plan.extra["wheel"]                                             # unijob-<v>+runtime.<hash>-py3-...
    assert {s["version"] for s in seen} == {wheel.split("-")[1]}
    assert all(f"unijob-ray-runtime/{wheel[:-4]}/unijob/" in s["file"] for s in seen), seen  # the wheel, installed
    assert {s["job"] for s in seen} == {plan.name}


def test_a_failing_rank_fails_the_job_and_shows_its_last_lines(adapter, ray_opts, tmp_path):
    spec_file = write_job(tmp_path / "fail", """
        import sys, time
        from unijob import runtime
        ctx = runtime.context()
        if ctx.rank == 1:
            print("loading shard 1", flush=True)
            print("ValueError: shard 1 is corrupt", flush=True)
            sys.exit(3)
        time.sleep(120)
    """, resources="{nodes: 2}")
    h = adapter.submit(adapter.plan(spec_with(spec_file, ray_opts), "fail-1"))
    st = wait_final(adapter, h, timeout=90)
    assert st.state is JobState.FAILED
    assert "rank 1 exited with code 3" in st.message and "ValueError: shard 1 is corrupt" in st.message, st.message
    lines = list(adapter.logs(h))
    assert not any("[rank 0]" in line and "Traceback" in line for line in lines)


def test_a_retried_submit_starts_one_job(adapter, ray_opts, ray_cluster):
    from ray.job_submission import JobSubmissionClient

    plan = adapter.plan(spec_with(PORTABLE, ray_opts), "idem-1")
    client = JobSubmissionClient(ray_cluster.address)
    before = len(client.list_jobs())
    h1 = adapter.submit(plan)
    h2 = adapter.submit(plan)
    assert h1.native_id == h2.native_id == plan.requests[0].body["submission_id"]
    jobs = [j for j in client.list_jobs() if j.submission_id == h1.native_id]
    assert len(jobs) == 1 and len(client.list_jobs()) == before + 1
    followed = list(adapter.logs(h1, follow=True))          # tail_job_logs until the job is final
    assert followed[-1] == "[unijob] SUCCEEDED: every rank exited 0", followed[-5:]
    assert sum(line.startswith("[rank ") for line in followed) == 2
    assert wait_final(adapter, h1, timeout=10).state is JobState.SUCCEEDED


def test_a_gang_larger_than_the_cluster_is_refused_with_both_numbers(adapter, ray_opts):
    spec = spec_with(PORTABLE, ray_opts)
    spec = spec.model_copy(update={"resources": spec.resources.model_copy(update={"nodes": 3})})
    with pytest.raises(SpecError) as ei:
        adapter.submit(adapter.plan(spec, "too-big"))
    msg = str(ei.value)
    assert "needs 3 node(s)" in msg and "has 2 node(s)" in msg and "GPU 2" in msg, msg


def test_cli_exit_codes_for_an_unreachable_address_and_a_gang_too_large(ray_opts, tmp_path):
    import yaml

    work = tmp_path / "cli"
    work.mkdir()
    (work / "train.py").write_text((PORTABLE.parent / "train.py").read_text())
    env = {**os.environ, "UNIJOB_HOME": str(tmp_path / "home")}

    def submit(opts, **fields):
        spec = yaml.safe_load(PORTABLE.read_text())
        spec["targets"] = {"ray": opts}
        spec.update(fields)
        (work / "job.yaml").write_text(yaml.safe_dump(spec))
        return subprocess.run([str(Path(sys.executable).parent / "unijob"), "submit", str(work / "job.yaml"),
                               "-t", "ray"], env=env, capture_output=True, text=True, timeout=120)

    nowhere = f"http://127.0.0.1:{free_port()}"
    r = submit({"address": nowhere})
    assert r.returncode == 3 and "Traceback" not in r.stderr and nowhere in r.stderr, r.stderr
    r = submit(ray_opts, resources={"accelerator": "L4", "nodes": 2, "cpus": 64})
    assert r.returncode == 2 and "Traceback" not in r.stderr and "CPU 64" in r.stderr, r.stderr


def test_unreachable_address_is_not_ready(tmp_path):
    from unijob_adapters.ray.adapter import RayAdapter

    nowhere = f"http://127.0.0.1:{free_port()}"
    spec = spec_with(PORTABLE, {"address": nowhere})
    with pytest.raises(NotReady) as ei:
        RayAdapter().submit(RayAdapter().plan(spec, "x"))
    assert nowhere in str(ei.value) and ei.value.exit_code == 3
    assert not RayAdapter().check(spec).ready
