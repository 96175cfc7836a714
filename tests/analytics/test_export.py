"""analytics_export: the contract's JSON shapes, CSV, and LTV parameters equal to lifetimes'
fitters on the same purchases (summarised by lifetimes from the raw orders, not by us)."""

import csv
import io
import json
import random
from datetime import date, datetime, timedelta
from decimal import Decimal
from io import StringIO
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from django.core.management import call_command
from django.db.models import Avg
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import summary_data_from_transaction_data

from contacts.facts import facts_refresh
from contacts.models import CustomerFacts, Order
from tests.contacts.factories import CustomerFactory

pytestmark = pytest.mark.django_db
SH = ZoneInfo("Asia/Shanghai")
CALIBRATION_END = date(2026, 6, 30)


def _export(*args) -> str:
    out = StringIO()
    call_command("analytics_export", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def buyers():
    """400 buyers simulated from the BG/NBD story (DESIGN.md's model): each buys at a
    weekly rate from Gamma(r=0.6, alpha=5) and drops out after a purchase with a
    probability from Beta(0.7, 2.5); spend per purchase day from a Gamma around their own
    mean. First purchases over the first 300 days of 2025."""
    rng = random.Random(11)
    start = datetime(2025, 1, 1, 12, tzinfo=SH)
    end = datetime(2026, 8, 31, tzinfo=SH)
    orders = []
    for _ in range(400):
        customer = CustomerFactory()
        rate = rng.gammavariate(0.6, 1 / 5)  # purchases per week
        dropout = rng.betavariate(0.7, 2.5)
        mean_spend = rng.gammavariate(6, 20)
        day = start + timedelta(days=rng.randrange(300))
        while day < end:
            orders.append(
                Order(
                    customer=customer,
                    channel="tmall",
                    channel_order_id=f"T{len(orders):08d}",
                    status="paid",
                    paid_at=day,
                    amount=Decimal(str(round(rng.gammavariate(4, mean_spend / 4), 2))),
                    content_hash=f"{len(orders):032x}",
                )
            )
            if rng.random() < dropout:
                break
            gap = rng.expovariate(rate) * 7  # days
            if gap > (end - day).days:
                break
            day += timedelta(days=max(1, round(gap)))
    Order.objects.bulk_create(orders)
    facts_refresh()


def test_repurchase_and_cohort_json(buyers):
    repurchase = json.loads(
        _export("--metric", "repurchase", "--start", "2026-01-01", "--end", "2026-03-31")
    )
    assert set(repurchase) == {"start", "end", "buyers", "repeat_buyers", "rate"}
    assert repurchase["rate"] == repurchase["repeat_buyers"] / repurchase["buyers"]
    cohort = json.loads(
        _export(
            "--metric",
            "cohort",
            "--by",
            "first_purchase",
            "--period",
            "month",
            "--start",
            "2025-01-01",
            "--end",
            "2026-06-30",
        )
    )
    assert (cohort["by"], cohort["period"]) == ("first_purchase", "month")
    first = cohort["cohorts"][0]
    assert first["cohort"] == "2025-01" and first["retention"][0] == 1.0
    assert len(first["retention"]) == 18  # 2025-01 … 2026-06
    rows = list(
        csv.DictReader(
            io.StringIO(
                _export(
                    "--metric",
                    "cohort",
                    "--format",
                    "csv",
                    "--start",
                    "2025-01-01",
                    "--end",
                    "2026-06-30",
                )
            )
        )
    )
    assert rows[0]["cohort"] == "2025-01" and float(rows[0]["k0"]) == 1.0


def test_ltv_params_agree_with_lifetimes_within_one_percent(buyers):
    printed = json.loads(
        _export("--metric", "ltv", "--calibration-end", CALIBRATION_END.isoformat())
    )
    assert printed["calibration_end"] == "2026-06-30"
    ours = printed["params"]
    # lifetimes summarises the raw orders itself: paid orders by Shanghai day
    orders = pd.DataFrame(
        [
            {
                "customer": o.customer_id,
                "date": o.paid_at.astimezone(SH).date(),
                "value": float(o.amount - o.refund_amount),
            }
            for o in Order.objects.filter(status__in=["paid", "partially_refunded"])
        ]
    )
    orders = orders.groupby(["customer", "date"], as_index=False)["value"].sum()
    orders["date"] = pd.to_datetime(orders["date"])
    summary = summary_data_from_transaction_data(
        orders,
        "customer",
        "date",
        monetary_value_col="value",
        observation_period_end=pd.Timestamp(CALIBRATION_END),
        freq="D",
    )
    assert printed["customers"] == len(summary)
    summary["recency"] /= 7
    summary["T"] /= 7
    bgf = BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])
    repeat = summary[summary["frequency"] > 0]
    ggf = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    reference = {
        **{k: bgf.params_[k] for k in ("r", "alpha", "a", "b")},
        "p": ggf.params_["p"],
        "q": ggf.params_["q"],
        "gamma": ggf.params_["v"],
    }
    for name, value in reference.items():
        assert ours[name] == pytest.approx(value, rel=0.01), (name, ours[name], value)


def test_predictions_are_written_into_the_facts(buyers):
    from analytics.predictions import predict

    fitted = predict(calibration_end=CALIBRATION_END, store=True)
    stored = CustomerFacts.objects.exclude(predicted_at=None)
    assert stored.count() == fitted.customers
    row = max(fitted.rows, key=lambda r: r["predicted_ltv_12m"])
    facts = CustomerFacts.objects.get(customer_id=row["customer_id"])
    assert facts.probability_alive == pytest.approx(row["probability_alive"])
    assert float(facts.predicted_ltv_12m) == pytest.approx(row["predicted_ltv_12m"], abs=0.01)
    assert 0 <= facts.probability_alive <= 1


def test_the_ltv_page_gets_the_highest_predictions_and_the_means(buyers):
    from analytics import dashboards

    data = dashboards.predicted_ltv_compute(CALIBRATION_END)["data"]
    stored = CustomerFacts.objects.exclude(predicted_at=None)
    assert data["customers"] == stored.count()
    column = data["columns"].index("predicted_ltv_12m")
    shown = [row[column] for row in data["rows"]]
    assert shown == sorted(shown, reverse=True)
    highest = stored.order_by("-predicted_ltv_12m", "customer_id").first()
    assert data["rows"][0][0] == highest.customer_id
    means = stored.aggregate(ltv=Avg("predicted_ltv_12m"), alive=Avg("probability_alive"))
    assert data["means"]["predicted_ltv_12m"] == pytest.approx(float(means["ltv"]), abs=0.01)
    assert data["means"]["probability_alive"] == pytest.approx(means["alive"], abs=1e-4)


def test_the_calibration_summary_is_rfm_summary_of_the_orders(buyers):
    from analytics import clv
    from analytics.predictions import _summary

    rows = [
        (order.customer_id, order.paid_at.astimezone(SH).date(), order.amount - order.refund_amount)
        for order in Order.objects.filter(status__in=["paid", "partially_refunded"])
    ]
    expected = clv.rfm_summary(rows, CALIBRATION_END)
    found = _summary(CALIBRATION_END)
    assert found.customer_ids == expected.customer_ids and len(found.customer_ids) > 300
    assert (found.frequency == expected.frequency).all() and found.frequency.max() > 3
    for name in ("recency", "T", "monetary_value"):
        assert getattr(found, name) == pytest.approx(getattr(expected, name)), name
