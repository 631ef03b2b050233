"""The serving image: one container that runs a unijob handler on SageMaker, Vertex AI and Kubernetes.

``unijob serve-image HANDLER`` writes a ``Dockerfile`` (and a ``.dockerignore``) into the handler's
directory; ``docker build -t IMAGE . && docker push IMAGE`` gives the image that every target's
endpoint runs. What the image does:

* installs ``unijob`` (its core dependencies include Starlette, uvicorn and httpx: the server) and
  the handler's ``requirements.txt``;
* copies the build context to ``/opt/program`` and runs there, so ``serve:Predictor`` (a module
  beside the Dockerfile) imports as it does on the developer's machine;
* sets ``UNIJOB_HANDLER`` and starts ``python -m unijob.serve`` (exec form, so the server receives
  SIGTERM directly and drains).

How each platform runs it, all handled by :mod:`unijob.serve` without settings:

=============  ===============================================================================
platform       contract
=============  ===============================================================================
SageMaker      ``docker run IMAGE serve``; GET ``/ping`` and POST ``/invocations`` on port 8080
               (``$SAGEMAKER_BIND_TO_PORT`` on multi-container endpoints and inference pipelines,
               when the image carries the ``accept-bind-to-port`` label, which this one does);
               ``ModelDataUrl`` (a ``model.tar.gz``) extracted to ``/opt/ml/model``; SIGTERM,
               then SIGKILL 30 s later; containers run as root.
               https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html
               https://docs.aws.amazon.com/sagemaker/latest/dg/inference-pipeline-real-time.html
Vertex AI      listens on ``$AIP_HTTP_PORT`` (8080 unless ``containerSpec.ports`` says
               otherwise); health checks GET ``$AIP_HEALTH_ROUTE`` and predictions POST
               ``$AIP_PREDICT_ROUTE`` with ``{"instances": [...], "parameters": {...}}``, answered
               ``{"predictions": [...]}``; the model is at ``$AIP_STORAGE_URI`` (a ``gs://``
               copy of the artifact, which the server downloads: install ``gcsfs``).
               https://cloud.google.com/vertex-ai/docs/predictions/custom-container-requirements
Kubernetes     ``$PORT`` (default 8080); readiness probe GET ``/ready``, liveness GET ``/live``,
               POST ``/predict``; the model at ``$UNIJOB_MODEL_URI`` or ``$UNIJOB_MODEL_DIR``.
               https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/
=============  ===============================================================================

Nothing here needs Docker: :func:`dockerfile` renders text, and the tests run the image's exact
``ENTRYPOINT`` and ``ENV`` on a copy of the build context (the image's behaviour minus Docker).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import PurePosixPath
from typing import Optional

#: the default base image: a small official Python image (https://hub.docker.com/_/python).
DEFAULT_BASE = "python:3.11-slim"
#: where the build context lands in the image (SageMaker's sample containers use the same path).
PROGRAM_DIR = "/opt/program"
#: the one port every platform's default expects (SageMaker's fixed port, Vertex's default).
PORT = 8080
#: the container's command: ``python -m unijob.serve``, exec form; SageMaker appends ``serve``.
ENTRYPOINT = ["python", "-m", "unijob.serve"]

# module:attr, path/to/file.py:attr or module; no spaces or quotes, so it stays one ENV token.
_HANDLER_RE = re.compile(r"^[A-Za-z0-9_./-]+(:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)?$")
_IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")

#: The ``.dockerignore`` written beside the Dockerfile: keeps the context small and keeps local
#: environments, VCS data and secrets (``.env``, cloud credential folders) out of the image.
DOCKERIGNORE = """\
# Written by `unijob serve-image`: what `docker build` leaves out of the build context.
# https://docs.docker.com/build/concepts/context/#dockerignore-files
.git
.gitignore
.venv
venv
env
__pycache__
**/__pycache__
*.pyc
*.egg-info
.pytest_cache
.mypy_cache
.ruff_cache
.ipynb_checkpoints
# secrets and credentials never belong in an image
.env
.env.*
.aws
.config/gcloud
.databrickscfg
.kube
*.pem
*.key
"""


def default_unijob_requirement() -> str:
    """``unijob==<the installed version>``: the image serves with the unijob the developer tested."""
    from unijob import __version__

    return f"unijob=={__version__}"


def check_handler(handler: str) -> str:
    """``handler`` if it is a well-formed reference (``module:attr``, ``path/to/file.py:attr`` or
    ``module``), else ValueError naming the expected form."""
    if not _HANDLER_RE.match(handler or "") or handler.startswith("/"):
        raise ValueError(f"handler {handler!r}: expected module:attr, path/to/file.py:attr or module, "
                         "relative to the build context (letters, digits, _ . / - only)")
    return handler


def dockerfile(handler: str, *, base: str = DEFAULT_BASE, requirements: Optional[str] = None,
               unijob_requirement: Optional[str] = None) -> str:
    """The Dockerfile of the serving image for ``handler``, as text.

    Args:
        handler: the handler reference inside the image, relative to :data:`PROGRAM_DIR` (the build
            context): ``serve:Predictor``, ``serve.py:Predictor``, ``pkg.module``.
        base: the base image; it must provide ``python`` >= 3.10 and ``pip`` (default
            :data:`DEFAULT_BASE`).
        requirements: a requirements file inside the build context, as a relative POSIX path
            (``requirements.txt``); installed before the code is copied, so a code change does
            not reinstall it. None: none.
        unijob_requirement: the pip requirement that installs unijob (default
            :func:`default_unijob_requirement`); a different version, a wheel URL or
            ``unijob @ git+https://...``.

    Returns:
        The Dockerfile, with comments stating each platform's expectations and their sources.

    Raises:
        ValueError: a malformed handler or base image, a requirements path that is absolute or
            leaves the build context, or a requirement spanning lines.
    """
    check_handler(handler)
    if not _IMAGE_RE.match(base or ""):
        raise ValueError(f"base image {base!r}: expected a reference such as {DEFAULT_BASE} or registry/name:tag")
    req = unijob_requirement if unijob_requirement is not None else default_unijob_requirement()
    if not req.strip() or "\n" in req or "\r" in req:
        raise ValueError(f"unijob requirement {req!r}: expected one pip requirement such as unijob==0.1.0")
    if requirements is not None:
        rel = PurePosixPath(requirements)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts or "\n" in requirements:
            raise ValueError(f"requirements {requirements!r}: expected a file inside the build context, "
                             "as a relative path such as requirements.txt")
        requirements = rel.as_posix()

    lines = [
        "# syntax=docker/dockerfile:1",
        f"# Serving image for the unijob handler {handler}: written by `unijob serve-image`.",
        "# One image for SageMaker, Vertex AI and Kubernetes: `python -m unijob.serve` answers every",
        "# platform's routes on one port. Build from this directory and push to the registry the",
        "# target pulls from (ECR for SageMaker, Artifact Registry for Vertex):",
        "#   docker build -t IMAGE . && docker push IMAGE",
        "#",
        "# SageMaker runs `docker run IMAGE serve` as root; the server must answer GET /ping (200 once",
        "# the model is loaded) and POST /invocations on port 8080, or on $SAGEMAKER_BIND_TO_PORT for",
        "# multi-container endpoints and inference pipelines (the label below allows it). The model",
        "# (ModelDataUrl, a model.tar.gz) is extracted to /opt/ml/model. On scale-in SageMaker sends",
        "# SIGTERM, then SIGKILL 30 s later: the exec-form ENTRYPOINT lets the server drain.",
        "#   https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html",
        "#   https://docs.aws.amazon.com/sagemaker/latest/dg/inference-pipeline-real-time.html",
        "# Vertex AI sets AIP_HTTP_PORT (8080 by default), AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE and",
        "# AIP_STORAGE_URI (the gs:// copy of the model artifacts, downloaded at start: add gcsfs to",
        '# the requirements). Requests are {"instances": [...], "parameters": {...}}, answers',
        '# {"predictions": [...]}, one per instance.',
        "#   https://cloud.google.com/vertex-ai/docs/predictions/custom-container-requirements",
        "# Kubernetes (unijob's manifests) sets PORT (default 8080) and UNIJOB_MODEL_URI; probes:",
        "# readiness GET /ready, liveness GET /live; requests POST /predict.",
        "#   https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/",
        f"FROM {base}",
        "",
        "# Lets SageMaker hand the port over in SAGEMAKER_BIND_TO_PORT (multi-container endpoints).",
        "LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true",
        "",
        "# Logs reach CloudWatch / Cloud Logging / kubectl logs at once; no pip cache in the image.",
        "ENV PYTHONUNBUFFERED=1 \\",
        "    PYTHONDONTWRITEBYTECODE=1 \\",
        "    PIP_NO_CACHE_DIR=1 \\",
        "    PIP_DISABLE_PIP_VERSION_CHECK=1",
        "",
        "# The server: unijob's core dependencies include starlette, uvicorn and httpx.",
        f"RUN python -m pip install {shlex.quote(req)}",
        "",
    ]
    if requirements:
        lines += [
            "# The handler's own dependencies, before the code, so that a code change reuses this layer.",
            f"COPY {json.dumps([requirements, PROGRAM_DIR + '/requirements.txt'])}",
            f"RUN python -m pip install -r {PROGRAM_DIR}/requirements.txt",
            "",
        ]
    lines += [
        "# The build context (the handler and whatever it imports); .dockerignore keeps the rest out.",
        f"COPY . {PROGRAM_DIR}",
        f"WORKDIR {PROGRAM_DIR}",
        "",
        "# Which handler to serve: python -m unijob.serve reads it (and the platform's variables) at start.",
        f"ENV UNIJOB_HANDLER={handler}",
        f"EXPOSE {PORT}",
        "# Exec form: the server is PID 1 and gets SIGTERM itself. SageMaker appends `serve`, which",
        "# the entrypoint accepts; Vertex and Kubernetes pass no arguments.",
        f"ENTRYPOINT {json.dumps(ENTRYPOINT)}",
    ]
    return "\n".join(lines) + "\n"


__all__ = ["DEFAULT_BASE", "DOCKERIGNORE", "ENTRYPOINT", "PORT", "PROGRAM_DIR", "check_handler",
           "default_unijob_requirement", "dockerfile"]
