"""`unijob catalog refresh` parsers on recorded-shape samples (tests/data), offline exit 4, catalog gpus."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from unijob.cli.cost_cmds import catalog
from unijob.cost import prices, refresh
from unijob.errors import TargetError, UsageError

DATA = Path(__file__).parent / "data"


def _load(name):
    return json.loads((DATA / name).read_text())


def test_parse_aws_ec2_offer_keeps_linux_shared_used_only():
    rows = refresh.parse_aws_offer(_load("aws_ec2_offer_sample.json"))
    got = {(r["service"], r["region"], r["instance_type"]): r["on_demand_usd_hour"] for r in rows}
    assert got == {("ec2", "us-east-1", "p4d.24xlarge"): 21.957642, ("ec2", "us-east-1", "g5.2xlarge"): 1.212}
    assert all(r["as_of"] == "2026-11-01" and r["basis"] == "published" for r in rows)  # from the vendor API


def test_parse_aws_sagemaker_offer_components():
    rows = refresh.parse_aws_offer(_load("aws_sagemaker_offer_sample.json"))
    got = {(r["service"], r["instance_type"]): r["on_demand_usd_hour"] for r in rows}
    assert got == {("sagemaker-training", "ml.p4d.24xlarge"): 37.688, ("sagemaker-hosting", "ml.g5.2xlarge"): 1.515}


def test_parse_gcp_skus_gpus_and_n1():
    rows = refresh.parse_gcp_skus(_load("gcp_skus_sample.json")["skus"], ["us-central1", "europe-west4"])
    got = {(r["region"], r["instance_type"]): (r["on_demand_usd_hour"], r["spot_usd_hour"]) for r in rows}
    assert got[("us-central1", "gpu:T4")] == (0.35, 0.14)
    od, sp = got[("us-central1", "n1-standard-4")]
    assert od == pytest.approx(4 * 0.031611 + 15 * 0.004237) and sp == ""
    basis = {(r["region"], r["instance_type"]): r["basis"] for r in rows}
    assert basis[("us-central1", "gpu:T4")] == "published" and basis[("us-central1", "n1-standard-4")] == "derived"
    assert not any(r["region"] == "europe-west4" for r in rows)


def test_refresh_offline_is_exit_4(monkeypatch, tmp_path):
    import urllib.error
    import urllib.request

    def offline(*a, **k):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setenv("UNIJOB_HOME", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    res = CliRunner().invoke(catalog, ["refresh", "--region", "us-east-1"])
    assert isinstance(res.exception, TargetError) and res.exception.exit_code == 4
    assert "network" in str(res.exception)
    assert not (tmp_path / "prices.csv").exists()


def test_refresh_writes_overlay_with_fake_api(monkeypatch, tmp_path):
    import io
    import urllib.request

    samples = {"AmazonEC2": _load("aws_ec2_offer_sample.json"), "AmazonSageMaker": _load("aws_sagemaker_offer_sample.json")}

    def fake(url, timeout=None):
        offer = next(k for k in samples if f"/{k}/" in url)
        return io.BytesIO(json.dumps(samples[offer]).encode())

    monkeypatch.setenv("UNIJOB_HOME", str(tmp_path))
    monkeypatch.delenv("UNIJOB_GCP_API_KEY", raising=False)
    monkeypatch.setattr(urllib.request, "urlopen", fake)
    prices.prices.cache_clear()
    try:
        res = CliRunner().invoke(catalog, ["refresh", "--region", "us-east-1"])
        assert res.exit_code == 0, res.output
        assert "GCP skipped" in res.output
        p = prices.price("ec2", "us-east-1", "g5.2xlarge")
        assert p.on_demand == 1.212 and p.source.startswith("AWS Price List") and p.spot is not None
    finally:
        prices.prices.cache_clear()


def test_catalog_gpus_lists_offers_and_rejects_unknown():
    res = CliRunner().invoke(catalog, ["gpus", "a100", "-o", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    services = {r["service"] for r in rows}
    assert {"ec2", "sagemaker-training", "vertex-training", "gce"} <= services
    assert all(r["accelerator"] == "A100" for r in rows)
    assert any(r["instance_type"] == "a2-highgpu-8g" and r["region"] == "europe-west4" for r in rows)
    res = CliRunner().invoke(catalog, ["gpus", "H1000"])
    assert isinstance(res.exception, UsageError) and "H100" in str(res.exception)
    res = CliRunner().invoke(catalog, ["gpus"])
    assert res.exit_code == 0 and "T4" in res.output
