"""The guide's task list on a phone, as a guide uses it: sees today's tasks with the
script filled in, copies it, marks one done, skips one with a reason, snoozes one."""

from datetime import timedelta

import pytest
from django.utils import timezone

from contacts.facts import facts_refresh
from contacts.models import Guide
from sop import scheduling, triggers
from sop.models import SopPlan, SopStep, Touchpoint
from tests.contacts.factories import RelationshipFactory
from tests.e2e.conftest import SCREENSHOTS
from tests.e2e.test_login_browser import _login
from tests.sop.windows import keep_tasks_open, no_quiet_hours, window_around_now

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_guide_works_through_the_days_tasks(browser, live_server, guide_user):
    guide = Guide.objects.get(user=guide_user)
    relationships = [RelationshipFactory(guide=guide, remark=f"王姐{n}") for n in range(3)]
    facts_refresh()
    now = timezone.localtime()
    plan = SopPlan.objects.create(
        name="新客欢迎", trigger=SopPlan.Trigger.MANUAL, started_at=now - timedelta(days=1)
    )
    SopStep.objects.create(
        plan=plan,
        position=1,
        script="{称呼}您好，我是{导购姓名}～",
        **window_around_now(before=timedelta(minutes=10)),
    )
    no_quiet_hours()
    triggers.manual(plan=plan, customer_ids=[r.customer_id for r in relationships])
    assert scheduling.dispatch(now=timezone.now()).created == 3
    keep_tasks_open(hours=2)

    context = browser.new_context(
        locale="zh-CN", viewport={"width": 390, "height": 844}, permissions=["clipboard-write"]
    )
    page = context.new_page()
    _login(page, live_server, "guide1")
    assert page.url == f"{live_server.url}/guide/"
    cards = page.locator("#today article.task")
    assert cards.count() == 3
    assert f"王姐0您好，我是{guide.name}～" in page.locator("#today").inner_text()
    page.screenshot(path=SCREENSHOTS / "guide-tasks.png", full_page=True)

    first = cards.nth(0)
    first.locator("button.copy").click()
    first.get_by_role("button", name="完成").click()
    page.wait_for_load_state("load")
    assert page.locator("#today article.task").count() == 2
    second = page.locator("#today article.task").nth(0)
    second.locator("summary").click()
    second.get_by_label("联系不上").check()
    second.get_by_role("button", name="确认跳过").click()
    page.wait_for_load_state("load")
    page.locator("#today article.task").nth(0).get_by_role("button", name="推迟1小时").click()
    page.wait_for_load_state("load")
    assert page.locator("#today article.task").count() == 0
    page.screenshot(path=SCREENSHOTS / "guide-tasks-done.png", full_page=True)
    statuses = sorted(Touchpoint.objects.filter(guide=guide).values_list("status", "reason"))
    assert statuses == [("done", ""), ("skipped", "联系不上"), ("task", "")]
    context.close()
