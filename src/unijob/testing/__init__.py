"""Test kit for adapters: :mod:`~unijob.testing.conformance` (the suite every adapter runs) and
:mod:`~unijob.testing.httpfake` (a small threaded HTTP server base for local fakes of cloud REST
APIs). Import only from tests."""
