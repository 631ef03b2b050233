"""check(): one line per missing piece (package, credentials, project, location); never raises."""

from __future__ import annotations

import sys

from unijob_adapters.vertex.adapter import VertexAdapter


def test_nothing_configured_gives_three_lines(monkeypatch, tmp_path):
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud application-default credentials
    monkeypatch.setenv("HOME", str(tmp_path))
    r = VertexAdapter().check()
    assert not r.ready and len(r.problems) == 3
    creds, project, location = r.problems
    assert "credentials" in creds and "gcloud auth application-default login" in creds
    assert "GOOGLE_CLOUD_PROJECT" in project and "CLOUD_ML_REGION" in location


def test_ready_with_credentials_project_and_location(monkeypatch):
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "demo-project")
    monkeypatch.setenv("CLOUD_ML_REGION", "us-central1")
    r = VertexAdapter(credentials=AnonymousCredentials()).check()
    assert r.ready and r.problems == [] and r.details == {"project": "demo-project", "location": "us-central1"}


def test_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.cloud.aiplatform_v1", None)  # import raises ImportError
    r = VertexAdapter().check()
    assert not r.ready and r.problems == ["google-cloud-aiplatform is not installed: pip install 'unijob[vertex]'"]


def test_plan_without_the_sdk_says_how_to_install(monkeypatch, make_spec):
    import pytest

    from unijob.errors import NotReady

    monkeypatch.setitem(sys.modules, "google.cloud.aiplatform_v1", None)
    with pytest.raises(NotReady) as ei:
        VertexAdapter().plan(make_spec(), "s")
    assert "pip install 'unijob[vertex]'" in str(ei.value)
