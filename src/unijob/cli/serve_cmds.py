"""Serving commands: ``unijob serve`` (a handler on this machine) and ``unijob serve-image`` (its
Dockerfile). Starlette and uvicorn are imported only when ``serve`` starts the server."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import click

from unijob.errors import UsageError

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@click.command()
@click.option("--handler", metavar="REF", help="module:attr, path/to/file.py:attr or module (default $UNIJOB_HANDLER).")
@click.option("--model-dir", metavar="PATH", help="Model directory, model.tar.gz or URI (default $UNIJOB_MODEL_DIR, "
              "$UNIJOB_MODEL_URI, $AIP_STORAGE_URI, /opt/ml/model).")
@click.option("--host", metavar="ADDR", help="Address to listen on (default $UNIJOB_SERVE_HOST, else 127.0.0.1: "
              "this machine only; the container entrypoint listens on 0.0.0.0).")
@click.option("--port", type=click.IntRange(0, 65535), help="Default $AIP_HTTP_PORT, $SAGEMAKER_BIND_TO_PORT, $PORT or 8080.")
@click.option("--workers", type=click.IntRange(min=1), help="uvicorn worker processes (default $UNIJOB_SERVE_WORKERS or 1).")
@click.option("--access-log", is_flag=True, default=False, help="Log every request (also $UNIJOB_ACCESS_LOG=1).")
def serve(handler: Optional[str], model_dir: Optional[str], host: Optional[str], port: Optional[int],
          workers: Optional[int], access_log: bool) -> None:
    """Serve a handler here on the SageMaker, Vertex and Kubernetes routes at once.

    \b
    GET /ping, /ready, /live and POST /invocations, /predict (and $AIP_HEALTH_ROUTE,
    $AIP_PREDICT_ROUTE), as in the serving image. Runs until Ctrl-C; exits 1 when the model fails
    to load. Example:
      unijob serve --handler serve:Predictor --model-dir ./output --port 8080
    """
    from unijob.serve.config import ServeConfig

    try:
        config = ServeConfig.from_env(handler=handler, host=host or os.environ.get("UNIJOB_SERVE_HOST") or "127.0.0.1",
                                      port=port, model=model_dir, workers=workers, access_log=access_log or None)
    except ValueError as e:
        raise UsageError(str(e)) from None
    log_level = os.environ.get("UNIJOB_LOG_LEVEL", "info").lower()
    if log_level not in LOG_LEVELS:
        raise UsageError(f"UNIJOB_LOG_LEVEL={log_level!r}: expected one of {', '.join(LOG_LEVELS)}")
    from unijob.serve.handler import HandlerError
    from unijob.serve.runner import ModelLocationError, run

    try:
        # run() fetches the model once (before any worker starts) and checks the handler reference
        code = run(config, log_level=log_level, base_dir=Path.cwd())
    except ModelLocationError as e:
        raise UsageError(f"model: {e}", hint="--model-dir takes a directory, a model.tar.gz or a URI") from None
    except HandlerError as e:
        raise UsageError(str(e)) from None
    except ImportError as e:  # a package the handler imports is not installed here
        raise UsageError(f"cannot serve {config.handler}: {e}",
                         hint="install the missing package into this environment") from None
    # SystemExit, as jobs.py does: with standalone_mode=False click returns (and unijob's main
    # drops) the code of a click Exit.
    sys.exit(code)


@click.command("serve-image")
@click.argument("handler", required=False)
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False), help="Take HANDLER from this spec's endpoint.handler.")
@click.option("--base", default=None, metavar="IMAGE", help="Base image with python and pip (default python:3.11-slim).")
@click.option("--requirements", type=click.Path(dir_okay=False), metavar="FILE",
              help="The handler's pip requirements, inside the build context (default: requirements.txt there, if any).")
@click.option("--unijob-requirement", metavar="REQ", help="How the image installs unijob (default unijob==<this version>).")
@click.option("-o", "--output", default="Dockerfile", show_default=True, metavar="FILE",
              help="Where to write; its directory is the build context. '-' prints it instead.")
@click.option("--force", is_flag=True, help="Overwrite an existing Dockerfile.")
def serve_image(handler: Optional[str], spec_path: Optional[str], base: Optional[str], requirements: Optional[str],
                unijob_requirement: Optional[str], output: str, force: bool) -> None:
    """Write the Dockerfile of a serving image for HANDLER (module:attr, relative to the build context).

    \b
    One image runs on SageMaker, Vertex AI and Kubernetes (see unijob.serve.image). Also writes a
    .dockerignore beside it unless one exists. Then:
      docker build -t IMAGE . && docker push IMAGE
    """
    from unijob.serve.image import DEFAULT_BASE, DOCKERIGNORE, dockerfile

    if spec_path:
        from unijob.api.endpoints import serving_handler

        handler = serving_handler(spec_path, handler)
    if not handler:
        raise UsageError("no handler: give HANDLER (module:attr) or --spec with an endpoint.handler")
    to_stdout = output == "-"
    target = None if to_stdout else Path(output)
    context = Path.cwd() if target is None else target.parent
    if target is not None and target.is_dir():
        raise UsageError(f"{target} is a directory; -o takes the Dockerfile's path (e.g. {target / 'Dockerfile'})")
    if target is not None and target.exists() and not force:
        raise UsageError(f"{target} exists; pass --force to overwrite it")
    if target is not None and not context.is_dir():
        raise UsageError(f"{context} is not a directory; the Dockerfile goes into the build context")
    rel_req = None
    if requirements:
        req_path = Path(requirements)
        if not req_path.is_file():
            raise UsageError(f"requirements file {requirements} does not exist")
        try:
            rel_req = req_path.resolve().relative_to(context.resolve()).as_posix()
        except ValueError:
            raise UsageError(f"requirements file {requirements} is outside the build context {context}; "
                             "docker build can only COPY files inside it") from None
    elif (context / "requirements.txt").is_file():
        rel_req = "requirements.txt"
        click.echo(f"using {context / 'requirements.txt'} (pass --requirements to choose another)", err=True)
    try:
        text = dockerfile(handler, base=base or DEFAULT_BASE, requirements=rel_req, unijob_requirement=unijob_requirement)
    except ValueError as e:
        raise UsageError(str(e)) from None
    missing = _not_in_context(handler, context)
    if missing:
        from unijob.cli.common import warn

        warn([f"{missing} is not in the build context {context.resolve()}; the image finds the handler only "
              "if a requirement installs it"])
    if target is None:
        click.echo(text, nl=False)
        return
    _write(target, text)
    click.echo(f"wrote {target}", err=True)
    ignore = context / ".dockerignore"
    if ignore.exists():
        click.echo(f"kept the existing {ignore}", err=True)
    else:
        _write(ignore, DOCKERIGNORE)
        click.echo(f"wrote {ignore}", err=True)
    click.echo(f"build: docker build -t IMAGE {context}", err=True)


def _not_in_context(handler: str, context: Path) -> Optional[str]:
    """The file or module ``handler`` needs that the build context lacks, or None."""
    mod = handler.partition(":")[0]
    if mod.endswith(".py") or "/" in mod:
        return None if (context / mod).is_file() else mod
    top = mod.split(".")[0]
    return None if (context / f"{top}.py").is_file() or (context / top).is_dir() else f"module {top!r}"


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all."""
    from unijob.local.jobdir import write_text_atomic

    try:
        write_text_atomic(path, text)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None


__all__ = ["serve", "serve_image"]
