"""The break-even against the seed (seed 000, section 5) and an independent computation."""

import json
import math

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from unijob.cli.cost_cmds import breakeven
from unijob.cost import breakeven as be
from unijob.errors import UsageError

# The seed's printed output, literally (seed 000, section 5, after Code 33.9.3). The stored seed text
# lost the f-string padding, so rows are compared with runs of spaces collapsed.
SEED_TEXT = """useful acc-hr/yr | self-managed $ | managed $ | cheaper
----------------------------------------------------------------------
2,000 | 483,636 | 48,000 | managed
10,000 | 658,182 | 240,000 | managed
50,000 | 1,530,909 | 1,200,000 | managed
150,000 | 3,712,727 | 3,600,000 | managed
400,000 | 9,167,273 | 9,600,000 | self
1,000,000 | 22,258,182 | 24,000,000 | self
3,000,000 | 65,894,545 | 72,000,000 | self
----------------------------------------------------------------------
break-even useful acc-hr/yr : 201,667
... about 23.0 accelerators running flat-out all year"""


def _norm(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.strip().splitlines()]


def _seed_program_output() -> str:
    """The seed's Code 33.9.3, run as written (the independent reference, padding included)."""
    raw_hour, eng_salary, team_size, util_self, markup, util_managed = 12.0, 220_000, 2.0, 0.55, 1.6, 0.80
    hours_year = 24 * 365
    lines = [f"{'useful acc-hr/yr':>16} | {'self-managed $':>16} | {'managed $':>14} | cheaper", "-" * 70]
    for u in [2_000, 10_000, 50_000, 150_000, 400_000, 1_000_000, 3_000_000]:
        s = u / util_self * raw_hour + eng_salary * team_size
        b = u / util_managed * (markup * raw_hour)
        lines.append(f"{u:>16,} | {s:>16,.0f} | {b:>14,.0f} | {'managed' if b < s else 'self'}")
    coef = raw_hour * (markup / util_managed - 1.0 / util_self)
    u_star = (eng_salary * team_size) / coef
    lines += ["-" * 70, f"break-even useful acc-hr/yr : {u_star:,.0f}",
              f" ... about {u_star / hours_year:,.1f} accelerators running flat-out all year"]
    return "\n".join(lines)


def test_cli_prints_the_seed_table_row_for_row():
    res = CliRunner().invoke(breakeven, [])
    assert res.exit_code == 0, res.output
    head = res.output.split("\n\n")[0]
    assert _norm(head) == _norm(SEED_TEXT)
    assert head == _seed_program_output()  # exact padding too


def test_explicit_seed_flags_match_defaults():
    args = ["--r", "12", "--salary", "220000", "--team-size", "2", "--eta-s", "0.55", "--markup", "1.6", "--eta-m", "0.80"]
    res = CliRunner().invoke(breakeven, args + ["-o", "json"])
    data = json.loads(res.output)
    assert round(data["u_star"]) == 201_667
    assert f"{data['accelerators_flat_out']:.1f}" == "23.0"
    assert [r["cheaper"] for r in data["rows"]] == ["managed"] * 4 + ["self"] * 3


def test_seed_sensitivity_exercise():
    p = be.BreakEvenParams.from_team(12, 220_000, 2, 0.55, 1.6, 0.80)
    s = be.sensitivity(p, 2.2)
    assert round(s["one_engineer_fewer"]) == round(220_000 / (12 * (1.6 / 0.8 - 1 / 0.55)))
    assert round(s["u_star_other_markup"]) == round(440_000 / (12 * (2.2 / 0.8 - 1 / 0.55)))
    assert s["eta_m_threshold"] == pytest.approx(0.88)
    assert any("managed is cheaper at every scale" in w for w in s["words"])


valid = dict(
    r=st.floats(0.01, 1000), T=st.floats(1, 1e8), eta_s=st.floats(0.01, 1.0), m=st.floats(0.1, 10), eta_m=st.floats(0.01, 1.0))


@settings(max_examples=300, deadline=None)
@given(**valid)
def test_u_star_matches_independent_formula(r, T, eta_s, m, eta_m):
    p = be.BreakEvenParams(r, T, eta_s, m, eta_m).validated()
    bracket = m / eta_m - 1 / eta_s
    got = be.u_star(p)
    # within the tolerance the bracket is a rounding residue: no break-even (managed never dearer)
    if bracket <= be.BRACKET_RTOL * max(m / eta_m, 1 / eta_s):
        assert got is None
        assert "managed is cheaper at every scale" in be.format_report(p)
    else:
        expect = T / (r * bracket)
        assert got == pytest.approx(expect, rel=1e-9)
        # the curves really meet there
        assert be.tco_self(got, p) == pytest.approx(be.tco_buy(got, p), rel=1e-6)
        assert "-" not in be.describe_u_star(p)[0].split(":")[1]


@settings(max_examples=100, deadline=None)
@given(**valid, u=st.floats(1, 1e7))
def test_cheaper_side_agrees_with_u_star(r, T, eta_s, m, eta_m, u):
    p = be.BreakEvenParams(r, T, eta_s, m, eta_m).validated()
    row = be.rows(p, [u])[0]
    us = be.u_star(p)
    if us is None:
        assert row.cheaper == "managed"
    elif not math.isclose(u, us, rel_tol=1e-6):
        assert row.cheaper == ("managed" if u < us else "self")


@pytest.mark.parametrize("args, word", [
    (["--r", "0"], "raw hour"), (["--r", "-3"], "raw hour"), (["--salary", "-1"], "salary"),
    (["--team-size", "0"], "team size"), (["--T", "0"], "team cost"), (["--eta-s", "0"], "eta_s"),
    (["--eta-s", "1.5"], "eta_s"), (["--eta-m", "-0.2"], "eta_m"), (["--markup", "0"], "markup"),
    (["--u", "-5"], "--u"),
])
def test_bad_parameters_are_usage_errors(args, word):
    res = CliRunner().invoke(breakeven, args)
    assert isinstance(res.exception, UsageError), res.output
    assert res.exception.exit_code == 2
    assert word in str(res.exception)


def test_user_u_side_and_team_cost_flag():
    res = CliRunner().invoke(breakeven, ["--T", "440000", "--u", "300,000"])
    assert res.exit_code == 0
    assert "above the break-even of 201,667: self-managed is cheaper" in res.output
    assert "give --salary and --team-size" in res.output


def test_plot_without_matplotlib_exits_3(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_mpl(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    res = CliRunner().invoke(breakeven, ["--plot", str(tmp_path / "x.png")])
    assert res.exception is not None and res.exception.exit_code == 3
    assert "pip install 'unijob[plot]'" in str(res.exception)
