"""Analytics: each metric computed from scratch, the dashboards from the cache, and pandas.

    python benchmarks/analytics.py [--scale F]

Full size (F = 1): 200,000 customers and about 1,000,000 orders over 24 months (to
2026-11-30, Shanghai). Buyers behave as BG/NBD says they do, with known parameters:
each has a purchase rate per week drawn from Gamma(r, α) and, after each repeat purchase
day, drops out with a probability drawn from Beta(a, b); acquisition grows over the two
years, so older cohorts are smaller and every cohort thins out month by month. On top
of the purchase days: split checkouts (a second order the same day, one checkout),
partial refunds, and refunded or cancelled orders that are no purchase at all. 55% of
the customers are members followed by one of 500 guides in 50 stores through one of 20
channel codes; 10% of the customers are members who never bought. Everything is
generated with a fixed seed and loaded with COPY, 20,000 customers at a time, then the
customer facts are refreshed (`facts_refresh()`, timed as `facts_seconds`).

In one run it measures, through the code the dashboards, the API and `analytics_export`
use, each from scratch (the cache cleared, nothing stored):
- `cohort_seconds`: the cohort dashboard's data (first-purchase month cohorts over
  the two years, `dashboards.result("cohorts", …)`);
- `repurchase_seconds`: the repurchase dashboard's data (the window's rate, its trend
  by month and the splits by member, channel, store, guide and category);
  `repurchase_window_seconds`: one window's rate alone (`analytics_export --metric
  repurchase`);
- `ltv_seconds`: BG/NBD and Gamma-Gamma fitted on every purchase day, the predictions
  of every customer written into their facts and the summary stored
  (`dashboards.predicted_ltv_compute`, what the nightly refresh runs);
  `historical_ltv_seconds`: the historical LTV curves; the fitted parameters are
  printed beside the ones the data was generated with;
- `dashboard_cached_ms`: p95 of the dashboard pages served from the warm cache to a
  logged-in manager through Django's test client (each of the nine pages for the two
  years, `PAGE_ROUNDS` times, after a first request computed it, the cache cleared);
  the naive way is to compute on every request: `dashboard_cold_ms` is the slowest
  first request, `pages_cold_seconds` all nine;
- `pandas_cohort_seconds`: the same cohort table in pandas alone, from the orders
  already in a DataFrame (the load from the database is outside the timed part and
  reported as `pandas_load_seconds`). The SQL cohort table must equal the pandas one,
  cohort by cohort and period by period, or the run fails.

Runs in a database of its own (scrm_bench_analytics, BENCH_DATABASE_URL overrides),
created and migrated here, and a Redis database of its own (BENCH_REDIS_URL) for the
cache, the sessions and the broker (nothing is left queued). The last line printed is
one JSON object.
"""

import argparse
import io
import json
import os
import resource
import statistics
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SCRM_DEVELOPMENT", "1")
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/scrm_bench_analytics"
)
_REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ["REDIS_URL"] = os.environ["CELERY_BROKER_URL"] = _REDIS
os.environ["CELERY_RESULT_BACKEND"] = _REDIS
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scrm.settings")

SEED = 11
SHANGHAI = ZoneInfo("Asia/Shanghai")
END_DAY = date(2026, 11, 30)
START_DAY = date(2024, 12, 1)  # 24 calendar months up to END_DAY
END = datetime(2026, 12, 1, tzinfo=SHANGHAI)  # the end day's 24:00
SPAN_DAYS = (END_DAY - START_DAY).days + 1
# The generating BG/NBD parameters (weeks); alpha is scaled so the orders hit the target.
TRUE = {"r": 0.9, "alpha": 6.0, "a": 0.7, "b": 3.5}
SPLIT_SHARE = 0.03  # purchase days with a second order of the same checkout
PARTIAL_SHARE = 0.03  # purchase-day orders partly refunded
VOID_SHARE = 0.08  # extra orders, refunded in full or cancelled (no purchase)
MEMBER_SHARE = 0.55
NEVER_BOUGHT_SHARE = 0.10
CHUNK = 20_000
PAGE_ROUNDS = 10
STATUSES = ["paid", "partially_refunded", "refunded", "cancelled"]
PAID, PARTIAL, REFUNDED, CANCELLED = range(4)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def say(text: str) -> None:
    print(text, flush=True)  # noqa: T201


# -- data --------------------------------------------------------------------------------


def simulate(rng: np.random.Generator, buyers: int, alpha: float) -> tuple:
    """BG/NBD purchase days of `buyers` customers: (customer index, day offset) arrays
    (days since START_DAY, fractional)."""
    first = SPAN_DAYS * rng.random(buyers) ** 0.75  # acquisition grows over time
    rate = rng.gamma(TRUE["r"], 1 / alpha, buyers) / 7  # purchases per day
    drop = rng.beta(TRUE["a"], TRUE["b"], buyers)
    owners, days = [np.arange(buyers)], [first]
    alive, at = np.arange(buyers), first
    while alive.size:
        at = at + rng.exponential(1 / rate[alive])
        inside = at < SPAN_DAYS
        alive, at = alive[inside], at[inside]
        owners.append(alive)
        days.append(at)
        keep = rng.random(alive.size) >= drop[alive]  # still alive after this repeat purchase
        alive, at = alive[keep], at[keep]
    return np.concatenate(owners), np.concatenate(days)


def _copy(cursor, table: str, columns: str, rows) -> None:
    buffer = io.StringIO("".join(rows))
    cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", buffer)


def _instants(days: np.ndarray) -> np.ndarray:
    """Day offsets since START_DAY (Shanghai midnight) as UTC timestamptz text."""
    origin = np.datetime64(f"{START_DAY}T00:00:00") - np.timedelta64(8, "h")  # UTC
    seconds = np.round(days * 86400).astype("int64").astype("timedelta64[s]")
    return np.char.add(np.datetime_as_string(origin + seconds, unit="s"), "+00")


def generate(cursor, *, customers: int, orders_target: int, guides: list, states: list) -> dict:
    """Customers, relationships, orders and lines by COPY, CHUNK customers at a time.
    Returns what was written, with the alpha the purchase days were drawn with."""
    from contacts.order_generator import CATALOGUE, CHANNEL_WEIGHTS

    buyers = int(customers * (1 - NEVER_BOUGHT_SHARE))
    # Orders per purchase day of all kinds; alpha is tuned (the same seed each try) so
    # that the purchase days and their extra orders make the target.
    per_day = 1 + SPLIT_SHARE + VOID_SHARE
    alpha = TRUE["alpha"]
    for _ in range(4):
        owners, offsets = simulate(np.random.default_rng(SEED), buyers, alpha)
        alpha *= (owners.size * per_day / orders_target) ** 1.2
    owners, offsets = simulate(np.random.default_rng(SEED), buyers, alpha)
    events = np.lexsort((offsets, owners))
    owners, offsets = owners[events], offsets[events]
    rng = np.random.default_rng(SEED + 1)

    # Orders: each purchase day's order, a split order of the same checkout 30 s later
    # for some, and a refunded or cancelled order two hours later for others.
    split = rng.random(owners.size) < SPLIT_SHARE
    void = rng.random(owners.size) < VOID_SHARE
    per_event = 1 + split + void
    event_of = np.repeat(np.arange(owners.size), per_event)
    within = np.arange(event_of.size) - np.repeat(np.cumsum(per_event) - per_event, per_event)
    is_void = void[event_of] & (within == per_event[event_of] - 1)
    is_split = ~is_void & (within == 1)
    n = event_of.size
    order_ids = np.arange(1, n + 1)
    customer_of = owners[event_of] + 1
    # Numbers only for every order (statuses and channels as codes); their text is made
    # a chunk at a time below, so memory grows with the orders by a few arrays of numbers.
    status = np.where(rng.random(n) < PARTIAL_SHARE, PARTIAL, PAID).astype(np.int8)
    status = np.where(is_void, np.where(rng.random(n) < 0.4, CANCELLED, REFUNDED), status)
    status = np.where(is_split, PAID, status)
    paid_days = offsets[event_of] + is_split * (30 / 86400) + is_void * (2 / 24)
    heads = order_ids - within  # the first order of each purchase day
    in_checkout = is_split | (split[event_of] & (within == 0))
    channels = [c for c, w in CHANNEL_WEIGHTS for _ in range(w)]
    favourite = rng.integers(0, len(channels), customers)
    channel = np.where(
        rng.random(n) < 0.7, favourite[customer_of - 1], rng.integers(0, len(channels), n)
    )
    prices = np.array([float(product[5]) for product in CATALOGUE])
    first = rng.integers(0, len(CATALOGUE), n)
    second = (first + rng.integers(1, len(CATALOGUE), n)) % len(CATALOGUE)
    two = rng.random(n) < 0.35
    amount = prices[first] + two * prices[second]
    first_refund = np.select(
        [status == REFUNDED, status == PARTIAL],
        [prices[first], np.round(prices[first] / 2, 2)],
        0.0,
    )
    refund = first_refund + (status == REFUNDED) * two * prices[second]

    # Customers: members are followed by one guide through a channel code and joined
    # from two months before their first purchase to four months after it.
    is_member = rng.random(customers) < MEMBER_SHARE
    is_member[buyers:] = True
    first_day = np.full(customers, np.nan)
    heads_of, first_event = np.unique(owners, return_index=True)
    first_day[heads_of] = offsets[first_event]
    joined = np.where(
        np.isnan(first_day),
        SPAN_DAYS * rng.random(customers),
        first_day + rng.uniform(-60, 120, customers),
    ).clip(0, SPAN_DAYS - 0.01)
    joined_at = _instants(joined)
    guide_of = np.array(guides)[rng.integers(0, len(guides), customers)]
    state_of = np.array(states)[rng.integers(0, len(states), customers)]

    created = datetime(2024, 12, 1, tzinfo=UTC).isoformat()
    null = "\\N"
    catalogue = [[str(field) for field in product] for product in CATALOGUE]
    for chunk_start in range(0, customers, CHUNK):
        chunk_end = min(customers, chunk_start + CHUNK)
        people, rels = [], []
        for index in range(chunk_start, chunk_end):
            pk = index + 1
            if is_member[index]:
                people.append(
                    f"{pk}\twmb{pk:09d}\t顾客{pk:07d}\t1\t0\t\t\t\t{joined_at[index]}\tt"
                    f"\t{created}\t{created}\n"
                )
                rels.append(
                    f"{pk}\t{guide_of[index]}\t\t\t\t{{}}\t{joined_at[index]}\t1\t"
                    f"\t{state_of[index]}\t{{}}\tt\t{null}\t\t{created}\n"
                )
            else:
                people.append(
                    f"{pk}\t{null}\t顾客{pk:07d}\t0\t0\t\t\t\t{null}\tf\t{created}\t{created}\n"
                )
        low, high = np.searchsorted(customer_of, [chunk_start + 1, chunk_end + 1])
        codes = status[low:high]
        paid_at = np.where(codes == CANCELLED, null, _instants(paid_days[low:high]))
        parent = np.where(in_checkout[low:high], np.char.add("P", heads[low:high].astype(str)), "")
        order_rows, line_rows = [], []
        for row in zip(
            order_ids[low:high].tolist(),
            [channels[code] for code in channel[low:high].tolist()],
            parent.tolist(),
            [STATUSES[code] for code in codes.tolist()],
            paid_at.tolist(),
            customer_of[low:high].tolist(),
            amount[low:high].tolist(),
            refund[low:high].tolist(),
            first[low:high].tolist(),
            second[low:high].tolist(),
            two[low:high].tolist(),
            first_refund[low:high].tolist(),
            strict=True,
        ):
            pk, chan, par, state, paid, customer, total, back, one, other, pair, back_one = row
            order_rows.append(
                f"{pk}\t{chan}\t{chan[:2].upper()}{pk:010d}\t{par}\t{state}\t{paid}"
                f"\t{customer}\t\t\t\t\t\t\t\t\t{total:.2f}\t{back:.2f}\t{1 + pair}"
                f"\t{pk:032x}\t{created}\t{created}\n"
            )
            sku, title, category, material, style, price = catalogue[one]
            line_rows.append(
                f"{pk}\t1\t{sku}\t{title}\t{category}\t{material}\t{style}\t1\t{price}"
                f"\t{price}\t{back_one:.2f}\n"
            )
            if pair:
                sku, title, category, material, style, price = catalogue[other]
                line_refund = price if state == "refunded" else "0.00"
                line_rows.append(
                    f"{pk}\t2\t{sku}\t{title}\t{category}\t{material}\t{style}\t1"
                    f"\t{price}\t{price}\t{line_refund}\n"
                )
        _copy(
            cursor,
            "contacts_customer",
            "id, external_userid, name, type, gender, avatar, corp_name, unionid, joined_at,"
            " is_member, created_at, updated_at",
            people,
        )
        _copy(
            cursor,
            "contacts_relationship",
            "customer_id, guide_id, remark, description, remark_corp_name, remark_mobiles,"
            " added_at, add_way, oper_userid, state, wecom_tag_ids, is_active, ended_at,"
            " ended_by, updated_at",
            rels,
        )
        _copy(
            cursor,
            "contacts_order",
            "id, channel, channel_order_id, parent_order_id, status, paid_at, customer_id,"
            " unmatched_reason, buyer_phone_hash, buyer_phone_masked, buyer_unionid, buyer_id,"
            " buyer_name, store_code, guide_userid, amount, refund_amount, line_count,"
            " content_hash, created_at, updated_at",
            order_rows,
        )
        _copy(
            cursor,
            "contacts_orderline",
            "order_id, line_no, sku, product_name, category, material, style, quantity,"
            " unit_price, line_amount, refund_amount",
            line_rows,
        )
    cursor.execute(
        "SELECT setval(pg_get_serial_sequence('contacts_customer', 'id'), %s),"
        " setval(pg_get_serial_sequence('contacts_order', 'id'), %s)",
        [customers, n],
    )
    cursor.execute(
        "ANALYZE contacts_customer, contacts_relationship, contacts_order, contacts_orderline"
    )
    return {
        "customers": customers,
        "purchase_day_events": int(owners.size),
        "orders": int(n),
        "lines": int(n + two.sum()),
        "alpha": alpha,
    }


# -- pandas --------------------------------------------------------------------------------


def pandas_cohorts(frame) -> dict[tuple[str, str], int]:
    """{(cohort month, active month): customers} and {(cohort, ''): size}, from the orders
    alone: purchases are paid or partially refunded orders with a paid time; a customer's
    cohort is the month (Shanghai) of their first purchase."""
    bought = frame[frame["status"].isin(["paid", "partially_refunded"]) & frame["paid_at"].notna()]
    month = bought["paid_at"].dt.tz_convert("Asia/Shanghai").dt.strftime("%Y-%m")
    active = (
        bought[["customer_id"]].assign(month=month.to_numpy()).drop_duplicates(ignore_index=True)
    )
    cohort = active.groupby("customer_id")["month"].min().rename("cohort")
    cells = (
        active.join(cohort, on="customer_id").groupby(["cohort", "month"])["customer_id"].nunique()
    )
    sizes = cohort.value_counts()
    table = {(c, m): int(n) for (c, m), n in cells.items()}
    table.update({(c, ""): int(n) for c, n in sizes.items()})
    return table


def _month_label(first: str, k: int) -> str:
    year, month = int(first[:4]), int(first[5:7]) - 1 + k
    return f"{year + month // 12}-{month % 12 + 1:02d}"


def sql_cohort_cells(data: dict) -> dict[tuple[str, str], int]:
    """The cohort dashboard's result in the same shape as `pandas_cohorts`' (zeros left
    out, as a groupby leaves them out)."""
    table = {}
    for row in data["cohorts"]:
        table[(row["cohort"], "")] = row["size"]
        for k, count in enumerate(row["active"]):
            if count:
                table[(row["cohort"], _month_label(row["cohort"], k))] = count
    return table


# -- the run -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    customers = max(2_000, int(200_000 * args.scale))
    orders_target = max(10_000, int(1_000_000 * args.scale))
    guide_count = max(20, int(500 * args.scale))
    store_count = max(5, int(50 * args.scale))

    from scrm import ensure_database

    ensure_database.main()
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.cache import cache as django_cache
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    call_command("migrate", verbosity=0)
    import pandas as pd

    from analytics import dashboards, metrics
    from analytics.dashboards import Params
    from analytics.tables import PAGES
    from contacts.facts import facts_refresh
    from contacts.models import Guide, Store
    from scrm.celery import app as celery_app

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE contacts_customer, contacts_store, contacts_guide, contacts_order,"
            " contacts_orderimport, contacts_customerfactspending, sop_touchpoint,"
            " analytics_weeklyreport, django_session, auth_user RESTART IDENTITY CASCADE"
        )
    stores = Store.objects.bulk_create(
        Store(code=f"S{n:03d}", name=f"门店{n:03d}", city="上海") for n in range(1, store_count + 1)
    )
    guides = Guide.objects.bulk_create(
        Guide(wecom_userid=f"g{n:04d}", name=f"导购{n:04d}", store_id=stores[n % store_count].pk)
        for n in range(1, guide_count + 1)
    )
    states = [f"code{n:02d}" for n in range(1, 21)]

    started = time.monotonic()
    with connection.cursor() as cursor:
        written = generate(
            cursor,
            customers=customers,
            orders_target=orders_target,
            guides=[g.pk for g in guides],
            states=states,
        )
    generate_seconds = time.monotonic() - started
    say(
        f"generated {written['customers']:,} customers, {written['orders']:,} orders"
        f" ({written['purchase_day_events']:,} purchase-day events), {written['lines']:,} lines"
        f" in {generate_seconds:.1f} s"
    )
    started = time.monotonic()
    facts_refresh()
    facts_seconds = time.monotonic() - started
    say(f"facts refresh: {facts_seconds:.1f} s")

    params = Params(start=START_DAY, end=END_DAY)
    django_cache.clear()  # from scratch (the benchmark's own Redis database): nothing stored

    def timed(compute):
        began = time.monotonic()
        value = compute()
        return value, time.monotonic() - began

    cohorts, cohort_seconds = timed(lambda: dashboards.result("cohorts", params))
    say(f"cohort: {cohort_seconds:.2f} s ({len(cohorts['data']['cohorts'])} cohorts)")
    _, repurchase_seconds = timed(lambda: dashboards.result("repurchase", params))
    window, repurchase_window_seconds = timed(
        lambda: metrics.repurchase(start=START_DAY, end=END_DAY)
    )
    say(
        f"repurchase: dashboard {repurchase_seconds:.2f} s, one window"
        f" {repurchase_window_seconds:.2f} s (rate {window['rate']:.4f} of"
        f" {window['buyers']:,} buyers)"
    )
    _, historical_seconds = timed(lambda: dashboards.result("ltv", params))
    predicted, ltv_seconds = timed(lambda: dashboards.predicted_ltv_compute(END_DAY))
    fitted = predicted["data"]["params"]
    truth = {**TRUE, "alpha": written["alpha"]}
    say(
        f"ltv: historical {historical_seconds:.2f} s, BG/NBD + Gamma-Gamma fit and predict"
        f" {ltv_seconds:.2f} s over {predicted['data']['customers']:,} customers; fitted "
        + ", ".join(f"{k} {fitted[k]:.3f} (generated {truth[k]:.3f})" for k in truth)
    )

    # The pages from the warm cache, to a logged-in manager.
    manager = User.objects.create_user(username="bench-manager")
    manager.groups.add(Group.objects.get(name="manager"))
    client = Client()
    client.force_login(manager)
    query = f"?start={START_DAY}&end={END_DAY}"
    cold, cached, by_page = [], [], {}
    django_cache.clear()
    for page in PAGES.values():
        path = "/analytics/" if page.slug == "repurchase" else f"/analytics/{page.slug}/"
        for round_number in range(PAGE_ROUNDS + 1):
            began = time.monotonic()
            response = client.get(path + query)
            elapsed = (time.monotonic() - began) * 1000
            if response.status_code != 200:
                raise SystemExit(f"{path}: {response.status_code}")
            (cold if round_number == 0 else cached).append(elapsed)
        by_page[page.slug] = round(max(cached[-PAGE_ROUNDS:]), 1)
    cached_p95 = statistics.quantiles(cached, n=20)[-1]
    say(
        f"dashboard pages: cached p50 {statistics.median(cached):.1f} ms, p95"
        f" {cached_p95:.1f} ms over {len(cached)} requests; first (uncached) up to"
        f" {max(cold):,.0f} ms; slowest cached request by page: {by_page}"
    )

    # pandas alone: the orders into a DataFrame (not timed), then the cohort table.
    started = time.monotonic()
    buffer = io.StringIO()
    with connection.cursor() as cursor:
        cursor.copy_expert(
            "COPY (SELECT customer_id, status, paid_at FROM contacts_order) TO STDOUT"
            " WITH (FORMAT csv, HEADER)",
            buffer,
        )
    buffer.seek(0)
    frame = pd.read_csv(buffer, dtype={"status": "category"})
    del buffer
    frame["paid_at"] = pd.to_datetime(frame["paid_at"], utc=True, format="ISO8601")
    pandas_load_seconds = time.monotonic() - started
    started = time.monotonic()
    expected = pandas_cohorts(frame)
    pandas_seconds = time.monotonic() - started
    del frame
    found = sql_cohort_cells(cohorts["data"])
    if found != expected:
        wrong = sorted(set(found.items()) ^ set(expected.items()))[:10]
        raise SystemExit(f"SQL cohorts differ from pandas: {wrong}")
    say(
        f"pandas cohort table: {pandas_seconds:.2f} s (load {pandas_load_seconds:.1f} s, not"
        f" timed); equals the SQL one ({len(expected):,} cells)"
    )
    celery_app.control.purge()

    result = {
        "customers": written["customers"],
        "orders": written["orders"],
        "lines": written["lines"],
        "generate_seconds": round(generate_seconds, 1),
        "facts_seconds": round(facts_seconds, 2),
        "cohort_seconds": round(cohort_seconds, 3),
        "repurchase_seconds": round(repurchase_seconds, 3),
        "repurchase_window_seconds": round(repurchase_window_seconds, 3),
        "historical_ltv_seconds": round(historical_seconds, 3),
        "ltv_seconds": round(ltv_seconds, 3),
        "ltv_params": {key: round(value, 4) for key, value in fitted.items()},
        "generated_params": {key: round(value, 4) for key, value in truth.items()},
        "pages_cold_seconds": round(sum(cold) / 1000, 2),
        "dashboard_cached_ms": round(cached_p95, 1),
        "dashboard_cached_p50_ms": round(statistics.median(cached), 1),
        "dashboard_cold_ms": round(max(cold), 1),
        "ratio_cold_to_cached": round(max(cold) / cached_p95, 1),
        "pandas_cohort_seconds": round(pandas_seconds, 3),
        "pandas_load_seconds": round(pandas_load_seconds, 2),
        "ratio_sql_cohort_to_pandas": round(cohort_seconds / pandas_seconds, 2),
        "cohorts_equal_pandas": True,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    print(json.dumps(result))  # noqa: T201


if __name__ == "__main__":
    main()
