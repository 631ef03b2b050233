"""The spec reader's limits and the local target's gang and dry-run rules (issue 13): each hostile
input is refused with the file, the line where there is one, what was expected and the limit;
exit 2; no record; quickly."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from unijob.cli import main
from unijob.errors import NotReady, SpecError
from unijob.loading import MAX_DEPTH, MAX_NODES, MAX_SPEC_BYTES, load_spec

HEAD = "name: demo\nscript: train.py\n"


@pytest.fixture
def project(tmp_path) -> Path:
    (tmp_path / "train.py").write_text("print('hi')\n")
    return tmp_path


def refusal(path: Path) -> tuple[str, int | None, str]:
    """(file, line, message) of the first issue load_spec raises for ``path``; fails when it loads."""
    t = time.monotonic()
    with pytest.raises(SpecError) as ei:
        load_spec(path)
    assert time.monotonic() - t < 5, "a refusal must come before the expensive work"
    issue = ei.value.issues[0]
    return issue.file, issue.line, issue.message


def write(project: Path, text: str | bytes, name: str = "job.yaml") -> Path:
    p = project / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


@pytest.mark.parametrize("case, text, line, words", [
    ("deep-500", HEAD + "hyperparameters: {x: " + "[" * 500 + "]" * 500 + "}\n", 3, [f"{MAX_DEPTH} levels"]),
    ("deep-mapping", HEAD + "hyperparameters:\n  x: " + "{a: " * 100 + "1" + "}" * 100 + "\n", 4, ["nested"]),
    ("int-4301-digits", HEAD + "resources: {nodes: " + "9" * 4301 + "}\n", 3, ["64 bits", "4,301 characters"]),
    ("int-over-64-bits", HEAD + "hyperparameters: {seed: 99999999999999999999}\n", 3, ["64 bits"]),
    ("hex-over-64-bits", HEAD + "hyperparameters: {seed: 0x1ffffffffffffffff}\n", 3, ["64 bits"]),
    ("inf", HEAD + "hyperparameters: {lr: .inf}\n", 3, ["finite"]),
    ("date", HEAD + "hyperparameters:\n  start: 2020-01-01\n", 4, ["a date", "quote"]),
    ("binary", HEAD + "hyperparameters:\n  blob: !!binary aGk=\n", 4, ["binary"]),
    ("int-key", HEAD + "env:\n  1: x\n", 3, ["keys are strings"]),
    ("alias-bomb", HEAD + "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
     + "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcd", "bcde")),
     None, [f"{MAX_NODES:,} values"]),
    ("alias-in-itself", HEAD + "hyperparameters: &h {x: *h}\n", 3, ["inside its own anchor"]),
    ("control-char", HEAD + "description: a\x01b\n", 3, ["not valid YAML", "control characters"]),
])
def test_hostile_yaml_is_refused_with_line(project, case, text, line, words, _isolated_home):
    p = write(project, text)
    file, got_line, message = refusal(p)
    assert file == str(p)
    if line is not None:
        assert got_line == line, message
    for w in words:
        assert w in message
    assert main(["validate", str(p)]) == 2
    assert main(["submit", str(p), "--dry-run"]) == 2
    assert not (_isolated_home / "jobs.sqlite3").exists() and not (_isolated_home / "local").exists()


def test_invalid_utf8_names_line_and_column(project):
    p = write(project, HEAD.encode() + b"description: caf\xe9\n")
    file, line, message = refusal(p)
    assert file == str(p) and line == 3 and "0xe9" in message and "UTF-8" in message


def test_oversized_file_is_refused_before_parsing(project):
    p = write(project, HEAD + "description: " + "a" * (10 << 20) + "\n")
    t = time.monotonic()
    file, line, message = refusal(p)
    assert time.monotonic() - t < 0.5
    assert f"{MAX_SPEC_BYTES:,} bytes" in message and "10,48" in message


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/null", "dir", "fifo"])
def test_only_regular_files_are_specs(project, target):
    if target == "dir":
        (project / "d").mkdir()
        path = project / "d"
    elif target == "fifo":
        os.mkfifo(project / "pipe.yaml")
        path = project / "pipe.yaml"  # reading it would block forever
    else:
        path = Path(target)
    file, line, message = refusal(path)
    assert "not a regular file" in message
    link = project / "link.yaml"  # and the same through a symlink
    link.symlink_to(path)
    file, line, message = refusal(link)
    assert file == str(link) and "not a regular file" in message and "->" in message


def test_a_fifo_where_a_file_goes_is_refused(project):
    os.mkfifo(project / "reqs.txt")
    p = write(project, HEAD + "requirements: reqs.txt\n")
    assert "not a regular file" in refusal(p)[2]


def test_local_refuses_a_gang_this_machine_cannot_start(project, _isolated_home):
    from unijob.local.plan import max_ranks

    limit, reason = max_ranks()
    assert limit >= 64
    p = write(project, HEAD + "resources: {nodes: 4096, processes_per_node: 256}\n")
    spec = load_spec(p).spec  # valid as a spec: a cloud target can run it
    from unijob.local.adapter import LocalAdapter

    with pytest.raises(SpecError) as ei:
        LocalAdapter().plan(spec, "k")
    msg = str(ei.value)
    assert "1,048,576 ranks" in msg and f"at most {limit:,}" in msg and "CPU" in msg
    assert main(["submit", str(p)]) == 2
    assert not (_isolated_home / "local").exists()
    ok = write(project, HEAD + "resources: {nodes: 8, processes_per_node: 8}\n", "ok.yaml")
    assert LocalAdapter().plan(load_spec(ok).spec, "k").requests[0].body["world_size"] == 64


def test_local_dry_run_checks_what_a_launch_needs(project, _isolated_home, monkeypatch):
    from unijob.local.adapter import LocalAdapter

    monkeypatch.delenv("NO_SUCH_SECRET_VAR", raising=False)
    p = write(project, HEAD + "secrets: {TOKEN: env://NO_SUCH_SECRET_VAR}\n")
    a = LocalAdapter()
    plan = a.plan(load_spec(p).spec, "K1")
    plan.extra["dry_run"] = True
    with pytest.raises(NotReady) as ei:
        a.submit(plan)
    assert "NO_SUCH_SECRET_VAR is not set" in str(ei.value)
    monkeypatch.setenv("NO_SUCH_SECRET_VAR", "x")
    h = a.submit(plan)
    assert h.extra["dry_run"] is True
    assert not (_isolated_home / "local").exists()


def test_dry_run_then_real_submit_with_the_same_key_runs_the_job(project, _isolated_home, capsys):
    (project / "train.py").write_text("print('the job ran')\n")
    p = write(project, HEAD)
    assert main(["submit", str(p), "--dry-run", "--idempotency-key", "K1"]) == 0
    assert not (_isolated_home / "local").exists() and not (_isolated_home / "jobs.sqlite3").exists()
    assert main(["submit", str(p), "--idempotency-key", "K1", "--wait"]) == 0
    logs = list((_isolated_home / "local" / "jobs").glob("*/rank-0.log"))
    assert len(logs) == 1 and "the job ran" in logs[0].read_text()
