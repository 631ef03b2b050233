"""Train, then serve what was trained, on the local target: an endpoint ``model: job:<name-or-id>``
is the output directory that job wrote; a job that failed or wrote nothing is an error at the
model field's file and line, and nothing is deployed."""

import textwrap

import pytest

import unijob
from unijob.cli import main

HANDLER = """\
class Predictor:
    def load(self, model_dir):
        self.tag = (model_dir / "tag.txt").read_text().strip()

    def predict(self, instances, parameters):
        return [{"x": x, "model": self.tag} for x in instances]
"""

TRAIN = """\
import os, pathlib, sys
out = pathlib.Path(os.environ["UNIJOB_OUTPUT_DIR"])
if os.environ.get("WRITE", "1") == "1":
    out.mkdir(parents=True, exist_ok=True)
    (out / "tag.txt").write_text(os.environ.get("TAG", "trained") + "\\n")
sys.exit(int(os.environ.get("EXIT", "0")))
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "handler.py").write_text(HANDLER)
    (tmp_path / "job.yaml").write_text("name: trainer\nscript: train.py\nmax_run: 2m\nenv: {TAG: v1}\n")

    def endpoint(model: str) -> str:
        p = tmp_path / "endpoint.yaml"
        p.write_text(textwrap.dedent(f"""\
            name: served
            endpoint:
              handler: handler.py:Predictor
              variants:
                - {{name: current, weight: 100, model: "{model}"}}
            """))
        return str(p)

    return tmp_path, endpoint


def test_deploy_serves_the_model_the_job_wrote(project, capsys, live_processes, _isolated_home):
    base, endpoint = project
    assert main(["submit", str(base / "job.yaml"), "--wait"]) == 0
    job = unijob.jobs()[0]
    out_dir = base / "unijob-home" / "local" / "jobs" / job.native_id / "output"
    assert job.model_artifact() == str(out_dir) and (out_dir / "tag.txt").read_text() == "v1\n"
    plan = unijob.plan(endpoint("job:trainer"), endpoint=True)
    assert plan.request("local:deploy").body["variants"][0]["model"] == str(out_dir)
    capsys.readouterr()
    assert main(["deploy", endpoint(f"job:{job.id[:5]}")]) == 0
    try:
        assert f"model from job {job.id} (trainer on local)" in capsys.readouterr().err
        assert unijob.endpoint("served").invoke([1]).predictions[0]["model"] == "v1"
    finally:
        assert main(["undeploy", "served"]) == 0
    assert live_processes(_isolated_home) == []


def test_a_failed_job_or_no_model_is_an_error_at_the_model_line(project, capsys):
    base, endpoint = project
    spec = unijob.load(base / "job.yaml")
    spec.env.update(EXIT="2")
    failed = unijob.submit(spec, wait=True)
    assert failed.state is unijob.JobState.FAILED
    assert main(["deploy", endpoint("job:trainer")]) == 2
    err = capsys.readouterr().err
    assert "endpoint.yaml:5:" in err and "endpoint.variants[0].model: job:trainer" in err
    assert f"job {failed.id} (trainer on local) is FAILED" in err and "only a job that succeeded" in err
    spec.env.update(EXIT="0", WRITE="0")
    empty = unijob.submit(spec, wait=True)
    assert empty.state is unijob.JobState.SUCCEEDED
    assert main(["deploy", endpoint("job:trainer")]) == 2  # the newest job of that name: wrote nothing
    assert f"local job {empty.native_id} wrote no model: its output directory" in capsys.readouterr().err
    assert main(["deploy", endpoint("job:nosuch")]) == 2
    assert "no job with id or name 'nosuch'" in capsys.readouterr().err
    assert unijob.endpoints() == []
