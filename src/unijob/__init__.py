"""unijob: one vendor-neutral job spec, many ML platforms, and what each costs.

Importing :mod:`unijob` is cheap: it pulls in no cloud SDK and not even pydantic.
The public pieces live in submodules:

- :mod:`unijob.spec` -- the :class:`~unijob.spec.JobSpec` model.
- :mod:`unijob.loading` -- YAML loading with file:line:column errors.
- :mod:`unijob.contract` -- the adapter contract every backend implements.
- :mod:`unijob.registry` -- adapter discovery through the ``unijob.adapters`` entry-point group.
- :mod:`unijob.runtime` -- what training code imports (rank, world size, checkpoints, preemption).
- :mod:`unijob.cost` -- the dated price catalog, per-target cost and the build-vs-buy break-even.
"""

__version__ = "0.1.0"
