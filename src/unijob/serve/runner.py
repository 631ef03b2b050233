"""Run a handler under uvicorn: what ``python -m unijob.serve`` and ``unijob serve`` call."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from unijob.serve.config import ServeConfig

log = logging.getLogger("unijob.serve")


class ModelLocationError(ValueError):
    """The model location cannot be turned into a local directory."""


def local_model(model: Optional[str]) -> Optional[Path]:
    """:func:`unijob.serve.model.materialize`, its errors as :class:`ModelLocationError`."""
    from unijob.serve.model import materialize

    try:
        return materialize(model)
    except (FileNotFoundError, ValueError, ImportError) as e:
        raise ModelLocationError(str(e)) from None


def build_app(config: ServeConfig, *, base_dir: Optional[Path] = None, on_load_failed: Any = None) -> Any:
    """Import the handler, fetch the model and return the ASGI app (not started).

    Raises:
        HandlerError: the handler reference is wrong. ModelLocationError: the model location
            does not exist, is a bad archive, or needs an fsspec filesystem that is not installed
            (see :func:`unijob.serve.model.materialize`). Exceptions raised while importing the
            user's module propagate with their traceback.
    """
    from unijob.serve.app import create_app
    from unijob.serve.handler import load_handler
    handler = load_handler(config.handler, base_dir)
    model_dir = local_model(config.model)
    return create_app(handler, model_dir=model_dir, health_routes=tuple(config.health_routes),
                      predict_routes=tuple(config.predict_routes), max_payload=config.max_payload,
                      on_load_failed=on_load_failed)


def app_from_env() -> Any:
    """App factory for uvicorn's multi-worker mode: the settings come from the environment."""
    return build_app(ServeConfig.from_env(), base_dir=Path.cwd())


def run(config: ServeConfig, *, fd: Optional[int] = None, log_level: str = "info",
        base_dir: Optional[Path] = None) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit code (1 when ``load`` failed).

    ``fd``: an already-bound listening socket to serve on instead of host:port (the local
    target's router hands each replica its socket, so no port can be taken in between).

    Raises:
        HandlerError, ModelLocationError: as :func:`build_app`.
    """
    import uvicorn

    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config.workers > 1:
        # Check the handler reference and the model location once here: a worker that cannot start
        # would otherwise be restarted forever by uvicorn's process manager.
        from unijob.serve.handler import load_handler

        load_handler(config.handler, base_dir)
        local = local_model(config.model)
        config.model = str(local) if local else None
        os.environ["UNIJOB_HANDLER"] = config.handler
        if config.model:
            os.environ["UNIJOB_MODEL_DIR"] = config.model
        uvicorn.run("unijob.serve.runner:app_from_env", factory=True, host=config.host, port=config.port,
                    workers=config.workers, log_level=log_level, access_log=config.access_log)
        return 0
    failed: list[BaseException] = []
    holder: dict[str, Any] = {}

    def on_load_failed(e: BaseException) -> None:
        failed.append(e)
        holder["server"].should_exit = True

    app = build_app(config, base_dir=base_dir, on_load_failed=on_load_failed)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level,
                                           access_log=config.access_log, timeout_graceful_shutdown=10))
    holder["server"] = server
    if fd is not None:
        import socket

        # socket(fileno=) reads the family from the descriptor (uvicorn's own --fd assumes AF_UNIX).
        server.run(sockets=[socket.socket(fileno=fd)])
    else:
        server.run()
    return 1 if failed or not server.started else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m unijob.serve [serve] [options]``: the serving image's entrypoint.

    SageMaker starts the container as ``docker run IMAGE serve``; the ``serve`` word is accepted
    and ignored. Exit codes: 0 after SIGINT; after SIGTERM uvicorn shuts down gracefully and then
    re-raises the signal, so the process ends by it (143 in a shell, as a container runtime
    expects); 1 when the model failed to load; 2 for bad settings, a wrong handler reference or
    model location. An exception raised by the user's module on import ends with its traceback.
    """
    import argparse

    p = argparse.ArgumentParser(prog="python -m unijob.serve",
                                description="Serve a unijob handler on the SageMaker, Vertex and Kubernetes routes.")
    p.add_argument("command", nargs="?", choices=["serve"], help="accepted for SageMaker's `docker run IMAGE serve`")
    p.add_argument("--handler", help="module:attr, path/to/file.py:attr or module (default $UNIJOB_HANDLER)")
    p.add_argument("--model-dir", help="model directory, archive or URI (default: see unijob.serve.config)")
    p.add_argument("--host", help="default 0.0.0.0")
    p.add_argument("--port", type=int, help="default $AIP_HTTP_PORT, $SAGEMAKER_BIND_TO_PORT, $PORT or 8080")
    p.add_argument("--fd", type=int, help="serve on this inherited, bound socket")
    p.add_argument("--workers", type=int, help="uvicorn worker processes (default 1)")
    p.add_argument("--access-log", action="store_true", default=None, help="log every request")
    p.add_argument("--log-level", default=os.environ.get("UNIJOB_LOG_LEVEL", "info"),
                   choices=["critical", "error", "warning", "info", "debug"])
    a = p.parse_args(argv)
    from unijob.serve.handler import HandlerError

    try:
        config = ServeConfig.from_env(handler=a.handler, host=a.host, port=a.port, model=a.model_dir,
                                      workers=a.workers, access_log=a.access_log)
        return run(config, fd=a.fd, log_level=a.log_level, base_dir=Path.cwd())
    except (ValueError, HandlerError) as e:  # settings, handler reference, model location
        print(f"unijob.serve: error: {e}", file=sys.stderr)
        return 2
