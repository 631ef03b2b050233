"""The one handler behind every serving test: SageMaker, Vertex, Kubernetes, the image and the CLI.

A linear model read from ``model_dir/model.json`` (``{"weights": [w0, w1, ...], "bias": b}``):
each instance is a list of numbers and its prediction is ``instance . weights + bias``, times the
request's ``parameters["scale"]`` (default 1). It returns a NumPy array, which the server must turn
into JSON. Test hooks, all off by default:

* ``parameters: {"fail": true}`` raises RuntimeError in predict (the server answers 500);
* ``parameters: {"drop": 1}`` returns one prediction too few (500);
* an instance of the wrong length raises :class:`unijob.serve.BadRequest` (400);
* ``UNIJOB_TEST_LOAD_GATE=/path``: ``load`` waits until that file exists (a slow load, released by
  the test, so that /ping can be seen answering 503 first).
"""

import json
import os
import time

import numpy as np

from unijob.serve import BadRequest


class Predictor:
    def load(self, model_dir):
        gate = os.environ.get("UNIJOB_TEST_LOAD_GATE")
        if gate:
            deadline = time.monotonic() + 120
            while not os.path.exists(gate):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the test never released {gate}")
                time.sleep(0.02)
        model = json.loads((model_dir / "model.json").read_text())
        self.weights = np.asarray(model["weights"], dtype=np.float64)
        self.bias = float(model["bias"])

    def predict(self, instances, parameters):
        if parameters.get("fail"):
            raise RuntimeError("asked to fail")
        try:
            x = np.asarray(instances, dtype=np.float64).reshape(len(instances), -1)
        except (TypeError, ValueError):
            raise BadRequest(f"each instance must be a list of {len(self.weights)} numbers") from None
        if x.shape[1] != len(self.weights):
            raise BadRequest(f"each instance must be a list of {len(self.weights)} numbers, got {x.shape[1]}")
        y = (x @ self.weights + self.bias) * float(parameters.get("scale", 1.0))
        return y[: len(y) - int(parameters.get("drop", 0))]
