"""Malformed specs of every kind: file:line, field, expectation, close match; exit 2; no record."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from unijob.cli import main
from unijob.errors import SpecError
from unijob.loading import load_spec

GOOD = """\
name: demo
script: train.py
resources:
  accelerator: L4
  nodes: 2
spot:
  policy: spot
  max_wait: 3h
max_run: 2h
"""

# (name, yaml text, expected line, expected field path, words the message must contain, suggestion)
BAD = [
    ("typo-key", GOOD.replace("  accelerator: L4", "  acclerator: L4"), 4, "resources.acclerator", ["unknown field"], "accelerator"),
    ("unknown-accelerator", GOOD.replace("L4", "H10:8"), 4, "resources.accelerator", ["unknown accelerator"], "H100"),
    ("bad-policy", GOOD.replace("policy: spot", "policy: spotty"), 7, "spot.policy", ["expected"], "spot"),
    ("max-wait-below-run", GOOD.replace("max_wait: 3h", "max_wait: 1h"), 1, "(top level)", ["max_wait", "max_run"], None),
    ("bad-duration", GOOD.replace("max_run: 2h", "max_run: two hours"), 9, "max_run", ["duration"], None),
    ("nodes-zero", GOOD.replace("nodes: 2", "nodes: 0"), 5, "resources.nodes", ["greater than or equal to 1"], None),
    ("bad-name", GOOD.replace("name: demo", "name: Demo_1"), 1, "name", ["DNS-1123"], None),
    ("path-escape", GOOD.replace("script: train.py", "script: ../outside.py"), 2, "script", ["leaves the spec's directory"], None),
    ("missing-script", GOOD.replace("script: train.py", "script: nope.py"), 2, "script", ["no such file"], None),
    ("secret-value", GOOD + "secrets:\n  TOKEN: sk-live-abcdef\n", 11, "secrets.TOKEN", ["secret reference"], None),
    ("split", GOOD + "endpoint:\n  model: s3://b/m\n  variants:\n    - {name: a, weight: 70}\n    - {name: b, weight: 20}\n",
     10, "endpoint", ["sum to 100"], None),
    ("unknown-target", GOOD + "targets:\n  sagemakr: {}\n", 11, "targets.sagemakr", ["unknown target"], "sagemaker"),
    ("local-option-typo", GOOD + "targets:\n  local:\n    simulate_preemptoin: 5s\n", 12,
     "targets.local.simulate_preemptoin", ["unknown field"], "simulate_preemption"),
    ("yaml-syntax", GOOD.replace("  nodes: 2", "  nodes: [2"), 6, "(top level)", ["not valid YAML"], None),
    ("not-a-mapping", "- just\n- a list\n", 1, "(top level)", ["mapping"], None),
    ("bad-uri-scheme", GOOD + "inputs:\n  train: ftp://host/data\n", 11, "inputs.train", ["unsupported URI scheme"], None),
]


@pytest.fixture
def write(tmp_path):
    (tmp_path / "train.py").write_text("print('hi')\n")

    def _write(text: str) -> Path:
        p = tmp_path / "job.yaml"
        p.write_text(text)
        return p
    return _write


def test_good_spec_loads(write):
    spec = load_spec(write(GOOD)).spec
    assert spec.resources.accelerator == "L4:1" and spec.spot.max_wait == 10800


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_spec_is_located(write, case, _isolated_home):
    name, text, line, path, words, suggestion = case
    p = write(text)
    with pytest.raises(SpecError) as ei:
        load_spec(p)
    issue = ei.value.issues[0]
    assert issue.file == str(p)
    assert issue.line == line, ei.value
    assert issue.path == path
    for w in words:
        assert w in issue.message
    assert issue.suggestion == suggestion
    if name == "secret-value":
        assert "sk-live" not in str(ei.value)
    # The CLI: exit 2, the located message, no job record.
    for argv in (["validate", str(p)], ["submit", str(p)]):
        assert main(argv) == 2
    assert not (_isolated_home / "jobs.sqlite3").exists()


def test_cli_prints_file_line_and_suggestion(write):
    p = write(GOOD.replace("  accelerator: L4", "  acclerator: L4"))
    r = subprocess.run([sys.executable, "-m", "unijob.cli.main", "validate", str(p)], capture_output=True, text=True)
    # unijob.cli.main has no __main__ guard: use the console entry instead
    r = subprocess.run([sys.executable, "-c", "from unijob.cli import main; main()", "validate", str(p)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert f"{p}:4:3: resources.acclerator: unknown field (did you mean 'accelerator'?)" in r.stderr
    assert "Traceback" not in r.stderr


def test_schema_file_is_current():
    from unijob.spec import json_schema

    on_disk = json.loads((Path(__file__).parents[1] / "specs" / "jobspec.schema.json").read_text())
    assert on_disk == json_schema(), "specs/jobspec.schema.json is stale: run `unijob schema > specs/jobspec.schema.json`"


def test_examples_validate_against_the_json_schema():
    """Every example spec is accepted by the published JSON Schema too (what editors check)."""
    import jsonschema
    import yaml

    from unijob.pipeline.spec import json_schema as pipeline_schema
    from unijob.spec import json_schema

    validator = jsonschema.Draft202012Validator(json_schema())
    pipelines = jsonschema.Draft202012Validator(pipeline_schema())
    examples = sorted((Path(__file__).parents[1] / "examples").glob("*/*.yaml"))
    assert examples, "no example specs found"
    for ex in examples:
        data = yaml.safe_load(ex.read_text())
        check = pipelines if isinstance(data.get("steps"), list) else validator  # a pipeline file, or a job spec
        errors = [e.message for e in check.iter_errors(data)]
        assert not errors, f"{ex}: {errors}"
