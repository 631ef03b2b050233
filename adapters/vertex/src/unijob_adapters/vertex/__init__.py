"""unijob's Vertex AI target: ``--target vertex``.

Modules: :mod:`.options` (the ``targets.vertex`` block), :mod:`.tables` (sourced mappings),
:mod:`.plan` (CustomJob requests), :mod:`.endpoints` (Model/Endpoint requests and calls),
:mod:`.client` (GAPIC clients, retry, Cloud Logging, GCS uploads), :mod:`.adapter` (the Adapter),
:mod:`.runtime_env` (inside a Vertex job; stdlib only).

Nothing here imports google-cloud at import time.
"""
