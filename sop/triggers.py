"""What enrols customers in plans: each trigger builds candidate rows for `enroll`.

Candidates carry a trigger key that names the firing (docs/SOP.md), so running
a trigger again, or the same event arriving twice, enrols nobody twice.
Event triggers look back `LOOKBACK` at most and never before the plan started.
"""

from datetime import UTC, datetime, timedelta

from django.utils import timezone

from sop.models import SopPlan
from sop.scheduling import LATEST_GUIDE, PURCHASED, _today, enroll, local_midnight

LOOKBACK = timedelta(days=7)


def _plans(trigger: str):
    return SopPlan.objects.filter(trigger=trigger, is_active=True)


def _since(plan: SopPlan, now: datetime) -> datetime:
    return max(plan.started_at, now - LOOKBACK)


def contact_added(*, event: dict, gateway=None) -> int:
    """A customer added a guide (callback add_external_contact): plans for any contact,
    or for the channel code whose `state` the event carries."""
    added_at = datetime.fromtimestamp(int(event["CreateTime"]), tz=UTC)
    state = event.get("State") or ""
    total = 0
    for plan in _plans(SopPlan.Trigger.CONTACT_ADDED):
        wanted = (plan.trigger_params or {}).get("state", "")
        if (wanted and wanted != state) or added_at < plan.started_at:
            continue
        total += enroll(
            plan=plan,
            candidates="""
                SELECT c.id AS customer_id, r.guide_id, %(key)s AS trigger_key,
                       %(at)s::timestamptz AS triggered_at
                FROM contacts_customer c
                JOIN contacts_relationship r ON r.customer_id = c.id AND r.is_active
                JOIN contacts_guide g ON g.id = r.guide_id AND g.wecom_userid = %(userid)s
                WHERE c.external_userid = %(external)s""",
            params={
                "key": f"contact:{event['UserID']}:{int(event['CreateTime'])}",
                "at": added_at,
                "userid": event["UserID"],
                "external": event["ExternalUserID"],
            },
        )
    return total


_ORDER_GUIDE = f"""coalesce(
    (SELECT r.guide_id FROM contacts_relationship r JOIN contacts_guide g ON g.id = r.guide_id
     WHERE r.customer_id = o.customer_id AND r.is_active AND g.wecom_userid = o.guide_userid
       AND o.guide_userid <> ''),
    {LATEST_GUIDE.format(customer="o.customer_id")})"""


def orders_placed(*, customer_ids: list[int], now: datetime | None = None) -> int:
    """Paid orders of these customers (their facts just changed): every paid order for
    paid_order plans, the first purchase day's order for first_order plans."""
    now = now or timezone.now()
    total = 0
    for plan in _plans(SopPlan.Trigger.PAID_ORDER):
        total += enroll(
            plan=plan,
            candidates=f"""
                SELECT o.customer_id, {_ORDER_GUIDE} AS guide_id,
                       'order:' || o.id AS trigger_key, o.paid_at AS triggered_at
                FROM contacts_order o
                WHERE o.customer_id = ANY(%(ids)s) AND {PURCHASED}
                  AND o.paid_at >= %(since)s AND o.paid_at <= %(now)s""",
            params={"ids": customer_ids, "since": _since(plan, now), "now": now},
        )
    for plan in _plans(SopPlan.Trigger.FIRST_ORDER):
        total += enroll(
            plan=plan,
            candidates=f"""
                SELECT DISTINCT ON (o.customer_id) o.customer_id, {_ORDER_GUIDE} AS guide_id,
                       'first-order' AS trigger_key, o.paid_at AS triggered_at
                FROM contacts_order o
                JOIN contacts_customerfacts f ON f.customer_id = o.customer_id
                WHERE o.customer_id = ANY(%(ids)s) AND {PURCHASED}
                  AND (o.paid_at AT TIME ZONE 'Asia/Shanghai')::date = f.first_purchase_on
                  AND o.paid_at >= %(since)s AND o.paid_at <= %(now)s
                ORDER BY o.customer_id, o.paid_at, o.id""",
            params={"ids": customer_ids, "since": _since(plan, now), "now": now},
        )
    return total


def tags_added(*, now: datetime | None = None) -> int:
    """Customers who got a plan's tag since it started (each tagging event once)."""
    now = now or timezone.now()
    total = 0
    for plan in _plans(SopPlan.Trigger.TAG_ADDED):
        tag = (plan.trigger_params or {}).get("tag")
        if not tag:
            continue
        total += enroll(
            plan=plan,
            candidates=f"""
                SELECT ev.customer_id, {LATEST_GUIDE.format(customer="ev.customer_id")} AS guide_id,
                       'tag:' || ev.id AS trigger_key, ev.at AS triggered_at
                FROM tagging_customertagevent ev
                WHERE ev.tag_id = %(tag)s AND ev.action = 'added'
                  AND ev.at >= %(since)s AND ev.at <= %(now)s""",
            params={"tag": tag, "since": _since(plan, now), "now": now},
        )
    return total


def daily(*, now: datetime | None = None) -> int:
    """The day's date-based triggers: N days since the last purchase, repurchase due by
    the customer's own median interval, birthday. Keyed by the date: once a day."""
    now = now or timezone.now()
    today = _today(now)
    common = {"today": today, "key": f"day:{today.isoformat()}", "at": local_midnight(today)}
    guide = LATEST_GUIDE.format(customer="f.customer_id")
    total = 0
    for plan in _plans(SopPlan.Trigger.DAYS_SINCE_PURCHASE):
        days = int((plan.trigger_params or {}).get("days") or 0)
        if days <= 0:
            continue
        total += enroll(
            plan=plan,
            candidates=f"""
                SELECT f.customer_id, {guide} AS guide_id, %(key)s AS trigger_key,
                       %(at)s::timestamptz AS triggered_at
                FROM contacts_customerfacts f
                WHERE f.last_purchase_on = %(today)s::date - %(days)s""",
            params={**common, "days": days},
        )
    for plan in _plans(SopPlan.Trigger.REPURCHASE_DUE):
        total += enroll(
            plan=plan,
            candidates=f"""
                SELECT f.customer_id, {guide} AS guide_id, %(key)s AS trigger_key,
                       %(at)s::timestamptz AS triggered_at
                FROM contacts_customerfacts f
                WHERE f.median_interval_days IS NOT NULL
                  AND f.last_purchase_on + round(f.median_interval_days)::int = %(today)s""",
            params=common,
        )
    for plan in _plans(SopPlan.Trigger.BIRTHDAY):
        # 29 February birthdays are celebrated on 28 February in other years.
        total += enroll(
            plan=plan,
            candidates=f"""
                SELECT c.id AS customer_id, {LATEST_GUIDE.format(customer="c.id")} AS guide_id,
                       %(key)s AS trigger_key, %(at)s::timestamptz AS triggered_at
                FROM contacts_customer c
                WHERE c.birthday IS NOT NULL AND c.merged_into_id IS NULL
                  AND extract(month FROM c.birthday) = extract(month FROM %(today)s::date)
                  AND (extract(day FROM c.birthday) = extract(day FROM %(today)s::date)
                       OR (extract(month FROM c.birthday) = 2 AND extract(day FROM c.birthday) = 29
                           AND extract(day FROM %(today)s::date) = 28
                           AND extract(month FROM %(today)s::date + 1) = 3))""",
            params=common,
        )
    return total


def manual(*, plan: SopPlan, customer_ids: list[int], now: datetime | None = None) -> int:
    """An operator enrols a selection (once per customer per day)."""
    now = now or timezone.now()
    return enroll(
        plan=plan,
        candidates=f"""
            SELECT c.id AS customer_id, {LATEST_GUIDE.format(customer="c.id")} AS guide_id,
                   %(key)s AS trigger_key, %(at)s::timestamptz AS triggered_at
            FROM contacts_customer c WHERE c.id = ANY(%(ids)s) AND c.merged_into_id IS NULL""",
        params={"ids": customer_ids, "key": f"manual:{_today(now).isoformat()}", "at": now},
    )
