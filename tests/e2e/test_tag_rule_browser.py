"""An operator builds a tag rule in a real browser: the visual builder writes the JSON,
the live audience follows every change, and the saved rule is on the tag list."""

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from contacts.facts import facts_refresh
from contacts.models import Customer
from tagging import tasks
from tagging.models import CustomerTag, Tag, TagGroup, TagRule
from tests.conftest import PASSWORD
from tests.contacts.factories import CustomerFactory, OrderFactory
from tests.e2e.conftest import SCREENSHOTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def buyers(db):
    """甲: member, two purchase days; 乙: member, one; 丙: not a member, one; 丁: none."""
    jia = CustomerFactory(name="甲")
    yi = CustomerFactory(name="乙")
    bing = CustomerFactory(name="丙", is_member=False, external_userid=None)
    CustomerFactory(name="丁")
    for customer, days in ((jia, ["2026-05-01", "2026-06-01"]), (yi, ["2026-06-02"])):
        for day in days:
            OrderFactory(
                customer=customer,
                paid_at=datetime.fromisoformat(f"{day}T06:00:00+00:00"),
                amount=Decimal("199.00"),
            )
    OrderFactory(customer=bing, paid_at=datetime(2026, 6, 3, 6, tzinfo=UTC))
    facts_refresh()


@pytest.fixture
def enqueued(monkeypatch) -> list[str]:
    """The live server runs in this process: record retags instead of sending them."""
    sent: list[str] = []
    for task in (tasks.retag_full_task, tasks.retag_pending):
        monkeypatch.setattr(task, "delay", lambda *a, _n=task.name, **k: sent.append(_n))
        monkeypatch.setattr(task, "apply_async", lambda *a, _n=task.name, **k: sent.append(_n))
    return sent


def _login(page, live_server, next_path: str) -> None:
    page.goto(f"{live_server.url}/login/?next={next_path}")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}{next_path}")


def test_operator_builds_a_rule_with_live_audience_and_saves_it(
    page, live_server, operator, buyers, enqueued
):
    _login(page, live_server, "/tags/rules/new/")
    status = page.locator("#preview-status")
    assert "添加至少一个条件" in status.inner_text()

    page.fill("#id_name", "复购会员")
    page.fill("#id_new_group", "复购分层")
    page.click("#builder .grouphead .add-condition")
    first = page.locator("#builder .leaf").nth(0)
    assert first.locator("select.fact").input_value() == "purchase_days"
    page.wait_for_function(
        "document.getElementById('preview-status').textContent.includes('匹配 3 位客户')"
    )
    first.locator("input.value").fill("2")
    page.wait_for_function(
        "document.getElementById('preview-status').textContent.includes('匹配 1 位客户')"
    )
    assert page.locator("#preview-sample tbody tr").all_inner_texts()[0].startswith("甲")

    page.click("#builder .grouphead .add-condition")
    second = page.locator("#builder .leaf").nth(1)
    second.locator("select.fact").select_option("is_member")
    page.locator("#builder select.mode").first.select_option("any")
    page.wait_for_function(
        "document.getElementById('preview-status').textContent.includes('匹配 3 位客户')"
    )
    page.locator("#builder select.mode").first.select_option("all")
    page.wait_for_function(
        "document.getElementById('preview-status').textContent.includes('匹配 1 位客户')"
    )
    written = json.loads(page.locator("#id_condition").input_value())
    assert written == {
        "all": [
            {"fact": "purchase_days", "op": ">=", "value": 2},
            {"fact": "is_member", "op": "is", "value": True},
        ]
    }
    page.screenshot(path=SCREENSHOTS / "tag-rule-editor.png", full_page=True)

    page.click("#rule-save")
    page.wait_for_url(f"{live_server.url}/tags/")
    assert "规则「复购会员」已保存" in page.locator(".message").inner_text()
    row = page.locator("#rules tbody tr").first
    assert "复购会员" in row.inner_text() and "复购分层" in row.inner_text()
    page.screenshot(path=SCREENSHOTS / "tag-list.png", full_page=True)
    rule = TagRule.objects.select_related("tag__group").get()
    assert (rule.tag.name, rule.tag.group.name, rule.condition) == ("复购会员", "复购分层", written)
    assert enqueued  # the full retag was scheduled once the rule was committed


def test_customer_page_loads_its_tags_and_adds_a_manual_one(
    page, live_server, operator, buyers, enqueued
):
    vip = Tag.objects.create(group=TagGroup.objects.create(name="运营标记"), name="VIP")
    jia = Customer.objects.get(name="甲")
    _login(page, live_server, f"/customers/{jia.pk}/")
    box = page.locator("#customer-tags")
    box.locator("text=暂无标签").wait_for()
    box.locator("select[name=tag]").select_option(str(vip.pk))
    box.locator("button[value=add]").click()
    box.locator(".tagchip", has_text="VIP").wait_for()
    assert "运营小王" in box.locator("table.history tbody").inner_text()
    page.screenshot(path=SCREENSHOTS / "customer-tags.png", full_page=True)
    assert list(CustomerTag.objects.values_list("customer_id", "tag_id")) == [(jia.pk, vip.pk)]
    box.locator("button[value=remove]").click()
    box.locator("text=暂无标签").wait_for()
    assert CustomerTag.objects.count() == 0

    page.goto(f"{live_server.url}/tags/{vip.pk}/?show=all")
    assert page.locator("table.grid").first.locator("tbody tr").count() == 4
    page.screenshot(path=SCREENSHOTS / "tag-customers.png", full_page=True)
    page.goto(f"{live_server.url}/tags/settings/")
    assert page.locator("#id_lifecycle_sleeping_after_days").input_value() == "90"
    page.screenshot(path=SCREENSHOTS / "tag-settings.png", full_page=True)
