"""The local gang with real processes: failure stops the gang, ranks meet, preemption restarts
from a checkpoint, max_run, cancel from another process, supervisor death, secrets.

Every job runs under ``UNIJOB_HOME=tmp_path``; teardown cancels whatever is left and fails the test
if a supervisor or rank outlived it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unijob.contract import JobHandle, JobState
from unijob.local import jobdir as jd
from unijob.local.adapter import LocalAdapter
from unijob.spec import JobSpec

pytestmark = pytest.mark.slow

SECRET = "gang-secret-4b1d-never-in-files"

SCRIPT = r'''
import hashlib, json, os, signal, socket, subprocess, sys, time
hp = json.loads(os.environ["UNIJOB_HYPERPARAMETERS"])
mode, rank, world = hp["mode"], int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
out = os.environ["UNIJOB_OUTPUT_URI"]
with open(os.path.join(out, f"pid-{rank}-{os.environ['UNIJOB_RESTART_COUNT']}"), "w") as f:
    f.write(str(os.getpid()))
print(f"rank {rank} of {world} starting", flush=True)

if mode == "fail":
    if rank == 0:  # a grandchild in rank 0's process group: the gang stop must reach it too
        child = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                                  "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
        open(os.path.join(out, "grandchild"), "w").write(str(child.pid))
    if rank == 1:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # needs the SIGKILL after the grace
    if rank == 2:
        deadline = time.time() + 10
        while len([n for n in os.listdir(out) if n.startswith("pid-")]) < world and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        print("rank-2-last-words: disk on fire", flush=True)
        sys.exit(1)
    time.sleep(60)

elif mode == "meet":
    addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    me = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK",
          "GROUP_RANK", "ROLE_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RESTART_COUNT",
          "UNIJOB_JOB_ID", "UNIJOB_TARGET", "UNIJOB_CHANNELS", "UNIJOB_CHECKPOINT_DIR", "UNIJOB_RESTART_COUNT")}
    me["secret_sha"] = hashlib.sha256(os.environ.get("API_TOKEN", "").encode()).hexdigest()
    if rank == 0:
        srv = socket.create_server((addr, port))
        srv.settimeout(20)
        seen = [me]
        for _ in range(world - 1):
            conn, _ = srv.accept()
            with conn, conn.makefile() as f:
                seen.append(json.loads(f.readline()))
        json.dump(seen, open(os.path.join(out, "meet.json"), "w"))
        print(f"rank 0 met {len(seen) - 1} peers", flush=True)
    else:
        deadline = time.time() + 20
        while True:
            try:
                s = socket.create_connection((addr, port), timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        with s:
            s.sendall((json.dumps(me) + "\n").encode())

elif mode == "train":
    ck = os.path.join(os.environ["UNIJOB_CHECKPOINT_DIR"], f"ckpt-{rank}.json")
    start = json.load(open(ck))["step"] if os.path.exists(ck) else 0
    notice = []
    signal.signal(signal.SIGTERM, lambda *a: notice.append(1))
    step = start
    while step < hp["steps"]:
        time.sleep(0.05)
        step += 1
        json.dump({"step": step}, open(ck + ".tmp", "w"))
        os.replace(ck + ".tmp", ck)
        if notice:
            print(f"preempted at step {step}", flush=True)
            sys.exit(0)  # exit 0 after the notice: preempted, not finished
    json.dump({"start": start, "end": step, "restart": os.environ["UNIJOB_RESTART_COUNT"],
               "torchelastic": os.environ["TORCHELASTIC_RESTART_COUNT"]},
              open(os.path.join(out, f"done-{rank}.json"), "w"))

elif mode == "runtime":  # what unijob.runtime makes of the local target's env
    from unijob.runtime import context, preempted
    c = context()
    json.dump({"rank": c.rank, "world_size": c.world_size, "local_rank": c.local_rank, "node_rank": c.node_rank,
               "nodes": c.nodes, "master": [c.master_addr, c.master_port], "output_dir": str(c.output_dir),
               "checkpoint_dir": str(c.checkpoint_dir), "hp": c.hyperparameters, "job_id": c.job_id,
               "target": c.target, "restart_count": c.restart_count, "preempted": preempted()},
              open(os.path.join(out, f"ctx-{rank}.json"), "w"))

elif mode == "forever":
    while True:
        time.sleep(0.1)
'''


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (os.kill(pid, 0) fails, or only a zombie is left)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return not jd.alive(pid)


def wait_until(pred, timeout: float, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("UNIJOB_HOME", str(h))
    monkeypatch.setenv("GANG_TEST_SECRET", SECRET)
    yield h
    a = LocalAdapter()
    jobs = h / "local" / "jobs"
    for d in sorted(jobs.iterdir()) if jobs.exists() else []:
        a.cancel(JobHandle(target="local", native_id=d.name, extra={"job_dir": str(d)}), wait=15)
        pid = jd.read_pid(d)
        if pid is not None:  # it exits just after writing the final state
            wait_until(lambda: gone(pid), 5)
        for r in (jd.read_json(d / "state.json") or {}).get("ranks", []):
            if r.get("pid") and jd.alive(r["pid"], r.get("start_time")):
                os.killpg(r["pgid"], signal.SIGKILL)
                raise AssertionError(f"rank {r['rank']} of {d.name} outlived its job")


def run(tmp_path: Path, mode: str, sub: str = "s1", **over):
    (tmp_path / "gang.py").write_text(SCRIPT)
    data = {"name": f"gang-{mode}", "script": "gang.py", "hyperparameters": {"mode": mode},
            "secrets": {"API_TOKEN": "env://GANG_TEST_SECRET"},
            "targets": {"local": {"preemption_grace": 1}}, **over}
    data["hyperparameters"] = {"mode": mode, **data["hyperparameters"]}
    spec = JobSpec.model_validate(data, context={"base_dir": tmp_path})
    adapter = LocalAdapter()
    handle = adapter.submit(adapter.plan(spec, sub))
    return adapter, handle, Path(handle.extra["job_dir"])


def final(adapter, handle, timeout: float):
    return wait_until(lambda: (s := adapter.status(handle)).state.is_final and s, timeout)


def rank_pids(job_dir: Path, restart: int = 0) -> list[int]:
    out = job_dir / "output"
    names = sorted(os.listdir(out)) if out.exists() else []
    texts = [(out / n).read_text() for n in names if n.startswith("pid-") and n.endswith(f"-{restart}")]
    return [int(t) for t in texts if t]


def test_failing_rank_stops_the_whole_gang(tmp_path, home):
    adapter, h, d = run(tmp_path, "fail", resources={"nodes": 2, "processes_per_node": 2})
    wait_until(lambda: len(rank_pids(d)) == 4 and (d / "output" / "grandchild").exists(), 10)
    pids = rank_pids(d) + [int((d / "output" / "grandchild").read_text())]
    st = final(adapter, h, 10)
    failed_at = time.time()
    assert st.state is JobState.FAILED
    assert st.exit_code == 1
    assert "rank 2" in st.message and "code 1" in st.message
    assert "rank-2-last-words: disk on fire" in st.message  # the log tail
    wait_until(lambda: all(gone(p) for p in pids), 5)
    # rank 2 exited after ~0.2 s; rank 1 ignored SIGTERM and needed the SIGKILL after the 1 s grace
    state = jd.read_json(d / "state.json")
    assert state["failed_rank"] == 2 and state["ended_at"] <= failed_at
    assert state["ended_at"] - state["started_at"] < 5
    assert {r["rank"]: r["exit_code"] for r in state["ranks"]}[1] == -signal.SIGKILL
    lines = list(adapter.logs(h))
    assert "[rank 2] rank-2-last-words: disk on fire" in lines
    assert "[rank 0] rank 0 of 4 starting" in lines


def test_ranks_meet_at_master_with_torchrun_env(tmp_path, home):
    (tmp_path / "data").mkdir()
    adapter, h, d = run(tmp_path, "meet", resources={"nodes": 2, "processes_per_node": 2},
                        inputs={"train": "data"}, checkpoint={"uri": "ckpt"})
    followed = list(adapter.logs(h, follow=True))  # returns once the job is final and drained
    assert "[rank 0] rank 0 met 3 peers" in followed
    assert {f"[rank {r}] rank {r} of 4 starting" for r in range(4)} <= set(followed)
    st = adapter.status(h)
    assert st.state is JobState.SUCCEEDED, st.message
    seen = json.loads((d / "output" / "meet.json").read_text())
    assert sorted(int(s["RANK"]) for s in seen) == [0, 1, 2, 3]
    assert {s["WORLD_SIZE"] for s in seen} == {"4"} and {s["LOCAL_WORLD_SIZE"] for s in seen} == {"2"}
    state = jd.read_json(d / "state.json")
    for s in seen:
        r = int(s["RANK"])
        assert (int(s["NODE_RANK"]), int(s["LOCAL_RANK"])) == divmod(r, 2)
        assert s["GROUP_RANK"] == s["NODE_RANK"] and s["ROLE_RANK"] == s["RANK"]
        assert (s["MASTER_ADDR"], int(s["MASTER_PORT"])) == ("127.0.0.1", state["master_port"])
        assert s["TORCHELASTIC_RESTART_COUNT"] == s["UNIJOB_RESTART_COUNT"] == "0"
        assert s["UNIJOB_JOB_ID"] == h.native_id and s["UNIJOB_TARGET"] == "local"
        assert json.loads(s["UNIJOB_CHANNELS"]) == {"train": str(tmp_path / "data")}
        assert s["UNIJOB_CHECKPOINT_DIR"] == str(tmp_path / "ckpt")
        assert s["secret_sha"] == hashlib.sha256(SECRET.encode()).hexdigest()  # env:// resolved
    assert "[rank 0] rank 0 met 3 peers" in list(adapter.logs(h))
    for f in d.iterdir():  # plan.json, state.json, supervisor.log, rank logs, outputs
        if f.is_file():
            assert SECRET not in f.read_text(errors="replace"), f.name
    assert not any(SECRET in line for line in adapter.logs(h))


def test_unijob_runtime_reads_the_local_env(tmp_path, home):
    adapter, h, d = run(tmp_path, "runtime", resources={"nodes": 2, "processes_per_node": 1},
                        hyperparameters={"lr": 0.5, "epochs": 2}, checkpoint={"uri": "ckpt"})
    st = final(adapter, h, 20)
    assert st.state is JobState.SUCCEEDED, st.message
    port = jd.read_json(d / "state.json")["master_port"]
    for rank in (0, 1):
        c = json.loads((d / "output" / f"ctx-{rank}.json").read_text())
        assert (c["rank"], c["world_size"], c["local_rank"], c["node_rank"], c["nodes"]) == (rank, 2, 0, rank, 2)
        assert c["master"] == ["127.0.0.1", port] and c["target"] == "local" and c["job_id"] == h.native_id
        assert c["output_dir"] == str(d / "output") and c["checkpoint_dir"] == str(tmp_path / "ckpt")
        assert c["hp"] == {"mode": "runtime", "lr": 0.5, "epochs": 2} and c["restart_count"] == 0
        assert c["preempted"] is False


def test_simulated_preemption_resumes_from_checkpoint(tmp_path, home):
    adapter, h, d = run(tmp_path, "train", resources={"processes_per_node": 2}, hyperparameters={"steps": 30},
                        checkpoint={"uri": "ckpt"}, spot={"policy": "spot", "max_restarts": 2},
                        targets={"local": {"simulate_preemption": 1, "preemption_grace": 2}})
    st = final(adapter, h, 20)
    assert st.state is JobState.SUCCEEDED, st.message
    assert st.restarts == 1
    for rank in (0, 1):
        done = json.loads((d / "output" / f"done-{rank}.json").read_text())
        assert 0 < done["start"] < 30 and done["end"] == 30  # resumed, not restarted from scratch
        assert done["restart"] == done["torchelastic"] == "1"
    lines = list(adapter.logs(h))
    assert any(line.startswith("[rank 0] preempted at step") for line in lines)
    assert "[rank 1] [unijob] restart 1: relaunching rank 1" in lines
    history = [s for s, _ in jd.read_json(d / "state.json")["history"]]
    assert history == ["QUEUED", "RUNNING", "RESTARTING", "RUNNING", "SUCCEEDED"]


def test_preemptions_are_bounded_by_max_restarts(tmp_path, home):
    adapter, h, d = run(tmp_path, "forever", checkpoint={"uri": "ckpt"}, spot={"policy": "spot", "max_restarts": 1},
                        targets={"local": {"simulate_preemption": 1, "simulate_preemptions": 5,
                                           "preemption_grace": 1}})
    st = final(adapter, h, 15)
    assert st.state is JobState.FAILED and st.restarts == 1
    assert "max_restarts (1) exhausted" in st.message
    assert all(gone(p) for p in rank_pids(d, 0) + rank_pids(d, 1))


def test_max_run_is_enforced(tmp_path, home):
    t0 = time.monotonic()
    adapter, h, d = run(tmp_path, "forever", max_run=1)
    st = final(adapter, h, 10)
    assert st.state is JobState.FAILED and "exceeded max_run (1 s)" in st.message
    assert time.monotonic() - t0 < 5
    assert all(gone(p) for p in rank_pids(d))


def test_cancel_from_another_process(tmp_path, home):
    adapter, h, d = run(tmp_path, "forever", resources={"processes_per_node": 2})
    wait_until(lambda: adapter.status(h).state is JobState.RUNNING and len(rank_pids(d)) == 2, 10)
    code = ("import json, sys; from unijob.contract import JobHandle; from unijob.local.adapter import LocalAdapter; "
            "LocalAdapter().cancel(JobHandle.from_dict(json.loads(sys.argv[1])))")
    subprocess.run([sys.executable, "-c", code, json.dumps(h.to_dict())], check=True, timeout=30,
                   env={**os.environ, "UNIJOB_HOME": str(home)})
    st = adapter.status(h)
    assert st.state is JobState.CANCELLED
    assert all(gone(p) for p in rank_pids(d))
    adapter.cancel(h)  # a finished job: no-op
    assert adapter.status(h).state is JobState.CANCELLED


def test_resubmit_starts_nothing_new(tmp_path, home):
    adapter, h, d = run(tmp_path, "forever", sub="same")
    try:
        pid = jd.read_pid(d)
        adapter2, h2, d2 = run(tmp_path, "forever", sub="same")
        assert (h2.native_id, d2, jd.read_pid(d2)) == (h.native_id, d, pid)
        assert len(list((home / "local" / "jobs").iterdir())) == 1
    finally:  # the gang runs forever: stop it even when an assertion failed (this home is not the safety net's)
        adapter.cancel(h)


def test_killed_supervisor_takes_its_ranks_and_reports_failed(tmp_path, home):
    adapter, h, d = run(tmp_path, "forever", resources={"processes_per_node": 2})
    wait_until(lambda: len(rank_pids(d)) == 2, 10)
    os.kill(jd.read_pid(d), signal.SIGKILL)
    wait_until(lambda: all(gone(p) for p in rank_pids(d)), 5)  # PR_SET_PDEATHSIG
    st = adapter.status(h)
    assert st.state is JobState.FAILED and "supervisor died" in st.message


def test_missing_env_secret_fails_without_running(tmp_path, home, monkeypatch):
    monkeypatch.delenv("GANG_TEST_SECRET")
    adapter, h, d = run(tmp_path, "forever")
    st = final(adapter, h, 10)
    assert st.state is JobState.FAILED and "GANG_TEST_SECRET" in st.message and "API_TOKEN" in st.message
    assert not list(d.glob("rank-*.log"))
