"""The metrics of DESIGN.md ("Words"), computed in SQL from orders and customer facts.

Every function takes plain arguments and returns plain data (dicts, lists), so
dashboards, the API, the export command and the weekly report show the same
numbers. Shared pieces:

- A purchase day is a distinct (customer, Asia/Shanghai day) with a paid or
  partially refunded order (fully refunded and cancelled orders are none);
  the sub-orders of one checkout are one purchase day, the day its first was
  paid, even when the others were paid after midnight (`facts.PURCHASE_DAY`).
- A window of two dates includes both whole days in Asia/Shanghai: paid_at
  from the start day's 00:00 to the end day's 24:00 (`order_paid_idx`).
- Filters narrow the orders that count: `channels` (the order's channel),
  `category` (orders with a kept line of that category), `member` (the
  customer is a private-domain member now), `guide` / `store` (the customer is
  followed now by that guide / a guide of that store).
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import connection
from django.utils import timezone

from contacts.facts import PURCHASE_DAY

SHANGHAI = ZoneInfo("Asia/Shanghai")
PURCHASED = "o.status IN ('paid', 'partially_refunded') AND o.paid_at IS NOT NULL"
# The window's first day and the day after its last, as dates (`_bounds`).
WINDOW_START_DAY = "(%(w_start)s AT TIME ZONE 'Asia/Shanghai')::date"
WINDOW_END_DAY = "(%(w_end)s AT TIME ZONE 'Asia/Shanghai')::date"
PERIODS = ("month", "week")


@dataclass(frozen=True)
class Filters:
    channels: tuple[str, ...] = ()
    category: str = ""
    member: bool | None = None
    guide_id: int | None = None
    store_id: int | None = None

    def sql(self) -> tuple[str, dict]:
        """Conditions on the order `o` and the facts row `f` (always joined)."""
        parts, params = [], {}
        if self.channels:
            parts.append("o.channel = ANY(%(f_channels)s)")
            params["f_channels"] = list(self.channels)
        if self.category:
            parts.append(
                "EXISTS (SELECT 1 FROM contacts_orderline l WHERE l.order_id = o.id"
                " AND l.category = %(f_category)s"
                " AND (l.refund_amount < l.line_amount OR l.line_amount = 0))"
            )
            params["f_category"] = self.category
        if self.member is not None:
            parts.append("f.is_member = %(f_member)s")
            params["f_member"] = self.member
        if self.guide_id is not None:
            parts.append("f.guide_ids @> ARRAY[%(f_guide)s]::bigint[]")
            params["f_guide"] = self.guide_id
        if self.store_id is not None:
            parts.append("f.store_ids @> ARRAY[%(f_store)s]::bigint[]")
            params["f_store"] = self.store_id
        return (" AND ".join(parts) or "true"), params


NO_FILTERS = Filters()


def _bounds(start: date, end: date) -> dict:
    """The window's instants: start day 00:00 to the day after the end, Shanghai."""
    if end < start:
        raise ValueError(f"结束日期 {end} 早于开始日期 {start}")
    return {
        "w_start": datetime(start.year, start.month, start.day, tzinfo=SHANGHAI),
        "w_end": datetime(end.year, end.month, end.day, tzinfo=SHANGHAI) + timedelta(days=1),
    }


def _days_sql(filters: Filters, windowed: bool = True) -> tuple[str, dict]:
    """Distinct purchase days (customer_id, day) of the filtered orders.

    Without a filter on the orders themselves (channel, category) they are the rows of
    the customers' purchase days, kept with the facts (one narrow row per day, no
    DISTINCT over the orders: about 5x faster at a million orders); otherwise they are
    read from the orders."""
    condition, params = filters.sql()
    if not (filters.channels or filters.category):
        window = f"AND p.day >= {WINDOW_START_DAY} AND p.day < {WINDOW_END_DAY}"
        return (
            f"""SELECT p.customer_id, p.day
                FROM contacts_customerpurchaseday p
                JOIN contacts_customerfacts f ON f.customer_id = p.customer_id
                WHERE {condition} {window if windowed else ""}""",
            params,
        )
    window = "AND o.paid_at >= %(w_start)s AND o.paid_at < %(w_end)s" if windowed else ""
    began = f"WHERE day >= {WINDOW_START_DAY}" if windowed else ""
    return (
        f"""SELECT DISTINCT customer_id, day FROM (
                SELECT o.customer_id, {PURCHASE_DAY} AS day
                FROM contacts_order o
                JOIN contacts_customerfacts f ON f.customer_id = o.customer_id
                WHERE {PURCHASED} {window} AND {condition}) bought {began}""",
        params,
    )


def _fetch(sql: str, params: dict) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def repurchase(*, start: date, end: date, filters: Filters = NO_FILTERS) -> dict:
    """复购率: buyers with ≥ 2 purchase days in the window ÷ buyers with ≥ 1."""
    days, params = _days_sql(filters)
    ((buyers, repeat),) = _fetch(
        f"""SELECT count(*), count(*) FILTER (WHERE n >= 2)
            FROM (SELECT customer_id, count(*) AS n FROM ({days}) d GROUP BY customer_id) b""",
        {**params, **_bounds(start, end)},
    )
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "buyers": buyers,
        "repeat_buyers": repeat,
        "rate": repeat / buyers if buyers else None,
    }


def returning(
    *, a_start: date, a_end: date, b_start: date, b_end: date, filters: Filters = NO_FILTERS
) -> dict:
    """回购率 from A to B: buyers of A who buy again in B ÷ buyers of A."""
    days_a, params = _days_sql(filters)
    bounds_b = _bounds(b_start, b_end)
    days_b = days_a.replace("%(w_start)s", "%(b_start)s").replace("%(w_end)s", "%(b_end)s")
    ((buyers, returned),) = _fetch(
        f"""SELECT count(*), count(*) FILTER (WHERE b.customer_id IS NOT NULL)
            FROM (SELECT DISTINCT customer_id FROM ({days_a}) d) a
            LEFT JOIN (SELECT DISTINCT customer_id FROM ({days_b}) d) b USING (customer_id)""",
        {
            **params,
            **_bounds(a_start, a_end),
            "b_start": bounds_b["w_start"],
            "b_end": bounds_b["w_end"],
        },
    )
    return {
        "a": [a_start.isoformat(), a_end.isoformat()],
        "b": [b_start.isoformat(), b_end.isoformat()],
        "buyers": buyers,
        "returned": returned,
        "rate": returned / buyers if buyers else None,
    }


def period_start(day: date, period: str) -> date:
    if period == "month":
        return day.replace(day=1)
    if period == "week":
        return day - timedelta(days=day.weekday())
    raise ValueError(f"period 应为 month 或 week，收到 {period}")


def period_label(day: date, period: str) -> str:
    if period == "month":
        return f"{day.year}-{day.month:02d}"
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def next_period(day: date, period: str) -> date:
    if period == "week":
        return day + timedelta(days=7)
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def periods_between(start: date, end: date, period: str) -> list[date]:
    """The starts of every period from the one holding `start` to the one holding `end`."""
    current, last, starts = period_start(start, period), period_start(end, period), []
    while current <= last:
        starts.append(current)
        current = next_period(current, period)
    return starts


def repurchase_trend(*, start: date, end: date, period: str, filters: Filters = NO_FILTERS):
    """The repurchase rate of each period (each period its own window, clipped to the
    range), in one pass over the range's purchase days."""
    days, params = _days_sql(filters)
    found = {
        first: (buyers, repeat)
        for first, buyers, repeat in _fetch(
            f"""SELECT period, count(*), count(*) FILTER (WHERE n >= 2)
                FROM (SELECT customer_id, {_trunc("day", period)} AS period, count(*) AS n
                      FROM ({days}) d GROUP BY 1, 2) b
                GROUP BY period""",
            {**params, **_bounds(start, end)},
        )
    }
    rows = []
    today = timezone.now().astimezone(SHANGHAI).date()
    for first in periods_between(start, end, period):
        whole_end = next_period(first, period) - timedelta(days=1)
        last = min(whole_end, end)
        buyers, repeat = found.get(first, (0, 0))
        rows.append(
            {
                "period": period_label(first, period),
                "start": max(first, start).isoformat(),
                "end": last.isoformat(),
                # cut by the range, or still running: fewer days to repeat in
                "partial": first < start or last < whole_end or whole_end > today,
                "buyers": buyers,
                "repeat_buyers": repeat,
                "rate": repeat / buyers if buyers else None,
            }
        )
    return rows


def returning_trend(*, start: date, end: date, period: str, filters: Filters = NO_FILTERS):
    """回购率 of each period of the range from the whole period before it: B is the
    period clipped to the range, A the period before (whole, even before the range).
    One pass over the purchase days from A of the first period to the end."""
    first = period_start(start, period)
    before = period_start(first - timedelta(days=1), period)
    days, params = _days_sql(filters)
    found = {
        period_a: (buyers, returned)
        for period_a, buyers, returned in _fetch(
            f"""
            WITH active AS (
                SELECT customer_id, {_trunc("day", period)} AS period,
                       bool_or(day >= %(start)s) AS in_range
                FROM ({days}) d GROUP BY 1, 2
            )
            SELECT a.period, count(*), count(b.customer_id)
            FROM active a LEFT JOIN active b ON b.customer_id = a.customer_id
                 AND b.period = (a.period + interval '1 {period}')::date AND b.in_range
            GROUP BY a.period
            """,
            {**params, **_bounds(before, end), "start": start},
        )
    }
    rows = []
    for b_first in periods_between(start, end, period):
        a_first = period_start(b_first - timedelta(days=1), period)
        buyers, returned = found.get(a_first, (0, 0))
        b_last = min(next_period(b_first, period) - timedelta(days=1), end)
        rows.append(
            {
                "period": period_label(b_first, period),
                "a": [a_first.isoformat(), (b_first - timedelta(days=1)).isoformat()],
                "b": [max(b_first, start).isoformat(), b_last.isoformat()],
                "buyers": buyers,
                "returned": returned,
                "rate": returned / buyers if buyers else None,
            }
        )
    return rows


def _trunc(expression: str, period: str) -> str:
    if period not in PERIODS:
        raise ValueError(f"period 应为 month 或 week，收到 {period}")
    return f"date_trunc('{period}', {expression})::date"


def cohorts(*, by: str, period: str, start: date, end: date, filters: Filters = NO_FILTERS) -> dict:
    """Cohort retention: customers grouped by the period of their first purchase day (or
    of joining the private domain) within [start, end]; retention[k] = share of the
    cohort with ≥ 1 purchase day in period k after the cohort's own, up to `end`."""
    if by not in ("first_purchase", "joined"):
        raise ValueError(f"by 应为 first_purchase 或 joined，收到 {by}")
    days, params = _days_sql(filters, windowed=False)
    # A customer's first day (of buying or joining) up to the end: one who first bought
    # after the end day is in no cohort, even in the end day's period.
    if by == "first_purchase":
        members = """SELECT customer_id, min(day) AS first_day FROM all_days
                     GROUP BY customer_id"""
    else:
        members = """SELECT f.customer_id,
                            (f.joined_at AT TIME ZONE 'Asia/Shanghai')::date AS first_day
                     FROM contacts_customerfacts f WHERE f.joined_at IS NOT NULL"""
    rows = _fetch(
        f"""
        WITH all_days AS ({days}), members AS ({members}),
        cohort AS (
            SELECT customer_id, {_trunc("first_day", period)} AS cohort FROM members
            WHERE first_day >= %(c_start)s AND first_day <= %(end)s
        ),
        activity AS (
            SELECT DISTINCT d.customer_id, c.cohort, {_trunc("d.day", period)} AS active
            FROM all_days d JOIN cohort c USING (customer_id)
            WHERE d.day <= %(end)s AND {_trunc("d.day", period)} >= c.cohort
        )
        -- Sizes, then active customers per (cohort, period): the activity rows are
        -- distinct per customer and period, so plain counts suffice.
        SELECT cohort, true, NULL::date, count(*), NULL::bigint FROM cohort GROUP BY cohort
        UNION ALL
        SELECT cohort, false, active, NULL::bigint, count(*) FROM activity GROUP BY 1, 3
        """,
        {**params, "c_start": period_start(start, period), "end": end},
    )
    sizes: dict[date, int] = {}
    active: dict[date, dict[date, int]] = {}
    for cohort, is_total, period_active, size, count in rows:
        if is_total:
            sizes[cohort] = size
        elif period_active is not None:
            active.setdefault(cohort, {})[period_active] = count
    result = []
    for cohort in sorted(sizes):
        size, starts = sizes[cohort], periods_between(cohort, end, period)
        counts = [active.get(cohort, {}).get(first, 0) for first in starts]
        result.append(
            {
                "cohort": period_label(cohort, period),
                "size": size,
                "active": counts,
                "retention": [count / size for count in counts],
            }
        )
    # Every cohort's last cell is the period holding `end`: short of days when the range
    # cuts it or it is still running.
    whole_end = next_period(period_start(end, period), period) - timedelta(days=1)
    today = timezone.now().astimezone(SHANGHAI).date()
    last_partial = end < whole_end or whole_end > today
    return {"by": by, "period": period, "cohorts": result, "last_partial": last_partial}


def conversion(
    *, start: date, end: date, within: tuple[int, ...] = (7, 14, 30), group: str = ""
) -> list[dict]:
    """首单转化率 within N days: members who joined in the window and never bought before
    joining; converted when their first purchase day falls within N days after the
    joining day (that day included). `group`: '' (all), 'state' (the channel code of the
    relationship they joined through) or 'guide' (its guide)."""
    key = {
        "": "''",
        "state": "coalesce(first.state, '')",
        "guide": "coalesce(first.guide_name, '')",
    }[group]
    converted = ", ".join(
        f"count(*) FILTER (WHERE f.first_purchase_on <= j.joined_day + {int(n)}) AS within_{int(n)}"
        for n in within
    )
    rows = _fetch(
        f"""
        WITH joined AS (
            SELECT f.customer_id, (f.joined_at AT TIME ZONE 'Asia/Shanghai')::date AS joined_day
            FROM contacts_customerfacts f
            WHERE f.joined_at >= %(w_start)s AND f.joined_at < %(w_end)s
        ), first AS (
            SELECT DISTINCT ON (r.customer_id) r.customer_id, r.state, g.name AS guide_name
            FROM contacts_relationship r JOIN contacts_guide g ON g.id = r.guide_id
            WHERE r.customer_id IN (SELECT customer_id FROM joined)
            ORDER BY r.customer_id, r.added_at, r.id
        ), eligible AS (
            SELECT j.* FROM joined j
            WHERE NOT EXISTS (SELECT 1 FROM contacts_customerpurchaseday d
                              WHERE d.customer_id = j.customer_id AND d.day < j.joined_day)
        )
        SELECT {key} AS key, count(*) AS members, {converted}
        FROM eligible j JOIN contacts_customerfacts f ON f.customer_id = j.customer_id
        LEFT JOIN first ON first.customer_id = j.customer_id
        GROUP BY 1 ORDER BY 2 DESC, 1
        """,
        _bounds(start, end),
    )
    result = []
    for key_value, members, *counts in rows:
        result.append(
            {
                "key": key_value,
                "members": members,
                **{f"within_{n}": count for n, count in zip(within, counts, strict=True)},
                **{
                    f"rate_{n}": (count / members if members else None)
                    for n, count in zip(within, counts, strict=True)
                },
            }
        )
    return result


def intervals(*, start: date, end: date) -> list[dict]:
    """Days between consecutive purchase days, per category (the days a customer bought
    that category) and over all purchases ('全部'): count, median, and the distribution
    in buckets. Pairs whose later day is in the window count."""
    rows = _fetch(
        f"""
        WITH days AS (
            SELECT DISTINCT o.customer_id, l.category, {PURCHASE_DAY} AS day
            FROM contacts_order o JOIN contacts_orderline l ON l.order_id = o.id
            WHERE {PURCHASED} AND o.paid_at < %(w_end)s AND o.customer_id IS NOT NULL
              AND (l.refund_amount < l.line_amount OR l.line_amount = 0)
        ), per_category AS (
            SELECT category, day,
                   day - lag(day) OVER (PARTITION BY customer_id, category ORDER BY day) AS gap
            FROM (SELECT DISTINCT customer_id, category, day FROM days
                  WHERE category <> '') c
        ), overall AS (
            SELECT '全部' AS category, day,
                   day - lag(day) OVER (PARTITION BY customer_id ORDER BY day) AS gap
            FROM (SELECT DISTINCT customer_id, day FROM days) a
        ), gaps AS (
            SELECT * FROM per_category UNION ALL SELECT * FROM overall
        )
        SELECT category, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY gap),
               count(*) FILTER (WHERE gap <= 30), count(*) FILTER (WHERE gap BETWEEN 31 AND 60),
               count(*) FILTER (WHERE gap BETWEEN 61 AND 90),
               count(*) FILTER (WHERE gap BETWEEN 91 AND 180), count(*) FILTER (WHERE gap > 180)
        FROM gaps WHERE gap IS NOT NULL AND day >= {WINDOW_START_DAY}
        GROUP BY category ORDER BY category = '全部' DESC, count(*) DESC, category
        """,
        _bounds(start, end),
    )
    labels = ["≤30天", "31-60天", "61-90天", "91-180天", ">180天"]
    return [
        {
            "category": category,
            "intervals": count,
            "median_days": median,
            "distribution": dict(zip(labels, buckets, strict=True)),
        }
        for category, count, median, *buckets in rows
    ]


def historical_ltv(
    *, period: str, start: date, end: date, periods: int = 24, filters: Filters = NO_FILTERS
) -> dict:
    """Historical LTV: cumulative net revenue per customer of each first-purchase cohort,
    k periods after its start (k = 0 … periods − 1, up to `end`). Net revenue per purchase
    day comes from the customers' purchase days unless the orders themselves are filtered
    (channel, category), as in `_days_sql`. A category's LTV is what was spent on the
    category: its lines' net (not the whole orders'), the cohort by the first day it was
    bought."""
    condition, params = filters.sql()
    if filters.category:
        spend = f"""SELECT o.customer_id, {PURCHASE_DAY} AS day,
                           l.line_amount - l.refund_amount AS net
                    FROM contacts_order o
                    JOIN contacts_orderline l ON l.order_id = o.id
                     AND l.category = %(f_category)s
                     AND (l.refund_amount < l.line_amount OR l.line_amount = 0)
                    JOIN contacts_customerfacts f ON f.customer_id = o.customer_id
                    WHERE {PURCHASED} AND {condition}"""
    elif filters.channels:
        spend = f"""SELECT o.customer_id, {PURCHASE_DAY} AS day,
                           o.amount - o.refund_amount AS net
                    FROM contacts_order o
                    JOIN contacts_customerfacts f ON f.customer_id = o.customer_id
                    WHERE {PURCHASED} AND {condition}"""
    else:
        spend = f"""SELECT p.customer_id, p.day, p.net_revenue AS net
                    FROM contacts_customerpurchaseday p
                    JOIN contacts_customerfacts f ON f.customer_id = p.customer_id
                    WHERE {condition}"""
    rows = _fetch(
        f"""
        WITH spend AS ({spend}),
        cohort AS (  -- by the first purchase day up to the end, as in `cohorts`
            SELECT customer_id, {_trunc("first_day", period)} AS cohort
            FROM (SELECT customer_id, min(day) AS first_day FROM spend GROUP BY customer_id) c
            WHERE first_day >= %(c_start)s AND first_day <= %(end)s
        )
        SELECT cohort, NULL::date, count(*), NULL::numeric FROM cohort GROUP BY cohort
        UNION ALL
        SELECT c.cohort, {_trunc("s.day", period)}, NULL, sum(s.net)
        FROM cohort c JOIN spend s USING (customer_id)
        WHERE s.day <= %(end)s
        GROUP BY 1, 2
        """,
        {**params, "c_start": period_start(start, period), "end": end},
    )
    sizes: dict[date, int] = {}
    revenue: dict[date, dict[date, float]] = {}
    for cohort, active, size, net in rows:
        if active is None:
            sizes[cohort] = size
        else:
            revenue.setdefault(cohort, {})[active] = float(net)
    result = []
    for cohort in sorted(sizes):
        starts = periods_between(cohort, end, period)[:periods]
        cumulative, curve = 0.0, []
        for first in starts:
            cumulative += revenue.get(cohort, {}).get(first, 0.0)
            curve.append(round(cumulative / sizes[cohort], 2))
        result.append({"cohort": period_label(cohort, period), "size": sizes[cohort], "ltv": curve})
    return {"period": period, "cohorts": result}


RFM_KEYS = ("rfm", "rfm_r", "rfm_f", "rfm_m")


def rfm(*, end: date, keys: tuple[str, ...] = RFM_KEYS) -> dict:
    """RFM on the day `end`: the eight segments ('rfm') and the R / F / M score
    distributions, with tagging's definitions and thresholds (one definition for tags
    and dashboards); `keys` picks which of them."""
    from django.db import transaction

    from tagging.system import SEGMENTS, current_settings, rfm_window_create

    settings = current_settings()
    result = {"end": end.isoformat(), "window_days": settings["rfm"]["window_days"]}
    with transaction.atomic(), connection.cursor() as cursor:
        rfm_window_create(cursor, settings, end)
        if "rfm" in keys:
            # The cut-offs the eight segments were drawn with: set, or the buyers' means.
            cursor.execute("SELECT avg(r), avg(fr), avg(m) FROM rfm_window")
            names = ("recency_days", "frequency", "monetary")
            means = dict(zip(names, cursor.fetchone(), strict=True))
            result["thresholds"] = {}
            for key, mean in means.items():
                chosen = settings["rfm"][key]
                value = chosen if chosen is not None else mean
                result["thresholds"][key] = {
                    "value": None if value is None else float(value),
                    "set": chosen is not None,
                }
        for segment in SEGMENTS:
            if segment.key not in keys:
                continue
            cursor.execute(
                f"SELECT name, count(*) FROM ({segment.sql(settings)}) s(customer_id, name)"
                " GROUP BY name",
                {"today": end},
            )
            counts = dict(cursor.fetchall())
            result[segment.key] = {name: counts.get(name, 0) for name in segment.tags(settings)}
    return result


def rfm_trend(*, end: date, months: int = 12) -> list[dict]:
    """The eight RFM segments' sizes over time: on the last day of each of the `months`
    months up to `end` (for the end's own month, on `end`), oldest first."""
    days, day = [], end
    for _ in range(months):
        days.append(day)
        day = day.replace(day=1) - timedelta(days=1)
    return [
        {"end": day.isoformat(), "segments": rfm(end=day, keys=("rfm",))["rfm"]}
        for day in reversed(days)
    ]
