"""Evaluate the quickstart model on the held-out 25 % of the digits (the same split train.py holds
out: same seed) and report the accuracy with ``unijob.runtime.log_metrics`` for the pipeline's
condition. ``label_noise`` (a fraction 0-1) flips that share of the held-out labels: a way to force
a low accuracy and watch the pipeline stop at its condition."""

from __future__ import annotations

import pickle
import sys

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from unijob import runtime


def main() -> int:
    ctx = runtime.context()
    hp = ctx.hyperparameters
    seed, noise = int(hp.get("seed", 7)), float(hp.get("label_noise", 0.0))
    model_dir = runtime.model_dir("model")  # a directory here; SageMaker hands over model.tar.gz
    model = pickle.loads((model_dir / "model.pkl").read_bytes())
    X, y = load_digits(return_X_y=True)
    _, X_test, _, y_test = train_test_split(X / 16.0, y, test_size=0.25, random_state=seed, stratify=y)
    if noise:
        rng = np.random.default_rng(seed)
        flip = rng.random(len(y_test)) < noise
        y_test = np.where(flip, (y_test + 1) % 10, y_test)
    accuracy = float(model.score(X_test, y_test))
    print(f"held-out accuracy of {model_dir}: {accuracy:.4f}" + (f" (label noise {noise})" if noise else ""), flush=True)
    runtime.log_metrics({"accuracy": accuracy, "test_images": len(y_test)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
