"""Order import: the command end to end, against the floor and the naive way.

    python benchmarks/import_orders.py [--scale F]

Full size (F = 1) is 1,000,000 generic order lines for 200,000 buyers. In one
run it measures:
- the import end to end (read, validate, COPY, resolve buyers, upsert), and a
  re-import of the same file (every order unchanged);
- the floor: a bare COPY of the same rows, already parsed into COPY text, into
  a table with the same indexes as the orders table;
- what storing the import's result costs alone: the rows it wrote (new
  customers, identities, orders, lines) inserted ready-made into tables indexed
  as theirs; `writes_only_ratio_to_floor` bounds `ratio_to_floor` from above;
- the naive way: per-row ORM saves (identity lookup, order update_or_create,
  line create) on a sample of 10,000 rows (scaled with F), in rows per second.

Runs in a database of its own (scrm_bench), created and migrated here. The
last line printed is one JSON object.
"""

import argparse
import csv
import io
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SCRM_DEVELOPMENT", "1")
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/scrm_bench"
)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scrm.settings")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_orders(path: Path, buyers_count: int, lines: int) -> None:
    from contacts.order_generator import GENERIC_COLUMNS, generate_order_rows, make_buyers

    buyers = make_buyers(seed=7, count=buyers_count)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=GENERIC_COLUMNS)
        writer.writeheader()
        writer.writerows(generate_order_rows(seed=7, buyers=buyers, lines=lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    lines = int(1_000_000 * args.scale)
    buyers_count = max(100, int(200_000 * args.scale))
    naive_rows = max(500, int(10_000 * min(1.0, args.scale * 10)))

    from scrm import ensure_database

    ensure_database.main()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from contacts import services
    from contacts.models import Customer, CustomerIdentity, Order, OrderLine
    from contacts.phones import phone_hash, phone_normalise

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE contacts_orderline, contacts_order, contacts_customeridentity,"
            " contacts_mergesuggestion, contacts_customer, contacts_orderimport CASCADE"
        )

    folder = Path(tempfile.mkdtemp(prefix="bench-orders-"))
    path = folder / "orders.csv"
    started = time.monotonic()
    # Generated in a child process: the buyers it holds are not the import's memory.
    # The child must not share (and on exit close) this process's database connection.
    connection.close()
    writer = multiprocessing.get_context("fork").Process(
        target=write_orders, args=(path, buyers_count, lines)
    )
    writer.start()
    writer.join()
    if writer.exitcode != 0:
        raise SystemExit(f"generating the orders failed (exit {writer.exitcode})")
    generate_seconds = time.monotonic() - started
    print(f"generated {lines:,} lines in {generate_seconds:.1f} s: {path}")  # noqa: T201

    # 1. The import, end to end, then the same file again.
    started = time.monotonic()
    record, report = services.orders_import(paths=[path], channel="generic")
    import_seconds = time.monotonic() - started
    if report.rejected:
        raise SystemExit(f"generated rows were rejected: {report.errors[:5]}")
    started = time.monotonic()
    _, again = services.orders_import(paths=[path], channel="generic")
    reimport_seconds = time.monotonic() - started
    if again.inserted or again.updated:
        raise SystemExit(f"re-import changed orders: {again.inserted} new, {again.updated} updated")
    orders = report.inserted
    # Peak memory of the import itself, before the floor's in-memory COPY text below.
    import_peak_rss_mb = peak_rss_mb()
    print(  # noqa: T201
        f"import: {lines / import_seconds:,.0f} rows/s ({import_seconds:.1f} s, {orders:,} orders);"
        f" re-import {lines / reimport_seconds:,.0f} rows/s"
    )

    # 2. The floor: COPY of the already-parsed rows into a table indexed like the orders.
    from contacts.order_files import OrderLine as ParsedLine
    from contacts.order_files import read_orders

    buffer = io.StringIO()
    for item in read_orders([path], "generic"):
        if isinstance(item, ParsedLine):
            buffer.write(
                "\t".join(
                    [
                        item.channel,
                        item.order_id,
                        item.status,
                        item.paid_at.isoformat() if item.paid_at else "\\N",
                        item.buyer_phone,
                        item.sku,
                        str(item.quantity),
                        str(item.line_amount),
                        str(item.refund_amount),
                        str(item.row),
                    ]
                )
                + "\n"
            )
    with connection.cursor() as cursor:
        cursor.execute(
            """
            DROP TABLE IF EXISTS bench_floor;
            CREATE TABLE bench_floor (id bigserial PRIMARY KEY, channel text, order_id text,
                status text, paid_at timestamptz, phone text, sku text, quantity int,
                line_amount numeric(12,2), refund_amount numeric(12,2), row_no int,
                customer_id bigint);
            CREATE UNIQUE INDEX ON bench_floor (channel, order_id, row_no);
            CREATE INDEX ON bench_floor (customer_id, paid_at);
            CREATE INDEX ON bench_floor (paid_at);
            """
        )
        buffer.seek(0)
        started = time.monotonic()
        cursor.copy_expert(
            "COPY bench_floor (channel, order_id, status, paid_at, phone, sku, quantity,"
            " line_amount, refund_amount, row_no) FROM STDIN",
            buffer,
        )
        floor_seconds = time.monotonic() - started
        cursor.execute("DROP TABLE bench_floor")
    del buffer
    print(f"floor (bare COPY): {lines / floor_seconds:,.0f} rows/s")  # noqa: T201

    # 3. What storing the import's result costs alone: the customers, identities, orders
    # and lines it wrote, inserted ready-made into tables with the same indexes (no
    # foreign keys). No import, however it reads and checks, is faster than this.
    stored = ["contacts_customer", "contacts_customeridentity", "contacts_order"]
    stored.append("contacts_orderline")
    with connection.cursor() as cursor:
        for table in stored:
            cursor.execute(f"CREATE TABLE bench_{table} (LIKE {table} INCLUDING ALL)")
        started = time.monotonic()
        for table in stored:
            cursor.execute(f"INSERT INTO bench_{table} SELECT * FROM {table}")  # noqa: S608
        writes_seconds = time.monotonic() - started
        for table in stored:
            cursor.execute(f"DROP TABLE bench_{table}")
    print(  # noqa: T201
        f"writing the stored rows alone: {writes_seconds:.1f} s"
        f" ({floor_seconds / writes_seconds:.2f} of the floor's speed)"
    )

    # 4. The naive way on a sample: per-row ORM work.
    sample = []
    with open(path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.DictReader(handle)):
            if number >= naive_rows:
                break
            sample.append(row)
    started = time.monotonic()
    for row in sample:
        e164 = phone_normalise(row["buyer_phone"])
        identity = CustomerIdentity.objects.filter(
            kind="phone_hash", value=phone_hash(e164)
        ).first()
        customer = (
            identity.customer if identity else Customer.objects.create(name=row["buyer_name"])
        )
        order, _ = Order.objects.update_or_create(
            channel=f"naive-{row['channel']}",
            channel_order_id=row["order_id"],
            defaults={
                "status": row["status"],
                "paid_at": row["paid_at"] or None,
                "customer": customer,
                "amount": Decimal(row["line_amount"]),
                "content_hash": "naive",
            },
        )
        OrderLine.objects.create(
            order=order,
            line_no=OrderLine.objects.filter(order=order).count() + 1,
            sku=row["sku"],
            quantity=int(row["quantity"]),
            unit_price=Decimal(row["unit_price"]),
            line_amount=Decimal(row["line_amount"]),
        )
    naive_seconds = time.monotonic() - started
    naive_rate = len(sample) / naive_seconds
    print(f"naive (ORM per row, {len(sample):,} rows): {naive_rate:,.0f} rows/s")  # noqa: T201
    os.remove(path)
    os.rmdir(folder)

    rows_per_s = lines / import_seconds
    floor_rate = lines / floor_seconds
    result = {
        "lines": lines,
        "orders": orders,
        "rows_per_s": round(rows_per_s),
        "floor_rows_per_s": round(floor_rate),
        "naive_rows_per_s": round(naive_rate),
        "ratio_to_floor": round(rows_per_s / floor_rate, 3),
        "ratio_to_naive": round(rows_per_s / naive_rate, 1),
        "reimport_rows_per_s": round(lines / reimport_seconds),
        "writes_only_seconds": round(writes_seconds, 2),
        "writes_only_ratio_to_floor": round(floor_seconds / writes_seconds, 3),
        "import_seconds": round(import_seconds, 2),
        "peak_rss_mb": round(import_peak_rss_mb, 1),
    }
    print(json.dumps(result))  # noqa: T201


if __name__ == "__main__":
    main()
