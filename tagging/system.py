"""The built-in segments: system tag groups whose tags are computed, one per customer.

Each segment is a SQL query giving (customer_id, tag name) for the customers in
scope (`{scope}` is replaced by a filter on `f.customer_id`, or by `true` in a
full run). Thresholds come from `SystemTagSettings` over `DEFAULTS`, so an
operator can change them; the definitions follow DESIGN.md ("Words").

RFM compares each buyer to the whole population (means, quintiles), so its
three score groups and its segment group are always evaluated over every
customer, in incremental runs too: otherwise an incremental run and a full run
would disagree as soon as the means moved. Their window is computed once per
evaluation into the temporary table `rfm_window` (`rfm_window_create`).
"""

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from django.utils.translation import gettext, gettext_noop

from tagging.models import SystemTagSettings

DEFAULTS: dict = {
    "lifecycle": {"sleeping_after_days": 90, "lost_after_days": 180, "loyal_min_purchase_days": 4},
    # Recency, frequency and monetary over the last `window_days`; a threshold of
    # null means "the mean of all buyers in the window".
    "rfm": {"window_days": 365, "recency_days": None, "frequency": None, "monetary": None},
    "preference": {"min_share": 0.5, "min_lines": 2},
    "frequency_bands": [1, 2, 3, 5],
    "cycle_bounds": [30, 60, 90, 180],
    "channels": {
        "private": ["miniapp", "youzan"],
        "public": ["tmall", "jd", "douyin"],
        "min_share": 0.6,
    },
}

# The built-in tags are named in Chinese: they are pushed to WeCom as corp tags, and
# WeCom shows them to guides as named. Their names are message ids too (with `{…}`
# fields for the bands made from settings), so pages show them in the reader's
# language (`tag_label`).
LIFECYCLE = [
    gettext_noop("潜客"),
    gettext_noop("新客"),
    gettext_noop("复购客"),
    gettext_noop("忠诚客"),
    gettext_noop("沉睡"),
    gettext_noop("流失"),
]
RFM_SEGMENTS = {
    (True, True, True): gettext_noop("重要价值"),
    (True, False, True): gettext_noop("重要发展"),
    (False, True, True): gettext_noop("重要保持"),
    (False, False, True): gettext_noop("重要挽留"),
    (True, True, False): gettext_noop("一般价值"),
    (True, False, False): gettext_noop("一般发展"),
    (False, True, False): gettext_noop("一般保持"),
    (False, False, False): gettext_noop("一般挽留"),
}
FIVE_A = [
    gettext_noop("A1 认知"),
    gettext_noop("A2 吸引"),
    gettext_noop("A3 问询"),
    gettext_noop("A4 行动"),
    gettext_noop("A5 拥护"),
]
CHANNEL_PREFERENCE = [
    gettext_noop("私域为主"),
    gettext_noop("公域为主"),
    gettext_noop("公私域均衡"),
]
# Purchase-day bands: one day count, a range, and the last, open band.
FREQUENCY_NAMES = (
    gettext_noop("{low}次"),
    gettext_noop("{low}-{high}次"),
    gettext_noop("{low}次及以上"),
)
# Median-interval bands: up to the first bound, a range, and beyond the last bound.
CYCLE_NAMES = (
    gettext_noop("{high}天内"),
    gettext_noop("{low}-{high}天"),
    gettext_noop("{low}天以上"),
)

PURCHASED = "o.status IN ('paid', 'partially_refunded') AND o.paid_at IS NOT NULL"


def current_settings() -> dict:
    """DEFAULTS with the operator's changes on top (one level deep)."""
    row = SystemTagSettings.objects.first()
    saved = row.values if row else {}
    merged = {}
    for key, default in DEFAULTS.items():
        value = saved.get(key, default)
        merged[key] = {**default, **value} if isinstance(default, dict) else value
    return merged


@dataclass(frozen=True)
class Segment:
    key: str
    group: str  # the tag group's name, a message id
    description: str  # its tags' description, a message id
    tags: Callable[[dict], list[str]] | None  # fixed names, in order; None = from the data
    sql: Callable[[dict], str]  # (settings) -> SELECT customer_id, name … {scope}
    population: bool = False  # evaluated over everyone, even in an incremental run
    names: tuple[str, ...] = ()  # the message ids its tags are named by (none: the data's)


def _bands(bounds: list[int]) -> list[tuple[int, int | None, str]]:
    """[1, 2, 3, 5] → (1, 1, '1次'), (2, 2, '2次'), (3, 4, '3-4次'), (5, None, '5次及以上')."""
    one, between, last = FREQUENCY_NAMES
    bands = []
    for index, low in enumerate(bounds):
        if index + 1 < len(bounds):
            high = bounds[index + 1] - 1
            name = one.format(low=low) if high == low else between.format(low=low, high=high)
            bands.append((low, high, name))
        else:
            bands.append((low, None, last.format(low=low)))
    return bands


def _cycle_bands(bounds: list[int]) -> list[tuple[float, float | None, str]]:
    """[30, 60, 90, 180] → 30天内, 31-60天, 61-90天, 91-180天, 180天以上 (median days)."""
    first, between, last = CYCLE_NAMES
    bands: list[tuple[float, float | None, str]] = [(0, bounds[0], first.format(high=bounds[0]))]
    for low, high in zip(bounds, bounds[1:], strict=False):
        bands.append((low, high, between.format(low=low + 1, high=high)))
    bands.append((bounds[-1], None, last.format(low=bounds[-1])))
    return bands


def _case(column: str, bands, *, left_open: bool) -> str:
    parts = []
    for low, high, name in bands:
        lower = f"{column} > {low}" if left_open and low else f"{column} >= {low}"
        test = lower if high is None else f"{lower} AND {column} <= {high}"
        parts.append(f"WHEN {test} THEN '{name}'")
    return "CASE " + " ".join(parts) + " END"


def _lifecycle(s: dict) -> str:
    c = s["lifecycle"]
    return f"""
        SELECT f.customer_id, CASE
            WHEN f.purchase_days = 0 THEN '潜客'
            WHEN %(today)s::date - f.last_purchase_on > {int(c["lost_after_days"])} THEN '流失'
            WHEN %(today)s::date - f.last_purchase_on > {int(c["sleeping_after_days"])} THEN '沉睡'
            WHEN f.purchase_days >= {int(c["loyal_min_purchase_days"])} THEN '忠诚客'
            WHEN f.purchase_days >= 2 THEN '复购客'
            ELSE '新客' END
        FROM contacts_customerfacts f WHERE {{scope}}"""


def rfm_window_create(cursor, settings: dict, today) -> None:
    """The RFM window's recency, frequency and monetary per buyer, computed once into a
    temporary table (`rfm_window`) that the four RFM groups read: one pass over the
    purchase days per evaluation instead of four."""
    cursor.execute(
        "DROP TABLE IF EXISTS rfm_window;"
        f" CREATE TEMP TABLE rfm_window ON COMMIT DROP AS {_rfm_window(settings)}",
        {"today": today},
    )
    cursor.execute("ANALYZE rfm_window")


def _rfm_window(s: dict) -> str:
    return f"""
        SELECT d.customer_id, %(today)s::date - max(d.day) AS r, count(*) AS fr,
               sum(d.net_revenue) AS m
        FROM contacts_customerpurchaseday d
        JOIN contacts_customerfacts f ON f.customer_id = d.customer_id
        WHERE d.day > %(today)s::date - {int(s["rfm"]["window_days"])} AND d.day <= %(today)s::date
        GROUP BY d.customer_id"""


def _rfm_segment(s: dict) -> str:
    c = s["rfm"]

    def threshold(key: str, column: str) -> str:
        return f"{float(c[key])}" if c[key] is not None else f"(SELECT avg({column}) FROM w)"

    cases = " ".join(
        f"WHEN r_good = {r} AND f_good = {f} AND m_good = {m} THEN '{name}'"
        for (r, f, m), name in RFM_SEGMENTS.items()
    )
    return f"""
        WITH w AS (SELECT * FROM rfm_window),
        graded AS (
            SELECT customer_id, r < {threshold("recency_days", "r")} AS r_good,
                   fr > {threshold("frequency", "fr")} AS f_good,
                   m > {threshold("monetary", "m")} AS m_good
            FROM w)
        SELECT customer_id, CASE {cases} END FROM graded"""


def _rfm_score(letter: str, column: str, descending: bool) -> Callable[[dict], str]:
    # Quintile by rank: ties share a score (most buyers have one purchase day; they
    # all get F1 rather than being split at random across scores).
    order = f"{column} DESC" if descending else column

    def sql(s: dict) -> str:
        return f"""
            WITH w AS (SELECT * FROM rfm_window)
            SELECT customer_id,
                   '{letter}' || least(5, floor(percent_rank() OVER (ORDER BY {order}) * 5) + 1)
            FROM w"""

    return sql


def _preference(kind: str) -> Callable[[dict], str]:
    def sql(s: dict) -> str:
        p = s["preference"]
        return f"""
            SELECT f.customer_id, left(f.top_{kind}, 30) FROM contacts_customerfacts f
            WHERE {{scope}} AND f.top_{kind} <> '' AND f.lines >= {int(p["min_lines"])}
              AND f.top_{kind}_share >= {float(p["min_share"])}"""

    return sql


def _frequency(s: dict) -> str:
    bands = _bands([int(b) for b in s["frequency_bands"]])
    return f"""
        SELECT f.customer_id, {_case("f.purchase_days", bands, left_open=False)}
        FROM contacts_customerfacts f WHERE {{scope}} AND f.purchase_days >= {bands[0][0]}"""


def _cycle(s: dict) -> str:
    bands = _cycle_bands([int(b) for b in s["cycle_bounds"]])
    return f"""
        SELECT f.customer_id, {_case("f.median_interval_days", bands, left_open=True)}
        FROM contacts_customerfacts f
        WHERE {{scope}} AND f.median_interval_days IS NOT NULL"""


def _five_a(s: dict) -> str:
    loyal = int(s["lifecycle"]["loyal_min_purchase_days"])
    return f"""
        SELECT f.customer_id, CASE
            WHEN f.purchase_days >= 2 AND f.is_member
                 AND (f.in_group OR f.purchase_days >= {loyal}) THEN '{FIVE_A[4]}'
            WHEN f.purchase_days >= 1 THEN '{FIVE_A[3]}'
            WHEN f.is_member AND f.in_group THEN '{FIVE_A[2]}'
            WHEN f.is_member THEN '{FIVE_A[1]}'
            ELSE '{FIVE_A[0]}' END
        FROM contacts_customerfacts f WHERE {{scope}}"""


def _channel_preference(s: dict) -> str:
    c = s["channels"]
    private = ", ".join(f"'{_word(v)}'" for v in c["private"]) or "''"
    public = ", ".join(f"'{_word(v)}'" for v in c["public"]) or "''"
    share = float(c["min_share"])
    return f"""
        WITH spend AS (
            SELECT o.customer_id,
                   coalesce(sum(o.amount - o.refund_amount)
                            FILTER (WHERE o.channel IN ({private})), 0) AS private,
                   coalesce(sum(o.amount - o.refund_amount)
                            FILTER (WHERE o.channel IN ({public})), 0) AS public
            FROM contacts_order o JOIN contacts_customerfacts f ON f.customer_id = o.customer_id
            WHERE {PURCHASED} AND {{scope}}
            GROUP BY o.customer_id)
        SELECT customer_id, CASE
            WHEN private / (private + public) >= {share} THEN '私域为主'
            WHEN public / (private + public) >= {share} THEN '公域为主'
            ELSE '公私域均衡' END
        FROM spend WHERE private + public > 0"""


def _word(value: str) -> str:
    """A channel code inside SQL text: letters, digits and underscores only."""
    if not str(value).replace("_", "").isalnum():
        raise ValueError(f"渠道代码只能包含字母、数字和下划线：{value!r}")
    return str(value)


SEGMENTS: list[Segment] = [
    Segment(
        "lifecycle",
        gettext_noop("生命周期"),
        gettext_noop(
            "潜客：从未购买；新客：购买 1 天；复购客：2 天及以上；忠诚客：达到忠诚门槛；"
            "沉睡、流失：距最近购买超过设定天数"
        ),
        lambda s: LIFECYCLE,
        _lifecycle,
        names=tuple(LIFECYCLE),
    ),
    Segment(
        "rfm",
        gettext_noop("RFM 分层"),
        gettext_noop(
            "近度 R、频度 F（购买天数）、额度 M（净销售额）在窗口内与均值（或设定阈值）"
            "比较得出的八类"
        ),
        lambda s: list(RFM_SEGMENTS.values()),
        _rfm_segment,
        population=True,
        names=tuple(RFM_SEGMENTS.values()),
    ),
    Segment(
        "rfm_r",
        gettext_noop("RFM R 得分"),
        gettext_noop("窗口内最近一次购买越近得分越高，按五分位 1–5"),
        lambda s: [f"R{n}" for n in range(1, 6)],
        _rfm_score("R", "r", descending=True),
        population=True,
    ),
    Segment(
        "rfm_f",
        gettext_noop("RFM F 得分"),
        gettext_noop("窗口内购买天数，按五分位 1–5"),
        lambda s: [f"F{n}" for n in range(1, 6)],
        _rfm_score("F", "fr", descending=False),
        population=True,
    ),
    Segment(
        "rfm_m",
        gettext_noop("RFM M 得分"),
        gettext_noop("窗口内净销售额，按五分位 1–5"),
        lambda s: [f"M{n}" for n in range(1, 6)],
        _rfm_score("M", "m", descending=False),
        population=True,
    ),
    Segment(
        "material",
        gettext_noop("材质偏好"),
        gettext_noop("购买件数中占比最高的材质，占比达到设定比例时"),
        None,
        _preference("material"),
    ),
    Segment(
        "style",
        gettext_noop("款式偏好"),
        gettext_noop("购买件数中占比最高的款式，占比达到设定比例时"),
        None,
        _preference("style"),
    ),
    Segment(
        "category",
        gettext_noop("品类偏好"),
        gettext_noop("购买件数中占比最高的品类，占比达到设定比例时"),
        None,
        _preference("category"),
    ),
    Segment(
        "frequency",
        gettext_noop("购买频次"),
        gettext_noop("累计购买天数所在区间"),
        lambda s: [name for _, _, name in _bands(s["frequency_bands"])],
        _frequency,
        names=FREQUENCY_NAMES,
    ),
    Segment(
        "cycle",
        gettext_noop("复购周期"),
        gettext_noop("相邻两个购买日间隔的中位数所在区间"),
        lambda s: [name for _, _, name in _cycle_bands(s["cycle_bounds"])],
        _cycle,
        names=CYCLE_NAMES,
    ),
    Segment(
        "five_a",
        gettext_noop("5A 人群"),
        gettext_noop(
            "A1 认知：已知客户；A2 吸引：私域会员；A3 问询：会员且在客户群中；A4 行动：已购买；"
            "A5 拥护：复购的会员，在客户群中或达到忠诚门槛"
        ),
        lambda s: FIVE_A,
        _five_a,
        names=tuple(FIVE_A),
    ),
    Segment(
        "channel",
        gettext_noop("渠道偏好"),
        gettext_noop("私域渠道（小程序、有赞）与公域渠道（天猫、京东、抖音）的净销售额占比"),
        lambda s: CHANNEL_PREFERENCE,
        _channel_preference,
        names=tuple(CHANNEL_PREFERENCE),
    ),
]
SEGMENT_BY_KEY = {segment.key: segment for segment in SEGMENTS}


@functools.cache
def _pattern(message_id: str) -> re.Pattern:
    """'{low}-{high}次' → a pattern matching '3-4次', with groups low and high."""
    fields = re.sub(r"\\\{(\w+)\\\}", lambda m: f"(?P<{m[1]}>\\d+)", re.escape(message_id))
    return re.compile(fields + r"\Z")


def tag_label(system_key: str, name: str) -> str:
    """A built-in tag's name in the reader's language. Tags named after the data
    (材质偏好: 冰丝) keep their names."""
    segment = SEGMENT_BY_KEY.get(system_key)
    for message_id in segment.names if segment else ():
        match = _pattern(message_id).match(name)
        if match:
            return gettext(message_id).format(**match.groupdict())
    return name


def group_label(system_key: str, name: str) -> str:
    """A tag group's name in the reader's language (a built-in group's, translated)."""
    segment = SEGMENT_BY_KEY.get(system_key)
    return gettext(segment.group) if segment else name


def description_label(system_key: str, description: str) -> str:
    """A tag's description in the reader's language (a built-in tag's, translated)."""
    segment = SEGMENT_BY_KEY.get(system_key)
    return gettext(description) if segment and description == segment.description else description
