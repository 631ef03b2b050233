"""log_metrics' stdout line and its reader: what job_metrics returns on targets read through logs."""

from __future__ import annotations

import pytest

from unijob.contract import JobHandle
from unijob.runtime.metrics import LINE_PREFIX, log_metrics, metrics_from_lines


def test_the_printed_lines_read_back_as_the_merged_metrics(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("UNIJOB_OUTPUT_DIR", str(tmp_path))
    for k in ("RANK", "UNIJOB_RANK"):
        monkeypatch.delenv(k, raising=False)
    merged = log_metrics({"accuracy": 0.5, "n": 450})
    merged = log_metrics({"accuracy": 0.97, "note": "ok"})
    lines = capsys.readouterr().out.splitlines()
    assert sum(ln.startswith(LINE_PREFIX) for ln in lines) == 2
    # a platform's prefix before the line (a rank tag, a timestamp) does not hide it
    tagged = [f"2026-11-29T23:00:00Z [rank 0] {ln}" for ln in lines]
    assert metrics_from_lines(tagged) == merged == {"accuracy": 0.97, "n": 450, "note": "ok"}


@pytest.mark.parametrize("line", [f"{LINE_PREFIX}not json", f"{LINE_PREFIX}[1, 2]", "accuracy 0.99", ""])
def test_lines_that_are_not_metric_objects_are_skipped(line):
    assert metrics_from_lines([line, LINE_PREFIX + '{"a": 1}']) == {"a": 1}


def test_the_adapter_default_reads_the_jobs_logs():
    from unijob.contract import Adapter

    class Logs(Adapter):  # only logs(): every other method of the contract is irrelevant here
        name = "logs-only"

        def logs(self, handle, *, follow=False):
            yield "epoch 1"
            yield f"[algo-1] {LINE_PREFIX}" + '{"accuracy": 0.91}'

    Logs.__abstractmethods__ = frozenset()
    assert Logs().job_metrics(JobHandle(target="logs-only", native_id="1", name="j")) == {"accuracy": 0.91}
