"""Quickstart: a digit classifier trained one epoch at a time, checkpointed, preemption-safe.

Data: scikit-learn's bundled copy of the UCI "Optical Recognition of Handwritten Digits" test set
(1,797 8x8 images; ``sklearn.datasets.load_digits``; nothing is downloaded). 25 % is held out for
the final accuracy; the training images are augmented with their eight one-pixel shifts.

Model: ``sklearn.neural_network.MLPClassifier`` (two hidden layers, Adam), trained with
``partial_fit`` one epoch per call. Each epoch's shuffling comes from its own RNG seeded with
``seed + epoch``, and the model (Adam state included) is checkpointed after every epoch, so a run
that is preempted and resumed ends with exactly the same model as one that was not.

Runs anywhere: under ``unijob submit`` (any target), or as plain ``python train.py`` (single
process, hyperparameter defaults below, checkpoints in a temporary directory).
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import time

# One BLAS thread: the same arithmetic, hence the same model, on every machine and every relaunch
# (and no busy-waiting BLAS threads fighting over a small machine). Must precede the numpy import.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

from unijob.runtime import Checkpointer, context, preempted  # noqa: E402

DEFAULTS = {"epochs": 20, "learning_rate": 0.001, "seed": 7, "batch_size": 32}


def shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``images`` (n, 8, 8) moved by (dy, dx) pixels, zero-filled."""
    out = np.zeros_like(images)
    h, w = images.shape[1:]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        images[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def data(seed: int):
    X, y = load_digits(return_X_y=True)
    X = X / 16.0  # pixel intensities are 0..16
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    images = X_train.reshape(-1, 8, 8)
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    X_aug = np.concatenate([shifted(images, dy, dx) for dy, dx in shifts]).reshape(-1, 64)
    y_aug = np.tile(y_train, len(shifts))
    return X_aug, y_aug, X_test, y_test


def checkpoint_location(ctx):
    """One checkpoint root per job: a relaunch of this job resumes, a new submission starts fresh."""
    base = ctx.checkpoint_dir or ctx.checkpoint_uri
    if base is None:
        return None  # plain `python train.py`: Checkpointer picks a temporary directory
    return f"{str(base).rstrip('/')}/{ctx.job_id}" if ctx.job_id else str(base)


def main() -> int:
    ctx = context()
    hp = {**DEFAULTS, **ctx.hyperparameters}
    epochs, seed = int(hp["epochs"]), int(hp["seed"])
    X, y, X_test, y_test = data(seed)
    ckpt = Checkpointer(checkpoint_location(ctx), keep=3)

    start = 0
    if ckpt.latest() is not None:
        state = pickle.loads(ckpt.load())  # the newest good checkpoint (sha256-verified)
        model, start = state["model"], state["epoch"] + 1
        print(f"resumed from checkpoint: epoch {start}/{epochs} done (restart {ctx.restart_count})", flush=True)
    else:
        model = MLPClassifier(hidden_layer_sizes=(384, 192), learning_rate_init=float(hp["learning_rate"]),
                              batch_size=int(hp["batch_size"]), shuffle=False, random_state=seed)
        print(f"training from scratch: {len(X)} training images, {len(X_test)} held out, {epochs} epochs",
              flush=True)

    classes = np.arange(10)
    for epoch in range(start, epochs):
        t = time.perf_counter()
        order = np.random.default_rng(seed + epoch).permutation(len(X))
        model.partial_fit(X[order], y[order], classes=classes)
        print(f"epoch {epoch + 1:3d}/{epochs}  loss {model.loss_:.4f}  ({time.perf_counter() - t:.2f} s)", flush=True)
        ckpt.save(pickle.dumps({"epoch": epoch, "model": model}), step=epoch)
        if preempted():
            print(f"preempted: checkpoint of epoch {epoch + 1} saved; exiting so the job can resume", flush=True)
            return 143  # 128 + SIGTERM: stopped, not finished

    accuracy = float(model.score(X_test, y_test))
    print(f"held-out accuracy: {accuracy:.4f}", flush=True)
    if ctx.is_main:
        ctx.model_dir.mkdir(parents=True, exist_ok=True)
        ctx.output_dir.mkdir(parents=True, exist_ok=True)
        (ctx.model_dir / "model.pkl").write_bytes(pickle.dumps(model))
        (ctx.output_dir / "metrics.json").write_text(json.dumps(
            {"held_out_accuracy": accuracy, "epochs": epochs, "seed": seed, "resumed_at_epoch": start}))
        print(f"model saved to {ctx.model_dir / 'model.pkl'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
