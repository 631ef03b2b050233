"""unijob.batch.shards: files round-robin over shards, one .out per file in input order, and the
error budget judged on the whole job by the last shard to finish (the Kubernetes batch's engine)."""

import json
import textwrap
from pathlib import Path

import pytest

from unijob.batch import shards

HANDLER = textwrap.dedent("""
    class Doubler:
        def predict(self, instances):
            if "boom" in instances:
                raise ValueError("cannot predict 'boom'")
            return [x * 2 for x in instances]
""")


@pytest.fixture
def project(tmp_path):
    (tmp_path / "handler.py").write_text(HANDLER)
    data = tmp_path / "data"
    data.mkdir()
    for f in range(5):  # f0..f4, 10 lines each; f3 has one bad line
        lines = [json.dumps({"key": f"{f}-{i}", "instance": f * 100 + i}) for i in range(10)]
        if f == 3:
            lines[4] = '"boom"'
        (data / f"f{f}.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def _config(project, **over):
    c = {"handler": "handler.py:Doubler", "base_dir": str(project), "input": str(project / "data"),
         "output": str(project / "out"), "instances_per_request": 4, "max_error_fraction": 0.05, "shards": 3,
         "run_id": "job-1"}
    c.update(over)
    return c


def _rows(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_round_robin_shards_and_the_last_one_judges(project, capsys):
    out = project / "out"
    assert shards.run_shard(_config(project, index=1)) == 0  # f1, f4
    assert sorted(p.name for p in out.glob("*.out")) == ["f1.jsonl.out", "f4.jsonl.out"]
    assert not (out / "_SUMMARY.json").exists()
    assert shards.run_shard(_config(project, index=2)) == 0  # f2 only
    assert "the last shard to finish judges" in capsys.readouterr().out
    assert shards.run_shard(_config(project, index=0)) == 0  # f0, f3: last, merges
    for f in range(5):
        rows = _rows(out / f"f{f}.jsonl.out")
        assert [r["key"] for r in rows if "key" in r] == [f"{f}-{i}" for i in range(10) if (f, i) != (3, 4)]
    assert _rows(out / "f3.jsonl.out")[4] == {"error": "ValueError: cannot predict 'boom'", "line": 5}
    assert _rows(out / "errors.jsonl") == [{"file": "f3.jsonl", "line": 5, "error": "ValueError: cannot predict 'boom'"}]
    s = json.loads((out / "_SUMMARY.json").read_text())
    assert (s["lines"], s["predictions"], s["errors"], s["files"], s["within_budget"]) == (50, 49, 1, 5, True)
    assert [p["files"] for p in s["per_shard"]] == [2, 2, 1]


def test_budget_is_the_whole_jobs_not_one_shards(project, capsys):
    # shard 0 alone: 1 error in 20 lines = 5% > 4%; the job: 1 in 50 = 2% <= 4%
    for i in (0, 1, 2):
        assert shards.run_shard(_config(project, index=i, max_error_fraction=0.04)) == 0
    # the same job with a 1% budget fails, whichever shard is last
    for i in (2, 0, 1):
        code = shards.run_shard(_config(project, index=i, max_error_fraction=0.01, run_id="job-2"))
    assert code == shards.EXIT_BUDGET
    assert "1 of 50 lines failed" in capsys.readouterr().err


def test_index_from_the_environment_and_config_errors(project, monkeypatch, capsys):
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "5")
    assert shards.run_shard(_config(project)) == shards.EXIT_CONFIG
    assert "outside 0..2" in capsys.readouterr().err
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "0")
    assert shards.run_shard(_config(project, input=str(project / "missing"))) == shards.EXIT_CONFIG
    monkeypatch.delenv("UNIJOB_HANDLER", raising=False)
    assert shards.run_shard(_config(project, handler=None)) == shards.EXIT_CONFIG
    assert "UNIJOB_HANDLER" in capsys.readouterr().err
    monkeypatch.setenv("UNIJOB_HANDLER", "handler.py:Doubler")
    assert shards.run_shard(_config(project, handler=None, shards=1)) == 0


def test_runner_works_without_fsspec(project, monkeypatch):
    import sys

    from unijob.batch import runner

    monkeypatch.setitem(sys.modules, "fsspec", None)  # import fsspec -> ImportError
    s = runner.run({"handler": "handler.py:Doubler", "base_dir": str(project), "input": str(project / "data"),
                    "output": str(project / "plain"), "max_error_fraction": 0.1})
    assert (s["lines"], s["errors"]) == (50, 1)
    assert [r["prediction"] for r in _rows(project / "plain" / "f0.jsonl.out")] == [i * 2 for i in range(10)]
    with pytest.raises(ImportError):
        runner.list_inputs("s3://bucket/data")


def test_shards_over_an_fsspec_filesystem(project):
    """Object-store style I/O (fsspec's in-memory filesystem stands for s3:// or gs://): the same
    files, the summary written to its final key at once (an object store's PUT, never a rename), the
    merge read back through fsspec."""
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    for f in sorted((project / "data").iterdir()):
        fs.pipe(f"/in-{id(project)}/{f.name}", f.read_bytes())
    out = f"memory:///out-{id(project)}"
    codes = [shards.run_shard(_config(project, index=i, shards=2, input=f"memory:///in-{id(project)}", output=out))
             for i in (0, 1)]
    assert codes == [0, 0]
    assert [json.loads(x)["key"] for x in fs.cat(f"{out}/f2.jsonl.out").decode().splitlines()] == \
        [f"2-{i}" for i in range(10)]
    assert fs.exists(f"{out}/_shards/job-1/summary-0.json") and not fs.exists(f"{out}/_shards/job-1/.summary-0.json")
    s = json.loads(fs.cat(f"{out}/_SUMMARY.json"))
    assert (s["lines"], s["errors"], s["shards"]) == (50, 1, 2)
    assert [json.loads(x)["line"] for x in fs.cat(f"{out}/errors.jsonl").decode().splitlines()] == [5]


PEER_AFTER_A_LISTING = textwrap.dedent("""
    import json, sys
    import s3fs
    from unijob.batch import shards

    config = json.loads(sys.argv[1])
    assert shards.run_shard(config) == 0  # shard 1 of 2: not last
    base = "acme-out/out/_shards/job-1"
    fs = s3fs.S3FileSystem()  # the instance fsspec.open and url_to_fs hand this process
    assert sorted(p.rsplit("/", 1)[1] for p in fs.ls(base)) == ["errors-1.jsonl", "summary-1.json"]
    peer = s3fs.S3FileSystem(skip_instance_cache=True)  # shard 0, on another machine, finishes now
    peer.pipe(base + "/errors-0.jsonl", b"")
    peer.pipe(base + "/summary-0.json", json.dumps({"lines": 30, "predictions": 30, "errors": 0, "files": 3,
        "seconds": 0.1, "instances_per_request": 4}).encode())
    print(json.dumps(shards.merge(config)))
""")


def test_merge_sees_summaries_written_after_its_process_listed_them(project, tmp_path, tmp_path_factory):
    """s3fs caches listings per process (fsspec/s3fs#851): a shard that listed _shards/<run> before a
    peer's summary landed must still find it, or no shard would ever merge."""
    import os
    import subprocess

    import boto3

    from unijob.testing.contracts import clean_env, job_python
    from unijob.testing.objstore import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, moto_s3

    root = os.environ.get("UNIJOB_TEST_JOB_PYTHONS") or tmp_path_factory.getbasetemp() / "job-pythons"
    py = job_python(root, ["scikit-learn", "s3fs"])  # the same venv as the Kubernetes s3:// batch test
    src = str(Path(shards.__file__).parents[2])
    with moto_s3(tmp_path / "moto.log") as url:
        c = boto3.client("s3", endpoint_url=url, region_name=REGION, aws_access_key_id=ACCESS_KEY_ID,
                         aws_secret_access_key=SECRET_ACCESS_KEY)
        c.create_bucket(Bucket="acme-in")
        c.create_bucket(Bucket="acme-out")
        for f in sorted((project / "data").iterdir()):
            c.put_object(Bucket="acme-in", Key=f"data/{f.name}", Body=f.read_bytes())
        config = _config(project, index=1, shards=2, input="s3://acme-in/data", output="s3://acme-out/out")
        env = clean_env({"PYTHONPATH": src, "AWS_ENDPOINT_URL": url, "AWS_DEFAULT_REGION": REGION,
                         "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY})
        out = subprocess.run([str(py), "-c", PEER_AFTER_A_LISTING, json.dumps(config)], env=env, cwd=project,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        assert summary is not None, out.stdout
        assert (summary["lines"], summary["errors"], summary["shards"]) == (50, 1, 2)
        assert json.loads(c.get_object(Bucket="acme-out", Key="out/_SUMMARY.json")["Body"].read()) == summary
