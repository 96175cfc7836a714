"""Customer facts: each customer's purchase and membership summary, kept by `contacts`.

Tag rules, SOP triggers and dashboards read `CustomerFacts`,
`CustomerPurchaseDay` and `CustomerAttributeShare` instead of scanning orders.
Everything that changes what they summarise (an order import, a merge, a
binding, a callback, a sync) marks the customers pending in the same
transaction (`facts_mark_pending`); a debounced task refreshes the pending
customers in batches and tells the registered listeners (tagging re-evaluates
exactly those customers). A nightly full refresh repairs anything missed.

The refresh is set-based SQL over a temporary scope table: the same statements
serve five customers and five million. Facts rows are written only where a
value changed (`IS DISTINCT FROM`), so an unchanged customer costs a read.
"""

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.core.cache import cache
from django.db import connection, transaction

FactsListener = Callable[[list[int]], None]
_listeners: list[FactsListener] = []

PENDING_BATCH = 20_000
ANALYZE_AFTER = 5_000  # customers refreshed at once, past which statistics are renewed
DEBOUNCE_SECONDS = 5
_SCHEDULED_KEY = "contacts:facts-refresh-scheduled"

# An order counts as a purchase when it is paid and not fully refunded
# (DESIGN.md, "Purchase day"); a line counts when it is not fully refunded.
PURCHASED = "o.status IN ('paid', 'partially_refunded') AND o.paid_at IS NOT NULL"
LINE_KEPT = "(l.refund_amount < l.line_amount OR l.line_amount = 0)"
# An order counted as orders are (订单数, 客单价): a checkout. The sub-orders a channel
# splits one checkout into (Douyin's 子订单, `parent_order_id`) are one order.
CHECKOUT = "o.channel || ':' || coalesce(nullif(o.parent_order_id, ''), o.channel_order_id)"
# The day a purchased order `o` counts on (DESIGN.md, "Purchase day"): its Shanghai day
# or, for a sub-order, the day its checkout's first purchased sub-order was paid, so sub-
# orders paid either side of midnight are one purchase day, not a repurchase. Queries
# over a window read its orders by paid_at (order_paid_idx) and drop those whose checkout
# began before it; a sub-order paid after the window's end, of a checkout begun within
# it, is not read (its checkout counts there, its own amount and lines do not).
PURCHASE_DAY = """((CASE WHEN o.parent_order_id = '' THEN o.paid_at ELSE coalesce((
    SELECT min(sibling.paid_at) FROM contacts_order sibling
    WHERE sibling.customer_id = o.customer_id AND sibling.channel = o.channel
      AND sibling.parent_order_id = o.parent_order_id
      AND sibling.status IN ('paid', 'partially_refunded')), o.paid_at) END)
    AT TIME ZONE 'Asia/Shanghai')::date"""

# The columns of CustomerFacts the refresh computes, in the order of _FACTS_SELECT.
FACT_COLUMNS = [
    "purchase_days",
    "orders",
    "lines",
    "net_revenue",
    "line_revenue",
    "avg_order_value",
    "first_purchase_on",
    "last_purchase_on",
    "median_interval_days",
    "channels",
    "top_category",
    "top_category_share",
    "top_material",
    "top_material_share",
    "top_style",
    "top_style_share",
    "is_member",
    "joined_at",
    "guide_ids",
    "store_ids",
    "in_group",
]

_FACTS_SELECT = f"""
WITH days AS (
    SELECT d.customer_id, d.day, d.orders, d.net_revenue,
           d.day - lag(d.day) OVER (PARTITION BY d.customer_id ORDER BY d.day) AS gap
    FROM contacts_customerpurchaseday d JOIN facts_scope s ON s.id = d.customer_id
), bought AS (
    SELECT customer_id, count(*) AS purchase_days, sum(orders) AS orders,
           sum(net_revenue) AS net_revenue, min(day) AS first_day, max(day) AS last_day,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) AS median_gap
    FROM days GROUP BY customer_id
), lines AS (
    SELECT o.customer_id, count(*) AS lines, sum(l.line_amount - l.refund_amount) AS revenue
    FROM contacts_order o JOIN facts_scope s ON s.id = o.customer_id
    JOIN contacts_orderline l ON l.order_id = o.id
    WHERE {PURCHASED} AND {LINE_KEPT}
    GROUP BY o.customer_id
), channels AS (
    SELECT o.customer_id, array_agg(DISTINCT o.channel ORDER BY o.channel) AS channels
    FROM contacts_order o JOIN facts_scope s ON s.id = o.customer_id
    WHERE {PURCHASED}
    GROUP BY o.customer_id
), top AS (
    SELECT DISTINCT ON (a.customer_id, a.kind) a.customer_id, a.kind, a.value, a.lines
    FROM contacts_customerattributeshare a JOIN facts_scope s ON s.id = a.customer_id
    ORDER BY a.customer_id, a.kind, a.lines DESC, a.net_revenue DESC, a.value
), tops AS (
    SELECT customer_id,
           max(value) FILTER (WHERE kind = 'category') AS category,
           max(lines) FILTER (WHERE kind = 'category') AS category_lines,
           max(value) FILTER (WHERE kind = 'material') AS material,
           max(lines) FILTER (WHERE kind = 'material') AS material_lines,
           max(value) FILTER (WHERE kind = 'style') AS style,
           max(lines) FILTER (WHERE kind = 'style') AS style_lines
    FROM top GROUP BY customer_id
), follows AS (
    SELECT r.customer_id,
           array_agg(DISTINCT r.guide_id ORDER BY r.guide_id) AS guide_ids,
           array_remove(array_agg(DISTINCT g.store_id ORDER BY g.store_id), NULL) AS store_ids
    FROM contacts_relationship r JOIN facts_scope s ON s.id = r.customer_id
    JOIN contacts_guide g ON g.id = r.guide_id
    WHERE r.is_active
    GROUP BY r.customer_id
)
SELECT s.id,
       coalesce(b.purchase_days, 0), coalesce(b.orders, 0), coalesce(ln.lines, 0),
       coalesce(b.net_revenue, 0), coalesce(ln.revenue, 0),
       round(b.net_revenue / nullif(b.orders, 0), 2),
       b.first_day, b.last_day, b.median_gap,
       coalesce(ch.channels, '{{}}'),
       coalesce(t.category, ''), t.category_lines::float / nullif(ln.lines, 0),
       coalesce(t.material, ''), t.material_lines::float / nullif(ln.lines, 0),
       coalesce(t.style, ''), t.style_lines::float / nullif(ln.lines, 0),
       c.is_member, c.joined_at,
       coalesce(f.guide_ids, '{{}}'), coalesce(f.store_ids, '{{}}'),
       EXISTS (SELECT 1 FROM contacts_customergroupmember m
               JOIN contacts_customergroup grp ON grp.id = m.group_id
               WHERE m.customer_id = s.id AND NOT grp.is_dismissed)
FROM facts_scope s
JOIN contacts_customer c ON c.id = s.id AND c.merged_into_id IS NULL
LEFT JOIN bought b ON b.customer_id = s.id
LEFT JOIN lines ln ON ln.customer_id = s.id
LEFT JOIN channels ch ON ch.customer_id = s.id
LEFT JOIN tops t ON t.customer_id = s.id
LEFT JOIN follows f ON f.customer_id = s.id
"""


@dataclass
class FactsRefresh:
    customers: int  # customers in scope
    changed: int  # facts rows written (new or different)
    seconds: float


def register_facts_listener(listener: FactsListener) -> None:
    """Call `listener(customer_ids)` inside the transaction that refreshed their facts
    (apps register in `AppConfig.ready()`; contacts knows no app)."""
    if listener not in _listeners:
        _listeners.append(listener)


def facts_mark_pending(customer_ids: Iterable[int]) -> None:
    """Mark customers for a facts refresh, in the caller's transaction; the refresh is
    scheduled once that transaction commits."""
    ids = sorted({int(i) for i in customer_ids if i is not None})
    if ids:
        facts_mark_pending_selected("SELECT unnest(%s::bigint[])", [ids])


def facts_mark_pending_selected(select: str, params: list) -> None:
    """Mark the customers whose ids `select` returns (distinct, none NULL), as
    `facts_mark_pending` does: for many customers, without fetching their ids."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO contacts_customerfactspending (customer_id, marked_at)"
            f" SELECT id, now() FROM ({select}) AS selected (id) ON CONFLICT DO NOTHING",  # noqa: S608
            params,
        )
    transaction.on_commit(schedule_facts_refresh)


def schedule_facts_refresh() -> None:
    """Enqueue one refresh a few seconds from now, unless one is already waiting: a burst
    of changes (a callback storm, many small imports) costs one refresh."""
    from contacts.tasks import refresh_pending_facts

    if cache.add(_SCHEDULED_KEY, 1, timeout=DEBOUNCE_SECONDS + 60):
        refresh_pending_facts.apply_async(countdown=DEBOUNCE_SECONDS)


def facts_refresh_pending(*, batch: int = PENDING_BATCH) -> int:
    """Refresh every pending customer, a batch per transaction. A batch is claimed
    (deleted from the pending table) in the transaction that refreshes it, so a killed
    worker leaves it pending. Returns the number of customers refreshed."""
    cache.delete(_SCHEDULED_KEY)  # changes from now on schedule another run
    total = 0
    while True:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    """
                    DELETE FROM contacts_customerfactspending WHERE customer_id IN (
                        SELECT customer_id FROM contacts_customerfactspending
                        ORDER BY customer_id LIMIT %s FOR UPDATE SKIP LOCKED)
                    RETURNING customer_id
                    """,
                    [batch],
                )
                ids = sorted(row[0] for row in cursor.fetchall())
            if not ids:
                return total
            _refresh(ids)
            for listener in _listeners:
                listener(ids)
        total += len(ids)


def facts_refresh(*, customer_ids: list[int] | None = None) -> FactsRefresh:
    """Refresh the facts of these customers, or of every customer (None), now."""
    with transaction.atomic():
        return _refresh(customer_ids)


def _refresh(customer_ids: list[int] | None) -> FactsRefresh:
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(
            "DROP TABLE IF EXISTS facts_scope;"
            " CREATE TEMP TABLE facts_scope (id bigint PRIMARY KEY) ON COMMIT DROP"
        )
        if customer_ids is None:
            cursor.execute(
                "INSERT INTO facts_scope SELECT id FROM contacts_customer"
                " WHERE merged_into_id IS NULL"
            )
        else:
            cursor.execute(
                "INSERT INTO facts_scope SELECT DISTINCT unnest(%s::bigint[])", [customer_ids]
            )
        scope = cursor.rowcount
        cursor.execute("ANALYZE facts_scope")
        _merge_rows(
            cursor,
            table="contacts_customerpurchaseday",
            keys=["day"],
            values=["orders", "net_revenue"],
            select=f"""
                SELECT o.customer_id, {PURCHASE_DAY} AS day,
                       count(DISTINCT {CHECKOUT}) AS orders,
                       sum(o.amount - o.refund_amount) AS net_revenue
                FROM contacts_order o JOIN facts_scope s ON s.id = o.customer_id
                WHERE {PURCHASED}
                GROUP BY 1, 2""",
        )
        _merge_rows(
            cursor,
            table="contacts_customerattributeshare",
            keys=["kind", "value"],
            values=["lines", "net_revenue"],
            select=f"""
                SELECT o.customer_id, a.kind, a.value, count(*) AS lines,
                       sum(l.line_amount - l.refund_amount) AS net_revenue
                FROM contacts_order o JOIN facts_scope s ON s.id = o.customer_id
                JOIN contacts_orderline l ON l.order_id = o.id
                CROSS JOIN LATERAL (VALUES ('category', l.category), ('material', l.material),
                                           ('style', l.style)) a(kind, value)
                WHERE {PURCHASED} AND {LINE_KEPT} AND a.value <> ''
                GROUP BY 1, 2, 3""",
        )
        # Merged-away records keep no facts: their orders moved to the kept customer.
        cursor.execute(
            "DELETE FROM contacts_customerfacts f USING facts_scope s, contacts_customer c"
            " WHERE f.customer_id = s.id AND c.id = s.id AND c.merged_into_id IS NOT NULL"
        )
        columns = ", ".join(FACT_COLUMNS)
        assignments = ", ".join(f"{name} = EXCLUDED.{name}" for name in FACT_COLUMNS)
        current = ", ".join(f"contacts_customerfacts.{name}" for name in FACT_COLUMNS)
        fresh = ", ".join(f"EXCLUDED.{name}" for name in FACT_COLUMNS)
        cursor.execute(
            f"""
            INSERT INTO contacts_customerfacts (customer_id, {columns}, changed_at)
            SELECT *, now() FROM ({_FACTS_SELECT}) computed
            ON CONFLICT (customer_id) DO UPDATE SET {assignments}, changed_at = now()
            WHERE ({current}) IS DISTINCT FROM ({fresh})
            """
        )
        changed = cursor.rowcount
        if scope >= ANALYZE_AFTER:
            # Rules read these tables through per-customer index lookups; with the
            # statistics of an empty table the planner would scan them for every
            # customer instead (minutes instead of seconds at 40,000 customers).
            cursor.execute(
                "ANALYZE contacts_customerfacts, contacts_customerpurchaseday,"
                " contacts_customerattributeshare"
            )
    return FactsRefresh(customers=scope, changed=changed, seconds=time.monotonic() - started)


def _merge_rows(cursor, *, table: str, keys: list[str], values: list[str], select: str) -> None:
    """Make the scope's rows of `table` equal `select`, writing only what differs: an
    unchanged customer costs index lookups, not a delete and an insert of every row."""
    cursor.execute(
        f"DROP TABLE IF EXISTS fresh_rows; CREATE TEMP TABLE fresh_rows ON COMMIT DROP AS {select}"
    )
    cursor.execute("ANALYZE fresh_rows")
    match = " AND ".join(f"n.{key} = t.{key}" for key in ["customer_id", *keys])
    cursor.execute(
        f"""
        DELETE FROM {table} t USING facts_scope s
        WHERE t.customer_id = s.id AND NOT EXISTS (SELECT 1 FROM fresh_rows n WHERE {match})
        """
    )
    columns = ", ".join(["customer_id", *keys, *values])
    assignments = ", ".join(f"{name} = EXCLUDED.{name}" for name in values)
    current = ", ".join(f"{table}.{name}" for name in values)
    fresh = ", ".join(f"EXCLUDED.{name}" for name in values)
    cursor.execute(
        f"""
        INSERT INTO {table} ({columns}) SELECT {columns} FROM fresh_rows
        ON CONFLICT (customer_id, {", ".join(keys)}) DO UPDATE SET {assignments}
        WHERE ({current}) IS DISTINCT FROM ({fresh})
        """
    )


def facts_predictions_store(*, rows: list[tuple[int, float, float, float]], at) -> int:
    """Store (customer_id, expected purchase days in 90 days, probability alive, predicted
    12-month LTV) from analytics' model fit; customers not in `rows` lose old predictions
    (they have no purchase before the calibration end any more). Returns rows written."""
    from psycopg2.extras import execute_values

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "DROP TABLE IF EXISTS predicted; CREATE TEMP TABLE predicted (customer_id bigint"
            " PRIMARY KEY, purchases float, alive float, ltv numeric(12, 2)) ON COMMIT DROP"
        )
        execute_values(cursor, "INSERT INTO predicted VALUES %s", rows, page_size=10_000)
        cursor.execute(
            """
            UPDATE contacts_customerfacts f
            SET predicted_purchases_90d = p.purchases, probability_alive = p.alive,
                predicted_ltv_12m = p.ltv, predicted_at = %s
            FROM predicted p WHERE f.customer_id = p.customer_id
            """,
            [at],
        )
        written = cursor.rowcount
        cursor.execute(
            """
            UPDATE contacts_customerfacts f SET predicted_purchases_90d = NULL,
                probability_alive = NULL, predicted_ltv_12m = NULL, predicted_at = NULL
            WHERE f.predicted_at IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM predicted p WHERE p.customer_id = f.customer_id)
            """
        )
    return written
