"""analytics.clv against lifetimes (archived, but its fitters still run on our numpy,
pandas and scipy; installed by the dev extra) and against the published CDNOW numbers.

Both fitters always see identical inputs: the same frequency / recency / T arrays.
Parameters must agree within 1% (they agree to ~1e-6); every comparison prints both.
"""

import time
from datetime import date, datetime, timedelta
from decimal import Decimal

import lifetimes
import numpy as np
import pandas as pd
import pytest
from lifetimes.datasets import (
    load_cdnow_summary,
    load_cdnow_summary_data_with_monetary_value,
    load_dataset,
)
from lifetimes.utils import summary_data_from_transaction_data
from scipy.optimize import check_grad

from analytics import clv

REL = 0.01  # the bar: within 1%
BGNBD = ("r", "alpha", "a", "b")
GG = ("p", "q", "gamma")  # lifetimes calls gamma "v"
HORIZONS = (1.0, 4.345, 13.0, 39.0, 52.0, 104.0)  # weeks


def table(ours, theirs: pd.Series, names: tuple[str, ...], truth=None) -> str:
    rows = [
        f"{'param':>6} {'ours':>14} {'lifetimes':>14} {'rel diff':>10}" + ("  true" * bool(truth))
    ]
    for name in names:
        mine = getattr(ours, name)
        other = theirs["v" if name == "gamma" else name]
        line = f"{name:>6} {mine:14.8g} {other:14.8g} {abs(mine / other - 1):10.2e}"
        rows.append(line + (f"  {truth[name]:g}" if truth else ""))
    return "\n".join(rows)


def assert_params_match(ours, fitter, names, truth=None) -> str:
    shown = table(ours, fitter.params_, names, truth)
    for name in names:
        other = fitter.params_["v" if name == "gamma" else name]
        assert getattr(ours, name) == pytest.approx(other, rel=REL), "\n" + shown
    # The comparison table, for `pytest -s` / `-rP` (failures show it in the message).
    print(f"\n{type(ours).__name__} vs lifetimes.{type(fitter).__name__}:\n{shown}")  # noqa: T201
    return shown


def assert_close(ours, theirs, what: str, rel: float = REL) -> None:
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    worst = np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-12))
    assert worst <= rel, f"{what}: worst relative difference {worst:.3e} > {rel}"


def lifetimes_summary(rows, calibration_end: date) -> pd.DataFrame:
    """lifetimes' RFM of the same rows: freq='D', then recency and T in weeks."""
    tx = pd.DataFrame(rows, columns=["customer_id", "day", "amount"])
    tx["day"] = pd.to_datetime(tx["day"])
    tx["amount"] = tx["amount"].astype(float)
    summary = summary_data_from_transaction_data(
        tx, "customer_id", "day", "amount", observation_period_end=calibration_end, freq="D"
    )
    summary["recency"] /= 7
    summary["T"] /= 7
    return summary.sort_index()


def assert_summary_matches(ours: clv.RFMSummary, theirs: pd.DataFrame) -> None:
    assert list(ours.customer_ids) == theirs.index.tolist()
    np.testing.assert_array_equal(ours.frequency, theirs["frequency"].to_numpy())
    for column in ("recency", "T", "monetary_value"):
        np.testing.assert_allclose(
            getattr(ours, column), theirs[column].to_numpy(), rtol=1e-12, atol=1e-9
        )


# --- data ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    """Fader-Hardie's CDNOW calibration summary (2357 customers, 39 weeks), bundled."""
    summary = load_cdnow_summary_data_with_monetary_value()
    plain = load_cdnow_summary(index_col=[0])
    assert (plain[["frequency", "recency", "T"]].to_numpy() == summary.iloc[:, :3].to_numpy()).all()
    return summary


TRUE_BGNBD = {"r": 0.6, "alpha": 5.0, "a": 0.7, "b": 2.5}  # weeks
TRUE_GG = {"p": 5.0, "q": 4.0, "gamma": 60.0}  # mean spend 5 * 60 / 3 = 100 yuan
SIM_START = date(2025, 1, 1)
SIM_END = date(2025, 12, 30)  # calibration end: 52 weeks after the start


def simulate(n: int = 4000, seed: int = 20260315) -> list[tuple[int, date, Decimal]]:
    """Purchase rows of customers from the BG/NBD and Gamma-Gamma generative stories.

    Each customer's first purchase falls in the first 26 weeks; purchases follow a
    Poisson process with rate lambda ~ Gamma(r, alpha) (per week); after each repeat
    purchase the customer drops out with p ~ Beta(a, b). Each purchase spends
    Gamma(p, nu) with nu ~ Gamma(q, gamma). Times are floored to whole days, and a
    few purchases land after the calibration end (ignored by both summaries).
    """
    rng = np.random.default_rng(seed)
    t = TRUE_BGNBD
    lam = rng.gamma(t["r"], 1 / t["alpha"], n)
    drop = rng.beta(t["a"], t["b"], n)
    nu = rng.gamma(TRUE_GG["q"], 1 / TRUE_GG["gamma"], n)
    first_day = rng.integers(0, 26 * 7, n)
    horizon = (SIM_END - SIM_START).days / 7 + 8  # weeks, past the calibration end
    rows = []
    for i in range(n):
        weeks = [first_day[i] / 7]
        while True:
            nxt = weeks[-1] + rng.exponential(1 / lam[i])
            if nxt > horizon:
                break
            weeks.append(nxt)
            if rng.random() < drop[i]:
                break
        spend = rng.gamma(TRUE_GG["p"], 1 / nu[i], len(weeks))
        for week, amount in zip(weeks, spend, strict=True):
            day = SIM_START + timedelta(days=int(week * 7))
            rows.append((i, day, Decimal(f"{amount:.2f}")))
    rng.shuffle(rows)
    return rows


@pytest.fixture(scope="module")
def synthetic() -> tuple[list, clv.RFMSummary]:
    rows = simulate()
    return rows, clv.rfm_summary(rows, SIM_END)


# --- rfm_summary -----------------------------------------------------------------------


def test_rfm_summary_by_hand():
    d = date.fromisoformat
    rows = [
        (7, d("2026-01-01"), Decimal("100")),
        (7, d("2026-01-01"), Decimal("20")),  # split order: the same purchase day
        (7, d("2026-01-15"), Decimal("30")),
        (7, d("2026-01-29"), 50),
        (7, d("2026-03-01"), 999),  # after the calibration end: ignored
        (3, d("2026-02-01"), 80.0),  # one purchase day
        (5, d("2026-01-10"), 10),
        (5, d("2026-01-17"), Decimal("-4")),  # net of a refund
        (9, d("2026-02-20"), 10),  # first purchase after the end: not a customer yet
    ]
    end = d("2026-02-12")
    s = clv.rfm_summary(rows, end)
    assert s.customer_ids == (3, 5, 7)
    assert s.frequency.tolist() == [0, 1, 2]
    assert s.recency.tolist() == [0, 1, 4]
    assert s.T.tolist() == [11 / 7, 33 / 7, 6]
    assert s.monetary_value.tolist() == [0, -4, 40]  # repeat days only: (30 + 50) / 2
    assert len(s) == 3
    assert_summary_matches(s, lifetimes_summary(rows, end))


def test_rfm_summary_rejects_datetimes():
    with pytest.raises(TypeError):
        clv.rfm_summary([(1, datetime(2026, 1, 1, 12), 10)], date(2026, 2, 1))  # noqa: DTZ001
    with pytest.raises(TypeError):
        clv.rfm_summary([], datetime(2026, 2, 1))  # noqa: DTZ001


def test_rfm_summary_of_cdnow_transactions_is_the_published_summary(cdnow):
    """The raw CDNOW sample (lifetimes ships it) through rfm_summary with the 39-week
    calibration end gives Fader-Hardie's summary (printed to 2 decimals), and equals
    lifetimes' own summary of the same rows."""
    raw = load_dataset(
        "CDNOW_sample.txt",
        header=None,
        sep=r"\s+",
        names=["master_id", "customer_id", "day", "cds", "amount"],
        dtype={"day": str},
    )
    days = pd.to_datetime(raw["day"], format="%Y%m%d").dt.date
    rows = list(zip(raw["customer_id"], days, raw["amount"], strict=True))
    end = date(1997, 9, 30)
    s = clv.rfm_summary(rows, end)
    assert list(s.customer_ids) == cdnow.index.tolist()
    np.testing.assert_array_equal(s.frequency, cdnow["frequency"].to_numpy())
    np.testing.assert_allclose(s.recency, cdnow["recency"], atol=0.005 + 1e-9)
    np.testing.assert_allclose(s.T, cdnow["T"], atol=0.005 + 1e-9)
    np.testing.assert_allclose(s.monetary_value, cdnow["monetary_value"], atol=0.005 + 1e-9)
    assert_summary_matches(s, lifetimes_summary(rows, end))


def test_rfm_summary_matches_lifetimes_on_synthetic(synthetic):
    rows, s = synthetic
    assert_summary_matches(s, lifetimes_summary(rows, SIM_END))


# --- the likelihoods ---------------------------------------------------------------------


def test_analytic_gradients(cdnow):
    x = cdnow["frequency"].to_numpy(float)
    scale = 1 / cdnow["T"].max()
    tx, age = cdnow["recency"].to_numpy() * scale, cdnow["T"].to_numpy() * scale
    for theta in (np.log([0.24, 0.1, 0.8, 2.4]), np.zeros(4), np.array([1.0, -2.0, 0.5, 3.0])):
        for penalizer in (0.0, 0.01):
            error = check_grad(
                lambda th, pen=penalizer: clv._bgnbd_objective(th, x, tx, age, pen)[0],
                lambda th, pen=penalizer: clv._bgnbd_objective(th, x, tx, age, pen)[1],
                theta,
            )
            assert error < 1e-5, (theta, penalizer, error)
    repeat = x > 0
    m = cdnow["monetary_value"].to_numpy()[repeat]
    for theta in (np.log([6.0, 4.0, 15.0]), np.zeros(3)):
        error = check_grad(
            lambda th: clv._gg_objective(th, x[repeat], m, 0.01)[0],
            lambda th: clv._gg_objective(th, x[repeat], m, 0.01)[1],
            theta,
        )
        assert error < 1e-5, (theta, error)


def test_bgnbd_likelihood_equals_lifetimes(cdnow):
    """Same parameters, same per-customer log-likelihood (lifetimes' objective is the
    mean negative log-likelihood in time scaled so that max T = 1)."""
    x, tx, age = (cdnow[c].to_numpy() for c in ("frequency", "recency", "T"))
    params = clv.BGNBDParams(0.3, 5.0, 0.9, 2.0)
    scale = 1 / age.max()
    theirs = lifetimes.BetaGeoFitter._negative_log_likelihood(
        np.log([0.3, 5.0 * scale, 0.9, 2.0]), x, tx * scale, age * scale, np.ones(len(x)), 0.0
    )
    ours = clv.bgnbd_log_likelihood(x, tx, age, params)
    # Scaling time by s (and alpha with it) lowers each log-likelihood by x ln s.
    assert -np.mean(ours - x * np.log(scale)) == pytest.approx(theirs, rel=1e-10)


# --- CDNOW ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cdnow_fits(cdnow):
    x, tx, age, m = (cdnow[c] for c in ("frequency", "recency", "T", "monetary_value"))
    repeat = x > 0
    return {
        "ours_bg": clv.fit_bgnbd(x, tx, age),
        "lt_bg": lifetimes.BetaGeoFitter().fit(x, tx, age),
        "ours_gg": clv.fit_gamma_gamma(x, m),
        "lt_gg": lifetimes.GammaGammaFitter().fit(x[repeat], m[repeat]),
    }


def test_bgnbd_params_match_lifetimes_on_cdnow(cdnow_fits):
    ours = cdnow_fits["ours_bg"]
    assert_params_match(ours, cdnow_fits["lt_bg"], BGNBD)
    # Fader, Hardie, Lee (2005), the CDNOW estimates: 0.243, 4.414, 0.793, 2.426; LL -9582.4.
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for name, value in published.items():
        assert getattr(ours, name) == pytest.approx(value, abs=0.0005 + 1e-9)
    assert ours.log_likelihood == pytest.approx(-9582.4, abs=0.05)


def test_gamma_gamma_params_match_lifetimes_on_cdnow(cdnow_fits):
    ours = cdnow_fits["ours_gg"]
    assert_params_match(ours, cdnow_fits["lt_gg"], GG)
    # Fader, Hardie (2013), the CDNOW estimates: p 6.25, q 3.74, gamma 15.44.
    assert (round(ours.p, 2), round(ours.q, 2), round(ours.gamma, 2)) == (6.25, 3.74, 15.45)


def test_predictions_match_lifetimes_on_cdnow(cdnow, cdnow_fits):
    x, tx, age, m = (cdnow[c] for c in ("frequency", "recency", "T", "monetary_value"))
    ours_bg, lt_bg = cdnow_fits["ours_bg"], cdnow_fits["lt_bg"]
    ours_gg, lt_gg = cdnow_fits["ours_gg"], cdnow_fits["lt_gg"]
    for t in HORIZONS:
        assert_close(
            clv.bgnbd_expected(t, x, tx, age, ours_bg),
            lt_bg.conditional_expected_number_of_purchases_up_to_time(t, x, tx, age),
            f"expected purchases in {t} weeks",
        )
    assert_close(
        clv.bgnbd_p_alive(x, tx, age, ours_bg),
        lt_bg.conditional_probability_alive(x, tx, age),
        "P(alive)",
    )
    assert_close(
        clv.gamma_gamma_expected_spend(x, m, ours_gg),
        lt_gg.conditional_expected_average_profit(x, m),
        "expected spend",
    )
    for rate in (0.0, 0.01):
        theirs = lt_gg.customer_lifetime_value(
            lt_bg, x, tx, age, m, time=12, discount_rate=rate, freq="W"
        )
        ours = clv.customer_ltv(
            x, tx, age, m, ours_bg, ours_gg, months=12, monthly_discount_rate=rate
        )
        assert_close(ours, theirs, f"12-month LTV at monthly discount {rate}")
    undiscounted = clv.customer_ltv(x, tx, age, m, ours_bg, ours_gg, months=12)
    np.testing.assert_allclose(
        undiscounted,
        clv.gamma_gamma_expected_spend(x, m, ours_gg)
        * clv.bgnbd_expected(12 * clv.WEEKS_PER_MONTH, x, tx, age, ours_bg),
        rtol=1e-9,
    )


def test_formulas_equal_lifetimes_at_the_same_params(cdnow, cdnow_fits):
    """At identical parameters the closed forms agree to float precision, also far out
    where 2F1 needs Euler's transformation."""
    x, tx, age = (cdnow[c] for c in ("frequency", "recency", "T"))
    lt_bg = cdnow_fits["lt_bg"]
    same = clv.BGNBDParams(*(float(lt_bg.params_[k]) for k in BGNBD))
    for t in (*HORIZONS, 520.0, 5200.0):
        np.testing.assert_allclose(
            clv.bgnbd_expected(t, x, tx, age, same),
            lt_bg.conditional_expected_number_of_purchases_up_to_time(t, x, tx, age),
            rtol=1e-9,
        )
    np.testing.assert_allclose(
        clv.bgnbd_p_alive(x, tx, age, same), lt_bg.conditional_probability_alive(x, tx, age)
    )
    assert clv.bgnbd_expected(0.0, x, tx, age, same).max() == 0.0


@pytest.mark.parametrize("penalizer", [0.001, 0.1])
def test_penalized_fits_match_lifetimes(cdnow, penalizer):
    x, tx, age, m = (cdnow[c] for c in ("frequency", "recency", "T", "monetary_value"))
    repeat = x > 0
    assert_params_match(
        clv.fit_bgnbd(x, tx, age, penalizer=penalizer),
        lifetimes.BetaGeoFitter(penalizer_coef=penalizer).fit(x, tx, age),
        BGNBD,
    )
    assert_params_match(
        clv.fit_gamma_gamma(x, m, penalizer=penalizer),
        lifetimes.GammaGammaFitter(penalizer_coef=penalizer).fit(x[repeat], m[repeat]),
        GG,
    )


# --- synthetic data from known parameters --------------------------------------------------


def test_fits_on_synthetic_match_lifetimes_and_recover_the_truth(synthetic):
    _, s = synthetic
    x, tx, age, m = s.frequency, s.recency, s.T, s.monetary_value
    repeat = (x > 0) & (m > 0)
    ours_bg = clv.fit_bgnbd(x, tx, age)
    lt_bg = lifetimes.BetaGeoFitter().fit(x, tx, age)
    assert_params_match(ours_bg, lt_bg, BGNBD, TRUE_BGNBD)
    ours_gg = clv.fit_gamma_gamma(x, m)
    lt_gg = lifetimes.GammaGammaFitter().fit(x[repeat], m[repeat])
    assert_params_match(ours_gg, lt_gg, GG, TRUE_GG)

    for t in HORIZONS:
        assert_close(
            clv.bgnbd_expected(t, x, tx, age, ours_bg),
            lt_bg.conditional_expected_number_of_purchases_up_to_time(t, x, tx, age),
            f"expected purchases in {t} weeks",
        )
    assert_close(
        clv.bgnbd_p_alive(x, tx, age, ours_bg),
        lt_bg.conditional_probability_alive(x, tx, age),
        "P(alive)",
    )

    # 4000 customers: the estimates are near the truth, not on it (loose bounds).
    for name, value in TRUE_BGNBD.items():
        assert getattr(ours_bg, name) == pytest.approx(value, rel=0.25), (name, ours_bg)
    # The mean purchase rate and mean dropout chance are better determined.
    true_rate = TRUE_BGNBD["r"] / TRUE_BGNBD["alpha"]
    assert ours_bg.r / ours_bg.alpha == pytest.approx(true_rate, rel=0.1)
    true_drop = TRUE_BGNBD["a"] / (TRUE_BGNBD["a"] + TRUE_BGNBD["b"])
    assert ours_bg.a / (ours_bg.a + ours_bg.b) == pytest.approx(true_drop, rel=0.15)
    for name, value in TRUE_GG.items():
        assert getattr(ours_gg, name) == pytest.approx(value, rel=0.35), (name, ours_gg)
    mean_spend = ours_gg.p * ours_gg.gamma / (ours_gg.q - 1)
    assert mean_spend == pytest.approx(100, rel=0.1)


# --- inputs ----------------------------------------------------------------------------------


def test_invalid_inputs_are_refused():
    with pytest.raises(ValueError, match="recency"):
        clv.fit_bgnbd([1, 0], [5.0, 0.0], [4.0, 3.0])  # recency > T
    with pytest.raises(ValueError, match="recency must be 0"):
        clv.fit_bgnbd([0], [1.0], [4.0])
    with pytest.raises(ValueError, match="whole numbers"):
        clv.fit_bgnbd([1.5], [1.0], [4.0])
    with pytest.raises(ValueError, match="no customers"):
        clv.fit_bgnbd([], [], [])
    with pytest.raises(ValueError, match="no customer with frequency"):
        clv.fit_gamma_gamma([0, 0], [0.0, 0.0])
    with pytest.raises(ValueError, match="q = 0.5"):
        clv.gamma_gamma_expected_spend([1], [10.0], clv.GammaGammaParams(1.0, 0.5, 1.0))


def test_gamma_gamma_ignores_customers_without_repeat_spend(cdnow):
    x, m = cdnow["frequency"].to_numpy(), cdnow["monetary_value"].to_numpy()
    repeat = x > 0
    padded_x = np.concatenate([x, [0, 3, 2]])
    padded_m = np.concatenate([m, [0.0, 0.0, -5.0]])  # no spend, a net refund
    assert clv.fit_gamma_gamma(padded_x, padded_m) == clv.fit_gamma_gamma(x[repeat], m[repeat])


def test_fast_enough(cdnow):
    x, tx, age = (cdnow[c] for c in ("frequency", "recency", "T"))
    started = time.perf_counter()
    clv.fit_bgnbd(x, tx, age)
    assert time.perf_counter() - started < 3
