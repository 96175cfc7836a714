"""Load parsed order lines into the orders tables: COPY, then one upsert.

Streaming end to end: lines from `order_files.read_orders` are read and
checked in a thread of their own (`_Producer`) and written as COPY text into a
temporary staging table, a block at a time; while the next block is read,
Postgres aggregates the one just copied into one row per order (memory stays
flat). Orders with any invalid line are removed from the stage whole, buyers
are resolved to customers set-based over their distinct keys, and one
INSERT … ON CONFLICT keyed on (channel, channel order id) inserts new orders
and updates changed ones (an order is unchanged when the digest of everything
imported for it is; an unchanged order is not written, nor locked). Lines of
inserted and changed orders are (re)written from the stage.

The whole import is one transaction: nothing is half-written. A dry run does
all of it and rolls back.

Where a million-line import spends its time (2 cores, CPU seconds): reading and
checking the file in Python about 18, staging the blocks about 15 alongside it;
then the order upsert about 20 (six indexes), the deferred foreign-key checks
at commit about 23 (2.8 million of them: orders → customer and import, lines
→ order, identities → customer), the lines about 8, new customers and their
identities about 15. Most of what is left is writing the rows and their indexes.
"""

import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from contacts.facts import facts_mark_pending
from contacts.models import OrderImport
from contacts.order_files import OrderLine, RowError
from contacts.phones import phone_hash, phone_mask, phone_normalise

MAX_STORED_ERRORS = 10_000  # an import report keeps this many rows; the count is exact

# The stage's columns in COPY order: first the text fields copied as read (one
# test of the joined row finds any that needs escaping), then those the loader
# writes itself, which never do.
STAGE_TEXT_COLUMNS = [
    "source",
    "channel",
    "order_id",
    "parent_order_id",
    "status",
    "buyer_unionid",
    "buyer_id",
    "buyer_name",
    "sku",
    "product_name",
    "category",
    "material",
    "style",
    "store_code",
    "guide_userid",
]
STAGE_COLUMNS = [(name, "text") for name in STAGE_TEXT_COLUMNS] + [
    ("seq", "int"),  # the line's place in the stream
    ("row_no", "int"),
    ("paid_at", "timestamptz"),
    ("phone_hash", "text"),
    ("phone_masked", "text"),
    ("quantity", "int"),
    ("unit_price", "numeric(12,2)"),
    ("line_amount", "numeric(12,2)"),
    ("refund_amount", "numeric(12,2)"),
]
_stage_text = attrgetter(*STAGE_TEXT_COLUMNS)
_STAGE_TABS = len(STAGE_TEXT_COLUMNS) - 1
NULL = "\\N"  # COPY text for NULL
CHUNK_LINES = 5000  # lines of COPY text handed over at a time
BLOCK_CHUNKS = 10  # chunks staged and aggregated at a time: 50,000 lines


def _copy_escape(value: str) -> str:
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


class _PhoneKeys:
    """(phone_hash, phone_masked) of an OrderLine's buyer_phone, as `phones` computes them.

    `phones.phone_hash` sets up an HMAC per call (2.2 µs, the dearest step of a
    line); here the key's inner and outer SHA-256 states are set up once and
    copied (0.9 µs). The result is checked against `phone_hash` when made, so a
    change there turns this shortcut off rather than making different hashes.
    Lines of one order follow each other and share a phone: the last one is kept.
    """

    def __init__(self) -> None:
        key = settings.PHONE_HASH_KEY.encode()
        if len(key) > 64:  # RFC 2104: a key longer than the block is hashed first
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self.inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self.outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        probe = "+8613800000000"
        self.fast = self._hash(probe) == phone_hash(probe)
        self.last_phone: str | None = None
        self.last_keys = ("", "")

    def _hash(self, e164: str) -> str:
        inner = self.inner.copy()
        inner.update(e164.encode())
        outer = self.outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def __call__(self, phone: str) -> tuple[str, str]:
        if phone == self.last_phone:
            return self.last_keys
        if len(phone) == 11 and phone.isdecimal() and phone[0] == "1":  # parse_phone's usual form
            e164 = "+86" + phone
            keys = (
                self._hash(e164) if self.fast else phone_hash(e164),
                f"{phone[:3]}****{phone[7:]}",
            )
        else:
            e164 = phone_normalise(phone) if "*" not in phone else None
            keys = (phone_hash(e164), phone_mask(e164)) if e164 else ("", phone)
        self.last_phone, self.last_keys = phone, keys
        return keys


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


class _Producer:
    """The stage's COPY text, made in a thread of its own while the loader stages it.

    Reading and checking a line costs Python about as much as Postgres spends
    staging it and aggregating its order (some 15 µs each); done one after the
    other the import took their sum. Here the file is read in this thread while
    the loader copies and aggregates the blocks already read (psycopg2 lets go of
    the GIL while Postgres works). At most `QUEUED_CHUNKS` chunks wait: memory
    stays flat. The thread touches no database and no cache (progress is
    reported by the loader); an exception raised while reading is kept and
    raised by the loader.
    """

    QUEUED_CHUNKS = 8

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.queue: queue.Queue[bytes | None] = queue.Queue(self.QUEUED_CHUNKS)
        self.lines = 0  # lines handed over to the loader
        self.error: BaseException | None = None
        self.finished = False  # the last chunk was handed over
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._produce, args=(chunks,), name="order-import-reader", daemon=True
        )
        self._thread.start()

    def _put(self, chunk: bytes | None) -> bool:
        while not self._stopping.is_set():
            try:
                self.queue.put(chunk, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, chunks: Iterator[bytes]) -> None:
        try:
            for chunk in chunks:
                if not self._put(chunk):
                    return
        except BaseException as error:  # raised in the loader's thread
            self.error = error
        self._put(None)

    def block(self, chunks: int, progress: Callable[[], None]) -> "_Block":
        return _Block(self, chunks, progress)

    def close(self) -> None:
        """Stop reading (the loader failed) and wait for the thread."""
        self._stopping.set()
        while self._thread.is_alive():
            try:
                self.queue.get(timeout=0.1)
            except queue.Empty:
                pass
        self._thread.join()


class _Block:
    """The next `chunks` chunks of a producer, as a file for COPY to read.

    Each `read` hands over one whole chunk, whatever size is asked for: psycopg2
    sends what it gets (cutting chunks to size copied each one about ten times).
    """

    def __init__(self, producer: _Producer, chunks: int, progress: Callable[[], None]) -> None:
        self.producer = producer
        self.left = chunks
        self.progress = progress
        self.error: Exception | None = None

    def read(self, size: int = -1) -> bytes:
        if not self.left or self.producer.finished:
            return b""
        chunk = self.producer.queue.get()
        if chunk is None:
            self.producer.finished = True
            return b""
        self.left -= 1
        self.producer.lines += chunk.count(b"\n")  # one a line: a line break in a field is escaped
        try:
            self.progress()
        except Exception as error:  # psycopg2 reports it only as "error in .read() call"
            self.error = error
            raise
        return chunk


def _stage_rows(items: Iterable[OrderLine | RowError], report: ImportReport) -> Iterator[bytes]:
    """COPY text of the valid lines, in chunks; RowErrors go to the report on the way.

    About 5 µs a line (14 µs before: `_copy_escape` on every field and an HMAC set
    up per line): the text fields are joined as they are, and escaped one by one
    only in the rare row where the joined text holds a backslash, a tab or a line
    break. The lines of an order usually follow each other and share a payment
    time (isoformat, 1.5 µs) and a phone: those of the line before are used
    again. A chunk ends where an order does, so that an order rarely spans two
    blocks (`_stage_split_orders`, which reads the whole stage).
    """
    phone_keys = _PhoneKeys()
    stage_text, tabs, escape, null = _stage_text, _STAGE_TABS, _copy_escape, NULL
    batch: list[str] = []
    append = batch.append
    rows = 0
    order_id = last_paid_at = None
    paid_text = null
    for item in items:
        if type(item) is not OrderLine:
            report.reject(item)
            continue
        if len(batch) >= CHUNK_LINES and (
            item.order_id != order_id or len(batch) >= 2 * CHUNK_LINES
        ):
            report.rows = rows
            yield "".join(batch).encode()
            batch.clear()
        rows += 1
        order_id = item.order_id
        try:
            text = "\t".join(stage_text(item))
        except TypeError:  # a field that is None: NULL
            text = "\\"
        if "\\" in text or "\n" in text or "\r" in text or text.count("\t") != tabs:
            text = "\t".join(null if v is None else escape(v) for v in stage_text(item))
        phone_hash, phone_masked = phone_keys(item.buyer_phone)
        paid_at = item.paid_at
        if paid_at != last_paid_at:  # the same instant in any zone is the same timestamptz
            last_paid_at, paid_text = paid_at, paid_at.isoformat() if paid_at else null
        append(
            f"{text}\t{rows}\t{item.row}\t{paid_text}\t{phone_hash}\t{phone_masked}\t"
            f"{item.quantity}\t{item.unit_price!s}\t{item.line_amount!s}\t{item.refund_amount!s}\n"
        )
    report.rows = rows
    if batch:
        yield "".join(batch).encode()


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


# Sorts and hashes of a large import stay in memory (a million lines sort in about
# 300 MB; with the default 4 MB every sort and hash spilled to disk). SET LOCAL:
# for the import's transaction only.
IMPORT_WORK_MEM = "512MB"


def _load(cursor, items, report: ImportReport, record: OrderImport, progress) -> None:
    cursor.execute(f"SET LOCAL work_mem = '{IMPORT_WORK_MEM}'")
    columns = ", ".join(f"{name} {kind}" for name, kind in STAGE_COLUMNS)
    cursor.execute(
        f"DROP TABLE IF EXISTS stage_line; CREATE TEMP TABLE stage_line ({columns}) ON COMMIT DROP"
    )  # noqa: S608
    # The orders are staged with everything that was read, a block of lines at a
    # time while the next block is read; staging also tells whether an order has a
    # sku twice (`repeats`).
    cursor.execute(
        "DROP TABLE IF EXISTS stage_order; CREATE TEMP TABLE stage_order ON COMMIT DROP AS"
        f" {_ORDERS_OF_LINES.format(lines='stage_line')} WITH NO DATA;"
        " CREATE UNIQUE INDEX ON stage_order (channel, order_id)"
    )  # noqa: S608 - fixed SQL
    producer = _Producer(_stage_rows(items, report))
    split = 0  # orders whose lines came in more than one block
    missed = False  # a block's aggregate did not see all of its lines
    try:
        while not producer.finished:
            # The block starts on the stage's last page, which the block before may share.
            cursor.execute(
                "SELECT greatest(pg_relation_size('stage_line')"
                " / current_setting('block_size')::int - 1, 0)"
            )
            first_page, first_seq = cursor.fetchone()[0], producer.lines + 1
            block = producer.block(BLOCK_CHUNKS, lambda: progress(report.rows + report.rejected))
            try:
                cursor.copy_expert("COPY stage_line FROM STDIN", block)
            except Exception:
                if block.error is not None:
                    raise block.error from None
                raise
            cursor.execute(_STAGE_BLOCK, [f"({first_page},0)", first_seq])
            aggregated, merged = cursor.fetchone()
            missed |= aggregated != producer.lines - first_seq + 1
            split += merged
    finally:
        producer.close()
    if producer.error is not None:
        raise producer.error
    if missed:  # not expected: stage the orders from all the lines instead
        _stage_all_orders(cursor)
    elif split:
        _stage_split_orders(cursor)
    cursor.execute("SELECT EXISTS (SELECT FROM stage_order WHERE repeats)")
    if cursor.fetchone()[0]:
        # Rare: the reader reports a line repeated within one file, so this is two
        # files of one name. The lines are checked and removed as they always were,
        # and the orders staged again from what is left.
        _reject_repeated_lines(cursor, report)
        _reject_bad_orders(cursor, report)
        _stage_all_orders(cursor)
    elif report.bad_orders:
        _reject_bad_orders(cursor, report)
        # The lines removed are those of whole orders: so are the staged orders.
        cursor.execute(
            "DELETE FROM stage_order WHERE order_id = ANY(%s)", [sorted(report.bad_orders)]
        )
    # Without statistics the planner joined the orders to their buyers and to the
    # stored orders by sorting them twice (8 s of a million-line import; 1.7 s with).
    cursor.execute("ANALYZE stage_order")
    _resolve_buyers(cursor)
    cursor.execute("ANALYZE stage_buyer")  # now that its customers are known
    _upsert(cursor, report, record)
    if report.inserted or report.updated:  # a merge suggestion is only for orders written
        _suggest_merges(cursor)


# One row per order of `lines`, with a digest of everything imported for it. The
# status is decided in the upsert from the flags and sums kept here, so that an
# order read in two blocks is merged exactly (`_STAGE_BLOCK`).
_ORDERS_OF_LINES = """
    SELECT channel, order_id,
           max(parent_order_id) AS parent_order_id,
           bool_and(status = 'cancelled') AS all_cancelled,
           bool_and(status = 'refunded') AS all_refunded,
           bool_or(status IN ('refunded', 'partially_refunded')) AS any_refunded,
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
           count(DISTINCT sku) < count(*) AS repeats,
           1 AS blocks
    FROM {lines} GROUP BY channel, order_id
"""

# The orders of the block of lines just copied, merged into those of the blocks
# before. The block is found by a TID range scan of the stage's last pages, from
# the block's first line on: COPY into a table made in this transaction appends
# (it does not look for free space in earlier pages), and the count of lines
# aggregated is checked against the lines copied all the same. An order staged
# already gets the max, min, sums and flags of both; its digest and repeats need
# all its lines, and are made again at the end (`_stage_split_orders`).
# Returns (lines aggregated, orders found split).
_STAGE_BLOCK = f"""
    WITH block AS MATERIALIZED (
        {_ORDERS_OF_LINES.format(lines="stage_line WHERE ctid >= %s::tid AND seq >= %s")}
    ), staged AS (
        INSERT INTO stage_order AS o SELECT * FROM block
        ON CONFLICT (channel, order_id) DO UPDATE SET
            parent_order_id = greatest(o.parent_order_id, EXCLUDED.parent_order_id),
            all_cancelled = o.all_cancelled AND EXCLUDED.all_cancelled,
            all_refunded = o.all_refunded AND EXCLUDED.all_refunded,
            any_refunded = o.any_refunded OR EXCLUDED.any_refunded,
            paid_at = least(o.paid_at, EXCLUDED.paid_at),
            phone_hash = greatest(o.phone_hash, EXCLUDED.phone_hash),
            phone_masked = greatest(o.phone_masked, EXCLUDED.phone_masked),
            buyer_unionid = greatest(o.buyer_unionid, EXCLUDED.buyer_unionid),
            buyer_id = greatest(o.buyer_id, EXCLUDED.buyer_id),
            buyer_name = greatest(o.buyer_name, EXCLUDED.buyer_name),
            store_code = greatest(o.store_code, EXCLUDED.store_code),
            guide_userid = greatest(o.guide_userid, EXCLUDED.guide_userid),
            amount = o.amount + EXCLUDED.amount,
            refund_amount = o.refund_amount + EXCLUDED.refund_amount,
            line_count = o.line_count + EXCLUDED.line_count,
            content_hash = NULL, repeats = NULL, blocks = o.blocks + 1
        RETURNING blocks
    )
    SELECT (SELECT coalesce(sum(line_count), 0) FROM block),
           count(*) FILTER (WHERE blocks = 2)
    FROM staged
"""  # noqa: S608 - fixed SQL

_SPLIT_LINES = """stage_line WHERE (channel, order_id) IN
    (SELECT channel, order_id FROM stage_order WHERE blocks > 1)"""


def _stage_all_orders(cursor) -> None:
    cursor.execute(
        f"TRUNCATE stage_order; INSERT INTO stage_order {_ORDERS_OF_LINES.format(lines='stage_line')}"
    )  # noqa: S608 - fixed SQL


def _stage_split_orders(cursor) -> None:
    """Digest and repeats of the orders whose lines came in more than one block."""
    cursor.execute(
        f"""
        UPDATE stage_order o SET content_hash = whole.content_hash, repeats = whole.repeats
        FROM ({_ORDERS_OF_LINES.format(lines=_SPLIT_LINES)}) whole
        WHERE o.channel = whole.channel AND o.order_id = whole.order_id
        """  # noqa: S608 - fixed SQL
    )


def _reject_repeated_lines(cursor, report: ImportReport) -> None:
    """A line of one order and sku twice in a file: the later row is an error."""
    cursor.execute("ANALYZE stage_line")
    cursor.execute(
        """
        SELECT later.source, later.row_no, later.order_id, later.sku, min(earlier.row_no)
        FROM stage_line later JOIN stage_line earlier
          ON earlier.source = later.source AND earlier.channel = later.channel
         AND earlier.order_id = later.order_id AND earlier.sku = later.sku
         AND earlier.row_no < later.row_no
        GROUP BY later.source, later.row_no, later.order_id, later.sku
        """
    )
    for source, row_no, order_id, sku, first in cursor.fetchall():
        report.reject(
            RowError(
                source=source,
                row=row_no,
                column="sku",
                reason=f"与第 {first} 行重复：订单 {order_id} 的商品 {sku} 在同一文件中出现两次",
                order_id=order_id,
            )
        )
        cursor.execute("DELETE FROM stage_line WHERE source = %s AND row_no = %s", [source, row_no])
        report.rows -= 1


def _reject_bad_orders(cursor, report: ImportReport) -> None:
    """Orders with any invalid line are rejected whole: their valid lines too."""
    if not report.bad_orders:
        return
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


# Identity keys of a buyer, strongest first. A buyer id is only unique within its
# channel, so its identity value is prefixed with the channel (`stage_buyer.buyer_key`).
_KEYS = [
    ("unionid", "b.unionid"),
    ("phone_hash", "b.phone_hash"),
    ("buyer_id", "b.buyer_key"),
]


class _Resolver:
    """Buyers to customers on `stage_buyer`: one row per distinct set of keys
    (unionid, phone hash, channel buyer id) of the staged orders.

    Each order's customer follows from its keys alone, so the passes run over
    the distinct key sets (about half as many rows as orders) in a narrow table
    instead of over the orders, and the orders take their customer in the upsert.
    `step` records which statement linked a row, so that a claim looks only at
    rows linked since the claim before: keys claimed then are taken already
    (claimed or found claimed), and claiming them again changed nothing. A
    statement that can change nothing is not run: a claim when nothing was
    linked since the last, a match or a creation when every buyer is linked.
    """

    def __init__(self, cursor, unlinked: int) -> None:
        self.cursor = cursor
        self.unlinked = unlinked  # rows of stage_buyer without a customer
        self.step = 0
        self.claimed = 0  # the last step whose rows were claimed

    def _linked(self) -> None:
        self.unlinked -= self.cursor.rowcount

    def match(self) -> None:
        for kind, value in _KEYS:
            if not self.unlinked:
                return
            self.step += 1
            self.cursor.execute(
                f"""
                UPDATE stage_buyer b SET customer_id = i.customer_id, step = %s
                FROM contacts_customeridentity i
                WHERE b.customer_id IS NULL AND {value} <> ''
                  AND i.kind = %s AND i.value = {value}
                """,  # noqa: S608 - fixed SQL fragments, values are parameters
                [self.step, kind],
            )
            if not self.cursor.rowcount:
                self.step -= 1  # nothing linked: nothing for the next claim to see
            self._linked()

    def claim(self) -> None:
        """Every key of a linked buyer becomes an identity of its customer, unless taken."""
        if self.claimed == self.step:
            return
        for kind, value in _KEYS:
            display = "max(b.phone_masked)" if kind == "phone_hash" else "''"
            self.cursor.execute(
                f"""
                INSERT INTO contacts_customeridentity (customer_id, kind, value, display, created_at)
                SELECT min(b.customer_id), %s, {value}, {display}, now()
                FROM stage_buyer b
                WHERE b.customer_id IS NOT NULL AND b.step > %s AND {value} <> ''
                GROUP BY {value}
                ON CONFLICT (kind, value) DO NOTHING
                """,  # noqa: S608 - fixed SQL fragments, values are parameters
                [kind, self.claimed],
            )
        self.claimed = self.step

    def create(self, value: str) -> None:
        """One new customer per distinct `value` among the buyers still unlinked that have it.

        Ids are drawn from the sequence first, so the key → customer pairing
        needs no second lookup.
        """
        if not self.unlinked:
            return
        self.step += 1
        self.cursor.execute(
            f"""
            WITH new_buyer AS MATERIALIZED (
                SELECT {value} AS key, max(b.name) AS name,
                       nextval(pg_get_serial_sequence('contacts_customer', 'id')) AS id
                FROM stage_buyer b
                WHERE b.customer_id IS NULL AND {value} <> ''
                GROUP BY {value}
            ), created AS (
                INSERT INTO contacts_customer (id, name, type, gender, avatar, corp_name, unionid,
                                               is_member, created_at, updated_at)
                SELECT id, coalesce(name, ''), 0, 0, '', '', '', false, now(), now()
                FROM new_buyer
            )
            UPDATE stage_buyer b SET customer_id = n.id, step = %s FROM new_buyer n
            WHERE b.customer_id IS NULL AND {value} <> '' AND n.key = {value}
            """,  # noqa: S608 - fixed SQL fragments
            [self.step],
        )
        if not self.cursor.rowcount:
            self.step -= 1
        self._linked()


def _resolve_buyers(cursor) -> None:
    """Link each order to a customer by exact identity; new buyers become customers.

    Three passes, one per key kind: buyers still unmatched that have the key get
    one new customer per distinct key value, then all their keys are claimed and
    the remaining buyers matched again. Orders without any key are left out: no
    customer can be found for them.
    """
    cursor.execute(
        """
        DROP TABLE IF EXISTS stage_buyer; CREATE TEMP TABLE stage_buyer ON COMMIT DROP AS
        SELECT buyer_unionid AS unionid, phone_hash,
               CASE WHEN buyer_id <> '' THEN channel || ':' || buyer_id ELSE '' END AS buyer_key,
               max(buyer_name) AS name, max(phone_masked) AS phone_masked,
               NULL::bigint AS customer_id, 0 AS step
        FROM stage_order
        WHERE buyer_unionid <> '' OR phone_hash <> '' OR buyer_id <> ''
        GROUP BY 1, 2, 3
        """
    )
    resolver = _Resolver(cursor, unlinked=cursor.rowcount)
    resolver.match()
    resolver.claim()
    for _, value in _KEYS:
        resolver.create(value)
        resolver.claim()
        resolver.match()


def _upsert(cursor, report: ImportReport, record: OrderImport) -> None:
    cursor.execute(
        "DROP TABLE IF EXISTS touched; CREATE TEMP TABLE touched (id bigint, channel text,"
        " order_id text, customer_id bigint, inserted bool, masked bool) ON COMMIT DROP"
    )
    # An order whose digest is the one stored is left alone, not even locked: on a
    # re-import that is every order, found by one anti-join on the order key.
    cursor.execute(
        """
        WITH upserted AS (
        INSERT INTO contacts_order (channel, channel_order_id, parent_order_id, status, paid_at,
            customer_id, unmatched_reason, buyer_phone_hash, buyer_phone_masked, buyer_unionid,
            buyer_id, buyer_name, store_code, guide_userid, amount, refund_amount, line_count,
            content_hash, last_import_id, created_at, updated_at)
        SELECT s.channel, s.order_id, s.parent_order_id,
               CASE WHEN s.all_cancelled THEN 'cancelled'
                    WHEN s.all_refunded THEN 'refunded'
                    WHEN s.any_refunded OR s.refund_amount > 0
                         THEN CASE WHEN s.refund_amount >= s.amount AND s.amount > 0
                                   THEN 'refunded' ELSE 'partially_refunded' END
                    ELSE 'paid' END,
               s.paid_at, b.customer_id,
               CASE WHEN b.customer_id IS NOT NULL THEN ''
                    WHEN s.phone_masked LIKE '%%*%%' THEN '只有打码手机号，无法自动识别买家'
                    ELSE '没有可识别的买家标识' END,
               s.phone_hash, s.phone_masked, s.buyer_unionid, s.buyer_id, s.buyer_name,
               s.store_code, s.guide_userid, s.amount, s.refund_amount, s.line_count,
               s.content_hash, %s, now(), now()
        FROM stage_order s
        LEFT JOIN stage_buyer b ON b.unionid = s.buyer_unionid AND b.phone_hash = s.phone_hash
         AND b.buyer_key = CASE WHEN s.buyer_id <> '' THEN s.channel || ':' || s.buyer_id ELSE '' END
        WHERE NOT EXISTS (
            SELECT FROM contacts_order o
            WHERE o.channel = s.channel AND o.channel_order_id = s.order_id
              AND o.content_hash = s.content_hash
        )
        ORDER BY s.channel, s.order_id  -- one lock order for concurrent imports: no deadlocks
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
        RETURNING id, channel, channel_order_id, customer_id, (xmax = 0) AS inserted,
                  customer_id IS NULL AND buyer_phone_masked LIKE '%%*%%' AND buyer_name <> ''
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
    report.unchanged = staged - report.inserted - report.updated
    if not (report.inserted or report.updated):
        return
    cursor.execute("ANALYZE touched")
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
    # The customer an order has once written (RETURNING gives it after the update).
    cursor.execute("SELECT DISTINCT customer_id FROM touched WHERE customer_id IS NOT NULL")
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


def _suggest_merges(cursor) -> None:
    """Unmatched orders whose masked phone and (masked) name fit exactly one known customer.

    `138****5601` must equal a phone identity's masked form, and the name must
    fit, a run of `*` standing for any characters (赵** fits 赵敏 and 赵晓梅).
    The orders are those this import wrote (`touched`: the orders whose
    last import it is) that are unmatched with a masked phone and a name.
    """
    cursor.execute(
        r"""
        WITH masked AS (  -- few rows
            SELECT o.id, o.buyer_phone_masked, o.buyer_name
            FROM touched t JOIN contacts_order o ON o.id = t.id
            WHERE t.masked
        )
        INSERT INTO contacts_mergesuggestion (order_id, customer_id, reason, status, created_at)
        SELECT o.id, min(c.id),
               '打码手机号 ' || o.buyer_phone_masked || ' 与姓名 ' || o.buyer_name || ' 只匹配到这一位客户',
               'pending', now()
        FROM masked o
        JOIN contacts_customeridentity i ON i.kind = 'phone_hash' AND i.display = o.buyer_phone_masked
        JOIN contacts_customer c ON c.id = i.customer_id AND c.merged_into_id IS NULL
             AND c.name LIKE regexp_replace(replace(replace(o.buyer_name, '%', '\%'), '_', '\_'), '\*+', '%', 'g')
        GROUP BY o.id, o.buyer_phone_masked, o.buyer_name
        HAVING count(DISTINCT c.id) = 1
        ON CONFLICT (order_id, customer_id) DO NOTHING
        """
    )
