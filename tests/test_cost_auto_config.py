"""`--target auto` on both sides of u*, and organisation parameters from unijob.toml / pyproject."""

import pytest

from unijob.cost.auto import choose_target
from unijob.cost.config import OrgParams, load_org
from unijob.cost.estimate import estimate
from unijob.errors import NotReady, UsageError
from unijob.spec import JobSpec


def _spec(policy="on_demand"):
    return JobSpec.model_validate({"name": "ranker", "image": "python:3.11", "command": ["true"],
                                   "resources": {"accelerator": "A100:8", "nodes": 4},
                                   "spot": {"policy": policy}, "expected_duration": "10h"})


def _crossover(spec, org):
    rows = {r.target: r for r in estimate(spec, ["sagemaker", "kubernetes"], org)}
    k, s = rows["kubernetes"], rows["sagemaker"]
    acc_h = k.instances * k.accelerators_per_instance * k.hours
    # F = T + the EKS control plane ($0.10/cluster-hour x 8760 h), the self-managed fixed term
    return acc_h * (org.T + 876) / (s.total_usd - k.billed_usd / org.eta_s)


def test_below_u_star_goes_managed_above_goes_own_cluster():
    # ml.p4d = 1.15 x EC2 p4d since the June 2025 cut: with the seed's eta_s = 0.55 and eta_m = 0.80 managed
    # wins at every u (1.15/0.80 < 1/0.55), so this organisation runs its own cluster at 75% utilization
    spec = _spec()
    u_star = _crossover(spec, OrgParams(useful_hours=1, eta_s=0.75))
    assert u_star > 0
    low = choose_target(spec, ["sagemaker", "kubernetes"], OrgParams(useful_hours=u_star * 0.5, eta_s=0.75))
    high = choose_target(spec, ["sagemaker", "kubernetes"], OrgParams(useful_hours=u_star * 2, eta_s=0.75))
    assert low.target == "sagemaker" and high.target == "kubernetes"
    assert low.costs["sagemaker"] < low.costs["kubernetes"]
    assert high.costs["kubernetes"] < high.costs["sagemaker"]
    assert len(low.reasons) == 2 and "below" in low.reasons[1]
    assert "above" in high.reasons[1]
    assert f"{u_star:,.0f}" in high.reasons[1]


def test_seed_utilizations_keep_sagemaker_at_every_u_since_the_price_cut():
    spec = _spec()
    assert _crossover(spec, OrgParams(useful_hours=1)) < 0  # the totals never meet at a positive u
    for u in (1e4, 1e6, 1e8):
        c = choose_target(spec, ["sagemaker", "kubernetes"], OrgParams(useful_hours=u))
        assert c.target == "sagemaker" and "sagemaker wins at every u" in c.reasons[1]


def test_no_u_leaves_kubernetes_out_and_local_alone():
    c = choose_target(_spec(), ["sagemaker", "kubernetes"], OrgParams())
    assert c.target == "sagemaker" and any("useful_hours" in r for r in c.reasons)
    assert choose_target(_spec(), ["local"], OrgParams()).target == "local"
    with pytest.raises(NotReady) as e:  # exit 3, with every target and why
        choose_target(_spec(), [], OrgParams(), skipped={"sagemaker": "not ready: no AWS region"})
    assert e.value.exit_code == 3 and "sagemaker: not ready: no AWS region" in str(e.value)


def test_config_from_unijob_toml_and_pyproject(tmp_path, monkeypatch):
    (tmp_path / "unijob.toml").write_text("[cost]\nraw_hour = 3.0\nteam_cost = 300000\nuseful_hours = 5e4\n"
                                          "[cost.regions]\naws = 'eu-west-1'\n")
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    org = load_org(sub)
    assert (org.raw_hour, org.T, org.useful_hours, org.regions["aws"]) == (3.0, 300000, 5e4, "eu-west-1")
    assert org.regions["gcp"] == "us-central1" and org.source.endswith("unijob.toml")
    assert org.with_overrides(salary=100000, team_size=1).T == 100000  # flags beat the file
    other = tmp_path / "p"
    other.mkdir()
    (other / "pyproject.toml").write_text("[project]\nname='x'\n[tool.unijob.cost]\neta_s = 0.7\n")
    assert load_org(other).eta_s == 0.7
    (other / "pyproject.toml").write_text("[tool.unijob.cost]\neta_ss = 0.7\n")
    with pytest.raises(UsageError, match="did you mean 'eta_s'"):
        load_org(other)


def test_config_defaults_are_the_seed():
    org = OrgParams()
    p = org.breakeven_params()
    assert (p.raw_hour, p.team_cost, p.eta_s, p.markup, p.eta_m) == (12.0, 440000.0, 0.55, 1.6, 0.8)


# ---- --target auto through the CLI: installed, ready, able to run the spec -------------------

AUTO_SPEC = """name: big
image: python:3.11
command: ["python", "-c", "print(1)"]
resources:
  accelerator: {acc}
  nodes: 2
expected_duration: 10h
"""


def _auto_plan(tmp_path, capsys, acc="A100:8"):
    from unijob.cli.main import main

    p = tmp_path / "job.yaml"
    p.write_text(AUTO_SPEC.format(acc=acc) if acc else
                 AUTO_SPEC.replace("  accelerator: {acc}\n", "") + "targets:\n  local: {run_image_command: true}\n")
    code = main(["plan", str(p), "--target", "auto"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_auto_on_a_core_install_never_plans_gpus_on_a_gpu_less_machine(tmp_path, capsys, monkeypatch):
    from unijob import registry
    from unijob.cost import auto

    monkeypatch.setattr(registry, "names", lambda: ["local"])  # a core install: only the local target
    monkeypatch.setattr(auto, "local_gpus", lambda: 0)
    code, out, err = _auto_plan(tmp_path, capsys)
    assert code == 3, out + err
    assert "no installed, ready target can run this spec" in err and "local: this machine has 0 GPUs" in err
    assert "not installed" not in err
    code, out, err = _auto_plan(tmp_path, capsys, acc=None)  # a CPU job runs locally
    assert code == 0 and "target:     local" in out and "local is the only target" in err


def test_auto_says_which_targets_it_skipped_and_why(tmp_path, capsys, monkeypatch):
    from unijob import registry
    from unijob.contract import Readiness
    from unijob.cost import auto

    installed = [n for n in registry.names() if n in ("local", "sagemaker", "vertex", "kubernetes")]
    monkeypatch.setattr(auto, "local_gpus", lambda: 0)
    ready = {"vertex"}

    def probe(name, spec, _orig=auto._probe):
        if name in ready:
            return None
        return _orig(name, spec) if name == "local" else f"not ready: no credentials for {name}"

    monkeypatch.setattr(registry, "names", lambda: installed)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "demo")
    monkeypatch.setenv("CLOUD_ML_REGION", "us-central1")
    monkeypatch.setattr(auto, "_probe", probe)
    if "vertex" not in installed:
        pytest.skip("the vertex adapter is not installed")
    code, out, err = _auto_plan(tmp_path, capsys)
    assert code == 0, err
    assert "target:     vertex" in out and "vertex is cheapest" in err
    assert "skipped:" in err and "local (this machine has 0 GPUs" in err
    assert Readiness  # the contract type the adapters answer check() with
