"""Training-job logs from CloudWatch Logs.

SageMaker writes each host's output to log group ``/aws/sagemaker/TrainingJobs``, stream
``<TrainingJobName>/algo-<N>-<epoch seconds>`` ("Log Amazon SageMaker events with Amazon
CloudWatch", SageMaker Developer Guide, read 2026-11-21). Lines are yielded in timestamp order
across hosts, each prefixed ``[algo-N]``; with ``follow`` the streams are polled every
``poll_interval`` seconds until the job is final, then drained once more.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable, Iterator

from unijob.contract import JobHandle

from .client import client, error_code, wrap

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
#: Batch Transform jobs log to this group, one stream per instance (``<job>/<instance id>``).
TRANSFORM_LOG_GROUP = "/aws/sagemaker/TransformJobs"
_HOST_RE = re.compile(r"^(?P<host>algo-\d+)(?:-\d+)?$")


def host_of(stream: str) -> str:
    """``job/algo-1-1700000000`` -> ``algo-1`` (the stream's tail when it has another shape)."""
    tail = stream.rsplit("/", 1)[-1]
    m = _HOST_RE.match(tail)
    return m.group("host") if m else tail


class _Reader:
    def __init__(self, logs_client: Any, job: str, group: str = LOG_GROUP) -> None:
        self.c = logs_client
        self.job = job
        self.group = group
        self.tokens: dict[str, str] = {}

    def streams(self) -> list[str]:
        out: list[str] = []
        kwargs: dict[str, Any] = {"logGroupName": self.group, "logStreamNamePrefix": self.job + "/"}
        while True:
            try:
                resp = self.c.describe_log_streams(**kwargs)
            except Exception as e:
                if error_code(e) == "ResourceNotFoundException":
                    return []
                raise wrap(e, f"listing log streams of {self.job}") from None
            out += [s["logStreamName"] for s in resp.get("logStreams", [])]
            if not resp.get("nextToken"):
                return sorted(out)
            kwargs["nextToken"] = resp["nextToken"]

    def poll(self) -> list[tuple[int, str, str]]:
        """New (timestamp ms, host, message) events since the last poll, every stream."""
        events: list[tuple[int, str, str]] = []
        for stream in self.streams():
            while True:
                kwargs: dict[str, Any] = {"logGroupName": self.group, "logStreamName": stream, "startFromHead": True}
                if stream in self.tokens:
                    kwargs["nextToken"] = self.tokens[stream]
                try:
                    resp = self.c.get_log_events(**kwargs)
                except Exception as e:
                    raise wrap(e, f"reading log stream {stream}") from None
                batch = resp.get("events", [])
                events += [(int(ev.get("timestamp", 0)), host_of(stream), ev.get("message", "")) for ev in batch]
                token = resp.get("nextForwardToken")
                same = token is None or token == self.tokens.get(stream)
                if token:
                    self.tokens[stream] = token
                if same or not batch:
                    break
        events.sort(key=lambda e: (e[0], e[1]))
        return events


def read(handle: JobHandle, job: str, *, follow: bool, is_final: Callable[[], bool],
         sleep: Callable[[float], None] = time.sleep, group: str = LOG_GROUP) -> Iterator[str]:
    """Lines ``[algo-N] message`` of ``job``; see the module docstring.

    Raises:
        TargetError: CloudWatch Logs refused.
    """
    c = client("logs", handle.extra["region"], retry_mode=handle.extra.get("retry_mode", "standard"),
               max_attempts=int(handle.extra.get("max_attempts", 8)))
    reader = _Reader(c, job, group)
    interval = float(handle.extra.get("poll_interval", 10.0))
    while True:
        final = is_final() if follow else True
        for _, host, msg in reader.poll():
            yield f"[{host}] {msg.rstrip()}"
        if final:
            return
        sleep(interval)


#: The line the SageMaker training toolkit (inside every SageMaker framework container) logs when
#: the job failed (sagemaker_training/trainer.py, 5.1.4); what precedes it is the failing step's output.
FAILURE_MARK = "Reporting training FAILURE"


def failure_tail(handle: JobHandle, job: str, lines: int = 20) -> tuple[str, list[str]]:
    """(host, last lines) of the host whose output shows the failure: the first host whose stream
    carries :data:`FAILURE_MARK` (the lines before it), else the host that logged last.

    ``FailureReason`` often lacks the cause (the toolkit's ``ExecuteUserScriptError`` carries an
    empty ``ErrorMessage`` in script mode), so :func:`jobs.status` adds these lines, as the local
    target shows the failing rank's last lines.

    Returns:
        ``("", [])`` when the job has no log streams.

    Raises:
        TargetError: CloudWatch Logs refused.
    """
    c = client("logs", handle.extra["region"], retry_mode=handle.extra.get("retry_mode", "standard"),
               max_attempts=int(handle.extra.get("max_attempts", 8)))
    events = _Reader(c, job).poll()
    by_host: dict[str, list[tuple[int, str]]] = {}
    for ts, host, msg in events:
        by_host.setdefault(host, []).append((ts, msg.rstrip()))
    if not by_host:
        return "", []
    marked = []
    for host, evs in by_host.items():
        idx = next((i for i, (_, m) in enumerate(evs) if FAILURE_MARK in m), None)
        if idx is not None:
            marked.append((evs[idx][0], host, [m for _, m in evs[:idx]]))
    if marked:
        _, host, before = min(marked)
        return host, before[-lines:]
    host = max(by_host, key=lambda h: (by_host[h][-1][0], h))
    return host, [m for _, m in by_host[host][-lines:]]
