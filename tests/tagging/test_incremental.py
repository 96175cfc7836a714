"""Incremental evaluation equals full evaluation (the claim of tagging.evaluation).

Property: a random small population is tagged in full; random changes are applied
through the app's own paths (orders added or refunded and marked for a facts
refresh as the importer marks them, relationships ended by the callback service,
manual tags set by hand); the pending facts are refreshed, which queues exactly
the customers to retag; those are evaluated incrementally. A full evaluation
afterwards, for the same day, must then find nothing to add or remove.

The rules in force read facts of every kind: windowed purchase days and revenue,
average order value, recency, first purchase, median interval, shares by lines and
by revenue, channels, membership, guide, store, joined date, a manual tag, another
rule's tag and a (per-customer) system tag, in nested all / any / not groups.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contacts import services as contacts_services
from contacts.facts import facts_mark_pending, facts_refresh, facts_refresh_pending
from contacts.models import (
    Customer,
    CustomerGroup,
    CustomerGroupMember,
    Order,
    OrderLine,
    Relationship,
)
from tagging.evaluation import evaluate
from tagging.models import CustomerTag, RetagPending, Tag, TagGroup
from tagging.services import customer_tags_set, rule_save
from tests.contacts.factories import CustomerFactory, GuideFactory, OrderFactory, StoreFactory

NOW = datetime(2026, 9, 1, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
CHANNELS = ["tmall", "jd", "douyin", "youzan", "miniapp", "pos"]
# category, material, style, price
PRODUCTS = [
    ("文胸", "冰丝", "基础款", "89.00"),
    ("文胸", "棉", "基础款", "79.00"),
    ("内裤", "冰丝", "基础款", "59.00"),
    ("内裤", "莫代尔", "基础款", "69.00"),
    ("家居服", "真丝", "主题款", "399.00"),
    ("家居服", "棉", "主题款", "259.00"),
    ("", "", "", "19.00"),
]


@pytest.fixture
def world(db):
    """Guides in two stores, a manual tag, and rules of every fact kind."""
    s1, s2 = StoreFactory(code="S1"), StoreFactory(code="S2")
    guides = [
        GuideFactory(wecom_userid="g1", store=s1),
        GuideFactory(wecom_userid="g2", store=s2),
        GuideFactory(wecom_userid="g3", store=None),
    ]
    vip = Tag.objects.create(group=TagGroup.objects.create(name="运营"), name="VIP")
    evaluate(customer_ids=None, now=NOW)  # creates the system tags (nobody yet)
    loyal = Tag.objects.get(group__system_key="lifecycle", name="忠诚客")
    group = TagGroup.objects.create(name="规则")

    def rule(name, condition):
        saved = rule_save(
            tag=None,
            group=group,
            name=name,
            color="#000000",
            condition=condition,
            is_active=True,
            by=None,
        )
        return saved.tag_id

    recent = rule("近半年复购", {"fact": "purchase_days", "op": ">=", "value": 2, "days": 180})
    rule(
        "冰丝金额过半",
        {"fact": "material_share", "key": "冰丝", "by": "revenue", "op": ">=", "value": 0.5},
    )
    rule(
        "文胸件数",
        {
            "any": [
                {"fact": "category_share", "key": "文胸", "op": ">", "value": 0.5},
                {"fact": "style_share", "key": "主题款", "op": "between", "value": [0.3, 0.7]},
            ]
        },
    )
    rule(
        "私域会员",
        {
            "all": [
                {"fact": "channel", "op": "any_of", "value": ["youzan", "miniapp"]},
                {"fact": "is_member", "op": "is", "value": True},
                {"not": {"fact": "channel", "op": "all_of", "value": ["tmall", "jd"]}},
            ]
        },
    )
    rule(
        "门店",
        {
            "any": [
                {"fact": "guide", "op": "any_of", "value": ["g1"]},
                {
                    "all": [
                        {"fact": "store", "op": "none_of", "value": ["S2"]},
                        {"fact": "joined_on", "op": ">=", "value": "2025-06-01"},
                    ]
                },
            ]
        },
    )
    rule(
        "高价值",
        {
            "any": [
                {"fact": "avg_order_value", "op": ">=", "value": 200},
                {"fact": "net_revenue", "op": ">", "value": 500, "days": 365},
                {"fact": "median_interval_days", "op": "between", "value": [10, 60]},
            ]
        },
    )
    rule(
        "VIP活跃",
        {
            "all": [
                {"fact": "tag", "op": "has", "value": vip.pk},
                {"not": {"fact": "days_since_last_purchase", "op": ">", "value": 90}},
            ]
        },
    )
    rule(
        "复购非VIP",
        {
            "all": [
                {"fact": "tag", "op": "has", "value": recent},
                {"fact": "tag", "op": "lacks", "value": vip.pk},
                {"fact": "first_purchase_on", "op": "<", "value": "2026-06-01"},
            ]
        },
    )
    rule("忠诚会员", {"all": [{"fact": "tag", "op": "has", "value": loyal.pk}]})
    return {"guides": guides, "vip": vip}


orders = st.tuples(
    st.sampled_from(CHANNELS),
    st.integers(min_value=0, max_value=500),  # days before today
    st.integers(min_value=0, max_value=23),  # hour, Shanghai
    st.sampled_from(["paid", "paid", "paid", "refunded", "partially_refunded", "cancelled"]),
    st.lists(st.integers(0, len(PRODUCTS) - 1), min_size=1, max_size=3, unique=True),
)
people = st.lists(
    st.fixed_dictionaries(
        {
            "guides": st.lists(st.integers(0, 2), max_size=2, unique=True),
            "group": st.booleans(),
            "vip": st.booleans(),
            "orders": st.lists(orders, max_size=3),
        }
    ),
    min_size=1,
    max_size=5,
)
changes = st.lists(
    st.tuples(
        st.sampled_from(["order", "refund", "end", "vip_add", "vip_remove"]),
        st.integers(min_value=0, max_value=99),  # which customer (mod the population)
        orders,
    ),
    min_size=1,
    max_size=3,
)


def _add_order(customer: Customer, spec) -> None:
    channel, days_ago, hour, status, products = spec
    paid_at = None
    if status != "cancelled":
        paid_at = (NOW - timedelta(days=days_ago)).replace(hour=hour) - timedelta(hours=8)
    lines = []
    for number, index in enumerate(products, start=1):
        category, material, style, price = PRODUCTS[index]
        refund = {"refunded": price, "partially_refunded": "10.00" if number == 1 else "0"}.get(
            status, "0"
        )
        lines.append((number, category, material, style, Decimal(price), Decimal(refund)))
    order = OrderFactory(
        customer=customer,
        channel=channel,
        status=status,
        paid_at=paid_at,
        amount=sum(line[4] for line in lines),
        refund_amount=sum(line[5] for line in lines),
        line_count=len(lines),
    )
    OrderLine.objects.bulk_create(
        OrderLine(
            order=order,
            line_no=number,
            sku=f"P{order.pk}-{number}",
            category=category,
            material=material,
            style=style,
            quantity=1,
            unit_price=amount,
            line_amount=amount,
            refund_amount=refund,
        )
        for number, category, material, style, amount, refund in lines
    )


def _populate(world, population) -> list[Customer]:
    customers = []
    for number, person in enumerate(population):
        member = bool(person["guides"])
        customer = CustomerFactory(
            external_userid=f"wm-prop-{number}",
            is_member=member,
            joined_at=datetime(2025, 1 + number, 15, tzinfo=UTC) if member else None,
        )
        for index in person["guides"]:
            Relationship.objects.create(
                customer=customer, guide=world["guides"][index], added_at=customer.joined_at
            )
        if person["group"]:
            chat = CustomerGroup.objects.create(chat_id=f"chat-{number}", owner_userid="g1")
            CustomerGroupMember.objects.create(
                group=chat, userid=customer.external_userid, type=2, customer=customer
            )
        for spec in person["orders"]:
            _add_order(customer, spec)
        customers.append(customer)
    vips = [c.pk for c, p in zip(customers, population, strict=True) if p["vip"]]
    customer_tags_set(tag=world["vip"], customer_ids=vips, add=True, by=None)
    return customers


def _change(world, customers: list[Customer], kind: str, which: int, spec) -> int:
    """Apply one change the way the app does; returns the customer it concerns."""
    customer = customers[which % len(customers)]
    if kind == "order":
        _add_order(customer, spec)
        facts_mark_pending([customer.pk])  # as the order import marks its buyers
    elif kind == "refund":
        order = (
            Order.objects.filter(customer=customer)
            .exclude(status="cancelled")
            .order_by("pk")
            .first()
        )
        if order is not None:
            OrderLine.objects.filter(order=order).update(refund_amount=F("line_amount"))
            order.status, order.refund_amount = "refunded", order.amount
            order.save(update_fields=["status", "refund_amount", "updated_at"])
            facts_mark_pending([customer.pk])  # as a re-import of the refunded order does
    elif kind == "end":
        relationship = Relationship.objects.filter(customer=customer, is_active=True).first()
        if relationship is not None:
            contacts_services.relationship_end(
                event={
                    "ChangeType": "del_follow_user",
                    "ExternalUserID": customer.external_userid,
                    "UserID": relationship.guide.wecom_userid,
                    "CreateTime": int(NOW.timestamp()),
                }
            )
    else:
        customer_tags_set(
            tag=world["vip"], customer_ids=[customer.pk], add=kind == "vip_add", by=None
        )
    return customer.pk


def _assignments() -> set[tuple[int, int]]:
    return set(CustomerTag.objects.values_list("customer_id", "tag_id"))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(population=people, edits=changes)
def test_incremental_then_full_changes_nothing(world, population, edits):
    with transaction.atomic():
        customers = _populate(world, population)
        facts_refresh()
        evaluate(customer_ids=None, now=NOW)
        RetagPending.objects.all().delete()
        touched = {_change(world, customers, *edit) for edit in edits}
        facts_refresh_pending()  # refreshes the marked customers, queues them for a retag
        queued = set(RetagPending.objects.values_list("customer_id", flat=True))
        RetagPending.objects.all().delete()
        # everyone whose data changed is queued (a no-op change may queue nobody)
        assert queued <= touched
        evaluate(customer_ids=sorted(queued), now=NOW)
        incremental = _assignments()
        full = evaluate(customer_ids=None, now=NOW)
        assert (dict(full.added), dict(full.removed)) == ({}, {})
        assert _assignments() == incremental
        transaction.set_rollback(True)


def test_a_rule_reading_an_rfm_tag_follows_the_population(world):
    """A is 重要价值 while the mean revenue is low; B's big new orders raise the mean, A
    is no longer 重要价值 and must lose the rule tag that reads it, though only B changed."""
    evaluate(customer_ids=None, now=NOW)
    top = Tag.objects.get(group__system_key="rfm", name="重要价值")
    reads_rfm = rule_save(
        tag=None,
        group=TagGroup.objects.get(name="规则"),
        name="重要价值客户",
        color="#000000",
        condition={"fact": "tag", "op": "has", "value": top.pk},
        is_active=True,
        by=None,
    )
    a, b = CustomerFactory(is_member=False), CustomerFactory(is_member=False)
    for days_ago in (5, 20, 40):
        _add_order(a, ("tmall", days_ago, 10, "paid", [4]))  # 3 days, 1197
    _add_order(b, ("tmall", 200, 10, "paid", [6]))  # 1 day long ago, 19
    facts_refresh()
    evaluate(customer_ids=None, now=NOW)
    assert CustomerTag.objects.filter(customer=a, tag_id=reads_rfm.tag_id).exists()
    for days_ago in (1, 2, 3, 4):
        _add_order(b, ("tmall", days_ago, 10, "paid", [4, 5, 0]))  # 4 days of 747
    facts_refresh(customer_ids=[b.pk])
    evaluate(customer_ids=[b.pk], now=NOW)
    assert not CustomerTag.objects.filter(customer=a, tag=top).exists()  # RFM moved
    full = evaluate(customer_ids=None, now=NOW)
    assert (dict(full.added), dict(full.removed)) == ({}, {})
