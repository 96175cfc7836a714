"""SOP console pages: who may open and change what, the plans' numbers against hand-built
touchpoints, the plan editor (saving, each refusal of plan_save, the script preview), a
plan's page with manual enrolment, the contact policy, and the suppressed/stopped log with
its CSV export."""

import csv
import io
import json
from datetime import time, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from contacts.facts import facts_refresh
from contacts.models import Guide, OrderLine
from sop.models import ContactPolicy, Enrollment, SopPlan, SopStep, Touchpoint
from sop.selectors import plan_stats, step_stats
from tagging.models import CustomerTag, Tag, TagGroup
from tests.contacts.factories import CustomerFactory, OrderFactory, RelationshipFactory

pytestmark = pytest.mark.django_db

DONE, PLANNED, TASK = Touchpoint.Status.DONE, Touchpoint.Status.PLANNED, Touchpoint.Status.TASK


def _plan(name: str, steps: int, *, priority: int = 0, **extra) -> SopPlan:
    plan = SopPlan.objects.create(
        name=name,
        trigger=extra.pop("trigger", SopPlan.Trigger.MANUAL),
        priority=priority,
        started_at=timezone.now() - timedelta(days=60),
        **extra,
    )
    for position in range(1, steps + 1):
        SopStep.objects.create(
            plan=plan,
            position=position,
            offset_days=position - 1,
            script=f"第{position}步 {{称呼}}",
        )
    return plan


def _enrollment(plan, customer, guide, key="k", **extra) -> Enrollment:
    return Enrollment.objects.create(
        plan=plan,
        customer=customer,
        guide=guide,
        trigger_key=key,
        triggered_at=timezone.now() - timedelta(days=30),
        **extra,
    )


def _touch(enrollment, position, status, *, due=None, end=None, done=None, reason=""):
    now = timezone.now()
    due = due or now - timedelta(days=20)
    return Touchpoint.objects.create(
        enrollment=enrollment,
        step=enrollment.plan.steps.get(position=position),
        plan=enrollment.plan,
        customer=enrollment.customer,
        guide=enrollment.guide,
        priority=enrollment.plan.priority,
        due_at=due,
        window_ends_at=end or due + timedelta(hours=8),
        status=status,
        reason=reason,
        done_at=done,
    )


def _order(customer, paid_at, status="paid", product="冰丝睡衣"):
    order = OrderFactory(customer=customer, paid_at=paid_at, status=status, amount=Decimal(199))
    OrderLine.objects.create(
        order=order,
        line_no=1,
        sku=f"SKU{order.pk}",
        product_name=product,
        quantity=1,
        unit_price=Decimal(199),
        line_amount=Decimal(199),
    )
    return order


def build_people() -> dict:
    """王芳, 李娜, 赵敏 follow guide1 (张晓, 上海静安店); 陈晨 follows guide2; 孤客 nobody.
    Needs the guide_user and other_guide_user personas."""
    mine = Guide.objects.get(wecom_userid="guide0001")
    theirs = Guide.objects.get(wecom_userid="guide0002")
    wang = CustomerFactory(name="王芳")
    li = CustomerFactory(name="李娜")
    zhao = CustomerFactory(name="赵敏")
    chen = CustomerFactory(name="陈晨")
    alone = CustomerFactory(name="孤客")
    RelationshipFactory(customer=wang, guide=mine, remark="芳姐")
    RelationshipFactory(customer=li, guide=mine)
    RelationshipFactory(customer=zhao, guide=mine)
    RelationshipFactory(customer=chen, guide=theirs)
    facts_refresh()
    return {
        "wang": wang,
        "li": li,
        "zhao": zhao,
        "chen": chen,
        "alone": alone,
        "mine": mine,
        "theirs": theirs,
    }


def build_sop_data(people: dict) -> dict:
    """Two plans with hand-built touchpoints (T = 20 days ago, each window 8 hours long).

    新客欢迎 (priority 5, two steps): three enrollments.
      王芳  step 1 done on time at T+1h, step 2 planned and due an hour ago;
            a paid order 3 days after the done touch.
      李娜  step 1 done late (T+9h, after the window), step 2 a task;
            a refunded order 2 days and a paid order 9 days after the done touch.
      赵敏  (enrollment stopped, purchased) step 1 suppressed daily_cap, step 2 stopped
            purchased.
    复购提醒 (priority 1, one step): four enrollments.
      王芳 skipped ("在外地"), 李娜 expired, 赵敏 suppressed weekly_cap (guide 2's),
      王芳 again (another key) planned for tomorrow.
    """
    wang, li, zhao, mine = people["wang"], people["li"], people["zhao"], people["mine"]
    now = timezone.now()
    start = now - timedelta(days=20)
    welcome = _plan("新客欢迎", 2, priority=5, description="添加好友后的欢迎")
    e1 = _enrollment(welcome, wang, mine)
    _touch(e1, 1, DONE, due=start, done=start + timedelta(hours=1))
    _touch(e1, 2, PLANNED, due=now - timedelta(hours=1))
    e2 = _enrollment(welcome, li, mine)
    _touch(e2, 1, DONE, due=start, done=start + timedelta(hours=9))
    _touch(e2, 2, TASK, due=now - timedelta(hours=2))
    e3 = _enrollment(welcome, zhao, mine, status="stopped", stopped_reason="purchased")
    _touch(e3, 1, Touchpoint.Status.SUPPRESSED, reason="daily_cap")
    _touch(e3, 2, Touchpoint.Status.STOPPED, reason="purchased")
    _order(wang, start + timedelta(hours=1, days=3))
    _order(li, start + timedelta(hours=9, days=2), status="refunded")
    _order(li, start + timedelta(hours=9, days=9))
    repurchase = _plan("复购提醒", 1, priority=1)
    _touch(_enrollment(repurchase, wang, mine), 1, Touchpoint.Status.SKIPPED, reason="在外地")
    _touch(_enrollment(repurchase, li, mine), 1, Touchpoint.Status.EXPIRED)
    theirs = people["theirs"]
    _touch(
        _enrollment(repurchase, zhao, theirs),
        1,
        Touchpoint.Status.SUPPRESSED,
        reason="weekly_cap",
    )
    _touch(_enrollment(repurchase, wang, mine, key="k2"), 1, PLANNED, due=now + timedelta(days=1))
    return {"welcome": welcome, "repurchase": repurchase, **people}


@pytest.fixture
def people(guide_user, other_guide_user) -> dict:
    return build_people()


@pytest.fixture
def sop_data(people) -> dict:
    return build_sop_data(people)


WELCOME = {
    "enrolled": 3,
    "stopped_enrollments": 1,
    "planned": 1,
    "due": 1,
    "tasks": 1,
    "done": 2,
    "done_on_time": 1,
    "skipped": 0,
    "expired": 0,
    "suppressed": 1,
    "suppressed_by_reason": {"daily_cap": 1},
    "stopped": 1,
    "stopped_by_reason": {"purchased": 1},
    "purchased_7d": 1,
}
REPURCHASE = {
    "enrolled": 4,
    "stopped_enrollments": 0,
    "planned": 1,
    "due": 0,
    "tasks": 0,
    "done": 0,
    "done_on_time": 0,
    "skipped": 1,
    "expired": 1,
    "suppressed": 1,
    "suppressed_by_reason": {"weekly_cap": 1},
    "stopped": 0,
    "stopped_by_reason": {},
    "purchased_7d": 0,
}


def _counts() -> tuple[int, ...]:
    return (
        SopPlan.objects.count(),
        SopStep.objects.count(),
        Enrollment.objects.count(),
        Touchpoint.objects.count(),
        ContactPolicy.objects.count(),
    )


def _step(**overrides) -> dict:
    step = {
        "offset_days": 0,
        "offset_hours": 0,
        "window_start": "10:00",
        "window_end": "21:00",
        "action": "message",
        "script": "{称呼}您好，我是{导购姓名}",
        "attachments": [],
        "is_automatic": False,
    }
    step.update(overrides)
    return step


def _plan_post(**overrides) -> dict:
    data = {
        "name": "首单关怀",
        "description": "首次下单后",
        "trigger": "first_order",
        "trigger_state": "",
        "trigger_tag": "",
        "trigger_days": "",
        "condition": json.dumps({"all": []}),
        "priority": "3",
        "is_active": "on",
        "stop_on_purchase": "",
        "stop_on_contact_deleted": "on",
        "stop_on_tag_added": "",
        "stop_on_tag_removed": "",
        "steps": json.dumps([_step(), _step(offset_days=3, script="穿着还合适吗？")]),
    }
    data.update(overrides)
    return data


def _pages(plan: SopPlan) -> list[str]:
    return [
        reverse("sop"),
        reverse("sop_plan_new"),
        reverse("sop_plan_edit", args=[plan.pk]),
        reverse("sop_plan_detail", args=[plan.pk]),
        reverse("sop_policy"),
        reverse("sop_touches"),
        reverse("sop_touches_export"),
    ]


def _writes(plan: SopPlan, customer_id: int) -> list[tuple[str, dict]]:
    return [
        (reverse("sop_plan_new"), _plan_post()),
        (reverse("sop_plan_edit", args=[plan.pk]), _plan_post(name="改名")),
        (reverse("sop_plan_enroll", args=[plan.pk]), {"customer_ids": str(customer_id)}),
        (reverse("sop_policy"), _policy_post()),
    ]


def _policy_post(**overrides) -> dict:
    data = {
        "max_per_day": "2",
        "max_per_week": "5",
        "quiet_start": "22:00",
        "quiet_end": "08:30",
        "complaint_tag": "",
        "complaint_days": "60",
        "morning_reminder_at": "09:00",
        "overdue_after_minutes": "90",
        "escalate_after_minutes": "240",
    }
    data.update(overrides)
    return data


def _preview(client, **body):
    return client.post(
        reverse("sop_script_preview"), json.dumps(body), content_type="application/json"
    )


# -- access -----------------------------------------------------------------------------------


def test_anonymous_is_sent_to_login_and_writes_nothing(client, sop_data):
    plan = sop_data["welcome"]
    for url in [*_pages(plan), reverse("sop_script_preview")]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url
    before = _counts()
    writes = [*_writes(plan, sop_data["wang"].pk), (reverse("sop_script_preview"), {})]
    for url, data in writes:
        response = client.post(url, data)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert _counts() == before


def test_guide_gets_no_console_page_and_changes_nothing(client_for, guide_user, sop_data):
    client = client_for(guide_user)
    plan = sop_data["welcome"]
    for url in _pages(plan):
        assert client.get(url).status_code == 403, url
    assert _preview(client, scripts=["{称呼}"]).status_code == 403
    before = _counts()
    for url, data in _writes(plan, sop_data["li"].pk):
        assert client.post(url, data).status_code == 403, url
    assert _counts() == before
    plan.refresh_from_db()
    assert plan.name == "新客欢迎"


def test_manager_reads_every_page_but_writes_nothing(client_for, manager, sop_data):
    client = client_for(manager)
    plan = sop_data["welcome"]
    for url in _pages(plan):
        assert client.get(url).status_code == 200, url
    editor = client.get(reverse("sop_plan_edit", args=[plan.pk])).content.decode()
    assert 'id="plan-save"' not in editor and "没有修改权限" in editor
    detail = client.get(reverse("sop_plan_detail", args=[plan.pk])).content.decode()
    assert 'id="enroll-form"' not in detail
    policy = client.get(reverse("sop_policy")).content.decode()
    assert 'id="policy-save"' not in policy
    # The preview reads only: managers may use it.
    assert _preview(client, scripts=["{称呼}"]).status_code == 200
    before = _counts()
    for url, data in _writes(plan, sop_data["li"].pk):
        assert client.post(url, data).status_code == 403, url
    assert _counts() == before
    plan.refresh_from_db()
    assert plan.name == "新客欢迎"


def test_opening_the_policy_page_writes_no_policy(client_for, operator):
    response = client_for(operator).get(reverse("sop_policy"))
    assert response.status_code == 200
    assert response.context["form"]["max_per_day"].value() == 1
    assert ContactPolicy.objects.count() == 0


def test_unknown_plans_are_404(client_for, operator):
    client = client_for(operator)
    for name in ("sop_plan_edit", "sop_plan_detail"):
        assert client.get(reverse(name, args=[999])).status_code == 404
    assert client.post(reverse("sop_plan_enroll", args=[999]), {}).status_code == 404


# -- the plans list -----------------------------------------------------------------------------


def test_stats_match_the_hand_built_touchpoints(sop_data):
    welcome, repurchase = sop_data["welcome"], sop_data["repurchase"]
    stats = plan_stats([welcome.pk, repurchase.pk])
    assert stats[welcome.pk].as_dict() == WELCOME
    assert stats[repurchase.pk].as_dict() == REPURCHASE
    by_step = step_stats(welcome)
    first, second = (welcome.steps.get(position=n).pk for n in (1, 2))
    assert by_step[first].as_dict() == {
        **WELCOME,
        "enrolled": 3,
        "stopped_enrollments": 0,
        "planned": 0,
        "due": 0,
        "tasks": 0,
        "stopped": 0,
        "stopped_by_reason": {},
    }
    assert by_step[second].as_dict() == {
        **WELCOME,
        "enrolled": 3,
        "stopped_enrollments": 0,
        "done": 0,
        "done_on_time": 0,
        "suppressed": 0,
        "suppressed_by_reason": {},
        "purchased_7d": 0,
    }


def test_a_buyer_counts_once_however_many_touches_were_done(sop_data):
    """王芳 has two done touches within 7 days before her order: still one buyer."""
    welcome = sop_data["welcome"]
    touch = Touchpoint.objects.get(plan=welcome, customer=sop_data["wang"], step__position=2)
    first = Touchpoint.objects.get(plan=welcome, customer=sop_data["wang"], step__position=1)
    touch.status, touch.done_at = DONE, first.done_at + timedelta(days=1)
    touch.save()
    stats = plan_stats([welcome.pk])[welcome.pk]
    assert (stats.done, stats.purchased_7d) == (3, 1)


def test_plan_list_shows_every_plan_with_its_numbers(client_for, operator, sop_data):
    response = client_for(operator).get(reverse("sop"))
    assert response.status_code == 200
    plans = response.context["plans"]
    assert [plan.name for plan in plans] == ["新客欢迎", "复购提醒"]  # by priority
    assert [plan.steps_count for plan in plans] == [2, 1]
    assert plans[0].stats.as_dict() == WELCOME and plans[1].stats.as_dict() == REPURCHASE
    assert str(plans[0].trigger_label) == "手动加入"
    body = response.content.decode()
    assert "此页面尚未建成" not in body
    assert 'data-reason="daily_cap">超过每日上限 1<' in body
    assert 'data-reason="purchased">客户已下单 1<' in body
    assert reverse("sop_plan_edit", args=[plans[0].pk]) in body


def test_plan_list_shows_each_triggers_parameters(client_for, operator):
    tag = Tag.objects.create(group=TagGroup.objects.create(name="活动"), name="双11")
    _plan("按标签", 1, trigger=SopPlan.Trigger.TAG_ADDED, trigger_params={"tag": tag.pk})
    _plan("沉睡唤醒", 1, trigger=SopPlan.Trigger.DAYS_SINCE_PURCHASE, trigger_params={"days": 30})
    _plan("活码", 1, trigger=SopPlan.Trigger.CONTACT_ADDED, trigger_params={"state": "pkg"})
    labels = [
        str(plan.trigger_label)
        for plan in client_for(operator).get(reverse("sop")).context["plans"]
    ]
    assert labels == ["被打上标签（双11）", "距最近购买 30 天", "添加为企业微信好友（state=pkg）"]


def test_plan_list_queries_do_not_grow_with_plans_or_touches(
    client_for, operator, people, django_assert_max_num_queries
):
    client = client_for(operator)

    def grow(count: int) -> None:
        for number in range(count):
            plan = _plan(f"计划{number}", 3)
            for key, customer in enumerate((people["wang"], people["li"])):
                enrollment = _enrollment(plan, customer, people["mine"], key=str(key))
                _touch(enrollment, 1, DONE, done=timezone.now() - timedelta(days=1))
                _touch(enrollment, 2, Touchpoint.Status.SUPPRESSED, reason="daily_cap")

    grow(3)
    client.get(reverse("sop"))  # warm the session and permission caches
    # session, user, permissions, role; the plans; the touchpoint and enrollment aggregates
    with django_assert_max_num_queries(7) as few:
        assert client.get(reverse("sop")).status_code == 200
    grow(10)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(reverse("sop"))
    assert len(response.context["plans"]) == 13


# -- the plan editor ------------------------------------------------------------------------------


def test_editor_reuses_tagging_condition_builder(client_for, operator, people):
    response = client_for(operator).get(reverse("sop_plan_new"))
    body = response.content.decode()
    assert "tagging/rule_editor.js" in body and "sop/plan_editor.js" in body
    assert 'id="rule-form"' in body and 'name="condition"' in body
    assert response.context["spec"]["preview_url"] == "/api/v1/tag-rules/preview"
    steps = response.context["steps_spec"]
    assert [name for name, _ in steps["variables"]] == [
        "{称呼}",
        "{客户姓名}",
        "{最近购买商品}",
        "{导购姓名}",
        "{门店}",
    ]
    assert steps["preview_url"] == reverse("sop_script_preview")
    assert [code for code, _ in steps["attachment_types"]] == ["image", "link", "miniprogram"]


def test_operator_creates_a_plan_with_two_steps(client_for, operator, people):
    stop_tag = Tag.objects.create(group=TagGroup.objects.create(name="运营"), name="已转化")
    attachments = [
        {"type": "link", "title": "洗护指南", "url": "https://example.com/care", "pic_url": ""},
        {"type": "miniprogram", "title": "商城", "appid": "wx123", "page": "pages/index"},
    ]
    response = client_for(operator).post(
        reverse("sop_plan_new"),
        _plan_post(
            condition=json.dumps({"fact": "purchase_days", "op": ">=", "value": 1}),
            stop_on_purchase="on",
            stop_on_tag_added=stop_tag.pk,
            steps=json.dumps(
                [
                    _step(offset_hours=2, attachments=attachments, is_automatic=True),
                    _step(
                        offset_days=3,
                        window_start="14:00",
                        window_end="18:30",
                        action="call",
                        script="回访",
                    ),
                ]
            ),
        ),
    )
    plan = SopPlan.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("sop_plan_detail", args=[plan.pk])
    assert (plan.name, plan.description, plan.trigger, plan.trigger_params) == (
        "首单关怀",
        "首次下单后",
        "first_order",
        {},
    )
    assert plan.audience == {"fact": "purchase_days", "op": ">=", "value": 1}
    assert (plan.priority, plan.is_active, plan.created_by) == (3, True, operator)
    assert (plan.stop_on_purchase, plan.stop_on_contact_deleted) == (True, True)
    assert (plan.stop_on_tag_added, plan.stop_on_tag_removed) == (stop_tag, None)
    steps = list(plan.steps.order_by("position"))
    assert [
        (s.position, s.offset_days, s.offset_hours, s.window_start, s.window_end, s.action)
        for s in steps
    ] == [
        (1, 0, 2, time(10), time(21), "message"),
        (2, 3, 0, time(14), time(18, 30), "call"),
    ]
    assert steps[0].attachments == [
        {"type": "link", "title": "洗护指南", "url": "https://example.com/care"},
        {"type": "miniprogram", "title": "商城", "appid": "wx123", "page": "pages/index"},
    ]
    assert (steps[0].is_automatic, steps[1].is_automatic) == (True, False)
    assert steps[0].script == "{称呼}您好，我是{导购姓名}"


@pytest.mark.parametrize(
    ("trigger", "params", "expected"),
    [
        ("contact_added", {"trigger_state": "pkg_card"}, {"state": "pkg_card"}),
        ("contact_added", {}, {"state": ""}),
        ("days_since_purchase", {"trigger_days": "45"}, {"days": 45}),
        ("birthday", {"trigger_days": "45", "trigger_state": "x"}, {}),
    ],
)
def test_trigger_parameters_are_saved_for_their_trigger(
    client_for, operator, trigger, params, expected
):
    response = client_for(operator).post(
        reverse("sop_plan_new"), _plan_post(trigger=trigger, **params)
    )
    assert response.status_code == 302
    assert SopPlan.objects.get().trigger_params == expected


def test_a_tag_trigger_keeps_its_tag(client_for, operator):
    tag = Tag.objects.create(group=TagGroup.objects.create(name="活动"), name="双11")
    client = client_for(operator)
    client.post(reverse("sop_plan_new"), _plan_post(trigger="tag_added", trigger_tag=tag.pk))
    plan = SopPlan.objects.get()
    assert plan.trigger_params == {"tag": tag.pk}
    form = client.get(reverse("sop_plan_edit", args=[plan.pk])).context["form"]
    assert form["trigger_tag"].value() == tag.pk


def test_operator_edits_reorders_and_removes_steps(client_for, operator, people):
    plan = _plan("旧计划", 3)
    client = client_for(operator)
    editor = client.get(reverse("sop_plan_edit", args=[plan.pk]))
    loaded = json.loads(editor.context["form"]["steps"].value())
    assert [s["script"] for s in loaded] == ["第1步 {称呼}", "第2步 {称呼}", "第3步 {称呼}"]
    assert loaded[0]["window_start"] == "10:00"
    reordered = [loaded[2], loaded[0]]
    response = client.post(
        reverse("sop_plan_edit", args=[plan.pk]),
        _plan_post(name="新计划", is_active="", steps=json.dumps(reordered)),
    )
    assert response.status_code == 302
    plan.refresh_from_db()
    assert (plan.name, plan.is_active, plan.created_by) == ("新计划", False, None)
    assert list(plan.steps.order_by("position").values_list("position", "script")) == [
        (1, "第3步 {称呼}"),
        (2, "第1步 {称呼}"),
    ]
    assert SopPlan.objects.count() == 1


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (
            {"condition": json.dumps({"fact": "height", "op": ">", "value": 1})},
            "人群条件：未知的条件项「height」",
        ),
        ({"trigger": "moon"}, "未知的触发条件：moon"),
        ({"trigger": "tag_added"}, "「被打上标签」需要选择一个标签"),
        (
            {"trigger": "days_since_purchase", "trigger_days": "0"},
            "「距最近购买 N 天」需要一个大于 0 的天数",
        ),
        ({"trigger": "days_since_purchase"}, "「距最近购买 N 天」需要一个大于 0 的天数"),
        ({"steps": "[]"}, "计划至少要有一个步骤"),
        (
            {"steps": json.dumps([_step(), _step(window_start="21:00", window_end="10:00")])},
            "第 2 步：发送窗口的开始要早于结束",
        ),
        ({"steps": json.dumps([_step(action="dance")])}, "第 1 步：未知的动作 dance"),
    ],
)
def test_a_refused_plan_shows_the_reason_and_writes_nothing(
    client_for, operator, people, overrides, reason
):
    existing = _plan("已有计划", 1)
    client = client_for(operator)
    before = _counts()
    response = client.post(reverse("sop_plan_new"), _plan_post(**overrides))
    assert response.status_code == 400
    assert response.context["refused"].startswith(reason)
    body = response.content.decode()
    assert reason in body and 'id="plan-error"' in body
    # The operator's input is kept for the next try.
    assert json.loads(response.context["form"]["steps"].value()) == json.loads(
        _plan_post(**overrides)["steps"]
    )
    edit = client.post(reverse("sop_plan_edit", args=[existing.pk]), _plan_post(**overrides))
    assert edit.status_code == 400 and edit.context["refused"].startswith(reason)
    assert _counts() == before
    existing.refresh_from_db()
    assert (existing.name, existing.trigger) == ("已有计划", "manual")
    assert list(existing.steps.values_list("script", flat=True)) == ["第1步 {称呼}"]


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"condition": "{bad"}, "condition", "人群条件不是有效的 JSON"),
        ({"steps": "not json"}, "steps", "步骤的数据无法读取"),
        ({"steps": json.dumps([_step(window_start="25:00")])}, "steps", "时间应写成 时:分"),
        ({"steps": json.dumps([_step(offset_days=-1)])}, "steps", "第几天应是 0 到 3650"),
        (
            {"steps": json.dumps([_step(attachments=[{"type": "video"}])])},
            "steps",
            "附件类型只能是图片、链接或小程序",
        ),
        ({"name": ""}, "name", "该字段是必填项"),
    ],
)
def test_unreadable_input_is_shown_on_its_field(client_for, operator, overrides, field, reason):
    response = client_for(operator).post(reverse("sop_plan_new"), _plan_post(**overrides))
    assert response.status_code == 400
    assert reason in "".join(response.context["form"].errors[field])
    assert reason in response.content.decode()
    assert _counts() == (0, 0, 0, 0, 0)


# -- the script preview --------------------------------------------------------------------


SCRIPTS = ["{称呼}您好，我是{门店}的{导购姓名}", "{客户姓名}，{最近购买商品}穿着还合适吗？"]


def test_preview_renders_for_the_first_customer_of_the_audience(client_for, operator, people):
    _order(people["li"], timezone.now() - timedelta(days=3), product="真丝眼罩")
    _order(people["chen"], timezone.now() - timedelta(days=3))
    _order(people["alone"], timezone.now() - timedelta(days=3))
    facts_refresh()
    client = client_for(operator)
    # Buyers: 李娜 (guide 1), 陈晨 (guide 2), 孤客 (no guide); the first with a guide by id.
    body = _preview(
        client,
        condition={"fact": "purchase_days", "op": ">=", "value": 1},
        scripts=SCRIPTS,
    ).json()
    assert body["customer"] == {"id": people["li"].pk, "name": "李娜"}
    assert body["guide"]["name"] == "张晓"
    assert body["scripts"] == [
        "李娜您好，我是上海静安店的张晓",
        "李娜，真丝眼罩穿着还合适吗？",
    ]
    # No audience: the first customer with a guide; the remark is the 称呼.
    everyone = _preview(client, condition={"all": []}, scripts=SCRIPTS).json()
    assert everyone["customer"]["name"] == "王芳"
    assert everyone["scripts"] == ["芳姐您好，我是上海静安店的张晓", "王芳，穿着还合适吗？"]


def test_preview_by_search_or_picked_customer(client_for, operator, people):
    client = client_for(operator)
    found = _preview(client, q="陈", scripts=["{导购姓名}"]).json()
    assert found["customer"]["name"] == "陈晨" and found["scripts"] == ["陈静"]
    assert found["candidates"] == [{"id": people["chen"].pk, "name": "陈晨"}]
    picked = _preview(client, customer=people["zhao"].pk, scripts=["{称呼}"]).json()
    assert picked["scripts"] == ["赵敏"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"condition": {"fact": "height", "op": ">", "value": 1}}, "人群条件：未知的条件项"),
        ({"q": "没有这个人"}, "没有找到匹配"),
        ({"customer": 999999}, "找不到这位客户"),
        ({"condition": {"fact": "purchase_days", "op": ">=", "value": 99}}, "人群中没有找到"),
    ],
)
def test_preview_says_why_it_cannot_render(client_for, operator, people, body, reason):
    response = _preview(client_for(operator), scripts=["{称呼}"], **body)
    assert response.status_code == 400
    assert reason in response.json()["error"]


def test_preview_of_a_customer_without_a_guide(client_for, operator, people):
    response = _preview(client_for(operator), customer=people["alone"].pk, scripts=["{称呼}"])
    assert response.status_code == 400
    assert "没有跟进导购" in response.json()["error"]


# -- a plan's page and manual enrolment ------------------------------------------------------------


def test_plan_page_shows_stats_by_step_and_recent_enrollments(client_for, operator, sop_data):
    welcome = sop_data["welcome"]
    response = client_for(operator).get(reverse("sop_plan_detail", args=[welcome.pk]))
    assert response.status_code == 200
    steps = response.context["steps"]
    assert [(s.position, s.stats.done, s.stats.purchased_7d) for s in steps] == [
        (1, 2, 1),
        (2, 0, 0),
    ]
    assert [(s.stats.due, s.stats.tasks, s.stats.stopped_total) for s in steps] == [
        (0, 0, 0),
        (1, 1, 1),
    ]
    assert response.context["totals"].as_dict() == WELCOME
    listed = [(e.customer.name, str(e.status_label)) for e in response.context["enrollments"]]
    assert sorted(listed) == [("李娜", "进行中"), ("王芳", "进行中"), ("赵敏", "已停止")]
    body = response.content.decode()
    assert "客户已下单" in body and 'id="enroll-form"' in body
    # The main navigation marks SOP on its sub-pages too.
    assert f'<a href="{reverse("sop")}" aria-current="page">SOP</a>' in body


def test_operator_enrols_pasted_customer_ids(client_for, operator, people):
    plan = _plan("手动", 2)
    ids = f"{people['wang'].pk}, {people['li'].pk}\n{people['alone'].pk}"
    response = client_for(operator).post(
        reverse("sop_plan_enroll", args=[plan.pk]), {"customer_ids": ids}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("sop_plan_detail", args=[plan.pk])
    # 孤客 has no guide: not enrolled.
    enrolled = Enrollment.objects.filter(plan=plan)
    assert sorted(enrolled.values_list("customer__name", flat=True)) == ["李娜", "王芳"]
    assert Touchpoint.objects.filter(plan=plan).count() == 4
    page = client_for(operator).get(response["Location"]).content.decode()
    assert "已加入 2 位客户（共选择 3 位" in page
    # Once per customer per day.
    client_for(operator).post(reverse("sop_plan_enroll", args=[plan.pk]), {"customer_ids": ids})
    assert enrolled.count() == 2


def test_operator_enrols_every_customer_with_a_tag(client_for, operator, people):
    plan = _plan("手动", 1)
    tag = Tag.objects.create(group=TagGroup.objects.create(name="运营"), name="VIP")
    for name in ("zhao", "chen"):
        CustomerTag.objects.create(customer=people[name], tag=tag, added_at=timezone.now())
    client_for(operator).post(reverse("sop_plan_enroll", args=[plan.pk]), {"tag": tag.pk})
    assert sorted(
        Enrollment.objects.filter(plan=plan).values_list("customer__name", "guide__name")
    ) == [("赵敏", "张晓"), ("陈晨", "陈静")]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"customer_ids": "12, abc"}, "客户 ID 只能是数字：abc"),
        ({"customer_ids": ""}, "请填写客户 ID，或选择一个标签"),
    ],
)
def test_a_bad_enrolment_is_shown_and_enrols_nobody(client_for, operator, people, data, reason):
    plan = _plan("手动", 1)
    response = client_for(operator).post(reverse("sop_plan_enroll", args=[plan.pk]), data)
    assert response.status_code == 400
    assert reason in response.content.decode()
    assert Enrollment.objects.count() == 0


# -- the contact policy --------------------------------------------------------------------


def test_operator_saves_the_policy(client_for, operator):
    tag = Tag.objects.create(group=TagGroup.objects.create(name="服务"), name="投诉")
    client = client_for(operator)
    response = client.post(reverse("sop_policy"), _policy_post(complaint_tag=tag.pk))
    assert response.status_code == 302 and response["Location"] == reverse("sop_policy")
    policy = ContactPolicy.objects.get()
    assert (policy.max_per_day, policy.max_per_week, policy.complaint_days) == (2, 5, 60)
    assert (policy.quiet_start, policy.quiet_end, policy.morning_reminder_at) == (
        time(22),
        time(8, 30),
        time(9),
    )
    assert (policy.complaint_tag, policy.overdue_after_minutes) == (tag, 90)
    assert policy.escalate_after_minutes == 240
    # Saved again: the same row changes.
    client.post(reverse("sop_policy"), _policy_post(max_per_day="1"))
    assert ContactPolicy.objects.get().max_per_day == 1
    page = client.get(reverse("sop_policy")).content.decode()
    assert 'value="22:00"' in page


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"max_per_day": "0"}, "max_per_day", "每天至少允许触达 1 次"),
        ({"max_per_day": "4", "max_per_week": "3"}, "max_per_week", "每周上限不能小于每天上限"),
        ({"escalate_after_minutes": "60"}, "escalate_after_minutes", "不能早于算作逾期"),
        ({"overdue_after_minutes": "0"}, "overdue_after_minutes", "逾期时间至少 1 分钟"),
        ({"quiet_start": "25:00"}, "quiet_start", "输入一个有效的时间"),
        ({"max_per_week": "-1"}, "max_per_week", "大于或等于0"),
    ],
)
def test_an_invalid_policy_is_refused(client_for, operator, overrides, field, reason):
    ContactPolicy.objects.create()
    response = client_for(operator).post(reverse("sop_policy"), _policy_post(**overrides))
    assert response.status_code == 400
    assert reason in "".join(response.context["form"].errors[field])
    policy = ContactPolicy.objects.get()
    assert (policy.max_per_day, policy.max_per_week, policy.overdue_after_minutes) == (1, 3, 120)


# -- the suppressed / stopped log ----------------------------------------------------------


def _listed(response) -> list[tuple[str, str, str]]:
    return [(t.plan.name, t.customer.name, t.status) for t in response.context["touches"]]


def test_log_lists_suppressed_and_stopped_and_filters(client_for, operator, sop_data):
    client = client_for(operator)
    url = reverse("sop_touches")
    assert _listed(client.get(url)) == [
        ("复购提醒", "赵敏", "suppressed"),
        ("新客欢迎", "赵敏", "stopped"),
        ("新客欢迎", "赵敏", "suppressed"),
    ]
    assert _listed(client.get(url, {"reason": "weekly_cap"})) == [
        ("复购提醒", "赵敏", "suppressed")
    ]
    assert _listed(client.get(url, {"plan": sop_data["welcome"].pk})) == [
        ("新客欢迎", "赵敏", "stopped"),
        ("新客欢迎", "赵敏", "suppressed"),
    ]
    assert _listed(client.get(url, {"guide": sop_data["theirs"].pk})) == [
        ("复购提醒", "赵敏", "suppressed")
    ]
    assert _listed(client.get(url, {"status": "skipped"})) == [("复购提醒", "王芳", "skipped")]
    assert len(_listed(client.get(url, {"status": "all"}))) == 10
    response = client.get(url, {"status": "suppressed"})
    assert response.context["total"] == 2
    assert "超过每周上限" in response.content.decode()
    for bad in ({"status": "nope"}, {"plan": "x"}, {"after": "x"}):
        assert client.get(url, bad).status_code == 404


def test_a_customers_touches_are_one_link_from_their_page(
    client_for, operator, guide_user, sop_data
):
    wang = sop_data["wang"]
    client = client_for(operator)
    page = client.get(reverse("customer_detail", args=[wang.pk])).content.decode()
    link = f"{reverse('sop_touches')}?status=all&amp;customer={wang.pk}"
    assert f'href="{link}" id="customer-touches"' in page
    response = client.get(reverse("sop_touches"), {"status": "all", "customer": wang.pk})
    listed = _listed(response)
    # 王芳: welcome step 1 done, step 2 planned; repurchase skipped, and planned again
    assert sorted(listed) == sorted(
        [
            ("新客欢迎", "王芳", "done"),
            ("新客欢迎", "王芳", "planned"),
            ("复购提醒", "王芳", "skipped"),
            ("复购提醒", "王芳", "planned"),
        ]
    )
    assert response.context["total"] == len(listed)
    body = response.content.decode()
    assert 'id="touch-customer"' in body and f'name="customer" value="{wang.pk}"' in body
    narrowed = client.get(
        reverse("sop_touches"),
        {"status": "all", "plan": sop_data["welcome"].pk, "customer": wang.pk},
    ).content.decode()
    chip = narrowed.split('id="touch-customer"')[1].split("</span>")[0]
    assert f'href="?status=all&amp;plan={sop_data["welcome"].pk}"' in chip  # × keeps the rest
    export = client.get(reverse("sop_touches_export"), {"status": "all", "customer": wang.pk})
    assert len(b"".join(export.streaming_content).decode("utf-8-sig").splitlines()) == 5
    guide_page = client_for(guide_user).get(reverse("guide_customer_detail", args=[wang.pk]))
    assert 'id="customer-touches"' not in guide_page.content.decode()  # a console page


def test_log_pages_by_id(client_for, operator, people):
    plan = _plan("大计划", 1)
    customers = [CustomerFactory(name=f"客{n:02d}") for n in range(55)]
    for number, customer in enumerate(customers):
        enrollment = _enrollment(plan, customer, people["mine"], key=str(number))
        _touch(enrollment, 1, Touchpoint.Status.SUPPRESSED, reason="daily_cap")
    client = client_for(operator)
    first = client.get(reverse("sop_touches"), {"reason": "daily_cap"})
    assert first.context["total"] == 55 and len(first.context["touches"]) == 50
    cursor = first.context["next_cursor"]
    assert cursor == first.context["touches"][-1].pk
    assert f"reason=daily_cap&amp;after={cursor}" in first.content.decode()
    second = client.get(reverse("sop_touches"), {"reason": "daily_cap", "after": cursor})
    assert [t.customer.name for t in second.context["touches"]] == [
        f"客{n:02d}" for n in range(4, -1, -1)
    ]
    assert second.context["next_cursor"] is None


def test_log_export_rows_are_exact(client_for, operator, sop_data):
    response = client_for(operator).get(
        reverse("sop_touches_export"), {"plan": sop_data["welcome"].pk}
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    text = b"".join(response.streaming_content).decode()
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    stopped = Touchpoint.objects.get(plan=sop_data["welcome"], status="stopped")
    suppressed = Touchpoint.objects.get(plan=sop_data["welcome"], status="suppressed")
    local = timezone.localtime

    def when(value):
        return local(value).strftime("%Y-%m-%d %H:%M")

    zhao = sop_data["zhao"].pk
    assert rows == [
        [
            "触达ID",
            "计划",
            "第几步",
            "客户ID",
            "客户",
            "导购",
            "状态",
            "原因",
            "原因代码",
            "计划触达时间",
            "窗口结束",
        ],
        [
            str(stopped.pk),
            "新客欢迎",
            "2",
            str(zhao),
            "赵敏",
            "张晓",
            "已停止",
            "客户已下单",
            "purchased",
            when(stopped.due_at),
            when(stopped.window_ends_at),
        ],
        [
            str(suppressed.pk),
            "新客欢迎",
            "1",
            str(zhao),
            "赵敏",
            "张晓",
            "被规则拦截",
            "超过每日上限",
            "daily_cap",
            when(suppressed.due_at),
            when(suppressed.window_ends_at),
        ],
    ]


def test_pages_in_english(client_for, operator, sop_data):
    client = client_for(operator)
    client.post(reverse("set_language"), {"language": "en", "next": "/"})
    body = client.get(reverse("sop")).content.decode()
    assert "Enrolled" in body and "Bought within 7 days" in body
    assert "Manual enrolment" in body
    editor = client.get(reverse("sop_plan_new")).content.decode()
    assert "Save plan" in editor and "Stop conditions" in editor


def test_the_touch_export_keeps_a_formula_like_name_as_text(client_for, operator, sop_data):
    """A WeCom nickname is anyone's to choose: one beginning with = must not run in Excel."""
    import csv
    import io

    from contacts.models import Customer

    name = '=HYPERLINK("http://example.com/x","点我")'
    Customer.objects.filter(pk=sop_data["wang"].pk).update(name=name)
    export = client_for(operator).get(
        reverse("sop_touches_export"), {"status": "all", "customer": sop_data["wang"].pk}
    )
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode("utf-8-sig"))))
    names = {row[4] for row in rows[1:]}
    assert names == {"'" + name}
