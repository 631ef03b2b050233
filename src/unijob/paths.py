"""Where unijob keeps its per-user state on this machine.

``$UNIJOB_HOME`` when set, else ``platformdirs.user_data_dir("unijob")`` (on Linux
``~/.local/share/unijob``, following the XDG Base Directory spec). Directories are created on
demand with mode 0o700: job directories hold logs and plans that are the user's alone.
"""

from __future__ import annotations

import os
from pathlib import Path

_MODE = 0o700


def _ensure(path: Path, create: bool) -> Path:
    if create:
        path.mkdir(mode=_MODE, parents=True, exist_ok=True)
    return path


def home(*, create: bool = True) -> Path:
    """unijob's home directory: ``$UNIJOB_HOME`` or the per-user data dir.

    Args:
        create: make it (mode 0o700) when missing; ``False`` only computes the path, which is what
            pure functions such as ``plan()`` use.
    """
    env = os.environ.get("UNIJOB_HOME")
    if env:
        path = Path(env).expanduser().absolute()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("unijob", appauthor=False))
    return _ensure(path, create)


def local_jobs_dir(*, create: bool = True) -> Path:
    """``<home>/local/jobs``: one directory per local job, named by its native id."""
    return _ensure(home(create=create) / "local" / "jobs", create)
