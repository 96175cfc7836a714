"""Dashboard numbers that compare groups, in SQL: member vs non-member (私域价值), the
guide leaderboard (导购排行), customer growth (客户增长), and the repurchase rate split
by one dimension (the small tables of the 复购 page).

Definitions follow DESIGN.md ("Words") and `analytics.metrics`: a purchase is an
order paid or partially refunded (fully refunded and cancelled orders are none), net
revenue is amount − refund_amount, a window of two dates covers both whole days in
Asia/Shanghai. Every function returns plain data (ints, floats, Decimals, strings).
"""

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from analytics.metrics import (
    NO_FILTERS,
    PURCHASED,
    WINDOW_END_DAY,
    WINDOW_START_DAY,
    Filters,
    _bounds,
    _fetch,
)
from contacts.facts import CHECKOUT, PURCHASE_DAY

CENT = Decimal("0.01")
DELETIONS = ("deleted_by_customer", "deleted_by_guide", "ended")
GROWTH_GROUPS = ("guide", "store", "state")


def _ratio(numerator, denominator) -> float | None:
    return float(numerator) / float(denominator) if denominator else None


def _money(value) -> Decimal:
    return Decimal(value or 0).quantize(CENT, rounding=ROUND_HALF_UP)


def _per(amount: Decimal, count: int) -> Decimal | None:
    return (amount / count).quantize(CENT, rounding=ROUND_HALF_UP) if count else None


# -- 私域价值: members vs non-members ---------------------------------------------------------

# One pass over the window's orders (order_paid_idx), joined to each buyer's facts for
# membership (a private-domain member now, as the metrics' `member` filter reads it).
_MEMBER_SQL = f"""
WITH bought AS (
    SELECT o.customer_id, f.is_member, {PURCHASE_DAY} AS day,
           o.amount - o.refund_amount AS net,
           {CHECKOUT} AS checkout
    FROM contacts_order o JOIN contacts_customerfacts f ON f.customer_id = o.customer_id
    WHERE o.status IN ('paid', 'partially_refunded') AND o.paid_at IS NOT NULL
      AND o.paid_at >= %(w_start)s AND o.paid_at < %(w_end)s
), buyers AS (
    SELECT customer_id, is_member, count(DISTINCT day) AS days,
           count(DISTINCT checkout) AS orders, sum(net) AS net
    FROM bought WHERE day >= {WINDOW_START_DAY}  -- not a checkout begun before the window
    GROUP BY customer_id, is_member
)
SELECT is_member, count(*), count(*) FILTER (WHERE days >= 2), sum(orders), sum(net)
FROM buyers GROUP BY is_member
"""  # noqa: S608 - a fixed SQL fragment


def _member_row(group: str, buyers: int, repeat: int, orders: int, net: Decimal) -> dict:
    return {
        "group": group,
        "buyers": buyers,
        "repeat_buyers": repeat,
        "rate": _ratio(repeat, buyers),
        "orders": orders,
        "net_revenue": _money(net),
        "aov": _per(_money(net), orders),
        "ltv_per_buyer": _per(_money(net), buyers),
    }


def member_comparison(*, start: date, end: date) -> list[dict]:
    """Members vs non-members over the window: buyers, repurchase rate (buyers with ≥ 2
    purchase days ÷ buyers), orders (checkouts: sub-orders of one are one), net revenue,
    AOV (net revenue ÷ orders) and LTV per buyer (net revenue ÷ buyers). Rows: member,
    non_member, all."""
    found = {is_member: rest for is_member, *rest in _fetch(_MEMBER_SQL, _bounds(start, end))}
    rows = []
    for group, is_member in (("member", True), ("non_member", False)):
        buyers, repeat, orders, net = found.get(is_member, (0, 0, 0, Decimal(0)))
        rows.append(_member_row(group, buyers, repeat, int(orders), net))
    totals = [sum(row[key] for row in rows) for key in ("buyers", "repeat_buyers", "orders")]
    rows.append(_member_row("all", *totals, sum(row["net_revenue"] for row in rows)))
    return rows


def member_value(rows: list[dict]) -> dict:
    """The value of the private domain in numbers, from `member_comparison`'s rows: how
    far members are ahead of non-members in repurchase rate (percentage points, and as
    a multiple), AOV and LTV per buyer (yuan, and as a multiple). None where a group has
    no buyers (or a multiple's base is zero)."""
    member, other = rows[0], rows[1]

    def gap(key: str):
        if member[key] is None or other[key] is None:
            return None
        return member[key] - other[key]

    def times(key: str) -> float | None:
        if member[key] is None or not other[key]:
            return None
        return float(member[key]) / float(other[key])

    return {
        "rate_gap": gap("rate"),
        "rate_times": times("rate"),
        "aov_gap": gap("aov"),
        "ltv_gap": gap("ltv_per_buyer"),
        "ltv_times": times("ltv_per_buyer"),
    }


# -- 导购排行: the guide leaderboard ---------------------------------------------------------

# Touchpoints done in the window read touchpoint_done_idx (guide, done_at; done and skipped
# rows only); the 7-day purchase probe reads order_customer_idx (customer, paid_at) for done
# rows only; live relationships come from relationship_guide_idx (guide, is_active).
_LEADERBOARD_SQL = """
WITH done AS (
    SELECT t.guide_id, count(*) AS done,
           count(*) FILTER (WHERE t.done_at <= t.window_ends_at) AS on_time,
           count(DISTINCT t.customer_id) FILTER (WHERE EXISTS (
               SELECT 1 FROM contacts_order o
               WHERE o.customer_id = t.customer_id
                 AND o.status IN ('paid', 'partially_refunded') AND o.paid_at IS NOT NULL
                 AND o.paid_at >= t.done_at AND o.paid_at <= t.done_at + interval '7 days'
           )) AS bought
    FROM sop_touchpoint t
    WHERE t.status = 'done' AND t.done_at >= %(w_start)s AND t.done_at < %(w_end)s
    GROUP BY t.guide_id
), served AS (
    SELECT r.guide_id, count(*) AS customers
    FROM contacts_relationship r WHERE r.is_active GROUP BY r.guide_id
), revenue AS (
    SELECT r.guide_id, sum(o.amount - o.refund_amount) AS net
    FROM contacts_relationship r JOIN contacts_order o ON o.customer_id = r.customer_id
    WHERE r.is_active AND o.status IN ('paid', 'partially_refunded') AND o.paid_at IS NOT NULL
      AND o.paid_at >= %(w_start)s AND o.paid_at < %(w_end)s
    GROUP BY r.guide_id
)
SELECT g.id, g.name, coalesce(s.name, ''), coalesce(d.on_time, 0), coalesce(d.done, 0),
       coalesce(sv.customers, 0), coalesce(d.bought, 0), coalesce(rv.net, 0)
FROM contacts_guide g
LEFT JOIN contacts_store s ON s.id = g.store_id
LEFT JOIN done d ON d.guide_id = g.id
LEFT JOIN served sv ON sv.guide_id = g.id
LEFT JOIN revenue rv ON rv.guide_id = g.id
WHERE (g.is_active OR d.guide_id IS NOT NULL OR sv.guide_id IS NOT NULL)
  AND (%(store)s::bigint IS NULL OR g.store_id = %(store)s::bigint)
ORDER BY 8 DESC, 4 DESC, g.id
LIMIT %(limit)s
"""


def guide_leaderboard(
    *, start: date, end: date, store_id: int | None = None, limit: int = 100
) -> list[dict]:
    """Per guide (active, or with live customers or done touches): tasks done in the
    window and those done on time (done_at ≤ window_ends_at), customers served (live
    relationships now), customers who paid within 7 days after a touch done in the
    window (distinct), and the net revenue in the window of the customers they follow
    now. Best net revenue first; at most `limit` rows."""
    rows = _fetch(_LEADERBOARD_SQL, {**_bounds(start, end), "store": store_id, "limit": limit})
    return [
        {
            "rank": rank,
            "guide_id": guide_id,
            "guide": name,
            "store": store,
            "done_on_time": on_time,
            "done": done,
            "on_time_rate": _ratio(on_time, done),
            "customers_served": served,
            "purchased_7d": bought,
            "net_revenue": _money(net),
        }
        for rank, (guide_id, name, store, on_time, done, served, bought, net) in enumerate(
            rows, start=1
        )
    ]


# -- 客户增长: new members, churn and net growth ----------------------------------------------

# New: the customer's first relationship ever was added in the window (no relationship
# before the window; the earliest in it, ties by id). Churned: a customer's first
# deletion event in the window. Reads relationship added_at and the events'
# (kind, occurred_at) index; one grouping-sets pass gives the day, guide, store and
# channel-code totals.
_GROWTH_SQL = """
WITH new AS (
    SELECT DISTINCT ON (r.customer_id) r.customer_id, r.added_at AS at, r.guide_id, r.state
    FROM contacts_relationship r
    WHERE r.added_at >= %(w_start)s AND r.added_at < %(w_end)s
      AND NOT EXISTS (SELECT 1 FROM contacts_relationship p
                      WHERE p.customer_id = r.customer_id AND p.added_at < %(w_start)s)
    ORDER BY r.customer_id, r.added_at, r.id
), churned AS (
    SELECT DISTINCT ON (r.customer_id) r.customer_id, e.occurred_at AS at, r.guide_id, r.state
    FROM contacts_relationshipevent e JOIN contacts_relationship r ON r.id = e.relationship_id
    WHERE e.kind = ANY(%(deletions)s)
      AND e.occurred_at >= %(w_start)s AND e.occurred_at < %(w_end)s
    ORDER BY r.customer_id, e.occurred_at, e.id
), movements AS (
    SELECT at, guide_id, state, 1 AS new, 0 AS churned FROM new
    UNION ALL
    SELECT at, guide_id, state, 0, 1 FROM churned
)
SELECT GROUPING((m.at AT TIME ZONE 'Asia/Shanghai')::date) = 0 AS by_day,
       GROUPING(m.guide_id) = 0 AS by_guide, GROUPING(g.store_id) = 0 AS by_store,
       (m.at AT TIME ZONE 'Asia/Shanghai')::date, m.guide_id, g.name, g.store_id, s.name,
       m.state, sum(m.new), sum(m.churned)
FROM movements m JOIN contacts_guide g ON g.id = m.guide_id
LEFT JOIN contacts_store s ON s.id = g.store_id
WHERE (%(guide)s::bigint IS NULL OR m.guide_id = %(guide)s::bigint)
  AND (%(store)s::bigint IS NULL OR g.store_id = %(store)s::bigint)
  AND (%(state)s::text IS NULL OR m.state = %(state)s::text)
GROUP BY GROUPING SETS (((m.at AT TIME ZONE 'Asia/Shanghai')::date), (m.guide_id, g.name),
                        (g.store_id, s.name), (m.state))
"""


def _growth_row(key, label: str, new: int, churned: int) -> dict:
    return {"key": key, "label": label, "new": new, "churned": churned, "net": new - churned}


def customer_growth(
    *,
    start: date,
    end: date,
    guide_id: int | None = None,
    store_id: int | None = None,
    state: str | None = None,
) -> dict:
    """Per day of the window: new members (customers whose first relationship was added
    that day), churned (distinct customers with a deletion event that day, each counted
    once in the window, on their first deletion) and net = new − churned; the same by
    guide, store and channel code (state) of the relationship added / deleted.
    Days without movement are listed with zeros. `guide_id`, `store_id` and `state`
    keep only the movements of that guide, store or channel code (every number then is
    that guide's, store's or code's)."""
    rows = _fetch(
        _GROWTH_SQL,
        {
            **_bounds(start, end),
            "deletions": list(DELETIONS),
            "guide": guide_id,
            "store": store_id,
            "state": state,
        },
    )
    days: dict[date, tuple[int, int]] = {}
    groups: dict[str, list[dict]] = {name: [] for name in GROWTH_GROUPS}
    for (
        by_day,
        by_guide,
        by_store,
        day,
        guide_id,
        guide_name,
        store_id,
        store_name,
        state,
        new,
        churned,
    ) in rows:
        if by_day:
            days[day] = (new, churned)
        elif by_guide:
            groups["guide"].append(_growth_row(guide_id, guide_name, new, churned))
        elif by_store:
            groups["store"].append(_growth_row(store_id, store_name or "", new, churned))
        else:
            groups["state"].append(_growth_row(state, state, new, churned))
    for name in GROWTH_GROUPS:
        groups[name].sort(key=lambda row: (-row["new"], -row["churned"], str(row["key"])))
    daily, current = [], start
    while current <= end:
        new, churned = days.get(current, (0, 0))
        daily.append({"day": current, "new": new, "churned": churned, "net": new - churned})
        current += timedelta(days=1)
    total_new = sum(row["new"] for row in daily)
    total_churned = sum(row["churned"] for row in daily)
    return {
        "new": total_new,
        "churned": total_churned,
        "net": total_new - total_churned,
        "daily": daily,
        **groups,
    }


# -- 复购 split by one dimension ---------------------------------------------------------------

# (key expression, extra join) per dimension; the keys mean what the metrics' filters
# mean: the order's channel, a kept line's category, the buyer followed now by a guide /
# a guide of a store, the buyer a private-domain member now.
SPLITS = {
    "member": ("f.is_member", ""),
    "channel": ("o.channel", ""),
    "category": (
        "l.category",
        "JOIN contacts_orderline l ON l.order_id = o.id AND l.category <> ''"
        " AND (l.refund_amount < l.line_amount OR l.line_amount = 0)",
    ),
    "guide": ("split.key", "CROSS JOIN LATERAL unnest(f.guide_ids) AS split(key)"),
    "store": ("split.key", "CROSS JOIN LATERAL unnest(f.store_ids) AS split(key)"),
}
BUYER_SPLITS = ("member", "guide", "store")  # keys of the buyer, not of the order


def repurchase_split(
    *, start: date, end: date, by: str, filters: Filters = NO_FILTERS
) -> list[dict]:
    """The repurchase rate of each value of one dimension, in one query: for each key,
    what `metrics.repurchase` gives with that key as a filter (on top of `filters`).
    Most buyers first."""
    if by not in SPLITS:
        raise ValueError(f"by 应为 {'、'.join(SPLITS)} 之一，收到 {by}")
    key, join = SPLITS[by]
    condition, params = filters.sql()
    if by not in BUYER_SPLITS or filters.channels or filters.category:
        # Each order's purchase day first, once, not once per line of it (`category`).
        days = f"""WITH bought AS MATERIALIZED (
                       SELECT o.id, o.channel, o.customer_id, {PURCHASE_DAY} AS day
                       FROM contacts_order o
                       WHERE {PURCHASED} AND o.paid_at >= %(w_start)s AND o.paid_at < %(w_end)s)
                   SELECT {key} AS key, o.customer_id, o.day FROM bought o
                   JOIN contacts_customerfacts f ON f.customer_id = o.customer_id {join}
                   WHERE {condition}"""  # noqa: S608
    else:  # a key of the buyer's: their purchase days will do (see metrics._days_sql)
        days = f"""SELECT {key} AS key, p.customer_id, p.day
                   FROM contacts_customerpurchaseday p
                   JOIN contacts_customerfacts f ON f.customer_id = p.customer_id {join}
                   WHERE p.day < {WINDOW_END_DAY} AND {condition}"""  # noqa: S608
    rows = _fetch(
        # Assembled from the fixed fragments above and Filters.sql(); values are parameters.
        f"""
        SELECT key, count(*), count(*) FILTER (WHERE n >= 2) FROM (
            SELECT key, customer_id, count(DISTINCT day) AS n FROM ({days}) d
            WHERE day >= {WINDOW_START_DAY}  -- not a checkout begun before the window
            GROUP BY key, customer_id
        ) b GROUP BY key ORDER BY 2 DESC, 1
        """,  # noqa: S608
        {**params, **_bounds(start, end)},
    )
    return [
        {"key": value, "buyers": buyers, "repeat_buyers": repeat, "rate": _ratio(repeat, buyers)}
        for value, buyers, repeat in rows
    ]
