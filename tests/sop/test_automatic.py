"""Automatic steps and reminders against the WeCom emulator, over HTTP.

An automatic step becomes a task and an AutomaticSend at dispatch; the send creates one
add_msg_template for the customer with the script filled in, never a second one (not on
a retry, not after a crash during the call); the guide's confirmation in WeCom makes the
touchpoint done at the send time, a customer who is no longer a friend makes it fail
with the reason. Reminders: one morning list per guide with tasks, overdue reminders at
most every half hour, one escalation to the store manager.
"""

import threading
import time as clock
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django.urls import reverse

from contacts.models import Customer, Guide, OrderLine, Relationship, Store
from scrm.wecom.emulator import Config, generate
from scrm.wecom.gateway import WeComGateway
from sop import scheduling, selectors, services, tasklist
from sop.models import (
    AutomaticSend,
    ContactPolicy,
    Enrollment,
    GuideReminder,
    SopPlan,
    SopStep,
    Touchpoint,
)
from sop.tasks import send_automatic
from tests.contacts.factories import OrderFactory
from tests.helpers import another_waits_for_a_lock, wait_for
from tests.wecom import CUSTOMERS, GUIDES, SEED

pytestmark = pytest.mark.django_db

SH = ZoneInfo("Asia/Shanghai")
GUIDE = "guide0001"
MANAGER = "guide0008"  # the store manager is a WeCom member too
SCRIPT = "{称呼}您好，我是{门店}的{导购姓名}，上次的{最近购买商品}穿着还合适吗？"
LINK = {"type": "link", "title": "秋季新品", "url": "https://example.com/new", "pic_url": ""}
SENT_AT = datetime(2026, 6, 30, 15, 20, 7, tzinfo=SH)  # when the guide confirms in WeCom
SEND = "externalcontact/add_msg_template"
RESULT = "externalcontact/get_groupmsg_send_result"


def sh(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SH)


@pytest.fixture
def emulator(emulator_server, settings):
    """The session's emulator reset to its seeded data, its clock stopped at SENT_AT, and
    our database synced from it; its call counts start after the sync."""
    emulator, served = emulator_server
    emulator.data = generate(seed=SEED, guides=GUIDES, customers=CUSTOMERS)
    emulator.config = Config()
    emulator.clock = SENT_AT.timestamp
    emulator.faults.clear()
    emulator.revoke_tokens()
    settings.WECOM_API_BASE = served.base_url
    call_command("sync_wecom", "--full", "--inline", "--json", stdout=StringIO())
    with emulator.lock:
        emulator.calls.clear()
        emulator.per_second.clear()
    yield emulator
    emulator.clock = clock.time


@pytest.fixture
def gateway(emulator) -> WeComGateway:
    return WeComGateway.from_settings()


def _followed(emulator, count: int) -> list[Customer]:
    """Customers of GUIDE in WeCom (and so in our database)."""
    externals = [follow["external_userid"] for follow in emulator.data.follows[GUIDE][:count]]
    customers = {
        c.external_userid: c for c in Customer.objects.filter(external_userid__in=externals)
    }
    return [customers[external] for external in externals]


def _automatic_plan() -> SopPlan:
    plan = SopPlan.objects.create(
        name="购后关怀", trigger=SopPlan.Trigger.MANUAL, started_at=sh("2026-06-01T00:00")
    )
    SopStep.objects.create(
        plan=plan, position=1, script=SCRIPT, attachments=[LINK], is_automatic=True
    )
    return plan


def _dispatched(plan: SopPlan, customers: list[Customer], monkeypatch, capture) -> list[int]:
    """Enrol the customers with GUIDE at 11:00 and dispatch at 12:00; returns the ids the
    dispatch queued for sending (send_automatic.delay, after the commit)."""
    guide = Guide.objects.get(wecom_userid=GUIDE)
    scheduling.enroll(
        plan=plan,
        candidates="""SELECT id AS customer_id, %(guide)s::bigint AS guide_id,
                      'contact:t' AS trigger_key, %(at)s::timestamptz AS triggered_at
                      FROM contacts_customer WHERE id = ANY(%(ids)s)""",
        params={
            "guide": guide.pk,
            "at": sh("2026-06-30T11:00"),
            "ids": [customer.pk for customer in customers],
        },
    )
    queued = []
    monkeypatch.setattr(send_automatic, "delay", queued.append)
    with capture(execute=True):
        result = scheduling.dispatch(now=sh("2026-06-30T12:00"))
    assert result.created == len(customers)
    assert [sorted(ids) for ids in queued] == [sorted(result.automatic)]
    return queued[0]


def _text(customer: Customer) -> str:
    guide = Guide.objects.get(wecom_userid=GUIDE)
    relationship = Relationship.objects.get(customer=customer, guide=guide)
    store = Store.objects.get(pk=guide.store_id).name
    return (
        f"{relationship.remark or customer.name}您好，我是{store}的{guide.name}，"
        "上次的冰丝阔腿裤穿着还合适吗？"
    )


def test_an_automatic_step_is_sent_once_and_done_when_the_guide_confirms(
    emulator, gateway, monkeypatch, django_capture_on_commit_callbacks
):
    (customer,) = _followed(emulator, 1)
    order = OrderFactory(customer=customer, paid_at=sh("2026-06-20T15:00"))
    OrderLine.objects.create(
        order=order,
        line_no=1,
        sku="BX-01",
        product_name="冰丝阔腿裤",
        quantity=1,
        unit_price=Decimal("89.00"),
        line_amount=Decimal("89.00"),
    )
    ids = _dispatched(
        _automatic_plan(), [customer], monkeypatch, django_capture_on_commit_callbacks
    )
    touchpoint = Touchpoint.objects.get()
    assert ids == [touchpoint.pk] and touchpoint.status == Touchpoint.Status.TASK
    assert AutomaticSend.objects.get().status == AutomaticSend.Status.QUEUED

    assert services.automatic_send(touchpoint_ids=ids, gateway=gateway) == {
        "sent": 1,
        "failed": 0,
        "unknown": 0,
        "cancelled": 0,
    }
    assert emulator.stats()[SEND] == 1
    (message,) = emulator.data.group_msgs.values()
    assert message["chat_type"] == "single"
    assert message["text"] == {"content": _text(customer)}
    assert message["attachments"] == [
        {
            "msgtype": "link",
            "link": {
                "title": "秋季新品",
                "url": "https://example.com/new",
                "picurl": "",
                "desc": "",
            },
        }
    ]
    assert [(t["userid"], t["external_userid"], t["status"]) for t in message["targets"]] == [
        (GUIDE, customer.external_userid, 0)
    ]
    send = AutomaticSend.objects.get()
    assert (send.status, send.msgid, send.error) == ("sent", message["msgid"], "")

    # The same ids again (a retried task): nothing more is sent.
    assert services.automatic_send(touchpoint_ids=ids, gateway=gateway) == {
        "sent": 0,
        "failed": 0,
        "unknown": 0,
        "cancelled": 0,
    }
    assert emulator.stats()[SEND] == 1

    # Not confirmed by the guide yet: still a task.
    assert services.automatic_results(gateway=gateway, now=SENT_AT) == 0
    touchpoint.refresh_from_db()
    assert touchpoint.status == Touchpoint.Status.TASK

    emulator.guide_confirms_send(message["msgid"], GUIDE)
    assert services.automatic_results(gateway=gateway, now=SENT_AT) == 1
    touchpoint.refresh_from_db()
    assert touchpoint.status == Touchpoint.Status.DONE
    assert touchpoint.done_at == SENT_AT.astimezone(UTC)
    assert AutomaticSend.objects.get().status == AutomaticSend.Status.CONFIRMED
    asked = emulator.stats()[RESULT]
    assert services.automatic_results(gateway=gateway, now=SENT_AT) == 0
    assert emulator.stats()[RESULT] == asked  # a confirmed send is not asked about again
    assert emulator.stats()[SEND] == 1


def test_a_send_interrupted_during_the_call_is_unknown_and_not_sent_again(
    emulator, gateway, monkeypatch, django_capture_on_commit_callbacks
):
    crashed, other = _followed(emulator, 2)
    ids = _dispatched(
        _automatic_plan(), [crashed, other], monkeypatch, django_capture_on_commit_callbacks
    )
    # The process died during the WeCom call: the record was left `sending`.
    AutomaticSend.objects.filter(touchpoint__customer=crashed).update(
        status=AutomaticSend.Status.SENDING
    )
    assert services.automatic_send(touchpoint_ids=ids, gateway=gateway) == {
        "sent": 1,
        "failed": 0,
        "unknown": 1,
        "cancelled": 0,
    }
    assert emulator.stats()[SEND] == 1
    (message,) = emulator.data.group_msgs.values()
    assert [t["external_userid"] for t in message["targets"]] == [other.external_userid]
    lost = AutomaticSend.objects.get(touchpoint__customer=crashed)
    assert lost.status == AutomaticSend.Status.UNKNOWN
    assert lost.error == "发送时进程中断，请在企业微信中核对"
    assert services.automatic_send(touchpoint_ids=ids, gateway=gateway) == {
        "sent": 0,
        "failed": 0,
        "unknown": 0,
        "cancelled": 0,
    }
    assert emulator.stats()[SEND] == 1
    assert AutomaticSend.objects.get(pk=lost.pk).status == AutomaticSend.Status.UNKNOWN


def test_a_touch_stopped_while_its_send_waited_is_not_sent(
    emulator, gateway, monkeypatch, django_capture_on_commit_callbacks
):
    gone, stays = _followed(emulator, 2)
    ids = _dispatched(
        _automatic_plan(), [gone, stays], monkeypatch, django_capture_on_commit_callbacks
    )
    # Before the worker sends, the callback that one customer deleted the guide is handled.
    Relationship.objects.filter(customer=gone).update(is_active=False)
    services.tasks_stop_unfollowed([gone.pk])
    assert services.automatic_send(touchpoint_ids=ids, gateway=gateway) == {
        "sent": 1,
        "failed": 0,
        "unknown": 0,
        "cancelled": 1,
    }
    (message,) = emulator.data.group_msgs.values()
    assert [t["external_userid"] for t in message["targets"]] == [stays.external_userid]
    cancelled = AutomaticSend.objects.get(touchpoint__customer=gone)
    assert (cancelled.status, cancelled.msgid) == (AutomaticSend.Status.CANCELLED, "")
    assert Touchpoint.objects.get(customer=gone).reason == "contact_deleted"


def test_a_customer_no_longer_a_friend_fails_with_the_reason(
    emulator, gateway, monkeypatch, django_capture_on_commit_callbacks
):
    gone_later, gone_before = _followed(emulator, 2)
    ids = _dispatched(
        _automatic_plan(),
        [gone_later, gone_before],
        monkeypatch,
        django_capture_on_commit_callbacks,
    )
    # One deleted the guide before the send (our callback was missed: the relationship is
    # still live here), the other after it, before the guide confirmed.
    emulator.customer_deletes_guide(gone_before.external_userid, GUIDE)
    assert services.automatic_send(touchpoint_ids=ids, gateway=gateway) == {
        "sent": 1,
        "failed": 1,
        "unknown": 0,
        "cancelled": 0,
    }
    before = AutomaticSend.objects.get(touchpoint__customer=gone_before)
    assert before.status == AutomaticSend.Status.FAILED
    assert before.error.startswith("41048 ")  # WeCom: no customer to send to
    emulator.customer_deletes_guide(gone_later.external_userid, GUIDE)
    (message,) = emulator.data.group_msgs.values()
    emulator.guide_confirms_send(message["msgid"], GUIDE)
    assert services.automatic_results(gateway=gateway, now=SENT_AT) == 0
    later = AutomaticSend.objects.get(touchpoint__customer=gone_later)
    assert (later.status, later.error) == (AutomaticSend.Status.FAILED, "客户已不是好友")
    # Neither touchpoint is done: the guides still see them.
    assert set(Touchpoint.objects.values_list("status", flat=True)) == {Touchpoint.Status.TASK}
    assert emulator.stats()[SEND] == 2


def _customer_of(guide: Guide, position: int = 0) -> Customer:
    """One of the customers the guide follows (their tasks are the guide's to see)."""
    return Customer.objects.followed_by(guide).order_by("pk")[position]


def _task(guide: Guide, customer: Customer, plan: SopPlan, due_at: datetime) -> Touchpoint:
    enrollment = Enrollment.objects.create(
        plan=plan,
        customer=customer,
        guide=guide,
        trigger_key=f"t:{due_at.isoformat()}",
        triggered_at=due_at,
    )
    return Touchpoint.objects.create(
        enrollment=enrollment,
        step=plan.steps.get(),
        plan=plan,
        customer=customer,
        guide=guide,
        due_at=due_at,
        window_ends_at=due_at.replace(hour=21, minute=0),
        status=Touchpoint.Status.TASK,
        task_at=due_at,
    )


def test_reminders_morning_list_overdue_every_half_hour_and_one_escalation(emulator):
    ContactPolicy.objects.create()  # 09:30, overdue after 2 h, escalated after 6 h
    first, second = (Guide.objects.get(wecom_userid=u) for u in (GUIDE, "guide0002"))
    Store.objects.filter(pk=first.store_id).update(manager_userid=MANAGER)
    plan = SopPlan.objects.create(
        name="回访", trigger=SopPlan.Trigger.MANUAL, started_at=sh("2026-06-01T00:00")
    )
    plan.steps.create(position=1, script="hi")
    for due in ("2026-06-30T03:00", "2026-06-30T07:30", "2026-06-30T09:50"):
        _task(first, _customer_of(first), plan, sh(due))  # 7 h, 2.5 h and 10 min ago at 10:00
    _task(second, _customer_of(second), plan, sh("2026-06-30T09:00"))
    gateway = WeComGateway.for_app()
    link = settings.SCRM_BASE_URL.rstrip("/") + reverse("guide_home")

    now = sh("2026-06-30T10:00")
    result = services.reminders_send(gateway=gateway, now=now)
    assert (result.morning, result.overdue, result.escalated) == (2, 1, 1)
    sent = [(m["userid"], m["text"]["content"]) for m in emulator.app_messages]
    assert sorted(sent) == sorted(
        [
            (GUIDE, f"今天有 3 个客户待跟进：{link}"),
            ("guide0002", f"今天有 1 个客户待跟进：{link}"),
            (GUIDE, f"有 2 个任务已逾期，请尽快处理：{link}"),
            (MANAGER, f"导购 {first.name} 有 1 个任务逾期超过 6 小时"),
        ]
    )
    assert not GuideReminder.objects.exclude(error="").exists()

    # Ten minutes later: nothing again (the morning list is daily, the overdue reminder
    # at most every half hour, the escalation once).
    result = services.reminders_send(gateway=gateway, now=now + timedelta(minutes=10))
    assert (result.morning, result.overdue, result.escalated) == (0, 0, 0)
    assert len(emulator.app_messages) == 4

    # Past the half hour: the overdue reminder again, never a second escalation.
    result = services.reminders_send(gateway=gateway, now=now + timedelta(minutes=31))
    assert (result.morning, result.overdue, result.escalated) == (0, 1, 0)
    assert [(m["userid"], m["text"]["content"]) for m in emulator.app_messages[4:]] == [
        (GUIDE, f"有 2 个任务已逾期，请尽快处理：{link}")
    ]
    assert [m["userid"] for m in emulator.app_messages].count(MANAGER) == 1
    assert GuideReminder.objects.filter(kind="escalation").get().recipient == MANAGER


def test_reminders_count_only_the_tasks_the_guide_sees(emulator):
    """A customer who deleted the guide leaves the guide's list at once (the facts refresh
    stops the task later), a snoozed task waits apart: reminders count what the list
    shows to do now, and escalate nothing else."""
    ContactPolicy.objects.create()  # 09:30, overdue after 2 h, escalated after 6 h
    guide = Guide.objects.get(wecom_userid=GUIDE)
    Store.objects.filter(pk=guide.store_id).update(manager_userid=MANAGER)
    plan = SopPlan.objects.create(
        name="回访", trigger=SopPlan.Trigger.MANUAL, started_at=sh("2026-06-01T00:00")
    )
    plan.steps.create(position=1, script="hi")
    kept = [_task(guide, _customer_of(guide, n), plan, sh("2026-06-30T03:00")) for n in (0, 1)]
    gone = _task(guide, _customer_of(guide, 2), plan, sh("2026-06-30T03:00"))
    Relationship.objects.filter(customer=gone.customer, guide=guide).update(is_active=False)
    # and one the guide snoozed till noon: later on the list, not overdue meanwhile
    snoozed = _task(guide, _customer_of(guide, 3), plan, sh("2026-06-30T03:00"))
    Touchpoint.objects.filter(pk=snoozed.pk).update(snoozed_until=sh("2026-06-30T12:00"))
    now = sh("2026-06-30T10:00")
    listed = tasklist.task_list(guide=guide, now=now)
    assert (listed.open_count, listed.overdue_count, listed.snoozed_count) == (2, 2, 1)

    result = services.reminders_send(gateway=WeComGateway.for_app(), now=now)
    assert (result.morning, result.overdue, result.escalated) == (1, 1, 1)
    link = settings.SCRM_BASE_URL.rstrip("/") + reverse("guide_home")
    assert sorted((m["userid"], m["text"]["content"]) for m in emulator.app_messages) == sorted(
        [
            (GUIDE, f"今天有 2 个客户待跟进：{link}"),
            (GUIDE, f"有 2 个任务已逾期，请尽快处理：{link}"),
            (MANAGER, f"导购 {guide.name} 有 2 个任务逾期超过 6 小时"),
        ]
    )
    assert sorted(GuideReminder.objects.values_list("kind", "tasks")) == [
        ("escalation", 2),
        ("morning", 2),
        ("overdue", 2),
    ]
    escalated = dict(Touchpoint.objects.values_list("pk", "escalated_at"))
    assert escalated == {kept[0].pk: now, kept[1].pk: now, gone.pk: None, snoozed.pk: None}


def test_a_send_confirmed_after_the_window_makes_the_expired_touchpoint_done(
    emulator, gateway, monkeypatch, django_capture_on_commit_callbacks
):
    (customer,) = _followed(emulator, 1)
    plan = _automatic_plan()
    ids = _dispatched(plan, [customer], monkeypatch, django_capture_on_commit_callbacks)
    services.automatic_send(touchpoint_ids=ids, gateway=gateway)
    # The window (10:00–21:00) ends unconfirmed: the dispatch expires the task.
    assert scheduling.dispatch(now=sh("2026-06-30T21:30")).expired == 1
    assert Touchpoint.objects.get().status == Touchpoint.Status.EXPIRED

    confirmed_at = sh("2026-07-01T09:10")
    emulator.clock = confirmed_at.timestamp
    (message,) = emulator.data.group_msgs.values()
    emulator.guide_confirms_send(message["msgid"], GUIDE)
    assert services.automatic_results(gateway=gateway, now=confirmed_at) == 1
    touchpoint = Touchpoint.objects.get()
    assert (touchpoint.status, touchpoint.done_at) == (Touchpoint.Status.DONE, confirmed_at)
    assert AutomaticSend.objects.get().status == AutomaticSend.Status.CONFIRMED
    stats = selectors.plan_stats([plan.pk], now=confirmed_at)[plan.pk]
    assert (stats.done, stats.done_on_time, stats.expired) == (1, 0, 0)


def test_a_send_never_confirmed_is_polled_until_the_cut_off_then_recorded_unconfirmed(
    emulator, gateway, monkeypatch, django_capture_on_commit_callbacks, settings
):
    settings.SOP_SEND_RESULT_DAYS = 30
    (customer,) = _followed(emulator, 1)
    ids = _dispatched(
        _automatic_plan(), [customer], monkeypatch, django_capture_on_commit_callbacks
    )
    services.automatic_send(touchpoint_ids=ids, gateway=gateway)
    sent_at = sh("2026-06-30T12:01")
    AutomaticSend.objects.update(created_at=sent_at)

    # Within 30 days of the send: asked about every time, still waiting.
    asked = emulator.stats().get(RESULT, 0)
    assert services.automatic_results(gateway=gateway, now=sent_at + timedelta(days=29)) == 0
    assert emulator.stats()[RESULT] == asked + 1
    assert AutomaticSend.objects.get().status == AutomaticSend.Status.SENT

    # Past the cut-off: recorded as never confirmed, and no longer asked about.
    assert services.automatic_results(gateway=gateway, now=sent_at + timedelta(days=31)) == 0
    send = AutomaticSend.objects.get()
    assert send.status == AutomaticSend.Status.UNCONFIRMED
    assert send.error == "导购 30 天内没有在企业微信中确认发送"
    assert services.automatic_results(gateway=gateway, now=sent_at + timedelta(days=32)) == 0
    assert emulator.stats()[RESULT] == asked + 1
    assert Touchpoint.objects.get().status == Touchpoint.Status.TASK


def test_a_failed_reminder_does_not_hold_back_the_next_try(emulator):
    ContactPolicy.objects.create()  # 09:30, overdue after 2 h
    guide = Guide.objects.get(wecom_userid=GUIDE)
    plan = SopPlan.objects.create(
        name="回访", trigger=SopPlan.Trigger.MANUAL, started_at=sh("2026-06-01T00:00")
    )
    plan.steps.create(position=1, script="hi")
    _task(guide, _customer_of(guide), plan, sh("2026-06-30T07:00"))
    gateway = WeComGateway.for_app()
    gateway.message_send(userids=[GUIDE], text="先取一次 access_token")
    sent_before = len(emulator.app_messages)

    emulator.faults.extend([60011, 60011])  # the morning list and the overdue reminder fail
    now = sh("2026-06-30T10:00")
    services.reminders_send(gateway=gateway, now=now)
    assert len(emulator.app_messages) == sent_before
    recorded = GuideReminder.objects.values_list("kind", "error")
    assert sorted((kind, error.split()[0]) for kind, error in recorded) == [
        ("morning", "60011"),
        ("overdue", "60011"),
    ]

    # Five minutes later both are tried again and reach the guide.
    result = services.reminders_send(gateway=gateway, now=now + timedelta(minutes=5))
    assert (result.morning, result.overdue) == (1, 1)
    assert [m["userid"] for m in emulator.app_messages[sent_before:]] == [GUIDE, GUIDE]
    # A successful reminder holds back the next one for half an hour again.
    result = services.reminders_send(gateway=gateway, now=now + timedelta(minutes=20))
    assert (result.morning, result.overdue) == (0, 0)


@pytest.mark.django_db(transaction=True)
def test_a_send_claimed_by_another_worker_meanwhile_is_not_sent_again(
    emulator, gateway, monkeypatch, django_capture_on_commit_callbacks
):
    """Two deliveries of one send task: the second waits for the first's claim and then
    finds the record no longer queued (its check is on the record's own row)."""
    (customer,) = _followed(emulator, 1)
    ids = _dispatched(
        _automatic_plan(), [customer], monkeypatch, django_capture_on_commit_callbacks
    )
    results = []

    def second_delivery() -> None:
        try:
            results.append(services.automatic_send(touchpoint_ids=ids, gateway=gateway))
        finally:
            connection.close()

    worker = threading.Thread(target=second_delivery)
    with transaction.atomic():  # the first delivery has claimed it, not yet committed
        AutomaticSend.objects.filter(touchpoint_id=ids[0]).update(
            status=AutomaticSend.Status.SENDING
        )
        worker.start()
        wait_for(another_waits_for_a_lock, timeout=5, interval=0.05)
    worker.join()
    assert results == [{"sent": 0, "failed": 0, "unknown": 0, "cancelled": 0}]
    assert emulator.stats().get(SEND, 0) == 0
    assert AutomaticSend.objects.get().status == AutomaticSend.Status.SENDING
