"""Fixtures of the tag pages and API: the five hand-counted customers of test_rules.py,
split between the two guide personas, and a recorder for enqueued retags."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from contacts.facts import facts_refresh
from contacts.models import Guide, OrderLine
from tagging.models import Tag, TagGroup
from tests.contacts.factories import CustomerFactory, OrderFactory, RelationshipFactory


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
    return datetime.fromisoformat(text + "T06:00:00+00:00")


@pytest.fixture
def tag_people(guide_user, other_guide_user):
    """A, D follow guide1 (guide0001); B follows guide2 (guide0002); C and E follow no one.

    A  member; purchase days 2, net revenue 350, channels douyin/jd/tmall.
    B  member; purchase days 2, net revenue 450, channels miniapp/youzan.
    C  not a member; purchase days 1, net revenue 80 (tmall).
    D  member; no orders.
    E  not a member; one cancelled order (no purchase day).
    """
    mine = Guide.objects.get(wecom_userid="guide0001")
    theirs = Guide.objects.get(wecom_userid="guide0002")
    a = CustomerFactory(name="A", joined_at=datetime(2026, 1, 15, 2, tzinfo=UTC))
    b = CustomerFactory(name="B", joined_at=datetime(2025, 11, 1, 2, tzinfo=UTC))
    c = CustomerFactory(name="C", external_userid=None, is_member=False, joined_at=None)
    d = CustomerFactory(name="D", joined_at=datetime(2026, 6, 1, 2, tzinfo=UTC))
    e = CustomerFactory(name="E", external_userid=None, is_member=False, joined_at=None)
    RelationshipFactory(customer=a, guide=mine)
    RelationshipFactory(customer=b, guide=theirs)
    RelationshipFactory(customer=d, guide=mine)
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


@pytest.fixture
def manual_tag(db) -> Tag:
    group = TagGroup.objects.create(name="运营标记")
    return Tag.objects.create(group=group, name="VIP", color="#fa8c16", source=Tag.Source.MANUAL)


@pytest.fixture
def enqueued(monkeypatch) -> list[str]:
    """Retag tasks sent to the broker (recorded instead of sent)."""
    from tagging import tasks

    sent: list[str] = []
    for task in (tasks.retag_full_task, tasks.retag_pending, tasks.push_tags):
        name = task.name
        monkeypatch.setattr(task, "delay", lambda *a, _name=name, **k: sent.append(_name))
        monkeypatch.setattr(task, "apply_async", lambda *a, _name=name, **k: sent.append(_name))
    return sent
