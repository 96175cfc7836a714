"""Load parsed order lines into the orders tables: COPY, then one upsert.

Streaming end to end: lines from `order_files.read_orders` are read and
checked in a thread of their own (`_Producer`), which also sums up each run of
consecutive lines of an order into one staged order with its digest; both are
written as COPY text into temporary staging tables, a block at a time, while
the next block is read (memory stays flat). An order whose lines were far apart
is aggregated again from all its lines. Orders with any invalid line are
removed from the stage whole, buyers are resolved to customers set-based over
their distinct keys, and one statement keyed on (channel, channel order id)
updates changed orders and inserts new ones (an order is unchanged when the
digest of everything imported for it is; an unchanged order is not written,
nor locked). Lines of inserted and changed orders are (re)written from the stage.

The whole import is one transaction: nothing is half-written. A dry run does
all of it and rolls back. Imports resolve and write one at a time
(`ORDER_IMPORT_LOCK`).

Where a million-line import spends its time (2 cores; benchmarks/import_orders.py):
reading, checking and staging the file, Python-bound, 25-33 s; then new
customers and their identities about 20 s (an 11-index customer table), the
order upsert about 14 s (five indexes), the deferred foreign-key checks at
commit 10-14 s (a million: orders → customer, identities → customer), the
lines about 6 s. Writing the same rows alone, already made, costs about 24 s:
most of what is left is writing rows and their indexes.
"""

import hashlib
import io
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from contacts.facts import facts_mark_pending_selected
from contacts.models import MAX_STORED_ERRORS, UNMATCHED_MASKED, UNMATCHED_NO_KEY, OrderImport
from contacts.order_files import OrderLine, RowError
from contacts.phones import phone_hash, phone_mask, phone_normalise, phones_masked
from scrm.reasons import Reason, spec_of
from scrm.statistics import analyze_if_grown

# The tables an import writes: their statistics are renewed together after an import
# that changed many of the orders (`scrm.statistics`).
IMPORTED_TABLES = (
    "contacts_order",
    "contacts_orderline",
    "contacts_customer",
    "contacts_customeridentity",
)
# pg_advisory_xact_lock: one import at a time resolves buyers and writes orders
# (two importing the same new buyer would each make a customer of them).
ORDER_IMPORT_LOCK = 7_301_002

# The stage's columns in COPY order: first the text fields copied as read (one
# test of the joined row finds any that needs escaping), then those the loader
# writes itself, which never do. All of them up to `refund_amount` are the line's
# content: its digest (`line_hash`) is taken over their COPY text.
STAGE_TEXT_COLUMNS = [
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
    ("paid_at", "timestamptz"),
    ("phone_hash", "text"),
    ("phone_masked", "text"),
    ("quantity", "int"),
    ("unit_price", "numeric(12,2)"),
    ("line_amount", "numeric(12,2)"),
    ("refund_amount", "numeric(12,2)"),
    ("source", "text"),
    ("row_no", "int"),
    ("line_hash", "text"),
    ("attributes_from_export", "bool"),  # it gave the line an attribute (LINE_ATTRIBUTES)
    ("line_no", "int"),  # the line's place in its order, by sku (then row)
]
_stage_text = attrgetter(*STAGE_TEXT_COLUMNS)
NULL = "\\N"  # COPY text for NULL
CHUNK_LINES = 5000  # lines of COPY text handed over at a time
BLOCK_CHUNKS = 10  # chunks staged at a time: 50,000 lines


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


def _phones_masked(reason):
    if isinstance(reason, Reason):
        return Reason(reason.template, **{n: _phones_masked(v) for n, v in reason.args.items()})
    if isinstance(reason, list):
        return [_phones_masked(value) for value in reason]
    return phones_masked(reason) if isinstance(reason, str) else reason


@dataclass
class ImportReport:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    rows: int = 0
    # Of the orders written (inserted or updated): linked to a customer, not, and those of
    # these with a merge suggestion waiting.
    matched: int = 0
    unmatched: int = 0
    suggested: int = 0
    errors: list[dict] = field(default_factory=list)
    # Orders with an invalid line, by (channel, order number): the (file, row) of each
    # line at fault. Channel "" (not known): the number is at fault in every channel.
    bad_orders: dict[tuple[str, str], set[tuple[str, int]]] = field(default_factory=dict)
    rejected_rows: set[tuple[str, int]] = field(default_factory=set)
    # Each file's order number column, by file name: where a line of an order at
    # fault is reported (`_reject_bad_orders`); the generic one for a file not named.
    order_columns: dict[str, str] = field(default_factory=dict)

    def reject(self, error: RowError) -> None:
        """Record a problem; `rejected` counts rows (a row may have several problems)."""
        if (error.source, error.row) not in self.rejected_rows:
            self.rejected_rows.add((error.source, error.row))
            self.rejected += 1
        if error.order_id and not error.follows:
            order = (error.channel, error.order_id)
            self.bad_orders.setdefault(order, set()).add((error.source, error.row))
        if len(self.errors) < MAX_STORED_ERRORS:
            # Managers read the report: a phone a reason quotes from any column is masked.
            reason = _phones_masked(error.reason)
            self.errors.append(
                {
                    "row": error.row,
                    "column": error.column,
                    "reason": reason,
                    "file": error.source,
                    "order_id": error.order_id,
                    # to show the reason in the reader's language (`OrderImport.errors_by_row`)
                    "reason_spec": spec_of(reason),
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

    Reading and checking a line costs Python more than Postgres spends staging
    it; here the file is read in this thread while the loader copies the blocks
    already read (psycopg2 lets go of the GIL while Postgres works). At most
    `QUEUED_CHUNKS` chunks wait: memory stays flat. The thread touches no
    database and no cache (progress is reported by the loader); an exception
    raised while reading is kept and raised by the loader.
    """

    QUEUED_CHUNKS = 8

    def __init__(self, chunks: Iterator[tuple[bytes, bytes]]) -> None:
        self.queue: queue.Queue[tuple[bytes, bytes] | None] = queue.Queue(self.QUEUED_CHUNKS)
        self.error: BaseException | None = None
        self.finished = False  # the last chunk was handed over
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._produce, args=(chunks,), name="order-import-reader", daemon=True
        )
        self._thread.start()

    def _put(self, chunk: tuple[bytes, bytes] | None) -> bool:
        while not self._stopping.is_set():
            try:
                self.queue.put(chunk, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, chunks: Iterator[tuple[bytes, bytes]]) -> None:
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
    """The lines of the next `chunks` chunks of a producer, as a file for COPY to
    read; their orders are kept in `orders`, for a COPY of their own.

    Each `read` hands over one whole chunk, whatever size is asked for: psycopg2
    sends what it gets (cutting chunks to size copied each one about ten times).
    """

    def __init__(self, producer: _Producer, chunks: int, progress: Callable[[], None]) -> None:
        self.producer = producer
        self.left = chunks
        self.progress = progress
        self.orders: list[bytes] = []
        self.error: Exception | None = None

    def read(self, size: int = -1) -> bytes:
        if not self.left or self.producer.finished:
            return b""
        chunk = self.producer.queue.get()
        if chunk is None:
            self.producer.finished = True
            return b""
        self.left -= 1
        lines, orders = chunk
        self.orders.append(orders)
        try:
            self.progress()
        except Exception as error:  # psycopg2 reports it only as "error in .read() call"
            self.error = error
            raise
        return lines


def _copy_text(values) -> str:
    """COPY text of text fields: joined as they are, escaped one by one only in
    the rare row that holds a backslash, a tab or a line break (or a None)."""
    try:
        text = "\t".join(values)
    except TypeError:  # a field that is None: NULL
        text = "\\"
    if "\\" in text or "\n" in text or "\r" in text or text.count("\t") != len(values) - 1:
        text = "\t".join(NULL if v is None else _copy_escape(v) for v in values)
    return text


def _max(values) -> str | None:
    """max() as SQL's: NULLs are left out."""
    present = [v for v in values if v is not None]
    return max(present) if present else None


# The order's fields that each of its lines repeats (`_run_text`).
_order_fields = attrgetter(
    "parent_order_id", "buyer_unionid", "buyer_id", "buyer_name", "store_code", "guide_userid"
)


def _run_text(run: list[tuple], lines: list[str], orders: list[str]) -> None:
    """COPY text of a run of lines of one order, with their numbers, and of the order
    as `_ORDERS_OF_LINES` makes it.

    `run` holds (line, phone_hash, phone_masked, paid_at text, line_hash, COPY
    text of the line but its number) tuples. The lines of an order nearly always
    agree on its fields: those of the first are taken when they do.
    """
    first, phone, masked, paid_text, line_hash, text = run[0]
    fields = _order_fields(first)
    paid = None if first.paid_at is None else paid_text
    if len(run) == 1:  # most orders
        lines.append(f"{text}\t1\n")
        status = first.status
        flags = ("t" if status == "cancelled" else "f", "t" if status == "refunded" else "f")
        amount, refund, count = first.line_amount, first.refund_amount, 1
        digest, repeats = hashlib.md5(line_hash.encode()).hexdigest(), "f"  # noqa: S324 - a digest
        differ = "f"
    else:
        run.sort(key=lambda entry: (entry[0].sku, entry[0].row))
        lines.extend(f"{entry[5]}\t{number}\n" for number, entry in enumerate(run, 1))
        items = [entry[0] for entry in run]
        fields_differ = any(_order_fields(line) != fields for line in items)
        if fields_differ:
            fields = tuple(_max(column) for column in zip(*map(_order_fields, items), strict=True))
        phones_differ = any(entry[1] != phone or entry[2] != masked for entry in run)
        if phones_differ:
            phone, masked = _max(entry[1] for entry in run), _max(entry[2] for entry in run)
        times_differ = any(line.paid_at != first.paid_at for line in items)
        if times_differ:
            times = [line.paid_at for line in items if line.paid_at is not None]
            paid = min(times).isoformat() if times else None
        statuses = {line.status for line in items}
        part_cancelled = "cancelled" in statuses and len(statuses) > 1
        differ = _lines_differ(run) if fields_differ or phones_differ or times_differ else "f"
        if part_cancelled:
            differ = "t"
        flags = (
            "t" if statuses == {"cancelled"} else "f",
            "t" if statuses == {"refunded"} else "f",
        )
        amount = sum(line.line_amount for line in items)
        refund = sum(line.refund_amount for line in items)
        count = len(items)
        digest = hashlib.md5("".join(entry[4] for entry in run).encode()).hexdigest()  # noqa: S324
        repeats = "t" if len({line.sku for line in items}) < count else "f"
    parent, unionid, buyer_id, name, store, guide = fields
    texts = (first.channel, first.order_id, parent, *flags, paid, phone, masked)
    texts += (unionid, buyer_id, name, store, guide)
    orders.append(
        f"{_copy_text(texts)}\t{amount!s}\t{refund!s}\t{count}\t{digest}\t{repeats}\t{differ}\n"
    )


def _lines_differ(run: list[tuple]) -> str:
    """ "t" when the lines say two things of what is one per order: two buyers (two values
    of one key: unionid, phone, masked phone, buyer id), two checkouts, stores, guides or
    payment times; a field one line gives and another leaves out is no second one."""
    keys = [
        (e[0].buyer_unionid, e[1], e[2], e[0].buyer_id, e[0].parent_order_id)
        + (e[0].store_code, e[0].guide_userid, e[0].paid_at)
        for e in run
    ]
    differ = any(len(set(filter(None, values))) > 1 for values in zip(*keys, strict=True))
    return "t" if differ else "f"


def _stage_rows(
    items: Iterable[OrderLine | RowError], report: ImportReport
) -> Iterator[tuple[bytes, bytes]]:
    """COPY text of the valid lines and of their orders, in chunks; RowErrors go to
    the report on the way.

    Each line carries a digest of its content (`line_hash`). The lines of an
    order usually follow each other: each run of them becomes one staged order
    here, with its sums, flags and digest (`_run_text`), so that Postgres only
    copies. An order whose lines are far apart in the files is staged once a run
    and aggregated again from its lines at the end (`_stage_split_orders`).
    A chunk ends where an order does, unless the order is very long.

    About 13 µs a line: the text fields are joined as they are (`_copy_text`);
    consecutive lines usually share a payment time (isoformat, 1.5 µs) and a
    phone, whose text and keys are used again.
    """
    phone_keys = _PhoneKeys()
    stage_text, null, md5 = _stage_text, NULL, hashlib.md5
    lines: list[str] = []
    orders: list[str] = []
    run: list[tuple] = []
    rows = 0
    order_id = channel = last_paid_at = last_source = None
    paid_text = source_text = null
    for item in items:
        if type(item) is not OrderLine:
            report.reject(item)
            continue
        same_order = item.order_id == order_id and item.channel == channel
        if not same_order and run:
            _run_text(run, lines, orders)
            run = []
        if len(lines) + len(run) >= (2 * CHUNK_LINES if same_order else CHUNK_LINES):
            if run:  # a very long order: staged in runs, aggregated again at the end
                _run_text(run, lines, orders)
                run = []
            report.rows = rows
            yield "".join(lines).encode(), "".join(orders).encode()
            lines.clear()
            orders.clear()
        rows += 1
        order_id, channel = item.order_id, item.channel
        text = _copy_text(stage_text(item))
        phone_hash, phone_masked = phone_keys(item.buyer_phone)
        paid_at = item.paid_at
        if paid_at != last_paid_at:  # the same instant in any zone is the same timestamptz
            last_paid_at, paid_text = paid_at, paid_at.isoformat() if paid_at else null
        if item.source != last_source:
            last_source, source_text = item.source, _copy_text((item.source,))
        content = (
            f"{text}\t{paid_text}\t{phone_hash}\t{phone_masked}\t{item.quantity}\t"
            f"{item.unit_price!s}\t{item.line_amount!s}\t{item.refund_amount!s}"
        )
        line_hash = md5(content.encode()).hexdigest()
        own = not item.attributes_guessed and (item.category or item.material or item.style)
        text = f"{content}\t{source_text}\t{item.row}\t{line_hash}\t{'t' if own else 'f'}"
        run.append((item, phone_hash, phone_masked, paid_text, line_hash, text))
    report.rows = rows
    if run:
        _run_text(run, lines, orders)
    if lines:
        yield "".join(lines).encode(), "".join(orders).encode()


def orders_load(
    *,
    items: Iterable[OrderLine | RowError],
    record: OrderImport,
    dry_run: bool = False,
    progress: Callable[[int], None] = lambda rows: None,
    order_columns: dict[str, str] | None = None,
) -> ImportReport:
    """Validate-then-load everything `items` yields, in one transaction; `order_columns`:
    each file's order number column (`order_files.order_number_columns`)."""
    report = ImportReport(order_columns=order_columns or {})
    started = time.monotonic()
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                _load(cursor, items, report, record, progress)
            if dry_run:
                transaction.set_rollback(True)
        if not dry_run:
            changed = report.inserted + report.updated
            analyze_if_grown(measure="contacts_order", changed=changed, tables=IMPORTED_TABLES)
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
    # The orders are staged with everything that was read (`_stage_rows`), a block
    # at a time while the next block is read; staging also tells whether an order
    # has a sku twice (`repeats`).
    cursor.execute(
        "DROP TABLE IF EXISTS stage_order; CREATE TEMP TABLE stage_order ON COMMIT DROP AS"
        f" {_ORDERS_OF_LINES.format(lines='stage_line')} WITH NO DATA"
    )  # noqa: S608 - fixed SQL
    producer = _Producer(_stage_rows(items, report))
    try:
        while not producer.finished:
            block = producer.block(BLOCK_CHUNKS, lambda: progress(report.rows + report.rejected))
            try:
                cursor.copy_expert("COPY stage_line FROM STDIN", block)
            except Exception:
                if block.error is not None:
                    raise block.error from None
                raise
            cursor.copy_expert("COPY stage_order FROM STDIN", io.BytesIO(b"".join(block.orders)))
    finally:
        producer.close()
    if producer.error is not None:
        raise producer.error
    _stage_split_orders(cursor)
    cursor.execute(
        "SELECT coalesce(bool_or(repeats), false), coalesce(bool_or(lines_differ), false)"
        " FROM stage_order"
    )
    repeats, lines_differ = cursor.fetchone()
    if repeats or lines_differ:
        # Rare: a line repeated far down a file (the reader finds those next to each
        # other), or in another file; lines of one order that name two buyers, stores,
        # ... They are checked and removed, and the orders staged again from what is left.
        if repeats:
            _reject_repeated_lines(cursor, report, record.files)
        if lines_differ:
            _reject_conflicting_lines(cursor, report, record.files)
        _reject_bad_orders(cursor, report)
        _stage_all_orders(cursor)
    elif report.bad_orders:
        _reject_bad_orders(cursor, report)
        # The lines removed are those of whole orders: so are the staged orders.
        cursor.execute(
            f"DELETE FROM stage_order s WHERE {_AT_FAULT.format(table='s')}",  # noqa: S608
            _bad_order_keys(report),
        )
    # Without statistics the planner joined the orders to their buyers and to the
    # stored orders by sorting them twice (8 s of a million-line import; 1.7 s with).
    cursor.execute("ANALYZE stage_order")
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ORDER_IMPORT_LOCK])
    _resolve_buyers(cursor)
    cursor.execute("ANALYZE stage_buyer")  # now that its customers are known
    _upsert(cursor, report, record)
    if report.inserted or report.updated:  # a merge suggestion is only for orders written
        _suggest_merges(cursor)
        cursor.execute(
            """
            SELECT count(*) FILTER (WHERE customer_id IS NOT NULL),
                   count(*) FILTER (WHERE customer_id IS NULL),
                   (SELECT count(DISTINCT s.order_id) FROM contacts_mergesuggestion s
                    JOIN touched t ON t.id = s.order_id WHERE s.status = 'pending')
            FROM touched
            """
        )
        report.matched, report.unmatched, report.suggested = cursor.fetchone()


# One row per order of `lines`, with a digest of everything imported for it (of
# its lines' digests, in an order that does not depend on the file's). The status
# is decided in the upsert from the flags and sums kept here. `_run_text` makes
# the same row in Python for an order whose lines follow each other.
_ORDERS_OF_LINES = """
    SELECT channel, order_id,
           max(parent_order_id) AS parent_order_id,
           bool_and(status = 'cancelled') AS all_cancelled,
           bool_and(status = 'refunded') AS all_refunded,
           min(paid_at) AS paid_at,
           max(phone_hash) AS phone_hash, max(phone_masked) AS phone_masked,
           max(buyer_unionid) AS buyer_unionid, max(buyer_id) AS buyer_id,
           max(buyer_name) AS buyer_name, max(store_code) AS store_code,
           max(guide_userid) AS guide_userid,
           sum(line_amount) AS amount, sum(refund_amount) AS refund_amount, count(*) AS line_count,
           md5(string_agg(line_hash, '' ORDER BY sku COLLATE "C", row_no)) AS content_hash,
           count(DISTINCT sku) < count(*) AS repeats,
           count(DISTINCT nullif(buyer_unionid, '')) > 1 OR count(DISTINCT nullif(phone_hash, '')) > 1
           OR count(DISTINCT nullif(phone_masked, '')) > 1
           OR count(DISTINCT nullif(buyer_id, '')) > 1
           OR count(DISTINCT nullif(parent_order_id, '')) > 1
           OR count(DISTINCT nullif(store_code, '')) > 1
           OR count(DISTINCT nullif(guide_userid, '')) > 1 OR count(DISTINCT paid_at) > 1
           OR bool_or(status = 'cancelled') AND NOT bool_and(status = 'cancelled') AS lines_differ
    FROM {lines} GROUP BY channel, order_id
"""


def _stage_all_orders(cursor) -> None:
    cursor.execute(
        f"TRUNCATE stage_order; INSERT INTO stage_order {_ORDERS_OF_LINES.format(lines='stage_line')}"
    )  # noqa: S608 - fixed SQL


def _stage_split_orders(cursor) -> None:
    """An order whose lines were far apart in the files was staged once for each
    run of them: it is aggregated again from all its lines."""
    cursor.execute(
        "DROP TABLE IF EXISTS split_order; CREATE TEMP TABLE split_order ON COMMIT DROP AS"
        " SELECT channel, order_id FROM stage_order GROUP BY 1, 2 HAVING count(*) > 1"
    )
    if not cursor.rowcount:
        return
    cursor.execute(
        f"""
        DELETE FROM stage_order o USING split_order s
        WHERE o.channel = s.channel AND o.order_id = s.order_id;
        INSERT INTO stage_order {_ORDERS_OF_LINES.format(lines=_SPLIT_LINES)};
        UPDATE stage_line l SET line_no = n.line_no FROM (
            SELECT ctid, row_number() OVER (PARTITION BY channel, order_id
                                            ORDER BY sku COLLATE "C", row_no) AS line_no
            FROM {_SPLIT_LINES}
        ) n WHERE l.ctid = n.ctid
        """  # noqa: S608 - fixed SQL
    )


_SPLIT_LINES = "stage_line WHERE (channel, order_id) IN (SELECT channel, order_id FROM split_order)"


def _reject_repeated_lines(cursor, report: ImportReport, files: list[str]) -> None:
    """A line of one order and sku twice. In two files (exports that overlap) the
    same line is the same line: it is kept once. Otherwise the later row is an
    error: in one file the order is read wrong, and of two different versions in
    two files neither is known to be the newer."""
    cursor.execute(
        """
        SELECT ctid, source, row_no, channel, order_id, sku, first_source, first_row,
               line_hash = first_hash
        FROM (
            SELECT l.ctid, l.source, l.row_no, l.channel, l.order_id, l.sku, l.line_hash,
                   first_value(l.source) OVER line AS first_source,
                   first_value(l.row_no) OVER line AS first_row,
                   first_value(l.line_hash) OVER line AS first_hash,
                   row_number() OVER line AS place
            FROM stage_line l
            WHERE (l.channel, l.order_id) IN (SELECT channel, order_id FROM stage_order
                                              WHERE repeats)
            WINDOW line AS (PARTITION BY l.channel, l.order_id, l.sku
                            ORDER BY array_position(%s::text[], l.source), l.row_no, l.ctid)
        ) repeated
        WHERE place > 1
        """,
        [files],  # the files in the order given: a later one repeats an earlier one
    )
    removed = []
    for (
        ctid,
        source,
        row_no,
        channel,
        order_id,
        sku,
        first_source,
        first_row,
        same,
    ) in cursor.fetchall():
        removed.append(ctid)
        if same and source != first_source:
            continue
        if source == first_source:
            reason = Reason(
                "与第 {row} 行重复：订单 {order} 的商品 {sku} 在同一文件中出现两次",
                row=first_row,
                order=order_id,
                sku=sku,
            )
        else:
            reason = Reason(
                "订单 {order} 的商品 {sku} 在 {file} 第 {row} 行也有，内容不同："
                "请分开导入这两个文件，先导入较早的导出",
                order=order_id,
                sku=sku,
                file=first_source,
                row=first_row,
            )
        report.reject(
            RowError(
                source=source,
                row=row_no,
                column="sku",
                reason=reason,
                order_id=order_id,
                channel=channel,
            )
        )
        report.rows -= 1
    cursor.execute("DELETE FROM stage_line WHERE ctid = ANY(%s::tid[])", [removed])


# What each line of an order must agree on, as staged: the stage's column (or
# expression), the generic column it is read from, and why lines that differ on it
# are rejected. A field one line leaves out is no second value.
_BUYER_DIFFERS = gettext_noop("买家与{where}不同：同一订单 {order} 的各行应是同一位买家")
_ONE_PER_ORDER = [
    ("buyer_unionid", "buyer_unionid", _BUYER_DIFFERS),
    ("phone_hash", "buyer_phone", _BUYER_DIFFERS),
    ("phone_masked", "buyer_phone", _BUYER_DIFFERS),
    ("buyer_id", "buyer_id", _BUYER_DIFFERS),
    (
        "parent_order_id",
        "parent_order_id",
        gettext_noop("主订单号与{where}不同：同一订单 {order} 的各行应来自同一次下单"),
    ),
    (
        "store_code",
        "store_code",
        gettext_noop("门店与{where}不同：同一订单 {order} 的各行应是同一个门店"),
    ),
    (
        "guide_userid",
        "guide_userid",
        gettext_noop("导购与{where}不同：同一订单 {order} 的各行应记给同一位导购"),
    ),
    (
        "paid_at",
        "paid_at",
        gettext_noop("付款时间与{where}不同：同一订单 {order} 的各行应是同一次付款"),
    ),
    (
        "status = 'cancelled'",
        "status",
        gettext_noop(
            "订单状态与{where}不同：同一订单 {order} 不能一部分取消、一部分付款；"
            "退掉的商品请写为部分退款（partially_refunded）并填退款金额"
        ),
    ),
]


def _reject_conflicting_lines(cursor, report: ImportReport, files: list[str]) -> None:
    """An order whose lines say two things of what is one per order (`lines_differ`) is
    rejected: two buyers (which of them bought it is not known, and the order would
    go to either), two checkouts, stores, guides or payment times, or lines cancelled
    and lines paid (the order's amount would count what was never paid). Each line
    that gives a field another value than an earlier line of the order gave it is an
    error, on its first such field."""
    fields = ", ".join(field for field, _, _ in _ONE_PER_ORDER)
    cursor.execute(
        f"""
        SELECT ctid, source, row_no, channel, order_id, {fields}
        FROM stage_line
        WHERE (channel, order_id) IN (SELECT channel, order_id FROM stage_order
                                      WHERE lines_differ)
        ORDER BY channel, order_id, array_position(%s::text[], source), row_no
        """,  # noqa: S608 - fixed SQL fragments
        [files],
    )
    order, removed = None, []
    for ctid, source, row_no, channel, order_id, *values in cursor.fetchall():
        if order != (channel, order_id):  # each field's first value, and the row that gave it
            order, known = (channel, order_id), [None] * len(_ONE_PER_ORDER)
        conflict = None
        for place, value in enumerate(values):
            if value is None or value == "":
                continue
            if known[place] is None:
                known[place] = (value, source, row_no)
            elif known[place][0] != value and conflict is None:
                conflict = (place, *known[place][1:])
        if conflict is None:
            continue
        place, first_source, first_row = conflict
        _, column, reason = _ONE_PER_ORDER[place]
        report.reject(
            RowError(
                source=source,
                row=row_no,
                column=column,
                reason=Reason(
                    reason,
                    where=_rows_at_fault([(first_source, first_row)], source),
                    order=order_id,
                ),
                order_id=order_id,
                channel=channel,
            )
        )
        removed.append(ctid)  # reported here: not again as a line of an order at fault
        report.rows -= 1
    cursor.execute("DELETE FROM stage_line WHERE ctid = ANY(%s::tid[])", [removed])


# A staged row of an order at fault (`_bad_order_keys`): its number with its channel,
# or with channel "" (not known) in any channel.
_AT_FAULT = """EXISTS (
    SELECT FROM unnest(%s::text[], %s::text[]) AS bad (channel, order_id)
    WHERE bad.order_id = {table}.order_id AND bad.channel IN ('', {table}.channel))"""


def _bad_order_keys(report: ImportReport) -> list[list[str]]:
    orders = sorted(report.bad_orders)
    return [[channel for channel, _ in orders], [order_id for _, order_id in orders]]


def _reject_bad_orders(cursor, report: ImportReport) -> None:
    """Orders with any invalid line are rejected whole: their valid lines too."""
    if not report.bad_orders:
        return
    cursor.execute(
        f"DELETE FROM stage_line l WHERE {_AT_FAULT.format(table='l')}"  # noqa: S608
        " RETURNING source, row_no, channel, order_id",
        _bad_order_keys(report),
    )
    bad = report.bad_orders
    for source, row_no, channel, order_id in cursor.fetchall():
        at_fault = sorted(bad.get((channel, order_id), set()) | bad.get(("", order_id), set()))
        report.reject(
            RowError(
                source=source,
                row=row_no,
                column=report.order_columns.get(source, "order_id"),
                reason=Reason(
                    "订单 {order} 的{rows}有错误，整单未导入",
                    order=order_id,
                    rows=_rows_at_fault(at_fault, source),
                ),
                order_id=order_id,
                channel=channel,
                follows=True,
            )
        )
    report.rows -= cursor.rowcount


ROWS_AT_FAULT_NAMED = 5  # a long order's other lines name its first faulty rows, and count all


def _rows_at_fault(rows: list[tuple[str, int]], source: str) -> Reason:
    """第 3、5 行 (in this line's file), or with the file named when it is another one;
    past ROWS_AT_FAULT_NAMED rows, the first of them and how many there are."""
    by_file: dict[str, list[int]] = {}
    for file, row in rows[:ROWS_AT_FAULT_NAMED]:
        by_file.setdefault(file, []).append(row)
    named = [
        Reason("第 {rows} 行", rows=numbers)
        if file == source
        else Reason("{file} 第 {rows} 行", file=file, rows=numbers)
        for file, numbers in by_file.items()
    ]
    reason = named[0]
    for more in named[1:]:  # rows in other files
        reason = Reason("{rows}，{more}", rows=reason, more=more)
    if len(rows) <= ROWS_AT_FAULT_NAMED:
        return reason
    return Reason("{rows}等 {count} 行", rows=reason, count=len(rows))


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
        # Looked up once: looked up for each new customer it took 1 s of a million-line import.
        cursor.execute("SELECT pg_get_serial_sequence('contacts_customer', 'id')")
        self.sequence = cursor.fetchone()[0]

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
                  -- on a re-import every key is taken: found by a probe, not by inserting
                  AND NOT EXISTS (SELECT FROM contacts_customeridentity i
                                  WHERE i.kind = %s AND i.value = {value})
                GROUP BY {value}
                ON CONFLICT (kind, value) DO NOTHING
                """,  # noqa: S608 - fixed SQL fragments, values are parameters
                [kind, self.claimed, kind],
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
                       nextval(%s::regclass) AS id
                FROM stage_buyer b
                WHERE b.customer_id IS NULL AND {value} <> '' AND NOT b.held
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
            [self.sequence, self.step],
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
               NULL::bigint AS customer_id, 0 AS step, false AS held
        FROM stage_order
        WHERE buyer_unionid <> '' OR phone_hash <> '' OR buyer_id <> ''
        GROUP BY 1, 2, 3
        """
    )
    resolver = _Resolver(cursor, unlinked=cursor.rowcount)
    resolver.match()
    resolver.claim()
    _hold_masked_buyers(cursor)
    for _, value in _KEYS:
        resolver.create(value)
        resolver.claim()
        resolver.match()


def _hold_masked_buyers(cursor) -> None:
    """A new buyer known only by a channel buyer id, whose masked phone and name fit
    exactly one known customer (`MASKED_FITS`), is not made a customer: their orders stay
    unmatched, with a merge suggestion for an operator to decide (confirmed, the buyer
    id becomes the customer's). Unless a suggestion of theirs was rejected: then they
    are someone else, and a customer of their own."""
    cursor.execute(
        f"""
        UPDATE stage_buyer b SET held = true
        WHERE b.customer_id IS NULL AND b.unionid = '' AND b.phone_hash = ''
          AND b.buyer_key <> '' AND b.phone_masked LIKE '%*%' AND b.name <> ''
          AND (SELECT count(DISTINCT c.id) FROM {
            MASKED_FITS.format(masked="b.phone_masked", name="b.name")
        }) = 1
          AND NOT EXISTS (
              SELECT FROM contacts_mergesuggestion s
              JOIN contacts_order o ON o.id = s.order_id
              WHERE s.status = 'rejected' AND o.channel || ':' || o.buyer_id = b.buyer_key)
        """  # noqa: S608 - fixed SQL fragments; no parameters, so % is itself
    )


# The known customers a masked phone and a (masked) name fit: the phone's masked form
# is that of one of their phone identities, and the name fits, a run of `*` standing
# for any characters (赵** fits 赵敏 and 赵晓梅).
MASKED_FITS = r"""contacts_customeridentity i
    JOIN contacts_customer c ON c.id = i.customer_id AND c.merged_into_id IS NULL
     AND c.name LIKE regexp_replace(replace(replace({name}, '%', '\%'), '_', '\_'),
                                    '\*+', '%', 'g')
    WHERE i.kind = 'phone_hash' AND i.display = {masked}"""


# The staged orders as they are to be stored: status, customer and reason decided
# (the reasons are constants of ours).
_INCOMING = f"""
    SELECT s.channel, s.order_id, s.parent_order_id,
           CASE WHEN s.all_cancelled THEN 'cancelled'
                WHEN s.all_refunded THEN 'refunded'
                -- refunded in part, or (all of it) in full; lines said refunded in
                -- part with nothing refunded were paid, as a channel's are
                -- (`order_files.channels.order_status`)
                WHEN s.refund_amount > 0
                     THEN CASE WHEN s.refund_amount >= s.amount AND s.amount > 0
                               THEN 'refunded' ELSE 'partially_refunded' END
                ELSE 'paid' END AS status,
           s.paid_at, b.customer_id,
           CASE WHEN b.customer_id IS NOT NULL THEN ''
                WHEN s.phone_masked LIKE '%%*%%' THEN '{UNMATCHED_MASKED}'
                ELSE '{UNMATCHED_NO_KEY}' END AS unmatched_reason,
           s.phone_hash, s.phone_masked, s.buyer_unionid, s.buyer_id, s.buyer_name,
           s.store_code, s.guide_userid, s.amount, s.refund_amount, s.line_count, s.content_hash
    FROM stage_order s
    LEFT JOIN stage_buyer b ON b.unionid = s.buyer_unionid AND b.phone_hash = s.phone_hash
     AND b.buyer_key = CASE WHEN s.buyer_id <> '' THEN s.channel || ':' || s.buyer_id ELSE '' END
"""  # noqa: S608
# What `touched` keeps of an order written: its key, its customer, whether it is
# new, and whether it may get a merge suggestion (`_suggest_merges`).
_TOUCHED = """o.id, o.channel, o.channel_order_id, o.customer_id, {inserted},
    o.customer_id IS NULL AND o.buyer_phone_masked LIKE '%%*%%' AND o.buyer_name <> ''"""


# SQL of a line's category, material and style, in that order, from the line `l` and
# its sku's catalogue entry `p` (NULLs when there is none). When the export gave the
# line attributes (`attributes_from_export`), those it gave are kept and the catalogue
# fills the others; otherwise the catalogue's win over those guessed from the
# product name.
LINE_ATTRIBUTES = ", ".join(
    f"CASE WHEN l.attributes_from_export THEN coalesce(nullif(l.{name}, ''), p.{name}, '')"
    f" ELSE coalesce(nullif(p.{name}, ''), l.{name}) END"
    for name in ("category", "material", "style")
)


def _upsert(cursor, report: ImportReport, record: OrderImport) -> None:
    """Changed orders are updated, new ones inserted; an unchanged order (its
    digest is the one stored) is left alone, not even locked: on a re-import that
    is every order. Imports write one at a time (`ORDER_IMPORT_LOCK`), so a plain
    INSERT of the orders not stored finds no other import's (an INSERT … ON
    CONFLICT cost a third more)."""
    cursor.execute(
        "DROP TABLE IF EXISTS touched; CREATE TEMP TABLE touched (id bigint, channel text,"
        " order_id text, customer_id bigint, inserted bool, masked bool) ON COMMIT DROP"
    )
    cursor.execute(
        f"""
        WITH updated AS (
            UPDATE contacts_order o SET
                parent_order_id = n.parent_order_id, status = n.status, paid_at = n.paid_at,
                -- a customer set by a merge or a guide's binding is kept
                customer_id = coalesce(o.customer_id, n.customer_id),
                unmatched_reason = CASE WHEN coalesce(o.customer_id, n.customer_id) IS NULL
                                        THEN n.unmatched_reason ELSE '' END,
                buyer_phone_hash = n.phone_hash, buyer_phone_masked = n.phone_masked,
                buyer_unionid = n.buyer_unionid, buyer_id = n.buyer_id,
                buyer_name = n.buyer_name, store_code = n.store_code,
                guide_userid = n.guide_userid, amount = n.amount,
                refund_amount = n.refund_amount, line_count = n.line_count,
                content_hash = n.content_hash, last_import_id = %s, updated_at = now()
            FROM ({_INCOMING}) n
            WHERE o.channel = n.channel AND o.channel_order_id = n.order_id
              AND o.content_hash <> n.content_hash
            RETURNING {_TOUCHED.format(inserted="false")}
        ), inserted AS (
            INSERT INTO contacts_order AS o (channel, channel_order_id, parent_order_id, status,
                paid_at, customer_id, unmatched_reason, buyer_phone_hash, buyer_phone_masked,
                buyer_unionid, buyer_id, buyer_name, store_code, guide_userid, amount,
                refund_amount, line_count, content_hash, last_import_id, created_at, updated_at)
            SELECT n.*, %s, now(), now() FROM ({_INCOMING}) n
            WHERE NOT EXISTS (
                SELECT FROM contacts_order stored
                WHERE stored.channel = n.channel AND stored.channel_order_id = n.order_id
            )
            RETURNING {_TOUCHED.format(inserted="true")}
        )
        INSERT INTO touched SELECT * FROM updated UNION ALL SELECT * FROM inserted
        """,  # noqa: S608 - fixed SQL fragments, values are parameters
        [record.pk, record.pk],
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
        f"""
        INSERT INTO contacts_orderline (order_id, line_no, sku, product_name, category, material,
            style, quantity, unit_price, line_amount, refund_amount, attributes_from_export)
        SELECT t.id, l.line_no, l.sku, coalesce(nullif(l.product_name, ''), p.name, ''),
               {LINE_ATTRIBUTES},
               l.quantity, l.unit_price, l.line_amount, l.refund_amount, l.attributes_from_export
        FROM stage_line l JOIN touched t ON t.channel = l.channel AND t.order_id = l.order_id
        LEFT JOIN contacts_product p ON p.sku = l.sku
        """  # noqa: S608 - fixed SQL
    )
    # The customer an order has once written (RETURNING gives it after the update).
    facts_mark_pending_selected(
        "SELECT DISTINCT customer_id FROM touched WHERE customer_id IS NOT NULL", []
    )


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
    record.matched, record.unmatched = report.matched, report.unmatched
    record.suggested = report.suggested
    record.errors = report.errors
    record.save()
    return record


def _suggest_merges(cursor) -> None:
    """Unmatched orders whose masked phone and (masked) name fit exactly one known
    customer (`MASKED_FITS`). The orders are those this import wrote (`touched`: the orders whose
    last import it is) that are unmatched with a masked phone and a name.
    """
    cursor.execute(
        f"""
        WITH masked AS (  -- few rows
            SELECT o.id, o.buyer_phone_masked, o.buyer_name
            FROM touched t JOIN contacts_order o ON o.id = t.id
            WHERE t.masked
        )
        INSERT INTO contacts_mergesuggestion
            (order_id, customer_id, reason, status, undo, created_at)
        SELECT o.id, min(c.id),
               '打码手机号 ' || o.buyer_phone_masked || ' 与姓名 ' || o.buyer_name || ' 只匹配到这一位客户',
               'pending', '{{}}', now()
        FROM masked o, LATERAL (
            SELECT c.id FROM {MASKED_FITS.format(masked="o.buyer_phone_masked", name="o.buyer_name")}
        ) c
        GROUP BY o.id, o.buyer_phone_masked, o.buyer_name
        HAVING count(DISTINCT c.id) = 1
        ON CONFLICT (order_id, customer_id) DO NOTHING
        """  # noqa: S608 - fixed SQL fragments
    )
