"""The cost library: break-even from the catalog, the +-20% sensitivity, self-managed pricing that
`cost`, `breakeven` and `--target auto` share, the plot, and the callable `unijob.cost`."""

import json
import math
import struct
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

import unijob.cost
from unijob.cli.cost_cmds import breakeven as breakeven_cmd
from unijob.cost import breakeven as be
from unijob.cost import prices, report
from unijob.cost.auto import choose_target, crossover
from unijob.cost.config import OrgParams, load_org
from unijob.errors import UsageError
from unijob.spec import JobSpec


def _job(acc="A100:8", nodes=2, hours="10h", targets=None):
    return JobSpec.model_validate({"name": "big", "image": "python:3.11", "command": ["true"],
                                   "resources": {"accelerator": acc, "nodes": nodes}, "expected_duration": hours,
                                   "targets": targets or {}})


# ---- the seed stays the default --------------------------------------------------------------

def test_seed_figures_without_a_workload():
    rep = report.breakeven()
    assert round(rep.u_star) == 201_667 and f"{rep.u_star / 8760:.1f}" == "23.0"
    assert rep.sources["r"].startswith("seed 000") and rep.sources["m"].startswith("seed 000")
    ex = rep.exercise
    assert round(ex["one_engineer_fewer"]) == 100_833 and round(ex["u_star_other_markup"]) == 39_350


def test_bracket_residue_is_no_break_even_and_a_real_gap_is_not():
    # 1.6/0.88 - 1/0.55 is 2.2e-16 in floating point: a rounding residue, not a break-even at 1.6e20
    rep = report.breakeven(eta_m=0.88)
    assert rep.u_star is None and rep.bracket == 0.0
    out = CliRunner().invoke(breakeven_cmd, ["--eta-m", "0.88"]).output
    assert "none: managed is cheaper at every scale" in out and "165,131" not in out
    assert report.breakeven(eta_m=0.8799).u_star == pytest.approx(
        440_000 / (12 * (1.6 / 0.8799 - 1 / 0.55)))  # just below the threshold: a finite, huge u*
    assert report.breakeven(eta_m=0.8801).u_star is None


def test_sensitivity_moves_each_parameter_20pct_largest_effect_first():
    rep = report.breakeven()
    got = {s.param: s for s in rep.sensitivity}
    assert set(got) == {"T", "r", "m", "eta_s", "eta_m"}
    p = rep.params
    assert got["T"].u_high == pytest.approx(be.u_star(be.BreakEvenParams(12, 440_000 * 1.2, 0.55, 1.6, 0.8)))
    assert got["r"].u_low == pytest.approx(be.u_star(be.BreakEvenParams(12 * 0.8, 440_000, 0.55, 1.6, 0.8)))
    assert got["m"].u_low is None  # 1.28/0.8 = 1.6 < 1/0.55: the decision flips
    effects = [s.effect for s in rep.sensitivity]
    assert effects == sorted(effects, reverse=True) and math.isinf(effects[0])
    assert rep.sensitivity[-1].param == "T" and p.team_cost == 440_000


# ---- break-even from the catalog -------------------------------------------------------------

def test_catalog_breakeven_takes_r_and_m_from_the_rows():
    # eta_s = 0.75: with the seed's 0.55 a 1.15 markup never breaks even (the test below)
    rep = report.breakeven(accelerator="H100:8", managed="sagemaker", self_target="kubernetes",
                           org=OrgParams(eta_s=0.75))
    ec2 = prices.price("ec2", "us-east-1", "p5.48xlarge").on_demand
    sm = prices.price("sagemaker-training", "us-east-1", "ml.p5.48xlarge").on_demand
    p = rep.params
    assert p.raw_hour == pytest.approx(ec2 / 8) and p.markup == pytest.approx(sm / ec2)
    assert p.team_cost == pytest.approx(440_000 + 0.10 * 8760)  # T + the EKS control plane
    assert rep.u_star == pytest.approx(p.team_cost / (p.raw_hour * (p.markup / 0.8 - 1 / 0.75)))
    assert "p5.48xlarge" in rep.sources["r"] and "https://aws.amazon.com/ec2/pricing" in rep.sources["r"]
    assert "ml.p5.48xlarge" in rep.sources["m"] and "EKS" in rep.sources["T"]
    assert rep.estimate and rep.catalog["estimated_params"] == ["m"]  # training = hosting price: derived
    text = rep.format()
    assert "~1.15" in text and "largest effect first" in text


def test_catalog_breakeven_at_the_seed_utilizations_says_managed_wins_everywhere():
    rep = report.breakeven(accelerator="H100:8", managed="sagemaker", self_target="kubernetes")
    assert rep.params.markup == pytest.approx(63.296 / 55.04) and rep.u_star is None
    assert "none: managed is cheaper at every scale" in rep.format()
    data = rep.as_dict()
    assert data["catalog"]["region"] == "us-east-1" and data["sources"]["r"] == rep.sources["r"]


def test_catalog_breakeven_vertex_prices_kubernetes_on_gke_same_region():
    rep = report.breakeven(accelerator="A100:8", managed="vertex", region="europe-west4")
    assert rep.catalog["self_row"]["instance_type"] == "a2-highgpu-8g"
    assert rep.catalog["self_row"]["region"] == rep.catalog["managed_row"]["region"] == "europe-west4"
    assert rep.params.raw_hour == pytest.approx(29.984 / 8) and rep.params.markup == pytest.approx(1.15)
    assert "GKE" in rep.sources["T"]


def test_catalog_breakeven_errors_exit_2():
    with pytest.raises(UsageError, match="--accelerator"):
        report.breakeven(managed="sagemaker")
    with pytest.raises(UsageError):
        report.breakeven(accelerator="H100:8", self_target="sagemaker")
    res = CliRunner().invoke(breakeven_cmd, ["--accelerator", "H1000:8"])
    assert isinstance(res.exception, UsageError) and res.exception.exit_code == 2 and "H100" in str(res.exception)


def test_cost_breakeven_and_auto_agree_on_one_organisation():
    """The issue's case: one organisation, a 2 x A100:8 job. Auto's crossover, breakeven's u* and the
    point where `cost`'s totals meet are the same number."""
    org = OrgParams(useful_hours=100_000, eta_s=0.75)  # at the seed's 0.55 SageMaker wins at every u
    spec = _job()
    u_be = report.breakeven(accelerator="A100:8", managed="sagemaker", self_target="kubernetes", org=org).u_star
    assert crossover(spec, "kubernetes", "sagemaker", org) == pytest.approx(u_be, rel=1e-9)
    choice = choose_target(spec, ["sagemaker", "kubernetes"], org)
    assert f"u* = {u_be:,.0f}" in choice.reasons[1]
    at = OrgParams(useful_hours=u_be, eta_s=0.75)
    rows = {r.target: r for r in report.cost(spec, targets=["sagemaker", "kubernetes"], org=at).rows}
    assert rows["kubernetes"].total_usd == pytest.approx(rows["sagemaker"].total_usd, rel=1e-9)


def test_slurm_and_ray_priced_by_the_same_self_managed_model():
    spec = _job(targets={"slurm": {"cloud": "gcp"}})
    org = OrgParams(useful_hours=50_000)
    rows = {r.target: r for r in report.cost(spec, targets=["kubernetes", "slurm", "ray"], org=org).rows}
    k, s, r = rows["kubernetes"], rows["slurm"], rows["ray"]
    assert r.instance_type == k.instance_type == "p4d.24xlarge" and r.billed_usd == pytest.approx(k.billed_usd)
    assert k.fixed_usd_year == pytest.approx(org.T + 876) and r.fixed_usd_year == org.T  # no control plane on VMs
    assert s.instance_type == "a2-highgpu-8g" and s.region == "us-central1"
    assert all(x.self_managed and x.utilization == org.eta_s for x in (k, s, r))


OWNED = """[cost]
useful_hours = 200000
[cost.self_managed.slurm]
hardware = "owned"
accelerator = "H100"
accelerators_per_node = 8
node_price_usd = 280000
years = 4
power_kw = 10.2
usd_per_kwh = 0.12
pue = 1.3
colocation_usd_per_node_year = 12000
"""


def test_owned_hardware_from_unijob_toml(tmp_path, monkeypatch):
    (tmp_path / "unijob.toml").write_text(OWNED)
    monkeypatch.chdir(tmp_path)
    org = load_org()
    per_year = 280000 / 4 + 10.2 * 8760 * 0.12 * 1.3 + 12000
    r = per_year / 8760 / 8
    rep = report.breakeven(accelerator="H100:8", managed="sagemaker", self_target="slurm", org=org)
    assert rep.params.raw_hour == pytest.approx(r) and rep.params.team_cost == org.T
    assert rep.catalog["self_hardware"] == "owned" and "owned node" in rep.sources["r"]
    row = report.cost(_job("H100:8", 2), targets=["slurm"], org=org).rows[0]
    assert row.on_demand_usd_hour == pytest.approx(per_year / 8760)
    assert row.total_usd == pytest.approx(row.billed_usd / 0.55 + 2 * 8 * 10 * org.T / 200_000)
    # an accelerator the owned nodes do not carry: not offered, said why
    rows = report.cost(_job("A100:8", 1), org=org).rows
    sl = next(x for x in rows if x.target == "slurm")
    assert not sl.available and "carry H100" in sl.reason


def test_bad_self_managed_config_names_the_file_and_key(tmp_path, monkeypatch):
    (tmp_path / "unijob.toml").write_text("[cost.self_managed.slurm]\nhardware = 'owned'\nnode_price = 1\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=r"unijob.toml.*\[cost.self_managed.slurm\].*node_price"):
        load_org()


# ---- the picture -----------------------------------------------------------------------------

def test_plot_png_and_svg_are_valid_images(tmp_path):
    pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")
    png, svg = tmp_path / "be.png", tmp_path / "be.svg"
    res = CliRunner().invoke(breakeven_cmd, ["-a", "H100:8", "--u", "150000", "--plot", str(png)])
    assert res.exit_code == 0, res.output
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    w, h = struct.unpack(">II", head[16:24])
    assert 400 <= w <= 3000 and 300 <= h <= 2000
    rep = report.breakeven(plot=svg, useful_hours=150_000)
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg") and float(root.get("width").rstrip("pt")) > 200
    text = svg.read_text()
    assert "201,667" in text and "150,000" in text and rep.plot == str(svg)  # u* and your u are drawn
    with pytest.raises(UsageError, match=".png or .svg"):
        report.breakeven(plot=tmp_path / "be.jpg")


# ---- the library -----------------------------------------------------------------------------

def test_unijob_cost_is_callable_and_its_submodules_import(tmp_path):
    import unijob.cost.catalog as cat

    assert cat.instance_for("ec2", "A100", 8).instance_type == "p4d.24xlarge"
    spec = tmp_path / "job.yaml"
    spec.write_text("name: j\nimage: python:3.11\ncommand: [python]\nresources: {accelerator: 'A100:8', nodes: 2}\n")
    rep = unijob.cost(spec, targets=["sagemaker", "kubernetes"])
    assert isinstance(rep, report.CostReport) and [r.target for r in rep.rows] == ["sagemaker", "kubernetes"]
    assert rep.cheapest is not None and json.loads(json.dumps(rep.as_dict(), default=str))["name"] == "j"
    assert unijob.cost(_job(), targets=["vertex"]).rows[0].instance_type == "a2-highgpu-8g"


def test_auto_names_the_breakeven_command_that_prints_its_u_star(tmp_path, monkeypatch):
    import re
    import shlex

    from unijob.cost.config import load_org

    # the organisation in unijob.toml, which both `--target auto` and the named command read
    (tmp_path / "unijob.toml").write_text("[cost]\nuseful_hours = 100000\neta_s = 0.75\n")
    monkeypatch.chdir(tmp_path)
    org = load_org()
    choice = choose_target(_job(), ["sagemaker", "kubernetes"], org)
    cmd = re.search(r"\((unijob breakeven [^)]*)\)", choice.reasons[1]).group(1)
    res = CliRunner().invoke(breakeven_cmd, shlex.split(cmd)[2:] + ["-o", "json"])
    assert res.exit_code == 0, res.output
    u_be = json.loads(res.output)["u_star"]
    assert f"u* = {u_be:,.0f}" in choice.reasons[1]
