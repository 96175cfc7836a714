"""Rule semantics, operator by operator, on five customers whose facts are worked out by
hand below (today is 2026-06-30 in Shanghai).

A  member of guide g1 (store S1), joined 2026-01-15. Orders: tmall 06-01 paid 100
   (冰丝 100); jd 06-20 paid 200 (冰丝 120, 棉 80); douyin 06-20 paid 50 (棉 50).
   → purchase days 2 (06-01, 06-20: two orders on one day are one purchase day),
   net revenue 350, 3 orders, AOV 116.67, last purchase 10 days ago, median interval
   19 days, channels douyin/jd/tmall, 4 lines: 冰丝 2/4 = 0.5 by lines,
   220/350 = 0.63 by revenue.
B  member of guide g2 (store S2), joined 2025-11-01. youzan 2025-12-01 paid 300 (棉);
   youzan 2026-03-01 fully refunded (no purchase day); miniapp 05-01 partially
   refunded 200 − 50 (棉). → 2 purchase days, net 450, 2 orders, AOV 225, last 60
   days ago, median interval 151, 2 lines, both 棉.
C  not a member; tmall 2024-01-10 paid 80 (no material). → 1 purchase day, AOV 80,
   last 902 days ago.
D  member of g1, no orders.
E  not a member; one cancelled order. → no purchase day.
"""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from contacts.facts import facts_refresh
from contacts.models import Customer, Order, OrderLine
from tagging.models import CustomerTag, CustomerTagEvent, Tag, TagGroup, TagRule
from tagging.rules import RuleError
from tagging.services import customer_tags_set, rule_preview, rule_save
from tests.contacts.factories import (
    CustomerFactory,
    GuideFactory,
    OrderFactory,
    RelationshipFactory,
    StoreFactory,
)

NOW = datetime(2026, 6, 30, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai


def _order(customer, channel, paid, amount, lines, status="paid", refund="0"):
    order = OrderFactory(
        customer=customer,
        channel=channel,
        status=status,
        paid_at=paid,
        amount=Decimal(amount),
        refund_amount=Decimal(refund),
    )
    for number, (material, line_amount, line_refund) in enumerate(lines, start=1):
        OrderLine.objects.create(
            order=order,
            line_no=number,
            sku=f"SKU{order.pk}-{number}",
            material=material,
            quantity=1,
            unit_price=Decimal(line_amount),
            line_amount=Decimal(line_amount),
            refund_amount=Decimal(line_refund),
        )
    return order


def _at(text: str) -> datetime:
    """A Shanghai wall-clock time as UTC (14:00 local is 06:00 UTC)."""
    return datetime.fromisoformat(text + "T06:00:00+00:00")


@pytest.fixture
def people(db):
    s1, s2 = StoreFactory(code="S1"), StoreFactory(code="S2")
    g1, g2 = GuideFactory(wecom_userid="g1", store=s1), GuideFactory(wecom_userid="g2", store=s2)
    a = CustomerFactory(name="A", joined_at=datetime(2026, 1, 15, 2, tzinfo=UTC))
    b = CustomerFactory(name="B", joined_at=datetime(2025, 11, 1, 2, tzinfo=UTC))
    c = CustomerFactory(name="C", external_userid=None, is_member=False, joined_at=None)
    d = CustomerFactory(name="D", joined_at=datetime(2026, 6, 1, 2, tzinfo=UTC))
    e = CustomerFactory(name="E", external_userid=None, is_member=False, joined_at=None)
    RelationshipFactory(customer=a, guide=g1)
    RelationshipFactory(customer=b, guide=g2)
    RelationshipFactory(customer=d, guide=g1)
    _order(a, "tmall", _at("2026-06-01"), "100", [("冰丝", "100", "0")])
    _order(a, "jd", _at("2026-06-20"), "200", [("冰丝", "120", "0"), ("棉", "80", "0")])
    _order(a, "douyin", _at("2026-06-20"), "50", [("棉", "50", "0")])
    _order(b, "youzan", _at("2025-12-01"), "300", [("棉", "300", "0")])
    _order(b, "youzan", _at("2026-03-01"), "300", [("棉", "300", "300")], "refunded", "300")
    _order(
        b, "miniapp", _at("2026-05-01"), "200", [("棉", "200", "50")], "partially_refunded", "50"
    )
    _order(c, "tmall", _at("2024-01-10"), "80", [("", "80", "0")])
    _order(e, "jd", _at("2026-06-10"), "99", [("棉", "99", "0")], "cancelled")
    facts_refresh()
    return {"A": a, "B": b, "C": c, "D": d, "E": e}


def _matches(people, condition) -> set[str]:
    preview = rule_preview(condition=condition, now=NOW)
    names = {row["name"] for row in preview.sample}
    assert preview.audience == len(names)
    return names


def test_facts_are_what_the_hand_count_says(people):
    a = Customer.objects.get(pk=people["A"].pk).facts
    assert (a.purchase_days, a.orders, a.lines) == (2, 3, 4)
    assert (a.net_revenue, a.avg_order_value) == (Decimal("350.00"), Decimal("116.67"))
    assert a.median_interval_days == 19
    assert a.channels == ["douyin", "jd", "tmall"]
    assert (a.top_material, a.top_material_share) == ("冰丝", 0.5)
    b = people["B"].facts
    assert (b.purchase_days, b.orders, b.net_revenue) == (2, 2, Decimal("450.00"))
    assert b.median_interval_days == 151
    assert (b.top_material, b.top_material_share) == ("棉", 1.0)
    assert people["E"].facts.purchase_days == 0


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"fact": "purchase_days", "op": ">=", "value": 2}, {"A", "B"}),
        ({"fact": "purchase_days", "op": "=", "value": 1}, {"C"}),
        ({"fact": "purchase_days", "op": "=", "value": 0}, {"D", "E"}),
        ({"fact": "purchase_days", "op": "!=", "value": 2}, {"C", "D", "E"}),
        ({"fact": "purchase_days", "op": "=", "value": 2, "days": 30}, {"A"}),
        ({"fact": "purchase_days", "op": ">=", "value": 1, "days": 60}, {"A"}),
        ({"fact": "purchase_days", "op": ">=", "value": 1, "days": 61}, {"A", "B"}),
        ({"fact": "net_revenue", "op": "between", "value": [300, 400]}, {"A"}),
        ({"fact": "net_revenue", "op": ">", "value": 400}, {"B"}),
        ({"fact": "net_revenue", "op": ">", "value": 200, "days": 90}, {"A"}),
        ({"fact": "net_revenue", "op": ">=", "value": 150, "days": 90}, {"A", "B"}),
        ({"fact": "avg_order_value", "op": "<", "value": 100}, {"C"}),
        ({"fact": "avg_order_value", "op": ">", "value": "116.66"}, {"A", "B"}),
        ({"fact": "days_since_last_purchase", "op": "<=", "value": 10}, {"A"}),
        ({"fact": "days_since_last_purchase", "op": ">", "value": 365}, {"C"}),
        ({"fact": "first_purchase_on", "op": "<", "value": "2026-01-01"}, {"B", "C"}),
        ({"fact": "median_interval_days", "op": "between", "value": [100, 200]}, {"B"}),
        ({"fact": "material_share", "key": "冰丝", "op": ">=", "value": 0.5}, {"A"}),
        ({"fact": "material_share", "key": "冰丝", "op": ">", "value": 0.5}, set()),
        (
            {"fact": "material_share", "key": "冰丝", "by": "revenue", "op": ">", "value": 0.6},
            {"A"},
        ),
        ({"fact": "material_share", "key": "棉", "op": "=", "value": 1}, {"B"}),
        ({"fact": "channel", "op": "any_of", "value": ["youzan"]}, {"B"}),
        ({"fact": "channel", "op": "all_of", "value": ["tmall", "jd"]}, {"A"}),
        ({"fact": "channel", "op": "none_of", "value": ["tmall"]}, {"B", "D", "E"}),
        ({"fact": "is_member", "op": "is", "value": True}, {"A", "B", "D"}),
        ({"fact": "is_member", "op": "is", "value": False}, {"C", "E"}),
        ({"fact": "guide", "op": "any_of", "value": ["g1"]}, {"A", "D"}),
        ({"fact": "guide", "op": "none_of", "value": ["g1"]}, {"B", "C", "E"}),
        ({"fact": "store", "op": "any_of", "value": ["S2"]}, {"B"}),
        ({"fact": "joined_on", "op": ">=", "value": "2026-01-15"}, {"A", "D"}),
        # A missing fact makes a comparison false, and `not` is its plain opposite.
        ({"not": {"fact": "avg_order_value", "op": "<", "value": 100}}, {"A", "B", "D", "E"}),
        (
            {
                "all": [
                    {"fact": "is_member", "op": "is", "value": True},
                    {"fact": "purchase_days", "op": ">=", "value": 1},
                ]
            },
            {"A", "B"},
        ),
        (
            {
                "any": [
                    {"fact": "channel", "op": "any_of", "value": ["youzan"]},
                    {"fact": "days_since_last_purchase", "op": ">", "value": 365},
                ]
            },
            {"B", "C"},
        ),
    ],
)
def test_each_operator(people, condition, expected):
    assert _matches(people, condition) == expected


def test_has_and_lacks_tag(people, operator):
    group = TagGroup.objects.create(name="运营")
    vip = Tag.objects.create(group=group, name="VIP", source=Tag.Source.MANUAL)
    assert customer_tags_set(tag=vip, customer_ids=[people["A"].pk], add=True, by=operator) == 1
    assert _matches(people, {"fact": "tag", "op": "has", "value": vip.pk}) == {"A"}
    assert _matches(people, {"fact": "tag", "op": "lacks", "value": vip.pk}) == {"B", "C", "D", "E"}
    event = CustomerTagEvent.objects.get(tag=vip)
    assert (event.customer_id, event.action, event.cause, event.by) == (
        people["A"].pk,
        "added",
        "manual",
        operator,
    )


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        ({"fact": "height", "op": ">", "value": 1}, "未知的条件项「height」"),
        ({"fact": "purchase_days", "op": "~", "value": 1}, "不支持运算「~」"),
        ({"fact": "purchase_days", "op": ">", "value": "many"}, "需要一个数字"),
        ({"fact": "purchase_days", "op": ">", "value": 1, "days": 0}, "时间窗口"),
        ({"fact": "net_revenue", "op": "between", "value": [5, 1]}, "下限大于上限"),
        ({"fact": "first_purchase_on", "op": ">", "value": "2026/01/01"}, "YYYY-MM-DD"),
        ({"fact": "material_share", "op": ">", "value": 0.5}, "需要 key"),
        ({"fact": "material_share", "key": "棉", "op": ">", "value": 50}, "0 到 1"),
        ({"fact": "material_share", "key": "棉", "op": "between", "value": [0.5, 7]}, "0 到 1"),
        ({"fact": "material_share", "key": "棉", "op": "between", "value": [-1, 0.5]}, "0 到 1"),
        ({"fact": "channel", "op": "any_of", "value": []}, "非空的列表"),
        ({"fact": "guide", "op": "any_of", "value": ["nobody"]}, "找不到导购：nobody"),
        ({"fact": "tag", "op": "has", "value": 999999}, "找不到标签：999999"),
        ({"all": []}, "至少一个子条件"),
        ({"all": [1]}, "每个条件都应是一个对象"),
        ({"fact": "is_member", "op": "is", "value": "yes"}, "true 或 false"),
        ({"fact": "purchase_days", "op": ">", "value": 1, "colour": "red"}, "不认识这些键"),
    ],
)
def test_invalid_rules_are_refused_with_the_reason(people, operator, condition, reason):
    group = TagGroup.objects.create(name="规则")
    with pytest.raises(RuleError, match=reason):
        rule_save(
            tag=None,
            group=group,
            name="坏规则",
            color="#000000",
            condition=condition,
            is_active=True,
            by=operator,
        )
    assert not Tag.objects.filter(name="坏规则").exists()


def test_rules_reading_each_other_in_a_cycle_are_refused(people, operator):
    group = TagGroup.objects.create(name="规则")
    first = rule_save(
        tag=None,
        group=group,
        name="一",
        color="#000000",
        condition={"fact": "purchase_days", "op": ">", "value": 0},
        is_active=True,
        by=operator,
    )
    second = rule_save(
        tag=None,
        group=group,
        name="二",
        color="#000000",
        condition={"fact": "tag", "op": "has", "value": first.tag_id},
        is_active=True,
        by=operator,
    )
    with pytest.raises(RuleError, match="循环引用"):
        rule_save(
            tag=first.tag,
            group=group,
            name="一",
            color="#000000",
            condition={"fact": "tag", "op": "lacks", "value": second.tag_id},
            is_active=True,
            by=operator,
        )
    first.refresh_from_db()
    assert first.condition == {"fact": "purchase_days", "op": ">", "value": 0}
    # a rule that reads a cycle without being in it is not named in it (〇 reads 甲, and
    # 甲 and 乙 read each other: written past the check; 〇 is met first)
    from tagging.evaluation import rule_order

    made = [
        rule_save(
            tag=None,
            group=group,
            name=name,
            color="#000000",
            condition={"fact": "purchase_days", "op": ">", "value": 0},
            is_active=True,
            by=operator,
        )  # fmt: skip
        for name in ("〇", "甲", "乙")
    ]
    for reader, read in ((0, 1), (1, 2), (2, 1)):
        TagRule.objects.filter(pk=made[reader].pk).update(
            condition={"fact": "tag", "op": "has", "value": made[read].tag_id}
        )
    rules = list(TagRule.objects.select_related("tag"))
    with pytest.raises(RuleError, match="^规则之间循环引用：甲 → 乙 → 甲$"):
        rule_order(rules)
    TagRule.objects.filter(pk__in=[r.pk for r in made]).delete()
    assert CustomerTag.objects.count() == 0
    assert Order.objects.count() == 8
