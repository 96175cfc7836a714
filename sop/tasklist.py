"""The guide's task list, read in a fixed number of queries however many tasks there are
(the page must be fast on a cheap phone: one request, everything rendered on the server).
Open tasks come a page at a time; what a card shows is put together here, once per card,
so that the template only places strings (rendering was most of the page's time).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from contacts.facts import CHECKOUT
from contacts.models import Guide, Relationship
from contacts.order_files import ORDER_CHANNEL_NAMES
from sop.models import ContactPolicy, Touchpoint, TouchpointQuerySet
from sop.scheduling import _today, local_midnight
from tagging.models import Tag
from tagging.system import group_label, tag_label

PAGE_SIZE = 20  # open tasks per page (a guide works through them from the top)
DONE_LIMIT = 20  # the latest done today, listed in a line each


@dataclass
class TaskCard:
    touchpoint: Touchpoint
    script: str
    relationship: Relationship | None
    tags: list[tuple[str, str, str]] = field(default_factory=list)  # (group, name, colour)
    orders: list[dict] = field(default_factory=list)
    is_overdue: bool = False
    # What the card shows, put together by _display.
    name: str = ""
    when: str = ""
    why: str = ""
    context: str = ""  # lines: friend since, the last orders
    action_url: str = ""  # the task's actions: <action_url><action>/
    # Where the list opens again after an action on this card: at the card after it, so
    # that a guide working down a long list keeps their place.
    anchor: str = "today"


@dataclass
class TaskList:
    today: list[TaskCard]  # this page of the open tasks, due first
    later: list[TaskCard]  # snoozed
    done: list[TaskCard]  # the latest done or skipped today
    open_count: int  # to do now: open and not snoozed
    snoozed_count: int
    overdue_count: int
    done_count: int  # done or skipped today
    page: int = 1
    has_next: bool = False


def _values(cards: list[TaskCard], guide: Guide) -> None:
    """Fill each card's script: the variables of sop.services.VARIABLES, from what the
    card already holds (its last product: the first line of its latest order)."""
    store = guide.store.name if guide.store else ""
    for card in cards:
        customer = card.touchpoint.customer
        remark = card.relationship.remark if card.relationship else ""
        values = {
            "{称呼}": remark or customer.name,
            "{客户姓名}": customer.name,
            "{最近购买商品}": card.orders[0]["product"] if card.orders else "",
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
            SELECT ct.customer_id, g.name, t.name, t.color, t.source, g.system_key
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
        for customer_id, group, name, color, source, system_key in cursor.fetchall():
            if source == Tag.Source.SYSTEM:
                group, name = group_label(system_key, group), tag_label(system_key, name)
            tags.setdefault(customer_id, []).append((group, name, color))
        # The last two orders of each customer, from every channel; an order is a
        # checkout (its sub-orders summed, its first product named).
        cursor.execute(
            f"""
            SELECT customer_id, channel, paid_at, net, product FROM (
                SELECT o.customer_id, o.channel, max(o.paid_at) AS paid_at,
                       sum(o.amount - o.refund_amount) AS net,
                       (array_agg(l.product_name ORDER BY o.channel_order_id))[1] AS product,
                       row_number() OVER (PARTITION BY o.customer_id
                                          ORDER BY max(o.paid_at) DESC NULLS LAST) AS n
                FROM contacts_order o
                LEFT JOIN LATERAL (
                    SELECT product_name FROM contacts_orderline
                    WHERE order_id = o.id ORDER BY line_no LIMIT 1
                ) l ON true
                WHERE o.customer_id = ANY(%s) AND o.status IN ('paid', 'partially_refunded')
                GROUP BY o.customer_id, o.channel, {CHECKOUT}
            ) recent WHERE n <= 2 ORDER BY customer_id, paid_at DESC
            """,  # noqa: S608 - a fixed SQL fragment
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


def _local(moment: datetime, pattern: str) -> str:
    return timezone.localtime(moment).strftime(pattern)


def _display(card: TaskCard, actions: str) -> None:
    touchpoint, relationship = card.touchpoint, card.relationship
    customer, step = touchpoint.customer, touchpoint.step
    card.name = (relationship.remark if relationship else "") or customer.name
    card.name = card.name or customer.external_userid
    card.when = _local(touchpoint.due_at, "%m-%d %H:%M")
    if touchpoint.status == Touchpoint.Status.TASK:
        card.when += " – " + _local(touchpoint.window_ends_at, "%H:%M")
        if touchpoint.snoozed_until and touchpoint.snoozed_until > timezone.now():
            until = _local(touchpoint.snoozed_until, "%H:%M")
            card.when += " · " + _("推迟到 %(time)s") % {"time": until}
    why = [touchpoint.plan.name, _("第 %(day)s 天") % {"day": step.offset_days}]
    why.append(step.get_action_display())
    if step.is_automatic:
        why.append(_("自动发送"))
    card.why = " · ".join(why)
    lines = []
    if relationship:
        since = _("好友自 %(since)s") % {"since": _local(relationship.added_at, "%Y-%m-%d")}
        lines.append(" · ".join(filter(None, [since, relationship.description])))
    for order in card.orders:
        paid = _local(order["paid_at"], "%Y-%m-%d") if order["paid_at"] else ""
        channel = ORDER_CHANNEL_NAMES.get(order["channel"], order["channel"])
        lines.append(f"{paid} {channel} ¥{order['net']} {order['product']}")
    if not card.orders:
        lines.append(_("还没有订单"))
    card.context = "\n".join(lines)
    card.action_url = actions.replace("/0/", f"/{touchpoint.pk}/", 1)
    card.tags = card.tags[:6]


def task_list(
    *, guide: Guide, now: datetime, customer_id: int | None = None, page: int = 1
) -> TaskList:
    """Open tasks (due first, a page of them; overdue flagged), snoozed ones, and the
    latest done today, with the counts of each. With `customer_id`, only that
    customer's (the chat sidebar)."""
    policy = ContactPolicy.current()
    mine = Touchpoint.objects.of_guide(guide).select_related("customer", "step", "plan")
    if customer_id is not None:
        mine = mine.filter(customer_id=customer_id)
    open_tasks = mine.filter(status=Touchpoint.Status.TASK)
    awake = TouchpointQuerySet.awake(now)
    overdue_before = now - timedelta(minutes=policy.overdue_after_minutes)
    done_today = Q(
        status__in=[Touchpoint.Status.DONE, Touchpoint.Status.SKIPPED],
        done_at__gte=local_midnight(_today(now)),
    )
    counts = (
        mine.filter(Q(status=Touchpoint.Status.TASK) | done_today)
        .order_by()
        .aggregate(
            open=Count("id", filter=Q(status=Touchpoint.Status.TASK)),
            snoozed=Count("id", filter=Q(~awake, status=Touchpoint.Status.TASK)),
            overdue=Count(
                "id", filter=Q(awake, status=Touchpoint.Status.TASK, due_at__lt=overdue_before)
            ),
            done=Count("id", filter=done_today),
        )
    )
    start = (page - 1) * PAGE_SIZE
    today = list(open_tasks.filter(awake).order_by("due_at", "id")[start : start + PAGE_SIZE + 1])
    has_next, today = len(today) > PAGE_SIZE, today[:PAGE_SIZE]
    # Snoozed and done tasks are read only when the counts say there are some (most
    # loads of the page, in the morning, have neither: two queries fewer).
    later, done = [], []
    if counts["snoozed"]:
        later = list(open_tasks.exclude(awake).order_by("snoozed_until", "id")[:PAGE_SIZE])
    if counts["done"]:
        done = list(mine.filter(done_today).order_by("-done_at")[:DONE_LIMIT])
    cards = [TaskCard(touchpoint=t, script="", relationship=None) for t in today + later + done]
    _context(cards, guide)
    _values(cards, guide)
    actions = reverse("guide_task_action", args=[0, "done"]).removesuffix("done/")
    for card in cards:
        card.is_overdue = (
            card.touchpoint.status == Touchpoint.Status.TASK
            and card.touchpoint.due_at < overdue_before
        )
        _display(card, actions)
    for card, following in zip(cards[: len(today)], cards[1 : len(today)], strict=False):
        card.anchor = f"task-{following.touchpoint.pk}"
    return TaskList(
        today=cards[: len(today)],
        later=cards[len(today) : len(today) + len(later)],
        done=cards[len(today) + len(later) :],
        open_count=counts["open"] - counts["snoozed"],
        snoozed_count=counts["snoozed"],
        overdue_count=counts["overdue"],
        done_count=counts["done"],
        page=page,
        has_next=has_next,
    )
