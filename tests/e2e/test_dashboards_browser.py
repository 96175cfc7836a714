"""A manager opens every 数据 page in a real browser: each chart is drawn by ECharts
(served from our own static files), the tables and definitions are there in Chinese,
the filter form reloads the page with its choices; a screenshot of each page is saved."""

import pytest
from django.utils import translation

from analytics.tables import PAGES
from tests.analytics.test_comparisons import world  # noqa: F401 - the seeded shop
from tests.conftest import PASSWORD
from tests.e2e.conftest import SCREENSHOTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WINDOW = "start=2026-01-01&end=2026-07-31"
HEADINGS = {
    "repurchase": "复购率与回购率趋势",
    "cohorts": "留存率",
    "conversion": "按渠道码",
    "intervals": "复购间隔分布",
    "ltv": "历史 LTV",
    "rfm": "RFM 八类分群",
    "members": "会员与非会员",
    "guides": "导购排行",
    "growth": "每日新增、流失与净增",
}


def _login(page, live_server) -> None:
    page.goto(f"{live_server.url}/login/?next=/analytics/")
    page.fill("#id_username", "manager")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/analytics/")


def test_manager_sees_every_dashboard_drawn(page, live_server, manager, world):  # noqa: F811
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # Failed loads are reported by their responses (the browser's own favicon probe aside).
    page.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on(
        "response",
        lambda response: (
            errors.append(f"{response.status} {response.url}")
            if response.status >= 400 and not response.url.endswith("/favicon.ico")
            else None
        ),
    )
    page.on("requestfailed", lambda request: errors.append(f"{request.url} {request.failure}"))
    _login(page, live_server)
    for slug, dashboard in PAGES.items():
        path = "/analytics/" if slug == "repurchase" else f"/analytics/{slug}/"
        page.goto(f"{live_server.url}{path}?{WINDOW}")
        charts = page.locator("[data-chart]")
        expected = charts.count()
        assert expected >= 1, slug
        page.wait_for_function(
            f"document.querySelectorAll('[data-drawn=true]').length === {expected}"
        )
        # ECharts drew into each chart element (a canvas with a size).
        for index in range(expected):
            box = charts.nth(index).locator("canvas").first.bounding_box()
            assert box and box["width"] > 200 and box["height"] > 150, (slug, index)
        assert page.locator("h1").inner_text() == "数据"
        current = page.locator("nav.subnav a[aria-current=page]").inner_text()
        with translation.override("zh-hans"):
            assert current == str(dashboard.title)
        assert HEADINGS[slug] in page.locator(".dash-grid").inner_text()
        assert page.locator("#as-of").inner_text().startswith("数据计算于")
        assert page.locator(".definitions li").count() >= 1
        assert page.locator("nav.mainnav a[aria-current=page]").inner_text() == "数据"
        page.screenshot(path=SCREENSHOTS / f"dashboard-{slug}.png", full_page=True)
    assert errors == []


def test_the_filter_form_reloads_with_its_choices(page, live_server, manager, world):  # noqa: F811
    _login(page, live_server)
    page.goto(f"{live_server.url}/analytics/?{WINDOW}")
    form = page.locator("#dashboard-filters")
    form.locator("select[name=period]").select_option("week")
    form.locator("select[name=member]").select_option("member")
    form.locator("button[type=submit]").click()
    page.wait_for_url("**period=week**")
    assert "member=member" in page.url
    page.wait_for_function("document.querySelectorAll('[data-drawn=true]').length > 0")
    first_period = page.locator("#table-trend tbody tr").first.inner_text()
    assert first_period.startswith("2026-W01")
    assert form.locator("select[name=member]").input_value() == "member"
    csv_link = page.locator("#table-trend .exports a").first.get_attribute("href")
    assert "period=week" in csv_link and "member=member" in csv_link
    page.screenshot(path=SCREENSHOTS / "dashboard-repurchase-weekly-members.png", full_page=True)
