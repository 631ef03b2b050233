"""``model_dir``: a model handed to a job as an input channel, as a directory of its files on every
platform.

A model a job wrote travels as its platform stores it: a directory locally and on Kubernetes,
Vertex and Databricks, but ``model.tar.gz`` on SageMaker (the training toolkit tars
``/opt/ml/model`` into ``<output>/<job>/output/model.tar.gz``, and a channel holding that S3 object
receives the file itself: https://docs.aws.amazon.com/sagemaker/latest/dg/model-train-storage.html,
read 2026-11-29). ``model_dir`` unpacks such a tarball once, next to nothing the job reads, so the
same ``model_dir("model") / "model.pkl"`` works everywhere. Standard library only.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from pathlib import Path
from typing import Optional

#: the model artifact's name on SageMaker
MODEL_TARBALL = "model.tar.gz"


def model_dir(channel: str = "model", *, extract_to: Optional[os.PathLike] = None) -> Path:
    """The directory holding the files of the model in input channel ``channel``.

    A channel that is a directory of model files is returned as is; a ``model.tar.gz`` (the channel
    itself, or the only file in its directory) is unpacked into ``extract_to`` (default: a fresh
    temporary directory) with tarfile's ``data`` filter where Python has it (no absolute paths, no
    ``..``, no devices), and that directory is returned.

    Raises:
        KeyError: no channel of that name (the message lists the channels there are).
        FileNotFoundError: the channel's path does not exist here (a URI the platform did not mount).
    """
    from unijob.runtime.environment import context

    channels = context(os.environ).channels
    if channel not in channels:
        raise KeyError(f"no input channel '{channel}'; this job's channels: {sorted(channels) or 'none'}")
    path = Path(channels[channel])
    if not path.exists():
        raise FileNotFoundError(f"channel '{channel}' is {channels[channel]}, which is not a path on this machine")
    tarball = path if path.is_file() and path.name.endswith((".tar.gz", ".tgz")) else None
    if tarball is None and path.is_dir():
        entries = [p for p in path.iterdir() if not p.name.startswith(".")]
        if len(entries) == 1 and entries[0].name == MODEL_TARBALL and entries[0].is_file():
            tarball = entries[0]
    if tarball is None:
        return path
    dest = Path(extract_to) if extract_to is not None else Path(tempfile.mkdtemp(prefix=f"unijob-{channel}-"))
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "r:gz") as tf:
        if hasattr(tarfile, "data_filter"):
            tf.extractall(dest, filter="data")
        else:  # Python < 3.11.4 / 3.10.12: refuse what the data filter would
            for m in tf.getmembers():
                if m.name.startswith("/") or ".." in Path(m.name).parts or not (m.isfile() or m.isdir()):
                    raise ValueError(f"{tarball}: refusing member {m.name!r}")
            tf.extractall(dest)
    return dest
