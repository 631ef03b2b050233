"""Issue 12 on Databricks: planned runs started the way a Databricks cluster starts a
spark_python_task (unijob.testing.contracts.databricks), in a Python without unijob: the runtime is
the wheel library, and `unijob status` / `logs` show what really ran."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from unijob.loading import load_spec
from unijob.testing.contracts.databricks import DatabricksContract

pytest.importorskip("sklearn")
EXAMPLES = Path(__file__).parents[3] / "examples"


def _submit_and_run(dbx_adapter, fake, image_python, root, spec_path, submission="s-1", timeout=300):
    plan = dbx_adapter.plan(load_spec(spec_path).spec, submission)
    handle = dbx_adapter.submit(plan)
    rid = int(handle.native_id)
    return handle, _run(fake, image_python, root, rid, timeout)


def _run(fake, image_python, root, rid, timeout=300):
    runner = DatabricksContract(fake.runs[rid]["submitted"], image_python, root, files=fake.files, sink=fake,
                                task_run_id=fake.task_run_ids(rid)[0])
    return runner.run(timeout)


def _copy(example: str, tmp_path: Path, **changes) -> Path:
    dest = tmp_path / example
    shutil.copytree(EXAMPLES / example, dest, ignore=shutil.ignore_patterns("checkpoints", "output", "__pycache__"))
    doc = yaml.safe_load((dest / "job.yaml").read_text())
    for k, v in changes.items():
        if v is None:
            doc.pop(k, None)
        elif isinstance(v, dict) and isinstance(doc.get(k), dict):
            doc[k] = {**doc[k], **v}
        else:
            doc[k] = v
    (dest / "job.yaml").write_text(yaml.safe_dump(doc))
    return dest / "job.yaml"


PROBE = '''
import json, os, sys
from unijob import runtime
c = runtime.context()
print("PROBE " + json.dumps({"rank": c.rank, "world_size": c.world_size, "version": c.unijob_version,
    "target": c.target, "argv": sys.argv[1:], "cwd": os.getcwd(), "hp": c.hyperparameters,
    "unijob_file": __import__("unijob").__file__}), flush=True)
'''


def test_portable_example_on_one_node_succeeds(dbx_adapter, fake, image_python, tmp_path):
    spec = _copy("portable", tmp_path, resources={"nodes": 1, "accelerator": None})
    handle, result = _submit_and_run(dbx_adapter, fake, image_python, tmp_path / "run", spec)
    assert result.result_state == "SUCCESS", result.logs
    assert "rank 0/1 on node 0" in result.logs and "hyperparameters {'epochs': 3, 'lr': 0.01}" in result.logs
    st = dbx_adapter.status(handle)
    assert st.state.value == "SUCCEEDED", st
    assert any("rank 0/1 on node 0" in line for line in dbx_adapter.logs(handle))


def test_the_driver_sees_the_documented_contract(dbx_adapter, fake, image_python, tmp_path):
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "probe.py").write_text(PROBE)
    (tmp_path / "job" / "job.yaml").write_text("name: probe\nscript: probe.py\nargs: [--fast]\n"
                                               "hyperparameters: {lr: 0.5}\ntargets: {databricks: {cloud: aws}}\n")
    plan = dbx_adapter.plan(load_spec(tmp_path / "job" / "job.yaml").spec, "s")
    wheel = next(u for u in plan.uploads if u.kind == "runtime-wheel")
    _, result = _submit_and_run(dbx_adapter, fake, image_python, tmp_path / "run", tmp_path / "job" / "job.yaml")
    assert result.result_state == "SUCCESS", result.logs
    probe = json.loads(re.search(r"^PROBE (.*)$", result.logs, re.M).group(1))
    assert (probe["rank"], probe["world_size"], probe["target"]) == (0, 1, "databricks")
    assert probe["argv"] == ["--fast", "--lr", "0.5"] and probe["hp"] == {"lr": 0.5}
    # the runtime is the wheel library's, in the cluster's Python (not this checkout's)
    assert probe["version"] == re.match(r"unijob-(.+?)-py3", wheel.source).group(1)
    assert "/cluster-python/" in probe["unijob_file"]
    assert probe["cwd"].startswith(str(tmp_path / "run" / "fs" / "Workspace" / "Shared" / "unijob" / "probe"))


def _status(main, capsys, job_id) -> str:
    capsys.readouterr()
    main(["status", job_id])
    return capsys.readouterr().out


def test_a_failing_run_shows_its_last_lines_in_unijob_status(dbx_env, fake, image_python, tmp_path, capsys):
    from unijob.cli import main

    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "train.py").write_text("print('loading shard 7', flush=True)\n"
                                               "raise RuntimeError('shard 7 is corrupt')\n")
    (tmp_path / "job" / "job.yaml").write_text("name: broken\nscript: train.py\ntargets: {databricks: {cloud: aws}}\n")
    assert main(["submit", str(tmp_path / "job" / "job.yaml"), "-t", "databricks"]) == 0
    job_id = re.search(r"submitted (\S+)", capsys.readouterr().out).group(1)
    [rid] = list(fake.runs)
    result = _run(fake, image_python, tmp_path / "run", rid)
    assert result.result_state == "FAILED" and result.error == "RuntimeError: shard 7 is corrupt"
    out = _status(main, capsys, job_id)
    assert "state:    FAILED" in out and "RuntimeError: shard 7 is corrupt" in out and "loading shard 7" in out


def test_a_requirement_that_cannot_be_resolved_fails_with_the_pip_error(dbx_env, fake, image_python, tmp_path, capsys):
    from unijob.cli import main

    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "train.py").write_text("print('never runs')\n")
    (tmp_path / "job" / "requirements.txt").write_text("unijob-no-such-package==9.9\n")
    (tmp_path / "job" / "job.yaml").write_text("name: deps\nscript: train.py\nrequirements: requirements.txt\n"
                                               "targets: {databricks: {cloud: aws}}\n")
    assert main(["submit", str(tmp_path / "job" / "job.yaml"), "-t", "databricks"]) == 0
    job_id = re.search(r"submitted (\S+)", capsys.readouterr().out).group(1)
    [rid] = list(fake.runs)
    result = _run(fake, image_python, tmp_path / "run", rid, timeout=120)
    assert result.result_state == "FAILED" and "never runs" not in result.logs
    out = _status(main, capsys, job_id)
    assert "state:    FAILED" in out and "Library installation failed" in out
    assert "unijob-no-such-package==9.9" in out and "No matching distribution found" in out


@pytest.mark.slow
def test_quickstart_reaches_the_local_accuracy(dbx_adapter, fake, image_python, tmp_path, capsys):
    from unijob.cli import main

    local = _copy("quickstart", tmp_path / "local", hyperparameters={"epochs": 5})
    assert main(["submit", str(local), "--follow"]) == 0
    want = re.search(r"held-out accuracy: ([0-9.]+)", capsys.readouterr().out).group(1)
    # on Databricks the checkpoints and the model would go to a volume (/Volumes/...), which is not
    # mounted here: the run keeps them in its working directory instead
    dbx = _copy("quickstart", tmp_path / "dbx", hyperparameters={"epochs": 5}, checkpoint=None, output=None,
                spot={"policy": "on_demand"}, targets={"databricks": {"cloud": "aws"}})
    _, result = _submit_and_run(dbx_adapter, fake, image_python, tmp_path / "run", dbx)
    assert result.result_state == "SUCCESS", result.logs[-3000:]
    assert re.search(r"held-out accuracy: ([0-9.]+)", result.logs).group(1) == want


@pytest.mark.slow
def test_portable_two_node_gang_through_torch_distributor(dbx_adapter, fake, spark_python, tmp_path):
    """The launcher's gang path for real: pyspark's own TorchDistributor (Spark local master, the
    ranks under torchrun), as on a two-node Databricks ML cluster."""
    spec = _copy("portable", tmp_path, resources={"nodes": 2, "accelerator": None})
    handle, result = _submit_and_run(dbx_adapter, fake, spark_python, tmp_path / "run", spec, timeout=600)
    assert result.result_state == "SUCCESS", result.logs[-4000:]
    for rank in range(2):
        assert re.search(rf"rank {rank}/2 on node \d; master \S+:\d+; hyperparameters", result.logs), result.logs[-4000:]
    assert dbx_adapter.status(handle).state.value == "SUCCEEDED"
