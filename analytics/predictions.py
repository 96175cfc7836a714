"""Predicted LTV: BG/NBD and Gamma-Gamma (analytics.clv) fitted on purchase days up to a
calibration end, time unit week, and the per-customer predictions written back into the
customer facts (through contacts) for tags, SOP and dashboards."""

from dataclasses import dataclass
from datetime import date

import numpy as np
from django.db import connection
from django.utils import timezone

from analytics import clv
from contacts.facts import facts_predictions_store

HORIZON_WEEKS = 90 / 7  # "expected purchase days in the next 90 days"
LTV_MONTHS = 12


@dataclass
class Fitted:
    calibration_end: date
    customers: int
    params: dict[str, float]
    rows: list[dict]  # per customer: frequency, recency, T, monetary, predictions


def _summary(calibration_end: date) -> clv.RFMSummary:
    """`clv.rfm_summary` of the customers' purchase days up to the calibration end,
    aggregated in Postgres: one row per customer comes back instead of one per purchase
    day (frequency = days − 1, recency and T in days, the mean net revenue of the days
    after the first)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT customer_id, count(*) - 1, max(day) - min(day), %(end)s::date - min(day),
                   CASE WHEN count(*) > 1
                        THEN (sum(net_revenue) - (array_agg(net_revenue ORDER BY day))[1])
                             / (count(*) - 1)
                        ELSE 0 END
            FROM contacts_customerpurchaseday WHERE day <= %(end)s
            GROUP BY customer_id ORDER BY customer_id
            """,
            {"end": calibration_end},
        )
        rows = cursor.fetchall()
    columns = list(zip(*rows, strict=True)) if rows else [(), (), (), (), ()]
    return clv.RFMSummary(
        tuple(columns[0]),
        np.array(columns[1], dtype=np.int64),
        np.array(columns[2], dtype=float) / clv.DAYS_PER_WEEK,
        np.array(columns[3], dtype=float) / clv.DAYS_PER_WEEK,
        np.array(columns[4], dtype=float),
    )


def predict(*, calibration_end: date, store: bool = False) -> Fitted:
    """Fit both models on purchase days up to `calibration_end`; with `store`, write each
    customer's predictions into their facts. Raises clv.FitError on too little data."""
    summary = _summary(calibration_end)
    if len(summary.customer_ids) < 10:
        raise clv.FitError(
            f"{calibration_end} 之前只有 {len(summary.customer_ids)} 位买家，无法拟合"
        )
    bgnbd = clv.fit_bgnbd(summary.frequency, summary.recency, summary.T)
    gamma = clv.fit_gamma_gamma(summary.frequency, summary.monetary_value)
    expected = clv.bgnbd_expected(
        HORIZON_WEEKS, summary.frequency, summary.recency, summary.T, bgnbd
    )
    alive = clv.bgnbd_p_alive(summary.frequency, summary.recency, summary.T, bgnbd)
    ltv = clv.customer_ltv(
        summary.frequency,
        summary.recency,
        summary.T,
        summary.monetary_value,
        bgnbd,
        gamma,
        months=LTV_MONTHS,
    )
    rows = [
        {
            "customer_id": customer,
            "frequency": int(summary.frequency[i]),
            "recency_weeks": round(float(summary.recency[i]), 4),
            "T_weeks": round(float(summary.T[i]), 4),
            "monetary_value": round(float(summary.monetary_value[i]), 2),
            "expected_purchases_90d": round(float(expected[i]), 4),
            "probability_alive": round(float(alive[i]), 4),
            "predicted_ltv_12m": round(float(ltv[i]), 2),
        }
        for i, customer in enumerate(summary.customer_ids)
    ]
    if store:
        facts_predictions_store(
            rows=[
                (
                    row["customer_id"],
                    row["expected_purchases_90d"],
                    row["probability_alive"],
                    row["predicted_ltv_12m"],
                )
                for row in rows
                if np.isfinite(row["predicted_ltv_12m"])
            ],
            at=timezone.now(),
        )
    return Fitted(
        calibration_end=calibration_end,
        customers=len(rows),
        params={
            "r": bgnbd.r,
            "alpha": bgnbd.alpha,
            "a": bgnbd.a,
            "b": bgnbd.b,
            "p": gamma.p,
            "q": gamma.q,
            "gamma": gamma.gamma,
        },
        rows=rows,
    )
