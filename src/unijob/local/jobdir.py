"""The job directory ``<home>/local/jobs/<native_id>/`` and its files (standard library only).

=====================  =====================================================================
``plan.json``          the plan as submitted (no secret values)
``supervisor.pid``     the supervisor's pid, written once it runs (marks "submitted")
``supervisor.log``     the supervisor's own output
``state.json``         the job's state, rewritten atomically by the supervisor
``rank-<i>.log``       stdout + stderr of rank ``i``, appended across restarts
``submit.lock``        serializes concurrent submits of the same plan
=====================  =====================================================================
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Optional

from unijob._process import pid_exists

FINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old or the new file, never a torn one
    (temp file in the same directory, fsync, ``os.replace``; the temp file is removed on error).

    Raises:
        OSError: the directory is not writable, the disk is full...
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """:func:`write_text_atomic` of ``data`` as JSON (indented, keys sorted)."""
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True))


def read_json(path: Path) -> Optional[dict[str, Any]]:
    """The JSON object in ``path``, or ``None`` when it does not exist (yet)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def read_pid(job_dir: Path) -> Optional[int]:
    try:
        return int((job_dir / "supervisor.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def proc_start_time(pid: int) -> Optional[int]:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), or
    ``None`` when it does not exist or is a zombie. Recorded with every pid so that a reused pid is
    never mistaken for (and never signalled as) one of ours."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None if os.path.isdir("/proc") else (0 if _exists(pid) else None)
    fields = stat[stat.rfind(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


_exists = pid_exists


def alive(pid: Optional[int], start_time: Optional[int] = None) -> bool:
    """True when ``pid`` runs (not a zombie) and, if given, started at ``start_time``."""
    if not pid:
        return False
    st = proc_start_time(pid)
    return st is not None and (start_time is None or st == start_time)


def supervisor_alive(job_dir: Path) -> bool:
    """True when the job's supervisor process runs (checked by pid and its recorded start time)."""
    pid = read_pid(job_dir)
    state = read_json(job_dir / "state.json") or {}
    return alive(pid, state.get("supervisor_start_time") if state.get("supervisor_pid") == pid else None)


def tail(path: Path, lines: int = 20, max_bytes: int = 16384) -> list[str]:
    """The last ``lines`` lines of a text file (reads at most ``max_bytes`` from its end)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return []
    return data.decode(errors="replace").splitlines()[-lines:]


def now() -> float:
    return time.time()
