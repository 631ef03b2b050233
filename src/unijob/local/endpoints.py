"""Deploy, inspect, re-split, invoke and stop local endpoints (the router is
:mod:`unijob.local.router`, the plan :mod:`unijob.local.serving`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from unijob.contract import EndpointHandle, EndpointStatus, InvokeResult, Plan, encode_payload, validate_split
from unijob.errors import NotFound, TargetError, UsageError
from unijob.local import jobdir as jd
from unijob.local.serving import API, endpoints_dir

STATES = {"CREATING": "CREATING", "IN_SERVICE": "IN_SERVICE", "DELETING": "DELETING", "FAILED": "FAILED",
          "STOPPED": "DELETING"}


def _dir(handle: EndpointHandle) -> Path:
    return Path(handle.extra.get("endpoint_dir") or endpoints_dir(create=False) / handle.native_id)


def _state(d: Path) -> Optional[dict[str, Any]]:
    return jd.read_json(d / "state.json")


def router_alive(st: Optional[Mapping[str, Any]]) -> bool:
    """The router of this state file runs (pid and start time match)."""
    return bool(st) and jd.alive(st.get("router_pid"), st.get("router_start_time"))


def _kill_leftovers(st: Mapping[str, Any]) -> None:
    """Kill the process groups of replicas a dead router left (pid and start time checked)."""
    for v in (st.get("variants") or {}).values():
        for r in v.get("replicas", []):
            if jd.alive(r.get("pid"), r.get("start_time")):
                try:
                    os.killpg(r["pid"], signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def deploy(plan: Plan) -> EndpointHandle:
    """Start the plan's router, which starts ``min_replicas`` per variant; return once every
    variant answers ``/ping``.

    Raises:
        UsageError: an endpoint of that name already runs here.
        TargetError: a replica failed to start (its log tail is in the message) or the deploy timed
            out; nothing is left running.
    """
    body = plan.request(API).body
    name = body["name"]
    d = Path(body["endpoint_dir"])
    st = _state(d)
    if router_alive(st):
        raise UsageError(f"local endpoint {name} is already running at {st.get('url')}; "
                         f"`unijob undeploy {name}` first, or `unijob traffic {name} ...` to re-split it")
    if st:
        _kill_leftovers(st)
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(mode=0o700, parents=True)
    jd.write_json_atomic(d / "plan.json", plan.model_dump(mode="json"))
    with open(d / "router.log", "ab") as log:
        starter = subprocess.Popen([sys.executable, "-m", "unijob.local.router", "--detach", str(d)],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, close_fds=True, cwd=str(d))
    code = starter.wait(timeout=30)
    t0 = time.monotonic()
    deadline = t0 + float(body["deploy_timeout"]) + 15
    while time.monotonic() < deadline:
        st = _state(d)
        if st and st["state"] == "IN_SERVICE":
            return EndpointHandle(target="local", name=name, native_id=name,
                                  extra={"endpoint_dir": str(d), "url": st["url"]})
        if st and st["state"] in ("FAILED", "STOPPED"):
            _wait_gone(st, 15)
            raise TargetError(f"local endpoint {name} did not start: {st.get('message') or st['state']}")
        crashed = st is not None and not router_alive(st)
        never_started = st is None and (code != 0 or time.monotonic() - t0 > 15)
        if crashed or never_started:
            if st:
                _kill_leftovers(st)
            tail = "\n".join(jd.tail(d / "router.log", 15))
            raise TargetError(f"the router of local endpoint {name} exited; {d / 'router.log'}:\n{tail}")
        time.sleep(0.05)
    _stop(d, 15)
    raise TargetError(f"local endpoint {name} was not in service after {body['deploy_timeout']} s; "
                      f"its logs are in {d}")


def _wait_gone(st: Mapping[str, Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not router_alive(st):
            return True
        time.sleep(0.05)
    return False


def _stop(d: Path, timeout: float) -> None:
    """SIGTERM the router (it stops its replicas), SIGKILL after ``timeout`` s, then kill what is left."""
    st = _state(d)
    if st is None:
        return
    if router_alive(st):
        try:
            os.kill(st["router_pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
        if not _wait_gone(st, timeout):
            try:
                os.kill(st["router_pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
            _wait_gone(st, 5)
    _kill_leftovers(_state(d) or st)


def status(handle: EndpointHandle) -> EndpointStatus:
    """From the router's ``state.json``; a router that died is FAILED (its replicas are killed).

    Raises:
        NotFound: no such local endpoint.
    """
    d = _dir(handle)
    st = _state(d)
    if st is None:
        raise NotFound(f"no local endpoint {handle.name} (looked in {d})")
    state = STATES.get(st["state"], st["state"])
    message = st.get("message", "")
    if state in ("CREATING", "IN_SERVICE") and not router_alive(st):
        _kill_leftovers(st)
        state, message = "FAILED", "the router process is gone; `unijob undeploy` and deploy again"
    return EndpointStatus(state=state, traffic=dict(st.get("traffic", {})), replicas=dict(st.get("replicas", {})),
                          url=st.get("url"), message=message)


def _admin(handle: EndpointHandle, method: str, path: str, payload: Any = None, timeout: float = 10.0) -> Any:
    import httpx

    st = _state(_dir(handle))
    if not st or not router_alive(st):
        raise NotFound(f"local endpoint {handle.name} is not running")
    try:
        resp = httpx.request(method, st["url"] + path, json=payload, timeout=timeout)
    except httpx.HTTPError as e:
        raise TargetError(f"local endpoint {handle.name}: {type(e).__name__}: {e}") from None
    if resp.status_code >= 400:
        raise UsageError(f"local endpoint {handle.name}: {resp.json().get('error', resp.text)}")
    return resp.json()


def set_traffic(handle: EndpointHandle, split: Mapping[str, int]) -> None:
    """Send the new split to the router; it applies to the next request.

    Raises:
        UsageError: unknown variants or weights not summing to 100. NotFound: not running.
    """
    st = _state(_dir(handle)) or {}
    validate_split(split, list(st.get("traffic", {})) or list(split))
    _admin(handle, "PUT", "/_unijob/traffic", dict(split))


def undeploy(handle: EndpointHandle) -> None:
    """Stop the router and every replica (SIGTERM, then SIGKILL), then remove the endpoint's
    directory. Idempotent: a missing endpoint is not an error."""
    d = _dir(handle)
    _stop(d, 20)
    shutil.rmtree(d, ignore_errors=True)


_CLIENT: Any = None
_URLS: dict[Path, tuple[int, str]] = {}  # endpoint dir -> (state.json mtime_ns, router URL)


def _router_url(handle: EndpointHandle, d: Path) -> str:
    """The running router's URL. ``state.json`` is read (and the router checked alive) only when
    it changed since the last call (the router rewrites it about once a second), not per request.

    Raises:
        NotFound: the endpoint is not running.
    """
    try:
        mtime = (d / "state.json").stat().st_mtime_ns
    except OSError:
        mtime = None
    cached = _URLS.get(d)
    if cached is not None and mtime is not None and cached[0] == mtime:
        return cached[1]
    st = _state(d)
    if not st or not router_alive(st) or not st.get("url"):
        _URLS.pop(d, None)
        raise NotFound(f"local endpoint {handle.name} is not running")
    if mtime is not None:
        _URLS[d] = (mtime, st["url"])
    return st["url"]


def _client() -> Any:
    """One keep-alive client per process, with TCP_NODELAY: httpx writes a request's headers and
    body separately, and with Nagle's algorithm the body would wait for a delayed ACK (~40 ms)."""
    global _CLIENT
    if _CLIENT is None:
        import socket

        import httpx

        import atexit

        _CLIENT = httpx.Client(transport=httpx.HTTPTransport(
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]))
        atexit.register(_CLIENT.close)
    return _CLIENT


def invoke(handle: EndpointHandle, payload: Any, *, variant: Optional[str] = None,
           timeout: float = 60.0) -> InvokeResult:
    """``POST /invocations`` on the router with ``payload`` as JSON.

    Raises:
        NotFound: not running. TargetError: an error status (with the endpoint's message).
    """
    import httpx

    d = _dir(handle)
    url = _router_url(handle, d)
    headers = {"X-Unijob-Target-Variant": variant} if variant else {}
    t0 = time.perf_counter()
    try:
        resp = _client().post(url + "/invocations", content=encode_payload(payload),
                              headers={"Content-Type": "application/json", "Accept": "application/json", **headers},
                              timeout=timeout)
    except httpx.HTTPError as e:
        _URLS.pop(d, None)
        if isinstance(e, httpx.ConnectError):
            _router_url(handle, d)  # NotFound when the router is gone
        raise TargetError(f"local endpoint {handle.name}: {type(e).__name__}: {e}") from None
    latency = time.perf_counter() - t0
    try:
        body = resp.json()
    except ValueError:
        body = resp.text
    if resp.status_code >= 400:
        msg = body.get("error") if isinstance(body, dict) else body
        raise TargetError(f"local endpoint {handle.name} answered {resp.status_code}: {msg}")
    return InvokeResult(body=body, variant=resp.headers.get("x-unijob-variant"), latency_seconds=latency)
