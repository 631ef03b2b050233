"""The Ray side: ``JobSubmissionClient`` made at an address, its errors turned into unijob's, the
cluster's nodes read through the dashboard's state API, and ``tail_job_logs`` as plain lines.

``ray`` is imported inside functions only (``plan`` and ``--help`` never import it).
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Optional

from unijob.errors import NotReady

from .options import DEFAULT_ADDRESS

INSTALL = "pip install 'unijob[ray]'"


def resolve_address(address: Optional[str]) -> str:
    """``targets.ray.address``, else ``RAY_ADDRESS`` when it is an ``http(s)://`` address (the
    Jobs API's form; ``ray job submit --address``), else :data:`DEFAULT_ADDRESS`."""
    if address:
        return address
    env = os.environ.get("RAY_ADDRESS", "")
    return env if env.startswith(("http://", "https://")) else DEFAULT_ADDRESS


def job_client(address: str) -> Any:
    """A ``ray.job_submission.JobSubmissionClient`` at ``address``.

    Raises:
        NotReady: ray is not installed (with the install line), or nothing answers at ``address``
            (the address is named; exit 3).
    """
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError:
        raise NotReady("the ray target needs ray[default]", hint=INSTALL) from None
    try:
        return JobSubmissionClient(address)
    except ConnectionError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise NotReady(f"no Ray cluster answers at {address} (targets.ray.address): {first}",
                       hint="start one (ray start --head) or set targets.ray.address to its dashboard, "
                            "http://<head>:8265") from None
    except Exception as e:  # noqa: BLE001 - e.g. a malformed address
        raise NotReady(f"cannot reach the Ray Jobs API at {address}: {e.__class__.__name__}: {e}") from None


def alive_nodes(address: str) -> list[dict[str, Any]]:
    """The cluster's alive nodes: ``{"node_id", "ip", "resources": {name: total}}`` each, from the
    dashboard's state API (``ray.util.state.list_nodes``; docs.ray.io "Ray State API")."""
    from ray.util.state import list_nodes

    out = []
    for n in list_nodes(address=address, detail=True, raise_on_missing_output=False):
        d = n if isinstance(n, dict) else n.__dict__
        if d.get("state") != "ALIVE":
            continue
        out.append({"node_id": d.get("node_id"), "ip": d.get("node_ip"),
                    "resources": dict(d.get("resources_total") or {})})
    return out


def fits(bundle: dict[str, float], resources: dict[str, float]) -> bool:
    """True when one node with ``resources`` (totals) can ever hold ``bundle``."""
    return all(resources.get(k, 0.0) + 1e-9 >= v for k, v in bundle.items() if v > 0)


def tail_lines(client: Any, submission_id: str) -> Iterator[str]:
    """``client.tail_job_logs`` (an async iterator of text chunks) as a plain iterator of lines;
    ends when Ray closes the stream (the job is final)."""
    import asyncio

    loop = asyncio.new_event_loop()
    agen = client.tail_job_logs(submission_id).__aiter__()
    pending = ""
    try:
        while True:
            try:
                chunk = loop.run_until_complete(agen.__anext__())
            except StopAsyncIteration:
                break
            pending += chunk
            *lines, pending = pending.split("\n")
            yield from lines
        if pending:
            yield pending
    finally:
        try:
            loop.run_until_complete(agen.aclose())
        except Exception:  # noqa: BLE001
            pass
        loop.close()
