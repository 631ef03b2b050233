"""Issue 12 on SageMaker: planned jobs started the way SageMaker starts them (the real
sagemaker-training toolkit in a Python without unijob, against moto's server; see
unijob.testing.contracts.sagemaker), and the adapter's status and logs reading the outcome."""

from __future__ import annotations

import io
import json
import pickle
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from sagemaker_testkit import REGION, ROLE, boto3_client

from unijob import registry
from unijob.cli import main
from unijob.loading import load_spec
from unijob.spec import JobSpec
from unijob.testing.contracts import sagemaker as contract

ROOT = Path(__file__).parents[3]
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    """Job records and local jobs of these tests under their own UNIJOB_HOME."""
    monkeypatch.setenv("UNIJOB_HOME", str(tmp_path / "unijob-home"))


@pytest.fixture
def adapter():
    return registry.get("sagemaker")


def _bucket(name: str) -> None:
    boto3_client("s3").create_bucket(Bucket=name)


def _local_lines(capsys, spec_path: Path, pattern: str) -> list[str]:
    """The lines matching ``pattern`` of ``spec_path`` run on the local target."""
    assert main(["submit", str(spec_path), "--follow"]) == 0
    out = capsys.readouterr().out
    return sorted(re.sub(r"^\[[^\]]*\]\s*", "", ln) for ln in out.splitlines() if re.search(pattern, ln))


def _world(line: str) -> str:
    """``rank 1/2 on node 1; master 127.0.0.1:PORT; ...`` without the port (local picks a free one)."""
    return re.sub(r":\d+;", ";", line)


def test_portable_example_runs_as_a_two_host_gang(aws, adapter, tmp_path, toolkit_python, capsys):
    _bucket("my-bucket")
    spec = load_spec(ROOT / "examples" / "portable" / "job.yaml").spec
    plan = adapter.plan(spec, "portable-contract")
    body = plan.request("CreateTrainingJob").body
    assert body["ResourceConfig"]["InstanceCount"] == 2
    assert "sagemaker_torch_distributed_enabled" not in body["HyperParameters"]  # one process per node: python
    handle = adapter.submit(plan)

    out = contract.run(plan, python=toolkit_python, workdir=tmp_path / "hosts", endpoint_url=aws, timeout=180)
    assert out.status == "Completed", out.output(0)[-3000:]
    got = sorted(_world(ln) for host in out.lines for ln in host if ln.startswith("rank "))
    assert len(got) == 2 and got[0].startswith("rank 0/2 on node 0; master 127.0.0.1")
    assert got[1].startswith("rank 1/2 on node 1; master 127.0.0.1")

    st = adapter.status(handle)
    assert st.state.value == "SUCCEEDED", st.message
    logged = list(adapter.logs(handle))
    assert any(ln.startswith("[algo-2] rank 1/2") for ln in logged), logged[-5:]

    local = [_world(ln) for ln in _local_lines(capsys, ROOT / "examples" / "portable" / "job.yaml", r"rank \d/")]
    assert got == local


def test_runtime_version_inside_the_job_is_the_submitting_one(aws, adapter, tmp_path, toolkit_python):
    import unijob

    _bucket("code-bucket")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text(
        "import unijob\nfrom unijob import runtime\nc = runtime.context()\n"
        "print('CTX', c.unijob_version, c.source, c.rank, c.world_size, c.hyperparameters, flush=True)\n")
    spec = JobSpec.model_validate({"name": "version", "script": "src/train.py", "output": "s3://code-bucket/out",
                                   "hyperparameters": {"n": 3},
                                   "targets": {"sagemaker": {"role_arn": ROLE, "region": REGION}}},
                                  context={"base_dir": str(tmp_path)})
    plan = adapter.plan(spec, "v-1")
    wheel = next(u for u in plan.uploads if u.kind == "runtime-wheel")
    adapter.submit(plan)
    out = contract.run(plan, python=toolkit_python, workdir=tmp_path / "hosts", endpoint_url=aws, timeout=120)
    assert out.status == "Completed", out.output()[-3000:]
    line = next(ln for ln in out.lines[0] if ln.startswith("CTX "))
    version = wheel.source.split("-")[1]
    assert version.startswith(unijob.__version__ + "+runtime.")
    assert line == f"CTX {version} sagemaker 0 1 {{'n': 3}}"


def test_metrics_a_job_logged_are_read_back_for_pipeline_conditions(aws, adapter, tmp_path, toolkit_python):
    """runtime.log_metrics inside the SageMaker container; job_metrics reads the [unijob.metrics]
    lines back from the job's CloudWatch log (what the DAG runner's conditions evaluate)."""
    _bucket("code-bucket")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text(
        "from unijob import runtime\n"
        "runtime.log_metrics({'accuracy': 0.5, 'test_images': 450})\n"
        "runtime.log_metrics({'accuracy': 0.9731})\n")
    spec = JobSpec.model_validate({"name": "metrics", "script": "src/train.py", "output": "s3://code-bucket/out",
                                   "targets": {"sagemaker": {"role_arn": ROLE, "region": REGION}}},
                                  context={"base_dir": str(tmp_path)})
    plan = adapter.plan(spec, "m-1")
    handle = adapter.submit(plan)
    out = contract.run(plan, python=toolkit_python, workdir=tmp_path / "hosts", endpoint_url=aws, timeout=120)
    assert out.status == "Completed", out.output()[-3000:]
    assert adapter.job_metrics(handle) == {"accuracy": 0.9731, "test_images": 450}


def _quickstart(tmp_path: Path, **sagemaker_opts) -> Path:
    dest = tmp_path / "quickstart"
    shutil.copytree(ROOT / "examples" / "quickstart", dest,
                    ignore=shutil.ignore_patterns("checkpoints", "output", "__pycache__"))
    text = (dest / "job.yaml").read_text()  # fewer epochs (CI time); the comparison is the same
    assert "  epochs: 20\n" in text
    (dest / "job.yaml").write_text(text.replace("  epochs: 20\n", "  epochs: 8\n"))
    return dest / "job.yaml"


def _on_sagemaker(spec_path: Path, **opts) -> JobSpec:
    loaded = load_spec(spec_path).spec
    data = loaded.model_dump(mode="json", exclude_unset=True)
    data.update({"output": "s3://qs-bucket/output", "checkpoint": {"uri": "s3://qs-bucket/ckpt/quickstart", "keep": 3},
                 "targets": {"sagemaker": {"role_arn": ROLE, "region": REGION, **opts}}})
    return JobSpec.model_validate(data, context={"base_dir": str(spec_path.parent)})


def _accuracy(text: str) -> float:
    m = re.findall(r"held-out accuracy: ([0-9.]+)", text)
    assert m, text[-3000:]
    return float(m[-1])


def test_quickstart_preempted_resumes_from_s3_checkpoint_to_the_local_accuracy(aws, adapter, tmp_path,
                                                                               toolkit_python, capsys):
    spec_path = _quickstart(tmp_path)
    assert main(["submit", str(spec_path), "--follow"]) == 0
    local = _accuracy(capsys.readouterr().out)

    _bucket("qs-bucket")
    spec = _on_sagemaker(spec_path)
    plan = adapter.plan(spec, "qs-1")
    handle = adapter.submit(plan)
    # a spot reclaim once epoch 3 is checkpointed: SIGTERM to the host, checkpoints synced to S3,
    # the job started again on a fresh /opt/ml whose checkpoints/ SageMaker fills from S3
    out = contract.run(plan, python=toolkit_python, workdir=tmp_path / "hosts", endpoint_url=aws,
                       preempt_when=contract.line_matches(r"epoch +3/"), timeout=300)
    assert out.status == "Completed", out.output()[-3000:]
    assert len(out.attempts) == 2 and out.attempts[0].preempted
    first, second = ("\n".join(a.lines[0]) for a in out.attempts)
    assert "held-out accuracy" not in first
    assert re.search(r"resumed from checkpoint: epoch (\d+)/8", second), second[-2000:]
    assert _accuracy(second) == local

    s3 = boto3_client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="qs-bucket", Prefix="ckpt/quickstart/")["Contents"]]
    assert keys, "checkpoints were not synced to CheckpointConfig.S3Uri"
    model = s3.get_object(Bucket="qs-bucket", Key=f"output/{plan.name}/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(model)) as tar:
        assert float(pickle.loads(tar.extractfile("model.pkl").read()).n_features_in_) == 64
    st = adapter.status(handle)
    assert (st.state.value, st.restarts) == ("SUCCEEDED", 1)


def _failing(tmp_path: Path, code: str, requirements: str | None = None, **opts) -> JobSpec:
    src = tmp_path / "failing"
    src.mkdir()
    (src / "train.py").write_text(code)
    data = {"name": "failing", "script": "failing/train.py", "output": "s3://fail-bucket/out",
            "targets": {"sagemaker": {"role_arn": ROLE, "region": REGION, **opts}}}
    if requirements is not None:
        (src / "requirements.txt").write_text(requirements)
        data["requirements"] = "failing/requirements.txt"
    return JobSpec.model_validate(data, context={"base_dir": str(tmp_path)})


def test_failing_job_shows_the_failing_hosts_last_lines_in_unijob_status(aws, adapter, tmp_path, toolkit_python,
                                                                         capsys):
    _bucket("fail-bucket")
    code = ("import sys\nfrom unijob import runtime\nc = runtime.context()\n"
            "print(f'rank {c.rank} loading shard', flush=True)\n"
            "if c.rank == 1:\n    print('shard 7 is corrupt: bad magic 0x00', file=sys.stderr, flush=True)\n"
            "    sys.exit(3)\n")
    spec = _failing(tmp_path, code)
    spec_path = tmp_path / "failing.yaml"
    import yaml

    spec_path.write_text(yaml.safe_dump({**spec.model_dump(mode="json", exclude_unset=True),
                                         "resources": {"nodes": 2}}))
    assert main(["submit", str(spec_path), "-t", "sagemaker", "--idempotency-key", "fail-1"]) == 0
    capsys.readouterr()
    from unijob.records import Records

    with Records() as r:
        rec = r.list(limit=1)[0]
    plan = adapter.plan(load_spec(spec_path).spec, rec.submission_id)
    assert plan.name == rec.native_id
    out = contract.run(plan, python=toolkit_python, workdir=tmp_path / "hosts", endpoint_url=aws, timeout=120)
    assert out.status == "Failed" and "ExecuteUserScriptError" in out.failure_reason

    assert main(["status", rec.id]) == 0
    shown = capsys.readouterr().out
    assert "state:    FAILED" in shown
    assert "Last lines of algo-2" in shown and "shard 7 is corrupt: bad magic 0x00" in shown, shown


def test_unresolvable_requirements_fail_with_the_pip_error(aws, adapter, tmp_path, toolkit_python):
    _bucket("fail-bucket")
    spec = _failing(tmp_path, "print('never runs')\n", requirements="definitely-not-a-package-xyz==9.9\n",
                    enable_network_isolation=True)
    plan = adapter.plan(spec, "req-1")
    handle = adapter.submit(plan)
    out = contract.run(plan, python=toolkit_python, workdir=tmp_path / "hosts", endpoint_url=aws, timeout=120)
    assert out.status == "Failed" and "InstallRequirementsError" in out.failure_reason
    st = adapter.status(handle)
    assert st.state.value == "FAILED"
    assert "No matching distribution found for definitely-not-a-package-xyz==9.9" in st.message, st.message
    assert "never runs" not in out.output()


@pytest.mark.filterwarnings("ignore")
def test_source_dir_over_the_limit_is_refused_at_plan_time(adapter, tmp_path, capsys):
    src = tmp_path / "big"
    src.mkdir()
    (src / "train.py").write_text("print(1)\n")
    with open(src / "weights.bin", "wb") as f:  # sparse: no disk used
        f.truncate(101 * 1024 * 1024)
    spec_path = tmp_path / "job.yaml"
    spec_path.write_text(json.dumps({"name": "big", "script": "big/train.py", "output": "s3://b-bucket/out",
                                     "targets": {"sagemaker": {"role_arn": ROLE, "region": REGION}}}))
    assert main(["plan", str(spec_path), "-t", "sagemaker"]) == 2
    err = capsys.readouterr().err
    assert "101.0 MiB in 2 files" in err and "weights.bin" in err and "100.0 MiB" in err, err
