"""examples/ddp as a SageMaker gang: 2 instances x 2 processes (world size 4, gloo on CPU), submitted
with ``-t sagemaker`` and started the way SageMaker starts it (see unijob.testing.contracts.sagemaker):
each host runs the real toolkit's ``train`` with the PyTorch image's ``SAGEMAKER_TRAINING_MODULE``
(``sagemaker-pytorch-training``), whose ``torch_distributed`` runner starts torchrun; rank 0's model
lands in moto's S3 and ``unijob status``/``logs`` read the outcome back through the adapter.

Needs a CPU torch wheel (:func:`unijob.testing.contracts.torch_requirement`); skips without one."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from sagemaker_testkit import REGION, ROLE, boto3_client

from unijob import registry
from unijob.cli import main
from unijob.loading import load_spec
from unijob.records import Records
from unijob.testing.contracts import clean_env, job_python, torch_requirement
from unijob.testing.contracts import sagemaker as contract

ROOT = Path(__file__).parents[3]
pytestmark = [pytest.mark.slow, pytest.mark.torch]
NODES, PER_NODE = 2, 2
WORLD = NODES * PER_NODE


@pytest.fixture(scope="session")
def pytorch_image_python(tmp_path_factory):
    """The Python of a SageMaker PyTorch training image (CPU): the toolkit, the PyTorch container's
    own in-container package and a CPU torch, no unijob; or a skip saying why there is none."""
    torch = torch_requirement()
    if torch is None:
        pytest.skip("no CPU-only torch wheel (set UNIJOB_TEST_TORCH_REQUIREMENT); PyPI's default torch is a CUDA build")
    root = os.environ.get("UNIJOB_TEST_JOB_PYTHONS") or tmp_path_factory.getbasetemp() / "job-pythons"
    return job_python(root, ["sagemaker-training==5.1.4", "sagemaker-pytorch-training==3.0.0", torch])


def _spec_file(tmp_path: Path, epochs: int) -> Path:
    """examples/ddp with S3 output and checkpoints and a SageMaker target (fewer epochs: CI time)."""
    dest = tmp_path / "ddp"
    shutil.copytree(ROOT / "examples" / "ddp", dest, ignore=shutil.ignore_patterns("checkpoints", "output",
                                                                                   "__pycache__"))
    data = yaml.safe_load((dest / "job.yaml").read_text())
    assert data["resources"] == {"nodes": NODES, "processes_per_node": PER_NODE}
    data["hyperparameters"]["epochs"] = epochs
    data.update({"output": "s3://ddp-bucket/output", "checkpoint": {"uri": "s3://ddp-bucket/ckpt", "keep": 2},
                 "targets": {"sagemaker": {"role_arn": ROLE, "region": REGION}}})
    (dest / "job.yaml").write_text(yaml.safe_dump(data))
    return dest / "job.yaml"


def test_ddp_example_runs_as_a_two_instance_torchrun_gang(aws, tmp_path, pytorch_image_python, capsys):
    boto3_client("s3").create_bucket(Bucket="ddp-bucket")
    spec_path = _spec_file(tmp_path, epochs=2)
    assert main(["submit", str(spec_path), "-t", "sagemaker", "--idempotency-key", "ddp-1"]) == 0
    capsys.readouterr()
    with Records() as r:
        rec = r.list(limit=1)[0]
    adapter = registry.get("sagemaker")
    plan = adapter.plan(load_spec(spec_path).spec, rec.submission_id)
    assert plan.name == rec.native_id
    body = plan.request("CreateTrainingJob").body
    hp = body["HyperParameters"]
    assert body["ResourceConfig"]["InstanceCount"] == NODES
    assert hp["sagemaker_torch_distributed_enabled"] == "true"
    assert hp["sagemaker_mpi_num_of_processes_per_host"] == str(PER_NODE)  # a CPU instance has no GPUs to count

    out = contract.run(plan, python=pytorch_image_python, workdir=tmp_path / "hosts", endpoint_url=aws,
                       framework_toolkit=True, timeout=400)
    assert out.framework_module == "sagemaker_pytorch_container.training:main"
    assert out.status == "Completed", "\n".join(out.output(h)[-3000:] for h in range(NODES))

    for host in range(NODES):  # the PyTorch container's torch_distributed runner, on every host
        cmd = next((ln for ln in out.lines[host] if "torchrun --nnodes" in ln), "")
        assert f"torchrun --nnodes {NODES} --nproc_per_node {PER_NODE} --master_addr 127.0.0.1 " \
               f"--master_port 7777 --node_rank {host} train_ddp.py" in cmd, out.output(host)[-3000:]
    for rank in range(WORLD):  # every rank, on its own host, with torchrun's RANK/WORLD_SIZE and the master
        want = (f"[rank {rank}/{WORLD} node {rank // PER_NODE} local {rank % PER_NODE}] all-reduce ok: "
                f"{WORLD * (WORLD + 1) // 2} (master 127.0.0.1:7777)")
        assert sum(want in ln for ln in out.lines[rank // PER_NODE]) == 1, (want, out.output(rank // PER_NODE)[-3000:])
    final = next(ln for ln in out.lines[0] if "final: w" in ln)
    assert "replicas identical" in final
    assert not any("final: w" in ln for ln in out.lines[1])  # rank 0 only

    s3 = boto3_client("s3")
    model = s3.get_object(Bucket="ddp-bucket", Key=f"output/{plan.name}/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(model)) as tar:
        assert tar.getnames() == ["model.pt"]
        tar.extract("model.pt", tmp_path)
    code = ("import sys, torch; sd = torch.load(sys.argv[1], weights_only=True); "
            "print(sd['weight'].item(), sd['bias'].item())")
    w, b = map(float, subprocess.run([str(pytorch_image_python), "-c", code, str(tmp_path / "model.pt")],
                                     capture_output=True, text=True, check=True, env=clean_env()).stdout.split())
    m = re.search(r"final: w (\S+) b (\S+)", final)
    assert (round(w, 3), round(b, 3)) == (float(m[1]), float(m[2]))
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="ddp-bucket", Prefix="ckpt/")["Contents"])
    assert {k.split("/")[2] for k in keys} == {"step-000000000000", "step-000000000001"}, keys  # rank 0's
    assert all(k.startswith(f"ckpt/{plan.name}/") for k in keys), keys

    assert main(["status", rec.id]) == 0
    assert "state:    SUCCEEDED" in capsys.readouterr().out
    assert main(["logs", rec.id]) == 0
    shown = capsys.readouterr().out
    for rank in range(WORLD):
        assert re.search(rf"\[algo-{rank // PER_NODE + 1}\].*\[rank {rank}/{WORLD} .*all-reduce ok", shown), shown[-3000:]
