"""analytics.comparisons against an independent computation: seeded random data (members
and buyers only seen in orders, guides in stores, channel codes, deletions, SOP touches
near their send windows, orders around midnight in Shanghai), recomputed in plain Python
from the rows, per DESIGN.md ("Words") and the definitions of the dashboards."""

import random
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import pytest

from analytics import comparisons, metrics
from analytics.metrics import Filters
from contacts.facts import facts_refresh
from contacts.models import (
    CustomerFacts,
    Guide,
    Order,
    OrderLine,
    Relationship,
    RelationshipEvent,
)
from sop.models import Enrollment, SopPlan, SopStep, Touchpoint
from tests.analytics.purchases import purchase_days
from tests.contacts.factories import (
    CustomerFactory,
    GuideFactory,
    OrderFactory,
    RelationshipFactory,
    StoreFactory,
)

pytestmark = pytest.mark.django_db
SH = ZoneInfo("Asia/Shanghai")
PURCHASED = {"paid", "partially_refunded"}
DELETIONS = {"deleted_by_customer", "deleted_by_guide", "ended"}
WINDOWS = [(date(2026, 3, 1), date(2026, 5, 31)), (date(2026, 1, 1), date(2026, 12, 31))]
BASE = datetime(2026, 1, 1, tzinfo=SH)


def _instant(rng: random.Random, days: int = 200) -> datetime:
    # Whole hours, often near Shanghai midnight, so day boundaries are exercised.
    return BASE + timedelta(days=rng.randrange(days), hours=rng.choice([0, 1, 12, 23]))


def _order(rng: random.Random, customer, paid_at: datetime, parent: str = "") -> None:
    status = rng.choices(["paid", "refunded", "partially_refunded", "cancelled"], [80, 8, 6, 6])[0]
    amount = Decimal(rng.choice([59, 89, 159, 399]))
    refund = {"refunded": amount, "partially_refunded": amount / 4}.get(status, Decimal(0))
    channel = "douyin" if parent else rng.choice(["tmall", "jd", "douyin", "miniapp"])
    if channel == "douyin" and not parent and rng.random() < 0.5:
        # A checkout split into sub-orders (子订单): one order for AOV, whatever they are.
        parent = f"P{rng.randrange(10**9)}"
        for _ in range(rng.choice([1, 2])):  # paid with it, or (from 23:00) after midnight
            _order(rng, customer, paid_at + timedelta(minutes=rng.choice([0, 70])), parent)
    order = OrderFactory(
        customer=customer,
        paid_at=paid_at,
        amount=amount,
        refund_amount=refund,
        status=status,
        channel=channel,
        parent_order_id=parent,
    )
    OrderLine.objects.create(
        order=order,
        line_no=1,
        sku="S",
        category=rng.choice(["文胸", "内裤", "睡衣"]),
        quantity=1,
        unit_price=amount,
        line_amount=amount,
        refund_amount=refund,
    )


@pytest.fixture
def world():
    rng = random.Random(20261201)
    stores = [StoreFactory(code=f"CS{n}") for n in range(3)]
    guides = [GuideFactory(wecom_userid=f"cg{n}", store=stores[n % 3]) for n in range(6)]
    GuideFactory(wecom_userid="cg-idle", is_active=False, store=stores[0])  # left the brand
    plan = SopPlan.objects.create(
        name="回访", trigger=SopPlan.Trigger.MANUAL, started_at=BASE - timedelta(days=30)
    )
    step = SopStep.objects.create(plan=plan, position=1, script="你好")
    customers = []
    for number in range(90):
        member = rng.random() < 0.65
        customer = CustomerFactory(
            is_member=member,
            joined_at=None,
            external_userid=f"cw{number:030d}" if member else None,
        )
        customers.append(customer)
        if member:
            followed = rng.sample(guides, rng.choice([1, 1, 2]))
            for guide in followed:
                added = _instant(rng) - timedelta(days=rng.choice([0, 0, 60]))
                relationship = RelationshipFactory(
                    customer=customer,
                    guide=guide,
                    added_at=added,
                    state=rng.choice(["", "pkg_card", "live_01"]),
                )
                if rng.random() < 0.3:  # deleted (once or twice), ended
                    for _ in range(rng.choice([1, 1, 2])):
                        RelationshipEvent.objects.create(
                            relationship=relationship,
                            kind=rng.choice(sorted(DELETIONS) + ["edited"]),
                            source="callback",
                            occurred_at=added + timedelta(days=rng.randrange(1, 120)),
                        )
                    relationship.is_active = rng.random() < 0.3
                    relationship.save()
            # Joined at the first relationship (the first-order conversion reads it).
            customer.joined_at = min(r.added_at for r in customer.relationships.all())
            customer.save(update_fields=["joined_at"])
        for _ in range(rng.choice([0, 1, 2, 3, 5])):
            _order(rng, customer, _instant(rng))
    for number in range(160):  # touches: done early, late, or not done
        relationship = rng.choice(list(Relationship.objects.all()))
        due = _instant(rng)
        enrollment = Enrollment.objects.create(
            plan=plan,
            customer_id=relationship.customer_id,
            guide_id=relationship.guide_id,
            trigger_key=f"k{number}",
            triggered_at=due,
        )
        status = rng.choice(["done", "done", "done", "skipped", "task"])
        done_at = due + timedelta(hours=rng.choice([1, 8, 9, 10, 30])) if status == "done" else None
        touchpoint = Touchpoint.objects.create(
            enrollment=enrollment,
            step=step,
            plan=plan,
            customer_id=relationship.customer_id,
            guide_id=relationship.guide_id,
            due_at=due,
            window_ends_at=due + timedelta(hours=9),
            status=status,
            done_at=done_at,
        )
        if done_at and rng.random() < 0.35:  # bought after the touch: within 7 days or just after
            after = rng.choice([timedelta(hours=-1), timedelta(days=2), timedelta(days=7)])
            _order(rng, touchpoint.customer, done_at + after + timedelta(hours=rng.choice([0, 1])))
    facts_refresh()
    return customers


def _bounds(start: date, end: date) -> tuple[datetime, datetime]:
    return (
        datetime(start.year, start.month, start.day, tzinfo=SH),
        datetime(end.year, end.month, end.day, tzinfo=SH) + timedelta(days=1),
    )


def _purchases(start: date, end: date):
    """The window's purchased orders of customers with facts, but those of a checkout
    begun before the window: (order, its purchase day, facts)."""
    low, high = _bounds(start, end)
    facts = {f.customer_id: f for f in CustomerFacts.objects.all()}
    purchased = purchase_days()
    for order in Order.objects.filter(pk__in=purchased):
        if order.customer_id not in facts or not low <= order.paid_at < high:
            continue
        if purchased[order.pk] >= start:
            yield order, purchased[order.pk], facts[order.customer_id]


def _cents(value: Decimal) -> Decimal:
    """Money to the cent, half a cent up (as a till does; Decimal's default would round
    519.905 to the even 519.90)."""
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@pytest.mark.parametrize(("start", "end"), WINDOWS)
def test_member_comparison_matches_python(world, start, end):
    groups: dict[str, dict] = defaultdict(
        lambda: {"days": defaultdict(set), "orders": set(), "net": Decimal(0)}
    )
    for order, day, facts in _purchases(start, end):
        for group in ("member" if facts.is_member else "non_member", "all"):
            cell = groups[group]
            cell["days"][order.customer_id].add(day)
            cell["orders"].add((order.channel, order.parent_order_id or order.channel_order_id))
            cell["net"] += order.amount - order.refund_amount
    rows = comparisons.member_comparison(start=start, end=end)
    assert [row["group"] for row in rows] == ["member", "non_member", "all"]
    for row in rows:
        cell = groups[row["group"]]
        buyers = len(cell["days"])
        repeat = sum(1 for days in cell["days"].values() if len(days) >= 2)
        assert (row["buyers"], row["repeat_buyers"], row["orders"]) == (
            buyers,
            repeat,
            len(cell["orders"]),
        )
        assert row["rate"] == pytest.approx(repeat / buyers)
        assert row["net_revenue"] == _cents(cell["net"])
        assert row["aov"] == _cents(cell["net"] / len(cell["orders"]))
        assert row["ltv_per_buyer"] == _cents(cell["net"] / buyers)
    assert rows[0]["buyers"] > 5 and rows[1]["buyers"] > 5
    split = Order.objects.exclude(parent_order_id="").filter(status__in=PURCHASED)
    assert split.count() > len(set(split.values_list("parent_order_id", flat=True)))
    purchased = purchase_days()
    assert any(purchased[o.pk] != o.paid_at.astimezone(SH).date() for o in split)


@pytest.mark.parametrize(("start", "end"), WINDOWS)
def test_guide_leaderboard_matches_python(world, start, end):
    low, high = _bounds(start, end)
    orders = [o for o in Order.objects.all() if o.status in PURCHASED and o.paid_at]
    expected = {}
    for guide in Guide.objects.select_related("store"):
        done = [
            t
            for t in Touchpoint.objects.filter(guide=guide, status="done")
            if low <= t.done_at < high
        ]
        bought = {
            t.customer_id
            for t in done
            for o in orders
            if o.customer_id == t.customer_id
            and t.done_at <= o.paid_at <= t.done_at + timedelta(days=7)
        }
        live = set(
            Relationship.objects.filter(guide=guide, is_active=True).values_list(
                "customer_id", flat=True
            )
        )
        net = sum(
            (
                o.amount - o.refund_amount
                for o in orders
                if o.customer_id in live and low <= o.paid_at < high
            ),
            Decimal(0),
        )
        if not (guide.is_active or done or live):
            continue
        expected[guide.pk] = {
            "guide": guide.name,
            "store": guide.store.name,
            "done_on_time": sum(1 for t in done if t.done_at <= t.window_ends_at),
            "done": len(done),
            "customers_served": len(live),
            "purchased_7d": len(bought),
            "net_revenue": _cents(net),
        }
    order = sorted(
        expected, key=lambda pk: (-expected[pk]["net_revenue"], -expected[pk]["done_on_time"], pk)
    )
    rows = comparisons.guide_leaderboard(start=start, end=end)
    assert [row["guide_id"] for row in rows] == order
    assert [row["rank"] for row in rows] == list(range(1, len(order) + 1))
    for row in rows:
        picked = {key: row[key] for key in expected[row["guide_id"]]}
        assert picked == expected[row["guide_id"]]
    assert sum(row["done_on_time"] for row in rows) > 0
    assert sum(row["purchased_7d"] for row in rows) > 0
    # Limited, and narrowed to one store.
    assert [
        row["guide_id"] for row in comparisons.guide_leaderboard(start=start, end=end, limit=2)
    ] == order[:2]
    store = Guide.objects.get(wecom_userid="cg1").store
    in_store = comparisons.guide_leaderboard(start=start, end=end, store_id=store.pk)
    assert [row["guide_id"] for row in in_store] == [
        pk for pk in order if Guide.objects.get(pk=pk).store_id == store.pk
    ]


@pytest.mark.parametrize(("start", "end"), WINDOWS)
def test_customer_growth_matches_python(world, start, end):
    low, high = _bounds(start, end)
    guides = {g.pk: g for g in Guide.objects.select_related("store")}
    first: dict[int, Relationship] = {}
    for relationship in Relationship.objects.order_by("added_at", "id"):
        first.setdefault(relationship.customer_id, relationship)
    deletions: dict[int, RelationshipEvent] = {}
    for event in RelationshipEvent.objects.select_related("relationship").order_by(
        "occurred_at", "id"
    ):
        if event.kind in DELETIONS and low <= event.occurred_at < high:
            deletions.setdefault(event.relationship.customer_id, event)
    daily = defaultdict(lambda: [0, 0])
    by = {name: defaultdict(lambda: [0, 0]) for name in ("guide", "store", "state")}

    def count(relationship: Relationship, when: datetime, index: int) -> None:
        daily[when.astimezone(SH).date()][index] += 1
        by["guide"][relationship.guide_id][index] += 1
        by["store"][guides[relationship.guide_id].store_id][index] += 1
        by["state"][relationship.state][index] += 1

    for relationship in first.values():
        if low <= relationship.added_at < high:
            count(relationship, relationship.added_at, 0)
    for event in deletions.values():
        count(event.relationship, event.occurred_at, 1)

    result = comparisons.customer_growth(start=start, end=end)
    assert len(result["daily"]) == (end - start).days + 1
    for row in result["daily"]:
        new, churned = daily.get(row["day"], [0, 0])
        assert (row["new"], row["churned"], row["net"]) == (new, churned, new - churned)
    assert result["new"] == sum(v[0] for v in daily.values()) > 5
    assert result["churned"] == sum(v[1] for v in daily.values()) > 2
    assert result["net"] == result["new"] - result["churned"]
    for name in ("guide", "store", "state"):
        got = {row["key"]: (row["new"], row["churned"], row["net"]) for row in result[name]}
        assert got == {key: (n, c, n - c) for key, (n, c) in by[name].items()}
    names = {row["key"]: row["label"] for row in result["guide"]}
    assert names == {pk: guides[pk].name for pk in by["guide"]}
    # Narrowed to one guide, store or channel code: the days of its movements only.
    kept = {
        "guide_id": lambda relationship, value: relationship.guide_id == value,
        "store_id": lambda relationship, value: guides[relationship.guide_id].store_id == value,
        "state": lambda relationship, value: relationship.state == value,
    }
    for name, value in [
        ("guide_id", max(by["guide"], key=lambda key: sum(by["guide"][key]))),
        ("store_id", max(by["store"], key=lambda key: sum(by["store"][key]))),
        ("state", "live_01"),
    ]:
        expected = defaultdict(lambda: [0, 0])
        for relationship in first.values():
            if low <= relationship.added_at < high and kept[name](relationship, value):
                expected[relationship.added_at.astimezone(SH).date()][0] += 1
        for event in deletions.values():
            if kept[name](event.relationship, value):
                expected[event.occurred_at.astimezone(SH).date()][1] += 1
        narrowed = comparisons.customer_growth(start=start, end=end, **{name: value})
        got = {row["day"]: [row["new"], row["churned"]] for row in narrowed["daily"]}
        assert {day: counts for day, counts in got.items() if counts != [0, 0]} == dict(expected), (
            name
        )
        assert 0 < narrowed["new"] + narrowed["churned"] < result["new"] + result["churned"]


@pytest.mark.parametrize("by", sorted(comparisons.SPLITS))
def test_repurchase_split_is_repurchase_filtered_by_each_key(world, by):
    start, end = WINDOWS[1]
    for filters in (Filters(), Filters(channels=("tmall", "jd")), Filters(member=True)):
        rows = comparisons.repurchase_split(start=start, end=end, by=by, filters=filters)
        assert rows
        for row in rows:
            narrowed = {
                "member": {"member": row["key"]},
                "channel": {"channels": (row["key"],)},
                "category": {"category": row["key"]},
                "guide": {"guide_id": row["key"]},
                "store": {"store_id": row["key"]},
            }[by]
            if by == "channel" and filters.channels:
                assert row["key"] in filters.channels
            merged = Filters(**{**filters.__dict__, **narrowed})
            expected = metrics.repurchase(start=start, end=end, filters=merged)
            assert (row["buyers"], row["repeat_buyers"], row["rate"]) == (
                expected["buyers"],
                expected["repeat_buyers"],
                expected["rate"],
            )
        buyers = [row["buyers"] for row in rows]
        assert buyers == sorted(buyers, reverse=True)


def test_customer_facts_count_a_split_checkout_once(world):
    checkouts: dict[int, set] = defaultdict(set)
    for order in Order.objects.filter(status__in=PURCHASED, paid_at__isnull=False):
        checkouts[order.customer_id].add(
            (order.channel, order.parent_order_id or order.channel_order_id)
        )
    facts = {f.customer_id: f.orders for f in CustomerFacts.objects.filter(orders__gt=0)}
    assert facts == {customer: len(keys) for customer, keys in checkouts.items()}
    assert any(
        len(keys) < Order.objects.filter(customer_id=customer, status__in=PURCHASED).count()
        for customer, keys in checkouts.items()
    )
