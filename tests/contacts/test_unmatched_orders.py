"""The unmatched orders page: found by number or buyer, by channel, the suggestion
pointed to, and an operator putting an order (its whole checkout) on a customer."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from contacts.models import MergeSuggestion, Order, OrderBinding
from tests.contacts.factories import CustomerFactory, OrderFactory

pytestmark = pytest.mark.django_db


def _unmatched(number: str, parent: str = "", **fields) -> Order:
    return OrderFactory(
        customer=None,
        channel=fields.pop("channel", "douyin"),
        channel_order_id=number,
        parent_order_id=parent,
        buyer_name=fields.pop("buyer_name", "吴*"),
        buyer_phone_masked="138****5601",
        unmatched_reason="masked_phone",
        **fields,
    )


def _listed(page) -> list[str]:
    html = page.content.decode()
    body = html[html.index('id="unmatched"') :]
    return [o.channel_order_id for o in Order.objects.all() if f">{o.channel_order_id}<" in body]


def test_orders_are_found_by_their_number_their_checkouts_or_the_buyer(client_for, operator):
    _unmatched("S-11", "P-1")
    _unmatched("S-12", "P-1")
    _unmatched("T-9", channel="tmall", buyer_name="林小雨")
    client = client_for(operator)
    url = reverse("unmatched_orders")
    assert sorted(_listed(client.get(url, {"q": "S-12"}))) == ["S-12"]
    assert sorted(_listed(client.get(url, {"q": "P-1"}))) == ["S-11", "S-12"]
    assert _listed(client.get(url, {"q": "小雨"})) == ["T-9"]
    assert _listed(client.get(url, {"channel": "tmall"})) == ["T-9"]
    nothing = client.get(url, {"channel": "jd"}).content.decode()
    assert "没有符合条件的未匹配订单。" in nothing and "所有订单都已匹配到客户。" not in nothing
    assert client.get(url, {"channel": "nowhere"}).status_code == 404


def test_an_order_with_a_pending_suggestion_points_to_it(client_for, operator):
    order = _unmatched("S-21", "P-2")
    MergeSuggestion.objects.create(order=order, customer=CustomerFactory(), reason="r")
    page = client_for(operator).get(reverse("unmatched_orders")).content.decode()
    assert f'id="suggestion-{order.pk}"' in page
    assert f'<a href="#suggestion-{order.pk}">有合并建议待确认</a>' in page


def test_an_operator_puts_a_checkout_on_a_customer_and_it_is_undone(client_for, operator):
    orders = [_unmatched("S-31", "P-3"), _unmatched("S-32", "P-3")]
    rejected = MergeSuggestion.objects.create(
        order=orders[0], customer=CustomerFactory(), reason="r", status="rejected"
    )
    customer = CustomerFactory(name="吴敏")
    client = client_for(operator)
    answer = client.post(
        reverse("order_assign", args=[orders[1].pk]),
        {"customer": f"#{customer.pk}", "back": "channel=douyin"},
    )
    assert answer["Location"] == reverse("unmatched_orders") + "?channel=douyin#orders"
    (said,) = [str(m) for m in get_messages(answer.wsgi_request)]
    assert said.startswith(f"订单 S-31、S-32 已归到客户 吴敏 #{customer.pk}，")
    assert [Order.objects.get(pk=o.pk).customer_id for o in orders] == [customer.pk] * 2
    bindings = OrderBinding.objects.all()
    assert {(b.guide_id, b.bound_by_id) for b in bindings} == {(None, operator.pk)}
    history = client.get(reverse("merge_list")).content.decode()
    assert "运营小王" in history and f"吴敏 #{customer.pk}" in history
    client.post(reverse("binding_undo", args=[bindings[0].pk]))
    assert [Order.objects.get(pk=o.pk).customer_id for o in orders] == [None, None]
    rejected.refresh_from_db()
    assert rejected.status == "rejected"  # decided before: the assignment did not decide it


def test_a_customer_number_that_is_none_is_said_and_nothing_moves(client_for, operator, manager):
    order = _unmatched("S-41")
    client = client_for(operator)
    answer = client.post(reverse("order_assign", args=[order.pk]), {"customer": "999999"})
    assert [str(m) for m in get_messages(answer.wsgi_request)] == ["找不到客户编号 999999。"]
    customer = CustomerFactory()
    refused = client_for(manager).post(
        reverse("order_assign", args=[order.pk]), {"customer": str(customer.pk)}
    )
    assert refused.status_code == 403
    assert Order.objects.get(pk=order.pk).customer_id is None
    assert not OrderBinding.objects.exists()


def test_an_operator_is_told_why_an_order_is_not_put_on_a_customer(client_for, operator):
    """Not "ask an operator": whose the checkout's other order is, or that the phones differ."""
    from contacts.models import CustomerIdentity

    owner, customer = CustomerFactory(), CustomerFactory()
    CustomerIdentity.objects.create(
        customer=customer, kind="phone_hash", value="h-other", display="139****0002"
    )
    taken, free = _unmatched("S-51", "P-5"), _unmatched("S-52", "P-5")
    Order.objects.filter(pk=taken.pk).update(customer=owner)
    client = client_for(operator)

    def said(order) -> str:
        answer = client.post(
            reverse("order_assign", args=[order.pk]), {"customer": customer.pk}, follow=True
        )
        (message,) = [str(m) for m in answer.context["messages"]]
        return message

    assert said(free) == f"订单 S-51 已属于客户 #{owner.pk}；如是同一人，请合并两位客户。"
    lone = _unmatched("S-61")
    assert said(lone) == (
        "订单 S-61 的买家手机号 138****5601 与这位客户的手机号不符，可能不是同一人，没有归入。"
    )
    assert Order.objects.filter(customer=customer).count() == 0
