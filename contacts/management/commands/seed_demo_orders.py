"""Two years of demo orders across channels, loaded through the real importer.

Buyers are the emulator's WeCom customers (by their unionid or remark mobile,
so identity resolution links their orders to them) plus as many buyers seen
only in orders. Runs once: a database that has orders is left alone.
"""

import csv
import random
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from contacts import services
from contacts.models import Order, Store
from contacts.order_generator import GENERIC_COLUMNS, Buyer, generate_order_rows, make_buyers
from scrm.wecom.emulator import generate


class Command(BaseCommand):
    help = "Generate and import demo orders for the emulator's customers."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--guides", type=int, default=50)
        parser.add_argument("--customers", type=int, default=20000)
        parser.add_argument("--lines", type=int, default=120_000)

    def handle(self, *args, seed: int, guides: int, customers: int, lines: int, **options) -> None:
        if Order.objects.exists():
            self.stdout.write("demo orders already loaded")
            return
        data = generate(seed=seed, guides=guides, customers=customers)
        rng = random.Random(seed)  # noqa: S311 - fake data
        stores = list(Store.objects.values_list("code", flat=True))
        guide_of = {}
        for userid, follows in data.follows.items():
            for follow in follows:
                guide_of.setdefault(follow["external_userid"], (userid, follow))
        buyers = []
        for external_userid, contact in data.customers.items():
            if rng.random() > 0.6:  # most members buy; some never do
                continue
            userid, follow = guide_of.get(external_userid, ("", {}))
            mobiles = follow.get("remark_mobiles") or [
                f"1{rng.choice('3578')}{rng.randrange(10**9):09d}"
            ]
            buyers.append(
                Buyer(
                    phone=mobiles[0],
                    unionid=contact.get("unionid", ""),
                    buyer_id=f"tb_{external_userid[-8:]}",
                    name=contact["name"],
                    store_code=rng.choice(stores) if stores else "",
                    guide_userid=userid,
                )
            )
        buyers += make_buyers(seed=seed + 1, count=len(buyers), stores=stores)
        folder = Path(settings.MEDIA_ROOT) / "demo"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "demo_orders.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=GENERIC_COLUMNS)
            writer.writeheader()
            # Up to this morning (Shanghai), so last week's report and today's dashboards have
            # orders.
            end = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
            writer.writerows(generate_order_rows(seed=seed, buyers=buyers, lines=lines, end=end))
        record, report = services.orders_import(paths=[path], channel="generic", source="demo")
        self.stdout.write(
            f"demo orders: {report.inserted} orders from {lines} lines, import #{record.pk}"
        )
