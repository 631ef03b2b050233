"""Fixtures: moto's server on 127.0.0.1 (random port), boto3 pointed at it with fake credentials,
a recorder of every request the adapter's boto3 clients send (captured through botocore's
``before-parameter-build`` event, after which botocore validates them against its service model),
and moto's sagemaker-runtime made as strict as SageMaker about endpoints and variants."""

from __future__ import annotations

import copy
import sys
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # pytest runs with --import-mode=importlib

from sagemaker_testkit import REGION  # noqa: E402


@pytest.fixture(scope="session")
def moto_server():
    """moto's ThreadedMotoServer (moto/moto_server/threaded_moto_server.py) on a free port; stopped after."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request on stderr

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_server, monkeypatch):
    """Fake credentials and region, every boto3 client at the moto server; moto state reset."""
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                 "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, "AWS_ENDPOINT_URL": moto_server,
                 "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                 "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    urllib.request.urlopen(urllib.request.Request(moto_server + "/moto-api/reset", method="POST")).read()
    return moto_server


@pytest.fixture
def sent(monkeypatch):
    """Every request the adapter sends: list of (``service:Operation``, params) in order."""
    from unijob_adapters.sagemaker import client as client_mod

    calls: list[tuple[str, dict]] = []
    real = client_mod.client

    def recording(service, region, **kw):
        c = real(service, region, **kw)

        def hook(params, model, **_):
            calls.append((f"{service}:{model.name}", copy.deepcopy(params)))

        c.meta.events.register("before-parameter-build", hook)
        return c

    monkeypatch.setattr(client_mod, "client", recording)
    for mod in ("jobs", "logs", "endpoints", "invoke", "batch", "pipelines"):
        m = __import__(f"unijob_adapters.sagemaker.{mod}", fromlist=["client"])
        monkeypatch.setattr(m, "client", recording)
    return calls


@pytest.fixture
def runtime(aws, monkeypatch):
    """moto's sagemaker-runtime with SageMaker's own checks added (see :class:`RuntimePeer`)."""
    from sagemaker_testkit import RuntimePeer

    peer = RuntimePeer(aws)
    peer.install(monkeypatch)
    return peer


@pytest.fixture(scope="session")
def toolkit_python(tmp_path_factory):
    """The Python of a SageMaker training image for the start-contract tests: the real
    ``sagemaker-training`` 5.1.4 toolkit and scikit-learn, and no unijob (about 50 s to build with a
    warm pip cache; one venv per session, or reused from ``$UNIJOB_TEST_JOB_PYTHONS``)."""
    import os

    from unijob.testing.contracts import job_python

    root = os.environ.get("UNIJOB_TEST_JOB_PYTHONS") or tmp_path_factory.getbasetemp() / "job-pythons"
    return job_python(root, ["sagemaker-training==5.1.4", "scikit-learn"])
