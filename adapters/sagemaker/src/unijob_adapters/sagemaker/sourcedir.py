"""The ``sourcedir.tar.gz`` of a SageMaker script job: the source directory, its
``requirements.txt`` and unijob's runtime wheel.

The SageMaker training toolkit (``sagemaker-training``, the code inside AWS's training containers)
extracts ``sagemaker_submit_directory`` into ``/opt/ml/code`` and, when it holds a
``requirements.txt``, runs ``python -m pip install -r requirements.txt`` there (cwd
``/opt/ml/code``) before the script (``sagemaker_training/modules.py:install_requirements``,
5.1.4). So the runtime reaches the job without any package index: the wheel
(:func:`unijob.bundle.runtime_wheel`) is packed at the bundle's root and ``requirements.txt`` ends
with its relative path. A wheel file named on a line is installed from that file, never looked up in
an index, and it declares no dependencies, so pip resolves nothing for it (what
``--no-deps --no-index`` guarantees elsewhere).

``requirements.txt`` is the spec's ``requirements`` file (or a ``requirements.txt`` already at the
source root, which the toolkit would install anyway) followed by the wheel line. Packing is
:func:`unijob.bundle.pack_dir` (deterministic: equal inputs, equal bytes, equal S3 key).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from unijob import bundle

#: The targets whose runtime envs the wheel carries.
WHEEL_TARGETS = ("sagemaker",)


def requirements_text(source_dir: Path, requirements: Optional[Path], wheel_filename: str) -> bytes:
    """The bundle's ``requirements.txt``: the user's lines, then ``./<wheel>``."""
    user = b""
    if requirements is not None:
        user = Path(requirements).read_bytes()
    elif (Path(source_dir) / "requirements.txt").is_file():
        user = (Path(source_dir) / "requirements.txt").read_bytes()
    if user and not user.endswith(b"\n"):
        user += b"\n"
    return user + (b"# unijob's runtime, shipped in this bundle (installed from the file, no index)\n"
                   + f"./{wheel_filename}\n".encode())


def pack(source_dir: Path, requirements: Optional[Path] = None,
         wheel: Optional[bundle.RuntimeWheel] = None, exclude: Sequence[str] = ()) -> bytes:
    """The ``sourcedir.tar.gz`` bytes (see the module docstring).

    Args:
        source_dir: the script's directory.
        requirements: the spec's requirements file (anywhere under the spec's directory), or None.
        wheel: the runtime wheel (default: :func:`unijob.bundle.runtime_wheel` for SageMaker).
        exclude: paths under ``source_dir`` left out (:func:`unijob.bundle.local_outputs`, the
            plan's ``Upload.exclude``).

    Raises:
        FileNotFoundError: ``source_dir`` does not exist.
    """
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise FileNotFoundError(str(source_dir))
    wheel = wheel or bundle.runtime_wheel(WHEEL_TARGETS)
    extra = {wheel.filename: wheel.data,
             "requirements.txt": requirements_text(source_dir, requirements, wheel.filename)}
    return bundle.pack_dir(source_dir, extra, exclude=exclude)


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return bundle.sha256(data)
