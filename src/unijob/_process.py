"""Process helpers shared by the job records, the local supervisor and the runtime (stdlib only)."""

from __future__ import annotations

import os


def pid_exists(pid: int) -> bool:
    """Whether a process with this id exists on this machine (signal 0; EPERM still means it exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
