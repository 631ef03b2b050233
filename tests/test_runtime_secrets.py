"""secret(): env vars set by the platform, references resolved lazily, values never echoed."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from unijob.runtime import secrets
from unijob.runtime.secrets import SecretError, secret

VALUE = "hunter2-the-real-value"


@pytest.fixture(autouse=True)
def _no_cache():
    secrets._clear_cache()
    yield
    secrets._clear_cache()


def refs(**kw):
    return {"UNIJOB_SECRET_REFS": json.dumps(kw)}


def test_platform_injected_env_var_wins():
    env = {"DB_PASSWORD": VALUE, **refs(DB_PASSWORD="aws-secretsmanager://never-read")}
    assert secret("DB_PASSWORD", env) == VALUE


def test_env_reference():
    assert secret("TOKEN", {"ORIGIN": VALUE, **refs(TOKEN="env://ORIGIN")}) == VALUE
    with pytest.raises(SecretError, match="ORIGIN"):
        secret("TOKEN", refs(TOKEN="env://ORIGIN"))


def test_undeclared_secret():
    with pytest.raises(SecretError, match="secret 'NOPE' is not available.*secrets:"):
        secret("NOPE", {})


@pytest.mark.parametrize("raw, fragment", [("{", "not valid JSON"), ("[1]", "JSON object")])
def test_malformed_refs(raw, fragment):
    with pytest.raises(SecretError, match=fragment):
        secret("X", {"UNIJOB_SECRET_REFS": raw})


@pytest.mark.parametrize("ref, fragment", [
    ("k8s-secret://db/password", "secretKeyRef"),
    ("databricks-secret://scope/key", "secrets/SCOPE/KEY"),
    ("vault://x", "unknown reference scheme"),
])
def test_platform_only_refs_explain_themselves(ref, fragment):
    with pytest.raises(SecretError, match=fragment):
        secret("X", refs(X=ref))


@pytest.fixture
def aws(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    moto = pytest.importorskip("moto")
    import boto3

    with moto.mock_aws():
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        plain = sm.create_secret(Name="prod/db-password", SecretString=VALUE)["ARN"]
        sm.create_secret(Name="prod/db", SecretString=json.dumps({"user": "app", "password": VALUE}))
        sm.create_secret(Name="prod/blob", SecretBinary=VALUE.encode())
        yield plain


def test_aws_secrets_manager(aws, caplog):
    caplog.set_level(logging.DEBUG)
    assert secret("A", refs(A="aws-secretsmanager://prod/db-password")) == VALUE
    assert secret("B", refs(B=f"aws-secretsmanager://{aws}")) == VALUE  # by ARN: region from the ARN
    assert secret("C", refs(C="aws-secretsmanager://prod/db#password")) == VALUE
    assert secret("D", refs(D="aws-secretsmanager://prod/blob")) == VALUE
    assert VALUE not in caplog.text


def test_aws_errors_never_contain_the_value(aws, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SecretError) as e1:
        secret("A", refs(A="aws-secretsmanager://prod/db#nokey"))
    with pytest.raises(SecretError) as e2:
        secret("B", refs(B="aws-secretsmanager://prod/db-password#password"))  # not JSON
    with pytest.raises(SecretError, match="ResourceNotFoundException") as e3:
        secret("C", refs(C="aws-secretsmanager://prod/missing"))
    for e in (e1, e2, e3):
        assert VALUE not in str(e.value) and e.value.__cause__ is None
    assert "no key 'nokey'" in str(e1.value) and "not a JSON object" in str(e2.value)
    assert VALUE not in caplog.text


def test_missing_sdks_name_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(SecretError, match="pip install boto3"):
        secret("A", refs(A="aws-secretsmanager://prod/x"))
    monkeypatch.setitem(sys.modules, "google.cloud.secretmanager", None)
    with pytest.raises(SecretError, match="pip install google-cloud-secret-manager"):
        secret("G", refs(G="gcp-secretmanager://projects/p/secrets/s"))


def test_values_are_cached_per_reference(monkeypatch):
    calls = []

    def fake(name, rest):
        calls.append(rest)
        return VALUE

    monkeypatch.setattr(secrets, "_aws", fake)
    env = refs(A="aws-secretsmanager://prod/x")
    assert secret("A", env) == secret("A", env) == VALUE
    assert calls == ["prod/x"]
