"""Full WeCom sync from the emulator, against the minimum API calls and the naive way.

    python benchmarks/sync_contacts.py [--scale F]

Full size (F = 1): 100,000 customers followed by 500 guides, served by the
bundled emulator in a process of its own over HTTP. Measures in one run:
- the full sync (`sync_wecom --inline`): customers per second and API calls,
  against the minimum the API allows (batch/get_by_user: 100 members and 100
  relationships a call; one groupchat/get per group; the list calls);
- the naive way on a sample (one externalcontact/get per customer, per-row ORM
  saves), in customers per second.
Runs in a database of its own (scrm_bench). The last line is one JSON object.
"""

import argparse
import json
import os
import resource
import sys
import time
from datetime import UTC, datetime
from math import ceil
from pathlib import Path

from emulator_process import emulator_start

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SCRM_DEVELOPMENT", "1")
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/scrm_bench"
)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scrm.settings")
SEED = 11


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    customers = max(200, int(100_000 * args.scale))
    guides = max(10, int(500 * args.scale))
    naive_sample = max(100, int(2_000 * min(1.0, args.scale * 10)))

    from scrm import ensure_database

    ensure_database.main()
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE contacts_relationshipevent, contacts_relationship, contacts_customeridentity,"
            " contacts_customergroupmember, contacts_customergroup, contacts_syncseen,"
            " contacts_syncrun, contacts_customer CASCADE"
        )

    from scrm.wecom.emulator import generate

    data = generate(seed=SEED, guides=guides, customers=customers)
    userids = sorted(data.follows)
    batches = [userids[i : i + 100] for i in range(0, len(userids), 100)]
    pages = sum(max(1, ceil(sum(len(data.follows[u]) for u in batch) / 100)) for batch in batches)
    # gettoken, department/list, user/list, get_follow_user_list twice (guides and the
    # customer stage), get_corp_tag_list, the batch pages, groupchat/list pages, groupchat/get
    # groupchat/list: per batch of 100 owners, a page per 1,000 of their groups (at least one)
    owned = [sum(1 for g in data.groups.values() if g["owner"] in batch) for batch in batches]
    list_pages = sum(max(1, ceil(n / 1000)) for n in owned)
    api_calls_min = 1 + 1 + 1 + 2 + 1 + pages + list_pages + len(data.groups)

    emulator, port, serving = emulator_start(seed=SEED, guides=guides, customers=customers)
    print(serving)
    settings.WECOM_API_BASE = f"http://127.0.0.1:{port}/cgi-bin/"
    settings.WECOM_RATE_PER_SECOND = 10_000
    import logging

    logging.getLogger("scrm.wecom.gateway").setLevel(logging.WARNING)
    try:
        from contacts import services
        from contacts.models import Customer, Guide, Relationship

        run = services.sync_run_start(triggered_by="benchmark")
        started = time.monotonic()
        run = services.sync_run_execute(run_id=run.pk)
        sync_seconds = time.monotonic() - started
        customers_per_s = customers / sync_seconds
        calls = f"{run.api_calls} API calls (minimum {api_calls_min})"
        print(f"sync: {customers_per_s:,.0f} customers/s, {calls}")

        # The naive way: one externalcontact/get per customer, ORM saves row by row,
        # into tables of its own so the synced rows above are not "unchanged" for it.
        from scrm.wecom.gateway import WeComGateway

        gateway = WeComGateway.from_settings()
        sample = list(data.customers)[:naive_sample]
        guides_by_userid = {g.wecom_userid: g for g in Guide.objects.all()}
        Relationship.objects.all().delete()
        Customer.objects.all().delete()
        started = time.monotonic()
        for external_userid in sample:
            contact = gateway.external_contact_get(external_userid)
            person = contact["external_contact"]
            customer, _ = Customer.objects.update_or_create(
                external_userid=external_userid,
                defaults={
                    "name": person["name"],
                    "type": person["type"],
                    "gender": person.get("gender", 0),
                    "unionid": person.get("unionid", ""),
                },
            )
            for follow in contact["follow_user"]:
                Relationship.objects.update_or_create(
                    customer=customer,
                    guide=guides_by_userid[follow["userid"]],
                    defaults={
                        "remark": follow.get("remark", ""),
                        "added_at": datetime.fromtimestamp(follow["createtime"], tz=UTC),
                        "state": follow.get("state", ""),
                    },
                )
        naive_seconds = time.monotonic() - started
        naive_per_s = len(sample) / naive_seconds
        print(f"naive: {naive_per_s:,.0f} customers/s on {len(sample):,} customers")  # noqa: T201
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)

    result = {
        "customers": customers,
        "guides": guides,
        "relationships": sum(len(f) for f in data.follows.values()),
        "customers_per_s": round(customers_per_s),
        "api_calls": run.api_calls,
        "api_calls_min": api_calls_min,
        "api_calls_over_min": round(run.api_calls / api_calls_min - 1, 4),
        "naive_customers_per_s": round(naive_per_s, 1),
        "ratio_to_naive": round(customers_per_s / naive_per_s, 1),
        "sync_seconds": round(sync_seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(result))  # noqa: T201


if __name__ == "__main__":
    main()
