"""SOP API: plans with their numbers (written through plan_save), manual enrolment, the
contact policy, and touchpoints (a guide reads only their own)."""

import pytest
from django.urls import reverse

from sop.models import ContactPolicy, Enrollment, SopPlan, Touchpoint
from tagging.models import Tag, TagGroup
from tests.contacts.factories import RelationshipFactory
from tests.sop.test_pages import REPURCHASE, WELCOME, _counts, _plan, build_people, build_sop_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(guide_user, other_guide_user) -> dict:
    return build_people()


@pytest.fixture
def sop_data(people) -> dict:
    return build_sop_data(people)


def _body(**overrides) -> dict:
    data = {
        "name": "首单关怀",
        "description": "",
        "trigger": "days_since_purchase",
        "trigger_params": {"days": 30},
        "audience": {"fact": "purchase_days", "op": ">=", "value": 1},
        "priority": 2,
        "is_active": True,
        "stop_on_purchase": True,
        "steps": [
            {"script": "{称呼}您好", "offset_hours": 1},
            {
                "offset_days": 3,
                "window_start": "14:00",
                "window_end": "18:00",
                "action": "call",
                "attachments": [{"type": "image", "pic_url": "https://example.com/a.png"}],
            },
        ],
    }
    data.update(overrides)
    return data


def _send(client, method: str, url: str, data=None):
    return getattr(client, method)(url, data, content_type="application/json")


def _writes(plan: SopPlan, customer_id: int) -> list[tuple[str, str, dict]]:
    return [
        ("post", reverse("sop-plan-list"), _body()),
        ("put", reverse("sop-plan-detail", args=[plan.pk]), _body(name="改")),
        ("patch", reverse("sop-plan-detail", args=[plan.pk]), {"name": "改"}),
        ("post", reverse("sop-plan-enroll", args=[plan.pk]), {"customer_ids": [customer_id]}),
        ("put", reverse("sop-policy"), {"max_per_day": 2, "max_per_week": 4}),
    ]


def _reads(plan: SopPlan) -> list[str]:
    return [
        reverse("sop-plan-list"),
        reverse("sop-plan-detail", args=[plan.pk]),
        reverse("sop-policy"),
    ]


# -- access -----------------------------------------------------------------------------------


def test_anonymous_gets_nothing(client, sop_data):
    plan = sop_data["welcome"]
    for url in [*_reads(plan), reverse("sop-touchpoint-list")]:
        assert client.get(url).status_code in (401, 403), url
    before = _counts()
    for method, url, data in _writes(plan, sop_data["wang"].pk):
        assert _send(client, method, url, data).status_code in (401, 403), url
    assert _counts() == before


def test_guide_reads_no_plan_or_policy_and_writes_nothing(client_for, guide_user, sop_data):
    client = client_for(guide_user)
    plan = sop_data["welcome"]
    for url in _reads(plan):
        assert client.get(url).status_code == 403, url
    before = _counts()
    for method, url, data in _writes(plan, sop_data["wang"].pk):
        assert _send(client, method, url, data).status_code == 403, url
    assert _counts() == before


def test_manager_reads_but_writes_nothing(client_for, manager, sop_data):
    client = client_for(manager)
    plan = sop_data["welcome"]
    for url in _reads(plan):
        assert client.get(url).status_code == 200, url
    before = _counts()
    for method, url, data in _writes(plan, sop_data["wang"].pk):
        assert _send(client, method, url, data).status_code == 403, url
    assert _counts() == before
    plan.refresh_from_db()
    assert plan.name == "新客欢迎"


# -- plans ------------------------------------------------------------------------------------


def test_plan_list_carries_the_stats(client_for, operator, sop_data):
    body = client_for(operator).get(reverse("sop-plan-list")).json()
    assert body["count"] == 2
    rows = {row["name"]: row for row in body["results"]}
    assert rows["新客欢迎"]["stats"] == WELCOME
    assert rows["复购提醒"]["stats"] == REPURCHASE
    assert (rows["新客欢迎"]["steps_count"], rows["新客欢迎"]["priority"]) == (2, 5)
    assert "steps" not in rows["新客欢迎"]


def test_plan_list_queries_are_bounded(
    client_for, operator, sop_data, django_assert_max_num_queries
):
    client = client_for(operator)
    client.get(reverse("sop-plan-list"))
    for number in range(5):
        _plan(f"计划{number}", 2)
    # session, user, permissions; count, page; the two aggregates
    with django_assert_max_num_queries(8):
        assert client.get(reverse("sop-plan-list")).json()["count"] == 7


def test_plan_detail_has_steps_and_stats(client_for, operator, sop_data):
    plan = sop_data["welcome"]
    body = client_for(operator).get(reverse("sop-plan-detail", args=[plan.pk])).json()
    assert body["stats"] == WELCOME
    assert [(s["position"], s["offset_days"], s["script"]) for s in body["steps"]] == [
        (1, 0, "第1步 {称呼}"),
        (2, 1, "第2步 {称呼}"),
    ]
    assert body["steps"][0]["window_start"] == "10:00:00"


def test_operator_creates_a_plan(client_for, operator):
    response = _send(client_for(operator), "post", reverse("sop-plan-list"), _body())
    assert response.status_code == 201, response.json()
    plan = SopPlan.objects.get()
    body = response.json()
    assert body["id"] == plan.pk and body["stats"]["enrolled"] == 0
    assert (plan.trigger, plan.trigger_params, plan.created_by) == (
        "days_since_purchase",
        {"days": 30},
        operator,
    )
    assert (plan.priority, plan.stop_on_purchase, plan.stop_on_contact_deleted) == (2, True, True)
    assert [
        (s["position"], s["offset_days"], s["offset_hours"], s["action"], s["window_end"])
        for s in body["steps"]
    ] == [(1, 0, 1, "message", "21:00:00"), (2, 3, 0, "call", "18:00:00")]
    assert body["steps"][1]["attachments"] == [
        {"type": "image", "pic_url": "https://example.com/a.png"}
    ]


def test_put_replaces_and_patch_changes_only_what_is_given(client_for, operator, sop_data):
    client = client_for(operator)
    plan = sop_data["repurchase"]
    url = reverse("sop-plan-detail", args=[plan.pk])
    response = _send(client, "patch", url, {"name": "复购提醒（新）", "priority": 9})
    assert response.status_code == 200
    plan.refresh_from_db()
    assert (plan.name, plan.priority, plan.trigger) == ("复购提醒（新）", 9, "manual")
    assert list(plan.steps.values_list("script", flat=True)) == ["第1步 {称呼}"]
    (kept,) = plan.steps.all()
    response = _send(client, "put", url, _body(name="全部替换"))
    assert response.status_code == 200
    plan.refresh_from_db()
    live = plan.steps.filter(is_retired=False)
    assert (plan.name, plan.trigger, live.count()) == ("全部替换", "days_since_purchase", 2)
    # Steps given without an id are new: the one left out is retired (it has touchpoints).
    assert [s["id"] for s in response.json()["steps"]] == sorted(live.values_list("pk", flat=True))
    assert plan.steps.get(pk=kept.pk).is_retired


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"trigger": "moon"}, "Unknown trigger: moon"),
        ({"trigger": "tag_added", "trigger_params": {}}, "“Tagged” needs a tag"),
        (
            {"trigger_params": {"days": 0}},
            "“N days since last purchase” needs a number of days above 0",
        ),
        ({"steps": []}, "A plan needs at least one step"),
        (
            {"steps": [{"window_start": "12:00", "window_end": "11:00"}]},
            "Step 1: the send window must start before it ends",
        ),
        ({"steps": [{}, {"action": "dance"}]}, "Step 2: unknown action dance"),
        ({"steps": [{"id": 999999}]}, "Step 1 is not a step of this plan (or is repeated)"),
    ],
)
def test_a_refused_plan_says_why_in_english_to_an_english_reader(
    client_for, operator, sop_data, overrides, reason
):
    response = client_for(operator).post(
        reverse("sop-plan-list"),
        _body(**overrides),
        content_type="application/json",
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert (response.status_code, response.json()) == (400, {"detail": reason})
    assert SopPlan.objects.filter(name="首单关怀").count() == 0


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (
            {"audience": {"fact": "height", "op": ">", "value": 1}},
            "人群条件：未知的条件项「height」",
        ),
        ({"trigger": "moon"}, "未知的触发条件：moon"),
        ({"trigger": "tag_added", "trigger_params": {}}, "「被打上标签」需要选择一个标签"),
        ({"trigger_params": {"days": 0}}, "「距最近购买 N 天」需要一个大于 0 的天数"),
        ({"steps": []}, "计划至少要有一个步骤"),
        (
            {"steps": [{"window_start": "12:00", "window_end": "11:00"}]},
            "第 1 步：发送窗口的开始要早于结束",
        ),
        ({"steps": [{}, {"action": "dance"}]}, "第 2 步：未知的动作 dance"),
    ],
)
def test_a_refused_plan_is_a_400_with_the_reason(client_for, operator, sop_data, overrides, reason):
    client = client_for(operator)
    before = _counts()
    response = _send(client, "post", reverse("sop-plan-list"), _body(**overrides))
    assert response.status_code == 400
    assert response.json()["detail"].startswith(reason)
    plan = sop_data["welcome"]
    response = _send(client, "put", reverse("sop-plan-detail", args=[plan.pk]), _body(**overrides))
    assert response.status_code == 400 and response.json()["detail"].startswith(reason)
    assert _counts() == before
    plan.refresh_from_db()
    assert (plan.name, plan.steps.count()) == ("新客欢迎", 2)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"trigger_params": {"days": "many"}}, "trigger_params"),
        ({"trigger": "tag_added", "trigger_params": {"tag": 999999}}, "trigger_params"),
        ({"trigger_params": []}, "trigger_params"),
        ({"steps": [{"window_start": "25:00"}]}, "steps"),
        ({"steps": [{"attachments": [{"type": "video"}]}]}, "steps"),
        ({"stop_on_tag_added": 999999}, "stop_on_tag_added"),
    ],
)
def test_unreadable_plan_input_is_a_400_on_its_field(client_for, operator, overrides, field):
    response = _send(client_for(operator), "post", reverse("sop-plan-list"), _body(**overrides))
    assert response.status_code == 400
    assert field in response.json()
    assert SopPlan.objects.count() == 0


def test_a_tag_trigger_through_the_api(client_for, operator):
    tag = Tag.objects.create(group=TagGroup.objects.create(name="活动"), name="双11")
    response = _send(
        client_for(operator),
        "post",
        reverse("sop-plan-list"),
        _body(trigger="tag_added", trigger_params={"tag": str(tag.pk)}, stop_on_tag_removed=tag.pk),
    )
    assert response.status_code == 201
    plan = SopPlan.objects.get()
    assert (plan.trigger_params, plan.stop_on_tag_removed) == ({"tag": tag.pk}, tag)


def test_operator_enrols_customers(client_for, operator, people):
    plan = _plan("手动", 2)
    ids = [people["wang"].pk, people["li"].pk, people["alone"].pk, people["wang"].pk]
    client = client_for(operator)
    url = reverse("sop-plan-enroll", args=[plan.pk])
    response = _send(client, "post", url, {"customer_ids": ids})
    assert response.status_code == 200 and response.json() == {"enrolled": 2}
    assert Touchpoint.objects.filter(plan=plan).count() == 4
    assert _send(client, "post", url, {"customer_ids": ids}).json() == {"enrolled": 0}
    bad = _send(client, "post", url, {"customer_ids": ["x"]})
    assert bad.status_code == 400 and Enrollment.objects.count() == 2
    assert _send(client, "post", url, {"customer_ids": []}).status_code == 400


# -- the policy ---------------------------------------------------------------------------------


def test_policy_get_shows_defaults_without_writing(client_for, manager):
    body = client_for(manager).get(reverse("sop-policy")).json()
    assert (body["max_per_day"], body["max_per_week"], body["quiet_start"]) == (1, 3, "21:30:00")
    assert body["id"] is None
    assert ContactPolicy.objects.count() == 0


def test_operator_puts_the_policy(client_for, operator):
    client = client_for(operator)
    full = {
        "max_per_day": 2,
        "max_per_week": 6,
        "quiet_start": "22:00",
        "quiet_end": "08:00",
        "complaint_tag": None,
        "complaint_days": 14,
        "morning_reminder_at": "09:15",
        "overdue_after_minutes": 60,
        "escalate_after_minutes": 180,
    }
    response = _send(client, "put", reverse("sop-policy"), full)
    assert response.status_code == 200, response.json()
    policy = ContactPolicy.objects.get()
    assert (policy.max_per_day, policy.max_per_week, policy.complaint_days) == (2, 6, 14)
    assert response.json()["id"] == policy.pk
    again = _send(client, "put", reverse("sop-policy"), {**full, "max_per_day": 3})
    assert again.status_code == 200 and ContactPolicy.objects.get().max_per_day == 3


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"max_per_day": 0}, "max_per_day"),
        ({"max_per_day": 5, "max_per_week": 4}, "max_per_week"),
        ({"overdue_after_minutes": 200, "escalate_after_minutes": 100}, "escalate_after_minutes"),
    ],
)
def test_an_invalid_policy_is_a_400(client_for, operator, values, field):
    ContactPolicy.objects.create()
    response = _send(client_for(operator), "put", reverse("sop-policy"), values)
    assert response.status_code == 400 and field in response.json()
    policy = ContactPolicy.objects.get()
    assert (policy.max_per_day, policy.max_per_week, policy.escalate_after_minutes) == (1, 3, 360)


# -- touchpoints --------------------------------------------------------------------------------


def _ids(response) -> list[int]:
    return [row["id"] for row in response.json()["results"]]


def test_touchpoints_for_console_viewers_with_filters(client_for, manager, sop_data):
    client = client_for(manager)
    url = reverse("sop-touchpoint-list")
    everything = client.get(url).json()
    assert everything["count"] == 10
    expected = list(Touchpoint.objects.filter(status="suppressed").order_by("-id"))
    assert _ids(client.get(url, {"status": "suppressed"})) == [t.pk for t in expected]
    row = client.get(url, {"reason": "weekly_cap"}).json()["results"]
    assert [
        (r["plan_name"], r["customer_name"], r["guide_name"], r["step_position"]) for r in row
    ] == [("复购提醒", "赵敏", "陈静", 1)]
    welcome = sop_data["welcome"].pk
    assert client.get(url, {"plan": welcome}).json()["count"] == 6


def test_a_guide_reads_only_their_own_touchpoints(
    client_for, guide_user, other_guide_user, sop_data
):
    client = client_for(guide_user)
    url = reverse("sop-touchpoint-list")
    mine = Touchpoint.objects.filter(guide__wecom_userid="guide0001").order_by("-id")
    assert _ids(client.get(url)) == [t.pk for t in mine]
    theirs = Touchpoint.objects.get(guide__wecom_userid="guide0002")
    assert client.get(reverse("sop-touchpoint-detail", args=[theirs.pk])).status_code == 404
    # Filtering by the other guide does not widen the view.
    assert _ids(client.get(url, {"guide": theirs.guide_id})) == []
    # Guide 2 was given 赵敏's touch, but does not follow 赵敏: it is not theirs to see
    # until they do.
    other = client_for(other_guide_user)
    assert _ids(other.get(url)) == []
    RelationshipFactory(customer=theirs.customer, guide=theirs.guide)
    assert _ids(other.get(url)) == [theirs.pk]
    assert other.get(reverse("sop-touchpoint-detail", args=[theirs.pk])).status_code == 200


def test_touchpoints_are_read_only(client_for, operator, sop_data):
    touch = Touchpoint.objects.get(status="task")
    client = client_for(operator)
    assert _send(client, "post", reverse("sop-touchpoint-list"), {}).status_code == 405
    url = reverse("sop-touchpoint-detail", args=[touch.pk])
    assert _send(client, "patch", url, {"status": "done"}).status_code == 405
    assert _send(client, "delete", url).status_code == 405
    touch.refresh_from_db()
    assert touch.status == "task" and Touchpoint.objects.count() == 10


def test_schema_lists_the_sop_api(client_for, operator):
    paths = client_for(operator).get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    for path in (
        "/api/v1/sop-plans/",
        "/api/v1/sop-plans/{id}/",
        "/api/v1/sop-plans/{id}/enroll/",
        "/api/v1/sop-policy/",
        "/api/v1/sop-touchpoints/",
    ):
        assert path in paths, path
