"""Batch prediction with the same handler as :mod:`unijob.serve` (``predict(instances)``), so one
predictor serves real-time endpoints and batch jobs.

Input: JSON Lines files (one file, or every ``*.jsonl``/``*.json``/``*.txt`` file under a
directory, sorted). Each line is one instance, or ``{"key": K, "instance": X}`` to carry a key.
Output: per input file ``<relative path>.out`` (SageMaker Batch Transform's naming), one JSON line
per input line in input order: ``{"prediction": P}`` (with ``"key"`` when the input had one), or
``{"error": "...", "line": N}`` for a line that could not be read or predicted. Every such line is
also in ``errors.jsonl`` with its file and line number; ``_SUMMARY.json`` counts them. The job fails
only when the errors exceed ``batch.max_error_fraction`` of the lines.

The local target runs :mod:`unijob.batch.runner` (a pool of ``batch.replicas`` processes, each
loading the model once); the cloud targets send their own batch APIs (SageMaker
CreateTransformJob, Vertex BatchPredictionJob).
"""
