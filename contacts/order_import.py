"""Load parsed order lines into the orders tables: COPY, then one upsert.

Streaming end to end: lines from `order_files.read_orders` are written as COPY
text into a temporary staging table while they are read (memory stays flat),
orders with any invalid line are removed from the stage whole, buyers are
resolved to customers set-based, and one INSERT … ON CONFLICT keyed on
(channel, channel order id) inserts new orders and updates changed ones (an
order is unchanged when the digest of everything imported for it is).
Lines of inserted and changed orders are (re)written from the stage.

The whole import is one transaction: nothing is half-written. A dry run does
all of it and rolls back.
"""

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.utils import timezone

from contacts.facts import facts_mark_pending
from contacts.models import OrderImport
from contacts.order_files import OrderLine, RowError
from contacts.phones import phone_hash, phone_mask, phone_normalise

MAX_STORED_ERRORS = 10_000  # an import report keeps this many rows; the count is exact

STAGE_COLUMNS = [
    ("source", "text"),
    ("row_no", "int"),
    ("channel", "text"),
    ("order_id", "text"),
    ("parent_order_id", "text"),
    ("status", "text"),
    ("paid_at", "timestamptz"),
    ("phone_hash", "text"),
    ("phone_masked", "text"),
    ("buyer_unionid", "text"),
    ("buyer_id", "text"),
    ("buyer_name", "text"),
    ("sku", "text"),
    ("product_name", "text"),
    ("category", "text"),
    ("material", "text"),
    ("style", "text"),
    ("quantity", "int"),
    ("unit_price", "numeric(12,2)"),
    ("line_amount", "numeric(12,2)"),
    ("refund_amount", "numeric(12,2)"),
    ("store_code", "text"),
    ("guide_userid", "text"),
]


def _copy_escape(value: str) -> str:
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


@dataclass
class ImportReport:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    rows: int = 0
    errors: list[dict] = field(default_factory=list)
    bad_orders: set[str] = field(default_factory=set)
    rejected_rows: set[tuple[str, int]] = field(default_factory=set)

    def reject(self, error: RowError) -> None:
        """Record a problem; `rejected` counts rows (a row may have several problems)."""
        if (error.source, error.row) not in self.rejected_rows:
            self.rejected_rows.add((error.source, error.row))
            self.rejected += 1
        if error.order_id:
            self.bad_orders.add(error.order_id)
        if len(self.errors) < MAX_STORED_ERRORS:
            self.errors.append(
                {
                    "row": error.row,
                    "column": error.column,
                    "reason": error.reason,
                    "file": error.source,
                }
            )

    def as_dict(self) -> dict:
        return {
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "errors": [
                {k: e[k] for k in ("row", "column", "reason")} | {"file": e["file"]}
                for e in self.errors
            ],
        }


class _CopySource:
    """A file-like view of the stage's COPY text, produced while COPY reads it.

    psycopg2 reports any exception raised inside `read` only as "error in
    .read() call"; the exception is kept here so the caller can raise it.
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.buffer = b""
        self.error: Exception | None = None

    def read(self, size: int = -1) -> bytes:
        try:
            while size < 0 or len(self.buffer) < size:
                chunk = next(self.chunks, None)
                if chunk is None:
                    break
                self.buffer += chunk
        except Exception as error:
            self.error = error
            raise
        if size < 0:
            size = len(self.buffer)
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


def _stage_rows(
    items: Iterable[OrderLine | RowError], report: ImportReport, progress: Callable[[int], None]
) -> Iterator[bytes]:
    """COPY text of the valid lines, in chunks; RowErrors go to the report on the way."""
    batch: list[str] = []
    for item in items:
        if isinstance(item, RowError):
            report.reject(item)
            continue
        report.rows += 1
        phone = item.buyer_phone
        e164 = phone_normalise(phone) if "*" not in phone else None
        values = [
            item.source,
            str(item.row),
            item.channel,
            item.order_id,
            item.parent_order_id,
            item.status,
            item.paid_at.isoformat() if item.paid_at else None,
            phone_hash(e164) if e164 else "",
            phone_mask(e164) if e164 else phone,
            item.buyer_unionid,
            item.buyer_id,
            item.buyer_name,
            item.sku,
            item.product_name,
            item.category,
            item.material,
            item.style,
            str(item.quantity),
            str(item.unit_price),
            str(item.line_amount),
            str(item.refund_amount),
            item.store_code,
            item.guide_userid,
        ]
        batch.append("\t".join("\\N" if v is None else _copy_escape(v) for v in values))
        if len(batch) >= 5000:
            yield ("\n".join(batch) + "\n").encode()
            batch = []
            progress(report.rows + report.rejected)
    if batch:
        yield ("\n".join(batch) + "\n").encode()


def orders_load(
    *,
    items: Iterable[OrderLine | RowError],
    record: OrderImport,
    dry_run: bool = False,
    progress: Callable[[int], None] = lambda rows: None,
) -> ImportReport:
    """Validate-then-load everything `items` yields, in one transaction."""
    report = ImportReport()
    started = time.monotonic()
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                _load(cursor, items, report, record, progress)
            if dry_run:
                transaction.set_rollback(True)
    finally:
        record.seconds = time.monotonic() - started
    return report


def _load(cursor, items, report: ImportReport, record: OrderImport, progress) -> None:
    columns = ", ".join(f"{name} {kind}" for name, kind in STAGE_COLUMNS)
    cursor.execute(
        f"DROP TABLE IF EXISTS stage_line; CREATE TEMP TABLE stage_line ({columns}) ON COMMIT DROP"
    )  # noqa: S608
    source = _CopySource(_stage_rows(items, report, progress))
    try:
        cursor.copy_expert("COPY stage_line FROM STDIN", source, size=65536)
    except Exception:
        if source.error is not None:
            raise source.error from None
        raise
    cursor.execute("ANALYZE stage_line")
    # A line of one order and sku twice in a file: the later row is an error.
    cursor.execute(
        """
        SELECT later.source, later.row_no, later.order_id, later.sku, earlier.row_no
        FROM stage_line later JOIN stage_line earlier
          ON earlier.source = later.source AND earlier.channel = later.channel
         AND earlier.order_id = later.order_id AND earlier.sku = later.sku
         AND earlier.row_no < later.row_no
        """
    )
    for source, row_no, order_id, sku, first in cursor.fetchall():
        report.reject(
            RowError(
                source=source,
                row=row_no,
                column="sku",
                reason=f"与第 {first} 行重复：订单 {order_id} 的商品 {sku} 出现两次",
                order_id=order_id,
            )
        )
        cursor.execute("DELETE FROM stage_line WHERE source = %s AND row_no = %s", [source, row_no])
        report.rows -= 1
    # Orders with any invalid line are rejected whole: their valid lines too.
    if report.bad_orders:
        cursor.execute(
            "DELETE FROM stage_line WHERE order_id = ANY(%s) RETURNING source, row_no, order_id",
            [sorted(report.bad_orders)],
        )
        for source, row_no, order_id in cursor.fetchall():
            report.reject(
                RowError(
                    source=source,
                    row=row_no,
                    column="order_id",
                    reason=f"订单 {order_id} 的其他行有错误，整单未导入",
                    order_id=order_id,
                )
            )
        report.rows -= cursor.rowcount
    _stage_orders(cursor)
    _resolve_buyers(cursor)
    _upsert(cursor, report, record)
    _suggest_merges(cursor, record)


def _stage_orders(cursor) -> None:
    """One row per order, with a digest of everything imported for it."""
    cursor.execute(
        """
        DROP TABLE IF EXISTS stage_order; CREATE TEMP TABLE stage_order ON COMMIT DROP AS
        SELECT channel, order_id,
               max(parent_order_id) AS parent_order_id,
               CASE WHEN bool_and(status = 'cancelled') THEN 'cancelled'
                    WHEN bool_and(status = 'refunded') THEN 'refunded'
                    WHEN bool_or(status IN ('refunded', 'partially_refunded')) OR sum(refund_amount) > 0
                         THEN CASE WHEN sum(refund_amount) >= sum(line_amount) AND sum(line_amount) > 0
                                   THEN 'refunded' ELSE 'partially_refunded' END
                    ELSE 'paid' END AS status,
               min(paid_at) AS paid_at,
               max(phone_hash) AS phone_hash, max(phone_masked) AS phone_masked,
               max(buyer_unionid) AS buyer_unionid, max(buyer_id) AS buyer_id,
               max(buyer_name) AS buyer_name, max(store_code) AS store_code,
               max(guide_userid) AS guide_userid,
               sum(line_amount) AS amount, sum(refund_amount) AS refund_amount, count(*) AS line_count,
               md5(string_agg(concat_ws('|', parent_order_id, status, paid_at, phone_hash, phone_masked,
                   buyer_unionid, buyer_id, buyer_name, sku, product_name, category, material, style,
                   quantity, unit_price, line_amount, refund_amount, store_code, guide_userid),
                   '||' ORDER BY sku, row_no)) AS content_hash,
               NULL::bigint AS customer_id
        FROM stage_line GROUP BY channel, order_id
        """
    )
    cursor.execute("CREATE INDEX ON stage_order (channel, order_id)")
    cursor.execute("ANALYZE stage_order")


# Identity keys of an order, strongest first. A buyer id is only unique within
# its channel, so its identity value is prefixed with the channel.
_KEYS = [
    ("unionid", "s.buyer_unionid"),
    ("phone_hash", "s.phone_hash"),
    ("buyer_id", "s.channel || ':' || s.buyer_id"),
]
_KEY_PRESENT = {
    "unionid": "s.buyer_unionid <> ''",
    "phone_hash": "s.phone_hash <> ''",
    "buyer_id": "s.buyer_id <> ''",
}


def _match(cursor) -> None:
    for kind, value in _KEYS:
        cursor.execute(
            f"""
            UPDATE stage_order s SET customer_id = i.customer_id
            FROM contacts_customeridentity i
            WHERE s.customer_id IS NULL AND {_KEY_PRESENT[kind]}
              AND i.kind = %s AND i.value = {value}
            """,  # noqa: S608 - fixed SQL fragments, values are parameters
            [kind],
        )


def _claim_keys(cursor) -> None:
    """Every key of a matched order becomes an identity of its customer, unless already taken."""
    for kind, value in _KEYS:
        display = "max(s.phone_masked)" if kind == "phone_hash" else "''"
        cursor.execute(
            f"""
            INSERT INTO contacts_customeridentity (customer_id, kind, value, display, created_at)
            SELECT min(s.customer_id), %s, {value}, {display}, now()
            FROM stage_order s
            WHERE s.customer_id IS NOT NULL AND {_KEY_PRESENT[kind]}
            GROUP BY {value}
            ON CONFLICT (kind, value) DO NOTHING
            """,  # noqa: S608 - fixed SQL fragments, values are parameters
            [kind],
        )


def _resolve_buyers(cursor) -> None:
    """Link each order to a customer by exact identity; new buyers become customers.

    Three passes, one per key kind: buyers still unmatched that have the key get
    one new customer per distinct key value (ids drawn from the sequence first,
    so the key → customer pairing needs no second lookup), then all their keys
    are claimed and the remaining orders matched again.
    """
    _match(cursor)
    _claim_keys(cursor)
    for kind, value in _KEYS:
        cursor.execute(
            f"""
            DROP TABLE IF EXISTS new_buyer; CREATE TEMP TABLE new_buyer ON COMMIT DROP AS
            SELECT {value} AS key, max(s.buyer_name) AS name,
                   nextval(pg_get_serial_sequence('contacts_customer', 'id')) AS id
            FROM stage_order s
            WHERE s.customer_id IS NULL AND {_KEY_PRESENT[kind]}
            GROUP BY {value}
            """  # noqa: S608 - fixed SQL fragments
        )
        cursor.execute(
            """
            INSERT INTO contacts_customer (id, name, type, gender, avatar, corp_name, unionid,
                                           is_member, created_at, updated_at)
            SELECT id, coalesce(name, ''), 0, 0, '', '', '', false, now(), now() FROM new_buyer
            """
        )
        cursor.execute(
            f"""
            UPDATE stage_order s SET customer_id = b.id FROM new_buyer b
            WHERE s.customer_id IS NULL AND {_KEY_PRESENT[kind]} AND b.key = {value}
            """  # noqa: S608 - fixed SQL fragments
        )
        cursor.execute("DROP TABLE new_buyer")
        _claim_keys(cursor)
        _match(cursor)


def _upsert(cursor, report: ImportReport, record: OrderImport) -> None:
    cursor.execute(
        "DROP TABLE IF EXISTS touched; CREATE TEMP TABLE touched (id bigint, channel text, order_id text, inserted bool)"
        " ON COMMIT DROP"
    )
    cursor.execute(
        """
        WITH upserted AS (
        INSERT INTO contacts_order (channel, channel_order_id, parent_order_id, status, paid_at,
            customer_id, unmatched_reason, buyer_phone_hash, buyer_phone_masked, buyer_unionid,
            buyer_id, buyer_name, store_code, guide_userid, amount, refund_amount, line_count,
            content_hash, last_import_id, created_at, updated_at)
        SELECT channel, order_id, parent_order_id, status, paid_at, customer_id,
               CASE WHEN customer_id IS NOT NULL THEN ''
                    WHEN phone_masked LIKE '%%*%%' THEN '只有打码手机号，无法自动识别买家'
                    ELSE '没有可识别的买家标识' END,
               phone_hash, phone_masked, buyer_unionid, buyer_id, buyer_name, store_code,
               guide_userid, amount, refund_amount, line_count, content_hash, %s, now(), now()
        FROM stage_order
        ORDER BY channel, order_id  -- one lock order for concurrent imports: no deadlocks
        ON CONFLICT (channel, channel_order_id) DO UPDATE SET
            parent_order_id = EXCLUDED.parent_order_id, status = EXCLUDED.status,
            paid_at = EXCLUDED.paid_at,
            -- a customer set by a merge or a guide's binding is kept
            customer_id = coalesce(contacts_order.customer_id, EXCLUDED.customer_id),
            unmatched_reason = CASE WHEN coalesce(contacts_order.customer_id, EXCLUDED.customer_id)
                                         IS NULL THEN EXCLUDED.unmatched_reason ELSE '' END,
            buyer_phone_hash = EXCLUDED.buyer_phone_hash,
            buyer_phone_masked = EXCLUDED.buyer_phone_masked,
            buyer_unionid = EXCLUDED.buyer_unionid, buyer_id = EXCLUDED.buyer_id,
            buyer_name = EXCLUDED.buyer_name, store_code = EXCLUDED.store_code,
            guide_userid = EXCLUDED.guide_userid, amount = EXCLUDED.amount,
            refund_amount = EXCLUDED.refund_amount, line_count = EXCLUDED.line_count,
            content_hash = EXCLUDED.content_hash, last_import_id = EXCLUDED.last_import_id,
            updated_at = now()
        WHERE contacts_order.content_hash IS DISTINCT FROM EXCLUDED.content_hash
        RETURNING id, channel, channel_order_id, (xmax = 0) AS inserted
        )
        INSERT INTO touched SELECT * FROM upserted
        """,
        [record.pk],
    )
    cursor.execute(
        "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted),"
        " (SELECT count(*) FROM stage_order) FROM touched"
    )
    report.inserted, report.updated, staged = cursor.fetchone()
    cursor.execute("ANALYZE touched")
    report.unchanged = staged - report.inserted - report.updated
    if report.updated:
        cursor.execute(
            "DELETE FROM contacts_orderline l USING touched t"
            " WHERE l.order_id = t.id AND NOT t.inserted"
        )
    cursor.execute(
        """
        INSERT INTO contacts_orderline (order_id, line_no, sku, product_name, category, material,
            style, quantity, unit_price, line_amount, refund_amount)
        SELECT t.id, row_number() OVER (PARTITION BY t.id ORDER BY l.sku, l.row_no),
               l.sku, coalesce(nullif(l.product_name, ''), p.name, ''),
               -- attributes the export lacks come from the product catalogue
               coalesce(nullif(l.category, ''), p.category, ''),
               coalesce(nullif(l.material, ''), p.material, ''),
               coalesce(nullif(l.style, ''), p.style, ''),
               l.quantity, l.unit_price, l.line_amount, l.refund_amount
        FROM stage_line l JOIN touched t ON t.channel = l.channel AND t.order_id = l.order_id
        LEFT JOIN contacts_product p ON p.sku = l.sku
        """
    )
    cursor.execute(
        "SELECT DISTINCT o.customer_id FROM contacts_order o JOIN touched t ON t.id = o.id"
        " WHERE o.customer_id IS NOT NULL"
    )
    facts_mark_pending(row[0] for row in cursor.fetchall())


def order_import_finish(*, record: OrderImport, report: ImportReport, dry_run: bool) -> OrderImport:
    record.status = OrderImport.Status.SUCCEEDED
    record.finished_at = timezone.now()
    record.rows = report.rows
    # A dry run reports what the import would do; it wrote nothing.
    record.is_dry_run = dry_run
    record.inserted, record.updated, record.unchanged = (
        report.inserted,
        report.updated,
        report.unchanged,
    )
    record.rejected = report.rejected
    record.errors = report.errors
    record.save()
    return record


def _suggest_merges(cursor, record: OrderImport) -> None:
    """Unmatched orders whose masked phone and (masked) name fit exactly one known customer.

    `138****5601` must equal a phone identity's masked form, and the name must
    fit, a run of `*` standing for any characters (赵** fits 赵敏 and 赵晓梅).
    """
    cursor.execute(
        r"""
        WITH masked AS (  -- few rows: the unmatched orders of this import with a masked phone
            SELECT o.id, o.buyer_phone_masked, o.buyer_name
            FROM contacts_order o
            WHERE o.last_import_id = %s AND o.customer_id IS NULL AND o.buyer_phone_masked LIKE '%%*%%' AND o.buyer_name <> ''
        )
        INSERT INTO contacts_mergesuggestion (order_id, customer_id, reason, status, created_at)
        SELECT o.id, min(c.id),
               '打码手机号 ' || o.buyer_phone_masked || ' 与姓名 ' || o.buyer_name || ' 只匹配到这一位客户',
               'pending', now()
        FROM masked o
        JOIN contacts_customeridentity i ON i.kind = 'phone_hash' AND i.display = o.buyer_phone_masked
        JOIN contacts_customer c ON c.id = i.customer_id AND c.merged_into_id IS NULL
             AND c.name LIKE regexp_replace(replace(replace(o.buyer_name, '%%', '\%%'), '_', '\_'), '\*+', '%%', 'g')
        GROUP BY o.id, o.buyer_phone_masked, o.buyer_name
        HAVING count(DISTINCT c.id) = 1
        ON CONFLICT (order_id, customer_id) DO NOTHING
        """,
        [record.pk],
    )
