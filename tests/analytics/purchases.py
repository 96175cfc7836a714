"""The purchase day of each order, worked out in Python for the tests' own computations
(DESIGN.md, "Purchase day"): the Shanghai day an order was paid, except that the sub-
orders of one checkout (same buyer, channel and parent_order_id) all count on the day its
first purchased sub-order was paid: a split order (拆单) is never a repurchase."""

from datetime import date
from zoneinfo import ZoneInfo

from contacts.models import Order

SH = ZoneInfo("Asia/Shanghai")
PURCHASED = {"paid", "partially_refunded"}


def purchase_days() -> dict[int, date]:
    """{order id: purchase day} of every purchased order of a customer."""
    orders = [
        order
        for order in Order.objects.exclude(customer=None)
        if order.status in PURCHASED and order.paid_at is not None
    ]
    began = {}
    for order in orders:
        if order.parent_order_id:
            key = (order.customer_id, order.channel, order.parent_order_id)
            began[key] = min(began.get(key, order.paid_at), order.paid_at)
    return {
        order.pk: began.get(
            (order.customer_id, order.channel, order.parent_order_id), order.paid_at
        )
        .astimezone(SH)
        .date()
        for order in orders
    }
