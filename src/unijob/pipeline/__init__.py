"""Pipelines: train, evaluate, register and deploy as one DAG.

- :mod:`unijob.pipeline.spec` -- the pipeline spec (steps, ``depends_on``, references, ``when``).
- :mod:`unijob.pipeline.expr` -- the safe condition language.
- :mod:`unijob.pipeline.loading` -- reading a pipeline file and checking its graph.
- :mod:`unijob.pipeline.runs` -- runs on this machine's DAG runner (``run``, ``resume``, ``cancel``).
- :mod:`unijob.pipeline.compile` -- the pipeline as each platform's own pipeline request.
- :mod:`unijob.pipeline.managed` -- a compiled pipeline started on the platform's pipeline service, and followed there.

::

    import unijob
    r = unijob.run_pipeline("examples/pipeline/pipeline.yaml", wait=True)
    r.steps["evaluate"]["metrics"]["accuracy"]
"""
