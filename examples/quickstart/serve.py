"""Serve the quickstart's digits model: one handler for SageMaker, Vertex AI, Kubernetes and here.

``unijob.serve`` calls ``load(model_dir)`` once per replica and ``predict(instances, parameters)``
per request. An instance is one 8x8 image as 64 pixel intensities 0-16 (the layout of
``sklearn.datasets.load_digits``, which train.py trains on); the answer for each is the digit and
its probability. ``TopK`` is the canary variant of endpoint.yaml: the same model, answering the
``k`` most likely digits (``parameters: {"k": 3}``).

    unijob serve --handler serve.py:Digits --model-dir output        # one server, port 8080
    unijob deploy endpoint.yaml                                        # router + replicas, 90/10
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from unijob.serve import BadRequest

PIXELS = 64


class Digits:
    """Digit and probability per image."""

    def load(self, model_dir: Path) -> None:
        if model_dir is None or not (model_dir / "model.pkl").exists():
            raise FileNotFoundError(f"no model.pkl in {model_dir}; train first: unijob submit job.yaml --wait")
        self.model = pickle.loads((model_dir / "model.pkl").read_bytes())

    def probabilities(self, instances: list[Any]) -> np.ndarray:
        try:
            X = np.asarray(instances, dtype=float)
        except (TypeError, ValueError):
            raise BadRequest("each instance must be a list of 64 numbers (an 8x8 image, intensities 0-16)") from None
        if X.ndim != 2 or X.shape[1] != PIXELS:
            raise BadRequest(f"each instance must be a list of {PIXELS} numbers (an 8x8 image); got shape {list(X.shape)}")
        if X.min(initial=0) < 0 or X.max(initial=0) > 16:
            raise BadRequest("pixel intensities must be within 0-16 (scikit-learn's digits layout)")
        return self.model.predict_proba(X / 16.0)  # train.py scaled by 1/16 too

    def predict(self, instances: list[Any], parameters: dict[str, Any]) -> list[dict[str, Any]]:
        if not instances:
            return []
        return [{"digit": int(p.argmax()), "probability": round(float(p.max()), 4)}
                for p in self.probabilities(instances)]


class TopK(Digits):
    """The ``k`` most likely digits per image (default 3), most likely first."""

    def predict(self, instances: list[Any], parameters: dict[str, Any]) -> list[dict[str, Any]]:
        k = parameters.get("k", 3)
        if not isinstance(k, int) or not 1 <= k <= 10:
            raise BadRequest(f"parameters.k must be an integer 1-10, got {k!r}")
        if not instances:
            return []
        out = []
        for p in self.probabilities(instances):
            top = np.argsort(p)[::-1][:k]
            out.append({"digits": [int(d) for d in top], "probabilities": [round(float(p[d]), 4) for d in top]})
        return out
