"""A manager opens every 数据 page in a real browser: each chart is drawn by ECharts
(served from our own static files), the tables and definitions are there in Chinese,
the filter form reloads the page with its choices; then the latest weekly report, its
numbers checked against the rows and its cohort heatmap drawn. A screenshot of each
page is saved."""

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import translation

from analytics import dashboards, weekly
from analytics.tables import PAGES
from contacts.models import CustomerFacts, Order
from tests.analytics.purchases import purchase_days
from tests.analytics.test_comparisons import world  # noqa: F401 - the seeded shop
from tests.analytics.test_export import buyers  # noqa: F401 - BG/NBD buyers, for predictions
from tests.conftest import PASSWORD
from tests.e2e.conftest import SCREENSHOTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WINDOW = "start=2026-01-01&end=2026-07-31"
FIRST_MONDAY = date(2026, 1, 5)  # the seeded shop's orders run from 2026-01-01 for 200 days
SH = ZoneInfo("Asia/Shanghai")
PURCHASED = ("paid", "partially_refunded")
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


def test_manager_sees_every_dashboard_drawn(page, live_server, manager, world, buyers):  # noqa: F811
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
    dashboards.predicted_ltv_compute(date(2026, 6, 30))  # what the nightly refresh stores
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
        if slug == "ltv":  # the predictions, highest first, beside the historical curves
            ltv = page.locator("#table-predicted tbody tr td:last-child").all_inner_texts()
            values = [float(text.replace(",", "")) for text in ltv]
            assert len(values) >= 10 and values == sorted(values, reverse=True)
            assert page.locator("#table-model tbody tr").count() == 7
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


def _week_from_rows(week_start: date) -> dict:
    """The week's numbers recomputed from the rows (DESIGN.md "Words"), and each
    first-purchase month's cohort size up to the week's end."""
    end = week_start + timedelta(days=6)
    members = dict(CustomerFacts.objects.values_list("customer_id", "is_member"))
    days: dict[int, set[date]] = defaultdict(set)
    firsts: dict[int, date] = {}
    net = Decimal(0)  # the brand's sales: every order paid in the week
    purchased = purchase_days()  # the day each order counts on, as a purchase
    for order in Order.objects.filter(status__in=PURCHASED, paid_at__isnull=False):
        if week_start <= order.paid_at.astimezone(SH).date() <= end:
            net += order.amount - order.refund_amount
        if order.customer_id not in members:
            continue
        day = purchased[order.pk]
        if day <= end:
            firsts[order.customer_id] = min(day, firsts.get(order.customer_id, day))
        if week_start <= day <= end:
            days[order.customer_id].add(day)

    def rate(customers) -> float | None:
        customers = list(customers)
        if not customers:
            return None
        return sum(len(days[c]) >= 2 for c in customers) / len(customers)

    sizes: dict[str, int] = defaultdict(int)
    for first in firsts.values():
        sizes[f"{first.year}-{first.month:02d}"] += 1
    return {
        "buyers": len(days),
        "purchase_days": sum(len(d) for d in days.values()),
        "net_revenue": net,
        "rate": rate(days),
        "member_buyers": sum(members[c] for c in days),
        "member_rate": rate(c for c in days if members[c]),
        "non_member_rate": rate(c for c in days if not members[c]),
        "cohort_sizes": dict(sorted(sizes.items())),
    }


def test_manager_reads_the_latest_weekly_report(page, live_server, manager, world):  # noqa: F811
    # Among the weeks with member and non-member buyers and cohorts of two months at
    # least, one with a repeat buyer if any, with the most buyers: a week worth reading.
    mondays = [FIRST_MONDAY + timedelta(days=7 * n) for n in range(28)]
    weeks = {monday: _week_from_rows(monday) for monday in mondays}
    week_start, expected = max(
        (
            (monday, numbers)
            for monday, numbers in weeks.items()
            if numbers["member_rate"] is not None
            and numbers["non_member_rate"] is not None
            and len(numbers["cohort_sizes"]) >= 2
        ),
        key=lambda item: (item[1]["rate"] > 0, item[1]["buyers"]),
    )
    for monday in (week_start - timedelta(days=7), week_start):
        weekly.report_build(week_start=monday)
    week = f"{week_start.isocalendar().year}-W{week_start.isocalendar().week:02d}"
    end = week_start + timedelta(days=6)
    _login(page, live_server)
    page.goto(f"{live_server.url}/reports/")
    rows = page.locator("table.grid").first.locator("tbody tr")
    assert rows.count() == 2
    rows.first.locator("a").first.click()  # the latest report is listed first
    page.wait_for_url(f"{live_server.url}/reports/{week}/")
    assert f"私域复购周报 {week}（{week_start} 至 {end}）" in page.locator("h1").inner_text()
    # The summary table's rows: metric → this week's value, as the manager reads them.
    cells = page.eval_on_selector_all(
        ".card table.grid tbody tr",
        "rows => rows.map(row => [...row.cells].map(cell => cell.innerText.trim()))",
    )
    shown = {row[0]: row[1:] for row in cells if len(row) >= 2}
    assert shown["购买人数"][0] == str(expected["buyers"])
    assert shown["购买天数"][0] == str(expected["purchase_days"])
    assert shown["净销售额"][0] == f"¥{expected['net_revenue']:,.0f}"
    assert shown["复购率"][0] == f"{expected['rate'] * 100:.1f}%"
    assert shown["会员复购率"][0] == f"{expected['member_rate'] * 100:.1f}%"
    assert shown["会员复购率"][3] == f"{expected['member_buyers']} 位会员买家"
    assert shown["非会员复购率"][0] == f"{expected['non_member_rate'] * 100:.1f}%"
    assert page.locator("h2", has_text="本周要点").count() == 1
    assert page.locator("text=本周要点 >> xpath=following-sibling::ul[1]/li").count() == 3
    # The cohort heatmap image: one row per first-purchase month, its size beside it.
    heatmap = page.locator(".heatmap svg")
    labels = heatmap.locator("text").all_text_contents()
    months = [text for text in labels if len(text) == 7 and text[4] == "-"]
    box = heatmap.bounding_box()  # drawn: a row of cells a cohort
    assert box and box["width"] > 200 and box["height"] >= 30 * len(months)
    sizes = [int(text.removesuffix("人")) for text in labels if text.endswith("人")]
    assert dict(zip(months, sizes, strict=True)) == expected["cohort_sizes"]
    assert months[-1] <= f"{end.year}-{end.month:02d}"
    assert heatmap.locator("rect").count() > len(months)
    assert page.locator("a", has_text="下载 XLSX").get_attribute("href") == (
        f"/reports/{week}/xlsx/"
    )
    page.screenshot(path=SCREENSHOTS / "weekly-report.png", full_page=True)
