"""The 数据 pages, their exports and the analytics API: who may open them, the numbers
they show on a hand-built shop (worked out below), exports equal to the tables, the
cache (few queries on a hit, recomputed after a generation bump) and its refresh."""

import csv
import io
import re
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation
from openpyxl import load_workbook

from analytics import cache, dashboards, services, tasks
from analytics.tables import PAGES
from contacts.facts import facts_mark_pending, facts_refresh, facts_refresh_pending
from contacts.models import OrderLine, RelationshipEvent
from scrm.celery import route_task
from sop.models import Enrollment, SopPlan, SopStep, Touchpoint
from tests.contacts.factories import (
    CustomerFactory,
    GuideFactory,
    OrderFactory,
    RelationshipFactory,
)

pytestmark = pytest.mark.django_db
SH = ZoneInfo("Asia/Shanghai")
MARCH = {"start": "2026-03-01", "end": "2026-03-31"}
PAGE_URLS = [page.url_name for page in PAGES.values()]
API_METRICS = list(dashboards.METRICS)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SH)


def buy(customer, when: str, amount: str, channel: str, category: str, status: str = "paid"):
    refund = Decimal(amount) if status == "refunded" else Decimal(0)
    order = OrderFactory(
        customer=customer,
        paid_at=at(when),
        amount=Decimal(amount),
        refund_amount=refund,
        status=status,
        channel=channel,
    )
    OrderLine.objects.create(
        order=order,
        line_no=1,
        sku="S1",
        category=category,
        quantity=1,
        unit_price=Decimal(amount),
        line_amount=Decimal(amount),
        refund_amount=refund,
    )
    return order


def touch(plan, step, relationship, *, due: str, done: str) -> Touchpoint:
    enrollment = Enrollment.objects.create(
        plan=plan,
        customer=relationship.customer,
        guide=relationship.guide,
        trigger_key=f"{relationship.customer_id}-{due}",
        triggered_at=at(due),
    )
    return Touchpoint.objects.create(
        enrollment=enrollment,
        step=step,
        plan=plan,
        customer=relationship.customer,
        guide=relationship.guide,
        due_at=at(due),
        window_ends_at=at(due) + timedelta(hours=8),
        status=Touchpoint.Status.DONE,
        done_at=at(done),
    )


@pytest.fixture
def shop(store):
    """March 2026. 甲 (member since 03-02 through pkg_card) buys 03-05 and 03-20 (文胸,
    tmall, 100 + 200); 乙 (member since 03-10) buys 03-11 (睡衣, miniapp, 300); 丙 (not a
    member) buys 02-10 (内裤, jd, 80) and twice on 03-08 (split, 50 + 70); 丁's only
    order is refunded; 戊 joined in January and deleted the guide on 03-25. Guide 王芳's
    touch of 甲 on 03-04 was on time (甲 bought the next day); her touch of 乙 on 03-12
    was late."""
    guide = GuideFactory(wecom_userid="gw", name="王芳", store=store)
    jia = CustomerFactory(name="甲", joined_at=at("2026-03-02T10:00"))
    yi = CustomerFactory(name="乙", joined_at=at("2026-03-10T10:00"))
    bing = CustomerFactory(name="丙", is_member=False, joined_at=None, external_userid=None)
    ding = CustomerFactory(name="丁", is_member=False, joined_at=None, external_userid=None)
    wu = CustomerFactory(name="戊", is_member=False, joined_at=at("2026-01-05T10:00"))
    r_jia = RelationshipFactory(customer=jia, guide=guide, added_at=jia.joined_at, state="pkg_card")
    r_yi = RelationshipFactory(customer=yi, guide=guide, added_at=yi.joined_at, state="")
    r_wu = RelationshipFactory(customer=wu, guide=guide, added_at=wu.joined_at, is_active=False)
    RelationshipEvent.objects.create(
        relationship=r_wu,
        kind="deleted_by_customer",
        source="callback",
        occurred_at=at("2026-03-25T09:00"),
    )
    buy(jia, "2026-03-05T12:00", "100", "tmall", "文胸")
    buy(jia, "2026-03-20T12:00", "200", "tmall", "文胸")
    buy(yi, "2026-03-11T12:00", "300", "miniapp", "睡衣")
    buy(bing, "2026-02-10T12:00", "80", "jd", "内裤")
    buy(bing, "2026-03-08T10:00", "50", "jd", "内裤")
    buy(bing, "2026-03-08T20:00", "70", "jd", "内裤")
    buy(ding, "2026-03-15T12:00", "90", "tmall", "文胸", status="refunded")
    plan = SopPlan.objects.create(name="回访", trigger="manual", started_at=at("2026-01-01T00:00"))
    step = SopStep.objects.create(plan=plan, position=1, script="你好")
    touch(plan, step, r_jia, due="2026-03-04T10:00", done="2026-03-04T11:00")
    touch(plan, step, r_yi, due="2026-03-12T10:00", done="2026-03-13T10:00")
    facts_refresh()
    return {"guide": guide, "store": store}


def _get(client, name: str, **params):
    return client.get(reverse(name), {**MARCH, **params})


def _tables(response) -> dict:
    return {table.key: table for table in response.context["content"].tables}


def _numbers(response) -> dict:
    return {str(number.label): number.value for number in response.context["content"].numbers}


# -- access -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PAGE_URLS)
def test_anonymous_is_sent_to_login(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", PAGE_URLS)
def test_guide_gets_403_and_nothing_is_computed(client_for, guide_user, name):
    assert client_for(guide_user).get(reverse(name)).status_code == 403
    assert cache.stored("repurchase", {}) is None


def test_guide_cannot_export_or_read_the_api(client_for, guide_user):
    client = client_for(guide_user)
    export = reverse("analytics_export", args=["repurchase", "trend", "csv"])
    assert client.get(export).status_code == 403
    for metric in API_METRICS:
        assert client.get(reverse(f"analytics-{metric}")).status_code == 403


def test_anonymous_gets_nothing_from_the_api(client):
    assert client.get(reverse("analytics-repurchase")).status_code in (401, 403)


@pytest.mark.parametrize("name", PAGE_URLS)
def test_manager_and_operator_open_every_dashboard(client, manager, operator, shop, name):
    for user in (manager, operator):
        client.force_login(user)
        response = _get(client, name)
        assert response.status_code == 200, (user.username, name)
        body = response.content.decode()
        assert 'aria-current="page">数据</a>' in body  # the section is lit in the navigation
        # scripts and styles from our own server only (no CDN)
        sources = re.findall(r'<(?:script|link)\b[^>]*\b(?:src|href)="([^"]*)"', body)
        assert any(source.endswith("vendor/echarts.min.js") for source in sources)
        assert all(source.startswith("/") for source in sources), sources
        assert "数据计算于" in body


# -- the numbers --------------------------------------------------------------------------


def test_repurchase_page(client_for, manager, shop):
    response = _get(client_for(manager), "dashboards")
    numbers = _numbers(response)
    assert numbers["复购率"] == pytest.approx(1 / 3)
    assert (numbers["买家"], numbers["复购买家"]) == (3, 1)
    # 回购率: the 31 days before March (01-29 … 02-28) had one buyer, 丙, who came back.
    assert (numbers["回购率"], numbers["本期回购"]) == (1.0, 1)
    tables = _tables(response)
    assert tables["trend"].rows == [["2026-03", 3, 1, 1 / 3, 1, 1, 1.0]]
    assert tables["by_member"].rows == [["私域会员", 2, 1, 0.5], ["非会员", 1, 0, 0.0]]
    assert tables["by_channel"].rows == [
        ["京东", 1, 0, 0.0],
        ["小程序", 1, 0, 0.0],
        ["天猫", 1, 1, 1.0],
    ]
    assert tables["by_guide"].rows == [["王芳", 2, 1, 0.5]]
    assert tables["by_store"].rows == [["上海静安店", 2, 1, 0.5]]
    assert tables["by_category"].rows == [
        ["内裤", 1, 0, 0.0],
        ["文胸", 1, 1, 1.0],
        ["睡衣", 1, 0, 0.0],
    ]
    body = response.content.decode()
    assert (
        "33.3%" in body
        and "复购率：窗口内购买天数 ≥ 2 的买家 ÷ 窗口内购买天数 ≥ 1 的买家。" in body
    )
    assert 'id="chart-trend"' in body


def test_repurchase_filters(client_for, manager, shop):
    client = client_for(manager)
    member = _numbers(_get(client, "dashboards", member="member"))
    assert (member["买家"], member["复购买家"]) == (2, 1)
    tmall = _numbers(_get(client, "dashboards", channel="tmall"))
    assert (tmall["买家"], tmall["复购买家"]) == (1, 1)
    underwear = _numbers(_get(client, "dashboards", category="内裤"))
    assert (underwear["买家"], underwear["复购买家"]) == (1, 0)
    guide = _numbers(_get(client, "dashboards", guide=shop["guide"].pk))
    assert guide["买家"] == 2
    weekly = _tables(_get(client, "dashboards", period="week"))["trend"]
    # March 1st is a Sunday and the 31st a Tuesday: the first and last weeks are cut, marked
    assert [row[0] for row in weekly.rows] == [
        "2026-W09*（03-01–03-01）",
        "2026-W10",
        "2026-W11",
        "2026-W12",
        "2026-W13",
        "2026-W14*（03-30–03-31）",
    ]
    # The chart draws the cut weeks apart (dashed): the same rows the table marks.
    assert weekly.chart["partial"] == [0, 5]
    assert _tables(_get(client, "dashboards"))["trend"].chart["partial"] == []


def test_bad_filters_say_so_and_show_the_defaults(client_for, manager, shop):
    response = client_for(manager).get(
        reverse("dashboards"), {"start": "2026-04-01", "end": "2026-03-01"}
    )
    assert response.status_code == 200
    assert "开始日期不能晚于结束日期。" in response.content.decode()
    assert response.context["params"] == dashboards.Params.default()


def test_cohorts_page(client_for, manager, shop):
    client = client_for(manager)
    tables = _tables(_get(client, "analytics_cohorts"))
    # 丙 first bought in February, before the window: only 甲 and 乙 form March's cohort.
    assert tables["retention"].rows == [["2026-03", 2, 1.0]]
    assert tables["active"].rows == [["2026-03", 2, 2]]
    joined = _tables(_get(client, "analytics_cohorts", by="joined"))
    assert joined["retention"].rows == [["2026-03", 2, 1.0]]
    spec = tables["retention"].chart
    assert (spec["type"], spec["y"], spec["data"]) == ("heatmap", ["2026-03"], [[0, 0, 1.0]])
    assert spec["partial"] == []  # March, whole and over
    # Ending mid-March: each cohort's last cell is a part of a month, and marked so.
    cut = _tables(_get(client, "analytics_cohorts", start="2026-02-01", end="2026-03-15"))
    retention = cut["retention"]
    assert [row[0] for row in retention.rows] == ["2026-02", "2026-03"]
    assert retention.chart["partial"] == [[1, 0], [0, 1]]
    assert "每行最后一格是还没过完" in str(retention.note)


def test_conversion_page(client_for, manager, shop):
    response = _get(client_for(manager), "analytics_conversion")
    numbers = _numbers(response)
    assert numbers["入会会员（入会前未购买）"] == 2
    assert (numbers["7 天首单转化率"], numbers["30 天首单转化率"]) == (1.0, 1.0)
    tables = _tables(response)
    assert sorted(tables["by_state"].rows) == [
        ["pkg_card", 1, 1, 1, 1, 1.0, 1.0, 1.0],
        ["（无渠道码）", 1, 1, 1, 1, 1.0, 1.0, 1.0],
    ]
    assert tables["by_guide"].rows == [["王芳", 2, 2, 2, 2, 1.0, 1.0, 1.0]]


def test_intervals_page(client_for, manager, shop):
    tables = _tables(_get(client_for(manager), "analytics_intervals"))
    # 甲: 03-05 → 03-20 is 15 days (文胸); 丙: 02-10 → 03-08 is 26 days (内裤).
    assert tables["median"].rows == [["全部", 2, 20.5], ["内裤", 1, 26.0], ["文胸", 1, 15.0]]
    assert tables["distribution"].rows[0] == ["全部", 2, 0, 0, 0, 0, 2]


def test_ltv_page_and_its_predicted_placeholder(client_for, manager, shop):
    response = _get(client_for(manager), "analytics_ltv")
    table = _tables(response)["historical"]
    assert table.rows == [["2026-03", 2, 300.0]]
    assert [str(column.label) for column in table.columns] == ["同期群", "人数", "第 1 期"]
    body = response.content.decode()
    assert 'id="predicted-ltv"' in body and 'id="predicted-pending"' in body
    assert "BG/NBD" in body


def test_ltv_shows_predictions_once_the_refresh_stored_them(client_for, manager, shop):
    cache.store(
        dashboards.PREDICTED,
        {},
        {
            "calibration_end": "2026-03-31",
            "customers": 3,
            "params": {"r": 0.24, "alpha": 4.5},
            "means": {
                "expected_purchases_90d": 0.5,
                "probability_alive": 0.8,
                "predicted_ltv_12m": 300.0,
            },
            "columns": ["customer_id", "probability_alive", "predicted_ltv_12m"],
            "rows": [[7, 0.9, 512.5], [8, 0.7, 87.5]],
        },
    )
    client = client_for(manager)
    response = _get(client, "analytics_ltv")
    tables = _tables(response)
    predicted = tables["predicted"]
    assert [str(column.label) for column in predicted.columns] == [
        "客户 ID",
        "存活概率",
        "预测 12 个月 LTV（元）",
    ]
    assert predicted.rows == [[7, 0.9, 512.5], [8, 0.7, 87.5]]
    assert [row[:2] for row in tables["model"].rows] == [["r", 0.24], ["alpha", 4.5]]
    numbers = _numbers(response)
    assert (numbers["拟合客户"], numbers["人均预测 12 个月 LTV（元）"]) == (3, 300.0)
    body = response.content.decode()
    assert 'id="predicted-pending"' not in body
    assert "512.50" in body and "90.0%" in body and "校准截止 2026-03-31" in body
    # each customer opens their page (a manager may: the console's customer pages)
    link = reverse("customer_detail", args=[7])
    assert f'<a href="{link}">7</a>' in body
    exported = client.get(
        reverse("analytics_export", args=["ltv", "predicted", "csv"]), MARCH
    ).content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(exported)))[1:]
    assert rows == [["7", "0.9", "512.5"], ["8", "0.7", "87.5"]]


def test_rfm_page(client_for, manager, shop):
    response = client_for(manager).get(reverse("analytics_rfm"), {"end": "2026-03-31"})
    tables = _tables(response)
    assert sum(row[1] for row in tables["segments"].rows) == 3  # 甲, 乙, 丙 bought
    assert len(tables["segments"].rows) == 8
    assert [row[0] for row in tables["scores"].rows] == ["1", "2", "3", "4", "5"]
    for column in (1, 2, 3):
        assert sum(row[column] for row in tables["scores"].rows) == 3
    # Over time: twelve month ends up to the end; by 02-28 only 丙 had bought, before
    # February nobody; on the end day the segments as in the table above.
    trend = {row[0]: row[1:] for row in tables["trend"].rows}
    assert list(trend)[0] == "2025-04-30" and list(trend)[-1] == "2026-03-31"
    assert len(trend) == 12
    assert (sum(trend["2026-01-31"]), sum(trend["2026-02-28"])) == (0, 1)
    assert trend["2026-03-31"] == [row[1] for row in tables["segments"].rows]
    # The cut-offs the segments were drawn with, by hand on 03-31: 甲 last bought 11 days
    # before (2 purchase days, ¥300), 乙 20 (1, ¥300), 丙 23 (2: 02-10 and 03-08, ¥200).
    numbers = _numbers(response)
    assert numbers["R 阈值（天）"] == pytest.approx((11 + 20 + 23) / 3)
    assert numbers["F 阈值（购买天数）"] == pytest.approx(5 / 3)
    assert numbers["M 阈值（元）"] == pytest.approx(800 / 3)
    assert "全体买家的均值" in response.content.decode()


def test_members_page(client_for, manager, shop):
    response = _get(client_for(manager), "analytics_members")
    table = _tables(response)["comparison"]
    assert table.rows == [
        ["私域会员", 2, 1, 0.5, 3, 600.0, 200.0, 300.0],
        ["非会员", 1, 0, 0.0, 2, 120.0, 60.0, 120.0],
        ["全部买家", 3, 1, 1 / 3, 5, 720.0, 144.0, 240.0],
    ]
    numbers = _numbers(response)
    assert (numbers["会员客单价（元）"], numbers["非会员人均 LTV（元）"]) == (200.0, 120.0)
    # The private domain's value: members rebuy 50 points more (丙 never rebought, so no
    # multiple), spend 200 − 60 per order and 300 − 120 per buyer (2.5 times).
    assert numbers["会员复购率高出非会员"] == 0.5
    assert numbers["会员复购率是非会员的"] is None
    assert numbers["会员客单价高出非会员（元）"] == 140.0
    assert numbers["会员人均 LTV 高出非会员（元）"] == 180.0
    assert numbers["会员人均 LTV 是非会员的"] == 2.5
    body = response.content.decode()
    assert "客单价：窗口内净销售额 ÷ 订单数" in body
    assert "+50.0 个百分点" in body and "2.50 倍" in body and "私域价值：" in body


def test_guides_page(client_for, manager, shop, guide_user):
    tables = _tables(_get(client_for(manager), "analytics_guides"))
    rows = tables["leaderboard"].rows
    # 王芳: 2 done, 1 on time, 甲 and 乙 live (戊 deleted), 甲 bought the day after her
    # touch, 600 yuan from her customers in March. 张晓 (the guide persona) has nothing.
    assert rows[0] == [1, "王芳", "上海静安店", 1, 2, 0.5, 2, 1, 600.0]
    assert rows[1][1:] == ["张晓", "上海静安店", 0, 0, None, 0, 0, 0.0]


def test_growth_page(client_for, manager, shop):
    response = _get(client_for(manager), "analytics_growth")
    numbers = _numbers(response)
    assert (numbers["新增会员"], numbers["流失"], numbers["净增"]) == (2, 1, 1)
    tables = _tables(response)
    daily = {row[0]: row[1:] for row in tables["daily"].rows}
    assert len(daily) == 31
    assert (daily["2026-03-02"], daily["2026-03-10"], daily["2026-03-25"]) == (
        [1, 0, 1],
        [1, 0, 1],
        [0, 1, -1],
    )
    assert sum(row[1] for row in tables["daily"].rows) == 2
    assert tables["by_guide"].rows == [["王芳", 2, 1, 1]]
    assert tables["by_store"].rows == [["上海静安店", 2, 1, 1]]
    assert sorted(tables["by_state"].rows) == [["pkg_card", 1, 0, 1], ["（无渠道码）", 1, 1, 0]]
    # One channel code: only 甲, who joined through pkg_card on 03-02.
    narrowed = _get(client_for(manager), "analytics_growth", state="pkg_card")
    assert [number.value for number in narrowed.context["content"].numbers] == [1, 0, 1]
    days = [row[0] for row in _tables(narrowed)["daily"].rows if row[1:] != [0, 0, 0]]
    assert days == ["2026-03-02"]
    assert '<option value="pkg_card" selected>' in narrowed.content.decode()
    assert _get(client_for(manager), "analytics_growth", state="nope").status_code == 200


# -- exports ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slug", "name", "key"),
    [
        ("repurchase", "dashboards", "trend"),
        ("repurchase", "dashboards", "by_channel"),
        ("members", "analytics_members", "comparison"),
        ("guides", "analytics_guides", "leaderboard"),
        ("growth", "analytics_growth", "daily"),
        ("cohorts", "analytics_cohorts", "retention"),
    ],
)
def test_exports_are_exactly_the_table(client_for, manager, shop, slug, name, key):
    client = client_for(manager)
    table = _tables(_get(client, name))[key]
    header = [str(column.label) for column in table.columns]
    url = reverse("analytics_export", args=[slug, key, "csv"])
    response = client.get(url, MARCH)
    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        f'attachment; filename="{slug}-{key}-2026-03-01-2026-03-31.csv"'
    )
    text = response.content.decode("utf-8")
    assert text.startswith("\ufeff")
    lines = list(csv.reader(io.StringIO(text[1:])))
    assert lines[0] == header
    assert lines[1:] == [["" if v is None else str(v) for v in row] for row in table.rows]

    response = client.get(reverse("analytics_export", args=[slug, key, "xlsx"]), MARCH)
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.content)).active
    values = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert values[0] == header
    assert values[1:] == table.rows


def test_export_of_an_unknown_table_is_404(client_for, manager, shop):
    url = reverse("analytics_export", args=["repurchase", "nothing", "csv"])
    assert client_for(manager).get(url).status_code == 404


def test_xlsx_formats_rates_as_percentages(client_for, manager, shop):
    response = client_for(manager).get(
        reverse("analytics_export", args=["members", "comparison", "xlsx"]), MARCH
    )
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet["D2"].value == 0.5 and sheet["D2"].number_format == "0.0%"
    assert sheet["F2"].number_format == "#,##0.00"


# -- the cache ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", PAGE_URLS)
def test_a_cached_dashboard_makes_few_queries(
    client_for, manager, shop, name, django_assert_max_num_queries
):
    client = client_for(manager)
    assert _get(client, name).status_code == 200  # computes and stores
    # The session, the user, their groups and permissions; nothing of the metrics.
    with django_assert_max_num_queries(4):
        assert _get(client, name).status_code == 200


def test_a_published_generation_recomputes(client_for, manager, shop):
    client = client_for(manager)
    first = _get(client, "dashboards")
    assert _numbers(first)["买家"] == 3
    buy(CustomerFactory(name="己"), "2026-03-30T12:00", "60", "tmall", "文胸")
    facts_refresh()
    cached = _get(client, "dashboards")
    assert _numbers(cached)["买家"] == 3  # still this generation's result
    assert cached.context["as_of"] == first.context["as_of"]
    generation = cache.generation()
    cache.generation_publish(generation + 1)
    fresh = _get(client, "dashboards")
    assert _numbers(fresh)["买家"] == 4
    assert fresh.context["generation"] == generation + 1
    assert fresh.context["as_of"] > first.context["as_of"]
    cache.generation_publish(generation)  # never back to an older generation
    assert cache.generation() == generation + 1


def test_readers_keep_the_old_results_until_the_refresh_has_filled_the_new_ones(
    client_for, manager, shop, monkeypatch, django_assert_max_num_queries
):
    # The shop's orders are of March 2026: from April 2027 on its default window (the last
    # twelve months) would hold none of them.
    monkeypatch.setattr(dashboards, "today", lambda: at("2026-03-31T00:00").date())
    client = client_for(manager)

    def landing():  # the default view (the last twelve months), which a refresh computes
        return client.get(reverse("dashboards"))

    assert _numbers(landing())["买家"] == 3  # computed and stored
    buy(CustomerFactory(name="己"), "2026-03-30T12:00", "60", "tmall", "文胸")
    facts_refresh()
    generation = cache.generation()
    filling = []

    def precompute_and_read(*args, **kwargs):  # a reader arrives in the middle of a refresh
        done = precompute(*args, **kwargs)
        filling.append(landing())
        return done

    precompute = dashboards.precompute
    monkeypatch.setattr(dashboards, "precompute", precompute_and_read)
    services.dashboards_refresh()
    assert _numbers(filling[0])["买家"] == 3
    assert filling[0].context["generation"] == generation
    with django_assert_max_num_queries(4):  # published with the new numbers already in it
        fresh = landing()
    assert _numbers(fresh)["买家"] == 4
    assert fresh.context["generation"] == generation + 1


def test_a_flushed_generation_starts_past_the_old_keys(shop):
    params = dashboards.Params(
        start=at("2026-03-01T00:00").date(), end=at("2026-03-31T00:00").date()
    )
    before = dashboards.result("members", params)
    from django.core.cache import cache as django_cache

    django_cache.delete(cache.GENERATION_KEY)
    assert cache.generation() > before["generation"]


def test_facts_refreshes_schedule_one_debounced_refresh(
    shop, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(tasks.refresh_dashboards, "apply_async", lambda *a, **k: sent.append(k))
    customer = CustomerFactory()
    for _ in range(3):  # a burst of imports
        with django_capture_on_commit_callbacks(execute=True):
            facts_mark_pending([customer.pk])
            facts_refresh_pending()
    assert sent == [{"countdown": services.REFRESH_DEBOUNCE_SECONDS}]


def test_refresh_bumps_and_precomputes_the_default_views(shop, monkeypatch):
    monkeypatch.setattr(dashboards, "today", lambda: at("2026-03-31T00:00").date())
    from django.core.cache import cache as django_cache

    django_cache.set(services.REFRESH_SCHEDULED, 1)
    generation = cache.generation()
    summary = tasks.refresh_dashboards()
    assert summary["generation"] == generation + 1
    assert summary["computed"] == API_METRICS  # no analytics.predictions yet: no prediction
    assert django_cache.get(services.REFRESH_SCHEDULED) is None
    for name, metric in dashboards.METRICS.items():
        params = dashboards.Params.default(at("2026-03-31T00:00").date(), metric.default_months)
        key = cache.result_key(generation + 1, name, params.as_dict(metric.params))
        assert django_cache.get(key)["generation"] == generation + 1, name
    members = dashboards.result("members", dashboards.Params.default(at("2026-03-31T00:00").date()))
    assert members["data"]["groups"][0]["buyers"] == 2


def test_refresh_runs_on_the_analytics_queue_nightly_after_the_retag():
    assert route_task("analytics.tasks.refresh_dashboards", (), {}, {}) == {"queue": "analytics"}
    entry = settings.CELERY_BEAT_SCHEDULE["analytics-refresh-dashboards"]
    assert entry["task"] == "analytics.tasks.refresh_dashboards"
    assert (entry["schedule"].hour, entry["schedule"].minute) == ({4}, {30})


# -- the API ------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", API_METRICS)
def test_api_returns_the_pages_data(client_for, manager, shop, metric):
    client = client_for(manager)
    response = client.get(reverse(f"analytics-{metric}"), MARCH)
    assert response.status_code == 200
    body = response.json()
    assert body["metric"] == metric
    months = dashboards.METRICS[metric].default_months
    params = dashboards.Params(
        start=at("2026-03-01T00:00").date(), end=at("2026-03-31T00:00").date()
    )
    assert body == dashboards.result(metric, params)
    assert months in (12, 24)


def test_api_takes_the_filters_and_rejects_bad_ones(client_for, manager, shop):
    client = client_for(manager)
    body = client.get(reverse("analytics-repurchase"), {**MARCH, "member": "member"}).json()
    assert (body["data"]["summary"]["buyers"], body["params"]["member"]) == (2, "member")
    members = client.get(reverse("analytics-members"), MARCH).json()
    assert members["data"]["groups"][0] == {
        "group": "member",
        "buyers": 2,
        "repeat_buyers": 1,
        "rate": 0.5,
        "orders": 3,
        "net_revenue": 600.0,
        "aov": 200.0,
        "ltv_per_buyer": 300.0,
    }
    assert members["data"]["value"] == {
        "rate_gap": 0.5,
        "rate_times": None,
        "aov_gap": 140.0,
        "ltv_gap": 180.0,
        "ltv_times": 2.5,
    }
    assert members["params"] == MARCH  # only what the metric reads
    bad = client.get(reverse("analytics-repurchase"), {"start": "2026-02-30"})
    assert bad.status_code == 400 and "start" in bad.json()
    assert client.get(reverse("analytics-repurchase"), {"channel": "taobao"}).status_code == 400


def test_api_is_in_the_schema(client_for, operator):
    paths = client_for(operator).get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    assert "/api/v1/analytics/repurchase/" in paths and "/api/v1/analytics/growth/" in paths


@pytest.fixture
def english():
    yield "en"
    # The test client runs the locale middleware in this thread; leave Chinese behind.
    translation.activate(settings.LANGUAGE_CODE)


def test_pages_in_english(client_for, manager, shop, english):
    client = client_for(manager)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = english
    body = _get(client, "dashboards").content.decode()
    assert "Repurchase rate" in body and "Returning-buyer rate" in body
    assert "Repurchase rate: buyers with ≥ 2 purchase days in the window" in body
    assert "Private-domain member" in body and "Computed at" in body
    growth = _get(client, "analytics_growth").content.decode()
    assert "New members" in growth and "Churned" in growth
    csv_header = client.get(
        reverse("analytics_export", args=["members", "comparison", "csv"]), MARCH
    )
    assert csv_header.content.decode("utf-8").splitlines()[0] == (
        "\ufeffCustomers,Buyer,Repeat buyers,Repurchase rate,Orders,Net revenue (¥),"
        "Average order value (¥),LTV per buyer (¥)"
    )
