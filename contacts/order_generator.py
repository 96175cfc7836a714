"""Seeded, realistic order lines in the generic format, for the demo and the benchmarks.

A lingerie and loungewear brand: a small catalogue with category, material
and style; buyers who come back at their own pace; split checkouts on
Douyin; refunds and cancellations at believable rates. The same seed gives
the same rows. Streams: nothing is held but the buyers and the catalogue.
"""

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from contacts.order_files import GENERIC_COLUMNS

__all__ = ["GENERIC_COLUMNS", "Buyer", "generate_order_rows", "make_buyers"]


# sku, name, category, material, style, price
CATALOGUE = [
    ("BRA-ICE-01", "冰丝无痕文胸 基础款", "文胸", "冰丝", "基础款", "89.00"),
    ("BRA-COT-02", "纯棉舒适文胸 基础款", "文胸", "棉", "基础款", "79.00"),
    ("PAN-ICE-03", "冰丝无痕内裤 三条装", "内裤", "冰丝", "基础款", "59.00"),
    ("PAN-COT-04", "纯棉抗菌内裤 三条装", "内裤", "棉", "基础款", "49.00"),
    ("SLP-SLK-05", "真丝睡衣 国风主题款", "睡衣", "真丝", "主题款", "399.00"),
    ("SLP-COT-06", "纯棉家居服 联名主题款", "家居服", "棉", "主题款", "259.00"),
    ("BRA-MOD-07", "莫代尔背心式文胸 基础款", "文胸", "莫代尔", "基础款", "99.00"),
    ("PAN-MOD-08", "莫代尔平角内裤 三条装", "内裤", "莫代尔", "基础款", "69.00"),
    ("SLP-ICE-09", "冰丝睡裙 夏日主题款", "睡衣", "冰丝", "主题款", "189.00"),
    ("BRA-LAC-10", "蕾丝聚拢文胸 主题款", "文胸", "蕾丝", "主题款", "159.00"),
    ("SOC-COT-11", "纯棉船袜 五双装", "袜子", "棉", "基础款", "39.00"),
    ("SLP-COT-12", "纯棉长袖睡衣 基础款", "睡衣", "棉", "基础款", "199.00"),
]
CHANNEL_WEIGHTS = [
    ("tmall", 35),
    ("jd", 15),
    ("douyin", 20),
    ("youzan", 10),
    ("miniapp", 8),
    ("pos", 12),
]
STATUS_WEIGHTS = [("paid", 88), ("refunded", 5), ("partially_refunded", 3), ("cancelled", 4)]


@dataclass(frozen=True, slots=True)
class Buyer:
    phone: str
    unionid: str
    buyer_id: str
    name: str
    store_code: str = ""
    guide_userid: str = ""


def make_buyers(*, seed: int, count: int, stores: list[str] | None = None) -> list[Buyer]:
    """Buyers with a phone, a unionid for half of them and a channel buyer id."""
    rng = random.Random(seed)  # noqa: S311 - fake data
    surnames = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
    given = "芳娜敏静丽艳娟霞秀英华玲婷雪琳晶燕红梅颖"
    buyers = []
    for number in range(count):
        name = rng.choice(surnames) + "".join(rng.choice(given) for _ in range(rng.choice((1, 2))))
        buyers.append(
            Buyer(
                phone=f"1{rng.choice('3456789')}{number:09d}"[:11],
                unionid=f"oU{seed:02d}{number:08d}" if rng.random() < 0.5 else "",
                buyer_id=f"b{number:08d}",
                name=name,
                store_code=rng.choice(stores) if stores else "",
            )
        )
    return buyers


def generate_order_rows(
    *, seed: int, buyers: list[Buyer], lines: int, end: datetime | None = None, days: int = 730
) -> Iterator[dict]:
    """About `lines` order lines over `days` days up to `end`, in paid-time order per buyer."""
    rng = random.Random(seed)  # noqa: S311 - fake data
    end = end or datetime(2026, 11, 1, tzinfo=UTC)
    start = end - timedelta(days=days)
    channels = [c for c, w in CHANNEL_WEIGHTS for _ in range(w)]
    statuses = [s for s, w in STATUS_WEIGHTS for _ in range(w)]
    produced = 0
    order_number = 0
    while produced < lines:
        buyer = rng.choice(buyers)
        # Each checkout: 1-3 lines; Douyin splits a checkout into sub-orders.
        channel = rng.choice(channels)
        paid_at = start + timedelta(seconds=rng.randrange(days * 86400))
        items = rng.sample(CATALOGUE, k=min(len(CATALOGUE), rng.choice((1, 1, 1, 2, 2, 3))))
        status = rng.choice(statuses)
        order_number += 1
        checkout = f"{channel[:2].upper()}{seed:02d}{order_number:09d}"
        for index, (sku, name, category, material, style, price) in enumerate(items):
            quantity = rng.choice((1, 1, 1, 2))
            amount = Decimal(price) * quantity
            refund = (
                amount
                if status == "refunded"
                else (amount / 2).quantize(Decimal("0.01"))
                if status == "partially_refunded" and index == 0
                else Decimal("0.00")
            )
            line_status = "paid" if status == "partially_refunded" and index > 0 else status
            split = channel == "douyin" and len(items) > 1
            yield {
                "order_id": f"{checkout}-{index}" if split else checkout,
                "channel": channel,
                "parent_order_id": checkout if split else "",
                "status": line_status if not split else status,
                "paid_at": "" if status == "cancelled" else paid_at.isoformat(),
                "buyer_phone": buyer.phone,
                "buyer_unionid": buyer.unionid if channel in ("miniapp", "youzan", "pos") else "",
                "buyer_id": buyer.buyer_id if channel in ("tmall", "jd") else "",
                "buyer_name": buyer.name,
                "sku": sku,
                "product_name": name,
                "category": category,
                "material": material,
                "style": style,
                "quantity": str(quantity),
                "unit_price": price,
                "line_amount": f"{amount:.2f}",
                "refund_amount": f"{refund:.2f}",
                "store_code": buyer.store_code if channel == "pos" else "",
                "guide_userid": buyer.guide_userid if channel in ("pos", "miniapp") else "",
            }
            produced += 1
