"""unijob as a library: what the CLI runs, one module per role.

- :mod:`unijob.api.specs` -- ``load``, ``plan``, ``targets``.
- :mod:`unijob.api.jobs` -- ``submit``, ``job``, ``jobs`` and the ``Job`` handle.
- :mod:`unijob.api.endpoints` -- ``deploy``, ``endpoint``, ``endpoints`` and the ``Endpoint`` handle.
- :mod:`unijob.api.models` -- ``job:<name-or-id>`` endpoint models resolved to a job's model artifact.

The same names are on the top-level package (``unijob.submit`` ...), loaded on first use.
"""
