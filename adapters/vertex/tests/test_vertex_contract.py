"""Issue 12 on Vertex AI: planned CustomJobs started the way Vertex starts them (every replica's
container command with the environment Vertex documents, in a Python without unijob; see
unijob.testing.contracts.vertex), reported through the fake so `status` and `logs` read them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from unijob.cli import main
from unijob.loading import load_spec
from unijob.spec import JobSpec
from unijob.testing.contracts import vertex as contract

ROOT = Path(__file__).parents[3]
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIJOB_HOME", str(tmp_path / "unijob-home"))


def report(fake, handle, outcome: contract.Outcome) -> None:
    """What Vertex does with a finished job: each replica's output in Cloud Logging, the state and
    the error on the CustomJob."""
    for rep in outcome.replicas:
        for line in rep.lines:
            fake.add_log(handle.native_id, rep.task, line)
    fake.set_state(handle.native_id, outcome.state, started=True,
                   error=(3, outcome.error) if outcome.error else None)


def _run(adapter, fake, spec, sid, python, workdir, **kw):
    plan = adapter.plan(spec, sid)
    handle = adapter.submit(plan)
    out = contract.run(plan, python=python, workdir=workdir, objects=dict(fake.objects),
                       job_id=handle.native_id.rsplit("/", 1)[-1], **kw)
    report(fake, handle, out)
    return plan, handle, out


def _world(line: str) -> str:
    return re.sub(r":\d+;", ";", re.sub(r"^\[[^\]]*\]\s*", "", line))


def test_portable_example_runs_one_python_per_replica(adapter, fake, block, tmp_path, job_image_python, capsys):
    data = load_spec(ROOT / "examples" / "portable" / "job.yaml").spec.model_dump(mode="json", exclude_unset=True)
    data["targets"]["vertex"] = block(staging_bucket="gs://my-bucket-staging")
    spec = JobSpec.model_validate(data, context={"base_dir": str(ROOT / "examples" / "portable")})
    plan, handle, out = _run(adapter, fake, spec, "portable-v", job_image_python, tmp_path / "job", timeout=180)
    assert out.state == "JOB_STATE_SUCCEEDED", [r.lines[-5:] for r in out.replicas]
    cmd = plan.request("customJobs").body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["command"][2]
    assert "torchrun" not in cmd
    got = sorted(_world(ln) for r in out.replicas for ln in r.lines if ln.startswith("rank "))
    assert [r.task for r in out.replicas] == ["workerpool0-0", "workerpool1-0"]
    assert st_ok(adapter, handle)
    assert main(["submit", str(ROOT / "examples" / "portable" / "job.yaml"), "--follow"]) == 0
    local = sorted(_world(ln) for ln in capsys.readouterr().out.splitlines() if re.search(r"rank \d/", ln))
    assert got == local and len(got) == 2 and "master 127.0.0.1" in got[0]
    assert any(ln.startswith("[workerpool1-0] rank 1/2") for ln in adapter.logs(handle))


def st_ok(adapter, handle) -> bool:
    st = adapter.status(handle)
    assert st.state.value == "SUCCEEDED", st.message
    return True


def test_quickstart_reaches_the_local_accuracy(adapter, fake, block, tmp_path, job_image_python, capsys):
    dest = tmp_path / "quickstart"
    shutil.copytree(ROOT / "examples" / "quickstart", dest,
                    ignore=shutil.ignore_patterns("checkpoints", "output", "__pycache__"))
    _fewer_epochs(dest / "job.yaml")
    assert main(["submit", str(dest / "job.yaml"), "--follow"]) == 0
    local = re.findall(r"held-out accuracy: ([0-9.]+)", capsys.readouterr().out)[-1]

    data = load_spec(dest / "job.yaml").spec.model_dump(mode="json", exclude_unset=True)
    data.update({"output": "gs://qs-bucket/output", "checkpoint": {"uri": "gs://qs-bucket/ckpt", "keep": 3},
                 "targets": {"vertex": block()}})
    spec = JobSpec.model_validate(data, context={"base_dir": str(dest)})
    plan, handle, out = _run(adapter, fake, spec, "qs-v", job_image_python, tmp_path / "job", timeout=300)
    text = "\n".join(out.lines("workerpool0-0"))
    assert out.state == "JOB_STATE_SUCCEEDED", text[-3000:]
    assert re.findall(r"held-out accuracy: ([0-9.]+)", text)[-1] == local
    # the model went where AIP_MODEL_DIR points (gs://qs-bucket/output/model/, through the /gcs mount)
    assert (out.gcs_path("gs://qs-bucket/output/model/") / "model.pkl").is_file()
    assert any(out.gcs_path("gs://qs-bucket/ckpt").rglob("*")), "no checkpoint under the spec's checkpoint.uri"
    assert st_ok(adapter, handle)


def _fewer_epochs(job_yaml: Path, epochs: int = 8) -> None:
    """The quickstart with fewer epochs (CI time); the comparison with the local target is the same."""
    text = job_yaml.read_text()
    assert "  epochs: 20\n" in text
    job_yaml.write_text(text.replace("  epochs: 20\n", f"  epochs: {epochs}\n"))


def test_failing_replica_last_lines_in_status(adapter, fake, block, tmp_path, job_image_python):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text(
        "import sys\nfrom unijob import runtime\nc = runtime.context()\nprint(f'rank {c.rank} of {c.world_size}', flush=True)\n"
        "if c.rank == 1:\n    print('CUDA error: out of memory (fake)', file=sys.stderr)\n    sys.exit(2)\n"
        "import time\nfor _ in range(600):  # until the gang is stopped (SIGTERM: runtime.preempted())\n"
        "    if runtime.preempted():\n        sys.exit(143)\n    time.sleep(0.05)\n")
    spec = JobSpec.model_validate({"name": "failing", "script": "src/train.py", "output": "gs://f-bucket/out",
                                   "resources": {"nodes": 2}, "targets": {"vertex": block()}},
                                  context={"base_dir": str(tmp_path)})
    _, handle, out = _run(adapter, fake, spec, "fail-v", job_image_python, tmp_path / "job", timeout=120)
    assert out.state == "JOB_STATE_FAILED" and "workerpool1-0 exited with a non-zero status of 2" in out.error
    st = adapter.status(handle)
    assert st.state.value == "FAILED"
    assert "Last lines of workerpool1-0" in st.message and "CUDA error: out of memory (fake)" in st.message, st.message


def test_cpu_script_job_in_the_scikit_learn_container(adapter, fake, block, tmp_path, job_image_python):
    """No PyTorch variables in a scikit-learn image: the runtime takes rank and master from CLUSTER_SPEC."""
    data = load_spec(ROOT / "examples" / "portable" / "job.yaml").spec.model_dump(mode="json", exclude_unset=True)
    data["resources"] = {"nodes": 2}
    data["framework"] = {"name": "sklearn", "version": "1.2"}
    data["targets"] = {"vertex": block(staging_bucket="gs://my-bucket-staging")}
    spec = JobSpec.model_validate(data, context={"base_dir": str(ROOT / "examples" / "portable")})
    plan, handle, out = _run(adapter, fake, spec, "portable-sk", job_image_python, tmp_path / "job", timeout=180)
    pool = plan.request("customJobs").body["jobSpec"]["workerPoolSpecs"][0]
    assert pool["containerSpec"]["imageUri"].endswith("/sklearn-cpu.1-2:latest")
    assert out.state == "JOB_STATE_SUCCEEDED", [r.lines[-5:] for r in out.replicas]
    got = sorted(_world(ln) for r in out.replicas for ln in r.lines if ln.startswith("rank "))
    assert [g.split(";")[:2] for g in got] == [["rank 0/2 on node 0", " master 127.0.0.1"],
                                              ["rank 1/2 on node 1", " master 127.0.0.1"]]
    assert st_ok(adapter, handle)


def test_unresolvable_requirements_fail_with_the_pip_error(adapter, fake, block, tmp_path, job_image_python):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("print('never runs')\n")
    (tmp_path / "src" / "requirements.txt").write_text("definitely-not-a-package-xyz==9.9\n")
    spec = JobSpec.model_validate({"name": "badreq", "script": "src/train.py", "requirements": "src/requirements.txt",
                                   "output": "gs://f-bucket/out", "targets": {"vertex": block()}},
                                  context={"base_dir": str(tmp_path)})
    _, handle, out = _run(adapter, fake, spec, "req-v", job_image_python, tmp_path / "job", timeout=120,
                          network=False)
    assert out.state == "JOB_STATE_FAILED" and "never runs" not in "\n".join(out.lines("workerpool0-0"))
    st = adapter.status(handle)
    assert st.state.value == "FAILED"
    assert "No matching distribution found for definitely-not-a-package-xyz==9.9" in st.message, st.message
