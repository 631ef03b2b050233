"""The CLI with --target vertex: the examples plan, bad Vertex input exits 2 with file:line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "vertex"


def _unijob(*args: str, env_drop=()):
    env = {k: v for k, v in os.environ.items() if k not in env_drop}
    return subprocess.run([str(Path(sys.executable).parent / "unijob"), *args],
                          capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("name", ["job.yaml", "endpoint.yaml"])
def test_examples_plan_as_json(name):
    r = _unijob("plan", "--target", "vertex", "-o", "json", str(EXAMPLES / name))
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    body = plan["requests"][0]["body"]
    from google.cloud import aiplatform_v1 as aip

    aip.CustomJob.from_json(json.dumps(body), ignore_unknown_fields=False)
    assert plan["target"] == "vertex" and body["displayName"] == plan["name"]


@pytest.mark.parametrize("old,new,field", [
    ("output: gs://acme-ml-models/llm-finetune", "output: s3://acme-ml-models/llm-finetune", "output:"),
    ("accelerator: A100-80GB:8", "accelerator: A10G:4", "resources.accelerator:"),
    ("    project: acme-ml\n", "", "targets.vertex.project:"),
])
def test_bad_vertex_input_exits_2_with_location(tmp_path, old, new, field):
    text = (EXAMPLES / "job.yaml").read_text()
    assert old in text
    spec = tmp_path / "job.yaml"
    spec.write_text(text.replace(old, new))
    r = _unijob("plan", "--target", "vertex", str(spec), env_drop=("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT",
                                                                   "GCLOUD_PROJECT"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{spec}:" in r.stderr and field in r.stderr
