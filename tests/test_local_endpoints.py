"""Local endpoints: a router over `unijob.serve` replica processes (issue #8, part 3)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from unijob.cli import main
from unijob.errors import SpecError, TargetError, UsageError
from unijob.local import jobdir as jd
from unijob.local.adapter import LocalAdapter
from unijob.spec import JobSpec

def load(path: Path) -> JobSpec:
    from unijob.loading import load_spec

    return load_spec(str(path)).spec


@pytest.fixture
def home(_isolated_home, live_processes):
    yield _isolated_home
    left = live_processes(_isolated_home)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left running after the test: {left}"


@pytest.fixture
def adapter():
    return LocalAdapter()


def state_of(home: Path, name: str = "digits") -> dict:
    return jd.read_json(home / "local" / "endpoints" / name / "state.json")


def test_plan_resolves_paths_and_rejects_what_local_cannot_serve(tmp_path, adapter, endpoint_project):
    spec = load(endpoint_project(tmp_path))
    body = adapter.plan_endpoint(spec).request("local:deploy").body
    assert body["cwd"] == str(tmp_path.resolve())
    assert [(v["name"], v["weight"], v["model"]) for v in body["variants"]] == [
        ("blue", 90, str((tmp_path / "models/blue").resolve())), ("green", 10, str((tmp_path / "models/green").resolve()))]
    assert body["autoscaling"] == {"metric": "concurrency", "target": 4.0}

    img = load(endpoint_project(tmp_path, variants="""\
        variants:
          - {name: blue, weight: 50, model: ./models/blue}
          - {name: green, weight: 50, model: ./models/green, image: "repo/server:1", handler: null}
    """))
    with pytest.raises(SpecError) as e:
        adapter.plan_endpoint(img)
    assert e.value.issues[0].loc == ("endpoint", "variants", 1, "image")

    gpu = load(endpoint_project(tmp_path, extra="  autoscaling: {metric: gpu_utilization, target: 60}\n"))
    with pytest.raises(SpecError) as e:
        adapter.plan_endpoint(gpu)
    assert e.value.issues[0].loc == ("endpoint", "autoscaling", "metric") and "concurrency" in str(e.value)


def test_split_90_10_over_1000_requests(tmp_path, home, adapter, endpoint_project):
    """Done-when of #8: each variant's share within 3 points of its weight; and the answer came
    from that variant's own model."""
    spec = load(endpoint_project(tmp_path))
    h = adapter.deploy(adapter.plan_endpoint(spec))
    try:
        seen: Counter = Counter()
        with httpx.Client(base_url=h.extra["url"]) as c:
            for i in range(1000):
                r = c.post("/invocations", json={"instances": [i]})
                assert r.status_code == 200, r.text
                variant = r.headers["x-unijob-variant"]
                assert r.json()["predictions"] == [{"x": i, "model": f"{variant}-model", "pid": r.json()["predictions"][0]["pid"]}]
                seen[variant] += 1
        assert abs(seen["blue"] / 1000 - 0.90) <= 0.03 and abs(seen["green"] / 1000 - 0.10) <= 0.03, seen
        live = httpx.get(h.extra["url"] + "/_unijob/status").json()
        assert {v: live["variants"][v]["requests"] for v in seen} == dict(seen)
    finally:
        adapter.undeploy(h)
    assert not (home / "local" / "endpoints" / "digits").exists()


def test_traffic_change_and_pinned_variant(tmp_path, home, adapter, endpoint_project):
    spec = load(endpoint_project(tmp_path))
    h = adapter.deploy(adapter.plan_endpoint(spec))
    try:
        adapter.set_traffic(h, {"blue": 0, "green": 100})
        got = {adapter.invoke(h, {"instances": [1]}).variant for _ in range(20)}
        assert got == {"green"}
        pinned = adapter.invoke(h, [7], variant="blue")
        assert pinned.variant == "blue" and pinned.body[0]["model"] == "blue-model"
        with pytest.raises(TargetError, match="no variant 'purple'"):
            adapter.invoke(h, [1], variant="purple")
        with pytest.raises(UsageError, match="sum to 100"):
            adapter.set_traffic(h, {"blue": 50, "green": 10})
        assert adapter.endpoint_status(h).traffic == {"blue": 0, "green": 100}
    finally:
        adapter.undeploy(h)


def test_bad_payload_and_handler_errors_keep_serving(tmp_path, home, adapter, endpoint_project):
    spec = load(endpoint_project(tmp_path))
    h = adapter.deploy(adapter.plan_endpoint(spec))
    try:
        with pytest.raises(TargetError, match=r"400.*instances"):
            adapter.invoke(h, {"inputs": [1]})
        with pytest.raises(TargetError, match="500"):
            adapter.invoke(h, {"instances": [1], "parameters": {"sleep": "not a number"}})
        assert adapter.invoke(h, {"instances": [1]}).body["predictions"][0]["x"] == 1
        # as curl sends a body over 1 KiB: the router answers the 100 itself, the replica never sees it
        big = json.dumps({"instances": [1], "parameters": {"pad": "x" * 2000}})
        r = httpx.post(h.extra["url"] + "/invocations?trace=1", content=big, timeout=30,
                       headers={"Expect": "100-continue", "Content-Type": "application/json"})
        assert r.status_code == 200 and r.json()["predictions"][0]["x"] == 1, r.text
        assert r.headers["x-unijob-variant"] and r.headers["content-type"] == "application/json"
    finally:
        adapter.undeploy(h)


def test_autoscaling_out_under_load_and_back_in_after_cooldown(tmp_path, home, adapter, endpoint_project):
    spec = load(endpoint_project(tmp_path, extra=(
        "  min_replicas: 1\n  max_replicas: 3\n  autoscaling: {metric: concurrency, target: 1}\n"
        "  scale_out_cooldown: 1\n  scale_in_cooldown: 2\ntargets:\n  local: {autoscaling_window: 1}\n"), variants="""\
        model: ./models/blue
    """))
    h = adapter.deploy(adapter.plan_endpoint(spec))
    stop = threading.Event()

    def load_gen() -> None:
        with httpx.Client(base_url=h.extra["url"], timeout=30) as c:
            while not stop.is_set():
                c.post("/invocations", json={"instances": [1], "parameters": {"sleep": 0.3}})

    threads = [threading.Thread(target=load_gen) for _ in range(4)]
    try:
        assert adapter.endpoint_status(h).replicas == {"primary": 1}
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and adapter.endpoint_status(h).replicas["primary"] < 2:
            time.sleep(0.2)
        peak = adapter.endpoint_status(h).replicas["primary"]
        assert 2 <= peak <= 3, state_of(home)["events"]
        stop.set()
        for t in threads:
            t.join()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and adapter.endpoint_status(h).replicas["primary"] > 1:
            time.sleep(0.2)
        assert adapter.endpoint_status(h).replicas["primary"] == 1
        events = " | ".join(m for _, m in state_of(home)["events"])
        assert "scale out 1 ->" in events and "scale in" in events, events
    finally:
        stop.set()
        adapter.undeploy(h)


def test_scale_from_zero_cold_start(tmp_path, home, adapter, endpoint_project):
    spec = load(endpoint_project(tmp_path, extra="  min_replicas: 0\n  max_replicas: 1\n", variants="""\
        model: ./models/blue
    """))
    h = adapter.deploy(adapter.plan_endpoint(spec))
    try:
        assert adapter.endpoint_status(h).replicas == {"primary": 0}
        answer = adapter.invoke(h, [3]).body[0]
        assert (answer["x"], answer["model"]) == (3, "blue-model")
        assert adapter.endpoint_status(h).replicas == {"primary": 1}
    finally:
        adapter.undeploy(h)


def test_a_dead_replica_is_replaced(tmp_path, home, adapter, endpoint_project):
    spec = load(endpoint_project(tmp_path, variants="""\
        model: ./models/blue
    """))
    h = adapter.deploy(adapter.plan_endpoint(spec))
    try:
        first = adapter.invoke(h, [1]).body[0]["pid"]
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 20
        pid = first
        while time.monotonic() < deadline and pid == first:
            try:
                pid = adapter.invoke(h, [1]).body[0]["pid"]
            except TargetError:
                time.sleep(0.1)
        assert pid != first
        events = " | ".join(m for _, m in state_of(home)["events"])
        assert "exited with code -9" in events and "below min_replicas" in events
    finally:
        adapter.undeploy(h)


def test_a_handler_that_cannot_load_fails_deploy_and_leaves_nothing(tmp_path, home, adapter, endpoint_project, live_processes):
    spec = load(endpoint_project(tmp_path, extra='  env: {FAIL_LOAD: "weights.bin is missing"}\n'))
    with pytest.raises(TargetError) as e:
        adapter.deploy(adapter.plan_endpoint(spec))
    assert "cannot load the model: weights.bin is missing" in str(e.value)
    deadline = time.monotonic() + 10
    while live_processes(home) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_processes(home) == []


def test_cli_deploy_endpoints_invoke_undeploy(tmp_path, home, capsys, endpoint_project, live_processes):
    path = endpoint_project(tmp_path)
    assert main(["deploy", str(path)]) == 0
    try:
        assert "deployed endpoint digits on local" in capsys.readouterr().out
        assert main(["deploy", str(path)]) == 2
        assert "already running" in capsys.readouterr().err
        assert main(["endpoints", "--refresh", "-o", "json"]) == 0
        [row] = json.loads(capsys.readouterr().out)
        assert (row["name"], row["state"], row["traffic"], row["replicas"]) == (
            "digits", "IN_SERVICE", {"blue": 90, "green": 10}, {"blue": 1, "green": 1})
        assert main(["invoke", "digits", "--data", '{"instances": [4, 5]}', "-o", "text"]) == 0
        out = capsys.readouterr()
        assert [p["x"] for p in json.loads(out.out)["predictions"]] == [4, 5]
        assert "variant blue" in out.err or "variant green" in out.err
        (tmp_path / "req.json").write_text('{"instances": [6]}')
        assert main(["invoke", "digits", "--data", f"@{tmp_path / 'req.json'}", "--variant", "green"]) == 0
        assert json.loads(capsys.readouterr().out)["predictions"][0]["model"] == "green-model"
        assert main(["invoke", "digits", "--data", "{not json"]) == 2
        assert "--data is not JSON" in capsys.readouterr().err
        assert main(["invoke", "nosuch", "--data", "[1]"]) != 0
    finally:
        assert main(["undeploy", "digits"]) == 0
    assert live_processes(home) == []
    capsys.readouterr()
    assert main(["endpoints", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_endpoint_only_spec_cannot_be_submitted(tmp_path, home, capsys, endpoint_project):
    path = endpoint_project(tmp_path)
    assert main(["validate", str(path)]) == 0
    assert main(["submit", str(path)]) == 2
    assert "only an endpoint" in capsys.readouterr().err
