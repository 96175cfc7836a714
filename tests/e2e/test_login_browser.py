"""A user's first minute, in a real browser: log in, see the navigation, log out."""

import pytest

from tests.conftest import PASSWORD
from tests.e2e.conftest import SCREENSHOTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _login(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")


def test_operator_logs_in_sees_navigation_and_logs_out(page, live_server, operator):
    page.goto(f"{live_server.url}/")
    page.screenshot(path=SCREENSHOTS / "login.png")
    _login(page, live_server, "operator")
    nav = page.locator("nav.mainnav a")
    assert nav.all_inner_texts() == ["客户", "标签", "SOP", "活动", "数据", "报告", "同步"]
    page.screenshot(path=SCREENSHOTS / "home-operator.png")
    page.click("text=数据")
    assert page.locator("h1").inner_text() == "数据"
    assert page.locator("#dashboard-filters").is_visible()
    page.click("text=退出")
    assert page.url.startswith(f"{live_server.url}/login/")


def test_guide_gets_the_phone_page_only(browser, live_server, guide_user):
    context = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
    page = context.new_page()
    _login(page, live_server, "guide1")
    assert page.url == f"{live_server.url}/guide/"
    assert page.locator("nav.mainnav").count() == 0
    page.screenshot(path=SCREENSHOTS / "guide-home.png")
    response = page.goto(f"{live_server.url}/customers/")
    assert response.status == 403
    context.close()
