"""unijob adapter for self-managed Kubernetes (entry point ``kubernetes``)."""
