"""What :mod:`unijob.runtime` reads inside a Databricks run. Standard library only.

A Databricks cluster sets ``DATABRICKS_RUNTIME_VERSION`` (e.g. ``15.4``) on the driver and the
workers. unijob's launcher runs the user's script directly (one process) or through
``TorchDistributor``, whose torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``GROUP_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` for every process
(https://pytorch.org/docs/stable/elastic/run.html#environment-variables). The plan puts the unijob
contract (``UNIJOB_*``) in ``spark_env_vars``, so it is set on every node.

Storage: DBFS is mounted at ``/dbfs`` on classic clusters (``dbfs:/a/b`` -> ``/dbfs/a/b``) and Unity
Catalog volumes at ``/Volumes/<catalog>/<schema>/<volume>/...`` (``dbfs:/Volumes/...`` names the same
files), so a Checkpointer given either URI writes through ordinary file paths
(https://docs.databricks.com/aws/en/files/ , "Work with files on Databricks").
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from unijob.runtime_env import RuntimeEnv


def local_path(uri: str) -> Optional[str]:
    """The local file path of a Databricks storage URI on a cluster, or ``None`` for other URIs.

    ``dbfs:/x/y`` -> ``/dbfs/x/y``; ``dbfs:/Volumes/c/s/v/p`` and ``/Volumes/c/s/v/p`` ->
    ``/Volumes/c/s/v/p``; ``/dbfs/...`` stays.
    """
    if uri.startswith("dbfs:"):
        rest = "/" + uri[len("dbfs:"):].lstrip("/")
        return rest if rest.startswith("/Volumes/") else "/dbfs" + rest
    if uri.startswith("/Volumes/") or uri.startswith("/dbfs/"):
        return uri
    return None


def _int(environ: Mapping[str, str], *names: str) -> Optional[int]:
    for n in names:
        v = environ.get(n)
        if v not in (None, ""):
            try:
                return int(v)
            except ValueError:
                continue
    return None


class DatabricksRuntimeEnv(RuntimeEnv):
    """Databricks: ``DATABRICKS_RUNTIME_VERSION`` + TorchDistributor's torchrun env + ``UNIJOB_*``."""

    name = "databricks"

    def detect(self, environ: Mapping[str, str]) -> bool:
        return bool(environ.get("DATABRICKS_RUNTIME_VERSION"))

    def read(self, environ: Mapping[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, names in (("rank", ("RANK",)), ("world_size", ("WORLD_SIZE",)), ("local_rank", ("LOCAL_RANK",)),
                           ("local_world_size", ("LOCAL_WORLD_SIZE",)), ("node_rank", ("GROUP_RANK", "NODE_RANK")),
                           ("master_port", ("MASTER_PORT",))):
            v = _int(environ, *names)
            if v is not None:
                out[key] = v
        if environ.get("MASTER_ADDR"):
            out["master_addr"] = environ["MASTER_ADDR"]
        if "world_size" in out and out.get("local_world_size"):
            out["nodes"] = max(1, out["world_size"] // out["local_world_size"])
        uri = environ.get("UNIJOB_CHECKPOINT_URI")
        if uri:
            out["checkpoint_uri"] = uri
            local = environ.get("UNIJOB_CHECKPOINT_DIR") or local_path(uri)
            if local:
                out["checkpoint_dir"] = local
        output = environ.get("UNIJOB_OUTPUT_URI")
        if output and local_path(output):
            out["output_dir"] = local_path(output)
        if environ.get("UNIJOB_CHANNELS"):
            try:
                chans = json.loads(environ["UNIJOB_CHANNELS"])
                out["channels"] = {k: (local_path(v) or v) for k, v in chans.items()}
            except (ValueError, AttributeError):
                pass
        if environ.get("UNIJOB_HYPERPARAMETERS"):
            try:
                out["hyperparameters"] = json.loads(environ["UNIJOB_HYPERPARAMETERS"])
            except ValueError:
                pass
        job = environ.get("UNIJOB_JOB_NAME") or environ.get("DATABRICKS_JOB_RUN_ID")
        if job:
            out["job_id"] = job
        return out
