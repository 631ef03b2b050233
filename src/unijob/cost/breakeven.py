"""The build-versus-buy break-even: self-managed cluster against a managed platform (TCO per year).

Source: seed 000 ("A Managed Cluster, Spun Up and Forgotten by Friday"), section 5, "The
Break-Even: When Buying Stops Being Cheaper", and its Code 33.9.3. With

- ``u``     useful accelerator-hours per year,
- ``r``     raw hardware cost, USD per accelerator-hour,
- ``T``     fixed annual cost of the platform team, USD per year (salary x team size),
- ``eta_s`` self-managed utilization, in (0, 1],
- ``m``     managed markup over raw hardware (managed USD/h = m x r),
- ``eta_m`` managed utilization, in (0, 1],

the two totals are ``C_self(u) = u / eta_s * r + T`` and ``C_buy(u) = u / eta_m * m * r``, and they
cross at ``u* = T / (r (m / eta_m - 1 / eta_s))``, which exists only when the bracket is positive.
When it is not, managed is cheaper at every scale and no break-even exists (never reported as a
negative number). The bracket turns non-positive at ``eta_m >= m * eta_s``; it is compared with a
relative tolerance (:data:`BRACKET_RTOL` of the larger rate), so a rounding residue such as
``1.6/0.88 - 1/0.55 = 2.2e-16`` counts as zero: "no break-even" exactly when managed is never dearer.

The table and its rounding are the seed's, row for row: whole dollars with thousands separators,
``'managed' if C_buy < C_self else 'self'``, and ``u* / 8760`` accelerators running flat out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Optional, Sequence

from unijob.errors import UsageError

#: Hours in a (non-leap) year, as in the seed's Code 33.9.3 (``hours_year = 24 * 365``).
HOURS_PER_YEAR = 24 * 365

#: The seed's table rows (useful accelerator-hours per year), Code 33.9.3.
SEED_U_ROWS: tuple[int, ...] = (2_000, 10_000, 50_000, 150_000, 400_000, 1_000_000, 3_000_000)

#: The markup the seed's exercise 33.9.2(b) asks about.
SEED_OTHER_MARKUP = 2.2

#: Relative tolerance of the bracket: |m/eta_m - 1/eta_s| below this fraction of the larger rate is zero.
BRACKET_RTOL = 1e-9


@dataclass(frozen=True)
class BreakEvenParams:
    """Organisation parameters of the break-even (seed 000, section 5).

    Attributes:
        raw_hour: r, USD per raw accelerator-hour (> 0).
        team_cost: T, USD per year for the platform team (> 0).
        eta_s: self-managed utilization, in (0, 1].
        markup: m, managed USD/h = m x r (> 0).
        eta_m: managed utilization, in (0, 1].
        salary: fully-loaded USD per engineer per year, when T was given as salary x team size.
        team_size: engineers in the platform team, when T was given as salary x team size.
    """

    raw_hour: float
    team_cost: float
    eta_s: float
    markup: float
    eta_m: float
    salary: Optional[float] = None
    team_size: Optional[float] = None

    @classmethod
    def from_team(cls, raw_hour: float, salary: float, team_size: float, eta_s: float, markup: float,
                  eta_m: float) -> "BreakEvenParams":
        """T = salary x team size (the seed's ``eng_salary * team_size``)."""
        _positive("salary", salary)
        _positive("team size", team_size)
        return cls(raw_hour, salary * team_size, eta_s, markup, eta_m, salary, team_size).validated()

    def validated(self) -> "BreakEvenParams":
        """Check every parameter; returns self.

        Raises:
            UsageError: a zero or negative parameter, or a utilization outside (0, 1].
        """
        _positive("raw hour price r (USD per accelerator-hour)", self.raw_hour)
        _positive("platform team cost T (USD per year)", self.team_cost)
        _positive("markup m", self.markup)
        _utilization("eta_s (self-managed utilization)", self.eta_s)
        _utilization("eta_m (managed utilization)", self.eta_m)
        if self.salary is not None:
            _positive("salary", self.salary)
        if self.team_size is not None:
            _positive("team size", self.team_size)
        return self


def _positive(name: str, value: float) -> None:
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise UsageError(f"{name} must be a positive number, got {value!r}")


def _utilization(name: str, value: float) -> None:
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value <= 1:
        raise UsageError(f"{name} must be in (0, 1] (a fraction, e.g. 0.55 for 55%), got {value!r}")


def tco_self(u: float, p: BreakEvenParams) -> float:
    """C_self(u) = u / eta_s * r + T, USD per year (seed 000, section 5)."""
    return u / p.eta_s * p.raw_hour + p.team_cost


def tco_buy(u: float, p: BreakEvenParams) -> float:
    """C_buy(u) = u / eta_m * m * r, USD per year (seed 000, section 5)."""
    return u / p.eta_m * (p.markup * p.raw_hour)


def bracket(p: BreakEvenParams) -> float:
    """m / eta_m - 1 / eta_s: the managed marginal rate's excess over the self-managed one, per r;
    exactly 0.0 when within :data:`BRACKET_RTOL` of zero (rounding residue)."""
    a, b = p.markup / p.eta_m, 1.0 / p.eta_s
    d = a - b
    return 0.0 if abs(d) <= BRACKET_RTOL * max(abs(a), abs(b)) else d


def u_star(p: BreakEvenParams) -> Optional[float]:
    """u* = T / (r (m / eta_m - 1 / eta_s)), useful accelerator-hours per year; ``None`` when the
    bracket is non-positive within tolerance (managed is never dearer)."""
    br = bracket(p)
    if br <= 0:
        return None
    return p.team_cost / (p.raw_hour * br)


def params_from_rows(self_row, managed_row, eta_s: float, eta_m: float) -> BreakEvenParams:
    """The break-even parameters two priced runs of the same job imply
    (:class:`unijob.cost.estimate.TargetCost` rows): r = self-managed billed USD per accelerator-hour,
    m = managed billed / self-managed billed, T = the self-managed fixed term F (team + control plane).

    ``unijob breakeven --accelerator``, ``unijob cost`` and ``--target auto`` all compute u* this way,
    so they agree.
    """
    acc_h = self_row.accelerator_hours
    r = self_row.billed_usd / acc_h
    m = managed_row.billed_usd / self_row.billed_usd
    return BreakEvenParams(r, self_row.fixed_usd_year, eta_s, m, eta_m).validated()


def eta_m_threshold(p: BreakEvenParams) -> float:
    """The managed utilization at and above which the bracket is non-positive: eta_m = m x eta_s."""
    return p.markup * p.eta_s


@dataclass(frozen=True)
class Row:
    """One row of the TCO table: ``u`` and both totals in USD per year."""

    u: float
    self_managed: float
    managed: float

    @property
    def cheaper(self) -> str:
        """``'managed'`` if C_buy < C_self else ``'self'`` (the seed's rule; a tie is 'self')."""
        return "managed" if self.managed < self.self_managed else "self"


def rows(p: BreakEvenParams, us: Sequence[float] = SEED_U_ROWS) -> list[Row]:
    """The TCO table at each ``u``."""
    return [Row(u, tco_self(u, p), tco_buy(u, p)) for u in us]


RULE = "-" * 70


def _fmt_u(u: float) -> str:
    return f"{int(u):,}" if float(u).is_integer() else f"{u:,.1f}"


def format_table(table: Sequence[Row]) -> str:
    """The table exactly as the seed's Code 33.9.3 prints it (header, rule, rows)."""
    lines = [f"{'useful acc-hr/yr':>16} | {'self-managed $':>16} | {'managed $':>14} | cheaper", RULE]
    for r in table:
        lines.append(f"{_fmt_u(r.u):>16} | {r.self_managed:>16,.0f} | {r.managed:>14,.0f} | {r.cheaper}")
    return "\n".join(lines)


def describe_u_star(p: BreakEvenParams) -> list[str]:
    """The seed's two crossover lines, or the words for a non-positive bracket."""
    us = u_star(p)
    if us is None:
        return ["break-even useful acc-hr/yr : none: managed is cheaper at every scale",
                f" ... the managed marginal rate m/eta_m = {p.markup / p.eta_m:.3f} does not exceed "
                f"the self-managed 1/eta_s = {1 / p.eta_s:.3f}"]
    return [f"break-even useful acc-hr/yr : {us:,.0f}",
            f" ... about {us / HOURS_PER_YEAR:,.1f} accelerators running flat-out all year"]


def side(p: BreakEvenParams, u: float) -> str:
    """Which side of the line ``u`` falls on, in words."""
    us = u_star(p)
    s, b = tco_self(u, p), tco_buy(u, p)
    cheaper = "managed" if b < s else "self-managed"
    where = ("no break-even exists, managed wins at every scale" if us is None
             else f"{'below' if u < us else 'above' if u > us else 'at'} the break-even of {us:,.0f}")
    return (f"your u = {_fmt_u(u)} useful acc-hr/yr is {where}: {cheaper} is cheaper "
            f"(self-managed ${s:,.0f} vs managed ${b:,.0f} per year)")


def sensitivity(p: BreakEvenParams, other_markup: float = SEED_OTHER_MARKUP) -> dict:
    """The seed's exercise 33.9.2: u* with one engineer fewer, with another markup, and the eta_m at
    which the bracket turns non-positive.

    Returns:
        dict with ``one_engineer_fewer`` (u* or None; absent when T was given directly),
        ``other_markup``/``u_star_other_markup``, ``eta_m_threshold`` and ``words`` (lines for people).
    """
    base = u_star(p)
    out: dict = {"u_star": base, "other_markup": other_markup, "eta_m_threshold": eta_m_threshold(p)}
    words: list[str] = []

    def say(us: Optional[float]) -> str:
        return "no break-even (managed is cheaper at every scale)" if us is None else f"u* = {us:,.0f}"

    def move(us: Optional[float]) -> str:
        if us is None or base is None:
            return ""
        d = us - base
        return f" ({'+' if d >= 0 else '-'}{abs(d):,.0f}, {d / base:+.0%})"

    if p.salary is not None and p.team_size is not None:
        fewer = p.team_size - 1
        if fewer <= 0:
            out["one_engineer_fewer"] = 0.0
            words.append(f"with one engineer fewer ({fewer:g}): no platform team, so self-managed "
                         "is cheaper from the first hour when its marginal rate is lower (u* = 0)")
        else:
            us1 = u_star(replace(p, team_cost=p.team_cost - p.salary, team_size=fewer))
            out["one_engineer_fewer"] = us1
            words.append(f"with one engineer fewer ({fewer:g}): {say(us1)}{move(us1)}")
    else:
        out["one_engineer_fewer"] = None
        words.append("with one engineer fewer: give --salary and --team-size instead of --team-cost to see it")
    usm = u_star(replace(p, markup=other_markup))
    out["u_star_other_markup"] = usm
    words.append(f"with markup {other_markup:g} instead of {p.markup:g}: {say(usm)}{move(usm)}")
    thr = eta_m_threshold(p)
    if thr <= 1:
        words.append(f"if the managed platform reaches eta_m >= {thr:.2f} (= m x eta_s = {p.markup:g} x "
                     f"{p.eta_s:g}), the bracket m/eta_m - 1/eta_s is non-positive: managed is cheaper "
                     "at every scale and no break-even exists")
    else:
        words.append(f"managed would need eta_m >= {thr:.2f} (= m x eta_s) to win at every scale, which "
                     "is above 100%: at this markup a break-even always exists")
    out["words"] = words
    return out


def report(p: BreakEvenParams, us: Sequence[float] = SEED_U_ROWS, u: Optional[float] = None,
           other_markup: float = SEED_OTHER_MARKUP) -> dict:
    """Everything ``unijob breakeven`` shows, as JSON-ready data."""
    table = rows(p, us)
    ustar = u_star(p)
    sens = sensitivity(p, other_markup)
    return {
        "params": {k: v for k, v in asdict(p).items() if v is not None},
        "formula": "u* = T / (r (m/eta_m - 1/eta_s)); C_self(u) = u/eta_s*r + T; C_buy(u) = u/eta_m*m*r",
        "source": "seed 000, section 5 (Code 33.9.3)",
        "bracket": bracket(p),
        "u_star": ustar,
        "accelerators_flat_out": None if ustar is None else ustar / HOURS_PER_YEAR,
        "managed_cheaper_at_every_scale": ustar is None,
        "rows": [{"u": r.u, "self_managed_usd": r.self_managed, "managed_usd": r.managed, "cheaper": r.cheaper}
                 for r in table],
        "your_u": None if u is None else {"u": u, "self_managed_usd": tco_self(u, p), "managed_usd": tco_buy(u, p),
                                          "verdict": side(p, u)},
        "sensitivity": sens,
    }


def format_report(p: BreakEvenParams, us: Sequence[float] = SEED_U_ROWS, u: Optional[float] = None,
                  other_markup: float = SEED_OTHER_MARKUP) -> str:
    """The plain-text report: the seed's table and crossover lines, then your u and the sensitivity."""
    lines = [format_table(rows(p, us)), RULE, *describe_u_star(p)]
    if u is not None:
        lines += ["", side(p, u)]
    lines += ["", "sensitivity (seed exercise 33.9.2):"]
    lines += ["  " + w for w in sensitivity(p, other_markup)["words"]]
    return "\n".join(lines)


PLOT_FORMATS = (".png", ".svg")


def plot(p: BreakEvenParams, path: str, us: Sequence[float] = SEED_U_ROWS, u: Optional[float] = None,
         title: str = "build vs buy: TCO per year (seed 000, section 5)") -> None:
    """Draw both TCO curves, u* and the organisation's own yearly usage ``u`` (when known) to ``path``
    (``.png`` or ``.svg``, by its suffix) with matplotlib (extra ``plot``).

    Raises:
        UsageError: another suffix (exit 2). NotReady: matplotlib is not installed (exit 3).
    """
    import os

    from unijob.errors import NotReady

    if os.path.splitext(str(path))[1].lower() not in PLOT_FORMATS:
        raise UsageError(f"--plot {path}: the file must end in .png or .svg")

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise NotReady("matplotlib is not installed; --plot needs it", hint="pip install 'unijob[plot]'") from None
    ustar = u_star(p)
    hi = max((ustar or 0) * 3, (u or 0) * 1.5) or max(us)
    xs = [hi * i / 200 for i in range(201)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(xs, [tco_self(x, p) for x in xs], label="self-managed: u/eta_s*r + T")
    ax.plot(xs, [tco_buy(x, p) for x in xs], label="managed: u/eta_m*m*r")
    if ustar is not None:
        ax.axvline(ustar, color="grey", linestyle="--")
        ax.annotate(f"u* = {ustar:,.0f}", (ustar, tco_buy(ustar, p)), textcoords="offset points", xytext=(6, -12))
    if u is not None:
        ax.axvline(u, color="red", linestyle=":", label=f"your u = {u:,.0f}")
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"${v / 1e6:,.1f}M"))
    ax.set_xlabel("useful accelerator-hours per year")
    ax.set_ylabel("USD per year")
    ax.set_title(title, fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Date": None} if str(path).lower().endswith(".svg") else None)
    plt.close(fig)
