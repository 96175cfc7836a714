"""Evaluation: assignments and their history, incremental runs fed by the facts queue,
and manual tags following a customer merge (and back on undo)."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from contacts.facts import facts_refresh, facts_refresh_pending
from contacts.models import CustomerFactsPending, OrderLine
from contacts.services import customer_merge, customer_merge_undo
from tagging.evaluation import evaluate
from tagging.models import CustomerTag, CustomerTagEvent, RetagPending, Tag, TagGroup, TagRule
from tagging.services import customer_tags_set, retag_pending
from tests.contacts.factories import CustomerFactory, OrderFactory

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 6, 30, 4, 0, tzinfo=UTC)


def _buy(customer, day: str, amount: str = "100"):
    order = OrderFactory(
        customer=customer,
        paid_at=datetime.fromisoformat(f"{day}T06:00:00+00:00"),
        amount=Decimal(amount),
    )
    OrderLine.objects.create(
        order=order,
        line_no=1,
        sku="SKU1",
        material="棉",
        quantity=1,
        unit_price=Decimal(amount),
        line_amount=Decimal(amount),
    )
    return order


@pytest.fixture
def repeat_rule():
    group = TagGroup.objects.create(name="复购")
    tag = Tag.objects.create(group=group, name="复购两次以上", source=Tag.Source.RULE)
    TagRule.objects.create(tag=tag, condition={"fact": "purchase_days", "op": ">=", "value": 2})
    return tag


def _holders(tag) -> set[int]:
    return set(CustomerTag.objects.filter(tag=tag).values_list("customer_id", flat=True))


def test_assignments_follow_the_facts_with_history(repeat_rule):
    once, twice = CustomerFactory(), CustomerFactory()
    _buy(once, "2026-05-01")
    _buy(twice, "2026-05-01")
    _buy(twice, "2026-06-01")
    facts_refresh()

    first = evaluate(customer_ids=None, now=NOW)
    assert _holders(repeat_rule) == {twice.pk}
    assert first.added[repeat_rule.pk] == 1 and first.removed[repeat_rule.pk] == 0
    assert TagRule.objects.get(tag=repeat_rule).audience == 1

    again = evaluate(customer_ids=None, now=NOW)
    assert not again.added and not again.removed  # nothing changed, nothing written
    assert CustomerTagEvent.objects.filter(tag=repeat_rule).count() == 1

    # `once` buys again: the import path marks facts pending; the refresh feeds the retag queue.
    _buy(once, "2026-06-15")
    CustomerFactsPending.objects.create(customer_id=once.pk)
    assert facts_refresh_pending() == 1
    assert set(RetagPending.objects.values_list("customer_id", flat=True)) == {once.pk}
    summary = retag_pending(now=NOW)
    assert summary.customers == 1
    assert _holders(repeat_rule) == {once.pk, twice.pk}
    assert RetagPending.objects.count() == 0

    # A refund takes the second purchase day away again: removed, with history.
    once_orders = list(once.orders.order_by("paid_at"))
    once_orders[-1].status = "refunded"
    once_orders[-1].refund_amount = once_orders[-1].amount
    once_orders[-1].save()
    facts_refresh(customer_ids=[once.pk])
    evaluate(customer_ids=[once.pk], now=NOW)
    assert _holders(repeat_rule) == {twice.pk}
    history = list(
        CustomerTagEvent.objects.filter(customer=once, tag=repeat_rule)
        .order_by("id")
        .values_list("action", "cause")
    )
    assert history == [("added", "rule"), ("removed", "rule")]


def test_a_scoped_run_touches_only_its_customers(repeat_rule):
    a, b = CustomerFactory(), CustomerFactory()
    for customer in (a, b):
        _buy(customer, "2026-05-01")
        _buy(customer, "2026-06-01")
    facts_refresh()
    evaluate(customer_ids=[a.pk], now=NOW)
    assert _holders(repeat_rule) == {a.pk}
    evaluate(customer_ids=None, now=NOW)
    assert _holders(repeat_rule) == {a.pk, b.pk}


def test_manual_tags_follow_a_merge_and_come_back_on_undo(operator):
    kept, absorbed = CustomerFactory(), CustomerFactory(external_userid=None)
    group = TagGroup.objects.create(name="运营")
    vip, gift, both = (
        Tag.objects.create(group=group, name=name, source=Tag.Source.MANUAL)
        for name in ("VIP", "赠品", "共有")
    )
    customer_tags_set(tag=vip, customer_ids=[absorbed.pk], add=True, by=operator)
    customer_tags_set(tag=both, customer_ids=[absorbed.pk, kept.pk], add=True, by=operator)
    customer_tags_set(tag=gift, customer_ids=[kept.pk], add=True, by=operator)
    before = set(CustomerTag.objects.values_list("customer_id", "tag_id", "added_at"))

    merge = customer_merge(keep=kept, absorb=absorbed, by=operator)
    assert set(CustomerTag.objects.values_list("customer_id", "tag_id")) == {
        (kept.pk, vip.pk),
        (kept.pk, both.pk),
        (kept.pk, gift.pk),
    }
    customer_merge_undo(merge=merge, by=operator)
    assert set(CustomerTag.objects.values_list("customer_id", "tag_id", "added_at")) == before


def test_manual_tags_cannot_be_set_on_computed_tags(repeat_rule, operator):
    customer = CustomerFactory()
    with pytest.raises(ValueError, match="不能手动修改"):
        customer_tags_set(tag=repeat_rule, customer_ids=[customer.pk], add=True, by=operator)
    assert CustomerTag.objects.count() == 0
