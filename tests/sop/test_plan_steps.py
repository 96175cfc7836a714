"""Steps removed from a plan in the editor are retired: hidden from the editor, never
scheduled again, their planned touchpoints stopped (counted as `step_removed`), their
past numbers kept; the steps kept keep their identity and history when they move."""

import json
from datetime import time

import pytest
from django.urls import reverse
from django.utils import translation

from contacts.facts import facts_refresh
from sop import selectors, services
from sop.models import Enrollment, SopStep, Touchpoint
from sop.services import PlanError
from tests.contacts.factories import CustomerFactory, GuideFactory, RelationshipFactory
from tests.sop.test_scheduling import _dispatch, _enroll, _plan, sh

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(db):
    relationship = RelationshipFactory(guide=GuideFactory(wecom_userid="g1"))
    facts_refresh(customer_ids=[relationship.customer_id])
    return relationship


def _fields(plan) -> dict:
    return {"name": plan.name, "trigger": plan.trigger, "trigger_params": {}}


def _step(step: SopStep) -> dict:
    return {
        "id": step.pk,
        "offset_days": step.offset_days,
        "offset_hours": step.offset_hours,
        "window_start": step.window_start,
        "window_end": step.window_end,
        "action": step.action,
        "script": step.script,
        "attachments": step.attachments,
        "is_automatic": step.is_automatic,
    }


def test_a_removed_step_is_retired_and_never_scheduled(member, operator):
    plan = _plan(steps=[{}, {"offset_days": 1}, {"offset_days": 2}])
    first, second, third = plan.steps.order_by("position")
    _enroll(plan, member.customer, sh("2026-06-30T09:00"))
    assert _dispatch("2026-06-30T10:00")["created"] == 1

    services.plan_save(plan=plan, fields=_fields(plan), steps=[_step(first), _step(third)], by=None)

    second.refresh_from_db()
    third.refresh_from_db()
    assert second.is_retired and not third.is_retired
    assert (third.position, third.offset_days) == (2, 2)
    assert list(selectors.plan_steps(plan)) == [first, third]
    by_step = {t.step_id: t for t in Touchpoint.objects.all()}
    assert (by_step[second.pk].status, by_step[second.pk].reason) == ("stopped", "step_removed")
    assert by_step[third.pk].status == "planned"
    # The next day: the retired step gives nothing; the customer's enrolment goes on.
    assert _dispatch("2026-07-01T10:00")["created"] == 0
    assert _dispatch("2026-07-02T10:00")["created"] == 1
    assert Enrollment.objects.get().status == "active"
    # A new enrolment gets the live steps only.
    other = RelationshipFactory(guide=member.guide, customer=CustomerFactory())
    _enroll(plan, other.customer, sh("2026-07-03T09:00"), key="k2")
    assert sorted(
        Touchpoint.objects.filter(customer=other.customer).values_list("step_id", flat=True)
    ) == sorted([first.pk, third.pk])
    # Past numbers stay with the retired step.
    stats = selectors.step_stats(plan)
    assert stats[second.pk].stopped == {"step_removed": 1}
    assert (stats[first.pk].expired, stats[third.pk].tasks) == (1, 1)


def test_a_step_added_where_a_retired_one_was_is_a_new_step(member):
    plan = _plan(steps=[{}, {"offset_days": 1}])
    first, second = plan.steps.order_by("position")
    _enroll(plan, member.customer, sh("2026-06-30T09:00"))
    services.plan_save(plan=plan, fields=_fields(plan), steps=[_step(first)], by=None)
    new = {**_step(first), "id": None, "offset_days": 5, "script": "新的第二步"}
    services.plan_save(plan=plan, fields=_fields(plan), steps=[_step(first), new], by=None)
    live = list(selectors.plan_steps(plan))
    assert [s.pk for s in live][0] == first.pk and live[1].pk != second.pk
    assert (live[1].position, live[1].script) == (2, "新的第二步")
    assert SopStep.objects.get(pk=second.pk).is_retired


def test_a_step_of_another_plan_or_retired_is_refused_and_nothing_changes(member):
    plan = _plan(steps=[{}, {"offset_days": 1}])
    other = _plan("别的计划", steps=[{}])
    first, second = plan.steps.order_by("position")
    foreign = _step(other.steps.get())
    refused = pytest.raises(PlanError, match="第 2 步不是这个计划的步骤")
    with translation.override("zh-hans"), refused:
        services.plan_save(plan=plan, fields=_fields(plan), steps=[_step(first), foreign], by=None)
    assert not SopStep.objects.filter(is_retired=True).exists()
    assert list(selectors.plan_steps(plan)) == [first, second]


def test_a_touchpoint_of_a_step_retired_meanwhile_is_stopped_not_given(member):
    """An enrolment that read the steps just before they were retired: the dispatch
    stops its touchpoint for the retired step, not the enrolment."""
    plan = _plan(steps=[{}])
    _enroll(plan, member.customer, sh("2026-06-30T09:00"))
    SopStep.objects.filter(plan=plan).update(is_retired=True)
    result = _dispatch("2026-06-30T10:00")
    assert (result["created"], result["stopped"]) == (0, {"step_removed": 1})
    assert Enrollment.objects.get().status == "active"


def test_the_editor_shows_live_steps_with_their_ids_and_keeps_them(member, client_for, operator):
    plan = _plan(steps=[{}, {"offset_days": 1, "window_start": time(9)}])
    first, second = plan.steps.order_by("position")
    _enroll(plan, member.customer, sh("2026-06-30T09:00"))
    services.plan_save(plan=plan, fields=_fields(plan), steps=[_step(second)], by=None)
    page = client_for(operator).get(reverse("sop_plan_edit", args=[plan.pk]))
    steps = json.loads(page.context["form"].initial["steps"])
    assert [(s["id"], s["offset_days"], s["window_start"]) for s in steps] == [
        (second.pk, 1, "09:00")
    ]
    detail = client_for(operator).get(reverse("sop_plan_detail", args=[plan.pk]))
    assert [s.pk for s in detail.context["steps"]] == [second.pk, first.pk]
    assert detail.context["steps"][1].is_retired


def test_pausing_a_plan_takes_its_given_tasks_from_the_guides(member):
    """Its touches not yet given stop when they come due (plan_paused); those given stop
    now, the enrolment goes on (the plan may be started again)."""
    plan = _plan(steps=[{}, {"offset_days": 1}])
    other = _plan("另一个", steps=[{}])
    for chosen in (plan, other):
        _enroll(chosen, member.customer, sh("2026-06-30T09:00"))
    assert _dispatch("2026-06-30T10:00")["created"] >= 1
    given = Touchpoint.objects.filter(plan=plan, status="task").get()
    services.plan_save(
        plan=plan, fields={**_fields(plan), "is_active": False},
        steps=[_step(s) for s in plan.steps.order_by("position")], by=None,
    )  # fmt: skip
    given.refresh_from_db()
    assert (given.status, given.reason) == ("stopped", "plan_paused")
    assert Enrollment.objects.get(plan=plan).status == "active"
    assert not Touchpoint.objects.filter(plan=other, status="stopped").exists()
