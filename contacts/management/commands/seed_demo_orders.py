"""Two years of demo orders across channels, loaded through the real importer.

Buyers are the emulator's WeCom customers (by their unionid or remark mobile,
so identity resolution links their orders to them) plus as many buyers seen
only in orders. Then a Douyin export with masked receivers and a store export
with mistakes, as an operator would upload them. Runs once: a database that
has orders is left alone.
"""

import csv
import random
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.utils import timezone

from contacts import services
from contacts.models import Customer, CustomerIdentity, MergeSuggestion, Order, Store
from contacts.order_generator import (
    CATALOGUE,
    DOUYIN_EXPORT_COLUMNS,
    GENERIC_COLUMNS,
    Buyer,
    douyin_export_rows,
    generate_order_rows,
    make_buyers,
    store_export_rows,
)
from contacts.phones import phone_hash, phone_normalise
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
        members = len(buyers)
        buyers += make_buyers(seed=seed + 1, count=len(buyers), stores=stores)
        folder = Path(settings.MEDIA_ROOT) / "demo"
        folder.mkdir(parents=True, exist_ok=True)
        # The catalogue first: the Douyin export below has no category, material or style.
        catalogue = folder / "商品目录.csv"
        with open(catalogue, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(services.PRODUCT_COLUMNS)
            writer.writerows(item[:5] for item in CATALOGUE)
        products = services.products_import(path=catalogue)
        self.stdout.write(f"demo catalogue: {products['products']} products")
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
        self._exports(folder, buyers[:members], seed=seed, end=end)

    def _exports(self, folder: Path, members: list[Buyer], *, seed: int, end) -> None:
        """What an operator meets besides: a Douyin export, whose receivers are masked
        (the orders of known customers become merge suggestions, the others wait in the
        unmatched list), and a store's export with mistakes (rejected rows to download).
        Both are imported as uploaded files are, with the channel detected."""
        hashes = {phone_hash(phone_normalise(b.phone)): b for b in members}
        known = CustomerIdentity.objects.filter(kind="phone_hash", value__in=hashes)
        buyers = [hashes[value] for value in known.order_by("id").values_list("value", flat=True)]
        buyers = buyers[:80]
        douyin = folder / "抖音订单导出.csv"
        with open(douyin, "w", newline="", encoding="utf-8-sig") as handle:
            writer = csv.DictWriter(handle, fieldnames=DOUYIN_EXPORT_COLUMNS)
            writer.writeheader()
            writer.writerows(douyin_export_rows(seed=seed, buyers=buyers, strangers=40, end=end))
        store = folder / "门店手工登记.csv"
        with open(store, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=GENERIC_COLUMNS)
            writer.writeheader()
            writer.writerows(store_export_rows(seed=seed, buyers=buyers[:30], end=end))
        for path in (douyin, store):
            record, report = services.orders_import(paths=[path], channel=None, source="demo")
            self.stdout.write(
                f"demo export {path.name}: {report.inserted} orders, {report.rejected} rows"
                f" rejected, import #{record.pk}"
            )
        self._bind_one()
        self._merge_one()

    def _merge_one(self) -> None:
        """An operator merges a buyer known only from orders into the member they turned
        out to be (same name; the member said so in the chat): on the merges page, with
        its undo, and on the member's page, with the buyer's identities and orders."""
        members = Customer.objects.filter(is_member=True, orders__isnull=True)
        buyer = (
            Customer.objects.filter(
                external_userid__isnull=True,
                merged_into__isnull=True,
                orders__isnull=False,
                name__in=members.values("name"),
            )
            .order_by("pk")
            .first()
        )
        if buyer is None:
            return
        member = members.filter(name=buyer.name).order_by("pk").first()
        operator = get_user_model().objects.filter(username="operator").first()
        services.customer_merge(keep=member, absorb=buyer, by=operator)
        self.stdout.write(f"demo merge: order buyer #{buyer.pk} into member #{member.pk}")

    def _bind_one(self) -> None:
        """A guide binds the order of a customer of theirs that waits as a suggestion (the
        buyer said the number in the chat): on the merges page, for operators to review."""
        suggestion = (
            MergeSuggestion.objects.filter(
                status=MergeSuggestion.Status.PENDING, customer__relationships__is_active=True
            )
            .select_related("order", "customer")
            .order_by("pk")
            .first()
        )
        if suggestion is None:
            return
        guide = suggestion.customer.relationships.filter(is_active=True).first().guide
        orders = services.order_bind_by_number(
            guide=guide,
            customer=suggestion.customer,
            channel_order_id=suggestion.order.channel_order_id,
        )
        numbers = ", ".join(order.channel_order_id for order in orders)
        self.stdout.write(f"demo binding: {guide.name} bound orders {numbers}")
