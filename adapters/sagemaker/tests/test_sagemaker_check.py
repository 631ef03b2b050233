"""check(): one line per problem, no traceback, no secret values."""

from __future__ import annotations

import builtins

import pytest

from sagemaker_testkit import ROLE, make_spec
from unijob_adapters.sagemaker.adapter import SageMakerAdapter


@pytest.fixture
def bare_env(monkeypatch, tmp_path):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
              "AWS_PROFILE", "UNIJOB_SAGEMAKER_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
              "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_nothing_configured(bare_env):
    r = SageMakerAdapter().check()
    assert not r.ready
    assert any(p.startswith("no AWS region") for p in r.problems)
    assert any(p.startswith("no AWS credentials") for p in r.problems)
    assert all("\n" not in p and "Traceback" not in p for p in r.problems)


def test_ready_and_no_secret_shown(bare_env, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "super-secret-value")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("UNIJOB_SAGEMAKER_ROLE_ARN", ROLE)
    r = SageMakerAdapter().check()
    assert r.ready, r.problems
    assert r.details["region"] == "us-east-1" and r.details["role"] == ROLE
    text = repr(r)
    assert "super-secret-value" not in text and "AKIAEXAMPLEKEY" not in text


def test_missing_role_for_a_spec(bare_env, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    spec = make_spec(tmp_path, targets={"sagemaker": {"region": "us-east-1"}})
    r = SageMakerAdapter().check(spec)
    assert r.problems == [r.problems[0]] and r.problems[0].startswith("no SageMaker execution role")


def test_boto3_missing(bare_env, monkeypatch):
    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "boto3" or name.startswith("boto3."):
            raise ImportError("No module named 'boto3'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    r = SageMakerAdapter().check()
    assert r.problems == ["boto3 is not installed: pip install 'unijob[sagemaker]'"]
