"""unijob's Databricks target (``--target databricks``).

Modules by role: :mod:`.options` (the ``targets.databricks`` block), :mod:`.plan` (the
``runs/submit`` body), :mod:`.endpoints` (Model Serving bodies and calls), :mod:`.client`
(WorkspaceClient, uploads, status, logs), :mod:`.adapter` (the Adapter), :mod:`.launcher` (the gang
launcher shipped to the cluster), :mod:`.runtime_env` (what ``unijob.runtime`` reads in a run).
Nothing here imports ``databricks.sdk`` at module level.
"""
