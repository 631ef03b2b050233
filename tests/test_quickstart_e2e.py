"""Issue 2's acceptance, end to end through `unijob submit` on the local target: the quickstart
trains to a held-out accuracy; preempted mid-way it resumes from its checkpoint, ends with the same
accuracy as an uninterrupted run with the same seed, and its record shows one restart."""

import re
import shutil
from pathlib import Path

import pytest

from unijob.cli import main
from unijob.records import Records

pytest.importorskip("sklearn")
QUICKSTART = Path(__file__).parents[1] / "examples" / "quickstart"


@pytest.fixture
def spec(tmp_path):
    dest = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART, dest, ignore=shutil.ignore_patterns("checkpoints", "__pycache__"))
    return str(dest / "job.yaml")


def _accuracy(capsys) -> tuple[float, str]:
    out = capsys.readouterr().out
    m = re.search(r"held-out accuracy: ([0-9.]+)", out)
    assert m, out[-2000:]
    return float(m.group(1)), out


def test_preempted_run_resumes_and_matches(spec, capsys):
    assert main(["submit", spec, "--follow"]) == 0
    plain, _ = _accuracy(capsys)
    assert plain > 0.9
    with Records() as r:
        run = r.list(limit=1)[0]
    # preempt mid-way through the run as this machine runs it (3 s when idle; later on a loaded machine,
    # so that the first epoch's checkpoint exists when the reclaim comes)
    after = max(3, int((run.ended_at - run.started_at) / 2)) if run.ended_at and run.started_at else 3

    assert main(["submit", spec, "--follow", "--simulate-preemption", f"{after}s"]) == 0
    resumed, out = _accuracy(capsys)
    assert resumed == plain
    assert "[unijob] restart 1" in out
    assert re.search(r"resum\w+ from .*epoch", out, re.IGNORECASE), out[-3000:]

    with Records() as r:
        newest, first = r.list(limit=2)
    assert (first.state, first.restarts) == ("SUCCEEDED", 0)
    assert (newest.state, newest.restarts) == ("SUCCEEDED", 1)
