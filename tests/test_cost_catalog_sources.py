"""Every row of both catalog files names its source and the date it was read, and is marked an assumption exactly
when it is one; the Databricks rates and node DBU/h against the figures they were checked with."""

import csv
import datetime as dt
from importlib import resources

import pytest

from unijob.cost import estimate as est
from unijob.cost import prices
from unijob.cost.config import OrgParams
from unijob.errors import UsageError
from unijob.spec import JobSpec

MARKS = ("assumption", "unverified")


def _rows(name):
    text = resources.files("unijob.cost").joinpath("data", name).read_text(encoding="utf-8")
    return list(csv.DictReader(ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")))


PRICES, DBX = _rows("prices.csv"), _rows("databricks.csv")


def _read_on(row):
    day = dt.date.fromisoformat(row["as_of"])  # raises on anything but YYYY-MM-DD
    assert dt.date(2020, 1, 1) <= day <= dt.date.today(), row
    return day


def test_every_price_row_is_dated_and_marked_as_what_it_rests_on():
    for row in PRICES:
        key = (row["service"], row["region"], row["instance_type"])
        _read_on(row)
        marked = row["source"].strip().lower().startswith(MARKS)
        # a row is either read somewhere (published), computed by a written rule (derived) or marked, never two
        assert marked == (row["basis"] == "assumption"), key
        if row["basis"] == "published":
            assert "http" in row["source"] or "api" in row["source"].lower(), key


def test_every_databricks_row_is_dated_and_either_sourced_or_marked():
    rates = prices.databricks()
    for row in DBX:
        key = (row["kind"], row["cloud"], row["key"])
        assert row["kind"] in ("rate", "node") and float(row["value"]) > 0, key
        _read_on(row)
        marked = row["source"].strip().lower().startswith(MARKS)
        assert rates.estimate(*key) == marked, key  # what `unijob cost` marks with ~ is what the file marks
        if not marked:
            assert "http" in row["source"] and "read 20" in row["source"], key


@pytest.mark.parametrize("cloud", ["aws", "azure", "gcp"])
def test_databricks_rates_cover_the_compute_types_per_cloud(cloud):
    rates = prices.databricks()
    for ctype in ("jobs_compute", "all_purpose_compute", "jobs_serverless", "model_serving"):
        assert (cloud, ctype) in rates.usd_per_dbu, (cloud, ctype)
        assert not rates.estimate("rate", cloud, ctype)
    assert rates.usd_per_dbu[(cloud, "jobs_compute")] < rates.usd_per_dbu[(cloud, "all_purpose_compute")]


# Checked figures (read 2026-11-30): rates from the stored databrickspricing.pages.dev tables, DBU/h from the
# Hourly_DBUs column of databrickslabs/overwatch's AWS_Instance_Details.csv.
@pytest.mark.parametrize("kind, cloud, key, value, where", [
    ("rate", "aws", "jobs_compute", 0.15, "databrickspricing.pages.dev"),
    ("rate", "azure", "jobs_compute", 0.30, "databrickspricing.pages.dev"),
    ("rate", "aws", "jobs_serverless", 0.37, "databrickspricing.pages.dev"),
    ("rate", "azure", "model_serving", 0.08, "databrickspricing.pages.dev"),
    ("node", "aws", "m5.xlarge", 0.69, "databrickslabs/overwatch"),
    ("node", "aws", "g5.xlarge", 1.36, "databrickslabs/overwatch"),
    ("node", "aws", "p4d.24xlarge", 44.45, "databrickslabs/overwatch"),
])
def test_databricks_rows_carry_the_checked_figure(kind, cloud, key, value, where):
    row = next(r for r in DBX if (r["kind"], r["cloud"], r["key"]) == (kind, cloud, key))
    assert float(row["value"]) == pytest.approx(value) and where in row["source"]


def test_databricks_p5_dbu_stays_marked_with_the_reason():
    rates = prices.databricks()
    assert rates.dbu_per_hour[("aws", "p5.48xlarge")] == pytest.approx(88.91)
    assert rates.estimate("node", "aws", "p5.48xlarge") and "5.67" in rates.sources[("node", "aws", "p5.48xlarge")]


def test_databricks_serverless_compute_type_is_refused_not_priced_per_node():
    spec = JobSpec.model_validate({"name": "j", "image": "python:3.11", "resources": {"accelerator": "A10G:1"}})
    org = OrgParams(databricks={"compute_type": "jobs_serverless"})
    with pytest.raises(UsageError, match="serverless.*includes the compute"):
        est.estimate(spec, ["databricks"], org)
    row = est.estimate(spec, ["databricks"], OrgParams(databricks={"compute_type": "all_purpose_compute"}))[0]
    ec2 = prices.price("ec2", "us-east-1", row.instance_type).on_demand
    dbu_h = prices.databricks().dbu_per_hour[("aws", row.instance_type)]
    assert row.on_demand_usd_hour == pytest.approx(ec2 + dbu_h * 0.55)
