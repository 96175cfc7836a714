"""The guide's task list: only their own tasks, actions that check ownership and state,
and a query count that does not grow with the number of tasks."""

from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
import requests
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone, translation

from contacts.facts import facts_refresh
from contacts.models import CustomerFactsPending, Guide, Order
from sop import scheduling, services, triggers
from sop.models import Enrollment, SopPlan, SopStep, Touchpoint
from tests.contacts.factories import CustomerFactory, OrderFactory, RelationshipFactory
from tests.helpers import wait_for
from tests.sop.windows import keep_tasks_open, no_quiet_hours, window_around_now

pytestmark = pytest.mark.django_db


@pytest.fixture
def tasks(guide_user, other_guide_user):
    """Three tasks of guide1 and one of guide2, given just now."""
    mine, theirs = Guide.objects.get(user=guide_user), Guide.objects.get(user=other_guide_user)
    relationships = [RelationshipFactory(guide=mine, remark=f"王姐{n}") for n in range(3)]
    relationships.append(RelationshipFactory(guide=theirs, remark="别人的客户"))
    facts_refresh()
    plan = SopPlan.objects.create(
        name="新客欢迎",
        trigger=SopPlan.Trigger.MANUAL,
        started_at=timezone.now() - timedelta(days=1),
    )
    SopStep.objects.create(
        plan=plan,
        position=1,
        script="{称呼}您好，我是{导购姓名}，最近买的{最近购买商品}穿着合适吗？",
        **window_around_now(before=timedelta(minutes=5)),
    )
    OrderFactory(customer=relationships[0].customer, paid_at=timezone.now() - timedelta(days=3))
    order = Order.objects.get()
    order.lines.create(
        line_no=1, sku="S1", product_name="冰丝睡裙", quantity=1, unit_price=99, line_amount=99
    )
    no_quiet_hours()
    triggers.manual(plan=plan, customer_ids=[r.customer_id for r in relationships])
    scheduling.dispatch(now=timezone.now())
    assert Touchpoint.objects.filter(status="task").count() == 4
    keep_tasks_open(hours=2)
    return {"mine": mine, "theirs": theirs, "relationships": relationships}


def test_a_guide_sees_only_their_tasks_with_the_script_filled_in(client_for, guide_user, tasks):
    page = client_for(guide_user).get(reverse("guide_home"))
    assert page.status_code == 200
    text = page.content.decode()
    assert text.count('class="task') == 3
    assert "别人的客户" not in text
    assert "王姐0您好，我是" in text and "最近买的冰丝睡裙穿着合适吗" in text
    assert "王姐1您好" in text
    # the last orders, by channel name
    assert " 天猫 ¥89.00 冰丝睡裙" in text and "tmall" not in text


def test_a_checkout_split_into_sub_orders_is_one_order_on_the_card(client_for, guide_user, tasks):
    customer = tasks["relationships"][1].customer
    paid = timezone.now() - timedelta(days=1)
    for number, (amount, product) in enumerate(
        [(Decimal("60"), "无痕内裤"), (Decimal("90"), "睡衣")]
    ):
        order = OrderFactory(
            customer=customer,
            channel="douyin",
            channel_order_id=f"DY-1-{number}",
            parent_order_id="DY-1",
            paid_at=paid,
            amount=amount,
        )
        order.lines.create(
            line_no=1,
            sku=f"D{number}",
            product_name=product,
            quantity=1,
            unit_price=amount,
            line_amount=amount,
        )
    OrderFactory(customer=customer, channel="jd", paid_at=paid - timedelta(days=9), amount=30)
    text = client_for(guide_user).get(reverse("guide_home")).content.decode()
    card = text.split("王姐1您好")[0].rsplit('class="task', 1)[1]
    # the checkout once, its two sub-orders summed; the JD order is the one before it
    assert card.count(" 抖音 ¥150.00 无痕内裤") == 1 and " 京东 ¥30.00" in card


def test_the_list_costs_a_fixed_number_of_queries(client_for, guide_user, tasks):
    client = client_for(guide_user)
    client.get(reverse("guide_home"))  # session and permission caches warm

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(reverse("guide_home")).status_code == 200
        return len(queries)

    three = count()
    plan = SopPlan.objects.get()
    more = [RelationshipFactory(guide=tasks["mine"]) for _ in range(5)]
    facts_refresh(customer_ids=[r.customer_id for r in more])
    triggers.manual(plan=plan, customer_ids=[r.customer_id for r in more])
    scheduling.dispatch(now=timezone.now())
    assert Touchpoint.objects.filter(guide=tasks["mine"], status="task").count() == 8
    assert count() == three <= 14


def test_done_skip_and_snooze(client_for, guide_user, tasks):
    client = client_for(guide_user)
    mine = list(Touchpoint.objects.filter(guide=tasks["mine"]).order_by("pk"))
    url = lambda t, action: reverse("guide_task_action", args=[t.pk, action])  # noqa: E731
    assert client.post(url(mine[0], "done")).status_code == 302
    assert client.post(url(mine[1], "skip"), {"reason": ""}).status_code == 302
    mine[1].refresh_from_db()
    assert mine[1].status == "task"  # a skip needs a reason
    client.post(url(mine[1], "skip"), {"reason": "联系不上"})
    client.post(url(mine[2], "snooze"), {"hours": "1"})
    statuses = dict(Touchpoint.objects.filter(guide=tasks["mine"]).values_list("pk", "status"))
    assert statuses == {mine[0].pk: "done", mine[1].pk: "skipped", mine[2].pk: "task"}
    mine[2].refresh_from_db()
    assert mine[2].snoozed_until > timezone.now() + timedelta(minutes=59)
    # the card under 稍后 says until when
    until = timezone.localtime(mine[2].snoozed_until).strftime("%H:%M")
    assert f"推迟到 {until}" in client.get(reverse("guide_home")).content.decode()
    # done twice: refused with a message, nothing changes
    done_at = Touchpoint.objects.get(pk=mine[0].pk).done_at
    client.post(url(mine[0], "done"))
    assert Touchpoint.objects.get(pk=mine[0].pk).done_at == done_at


def test_another_guides_task_is_404_and_unchanged(client_for, guide_user, tasks):
    theirs = Touchpoint.objects.get(guide=tasks["theirs"])
    response = client_for(guide_user).post(reverse("guide_task_action", args=[theirs.pk, "done"]))
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == "task" and theirs.done_at is None


@pytest.mark.parametrize(
    ("action", "data"), [("skip", {"reason": "联系不上"}), ("snooze", {"hours": "1"})]
)
def test_another_guides_task_cannot_be_skipped_or_snoozed(
    client_for, guide_user, tasks, action, data
):
    theirs = Touchpoint.objects.get(guide=tasks["theirs"])
    response = client_for(guide_user).post(
        reverse("guide_task_action", args=[theirs.pk, action]), data
    )
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert (theirs.status, theirs.snoozed_until) == ("task", None)


def test_a_made_up_snooze_or_customer_is_a_bad_request_not_an_error(client_for, guide_user, tasks):
    client = client_for(guide_user)
    mine = Touchpoint.objects.filter(guide=tasks["mine"]).first()
    for hours in ("abc", "2", ""):
        response = client.post(
            reverse("guide_task_action", args=[mine.pk, "snooze"]), {"hours": hours}
        )
        assert response.status_code == 400, hours
    for page in ("0", "abc", "9" * 22):
        assert client.get(reverse("guide_home"), {"page": page}).status_code == 400, page
    for customer in ("abc", "", "1.5"):
        response = client.post(
            reverse("guide_sidebar_bind"), {"customer": customer, "order_id": "X1"}
        )
        assert response.status_code == 400, customer
    mine.refresh_from_db()
    assert mine.snoozed_until is None


def test_the_sidebar_binds_to_no_customer_but_the_guides_own(client_for, guide_user, tasks):
    stray = OrderFactory(customer=None, channel_order_id="JD5566")
    theirs = tasks["relationships"][3].customer
    response = client_for(guide_user).post(
        reverse("guide_sidebar_bind"), {"customer": theirs.pk, "order_id": "JD5566"}
    )
    assert response.status_code == 404
    stray.refresh_from_db()
    assert stray.customer_id is None


def test_an_action_goes_back_only_to_a_page_of_ours(client_for, guide_user, tasks):
    mine = Touchpoint.objects.filter(guide=tasks["mine"]).first()
    client = client_for(guide_user)
    outside = client.post(
        reverse("guide_task_action", args=[mine.pk, "done"]), {"next": "https://evil.example/x"}
    )
    assert outside["Location"] == reverse("guide_home")
    start = client.get(reverse("guide_oauth"), {"next": "//evil.example/x"})
    assert client.session["sop:oauth-state"]["next"] == reverse("guide_home")
    assert start.status_code == 302


def test_operators_have_no_task_list(client_for, operator):
    assert client_for(operator).get(reverse("guide_home")).status_code == 403


def test_sidebar_shows_the_chats_customer_and_binds_an_order(client_for, guide_user, tasks):
    customer = tasks["relationships"][1].customer
    stray = OrderFactory(customer=None, channel_order_id="JD778899")
    client = client_for(guide_user)
    url = reverse("guide_sidebar") + f"?external_userid={customer.external_userid}"
    page = client.get(url)
    assert page.status_code == 200 and page.content.decode().count('class="task') == 1
    client.post(
        reverse("guide_sidebar_bind"),
        {"customer": customer.pk, "order_id": "JD778899", "next": url},
    )
    stray.refresh_from_db()
    assert stray.customer_id == customer.pk
    other = tasks["relationships"][3].customer
    assert (
        client.get(
            reverse("guide_sidebar") + f"?external_userid={other.external_userid}"
        ).status_code
        == 404
    )


def test_sidebar_shows_the_newest_orders_and_leads_to_all_of_them(
    client_for, guide_user, tasks, monkeypatch
):
    from sop import views

    monkeypatch.setattr(views, "SIDEBAR_ORDERS", 2)
    customer = tasks["relationships"][0].customer
    now = timezone.now()
    for days, amount in ((3, "10.00"), (2, "20.00"), (1, "30.00")):
        OrderFactory(customer=customer, paid_at=now - timedelta(days=days), amount=Decimal(amount))
    OrderFactory(customer=customer, paid_at=None, status="cancelled", amount=Decimal("40.00"))
    total = Order.objects.filter(customer=customer).count()  # the fixture's and these four
    client = client_for(guide_user)
    url = reverse("guide_sidebar") + f"?external_userid={customer.external_userid}"
    page = client.get(url).content.decode()
    orders = page.split("全部渠道")[1]
    # the two newest paid ones, not the unpaid one sorting first; and a way to all
    assert "¥30.00" in orders and "¥20.00" in orders and "¥10.00" not in orders
    assert "¥40.00" not in orders
    link = orders.split('id="sidebar-all-orders"')[1]
    assert reverse("guide_customer_detail", args=[customer.pk]) in link
    assert f"全部 {total} 笔" in link
    OrderFactory(customer=tasks["relationships"][1].customer)
    fewer = client.get(
        reverse("guide_sidebar")
        + f"?external_userid={tasks['relationships'][1].customer.external_userid}"
    )
    assert 'id="sidebar-all-orders"' not in fewer.content.decode()


def _wecom(emulator_server, settings):
    emulator, served = emulator_server
    emulator.revoke_tokens()
    settings.WECOM_API_BASE = served.base_url
    settings.WECOM_OAUTH_BASE = served.base_url.removesuffix("/cgi-bin/")
    return emulator


def test_wecom_oauth_signs_the_guide_in_and_opens_the_sidebar(
    client, guide_user, tasks, emulator_server, settings
):
    _wecom(emulator_server, settings)
    customer = tasks["relationships"][0].customer
    sidebar = reverse("guide_sidebar") + f"?external_userid={customer.external_userid}"
    start = client.get(reverse("guide_oauth"), {"next": sidebar})
    assert start.status_code == 302 and "/connect/oauth2/authorize?" in start["Location"]
    # The WeCom client knows who is signed in: guide0001 (the emulator is told so).
    authorize = requests.get(
        start["Location"].split("#")[0] + "&emulator_userid=guide0001",
        allow_redirects=False,
        timeout=5,
    )
    callback = urlsplit(authorize.headers["Location"])
    landed = client.get(callback.path + "?" + callback.query)
    assert landed.status_code == 302 and landed["Location"] == sidebar
    page = client.get(sidebar)
    assert page.status_code == 200 and page.wsgi_request.user == guide_user
    # the code was single-use: replaying the callback signs nobody in
    client.logout()
    assert client.get(callback.path + "?" + callback.query).status_code == 400
    assert client.get(sidebar).status_code == 302  # to the login page


def _signed_in_by_wecom_as(client, userid: str):
    """The OAuth round trip for a WeCom member: our callback's response."""
    start = client.get(reverse("guide_oauth"))
    authorize = requests.get(
        start["Location"].split("#")[0] + f"&emulator_userid={userid}",
        allow_redirects=False,
        timeout=5,
    )
    callback = urlsplit(authorize.headers["Location"])
    return client.get(callback.path + "?" + callback.query)


def test_oauth_for_a_member_without_a_guide_account_is_refused(
    client, db, emulator_server, settings
):
    _wecom(emulator_server, settings)
    response = _signed_in_by_wecom_as(client, "guide0009")
    assert response.status_code == 400 and "还没有开通导购账号" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_oauth_for_a_guide_who_has_left_is_refused(client, guide_user, emulator_server, settings):
    _wecom(emulator_server, settings)
    Guide.objects.filter(user=guide_user).update(is_active=False)  # the sync saw them go
    response = _signed_in_by_wecom_as(client, "guide0001")
    assert response.status_code == 400 and "已不是在职导购" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_open_tasks_come_a_page_at_a_time_with_the_counts_of_all(
    client_for, guide_user, tasks, monkeypatch
):
    from sop import tasklist

    monkeypatch.setattr(tasklist, "PAGE_SIZE", 2)
    client = client_for(guide_user)
    first = client.get(reverse("guide_home"))
    second = client.get(reverse("guide_home"), {"page": "2"})
    assert [len(page.context["tasks"].today) for page in (first, second)] == [2, 1]
    assert (first.context["tasks"].has_next, second.context["tasks"].has_next) == (True, False)
    shown = [card.touchpoint.pk for page in (first, second) for card in page.context["tasks"].today]
    mine = Touchpoint.objects.filter(guide=tasks["mine"]).order_by("due_at", "pk")
    assert shown == list(mine.values_list("pk", flat=True))
    assert first.context["tasks"].open_count == second.context["tasks"].open_count == 3
    assert 'href="?page=2"' in first.content.decode()
    for bad in ("0", "x", "-1"):
        response = client.get(reverse("guide_home"), {"page": bad})
        assert response.status_code == 400


def test_snoozed_and_done_tasks_are_listed_apart(client_for, guide_user, tasks):
    client = client_for(guide_user)
    mine = list(Touchpoint.objects.filter(guide=tasks["mine"]).order_by("pk"))
    client.post(reverse("guide_task_action", args=[mine[0].pk, "done"]))
    client.post(reverse("guide_task_action", args=[mine[1].pk, "snooze"]), {"hours": "1"})
    listed = client.get(reverse("guide_home")).context["tasks"]
    sections = [[card.touchpoint.pk for card in cards] for cards in (listed.today, listed.later)]
    assert sections == [[mine[2].pk], [mine[1].pk]]
    assert [card.touchpoint.pk for card in listed.done] == [mine[0].pk]
    counts = (listed.open_count, listed.snoozed_count, listed.overdue_count, listed.done_count)
    assert counts == (1, 1, 0, 1)  # to do now, later, overdue, done or skipped today
    client.post(reverse("guide_task_action", args=[mine[2].pk, "skip"]), {"reason": "联系不上"})
    listed = client.get(reverse("guide_home")).context["tasks"]
    assert (listed.open_count, listed.snoozed_count, listed.done_count) == (0, 1, 2)


def test_task_errors_are_in_the_guides_language(guide_user, tasks):
    task = Touchpoint.objects.filter(guide=tasks["mine"]).first()
    with translation.override("en"):
        with pytest.raises(services.TaskError, match="^Skipping needs a reason$"):
            services.task_skip(touchpoint_id=task.pk, guide=tasks["mine"], reason=" ")
        with pytest.raises(services.TaskError, match="^Task not found$"):
            services.task_done(touchpoint_id=task.pk, guide=tasks["theirs"])
    with translation.override("zh-hans"):
        with pytest.raises(services.TaskError, match="^跳过需要写明原因$"):
            services.task_skip(touchpoint_id=task.pk, guide=tasks["mine"], reason=" ")
        services.task_done(touchpoint_id=task.pk, guide=tasks["mine"])
        with pytest.raises(services.TaskError, match="^这个任务现在是「已完成」，不能再改了。$"):
            services.task_done(touchpoint_id=task.pk, guide=tasks["mine"])


def test_after_an_action_the_list_opens_at_the_next_card(client_for, guide_user, tasks):
    client = client_for(guide_user)
    listed = client.get(reverse("guide_home"))
    cards = [card.touchpoint.pk for card in listed.context["tasks"].today]
    assert len(cards) == 3
    body = listed.content.decode()
    for pk, following in zip(cards, [f"task-{cards[1]}", f"task-{cards[2]}", "today"], strict=True):
        form = body.split(f'id="task-{pk}"')[1].split("</form>")[0]
        assert f'name="next" value="/guide/#{following}"' in form
    done = client.post(
        reverse("guide_task_action", args=[cards[0], "done"]),
        {"next": f"/guide/#task-{cards[1]}"},
    )
    assert done.status_code == 302 and done["Location"] == f"/guide/#task-{cards[1]}"


def test_task_cards_name_built_in_tags_in_the_guides_language(client_for, guide_user, tasks):
    from tagging.evaluation import evaluate

    facts_refresh()  # with the order of 王姐0
    evaluate(customer_ids=None)
    client = client_for(guide_user)
    english = client.get(reverse("guide_home"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    # 王姐0 bought once: a new customer; 王姐1 and 王姐2 never bought: prospects.
    assert english.count(">New customer</span>") == 1 and english.count(">Prospect</span>") == 2
    assert ">新客</span>" not in english and ">潜客</span>" not in english
    chinese = client.get(reverse("guide_home")).content.decode()
    assert chinese.count(">新客</span>") == 1 and chinese.count(">潜客</span>") == 2


def test_a_customer_who_ends_the_relationship_leaves_the_guides_tasks(
    client_for, guide_user, tasks
):
    """The customer deletes the guide: from that moment the guide neither sees nor acts
    on the open task; the facts refresh that follows stops it, and its enrolment."""
    from contacts.facts import facts_refresh_pending
    from contacts.services import relationship_end
    from sop.models import Enrollment

    gone = tasks["relationships"][0]
    task = Touchpoint.objects.get(customer=gone.customer, status="task")
    relationship_end(
        event={
            "ChangeType": "del_follow_user",
            "ExternalUserID": gone.customer.external_userid,
            "UserID": tasks["mine"].wecom_userid,
            "CreateTime": str(int(timezone.now().timestamp())),
        }
    )
    client = client_for(guide_user)
    listed = client.get(reverse("guide_home")).content.decode()
    assert listed.count('class="task') == 2 and f"task-{task.pk}" not in listed
    assert "王姐0" not in listed and "冰丝睡裙" not in listed
    done = client.post(reverse("guide_task_action", args=[task.pk, "done"]))
    assert done.status_code == 404
    api = client.get(reverse("sop-touchpoint-list")).json()["results"]
    assert gone.customer_id not in {row["customer"] for row in api} and len(api) == 2
    task.refresh_from_db()
    assert task.status == "task"  # until the refresh: the pages already hide it
    facts_refresh_pending()
    task.refresh_from_db()
    assert (task.status, task.reason) == ("stopped", "contact_deleted")
    enrollment = Enrollment.objects.get(pk=task.enrollment_id)
    assert (enrollment.status, enrollment.stopped_reason) == ("stopped", "contact_deleted")
    others = Touchpoint.objects.exclude(pk=task.pk).values_list("status", flat=True)
    assert sorted(others) == ["task", "task", "task"]


@pytest.mark.django_db(transaction=True)
def test_a_merged_customers_open_task_moves_to_the_kept_customer_on_the_guides_list(
    celery_worker, client_for, operator, guide_user, tasks
):
    """An operator merges the guide's customer into a record the guide did not follow:
    the task goes with the person, and the facts refresh the merge queues (run by the
    worker after the commit) leaves it open."""
    absorbed = tasks["relationships"][0].customer
    task = Touchpoint.objects.get(customer=absorbed, status="task")
    keep = CustomerFactory(external_userid=None)  # seen only in orders: the contact moves in
    merged = client_for(operator).post(
        reverse("customer_merge", args=[keep.pk]), {"absorb": absorbed.pk}
    )
    assert merged.status_code == 302
    # The refresh takes the pending rows in the transaction that runs the listeners.
    wait_for(lambda: not CustomerFactsPending.objects.exists())
    task.refresh_from_db()
    assert (task.customer_id, task.status, task.reason) == (keep.pk, "task", "")
    listed = client_for(guide_user).get(reverse("guide_home")).content.decode()
    assert listed.count('class="task') == 3 and f"task-{task.pk}" in listed


def test_a_guide_records_that_a_customer_wants_no_more_messages(
    client_for, guide_user, other_guide_user, tasks
):
    """From a task card: recorded, the customer's open tasks stop (also a colleague's
    who follows them too); the dispatch and campaigns read the opt-out (their tests)."""
    from sop.models import OptOut

    mine, theirs = tasks["mine"], tasks["theirs"]
    customer = tasks["relationships"][0].customer
    RelationshipFactory(customer=customer, guide=theirs)
    colleague_task = Touchpoint.objects.get(guide=mine, customer=customer)
    other_plan = SopPlan.objects.create(
        name="回访", trigger=SopPlan.Trigger.MANUAL, started_at=colleague_task.due_at
    )
    step = SopStep.objects.create(plan=other_plan, position=1, script="x")
    enrollment = Enrollment.objects.create(
        plan=other_plan, customer=customer, guide=theirs, trigger_key="manual:x",
        triggered_at=colleague_task.due_at,
    )  # fmt: skip
    copy = Touchpoint.objects.create(
        enrollment=enrollment, step=step, plan=other_plan, customer=customer, guide=theirs,
        due_at=colleague_task.due_at, window_ends_at=colleague_task.window_ends_at,
        status="task",
    )  # fmt: skip
    page = client_for(guide_user).get(reverse("guide_home")).content.decode()
    assert f"/guide/tasks/{colleague_task.pk}/optout/" in page and "客户不想再收到消息" in page
    client = client_for(other_guide_user)
    assert (
        client.post(reverse("guide_task_action", args=[colleague_task.pk, "optout"])).status_code
        == 404
    )
    assert not OptOut.objects.exists()  # not theirs: nothing recorded
    answer = client_for(guide_user).post(
        reverse("guide_task_action", args=[colleague_task.pk, "optout"]), follow=True
    )
    assert "已记录客户拒绝触达" in answer.content.decode()
    optout = OptOut.objects.get()
    assert (optout.customer_id, optout.created_by_id) == (customer.pk, guide_user.pk)
    stopped = Touchpoint.objects.filter(customer=customer)
    assert {(t.status, t.reason) for t in stopped} == {("stopped", "opted_out")}
    assert copy.pk in {t.pk for t in stopped}
    others = Touchpoint.objects.exclude(customer=customer).values_list("status", flat=True)
    assert set(others) == {"task"}  # the other customers' tasks go on


def test_an_open_task_stops_when_the_customer_buys_in_a_plan_that_stops_on_purchase(tasks):
    """The order arrives (an import marks the customer's facts, the refresh tells sop):
    the task given before leaves the guide's list, with its enrolment."""
    from contacts.facts import facts_mark_pending, facts_refresh_pending

    first, second = (r.customer for r in tasks["relationships"][1:3])
    task = Touchpoint.objects.get(customer=first)
    SopPlan.objects.filter(pk=task.plan_id).update(stop_on_purchase=True)
    OrderFactory(customer=first, paid_at=timezone.now())
    OrderFactory(customer=second, paid_at=task.enrollment.triggered_at - timedelta(hours=1))
    facts_mark_pending([first.pk, second.pk])
    facts_refresh_pending()
    task.refresh_from_db()
    task.enrollment.refresh_from_db()
    assert (task.status, task.reason) == ("stopped", "purchased")
    assert (task.enrollment.status, task.enrollment.stopped_reason) == ("stopped", "purchased")
    # bought before the plan fired: the task stands
    assert Touchpoint.objects.get(customer=second).status == "task"
