"""Tag evaluation: a full retag, an incremental one after 1% changed, and the naive way.

    python benchmarks/retag.py [--scale F]

Full size (F = 1): 200,000 customers with 1,000,000 order lines (about two years of
orders in six channels, refunds and cancellations at the generator's rates, half the
customers members followed by guides in stores, some in customer groups), 20 rules
reading every kind of fact, plus the system tags. In one run it measures:

- `facts_seconds`: the full facts refresh (`facts_refresh()`);
- `full_seconds`: `tagging.services.retag_full()`, every rule and system segment over
  every customer, from no assignments (it writes every one);
- `incremental_seconds`: 1% of the customers change the way the app changes them (new
  orders and refunded orders through the order import, relationships ended through
  the callback service), then the pending facts are refreshed (which queues those
  customers for a retag: the tagging listener) and `retag_pending()` runs; both
  halves are reported too. A full evaluation afterwards must change nothing
  (`incremental_equals_full`);
- the naive way on a sample: per customer, read its orders, lines, relationships,
  groups and tags through the ORM, compute the facts and evaluate the 20 rules and
  the per-customer system segments in Python, and save each assignment and its
  history row one by one with the ORM (one transaction per customer). The RFM groups
  (relative to the whole population) are left out of the naive work, which makes the
  comparison kinder to it. Scaled to every customer. The naive evaluator is written
  from the definitions, not from the SQL compiler: it doubles as a cross-check
  (`naive_agrees`: its rule tags equal the engine's for every sampled customer;
  `naive_system_agrees`: the same for the per-customer system groups).

Runs in a database of its own (scrm_bench_retag, BENCH_DATABASE_URL overrides),
created and migrated here, and a Redis database of its own (BENCH_REDIS_URL) for the
cache and the broker: the tasks the services enqueue are purged at the end (no worker
is needed). The last line printed is one JSON object.
"""

import argparse
import csv
import io
import json
import os
import random
import resource
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SCRM_DEVELOPMENT", "1")
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/scrm_bench_retag"
)
_REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
os.environ["REDIS_URL"] = os.environ["CELERY_BROKER_URL"] = _REDIS
os.environ["CELERY_RESULT_BACKEND"] = _REDIS
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scrm.settings")

SEED = 5
SHANGHAI = ZoneInfo("Asia/Shanghai")
END = datetime(2026, 11, 1, tzinfo=UTC)  # orders run up to here
NOW = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai: the day every run uses
CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- data --------------------------------------------------------------------------------


def _copy(cursor, table: str, columns: list[str], rows: list[list]) -> None:
    if not rows:
        return
    text = "\n".join(
        "\t".join("\\N" if value is None else str(value) for value in row) for row in rows
    )
    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", io.StringIO(text + "\n"))


CUSTOMER_COLUMNS = [
    "id", "external_userid", "name", "type", "gender", "avatar", "corp_name", "unionid",
    "joined_at", "is_member", "created_at", "updated_at",
]  # fmt: skip
RELATIONSHIP_COLUMNS = [
    "customer_id", "guide_id", "remark", "description", "remark_corp_name", "remark_mobiles",
    "added_at", "add_way", "oper_userid", "state", "wecom_tag_ids", "is_active", "ended_at",
    "ended_by", "updated_at",
]  # fmt: skip
ORDER_COLUMNS = [
    "id", "channel", "channel_order_id", "parent_order_id", "status", "paid_at", "customer_id",
    "unmatched_reason", "buyer_phone_hash", "buyer_phone_masked", "buyer_unionid", "buyer_id",
    "buyer_name", "store_code", "guide_userid", "amount", "refund_amount", "line_count",
    "content_hash", "created_at", "updated_at",
]  # fmt: skip
LINE_COLUMNS = [
    "order_id", "line_no", "sku", "product_name", "category", "material", "style", "quantity",
    "unit_price", "line_amount", "refund_amount",
]  # fmt: skip


def generate(cursor, *, customers: int, lines: int, stores: list, guides: list, groups: list):
    """Customers, identities, relationships, group members, orders and lines, by COPY,
    10,000 customers at a time (memory stays flat). Returns (orders, lines) written."""
    from contacts.order_generator import CATALOGUE, CHANNEL_WEIGHTS, STATUS_WEIGHTS

    rng = random.Random(SEED)
    channels = [c for c, w in CHANNEL_WEIGHTS for _ in range(w)]
    statuses = [s for s, w in STATUS_WEIGHTS for _ in range(w)]
    by_material = defaultdict(list)
    for product in CATALOGUE:
        by_material[product[3]].append(product)
    materials = sorted(by_material)
    surnames, given = (
        "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗",
        "芳娜敏静丽艳娟霞秀英华玲婷雪琳晶燕红梅颖",
    )
    # Buyers (80%) get one order each, the rest of the orders go to buyers by activity
    # (a long tail: most buy once or twice, a few dozens of times).
    buyer = [rng.random() < 0.8 for _ in range(customers)]
    buyer_ids = [i for i in range(customers) if buyer[i]]
    orders_target = max(len(buyer_ids), round(lines * 6 / 10))  # 10/6 lines per order
    counts = Counter({i: 1 for i in buyer_ids})
    weights = [min(50.0, rng.paretovariate(1.4)) for _ in buyer_ids]
    counts.update(rng.choices(buyer_ids, weights=weights, k=orders_target - len(buyer_ids)))
    del weights
    created = datetime(2024, 1, 1, tzinfo=UTC)
    order_id, written_lines, written_orders = 0, 0, 0
    for start in range(0, customers, 10_000):
        rows = {name: [] for name in ("customer", "identity", "rel", "member", "order", "line")}
        for index in range(start, min(customers, start + 10_000)):
            pk = index + 1
            kind = rng.random()
            member, former = kind < 0.5, 0.5 <= kind < 0.58
            joined = (
                END - timedelta(seconds=rng.randrange(3 * 365 * 86400))
                if member or former
                else None
            )
            name = rng.choice(surnames) + "".join(
                rng.choice(given) for _ in range(rng.choice((1, 2)))
            )
            unionid = f"oUb{pk:09d}"
            rows["customer"].append([
                pk, f"wmb{pk:09d}" if member or former else None, name, 1 if joined else 0,
                rng.choice((0, 1, 2)), "", "", unionid, joined.isoformat() if joined else None,
                "t" if member else "f", created.isoformat(), created.isoformat(),
            ])  # fmt: skip
            rows["identity"].append([pk, "unionid", unionid, "", created.isoformat()])
            if member or former:
                followed = rng.sample(guides, k=2 if member and rng.random() < 0.15 else 1)
                for number, guide in enumerate(followed):
                    added = joined + timedelta(days=30 * number)
                    ended = None if member else added + timedelta(days=rng.randrange(1, 300))
                    rows["rel"].append([
                        pk, guide[0], "", "", "", "{}", added.isoformat(), 1, "", "", "{}",
                        "f" if ended else "t", ended.isoformat() if ended else None,
                        "customer" if ended else "", created.isoformat(),
                    ])  # fmt: skip
                if member and rng.random() < 0.25:
                    rows["member"].append([rng.choice(groups), f"wmb{pk:09d}", 2, pk, "", None, 0])
            if not buyer[index]:
                continue
            favourite_channel = rng.choice(channels)
            favourites = by_material[rng.choice(materials)]
            first = END - timedelta(seconds=rng.randrange(730 * 86400))
            last = (
                END
                if rng.random() < 0.75
                else min(END, first + timedelta(days=rng.randrange(30, 300)))
            )
            span = max(1, int((last - first).total_seconds()))
            for _ in range(counts[index]):
                order_id += 1
                channel = favourite_channel if rng.random() < 0.7 else rng.choice(channels)
                status = rng.choice(statuses)
                paid_at = (
                    None
                    if status == "cancelled"
                    else first + timedelta(seconds=rng.randrange(span))
                )
                picked, wanted = [], rng.choice((1, 1, 1, 2, 2, 3))
                while len(picked) < wanted:
                    product = (
                        rng.choice(favourites) if rng.random() < 0.6 else rng.choice(CATALOGUE)
                    )
                    if product not in picked:
                        picked.append(product)
                amount = refund = ZERO
                for number, (sku, title, category, material, style, price) in enumerate(picked, 1):
                    quantity = rng.choice((1, 1, 1, 2))
                    line_amount = Decimal(price) * quantity
                    line_refund = (
                        line_amount if status == "refunded"
                        else (line_amount / 2).quantize(CENT)
                        if status == "partially_refunded" and number == 1 else ZERO
                    )  # fmt: skip
                    amount, refund = amount + line_amount, refund + line_refund
                    rows["line"].append([
                        order_id, number, sku, title, category, material, style, quantity,
                        price, line_amount, line_refund,
                    ])  # fmt: skip
                rows["order"].append([
                    order_id, channel, f"{channel[:2].upper()}{order_id:010d}", "", status,
                    paid_at.isoformat() if paid_at else None, pk, "", "", "", unionid, "", name,
                    rng.choice(stores)[1] if channel == "pos" else "", "", amount, refund,
                    len(picked), f"{order_id:032x}", created.isoformat(), created.isoformat(),
                ])  # fmt: skip
                written_lines += len(picked)
            written_orders += counts[index]
        _copy(cursor, "contacts_customer", CUSTOMER_COLUMNS, rows["customer"])
        _copy(
            cursor,
            "contacts_customeridentity",
            ["customer_id", "kind", "value", "display", "created_at"],
            rows["identity"],
        )
        _copy(cursor, "contacts_relationship", RELATIONSHIP_COLUMNS, rows["rel"])
        _copy(
            cursor,
            "contacts_customergroupmember",
            ["group_id", "userid", "type", "customer_id", "name", "join_time", "join_scene"],
            rows["member"],
        )
        _copy(cursor, "contacts_order", ORDER_COLUMNS, rows["order"])
        _copy(cursor, "contacts_orderline", LINE_COLUMNS, rows["line"])
    cursor.execute(
        "SELECT setval(pg_get_serial_sequence('contacts_customer', 'id'),"
        " (SELECT max(id) FROM contacts_customer)),"
        " setval(pg_get_serial_sequence('contacts_order', 'id'),"
        " (SELECT max(id) FROM contacts_order))"
    )
    cursor.execute(
        "ANALYZE contacts_customer, contacts_customeridentity, contacts_relationship,"
        " contacts_customergroupmember, contacts_order, contacts_orderline"
    )
    return written_orders, written_lines


def rules_of(vip_id: int, guides: list, stores: list) -> list[tuple[str, dict]]:
    """20 rules over every fact kind; the last reads three of the others' tags, so the
    tag ids of rules 3, 4 and 6 are filled in as they are saved ({"rule": n})."""
    return [
        ("高频复购", {"all": [
            {"fact": "purchase_days", "op": ">=", "value": 3, "days": 365},
            {"fact": "median_interval_days", "op": "<=", "value": 60},
        ]}),
        ("近90天高消费", {"fact": "net_revenue", "op": ">=", "value": 800, "days": 90}),
        ("累计高消费", {"fact": "net_revenue", "op": ">", "value": 2000}),
        ("高客单", {"fact": "avg_order_value", "op": ">=", "value": 250}),
        ("近期活跃", {"fact": "days_since_last_purchase", "op": "<=", "value": 30}),
        ("沉睡召回", {"fact": "days_since_last_purchase", "op": "between", "value": [91, 365]}),
        ("今年新客", {"fact": "first_purchase_on", "op": ">=", "value": "2026-01-01"}),
        ("冰丝爱好者", {"fact": "material_share", "key": "冰丝", "op": ">=", "value": 0.5}),
        ("真丝高价值", {
            "fact": "material_share", "key": "真丝", "by": "revenue", "op": ">=", "value": 0.4,
        }),
        ("主题款偏好", {"fact": "style_share", "key": "主题款", "op": ">", "value": 0.5}),
        ("文胸为主", {
            "fact": "category_share", "key": "文胸", "by": "revenue", "op": ">=", "value": 0.6,
        }),
        ("私域买家", {"fact": "channel", "op": "any_of", "value": ["youzan", "miniapp"]}),
        ("只在社交渠道", {"all": [
            {"fact": "purchase_days", "op": ">=", "value": 1},
            {"fact": "channel", "op": "none_of", "value": ["tmall", "jd"]},
        ]}),
        ("天猫抖音都买", {"fact": "channel", "op": "all_of", "value": ["tmall", "douyin"]}),
        ("会员未购", {"all": [
            {"fact": "is_member", "op": "is", "value": True},
            {"fact": "purchase_days", "op": "=", "value": 0},
        ]}),
        ("指定导购", {"fact": "guide", "op": "any_of", "value": [g[1] for g in guides[:3]]}),
        ("指定门店", {"fact": "store", "op": "any_of", "value": [s[1] for s in stores[:2]]}),
        ("新入会", {"fact": "joined_on", "op": ">=", "value": "2026-06-01"}),
        ("VIP活跃", {"all": [
            {"fact": "tag", "op": "has", "value": vip_id},
            {"not": {"fact": "days_since_last_purchase", "op": ">", "value": 90}},
        ]}),
        ("高价值会员", {"all": [
            {"any": [
                {"fact": "tag", "op": "has", "value": {"rule": 3}},
                {"fact": "tag", "op": "has", "value": {"rule": 4}},
            ]},
            {"fact": "is_member", "op": "is", "value": True},
            {"not": {"fact": "tag", "op": "has", "value": {"rule": 6}}},
            {"fact": "tag", "op": "lacks", "value": vip_id},
        ]}),
    ]  # fmt: skip


def _fill(condition, tag_of: dict):
    if isinstance(condition, dict):
        if set(condition) == {"rule"}:
            return tag_of[condition["rule"]]
        return {key: _fill(value, tag_of) for key, value in condition.items()}
    if isinstance(condition, list):
        return [_fill(item, tag_of) for item in condition]
    return condition


# -- the naive way -------------------------------------------------------------------------

PURCHASE_STATUSES = ("paid", "partially_refunded")


def naive_facts(customer, orders, relationships, in_group: bool, settings: dict) -> dict:
    """A customer's facts from its ORM rows, by the definitions (DESIGN.md "Words")."""
    bought = [
        o
        for o in orders
        if o.status in PURCHASE_STATUSES and o.paid_at is not None and o.refund_amount < o.amount
    ]
    days: dict[date, Decimal] = defaultdict(Decimal)
    kept, channels = [], set()
    private = public = ZERO
    for order in bought:
        net = order.amount - order.refund_amount
        days[order.paid_at.astimezone(SHANGHAI).date()] += net
        channels.add(order.channel)
        kept += [
            line
            for line in order.lines.all()
            if line.refund_amount < line.line_amount or line.line_amount == 0
        ]
        if order.channel in settings["channels"]["private"]:
            private += net
        elif order.channel in settings["channels"]["public"]:
            public += net
    ordered = sorted(days)
    gaps = sorted((b - a).days for a, b in zip(ordered, ordered[1:], strict=False))
    median = None
    if gaps:
        middle = len(gaps) // 2
        median = float(gaps[middle]) if len(gaps) % 2 else (gaps[middle - 1] + gaps[middle]) / 2
    shares: dict[str, dict[str, list]] = {"category": {}, "material": {}, "style": {}}
    for line in kept:
        for kind in shares:
            value = getattr(line, kind)
            if value:
                entry = shares[kind].setdefault(value, [0, ZERO])
                entry[0] += 1
                entry[1] += line.line_amount - line.refund_amount
    net_revenue = sum(days.values(), ZERO)
    return {
        "days": dict(days),
        "purchase_days": len(days),
        "orders": len(bought),
        "net_revenue": net_revenue,
        "avg_order_value": (net_revenue / len(bought)).quantize(CENT, ROUND_HALF_UP)
        if bought
        else None,
        "first": ordered[0] if ordered else None,
        "last": ordered[-1] if ordered else None,
        "median": median,
        "lines": len(kept),
        "line_revenue": sum((line.line_amount - line.refund_amount for line in kept), ZERO),
        "shares": shares,
        "channels": channels,
        "private": private,
        "public": public,
        "is_member": customer.is_member,
        "joined_on": customer.joined_at.astimezone(SHANGHAI).date() if customer.joined_at else None,
        "guides": {r.guide_id for r in relationships},
        "stores": {r.guide.store_id for r in relationships if r.guide.store_id is not None},
        "in_group": in_group,
    }


def _compare(value, op: str, target) -> bool:
    if value is None:
        return False  # a fact the customer lacks makes a comparison false
    if isinstance(value, float):
        convert = float
    elif isinstance(value, date):
        convert = date.fromisoformat
    else:
        convert = lambda v: Decimal(str(v))  # noqa: E731
    if op == "between":
        return convert(target[0]) <= value <= convert(target[1])
    target = convert(target)
    return {
        "=": value == target,
        "!=": value != target,
        ">": value > target,
        ">=": value >= target,
        "<": value < target,
        "<=": value <= target,
    }[op]


def naive_holds(condition: dict, facts: dict, tags: set[int], today: date, ids: dict) -> bool:
    if "all" in condition:
        return all(naive_holds(c, facts, tags, today, ids) for c in condition["all"])
    if "any" in condition:
        return any(naive_holds(c, facts, tags, today, ids) for c in condition["any"])
    if "not" in condition:
        return not naive_holds(condition["not"], facts, tags, today, ids)
    fact, op, value = condition["fact"], condition["op"], condition.get("value")
    if fact in ("purchase_days", "net_revenue"):
        if "days" in condition:
            window = [
                v for d, v in facts["days"].items() if 0 <= (today - d).days < condition["days"]
            ]
            amount = len(window) if fact == "purchase_days" else sum(window, ZERO)
        else:
            amount = facts[fact]
        return _compare(amount, op, value)
    if fact == "avg_order_value":
        return _compare(facts["avg_order_value"], op, value)
    if fact == "days_since_last_purchase":
        last = facts["last"]
        return _compare((today - last).days if last else None, op, value)
    if fact == "first_purchase_on":
        return _compare(facts["first"], op, value)
    if fact == "median_interval_days":
        return _compare(facts["median"], op, value)
    if fact == "joined_on":
        return _compare(facts["joined_on"], op, value)
    if fact.endswith("_share"):
        kind, by = fact.removesuffix("_share"), condition.get("by", "lines")
        lines, revenue = facts["shares"][kind].get(condition["key"], [0, ZERO])
        total = facts["lines"] if by == "lines" else facts["line_revenue"]
        share = float(lines if by == "lines" else revenue) / float(total) if total else None
        return _compare(share, op, value)
    if fact == "is_member":
        return facts["is_member"] == value
    if fact == "tag":
        return (value in tags) == (op == "has")
    have = {"channel": facts["channels"], "guide": facts["guides"], "store": facts["stores"]}[fact]
    wanted = set(value) if fact == "channel" else set(ids[(fact, tuple(value))])
    if op == "any_of":
        return bool(have & wanted)
    if op == "all_of":
        return have >= wanted
    return not have & wanted


def naive_system(facts: dict, settings: dict, today: date) -> dict[str, str]:
    """The per-customer system groups (not RFM, which needs the whole population)."""
    out = {}
    life, count = settings["lifecycle"], facts["purchase_days"]
    since = (today - facts["last"]).days if facts["last"] else None
    if not count:
        out["lifecycle"] = "潜客"
    elif since > life["lost_after_days"]:
        out["lifecycle"] = "流失"
    elif since > life["sleeping_after_days"]:
        out["lifecycle"] = "沉睡"
    elif count >= life["loyal_min_purchase_days"]:
        out["lifecycle"] = "忠诚客"
    else:
        out["lifecycle"] = "复购客" if count >= 2 else "新客"
    member, loyal = facts["is_member"], life["loyal_min_purchase_days"]
    if count >= 2 and member and (facts["in_group"] or count >= loyal):
        out["five_a"] = "A5 拥护"
    elif count:
        out["five_a"] = "A4 行动"
    else:
        out["five_a"] = (
            "A3 问询" if member and facts["in_group"] else "A2 吸引" if member else "A1 认知"
        )
    preference = settings["preference"]
    for kind, values in facts["shares"].items():
        if values and facts["lines"] >= preference["min_lines"]:
            top = min(values, key=lambda v: (-values[v][0], -values[v][1], v))  # noqa: B023
            if values[top][0] / facts["lines"] >= preference["min_share"]:
                out[kind] = top[:30]
    bounds = settings["frequency_bands"]
    for low, following in zip(bounds, [*bounds[1:], None], strict=True):
        high = following - 1 if following else None
        if count >= low and (high is None or count <= high):
            name = f"{low}次" if low == high else f"{low}-{high}次" if high else f"{low}次及以上"
            out["frequency"] = name
    median, bounds = facts["median"], settings["cycle_bounds"]
    if median is not None:
        if median <= bounds[0]:
            out["cycle"] = f"{bounds[0]}天内"
        elif median > bounds[-1]:
            out["cycle"] = f"{bounds[-1]}天以上"
        else:
            for low, high in zip(bounds, bounds[1:], strict=False):
                if low < median <= high:
                    out["cycle"] = f"{low + 1}-{high}天"
    spent = facts["private"] + facts["public"]
    if spent > 0:
        share = Decimal(str(settings["channels"]["min_share"]))
        if facts["private"] >= share * spent:
            out["channel"] = "私域为主"
        elif facts["public"] >= share * spent:
            out["channel"] = "公域为主"
        else:
            out["channel"] = "公私域均衡"
    return out


NAIVE_SYSTEM_KEYS = ["lifecycle", "five_a", "material", "style", "category", "frequency",
                     "cycle", "channel"]  # fmt: skip


def naive_run(sample: list[int], rules: list, shadow_rule: dict, shadow_group: dict, ids: dict):
    """The naive retag of `sample`: ORM reads, Python evaluation, ORM saves one by one.
    Returns ({customer: rule tag ids}, {customer: {segment: name}}, facts by customer)."""
    from django.db import transaction

    from contacts.models import Customer, CustomerGroupMember, Order, Relationship
    from tagging.models import CustomerTag, CustomerTagEvent, Tag
    from tagging.system import current_settings

    settings = current_settings()
    today = NOW.astimezone(SHANGHAI).date()
    shadow_tags: dict[tuple[str, str], int] = {}
    rule_tags, system_tags, all_facts = {}, {}, {}
    for pk in sample:
        with transaction.atomic():
            customer = Customer.objects.get(pk=pk)
            orders = list(Order.objects.filter(customer_id=pk).prefetch_related("lines"))
            relationships = list(
                Relationship.objects.filter(customer_id=pk, is_active=True).select_related("guide")
            )
            in_group = CustomerGroupMember.objects.filter(
                customer_id=pk, group__is_dismissed=False
            ).exists()
            tags = set(
                CustomerTag.objects.filter(customer_id=pk, tag__source="manual").values_list(
                    "tag_id", flat=True
                )
            )
            facts = naive_facts(customer, orders, relationships, in_group, settings)
            held = set()
            for rule in rules:  # in dependency order
                if naive_holds(rule.condition, facts, tags | held, today, ids):
                    held.add(rule.tag_id)
            system = naive_system(facts, settings, today)
            for tag_id in sorted(held):
                shadow = shadow_rule[tag_id]
                CustomerTag.objects.create(customer_id=pk, tag_id=shadow, added_at=NOW)
                CustomerTagEvent.objects.create(
                    customer_id=pk, tag_id=shadow, action="added", cause="rule", at=NOW
                )
            for key, name in system.items():
                shadow = shadow_tags.get((key, name))
                if shadow is None:
                    shadow = Tag.objects.get_or_create(group_id=shadow_group[key], name=name)[0].pk
                    shadow_tags[(key, name)] = shadow
                CustomerTag.objects.create(customer_id=pk, tag_id=shadow, added_at=NOW)
                CustomerTagEvent.objects.create(
                    customer_id=pk, tag_id=shadow, action="added", cause="system", at=NOW
                )
        rule_tags[pk], system_tags[pk], all_facts[pk] = held, system, facts
    return rule_tags, system_tags, all_facts


# -- the changes ---------------------------------------------------------------------------


def change_customers(cursor, *, customers: int, count: int, rng: random.Random) -> dict:
    """`count` customers change: 40% buy again (a new order in the import), 30% get an
    order refunded (the order re-imported as refunded), 30% end a relationship (the
    callback). Returns the changed customer ids by kind."""
    from contacts import services
    from contacts.order_files import GENERIC_COLUMNS
    from contacts.order_generator import CATALOGUE

    buyers_n, refund_n = int(count * 0.4), int(count * 0.3)
    ended_n = count - buyers_n - refund_n
    cursor.execute(
        "SELECT customer_id, min(id) FROM contacts_order WHERE status = 'paid'"
        " GROUP BY customer_id ORDER BY random() LIMIT %s",
        [refund_n],
    )
    refunds = dict(cursor.fetchall())
    cursor.execute(
        "SELECT DISTINCT ON (r.customer_id) r.customer_id, c.external_userid, g.wecom_userid"
        " FROM contacts_relationship r JOIN contacts_customer c ON c.id = r.customer_id"
        " JOIN contacts_guide g ON g.id = r.guide_id"
        " WHERE r.is_active AND NOT (r.customer_id = ANY(%s))"
        " ORDER BY r.customer_id, random() LIMIT %s",
        [list(refunds), ended_n * 5],
    )
    ends = rng.sample(cursor.fetchall(), k=ended_n)
    taken = set(refunds) | {row[0] for row in ends}
    new_buyers = []
    while len(new_buyers) < buyers_n:
        pk = rng.randrange(1, customers + 1)
        if pk not in taken:
            taken.add(pk)
            new_buyers.append(pk)

    folder = Path(tempfile.mkdtemp(prefix="bench-retag-"))
    path = folder / "changes.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=GENERIC_COLUMNS)
        writer.writeheader()
        for number, pk in enumerate(new_buyers):
            paid = NOW - timedelta(seconds=rng.randrange(3600, 3 * 86400))
            channel = rng.choice(["tmall", "youzan"])
            for sku, title, category, material, style, price in rng.sample(CATALOGUE, k=2):
                writer.writerow({
                    "order_id": f"NEW{number:08d}", "channel": channel,
                    "status": "paid", "paid_at": paid.isoformat(),
                    "buyer_unionid": f"oUb{pk:09d}", "sku": sku, "product_name": title,
                    "category": category, "material": material, "style": style,
                    "quantity": "1", "unit_price": price, "line_amount": price,
                    "refund_amount": "0",
                })  # fmt: skip
        cursor.execute(
            "SELECT o.channel, o.channel_order_id, o.paid_at, o.buyer_unionid, o.store_code,"
            " l.sku, l.product_name, l.category, l.material, l.style, l.quantity, l.unit_price,"
            " l.line_amount FROM contacts_order o JOIN contacts_orderline l ON l.order_id = o.id"
            " WHERE o.id = ANY(%s) ORDER BY o.id, l.line_no",
            [list(refunds.values())],
        )
        for channel, number, paid, unionid, store, *line in cursor.fetchall():
            sku, title, category, material, style, quantity, price, amount = line
            writer.writerow({
                "order_id": number, "channel": channel, "status": "refunded",
                "paid_at": paid.isoformat(), "buyer_unionid": unionid, "sku": sku,
                "product_name": title, "category": category, "material": material,
                "style": style, "quantity": str(quantity), "unit_price": str(price),
                "line_amount": str(amount), "refund_amount": str(amount), "store_code": store,
            })  # fmt: skip
    _, report = services.orders_import(paths=[path], channel="generic")
    os.remove(path)
    os.rmdir(folder)
    if report.rejected or report.inserted != len(new_buyers) or report.updated != len(refunds):
        raise SystemExit(f"change import: {report.as_dict()}")
    for _, external_userid, userid in ends:
        services.relationship_end(
            event={
                "ChangeType": "del_follow_user",
                "ExternalUserID": external_userid,
                "UserID": userid,
                "CreateTime": int(NOW.timestamp()) - 600,
            }
        )
    return {"ordered": new_buyers, "refunded": list(refunds), "ended": [r[0] for r in ends]}


# -- the run -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    customers = max(1_000, int(200_000 * args.scale))
    lines_target = max(5_000, int(1_000_000 * args.scale))
    changed_n = max(10, customers // 100)
    naive_n = max(200, int(2_000 * args.scale))

    from scrm import ensure_database

    ensure_database.main()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from contacts.facts import facts_refresh, facts_refresh_pending
    from contacts.models import CustomerFactsPending, CustomerGroup, Guide, Store
    from scrm.celery import app as celery_app
    from tagging import services
    from tagging.evaluation import evaluate, rule_order
    from tagging.models import CustomerTag, RetagPending, Tag, TagGroup, TagRule

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE contacts_customer, contacts_store, contacts_guide, contacts_customergroup,"
            " contacts_orderimport, contacts_customerfactspending, contacts_corptaggroup,"
            " tagging_taggroup, tagging_systemtagsettings, tagging_retagpending,"
            " tagging_tagpushpending RESTART IDENTITY CASCADE"
        )
    rng = random.Random(SEED)
    store_rows = Store.objects.bulk_create(
        Store(code=f"S{n:03d}", name=f"门店{n:03d}", city="上海")
        for n in range(1, max(5, int(50 * args.scale)) + 1)
    )
    stores = [(s.pk, s.code) for s in store_rows]
    guide_rows = Guide.objects.bulk_create(
        Guide(wecom_userid=f"g{n:04d}", name=f"导购{n:04d}", store_id=stores[n % len(stores)][0])
        for n in range(1, max(10, int(500 * args.scale)) + 1)
    )
    guides = [(g.pk, g.wecom_userid) for g in guide_rows]
    group_rows = CustomerGroup.objects.bulk_create(
        CustomerGroup(
            chat_id=f"chat{n:06d}",
            owner_userid=guides[n % len(guides)][1],
            is_dismissed=n % 10 == 0,
        )  # fmt: skip
        for n in range(1, max(5, int(2_000 * args.scale)) + 1)
    )
    groups = [g.pk for g in group_rows]

    started = time.monotonic()
    with connection.cursor() as cursor:
        orders, lines = generate(
            cursor, customers=customers, lines=lines_target, stores=stores, guides=guides,
            groups=groups,
        )  # fmt: skip
    print(  # noqa: T201
        f"generated {customers:,} customers, {orders:,} orders, {lines:,} lines"
        f" in {time.monotonic() - started:.1f} s"
    )
    vip_group = TagGroup.objects.create(name="运营标记")
    vip = Tag.objects.create(group=vip_group, name="VIP", source=Tag.Source.MANUAL)
    vips = sorted(rng.sample(range(1, customers + 1), k=customers // 20))
    services.customer_tags_set(tag=vip, customer_ids=vips, add=True, by=None)

    started = time.monotonic()
    facts = facts_refresh()
    facts_seconds = time.monotonic() - started
    print(f"facts refresh: {facts_seconds:.1f} s ({facts.changed:,} customers)")  # noqa: T201

    rule_group = TagGroup.objects.create(name="规则标签")
    tag_of: dict[int, int] = {}
    for number, (name, condition) in enumerate(rules_of(vip.pk, guides, stores), start=1):
        rule = services.rule_save(
            tag=None, group=rule_group, name=name, color="#1677ff",
            condition=_fill(condition, tag_of), is_active=True, by=None,
        )  # fmt: skip
        tag_of[number] = rule.tag_id
    rules = rule_order(list(TagRule.objects.filter(is_active=True).select_related("tag")))

    # 1. Full: every rule and system segment over every customer, from no assignments.
    started = time.monotonic()
    full = services.retag_full(now=NOW)
    full_seconds = time.monotonic() - started
    assignments = CustomerTag.objects.exclude(tag__source="manual").count()
    print(  # noqa: T201
        f"full retag: {full_seconds:.1f} s, {assignments:,} assignments,"
        f" {customers / full_seconds:,.0f} customers/s"
    )
    if full.errors:
        raise SystemExit(f"rules skipped: {full.errors}")
    audiences = ", ".join(f"{rule.tag.name} {full.tags[rule.tag_id][2]:,}" for rule in rules)
    print(f"rule audiences: {audiences}")  # noqa: T201

    # 2. Incremental: 1% change through the app's paths, then the queue is worked off.
    with connection.cursor() as cursor:
        changed = change_customers(cursor, customers=customers, count=changed_n, rng=rng)
    changed_ids = {pk for ids in changed.values() for pk in ids}
    pending = set(CustomerFactsPending.objects.values_list("customer_id", flat=True))
    if pending != changed_ids:
        raise SystemExit(f"pending {len(pending)} customers, changed {len(changed_ids)}")
    started = time.monotonic()
    refreshed = facts_refresh_pending()
    facts_done = time.monotonic()
    queued = RetagPending.objects.count()
    incremental = services.retag_pending(now=NOW)
    incremental_seconds = time.monotonic() - started
    incremental_facts_seconds = facts_done - started
    incremental_retag_seconds = incremental_seconds - incremental_facts_seconds
    moved = sum(a + r for a, r, _ in incremental.tags.values())
    print(  # noqa: T201
        f"incremental: {len(changed_ids):,} changed customers ({refreshed:,} refreshed, {queued:,}"
        f" queued): {incremental_seconds:.2f} s (facts {incremental_facts_seconds:.2f} s,"
        f" retag {incremental_retag_seconds:.2f} s), {moved:,} assignments moved"
    )
    # The same day in full finds nothing left to change.
    started = time.monotonic()
    check = evaluate(customer_ids=None, now=NOW)
    full_again_seconds = time.monotonic() - started
    incremental_equals_full = not check.added and not check.removed
    print(  # noqa: T201
        f"full evaluation after it: {full_again_seconds:.1f} s, +{sum(check.added.values())}"
        f" -{sum(check.removed.values())} (incremental {'=' if incremental_equals_full else '≠'}"
        " full)"
    )

    # What an incremental run costs whatever changed: the RFM groups compare each buyer
    # with everyone, so every run evaluates them over every customer.
    started = time.monotonic()
    evaluate(customer_ids=[rng.randrange(1, customers + 1)], now=NOW)
    one_customer_seconds = time.monotonic() - started
    print(f"incremental evaluation of one customer: {one_customer_seconds:.2f} s")  # noqa: T201

    # 3. The naive way on a sample, into shadow tags of its own.
    from tagging.evaluation import resolve_ids
    from tagging.system import SEGMENTS

    shadow_rule = {
        rule.tag_id: Tag.objects.create(
            group=TagGroup.objects.get_or_create(name="naive 规则")[0],
            name=rule.tag.name,
            source=Tag.Source.MANUAL,
        ).pk
        for rule in rules
    }
    shadow_group = {
        key: TagGroup.objects.create(name=f"naive {key}").pk for key in NAIVE_SYSTEM_KEYS
    }
    ids = {}
    for rule in rules:
        for fact, values in _set_leaves(rule.condition):
            ids[(fact, tuple(values))] = resolve_ids(fact, values)
    sample = sorted(rng.sample(range(1, customers + 1), k=min(naive_n, customers)))
    started = time.monotonic()
    naive_rules, naive_system_tags, naive_facts_of = naive_run(
        sample, rules, shadow_rule, shadow_group, ids
    )
    naive_seconds = time.monotonic() - started
    naive_scaled = naive_seconds * customers / len(sample)
    print(  # noqa: T201
        f"naive: {len(sample) / naive_seconds:,.0f} customers/s on {len(sample):,} customers"
        f" ({naive_seconds:.1f} s), {naive_scaled:,.0f} s scaled to {customers:,}"
    )

    # Cross-check: the engine's assignments of the sample, rule by rule and group by group.
    rule_tag_ids = set(shadow_rule)
    engine_rules: dict[int, set[int]] = defaultdict(set)
    engine_system: dict[int, dict[str, str]] = defaultdict(dict)
    keys = {segment.key for segment in SEGMENTS} & set(NAIVE_SYSTEM_KEYS)
    for customer_id, tag_id, key, name in CustomerTag.objects.filter(
        customer_id__in=sample
    ).values_list("customer_id", "tag_id", "tag__group__system_key", "tag__name"):
        if tag_id in rule_tag_ids:
            engine_rules[customer_id].add(tag_id)
        elif key in keys:
            engine_system[customer_id][key] = name
    names = {rule.tag_id: rule.tag.name for rule in rules}
    rule_disagreements = [
        (pk, sorted(names[t] for t in naive_rules[pk] - engine_rules[pk]),
         sorted(names[t] for t in engine_rules[pk] - naive_rules[pk]))
        for pk in sample
        if naive_rules[pk] != engine_rules[pk]
    ]  # fmt: skip
    system_disagreements = [
        (pk, naive_system_tags[pk], dict(engine_system[pk]))
        for pk in sample
        if naive_system_tags[pk] != engine_system[pk]
    ]
    for pk, naive_only, engine_only in rule_disagreements[:10]:
        print(  # noqa: T201
            f"  rules differ for customer {pk}: naive only {naive_only}, engine only"
            f" {engine_only}; naive facts {_brief(naive_facts_of[pk])}"
        )
    for pk, naive, engine in system_disagreements[:10]:
        print(f"  system groups differ for customer {pk}: naive {naive}, engine {engine}")  # noqa: T201
    print(  # noqa: T201
        f"naive agrees with the engine: rules {len(sample) - len(rule_disagreements)}"
        f"/{len(sample)}, system groups {len(sample) - len(system_disagreements)}/{len(sample)}"
    )
    celery_app.control.purge()  # the retag and push tasks the services enqueued

    result = {
        "customers": customers,
        "orders": orders,
        "lines": lines,
        "rules": len(rules),
        "system_groups": len(SEGMENTS),
        "assignments": assignments,
        "facts_seconds": round(facts_seconds, 2),
        "full_seconds": round(full_seconds, 2),
        "changed_customers": len(changed_ids),
        "incremental_seconds": round(incremental_seconds, 3),
        "incremental_facts_seconds": round(incremental_facts_seconds, 3),
        "incremental_retag_seconds": round(incremental_retag_seconds, 3),
        "incremental_share_of_full": round(incremental_retag_seconds / full_seconds, 4),
        "incremental_equals_full": incremental_equals_full,
        "incremental_one_customer_seconds": round(one_customer_seconds, 3),
        "full_again_seconds": round(full_again_seconds, 2),
        "naive_sample": len(sample),
        "naive_seconds": round(naive_seconds, 2),
        "naive_seconds_scaled": round(naive_scaled, 1),
        "ratio_to_naive": round(naive_scaled / full_seconds, 1),
        "naive_agrees": not rule_disagreements,
        "naive_system_agrees": not system_disagreements,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    print(json.dumps(result))  # noqa: T201


def _set_leaves(condition):
    """(fact, values) of every guide / store leaf of a condition."""
    if "fact" in condition:
        if condition["fact"] in ("guide", "store"):
            yield condition["fact"], condition["value"]
        return
    for key in ("all", "any"):
        for child in condition.get(key, []):
            yield from _set_leaves(child)
    if "not" in condition:
        yield from _set_leaves(condition["not"])


def _brief(facts: dict) -> dict:
    return {
        key: facts[key]
        for key in ("purchase_days", "net_revenue", "avg_order_value", "last", "median", "lines")
    }


if __name__ == "__main__":
    main()
