"""Seeded, realistic order lines in the generic format, for the demo and the benchmarks;
and, for the demo, a channel's own export and a store export with an operator's mistakes.

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
from itertools import accumulate

from contacts.order_files import GENERIC_COLUMNS

__all__ = [
    "CATALOGUE",
    "DOUYIN_EXPORT_COLUMNS",
    "GENERIC_COLUMNS",
    "Buyer",
    "douyin_export_rows",
    "generate_order_rows",
    "make_buyers",
    "store_export_rows",
]


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
    """About `lines` order lines over `days` days up to `end`, bought as real buyers do:
    some far more often than others (a Gamma-distributed weight), each between a first
    purchase and the day they stop buying (an exponential lifetime, a year on average:
    many have stopped by `end`). Without both every buyer looked alike, and the
    predicted LTV said nearly all were alive with the same expected purchases."""
    rng = random.Random(seed)  # noqa: S311 - fake data
    end = end or datetime(2026, 11, 1, tzinfo=UTC)
    start = end - timedelta(days=days)
    channels = [c for c, w in CHANNEL_WEIGHTS for _ in range(w)]
    statuses = [s for s, w in STATUS_WEIGHTS for _ in range(w)]
    window = days * 86400
    # Per buyer: when they first buy, for how long they keep buying, and how often.
    active = []
    for _ in buyers:
        first = rng.randrange(window)
        active.append((first, min(window - first, int(rng.expovariate(1 / 365) * 86400) + 1)))
    # A buyer's purchases: their rate (Gamma-distributed) times how long they buy.
    weights = list(accumulate(rng.gammavariate(0.7, 1.0) * lifetime for _, lifetime in active))
    produced = 0
    order_number = 0
    while produced < lines:
        chosen = rng.choices(range(len(buyers)), cum_weights=weights)[0]
        buyer = buyers[chosen]
        # Each checkout: 1-3 lines; Douyin splits a checkout into sub-orders.
        channel = rng.choice(channels)
        first, lifetime = active[chosen]
        paid_at = start + timedelta(seconds=first + rng.randrange(lifetime))
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


# The columns of Douyin's order export (抖店 → 订单管理 → 导出), as ../shared/data has them.
DOUYIN_EXPORT_COLUMNS = [
    "主订单编号",
    "子订单编号",
    "选购商品",
    "商品规格",
    "商品数量",
    "商品ID",
    "商家编码",
    "商品金额",
    "订单应付金额",
    "订单提交时间",
    "支付完成时间",
    "订单状态",
    "售后状态",
    "收件人",
    "收件人手机号",
]
# Buyers seen only in a Douyin export: numbers no other generator makes (162…), so that
# their masked phones fit none of the known customers.
STRANGER_PREFIX = "162"


def douyin_export_rows(
    *, seed: int, buyers: list[Buyer], strangers: int, end: datetime, days: int = 14
) -> Iterator[dict]:
    """Douyin's order export: one checkout each for `buyers` and for `strangers` more
    people, in the `days` before `end`; one row per sub-order (a checkout of two items is
    two sub-orders under one 主订单编号). Douyin masks the receiver as it shows them to
    the shop: 赵** and 186****5607; some checkouts were closed unpaid, some refunded."""
    rng = random.Random(seed)  # noqa: S311 - fake data
    people = [(buyer.name, buyer.phone) for buyer in buyers]
    surnames = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
    people += [
        (rng.choice(surnames) + rng.choice("芳娜敏静丽"), f"{STRANGER_PREFIX}{number:08d}")
        for number in range(strangers)
    ]
    outcomes = [("已完成", "-")] * 8 + [("已完成", "退款成功"), ("已关闭", "-")]
    for number, (name, phone) in enumerate(people):
        submitted = end - timedelta(seconds=rng.randrange(days * 86400))
        state, after_sale = rng.choice(outcomes)
        paid = "" if state == "已关闭" else submitted.strftime("%Y/%m/%d %H:%M:%S")
        checkout = f"69{seed % 100:02d}{number:014d}0"
        for index, item in enumerate(rng.sample(CATALOGUE, k=rng.choice((1, 1, 2)))):
            sku, product, *_, price = item
            quantity = rng.choice((1, 1, 2))
            amount = f"{Decimal(price) * quantity:.2f}"
            yield {
                "主订单编号": checkout,
                "子订单编号": f"{checkout[:-1]}{index + 1}",
                "选购商品": product,
                "商品规格": rng.choice(("肤色;M", "黑色;L", "豆沙;S")),
                "商品数量": str(quantity),
                "商品ID": str(100000 + CATALOGUE.index(item)),
                "商家编码": sku,
                "商品金额": amount,
                "订单应付金额": amount,
                "订单提交时间": submitted.strftime("%Y/%m/%d %H:%M:%S"),
                "支付完成时间": paid,
                "订单状态": state,
                "售后状态": after_sale,
                "收件人": name[:1] + "*" * (len(name) - 1),
                "收件人手机号": f"{phone[:3]}****{phone[7:]}",
            }


# (column, bad value) of the rows a store's export gets wrong, one mistake a row.
STORE_MISTAKES = [
    ("order_id", ""),
    ("paid_at", "2026-13-45 25:61:00"),
    ("quantity", "-1"),
    ("status", "待定"),
    ("line_amount", "八十九"),
]


def store_export_rows(*, seed: int, buyers: list[Buyer], end: datetime) -> Iterator[dict]:
    """A store's hand-kept export in the generic format: one order for each buyer, paid in
    the week before `end`, and a few rows with the mistakes of STORE_MISTAKES. The last
    mistake is on the second line of a two-line order, whose good line is then rejected
    with it."""
    rng = random.Random(seed)  # noqa: S311 - fake data

    def line(order_id: str, buyer: Buyer, item: tuple) -> dict:
        sku, product, category, material, style, price = item
        return {
            "order_id": order_id,
            "channel": "pos",
            "parent_order_id": "",
            "status": "paid",
            "paid_at": (end - timedelta(seconds=rng.randrange(7 * 86400))).isoformat(),
            "buyer_phone": buyer.phone,
            "buyer_unionid": buyer.unionid,
            "buyer_id": "",
            "buyer_name": buyer.name,
            "sku": sku,
            "product_name": product,
            "category": category,
            "material": material,
            "style": style,
            "quantity": "1",
            "unit_price": price,
            "line_amount": price,
            "refund_amount": "0.00",
            "store_code": buyer.store_code,
            "guide_userid": buyer.guide_userid,
        }

    for number, buyer in enumerate(buyers):
        yield line(f"POS{seed % 100:02d}{number:08d}", buyer, rng.choice(CATALOGUE))
    for number, (column, value) in enumerate(STORE_MISTAKES if buyers else []):
        buyer = buyers[number % len(buyers)]
        order_id = f"POSX{seed % 100:02d}{number:04d}"
        if column == "line_amount":  # the order's first line is right, its second is not
            yield line(order_id, buyer, CATALOGUE[0])
        yield line(order_id, buyer, CATALOGUE[1]) | {column: value}
