"""Operations on SOP: plans, guides' tasks, opt-outs, automatic sends and reminders."""

import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from contacts.models import Customer, Guide, OrderLine, Relationship, Store
from scrm.wecom.gateway import WeComError
from sop import triggers
from sop.models import (
    AutomaticSend,
    ContactPolicy,
    Enrollment,
    GuideReminder,
    OptOut,
    SopPlan,
    SopStep,
    Touchpoint,
    TouchpointMergeMove,
    TouchpointQuerySet,
)
from sop.scheduling import PURCHASED, SHANGHAI, _today, local_midnight

logger = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 5
TRIGGERS_SCHEDULED = "sop:triggers-scheduled"
TRIGGER_BATCH = 20_000
REMINDER_EVERY = timedelta(minutes=30)
OPEN = [Touchpoint.Status.PLANNED, Touchpoint.Status.TASK]


class PlanError(ValueError):
    """A plan that cannot be saved, with the reason an operator can act on (translated
    into the language of the request that saves it)."""


# -- plans ------------------------------------------------------------------------------


def plan_save(*, plan: SopPlan | None, fields: dict, steps: list[dict], by) -> SopPlan:
    """Create or change a plan and its steps (replaced as given: a step with the `id` of
    one of the plan's live steps is that step, one without is new, the plan's steps left
    out are retired). Refused with PlanError when the audience, trigger or a step is
    invalid; nothing is written then."""
    from tagging.rules import RuleError
    from tagging.services import rule_compile

    if fields.get("audience"):
        try:
            rule_compile(fields["audience"])
        except RuleError as error:
            raise PlanError(_("人群条件：%(error)s") % {"error": error}) from None
    trigger, params = fields.get("trigger"), fields.get("trigger_params") or {}
    if trigger not in SopPlan.Trigger.values:
        raise PlanError(_("未知的触发条件：%(trigger)s") % {"trigger": trigger})
    if trigger == SopPlan.Trigger.TAG_ADDED and not params.get("tag"):
        raise PlanError(_("「被打上标签」需要选择一个标签"))
    if trigger == SopPlan.Trigger.DAYS_SINCE_PURCHASE:
        try:
            days = int(params.get("days") or 0)
        except (TypeError, ValueError):
            days = 0
        if days <= 0:
            raise PlanError(_("「距最近购买 N 天」需要一个大于 0 的天数"))
    if not steps:
        raise PlanError(_("计划至少要有一个步骤"))
    for number, step in enumerate(steps, start=1):
        start, end = step.get("window_start", time(10)), step.get("window_end", time(21))
        if start >= end:
            raise PlanError(_("第 %(n)s 步：发送窗口的开始要早于结束") % {"n": number})
        if step.get("action", SopStep.Action.MESSAGE) not in SopStep.Action.values:
            reason = _("第 %(n)s 步：未知的动作 %(action)s")
            raise PlanError(reason % {"n": number, "action": step.get("action")})
    with transaction.atomic():
        if plan is None:
            plan = SopPlan(created_by=by, started_at=timezone.now())
        for name, value in fields.items():
            setattr(plan, name, value)
        plan.save()
        if not plan.is_active:  # paused: the tasks given go from the guides' lists too
            Touchpoint.objects.filter(plan=plan, status=Touchpoint.Status.TASK).update(
                status=Touchpoint.Status.STOPPED, reason="plan_paused"
            )
        live = set(
            SopStep.objects.select_for_update()
            .filter(plan=plan, is_retired=False)
            .values_list("pk", flat=True)
        )
        kept = [step.get("id") for step in steps if step.get("id") is not None]
        for number, step in enumerate(steps, start=1):
            step_id = step.get("id")
            if step_id is not None and (step_id not in live or kept.count(step_id) > 1):
                raise PlanError(_("第 %(n)s 步不是这个计划的步骤（或重复了）") % {"n": number})
        # Steps left out are retired: hidden from the editor, no longer scheduled, their
        # touchpoints not yet given stopped; a retired step without touchpoints has no
        # numbers to keep and goes.
        removed = live - set(kept)
        SopStep.objects.filter(pk__in=removed).update(is_retired=True)
        Touchpoint.objects.filter(step_id__in=removed, status=Touchpoint.Status.PLANNED).update(
            status=Touchpoint.Status.STOPPED, reason="step_removed"
        )
        SopStep.objects.filter(pk__in=removed, touchpoints__isnull=True).delete()
        # The kept steps move to their new positions, which must stay unique among the
        # live steps at every UPDATE: first out of the way (MAX_STEPS is far below 1000).
        SopStep.objects.filter(pk__in=kept).update(position=F("position") + 1000)
        for position, step in enumerate(steps, start=1):
            values = {name: value for name, value in step.items() if name != "id"}
            if step.get("id") is None:
                SopStep.objects.create(plan=plan, position=position, **values)
            else:
                SopStep.objects.filter(pk=step["id"]).update(position=position, **values)
    return plan


def enroll_manual(*, plan: SopPlan, customer_ids: list[int], by) -> int:
    with transaction.atomic():
        return triggers.manual(plan=plan, customer_ids=customer_ids)


def optout_set(*, customer: Customer, reason: str, by) -> None:
    OptOut.objects.get_or_create(customer=customer, defaults={"reason": reason, "created_by": by})


# -- order triggers, fed by the facts listener -------------------------------------------


def customers_mark_for_triggers(customer_ids: list[int]) -> None:
    """The facts listener: customers whose facts changed may have new paid orders."""
    if (
        not customer_ids
        or not SopPlan.objects.filter(
            is_active=True, trigger__in=[SopPlan.Trigger.PAID_ORDER, SopPlan.Trigger.FIRST_ORDER]
        ).exists()
    ):
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO sop_triggerpending (customer_id, marked_at)"
            " SELECT unnest(%s::bigint[]), now() ON CONFLICT DO NOTHING",
            [sorted(set(customer_ids))],
        )
    transaction.on_commit(_schedule_triggers)


def tasks_stop_unfollowed(customer_ids: list[int]) -> None:
    """The facts listener, for customers a guide stopped following (deleted on either
    side, transferred away): that guide's open tasks for them stop, as the guide may
    not see the customer any more. The enrolment stops with them when its plan stops
    on a deleted contact, as the dispatch does for touches not yet given."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH stopped AS (
                UPDATE sop_touchpoint t SET status = 'stopped', reason = 'contact_deleted'
                WHERE t.customer_id = ANY(%(ids)s) AND t.status = 'task' AND NOT EXISTS (
                    SELECT 1 FROM contacts_relationship r WHERE r.customer_id = t.customer_id
                      AND r.guide_id = t.guide_id AND r.is_active)
                RETURNING t.enrollment_id, t.plan_id
            )
            UPDATE sop_enrollment e SET status = 'stopped', stopped_reason = 'contact_deleted',
                   stopped_at = now()
            FROM stopped s JOIN sop_sopplan p ON p.id = s.plan_id
            WHERE e.id = s.enrollment_id AND e.status = 'active' AND p.stop_on_contact_deleted
            """,
            {"ids": sorted(set(customer_ids))},
        )


def tasks_stop_on_purchase(customer_ids: list[int]) -> None:
    """The facts listener, for customers who may have bought: their open tasks of plans
    that stop on a purchase stop when they bought after the plan's firing (a guide
    would push new arrivals to someone who just bought), with their enrolment, as the
    dispatch does for touches not yet given."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH stopped AS (
                UPDATE sop_touchpoint t SET status = 'stopped', reason = 'purchased'
                FROM sop_enrollment e, sop_sopplan p
                WHERE t.customer_id = ANY(%(ids)s) AND t.status = 'task'
                  AND e.id = t.enrollment_id AND p.id = t.plan_id AND p.stop_on_purchase
                  AND EXISTS (SELECT 1 FROM contacts_order o WHERE o.customer_id = t.customer_id
                                AND {PURCHASED} AND o.paid_at > e.triggered_at)
                RETURNING t.enrollment_id
            )
            UPDATE sop_enrollment e SET status = 'stopped', stopped_reason = 'purchased',
                   stopped_at = now()
            FROM stopped s WHERE e.id = s.enrollment_id AND e.status = 'active'
            """,  # noqa: S608 - a fixed SQL fragment
            {"ids": sorted(set(customer_ids))},
        )


# -- customer merges (contacts calls these through its merge listener registry) ----------

MERGED_DUPLICATE = "merged_duplicate"


class MergeTouchpoints:
    """A merged customer's touchpoints (open and done) and enrolments go to the kept
    customer, where the guides who follow them see them; undoing the merge moves them
    back. An enrolment the kept customer already has (same plan and firing) stays, and
    keeps the trigger from enrolling them again; its touchpoints move all the same. A
    moved open touchpoint of a step the kept customer already has open with the same
    guide would be a second task for one contact: it stops as a duplicate (undo
    reopens it, and sends again an automatic step whose send was cancelled meanwhile)."""

    def merged(self, merge) -> None:
        # Both customers' touchpoints locked first: a dispatch (which skips locked rows)
        # cannot turn a duplicate read here into a task before it is stopped.
        customers = [merge.kept_id, merge.absorbed_id]
        list(
            Touchpoint.objects.select_for_update()
            .filter(customer_id__in=customers)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        moved = Touchpoint.objects.filter(customer_id=merge.absorbed_id)
        kept_open = Touchpoint.objects.filter(
            customer_id=merge.kept_id,
            step_id=OuterRef("step_id"),
            guide_id=OuterRef("guide_id"),
            status__in=OPEN,
        )
        duplicates = list(
            moved.filter(Exists(kept_open), status__in=OPEN).values_list("pk", "status", "reason")
        )
        kept_firings = Enrollment.objects.filter(
            customer_id=merge.kept_id,
            plan_id=OuterRef("plan_id"),
            trigger_key=OuterRef("trigger_key"),
        )
        enrollments = Enrollment.objects.filter(customer_id=merge.absorbed_id).exclude(
            Exists(kept_firings)
        )
        record = TouchpointMergeMove.objects.create(
            merge=merge,
            touchpoint_ids=list(moved.values_list("pk", flat=True)),
            enrollment_ids=list(enrollments.values_list("pk", flat=True)),
            stopped=[list(row) for row in duplicates],
        )
        Touchpoint.objects.filter(pk__in=[pk for pk, _status, _reason in duplicates]).update(
            status=Touchpoint.Status.STOPPED, reason=MERGED_DUPLICATE
        )
        Touchpoint.objects.filter(pk__in=record.touchpoint_ids).update(customer_id=merge.kept_id)
        Enrollment.objects.filter(pk__in=record.enrollment_ids).update(customer_id=merge.kept_id)

    def undone(self, merge) -> None:
        record = TouchpointMergeMove.objects.filter(merge=merge).first()
        if record is None:
            return
        Touchpoint.objects.filter(pk__in=record.touchpoint_ids).update(
            customer_id=merge.absorbed_id
        )
        Enrollment.objects.filter(pk__in=record.enrollment_ids).update(
            customer_id=merge.absorbed_id
        )
        reopened = []
        for pk, status, reason in record.stopped:
            if Touchpoint.objects.filter(
                pk=pk, status=Touchpoint.Status.STOPPED, reason=MERGED_DUPLICATE
            ).update(status=status, reason=reason):
                reopened.append(pk)
        cancelled = AutomaticSend.objects.filter(
            touchpoint_id__in=reopened, status=AutomaticSend.Status.CANCELLED
        )
        resend = list(cancelled.values_list("touchpoint_id", flat=True))
        if resend:
            from sop.tasks import send_automatic

            cancelled.update(status=AutomaticSend.Status.QUEUED, error="")
            transaction.on_commit(lambda: send_automatic.delay(resend))
        record.delete()


def _schedule_triggers() -> None:
    from sop.tasks import enroll_pending_orders

    if cache.add(TRIGGERS_SCHEDULED, 1, timeout=DEBOUNCE_SECONDS + 60):
        enroll_pending_orders.apply_async(countdown=DEBOUNCE_SECONDS)


def enroll_pending(*, now: datetime | None = None) -> int:
    """Order triggers for queued customers, a batch per transaction (claimed in it)."""
    cache.delete(TRIGGERS_SCHEDULED)
    total = 0
    while True:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    """
                    DELETE FROM sop_triggerpending WHERE customer_id IN (
                        SELECT customer_id FROM sop_triggerpending ORDER BY customer_id
                        LIMIT %s FOR UPDATE SKIP LOCKED)
                    RETURNING customer_id
                    """,
                    [TRIGGER_BATCH],
                )
                ids = [row[0] for row in cursor.fetchall()]
            if not ids:
                return total
            total += triggers.orders_placed(customer_ids=ids, now=now)


def contact_added(*, event: dict, gateway=None) -> None:
    """Callback handler (registered after contacts and campaigns)."""
    with transaction.atomic():
        triggers.contact_added(event=event)


# -- the guide's tasks -------------------------------------------------------------------


class TaskError(ValueError):
    """A task the guide cannot change (not theirs, or no longer open), with the reason
    in the language of the guide's request."""


def _open_task(touchpoint_id: int, guide: Guide) -> Touchpoint:
    touchpoint = (
        Touchpoint.objects.select_for_update().of_guide(guide).filter(pk=touchpoint_id).first()
    )
    if touchpoint is None:
        raise TaskError(_("找不到这个任务"))
    if touchpoint.status != Touchpoint.Status.TASK:
        raise TaskError(
            _("这个任务现在是「%(status)s」，不能再改了。")
            % {"status": touchpoint.get_status_display()}
        )
    return touchpoint


def task_done(*, touchpoint_id: int, guide: Guide, now: datetime | None = None) -> Touchpoint:
    with transaction.atomic():
        touchpoint = _open_task(touchpoint_id, guide)
        touchpoint.status, touchpoint.done_at = Touchpoint.Status.DONE, now or timezone.now()
        touchpoint.save(update_fields=["status", "done_at"])
        return touchpoint


def task_skip(*, touchpoint_id: int, guide: Guide, reason: str) -> Touchpoint:
    reason = reason.strip()
    if not reason:
        raise TaskError(_("跳过需要写明原因"))
    with transaction.atomic():
        touchpoint = _open_task(touchpoint_id, guide)
        touchpoint.status, touchpoint.reason = Touchpoint.Status.SKIPPED, reason[:200]
        touchpoint.done_at = timezone.now()
        touchpoint.save(update_fields=["status", "reason", "done_at"])
        return touchpoint


def task_opt_out(*, touchpoint_id: int, guide: Guide) -> int:
    """The customer of one of the guide's tasks asked not to be contacted again: it is
    recorded (`OptOut`) and their open tasks stop, every guide's; touches not yet given
    stop when they come due, and campaigns hold them back (both read `OptOut`).
    Returns how many tasks stopped."""
    with transaction.atomic():
        touchpoint = _open_task(touchpoint_id, guide)
        optout_set(customer=touchpoint.customer, reason=_("导购记录"), by=guide.user)
        return Touchpoint.objects.filter(
            customer_id=touchpoint.customer_id, status=Touchpoint.Status.TASK
        ).update(status=Touchpoint.Status.STOPPED, reason="opted_out")


def task_snooze(*, touchpoint_id: int, guide: Guide, until: datetime) -> Touchpoint:
    """Move a task later within its window (it still expires at the window's end)."""
    with transaction.atomic():
        touchpoint = _open_task(touchpoint_id, guide)
        if until >= touchpoint.window_ends_at:
            raise TaskError(_("推迟后就超出了这个任务的发送窗口"))
        touchpoint.snoozed_until = until
        touchpoint.save(update_fields=["snoozed_until"])
        return touchpoint


# -- scripts -----------------------------------------------------------------------------

VARIABLES = {
    "{称呼}": "备注名，没有备注时用客户名",
    "{客户姓名}": "客户名",
    "{最近购买商品}": "最近一单的第一件商品",
    "{导购姓名}": "导购的名字",
    "{门店}": "导购所在门店",
}


def script_render(*, script: str, customer: Customer, guide: Guide) -> str:
    """The script with its variables filled in for this customer and guide."""
    relationship = Relationship.objects.filter(customer=customer, guide=guide).first()
    last_line = (
        OrderLine.objects.filter(
            order__customer=customer, order__status__in=["paid", "partially_refunded"]
        )
        .order_by("-order__paid_at", "line_no")
        .values_list("product_name", flat=True)
        .first()
    )
    store = Store.objects.filter(pk=guide.store_id).values_list("name", flat=True).first()
    values = {
        "{称呼}": (relationship.remark if relationship and relationship.remark else customer.name),
        "{客户姓名}": customer.name,
        "{最近购买商品}": last_line or "",
        "{导购姓名}": guide.name,
        "{门店}": store or "",
    }
    for variable, value in values.items():
        script = script.replace(variable, value)
    return script


# -- automatic steps ----------------------------------------------------------------------


def _attachments(step: SopStep) -> list[dict]:
    """Our attachment shape → add_msg_template's."""
    converted = []
    for item in step.attachments or []:
        kind = item.get("type")
        if kind == "image":
            converted.append({"msgtype": "image", "image": {"pic_url": item.get("pic_url", "")}})
        elif kind == "link":
            converted.append(
                {
                    "msgtype": "link",
                    "link": {
                        "title": item.get("title", ""),
                        "url": item.get("url", ""),
                        "picurl": item.get("pic_url", ""),
                        "desc": item.get("desc", ""),
                    },
                }
            )
        elif kind == "miniprogram":
            converted.append(
                {
                    "msgtype": "miniprogram",
                    "miniprogram": {
                        "title": item.get("title", ""),
                        "appid": item.get("appid", ""),
                        "page": item.get("page", ""),
                        "pic_media_id": item.get("pic_media_id", ""),
                    },
                }
            )
    return converted


def automatic_send(*, touchpoint_ids: list[int], gateway) -> dict:
    """Send queued automatic steps: each record moves queued → sending (committed) before
    WeCom is called, so a retry of this task never sends a touchpoint twice; a record
    found `sending` (the process died during the call) is marked unknown, not resent. A
    touchpoint stopped or skipped while its send waited (the customer opted out, deleted
    the guide, was merged into a customer with the same task) is not sent: cancelled.
    (One whose window ended meanwhile still is: its result is fetched all the same.)"""
    counts = {"sent": 0, "failed": 0, "unknown": 0, "cancelled": 0}
    counts["unknown"] = AutomaticSend.objects.filter(
        touchpoint_id__in=touchpoint_ids, status=AutomaticSend.Status.SENDING
    ).update(status=AutomaticSend.Status.UNKNOWN, error="发送时进程中断，请在企业微信中核对")
    # An EXISTS on the record's own row, so that a claim waiting for another's lock checks
    # `queued` again on the row that one left (a filter across the join would not).
    sendable = Exists(
        Touchpoint.objects.filter(pk=OuterRef("touchpoint_id")).exclude(
            status__in=[Touchpoint.Status.STOPPED, Touchpoint.Status.SKIPPED]
        )
    )
    for touchpoint_id in touchpoint_ids:
        queued = AutomaticSend.objects.filter(
            touchpoint_id=touchpoint_id, status=AutomaticSend.Status.QUEUED
        )
        claimed = queued.filter(sendable).update(status=AutomaticSend.Status.SENDING)
        if not claimed:
            counts["cancelled"] += queued.exclude(sendable).update(
                status=AutomaticSend.Status.CANCELLED, error="发送前触达已停止，未发送"
            )
            continue
        touchpoint = Touchpoint.objects.select_related("customer", "guide", "step").get(
            pk=touchpoint_id
        )
        text = script_render(
            script=touchpoint.step.script, customer=touchpoint.customer, guide=touchpoint.guide
        )
        try:
            result = gateway.add_msg_template(
                sender=touchpoint.guide.wecom_userid,
                external_userids=[touchpoint.customer.external_userid],
                text=text,
                attachments=_attachments(touchpoint.step),
            )
        except WeComError as error:
            AutomaticSend.objects.filter(touchpoint_id=touchpoint_id).update(
                status=AutomaticSend.Status.FAILED, error=f"{error.errcode} {error.errmsg}"[:300]
            )
            counts["failed"] += 1
            continue
        failed = touchpoint.customer.external_userid in result["fail_list"]
        AutomaticSend.objects.filter(touchpoint_id=touchpoint_id).update(
            status=AutomaticSend.Status.FAILED if failed else AutomaticSend.Status.SENT,
            msgid=result["msgid"],
            error="企业微信拒绝了这位客户（fail_list）" if failed else "",
        )
        counts["failed" if failed else "sent"] += 1
    return counts


def automatic_results(*, gateway, now: datetime | None = None) -> int:
    """Fetch back the results of sent automatic steps: a customer who received it makes
    the touchpoint done, even when its window has ended (expired: the send still
    happened). Sends older than SOP_SEND_RESULT_DAYS are no longer asked about (see
    docs/SOP.md): they are recorded as unconfirmed. Returns how many were confirmed."""
    now = now or timezone.now()
    days = settings.SOP_SEND_RESULT_DAYS
    AutomaticSend.objects.filter(
        status=AutomaticSend.Status.SENT, created_at__lt=now - timedelta(days=days)
    ).update(
        status=AutomaticSend.Status.UNCONFIRMED,
        error=f"导购 {days} 天内没有在企业微信中确认发送",
        updated_at=now,
    )
    confirmed = 0
    for send in AutomaticSend.objects.filter(status=AutomaticSend.Status.SENT).select_related(
        "touchpoint__guide", "touchpoint__customer"
    ):
        rows = gateway.groupmsg_send_result(
            msgid=send.msgid, userid=send.touchpoint.guide.wecom_userid
        )
        row = next(
            (
                r
                for r in rows
                if r.get("external_userid") == send.touchpoint.customer.external_userid
            ),
            None,
        )
        if row is None or row.get("status") == 0:
            continue  # the guide has not confirmed the send in WeCom yet
        with transaction.atomic():
            if row["status"] == 1:
                sent_at = datetime.fromtimestamp(row.get("send_time", 0), tz=SHANGHAI)
                Touchpoint.objects.filter(
                    pk=send.touchpoint_id,
                    status__in=[Touchpoint.Status.TASK, Touchpoint.Status.EXPIRED],
                ).update(status=Touchpoint.Status.DONE, done_at=sent_at)
                send.status, send.error = AutomaticSend.Status.CONFIRMED, ""
                confirmed += 1
            else:
                send.status = AutomaticSend.Status.FAILED
                send.error = {2: "客户已不是好友", 3: "客户已达到企业微信的接收上限"}.get(
                    row["status"], f"status {row['status']}"
                )
            send.save(update_fields=["status", "error", "updated_at"])
    return confirmed


# -- reminders ----------------------------------------------------------------------------


@dataclass
class ReminderResult:
    morning: int = 0
    overdue: int = 0
    escalated: int = 0


def _task_link() -> str:
    return settings.SCRM_BASE_URL.rstrip("/") + reverse("guide_home")


def _send(gateway, guide: Guide, kind: str, recipient: str, tasks: int, text: str, now) -> None:
    error = ""
    try:
        gateway.message_send(userids=[recipient], text=text)
    except WeComError as failure:
        error = f"{failure.errcode} {failure.errmsg}"[:300]
    GuideReminder.objects.create(
        guide=guide, kind=kind, recipient=recipient, tasks=tasks, sent_at=now, error=error
    )


def reminders_send(*, gateway, now: datetime | None = None) -> ReminderResult:
    """The morning list (once a day after the policy's time), overdue reminders (at most
    one per guide per half hour) and escalations to the store manager. A reminder that
    WeCom refused is recorded with its error and does not count as sent."""
    now = now or timezone.now()
    policy = ContactPolicy.current()
    result = ReminderResult()
    today = _today(now)
    day_start = local_midnight(today)
    # The tasks guides see and are to do now (their lists count the same ones: a
    # snoozed task is neither in the morning's count nor overdue until it wakes).
    open_tasks = Touchpoint.objects.followed().filter(
        TouchpointQuerySet.awake(now), status=Touchpoint.Status.TASK
    )
    if now.astimezone(SHANGHAI).time() >= policy.morning_reminder_at:
        already = GuideReminder.objects.filter(
            kind=GuideReminder.Kind.MORNING, sent_at__gte=day_start, error=""
        ).values("guide_id")
        for guide_id, count in _counts_by_guide(open_tasks.exclude(guide_id__in=already)):
            guide = Guide.objects.get(pk=guide_id)
            text = f"今天有 {count} 个客户待跟进：{_task_link()}"
            _send(gateway, guide, GuideReminder.Kind.MORNING, guide.wecom_userid, count, text, now)
            result.morning += 1
    overdue = open_tasks.filter(due_at__lt=now - timedelta(minutes=policy.overdue_after_minutes))
    # Only reminders that reached the guide hold back the next one (a failed one is
    # retried on the next run).
    recent = GuideReminder.objects.filter(
        kind=GuideReminder.Kind.OVERDUE, sent_at__gt=now - REMINDER_EVERY, error=""
    ).values("guide_id")
    for guide_id, count in _counts_by_guide(overdue.exclude(guide_id__in=recent)):
        guide = Guide.objects.get(pk=guide_id)
        text = f"有 {count} 个任务已逾期，请尽快处理：{_task_link()}"
        _send(gateway, guide, GuideReminder.Kind.OVERDUE, guide.wecom_userid, count, text, now)
        result.overdue += 1
    late = overdue.filter(
        due_at__lt=now - timedelta(minutes=policy.escalate_after_minutes), escalated_at__isnull=True
    )
    for guide_id, count in _counts_by_guide(late):
        guide = Guide.objects.select_related("store").get(pk=guide_id)
        manager = guide.store.manager_userid if guide.store else ""
        if manager:
            hours = policy.escalate_after_minutes // 60
            text = f"导购 {guide.name} 有 {count} 个任务逾期超过 {hours} 小时"
            _send(gateway, guide, GuideReminder.Kind.ESCALATION, manager, count, text, now)
            result.escalated += 1
        late.filter(guide_id=guide_id).update(escalated_at=now)
    return result


def _counts_by_guide(queryset) -> list[tuple[int, int]]:
    from django.db.models import Count

    return list(
        queryset.values("guide_id")
        .annotate(n=Count("id"))
        .order_by("guide_id")
        .values_list("guide_id", "n")
    )
