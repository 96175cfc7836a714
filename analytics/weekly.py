"""The weekly repurchase report managers read (every Monday, for the week before).

`report_build` computes the week's numbers once (a report per ISO week, unique),
keeps them with an XLSX workbook, and `report_deliver` sends it by e-mail and by
WeCom app message to each recipient, recording each delivery; a failed one is
retried by the task and shown on the report page.
"""

import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from html import escape

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, connection, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill

from analytics import metrics
from analytics.metrics import SHANGHAI, Filters
from analytics.models import ReportDelivery, ReportRecipient, WeeklyReport
from contacts.facts import CHECKOUT, PURCHASE_DAY
from contacts.models import Guide, Store
from scrm.spreadsheets import MONEY_FORMAT, xlsx_row

COHORT_MONTHS = 12


def week_of(text: str) -> date:
    """'2026-W47' → the Monday of that ISO week."""
    try:
        year, week = text.split("-W")
        return date.fromisocalendar(int(year), int(week), 1)
    except ValueError:
        raise ValueError(f"周应写成 2026-W47 的形式，收到 {text!r}") from None


def last_week(now: datetime | None = None) -> date:
    today = (now or timezone.now()).astimezone(SHANGHAI).date()
    return today - timedelta(days=today.weekday() + 7)


def _change(current, previous) -> float | None:
    if current is None or previous in (None, 0):
        return None
    return (current - previous) / previous


def with_points(data: dict) -> dict:
    """A stored report's data with its rates' moves in points: reports made before they
    were kept get them from the rates they kept."""
    return {
        f"{key}_points": _points(data[key], data[f"{key}_previous"])
        for key in ("repurchase_rate", "returning_rate")
    } | data


def _points(current, previous) -> float | None:
    """A rate's move, in (fractions of) percentage points."""
    return None if current is None or previous is None else current - previous


def _totals(start: date, end: date) -> tuple[int, Decimal, Decimal, int]:
    """Orders (checkouts: sub-orders of one are one, counted in the week it began),
    net revenue (of every order paid in the week: the brand's sales), the part of it of
    orders matched to no customer (which the dashboards, about customers, leave out),
    and purchase days (Shanghai days) from start to end."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT count(DISTINCT {CHECKOUT}) FILTER (
                           WHERE {PURCHASE_DAY} >= {metrics.WINDOW_START_DAY}),
                       coalesce(sum(o.amount - o.refund_amount), 0),
                       coalesce(sum(o.amount - o.refund_amount)
                                FILTER (WHERE o.customer_id IS NULL), 0)
                FROM contacts_order o WHERE {metrics.PURCHASED}
                AND o.paid_at >= %(w_start)s AND o.paid_at < %(w_end)s""",  # noqa: S608
            metrics._bounds(start, end),
        )
        orders, revenue, unmatched = cursor.fetchone()
        cursor.execute(
            "SELECT count(*) FROM contacts_customerpurchaseday WHERE day BETWEEN %s AND %s",
            [start, end],
        )
        (purchase_days,) = cursor.fetchone()
    return orders, revenue, unmatched, purchase_days


def _sop(start: date, end: date) -> dict:
    bounds = metrics._bounds(start, end)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FILTER (WHERE status = 'done'),
                   count(*) FILTER (WHERE status = 'done' AND done_at <= window_ends_at),
                   count(*) FILTER (WHERE status = 'expired'),
                   count(*) FILTER (WHERE status = 'skipped'),
                   count(*) FILTER (WHERE status IN ('task', 'done', 'skipped', 'expired'))
            FROM sop_touchpoint WHERE due_at >= %(w_start)s AND due_at < %(w_end)s
            """,
            bounds,
        )
        done, on_time, expired, skipped, given = cursor.fetchone()
    return {
        "given": given,
        "done": done,
        "done_on_time": on_time,
        "expired": expired,
        "skipped": skipped,
    }


RANKED = 5  # the first and the last so many, when there are more than twice as many


def _ranking(start: date, end: date) -> dict:
    """Stores and active guides by net revenue of their followed customers' orders in the
    week, those who sold nothing included (at ¥0, last). Up to 2 × RANKED of them are
    all listed (as "top"); more are cut to the first and the last RANKED."""
    bounds = metrics._bounds(start, end)
    rows = {}
    for key, model, array in (
        ("guides", Guide.objects.active(), "guide_ids"),
        ("stores", Store.objects.all(), "store_ids"),
    ):
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                SELECT x.id, count(DISTINCT o.customer_id), sum(o.amount - o.refund_amount)
                FROM contacts_order o
                JOIN contacts_customerfacts f ON f.customer_id = o.customer_id
                CROSS JOIN LATERAL unnest(f.{array}) AS x(id)
                WHERE {metrics.PURCHASED} AND o.paid_at >= %(w_start)s AND o.paid_at < %(w_end)s
                GROUP BY x.id
                """,  # noqa: S608 - the column is ours
                bounds,
            )
            sales = {pk: (buyers, net) for pk, buyers, net in cursor.fetchall()}
        ranked = []
        for pk, name in model.values_list("pk", "name"):
            buyers, net = sales.get(pk, (0, 0))
            ranked.append({"name": name, "buyers": buyers, "net_revenue": float(net)})
        ranked.sort(key=lambda row: (-row["net_revenue"], row["name"]))
        if len(ranked) > 2 * RANKED:
            rows[key] = {"top": ranked[:RANKED], "bottom": ranked[-RANKED:][::-1]}
        else:
            rows[key] = {"top": ranked, "bottom": []}
    return rows


def report_data(*, week_start: date) -> dict:
    """Every number of the report for the ISO week starting `week_start`."""
    end = week_start + timedelta(days=6)
    before, before_end = week_start - timedelta(days=7), week_start - timedelta(days=1)
    current = metrics.repurchase(start=week_start, end=end)
    previous = metrics.repurchase(start=before, end=before_end)
    back = metrics.returning(a_start=before, a_end=before_end, b_start=week_start, b_end=end)
    back_before = metrics.returning(
        a_start=before - timedelta(days=7),
        a_end=before_end - timedelta(days=7),
        b_start=before,
        b_end=before_end,
    )
    members = {
        label: metrics.repurchase(start=week_start, end=end, filters=Filters(member=flag))
        for label, flag in (("members", True), ("non_members", False))
    }
    conversion = metrics.conversion(start=week_start, end=end, within=(7,))
    cohort = metrics.cohorts(
        by="first_purchase",
        period="month",
        start=metrics.period_start(end, "month").replace(day=1) - timedelta(days=330),
        end=end,
    )
    orders, revenue, unmatched, purchase_days = _totals(week_start, end)
    orders_before, revenue_before, _, purchase_days_before = _totals(before, before_end)
    data = {
        "week": f"{week_start.isocalendar().year}-W{week_start.isocalendar().week:02d}",
        "start": week_start.isoformat(),
        "end": end.isoformat(),
        "buyers": current["buyers"],
        "buyers_previous": previous["buyers"],
        "buyers_change": _change(current["buyers"], previous["buyers"]),
        "purchase_days": purchase_days,
        "purchase_days_previous": purchase_days_before,
        "purchase_days_change": _change(purchase_days, purchase_days_before),
        "orders": orders,
        "orders_previous": orders_before,
        "net_revenue": float(revenue),
        "net_revenue_previous": float(revenue_before),
        "net_revenue_change": _change(float(revenue), float(revenue_before)),
        "net_revenue_unmatched": float(unmatched),
        "repurchase_rate": current["rate"],
        "repurchase_rate_previous": previous["rate"],
        "repurchase_rate_change": _change(current["rate"], previous["rate"]),
        "repurchase_rate_points": _points(current["rate"], previous["rate"]),
        "returning_rate": back["rate"],
        "returning_rate_previous": back_before["rate"],
        "returning_rate_change": _change(back["rate"], back_before["rate"]),
        "returning_rate_points": _points(back["rate"], back_before["rate"]),
        "members": members["members"],
        "non_members": members["non_members"],
        "conversion": conversion[0] if conversion else {"members": 0, "within_7": 0},
        "sop": _sop(week_start, end),
        "ranking": _ranking(week_start, end),
        "cohorts": cohort["cohorts"][-COHORT_MONTHS:],
    }
    data["sentences"] = sentences(data)
    return data


def sentences(data: dict) -> list[str]:
    """Three plain sentences on what moved most this week (largest moves first; counts by
    relative change, rates by percentage points), in the active language: a report's
    page words them for its reader; the WeCom message keeps those made with the report."""
    candidates = []
    if data["buyers_change"] is not None:
        change = data["buyers_change"]
        words = (
            _("购买人数 %(n)s，比上周增加 %(change)s。")
            if change >= 0
            else _("购买人数 %(n)s，比上周减少 %(change)s。")
        )
        candidates.append(
            (abs(change), words % {"n": data["buyers"], "change": f"{abs(change):.1%}"})
        )
    for label, key in ((_("复购率"), "repurchase_rate"), (_("回购率"), "returning_rate")):
        now, before = data[key], data[f"{key}_previous"]
        if now is not None and before is not None:
            moved = now - before
            words = (
                _("%(label)s从上周的 %(before)s 升至 %(now)s。")
                if moved >= 0
                else _("%(label)s从上周的 %(before)s 降至 %(now)s。")
            )
            values = {"label": label, "before": f"{before:.1%}", "now": f"{now:.1%}"}
            candidates.append((abs(moved) * 2, words % values))
    members, others = data["members"], data["non_members"]
    if members["rate"] is not None and others["rate"] is not None:
        gap = members["rate"] - others["rate"]
        words = (
            _("私域会员的复购率为 %(members)s，比非会员（%(others)s）高 %(points)s 个百分点。")
            if gap >= 0
            else _("私域会员的复购率为 %(members)s，比非会员（%(others)s）低 %(points)s 个百分点。")
        )
        values = {
            "members": f"{members['rate']:.1%}",
            "others": f"{others['rate']:.1%}",
            "points": f"{abs(gap) * 100:.1f}",
        }
        candidates.append((abs(gap), words % values))
    sop = data["sop"]
    if sop["given"]:
        expired = sop["expired"] / sop["given"]
        words = _("SOP 任务完成 %(done)s 个，过期 %(expired)s 个（%(share)s）。")
        values = {"done": sop["done"], "expired": sop["expired"], "share": f"{expired:.0%}"}
        candidates.append((expired, words % values))
    top = data["ranking"]["guides"]["top"]
    if top and top[0]["net_revenue"] > 0:
        words = _("本周客户贡献最多的导购是%(name)s（¥%(revenue)s）。")
        values = {"name": top[0]["name"], "revenue": f"{top[0]['net_revenue']:,.0f}"}
        candidates.append((0.01, words % values))
    words = _("本周净销售额 ¥%(revenue)s，共 %(orders)s 笔订单。")
    candidates.append(
        (0, words % {"revenue": f"{data['net_revenue']:,.0f}", "orders": data["orders"]})
    )
    candidates.sort(key=lambda item: -item[0])
    return [text for _weight, text in candidates[:3]]


def cohort_svg(cohorts: list[dict]) -> str:
    """The cohort heatmap as an SVG image (shares in green by intensity), for the report
    page, the e-mail and the workbook's reader alike."""
    cell, label_width = 34, 70
    width = label_width + cell * max((len(c["retention"]) for c in cohorts), default=1) + 60
    height = 24 + cell * len(cohorts)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        ' font-family="sans-serif" font-size="11">'
    ]
    for k in range(max((len(c["retention"]) for c in cohorts), default=0)):
        parts.append(f'<text x="{label_width + k * cell + 8}" y="14">{k}</text>')
    for row, cohort in enumerate(cohorts):
        y = 20 + row * cell
        parts.append(f'<text x="0" y="{y + 21}">{escape(cohort["cohort"])}</text>')
        size = ngettext("%(n)s 人", "%(n)s 人", cohort["size"]) % {"n": cohort["size"]}
        parts.append(f'<text x="{width - 56}" y="{y + 21}">{escape(size)}</text>')
        for k, share in enumerate(cohort["retention"]):
            shade = int(255 - min(share, 1) * 200)
            parts.append(
                f'<rect x="{label_width + k * cell}" y="{y}" width="{cell - 2}" '
                f'height="{cell - 2}" fill="rgb({shade},{235},{shade})"/>'
                f'<text x="{label_width + k * cell + 3}" y="{y + 21}">{share:.0%}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def report_xlsx(data: dict) -> bytes:
    workbook = Workbook()
    summary = workbook.active
    summary.title = "概览"
    bold = Font(bold=True)
    rows = [
        ("周", data["week"]),
        ("开始", data["start"]),
        ("结束", data["end"]),
        ("购买人数", data["buyers"]),
        ("购买人数（上周）", data.get("buyers_previous")),
        ("购买天数", data["purchase_days"]),
        ("购买天数（上周）", data.get("purchase_days_previous")),
        ("订单数", data["orders"]),
        ("订单数（上周）", data.get("orders_previous")),
        ("净销售额", data["net_revenue"]),
        ("净销售额（上周）", data.get("net_revenue_previous")),
        ("复购率", data["repurchase_rate"]),
        ("复购率（上周）", data["repurchase_rate_previous"]),
        ("回购率", data["returning_rate"]),
        ("会员复购率", data["members"]["rate"]),
        ("非会员复购率", data["non_members"]["rate"]),
        ("新会员", data["conversion"]["members"]),
        ("7 天内首单", data["conversion"].get("within_7", 0)),
        ("SOP 完成", data["sop"]["done"]),
        ("SOP 过期", data["sop"]["expired"]),
    ]
    formats = {"净销售额": MONEY_FORMAT, "净销售额（上周）": MONEY_FORMAT}
    rates = ("复购率", "复购率（上周）", "回购率", "会员复购率", "非会员复购率")
    formats |= dict.fromkeys(rates, "0.0%")
    for label, value in rows:
        summary.append([label, value])
        summary.cell(row=summary.max_row, column=1).font = bold
        if label in formats:
            summary.cell(row=summary.max_row, column=2).number_format = formats[label]
    for sentence in data["sentences"]:
        summary.append([sentence])
    for key, title in (("guides", "导购"), ("stores", "门店")):
        sheet = workbook.create_sheet(title)
        sheet.append(["", "名称", "购买人数", "所跟进客户的净销售额"])
        ranking = data["ranking"][key]
        for label in ("top", "bottom"):
            for row in ranking[label]:
                place = "排名" if not ranking["bottom"] else "前五" if label == "top" else "后五"
                cells = [place, row["name"], row["buyers"], row["net_revenue"]]
                sheet.append(xlsx_row(sheet, cells, money=[3]))
    cohort = workbook.create_sheet("同期群")
    width = max((len(c["retention"]) for c in data["cohorts"]), default=0)
    cohort.append(["同期群", "人数", *[f"第{k}月" for k in range(width)]])
    for row in data["cohorts"]:
        cohort.append([row["cohort"], row["size"], *row["retention"]])
        for k, share in enumerate(row["retention"]):
            shade = f"{int(255 - min(share, 1) * 200):02X}"
            cohort.cell(row=cohort.max_row, column=3 + k).fill = PatternFill(
                "solid", fgColor=f"{shade}EB{shade}"
            )
            cohort.cell(row=cohort.max_row, column=3 + k).number_format = "0%"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def report_build(*, week_start: date) -> tuple[WeeklyReport, bool]:
    """The report of that week: built once (unique week), returned as it is afterwards.
    Returns (report, created)."""
    week = f"{week_start.isocalendar().year}-W{week_start.isocalendar().week:02d}"
    existing = WeeklyReport.objects.filter(week=week).first()
    if existing is not None:
        return existing, False
    data = report_data(week_start=week_start)
    try:
        with transaction.atomic():
            report = WeeklyReport.objects.create(
                week=week,
                starts_on=week_start,
                data=data,
                xlsx=report_xlsx(data),
                built_at=timezone.now(),
            )
    except IntegrityError:  # built by a concurrent run in the meantime
        return WeeklyReport.objects.get(week=week), False
    for recipient in ReportRecipient.objects.filter(is_active=True):
        for channel, address in (
            (ReportDelivery.Channel.EMAIL, recipient.email),
            (ReportDelivery.Channel.WECOM, recipient.wecom_userid),
        ):
            if address:
                ReportDelivery.objects.get_or_create(
                    report=report, recipient=recipient, channel=channel
                )
    return report, True


@dataclass
class DeliveryResult:
    sent: int = 0
    failed: int = 0


def report_deliver(*, report: WeeklyReport, gateway) -> DeliveryResult:
    """Send every delivery of the report not yet sent; failures are recorded (the task
    retries them)."""
    result = DeliveryResult()
    link = settings.SCRM_BASE_URL.rstrip("/") + reverse("report_detail", args=[report.week])
    html = render_to_string(
        "analytics/report_email.html",
        {"data": report.data, "link": link, "heatmap": cohort_svg(report.data["cohorts"])},
    )
    pending = report.deliveries.exclude(status=ReportDelivery.Status.SENT).select_related(
        "recipient"
    )
    for delivery in pending:
        delivery.attempts += 1
        try:
            if delivery.channel == ReportDelivery.Channel.EMAIL:
                message = EmailMessage(
                    subject=f"私域复购周报 {report.week}",
                    body=html,
                    to=[delivery.recipient.email],
                )
                message.content_subtype = "html"
                message.attach(
                    f"weekly-{report.week}.xlsx",
                    bytes(report.xlsx),
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                )
                message.send()
            else:
                text = "\n".join([f"私域复购周报 {report.week}", *report.data["sentences"], link])
                sent = gateway.message_send(userids=[delivery.recipient.wecom_userid], text=text)
                if sent.get("invaliduser"):
                    raise ValueError(f"企业微信没有这个成员：{sent['invaliduser']}")
            delivery.status, delivery.error = ReportDelivery.Status.SENT, ""
            delivery.sent_at = timezone.now()
            result.sent += 1
        except Exception as error:  # noqa: BLE001 - any failure is recorded and retried
            delivery.status = ReportDelivery.Status.FAILED
            delivery.error = str(error)[:300]
            result.failed += 1
        delivery.save(update_fields=["status", "error", "sent_at", "attempts"])
    return result
