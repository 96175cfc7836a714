"""Predicted customer lifetime value: BG/NBD for purchases, Gamma-Gamma for spend.

Pure functions over plain data (numbers, sequences, numpy arrays); no Django, no
pandas. The caller reads the purchase days (see `analytics.metrics`: a purchase day
is a distinct customer and Asia/Shanghai day with a paid or partially refunded
order) and passes them to `rfm_summary`; everything after that is arithmetic.

Conventions (the issue "Predicted LTV"):

- The models are fitted on a calibration window that ends on `calibration_end`
  (inclusive). Purchase days after it are ignored.
- The time unit is the week: recency and T are whole days / 7.
- ``frequency`` (x) is the number of *repeat* purchase days: purchase days up to
  and including `calibration_end`, minus one (the first).
- ``recency`` (t_x) is the weeks from the first to the last purchase day.
- ``T`` is the weeks from the first purchase day to `calibration_end`.
- ``monetary_value`` (m_x) is the mean net revenue of the repeat purchase days
  (the first purchase day is left out, the Gamma-Gamma convention), 0 when x = 0.

These are the definitions of `lifetimes.utils.summary_data_from_transaction_data`
with ``freq="D"`` and recency / T divided by 7, and the fitters below reproduce
`lifetimes.BetaGeoFitter` and `lifetimes.GammaGammaFitter` (same likelihoods, same
penalizer, same time scaling); `tests/analytics/test_clv.py` proves both.

References:

- [FHL2005] Fader, P. S., Hardie, B. G. S., and Lee, K. L. (2005), "'Counting Your
  Customers' the Easy Way: An Alternative to the Pareto/NBD Model", Marketing
  Science 24 (2), 275-284. The BG/NBD model: eq. (6) likelihood, eq. (10)
  conditional expectation.
- [FHL2005n] Fader, Hardie, Lee (2005), "Implementing the BG/NBD Model for Customer
  Base Analysis in Excel", http://brucehardie.com/notes/004/ (the log-likelihood in
  the four terms A1..A4 used here).
- [FH2008] Fader, Hardie (2008), "Computing P(alive) Using the BG/NBD Model",
  http://brucehardie.com/notes/021/.
- [FH2013] Fader, Hardie (2013), "The Gamma-Gamma Model of Monetary Value",
  http://brucehardie.com/notes/025/: eq. (1a) likelihood, eq. (5) conditional
  expected spend.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import digamma, expit, gammaln, hyp2f1

DAYS_PER_WEEK = 7.0
# Weeks in a month, as lifetimes' customer_lifetime_value(freq="W") counts them.
WEEKS_PER_MONTH = 4.345
# Fitted parameters stay within [e^-LOG_BOUND, e^LOG_BOUND] (log parameters).
LOG_BOUND = 18.0

FloatArray = NDArray[np.float64]


class FitError(ValueError):
    """The maximum-likelihood search did not converge."""


@dataclass(frozen=True)
class RFMSummary:
    """Per-customer sufficient statistics of a calibration window, aligned arrays.

    customer_ids: the customers with a purchase day on or before calibration_end,
        in sorted order.
    frequency: x, repeat purchase days (purchase days - 1).
    recency: t_x, weeks between the first and the last purchase day.
    T: weeks between the first purchase day and calibration_end.
    monetary_value: m_x, mean net revenue of the repeat purchase days (0 if x = 0).
    """

    customer_ids: tuple[Hashable, ...]
    frequency: NDArray[np.int64]
    recency: FloatArray
    T: FloatArray
    monetary_value: FloatArray

    def __len__(self) -> int:
        return len(self.customer_ids)


@dataclass(frozen=True)
class BGNBDParams:
    """BG/NBD parameters [FHL2005], time unit = week.

    r, alpha: shape and rate of the Gamma distribution of the customers' purchase
        rates lambda (purchases per week while alive); mean rate = r / alpha.
    a, b: the Beta distribution of p, the probability that a customer drops out
        right after a purchase; mean dropout probability = a / (a + b).
    log_likelihood: total log-likelihood of the calibration data at these
        parameters (without the penalizer); nan when not from a fit.
    """

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float = float("nan")


@dataclass(frozen=True)
class GammaGammaParams:
    """Gamma-Gamma spend parameters [FH2013] (lifetimes calls gamma "v").

    A customer's spend per purchase day is Gamma(p, nu) with shape p and rate nu;
    across customers nu ~ Gamma(q, gamma) with shape q and rate gamma. The mean
    spend per purchase day in the population is p * gamma / (q - 1) (needs q > 1).
    log_likelihood: total log-likelihood at these parameters (without the
        penalizer) of the customers it was fitted on; nan when not from a fit.
    """

    p: float
    q: float
    gamma: float
    log_likelihood: float = float("nan")


# --- RFM ---------------------------------------------------------------------------


def rfm_summary(
    rows: Iterable[tuple[Hashable, date, float | int | Decimal]],
    calibration_end: date,
) -> RFMSummary:
    """Frequency, recency, T and monetary value per customer up to calibration_end.

    rows: (customer_id, purchase day, net revenue) triples, in any order. Several
        rows of one customer and day are one purchase day whose revenue is their
        sum (split orders). Days after calibration_end are ignored, and so are
        customers whose first purchase day is after it.
    calibration_end: the last day of the calibration window (inclusive).

    Matches lifetimes' ``summary_data_from_transaction_data(..., freq="D",
    observation_period_end=calibration_end)`` with recency and T divided by 7.
    """
    if isinstance(calibration_end, datetime):
        raise TypeError("calibration_end must be a date, not a datetime")
    days: dict[Hashable, dict[date, float]] = {}
    for customer_id, day, amount in rows:
        if isinstance(day, datetime):
            raise TypeError(f"purchase day of customer {customer_id!r} is a datetime: {day!r}")
        if day > calibration_end:
            continue
        per_day = days.setdefault(customer_id, {})
        per_day[day] = per_day.get(day, 0.0) + float(amount)

    ids = tuple(sorted(days))
    n = len(ids)
    frequency = np.zeros(n, dtype=np.int64)
    recency = np.zeros(n)
    age = np.zeros(n)
    monetary = np.zeros(n)
    for i, customer_id in enumerate(ids):
        ordered = sorted(days[customer_id].items())
        first, last = ordered[0][0], ordered[-1][0]
        frequency[i] = len(ordered) - 1
        recency[i] = (last - first).days / DAYS_PER_WEEK
        age[i] = (calibration_end - first).days / DAYS_PER_WEEK
        if len(ordered) > 1:
            monetary[i] = sum(amount for _, amount in ordered[1:]) / (len(ordered) - 1)
    return RFMSummary(ids, frequency, recency, age, monetary)


# --- BG/NBD ------------------------------------------------------------------------


def _bgnbd_inputs(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    x = np.asarray(frequency, dtype=float)
    tx = np.asarray(recency, dtype=float)
    age = np.asarray(T, dtype=float)
    if not (x.ndim == tx.ndim == age.ndim == 1) or not (len(x) == len(tx) == len(age)):
        raise ValueError("frequency, recency and T must be 1-d arrays of one length")
    if len(x) == 0:
        raise ValueError("no customers to fit")
    if not np.all(np.isfinite(x) & np.isfinite(tx) & np.isfinite(age)):
        raise ValueError("frequency, recency and T must be finite")
    if np.any(x < 0) or np.any(x != np.round(x)):
        raise ValueError("frequency must be whole numbers >= 0")
    if np.any(tx < 0) or np.any(tx > age):
        raise ValueError("recency must lie in [0, T]")
    if np.any(tx[x == 0] != 0):
        raise ValueError("recency must be 0 where frequency is 0")
    if age.max() <= 0:
        raise ValueError("T must be > 0 for some customer")
    return x, tx, age


def _bgnbd_terms(
    r: float, alpha: float, a: float, b: float, x: FloatArray, tx: FloatArray, age: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per-customer log-likelihood [FHL2005n] and the weight w of its A4 term.

    L = A1 + A2 + log(exp(A3) + [x > 0] exp(A4)), where
    A1 = lnG(r + x) - lnG(r) + r ln(alpha),
    A2 = lnG(a + b) + lnG(b + x) - lnG(b) - lnG(a + b + x),
    A3 = -(r + x) ln(alpha + T),
    A4 = ln(a) - ln(b + x - 1) - (r + x) ln(alpha + t_x).
    """
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + age)
    repeat = x > 0
    a4 = np.where(
        repeat,
        np.log(a) - np.log(b + np.maximum(x, 1) - 1) - (r + x) * np.log(alpha + tx),
        -np.inf,
    )
    mix = np.logaddexp(a3, a4)
    return a1 + a2 + mix, np.exp(a4 - mix)


def _bgnbd_objective(
    log_params: FloatArray, x: FloatArray, tx: FloatArray, age: FloatArray, penalizer: float
) -> tuple[float, FloatArray]:
    """Mean negative log-likelihood + penalizer * sum(params**2), and its gradient in
    the log parameters (lifetimes' objective)."""
    params = np.exp(log_params)
    r, alpha, a, b = params
    ll, w = _bgnbd_terms(r, alpha, a, b, x, tx, age)
    n = len(x)
    log_a_t, log_a_tx = np.log(alpha + age), np.log(alpha + tx)
    d_r = digamma(r + x) - digamma(r) + np.log(alpha) - (1 - w) * log_a_t - w * log_a_tx
    d_alpha = r / alpha - (r + x) * ((1 - w) / (alpha + age) + w / (alpha + tx))
    shared = digamma(a + b) - digamma(a + b + x)
    d_a = shared + w / a
    d_b = shared + digamma(b + x) - digamma(b) - w / (b + np.maximum(x, 1) - 1)
    grad_ll = np.array([d_r.sum(), d_alpha.sum(), d_a.sum(), d_b.sum()])
    value = -ll.sum() / n + penalizer * np.sum(params**2)
    grad = -grad_ll * params / n + 2 * penalizer * params**2
    return float(value), grad


def _minimise(
    objective: Callable[[FloatArray], tuple[float, FloatArray]],
    starts: list[FloatArray],
) -> FloatArray:
    """Minimise over log parameters from each start; the best converged optimum.

    BFGS first (log parameters keep every parameter > 0 without bounds, and it is
    the fastest here); a start where it fails or wanders past e^+-LOG_BOUND is
    retried with L-BFGS-B bounded to [-LOG_BOUND, LOG_BOUND].
    """

    def guarded(theta: FloatArray) -> tuple[float, FloatArray]:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            value, grad = objective(theta)
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            return np.inf, np.zeros_like(theta)
        return value, grad

    def converged(result) -> bool:
        # Both stop on "precision loss" at an optimum found to float precision.
        grad = guarded(result.x)[1]
        return bool(
            np.isfinite(result.fun)
            and np.all(np.abs(result.x) <= LOG_BOUND)
            and (result.success or np.max(np.abs(grad)) < 1e-6)
        )

    best = None
    for start in starts:
        x0 = np.clip(start, -LOG_BOUND + 1, LOG_BOUND - 1)
        result = minimize(
            guarded, x0, jac=True, method="BFGS", options={"gtol": 1e-9, "maxiter": 5000}
        )
        if not converged(result):
            result = minimize(
                guarded,
                x0,
                jac=True,
                method="L-BFGS-B",
                bounds=[(-LOG_BOUND, LOG_BOUND)] * len(x0),
                options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-10},
            )
            if not converged(result):
                continue
        if best is None or result.fun < best.fun:
            best = result
    if best is None:
        raise FitError("the likelihood maximisation did not converge")
    return best.x


def fit_bgnbd(
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    *,
    penalizer: float = 0.0,
) -> BGNBDParams:
    """Maximum-likelihood BG/NBD parameters [FHL2005] from calibration data.

    frequency: x per customer, repeat purchase days in the calibration window.
    recency: t_x per customer, weeks from the first to the last purchase day.
    T: per customer, weeks from the first purchase day to the calibration end.
    penalizer: L2 penalty coefficient on the parameters, lifetimes' penalizer_coef
        (default 0, as there): the objective is the mean negative log-likelihood
        plus penalizer * (r^2 + alpha'^2 + a^2 + b^2), where alpha' is alpha in the
        units in which the largest T is 1 (lifetimes scales time so).

    The optimiser works on the log parameters (so all stay > 0) with the analytic
    gradient: BFGS, falling back to L-BFGS-B bounded to [e^-18, e^18], from a
    data-driven start and from lifetimes' start; it keeps the better optimum.
    Raises FitError when neither converges.
    """
    x, tx, age = _bgnbd_inputs(frequency, recency, T)
    scale = 1.0 / age.max()
    tx_s, age_s = tx * scale, age * scale

    def objective(theta: FloatArray) -> tuple[float, FloatArray]:
        return _bgnbd_objective(theta, x, tx_s, age_s, penalizer)

    # Data-driven start: r = 1, alpha from the observed repeat rate (the mean of
    # Gamma(r, alpha) is r / alpha), a = 1, b = 3 (a mean dropout chance of 1/4).
    rate = max(x.sum() / age_s.sum(), 1e-6)
    starts = [np.log([1.0, 1.0 / rate, 1.0, 3.0]), np.full(4, 0.1)]
    r, alpha_s, a, b = np.exp(_minimise(objective, starts))
    alpha = alpha_s / scale
    ll, _ = _bgnbd_terms(r, alpha, a, b, x, tx, age)
    return BGNBDParams(float(r), float(alpha), float(a), float(b), float(ll.sum()))


def bgnbd_log_likelihood(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, params: BGNBDParams
) -> FloatArray:
    """Per-customer BG/NBD log-likelihood [FHL2005, eq. (6)] at params (weeks)."""
    x, tx, age = _bgnbd_inputs(frequency, recency, T)
    ll, _ = _bgnbd_terms(params.r, params.alpha, params.a, params.b, x, tx, age)
    return ll


def bgnbd_p_alive(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, params: BGNBDParams
) -> FloatArray:
    """P(alive at T | x, t_x, T) [FH2008]: the chance the customer has not dropped out.

    1 / (1 + [x > 0] a / (b + x - 1) ((alpha + T) / (alpha + t_x))^(r + x)),
    computed as a logistic of the log odds. Customers with x = 0 are alive (the
    model lets a customer drop out only right after a repeat purchase).
    Arguments broadcast; frequency, recency and T as in `fit_bgnbd`.
    """
    x, tx, age = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (frequency, recency, T)))
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    log_odds_dead = (r + x) * (np.log(alpha + age) - np.log(alpha + tx)) + (
        np.log(a) - np.log(b + np.maximum(x, 1) - 1)
    )
    return np.where(x > 0, expit(-log_odds_dead), 1.0)


def bgnbd_expected(
    t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, params: BGNBDParams
) -> FloatArray:
    """E[purchase days in (T, T + t] | x, t_x, T] [FHL2005, eq. (10)].

    t: the horizon in weeks after the calibration end.
    frequency, recency, T: the customer's calibration statistics, as in `fit_bgnbd`.

    (a + b + x - 1) / (a - 1) * [1 - ((alpha + T) / (alpha + T + t))^(r + x)
    * 2F1(r + x, b + x; a + b + x - 1; t / (alpha + T + t))] * P(alive).
    The second factor is taken in log space; where 2F1 overflows, Euler's
    transformation 2F1(A, B; C; z) = (1 - z)^(C - A - B) 2F1(C - A, C - B; C; z)
    gives the same term as (1 - z)^(a - 1) 2F1(a + b - 1 - r, a - 1; C; z).
    The formula is singular at a = 1 exactly. Arguments broadcast.
    """
    t_, x, tx, age = np.broadcast_arrays(
        *(np.asarray(v, dtype=float) for v in (t, frequency, recency, T))
    )
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    c = a + b + x - 1
    z = t_ / (alpha + age + t_)
    log_1mz = np.log(alpha + age) - np.log(alpha + age + t_)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_term = (r + x) * log_1mz + np.log(hyp2f1(r + x, b + x, c, z))
        euler = (a - 1) * log_1mz + np.log(hyp2f1(a + b - 1 - r, a - 1, c, z))
    log_term = np.where(np.isfinite(log_term), log_term, euler)
    first = c / (a - 1)
    return first * -np.expm1(log_term) * bgnbd_p_alive(x, tx, age, params)


# --- Gamma-Gamma -------------------------------------------------------------------


def _gg_terms(p: float, q: float, v: float, x: FloatArray, m: FloatArray) -> FloatArray:
    """Per-customer log density of the mean spend m_x of x purchases [FH2013, (1a)]."""
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(x * m + v)
    )


def _gg_objective(
    log_params: FloatArray, x: FloatArray, m: FloatArray, penalizer: float
) -> tuple[float, FloatArray]:
    params = np.exp(log_params)
    p, q, v = params
    n = len(x)
    px = p * x
    log_xmv = np.log(x * m + v)
    ll = _gg_terms(p, q, v, x, m)
    d_p = x * (digamma(px + q) - digamma(px) + np.log(m) + np.log(x) - log_xmv)
    d_q = digamma(px + q) - digamma(q) + np.log(v) - log_xmv
    d_v = q / v - (px + q) / (x * m + v)
    grad_ll = np.array([d_p.sum(), d_q.sum(), d_v.sum()])
    value = -ll.sum() / n + penalizer * np.sum(params**2)
    grad = -grad_ll * params / n + 2 * penalizer * params**2
    return float(value), grad


def _gg_inputs(frequency: ArrayLike, monetary_value: ArrayLike) -> tuple[FloatArray, FloatArray]:
    x = np.asarray(frequency, dtype=float)
    m = np.asarray(monetary_value, dtype=float)
    if x.ndim != 1 or x.shape != m.shape:
        raise ValueError("frequency and monetary_value must be 1-d arrays of one length")
    keep = (x > 0) & (m > 0) & np.isfinite(m)
    if np.any(x[keep] != np.round(x[keep])):
        raise ValueError("frequency must be whole numbers")
    if not keep.any():
        raise ValueError("no customer with frequency > 0 and monetary_value > 0")
    return x[keep], m[keep]


def fit_gamma_gamma(
    frequency: ArrayLike,
    monetary_value: ArrayLike,
    *,
    penalizer: float = 0.0,
) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma parameters [FH2013] from calibration data.

    frequency: x per customer, repeat purchase days in the calibration window.
    monetary_value: m_x per customer, mean net revenue of those repeat days.
    penalizer: L2 penalty coefficient, lifetimes' penalizer_coef (default 0, as
        there): mean negative log-likelihood + penalizer * (p^2 + q^2 + gamma^2).

    Fitted on the customers with x > 0 only (x = 0 has no repeat spend), and of
    those only with m_x > 0 (the model's spend is positive; a customer whose
    repeat days net to a refund is left out). Optimised as in `fit_bgnbd`: log
    parameters, analytic gradient, a data-driven start and lifetimes' start.
    The model assumes spend is independent of frequency; check that before use.
    """
    x, m = _gg_inputs(frequency, monetary_value)

    def objective(theta: FloatArray) -> tuple[float, FloatArray]:
        return _gg_objective(theta, x, m, penalizer)

    # Data-driven start: p = 1, q = 2, gamma so that the population mean
    # p * gamma / (q - 1) is the observed mean spend.
    starts = [np.log([1.0, 2.0, float(m.mean())]), np.full(3, 0.1)]
    p, q, v = np.exp(_minimise(objective, starts))
    ll = _gg_terms(p, q, v, x, m)
    return GammaGammaParams(float(p), float(q), float(v), float(ll.sum()))


def gamma_gamma_expected_spend(
    frequency: ArrayLike, monetary_value: ArrayLike, params: GammaGammaParams
) -> FloatArray:
    """E[spend per purchase day | x, m_x] [FH2013, eq. (5)].

    (gamma + x m_x) p / (p x + q - 1): a weighted mean of the customer's own m_x
    (weight p x / (p x + q - 1)) and the population mean p gamma / (q - 1); the
    population mean for x = 0. Raises ValueError when q <= 1 (no finite mean).
    Arguments broadcast.
    """
    p, q, v = params.p, params.q, params.gamma
    if q <= 1:
        raise ValueError(f"Gamma-Gamma q = {q} <= 1: the mean spend is not finite")
    x, m = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (frequency, monetary_value)))
    weight = p * x / (p * x + q - 1)
    return (1 - weight) * (p * v / (q - 1)) + weight * m


# --- LTV ---------------------------------------------------------------------------


def customer_ltv(
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    monetary_value: ArrayLike,
    bgnbd: BGNBDParams,
    gamma_gamma: GammaGammaParams,
    *,
    months: int = 12,
    monthly_discount_rate: float = 0.0,
    weeks_per_month: float = WEEKS_PER_MONTH,
) -> FloatArray:
    """Predicted net revenue per customer over the next `months` months.

    frequency, recency, T, monetary_value: calibration statistics (weeks), as from
        `rfm_summary`.
    bgnbd, gamma_gamma: fitted parameters.
    months: the horizon in months after the calibration end.
    monthly_discount_rate: d; month k's expected revenue is divided by (1 + d)^k.
        0 (the default) gives the undiscounted expected purchase days over the
        horizon times the expected spend per purchase day.
    weeks_per_month: the length of a month in weeks (lifetimes' 4.345).

    sum over k = 1..months of E[spend] * (E[N(k m)] - E[N((k - 1) m)]) / (1 + d)^k,
    with m = weeks_per_month: lifetimes' GammaGammaFitter.customer_lifetime_value
    with freq="W" (its default discount rate is 0.01; pass it to match).
    """
    if months < 0:
        raise ValueError("months must be >= 0")
    spend = gamma_gamma_expected_spend(frequency, monetary_value, gamma_gamma)
    steps = np.arange(months + 1) * weeks_per_month
    cumulative = np.stack([bgnbd_expected(t, frequency, recency, T, bgnbd) for t in steps])
    per_month = np.diff(cumulative, axis=0)
    discount = (1 + monthly_discount_rate) ** -np.arange(1, months + 1, dtype=float)
    expected = np.tensordot(discount, per_month, axes=1) if months else np.zeros_like(spend)
    return spend * expected
