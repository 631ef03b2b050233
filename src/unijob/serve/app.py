"""The ASGI application: one handler behind the SageMaker, Vertex and Kubernetes routes at once.

Routes (all on one port):

==========================  ======  =========================================================
path                        method  answers
==========================  ======  =========================================================
``/ping``                   GET     SageMaker health check: 200 once ``load`` has finished,
                                    503 while loading, 500 if loading failed
``/invocations``            POST    SageMaker inference: the envelope or a bare JSON array
``/predict``                POST    the envelope (Kubernetes, and the local target)
``AIP_PREDICT_ROUTE``       POST    Vertex inference: the envelope
``AIP_HEALTH_ROUTE``        GET     Vertex health check: as ``/ping``
``/ready``, ``/live``       GET     Kubernetes readiness (as ``/ping``) and liveness (200 while
                                    the event loop answers)
==========================  ======  =========================================================

The envelope is Vertex's (and KServe v1's): ``{"instances": [...], "parameters": {...}}`` in,
``{"predictions": [...]}`` out, one prediction per instance (the ``labels`` object of Vertex's
``PredictRequest``, which Vertex forwards with the body, is accepted and ignored).
``/invocations`` also takes a bare JSON array of instances and answers a bare array. A body sent
as ``application/jsonlines`` (SageMaker batch transform's ``SplitType: Line``) holds one JSON
instance per line and gets one JSON prediction per line back. Errors are JSON ``{"error": message}``:
400 for a body that is not JSON or not the envelope (and for :class:`~unijob.serve.BadRequest`
raised by the handler), 413 over ``max_payload`` bytes, 415 for a non-JSON content type, 503
before the model is loaded, and 500 for an exception in ``predict`` (logged with its traceback
under the ``unijob.serve`` logger; the server keeps serving).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import json
import logging
import time
import traceback
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Callable, Optional

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from unijob.serve.handler import BadRequest, Handler

log = logging.getLogger("unijob.serve")

JSON_TYPES = ("application/json", "text/json")
JSONLINES_TYPES = ("application/jsonlines", "application/x-jsonlines", "application/jsonl")
#: keys a Vertex ``PredictRequest`` body may carry besides the envelope; accepted and ignored
#: (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.endpoints/predict).
IGNORED_KEYS = ("labels",)


class _State:
    def __init__(self) -> None:
        self.ready = False
        self.error: Optional[str] = None
        self.started = time.time()


class InlinePolicy:
    """Whether a synchronous ``predict`` may run on the event loop instead of a worker thread.

    Handing a call to a worker thread and back costs ~0.05 ms of CPU and several thread wake-ups
    (``futex``) per request, more than a small model's whole ``predict``
    (``benchmarks/bench_serving.py``). A call runs inline when the slowest of the last
    :data:`WINDOW` calls, per instance, times this call's instances is under :data:`BUDGET`
    seconds, so the loop (health checks, other requests) waits at most about that long;
    anything slower, or not yet measured (the first :data:`WARMUP` calls), runs in a thread.
    A call that turns out slow raises the estimate, so the next ones go to threads again.
    """

    WINDOW = 64
    WARMUP = 8
    BUDGET = 0.002  # seconds

    def __init__(self) -> None:
        self._per_instance: collections.deque = collections.deque(maxlen=self.WINDOW)

    def allows(self, instances: int) -> bool:
        d = self._per_instance
        return len(d) >= self.WARMUP and max(d) * max(instances, 1) < self.BUDGET

    def record(self, instances: int, seconds: float) -> None:
        self._per_instance.append(seconds / max(instances, 1))


def _timed(fn: Callable[..., Any], args: tuple) -> tuple[Any, float]:
    """``(fn(*args), seconds it took)``: the call alone, not the wait for a worker thread."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def _health_answer(state: _State) -> tuple[int, str, bytes]:
    if state.ready:
        return 200, "application/json", b'{"status":"ok"}'
    if state.error:
        return 500, "application/json", _dump({"error": f"model failed to load: {state.error}"})
    return 503, "application/json", b'{"error":"loading the model"}'


async def _send(send: Any, status: int, media_type: str, data: bytes) -> None:
    """One whole ASGI answer: what Starlette's ``Response`` sends, without building one."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", media_type.encode()), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


async def _send_error(send: Any, status: int, message: str) -> None:
    await _send(send, status, "application/json", _dump({"error": message}))


def _answer(result: Any, instances: int, lines: bool, enveloped: bool) -> tuple[int, str, bytes]:
    """``(status, media type, body)`` for what ``predict`` returned for ``instances`` instances:
    the predictions, or a 500 saying why they cannot be sent."""
    if hasattr(result, "tolist"):
        result = result.tolist()
    if isinstance(result, tuple):
        result = list(result)
    if not isinstance(result, list):
        log.error("predict returned %s, not a list", type(result).__name__)
        return 500, "application/json", _dump({"error": f"the handler returned {type(result).__name__}; predict must "
                                                        "return one prediction per instance (a list)"})
    if len(result) != instances:
        log.error("predict returned %d predictions for %d instances", len(result), instances)
        return 500, "application/json", _dump({"error": f"the handler returned {len(result)} predictions for "
                                                        f"{instances} instances"})
    try:
        if lines:
            return 200, "application/jsonlines", b"".join(_dump(p) + b"\n" for p in result)
        return 200, "application/json", _dump({"predictions": result} if enveloped else result)
    except (TypeError, ValueError) as e:
        log.error("predictions are not JSON: %s", e)
        # json's allow_nan=False says "Out of range float values are not JSON compliant".
        msg = "NaN or infinity (JSON has no such numbers)" if "Out of range float" in str(e) else str(e)
        return 500, "application/json", _dump({"error": f"the handler's predictions are not JSON-serializable: {msg}"})


def _to_json_value(obj: Any) -> Any:
    """Default for ``json.dumps``: NumPy scalars and arrays, sets, tuples."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, default=_to_json_value, allow_nan=False, separators=(",", ":")).encode()


def parse_payload(body: bytes, *, allow_bare: bool) -> tuple[list[Any], dict[str, Any], bool]:
    """``(instances, parameters, enveloped)`` from a request body.

    Raises:
        BadRequest: not UTF-8 JSON; not an object with an ``instances`` array (or, with
            ``allow_bare``, a bare array); ``parameters`` present but not an object.
    """
    if not body.strip():
        raise BadRequest('empty body; expected JSON {"instances": [...]}')
    try:
        payload = json.loads(body)
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise BadRequest(f"the body is not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if isinstance(payload, list):
        if allow_bare:
            return payload, {}, False
        raise BadRequest('expected a JSON object {"instances": [...]}, got an array')
    if not isinstance(payload, dict):
        raise BadRequest(f'expected a JSON object {{"instances": [...]}}, got {type(payload).__name__}')
    if "instances" not in payload:
        import difflib

        keys = ", ".join(sorted(payload)) or "none"
        close = difflib.get_close_matches("instances", [str(k) for k in payload], n=1, cutoff=0.5)
        hint = f'; did you mean "instances" instead of "{close[0]}"?' if close else ""
        raise BadRequest(f'expected a JSON object {{"instances": [...]}}; it has no "instances" (keys: {keys}){hint}')
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise BadRequest(f'"instances" must be a JSON array, got {type(instances).__name__}')
    params = payload.get("parameters")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise BadRequest(f'"parameters" must be a JSON object, got {type(params).__name__}')
    unknown = sorted(set(payload) - {"instances", "parameters", *IGNORED_KEYS})
    if unknown:
        raise BadRequest(f'unexpected key(s) {", ".join(unknown)}; the envelope has "instances" and "parameters"')
    return instances, params, True


def parse_jsonlines(body: bytes) -> list[Any]:
    """The instances of a JSON Lines body: one JSON value per non-blank line.

    Raises:
        BadRequest: not UTF-8, no line, or a line that is not JSON (named by its number).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None
    instances = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                instances.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise BadRequest(f"line {n} is not JSON: {e.msg} at column {e.colno}") from None
    if not instances:
        raise BadRequest("empty body; expected one JSON instance per line")
    return instances


class _App(Starlette):
    """Starlette, except that a POST to a predict route goes straight to its endpoint: the
    middleware stack and the route table cost ~0.03 ms a request, a third of a small model's
    serving overhead (``benchmarks/bench_serving.py``). Every other request, and any method
    but POST, takes Starlette's path (405s, 404s, error pages, lifespan)."""

    fast_posts: dict[str, Callable[..., Any]] = {}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.fast_posts.get(scope["path"])
            if endpoint is not None:
                return await endpoint(scope, receive, send)
        await super().__call__(scope, receive, send)


class _AsgiEndpoint:
    """An ASGI function as a Starlette route endpoint (Starlette calls plain functions with a
    ``Request``; any other callable is an ASGI app)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        await self.fn(scope, receive, send)


def create_app(handler: Handler, *, model_dir: Optional[Path] = None, health_routes: tuple[str, ...] = (),
               predict_routes: tuple[str, ...] = (), max_payload: int = 6 * 1024 * 1024,
               on_load_failed: Optional[Callable[[BaseException], None]] = None) -> Starlette:
    """The ASGI app serving ``handler`` (routes and answers in the module docstring).

    ``handler.load(model_dir)`` runs in a worker thread when the app starts (ASGI lifespan), so
    liveness answers while a large model loads. If it raises, the traceback is logged, the health
    routes answer 500 with the error, and ``on_load_failed`` (the runner uses it to exit non-zero)
    is called.
    """
    state = _State()
    inline = InlinePolicy()

    async def _load() -> None:
        try:
            if handler.load is not None:
                t0 = time.perf_counter()
                if inspect.iscoroutinefunction(handler.load):
                    await handler.load(model_dir)
                else:
                    await asyncio.to_thread(handler.load, model_dir)
                log.info("loaded %s from %s in %.2f s", handler.ref, model_dir, time.perf_counter() - t0)
            state.ready = True
        except BaseException as e:  # noqa: BLE001 - reported, then the server exits
            state.error = f"{type(e).__name__}: {e}"
            log.error("load(%s) failed:\n%s", model_dir, traceback.format_exc())
            if on_load_failed is not None:
                on_load_failed(e)

    @asynccontextmanager
    async def lifespan(app: Starlette):  # noqa: ANN202
        task = asyncio.create_task(_load())
        yield
        task.cancel()

    async def health(request: Request) -> Response:
        status, media, data = _health_answer(state)
        return Response(data, status_code=status, media_type=media)

    async def live(request: Request) -> Response:
        return JSONResponse({"status": "alive", "ready": state.ready})

    async def predict(scope: dict, receive: Any, send: Any) -> None:
        """The predict routes as a plain ASGI app: Starlette's Request and Response objects cost
        ~10 us a request, a fifth of a small model's serving overhead (``bench_serving.py``)."""
        if not state.ready:
            return await _send(send, *_health_answer(state))
        ctype, length = "application/json", None
        for k, v in scope["headers"]:
            if k == b"content-type":
                ctype = v.decode("latin-1").split(";")[0].strip().lower()
            elif k == b"content-length":
                length = v
        lines = ctype in JSONLINES_TYPES
        if ctype and ctype not in JSON_TYPES and not lines:
            return await _send_error(send, 415, f"content type {ctype!r} is not supported; send application/json")
        if length is not None and length.isdigit() and int(length) > max_payload:
            return await _send_error(send, 413, f"payload of {int(length)} bytes is over the limit of {max_payload} bytes")
        # Read in chunks so that a chunked body without Content-Length is cut off at the limit
        # instead of being buffered whole first.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk, more = message.get("body", b""), message.get("more_body", False)
            size += len(chunk)
            if size > max_payload:
                return await _send_error(send, 413, f"payload of more than {max_payload} bytes is over the limit of "
                                                    f"{max_payload} bytes")
            chunks.append(chunk)
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        path = scope["path"]
        try:
            if lines:
                instances, params, enveloped = parse_jsonlines(body), {}, False
            else:
                instances, params, enveloped = parse_payload(body, allow_bare=path == "/invocations")
            args = (instances, params) if handler.wants_parameters else (instances,)
            if handler.is_async:
                result = await handler.predict(*args)
            elif inline.allows(len(instances)):
                result, seconds = _timed(handler.predict, args)
                inline.record(len(instances), seconds)
            else:
                result, seconds = await run_in_threadpool(_timed, handler.predict, args)
                inline.record(len(instances), seconds)
            if inspect.isawaitable(result):  # a sync callable that returned a coroutine
                result = await result
        except BadRequest as e:
            return await _send_error(send, 400, str(e))
        except Exception as e:  # noqa: BLE001 - the handler's bug: 500, logged, keep serving
            log.error("predict failed on %s:\n%s", path, traceback.format_exc())
            return await _send_error(send, 500, f"the handler raised {type(e).__name__}: {e}")
        status, media, data = _answer(result, len(instances), lines, enveloped)
        await _send(send, status, media, data)

    predict_app = _AsgiEndpoint(predict)  # a class instance: Starlette routes to it as an ASGI app
    routes = [Route("/ping", health, methods=["GET"]), Route("/ready", health, methods=["GET"]),
              Route("/live", live, methods=["GET"]), Route("/invocations", predict_app, methods=["POST"]),
              Route("/predict", predict_app, methods=["POST"])]
    fixed = {r.path for r in routes}
    routes += [Route(p, health, methods=["GET"]) for p in health_routes if p not in fixed]
    routes += [Route(p, predict_app, methods=["POST"]) for p in predict_routes if p not in fixed]
    app = _App(routes=routes, lifespan=lifespan)
    app.state.unijob = state
    app.fast_posts = {r.path: predict for r in routes
                      if r.endpoint is predict_app and "{" not in r.path}
    return app


__all__ = ["create_app", "parse_jsonlines", "parse_payload", "BadRequest"]
