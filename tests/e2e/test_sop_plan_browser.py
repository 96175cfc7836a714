"""An operator builds an SOP plan in a real browser: two steps on the timeline, variables
inserted with their buttons, the scripts previewed for a sample customer of the audience,
saved, and listed with the other plans."""

import re
from datetime import time, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from contacts.facts import facts_refresh
from contacts.models import Guide, OrderLine
from sop.models import SopPlan
from tests.conftest import PASSWORD
from tests.contacts.factories import CustomerFactory, OrderFactory, RelationshipFactory
from tests.e2e.conftest import SCREENSHOTS
from tests.sop.test_pages import build_people, build_sop_data

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def shoppers(guide_user):
    """王芳 (remark 芳姐) bought 冰丝睡衣 and follows 张晓 of 上海静安店; 李娜 follows him
    too but never bought."""
    guide = Guide.objects.get(wecom_userid="guide0001")
    wang = CustomerFactory(name="王芳")
    li = CustomerFactory(name="李娜")
    RelationshipFactory(customer=li, guide=guide)
    RelationshipFactory(customer=wang, guide=guide, remark="芳姐")
    order = OrderFactory(
        customer=wang, paid_at=timezone.now() - timedelta(days=5), amount=Decimal(199)
    )
    OrderLine.objects.create(
        order=order,
        line_no=1,
        sku="PJ-01",
        product_name="冰丝睡衣",
        quantity=1,
        unit_price=Decimal(199),
        line_amount=Decimal(199),
    )
    facts_refresh()
    return {"wang": wang, "li": li}


def _login(page, live_server, next_path: str) -> None:
    page.goto(f"{live_server.url}/login/?next={next_path}")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}{next_path}")


def test_operator_builds_a_plan_previews_its_scripts_and_saves_it(
    page, live_server, operator, shoppers
):
    _login(page, live_server, "/sop/plans/new/")
    page.fill("#id_name", "首单关怀")
    page.fill("#id_description", "首次下单后的关怀")
    page.select_option("#id_trigger", "days_since_purchase")
    assert page.locator("#id_trigger_days").is_visible()
    assert not page.locator("#id_trigger_state").is_visible()
    page.fill("#id_trigger_days", "3")
    page.fill("#id_priority", "4")

    # The audience, with tagging's builder: buyers only (王芳).
    page.click("#builder .grouphead .add-condition")
    page.wait_for_function(
        "document.getElementById('preview-status').textContent.includes('匹配 1 位客户')"
    )

    # Step 1 (there from the start): 称呼 and 最近购买商品 inserted with their buttons.
    first = page.locator("#steps li.step").nth(0)
    script = first.locator("textarea.script")
    script.fill("")
    first.locator("button.variable", has_text="{称呼}").click()
    script.press("End")
    script.type("您好，")
    first.locator("button.variable", has_text="{最近购买商品}").click()
    script.type("穿着还合适吗？")
    assert script.input_value() == "{称呼}您好，{最近购买商品}穿着还合适吗？"
    first.locator("input.offset-hours").fill("2")
    first.locator("button.add-attachment").click()
    first.locator("select.attachment-type").select_option("link")
    first.locator("input.attachment-title").fill("洗护指南")
    first.locator("input.attachment-url").fill("https://example.com/care")

    # Step 2: added on the timeline, a call three days later in an afternoon window.
    page.click("#add-step")
    second = page.locator("#steps li.step").nth(1)
    assert second.locator("input.offset-days").input_value() == "1"
    second.locator("input.offset-days").fill("3")
    second.locator("input.window-start").fill("14:00")
    second.locator("input.window-end").fill("18:00")
    second.locator("select.action").select_option("call")
    second.locator("textarea.script").fill("我是{门店}的{导购姓名}，给您回个电话")

    page.click("#script-preview")
    page.wait_for_function(
        "document.getElementById('script-preview-status').textContent.includes('王芳')"
    )
    assert "导购：张晓" in page.locator("#script-preview-status").inner_text()
    rendered = page.locator("#steps .rendered-text").all_inner_texts()
    assert rendered == ["芳姐您好，冰丝睡衣穿着还合适吗？", "我是上海静安店的张晓，给您回个电话"]
    # Edits after a preview re-render it.
    second.locator("textarea.script").fill("{客户姓名}，明天见")
    page.wait_for_function(
        "document.querySelectorAll('#steps .rendered-text')[1].textContent === '王芳，明天见'"
    )
    # Another sample customer, found by a search.
    page.fill("#sample-search", "李娜")
    page.press("#sample-search", "Enter")
    page.wait_for_function(
        "document.getElementById('script-preview-status').textContent.includes('李娜')"
    )
    assert page.locator("#steps .rendered-text").first.inner_text() == "李娜您好，穿着还合适吗？"
    page.screenshot(path=SCREENSHOTS / "sop-plan-editor.png", full_page=True)

    # A full-page screenshot resizes the viewport, and the first mouse click after it can
    # land on the old layout; the keyboard presses the button wherever it is.
    page.focus("#plan-save")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/sop/plans/\d+/$"))
    assert "计划「首单关怀」已保存" in page.locator(".message").inner_text()
    page.screenshot(path=SCREENSHOTS / "sop-plan-detail.png", full_page=True)
    plan = SopPlan.objects.get()
    assert (plan.trigger, plan.trigger_params, plan.priority) == (
        "days_since_purchase",
        {"days": 3},
        4,
    )
    assert plan.audience == {"all": [{"fact": "purchase_days", "op": ">=", "value": 1}]}
    steps = list(plan.steps.order_by("position"))
    assert [
        (s.offset_days, s.offset_hours, s.window_start, s.window_end, s.action, s.script)
        for s in steps
    ] == [
        (0, 2, time(10), time(21), "message", "{称呼}您好，{最近购买商品}穿着还合适吗？"),
        (3, 0, time(14), time(18), "call", "{客户姓名}，明天见"),
    ]
    assert steps[0].attachments == [
        {"type": "link", "title": "洗护指南", "url": "https://example.com/care"}
    ]

    page.goto(f"{live_server.url}/sop/")
    row = page.locator("#plans tbody tr").first
    assert "首单关怀" in row.inner_text() and "距最近购买 3 天" in row.inner_text()
    page.screenshot(path=SCREENSHOTS / "sop-plan-list.png", full_page=True)


@pytest.fixture
def sop_data(guide_user, other_guide_user) -> dict:
    return build_sop_data(build_people())


def test_plans_with_their_numbers_and_the_touch_log(page, live_server, operator, sop_data):
    """The list, a plan's page, the policy and the log, with hand-built numbers (see
    tests/sop/test_pages.py's sop_data): screenshots of how they read."""
    welcome = sop_data["welcome"]
    _login(page, live_server, "/sop/")
    row = page.locator(f"#plans tr[data-plan='{welcome.pk}']")
    assert "超过每日上限 1" in row.inner_text() and "客户已下单 1" in row.inner_text()
    page.screenshot(path=SCREENSHOTS / "sop-plan-list-numbers.png", full_page=True)
    page.goto(f"{live_server.url}/sop/plans/{welcome.pk}/")
    assert page.locator("#step-stats tbody tr").count() == 2
    page.screenshot(path=SCREENSHOTS / "sop-plan-numbers.png", full_page=True)
    page.goto(f"{live_server.url}/sop/policy/")
    assert page.locator("#id_quiet_start").input_value() == "21:30"
    page.screenshot(path=SCREENSHOTS / "sop-policy.png", full_page=True)
    page.goto(f"{live_server.url}/sop/touches/")
    assert page.locator("#touches tbody tr").count() == 3
    page.screenshot(path=SCREENSHOTS / "sop-touches.png", full_page=True)
