"""Every metric against an independent computation: hand-built cases whose answer is
worked out in the test, and seeded random data recomputed in plain Python straight from
the order rows, per DESIGN.md ("Words")."""

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from statistics import median
from zoneinfo import ZoneInfo

import pytest

from analytics import comparisons, metrics
from analytics.metrics import Filters
from contacts.facts import facts_refresh
from contacts.models import Customer, CustomerFacts, Order, OrderLine
from tests.analytics.purchases import purchase_days
from tests.contacts.factories import (
    CustomerFactory,
    GuideFactory,
    OrderFactory,
    RelationshipFactory,
)

pytestmark = pytest.mark.django_db
SH = ZoneInfo("Asia/Shanghai")
PURCHASED = {"paid", "partially_refunded"}


def at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=SH)


def buy(
    customer,
    when: datetime,
    amount="100",
    status="paid",
    channel="tmall",
    category="文胸",
    parent="",
):
    order = OrderFactory(
        customer=customer,
        paid_at=when,
        amount=Decimal(amount),
        status=status,
        channel=channel,
        refund_amount=Decimal(amount) if status == "refunded" else Decimal(0),
        parent_order_id=parent,
    )
    OrderLine.objects.create(
        order=order,
        line_no=1,
        sku="S",
        category=category,
        quantity=1,
        unit_price=Decimal(amount),
        line_amount=Decimal(amount),
        refund_amount=Decimal(amount) if status == "refunded" else Decimal(0),
    )
    return order


def test_repurchase_by_hand():
    a, b, c, d = (CustomerFactory() for _ in range(4))
    buy(a, at("2026-03-01"))
    buy(a, at("2026-03-01", 20), channel="douyin")  # split order, same day: one purchase day
    buy(b, at("2026-03-01"))
    buy(b, at("2026-03-15"))
    buy(c, at("2026-03-02"))
    buy(c, at("2026-03-20"), status="refunded")  # fully refunded: not a purchase day
    buy(d, at("2026-02-28", 23))  # 23:00 Shanghai on the 28th: outside a March window
    buy(d, datetime(2026, 2, 28, 16, 30, tzinfo=UTC))  # 00:30 on 1 March in Shanghai
    facts_refresh()
    result = metrics.repurchase(start=date(2026, 3, 1), end=date(2026, 3, 31))
    # buyers a, b, c, d (d's second order is 1 March in Shanghai); repeaters: b only
    assert (result["buyers"], result["repeat_buyers"], result["rate"]) == (4, 1, 0.25)
    tmall = metrics.repurchase(
        start=date(2026, 3, 1), end=date(2026, 3, 31), filters=Filters(channels=("douyin",))
    )
    assert (tmall["buyers"], tmall["repeat_buyers"]) == (1, 0)
    back = metrics.returning(
        a_start=date(2026, 2, 1),
        a_end=date(2026, 2, 28),
        b_start=date(2026, 3, 1),
        b_end=date(2026, 3, 31),
    )
    assert (back["buyers"], back["returned"], back["rate"]) == (1, 1, 1.0)


def test_a_checkout_split_either_side_of_midnight_is_one_purchase_day():
    once, twice, late = (CustomerFactory() for _ in range(3))
    # `once` bought one checkout, split by Douyin into sub-orders paid 23:50 and 00:10.
    buy(once, at("2026-03-10", 23).replace(minute=50), channel="douyin", parent="P1")
    buy(once, at("2026-03-11", 0).replace(minute=10), channel="douyin", parent="P1")
    # `twice`: the same kind of checkout, and a second purchase eleven days later.
    buy(twice, at("2026-03-10", 23).replace(minute=50), channel="douyin", parent="P2")
    buy(twice, at("2026-03-11", 0).replace(minute=10), channel="douyin", parent="P2")
    buy(twice, at("2026-03-21"), category="睡衣")
    # `late`: the checkout's first sub-order was cancelled, so it counts on the 11th.
    buy(late, at("2026-03-10", 23), channel="douyin", parent="P3", status="cancelled")
    buy(late, at("2026-03-11", 1), channel="douyin", parent="P3")
    facts_refresh()
    facts = {f.customer_id: f for f in CustomerFacts.objects.all()}
    assert (facts[once.pk].purchase_days, facts[once.pk].orders) == (1, 1)
    assert facts[once.pk].net_revenue == Decimal("200")
    assert facts[once.pk].first_purchase_on == facts[once.pk].last_purchase_on == date(2026, 3, 10)
    assert (facts[twice.pk].purchase_days, facts[twice.pk].median_interval_days) == (2, 11)
    assert facts[late.pk].first_purchase_on == date(2026, 3, 11)
    march = {"start": date(2026, 3, 1), "end": date(2026, 3, 31)}
    for filters in (Filters(), Filters(channels=("douyin", "tmall")), Filters(category="文胸")):
        result = metrics.repurchase(**march, filters=filters)
        assert (result["buyers"], result["repeat_buyers"]) == (3, 1 if not filters.category else 0)
    # From the 11th on, only `late`'s checkout and `twice`'s later order began in the window.
    for filters in (Filters(), Filters(channels=("douyin", "tmall"))):
        result = metrics.repurchase(start=date(2026, 3, 11), end=date(2026, 3, 31), filters=filters)
        assert (result["buyers"], result["repeat_buyers"]) == (2, 0)
    (overall, *_) = metrics.intervals(**march)
    assert (overall["category"], overall["intervals"], overall["median_days"]) == ("全部", 1, 11)
    # Buyers, repeat buyers, orders (checkouts) and net revenue of everyone (non-members).
    everyone = comparisons.member_comparison(**march)[2]
    assert [everyone[key] for key in ("buyers", "repeat_buyers", "orders", "net_revenue")] == [
        3,
        1,
        4,
        Decimal("600.00"),
    ]
    later = comparisons.member_comparison(start=date(2026, 3, 11), end=date(2026, 3, 31))[2]
    assert [later[key] for key in ("buyers", "repeat_buyers", "orders", "net_revenue")] == [
        2,
        0,
        2,
        Decimal("200.00"),
    ]
    by_channel = comparisons.repurchase_split(
        start=date(2026, 3, 11), end=date(2026, 3, 31), by="channel"
    )
    assert {row["key"]: row["buyers"] for row in by_channel} == {"douyin": 1, "tmall": 1}


def test_conversion_by_hand():
    guide = GuideFactory(wecom_userid="gc")
    joined = at("2026-05-10", 9)
    people = {}
    for name, first_buy, state in [
        ("in7", "2026-05-15", "pkg_card"),
        ("in30", "2026-06-05", "pkg_card"),
        ("late", "2026-06-20", "live"),
        ("never", None, "live"),
        ("before", "2026-05-01", "live"),  # bought before joining: not eligible
    ]:
        customer = CustomerFactory(joined_at=joined)
        RelationshipFactory(customer=customer, guide=guide, added_at=joined, state=state)
        if first_buy:
            buy(customer, at(first_buy))
        people[name] = customer
    outside = CustomerFactory(joined_at=at("2026-04-01"))
    buy(outside, at("2026-04-02"))
    facts_refresh()
    (row,) = metrics.conversion(start=date(2026, 5, 1), end=date(2026, 5, 31))
    # eligible: in7, in30, late, never. 05-15 is 5 days after, 06-05 is 26, 06-20 is 41.
    assert row["members"] == 4
    assert (row["within_7"], row["within_14"], row["within_30"]) == (1, 1, 2)
    assert row["rate_30"] == 0.5
    by_state = {
        r["key"]: r
        for r in metrics.conversion(start=date(2026, 5, 1), end=date(2026, 5, 31), group="state")
    }
    assert (by_state["pkg_card"]["members"], by_state["pkg_card"]["within_30"]) == (2, 2)
    assert (by_state["live"]["members"], by_state["live"]["within_30"]) == (2, 0)


# -- seeded random data, recomputed in Python from the order rows ---------------------------


@pytest.fixture
def shop():
    rng = random.Random(7)
    guides = [GuideFactory(wecom_userid=f"rg{n}") for n in range(3)]
    for number in range(80):
        member = rng.random() < 0.6
        joined = at("2025-01-01") + timedelta(days=rng.randrange(500)) if member else None
        customer = CustomerFactory(
            is_member=member,
            joined_at=joined,
            external_userid=None if not member else f"wx{number:030d}",
        )
        if member:
            RelationshipFactory(customer=customer, guide=rng.choice(guides), added_at=joined)
        for _ in range(rng.choice([0, 1, 1, 2, 3, 5, 8])):
            when = at("2025-01-01") + timedelta(days=rng.randrange(600), hours=rng.randrange(24))
            buy(
                customer,
                when,
                amount=str(rng.choice([59, 89, 159, 399])),
                status=rng.choices(
                    ["paid", "refunded", "partially_refunded", "cancelled"], [85, 6, 4, 5]
                )[0],
                channel=rng.choice(["tmall", "jd", "douyin", "youzan", "miniapp"]),
                category=rng.choice(["文胸", "内裤", "睡衣"]),
            )
        if rng.random() < 0.3:  # a Douyin checkout split into sub-orders, often over midnight
            when = at("2025-01-01", 23) + timedelta(days=rng.randrange(600))
            for minutes in sorted(rng.sample([0, 30, 70, 90], rng.choice([2, 3]))):
                buy(
                    customer,
                    when + timedelta(minutes=minutes),
                    amount=str(rng.choice([59, 89])),
                    status=rng.choices(["paid", "refunded", "cancelled"], [80, 10, 10])[0],
                    channel="douyin",
                    category=rng.choice(["文胸", "内裤", "睡衣"]),
                    parent=f"D{number}",
                )
    # Partial refunds: refund a part.
    for order in Order.objects.filter(status="partially_refunded"):
        order.refund_amount = order.amount / 4
        order.save()
    facts_refresh()


def _raw_days(channels=None, member=None) -> dict[int, set[date]]:
    days = defaultdict(set)
    members = dict(Customer.objects.values_list("pk", "is_member"))
    purchased = purchase_days()
    for order in Order.objects.filter(pk__in=purchased):
        if channels and order.channel not in channels:
            continue
        if member is not None and members[order.customer_id] != member:
            continue
        days[order.customer_id].add(purchased[order.pk])
    return days


def test_the_shop_has_checkouts_split_over_midnight(shop):
    split = Order.objects.exclude(parent_order_id="").filter(status__in=PURCHASED)
    purchased = purchase_days()
    assert any(purchased[o.pk] != o.paid_at.astimezone(SH).date() for o in split)


@pytest.mark.parametrize(
    ("start", "end", "filters", "raw"),
    [
        (date(2025, 1, 1), date(2026, 12, 31), Filters(), {}),
        (date(2025, 6, 1), date(2025, 12, 31), Filters(), {}),
        (
            date(2025, 1, 1),
            date(2026, 12, 31),
            Filters(channels=("tmall", "jd")),
            {"channels": {"tmall", "jd"}},
        ),
        (date(2025, 1, 1), date(2026, 12, 31), Filters(member=True), {"member": True}),
        (date(2025, 1, 1), date(2026, 12, 31), Filters(member=False), {"member": False}),
    ],
)
def test_repurchase_matches_python(shop, start, end, filters, raw):
    days = _raw_days(**raw)
    in_window = {c: {d for d in s if start <= d <= end} for c, s in days.items()}
    buyers = [c for c, s in in_window.items() if s]
    repeat = [c for c in buyers if len(in_window[c]) >= 2]
    result = metrics.repurchase(start=start, end=end, filters=filters)
    assert (result["buyers"], result["repeat_buyers"]) == (len(buyers), len(repeat))
    assert len(buyers) > 5


TRENDS = [
    ("month", Filters(), {}),
    ("week", Filters(), {}),
    ("month", Filters(channels=("tmall", "jd")), {"channels": {"tmall", "jd"}}),
    ("month", Filters(member=True), {"member": True}),
]


@pytest.mark.parametrize(("period", "filters", "raw"), TRENDS)
def test_repurchase_trend_matches_python(shop, period, filters, raw):
    start, end = date(2025, 3, 12), date(2026, 2, 20)  # both ends inside a period
    days = _raw_days(**raw)
    rows = metrics.repurchase_trend(start=start, end=end, period=period, filters=filters)
    starts = metrics.periods_between(start, end, period)
    assert [row["period"] for row in rows] == [metrics.period_label(s, period) for s in starts]
    for row, first in zip(rows, starts, strict=True):
        low = max(first, start)
        high = min(metrics.next_period(first, period) - timedelta(days=1), end)
        counts = [len({d for d in s if low <= d <= high}) for s in days.values()]
        assert (row["start"], row["end"]) == (low.isoformat(), high.isoformat())
        assert (row["buyers"], row["repeat_buyers"]) == (
            sum(n >= 1 for n in counts),
            sum(n >= 2 for n in counts),
        )
    assert sum(row["repeat_buyers"] for row in rows) > 0


@pytest.mark.parametrize(("period", "filters", "raw"), TRENDS)
def test_returning_trend_matches_python(shop, period, filters, raw):
    start, end = date(2025, 3, 12), date(2026, 2, 20)
    days = _raw_days(**raw)
    rows = metrics.returning_trend(start=start, end=end, period=period, filters=filters)
    starts = metrics.periods_between(start, end, period)
    assert len(rows) == len(starts)
    for row, first in zip(rows, starts, strict=True):
        # A: the whole period before; B: this period, clipped to the range.
        a_low = metrics.period_start(first - timedelta(days=1), period)
        a_high = first - timedelta(days=1)
        b_low = max(first, start)
        b_high = min(metrics.next_period(first, period) - timedelta(days=1), end)
        buyers = {c for c, s in days.items() if any(a_low <= d <= a_high for d in s)}
        returned = {c for c in buyers if any(b_low <= d <= b_high for d in days[c])}
        assert row["a"] == [a_low.isoformat(), a_high.isoformat()]
        assert row["b"] == [b_low.isoformat(), b_high.isoformat()]
        assert (row["buyers"], row["returned"]) == (len(buyers), len(returned))
        assert row["rate"] == (len(returned) / len(buyers) if buyers else None)
    assert sum(row["returned"] for row in rows) > 0


@pytest.mark.parametrize(
    ("period", "end"),
    [
        ("month", date(2026, 8, 31)),
        ("week", date(2026, 8, 31)),
        ("month", date(2026, 4, 17)),  # inside a month: later first buyers are in no cohort
        ("week", date(2026, 4, 15)),
    ],
)
def test_cohorts_match_python(shop, period, end):
    start = date(2025, 1, 1)
    days = _raw_days()
    expected = defaultdict(lambda: {"members": set(), "active": defaultdict(set)})
    for customer, customer_days in days.items():
        if min(customer_days) > end:
            continue
        first = metrics.period_start(min(customer_days), period)
        expected[first]["members"].add(customer)
        for day in customer_days:
            if day <= end:
                expected[first]["active"][metrics.period_start(day, period)].add(customer)
    result = metrics.cohorts(by="first_purchase", period=period, start=start, end=end)
    assert [c["cohort"] for c in result["cohorts"]] == [
        metrics.period_label(first, period) for first in sorted(expected)
    ]
    for row, first in zip(result["cohorts"], sorted(expected), strict=True):
        cell = expected[first]
        assert row["size"] == len(cell["members"])
        starts = metrics.periods_between(first, end, period)
        assert row["active"] == [len(cell["active"].get(s, set())) for s in starts]
        assert row["retention"][0] == 1.0


@pytest.mark.parametrize("end", [date(2026, 8, 31), date(2026, 4, 17)])
def test_joined_cohorts_match_python(shop, end):
    days = _raw_days()
    expected = defaultdict(lambda: {"members": set(), "active": defaultdict(set)})
    for customer in Customer.objects.filter(joined_at__isnull=False):
        if customer.joined_at.astimezone(SH).date() > end:
            continue
        first = metrics.period_start(customer.joined_at.astimezone(SH).date(), "month")
        expected[first]["members"].add(customer.pk)
        for day in days.get(customer.pk, ()):
            month = metrics.period_start(day, "month")
            if first <= month and day <= end:
                expected[first]["active"][month].add(customer.pk)
    result = metrics.cohorts(by="joined", period="month", start=date(2025, 1, 1), end=end)
    assert [row["cohort"] for row in result["cohorts"]] == [
        metrics.period_label(first, "month") for first in sorted(expected)
    ]
    for row in result["cohorts"]:
        first = date.fromisoformat(row["cohort"] + "-01")
        starts = metrics.periods_between(first, end, "month")
        assert row["size"] == len(expected[first]["members"])
        assert row["active"] == [len(expected[first]["active"].get(s, set())) for s in starts]


@pytest.mark.parametrize("end", [date(2026, 8, 31), date(2026, 4, 17)])
def test_historical_ltv_matches_python(shop, end):
    spend = defaultdict(list)
    purchased = purchase_days()
    for order in Order.objects.filter(pk__in=purchased):
        spend[order.customer_id].append((purchased[order.pk], order.amount - order.refund_amount))
    cohorts = defaultdict(list)
    for customer, rows in spend.items():
        if min(d for d, _ in rows) <= end:
            cohorts[metrics.period_start(min(d for d, _ in rows), "month")].append(customer)
    result = metrics.historical_ltv(period="month", start=date(2025, 1, 1), end=end, periods=6)
    assert len(result["cohorts"]) == len(cohorts)
    for row in result["cohorts"]:
        first = date.fromisoformat(row["cohort"] + "-01")
        members = cohorts[first]
        starts = metrics.periods_between(first, end, "month")[:6]
        curve = []
        for index in range(len(starts)):
            limit = metrics.next_period(starts[index], "month")
            total = sum(net for c in members for d, net in spend[c] if d < limit and d <= end)
            curve.append(round(float(total) / len(members), 2))
        assert row["ltv"] == pytest.approx(curve, abs=0.011)


def test_a_categorys_ltv_is_what_was_spent_on_it():
    """By hand: a bra of 100 and pyjamas of 300 in one order count 100 for bras; a bra
    refunded in full counts nothing and makes no bra day; one refunded in part counts
    what was kept."""
    a, b = CustomerFactory(), CustomerFactory()
    both = buy(a, at("2026-03-02"), amount="400")
    OrderLine.objects.filter(order=both).update(line_amount=Decimal(100), unit_price=Decimal(100))
    OrderLine.objects.create(
        order=both, line_no=2, sku="P", category="睡衣", quantity=1,
        unit_price=Decimal(300), line_amount=Decimal(300), refund_amount=Decimal(0),
    )  # fmt: skip
    later = buy(a, at("2026-04-10"), amount="80", status="partially_refunded")
    Order.objects.filter(pk=later.pk).update(refund_amount=Decimal(30))
    OrderLine.objects.filter(order=later).update(refund_amount=Decimal(30))
    returned = buy(b, at("2026-03-05"), amount="200")  # its bra line sent back
    OrderLine.objects.filter(order=returned).update(refund_amount=Decimal(200))
    Order.objects.filter(pk=returned.pk).update(
        status="partially_refunded", amount=Decimal(250), refund_amount=Decimal(200)
    )
    OrderLine.objects.create(
        order=returned, line_no=2, sku="P", category="睡衣", quantity=1,
        unit_price=Decimal(50), line_amount=Decimal(50), refund_amount=Decimal(0),
    )  # fmt: skip
    facts_refresh()
    result = metrics.historical_ltv(
        period="month", start=date(2026, 3, 1), end=date(2026, 4, 30), periods=2,
        filters=Filters(category="文胸"),
    )  # fmt: skip
    # one bra buyer (b's bra went back): 100 in March, 100 + 50 kept by April
    assert result["cohorts"] == [{"cohort": "2026-03", "size": 1, "ltv": [100.0, 150.0]}]
    pyjamas = metrics.historical_ltv(
        period="month", start=date(2026, 3, 1), end=date(2026, 4, 30), periods=2,
        filters=Filters(category="睡衣"),
    )  # fmt: skip
    assert pyjamas["cohorts"] == [{"cohort": "2026-03", "size": 2, "ltv": [175.0, 175.0]}]


@pytest.mark.parametrize("window", ["everything", "from the day after a purchase"])
def test_intervals_match_python(shop, window):
    end = date(2026, 12, 31)
    by_category = defaultdict(lambda: defaultdict(set))
    purchased = purchase_days()
    for line in OrderLine.objects.select_related("order").filter(order__in=purchased):
        order = line.order
        if line.refund_amount >= line.line_amount > 0:
            continue
        day = purchased[order.pk]
        by_category[line.category][order.customer_id].add(day)
        by_category["全部"][order.customer_id].add(day)
    if window == "everything":
        start = date(2025, 1, 1)
    else:  # a pair whose later day is the day before the window does not count
        second = min(sorted(days)[1] for days in by_category["全部"].values() if len(days) > 1)
        start = second + timedelta(days=1)
    result = {row["category"]: row for row in metrics.intervals(start=start, end=end)}
    for category, customers in by_category.items():
        gaps = []
        for days in customers.values():
            ordered = sorted(day for day in days if day <= end)
            pairs = zip(ordered, ordered[1:], strict=False)
            gaps += [(b - a).days for a, b in pairs if b >= start]
        if not gaps:
            continue
        assert result[category]["intervals"] == len(gaps)
        assert result[category]["median_days"] == median(gaps)
        assert result[category]["distribution"]["≤30天"] == sum(g <= 30 for g in gaps)
