"""What each dashboard page shows, built from the cached results: headline numbers,
tables, and a chart drawn from each table's own rows (so the chart, the table and its
CSV / XLSX export can never disagree). Labels are translated here, at render time;
the cached data holds none.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from analytics.forms import MEMBER_NAMES
from contacts.order_files import ORDER_CHANNEL_NAMES
from tagging.system import tag_label

# DESIGN.md ("Words"), the definitions shown next to every number.
DEFINITIONS = {
    "window": gettext_lazy(
        "窗口：所选两个日期之间的全部整天（上海时间，含首尾两天：开始日 00:00 至结束日 24:00）。"
    ),
    "purchase_day": gettext_lazy(
        "购买日：客户在一个自然日（上海时间）内至少有一笔已支付且未全额退款的订单；"
        "同一次结账的拆单算同一个购买日，不算复购。"
    ),
    "repurchase": gettext_lazy("复购率：窗口内购买天数 ≥ 2 的买家 ÷ 窗口内购买天数 ≥ 1 的买家。"),
    "returning": gettext_lazy(
        "回购率（从期间 A 到期间 B）：期间 A 的买家中在期间 B 再次购买的人数 ÷ 期间 A 的买家数。"
        "这里 B 为所选窗口（或趋势中的每个周期），A 为紧挨其前、等长的期间（或上一个周期）。"
    ),
    "member": gettext_lazy(
        "私域会员：至少与一位导购有有效好友关系的客户；入会时间为第一段这样的关系的添加时间。"
    ),
    "conversion": gettext_lazy(
        "首单转化率（N 天内）：窗口内入会、且入会前从未购买的会员中，首个购买日在入会后 N 天内"
        "（含入会当天）的人数 ÷ 这些会员数。"
    ),
    "cohort": gettext_lazy(
        "同期群留存：按首个购买日（或入会）所在周期把客户分群；单元格（群，k）= 该群中在群所在"
        "周期之后第 k 个周期内有至少一个购买日的客户占比；k = 0 即群所在周期本身。"
    ),
    "interval": gettext_lazy(
        "复购周期：同一客户相邻两个购买日之间的天数（按品类时只看购买该品类的日子）；"
        "后一个购买日落在窗口内的间隔计入。"
    ),
    "ltv": gettext_lazy(
        "历史 LTV：同期群（按首个购买日所在周期）每位客户自群所在周期起、k 个周期内累计的"
        "净销售额（实付金额 − 退款金额）÷ 群人数。"
    ),
    "predicted_ltv": gettext_lazy(
        "预测 LTV：BG/NBD 模型（按购买日，时间单位为周）预测未来购买次数与存活概率，"
        "Gamma-Gamma 模型预测每个购买日的消费额。"
    ),
    "rfm": gettext_lazy(
        "RFM：R 为距最近购买日的天数，F 为购买天数，M 为净销售额，均在截至结束日期的窗口内计算，"
        "各按五分位打 1–5 分；八类分群按 R、F、M 是否优于均值（或设定阈值）划分：重要价值"
        "（R、F、M 均好）、重要发展（R、M 好）、重要保持（F、M 好）、重要挽留（M 好）、"
        "一般价值（R、F 好）、一般发展（R 好）、一般保持（F 好）、一般挽留（均不好）。"
    ),
    "aov": gettext_lazy(
        "客单价：窗口内净销售额 ÷ 订单数（已支付、未全额退款的订单；一次下单拆成的子订单算一单）。"
    ),
    "member_value": gettext_lazy(
        "私域价值：同一窗口内会员与非会员相比——复购率之差（百分点）与之比，客单价之差，"
        "人均 LTV（窗口内净销售额 ÷ 买家数）之差与之比；会员按当前是否为私域会员划分。"
    ),
    "ltv_per_buyer": gettext_lazy("人均 LTV：窗口内净销售额 ÷ 买家数。"),
    "guides": gettext_lazy(
        "按时完成：窗口内完成、且完成时间不晚于发送窗口结束的任务数；服务客户：当前有效的好友"
        "关系数；7 天内成交：窗口内完成触达后 7 天内有已支付订单的不同客户数；客户净销售额："
        "当前由该导购跟进的客户在窗口内的净销售额。"
    ),
    "growth": gettext_lazy(
        "新增会员：第一段好友关系在当天添加的客户；流失：当天有删除事件（客户删除导购、导购删除"
        "客户、同步发现已删除）的不同客户，区间内每人只按第一次删除计一次；净增 = 新增 − 流失。"
    ),
}

INTERVAL_BUCKETS = {
    "≤30天": gettext_lazy("≤30天"),
    "31-60天": gettext_lazy("31-60天"),
    "61-90天": gettext_lazy("61-90天"),
    "91-180天": gettext_lazy("91-180天"),
    ">180天": gettext_lazy(">180天"),
}
# Shorter forms for the headline numbers (the full text is under the tables).
SHORT = {
    "returning": gettext_lazy(
        "回购率：紧挨窗口之前、等长的期间的买家中，在本窗口再次购买的人数 ÷ 该期间的买家数。"
    ),
    "rfm": gettext_lazy(
        "R 距最近购买日天数、F 购买天数、M 净销售额（截至结束日期的窗口内），"
        "与均值比较得出八类分群。"
    ),
    "on_time": gettext_lazy("按时完成：窗口内完成、且完成时间不晚于发送窗口结束的任务数。"),
    "bought_7d": gettext_lazy("7 天内成交：窗口内完成触达后 7 天内有已支付订单的不同客户数。"),
    "new": gettext_lazy("新增会员：第一段好友关系在当天添加的客户。"),
    "churned": gettext_lazy(
        "流失：有删除事件（客户删除导购、导购删除客户、同步发现已删除）的不同客户，"
        "区间内每人只按第一次删除计一次。"
    ),
    "net": gettext_lazy("净增 = 新增会员 − 流失。"),
}
CHART_ROWS = 15  # bars drawn for a long table (the table lists all its rows)


@dataclass
class Column:
    label: str
    # text, int, rate, money, days, decimal, customer (an id, linked to the customer's
    # page); Numbers also: points, times
    kind: str = "int"


@dataclass
class Table:
    key: str  # its export's name
    title: str
    columns: list[Column]
    rows: list[list]
    chart: dict | None = None
    note: str = ""
    wide: bool = False  # a full-width section (others pair up)

    @property
    def chart_id(self) -> str:
        return f"chart-{self.key}"

    @property
    def cells(self) -> list[list[tuple[object, str]]]:
        """Each row's values with their column's kind, for the template's formatting."""
        kinds = [column.kind for column in self.columns]
        return [list(zip(row, kinds, strict=False)) for row in self.rows]


@dataclass
class Number:
    label: str
    value: object
    kind: str
    note: str = ""


@dataclass
class Content:
    numbers: list[Number] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


PARTIAL_NOTE = gettext_lazy(
    "周期后标 * 的只含所选范围内的几天（如进行中的本月），复购率因此偏低，不能与完整周期比较。"
)


COHORT_PARTIAL_NOTE = gettext_lazy(
    "每行最后一格是还没过完（或被所选范围截断）的周期，图中以浅色加 * 标出，留存因此偏低。"
)


def _partial_label(row: dict) -> str:
    """A trend period's label, marked when the range cut it (its days in brackets)."""
    if not row.get("partial"):
        return row["period"]
    return _("%(period)s*（%(start)s–%(end)s）") % {
        "period": row["period"],
        "start": row["start"][5:],
        "end": row["end"][5:],
    }


def _series_chart(
    table: Table,
    kind: str,
    series: list[int],
    *,
    x: int = 0,
    stack: bool = False,
    lines: tuple[int, ...] = (),
    right: tuple[int, ...] = (),
    below: tuple[int, ...] = (),
    **extra,
) -> dict:
    """A line or bar chart of the table's own rows: the x column along the axis, one
    series per column in `series` (drawn as `kind`), `lines` (drawn as lines) and
    `right` (lines on a second axis, for rates beside amounts); the `below` ones are
    drawn downwards (losses beside gains; the data keeps its sign)."""

    def one(index: int, drawn: str, axis: int) -> dict:
        column = table.columns[index]
        return {
            "name": str(column.label),
            "kind": column.kind,
            "as": drawn,
            "axis": axis,
            "below": index in below,
            "data": [row[index] for row in table.rows],
        }

    return {
        "type": kind,
        "x": [str(row[x]) for row in table.rows],
        "series": [one(i, kind, 0) for i in series]
        + [one(i, "line", 0) for i in lines]
        + [one(i, "line", 1) for i in right],
        "stack": stack,
        **extra,
    }


def _rate_table(key: str, title: str, rows: list[dict], label: str, note: str) -> Table:
    table = Table(
        key=key,
        title=title,
        columns=[
            Column(label, "text"),
            Column(_("买家"), "int"),
            Column(_("复购买家"), "int"),
            Column(_("复购率"), "rate"),
        ],
        rows=[[r["label"], r["buyers"], r["repeat_buyers"], r["rate"]] for r in rows],
        note=note,
    )
    table.chart = _series_chart(table, "bar", [3])
    return table


# -- the pages ----------------------------------------------------------------------------


def repurchase_page(results: dict) -> Content:
    data, back = results["repurchase"]["data"], results["returning"]["data"]
    summary, returning = data["summary"], back["summary"]
    content = Content(
        numbers=[
            Number(_("复购率"), summary["rate"], "rate", DEFINITIONS["repurchase"]),
            Number(_("买家"), summary["buyers"], "int"),
            Number(_("复购买家"), summary["repeat_buyers"], "int"),
            Number(_("回购率"), returning["rate"], "rate", SHORT["returning"]),
            Number(
                _("上期买家（%(start)s 至 %(end)s）")
                % {"start": returning["a"][0], "end": returning["a"][1]},
                returning["buyers"],
                "int",
            ),
            Number(_("本期回购"), returning["returned"], "int"),
        ],
        notes=[DEFINITIONS["window"], DEFINITIONS["purchase_day"]],
    )
    returned = {row["period"]: row for row in back["trend"]}
    trend = Table(
        key="trend",
        title=_("复购率与回购率趋势"),
        columns=[
            Column(_("周期"), "text"),
            Column(_("买家"), "int"),
            Column(_("复购买家"), "int"),
            Column(_("复购率"), "rate"),
            Column(_("上期买家"), "int"),
            Column(_("回购"), "int"),
            Column(_("回购率"), "rate"),
        ],
        rows=[
            [
                _partial_label(row),
                row["buyers"],
                row["repeat_buyers"],
                row["rate"],
                returned.get(row["period"], {}).get("buyers"),
                returned.get(row["period"], {}).get("returned"),
                returned.get(row["period"], {}).get("rate"),
            ]
            for row in data["trend"]
        ],
        note=f"{DEFINITIONS['returning']} {PARTIAL_NOTE}",
        wide=True,
    )
    partial = [index for index, row in enumerate(data["trend"]) if row.get("partial")]
    trend.chart = _series_chart(trend, "line", [3, 6], partial=partial)
    content.tables.append(trend)
    splits = data["splits"]
    member_rows = [
        {**row, "label": str(MEMBER_NAMES["member" if row["key"] else "non_member"])}
        for row in sorted(splits["member"]["rows"], key=lambda row: not row["key"])
    ]
    channel_rows = [
        {**row, "label": str(ORDER_CHANNEL_NAMES.get(row["key"], row["key"]))}
        for row in splits["channel"]["rows"]
    ]
    top = _("（买家最多的前 %(n)s 个）")
    for key, title, label, rows, note in [
        ("by_member", _("会员与非会员"), _("会员"), member_rows, DEFINITIONS["member"]),
        ("by_channel", _("按渠道"), _("渠道"), channel_rows, ""),
        ("by_store", _("按门店"), _("门店"), splits["store"]["rows"], ""),
        ("by_guide", _("按导购"), _("导购"), splits["guide"]["rows"], ""),
        ("by_category", _("按品类"), _("品类"), splits["category"]["rows"], ""),
    ]:
        split = splits[key.removeprefix("by_")]
        if split["total_keys"] > len(split["rows"]):
            title = f"{title} {top % {'n': len(split['rows'])}}"
        content.tables.append(_rate_table(key, title, rows, label, note))
    return content


def cohorts_page(results: dict) -> Content:
    data = results["cohorts"]["data"]
    cohorts = data["cohorts"]
    width = max((len(row["retention"]) for row in cohorts), default=1)
    offsets = [Column(f"+{k}", "rate") for k in range(width)]
    head = [Column(_("同期群"), "text"), Column(_("人数"), "int")]
    shares = Table(
        key="retention",
        title=_("留存率（第 k 个周期内有购买的占比）"),
        columns=head + offsets,
        rows=[
            [
                row["cohort"],
                row["size"],
                *row["retention"],
                *[None] * (width - len(row["retention"])),
            ]
            for row in cohorts
        ],
        note=DEFINITIONS["cohort"],
        wide=True,
    )
    cut = [
        [len(row["retention"]) - 1, index]
        for index, row in enumerate(cohorts)
        if data.get("last_partial") and row["retention"]
    ]
    if cut:
        shares.note = f"{shares.note} {COHORT_PARTIAL_NOTE}"
    later = [v for row in cohorts for v in row["retention"][1:] if v is not None]
    shares.chart = {
        "type": "heatmap",
        "x": [column.label for column in offsets],
        "y": [row["cohort"] for row in cohorts],
        "data": [
            [k, index, value]
            for index, row in enumerate(cohorts)
            for k, value in enumerate(row["retention"])
        ],
        "max": max(later, default=1) or 1,
        "kind": "rate",
        "partial": cut,
        "height": max(280, 22 * len(cohorts) + 100),
    }
    counts = Table(
        key="active",
        title=_("有购买的人数（第 k 个周期）"),
        columns=head + [Column(f"+{k}", "int") for k in range(width)],
        rows=[
            [row["cohort"], row["size"], *row["active"], *[None] * (width - len(row["active"]))]
            for row in cohorts
        ],
        wide=True,
    )
    sizes = [row["size"] for row in cohorts]
    return Content(
        numbers=[
            Number(_("同期群"), len(cohorts), "int"),
            Number(_("客户"), sum(sizes), "int"),
        ],
        tables=[shares, counts],
        notes=[DEFINITIONS["cohort"], DEFINITIONS["purchase_day"]],
    )


def _conversion_table(key: str, title: str, rows: list[dict], label: str, blank: str) -> Table:
    table = Table(
        key=key,
        title=title,
        columns=[
            Column(label, "text"),
            Column(_("入会会员"), "int"),
            Column(_("7 天内首购"), "int"),
            Column(_("14 天内首购"), "int"),
            Column(_("30 天内首购"), "int"),
            Column(_("7 天转化率"), "rate"),
            Column(_("14 天转化率"), "rate"),
            Column(_("30 天转化率"), "rate"),
        ],
        rows=[
            [
                row["key"] or blank,
                row["members"],
                row["within_7"],
                row["within_14"],
                row["within_30"],
                row["rate_7"],
                row["rate_14"],
                row["rate_30"],
            ]
            for row in rows
        ],
        note=DEFINITIONS["conversion"],
        wide=True,
    )
    first = Table(table.key, table.title, table.columns, table.rows[:CHART_ROWS])
    table.chart = _series_chart(first, "bar", [5, 6, 7])
    if len(table.rows) > CHART_ROWS:
        table.chart["caption"] = _("图中为入会会员最多的前 %(n)s 个") % {"n": CHART_ROWS}
    return table


def conversion_page(results: dict) -> Content:
    data = results["conversion"]["data"]
    overall = data["overall"] or {
        "members": 0,
        **{f"{kind}_{n}": None for kind in ("within", "rate") for n in (7, 14, 30)},
    }
    return Content(
        numbers=[
            Number(_("入会会员（入会前未购买）"), overall["members"], "int"),
            Number(_("7 天首单转化率"), overall["rate_7"], "rate", DEFINITIONS["conversion"]),
            Number(_("14 天首单转化率"), overall["rate_14"], "rate"),
            Number(_("30 天首单转化率"), overall["rate_30"], "rate"),
        ],
        tables=[
            _conversion_table(
                "by_state", _("按渠道码（state）"), data["state"], _("渠道码"), _("（无渠道码）")
            ),
            _conversion_table("by_guide", _("按导购"), data["guide"], _("导购"), _("（未知）")),
        ],
        notes=[DEFINITIONS["conversion"], DEFINITIONS["member"]],
    )


def intervals_page(results: dict) -> Content:
    categories = results["intervals"]["data"]["categories"]
    buckets = list(categories[0]["distribution"]) if categories else []
    distribution = Table(
        key="distribution",
        title=_("复购间隔分布（间隔个数）"),
        columns=[Column(_("品类"), "text")]
        + [Column(str(INTERVAL_BUCKETS.get(bucket, bucket)), "int") for bucket in buckets]
        + [Column(_("合计"), "int")],
        rows=[
            [_category(row["category"]), *row["distribution"].values(), row["intervals"]]
            for row in categories
        ],
        note=DEFINITIONS["interval"],
        wide=True,
    )
    distribution.chart = _series_chart(
        distribution, "bar", list(range(1, len(buckets) + 1)), stack=True
    )
    medians = Table(
        key="median",
        title=_("复购间隔中位数（天）"),
        columns=[
            Column(_("品类"), "text"),
            Column(_("间隔个数"), "int"),
            Column(_("中位数（天）"), "days"),
        ],
        rows=[
            [_category(row["category"]), row["intervals"], row["median_days"]] for row in categories
        ],
        note=DEFINITIONS["interval"],
        wide=True,
    )
    medians.chart = _series_chart(medians, "bar", [2])
    overall = next((row for row in categories if row["category"] == "全部"), None)
    return Content(
        numbers=[
            Number(_("复购间隔个数"), overall["intervals"] if overall else 0, "int"),
            Number(
                _("间隔中位数（天）"),
                overall["median_days"] if overall else None,
                "days",
                DEFINITIONS["interval"],
            ),
        ],
        tables=[distribution, medians],
        notes=[DEFINITIONS["interval"], DEFINITIONS["purchase_day"]],
    )


def _category(name: str) -> str:
    return _("全部") if name == "全部" else name


def ltv_page(results: dict) -> Content:
    cohorts = results["ltv"]["data"]["cohorts"]
    width = max((len(row["ltv"]) for row in cohorts), default=1)
    periods = [Column(_("第 %(k)s 期") % {"k": k}, "money") for k in range(1, width + 1)]
    table = Table(
        key="historical",
        title=_("历史 LTV：每位客户累计净销售额（元）"),
        columns=[Column(_("同期群"), "text"), Column(_("人数"), "int")] + periods,
        rows=[
            [row["cohort"], row["size"], *row["ltv"], *[None] * (width - len(row["ltv"]))]
            for row in cohorts
        ],
        note=DEFINITIONS["ltv"],
        wide=True,
    )
    table.chart = {
        "type": "line",
        "x": [column.label for column in periods],
        "series": [
            {"name": row["cohort"], "kind": "money", "as": "line", "axis": 0, "data": row["ltv"]}
            for row in cohorts
        ],
        "stack": False,
        "legend": True,
    }
    content = Content(
        numbers=[Number(_("同期群"), len(cohorts), "int")],
        tables=[table],
        notes=[DEFINITIONS["ltv"]],
    )
    if "predicted_ltv" in results:
        _predicted(content, results["predicted_ltv"]["data"])
    return content


def _predicted(content: Content, data: dict) -> None:
    """The BG/NBD / Gamma-Gamma results stored by the refresh: headline means, the
    customers of highest predicted LTV, and the fitted parameters with their meaning."""
    labels = {
        "customer_id": (_("客户 ID"), "customer"),
        "frequency": (_("复购次数（购买日数 − 1）"), "int"),
        "recency_weeks": (_("首购到末次购买（周）"), "decimal"),
        "T_weeks": (_("首购至校准截止（周）"), "decimal"),
        "monetary_value": (_("复购日均消费（元）"), "money"),
        "expected_purchases_90d": (_("未来 90 天预期购买日"), "decimal"),
        "probability_alive": (_("存活概率"), "rate"),
        "predicted_ltv_12m": (_("预测 12 个月 LTV（元）"), "money"),
    }
    means = data["means"]
    content.numbers += [
        Number(_("拟合客户"), data["customers"], "int", DEFINITIONS["predicted_ltv"]),
        Number(_("人均预测 12 个月 LTV（元）"), means["predicted_ltv_12m"], "money"),
        Number(_("平均存活概率"), means["probability_alive"], "rate"),
        Number(_("人均未来 90 天预期购买日"), means["expected_purchases_90d"], "decimal"),
    ]
    note = _(
        "校准截止 %(end)s；按预测 12 个月 LTV 从高到低。模型按全部客户拟合，"
        "不随本页的渠道、门店、会员等筛选变化。"
    ) % {"end": data["calibration_end"]}
    content.tables.append(
        Table(
            key="predicted",
            title=_("预测 LTV 最高的 %(n)s 位客户") % {"n": len(data["rows"])},
            columns=[Column(*labels.get(name, (name, "text"))) for name in data["columns"]],
            rows=data["rows"],
            note=f"{DEFINITIONS['predicted_ltv']} {note}",
            wide=True,
        )
    )
    meanings = {
        "r": _("BG/NBD：购买率（每周）Gamma 分布的形状"),
        "alpha": _("BG/NBD：购买率 Gamma 分布的尺度（周）"),
        "a": _("BG/NBD：每次购买后流失概率 Beta 分布的 a"),
        "b": _("BG/NBD：每次购买后流失概率 Beta 分布的 b"),
        "p": _("Gamma-Gamma：每个购买日消费额的形状"),
        "q": _("Gamma-Gamma：客户平均消费额分布的形状"),
        "gamma": _("Gamma-Gamma：客户平均消费额分布的尺度"),
    }
    content.tables.append(
        Table(
            key="model",
            title=_("模型参数"),
            columns=[
                Column(_("参数"), "text"),
                Column(_("值"), "decimal"),
                Column(_("含义"), "text"),
            ],
            rows=[
                [name, value, str(meanings.get(name, ""))] for name, value in data["params"].items()
            ],
            note=str(DEFINITIONS["predicted_ltv"]),
        )
    )
    content.notes.append(DEFINITIONS["predicted_ltv"])


def rfm_page(results: dict) -> Content:
    data = results["rfm"]["data"]
    segments = data["rfm"]
    total = sum(segments.values())
    table = Table(
        key="segments",
        title=_("RFM 八类分群"),
        columns=[Column(_("分群"), "text"), Column(_("客户"), "int"), Column(_("占比"), "rate")],
        rows=[
            [tag_label("rfm", name), count, count / total if total else None]
            for name, count in segments.items()
        ],
        note=DEFINITIONS["rfm"],
    )
    table.chart = _series_chart(table, "bar", [1])
    scores = Table(
        key="scores",
        title=_("R / F / M 得分分布（客户数）"),
        columns=[
            Column(_("得分"), "text"),
            Column("R", "int"),
            Column("F", "int"),
            Column("M", "int"),
        ],
        rows=[
            [
                str(score),
                data["rfm_r"].get(f"R{score}", 0),
                data["rfm_f"].get(f"F{score}", 0),
                data["rfm_m"].get(f"M{score}", 0),
            ]
            for score in range(1, 6)
        ],
        note=DEFINITIONS["rfm"],
    )
    scores.chart = _series_chart(scores, "bar", [1, 2, 3])
    names = list(segments)
    trend = Table(
        key="trend",
        title=_("RFM 八类分群的变化（每月末的客户数）"),
        columns=[Column(_("截至"), "text")]
        + [Column(tag_label("rfm", name), "int") for name in names],
        rows=[
            [row["end"], *[row["segments"].get(name, 0) for name in names]] for row in data["trend"]
        ],
        note=DEFINITIONS["rfm"],
        wide=True,
    )
    trend.chart = _series_chart(trend, "bar", list(range(1, len(names) + 1)), stack=True)
    return Content(
        numbers=[
            Number(_("参与分群的买家"), total, "int", SHORT["rfm"]),
            Number(_("窗口（天）"), data["window_days"], "int"),
            *_rfm_thresholds(data.get("thresholds")),
        ],
        tables=[table, scores, trend],
        notes=[DEFINITIONS["rfm"]],
    )


def _rfm_thresholds(thresholds: dict | None) -> list[Number]:
    """The cut-offs the eight segments were drawn with on the end day: a whole number of
    purchase days is compared with a mean, so segments jump when the mean crosses one."""
    if not thresholds:
        return []
    shown = []
    for key, label, better, kind in (
        ("recency_days", _("R 阈值（天）"), _("最近一次购买距今少于它为好"), "days"),
        ("frequency", _("F 阈值（购买天数）"), _("购买天数多于它为好"), "decimal"),
        ("monetary", _("M 阈值（元）"), _("净销售额高于它为好"), "money"),
    ):
        threshold = thresholds[key]
        source = _("设定值") if threshold["set"] else _("全体买家的均值")
        note = _("%(better)s（%(source)s）") % {"better": better, "source": source}
        shown.append(Number(label, threshold["value"], kind, note))
    return shown


def members_page(results: dict) -> Content:
    groups = {row["group"]: row for row in results["members"]["data"]["groups"]}
    names = {
        "member": str(MEMBER_NAMES["member"]),
        "non_member": str(MEMBER_NAMES["non_member"]),
        "all": _("全部买家"),
    }
    table = Table(
        key="comparison",
        title=_("会员与非会员"),
        columns=[
            Column(_("客户"), "text"),
            Column(_("买家"), "int"),
            Column(_("复购买家"), "int"),
            Column(_("复购率"), "rate"),
            Column(_("订单数"), "int"),
            Column(_("净销售额（元）"), "money"),
            Column(_("客单价（元）"), "money"),
            Column(_("人均 LTV（元）"), "money"),
        ],
        rows=[
            [
                names[key],
                row["buyers"],
                row["repeat_buyers"],
                row["rate"],
                row["orders"],
                row["net_revenue"],
                row["aov"],
                row["ltv_per_buyer"],
            ]
            for key, row in groups.items()
        ],
        note=" ".join(
            str(DEFINITIONS[key]) for key in ("member", "repurchase", "aov", "ltv_per_buyer")
        ),
        wide=True,
    )
    compared = Table(table.key, table.title, table.columns, table.rows[:2])
    table.chart = _series_chart(compared, "bar", [6, 7], right=(3,))
    member, other = groups["member"], groups["non_member"]
    value = results["members"]["data"]["value"]
    return Content(
        numbers=[
            Number(
                _("会员复购率高出非会员"), value["rate_gap"], "points", DEFINITIONS["member_value"]
            ),
            Number(_("会员复购率是非会员的"), value["rate_times"], "times"),
            Number(_("会员客单价高出非会员（元）"), value["aov_gap"], "money"),
            Number(_("会员人均 LTV 高出非会员（元）"), value["ltv_gap"], "money"),
            Number(_("会员人均 LTV 是非会员的"), value["ltv_times"], "times"),
            Number(_("会员复购率"), member["rate"], "rate", DEFINITIONS["repurchase"]),
            Number(_("非会员复购率"), other["rate"], "rate"),
            Number(_("会员客单价（元）"), member["aov"], "money", DEFINITIONS["aov"]),
            Number(_("非会员客单价（元）"), other["aov"], "money"),
            Number(
                _("会员人均 LTV（元）"),
                member["ltv_per_buyer"],
                "money",
                DEFINITIONS["ltv_per_buyer"],
            ),
            Number(_("非会员人均 LTV（元）"), other["ltv_per_buyer"], "money"),
        ],
        tables=[table],
        notes=[DEFINITIONS["member"], DEFINITIONS["window"]],
    )


def guides_page(results: dict) -> Content:
    guides = results["guides"]["data"]["guides"]
    table = Table(
        key="leaderboard",
        title=_("导购排行（按客户净销售额，前 %(n)s 名）") % {"n": len(guides)},
        columns=[
            Column(_("排名"), "int"),
            Column(_("导购"), "text"),
            Column(_("门店"), "text"),
            Column(_("按时完成任务"), "int"),
            Column(_("完成任务"), "int"),
            Column(_("按时率"), "rate"),
            Column(_("服务客户"), "int"),
            Column(_("7 天内成交客户"), "int"),
            Column(_("客户净销售额（元）"), "money"),
        ],
        rows=[
            [
                row["rank"],
                row["guide"],
                row["store"],
                row["done_on_time"],
                row["done"],
                row["on_time_rate"],
                row["customers_served"],
                row["purchased_7d"],
                row["net_revenue"],
            ]
            for row in guides
        ],
        note=DEFINITIONS["guides"],
        wide=True,
    )
    top = Table(table.key, table.title, table.columns, table.rows[:CHART_ROWS])
    table.chart = _series_chart(top, "bar", [8], x=1)
    if len(table.rows) > CHART_ROWS:
        table.chart["caption"] = _("图中为前 %(n)s 名") % {"n": CHART_ROWS}
    return Content(
        numbers=[
            Number(_("导购"), len(guides), "int"),
            Number(
                _("按时完成任务"),
                sum(r["done_on_time"] for r in guides),
                "int",
                SHORT["on_time"],
            ),
            Number(
                _("7 天内成交客户"),
                sum(r["purchased_7d"] for r in guides),
                "int",
                SHORT["bought_7d"],
            ),
        ],
        tables=[table],
        notes=[DEFINITIONS["guides"]],
    )


def _growth_table(key: str, title: str, rows: list[dict], label: str, blank: str) -> Table:
    return Table(
        key=key,
        title=title,
        columns=[
            Column(label, "text"),
            Column(_("新增会员"), "int"),
            Column(_("流失"), "int"),
            Column(_("净增"), "int"),
        ],
        rows=[[row["label"] or blank, row["new"], row["churned"], row["net"]] for row in rows],
        note=DEFINITIONS["growth"],
    )


def growth_page(results: dict) -> Content:
    data = results["growth"]["data"]
    daily = Table(
        key="daily",
        title=_("每日新增、流失与净增"),
        columns=[
            Column(_("日期"), "text"),
            Column(_("新增会员"), "int"),
            Column(_("流失"), "int"),
            Column(_("净增"), "int"),
        ],
        rows=[[row["day"], row["new"], row["churned"], row["net"]] for row in data["daily"]],
        note=DEFINITIONS["growth"],
        wide=True,
    )
    daily.chart = _series_chart(daily, "bar", [1, 2], lines=(3,), below=(2,), stack=True, zoom=True)
    return Content(
        numbers=[
            Number(_("新增会员"), data["new"], "int", SHORT["new"]),
            Number(_("流失"), data["churned"], "int", SHORT["churned"]),
            Number(_("净增"), data["net"], "int", SHORT["net"]),
        ],
        tables=[
            daily,
            _growth_table("by_guide", _("按导购"), data["guide"], _("导购"), _("（未知）")),
            _growth_table("by_store", _("按门店"), data["store"], _("门店"), _("（无门店）")),
            _growth_table(
                "by_state", _("按渠道码（state）"), data["state"], _("渠道码"), _("（无渠道码）")
            ),
        ],
        notes=[DEFINITIONS["growth"], DEFINITIONS["member"]],
    )


@dataclass(frozen=True)
class Page:
    slug: str
    url_name: str
    title: object
    metrics: tuple[str, ...]
    fields: tuple[str, ...]  # the filter form's fields this page offers
    build: Callable[[dict], Content]


FILTER_FIELDS = ("channel", "member", "store", "guide", "category")
PAGES = {
    page.slug: page
    for page in [
        Page(
            "repurchase",
            "dashboards",
            gettext_lazy("复购"),
            ("repurchase", "returning"),
            ("start", "end", "period", *FILTER_FIELDS),
            repurchase_page,
        ),
        Page(
            "cohorts",
            "analytics_cohorts",
            gettext_lazy("同期群"),
            ("cohorts",),
            ("start", "end", "period", "by", *FILTER_FIELDS),
            cohorts_page,
        ),
        Page(
            "conversion",
            "analytics_conversion",
            gettext_lazy("首单转化"),
            ("conversion",),
            ("start", "end"),
            conversion_page,
        ),
        Page(
            "intervals",
            "analytics_intervals",
            gettext_lazy("复购周期"),
            ("intervals",),
            ("start", "end"),
            intervals_page,
        ),
        Page(
            "ltv",
            "analytics_ltv",
            gettext_lazy("LTV"),
            ("ltv",),
            ("start", "end", "period", *FILTER_FIELDS),
            ltv_page,
        ),
        Page("rfm", "analytics_rfm", gettext_lazy("RFM"), ("rfm",), ("end",), rfm_page),
        Page(
            "members",
            "analytics_members",
            gettext_lazy("私域价值"),
            ("members",),
            ("start", "end"),
            members_page,
        ),
        Page(
            "guides",
            "analytics_guides",
            gettext_lazy("导购排行"),
            ("guides",),
            ("start", "end", "store"),
            guides_page,
        ),
        Page(
            "growth",
            "analytics_growth",
            gettext_lazy("客户增长"),
            ("growth",),
            ("start", "end", "guide", "store", "state"),
            growth_page,
        ),
    ]
}
