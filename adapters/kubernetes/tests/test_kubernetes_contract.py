"""Issue 12 on Kubernetes: planned jobs started the way the Job controller and the kubelet start
them (unijob.testing.contracts.kubernetes), in a Python without unijob: the runtime comes from the
wheel in the ConfigMap, and `unijob status` / `logs` show what really ran."""

from __future__ import annotations

import json
import re
import shutil
import socket
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from unijob.contract import JobState
from unijob.loading import load_spec
from unijob.testing.contracts.kubernetes import KubernetesContract, expand

pytest.importorskip("sklearn")
EXAMPLES = Path(__file__).parents[3] / "examples"


def test_expand_follows_the_kubelet():
    env = {"A": "1", "B": "x"}
    assert expand("$(A)-$(B)", env) == "1-x"
    assert expand("$$(A)", env) == "$(A)"  # escaped
    assert expand("$(NOPE) $A ${B} $", env) == "$(NOPE) $A ${B} $"  # unknown refs and shell syntax kept
    assert expand("$(A", env) == "$(A"


def _plan(adapter, spec_path: Path, submission: str = "sub-1"):
    spec = load_spec(spec_path).spec
    return spec, adapter.plan(spec, submission)


def _run(adapter, fake, plan, image_python, root, **kw):
    fake.spawn_pods = False
    handle = adapter.submit(plan)
    run = KubernetesContract.from_plan(plan, image_python, root, sink=fake,
                                       api_address=("127.0.0.1", int(fake.url.rsplit(":", 1)[1])), **kw)
    return handle, run


def test_portable_example_succeeds_on_a_two_node_gang(adapter, fake, image_python, tmp_path):
    spec, plan = _plan(adapter, EXAMPLES / "portable" / "job.yaml")
    assert spec.resources.nodes == 2
    assert any(u.kind == "runtime-wheel" for u in plan.uploads)
    handle, run = _run(adapter, fake, plan, image_python, tmp_path)
    with run:
        if not run.names_resolve:
            pytest.skip("/etc/hosts is not writable: the headless Service's names cannot resolve here")
        result = run.run(timeout=180)
        assert result.condition == "Complete", result.logs()
        master = f"{plan.name}-0.{plan.name}"
        for i in range(2):
            out = result.logs(i)
            assert f"rank {i}/2 on node {i}; master {master}:29500; hyperparameters {{'epochs': 3, 'lr': 0.01}}" in out, out
        # the master address resolves to this machine, the local target's master address
        assert socket.gethostbyname(master) == "127.0.0.1"
    st = adapter.status(handle)
    assert st.state == JobState.SUCCEEDED, st
    lines = list(adapter.logs(handle))
    assert any(line.startswith("[rank 1] rank 1/2 on node 1") for line in lines), lines


PROBE = '''
import json, os, socket, sys
from unijob import runtime
c = runtime.context()
print("PROBE " + json.dumps({"rank": c.rank, "world_size": c.world_size, "master_addr": c.master_addr,
    "version": c.unijob_version, "target": os.environ.get("UNIJOB_TARGET"), "hostname": os.environ.get("HOSTNAME"),
    "index": os.environ.get("JOB_COMPLETION_INDEX"), "cwd": os.getcwd(), "hp": c.hyperparameters,
    "unijob_file": __import__("unijob").__file__, "master_ip": socket.gethostbyname(c.master_addr)}), flush=True)
'''


def test_the_pod_sees_the_documented_contract(adapter, fake, image_python, tmp_path):
    src = tmp_path / "job"
    src.mkdir()
    (src / "probe.py").write_text(PROBE)
    (src / "job.yaml").write_text(textwrap.dedent("""
        name: probe
        script: probe.py
        resources: {nodes: 2}
        hyperparameters: {lr: 0.5}
        targets: {kubernetes: {namespace: ml}}
    """))
    _, plan = _plan(adapter, src / "job.yaml")
    wheel = next(u for u in plan.uploads if u.kind == "runtime-wheel")
    _, run = _run(adapter, fake, plan, image_python, tmp_path / "run")
    with run:
        if not run.names_resolve:
            pytest.skip("/etc/hosts is not writable: the headless Service's names cannot resolve here")
        result = run.run(timeout=180)
    assert result.condition == "Complete", result.logs()
    for i in range(2):
        probe = json.loads(re.search(r"^PROBE (.*)$", result.logs(i), re.M).group(1))
        assert probe["rank"] == i and probe["world_size"] == 2 and probe["index"] == str(i)
        assert probe["hostname"] == f"{plan.name}-{i}" and probe["target"] == "kubernetes"
        assert probe["master_addr"] == f"{plan.name}-0.{plan.name}" and probe["master_ip"] == "127.0.0.1"
        assert probe["hp"] == {"lr": 0.5}
        # the runtime is the wheel's, installed in the pod's own layer (not this checkout's)
        assert probe["version"] == re.match(r"unijob-(.+?)-py3", wheel.source).group(1)
        assert "/pods/" in probe["unijob_file"] and "/src/unijob/" not in probe["unijob_file"]
        assert probe["cwd"].endswith("/volumes/src")


def test_a_failing_job_shows_its_last_lines_in_unijob_status(fake, image_python, tmp_path, monkeypatch, capsys):
    from unijob.cli import main

    src = tmp_path / "job"
    src.mkdir()
    (src / "train.py").write_text("print('loading shard 7', flush=True)\nraise SystemExit('shard 7 is corrupt')\n")
    (src / "job.yaml").write_text("name: broken\nscript: train.py\nspot: {max_restarts: 0}\n"
                                  "targets: {kubernetes: {namespace: ml}}\n")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": fake.url}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u", "namespace": "ml"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    fake.spawn_pods = False
    assert main(["submit", str(src / "job.yaml"), "-t", "kubernetes"]) == 0
    job_id = re.search(r"submitted (\S+)", capsys.readouterr().out).group(1)
    # the kubelet runs what the API server stores
    objects = [o for o in fake.objects.values()]
    with KubernetesContract(objects, image_python, tmp_path / "run", namespace="ml", sink=fake) as run:
        result = run.run(timeout=120)
    assert (result.condition, result.reason) == ("Failed", "BackoffLimitExceeded")
    main(["status", job_id])
    out = capsys.readouterr().out
    assert "state:    FAILED" in out
    assert "exited with code 1; last lines:" in out and "shard 7 is corrupt" in out and "loading shard 7" in out


def _quickstart(tmp_path: Path, epochs: int) -> tuple[Path, Path]:
    """(local spec, kubernetes spec): two copies of the quickstart with ``epochs``; the kubernetes one
    keeps checkpoints and the model on claims (pods cannot see this machine's paths), and its source
    dir stays free of the local run's outputs (they would not fit a ConfigMap)."""
    out = []
    for kind in ("local", "k8s"):
        dest = tmp_path / kind / "quickstart"
        shutil.copytree(EXAMPLES / "quickstart", dest, ignore=shutil.ignore_patterns("checkpoints", "output", "__pycache__"))
        doc = yaml.safe_load((dest / "job.yaml").read_text())
        doc["hyperparameters"]["epochs"] = epochs
        if kind == "k8s":
            doc.update(checkpoint={"uri": "pvc://ckpt/quickstart", "keep": 3}, output="pvc://models/quickstart",
                       targets={"kubernetes": {"namespace": "ml", "provider": "gke"}})
        (dest / "job.yaml").write_text(yaml.safe_dump(doc))
        out.append(dest / "job.yaml")
    return out[0], out[1]


def _accuracy(text: str) -> float:
    m = re.search(r"held-out accuracy: ([0-9.]+)", text)
    assert m, text[-3000:]
    return float(m.group(1))


@pytest.mark.slow
def test_quickstart_matches_local_and_resumes_after_a_spot_reclaim(adapter, fake, image_python, tmp_path, capsys):
    from unijob.cli import main

    epochs = 5
    local_spec, k8s_spec = _quickstart(tmp_path, epochs)
    assert main(["submit", str(local_spec), "--follow"]) == 0
    local = _accuracy(capsys.readouterr().out)

    _, plan = _plan(adapter, k8s_spec, "plain")
    _, run = _run(adapter, fake, plan, image_python, tmp_path / "plain")
    with run:
        result = run.run(timeout=300)
    assert result.condition == "Complete", result.logs()
    assert _accuracy(result.logs()) == local
    assert list((tmp_path / "plain" / "claims" / "models").rglob("model.pkl")), "the model is not on its claim"

    _, plan = _plan(adapter, k8s_spec, "reclaimed")
    handle, run = _run(adapter, fake, plan, image_python, tmp_path / "reclaimed")
    with run:
        run.start()
        deadline = time.monotonic() + 240
        while "epoch   2/" not in run.running(0).log.read_text(errors="replace"):
            assert time.monotonic() < deadline, run.running(0).log.read_text()
            time.sleep(0.1)
        run.preempt(0)
        result = run.wait(300)
    assert result.condition == "Complete", result.logs()
    assert len(result.pods) == 2 and result.pods[0].disrupted and result.pods[0].exit_code == 143
    second = result.logs(0).split("resumed from checkpoint", 1)
    assert len(second) == 2, result.logs()
    assert _accuracy(second[1]) == local
    st = adapter.status(handle)
    assert (st.state, st.restarts) == (JobState.SUCCEEDED, 1)


@pytest.mark.slow
def test_ddp_gang_of_two_nodes_by_two_processes(adapter, fake, torch_python, tmp_path):
    """examples/ddp as a 2 x 2 gang: torchrun per pod (the plan's command), the ranks meeting at the
    headless Service's name of pod 0, gloo all-reduces across both pods."""
    dest = tmp_path / "ddp"
    shutil.copytree(EXAMPLES / "ddp", dest, ignore=shutil.ignore_patterns("checkpoints", "__pycache__"))
    doc = yaml.safe_load((dest / "job.yaml").read_text())
    with socket.socket() as sock:  # every pod is this machine: a free rendezvous port, not 29500
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    doc.update(checkpoint={"uri": "pvc://ckpt/ddp", "keep": 2},
               targets={"kubernetes": {"namespace": "ml", "master_port": port}})
    doc["hyperparameters"]["epochs"] = 2
    doc["spot"] = {"max_restarts": 0}  # a failed pod fails the Job at once (its peers may be gone)
    (dest / "job.yaml").write_text(yaml.safe_dump(doc))
    _, plan = _plan(adapter, dest / "job.yaml")
    assert not plan.warnings
    handle, run = _run(adapter, fake, plan, torch_python, tmp_path / "run")
    with run:
        if not run.names_resolve:
            pytest.skip("/etc/hosts is not writable: the headless Service's names cannot resolve here")
        result = run.run(timeout=300)
    assert result.condition == "Complete", result.logs()[-4000:]
    logs = result.logs()
    assert logs.count("all-reduce ok: 10") == 4, logs[-4000:]  # 1+2+3+4 over the four ranks
    assert "replicas identical" in result.logs(0)
    assert adapter.status(handle).state == JobState.SUCCEEDED


def test_a_requirement_that_cannot_be_resolved_fails_with_the_pip_error(adapter, fake, image_python, tmp_path):
    src = tmp_path / "job"
    src.mkdir()
    (src / "train.py").write_text("print('never runs')\n")
    (src / "requirements.txt").write_text("./vendor/shardlib-1.0-py3-none-any.whl\n")  # not in the source dir
    (src / "job.yaml").write_text("name: deps\nscript: train.py\nrequirements: requirements.txt\n"
                                  "spot: {max_restarts: 0}\ntargets: {kubernetes: {namespace: ml}}\n")
    _, plan = _plan(adapter, src / "job.yaml")
    handle, run = _run(adapter, fake, plan, image_python, tmp_path / "run")
    with run:
        result = run.run(timeout=120)
    assert (result.condition, result.reason) == ("Failed", "BackoffLimitExceeded")
    assert "never runs" not in result.logs()
    st = adapter.status(handle)
    assert st.state == JobState.FAILED
    assert "last lines:" in st.message and "shardlib-1.0-py3-none-any.whl" in st.message, st.message


def test_a_jobset_runs_its_child_job(adapter, fake, image_python, tmp_path):
    """api: jobset: the JobSet's one replicated job runs as its child Job <jobset>-node-0, pods named
    and resolvable as the JobSet controller's headless Service names them."""
    src = tmp_path / "job"
    src.mkdir()
    (src / "probe.py").write_text(PROBE)
    (src / "job.yaml").write_text("name: probe\nscript: probe.py\nresources: {nodes: 2}\n"
                                  "targets: {kubernetes: {namespace: ml, api: jobset}}\n")
    _, plan = _plan(adapter, src / "job.yaml")
    handle, run = _run(adapter, fake, plan, image_python, tmp_path / "run")
    with run:
        if not run.names_resolve:
            pytest.skip("/etc/hosts is not writable: the headless Service's names cannot resolve here")
        result = run.run(timeout=180)
    assert result.condition == "Complete", result.logs()
    for i in range(2):
        probe = json.loads(re.search(r"^PROBE (.*)$", result.logs(i), re.M).group(1))
        assert probe["hostname"] == f"{plan.name}-node-0-{i}" and probe["rank"] == i
        assert probe["master_addr"] == f"{plan.name}-node-0-0.{plan.name}" and probe["master_ip"] == "127.0.0.1"
    assert adapter.status(handle).state == JobState.SUCCEEDED
