"""The guide's task list, read in a fixed number of queries however many tasks there are
(the page must be fast on a cheap phone: one request, everything rendered on the server).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Q

from contacts.models import Guide, Relationship
from sop.models import ContactPolicy, Touchpoint
from sop.scheduling import _today, local_midnight

LIST_LIMIT = 100  # tasks per section; a guide's day is rarely more


@dataclass
class TaskCard:
    touchpoint: Touchpoint
    script: str
    relationship: Relationship | None
    tags: list[tuple[str, str, str]] = field(default_factory=list)  # (group, name, colour)
    orders: list[dict] = field(default_factory=list)
    is_overdue: bool = False


@dataclass
class TaskList:
    today: list[TaskCard]
    later: list[TaskCard]  # snoozed
    done: list[TaskCard]
    open_count: int
    overdue_count: int


def _values(cards: list[TaskCard], guide: Guide) -> None:
    """Fill each card's script: the variables of sop.services.VARIABLES, looked up for
    every card at once."""
    customer_ids = sorted({card.touchpoint.customer_id for card in cards})
    last_product: dict[int, str] = {}
    if customer_ids:
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT DISTINCT ON (o.customer_id) o.customer_id, l.product_name
                FROM contacts_order o JOIN contacts_orderline l ON l.order_id = o.id
                WHERE o.customer_id = ANY(%s) AND o.status IN ('paid', 'partially_refunded')
                ORDER BY o.customer_id, o.paid_at DESC, l.line_no
                """,
                [customer_ids],
            )
            last_product = dict(cursor.fetchall())
    store = guide.store.name if guide.store else ""
    for card in cards:
        customer = card.touchpoint.customer
        remark = card.relationship.remark if card.relationship else ""
        values = {
            "{称呼}": remark or customer.name,
            "{客户姓名}": customer.name,
            "{最近购买商品}": last_product.get(customer.pk, ""),
            "{导购姓名}": guide.name,
            "{门店}": store,
        }
        script = card.touchpoint.step.script
        for variable, value in values.items():
            script = script.replace(variable, value)
        card.script = script


def _context(cards: list[TaskCard], guide: Guide) -> None:
    customer_ids = sorted({card.touchpoint.customer_id for card in cards})
    if not customer_ids:
        return
    relationships = {
        r.customer_id: r
        for r in Relationship.objects.filter(guide=guide, customer_id__in=customer_ids)
    }
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT ct.customer_id, g.name, t.name, t.color
            FROM tagging_customertag ct JOIN tagging_tag t ON t.id = ct.tag_id
            JOIN tagging_taggroup g ON g.id = t.group_id
            WHERE ct.customer_id = ANY(%s)
              AND (t.source IN ('manual', 'rule', 'wecom')
                   OR g.system_key IN ('lifecycle', 'material', 'style'))
            ORDER BY ct.customer_id, g."order", t."order", t.id
            """,
            [customer_ids],
        )
        tags: dict[int, list] = {}
        for customer_id, group, name, color in cursor.fetchall():
            tags.setdefault(customer_id, []).append((group, name, color))
        # The last two orders of each customer, from every channel.
        cursor.execute(
            """
            SELECT customer_id, channel, paid_at, amount - refund_amount, product FROM (
                SELECT o.customer_id, o.channel, o.paid_at, o.amount, o.refund_amount,
                       (SELECT l.product_name FROM contacts_orderline l
                        WHERE l.order_id = o.id ORDER BY l.line_no LIMIT 1) AS product,
                       row_number() OVER (PARTITION BY o.customer_id
                                          ORDER BY o.paid_at DESC NULLS LAST) AS n
                FROM contacts_order o WHERE o.customer_id = ANY(%s)
                  AND o.status IN ('paid', 'partially_refunded')
            ) recent WHERE n <= 2 ORDER BY customer_id, paid_at DESC
            """,
            [customer_ids],
        )
        orders: dict[int, list] = {}
        for customer_id, channel, paid_at, net, product in cursor.fetchall():
            orders.setdefault(customer_id, []).append(
                {"channel": channel, "paid_at": paid_at, "net": net, "product": product or ""}
            )
    for card in cards:
        customer_id = card.touchpoint.customer_id
        card.relationship = relationships.get(customer_id)
        card.tags = tags.get(customer_id, [])
        card.orders = orders.get(customer_id, [])


def task_list(*, guide: Guide, now: datetime, customer_id: int | None = None) -> TaskList:
    """Open tasks (due first; overdue flagged), snoozed ones, and what was done today.
    With `customer_id`, only that customer's (the chat sidebar)."""
    policy = ContactPolicy.current()
    mine = Touchpoint.objects.filter(guide=guide).select_related("customer", "step", "plan")
    if customer_id is not None:
        mine = mine.filter(customer_id=customer_id)
    open_tasks = mine.filter(status=Touchpoint.Status.TASK)
    awake = Q(snoozed_until__isnull=True) | Q(snoozed_until__lte=now)
    today = list(open_tasks.filter(awake).order_by("due_at", "id")[:LIST_LIMIT])
    later = list(open_tasks.exclude(awake).order_by("snoozed_until", "id")[:LIST_LIMIT])
    done = list(
        mine.filter(
            status__in=[Touchpoint.Status.DONE, Touchpoint.Status.SKIPPED],
            done_at__gte=local_midnight(_today(now)),
        ).order_by("-done_at")[:LIST_LIMIT]
    )
    overdue_before = now - timedelta(minutes=policy.overdue_after_minutes)
    cards = [TaskCard(touchpoint=t, script="", relationship=None) for t in today + later + done]
    _context(cards, guide)
    _values(cards, guide)
    for card in cards:
        card.is_overdue = (
            card.touchpoint.status == Touchpoint.Status.TASK
            and card.touchpoint.due_at < overdue_before
        )
    today_cards, later_cards = cards[: len(today)], cards[len(today) : len(today) + len(later)]
    return TaskList(
        today=today_cards,
        later=later_cards,
        done=cards[len(today) + len(later) :],
        open_count=len(today) + len(later),
        overdue_count=sum(card.is_overdue for card in today_cards),
    )
