"""Hostile specs: generated and mutated spec files never get a traceback from ``validate`` or
``plan`` on any installed target (issue 13).

Each example is a spec file: one of three valid bases (a portable script job with every target's
options, an image job, an endpoint), mutated as data (values swapped for other types, huge and
negative numbers, unicode and control characters; keys removed, added and misspelt) and then as
text (deep nesting, anchors and aliases, duplicate keys, integers of thousands of digits, invalid
UTF-8, control bytes, truncation). ``unijob validate`` and ``unijob plan -t T`` (and
``plan --endpoint``) run in-process through the CLI's own ``main``: a refusal is exit 2 and any
exception that is not a :class:`unijob.errors.UnijobError` escapes ``main`` and fails the test.

1,000 examples per run (about 30 s here); the example database is off, so nothing is written
into the repository (a failure prints the example and ``@reproduce_failure`` instead).
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from unijob import registry
from unijob.cli.main import main

EXAMPLES = int(os.environ.get("UNIJOB_HOSTILE_EXAMPLES", "1000"))  # more for a soak run

TARGET_OPTIONS: dict[str, Any] = {
    "local": {"simulate_preemption": "30s"},
    "sagemaker": {"role_arn": "arn:aws:iam::123456789012:role/SageMakerRole", "region": "us-east-1",
                  "code_bucket": "my-bucket"},
    "vertex": {"project": "my-project", "location": "us-central1", "staging_bucket": "gs://my-bucket-staging"},
    "databricks": {"cloud": "aws"},
    "kubernetes": {"namespace": "ml", "provider": "gke"},
}
PORTABLE: dict[str, Any] = {  # examples/portable/job.yaml and more: plans on every target
    "name": "portable",
    "description": "every field a mutation can reach",
    "script": "train.py",
    "requirements": "requirements.txt",
    "resources": {"accelerator": "L4", "nodes": 2, "cpus": 4, "memory_gib": 16},
    "spot": {"policy": "spot_with_fallback", "max_wait": "3h", "max_restarts": 2},
    "max_run": "2h",
    "env": {"MODE": "fast"},
    "hyperparameters": {"epochs": 3, "lr": 0.01, "opt": "adam", "fast": True},
    "labels": {"team": "ml-platform"},
    "targets": TARGET_OPTIONS,
}
AWS: dict[str, Any] = {  # data, checkpoints and secrets as SageMaker (and local) take them
    **PORTABLE, "name": "aws-job",
    "checkpoint": {"uri": "s3://bucket/ckpt", "keep": 2},
    "inputs": {"train": "s3://bucket/train", "test": "s3://bucket/test"},
    "output": "s3://bucket/out",
    "secrets": {"TOKEN": "aws-secretsmanager://hf-token"},
}
GCP: dict[str, Any] = {  # ... and as Vertex AI takes them
    **PORTABLE, "name": "gcp-job",
    "checkpoint": {"uri": "gs://bucket/ckpt"},
    "inputs": {"train": "gs://bucket/train"},
    "output": "gs://bucket/out",
    "secrets": {"TOKEN": "gcp-secretmanager://projects/my-project/secrets/hf"},
}
IMAGE: dict[str, Any] = {
    "name": "image-job",
    "image": "python:3.11-slim",
    "command": ["python", "-c", "print(1)"],
    "resources": {"nodes": 1, "processes_per_node": 2},
    "max_run": 600,
    "targets": {"local": {"run_image_command": True},
                "sagemaker": {"role_arn": "arn:aws:iam::123456789012:role/R", "region": "eu-west-1"},
                "vertex": {"project": "my-project", "location": "europe-west4"}},
}
ENDPOINT: dict[str, Any] = {
    "name": "digits",
    "endpoint": {
        "handler": "serve.py:Digits", "min_replicas": 1, "max_replicas": 3,
        "autoscaling": {"metric": "concurrency", "target": 4},
        "variants": [{"name": "current", "weight": 90, "model": "./output"},
                     {"name": "candidate", "weight": 10, "model": "./output", "handler": "serve.py:TopK"}],
    },
}
BASES = [PORTABLE, AWS, GCP, IMAGE, ENDPOINT]
MUST_PLAN = {"portable": set(TARGET_OPTIONS), "aws-job": {"local", "sagemaker"}, "gcp-job": {"local", "vertex"},
             "image-job": {"local"}, "digits": {"local"}}  # where each base plans (exit 0)


def _field_names() -> list[str]:
    """Every key a spec may hold (JobSpec's models and each target's options), for added keys."""
    from pydantic import BaseModel

    from unijob.loading import _unwrap_model
    from unijob.spec import JobSpec

    names: set[str] = set()
    todo: list[type[BaseModel]] = [JobSpec, *(registry.options_model(t) for t in registry.names())]
    seen: set[type] = set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        for name, f in m.model_fields.items():
            names.add(f.alias or name)
            sub = _unwrap_model(f.annotation)
            if sub is not None:
                todo.append(sub)
    return sorted(names)


TARGETS = registry.names()
KEYS = st.one_of(st.sampled_from(_field_names() + TARGETS), st.text(max_size=12))
WEIRD_STRINGS = st.sampled_from([
    "", " ", "L4:8", "H100:0", "A100:-1", "TPU", "3h", "-1s", "0s", "1e400", "99999999999d", "s3://", "gs://",
    "env://", "env://", "../escape.py", "/dev/zero", "/etc/passwd", "train.py\x00", "file:///tmp", "dbfs:/x",
    "spot", "on_demand", "spot_with_fallback", "~", "null", "yes", "no", "on", "2020-01-01", "a" * 64, "a" * 5000,
    "ÄÖÜ-日本-🚀", "\u202e", "\ufeff", "\x1b[31m", "{}", "[]", "*", "&", "!!python/object:os.system", "%s%n",
    "$(rm -rf /)", "0x10", "0o17", "1:30:00", "-0", "nan", ".inf",
])
ATOMS = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**63 - 1, 2**63, -(2**63) - 1, 4096, 4097, 256, 257, 10**18]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
    WEIRD_STRINGS,
)
VALUES = st.recursive(ATOMS, lambda c: st.lists(c, max_size=4) | st.dictionaries(KEYS, c, max_size=4),
                      max_leaves=12)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _get(node: Any, path: tuple) -> Any:
    for p in path:
        node = node[p]
    return node


@st.composite
def mutated_data(draw) -> Any:
    """A base spec (or, now and then, any YAML value) with 0-6 data mutations."""
    if draw(st.integers(0, 19)) == 0:
        return draw(VALUES)  # generated from nothing
    data = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 2, 3, 6]))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["set", "set", "delete", "add", "rename"]))
        if path == ():
            if op == "add" and isinstance(data, dict):
                data[draw(KEYS)] = draw(VALUES)
            continue
        parent, last = _get(data, path[:-1]), path[-1]
        if op == "set":
            parent[last] = draw(VALUES)
        elif op == "delete":
            del parent[last]
        elif op == "add":
            target = parent[last]
            if isinstance(target, dict):
                target[draw(KEYS)] = draw(VALUES)
            elif isinstance(target, list):
                target.append(draw(VALUES))
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(KEYS)] = parent.pop(last)
    return data


def _dump(data: Any, flow: bool, unicode: bool) -> str:
    try:
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=flow, allow_unicode=unicode, width=80)
    except yaml.YAMLError:  # a value safe_dump cannot represent: fall back to its repr as a string
        return yaml.safe_dump(repr(data))


PATH_FIELDS = [("script",), ("source_dir",), ("requirements",), ("inputs", "train"), ("output",),
               ("checkpoint", "uri"), ("endpoint", "handler"), ("endpoint", "model"), ("endpoint", "variants", 0, "model"),
               ("endpoint", "variants", 1, "handler"), ("targets", "local", "python")]
HOSTILE_PATHS = st.one_of(st.sampled_from([
    "a" * 300, "a" * 5000, "/".join(["ab" * 100] * 30), "pipe", "adir", "adir/", "train.py/x", "loop", "loop/x",
    "train.py\x00x", "~/x", "~nosuchuser/x", "/dev/zero", "file:///dev/zero", "file://" + "a" * 5000, "./output",
    "serve.py:" + "A" * 300, "serve.py:", ":Digits", "pipe:Digits", "adir:X", "s3://" + "b" * 5000, "gs://",
    "file:", "C:\\x", "\\\\server\\share", "%2e%2e/x", "..", ".", "",
]), st.text(max_size=30))


def _set_path(data: Any, path: tuple, value: Any) -> None:
    node = data
    for p in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(p, {})
        elif isinstance(node, list) and isinstance(p, int) and p < len(node):
            node = node[p]
        else:
            return
    if isinstance(node, dict):
        node[path[-1]] = value
    elif isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
        node[path[-1]] = value


TEXT_MUTATIONS = ["deep", "duplicate", "alias", "bomb", "bigint", "utf8", "control", "truncate", "tab", "anchor_self"]


@st.composite
def spec_bytes(draw) -> bytes:
    """A spec file's bytes: mutated data dumped as YAML, then 0-3 text mutations."""
    data = draw(mutated_data())
    if isinstance(data, dict) and draw(st.integers(0, 3)) == 0:  # a hostile path where a path goes
        _set_path(data, draw(st.sampled_from(PATH_FIELDS)), draw(HOSTILE_PATHS))
    text = _dump(data, draw(st.booleans()), draw(st.booleans()))
    top_keys = list(data) if isinstance(data, dict) and data else ["hyperparameters"]
    key = draw(st.sampled_from([k for k in top_keys if isinstance(k, str)] or ["hyperparameters"]))
    raw = None
    for m in draw(st.lists(st.sampled_from(TEXT_MUTATIONS), max_size=draw(st.sampled_from([0, 0, 0, 1, 1, 3])))):
        if m == "deep":
            n = draw(st.sampled_from([10, 63, 64, 65, 300, 500, 2000]))
            inner = "[" * n + "]" * n if draw(st.booleans()) else "{a: " * n + "1" + "}" * n
            text += f"\nhyperparameters: {{x: {inner}}}\n"
        elif m == "duplicate":
            text += f"\n{key}: {yaml.safe_dump(draw(VALUES), default_flow_style=True).splitlines()[0]}\n"
        elif m == "alias":
            text = f"_anchor: &a {yaml.safe_dump(draw(VALUES), default_flow_style=True).splitlines()[0]}\n" + text
            text += f"\n{key}: *a\n"
        elif m == "bomb":
            levels = draw(st.integers(2, 9))
            lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
            lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, levels)]
            text = "\n".join(lines) + f"\nhyperparameters: {{bomb: *l{levels - 1}}}\n" + text
        elif m == "bigint":
            n = draw(st.sampled_from([19, 20, 4300, 4301, 10000]))
            sign = draw(st.sampled_from(["", "-"]))
            text += f"\nresources: {{nodes: {sign}{'9' * n}}}\n"
        elif m == "anchor_self":
            text += "\nhyperparameters: &s {me: *s}\n"
        elif m == "tab":
            text = text.replace("  ", "\t", 1)
        elif m == "truncate" and text:
            text = text[: draw(st.integers(0, len(text)))]
        elif m == "control":
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(st.sampled_from(["\x00", "\x07", "\x1b", "\x7f", "\x85", "\ufffe"])) + text[at:]
        elif m == "utf8":
            raw = text.encode("utf-8", "surrogatepass")
            at = draw(st.integers(0, len(raw)))
            raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"])) + raw[at:]
    return raw if raw is not None else text.encode("utf-8", "surrogatepass")


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A directory with the files the bases name (script, requirements, handler, model dir)."""
    (tmp_path / "train.py").write_text("print('train')\n")
    (tmp_path / "requirements.txt").write_text("numpy\n")
    (tmp_path / "serve.py").write_text("class Digits:\n    def predict(self, i, p):\n        return i\n"
                                       "class TopK(Digits):\n    pass\n")
    (tmp_path / "output").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "adir").mkdir()
    os.mkfifo(tmp_path / "pipe")  # reading it would block: specs and their files must refuse it
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    monkeypatch.setenv("HOSTILE_TOKEN", "not-a-real-secret")
    return tmp_path


def _run(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)  # a non-UnijobError escapes main: that is the failure this test finds
    return code, err.getvalue()


def test_bases_are_valid_and_plan_everywhere(project):
    """The bases are valid: mutations start from specs that reach every adapter's plan()."""
    for base in BASES:
        p = project / "job.yaml"
        p.write_text(yaml.safe_dump(base, sort_keys=False))
        code, err = _run(["validate", str(p)])
        assert code == 0, err
        for t in TARGETS:
            code, err = _run(["plan", str(p), "-t", t, *(["--endpoint"] if base is ENDPOINT else [])])
            assert code == 0 or (code == 2 and t not in MUST_PLAN[base["name"]]), f"{base['name']} on {t}: {err}"


@settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(raw=spec_bytes())
def test_hostile_spec_never_gets_a_traceback(project, _isolated_home, raw):
    p = project / "job.yaml"
    p.write_bytes(raw)
    code, err = _run(["validate", "-q", str(p)])
    assert code in (0, 2), err
    event(f"validate exit {code}")
    if code == 2:
        assert "job.yaml" in err, f"the refusal does not name the file: {err}"
        for t in TARGETS:  # plan loads first: the same refusal, checked once per target is enough
            assert _run(["plan", str(p), "-t", t])[0] == 2
        assert not (_isolated_home / "jobs.sqlite3").exists() and not (_isolated_home / "local").exists()
        return
    endpoint = b"endpoint" in raw
    for t in TARGETS:
        code, err = _run(["plan", str(p), "-t", t])
        assert code in (0, 2), err
        event(f"plan -t {t} exit {code}")
        if endpoint:
            code, err = _run(["plan", str(p), "-t", t, "--endpoint"])
            assert code in (0, 2), err
    assert not (_isolated_home / "local").exists(), "plan wrote under the job home"
