"""SOP scheduling: due times in Shanghai windows, once-only enrolment, and the dispatch
with its stop conditions, expiry, quiet hours and contact policy."""

import json
import threading
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.db import connection

from contacts.facts import facts_refresh
from contacts.models import Relationship
from sop import scheduling, triggers
from sop.models import ContactPolicy, Enrollment, OptOut, SopPlan, SopStep, Touchpoint
from tagging.models import CustomerTag, Tag, TagGroup
from tests.contacts.factories import (
    CustomerFactory,
    GuideFactory,
    OrderFactory,
    RelationshipFactory,
)

SH = ZoneInfo("Asia/Shanghai")


def sh(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SH)


def _plan(name="新客欢迎", *, steps, priority=0, **extra) -> SopPlan:
    plan = SopPlan.objects.create(
        name=name,
        trigger=SopPlan.Trigger.MANUAL,
        priority=priority,
        started_at=sh("2026-01-01T00:00"),
        **extra,
    )
    for position, step in enumerate(steps, start=1):
        SopStep.objects.create(plan=plan, position=position, script="你好 {称呼}", **step)
    return plan


@pytest.fixture
def member(db):
    relationship = RelationshipFactory(guide=GuideFactory(wecom_userid="g1"))
    facts_refresh(customer_ids=[relationship.customer_id])
    return relationship


def _enroll(plan, customer, at: datetime, key="k1") -> int:
    return scheduling.enroll(
        plan=plan,
        candidates=f"""SELECT {customer.pk}::bigint AS customer_id,
                       {scheduling.LATEST_GUIDE.format(customer=customer.pk)} AS guide_id,
                       %(key)s AS trigger_key, %(at)s::timestamptz AS triggered_at""",
        params={"key": key, "at": at},
    )


@pytest.mark.parametrize(
    ("triggered", "step", "due", "window_end"),
    [
        # before the window: its start that day
        ("2026-06-30T08:00", {}, "2026-06-30T10:00", "2026-06-30T21:00"),
        # inside the window: as is
        ("2026-06-30T14:20", {}, "2026-06-30T14:20", "2026-06-30T21:00"),
        # after the window: the next day's start
        ("2026-06-30T22:00", {}, "2026-07-01T10:00", "2026-07-01T21:00"),
        ("2026-06-30T14:20", {"offset_days": 1}, "2026-07-01T14:20", "2026-07-01T21:00"),
        ("2026-06-30T20:30", {"offset_hours": 2}, "2026-07-01T10:00", "2026-07-01T21:00"),
        # across a month end and a custom window
        (
            "2026-06-30T23:59",
            {"offset_days": 30, "window_start": time(9), "window_end": time(12)},
            "2026-07-31T09:00",
            "2026-07-31T12:00",
        ),
        # late at night in Shanghai is the afternoon before in UTC: still Shanghai's day
        ("2026-06-30T01:00", {"offset_days": 7}, "2026-07-07T10:00", "2026-07-07T21:00"),
    ],
)
def test_due_time_is_placed_in_the_send_window(member, triggered, step, due, window_end):
    plan = _plan(steps=[step])
    assert _enroll(plan, member.customer, sh(triggered)) == 1
    touchpoint = Touchpoint.objects.get()
    assert touchpoint.due_at == sh(due)
    assert touchpoint.window_ends_at == sh(window_end)
    assert (touchpoint.guide_id, touchpoint.customer_id) == (member.guide_id, member.customer_id)


def test_a_trigger_firing_twice_enrols_once(member):
    plan = _plan(steps=[{}, {"offset_days": 1}, {"offset_days": 7}])
    assert _enroll(plan, member.customer, sh("2026-06-30T12:00")) == 1
    assert _enroll(plan, member.customer, sh("2026-06-30T12:00")) == 0
    assert Enrollment.objects.count() == 1
    assert Touchpoint.objects.count() == 3
    # another firing (another key) is another enrolment
    assert _enroll(plan, member.customer, sh("2026-07-30T12:00"), key="k2") == 1
    assert Touchpoint.objects.count() == 6


def test_customers_without_a_live_guide_or_outside_the_audience_are_not_enrolled(member):
    plan = _plan(steps=[{}], audience={"fact": "purchase_days", "op": ">=", "value": 1})
    assert _enroll(plan, member.customer, sh("2026-06-30T12:00")) == 0
    stranger = CustomerFactory(is_member=False)
    facts_refresh(customer_ids=[stranger.pk])
    open_plan = _plan("所有人", steps=[{}])
    assert _enroll(open_plan, stranger, sh("2026-06-30T12:00")) == 0
    assert Enrollment.objects.count() == 0


def _dispatch(now: str) -> dict:
    out = StringIO()
    call_command("dispatch_sop", "--now", now, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_dispatch_gives_due_tasks_once(member):
    plan = _plan(steps=[{}, {"offset_days": 1}])
    _enroll(plan, member.customer, sh("2026-06-30T09:00"))
    assert _dispatch("2026-06-30T09:59") == {
        "created": 0,
        "suppressed": {},
        "stopped": {},
        "expired": 0,
        "deferred": 0,
        "automatic": 0,
        "seconds": pytest.approx(0, abs=5),
    }
    first = _dispatch("2026-06-30T10:00")
    assert first["created"] == 1
    assert _dispatch("2026-06-30T10:01")["created"] == 0
    task = Touchpoint.objects.get(status="task")
    assert task.task_at == sh("2026-06-30T10:00") and task.step.position == 1


def test_a_customer_gets_one_plan_a_day_by_priority_then_the_caps(member):
    ContactPolicy.objects.create(
        max_per_day=2, max_per_week=3, quiet_start=time(0), quiet_end=time(0)
    )
    low = _plan("低", steps=[{}], priority=1)
    high = _plan("高", steps=[{}, {"offset_hours": 1}, {"offset_hours": 2}], priority=5)
    for plan in (low, high):
        _enroll(plan, member.customer, sh("2026-06-29T10:00"))
    result = _dispatch("2026-06-29T13:00")
    # high wins the day; its three steps meet the daily cap of 2; low is another plan
    assert result["created"] == 2
    assert result["suppressed"] == {"another_plan_today": 1, "daily_cap": 1}
    assert set(Touchpoint.objects.filter(status="task").values_list("plan_id", flat=True)) == {
        high.pk
    }
    suppressed = Touchpoint.objects.get(status="suppressed", plan=low)
    assert suppressed.reason == "another_plan_today"
    # the next day: a third touch of the week is allowed, a fourth is not
    later = _plan("次日", steps=[{}, {"offset_hours": 1}])
    _enroll(later, member.customer, sh("2026-06-30T10:00"))
    result = _dispatch("2026-06-30T12:00")
    assert result["created"] == 1 and result["suppressed"] == {"weekly_cap": 1}
    # a new week (Monday 2026-07-06) starts the count again
    _enroll(later, member.customer, sh("2026-07-06T10:00"), key="k2")
    assert _dispatch("2026-07-06T12:00")["created"] == 2


def test_quiet_hours_defer_and_ended_windows_expire(member):
    ContactPolicy.objects.create(quiet_start=time(21, 30), quiet_end=time(9, 0))
    plan = _plan(steps=[{"window_start": time(8), "window_end": time(23)}])
    _enroll(plan, member.customer, sh("2026-06-30T22:00"))
    result = _dispatch("2026-06-30T22:00")
    assert result["deferred"] == 1 and result["created"] == 0
    assert Touchpoint.objects.get().due_at == sh("2026-07-01T09:00")
    # given at 10:00, the step's window (to 23:00) is cut where the quiet hours begin
    _enroll(plan, member.customer, sh("2026-07-02T10:00"), key="k2")
    assert _dispatch("2026-07-02T10:00")["created"] == 1
    given = Touchpoint.objects.get(status="task")
    assert given.window_ends_at == sh("2026-07-02T21:30")
    # not done that day: the window ends, the task expires
    assert _dispatch("2026-07-02T21:31")["expired"] >= 1
    assert Touchpoint.objects.filter(status="expired").count() == 2


@pytest.mark.parametrize("condition", ["contact_deleted", "purchased", "opted_out", "tag_removed"])
def test_stop_conditions(member, condition):
    group = TagGroup.objects.create(name="g")
    tag = Tag.objects.create(group=group, name="活动中")
    CustomerTag.objects.create(customer=member.customer, tag=tag, added_at=sh("2026-06-01T00:00"))
    plan = _plan(steps=[{}, {"offset_days": 1}], stop_on_purchase=True, stop_on_tag_removed=tag)
    _enroll(plan, member.customer, sh("2026-06-30T09:00"))
    assert _dispatch("2026-06-30T10:00")["created"] == 1
    if condition == "contact_deleted":
        Relationship.objects.filter(pk=member.pk).update(is_active=False)
    elif condition == "purchased":
        OrderFactory(customer=member.customer, paid_at=sh("2026-06-30T15:00"), amount=Decimal(9))
    elif condition == "opted_out":
        OptOut.objects.create(customer=member.customer)
    else:
        CustomerTag.objects.filter(tag=tag).delete()
    result = _dispatch("2026-07-01T10:00")
    assert result["stopped"] == {condition: 1} and result["created"] == 0
    enrollment = Enrollment.objects.get()
    assert (enrollment.status, enrollment.stopped_reason) == ("stopped", condition)


@pytest.mark.parametrize("condition", ["tag_added", "tag_removed"])
def test_a_task_given_stops_once_its_plans_tag_says_so(member, condition):
    """The tag changes after the task was given, within its window: the next dispatch
    takes it from the guide's list, with its enrolment."""
    group = TagGroup.objects.create(name="g")
    stop, needed = (Tag.objects.create(group=group, name=n) for n in ("已转化", "活动中"))
    CustomerTag.objects.create(
        customer=member.customer, tag=needed, added_at=sh("2026-06-01T00:00")
    )
    plan = _plan(steps=[{}, {"offset_days": 1}], stop_on_tag_added=stop, stop_on_tag_removed=needed)
    _enroll(plan, member.customer, sh("2026-06-30T09:00"))
    assert _dispatch("2026-06-30T10:00")["created"] == 1
    if condition == "tag_added":
        CustomerTag.objects.create(
            customer=member.customer, tag=stop, added_at=sh("2026-06-30T11:00")
        )
    else:
        CustomerTag.objects.filter(tag=needed).delete()
    assert _dispatch("2026-06-30T12:00")["stopped"] == {condition: 1}
    task = Touchpoint.objects.get(step__position=1)
    assert (task.status, task.reason) == ("stopped", condition)
    enrollment = Enrollment.objects.get()
    assert (enrollment.status, enrollment.stopped_reason) == ("stopped", condition)
    assert _dispatch("2026-06-30T12:01")["stopped"] == {}  # once


def test_a_plan_that_goes_on_after_a_deleted_contact_gives_the_guide_no_task_meanwhile(
    member,
):
    """Without stop_on_contact_deleted the enrolment goes on, but a touch due while the
    guide does not follow the customer stops (the guide could not see the task, and
    reminders would count it); once the customer adds the guide again, the next is given."""
    plan = _plan(steps=[{}, {"offset_days": 1}, {"offset_days": 2}], stop_on_contact_deleted=False)
    _enroll(plan, member.customer, sh("2026-06-30T09:00"))
    assert _dispatch("2026-06-30T10:00")["created"] == 1
    Relationship.objects.filter(pk=member.pk).update(is_active=False)
    result = _dispatch("2026-07-01T10:00")
    assert (result["stopped"], result["created"]) == ({"contact_deleted": 1}, 0)
    enrollment = Enrollment.objects.get()
    assert (enrollment.status, enrollment.stopped_reason) == ("active", "")
    Relationship.objects.filter(pk=member.pk).update(is_active=True)
    assert _dispatch("2026-07-02T10:00")["created"] == 1
    touchpoints = Touchpoint.objects.order_by("step__position")
    assert [(t.status, t.reason) for t in touchpoints] == [
        ("expired", ""),
        ("stopped", "contact_deleted"),
        ("task", ""),
    ]


def test_a_purchase_stops_the_enrolment_though_the_contact_was_deleted_too(member):
    """The plan's own stop conditions come first: a customer who bought (and also
    deleted the guide) ends a plan that stops on purchase, whatever it does on deletion."""
    plan = _plan(
        steps=[{}, {"offset_days": 1}], stop_on_contact_deleted=False, stop_on_purchase=True
    )
    _enroll(plan, member.customer, sh("2026-06-30T09:00"))
    assert _dispatch("2026-06-30T10:00")["created"] == 1
    Relationship.objects.filter(pk=member.pk).update(is_active=False)
    OrderFactory(customer=member.customer, paid_at=sh("2026-06-30T15:00"), amount=Decimal(9))
    assert _dispatch("2026-07-01T10:00")["stopped"] == {"purchased": 1}
    enrollment = Enrollment.objects.get()
    assert (enrollment.status, enrollment.stopped_reason) == ("stopped", "purchased")


def test_complaint_tag_suppresses_for_its_days(member):
    group = TagGroup.objects.create(name="服务")
    complaint = Tag.objects.create(group=group, name="投诉过")
    ContactPolicy.objects.create(complaint_tag=complaint, complaint_days=30)
    CustomerTag.objects.create(
        customer=member.customer, tag=complaint, added_at=sh("2026-06-10T00:00")
    )
    plan = _plan(steps=[{}, {"offset_days": 31}])
    _enroll(plan, member.customer, sh("2026-06-30T09:00"))
    assert _dispatch("2026-06-30T10:00")["suppressed"] == {"complaint": 1}
    assert _dispatch("2026-07-31T10:00")["created"] == 1  # 51 days later


@pytest.mark.django_db(transaction=True)
def test_concurrent_dispatchers_give_each_task_once():
    guides = [GuideFactory(wecom_userid=f"cg{n}") for n in range(4)]
    customers = []
    for number in range(400):
        relationship = RelationshipFactory(guide=guides[number % 4])
        customers.append(relationship.customer)
    facts_refresh()
    ContactPolicy.objects.create(
        max_per_day=5, max_per_week=10, quiet_start=time(0), quiet_end=time(0)
    )
    plan = _plan(steps=[{}, {"offset_hours": 1}])
    triggers.manual(plan=plan, customer_ids=[c.pk for c in customers], now=sh("2026-06-30T10:00"))
    results = []

    def run():
        try:
            results.append(scheduling.dispatch(now=sh("2026-06-30T12:00"), batch=50).created)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(results) == 800
    assert Touchpoint.objects.filter(status="task").count() == 800
    assert Touchpoint.objects.filter(status="planned").count() == 0


def test_triggers_enrol_from_their_events(member):
    customer = member.customer
    for trigger, params in (
        (SopPlan.Trigger.PAID_ORDER, {}),
        (SopPlan.Trigger.FIRST_ORDER, {}),
        (SopPlan.Trigger.DAYS_SINCE_PURCHASE, {"days": 3}),
    ):
        SopPlan.objects.create(
            name=trigger, trigger=trigger, trigger_params=params, started_at=sh("2026-06-01T00:00")
        ).steps.create(position=1, script="hi")
    OrderFactory(customer=customer, paid_at=sh("2026-06-27T12:00"), amount=Decimal(50))
    OrderFactory(customer=customer, paid_at=sh("2026-06-28T12:00"), amount=Decimal(60))
    facts_refresh(customer_ids=[customer.pk])
    now = sh("2026-06-30T12:00")
    assert triggers.orders_placed(customer_ids=[customer.pk], now=now) == 3  # 2 orders + first
    assert triggers.orders_placed(customer_ids=[customer.pk], now=now) == 0
    assert triggers.daily(now=sh("2026-07-01T04:00")) == 1  # 3 days after 06-28
    assert triggers.daily(now=sh("2026-07-01T05:00")) == 0
    keys = set(Enrollment.objects.values_list("plan__trigger", "trigger_key"))
    first_order = min(customer.orders.all(), key=lambda o: o.paid_at)
    assert ("first_order", "first-order") in keys
    assert ("paid_order", f"order:{first_order.pk}") in keys
    assert ("days_since_purchase", "day:2026-07-01") in keys


@pytest.mark.parametrize(
    ("birthday", "today", "enrolled"),
    [
        (date(1990, 7, 1), "2026-07-01", 1),
        (date(1990, 7, 2), "2026-07-01", 0),
        (date(1992, 2, 29), "2026-02-28", 1),  # not a leap year: the 28th
        (date(1992, 2, 29), "2028-02-28", 0),  # a leap year: wait for the 29th
        (date(1992, 2, 29), "2028-02-29", 1),
    ],
)
def test_birthday(member, birthday, today, enrolled):
    member.customer.birthday = birthday
    member.customer.save()
    SopPlan.objects.create(
        name="生日", trigger=SopPlan.Trigger.BIRTHDAY, started_at=datetime(2020, 1, 1, tzinfo=UTC)
    ).steps.create(position=1)
    assert triggers.daily(now=sh(f"{today}T04:00")) == enrolled


def test_repurchase_due_uses_the_customers_own_interval(member):
    customer = member.customer
    for day in ("2026-05-01", "2026-05-21", "2026-06-10"):  # every 20 days
        OrderFactory(customer=customer, paid_at=sh(f"{day}T12:00"), amount=Decimal(10))
    facts_refresh(customer_ids=[customer.pk])
    SopPlan.objects.create(
        name="复购", trigger=SopPlan.Trigger.REPURCHASE_DUE, started_at=sh("2026-01-01T00:00")
    ).steps.create(position=1)
    assert triggers.daily(now=sh("2026-06-29T04:00")) == 0
    assert triggers.daily(now=sh("2026-06-30T04:00")) == 1
    assert timedelta(days=20) == date(2026, 6, 30) - date(2026, 6, 10)
