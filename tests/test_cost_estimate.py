"""`unijob cost`: figures recomputed from the catalog's CSV rows, Young/Daly, errors (exit 2)."""

import csv
import json
import math
from importlib import resources

import pytest
from click.testing import CliRunner

from unijob.cli.cost_cmds import cost
from unijob.cost import estimate as est
from unijob.cost.catalog import NoOffering
from unijob.cost.config import OrgParams
from unijob.errors import SpecError, UsageError
from unijob.loading import load_spec

SPEC = """
name: ranker
image: python:3.11
command: ["python", "-c", "print(1)"]
resources:
  accelerator: {acc}
  nodes: {nodes}
spot:
  policy: {policy}
max_run: 24000
expected_duration: 6h
{extra}
"""


def _spec(tmp_path, acc="A100:8", nodes=4, policy="spot", extra="checkpoint:\n  uri: s3://b/ckpt"):
    p = tmp_path / "job.yaml"
    p.write_text(SPEC.format(acc=acc, nodes=nodes, policy=policy, extra=extra))
    return p


def _csv_rows():
    text = resources.files("unijob.cost").joinpath("data", "prices.csv").read_text()
    rows = [r for r in csv.reader(l for l in text.splitlines() if l and not l.startswith("#"))]
    head = rows[0]
    return {(r[0], r[1], r[2]): dict(zip(head, r)) for r in rows[1:]}


def test_every_price_row_has_source_and_date():
    for key, row in _csv_rows().items():
        assert row["source"].strip(), key
        assert len(row["as_of"]) == 10 and row["as_of"][4] == "-", key
        assert float(row["on_demand_usd_hour"]) > 0


@pytest.mark.parametrize("service, region, it", [
    ("sagemaker-training", r, i) for r in ("us-east-1", "us-west-2", "eu-west-1")
    for i in ("ml.p4d.24xlarge", "ml.p5.48xlarge", "ml.g5.xlarge", "ml.g5.2xlarge", "ml.g5.12xlarge")] + [
    ("ec2", r, i) for r in ("us-east-1", "us-west-2", "eu-west-1") for i in ("g5.2xlarge", "p4d.24xlarge", "p5.48xlarge")] + [
    (s, r, i) for s in ("vertex-training", "gce") for r in ("us-central1", "europe-west4")
    for i in ("a2-highgpu-1g", "a2-highgpu-8g", "a3-highgpu-8g", "g2-standard-4", "n1-standard-4", "gpu:T4")])
def test_catalog_covers_the_instances_examples_use(service, region, it):
    row = _csv_rows()[(service, region, it)]
    assert float(row["on_demand_usd_hour"]) > 0
    if service != "sagemaker-hosting":
        assert float(row["spot_usd_hour"]) < float(row["on_demand_usd_hour"])


def _daly(Ts, M, C, R):
    # written out independently of the module, from Daly (2006) FGCS 22(3)
    tau = math.sqrt(2 * C * M) * (1 + (1 / 3) * math.sqrt(C / (2 * M)) + (1 / 9) * (C / (2 * M))) - C
    return tau, M * math.exp(R / M) * (math.exp((tau + C) / M) - 1) * Ts / tau


def test_cost_json_recomputed_from_csv_rows(tmp_path):
    res = CliRunner().invoke(cost, [str(_spec(tmp_path)), "-o", "json", "--u", "150000"])
    assert res.exit_code == 0, res.output
    data = {r["target"]: r for r in json.loads(res.output)["targets"]}
    rows = _csv_rows()
    hours = 6.0
    # sagemaker: 4 x ml.p4d.24xlarge, managed spot, AWS defaults M_node = 3650 h, C = 120 s, R = 600 s
    sm = rows[("sagemaker-training", "us-east-1", "ml.p4d.24xlarge")]
    od, sp = float(sm["on_demand_usd_hour"]), float(sm["spot_usd_hour"])
    tau, tw = _daly(hours * 3600, 730 / 0.2 * 3600 / 4, 120, 600)
    s = data["sagemaker"]
    assert (s["instance_type"], s["instances"]) == ("ml.p4d.24xlarge", 4)
    assert s["on_demand_usd_hour"] == pytest.approx(od)
    assert s["checkpoint_interval_seconds"] == pytest.approx(tau)
    assert s["billed_usd"] == pytest.approx(sp * 4 * tw / 3600)
    assert s["total_usd"] == pytest.approx(sp * 4 * tw / 3600 / 0.8)
    # vertex: a2-highgpu-8g in us-central1, GCP defaults M_node = 160 h
    vx = rows[("vertex-training", "us-central1", "a2-highgpu-8g")]
    tau, tw = _daly(hours * 3600, 24 / 0.15 * 3600 / 4, 120, 600)
    assert data["vertex"]["billed_usd"] == pytest.approx(float(vx["spot_usd_hour"]) * 4 * tw / 3600)
    # kubernetes (EKS): p4d.24xlarge EC2 spot / eta_s + T/u per accelerator-hour
    ec2 = rows[("ec2", "us-east-1", "p4d.24xlarge")]
    tau, tw = _daly(hours * 3600, 730 / 0.2 * 3600 / 4, 120, 600)
    hw = float(ec2["spot_usd_hour"]) * 4 * tw / 3600
    # the fixed term F = T + the EKS control plane, $0.10/cluster-hour x 8760 h
    assert data["kubernetes"]["total_usd"] == pytest.approx(hw / 0.55 + 4 * 8 * hours * (440_000 + 876) / 150_000)
    # databricks on AWS: (VM + DBU/h x $/DBU) x (4 workers + driver)
    db = data["databricks"]
    assert db["instances"] == 5
    dbx = {(r[0], r[1], r[2]): float(r[3]) for r in csv.reader(
        ln for ln in resources.files("unijob.cost").joinpath("data", "databricks.csv").read_text().splitlines()
        if ln and not ln.startswith(("#", "kind,")))}
    assert db["on_demand_usd_hour"] == pytest.approx(float(ec2["on_demand_usd_hour"])
                                                     + dbx[("node", "aws", "p4d.24xlarge")] * dbx[("rate", "aws", "jobs_compute")])
    assert data["local"]["total_usd"] == 0
    cheapest = [t for t, r in data.items() if r["cheapest"]]
    assert cheapest == [min((r for r in data.values() if r["target"] != "local"), key=lambda r: r["total_usd"])["target"]]


def test_on_demand_and_explicit_instance_and_gcp_n1_gpu(tmp_path):
    extra = "targets:\n  vertex: {}\n"
    p = _spec(tmp_path, acc="T4:1", nodes=1, policy="on_demand", extra="")
    spec = load_spec(p, check_targets=False, check_paths=False).spec
    rows = {r.target: r for r in est.estimate(spec, ["vertex", "sagemaker"], OrgParams())}
    csvr = _csv_rows()
    v = rows["vertex"]
    assert v.instance_type == "n1-standard-4"
    assert v.on_demand_usd_hour == pytest.approx(float(csvr[("vertex-training", "us-central1", "n1-standard-4")]["on_demand_usd_hour"])
                                                 + float(csvr[("vertex-training", "us-central1", "gpu:T4")]["on_demand_usd_hour"]))
    assert v.billed_usd == pytest.approx(v.on_demand_usd_hour * 6)
    assert rows["sagemaker"].instance_type == "ml.g4dn.xlarge"


def test_young_and_daly():
    assert est.young_interval(60, 3600 * 10) == pytest.approx(math.sqrt(2 * 60 * 36000))
    assert est.daly_interval(60, 36000) < est.young_interval(60, 36000)
    assert est.daly_interval(10_000, 1000) == 1000  # C >= 2M: tau = M
    # expected wall time beats no checkpointing for a long job
    M = 3600 * 5
    assert est.expected_wall(36000, M, 60, 300, est.daly_interval(60, M)) < est.expected_wall(36000, M, 60, 300, None)


def test_preemption_override_from_org(tmp_path):
    spec = load_spec(_spec(tmp_path, nodes=1), check_targets=False, check_paths=False).spec
    org = OrgParams(preemption={"sagemaker": {"mtbp_hours": 2, "checkpoint_seconds": 30}})
    r = est.estimate_target(spec, "sagemaker", org)
    assert r.checkpoint_interval_seconds == pytest.approx(est.daly_interval(30, 7200))
    with pytest.raises(UsageError):
        est.estimate_target(spec, "sagemaker", OrgParams(preemption={"sagemaker": {"mtbp": 2}}))


def test_region_without_instance_is_exit_2(tmp_path):
    p = _spec(tmp_path, extra="targets:\n  sagemaker:\n    region: ap-south-1\n")
    res = CliRunner().invoke(cost, [str(p), "--targets", "sagemaker"])
    assert isinstance(res.exception, NoOffering) and res.exception.exit_code == 2
    assert "ap-south-1" in str(res.exception) and "priced in" in str(res.exception)


def test_accelerator_not_offered_is_exit_2_when_asked(tmp_path):
    p = _spec(tmp_path, acc="A10G:1", nodes=1)
    res = CliRunner().invoke(cost, [str(p), "--targets", "vertex"])
    assert isinstance(res.exception, NoOffering) and res.exception.exit_code == 2
    assert "A10G" in str(res.exception)
    # by default the row is shown as not offered and the others are priced
    res = CliRunner().invoke(cost, [str(p)])
    assert res.exit_code == 0 and "not offered" in res.output


def test_unknown_accelerator_and_target(tmp_path):
    res = CliRunner().invoke(cost, [str(_spec(tmp_path, acc="Z999:1"))])
    assert isinstance(res.exception, SpecError) and res.exception.exit_code == 2
    res = CliRunner().invoke(cost, [str(_spec(tmp_path)), "--targets", "sagemakr"])
    assert isinstance(res.exception, UsageError) and "sagemaker" in (res.exception.hint or "")
    res = CliRunner().invoke(cost, [str(_spec(tmp_path)), "--eta-s", "0"])
    assert isinstance(res.exception, UsageError)


def test_table_output_marks_cheapest(tmp_path):
    res = CliRunner().invoke(cost, [str(_spec(tmp_path))])
    assert res.exit_code == 0, res.output
    assert res.output.count("<- cheapest") == 1
    assert "Daly" in res.output
