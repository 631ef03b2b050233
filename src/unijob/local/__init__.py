"""The local target: runs a job's gang as processes on this machine.

- :mod:`~unijob.local.options` -- ``targets.local`` options (:class:`LocalOptions`).
- :mod:`~unijob.local.plan` -- builds the ``local:launch`` request from a spec (pure).
- :mod:`~unijob.local.adapter` -- :class:`LocalAdapter`, the default target.
- :mod:`~unijob.local.supervisor` -- the detached process that owns a gang, and ``submit``.
- :mod:`~unijob.local.gang` -- starting and stopping ranks (process groups, grace, SIGKILL).
- :mod:`~unijob.local.jobdir` -- the job directory: ``plan.json``, ``state.json``, rank logs.
"""
