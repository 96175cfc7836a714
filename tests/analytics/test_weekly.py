"""The weekly report: its numbers on a week whose answer is worked out by hand, built once,
delivered by e-mail and WeCom (the emulator), failures recorded and retried, pages."""

import json
import re
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from html import escape
from io import BytesIO, StringIO
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from django.core import mail
from django.core.management import call_command
from django.urls import reverse
from django.utils import translation

from analytics import weekly
from analytics.models import ReportDelivery, ReportRecipient, WeeklyReport
from contacts.facts import facts_refresh
from scrm.wecom.emulator import Config, generate
from scrm.wecom.gateway import WeComGateway
from tests.contacts.factories import CustomerFactory, OrderFactory
from tests.wecom import CUSTOMERS, GUIDES, SEED

pytestmark = pytest.mark.django_db
SH = ZoneInfo("Asia/Shanghai")
WEEK = date(2026, 11, 16)  # Monday of 2026-W47


def at(day: str) -> datetime:
    return datetime.combine(date.fromisoformat(day), time(12), tzinfo=SH)


@pytest.fixture
def orders():
    """W46 (11-09..15): a and b buy once each. W47 (11-16..22): a twice (a repeat buyer),
    c once, d once (not a member): 3 buyers, 4 purchase days, 1 repeat buyer; of W46's
    buyers a came back."""
    a, b, c = (CustomerFactory() for _ in range(3))
    d = CustomerFactory(is_member=False, external_userid=None, joined_at=None)
    for customer, day in [
        (a, "2026-11-10"),
        (b, "2026-11-12"),
        (a, "2026-11-16"),
        (a, "2026-11-20"),
        (d, "2026-11-18"),
    ]:
        OrderFactory(customer=customer, paid_at=at(day), amount=Decimal("100"))
    for amount in ("100", "50"):
        OrderFactory(
            customer=c,
            paid_at=at("2026-11-22"),
            amount=Decimal(amount),
            channel="douyin",
            parent_order_id="DY-1",
        )
    facts_refresh()


@pytest.fixture
def app(emulator_server, settings):
    emulator, served = emulator_server
    emulator.data = generate(seed=SEED, guides=GUIDES, customers=CUSTOMERS)
    emulator.config = Config()
    emulator.revoke_tokens()
    settings.WECOM_API_BASE = served.base_url
    return emulator


def test_the_weeks_numbers(orders):
    data = weekly.report_data(week_start=WEEK)
    assert data["week"] == "2026-W47"
    assert (data["buyers"], data["purchase_days"], data["orders"]) == (3, 4, 4)
    assert data["repurchase_rate"] == pytest.approx(1 / 3)
    assert data["repurchase_rate_previous"] == 0.0
    assert data["returning_rate"] == 0.5
    assert data["buyers_change"] == 0.5  # 2 → 3
    assert (data["members"]["buyers"], data["non_members"]["buyers"]) == (2, 1)
    assert data["members"]["rate"] == 0.5  # a of a and c
    assert data["net_revenue"] == 450.0
    # the week before: a on 11-10 and b on 11-12, 100 each
    previous = ("buyers_previous", "purchase_days_previous", "orders_previous")
    assert tuple(data[key] for key in previous) == (2, 2, 2)
    assert data["net_revenue_previous"] == 200.0 and data["net_revenue_change"] == 1.25
    assert data["purchase_days_change"] == 1.0  # 2 → 4
    assert data["repurchase_rate_points"] == pytest.approx(1 / 3)  # 0 → 1/3
    assert len(data["sentences"]) == 3


def test_a_checkout_split_over_the_weeks_midnight_is_the_earlier_weeks_order():
    buyer = CustomerFactory()
    sunday_night = datetime(2026, 11, 15, 23, 50, tzinfo=SH)  # W46's last minutes
    for paid_at in (sunday_night, sunday_night + timedelta(minutes=20)):  # W47's first
        OrderFactory(
            customer=buyer,
            paid_at=paid_at,
            amount=Decimal("80"),
            channel="douyin",
            parent_order_id="DY-9",
        )
    facts_refresh()
    earlier = weekly.report_data(week_start=WEEK - timedelta(days=7))
    later = weekly.report_data(week_start=WEEK)
    assert (earlier["buyers"], earlier["purchase_days"], earlier["orders"]) == (1, 1, 1)
    assert (later["buyers"], later["purchase_days"], later["orders"]) == (0, 0, 0)
    # Sales are the week's payments: 80 yuan each side of midnight.
    assert earlier["net_revenue"] == later["net_revenue"] == 80.0


def test_built_once_and_delivered_with_failures_recorded(orders, app):
    ReportRecipient.objects.create(name="李强", email="li@example.com", wecom_userid="guide0001")
    ReportRecipient.objects.create(name="离职店长", wecom_userid="nobody")
    report, created = weekly.report_build(week_start=WEEK)
    again, created_again = weekly.report_build(week_start=WEEK)
    assert (created, created_again, again.pk) == (True, False, report.pk)
    assert WeeklyReport.objects.count() == 1
    result = weekly.report_deliver(report=report, gateway=WeComGateway.for_app())
    assert (result.sent, result.failed) == (2, 1)
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["li@example.com"]
    assert mail.outbox[0].attachments[0][0] == "weekly-2026-W47.xlsx"
    wecom = [m for m in app.data.app_messages if m["userid"] == "guide0001"]
    assert len(wecom) == 1 and "2026-W47" in wecom[0]["text"]["content"]
    failed = ReportDelivery.objects.get(status="failed")
    assert failed.recipient.name == "离职店长" and failed.attempts == 1 and failed.error
    # a retry sends only what failed
    weekly.report_deliver(report=report, gateway=WeComGateway.for_app())
    assert len(mail.outbox) == 1
    assert ReportDelivery.objects.get(pk=failed.pk).attempts == 2


def test_xlsx_and_command(orders):
    out = StringIO()
    call_command("weekly_report", "--week", "2026-W47", "--json", stdout=out)
    printed = json.loads(out.getvalue())
    assert (printed["week"], printed["created"], printed["report"]["buyers"]) == (
        "2026-W47",
        True,
        3,
    )
    workbook = openpyxl.load_workbook(BytesIO(bytes(WeeklyReport.objects.get().xlsx)))
    summary = {row[0]: row[1] for row in workbook["概览"].values if len(row) > 1}
    assert summary["购买人数"] == 3 and summary["复购率"] == pytest.approx(1 / 3)
    assert "同期群" in workbook.sheetnames


def test_pages(orders, client_for, manager, guide_user):
    weekly.report_build(week_start=WEEK)
    client = client_for(manager)
    assert "2026-W47" in client.get(reverse("reports")).content.decode()
    page = client.get(reverse("report_detail", args=["2026-W47"])).content.decode()
    assert "<svg" in page and "复购率" in page
    # this week, the week before and the change: buyers 3 and 2, revenue ¥450 and ¥200
    assert "<td>3</td><td>2</td><td>+50.0%</td>" in page
    assert "<td>¥450</td><td>¥200</td><td>+125.0%</td>" in page
    # the highlights in the reader's language, from the stored numbers
    report = WeeklyReport.objects.get(week="2026-W47")
    with translation.override("en"):
        english = weekly.sentences(report.data)
    assert len(english) == 3 and "3 buyers, 50.0% more than last week." in english
    assert not any(re.search("[\u4e00-\u9fff]", s) for s in english if "guide" not in s)
    url = reverse("report_detail", args=["2026-W47"])
    in_english = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert all(escape(sentence) in in_english for sentence in english)
    assert report.data["sentences"][0] in page  # Chinese, as made with the report
    response = client.get(reverse("report_xlsx", args=["2026-W47"]))
    assert response["Content-Type"].startswith("application/vnd.openxmlformats")
    summary = openpyxl.load_workbook(BytesIO(response.content))["概览"]
    formats = {row[0].value: row[1].number_format for row in summary.iter_rows() if len(row) > 1}
    assert (formats["净销售额"], formats["复购率"]) == ("#,##0.00", "0.0%")
    assert formats["购买人数"] == "General"
    # managers change the recipients, and nothing else
    client.post(
        reverse("report_recipient_save"),
        {"name": "王敏", "email": "w@example.com", "is_active": "on"},
    )
    assert ReportRecipient.objects.get().email == "w@example.com"
    client.post(reverse("report_recipient_save"), {"name": "坏邮箱", "email": "not-an-email"})
    assert ReportRecipient.objects.count() == 1
    guide = client_for(guide_user)
    assert guide.get(reverse("reports")).status_code == 403
    assert (
        guide.post(reverse("report_recipient_save"), {"name": "x", "email": "x@x.cn"}).status_code
        == 403
    )
    assert ReportRecipient.objects.count() == 1


@pytest.mark.parametrize(
    ("members", "others", "expected"),
    [
        (0.009, 0.013, "私域会员的复购率为 0.9%，比非会员（1.3%）低 0.4 个百分点。"),
        (0.25, 0.1, "私域会员的复购率为 25.0%，比非会员（10.0%）高 15.0 个百分点。"),
    ],
)
def test_the_member_sentence_names_both_rates_and_the_gap_in_points(members, others, expected):
    data = {
        "buyers_change": None,
        "repurchase_rate": None,
        "repurchase_rate_previous": None,
        "returning_rate": None,
        "returning_rate_previous": None,
        "members": {"rate": members},
        "non_members": {"rate": others},
        "sop": {"given": 0},
        "ranking": {"guides": {"top": []}},
        "net_revenue": Decimal(0),
        "orders": 0,
    }
    assert expected in weekly.sentences(data)


def test_a_report_stored_before_the_moves_in_points_shows_them(orders, client_for, manager):
    report, _ = weekly.report_build(week_start=WEEK)
    data = {k: v for k, v in report.data.items() if not k.endswith("_points")}
    WeeklyReport.objects.filter(pk=report.pk).update(data=data)
    page = client_for(manager).get(reverse("report_detail", args=["2026-W47"])).content.decode()
    assert "<td>+33.3 个百分点</td>" in page  # 复购率 0 → 1/3


def _ranking_by_hand(orders_by_customer, guides_of, names, active) -> list[tuple[str, int, float]]:
    """(name, buyers, net) for every active entity, by net desc then name."""
    rows = []
    for entity in active:
        buyers = [c for c, _net in orders_by_customer if entity in guides_of[c]]
        net = sum(n for c, n in orders_by_customer if entity in guides_of[c])
        rows.append((names[entity], len(set(buyers)), float(net)))
    return sorted(rows, key=lambda row: (-row[2], row[0]))


@pytest.mark.parametrize("guides_count", [3, 12])
def test_the_ranking_lists_everyone_who_sold_nothing_too_without_overlap(guides_count):
    """Few guides: one list of all (no top five that is also the bottom five); many: the
    first and last five, apart. Guides who sold nothing are ranked, at ¥0; a customer
    followed by two guides counts for both; an inactive guide is not ranked."""
    from tests.contacts.factories import GuideFactory, RelationshipFactory, StoreFactory

    store = StoreFactory(name="甲店")
    guides = [GuideFactory(name=f"导购{n:02d}", store=store) for n in range(guides_count)]
    gone = GuideFactory(name="离职导购", store=store, is_active=False)
    sold = []  # (customer, net)
    followed = {}
    for n, guide in enumerate(guides[: guides_count - 1]):  # the last guide sells nothing
        customer = CustomerFactory()
        followed[customer.pk] = {guide.pk}
        RelationshipFactory(customer=customer, guide=guide)
        if n == 0:  # shared with the next guide, and the one who left
            RelationshipFactory(customer=customer, guide=guides[1])
            RelationshipFactory(customer=customer, guide=gone)
            followed[customer.pk] |= {guides[1].pk, gone.pk}
        net = Decimal(100 + 10 * n)
        OrderFactory(customer=customer, paid_at=at("2026-11-17"), amount=net)
        OrderFactory(customer=customer, paid_at=at("2026-11-10"), amount=Decimal(999))  # W46
        sold.append((customer.pk, net))
    facts_refresh()
    ranking = weekly.report_data(week_start=WEEK)["ranking"]
    names = {g.pk: g.name for g in guides}
    expected = _ranking_by_hand(sold, followed, names, [g.pk for g in guides])
    shown = {
        label: [(r["name"], r["buyers"], r["net_revenue"]) for r in rows]
        for label, rows in ranking["guides"].items()
    }
    if guides_count <= 2 * weekly.RANKED:
        assert shown == {"top": expected, "bottom": []}
    else:
        assert shown == {"top": expected[:5], "bottom": expected[-5:][::-1]}
    assert expected[-1] == (guides[-1].name, 0, 0.0)
    assert "离职导购" not in str(ranking)
    stores = ranking["stores"]
    assert stores["bottom"] == [] and [r["name"] for r in stores["top"]] == ["甲店"]
    assert stores["top"][0]["net_revenue"] == float(sum(net for _c, net in sold))


def test_the_brands_net_revenue_names_the_part_no_customer_was_matched_to(
    orders, client_for, manager
):
    OrderFactory(customer=None, paid_at=at("2026-11-19"), amount=Decimal("55.50"))
    data = weekly.report_data(week_start=WEEK)
    assert (data["net_revenue"], data["net_revenue_unmatched"]) == (505.5, 55.5)
    assert data["buyers"] == 3  # the dashboards' customers: the order has none
    weekly.report_build(week_start=WEEK)
    page = client_for(manager).get(reverse("report_detail", args=["2026-W47"])).content.decode()
    assert "其中 ¥56 是未匹配到客户的订单" in page


def test_a_week_without_sales_names_no_top_guide(guide_user):
    data = weekly.report_data(week_start=WEEK)
    assert data["ranking"]["guides"]["top"][0]["net_revenue"] == 0
    assert not any("贡献最多的导购" in sentence for sentence in data["sentences"])
