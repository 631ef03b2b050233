"""``unijob.serve``: write a predictor once, serve it on SageMaker, Vertex AI, Kubernetes and here.

A handler is a class (or module) with ``load(model_dir)`` and ``predict(instances[, parameters])``::

    # serve.py
    import pickle

    class Predictor:
        def load(self, model_dir):                 # pathlib.Path, once per replica
            self.model = pickle.loads((model_dir / "model.pkl").read_bytes())

        def predict(self, instances):              # list of JSON values -> one prediction each
            return self.model.predict(instances).tolist()

``python -m unijob.serve --handler serve:Predictor --model-dir ./output`` (or ``unijob serve``)
serves it with uvicorn and Starlette on every platform's routes at once: SageMaker's
``GET /ping`` and ``POST /invocations`` on 8080 with the model under ``/opt/ml/model``; Vertex's
``AIP_HTTP_PORT``, ``AIP_HEALTH_ROUTE``, ``AIP_PREDICT_ROUTE`` and ``AIP_STORAGE_URI``; and
``/ready``, ``/live`` and ``/predict`` on ``$PORT`` for Kubernetes. Requests and responses use
Vertex's envelope ``{"instances": [...]}`` -> ``{"predictions": [...]}``
(details in :mod:`unijob.serve.app`, settings in :mod:`unijob.serve.config`, the container in
:mod:`unijob.serve.image`).

Importing this package costs nothing: Starlette and uvicorn load only when a server starts.
"""

from __future__ import annotations

from typing import Any

from unijob.serve.handler import BadRequest, Handler, HandlerError, load_handler

__all__ = ["BadRequest", "Handler", "HandlerError", "ServeConfig", "create_app", "load_handler", "run"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from unijob.serve.app import create_app

        return create_app
    if name == "ServeConfig":
        from unijob.serve.config import ServeConfig

        return ServeConfig
    if name == "run":
        from unijob.serve.runner import run

        return run
    raise AttributeError(name)
